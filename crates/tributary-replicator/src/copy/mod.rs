//! The copy loop of one route ([`RouteReplicator`]): resolves the topics, prepares the
//! destination, reads the stored position, then copies records partition `p` → `p` until
//! it is stopped, the source's topics change, or an error ends the session (the
//! supervisor in [`RouteReplicator::run`] then retries with backoff).
//!
//! Position and checkpoints (the delivery mode, `mode`, one type with one match per event):
//! - `AtLeastOnce` (`at_least_once`): the source position is committed to the *source*
//!   cluster's group `tributary.route.<route>` only for records the destination acknowledged.
//! - `ExactlyOnce` (`exactly_once`): data and position are committed in one transaction on
//!   the *destination* cluster (group `tributary.route.<route>` there, keyed by the
//!   destination topic, which exists there whatever the naming), and read back from it on
//!   start; the transactions alternate between the route's two transactional producers, so
//!   copying goes on while one commits.
//! - Checkpoints come from delivery reports (the exact destination offset of a source
//!   offset) and only name records that are durable (acknowledged, or committed in EOS).
//!
//! One concept per module: `topics` (what to copy, destination topics), `worker` (a
//! session's worker: clients, partition share), `start` (where each partition starts),
//! `session` (the copy loop, one record at a time, no mode branches), `mode` (the delivery
//! mode: what a batch copied, the keepalive, the drain and an error mean), `delivery` (the
//! destination producer and its acknowledgements), `at_least_once` and `exactly_once` (what
//! becomes of a batch in each mode), `checkpoints`, `progress` (lag, stall detection,
//! metrics), `probe` (end-offset reads off the copy thread), `slot` (per-partition state),
//! `clients` (librdkafka contexts and consumers), `fault` (test faults).

mod at_least_once;
mod checkpoints;
mod clients;
mod delivery;
mod exactly_once;
mod fault;
mod mode;
mod probe;
mod progress;
mod session;
mod slot;
mod start;
mod topics;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{error, info};
use tributary_kafka::{KafkaAdmin, KafkaError, TopicSpec};

use crate::config::RouteConfig;
use crate::http::Health;

use topics::{ReplicationFactor, ResolvedTopics, prepare_dest_topic, resolve_topics};
use worker::{ClusterIds, WorkerShare};

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
    /// Sessions restarted for a stalled consumer since a record was last copied (see
    /// `Session::check_progress`).
    stall_restarts: AtomicU32,
}

impl RouteReplicator {
    pub fn new(
        config: RouteConfig,
        health: Arc<Health>,
        stop: Arc<AtomicBool>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            config,
            health,
            stop,
            runtime,
            stall_restarts: AtomicU32::new(0),
        }
    }

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

        // 2. Copy workers: partition sets copied in parallel (at-least-once only), each
        // with its own clients. They start and stop together, so a partition never has
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
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
