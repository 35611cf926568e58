//! `tributary replicate` flags (each also an env var `TRIBUTARY_<FLAG>`) and their
//! validation into a [`RouteConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use regex::Regex;
use tributary_core::{Route, TopicNaming};
use tributary_kafka::{ClientSettings, DestConnectionArgs, SourceConnectionArgs};
use tributary_runtime::{LogFormat, parse_duration};

/// An idle partition's checkpoint is written again at least this often (when the retention
/// allows: at most a quarter of it).
const DEFAULT_CHECKPOINT_HEARTBEAT: Duration = Duration::from_secs(3600);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamingArg {
    Identity,
    Prefixed,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryArg {
    AtLeastOnce,
    ExactlyOnce,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    fn as_librdkafka(self) -> &'static str {
        match self {
            CompressionArg::None => "none",
            CompressionArg::Gzip => "gzip",
            CompressionArg::Snappy => "snappy",
            CompressionArg::Lz4 => "lz4",
            CompressionArg::Zstd => "zstd",
        }
    }
}

/// Serve one route: copy a source region's topics into one region's aggregate cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplicateArgs {
    /// Route id (a DNS-1123 label); names the consumer group `tributary.route.<route>` and the
    /// transactional id, so it must be unique among every route on these Kafka clusters,
    /// whatever namespace runs it. The operator passes `<namespace>-<source>-to-<aggregate>-<hash>`.
    #[arg(long, env = "TRIBUTARY_ROUTE")]
    pub route: String,
    /// Region of the source (regional) cluster.
    #[arg(long, env = "TRIBUTARY_SOURCE_REGION")]
    pub source_region: String,
    /// Region of the destination (aggregate) cluster.
    #[arg(long, env = "TRIBUTARY_DEST_REGION")]
    pub dest_region: String,
    #[command(flatten)]
    pub source: SourceConnectionArgs,
    #[command(flatten)]
    pub dest: DestConnectionArgs,
    /// Source topics to copy (comma-separated).
    #[arg(long, env = "TRIBUTARY_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Copy every source topic whose whole name matches this regex (besides --topics).
    #[arg(long, env = "TRIBUTARY_TOPIC_PATTERN")]
    pub topic_pattern: Option<String>,
    /// Aggregate topic names: identity (same name) or prefixed (`<source-region>.<topic>`).
    #[arg(
        long,
        env = "TRIBUTARY_TOPIC_NAMING",
        value_enum,
        default_value = "identity"
    )]
    pub topic_naming: NamingArg,
    /// Replication factor of the topics this replicator creates in the destination (aggregate
    /// topics, checkpoint topic). Default: each aggregate topic takes its source topic's, the
    /// checkpoint topic the highest of the route's source topics' (never the broker's
    /// `default.replication.factor`).
    #[arg(long, env = "TRIBUTARY_REPLICATION_FACTOR")]
    pub replication_factor: Option<i32>,
    #[arg(
        long,
        env = "TRIBUTARY_DELIVERY",
        value_enum,
        default_value = "at-least-once"
    )]
    pub delivery: DeliveryArg,
    /// Producer linger (ms).
    #[arg(long, env = "TRIBUTARY_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,
    /// Producer batch size (bytes).
    #[arg(long, env = "TRIBUTARY_BATCH_BYTES", default_value_t = 1_048_576)]
    pub batch_bytes: u32,
    #[arg(long, env = "TRIBUTARY_COMPRESSION", value_enum, default_value = "lz4")]
    pub compression: CompressionArg,
    /// How often checkpoints are written (Go duration: 1s, 500ms, 2m).
    #[arg(long, env = "TRIBUTARY_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// How often an idle partition's last checkpoint is written again when nothing changed
    /// (neither the source nor the destination partition moved). Idle partitions are
    /// otherwise written only when their floor rises, so the checkpoint topic grows with
    /// change, not with time x partitions; readers look back at most this far for a key's
    /// latest state (docs/checkpoint-format.md, "Version 2"). Must lie between the interval
    /// and a quarter of the checkpoint retention. Default: 1h, or a quarter of the retention
    /// when that is shorter.
    #[arg(long, env = "TRIBUTARY_CHECKPOINT_HEARTBEAT", value_parser = parse_duration)]
    pub checkpoint_heartbeat: Option<Duration>,
    /// Checkpoint topic on the destination cluster (created if missing).
    #[arg(
        long,
        env = "TRIBUTARY_CHECKPOINT_TOPIC",
        default_value = "tributary.checkpoints"
    )]
    pub checkpoint_topic: String,
    /// Retention of the checkpoint topic when this replicator creates it.
    #[arg(long, env = "TRIBUTARY_CHECKPOINT_RETENTION", default_value = "168h", value_parser = parse_duration)]
    pub checkpoint_retention: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// On SIGTERM, how long to wait for in-flight records before giving up (keep it below
    /// the pod's termination grace period).
    #[arg(long, env = "TRIBUTARY_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Copy workers (partition sets copied in parallel, each with its own consumer and
    /// producer); at-least-once only: exactly-once refuses more than one (its fencing of a
    /// previous instance is partition-exact only with one transactional id per route). More
    /// than one helps only with spare cores (on the 2-core benchmark machine it did not).
    #[arg(long, env = "TRIBUTARY_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Producer buffer of each worker (KiB, librdkafka `queue.buffering.max.kbytes`): the
    /// largest part of the replicator's memory. The operator sizes it from the pod's memory
    /// limit; the default (512 MiB) with the consumer queue's 128 MiB fits a 768 MiB limit.
    #[arg(long, env = "TRIBUTARY_PRODUCER_BUFFER_KBYTES", default_value_t = 524_288, value_parser = clap::value_parser!(u32).range(1024..=2_097_151))]
    pub producer_buffer_kbytes: u32,
    /// Pre-fetched records each worker's source consumer may queue (KiB, librdkafka
    /// `queued.max.messages.kbytes`).
    #[arg(long, env = "TRIBUTARY_CONSUMER_QUEUE_KBYTES", default_value_t = 131_072, value_parser = clap::value_parser!(u32).range(1024..=2_097_151))]
    pub consumer_queue_kbytes: u32,
    /// `/healthz` fails when the copy loop has not run for this long (wedged), or has
    /// copied nothing of a partition for this long while the source, answering, showed new
    /// records in it. A destination or source that does not answer, or an idle source,
    /// never fails it (a restart would not help). At least 20s: above any blocking call.
    #[arg(long, env = "TRIBUTARY_STALL_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// How often the route's stored positions are committed again although they did not
    /// move (idle partitions): Kafka deletes a group's committed offsets
    /// `offsets.retention.minutes` (7 days by default) after their last commit, and an idle
    /// partition whose position expired would be copied again from its log start. Keep it
    /// well below the retention of the cluster holding the position (the source in
    /// at-least-once, the destination in exactly-once).
    #[arg(long, env = "TRIBUTARY_POSITION_KEEPALIVE", default_value = "1h", value_parser = parse_duration)]
    pub position_keepalive: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

/// The validated configuration of one route.
#[derive(Clone, Debug)]
pub struct RouteConfig {
    pub name: String,
    pub route: Route,
    pub source: ClientSettings,
    pub dest: ClientSettings,
    pub topics: Vec<String>,
    /// Anchored (whole-name) pattern.
    pub pattern: Option<Regex>,
    pub naming: TopicNaming,
    /// `--replication-factor`; `None`: the source topics'.
    pub replication_factor: Option<i32>,
    pub delivery: Delivery,
    pub linger_ms: u32,
    pub batch_bytes: u32,
    pub compression: &'static str,
    pub checkpoint_interval: Duration,
    pub checkpoint_heartbeat: Duration,
    pub checkpoint_topic: String,
    pub checkpoint_retention: Duration,
    pub drain_timeout: Duration,
    pub workers: usize,
    pub producer_buffer_kbytes: u32,
    pub consumer_queue_kbytes: u32,
    pub stall_timeout: Duration,
    pub position_keepalive: Duration,
}

/// The shortest `--stall-timeout`: longer than the longest call the copy thread blocks in
/// (15 s request timeout), so only a wedge exceeds it.
pub const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(20);

impl RouteConfig {
    /// The consumer group holding this route's position (source cluster for
    /// at-least-once, destination cluster for exactly-once).
    pub fn group_id(&self) -> String {
        format!("tributary.route.{}", self.name)
    }

    /// The two transactional ids of an exactly-once route (its transactions alternate
    /// between them, one committing while the other collects records). Both belong to the
    /// route, not to a worker or a partition set (exactly-once runs one copy worker), so a
    /// second instance of the route fences every partition of the first. The first is the
    /// route's id before there were two, so an instance of an older version is fenced too.
    pub fn transactional_ids(&self) -> [String; 2] {
        let id = format!("tributary.route.{}", self.name);
        [id.clone(), format!("{id}.1")]
    }

    pub fn from_args(args: &ReplicateArgs) -> anyhow::Result<Self> {
        let dns_label = Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")?;
        for (flag, value) in [
            ("--route", &args.route),
            ("--source-region", &args.source_region),
            ("--dest-region", &args.dest_region),
        ] {
            if !dns_label.is_match(value) {
                bail!(
                    "{flag} {value:?} must be a DNS-1123 label (lower-case letters, digits, '-')"
                );
            }
        }
        let topics: Vec<String> = args
            .topics
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let pattern = args
            .topic_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| Regex::new(&format!("^(?:{p})$")))
            .transpose()
            .context("--topic-pattern is not a valid regex")?;
        if topics.is_empty() && pattern.is_none() {
            bail!("give the topics to copy with --topics and/or --topic-pattern");
        }
        if args.replication_factor.is_some_and(|rf| rf < 1) {
            bail!("--replication-factor must be at least 1");
        }
        if args.stall_timeout < MIN_STALL_TIMEOUT {
            bail!(
                "--stall-timeout ({:?}) must be at least {MIN_STALL_TIMEOUT:?}: shorter, a legitimately blocking request would fail /healthz and restart the replicator",
                args.stall_timeout
            );
        }
        if args.delivery == DeliveryArg::ExactlyOnce && args.workers > 1 {
            // A transactional id per worker slot fences only the same slot of another
            // instance, and which partitions a slot holds follows the topic set and the worker
            // count: an older instance with another topic set or --workers would keep writing
            // partitions the new one copies too (duplicates for read_committed readers).
            bail!(
                "--workers {} with --delivery exactly-once is refused: exactly-once fences a previous instance of the route through one transactional id, which is partition-exact only with one copy worker; use --workers 1 (or at-least-once for parallel workers)",
                args.workers
            );
        }
        if args.position_keepalive < Duration::from_secs(1) {
            bail!("--position-keepalive must be at least 1s");
        }
        if args.checkpoint_interval < Duration::from_millis(100) {
            bail!("--checkpoint-interval must be at least 100ms");
        }
        let checkpoint_heartbeat = args.checkpoint_heartbeat.unwrap_or_else(|| {
            DEFAULT_CHECKPOINT_HEARTBEAT
                .min(args.checkpoint_retention / 4)
                .max(args.checkpoint_interval)
        });
        if checkpoint_heartbeat < args.checkpoint_interval
            || checkpoint_heartbeat > args.checkpoint_retention / 4
        {
            bail!(
                "--checkpoint-heartbeat ({checkpoint_heartbeat:?}) must lie between --checkpoint-interval ({:?}) and a quarter of --checkpoint-retention ({:?}): a key whose last record ages out of the topic loses its state",
                args.checkpoint_interval,
                args.checkpoint_retention
            );
        }
        Ok(Self {
            name: args.route.clone(),
            route: Route::new(&args.source_region, &args.dest_region),
            source: args.source.to_settings(format!(
                "source cluster ({} regional, {})",
                args.source_region, args.source.bootstrap
            ))?,
            dest: args.dest.to_settings(format!(
                "destination cluster ({} aggregate, {})",
                args.dest_region, args.dest.bootstrap
            ))?,
            topics,
            pattern,
            naming: match args.topic_naming {
                NamingArg::Identity => TopicNaming::Identity,
                NamingArg::Prefixed => TopicNaming::Prefixed,
            },
            replication_factor: args.replication_factor,
            delivery: match args.delivery {
                DeliveryArg::AtLeastOnce => Delivery::AtLeastOnce,
                DeliveryArg::ExactlyOnce => Delivery::ExactlyOnce,
            },
            linger_ms: args.linger_ms,
            batch_bytes: args.batch_bytes,
            compression: args.compression.as_librdkafka(),
            checkpoint_interval: args.checkpoint_interval,
            checkpoint_heartbeat,
            checkpoint_topic: args.checkpoint_topic.clone(),
            checkpoint_retention: args.checkpoint_retention,
            drain_timeout: args.drain_timeout,
            workers: args.workers.max(1),
            producer_buffer_kbytes: args.producer_buffer_kbytes,
            consumer_queue_kbytes: args.consumer_queue_kbytes,
            stall_timeout: args.stall_timeout,
            position_keepalive: args.position_keepalive,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        replicate: ReplicateArgs,
    }

    /// A route east → west copying `orders`, with `extra` flags.
    fn config_with(route: &str, extra: &[&str]) -> anyhow::Result<RouteConfig> {
        let mut argv = vec![
            "replicate",
            "--route",
            route,
            "--source-region",
            "east",
            "--dest-region",
            "west",
            "--source-bootstrap",
            "a:1",
            "--dest-bootstrap",
            "b:2",
            "--topics",
            "orders",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv)?;
        RouteConfig::from_args(&cli.replicate)
    }

    fn config(route: &str) -> anyhow::Result<RouteConfig> {
        config_with(route, &[])
    }

    #[test]
    fn group_and_transactional_ids_follow_the_route_id() -> anyhow::Result<()> {
        let a = config("team-a-east-to-west-365af9a2ac")?;
        let b = config("team-b-east-to-west-0c1d2e3f4a")?;
        assert_eq!(
            a.group_id(),
            "tributary.route.team-a-east-to-west-365af9a2ac"
        );
        assert_ne!(a.group_id(), b.group_id());
        assert_eq!(
            a.transactional_ids(),
            [a.group_id(), format!("{}.1", a.group_id())]
        );
        Ok(())
    }

    #[test]
    fn exactly_once_with_several_workers_is_refused_naming_both_flags() -> anyhow::Result<()> {
        let args =
            |delivery, workers| config_with("r", &["--delivery", delivery, "--workers", workers]);
        let err = args("exactly-once", "2")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--workers 2") && err.contains("exactly-once"),
            "{err}"
        );
        assert!(args("exactly-once", "1").is_ok());
        assert!(args("at-least-once", "4").is_ok());
        Ok(())
    }

    #[test]
    fn a_replication_factor_below_one_is_refused_naming_the_flag() -> anyhow::Result<()> {
        let err = config_with("r", &["--replication-factor", "0"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--replication-factor"), "{err}");
        assert_eq!(
            config("r")?.replication_factor,
            None,
            "default: the source's"
        );
        Ok(())
    }

    #[test]
    fn a_route_id_that_is_not_a_dns_label_is_refused_naming_the_flag() {
        let err = config("east.payments-to-west")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--route") && err.contains("DNS-1123"), "{err}");
    }
}
