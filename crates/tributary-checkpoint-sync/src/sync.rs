//! One checkpoint sync ([`CheckpointSync`]): the Kafka side of a translation round.
//!
//! A round reads the group's committed offsets in A, catches the in-memory checkpoint index
//! up with both aggregates' checkpoint topics (incrementally: each feed resumes where the
//! last round stopped), reads A's records just below the committed offsets for their
//! provenance (exact watermarks), asks `tributary_core::translate` for a plan, and commits it
//! for the same group id in B:
//! - standby (`Standby`, `Once`): only while the group has no members in B, and never
//!   backwards (`TranslationPlan::standby_commits`), unless the group was rewound in A;
//! - a standby's final round ([`CheckpointSync::final_round`], asked for by the operator at a
//!   planned move): the same commits, but only from checkpoint topics read to their end and
//!   never while the group has members in B — its input must be complete;
//! - failover (`Final`, a one-shot run): the plan as is — it is authoritative (a new process
//!   has not watched A's offsets, so it cannot tell a rewind from an old standby position).
//!
//! Every commit is read back; a partition that did not take is an error, never a success.
//!
//! A dry run ([`CheckpointSync::dry_run`], for `kubectl tributary translate`) is a final
//! round's reading and translation that stops before the commit: it reports the plan and
//! what a planned move's final round would commit, and commits nothing.
//!
//! A partition whose checkpoints contradict themselves or B's log
//! (`PartitionOutcome::Contradicted`) is never committed: a standby round commits the others,
//! counts and logs it and does not count as in sync; a `--once` or final round commits the
//! others and then fails (`SyncError::Contradicted`), so no plan is taken for complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tracing::{debug, error, info, warn};
use tributary_core::checkpoint::{self, CheckpointKey};
use tributary_core::commit_epoch::{
    CommitVerdict, ZombieCommit, judge_commit, parse_commit_metadata,
};
use tributary_core::dedupe::parse_provenance;
use tributary_core::{
    AggregateLayout, AggregatePartition, CheckpointIndexes, CheckpointRecord, InsertOutcome,
    LogOffsets, ObservedRecord, ObservedTail, PartitionOutcome, Route, StandbyCommit,
    ThinningPolicy, TranslationPlan, TranslationRequest, translate, window_shortfall,
};
use tributary_kafka::{ClientSettings, KafkaAdmin, KafkaError, classify};

use crate::config::{Mode, SyncConfig, parse_epoch};
use crate::http::Health;
use crate::metrics::{PartitionLabels, RoutePartitionLabels, ZombieLabels};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);
/// Records per checkpoint-topic partition a first read goes back from the end: at one
/// checkpoint a second for 3000 busy partitions, ~20 s of them.
const INITIAL_WINDOW: i64 = 1 << 16;
/// A window too short for the plan is widened this many times, and read again.
const WIDEN_FACTOR: i64 = 8;

#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(
        "group {group:?} has {members} active member(s) in {cluster}; refusing to move its offsets while it consumes there (stop its consumers first)"
    )]
    GroupActive {
        group: String,
        cluster: String,
        members: usize,
    },
    #[error(
        "the commit into {cluster} did not take for every partition of group {group:?} ({detail}); the standby's offsets are NOT in sync"
    )]
    PartialCommit {
        group: String,
        cluster: String,
        detail: String,
    },
    #[error(
        "epoch {ours} is superseded: {path} holds epoch {current}; this sync must not act any more"
    )]
    Superseded {
        ours: u64,
        current: u64,
        path: String,
    },
    #[error("the epoch file {path} {problem}; not committing until it shows epoch {ours}")]
    EpochUnknown {
        ours: u64,
        path: String,
        problem: String,
    },
    #[error(
        "the checkpoint topics were not read to their end within {budget:?}; a final plan needs all of them, nothing committed"
    )]
    Incomplete { budget: Duration },
    #[error(
        "group {group:?}: {count} partition(s) NOT committed in {cluster} because their checkpoints contradict themselves or its log ({detail}); the group's other partitions were committed. Write a restart origin for each route named (docs/checkpoint-format.md, \"Contradictions\"), then run again"
    )]
    Contradicted {
        group: String,
        cluster: String,
        count: usize,
        detail: String,
    },
}

impl SyncError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            SyncError::Kafka(e) => e.category(),
            SyncError::GroupActive { .. } => "GroupActive",
            SyncError::PartialCommit { .. } => "PartialCommit",
            SyncError::Superseded { .. } => "Superseded",
            SyncError::EpochUnknown { .. } => "EpochFile",
            SyncError::Incomplete { .. } => "Incomplete",
            SyncError::Contradicted { .. } => "Contradiction",
        }
    }
}

/// What a round did in B.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoundOutcome {
    /// B's offsets now are `committed` (moved by this round) and `kept` (left where they were
    /// because the plan lay behind them).
    Synced {
        committed: BTreeMap<AggregatePartition, u64>,
        kept: BTreeMap<AggregatePartition, u64>,
    },
    /// The group has members in B: nothing committed.
    SkippedGroupActive { members: usize },
    /// A dry run: nothing committed. `would_commit` is what a planned move's final round
    /// (the standby rule) would commit now, for B's `current` offsets of the group;
    /// `members` are the group's members in B (a final round refuses while there are any).
    DryRun {
        would_commit: BTreeMap<AggregatePartition, StandbyCommit>,
        current: BTreeMap<AggregatePartition, u64>,
        members: usize,
    },
}

#[derive(Clone, Debug)]
pub struct RoundReport {
    pub plan: TranslationPlan,
    pub outcome: RoundOutcome,
    /// Both checkpoint topics were read to the end they had when the round started.
    pub checkpoints_caught_up: bool,
}

/// A standby's decisions: the plan, never backwards, except for partitions the group was
/// rewound on in A (then the plan is committed as is, per `advance_only`'s contract).
pub fn standby_decisions(
    plan: &TranslationPlan,
    current: &BTreeMap<AggregatePartition, u64>,
    rewound_in_from: &BTreeSet<AggregatePartition>,
) -> BTreeMap<AggregatePartition, StandbyCommit> {
    let mut decisions = plan.standby_commits(current);
    for (partition, offset) in plan.resume_offsets() {
        if rewound_in_from.contains(&partition) && current.get(&partition) != Some(&offset) {
            decisions.insert(partition, StandbyCommit::Commit(offset));
        }
    }
    decisions
}

/// Logs librdkafka's errors as warnings, except end-of-partition events (which `poll`
/// returns to us, and which the default context would log as errors).
struct QuietContext {
    cluster: String,
}

impl ClientContext for QuietContext {
    fn error(&self, error: RdError, reason: &str) {
        if !matches!(
            error,
            RdError::PartitionEOF(_) | RdError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            warn!(cluster = %self.cluster, "librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietContext {}

type SyncConsumer = BaseConsumer<QuietContext>;

fn consumer(
    settings: &ClientSettings,
    group: &str,
    what: &str,
) -> Result<SyncConsumer, KafkaError> {
    consumer_with_isolation(settings, group, what, "read_committed")
}

fn consumer_with_isolation(
    settings: &ClientSettings,
    group: &str,
    what: &str,
    isolation: &str,
) -> Result<SyncConsumer, KafkaError> {
    let mut config = settings.client_config()?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Aborted copies were never seen by the group: their provenance must not count.
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        // A round reads to the end and stops there: the end (an EOF event, which for
        // read_committed can lie below the high watermark) must show up fast, not after the
        // default 500 ms fetch wait per reader, which made every round outlast `interval`.
        .set("fetch.wait.max.ms", "20")
        .set("queued.max.messages.kbytes", "8192");
    config
        .create_with_context(QuietContext {
            cluster: settings.name.clone(),
        })
        .map_err(|e| classify(&settings.name, what, None, e))
}

/// One aggregate cluster's checkpoint topic, read incrementally into the index.
struct CheckpointFeed {
    cluster: String,
    topic: String,
    consumer: SyncConsumer,
    /// Next offset to read per assigned partition.
    next: BTreeMap<i32, i64>,
    /// How many records back from a partition's end a first read starts (v2 "Reading a
    /// window"); widened while the index cannot place the group's position.
    window: i64,
    /// Per partition: whether its read started at the log start (nothing older to read).
    from_log_start: BTreeMap<i32, bool>,
    /// Only these source topics' checkpoints are indexed (the group's).
    source_topics: BTreeSet<String>,
    warned_missing: bool,
}

impl CheckpointFeed {
    fn new(
        settings: &ClientSettings,
        topic: &str,
        group: &str,
        source_topics: &BTreeSet<String>,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            cluster: settings.name.clone(),
            topic: topic.to_owned(),
            consumer: consumer(
                settings,
                &format!("tributary.checkpoint-sync.{group}.reader"),
                "creating the checkpoint reader",
            )?,
            next: BTreeMap::new(),
            window: INITIAL_WINDOW,
            from_log_start: BTreeMap::new(),
            source_topics: source_topics.clone(),
            warned_missing: false,
        })
    }

    fn classify(&self, operation: &str, e: RdError) -> KafkaError {
        classify(&self.cluster, operation, Some(&self.topic), e)
    }

    /// Reads until every partition reached the end it had when called, or `budget` passed.
    /// `Ok(true)` when caught up. Any prefix keeps translation correct, only less precise.
    fn catch_up(
        &mut self,
        indexes: &mut CheckpointIndexes,
        health: &Health,
        budget: Duration,
    ) -> Result<bool, KafkaError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| self.classify("reading checkpoint-topic metadata", e))?;
        let partitions: Vec<i32> = match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            _ => {
                if !self.warned_missing {
                    warn!(cluster = %self.cluster, topic = %self.topic,
                        "checkpoint topic does not exist (yet): no route into this region has written checkpoints; translation stays conservative");
                    self.warned_missing = true;
                }
                return Ok(true);
            }
        };
        let mut watermarks = BTreeMap::new();
        for p in &partitions {
            let offsets = self
                .consumer
                .fetch_watermarks(&self.topic, *p, REQUEST_TIMEOUT)
                .map_err(|e| self.classify("reading checkpoint-topic offsets", e))?;
            watermarks.insert(*p, offsets);
        }
        if partitions.iter().any(|p| !self.next.contains_key(p)) {
            // A first read starts `window` records before the end: the records a plan needs
            // are the newest ones (every live key writes at least once a heartbeat), and a
            // week of history must not be replayed to find them.
            let mut list = TopicPartitionList::new();
            for p in &partitions {
                let (low, high) = watermarks[p];
                let next = *self.next.entry(*p).or_insert_with(|| {
                    let start = high.saturating_sub(self.window).max(low);
                    self.from_log_start.insert(*p, start <= low);
                    start
                });
                list.add_partition_offset(&self.topic, *p, Offset::Offset(next))
                    .map_err(|e| self.classify("assigning the checkpoint topic", e))?;
            }
            self.consumer
                .assign(&list)
                .map_err(|e| self.classify("assigning the checkpoint topic", e))?;
        }
        let mut pending = BTreeMap::new();
        for (p, (_, high)) in &watermarks {
            if self.next.get(p).copied().unwrap_or(0) < *high {
                pending.insert(*p, *high);
            }
        }
        let deadline = Instant::now() + budget;
        while !pending.is_empty() && Instant::now() < deadline {
            match self.consumer.poll(POLL) {
                Some(Ok(m)) => {
                    let p = m.partition();
                    self.next.insert(p, m.offset() + 1);
                    match checkpoint::decode(
                        m.key().unwrap_or_default(),
                        m.payload().unwrap_or_default(),
                    ) {
                        Ok(record) => {
                            if self.source_topics.contains(&record.key.topic) {
                                let outcome = indexes.apply(&record);
                                surface_outcome(indexes, &record, outcome, health);
                            }
                            health.metrics.checkpoint_records_read.inc();
                        }
                        Err(e) => {
                            health.metrics.checkpoint_records_invalid.inc();
                            debug!(cluster = %self.cluster, partition = p, offset = m.offset(),
                                "skipping a checkpoint record that does not decode: {e}");
                        }
                    }
                    if pending.get(&p).is_some_and(|high| m.offset() + 1 >= *high) {
                        pending.remove(&p);
                    }
                }
                Some(Err(RdError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                Some(Err(e)) => return Err(self.classify("reading the checkpoint topic", e)),
                None => {}
            }
        }
        Ok(pending.is_empty())
    }

    /// Whether every partition's read began at its log start: nothing older exists.
    fn read_from_log_start(&self) -> bool {
        !self.from_log_start.is_empty() && self.from_log_start.values().all(|b| *b)
    }

    /// Forgets what was read and starts the next read `WIDEN_FACTOR` times further back.
    fn widen(&mut self) {
        self.window = self.window.saturating_mul(WIDEN_FACTOR);
        self.next.clear();
        self.from_log_start.clear();
        let _ = self.consumer.unassign();
    }
}

/// How long each step of a round took, for the debug log.
struct Phases {
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{step} {} ms", took.as_millis())?;
        }
        Ok(())
    }
}

/// Counts and logs what the index could not take as a fact: a contradiction (once per route
/// and partition, until resolved) and a restart that resolves one.
fn surface_outcome(
    indexes: &CheckpointIndexes,
    record: &CheckpointRecord,
    outcome: InsertOutcome,
    health: &Health,
) {
    let key = &record.key;
    match outcome {
        InsertOutcome::Contradiction => {
            health
                .metrics
                .checkpoint_contradictions
                .get_or_create(&RoutePartitionLabels {
                    source_region: key.route.source_region.clone(),
                    destination_region: key.route.destination_region.clone(),
                    topic: key.topic.clone(),
                    partition: key.partition.to_string(),
                })
                .inc();
            let Some(contradiction) = indexes.get(key).and_then(|i| i.contradiction()) else {
                return;
            };
            if contradiction.checkpoints == 1 {
                error!(
                    route = %key.route, topic = %key.topic, partition = key.partition,
                    retained = %format_args!("{}→{}", contradiction.retained.source, contradiction.retained.destination),
                    contradicting = %format_args!("{}→{}", contradiction.contradicting.source, contradiction.contradicting.destination),
                    "checkpoints of route {} for {}/{} contradict each other: source offset {} landed at {}, not after {}→{} (destination topic recreated, or two replicators on the route?). The partition is not committed until a restart origin for the route is written (docs/checkpoint-format.md, \"Contradictions\")",
                    key.route, key.topic, key.partition,
                    contradiction.contradicting.source, contradiction.contradicting.destination,
                    contradiction.retained.source, contradiction.retained.destination,
                );
            }
        }
        InsertOutcome::Restarted => {
            warn!(
                route = %key.route, topic = %key.topic, partition = key.partition,
                "route {} restarted {}/{} in a new destination log (an origin below its checkpoints): the old checkpoints are dropped, any contradiction is resolved",
                key.route, key.topic, key.partition
            );
        }
        _ => {}
    }
}

/// A tail read of A below a committed offset, kept while the offset does not move.
struct CachedTail {
    committed: u64,
    tail: ObservedTail,
}

/// The Kafka side of one group's sync from A to B.
pub struct CheckpointSync {
    cfg: SyncConfig,
    health: Arc<Health>,
    runtime: tokio::runtime::Handle,
    from_admin: KafkaAdmin,
    to_admin: KafkaAdmin,
    /// `group.id` = the group, in A: reads its committed offsets (never subscribes).
    from_group: SyncConsumer,
    /// `group.id` = the group, in B: reads, commits (never subscribes), lists members.
    to_group: SyncConsumer,
    tail_reader: SyncConsumer,
    /// B's log offsets (read_uncommitted: `latest` is the high watermark).
    offsets_reader: SyncConsumer,
    feeds: Vec<CheckpointFeed>,
    indexes: CheckpointIndexes,
    previous_from: BTreeMap<AggregatePartition, u64>,
    tails: BTreeMap<AggregatePartition, CachedTail>,
    last_synced: Instant,
    /// Missing topics already warned about (once each).
    warned_missing: BTreeSet<String>,
    /// Per partition, the zombie commit (offset) last counted: each is counted once.
    zombies_counted: BTreeMap<AggregatePartition, u64>,
}

impl CheckpointSync {
    /// Creates the clients (lazily connecting: nothing is contacted yet).
    pub fn new(
        cfg: SyncConfig,
        health: Arc<Health>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, KafkaError> {
        let group = cfg.group.clone();
        let source_topics: BTreeSet<String> = cfg
            .topics
            .iter()
            .filter_map(|t| cfg.naming.source_of(t).map(|s| s.topic.to_owned()))
            .collect();
        let feeds = vec![
            CheckpointFeed::new(&cfg.from, &cfg.checkpoint_topic, &group, &source_topics)?,
            CheckpointFeed::new(&cfg.to, &cfg.checkpoint_topic, &group, &source_topics)?,
        ];
        Ok(Self {
            from_admin: KafkaAdmin::new(&cfg.from)?.with_timeout(REQUEST_TIMEOUT),
            to_admin: KafkaAdmin::new(&cfg.to)?.with_timeout(REQUEST_TIMEOUT),
            from_group: consumer(&cfg.from, &group, "creating the group offset reader")?,
            to_group: consumer(&cfg.to, &group, "creating the group offset committer")?,
            tail_reader: consumer(
                &cfg.from,
                &format!("tributary.checkpoint-sync.{group}.tail"),
                "creating the provenance reader",
            )?,
            offsets_reader: consumer_with_isolation(
                &cfg.to,
                &format!("tributary.checkpoint-sync.{group}.offsets"),
                "creating the log offset reader",
                "read_uncommitted",
            )?,
            feeds,
            indexes: CheckpointIndexes::new(ThinningPolicy::default()),
            previous_from: BTreeMap::new(),
            tails: BTreeMap::new(),
            last_synced: Instant::now(),
            warned_missing: BTreeSet::new(),
            zombies_counted: BTreeMap::new(),
            cfg,
            health,
            runtime,
        })
    }

    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// Seconds since B's offsets last matched a fresh translation (since start if never).
    pub fn sync_age(&self) -> Duration {
        self.last_synced.elapsed()
    }

    /// `Err(Superseded)` once the epoch file shows a later epoch than ours. Fails closed: an
    /// unreadable file, or one showing an earlier epoch than ours (not yet updated, or
    /// rolled back), stops this round's commit.
    pub fn check_epoch(&self) -> Result<(), SyncError> {
        let (Some(ours), Some(path)) = (self.cfg.epoch, &self.cfg.epoch_file) else {
            return Ok(());
        };
        let problem = match std::fs::read_to_string(path).map(|t| parse_epoch(&t)) {
            Ok(Some(current)) if current > ours => {
                return Err(SyncError::Superseded {
                    ours,
                    current,
                    path: path.display().to_string(),
                });
            }
            Ok(Some(current)) if current == ours => return Ok(()),
            Ok(Some(current)) => format!("shows the earlier epoch {current}"),
            Ok(None) => "holds no epoch".to_string(),
            Err(e) => format!("cannot be read ({e})"),
        };
        Err(SyncError::EpochUnknown {
            ours,
            path: path.display().to_string(),
            problem,
        })
    }

    /// One round: translate and (per mode) commit.
    pub fn round(&mut self) -> Result<RoundReport, SyncError> {
        self.round_in(self.cfg.mode, false, false)
    }

    /// A standby's final round at a planned move (the group stopped in A): commits like a
    /// standby round — never behind B's current offsets unless the group was rewound in A —
    /// but refuses (commits nothing) unless both checkpoint topics were read to their end and
    /// the group has no members in B.
    pub fn final_round(&mut self) -> Result<RoundReport, SyncError> {
        self.round_in(Mode::Standby, true, false)
    }

    /// The plan a final round would make now, committing nothing ([`RoundOutcome::DryRun`]).
    /// Its input must be complete like a final round's (`Incomplete` otherwise, fail
    /// closed); members in B and contradicted partitions are reported, not errors.
    pub fn dry_run(&mut self) -> Result<RoundReport, SyncError> {
        self.round_in(Mode::Standby, true, true)
    }

    /// `strict`: the input must be complete (see [`Self::final_round`]); `Final` always is.
    /// `dry_run`: stop before committing (see [`Self::dry_run`]).
    fn round_in(
        &mut self,
        mode: Mode,
        strict: bool,
        dry_run: bool,
    ) -> Result<RoundReport, SyncError> {
        let strict = strict || mode == Mode::Final;
        let mut phases = Phases::start();
        self.check_epoch()?;
        let from_cluster = self.cfg.from.name.clone();
        let to_cluster = self.cfg.to.name.clone();

        // The group's partitions as A has them.
        let described = self
            .runtime
            .block_on(self.from_admin.describe_topics(&self.cfg.topics))?;
        let mut layout = AggregateLayout::new(self.cfg.naming);
        let mut from_partitions = Vec::new();
        for topic in &self.cfg.topics {
            let Some(description) = described.iter().find(|d| &d.name == topic) else {
                if self.warned_missing.insert(format!("from/{topic}")) {
                    warn!(cluster = %from_cluster, topic = %topic, "the group's topic does not exist in the active region's aggregate cluster");
                }
                continue;
            };
            if let Some(selector) = self.cfg.naming.source_of(topic) {
                for region in &self.cfg.sources {
                    if selector.admits(region) {
                        layout.add_source_topic(
                            region,
                            selector.topic,
                            description.partitions as u32,
                        );
                    }
                }
            }
            from_partitions.extend((0..description.partitions as i32).map(|p| (topic.clone(), p)));
        }

        let commits = read_commits(&self.from_group, &from_cluster, &from_partitions)?;
        let (committed, held) = screen_commits(commits, self.cfg.epoch);
        self.surface_held(&held);
        let rewound: BTreeSet<AggregatePartition> = committed
            .iter()
            .filter(|(p, c)| self.previous_from.get(*p).is_some_and(|prev| prev > *c))
            .map(|(p, _)| p.clone())
            .collect();
        if !rewound.is_empty() {
            warn!(group = %self.cfg.group, partitions = ?rewound, "the group was rewound in the active region: committing the plan as is for those partitions");
        }

        let budget = match mode {
            Mode::Standby if !strict => self.cfg.interval.max(Duration::from_secs(2)),
            _ => self.cfg.catch_up_timeout,
        };
        phases.mark("offsets in A");
        let caught_up = self.read_checkpoints(&layout, &committed, budget)?;
        phases.mark("checkpoints");
        self.health
            .metrics
            .index_entries
            .set(self.indexes.entry_count() as i64);
        if !caught_up {
            if strict {
                return Err(SyncError::Incomplete { budget });
            }
            warn!(
                "checkpoint topics not read to their end within {budget:?}: this plan is correct but less precise"
            );
        }

        let destination = self.destination_logs()?;
        phases.mark("logs in B");

        let observed = self.observe_tails(&layout, &committed)?;
        phases.mark("tails in A");
        let mut plan = translate(&TranslationRequest {
            group_id: &self.cfg.group,
            from_region: &self.cfg.from_region,
            to_region: &self.cfg.to_region,
            layout: &layout,
            checkpoints: &self.indexes,
            committed: &committed,
            destination: &destination,
            observed: &observed,
        });
        if !held.is_empty() {
            // A held partition resumes from B's last good position, which no watermark of
            // this plan describes.
            plan.exact = false;
        }
        self.health
            .metrics
            .plan_max_duplicates
            .set(plan.max_duplicates.min(i64::MAX as u64) as i64);
        self.health.metrics.plan_exact.set(i64::from(plan.exact));
        // Contradicted partitions are not in the plan's resume offsets, so nothing below
        // commits them; here they are named, counted, and (for a run that must be complete)
        // turned into an error once the others are committed.
        let refused: Vec<(AggregatePartition, String)> = plan
            .contradicted()
            .map(|(partition, c)| (partition, c.reason.clone()))
            .collect();
        self.health
            .metrics
            .contradicted_partitions
            .set(refused.len() as i64);
        if let Some((first, reason)) = refused.first() {
            // One line a round, however many partitions: each route was named when its
            // contradiction was read.
            error!(group = %self.cfg.group, cluster = %to_cluster, partitions = refused.len(),
                "not committing {} contradicted partition(s) ({}); {first}: {reason}",
                refused.len(),
                refused.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(" "));
        }

        // Members of the group in B: never move a consuming group.
        let members = self.active_members()?;
        phases.mark("members in B");
        if dry_run {
            let parts: Vec<(String, i32)> = destination
                .keys()
                .map(|p| (p.topic.clone(), p.partition as i32))
                .collect();
            let current = read_committed(&self.to_group, &to_cluster, &parts)?;
            // A dry run's process has watched no earlier round: nothing counts as rewound.
            let would_commit = standby_decisions(&plan, &current, &BTreeSet::new());
            debug!(group = %self.cfg.group, "dry run took {phases}");
            return Ok(RoundReport {
                plan,
                outcome: RoundOutcome::DryRun {
                    would_commit,
                    current,
                    members,
                },
                checkpoints_caught_up: caught_up,
            });
        }
        if members > 0 {
            if strict {
                return Err(SyncError::GroupActive {
                    group: self.cfg.group.clone(),
                    cluster: to_cluster,
                    members,
                });
            }
            self.health.metrics.commits_skipped_group_active.inc();
            info!(group = %self.cfg.group, members, "group has active members in the standby region: not committing");
            self.previous_from = self.next_previous(committed, &held);
            return Ok(RoundReport {
                plan,
                outcome: RoundOutcome::SkippedGroupActive { members },
                checkpoints_caught_up: caught_up,
            });
        }

        let (to_commit, kept) = match mode {
            Mode::Final => (plan.resume_offsets(), BTreeMap::new()),
            Mode::Standby | Mode::Once => {
                let parts: Vec<(String, i32)> = destination
                    .keys()
                    .map(|p| (p.topic.clone(), p.partition as i32))
                    .collect();
                let current = read_committed(&self.to_group, &to_cluster, &parts)?;
                let mut to_commit = BTreeMap::new();
                let mut kept = BTreeMap::new();
                for (partition, decision) in standby_decisions(&plan, &current, &rewound) {
                    match decision {
                        StandbyCommit::Commit(offset)
                            if current.get(&partition) != Some(&offset) =>
                        {
                            to_commit.insert(partition, offset);
                        }
                        other => {
                            kept.insert(partition, other.offset());
                        }
                    }
                }
                (to_commit, kept)
            }
        };
        // The epoch may have moved while we read: nothing acts for an old epoch.
        self.check_epoch()?;
        if !to_commit.is_empty() {
            self.commit(&to_commit)?;
            phases.mark("commit");
            info!(group = %self.cfg.group, cluster = %to_cluster, partitions = to_commit.len(),
                max_duplicates = plan.max_duplicates, exact = plan.exact, "committed translated offsets");
        }
        self.health
            .metrics
            .partitions_committed
            .inc_by(to_commit.len() as u64);
        self.health
            .metrics
            .partitions_kept
            .inc_by(kept.len() as u64);
        for (partition, log) in &destination {
            let effective = to_commit.get(partition).or_else(|| kept.get(partition));
            if let Some(offset) = effective {
                self.health
                    .metrics
                    .translated_lag_records
                    .get_or_create(&PartitionLabels {
                        topic: partition.topic.clone(),
                        partition: partition.partition.to_string(),
                    })
                    .set(log.end.saturating_sub(*offset).min(i64::MAX as u64) as i64);
            }
        }
        self.previous_from = self.next_previous(committed, &held);
        if !refused.is_empty() && (strict || mode == Mode::Once) {
            return Err(SyncError::Contradicted {
                group: self.cfg.group.clone(),
                cluster: to_cluster,
                count: refused.len(),
                detail: refused
                    .iter()
                    .map(|(partition, reason)| format!("{partition}: {reason}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        // B's offsets match the translation only where it resumed every partition.
        if caught_up && refused.is_empty() {
            self.last_synced = Instant::now();
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            self.health.metrics.last_synced_timestamp_seconds.set(unix);
        }
        self.health.metrics.rounds.inc();
        debug!(group = %self.cfg.group, "round took {phases}");
        if let Ok(mut last) = self.health.last_plan.lock() {
            *last = Some(Arc::new(plan.clone()));
        }
        Ok(RoundReport {
            plan,
            outcome: RoundOutcome::Synced {
                committed: to_commit,
                kept,
            },
            checkpoints_caught_up: caught_up,
        })
    }

    /// What the next round compares A's commits with to see a rewind: this round's
    /// translated commits, and for a held partition the last translated one.
    fn next_previous(
        &self,
        mut committed: BTreeMap<AggregatePartition, u64>,
        held: &BTreeMap<AggregatePartition, HeldCommit>,
    ) -> BTreeMap<AggregatePartition, u64> {
        for partition in held.keys() {
            if let Some(previous) = self.previous_from.get(partition) {
                committed.insert(partition.clone(), *previous);
            }
        }
        committed
    }

    /// Counts each zombie commit once (`zombie_commits_total`), logs the held partitions and
    /// publishes them for `GET /status`.
    fn surface_held(&mut self, held: &BTreeMap<AggregatePartition, HeldCommit>) {
        let known_regions: BTreeSet<&str> = self
            .cfg
            .sources
            .iter()
            .map(String::as_str)
            .chain([self.cfg.from_region.as_str(), self.cfg.to_region.as_str()])
            .collect();
        let mut report = Vec::new();
        let mut new_zombies = 0u64;
        for (partition, commit) in held {
            match &commit.verdict {
                CommitVerdict::Zombie { epoch, region } => {
                    report.push(ZombieCommit {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                        offset: commit.offset,
                        epoch: *epoch,
                        region: region.clone(),
                    });
                    if self.zombies_counted.get(partition) == Some(&commit.offset) {
                        continue;
                    }
                    self.zombies_counted
                        .insert(partition.clone(), commit.offset);
                    new_zombies += 1;
                    // The claimed region is the committer's text: a label only if it is one
                    // of this group's regions.
                    let label_region = if known_regions.contains(region.as_str()) {
                        region.clone()
                    } else {
                        "unknown".to_string()
                    };
                    self.health
                        .metrics
                        .zombie_commits
                        .get_or_create(&ZombieLabels {
                            topic: partition.topic.clone(),
                            partition: partition.partition.to_string(),
                            region: label_region,
                        })
                        .inc();
                    error!(group = %self.cfg.group, cluster = %self.cfg.from.name, partition = %partition,
                        offset = commit.offset, zombie_epoch = epoch, zombie_region = %region,
                        epoch = ?self.cfg.epoch,
                        "zombie commit: group {:?} committed offset {} on {partition} in {} for epoch {epoch} (region {region}), older than this sync's epoch; not translated, the standby keeps its last good position. A consumer of an old epoch is still committing: find and stop it",
                        self.cfg.group, commit.offset, self.cfg.from.name);
                }
                CommitVerdict::Hold { reason } => {
                    warn!(group = %self.cfg.group, cluster = %self.cfg.from.name, partition = %partition,
                        offset = commit.offset, "not translating {partition}: {reason}");
                }
                CommitVerdict::Translate => {}
            }
        }
        // A partition committed again by a current consumer is no zombie's any more.
        self.zombies_counted.retain(|p, _| held.contains_key(p));
        self.health
            .metrics
            .zombie_held_partitions
            .set(report.len() as i64);
        if let Ok(mut zombies) = self.health.zombies.lock() {
            zombies.epoch = self.cfg.epoch;
            zombies.held_partitions = report;
            zombies.zombie_commits_total += new_zombies;
        }
    }

    /// Catches the index up with both checkpoint topics within `budget`, starting a first read
    /// near their ends and widening it while [`window_shortfall`] names a route the records
    /// read cannot place (each widening reads again into a fresh index, so the index always
    /// holds one contiguous suffix of each topic). `Ok(true)` when caught up.
    fn read_checkpoints(
        &mut self,
        layout: &AggregateLayout,
        committed: &BTreeMap<AggregatePartition, u64>,
        budget: Duration,
    ) -> Result<bool, KafkaError> {
        let deadline = Instant::now() + budget;
        loop {
            let mut caught_up = true;
            for feed in &mut self.feeds {
                let left = deadline.saturating_duration_since(Instant::now());
                caught_up &= feed.catch_up(&mut self.indexes, &self.health, left)?;
            }
            if !caught_up {
                return Ok(false);
            }
            let no_destination = BTreeMap::new();
            let shortfall = window_shortfall(&TranslationRequest {
                group_id: &self.cfg.group,
                from_region: &self.cfg.from_region,
                to_region: &self.cfg.to_region,
                layout,
                checkpoints: &self.indexes,
                committed,
                destination: &no_destination,
                observed: &BTreeMap::new(),
            });
            let Some(key) = shortfall else {
                return Ok(true);
            };
            if self.feeds.iter().all(CheckpointFeed::read_from_log_start) {
                return Ok(true);
            }
            let window = self
                .feeds
                .iter()
                .map(|f| f.window)
                .max()
                .unwrap_or_default();
            info!(group = %self.cfg.group, route = %key.route, topic = %key.topic, partition = key.partition,
                window, "the checkpoints read do not reach back to this route's position: reading {WIDEN_FACTOR}x further back");
            self.health.metrics.checkpoint_window_widenings.inc();
            self.indexes = CheckpointIndexes::new(self.indexes.policy());
            for feed in &mut self.feeds {
                feed.widen();
            }
        }
    }

    /// Log start and end offsets of the group's partitions in B: two batched ListOffsets
    /// requests (earliest, latest), whatever the partition count.
    fn destination_logs(&mut self) -> Result<BTreeMap<AggregatePartition, LogOffsets>, KafkaError> {
        let cluster = self.cfg.to.name.clone();
        let described = self
            .runtime
            .block_on(self.to_admin.describe_topics(&self.cfg.topics))?;
        for topic in &self.cfg.topics {
            if !described.iter().any(|d| &d.name == topic)
                && self.warned_missing.insert(format!("to/{topic}"))
            {
                warn!(cluster = %cluster, topic = %topic, "the group's topic does not exist in the standby region's aggregate cluster yet");
            }
        }
        let query = |special: Offset| -> Result<BTreeMap<AggregatePartition, u64>, KafkaError> {
            let mut list = TopicPartitionList::new();
            for d in &described {
                for p in 0..d.partitions as i32 {
                    list.add_partition_offset(&d.name, p, special)
                        .map_err(|e| classify(&cluster, "reading log offsets", Some(&d.name), e))?;
                }
            }
            if list.count() == 0 {
                return Ok(BTreeMap::new());
            }
            let answered = self
                .offsets_reader
                .offsets_for_times(list, REQUEST_TIMEOUT)
                .map_err(|e| classify(&cluster, "reading log offsets", None, e))?;
            let mut out = BTreeMap::new();
            for element in answered.elements() {
                if let Err(e) = element.error() {
                    return Err(classify(
                        &cluster,
                        "reading log offsets",
                        Some(element.topic()),
                        e,
                    ));
                }
                let offset = element
                    .offset()
                    .to_raw()
                    .filter(|o| *o >= 0)
                    .ok_or_else(|| KafkaError::Unreachable {
                        cluster: cluster.clone(),
                        detail: format!(
                            "no log offset for {}/{} (answer {:?})",
                            element.topic(),
                            element.partition(),
                            element.offset()
                        ),
                    })?;
                out.insert(
                    AggregatePartition::new(element.topic(), element.partition() as u32),
                    offset as u64,
                );
            }
            Ok(out)
        };
        // ListOffsets timestamps: -2 earliest (log start), -1 latest (high watermark).
        let starts = query(Offset::Beginning)?;
        let ends = query(Offset::End)?;
        Ok(starts
            .into_iter()
            .filter_map(|(partition, start)| {
                let end = *ends.get(&partition)?;
                Some((
                    partition,
                    LogOffsets {
                        start,
                        end: end.max(start),
                    },
                ))
            })
            .collect())
    }

    fn active_members(&self) -> Result<usize, KafkaError> {
        let list = self
            .to_group
            .fetch_group_list(Some(&self.cfg.group), REQUEST_TIMEOUT)
            .map_err(|e| classify(&self.cfg.to.name, "describing the consumer group", None, e))?;
        Ok(list
            .groups()
            .iter()
            .filter(|g| g.name() == self.cfg.group)
            .map(|g| g.members().len())
            .sum())
    }

    /// Commits `offsets` for the group in B and reads them back.
    fn commit(&self, offsets: &BTreeMap<AggregatePartition, u64>) -> Result<(), SyncError> {
        let cluster = &self.cfg.to.name;
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(
                &partition.topic,
                partition.partition as i32,
                Offset::Offset(*offset as i64),
            )
            .map_err(|e| classify(cluster, "preparing the commit", None, e))?;
        }
        if let Err(e) = self.to_group.commit(&list, CommitMode::Sync) {
            self.health.metrics.error("CommitFailed");
            let code = e.rdkafka_error_code();
            if matches!(
                code,
                Some(
                    RDKafkaErrorCode::UnknownMemberId
                        | RDKafkaErrorCode::IllegalGeneration
                        | RDKafkaErrorCode::RebalanceInProgress
                )
            ) {
                // The broker refuses a non-member's commit to a group that has members: one
                // joined between our check and the commit.
                self.health.metrics.commits_skipped_group_active.inc();
                return Err(SyncError::GroupActive {
                    group: self.cfg.group.clone(),
                    cluster: cluster.clone(),
                    members: 1,
                });
            }
            return Err(classify(cluster, "committing offsets", None, e).into());
        }
        let parts: Vec<(String, i32)> = offsets
            .keys()
            .map(|p| (p.topic.clone(), p.partition as i32))
            .collect();
        let back = read_committed(&self.to_group, cluster, &parts)?;
        let wrong: Vec<String> = offsets
            .iter()
            .filter(|(p, o)| back.get(*p) != Some(*o))
            .map(|(p, o)| format!("{p}: wanted {o}, found {:?}", back.get(p)))
            .collect();
        if !wrong.is_empty() {
            return Err(SyncError::PartialCommit {
                group: self.cfg.group.clone(),
                cluster: cluster.clone(),
                detail: wrong.join("; "),
            });
        }
        self.health.metrics.commits.inc();
        Ok(())
    }

    /// Reads A's records from the last checkpoint of every source below each committed
    /// offset up to it (at most `observe_tail_max` records), for exact watermarks. A
    /// partition whose read does not complete is left out (checkpoints answer for it).
    fn observe_tails(
        &mut self,
        layout: &AggregateLayout,
        committed: &BTreeMap<AggregatePartition, u64>,
    ) -> Result<BTreeMap<AggregatePartition, ObservedTail>, KafkaError> {
        let mut out = BTreeMap::new();
        if self.cfg.observe_tail_max == 0 {
            return Ok(out);
        }
        let mut wanted: BTreeMap<AggregatePartition, (u64, u64)> = BTreeMap::new();
        for (partition, &c) in committed {
            let start = self
                .tail_start(layout, partition, c)
                .max(c.saturating_sub(self.cfg.observe_tail_max));
            match self.tails.get(partition) {
                Some(cached) if cached.committed == c && cached.tail.start <= start => {
                    out.insert(partition.clone(), cached.tail.clone());
                }
                _ if start >= c => {
                    out.insert(
                        partition.clone(),
                        ObservedTail {
                            start: c,
                            records: Vec::new(),
                        },
                    );
                }
                _ => {
                    wanted.insert(partition.clone(), (start, c));
                }
            }
        }
        // One topic at a time: end-of-partition events name only the partition number.
        let topics: BTreeSet<String> = wanted.keys().map(|p| p.topic.clone()).collect();
        for topic in topics {
            let of_topic: BTreeMap<AggregatePartition, (u64, u64)> = wanted
                .iter()
                .filter(|(p, _)| p.topic == topic)
                .map(|(p, range)| (p.clone(), *range))
                .collect();
            let read = self.read_tails(&of_topic)?;
            for (partition, tail) in read {
                let c = of_topic[&partition].1;
                self.tails.insert(
                    partition.clone(),
                    CachedTail {
                        committed: c,
                        tail: tail.clone(),
                    },
                );
                out.insert(partition, tail);
            }
        }
        Ok(out)
    }

    /// The lowest A offset from which every source's last record below `c` can be found:
    /// the last checkpoint below `c` of each source (0 for a source nothing is known of),
    /// skipping sources whose checkpoints already give an exact watermark; `c` when none
    /// needs reading.
    fn tail_start(&self, layout: &AggregateLayout, partition: &AggregatePartition, c: u64) -> u64 {
        let Some(selector) = self.cfg.naming.source_of(&partition.topic) else {
            return 0;
        };
        let mut regions: BTreeSet<String> = layout
            .declared_sources(partition)
            .into_iter()
            .map(|s| s.region)
            .collect();
        regions.extend(
            self.indexes
                .sources_into(&self.cfg.from_region, selector.topic, partition.partition)
                .map(|(r, _)| r.to_owned())
                .filter(|r| selector.admits(r)),
        );
        let mut start = c;
        for region in regions {
            let key = CheckpointKey::new(
                Route::new(&region, &self.cfg.from_region),
                selector.topic,
                partition.partition,
            );
            let anchor = match self.indexes.get(&key) {
                None => Some(0),
                // The checkpoints already pin this source's watermark: no read needed.
                Some(index) if index.watermark_below(c).exact => None,
                Some(index) => match index.last_below_destination(c) {
                    Some(mapped) => Some(mapped.destination),
                    None => match index.origin() {
                        // Nothing of this source lies below `c`.
                        Some(origin) if origin.destination_offset >= c => None,
                        Some(origin) => Some(origin.destination_offset),
                        None => Some(0),
                    },
                },
            };
            if let Some(anchor) = anchor {
                start = start.min(anchor);
            }
        }
        start
    }

    /// Reads the ranges `[start, c)` of partitions of one topic.
    fn read_tails(
        &self,
        wanted: &BTreeMap<AggregatePartition, (u64, u64)>,
    ) -> Result<BTreeMap<AggregatePartition, ObservedTail>, KafkaError> {
        let cluster = &self.cfg.from.name;
        let mut list = TopicPartitionList::new();
        for (partition, (start, _)) in wanted {
            list.add_partition_offset(
                &partition.topic,
                partition.partition as i32,
                Offset::Offset(*start as i64),
            )
            .map_err(|e| classify(cluster, "assigning for a provenance read", None, e))?;
        }
        self.tail_reader
            .assign(&list)
            .map_err(|e| classify(cluster, "assigning for a provenance read", None, e))?;
        let mut tails: BTreeMap<AggregatePartition, ObservedTail> = wanted
            .iter()
            .map(|(p, (start, _))| {
                (
                    p.clone(),
                    ObservedTail {
                        start: *start,
                        records: Vec::new(),
                    },
                )
            })
            .collect();
        let mut pending: BTreeSet<AggregatePartition> = wanted.keys().cloned().collect();
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while !pending.is_empty() && Instant::now() < deadline {
            match self.tail_reader.poll(POLL) {
                Some(Ok(m)) => {
                    let partition = AggregatePartition::new(m.topic(), m.partition() as u32);
                    let Some((_, c)) = wanted.get(&partition) else {
                        continue;
                    };
                    let offset = m.offset().max(0) as u64;
                    if offset >= *c {
                        pending.remove(&partition);
                        continue;
                    }
                    let provenance = m.headers().and_then(|headers| {
                        parse_provenance(
                            headers.iter().map(|h| (h.key, h.value.unwrap_or_default())),
                        )
                        .ok()
                        .flatten()
                    });
                    if let Some(tail) = tails.get_mut(&partition) {
                        tail.records.push(ObservedRecord { offset, provenance });
                    }
                    if offset + 1 >= *c {
                        pending.remove(&partition);
                    }
                }
                Some(Err(RdError::PartitionEOF(p))) => {
                    // At the end of what is readable: everything below `c` that the group
                    // could see has been read.
                    pending.retain(|partition| partition.partition as i32 != p);
                }
                Some(Err(e)) => return Err(classify(cluster, "reading provenance", None, e)),
                None => {}
            }
        }
        let _ = self.tail_reader.unassign();
        // Incomplete reads are left out: checkpoints answer for those partitions.
        tails.retain(|p, _| !pending.contains(p));
        Ok(tails)
    }
}

/// The group's committed offsets for `partitions` (absent: never committed).
fn read_committed(
    consumer: &SyncConsumer,
    cluster: &str,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<AggregatePartition, u64>, KafkaError> {
    Ok(read_commits(consumer, cluster, partitions)?
        .into_iter()
        .map(|(partition, (offset, _))| (partition, offset))
        .collect())
}

/// The group's committed offsets for `partitions` with their commit metadata.
fn read_commits(
    consumer: &SyncConsumer,
    cluster: &str,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<AggregatePartition, (u64, String)>, KafkaError> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    let list = tributary_kafka::group::committed_offsets(consumer, &list, REQUEST_TIMEOUT)
        .map_err(|e| classify(cluster, "reading the group's committed offsets", None, e))?;
    for element in list.elements() {
        if let Err(e) = element.error() {
            return Err(classify(
                cluster,
                "reading the group's committed offsets",
                Some(element.topic()),
                e,
            ));
        }
        if let Offset::Offset(offset) = element.offset()
            && offset >= 0
        {
            out.insert(
                AggregatePartition::new(element.topic(), element.partition() as u32),
                (offset as u64, element.metadata().to_owned()),
            );
        }
    }
    Ok(out)
}

/// A partition whose latest commit in A is not translated (see [`screen_commits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCommit {
    pub offset: u64,
    pub verdict: CommitVerdict,
}

/// Splits A's commits by the epoch in their metadata (`tributary_core::commit_epoch`): those
/// to translate, and those held — a zombie's (an older epoch than `ours`) or one that cannot
/// be trusted. A held partition is left out of the translation, so B keeps its last good
/// position: neither backwards nor forwards from the held commit's offset.
pub fn screen_commits(
    commits: BTreeMap<AggregatePartition, (u64, String)>,
    ours: Option<u64>,
) -> (
    BTreeMap<AggregatePartition, u64>,
    BTreeMap<AggregatePartition, HeldCommit>,
) {
    let mut translate = BTreeMap::new();
    let mut held = BTreeMap::new();
    for (partition, (offset, metadata)) in commits {
        let verdict = judge_commit(&parse_commit_metadata(&metadata), ours);
        if verdict.translates() {
            translate.insert(partition, offset);
        } else {
            held.insert(partition, HeldCommit { offset, verdict });
        }
    }
    (translate, held)
}

/// The resumed partitions of a plan, for logs: `topic/p→offset`.
pub fn describe_resume(plan: &TranslationPlan) -> String {
    plan.partitions
        .iter()
        .filter_map(|p| match &p.outcome {
            PartitionOutcome::Resume(r) => {
                Some(format!("{}/{}→{}", p.topic, p.partition, r.resume_offset))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::{PartitionPlan, ResumePlan};

    fn plan(resume: &[(u32, u64)]) -> TranslationPlan {
        TranslationPlan {
            v: 1,
            group_id: "g".into(),
            from_region: "east".into(),
            to_region: "west".into(),
            exact: true,
            max_duplicates: 0,
            max_duplicates_after_dedupe: 0,
            partitions: resume
                .iter()
                .map(|&(partition, offset)| PartitionPlan {
                    topic: "orders".into(),
                    partition,
                    committed_offset: Some(offset),
                    outcome: PartitionOutcome::Resume(ResumePlan {
                        resume_offset: offset,
                        exact: true,
                        max_duplicates: 0,
                        max_duplicates_after_dedupe: 0,
                        limited_by: None,
                        raised_to_log_start_from: None,
                        sources: vec![],
                    }),
                })
                .collect(),
        }
    }

    fn p(partition: u32) -> AggregatePartition {
        AggregatePartition::new("orders", partition)
    }

    #[test]
    fn standby_never_moves_backwards_unless_rewound_in_the_active_region() {
        let plan = plan(&[(0, 10), (1, 20), (2, 30)]);
        let current = BTreeMap::from([(p(0), 15), (p(1), 5)]);
        let decisions = standby_decisions(&plan, &current, &BTreeSet::new());
        assert_eq!(decisions[&p(0)], StandbyCommit::Keep(15));
        assert_eq!(decisions[&p(1)], StandbyCommit::Commit(20));
        assert_eq!(decisions[&p(2)], StandbyCommit::Commit(30));

        let rewound = BTreeSet::from([p(0)]);
        let decisions = standby_decisions(&plan, &current, &rewound);
        assert_eq!(decisions[&p(0)], StandbyCommit::Commit(10));
    }

    #[test]
    fn epoch_fencing_fails_closed() -> anyhow::Result<()> {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: crate::CheckpointSyncArgs,
        }
        let file = std::env::temp_dir().join(format!("cs-epoch-{}", std::process::id()));
        let cli = Cli::try_parse_from(
            [
                "x",
                "--group",
                "g",
                "--topics",
                "east.orders",
                "--from-region",
                "east",
                "--to-region",
                "west",
                "--from-bootstrap",
                "127.0.0.1:1",
                "--to-bootstrap",
                "127.0.0.1:2",
                "--sources",
                "east,west",
                "--epoch",
                "3",
                "--epoch-file",
            ]
            .into_iter()
            .chain([file.to_str().unwrap_or_default()]),
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        let sync = CheckpointSync::new(
            SyncConfig::from_args(&cli.args)?,
            Arc::new(Health::new()),
            runtime.handle().clone(),
        )?;
        let outcome = |content: Option<&str>| {
            let _ = std::fs::remove_file(&file);
            if let Some(c) = content {
                std::fs::write(&file, c).expect("write the epoch file");
            }
            sync.check_epoch().map_err(|e| e.category())
        };
        assert_eq!(outcome(Some("3")), Ok(()));
        assert_eq!(outcome(Some("4")), Err("Superseded"));
        assert_eq!(
            outcome(Some("2")),
            Err("EpochFile"),
            "an older epoch stops commits"
        );
        assert_eq!(
            outcome(Some("")),
            Err("EpochFile"),
            "an empty file stops commits"
        );
        assert_eq!(
            outcome(None),
            Err("EpochFile"),
            "a missing file stops commits"
        );
        let _ = std::fs::remove_file(&file);
        Ok(())
    }

    #[test]
    fn a_contradicting_checkpoint_is_counted_and_its_partition_refused() {
        use tributary_core::checkpoint::{CheckpointEntry, CheckpointRecord};
        use tributary_core::{OffsetCheckpoint, RouteOrigin, TopicNaming};
        let health = Health::new();
        let mut indexes = CheckpointIndexes::new(ThinningPolicy::default());
        let key = CheckpointKey::new(Route::new("east", "west"), "orders", 1);
        let feed = |indexes: &mut CheckpointIndexes, entry| {
            let record = CheckpointRecord {
                key: key.clone(),
                timestamp_ms: 0,
                entry,
            };
            let outcome = indexes.apply(&record);
            surface_outcome(indexes, &record, outcome, &health);
            outcome
        };
        feed(
            &mut indexes,
            CheckpointEntry::Checkpoint(OffsetCheckpoint::new(999, 7999)),
        );
        // West's topic was recreated: east's next record lands at 0.
        assert_eq!(
            feed(
                &mut indexes,
                CheckpointEntry::Checkpoint(OffsetCheckpoint::new(1000, 0))
            ),
            InsertOutcome::Contradiction
        );
        let metrics = health.metrics.encode();
        assert!(
            metrics.contains(
                r#"tributary_checkpoint_sync_checkpoint_contradictions_total{source_region="east",destination_region="west",topic="orders",partition="1"} 1"#
            ),
            "{metrics}"
        );

        let layout =
            AggregateLayout::new(TopicNaming::Identity).with_source_topic("east", "orders", 2);
        let committed = BTreeMap::from([(p(0), 0), (p(1), 500)]);
        let destination = BTreeMap::from([
            (p(0), LogOffsets { start: 0, end: 0 }),
            (
                p(1),
                LogOffsets {
                    start: 0,
                    end: 9_000,
                },
            ),
        ]);
        let translate_now = |indexes: &CheckpointIndexes| {
            translate(&TranslationRequest {
                group_id: "g",
                from_region: "east",
                to_region: "west",
                layout: &layout,
                checkpoints: indexes,
                committed: &committed,
                destination: &destination,
                observed: &BTreeMap::new(),
            })
        };
        let plan = translate_now(&indexes);
        let decisions = standby_decisions(&plan, &BTreeMap::new(), &BTreeSet::new());
        assert!(decisions.contains_key(&p(0)));
        assert!(
            !decisions.contains_key(&p(1)),
            "a contradicted partition is never committed"
        );
        let refused: Vec<_> = plan
            .contradicted()
            .map(|(partition, _)| partition)
            .collect();
        assert_eq!(refused, [p(1)]);

        // A restart origin for the route resolves it.
        assert_eq!(
            feed(
                &mut indexes,
                CheckpointEntry::Origin(RouteOrigin::new(1000, 0))
            ),
            InsertOutcome::Restarted
        );
        let plan = translate_now(&indexes);
        assert_eq!(plan.contradicted().count(), 0);
        assert!(standby_decisions(&plan, &BTreeMap::new(), &BTreeSet::new()).contains_key(&p(1)));
    }

    #[test]
    fn a_zombie_commit_is_held_out_of_the_translation_and_the_rest_translate() {
        use tributary_core::commit_epoch::commit_metadata;
        let commits = BTreeMap::from([
            (p(0), (10, commit_metadata(4, "east"))),
            (p(1), (99, commit_metadata(3, "east"))),
            (p(2), (30, String::new())),
            (p(3), (40, "some app's own metadata".to_string())),
            (p(4), (50, "tributary epoch=four region=east".to_string())),
            (p(5), (60, commit_metadata(5, "west"))),
        ]);
        let (translate, held) = screen_commits(commits.clone(), Some(4));
        assert_eq!(
            translate,
            BTreeMap::from([(p(0), 10), (p(2), 30), (p(3), 40)])
        );
        assert_eq!(
            held[&p(1)],
            HeldCommit {
                offset: 99,
                verdict: CommitVerdict::Zombie {
                    epoch: 3,
                    region: "east".into()
                }
            }
        );
        assert!(matches!(held[&p(4)].verdict, CommitVerdict::Hold { .. }));
        assert!(matches!(held[&p(5)].verdict, CommitVerdict::Hold { .. }));
        // A held partition gets no commit: B keeps what it has (here 7), never 99 or less.
        let plan = plan(&[(0, 10), (2, 30), (3, 40)]);
        let decisions = standby_decisions(&plan, &BTreeMap::from([(p(1), 7)]), &BTreeSet::new());
        assert!(!decisions.contains_key(&p(1)));
        // Without an epoch the sync translates everything, as before the convention.
        let (translate, held) = screen_commits(commits, None);
        assert_eq!(translate.len(), 6);
        assert!(held.is_empty());
    }

    #[test]
    fn errors_have_bounded_categories() {
        let e = SyncError::GroupActive {
            group: "g".into(),
            cluster: "west aggregate cluster".into(),
            members: 2,
        };
        assert_eq!(e.category(), "GroupActive");
        assert!(e.to_string().contains("west aggregate cluster"));
        let e: SyncError = KafkaError::Unreachable {
            cluster: "east aggregate cluster (127.0.0.1:1)".into(),
            detail: "x".into(),
        }
        .into();
        assert_eq!(e.category(), "Unreachable");
    }
}
