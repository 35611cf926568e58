//! Prometheus metrics of one checkpoint sync. Labels are bounded: the group's topics and
//! partitions (from `--topics`), the regions of its routes (`--sources`, `--from-region`,
//! `--to-region`) and static error categories.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

/// One route's checkpoints of one source partition (the key of a checkpoint record).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoutePartitionLabels {
    pub source_region: String,
    pub destination_region: String,
    pub topic: String,
    pub partition: String,
}

/// A zombie commit's partition and claimed region (one of the group's regions, else
/// `unknown`: the text is the committer's). Its epoch is not a label (unbounded).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZombieLabels {
    pub topic: String,
    pub partition: String,
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    /// Seconds since the last round that ended with B's offsets as the plan wants them.
    pub sync_age_seconds: Gauge<f64, AtomicU64>,
    /// Unix time of that round (0 until one happened): the operator judges a standby's
    /// freshness from it with its own clock, whatever the length of the rounds since.
    pub last_synced_timestamp_seconds: Gauge<f64, AtomicU64>,
    /// Per partition: B's log end minus the translated resume offset.
    pub translated_lag_records: Family<PartitionLabels, Gauge>,
    pub commits_skipped_group_active: Counter,
    pub commits: Counter,
    pub partitions_committed: Counter,
    pub partitions_kept: Counter,
    pub rounds: Counter,
    pub errors: Family<CategoryLabels, Counter>,
    pub checkpoint_records_read: Counter,
    pub checkpoint_records_invalid: Counter,
    /// Times the checkpoint read was widened further back (v2 "Reading a window").
    pub checkpoint_window_widenings: Counter,
    /// Checkpoints that contradict their route's retained ones (recreated destination, two
    /// writers): the partition is refused until a restart origin resolves it.
    pub checkpoint_contradictions: Family<RoutePartitionLabels, Counter>,
    /// Partitions the last round refused because their checkpoints contradict themselves or
    /// B's log (nothing committed for them).
    pub contradicted_partitions: Gauge,
    /// Commits in A whose metadata names an older epoch than this sync's (each counted once).
    pub zombie_commits: Family<ZombieLabels, Counter>,
    /// Partitions whose latest commit in A is held (a zombie's, or an untrusted claim).
    pub zombie_held_partitions: Gauge,
    pub index_entries: Gauge,
    pub plan_max_duplicates: Gauge,
    pub plan_exact: Gauge,
    pub epoch: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary_checkpoint_sync");
        let m = Self {
            registry: Registry::default(),
            sync_age_seconds: Gauge::default(),
            last_synced_timestamp_seconds: Gauge::default(),
            translated_lag_records: Family::default(),
            commits_skipped_group_active: Counter::default(),
            commits: Counter::default(),
            partitions_committed: Counter::default(),
            partitions_kept: Counter::default(),
            rounds: Counter::default(),
            errors: Family::default(),
            checkpoint_records_read: Counter::default(),
            checkpoint_window_widenings: Counter::default(),
            checkpoint_records_invalid: Counter::default(),
            checkpoint_contradictions: Family::default(),
            contradicted_partitions: Gauge::default(),
            zombie_commits: Family::default(),
            zombie_held_partitions: Gauge::default(),
            index_entries: Gauge::default(),
            plan_max_duplicates: Gauge::default(),
            plan_exact: Gauge::default(),
            epoch: Gauge::default(),
        };
        registry.register(
            "sync_age_seconds",
            "Seconds since the standby's offsets last matched a fresh translation",
            m.sync_age_seconds.clone(),
        );
        registry.register(
            "last_synced_timestamp_seconds",
            "Unix time the standby's offsets last matched a fresh translation (0: never)",
            m.last_synced_timestamp_seconds.clone(),
        );
        registry.register(
            "translated_lag_records",
            "Records the group would read in the standby region after the translated offset",
            m.translated_lag_records.clone(),
        );
        registry.register(
            "commits_skipped_group_active",
            "Rounds that did not commit because the group has active members in the standby region",
            m.commits_skipped_group_active.clone(),
        );
        registry.register(
            "commits",
            "Offset commits into the standby region, verified by reading them back",
            m.commits.clone(),
        );
        registry.register(
            "partitions_committed",
            "Partition offsets committed (moved forward, or set at a failover)",
            m.partitions_committed.clone(),
        );
        registry.register(
            "partitions_kept",
            "Partition offsets kept because the translation lay behind them (never backwards)",
            m.partitions_kept.clone(),
        );
        registry.register("rounds", "Translation rounds completed", m.rounds.clone());
        registry.register("errors", "Errors by category", m.errors.clone());
        registry.register(
            "checkpoint_records_read",
            "Checkpoint-topic records read (both regions)",
            m.checkpoint_records_read.clone(),
        );
        registry.register(
            "checkpoint_window_widenings",
            "Times a checkpoint read was started further back because the records read could not place the group's position",
            m.checkpoint_window_widenings.clone(),
        );
        registry.register(
            "checkpoint_records_invalid",
            "Checkpoint-topic records skipped because they could not be decoded",
            m.checkpoint_records_invalid.clone(),
        );
        registry.register(
            "checkpoint_contradictions",
            "Checkpoints that contradict their route's earlier ones (recreated destination topic, two writers); the partition is not committed until a restart origin resolves it",
            m.checkpoint_contradictions.clone(),
        );
        registry.register(
            "contradicted_partitions",
            "Partitions the last round refused to commit because their checkpoints contradict themselves or the standby's log",
            m.contradicted_partitions.clone(),
        );
        registry.register(
            "zombie_commits",
            "Offset commits in the active region whose metadata (tributary epoch=N region=R) names an older epoch than this sync's: never translated",
            m.zombie_commits.clone(),
        );
        registry.register(
            "zombie_held_partitions",
            "Partitions whose latest commit in the active region is not translated (a zombie's, or metadata that claims the convention and does not parse); the standby keeps its last good position",
            m.zombie_held_partitions.clone(),
        );
        registry.register(
            "index_entries",
            "Checkpoints retained in the in-memory index",
            m.index_entries.clone(),
        );
        registry.register(
            "plan_max_duplicates",
            "Upper bound of records the group would read twice if it resumed from the last plan",
            m.plan_max_duplicates.clone(),
        );
        registry.register(
            "plan_exact",
            "1 if the last plan was exact (zero duplicates after dedupe)",
            m.plan_exact.clone(),
        );
        registry.register("epoch", "The epoch this sync acts for", m.epoch.clone());
        Self { registry, ..m }
    }

    pub fn error(&self, category: &'static str) {
        self.errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    pub fn encode(&self) -> String {
        tributary_runtime::encode_registry(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
