//! `kubectl-tributary`: kubectl runs it for `kubectl tributary ...` when it is on PATH.

use clap::{Parser, Subcommand};
use tributary_cli::cluster::ConnectOptions;
use tributary_cli::commands::{self, OutputFormat};
use tributary_cli::render::ColourChoice;

/// Tributary's multi-region Kafka topology, from the resources' status.
#[derive(Debug, Parser)]
#[command(name = "kubectl tributary", version)]
struct Cli {
    #[command(flatten)]
    connect: ConnectOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regions and their health, routes with lag and checkpoint age, groups with active
    /// region, epoch and standby sync age.
    Status {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Colour: auto (a terminal, unless NO_COLOR is set), always, never.
        #[arg(long = "color", value_enum, default_value_t = ColourChoice::Auto)]
        colour: ColourChoice,
    },
    /// Move a group's active region: sets spec.activeRegion by server-side apply (field
    /// manager kubectl-tributary) and follows the move in status until it finished.
    Failover {
        /// The ConsumerGroupFailover's name.
        group: String,
        /// The region to move to (one of spec.regions).
        #[arg(long, value_name = "REGION")]
        to: String,
        #[command(flatten)]
        options: MoveArgs,
    },
    /// Move a group back to the region its last move left (status.lastFailover.from).
    Failback {
        /// The ConsumerGroupFailover's name.
        group: String,
        #[command(flatten)]
        options: MoveArgs,
    },
    /// The translation a group's move resumes from: the move under way
    /// (status.pendingMove.plan: bounds, watermarks) and the last move (resume offsets,
    /// watermarks).
    Plan {
        /// The ConsumerGroupFailover's name.
        group: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

#[derive(Debug, clap::Args)]
struct MoveArgs {
    /// Take spec.activeRegion even when another field manager (a GitOps tool, kubectl edit)
    /// owns it; change it in Git too, or the tool will set it back.
    #[arg(long)]
    force: bool,
    /// Set the spec and return without waiting for the move.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the move: 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = tributary_cli::failover::parse_duration)]
    timeout: std::time::Duration,
}

impl MoveArgs {
    fn options(&self) -> commands::MoveOptions {
        commands::MoveOptions {
            force: self.force,
            wait: !self.no_wait,
            timeout: self.timeout,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = async {
        let conn = cli.connect.connect().await?;
        match cli.command {
            Command::Status {
                all_namespaces,
                output,
                colour,
            } => commands::status(&conn, all_namespaces, output, colour).await,
            Command::Failover { group, to, options } => {
                commands::move_group(&conn, &group, Some(&to), &options.options()).await
            }
            Command::Failback { group, options } => {
                commands::move_group(&conn, &group, None, &options.options()).await
            }
            Command::Plan { group, output } => commands::plan(&conn, &group, output).await,
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
