//! Checkpoints: the writer, its debt (`checkpoint_age_seconds`), what a session writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use tracing::{error, warn};
use tributary_core::checkpoint::{self, CheckpointEntry, CheckpointKey, CheckpointRecord};
use tributary_core::{OffsetCheckpoint, OffsetRange, RouteOrigin};
use tributary_kafka::{KafkaError, classify};

use crate::config::RouteConfig;
use crate::http::Health;
use crate::metrics::PartitionLabels;

use super::clients::LoggingContext;
use super::probe::{FloorRequest, FloorResult};
use super::session::Session;
use super::slot::TopicRoute;
use super::{REQUEST_TIMEOUT, RouteReplicator, now_ms};

impl RouteReplicator {
    pub(super) fn report_retention_gap(
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
}

/// Checkpoint writes not yet acknowledged, and since when one has been owed: what
/// `checkpoint_age_seconds` reports (a route whose checkpoints fail or hang shows a growing
/// age; an idle route that owes nothing shows 0, however long since its last heartbeat).
#[derive(Default)]
pub(super) struct CheckpointDebt {
    pub(super) in_flight: std::sync::atomic::AtomicI64,
    /// ms since the epoch of the oldest write not followed by an acknowledgement; 0: none.
    pub(super) owed_since_ms: std::sync::atomic::AtomicI64,
}

impl CheckpointDebt {
    pub(super) fn sent(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.in_flight.fetch_add(1, Relaxed);
        let _ = self
            .owed_since_ms
            .compare_exchange(0, now_ms(), Relaxed, Relaxed);
    }

    pub(super) fn answered(&self, acknowledged: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let left = self.in_flight.fetch_sub(1, Relaxed) - 1;
        // A failed write stays owed until a later one is acknowledged.
        if acknowledged && left <= 0 {
            self.owed_since_ms.store(0, Relaxed);
        }
    }

    pub(super) fn age(&self) -> Duration {
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
pub(super) struct CheckpointContext {
    pub(super) logging: LoggingContext,
    pub(super) debt: Arc<CheckpointDebt>,
    pub(super) health: Arc<Health>,
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

/// Writes checkpoint-topic records (plain idempotent producer on the destination).
pub(super) struct CheckpointWriter {
    pub(super) producer: BaseProducer<CheckpointContext>,
    pub(super) topic: String,
    pub(super) health: Arc<Health>,
    pub(super) debt: Arc<CheckpointDebt>,
}

impl CheckpointWriter {
    pub(super) fn new(cfg: &RouteConfig, health: Arc<Health>) -> Result<Self, KafkaError> {
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

    pub(super) fn write(
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

    pub(super) fn flush(&self) {
        if let Err(e) = self.producer.flush(REQUEST_TIMEOUT) {
            self.health.metrics.error("Checkpoint");
            warn!(topic = %self.topic, "checkpoints not flushed: {e}");
        }
    }
}

impl Session<'_> {
    pub(super) fn write_checkpoints(&mut self) {
        let (delivery, mut cx) = self.delivery_parts();
        delivery.note_durable(&mut cx);
        let route = self.cfg().route.clone();
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
            if self.delivery.settled(slot)
                && (slot.last_checkpoint.is_some() || slot.origin.is_some())
            {
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
    pub(super) fn write_floor(&mut self, floor: FloorResult) {
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
}
