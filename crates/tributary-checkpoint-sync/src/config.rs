//! `tributary checkpoint-sync` flags (each also an env var `TRIBUTARY_<FLAG>`) and their
//! validation into a [`SyncConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tributary_core::TopicNaming;
use tributary_kafka::{ClientSettings, FromConnectionArgs, ToConnectionArgs};
use tributary_runtime::{LogFormat, parse_duration};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamingArg {
    Identity,
    Prefixed,
}

/// Keep one consumer group's position warm in a standby region, or move it at a failover.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointSyncArgs {
    /// The consumer group id (the same in every region).
    #[arg(long, env = "TRIBUTARY_GROUP")]
    pub group: String,
    /// The aggregate topics the group consumes (comma-separated).
    #[arg(long, env = "TRIBUTARY_TOPICS", value_delimiter = ',', required = true)]
    pub topics: Vec<String>,
    /// A: the region where the group consumes now.
    #[arg(long, env = "TRIBUTARY_FROM_REGION")]
    pub from_region: String,
    /// B: the region whose aggregate cluster receives the translated offsets.
    #[arg(long, env = "TRIBUTARY_TO_REGION")]
    pub to_region: String,
    #[command(flatten)]
    pub from: FromConnectionArgs,
    #[command(flatten)]
    pub to: ToConnectionArgs,
    /// The checkpoint topic of each aggregate cluster (the `s→A` checkpoints are in A's, the
    /// `s→B` ones in B's).
    #[arg(
        long,
        env = "TRIBUTARY_CHECKPOINT_TOPIC",
        default_value = "tributary.checkpoints"
    )]
    pub checkpoint_topic: String,
    /// Aggregate topic names: identity (same name) or prefixed (`<source-region>.<topic>`).
    #[arg(
        long,
        env = "TRIBUTARY_TOPIC_NAMING",
        value_enum,
        default_value = "identity"
    )]
    pub topic_naming: NamingArg,
    /// Every source region replicated into the aggregates (comma-separated). A declared source
    /// without checkpoints makes translation conservative instead of skipping its records.
    #[arg(
        long,
        env = "TRIBUTARY_SOURCES",
        value_delimiter = ',',
        required = true
    )]
    pub sources: Vec<String>,
    /// Time between rounds (Go duration: 1s, 500ms, 2m).
    #[arg(long, env = "TRIBUTARY_SYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The epoch this sync acts for; it stops (exit 0) once the epoch file shows a later one.
    #[arg(long, env = "TRIBUTARY_EPOCH")]
    pub epoch: Option<u64>,
    /// File holding the current epoch (a mounted ConfigMap key), re-read every round.
    #[arg(long, env = "TRIBUTARY_EPOCH_FILE", requires = "epoch")]
    pub epoch_file: Option<PathBuf>,
    /// One round, then exit; prints the plan as JSON on stdout.
    #[arg(long, env = "TRIBUTARY_ONCE")]
    pub once: bool,
    /// With --once: the failover translation. Commits the plan as is (even behind B's current
    /// offsets: the plan is authoritative), after reading the checkpoints to their end.
    #[arg(long = "final", env = "TRIBUTARY_FINAL", requires = "once")]
    pub final_: bool,
    /// Also write the plan JSON here (for the operator), atomically.
    #[arg(long, env = "TRIBUTARY_PLAN_FILE")]
    pub plan_file: Option<PathBuf>,
    /// Read at most this many records of A's partitions below the committed offsets for their
    /// provenance (exact watermarks); 0 uses checkpoints only.
    #[arg(long, env = "TRIBUTARY_OBSERVE_TAIL_MAX", default_value_t = 10_000)]
    pub observe_tail_max: u64,
    /// How long a --once run may take to read the checkpoint topics to their end.
    #[arg(long, env = "TRIBUTARY_CATCH_UP_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub catch_up_timeout: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every interval, advance-only, until the epoch is superseded.
    Standby,
    /// One advance-only round.
    Once,
    /// One authoritative round for a failover.
    Final,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub group: String,
    pub topics: Vec<String>,
    pub from_region: String,
    pub to_region: String,
    pub from: ClientSettings,
    pub to: ClientSettings,
    pub checkpoint_topic: String,
    pub naming: TopicNaming,
    pub sources: Vec<String>,
    pub interval: Duration,
    pub epoch: Option<u64>,
    pub epoch_file: Option<PathBuf>,
    pub mode: Mode,
    pub plan_file: Option<PathBuf>,
    pub observe_tail_max: u64,
    pub catch_up_timeout: Duration,
}

fn dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

impl SyncConfig {
    pub fn from_args(args: &CheckpointSyncArgs) -> anyhow::Result<Self> {
        if args.group.trim().is_empty() {
            bail!("--group must name the consumer group");
        }
        for (flag, value) in [
            ("--from-region", &args.from_region),
            ("--to-region", &args.to_region),
        ] {
            if !dns_label(value) {
                bail!(
                    "{flag} {value:?} must be a DNS-1123 label (lower-case letters, digits, '-')"
                );
            }
        }
        if args.from_region == args.to_region {
            bail!(
                "--from-region and --to-region are both {:?}: the standby must be another region",
                args.from_region
            );
        }
        let clean = |list: &[String]| -> Vec<String> {
            let mut out: Vec<String> = list
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let topics = clean(&args.topics);
        if topics.is_empty() {
            bail!("--topics must name the aggregate topics the group consumes");
        }
        let sources = clean(&args.sources);
        if sources.is_empty() {
            bail!("--sources must name every source region replicated into the aggregates");
        }
        if let Some(bad) = sources.iter().find(|s| !dns_label(s)) {
            bail!("--sources: {bad:?} is not a DNS-1123 label");
        }
        let naming = match args.topic_naming {
            NamingArg::Identity => TopicNaming::Identity,
            NamingArg::Prefixed => TopicNaming::Prefixed,
        };
        if naming == TopicNaming::Prefixed
            && let Some(bad) = topics.iter().find(|t| naming.source_of(t).is_none())
        {
            bail!("--topics: {bad:?} is not a prefixed aggregate topic (<region>.<topic>)");
        }
        if args.interval < Duration::from_millis(100) {
            bail!("--interval must be at least 100ms");
        }
        if args.epoch_file.is_some() && args.epoch.is_none() {
            bail!("--epoch-file needs --epoch (the epoch this sync acts for)");
        }
        let mode = match (args.once, args.final_) {
            (true, true) => Mode::Final,
            (true, false) => Mode::Once,
            (false, false) => Mode::Standby,
            (false, true) => bail!("--final needs --once"),
        };
        // A standby runs for as long as its epoch lasts: without both it could commit
        // after a failover moved the group elsewhere (fencing fails closed).
        if mode == Mode::Standby && (args.epoch.is_none() || args.epoch_file.is_none()) {
            bail!(
                "a standby sync needs --epoch and --epoch-file (the epoch it acts for, and the mounted file that shows the current one); only --once runs may go without"
            );
        }
        Ok(Self {
            group: args.group.clone(),
            topics,
            from: args
                .from
                .to_settings(format!(
                    "{} aggregate cluster ({})",
                    args.from_region, args.from.bootstrap
                ))
                .context("--from-* flags")?,
            to: args
                .to
                .to_settings(format!(
                    "{} aggregate cluster ({})",
                    args.to_region, args.to.bootstrap
                ))
                .context("--to-* flags")?,
            from_region: args.from_region.clone(),
            to_region: args.to_region.clone(),
            checkpoint_topic: args.checkpoint_topic.clone(),
            naming,
            sources,
            interval: args.interval,
            epoch: args.epoch,
            epoch_file: args.epoch_file.clone(),
            mode,
            plan_file: args.plan_file.clone(),
            observe_tail_max: args.observe_tail_max,
            catch_up_timeout: args.catch_up_timeout,
        })
    }
}

/// The epoch in an epoch file: its first integer-looking token (a ConfigMap key holds `7`
/// or `7\n`; `epoch: 7` is accepted too).
pub fn parse_epoch(text: &str) -> Option<u64> {
    let token = text.trim();
    let token = token.strip_prefix("epoch:").unwrap_or(token).trim();
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: CheckpointSyncArgs,
    }

    fn parse(extra: &[&str]) -> Result<CheckpointSyncArgs, clap::Error> {
        let mut argv = vec![
            "x",
            "--group",
            "billing",
            "--topics",
            "orders,payments",
            "--from-region",
            "east",
            "--to-region",
            "west",
            "--from-bootstrap",
            "a:1",
            "--to-bootstrap",
            "b:2",
            "--sources",
            "east,west",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn flags_become_a_config() -> anyhow::Result<()> {
        let args = parse(&["--interval", "500ms", "--epoch", "3", "--epoch-file", "/e"])?;
        let cfg = SyncConfig::from_args(&args)?;
        assert_eq!(cfg.topics, vec!["orders", "payments"]);
        assert_eq!(cfg.interval, Duration::from_millis(500));
        assert_eq!(cfg.mode, Mode::Standby);
        assert_eq!(cfg.epoch, Some(3));
        assert!(cfg.from.name.contains("east aggregate"));
        let final_args = parse(&["--once", "--final", "--plan-file", "/p.json"])?;
        assert_eq!(SyncConfig::from_args(&final_args)?.mode, Mode::Final);
        Ok(())
    }

    #[test]
    fn final_without_once_and_same_regions_are_refused() -> anyhow::Result<()> {
        assert!(parse(&["--final"]).is_err());
        assert!(parse(&["--epoch-file", "/e"]).is_err());
        let mut args = parse(&[])?;
        args.to_region = "east".into();
        let err = SyncConfig::from_args(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("another region"), "{err}");
        let mut args = parse(&["--topic-naming", "prefixed"])?;
        args.topics = vec!["orders".into()];
        assert!(SyncConfig::from_args(&args).is_err());
        Ok(())
    }

    #[test]
    fn a_standby_without_an_epoch_and_its_file_is_refused() -> anyhow::Result<()> {
        for extra in [&[][..], &["--epoch", "3"][..]] {
            let err = SyncConfig::from_args(&parse(extra)?)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("needs --epoch and --epoch-file"), "{err}");
        }
        assert_eq!(
            SyncConfig::from_args(&parse(&["--once"])?)?.mode,
            Mode::Once
        );
        Ok(())
    }

    #[test]
    fn epoch_files_parse() {
        assert_eq!(parse_epoch("7\n"), Some(7));
        assert_eq!(parse_epoch(" epoch: 12 "), Some(12));
        assert_eq!(parse_epoch(""), None);
        assert_eq!(parse_epoch("x"), None);
    }
}
