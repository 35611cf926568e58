//! The copy loop of one route ([`RouteReplicator`]): resolves the topics, prepares the
//! destination, reads the stored position, then copies records partition `p` → `p` until
//! it is stopped, the source's topics change, or an error ends the session (the
//! supervisor in [`RouteReplicator::run`] then retries with backoff).
//!
//! Position and checkpoints:
//! - `AtLeastOnce`: the source position is committed to the *source* cluster's group
//!   `tributary.route.<route>` only for records the destination acknowledged.
//! - `ExactlyOnce`: data and position are committed in one transaction on the
//!   *destination* cluster (group `tributary.route.<route>` there, keyed by the destination
//!   topic, which exists there whatever the naming), and read back from it on start.
//! - Checkpoints come from delivery reports (the exact destination offset of a source
//!   offset) and only name records that are durable (acknowledged, or committed in EOS).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};
use tributary_core::checkpoint::{self, CheckpointEntry, CheckpointKey, CheckpointRecord};
use tributary_core::dedupe::{HEADER_DESTINATION_CLUSTER, PROVENANCE_HEADERS, REPLICATOR_HEADERS};
use tributary_core::{OffsetCheckpoint, OffsetRange, RouteOrigin};
use tributary_kafka::{ClientSettings, KafkaAdmin, KafkaError, TopicSpec, classify};

use crate::config::{Delivery, RouteConfig};
use crate::http::Health;
use crate::metrics::{PartitionLabels, TopicLabels};

/// How long an exactly-once transaction collects records before it commits.
const TRANSACTION_INTERVAL: Duration = Duration::from_millis(100);
/// How often an at-least-once route commits its source position.
const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How often the source's topics are re-listed (new topics, grown partitions).
const TOPOLOGY_INTERVAL: Duration = Duration::from_secs(15);
/// How often they are re-listed while the source is unreachable: the answer that makes the
/// route ready again (an idle source sends no record that would).
const UNREACHABLE_RECHECK: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the source's end offsets are read (one batched request for every partition of
/// a worker): lag and stall detection that do not depend on the consumer fetching.
const SOURCE_END_INTERVAL: Duration = Duration::from_secs(5);

/// Why a copy session ended without an error.
#[derive(Debug)]
enum SessionEnd {
    Stopped,
    Restart(String),
}

/// Serves one route until stopped.
pub struct RouteReplicator {
    pub config: RouteConfig,
    pub health: Arc<Health>,
    pub stop: Arc<AtomicBool>,
    pub runtime: tokio::runtime::Handle,
}

impl RouteReplicator {
    /// Runs copy sessions until stopped; errors are logged, counted and retried with
    /// exponential backoff (1 s to 30 s).
    pub fn run(&self) {
        let mut backoff = Duration::from_secs(1);
        while !self.stop.load(Ordering::Relaxed) {
            self.health.progress.beat();
            match self.session() {
                Ok(SessionEnd::Stopped) => break,
                Ok(SessionEnd::Restart(reason)) => {
                    info!(route = %self.config.name, "restarting the copy session: {reason}");
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    self.health.ready.store(false, Ordering::Relaxed);
                    self.health.metrics.error(e.category());
                    error!(
                        route = %self.config.name,
                        category = e.category(),
                        "copy session failed, retrying in {backoff:?}: {e}"
                    );
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                        self.health.progress.beat();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    backoff = if matches!(e, KafkaError::Fenced { .. }) {
                        // Another instance owns the route now; do not fence it straight back.
                        Duration::from_secs(30)
                    } else {
                        (backoff * 2).min(Duration::from_secs(30))
                    };
                }
            }
        }
        self.health.ready.store(false, Ordering::Relaxed);
    }

    fn session(&self) -> Result<SessionEnd, KafkaError> {
        let cfg = &self.config;
        let source_admin = KafkaAdmin::new(&cfg.source)?;
        let dest_admin = KafkaAdmin::new(&cfg.dest)?;

        // 1. What to copy, and where.
        let source_cluster_id = self.runtime.block_on(source_admin.cluster_id())?;
        let dest_cluster_id = self.runtime.block_on(dest_admin.cluster_id())?;
        let ResolvedTopics {
            topics,
            missing,
            replication,
        } = self.runtime.block_on(resolve_topics(cfg, &source_admin))?;
        self.report_missing_topics(&missing);
        if topics.is_empty() {
            return Err(KafkaError::TopicMissing {
                cluster: cfg.source.name.clone(),
                topic: if missing.is_empty() {
                    cfg.pattern
                        .as_ref()
                        .map(|p| format!("(none matches {})", p.as_str()))
                        .unwrap_or_default()
                } else {
                    missing.join(", ")
                },
            });
        }
        // Durability like the source's, whatever the destination brokers' default.
        let source_replication = |topic: &str| {
            let rf = replication.get(topic).copied().unwrap_or(1).max(1);
            i32::try_from(rf).unwrap_or(i32::MAX)
        };
        for (topic, partitions) in &topics {
            self.health.progress.beat();
            let dest_topic = cfg.naming.aggregate_topic(&cfg.route.source_region, topic);
            let replication_factor = match cfg.replication_factor {
                Some(rf) => ReplicationFactor {
                    value: rf,
                    from: "from --replication-factor".into(),
                },
                None => ReplicationFactor {
                    value: source_replication(topic),
                    from: format!("from the source topic {topic:?}"),
                },
            };
            self.runtime.block_on(prepare_dest_topic(
                &dest_admin,
                &dest_topic,
                *partitions,
                &replication_factor,
            ))?;
        }
        self.health.progress.beat();
        let checkpoint_replication = cfg.replication_factor.unwrap_or_else(|| {
            topics
                .keys()
                .map(|t| source_replication(t))
                .max()
                .unwrap_or(1)
        });
        self.runtime.block_on(dest_admin.create_topic(&TopicSpec {
            name: cfg.checkpoint_topic.clone(),
            partitions: 1,
            replication_factor: Some(checkpoint_replication),
            configs: vec![
                ("cleanup.policy".into(), "delete".into()),
                (
                    "retention.ms".into(),
                    cfg.checkpoint_retention.as_millis().to_string(),
                ),
            ],
        }))?;

        // 2. Copy workers: partition sets copied in parallel, each with its own clients
        // (and transactional id). They start and stop together, so a partition never has
        // two writers: one ending (error, topic change) drains the others first.
        let total_partitions: usize = topics.values().sum();
        let workers = cfg.workers.clamp(1, total_partitions.max(1));
        let session_stop = AtomicBool::new(false);
        let results: Vec<Result<SessionEnd, KafkaError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|worker| {
                    let (topics, source_admin, dest_admin) = (&topics, &source_admin, &dest_admin);
                    let (source_cluster_id, dest_cluster_id, session_stop) =
                        (&source_cluster_id, &dest_cluster_id, &session_stop);
                    scope.spawn(move || {
                        let end = self.worker(
                            WorkerShare {
                                index: worker,
                                of: workers,
                            },
                            topics,
                            source_admin,
                            dest_admin,
                            ClusterIds {
                                source: source_cluster_id,
                                dest: dest_cluster_id,
                            },
                            session_stop,
                        );
                        session_stop.store(true, Ordering::Relaxed);
                        self.health.progress.set_stalled(worker, None);
                        end
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(KafkaError::Config {
                            cluster: cfg.dest.name.clone(),
                            detail: "a copy worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut end = SessionEnd::Stopped;
        for result in results {
            match result? {
                SessionEnd::Restart(reason) => end = SessionEnd::Restart(reason),
                SessionEnd::Stopped => {}
            }
        }
        Ok(end)
    }

    /// One worker of a session: copies the partitions of its share.
    fn worker(
        &self,
        share: WorkerShare,
        topics: &BTreeMap<String, usize>,
        source_admin: &KafkaAdmin,
        dest_admin: &KafkaAdmin,
        cluster_ids: ClusterIds<'_>,
        session_stop: &AtomicBool,
    ) -> Result<SessionEnd, KafkaError> {
        let cfg = &self.config;
        let mut routes = Vec::new();
        let mut slots = Vec::new();
        for (topic, partitions) in topics {
            let dest = cfg.naming.aggregate_topic(&cfg.route.source_region, topic);
            routes.push(TopicRoute {
                source: topic.clone(),
                dest,
                base: slots.len(),
            });
            for p in 0..*partitions as i32 {
                let mut slot = Slot::new(routes.len() - 1, p);
                slot.owned = slots.len() % share.of == share.index;
                slots.push(slot);
            }
        }
        let by_source: HashMap<String, usize> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.source.clone(), i))
            .collect();
        let by_dest: HashMap<String, usize> =
            routes.iter().map(|r| (r.dest.clone(), r.base)).collect();
        let ledger = Arc::new(DeliveryLedger {
            cluster: cfg.dest.name.clone(),
            by_dest,
            state: Mutex::new(LedgerState {
                slots: vec![Acked::default(); slots.len()],
                failure: None,
            }),
            health: self.health.clone(),
            reports: std::sync::atomic::AtomicU64::new(0),
        });
        let producer = self.create_producer(ledger.clone())?;
        let checkpoints = CheckpointWriter::new(cfg, self.health.clone())?;
        let consumer = self.create_source_consumer()?;
        let eos = cfg.delivery == Delivery::ExactlyOnce;
        let dest_group = if eos {
            // Fences any other instance of this route and aborts its open transaction,
            // so the position read below is final.
            producer
                .init_transactions(REQUEST_TIMEOUT)
                .map_err(|e| classify(&cfg.dest.name, "initialising transactions", None, e))?;
            Some(self.create_dest_group_consumer()?)
        } else {
            None
        };

        // 3. Where to start.
        self.health.progress.beat();
        let mut wanted = TopicPartitionList::new();
        for slot in slots.iter().filter(|s| s.owned) {
            let route = &routes[slot.route];
            let topic = if eos { &route.dest } else { &route.source };
            wanted.add_partition(topic, slot.partition);
        }
        let committed = match &dest_group {
            Some(group) => group.committed_offsets(wanted, REQUEST_TIMEOUT),
            None => consumer.committed_offsets(wanted, REQUEST_TIMEOUT),
        }
        .map_err(|e| {
            let cluster = if eos {
                &cfg.dest.name
            } else {
                &cfg.source.name
            };
            classify(cluster, "reading the route's committed position", None, e)
        })?;
        let mut assignment = TopicPartitionList::new();
        let mut fresh = TopicPartitionList::new();
        // Partitions of recreated source topics, whose stored position is replaced by the
        // new log's start before copying (ALO; EOS stores it with the first transaction).
        let mut restarted = TopicPartitionList::new();
        for route in &routes {
            self.health.progress.beat();
            let source_offsets = self
                .runtime
                .block_on(source_admin.partition_offsets(&route.source, &[]))?;
            let dest_offsets = self
                .runtime
                .block_on(dest_admin.partition_offsets(&route.dest, &[]))?;
            for slot in slots
                .iter_mut()
                .filter(|s| s.owned && routes[s.route].source == route.source)
            {
                let key_topic = if eos { &route.dest } else { &route.source };
                let stored = committed
                    .find_partition(key_topic, slot.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o),
                        _ => None,
                    });
                let source = source_offsets
                    .iter()
                    .find(|o| o.partition == slot.partition)
                    .copied();
                let (low, high) = source.map(|o| (o.start, o.end)).unwrap_or((0, 0));
                let start = match stored {
                    Some(position) if position < low => {
                        self.report_retention_gap(
                            &checkpoints,
                            route,
                            slot.partition,
                            position,
                            low,
                        );
                        low
                    }
                    Some(position) if position > high => {
                        // Beyond the end: the topic was recreated (a log never shrinks), and
                        // every record of the new log is new. Starting at the end would skip
                        // [low, high) without a trace.
                        warn!(
                            route = %cfg.name, topic = %route.source, partition = slot.partition,
                            "stored position {position} is beyond the source's end offset {high}: the topic was recreated; copying the new log from its start {low}"
                        );
                        restarted
                            .add_partition_offset(
                                &route.source,
                                slot.partition,
                                Offset::Offset(low),
                            )
                            .map_err(|e| classify(&cfg.source.name, "committing", None, e))?;
                        low
                    }
                    Some(position) => position,
                    None => {
                        let dest_end = dest_offsets
                            .iter()
                            .find(|o| o.partition == slot.partition)
                            .map(|o| o.end)
                            .unwrap_or(0);
                        let origin = RouteOrigin::new(low as u64, dest_end as u64);
                        checkpoints.write(
                            &cfg.route,
                            &route.source,
                            slot.partition,
                            CheckpointEntry::Origin(origin),
                        );
                        slot.origin = Some(origin);
                        fresh
                            .add_partition_offset(
                                &route.source,
                                slot.partition,
                                Offset::Offset(low),
                            )
                            .map_err(|e| classify(&cfg.source.name, "committing", None, e))?;
                        low
                    }
                };
                slot.next_offset = start;
                slot.committed = stored.unwrap_or(-1).max(start);
                if stored != Some(start) {
                    // Store the (new) start (after a retention gap, or the recreated log's
                    // start) so a restart neither reports the gap again nor starts over.
                    slot.committed = -1;
                }
                assignment
                    .add_partition_offset(&route.source, slot.partition, Offset::Offset(start))
                    .map_err(|e| classify(&cfg.source.name, "assigning partitions", None, e))?;
            }
        }
        checkpoints.flush();
        if !eos && fresh.count() > 0 {
            // A stored position from now on: a crash before the first regular commit must
            // not make the next start write a second origin above copies already made.
            consumer
                .commit(&fresh, CommitMode::Sync)
                .map_err(|e| classify(&cfg.source.name, "storing the start position", None, e))?;
        }
        if !eos && restarted.count() > 0 {
            // Replaces the recreated log's stale position, which would stay beyond its end
            // (and restart it from its start again) until the new log outgrew it.
            consumer
                .commit(&restarted, CommitMode::Sync)
                .map_err(|e| classify(&cfg.source.name, "storing the start position", None, e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| classify(&cfg.source.name, "assigning partitions", None, e))?;
        info!(
            route = %cfg.name,
            delivery = ?cfg.delivery,
            worker = share.index,
            topics = routes.len(),
            partitions = slots.iter().filter(|s| s.owned).count(),
            "copying {} → {}",
            cfg.source.name,
            cfg.dest.name
        );
        self.health.ready.store(true, Ordering::Relaxed);
        self.health.progress.beat();

        let mut session = Session {
            replicator: self,
            routes,
            by_source,
            slots,
            consumer: Arc::new(consumer),
            producer,
            ledger,
            checkpoints,
            dest_group,
            source_cluster_id: cluster_ids.source.to_owned(),
            dest_cluster_id: cluster_ids.dest.to_owned(),
            floors: FloorProbe::start(&cfg.dest, None)?,
            source_ends: FloorProbe::start(
                &cfg.source,
                Some(&format!("{}.stall-check", cfg.group_id())),
            )?,
            source_ends_asked: None,
            worker: share.index,
            fault: TestFault::from_env(),
            refresh_positions: false,
            stall_reported: false,
            session_stop,
        };
        let end = session.copy(source_admin, topics);
        if end.is_err() && eos {
            // Stopping: keep within the drain; the next instance's `init_transactions` (or
            // `transaction.timeout.ms`) aborts what is left open.
            let abort = if self.stop.load(Ordering::Relaxed) {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            };
            let _ = session.producer.abort_transaction(abort);
        }
        end
    }

    /// A `--topics` entry the source lacks does not stop the others: it is named in a
    /// warning at every re-list and in `topic_missing{topic}` (1 while missing), and copied
    /// from the re-list that finds it.
    fn report_missing_topics(&self, missing: &[String]) {
        let cfg = &self.config;
        for topic in &cfg.topics {
            let gone = missing.contains(topic);
            self.health
                .metrics
                .topic_missing
                .get_or_create(&TopicLabels {
                    topic: topic.clone(),
                })
                .set(i64::from(gone));
        }
        if !missing.is_empty() {
            self.health.metrics.error("TopicMissing");
            warn!(
                route = %cfg.name,
                missing = %missing.join(","),
                "{}: --topics {} not found; copying the other topics, and these once they exist (topics are re-listed every {:?})",
                cfg.source.name,
                missing.join(", "),
                TOPOLOGY_INTERVAL
            );
        }
    }

    fn report_retention_gap(
        &self,
        checkpoints: &CheckpointWriter,
        route: &TopicRoute,
        partition: i32,
        from: i64,
        to: i64,
    ) {
        let cfg = &self.config;
        warn!(
            route = %cfg.name,
            topic = %route.source,
            partition,
            from,
            to,
            "retention gap: source records [{from}, {to}) of {}/{partition} were deleted before they were copied; they are lost to the aggregate",
            route.source
        );
        self.health
            .metrics
            .retention_gap_records
            .get_or_create(&PartitionLabels::new(&route.source, partition))
            .inc_by((to - from) as u64);
        checkpoints.write(
            &cfg.route,
            &route.source,
            partition,
            CheckpointEntry::RetentionGap(OffsetRange {
                from: from as u64,
                to: to as u64,
            }),
        );
    }

    fn create_producer(&self, ledger: Arc<DeliveryLedger>) -> Result<RouteProducer, KafkaError> {
        let cfg = &self.config;
        let mut config = cfg.dest.client_config()?;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("batch.size", cfg.batch_bytes.to_string())
            .set(
                "message.max.bytes",
                cfg.batch_bytes.max(1_000_000).to_string(),
            )
            .set("compression.type", cfg.compression)
            .set("queue.buffering.max.messages", "500000")
            .set(
                "queue.buffering.max.kbytes",
                cfg.producer_buffer_kbytes.to_string(),
            )
            .set("statistics.interval.ms", "0");
        if config.get("socket.timeout.ms").is_none() {
            // librdkafka's transactional calls wait for their request whatever their own
            // timeout: with the default (60 s) a destination that stops answering held
            // `send_offsets_to_transaction`, and a SIGTERM, past the pod's grace period.
            config.set("socket.timeout.ms", REQUEST_TIMEOUT.as_millis().to_string());
        }
        if cfg.delivery == Delivery::ExactlyOnce {
            config
                .set("transactional.id", cfg.transactional_id())
                .set("transaction.timeout.ms", "60000");
        }
        config
            .create_with_context(LedgerContext(ledger))
            .map_err(|e| classify(&cfg.dest.name, "creating the producer", None, e))
    }

    fn create_source_consumer(&self) -> Result<BaseConsumer<LoggingContext>, KafkaError> {
        let cfg = &self.config;
        let mut config = cfg.source.client_config()?;
        config
            .set("group.id", cfg.group_id())
            // At-least-once: what `commit_source_position` stores, committed every
            // COMMIT_INTERVAL and again after a refusal. Exactly-once stores nothing here.
            .set(
                "enable.auto.commit",
                (cfg.delivery == Delivery::AtLeastOnce).to_string(),
            )
            .set(
                "auto.commit.interval.ms",
                COMMIT_INTERVAL.as_millis().to_string(),
            )
            .set("enable.auto.offset.store", "false")
            // Out of range must not silently jump: it is a retention gap to report.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "100")
            .set("max.partition.fetch.bytes", "4194304")
            .set(
                "queued.max.messages.kbytes",
                cfg.consumer_queue_kbytes.to_string(),
            )
            // librdkafka ≥ 2.4 pauses a partition's fetching for 1 s once its local queue is
            // full; a replicator drains that queue within milliseconds, so 1 s halved our
            // throughput (measured: 3M × 100 B in 11.7 s → 6.3 s).
            .set("fetch.queue.backoff.ms", "10")
            .set("statistics.interval.ms", "2000");
        config
            .create_with_context(LoggingContext::new(&cfg.source.name))
            .map_err(|e| classify(&cfg.source.name, "creating the consumer", None, e))
    }

    fn create_dest_group_consumer(&self) -> Result<BaseConsumer<LoggingContext>, KafkaError> {
        let cfg = &self.config;
        let mut config = cfg.dest.client_config()?;
        config
            .set("group.id", cfg.group_id())
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        config
            .create_with_context(LoggingContext::new(&cfg.dest.name))
            .map_err(|e| classify(&cfg.dest.name, "creating the position reader", None, e))
    }
}

/// The source topics of a route as the source lists them.
struct ResolvedTopics {
    /// Topics to copy, with their partition counts.
    topics: BTreeMap<String, usize>,
    /// `--topics` entries the source does not have (yet).
    missing: Vec<String>,
    /// Replication factor of each topic to copy (not part of what a re-list compares).
    replication: BTreeMap<String, usize>,
}

/// Source topics to copy, with their partition counts, and the named ones that are missing.
async fn resolve_topics(
    cfg: &RouteConfig,
    admin: &KafkaAdmin,
) -> Result<ResolvedTopics, KafkaError> {
    let all = admin.list_topics(None).await?;
    let mut topics = BTreeMap::new();
    let mut missing = Vec::new();
    let mut replication = BTreeMap::new();
    for name in &cfg.topics {
        match all.iter().find(|t| &t.name == name) {
            Some(found) => {
                topics.insert(found.name.clone(), found.partitions);
                replication.insert(found.name.clone(), found.replication_factor);
            }
            None => missing.push(name.clone()),
        }
    }
    if let Some(pattern) = &cfg.pattern {
        for t in all.iter().filter(|t| pattern.is_match(&t.name)) {
            // Never copy our own bookkeeping, even if a pattern matches it.
            if t.name != cfg.checkpoint_topic {
                topics.insert(t.name.clone(), t.partitions);
                replication.insert(t.name.clone(), t.replication_factor);
            }
        }
    }
    Ok(ResolvedTopics {
        topics,
        missing,
        replication,
    })
}

/// The replication factor a destination topic is created with, and where it came from.
struct ReplicationFactor {
    value: i32,
    /// For messages: "from --replication-factor" or "from the source topic ...".
    from: String,
}

/// Creates the destination topic with the source's partition count, or grows it; refuses
/// when it has fewer partitions and cannot grow.
async fn prepare_dest_topic(
    admin: &KafkaAdmin,
    topic: &str,
    partitions: usize,
    replication_factor: &ReplicationFactor,
) -> Result<(), KafkaError> {
    match admin.describe_topic(topic).await? {
        None => {
            admin
                .create_topic(&TopicSpec {
                    name: topic.to_owned(),
                    partitions,
                    replication_factor: Some(replication_factor.value),
                    configs: vec![],
                })
                .await
                .map_err(|e| match e {
                    KafkaError::Kafka { cluster, detail, .. } => KafkaError::Config {
                        detail: format!(
                            "cannot create destination topic {topic:?} with replication factor {} ({}): {detail}; set --replication-factor to what the destination cluster can hold",
                            replication_factor.value, replication_factor.from
                        ),
                        cluster,
                    },
                    other => other,
                })?;
            info!(
                topic,
                partitions,
                replication_factor = replication_factor.value,
                "created destination topic"
            );
            Ok(())
        }
        Some(existing) if existing.partitions < partitions => {
            admin.grow_partitions(topic, partitions).await?;
            info!(
                topic,
                from = existing.partitions,
                to = partitions,
                "grew destination topic"
            );
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Kafka cluster ids of the route's two clusters.
#[derive(Clone, Copy, Debug)]
struct ClusterIds<'a> {
    source: &'a str,
    dest: &'a str,
}

/// Worker `index` of `of` copies the partitions whose slot number ≡ `index` (mod `of`);
/// slots are numbered over the sorted topics, partitions in order, so the share is
/// deterministic for a given topic set.
#[derive(Clone, Copy, Debug)]
struct WorkerShare {
    index: usize,
    of: usize,
}

struct TopicRoute {
    source: String,
    dest: String,
    /// Index of partition 0's slot.
    base: usize,
}

/// Main-thread state of one partition.
struct Slot {
    /// Whether this worker copies the partition (every worker keeps every slot so that
    /// indexes are shared; the others stay inert).
    owned: bool,
    route: usize,
    partition: i32,
    partition_text: String,
    /// Next source offset to consume (past copied and skipped records).
    next_offset: i64,
    /// Records handed to the producer in this session.
    produced: u64,
    /// Position last committed (ALO: to the source group; EOS: in a transaction).
    committed: i64,
    /// Durable (acknowledged / committed) copy, for checkpoints.
    durable: Acked,
    checkpointed_source: i64,
    first_checkpointed: bool,
    /// The last checkpoint written in this session (re-emitted with a floor while idle).
    last_checkpoint: Option<OffsetCheckpoint>,
    /// The floor last re-emitted for the idle partition, and when: the same floor again is
    /// written only once the heartbeat is due (checkpoint format v2).
    last_floor: Option<(u64, Instant)>,
    /// The origin written at the start of this session (fresh partitions only).
    origin: Option<RouteOrigin>,
    /// Source timestamp of the last consumed record.
    last_timestamp_ms: i64,
    /// The source's end (last stable) offset as last read by the session (-1: not yet).
    source_end: i64,
    /// `next_offset` when the partition last moved; the source end up to which a reader
    /// found nothing to read after it (markers, aborted records: caught up); since when
    /// the source's end has been beyond it with no move (see `check_progress`).
    progress_offset: i64,
    invisible_end: i64,
    waiting_since: Option<Instant>,
    skipped: u64,
    reported_copied: u64,
    reported_bytes: u64,
}

impl Slot {
    fn new(route: usize, partition: i32) -> Self {
        Self {
            owned: true,
            route,
            partition,
            partition_text: partition.to_string(),
            next_offset: 0,
            produced: 0,
            committed: -1,
            durable: Acked::default(),
            checkpointed_source: -1,
            first_checkpointed: false,
            last_checkpoint: None,
            last_floor: None,
            origin: None,
            last_timestamp_ms: 0,
            source_end: -1,
            progress_offset: -1,
            invisible_end: -1,
            waiting_since: None,
            skipped: 0,
            reported_copied: 0,
            reported_bytes: 0,
        }
    }
}

/// What delivery reports told us about one partition.
#[derive(Clone, Copy, Debug)]
struct Acked {
    delivered: u64,
    copied_bytes: u64,
    /// Last acknowledged source offset and where it landed (-1: none yet).
    source: i64,
    dest: i64,
    /// The acknowledged source offset before `source` in this session.
    previous_source: Option<i64>,
    /// The first record acknowledged in this session (source, destination).
    first: Option<(i64, i64)>,
}

impl Default for Acked {
    fn default() -> Self {
        Self {
            delivered: 0,
            copied_bytes: 0,
            source: -1,
            dest: -1,
            previous_source: None,
            first: None,
        }
    }
}

struct LedgerState {
    slots: Vec<Acked>,
    failure: Option<KafkaError>,
}

/// Shared with the producer's delivery callback (which runs inside `poll`/`flush` on the
/// copy thread, so the lock is uncontended).
struct DeliveryLedger {
    cluster: String,
    by_dest: HashMap<String, usize>,
    state: Mutex<LedgerState>,
    health: Arc<Health>,
    /// Delivery reports served so far (tells [`serve_deliveries`] when to stop).
    reports: std::sync::atomic::AtomicU64,
}

impl DeliveryLedger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct LedgerContext(Arc<DeliveryLedger>);

/// Serves every pending delivery report (`poll(0)` serves at most one event, and reports
/// left unserved keep counting against the producer's queue limits). True if any was.
fn serve_deliveries(producer: &RouteProducer, ledger: &DeliveryLedger) -> bool {
    let mut served = false;
    loop {
        let before = ledger.reports.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if ledger.reports.load(Ordering::Relaxed) == before {
            return served;
        }
        served = true;
    }
}

/// `BaseProducer<LedgerContext>` under a shorter name.
type RouteProducer = BaseProducer<LedgerContext>;

impl ClientContext for LedgerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(&self.0.cluster, level, fac, message);
    }
    fn error(&self, error: RdError, reason: &str) {
        warn!(cluster = %self.0.cluster, "producer: {error}: {reason}");
    }
}

impl ProducerContext for LedgerContext {
    /// The source offset of the record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, source_offset: usize) {
        let ledger = &self.0;
        ledger.reports.fetch_add(1, Ordering::Relaxed);
        let (message, error) = match result {
            Ok(m) => (m, None),
            Err((e, m)) => (m, Some(e)),
        };
        let Some(&base) = ledger.by_dest.get(message.topic()) else {
            return;
        };
        let index = base + message.partition().max(0) as usize;
        let mut state = ledger.lock();
        if let Some(e) = error {
            if state.failure.is_none() {
                state.failure = Some(classify(
                    &ledger.cluster,
                    &format!(
                        "writing {}/{} (source offset {source_offset})",
                        message.topic(),
                        message.partition()
                    ),
                    Some(message.topic()),
                    e.clone(),
                ));
            }
            return;
        }
        let Some(slot) = state.slots.get_mut(index) else {
            return;
        };
        slot.delivered += 1;
        slot.copied_bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
        if slot.source >= 0 {
            slot.previous_source = Some(slot.source);
        }
        slot.source = source_offset as i64;
        slot.dest = message.offset();
        if slot.first.is_none() {
            slot.first = Some((slot.source, slot.dest));
        }
        drop(state);
        // A sample is enough for the histogram, and reading the clock per record is not free.
        if ledger.reports.load(Ordering::Relaxed).is_multiple_of(16)
            && let Some(ts) = message.timestamp().to_millis()
        {
            let latency = (now_ms() - ts).max(0) as f64 / 1000.0;
            ledger
                .health
                .metrics
                .replication_latency_seconds
                .observe(latency);
        }
    }
}

/// Forwards librdkafka's warnings and errors to our logs, naming the cluster.
fn forward_log(cluster: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(cluster, "librdkafka {fac}: {message}"),
        RDKafkaLogLevel::Warning => warn!(cluster, "librdkafka {fac}: {message}"),
        _ => {}
    }
}

pub struct LoggingContext {
    cluster: String,
    /// Source high watermarks from librdkafka's statistics (consumer only): lag without
    /// extra requests.
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// When a refused automatic commit was last logged (consumer only): once per
    /// `COMMIT_FAILURE_LOG_INTERVAL` while they keep failing every 200 ms.
    commit_failure_logged: Mutex<Option<Instant>>,
}

const COMMIT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

impl LoggingContext {
    fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            high_watermarks: Mutex::default(),
            commit_failure_logged: Mutex::default(),
        }
    }

    fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
        let map = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(-1)
    }
}

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        forward_log(&self.cluster, level, fac, message);
    }
    fn error(&self, error: RdError, reason: &str) {
        warn!(cluster = %self.cluster, "{error}: {reason}");
    }
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut map = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    map.insert((topic.clone(), partition), p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for LoggingContext {
    /// The outcome of an automatic commit (served by `poll`); librdkafka sends a refused
    /// position again with the next one, so this only reports.
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        let partition_error = offsets.elements().iter().find_map(|e| e.error().err());
        let why = match (&result, partition_error) {
            (Err(RdError::ConsumerCommit(RDKafkaErrorCode::NoOffset)), _) => return,
            (Err(e), _) => e.to_string(),
            (Ok(()), Some(e)) => e.to_string(),
            (Ok(()), None) => return,
        };
        let mut logged = self
            .commit_failure_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= COMMIT_FAILURE_LOG_INTERVAL) {
            *logged = Some(Instant::now());
            warn!(
                cluster = %self.cluster,
                "committing the route's position failed ({why}); it is committed again every {COMMIT_INTERVAL:?} until the cluster takes it (does another consumer use the route's group?)"
            );
        }
    }
}

impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Checkpoint writes not yet acknowledged, and since when one has been owed: what
/// `checkpoint_age_seconds` reports (a route whose checkpoints fail or hang shows a growing
/// age; an idle route that owes nothing shows 0, however long since its last heartbeat).
#[derive(Default)]
struct CheckpointDebt {
    in_flight: std::sync::atomic::AtomicI64,
    /// ms since the epoch of the oldest write not followed by an acknowledgement; 0: none.
    owed_since_ms: std::sync::atomic::AtomicI64,
}

impl CheckpointDebt {
    fn sent(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_flight.fetch_add(1, Relaxed);
        let _ = self
            .owed_since_ms
            .compare_exchange(0, now_ms(), Relaxed, Relaxed);
    }

    fn answered(&self, acknowledged: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let left = self.in_flight.fetch_sub(1, Relaxed) - 1;
        // A failed write stays owed until a later one is acknowledged.
        if acknowledged && left <= 0 {
            self.owed_since_ms.store(0, Relaxed);
        }
    }

    fn age(&self) -> Duration {
        let since = self
            .owed_since_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if since == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(now_ms().saturating_sub(since).max(0) as u64)
        }
    }
}

/// The checkpoint producer's context: logs like [`LoggingContext`] and settles the debt.
struct CheckpointContext {
    logging: LoggingContext,
    debt: Arc<CheckpointDebt>,
    health: Arc<Health>,
}

impl ClientContext for CheckpointContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.logging.log(level, fac, message);
    }
    fn error(&self, error: RdError, reason: &str) {
        self.logging.error(error, reason);
    }
}

impl ProducerContext for CheckpointContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.debt.answered(true),
            Err((e, m)) => {
                self.debt.answered(false);
                self.health.metrics.checkpoint_delivery_failures.inc();
                self.health.metrics.error("Checkpoint");
                warn!(cluster = %self.logging.cluster, topic = m.topic(), "checkpoint write failed: {e}");
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes checkpoint-topic records (plain idempotent producer on the destination).
struct CheckpointWriter {
    producer: BaseProducer<CheckpointContext>,
    topic: String,
    health: Arc<Health>,
    debt: Arc<CheckpointDebt>,
}

impl CheckpointWriter {
    fn new(cfg: &RouteConfig, health: Arc<Health>) -> Result<Self, KafkaError> {
        let mut config = cfg.dest.client_config()?;
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        let debt = Arc::new(CheckpointDebt::default());
        let producer = config
            .create_with_context(CheckpointContext {
                logging: LoggingContext::new(&cfg.dest.name),
                debt: debt.clone(),
                health: health.clone(),
            })
            .map_err(|e| classify(&cfg.dest.name, "creating the checkpoint producer", None, e))?;
        Ok(Self {
            producer,
            topic: cfg.checkpoint_topic.clone(),
            health,
            debt,
        })
    }

    fn write(
        &self,
        route: &tributary_core::Route,
        topic: &str,
        partition: i32,
        entry: CheckpointEntry,
    ) {
        let record = CheckpointRecord {
            key: CheckpointKey::new(route.clone(), topic, partition as u32),
            timestamp_ms: now_ms(),
            entry,
        };
        let encoded = match checkpoint::encode(&record) {
            Ok(encoded) => encoded,
            Err(e) => {
                error!(
                    topic,
                    partition, "refusing to write an invalid checkpoint: {e}"
                );
                return;
            }
        };
        let mut next = BaseRecord::to(&self.topic)
            .key(&encoded.key)
            .payload(&encoded.value);
        loop {
            match self.producer.send(next) {
                Ok(()) => {
                    self.debt.sent();
                    break;
                }
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::from_millis(5));
                    self.health.progress.beat();
                    next = back;
                }
                Err((e, _)) => {
                    self.health.metrics.error("Checkpoint");
                    warn!(topic = %self.topic, "checkpoint not written: {e}");
                    return;
                }
            }
        }
        self.health.metrics.checkpoints_written.inc();
        self.producer.poll(Duration::ZERO);
    }

    fn flush(&self) {
        if let Err(e) = self.producer.flush(REQUEST_TIMEOUT) {
            self.health.metrics.error("Checkpoint");
            warn!(topic = %self.topic, "checkpoints not flushed: {e}");
        }
    }
}

/// What became of one source record handed to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handoff {
    /// Queued for the destination, or skipped as a copy: the position moved past it.
    Taken,
    /// Left for the next run: a stop was asked for while the producer's queue was full
    /// (the destination takes nothing); the position stays at it.
    Left,
    /// The queue has been full for a second: ask again after the loop's own upkeep.
    QueueFull,
}

struct Session<'a> {
    replicator: &'a RouteReplicator,
    routes: Vec<TopicRoute>,
    by_source: HashMap<String, usize>,
    slots: Vec<Slot>,
    consumer: Arc<BaseConsumer<LoggingContext>>,
    producer: RouteProducer,
    ledger: Arc<DeliveryLedger>,
    checkpoints: CheckpointWriter,
    dest_group: Option<BaseConsumer<LoggingContext>>,
    source_cluster_id: String,
    /// Stamped on every copy: loop prevention recognises copies by it.
    dest_cluster_id: String,
    floors: FloorProbe,
    /// Reads the source's end offsets (last stable offsets) every `SOURCE_END_INTERVAL`.
    source_ends: FloorProbe,
    /// When the source's end offsets were last asked for (lag, stall check).
    source_ends_asked: Option<Instant>,
    /// This worker's index (its stall is reported under it).
    worker: usize,
    fault: TestFault,
    /// EOS: the next transaction commits every position, moved or not (keepalive).
    refresh_positions: bool,
    /// A stall was logged (logged once, not at every end-offset answer).
    stall_reported: bool,
    /// Set when another worker of the session ended: drain and end too.
    session_stop: &'a AtomicBool,
}

/// Up to 20 decimal digits of a non-negative offset, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

impl Session<'_> {
    fn cfg(&self) -> &RouteConfig {
        &self.replicator.config
    }

    fn stopping(&self) -> bool {
        self.replicator.stop.load(Ordering::Relaxed) || self.session_stop.load(Ordering::Relaxed)
    }

    fn copy(
        &mut self,
        source_admin: &KafkaAdmin,
        topics: &BTreeMap<String, usize>,
    ) -> Result<SessionEnd, KafkaError> {
        let eos = self.cfg().delivery == Delivery::ExactlyOnce;
        let checkpoint_interval = self.cfg().checkpoint_interval;
        let mut last_commit = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_topology = Instant::now();
        let mut in_transaction = false;
        let mut transaction_records = 0u64;
        let mut transaction_started = Instant::now();
        let mut stats_at = Instant::now();
        let mut last_keepalive = Instant::now();
        let keepalive = self.cfg().position_keepalive;

        let end = loop {
            self.replicator.health.progress.beat();
            if self.stopping() {
                break SessionEnd::Stopped;
            }
            if eos && !in_transaction {
                self.producer.begin_transaction().map_err(|e| {
                    classify(&self.cfg().dest.name, "beginning a transaction", None, e)
                })?;
                in_transaction = true;
                transaction_records = 0;
                transaction_started = Instant::now();
            }
            // Copy what has arrived (bounded so the bookkeeping below keeps its pace).
            let mut batch: u64 = 0;
            let consumer = self.consumer.clone();
            while batch < 10_000 {
                let timeout = if batch == 0 {
                    Duration::from_millis(50)
                } else {
                    Duration::ZERO
                };
                match consumer.poll(timeout) {
                    None => break,
                    Some(Ok(message)) => {
                        if batch == 0 && !self.replicator.health.ready.load(Ordering::Relaxed) {
                            self.replicator.health.ready.store(true, Ordering::Relaxed);
                        }
                        let handoff = loop {
                            match self.copy_record(&message)? {
                                Handoff::QueueFull => self.while_destination_full(),
                                handoff => break handoff,
                            }
                        };
                        if handoff == Handoff::Left {
                            // Stopping while the destination takes nothing: drain now.
                            break;
                        }
                        batch += 1;
                        self.fault
                            .after_record(&self.consumer, &self.replicator.stop);
                        if batch.is_multiple_of(1024) {
                            serve_deliveries(&self.producer, &self.ledger);
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(end) = self.consumer_error(e)? {
                            return Ok(end);
                        }
                        break;
                    }
                }
            }
            transaction_records += batch;
            serve_deliveries(&self.producer, &self.ledger);
            if let Some(failure) = self.ledger.lock().failure.take() {
                return Err(failure);
            }
            while let Some(floors) = self.floors.answered() {
                for floor in floors {
                    self.write_floor(floor);
                }
            }
            if self
                .source_ends_asked
                .is_none_or(|at| at.elapsed() >= SOURCE_END_INTERVAL)
            {
                self.source_ends_asked = Some(Instant::now());
                self.ask_source_ends();
            }
            while let Some(ends) = self.source_ends.answered() {
                self.check_progress(ends);
            }

            if last_keepalive.elapsed() >= keepalive {
                // Positions that did not move are committed again, or Kafka expires them
                // (`offsets.retention.minutes` after their last commit).
                last_keepalive = Instant::now();
                if eos {
                    self.refresh_positions = true;
                } else {
                    self.keep_source_positions_alive();
                }
            }
            if eos {
                if transaction_started.elapsed() >= TRANSACTION_INTERVAL {
                    if transaction_records > 0 || self.position_moved() || self.refresh_positions {
                        self.commit_transaction(REQUEST_TIMEOUT)?;
                        in_transaction = false;
                    } else {
                        transaction_started = Instant::now();
                    }
                }
            } else if last_commit.elapsed() >= COMMIT_INTERVAL {
                self.commit_source_position(CommitMode::Async)?;
                last_commit = Instant::now();
            }
            if last_checkpoint.elapsed() >= checkpoint_interval {
                self.write_checkpoints();
                last_checkpoint = Instant::now();
            }
            if stats_at.elapsed() >= Duration::from_secs(1) {
                self.update_metrics();
                stats_at = Instant::now();
            }
            let ready = self.replicator.health.ready.load(Ordering::Relaxed);
            let recheck = if ready {
                TOPOLOGY_INTERVAL
            } else {
                UNREACHABLE_RECHECK
            };
            if last_topology.elapsed() >= recheck {
                last_topology = Instant::now();
                match self
                    .replicator
                    .runtime
                    .block_on(resolve_topics(self.cfg(), source_admin))
                {
                    Ok(now) if &now.topics != topics => {
                        break SessionEnd::Restart(format!(
                            "source topics changed: {topics:?} → {:?}",
                            now.topics
                        ));
                    }
                    Ok(now) => {
                        self.replicator.report_missing_topics(&now.missing);
                        if !ready {
                            // The source answers again; the assigned consumer resumes by
                            // itself, with or without new records to show for it.
                            self.replicator.health.ready.store(true, Ordering::Relaxed);
                            info!(route = %self.cfg().name, "{} is reachable again: ready", self.cfg().source.name);
                        }
                    }
                    Err(e) => {
                        self.replicator.health.metrics.error(e.category());
                        warn!("could not re-list source topics: {e}");
                    }
                }
            }
        };

        // Drain: no more fetching; flush, commit, final checkpoint — within the drain
        // timeout, also when the destination does not answer (then only what it
        // acknowledged counts, and the final checkpoints, which could not land, are skipped).
        let drain = self.cfg().drain_timeout;
        self.replicator.health.progress.beat();
        info!(route = %self.cfg().name, "draining in-flight records (up to {drain:?})");
        if eos {
            if in_transaction {
                self.commit_transaction(drain)?;
            }
        } else {
            let flushed = self.producer.flush(drain);
            if let Some(failure) = self.ledger.lock().failure.take() {
                return Err(failure);
            }
            // Only up to what the destination acknowledged (see commit_source_position).
            self.commit_source_position(CommitMode::Sync)?;
            if let Err(e) = flushed {
                warn!(
                    route = %self.cfg().name,
                    "{} did not acknowledge every in-flight record within {drain:?} ({e}): committed the position of the acknowledged ones; the rest are copied again by the next run; final checkpoints skipped",
                    self.cfg().dest.name
                );
                self.update_metrics();
                return Ok(end);
            }
        }
        self.write_checkpoints();
        self.checkpoints.flush();
        self.update_metrics();
        info!(route = %self.cfg().name, "final position committed and checkpoint written");
        Ok(end)
    }

    /// Hands one source record to the producer (or skips it), waiting for room in its
    /// queue up to a second at a time (`Handoff::QueueFull`: ask again).
    fn copy_record(&mut self, message: &BorrowedMessage<'_>) -> Result<Handoff, KafkaError> {
        let Some(&route_index) = self.by_source.get(message.topic()) else {
            return Ok(Handoff::Taken);
        };
        let route = &self.routes[route_index];
        let index = route.base + message.partition() as usize;
        let slot = &mut self.slots[index];
        let offset = message.offset();
        slot.next_offset = offset + 1;
        if let Some(ts) = message.timestamp().to_millis() {
            slot.last_timestamp_ms = ts;
        }
        let headers = message.headers();
        let source_cluster = self.source_cluster_id.as_bytes();
        if let Some(headers) = headers
            && headers
                .iter()
                .any(|h| h.key == HEADER_DESTINATION_CLUSTER && h.value == Some(source_cluster))
        {
            // A copy some route wrote into the cluster we read: never again (no loops).
            // Provenance naming another cluster was passed through by an application
            // (`tributary_core::dedupe::is_copy_in`): new data, copied below.
            slot.skipped += 1;
            return Ok(Handoff::Taken);
        }
        let mut copy = OwnedHeaders::new_with_capacity(
            headers.map_or(0, |h| h.count()) + REPLICATOR_HEADERS.len(),
        );
        if let Some(headers) = headers {
            // Passed-through provenance is replaced by this copy's own (one value each).
            for h in headers
                .iter()
                .filter(|h| !REPLICATOR_HEADERS.contains(&h.key))
            {
                copy = copy.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut digits = [0u8; 20];
        let region = self.replicator.config.route.source_region.as_bytes();
        copy = copy
            .insert(Header {
                key: PROVENANCE_HEADERS[0],
                value: Some(region),
            })
            .insert(Header {
                key: PROVENANCE_HEADERS[1],
                value: Some(self.source_cluster_id.as_bytes()),
            })
            .insert(Header {
                key: PROVENANCE_HEADERS[2],
                value: Some(route.source.as_bytes()),
            })
            .insert(Header {
                key: PROVENANCE_HEADERS[3],
                value: Some(slot.partition_text.as_bytes()),
            })
            .insert(Header {
                key: PROVENANCE_HEADERS[4],
                value: Some(decimal(offset as u64, &mut digits)),
            })
            .insert(Header {
                key: HEADER_DESTINATION_CLUSTER,
                value: Some(self.dest_cluster_id.as_bytes()),
            });

        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&route.dest, offset as usize)
                .partition(slot.partition)
                .headers(copy);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(ts) = message.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        let waiting = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Delivered records still count until their report is served; serve
                    // them, and wait for the broker only if that freed nothing.
                    if !serve_deliveries(&self.producer, &self.ledger) {
                        if self.replicator.stop.load(Ordering::Relaxed)
                            || self.session_stop.load(Ordering::Relaxed)
                        {
                            // A full queue that frees nothing: the destination is not
                            // answering. Waiting here would ignore the drain timeout.
                            slot.next_offset = offset;
                            return Ok(Handoff::Left);
                        }
                        if waiting.elapsed() >= Duration::from_secs(1) {
                            slot.next_offset = offset;
                            return Ok(Handoff::QueueFull);
                        }
                        self.producer.poll(Duration::from_millis(1));
                    }
                    // Waiting for the destination is not a wedge.
                    self.replicator.health.progress.beat();
                    record = back;
                }
                Err((e, _)) => {
                    return Err(classify(
                        &self.replicator.config.dest.name,
                        &format!(
                            "writing {}/{} (source offset {offset})",
                            route.dest, slot.partition
                        ),
                        Some(&route.dest),
                        e,
                    ));
                }
            }
        }
        slot.produced += 1;
        Ok(Handoff::Taken)
    }

    /// The destination has taken nothing for a second and the loop waits for room in the
    /// producer's queue: lag keeps following the source's end (what an alert watches while
    /// the destination is down). No stall check: a consumer that cannot hand records on
    /// is not stalled, and the loop beats while it waits.
    fn while_destination_full(&mut self) {
        if self
            .source_ends_asked
            .is_none_or(|at| at.elapsed() >= SOURCE_END_INTERVAL)
        {
            self.source_ends_asked = Some(Instant::now());
            self.ask_source_ends();
        }
        while let Some(ends) = self.source_ends.answered() {
            for answer in ends.into_iter().filter(|a| a.end >= 0) {
                if let Some(slot) = self.slots.get_mut(answer.slot) {
                    slot.source_end = answer.end;
                }
            }
        }
        self.update_metrics();
    }

    /// `Some(end)` ends the session; `None` carries on (librdkafka retries by itself).
    fn consumer_error(&mut self, e: RdError) -> Result<Option<SessionEnd>, KafkaError> {
        let code = e.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                Ok(Some(SessionEnd::Restart(format!(
                    "a source position is out of range ({e}); checking for a retention gap"
                ))))
            }
            Some(RDKafkaErrorCode::PartitionEOF) => Ok(None),
            _ => {
                let err = classify(&self.cfg().source.name, "reading", None, e);
                if matches!(
                    err,
                    KafkaError::Auth { .. } | KafkaError::TopicMissing { .. }
                ) {
                    return Err(err);
                }
                self.replicator.health.metrics.error(err.category());
                if matches!(err, KafkaError::Unreachable { .. }) {
                    // Back to ready with the next record read, or when the source answers
                    // a re-list (see `UNREACHABLE_RECHECK`).
                    self.replicator.health.ready.store(false, Ordering::Relaxed);
                }
                warn!(category = err.category(), "{err}");
                Ok(None)
            }
        }
    }

    /// ALO: commits every stored position again, moved or not (asynchronously: a refused
    /// one is sent again at the next keepalive, well within the retention).
    fn keep_source_positions_alive(&mut self) {
        let mut list = TopicPartitionList::new();
        for slot in self.slots.iter().filter(|s| s.owned && s.committed >= 0) {
            let topic = &self.routes[slot.route].source;
            if list
                .add_partition_offset(topic, slot.partition, Offset::Offset(slot.committed))
                .is_err()
            {
                return;
            }
        }
        if list.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            let err = classify(
                &self.cfg().source.name,
                "committing the route's unchanged positions again",
                None,
                e,
            );
            self.replicator.health.metrics.error(err.category());
            warn!("{err}");
        }
    }

    fn position_moved(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.owned && s.next_offset > s.committed)
    }

    /// ALO: commits, per partition, the position after the last acknowledged record (or
    /// the consumed position when nothing is in flight): `Async` stores it for the
    /// automatic commit, `Sync` (the drain) commits it and waits.
    fn commit_source_position(&mut self, mode: CommitMode) -> Result<(), KafkaError> {
        let acked = self.ledger.lock().slots.clone();
        let mut list = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if !slot.owned {
                continue;
            }
            let a = acked[i];
            slot.durable = a;
            let position = if a.delivered == slot.produced {
                slot.next_offset
            } else if a.source >= 0 {
                a.source + 1
            } else {
                continue;
            };
            // The final (synchronous) commit sends every position, also one whose automatic
            // commit has not succeeded yet.
            let sync = matches!(mode, CommitMode::Sync);
            if position > slot.committed || (sync && position >= 0) {
                let route = &self.routes[slot.route];
                list.add_partition_offset(&route.source, slot.partition, Offset::Offset(position))
                    .map_err(|e| {
                        classify(&self.replicator.config.source.name, "committing", None, e)
                    })?;
                moved.push((i, position));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        // Stored offsets are what librdkafka's automatic commit sends (every
        // COMMIT_INTERVAL, again after a refused commit, until the cluster takes it): a
        // manual asynchronous commit's outcome is never reported to us (rdkafka sets no
        // offset_commit_cb), so a refused one would have counted as stored for good.
        // The final synchronous commit stores first, so the automatic commit on close
        // never sends an older offset after it.
        let stored = self.consumer.store_offsets(&list);
        let result = match mode {
            CommitMode::Async => stored,
            CommitMode::Sync => stored.and_then(|()| self.consumer.commit(&list, mode)),
        };
        match result {
            Ok(()) => {
                for (i, position) in moved {
                    self.slots[i].committed = position;
                }
                Ok(())
            }
            Err(e) => {
                // Not fatal: the next commit carries a later position.
                let err = classify(
                    &self.replicator.config.source.name,
                    "committing the route's position",
                    None,
                    e,
                );
                self.replicator.health.metrics.error(err.category());
                warn!("{err}");
                if matches!(mode, CommitMode::Sync) {
                    Err(err)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// EOS: the position joins the open transaction, which then commits; checkpoints may
    /// name what it contained only afterwards. Within `timeout`.
    fn commit_transaction(&mut self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = Instant::now() + timeout;
        let dest = self.replicator.config.dest.name.clone();
        let mut list = TopicPartitionList::new();
        for slot in self.slots.iter().filter(|s| s.owned) {
            if slot.next_offset > slot.committed
                || (self.refresh_positions && slot.next_offset >= 0)
            {
                let route = &self.routes[slot.route];
                list.add_partition_offset(
                    &route.dest,
                    slot.partition,
                    Offset::Offset(slot.next_offset),
                )
                .map_err(|e| classify(&dest, "committing", None, e))?;
            }
        }
        let group = self
            .dest_group
            .as_ref()
            .and_then(|c| c.group_metadata())
            .ok_or_else(|| KafkaError::Config {
                cluster: dest.clone(),
                detail: "no consumer group metadata for the transaction".into(),
            })?;
        if list.count() > 0 {
            self.producer
                .send_offsets_to_transaction(&list, &group, timeout)
                .map_err(|e| classify(&dest, "adding the position to the transaction", None, e))?;
        }
        self.producer
            .commit_transaction(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| classify(&dest, "committing a transaction", None, e))?;
        self.replicator.health.metrics.transactions.inc();
        self.refresh_positions = false;
        // Every record of the transaction is acknowledged now; serve their reports.
        loop {
            serve_deliveries(&self.producer, &self.ledger);
            let mut state = self.ledger.lock();
            if let Some(failure) = state.failure.take() {
                return Err(failure);
            }
            if state
                .slots
                .iter()
                .zip(&self.slots)
                .all(|(a, s)| a.delivered >= s.produced)
            {
                break;
            }
            drop(state);
            std::thread::sleep(Duration::from_millis(1));
        }
        let acked = self.ledger.lock().slots.clone();
        for (slot, a) in self.slots.iter_mut().zip(acked) {
            slot.durable = a;
            slot.committed = slot.committed.max(slot.next_offset);
        }
        Ok(())
    }

    fn write_checkpoints(&mut self) {
        if self.cfg().delivery == Delivery::AtLeastOnce {
            let acked = self.ledger.lock().slots.clone();
            for (slot, a) in self.slots.iter_mut().zip(acked) {
                slot.durable = a;
            }
        }
        let route = self.cfg().route.clone();
        let eos = self.cfg().delivery == Delivery::ExactlyOnce;
        let mut floor_requests = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if !slot.owned {
                continue;
            }
            let d = slot.durable;
            let topic = &self.routes[slot.route].source;
            if d.source >= 0 && !slot.first_checkpointed {
                // The first record of every partition copied (KAFKA-10048).
                if let Some((source, dest)) = d.first.filter(|(source, _)| *source != d.source) {
                    self.checkpoints.write(
                        &route,
                        topic,
                        slot.partition,
                        CheckpointEntry::Checkpoint(OffsetCheckpoint::new(
                            source as u64,
                            dest as u64,
                        )),
                    );
                }
                slot.first_checkpointed = true;
            }
            if d.source >= 0 && d.source != slot.checkpointed_source {
                if slot
                    .last_checkpoint
                    .is_some_and(|last| (d.dest as u64) < last.destination_offset)
                {
                    // The destination log restarted under us (topic recreated): every earlier
                    // checkpoint describes a log that is gone. A restart origin says so before
                    // the new log's first checkpoint; (0, 0) is below anything copied into it.
                    warn!(topic = %topic, partition = slot.partition, acknowledged = d.dest,
                        last_checkpointed = slot.last_checkpoint.map(|l| l.destination_offset),
                        "the destination partition restarted (recreated topic?): writing a restart origin");
                    self.checkpoints.write(
                        &route,
                        topic,
                        slot.partition,
                        CheckpointEntry::Origin(RouteOrigin::new(0, 0)),
                    );
                }
                let checkpoint = OffsetCheckpoint {
                    source_offset: d.source as u64,
                    destination_offset: d.dest as u64,
                    previous_source_offset: d.previous_source.map(|p| p as u64),
                    next_copy_floor: None,
                };
                self.checkpoints.write(
                    &route,
                    topic,
                    slot.partition,
                    CheckpointEntry::Checkpoint(checkpoint),
                );
                slot.checkpointed_source = d.source;
                slot.last_checkpoint = Some(checkpoint);
                slot.last_floor = None;
                continue;
            }
            // Idle: everything handed to the producer is durable. Ask for the destination's
            // end offset, to re-emit the last checkpoint (or origin) with a floor.
            let settled =
                d.delivered == slot.produced && (!eos || slot.committed >= slot.next_offset);
            if settled && (slot.last_checkpoint.is_some() || slot.origin.is_some()) {
                floor_requests.push(FloorRequest {
                    slot: index,
                    topic: self.routes[slot.route].dest.clone(),
                    partition: slot.partition,
                    produced: slot.produced,
                    confirm_from: None,
                });
            }
        }
        self.floors.ask(floor_requests);
        self.checkpoints.producer.poll(Duration::ZERO);
    }

    /// Re-emits the last checkpoint (or the origin) with `next_copy_floor` = the
    /// destination's end offset, if nothing was produced to the partition since the end
    /// offset was asked for (so every later copy lands at or above it) — and only when that
    /// floor is new or the heartbeat is due: an idle partition of an idle destination writes
    /// one record per heartbeat, not one per interval.
    fn write_floor(&mut self, floor: FloorResult) {
        let route = self.cfg().route.clone();
        let heartbeat = self.cfg().checkpoint_heartbeat;
        let Some(slot) = self.slots.get_mut(floor.slot) else {
            return;
        };
        if slot.produced != floor.produced || floor.end < 0 {
            return;
        }
        let end = floor.end as u64;
        let last = slot.last_floor.map(|(floor, at)| (floor, at.elapsed()));
        if !checkpoint::floor_reemission_due(last, end, heartbeat) {
            return;
        }
        let topic = &self.routes[slot.route].source;
        let Some(entry) = checkpoint::reemission(slot.last_checkpoint, slot.origin, end) else {
            return;
        };
        slot.last_floor = Some((end, Instant::now()));
        let partition = slot.partition;
        self.checkpoints.write(&route, topic, partition, entry);
    }

    /// Asks for the source's end offsets of every owned partition (one batched request;
    /// none while the previous one is unanswered, e.g. while the source does not answer).
    fn ask_source_ends(&mut self) {
        let timeout = self.replicator.health.progress.stall_timeout();
        let batch = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owned)
            .map(|(index, slot)| FloorRequest {
                slot: index,
                topic: self.routes[slot.route].source.clone(),
                partition: slot.partition,
                produced: slot.produced,
                // Waited long enough behind the end: are those records there for a reader?
                confirm_from: slot
                    .waiting_since
                    .filter(|since| since.elapsed() >= timeout)
                    .map(|_| slot.next_offset),
            })
            .collect();
        self.source_ends.ask(batch);
    }

    /// With the source's answer: lag for `update_metrics`, and the stall check. A
    /// partition whose position has not moved while the source's end is beyond it is read
    /// once more, after the stall timeout, by the probe's own `read_committed` reader: if
    /// that reader gets a record there, the copy loop's consumer is stalled (the loop runs
    /// — it serves this answer — and the source answers: a restart is the remedy); if not,
    /// the records below the end are transaction markers or aborted records, and the
    /// partition is caught up until the end grows. A source that does not answer sends no
    /// end; a destination that does not take records holds the loop in its queue-full
    /// wait, where it beats but never gets here.
    fn check_progress(&mut self, ends: Vec<FloorResult>) {
        let now = Instant::now();
        let mut stalled: Option<String> = None;
        for answer in ends {
            let Some(slot) = self.slots.get_mut(answer.slot) else {
                continue;
            };
            if answer.end < 0 {
                continue;
            }
            slot.source_end = answer.end;
            if slot.next_offset != slot.progress_offset {
                slot.progress_offset = slot.next_offset;
                slot.invisible_end = -1;
                slot.waiting_since = None;
                continue;
            }
            if answer.end <= slot.next_offset || answer.end <= slot.invisible_end {
                slot.waiting_since = None;
                continue;
            }
            match answer.visible {
                Some(false) => {
                    slot.invisible_end = answer.end;
                    slot.waiting_since = None;
                }
                Some(true) => {
                    let since = slot
                        .waiting_since
                        .map_or(0, |s| now.duration_since(s).as_secs());
                    stalled.get_or_insert_with(|| {
                        format!(
                            "copy loop stalled: {}/{} has records from offset {} (end {}) in {}, readable, but the route read none for {since}s (--stall-timeout {:?})",
                            self.routes[slot.route].source,
                            slot.partition,
                            slot.next_offset,
                            answer.end,
                            self.replicator.config.source.name,
                            self.replicator.health.progress.stall_timeout(),
                        )
                    });
                }
                None => {
                    slot.waiting_since.get_or_insert(now);
                }
            }
        }
        let progress = &self.replicator.health.progress;
        match stalled {
            Some(why) => {
                if !self.stall_reported {
                    error!(route = %self.cfg().name, worker = self.worker, "{why}: /healthz fails");
                }
                self.stall_reported = true;
                progress.set_stalled(self.worker, Some(why));
            }
            None => {
                if self.stall_reported {
                    info!(route = %self.cfg().name, worker = self.worker, "copying again: /healthz ok");
                }
                self.stall_reported = false;
                progress.set_stalled(self.worker, None);
            }
        }
    }

    fn update_metrics(&mut self) {
        let metrics = &self.replicator.health.metrics;
        metrics
            .checkpoint_age_seconds
            .set(self.checkpoints.debt.age().as_secs_f64());
        let acked = self.ledger.lock().slots.clone();
        let now = now_ms();
        for (slot, a) in self.slots.iter_mut().zip(acked) {
            if !slot.owned {
                continue;
            }
            let topic = &self.routes[slot.route].source;
            let labels = PartitionLabels::new(topic, slot.partition);
            // Durable counts: EOS counts only committed records.
            let counted = if self.replicator.config.delivery == Delivery::ExactlyOnce {
                slot.durable
            } else {
                a
            };
            if counted.delivered > slot.reported_copied {
                metrics
                    .records_copied
                    .get_or_create(&labels)
                    .inc_by(counted.delivered - slot.reported_copied);
                slot.reported_copied = counted.delivered;
            }
            if counted.copied_bytes > slot.reported_bytes {
                metrics
                    .bytes_copied
                    .get_or_create(&labels)
                    .inc_by(counted.copied_bytes - slot.reported_bytes);
                slot.reported_bytes = counted.copied_bytes;
            }
            if slot.skipped > 0 {
                metrics
                    .records_skipped_loop
                    .get_or_create(&labels)
                    .inc_by(slot.skipped);
                slot.skipped = 0;
            }
            // The consumer's statistics stop with its fetching; the session's own reads of
            // the source's end offsets do not.
            let high = self
                .consumer
                .context()
                .high_watermark(topic, slot.partition)
                .max(slot.source_end);
            if high >= 0 {
                let lag = (high - slot.next_offset).max(0);
                metrics.lag_records.get_or_create(&labels).set(lag);
                let seconds = if lag == 0 || slot.last_timestamp_ms == 0 {
                    0.0
                } else {
                    (now - slot.last_timestamp_ms).max(0) as f64 / 1000.0
                };
                metrics.lag_seconds.get_or_create(&labels).set(seconds);
            }
        }
    }
}

/// Faults the tests inject (debug builds only, `TRIBUTARY_TEST_FAULT`) to reproduce what
/// real clusters do rarely: `pause-fetch:N` stops fetching after N records, as a consumer
/// that never regains its fetch (issue 13, the stall after a region came back);
/// `wedge:N` blocks the copy thread after N records until SIGTERM.
#[derive(Default)]
struct TestFault {
    pause_fetch_after: Option<u64>,
    wedge_after: Option<u64>,
    records: u64,
}

impl TestFault {
    fn from_env() -> Self {
        if !cfg!(debug_assertions) {
            return Self::default();
        }
        let spec = std::env::var("TRIBUTARY_TEST_FAULT").unwrap_or_default();
        let after = |name: &str| {
            spec.strip_prefix(name)
                .and_then(|n| n.strip_prefix(':'))
                .and_then(|n| n.parse().ok())
        };
        Self {
            pause_fetch_after: after("pause-fetch"),
            wedge_after: after("wedge"),
            records: 0,
        }
    }

    fn after_record(&mut self, consumer: &BaseConsumer<LoggingContext>, stop: &AtomicBool) {
        if self.pause_fetch_after.is_none() && self.wedge_after.is_none() {
            return;
        }
        self.records += 1;
        if self.pause_fetch_after == Some(self.records) {
            warn!("test fault: fetching paused after {} records", self.records);
            if let Ok(assignment) = consumer.assignment() {
                let _ = consumer.pause(&assignment);
            }
        }
        if self.wedge_after == Some(self.records) {
            warn!(
                "test fault: copy thread wedged after {} records",
                self.records
            );
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

struct FloorRequest {
    slot: usize,
    topic: String,
    partition: i32,
    produced: u64,
    /// Also read from this offset: is a record there for a reader?
    confirm_from: Option<i64>,
}

struct FloorResult {
    slot: usize,
    produced: u64,
    end: i64,
    /// With `confirm_from`: whether a record was read there.
    visible: Option<bool>,
}

/// Reads destination end offsets on its own thread, so a slow cluster never stalls the copy
/// loop: one batched request (ListOffsets, latest) for every idle partition of an interval,
/// and no new batch while one is unanswered — however many partitions, however slow the
/// cluster, at most one batch is queued.
struct FloorProbe {
    requests: std::sync::mpsc::Sender<Vec<FloorRequest>>,
    results: std::sync::mpsc::Receiver<Vec<FloorResult>>,
    in_flight: bool,
}

impl FloorProbe {
    /// An end-offset reader of `cluster`: its log end offsets, or with `reader_group` its
    /// last stable offsets (what a `read_committed` consumer can reach), and it reads
    /// records for `confirm_from` (librdkafka serves fetched records only to a consumer
    /// with a group id; this one never joins the group nor commits to it).
    fn start(cluster: &ClientSettings, reader_group: Option<&str>) -> Result<Self, KafkaError> {
        let mut config = cluster.client_config()?;
        config.set("enable.auto.commit", "false").set(
            "isolation.level",
            if reader_group.is_some() {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
        if let Some(group) = reader_group {
            config.set("group.id", group);
        }
        let client: BaseConsumer<LoggingContext> = config
            .create_with_context(LoggingContext::new(&cluster.name))
            .map_err(|e| classify(&cluster.name, "creating the offset reader", None, e))?;
        let (requests, inbox) = std::sync::mpsc::channel::<Vec<FloorRequest>>();
        let (outbox, results) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("floor-probe".into())
            .spawn(move || {
                // Ends when the session drops its sender.
                while let Ok(batch) = inbox.recv() {
                    let ends = end_offsets(&client, &batch);
                    let visible = visible_records(&client, &batch);
                    let answer = batch
                        .iter()
                        .map(|request| FloorResult {
                            slot: request.slot,
                            produced: request.produced,
                            end: ends
                                .get(&(request.topic.as_str(), request.partition))
                                .copied()
                                .unwrap_or(-1),
                            visible: request.confirm_from.map(|_| {
                                visible.contains(&(request.topic.as_str(), request.partition))
                            }),
                        })
                        .collect();
                    if outbox.send(answer).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| KafkaError::Config {
                cluster: cluster.name.clone(),
                detail: format!("cannot start the offset reader thread: {e}"),
            })?;
        Ok(Self {
            requests,
            results,
            in_flight: false,
        })
    }

    /// Asks for the end offsets of `batch`, unless the previous batch is unanswered (its
    /// answer is as good: the partitions are asked again next interval).
    fn ask(&mut self, batch: Vec<FloorRequest>) {
        if batch.is_empty() || self.in_flight {
            return;
        }
        self.in_flight = self.requests.send(batch).is_ok();
    }

    fn answered(&mut self) -> Option<Vec<FloorResult>> {
        let answer = self.results.try_recv().ok()?;
        self.in_flight = false;
        Some(answer)
    }
}

/// The requested partitions (those with `confirm_from`) in which `client` reads a record at
/// or after `confirm_from` within a few seconds: whether records below the end offset are
/// really there for a reader (not only transaction markers or aborted records).
fn visible_records<'a>(
    client: &BaseConsumer<LoggingContext>,
    batch: &'a [FloorRequest],
) -> std::collections::HashSet<(&'a str, i32)> {
    let mut seen = std::collections::HashSet::new();
    let mut list = TopicPartitionList::new();
    for request in batch {
        if let Some(from) = request.confirm_from
            && list
                .add_partition_offset(&request.topic, request.partition, Offset::Offset(from))
                .is_err()
        {
            return seen;
        }
    }
    if list.count() == 0 || client.assign(&list).is_err() {
        return seen;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < list.count() && Instant::now() < deadline {
        if let Some(Ok(message)) = client.poll(Duration::from_millis(200))
            && let Some(request) = batch
                .iter()
                .find(|r| r.topic == message.topic() && r.partition == message.partition())
        {
            seen.insert((request.topic.as_str(), request.partition));
        }
    }
    let _ = client.unassign();
    seen
}

/// End offsets of the requested partitions in one ListOffsets round (librdkafka's
/// offsets-for-times with the "latest" timestamp); an empty map when the cluster does not
/// answer (no floor is written then).
fn end_offsets<'a>(
    client: &BaseConsumer<LoggingContext>,
    batch: &'a [FloorRequest],
) -> HashMap<(&'a str, i32), i64> {
    let mut list = TopicPartitionList::new();
    for request in batch {
        if list
            .add_partition_offset(&request.topic, request.partition, Offset::End)
            .is_err()
        {
            return HashMap::new();
        }
    }
    let Ok(answer) = client.offsets_for_times(list, REQUEST_TIMEOUT) else {
        return HashMap::new();
    };
    let mut ends = HashMap::new();
    for request in batch {
        let end = answer
            .find_partition(&request.topic, request.partition)
            .filter(|e| e.error().is_ok())
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if let Some(end) = end {
            ends.insert((request.topic.as_str(), request.partition), end);
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_formats_offsets() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(1041, &mut buf), b"1041");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
