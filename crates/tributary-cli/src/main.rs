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
