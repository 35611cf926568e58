//! The copy loop: one record at a time from the source consumer to the producer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::{info, warn};
use tributary_core::dedupe::{HEADER_DESTINATION_CLUSTER, PROVENANCE_HEADERS, REPLICATOR_HEADERS};
use tributary_kafka::{KafkaAdmin, KafkaError, classify};

use crate::config::RouteConfig;

use super::checkpoints::CheckpointWriter;
use super::clients::LoggingContext;
use super::delivery::{DeliveryLedger, serve_deliveries};
use super::fault::TestFault;
use super::mode::{DeliveryMode, Drained};
use super::probe::FloorProbe;
use super::slot::{Slot, TopicRoute};
use super::topics::resolve_topics;
use super::{RouteReplicator, SessionEnd, TOPOLOGY_INTERVAL, UNREACHABLE_RECHECK};

/// What became of one source record handed to the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handoff {
    /// Queued for the destination, or skipped as a copy: the position moved past it.
    Taken,
    /// Left for the next run: a stop was asked for while the producer's queue was full
    /// (the destination takes nothing); the position stays at it.
    Left,
    /// The queue has been full for a second: ask again after the loop's own upkeep.
    QueueFull,
}

pub(super) struct Session<'a> {
    pub(super) replicator: &'a RouteReplicator,
    pub(super) routes: Vec<TopicRoute>,
    pub(super) by_source: HashMap<String, usize>,
    pub(super) slots: Vec<Slot>,
    pub(super) consumer: Arc<BaseConsumer<LoggingContext>>,
    /// The delivery mode, with the producer(s) the copy loop writes into.
    pub(super) delivery: DeliveryMode,
    pub(super) ledger: Arc<DeliveryLedger>,
    pub(super) checkpoints: CheckpointWriter,
    pub(super) source_cluster_id: String,
    /// Stamped on every copy: loop prevention recognises copies by it.
    pub(super) dest_cluster_id: String,
    pub(super) floors: FloorProbe,
    /// Reads the source's end offsets (last stable offsets) every `SOURCE_END_INTERVAL`.
    pub(super) source_ends: FloorProbe,
    /// When the source's end offsets were last asked for (lag, stall check).
    pub(super) source_ends_asked: Option<Instant>,
    /// This worker's index (its stall is reported under it).
    pub(super) worker: usize,
    pub(super) fault: TestFault,
    /// A stall was logged (logged once, not at every end-offset answer).
    pub(super) stall_reported: bool,
    /// The session ends because its consumer stalled (see `Session::check_progress`).
    pub(super) consumer_stalled: bool,
    /// Set when another worker of the session ended: drain and end too.
    pub(super) session_stop: &'a AtomicBool,
}

/// Up to 20 decimal digits of a non-negative offset, without allocating.
pub(super) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
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
    pub(super) fn cfg(&self) -> &RouteConfig {
        &self.replicator.config
    }

    pub(super) fn stopping(&self) -> bool {
        self.replicator.stop.load(Ordering::Relaxed) || self.session_stop.load(Ordering::Relaxed)
    }

    pub(super) fn copy(
        &mut self,
        source_admin: &KafkaAdmin,
        topics: &BTreeMap<String, usize>,
    ) -> Result<SessionEnd, KafkaError> {
        let checkpoint_interval = self.cfg().checkpoint_interval;
        let mut last_checkpoint = Instant::now();
        let mut last_topology = Instant::now();
        let mut stats_at = Instant::now();
        let mut last_keepalive = Instant::now();
        let keepalive = self.cfg().position_keepalive;

        let end = 'copying: loop {
            self.replicator.health.progress.beat();
            if self.stopping() {
                break SessionEnd::Stopped;
            }
            let (delivery, mut cx) = self.delivery_parts();
            delivery.before_batch(&mut cx)?;
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
                            serve_deliveries(self.delivery.producer(), &self.ledger);
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
            serve_deliveries(self.delivery.producer(), &self.ledger);
            if let Some(failure) = self.ledger.lock().failure.take() {
                return Err(failure);
            }
            while let Some(floors) = self.floors.answered() {
                for floor in floors {
                    self.write_floor(floor);
                }
            }
            self.ask_source_ends_if_due();
            while let Some(ends) = self.source_ends.answered() {
                if let Some(stall) = self.check_progress(ends) {
                    self.consumer_stalled = true;
                    break 'copying SessionEnd::Restart(stall);
                }
            }

            let (delivery, mut cx) = self.delivery_parts();
            if last_keepalive.elapsed() >= keepalive {
                last_keepalive = Instant::now();
                delivery.keep_positions_alive(&mut cx);
            }
            delivery.after_batch(batch, &mut cx)?;
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
        let stalled = self.consumer_stalled;
        let (delivery, mut cx) = self.delivery_parts();
        if delivery.drain(drain, stalled, &mut cx)? == Drained::Acknowledged {
            self.update_metrics();
            return Ok(end);
        }
        self.write_checkpoints();
        self.checkpoints.flush();
        self.update_metrics();
        info!(route = %self.cfg().name, "final position committed and checkpoint written");
        Ok(end)
    }

    /// Hands one source record to the producer (or skips it), waiting for room in its
    /// queue up to a second at a time (`Handoff::QueueFull`: ask again).
    pub(super) fn copy_record(
        &mut self,
        message: &BorrowedMessage<'_>,
    ) -> Result<Handoff, KafkaError> {
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
        // Read the clock only once the queue is full (not per record: it is not free).
        let mut waiting: Option<Instant> = None;
        loop {
            match self.delivery.producer().send(record) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Delivered records still count until their report is served; serve
                    // them, and wait for the broker only if that freed nothing.
                    if !serve_deliveries(self.delivery.producer(), &self.ledger) {
                        if self.replicator.stop.load(Ordering::Relaxed)
                            || self.session_stop.load(Ordering::Relaxed)
                        {
                            // A full queue that frees nothing: the destination is not
                            // answering. Waiting here would ignore the drain timeout.
                            slot.next_offset = offset;
                            return Ok(Handoff::Left);
                        }
                        if waiting.get_or_insert_with(Instant::now).elapsed()
                            >= Duration::from_secs(1)
                        {
                            slot.next_offset = offset;
                            return Ok(Handoff::QueueFull);
                        }
                        self.delivery.producer().poll(Duration::from_millis(1));
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
    pub(super) fn while_destination_full(&mut self) {
        self.ask_source_ends_if_due();
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
    pub(super) fn consumer_error(&mut self, e: RdError) -> Result<Option<SessionEnd>, KafkaError> {
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
