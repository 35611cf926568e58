//! `tributary checkpoint-sync` as its own small binary, so the crate's integration tests can
//! spawn it. The shipped binary is `tributary checkpoint-sync`.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "tributary-checkpoint-sync", version, about)]
struct Cli {
    #[command(flatten)]
    args: tributary_checkpoint_sync::CheckpointSyncArgs,
}

fn main() -> anyhow::Result<()> {
    tributary_checkpoint_sync::run(Cli::parse().args)
}
