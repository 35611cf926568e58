//! The subcommands: each reads through [`crate::cluster`], decides and renders with the pure
//! modules, and writes to stdout.

use std::io::{IsTerminal, Write};

use anyhow::Result;

use crate::cluster::Connection;
use crate::render::{ColourChoice, colour_enabled, render_status};
use crate::topology::Topology;

/// `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Table,
    /// The documented JSON shape (docs/cli.md).
    Json,
}

/// `status`: the whole topology of a namespace (or all) at a glance.
pub async fn status(
    conn: &Connection,
    all_namespaces: bool,
    output: OutputFormat,
    colour: ColourChoice,
) -> Result<()> {
    let snapshot = conn.snapshot(&conn.scope(all_namespaces)).await?;
    let topology = Topology::from_snapshot(&snapshot);
    let text = match output {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&topology)?;
            s.push('\n');
            s
        }
        OutputFormat::Table => {
            let stdout = std::io::stdout();
            let colour = colour_enabled(
                colour,
                std::env::var("NO_COLOR").ok().as_deref(),
                stdout.is_terminal(),
            );
            render_status(&topology, colour)
        }
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}
