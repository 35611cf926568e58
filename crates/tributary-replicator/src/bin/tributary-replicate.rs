//! `tributary replicate` as its own small binary, so the crate's integration tests can
//! spawn (and kill -9) it. The shipped binary is `tributary replicate`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "tributary-replicate", version, about)]
struct Cli {
    #[command(flatten)]
    args: tributary_replicator::ReplicateArgs,
}

fn main() -> anyhow::Result<()> {
    tributary_replicator::run(Cli::parse().args)
}
