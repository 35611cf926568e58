//! librdkafka clients and their contexts (logs forwarded, consumer statistics).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tracing::{error, warn};
use tributary_kafka::{KafkaError, classify};

use crate::config::Delivery;

use super::{COMMIT_INTERVAL, RouteReplicator};

impl RouteReplicator {
    pub(super) fn create_source_consumer(
        &self,
    ) -> Result<BaseConsumer<LoggingContext>, KafkaError> {
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

    pub(super) fn create_dest_group_consumer(
        &self,
    ) -> Result<BaseConsumer<LoggingContext>, KafkaError> {
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

/// Forwards librdkafka's warnings and errors to our logs, naming the cluster.
pub(super) fn forward_log(cluster: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
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
    pub(super) cluster: String,
    /// Source high watermarks from librdkafka's statistics (consumer only): lag without
    /// extra requests.
    pub(super) high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    /// When a refused automatic commit was last logged (consumer only): once per
    /// `COMMIT_FAILURE_LOG_INTERVAL` while they keep failing every 200 ms.
    pub(super) commit_failure_logged: Mutex<Option<Instant>>,
}

pub(super) const COMMIT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

impl LoggingContext {
    pub(super) fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            high_watermarks: Mutex::default(),
            commit_failure_logged: Mutex::default(),
        }
    }

    pub(super) fn high_watermark(&self, topic: &str, partition: i32) -> i64 {
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
