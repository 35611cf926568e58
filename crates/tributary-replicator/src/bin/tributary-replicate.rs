//! `tributary replicate` as its own small binary, so the crate's integration tests can
//! spawn (and kill -9) it. The shipped binary is `tributary replicate`.

use clap::Parser;

/// jemalloc for Rust *and* librdkafka (unprefixed symbols replace the C allocator): the
/// copy path is allocation-heavy inside librdkafka (messages, headers, fetch ops).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(name = "tributary-replicate", version, about)]
struct Cli {
    #[command(flatten)]
    args: tributary_replicator::ReplicateArgs,
}

fn main() -> anyhow::Result<()> {
    tributary_replicator::run(Cli::parse().args)
}
