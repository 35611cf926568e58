//! At-least-once delivery: one idempotent producer; the source position is committed to
//! the *source* cluster's group `tributary.route.<route>`, per partition only up to what
//! the destination acknowledged.
//!
//! What becomes of a batch in at-least-once (all of it is here):
//! 1. The copy loop produces it; delivery reports fill the ledger (`delivery`).
//! 2. Every `COMMIT_INTERVAL`, each partition's position after its last acknowledged
//!    record is stored for librdkafka's automatic commit (which sends it again after a
//!    refusal); acknowledged records are durable (metrics, checkpoints).
//! 3. The drain flushes and commits synchronously; a restart copies again whatever was
//!    not acknowledged (duplicates, never loss).

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;
use tributary_kafka::{KafkaError, classify};

use super::COMMIT_INTERVAL;
use super::delivery::RouteProducer;
use super::mode::{DeliveryContext, Drained};

pub(super) struct AtLeastOnce {
    producer: RouteProducer,
    last_commit: Instant,
}

impl AtLeastOnce {
    pub(super) fn new(producer: RouteProducer) -> Self {
        Self {
            producer,
            last_commit: Instant::now(),
        }
    }

    pub(super) fn producer(&self) -> &RouteProducer {
        &self.producer
    }

    pub(super) fn commit_if_due(&mut self, cx: &mut DeliveryContext<'_>) -> Result<(), KafkaError> {
        if self.last_commit.elapsed() >= COMMIT_INTERVAL {
            commit_source_position(cx, CommitMode::Async)?;
            self.last_commit = Instant::now();
        }
        Ok(())
    }

    /// Every acknowledged record is durable.
    pub(super) fn note_durable(cx: &mut DeliveryContext<'_>) {
        let acked = cx.ledger.lock().slots.clone();
        for (slot, a) in cx.slots.iter_mut().zip(acked) {
            slot.durable = a;
        }
    }

    /// Flush, then commit up to what the destination acknowledged (see
    /// [`commit_source_position`]).
    pub(super) fn drain(
        &mut self,
        timeout: Duration,
        consumer_stalled: bool,
        cx: &mut DeliveryContext<'_>,
    ) -> Result<Drained, KafkaError> {
        let flushed = self.producer.flush(timeout);
        if let Some(failure) = cx.ledger.lock().failure.take() {
            return Err(failure);
        }
        // A stalled consumer does not reach its coordinator: a synchronous commit would
        // wait for it (46 s seen in CI). Stored for the automatic commit instead; if that
        // does not land either, the next session copies those records again.
        let mode = if consumer_stalled {
            CommitMode::Async
        } else {
            CommitMode::Sync
        };
        commit_source_position(cx, mode)?;
        if let Err(e) = flushed {
            warn!(
                route = %cx.cfg().name,
                "{} did not acknowledge every in-flight record within {timeout:?} ({e}): committed the position of the acknowledged ones; the rest are copied again by the next run; final checkpoints skipped",
                cx.cfg().dest.name
            );
            return Ok(Drained::Acknowledged);
        }
        Ok(Drained::Complete)
    }

    /// Commits every stored position again, moved or not (asynchronously: a refused one
    /// is sent again at the next keepalive, well within the retention).
    pub(super) fn keep_positions_alive(cx: &mut DeliveryContext<'_>) {
        let mut list = TopicPartitionList::new();
        for slot in cx.slots.iter().filter(|s| s.owned && s.committed >= 0) {
            let topic = &cx.routes[slot.route].source;
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
        if let Err(e) = cx.consumer.commit(&list, CommitMode::Async) {
            let err = classify(
                &cx.cfg().source.name,
                "committing the route's unchanged positions again",
                None,
                e,
            );
            cx.replicator.health.metrics.error(err.category());
            warn!("{err}");
        }
    }
}

/// Commits, per partition, the position after the last acknowledged record (or the
/// consumed position when nothing is in flight): `Async` stores it for the automatic
/// commit, `Sync` (the drain) commits it and waits.
fn commit_source_position(
    cx: &mut DeliveryContext<'_>,
    mode: CommitMode,
) -> Result<(), KafkaError> {
    let acked = cx.ledger.lock().slots.clone();
    let source = cx.cfg().source.name.clone();
    let mut list = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (i, slot) in cx.slots.iter_mut().enumerate() {
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
            let route = &cx.routes[slot.route];
            list.add_partition_offset(&route.source, slot.partition, Offset::Offset(position))
                .map_err(|e| classify(&source, "committing", None, e))?;
            moved.push((i, position));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    // Stored offsets are what librdkafka's automatic commit sends (every COMMIT_INTERVAL,
    // again after a refused commit, until the cluster takes it): a manual asynchronous
    // commit's outcome is never reported to us (rdkafka sets no offset_commit_cb), so a
    // refused one would have counted as stored for good. The final synchronous commit
    // stores first, so the automatic commit on close never sends an older offset after it.
    let stored = cx.consumer.store_offsets(&list);
    let result = match mode {
        CommitMode::Async => stored,
        CommitMode::Sync => stored.and_then(|()| cx.consumer.commit(&list, mode)),
    };
    match result {
        Ok(()) => {
            for (i, position) in moved {
                cx.slots[i].committed = position;
            }
            Ok(())
        }
        Err(e) => {
            // Not fatal: the next commit carries a later position.
            let err = classify(&source, "committing the route's position", None, e);
            cx.replicator.health.metrics.error(err.category());
            warn!("{err}");
            if matches!(mode, CommitMode::Sync) {
                Err(err)
            } else {
                Ok(())
            }
        }
    }
}
