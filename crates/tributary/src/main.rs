//! `tributary`: one binary, one subcommand per role (operator, replicator, checkpoint sync, ...).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// jemalloc for Rust and, through its unprefixed symbols, for librdkafka: the replicator's
/// copy path allocates per record inside librdkafka, and glibc malloc cost ~10-20% CPU there.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tributary: multi-region Apache Kafka disaster recovery on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "tributary", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (multi-document YAML), or write one file per kind.
    Crd {
        /// Write `<crd-name>.yaml` files into these directories instead of printing.
        #[arg(long = "dir", value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Serve one route: copy a source region's topics into one region's aggregate cluster.
    Replicate(tributary_replicator::ReplicateArgs),
    /// Run the operator: reconcile RegionalStreams and AggregateClusters (topics, one
    /// replicator Deployment per route), with leader election, /metrics, /healthz, /readyz.
    Operator(tributary_operator::OperatorArgs),
    /// Keep a consumer group's position warm in a standby region (translated from the active
    /// region's aggregate cluster), or move it at a failover (`--once --final`).
    CheckpointSync(tributary_checkpoint_sync::CheckpointSyncArgs),
    /// A consumer's sidecar: says whether this pod's region is the active one of its group
    /// (`GET /active` on localhost, a file, the pod condition `tributary.dev/active`), from
    /// the `<name>-active` ConfigMap watched through the API.
    ActiveGate(tributary_active_gate::ActiveGateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { dirs } => write_crds(&dirs),
        Command::Replicate(args) => tributary_replicator::run(args),
        Command::Operator(args) => tributary_operator::run_blocking(args),
        Command::CheckpointSync(args) => tributary_checkpoint_sync::run(args),
        Command::ActiveGate(args) => tributary_active_gate::run(args),
    }
}

fn write_crds(dirs: &[PathBuf]) -> anyhow::Result<()> {
    let crds = tributary_api::crds();
    if dirs.is_empty() {
        for crd in &crds {
            print!("---\n{}", tributary_api::render_crd_yaml(crd)?);
        }
        return Ok(());
    }
    for dir in dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for crd in &crds {
            let path = dir.join(tributary_api::crd_file_name(crd));
            std::fs::write(&path, tributary_api::render_crd_yaml(crd)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
