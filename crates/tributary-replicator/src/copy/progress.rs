//! Progress of a session: lag from the source's end offsets, stall detection, metrics.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::consumer::Consumer;
use tracing::{error, info};

use crate::metrics::PartitionLabels;

use super::probe::{FloorRequest, FloorResult};
use super::session::Session;
use super::{SOURCE_END_INTERVAL, now_ms};

impl Session<'_> {
    /// [`Self::ask_source_ends`] once per `SOURCE_END_INTERVAL`.
    pub(super) fn ask_source_ends_if_due(&mut self) {
        if self
            .source_ends_asked
            .is_none_or(|at| at.elapsed() >= SOURCE_END_INTERVAL)
        {
            self.source_ends_asked = Some(Instant::now());
            self.ask_source_ends();
        }
    }

    /// Asks for the source's end offsets of every owned partition (one batched request;
    /// none while the previous one is unanswered, e.g. while the source does not answer).
    pub(super) fn ask_source_ends(&mut self) {
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
    ///
    /// The remedy, in two steps: a stall first restarts the session (`Some(reason)`: new
    /// clients, in process; librdkafka's consumer has been seen never to fetch again after
    /// its broker was frozen and thawed); a stall again before any record was copied keeps
    /// `/healthz` failing, so that the kubelet restarts the process.
    pub(super) fn check_progress(&mut self, ends: Vec<FloorResult>) -> Option<String> {
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
                if slot.progress_offset >= 0 {
                    // Copied since the last answer: a restart (if any) helped.
                    self.replicator.stall_restarts.store(0, Ordering::Relaxed);
                }
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
            Some(why)
                if self
                    .replicator
                    .stall_restarts
                    .fetch_add(1, Ordering::Relaxed)
                    == 0 =>
            {
                error!(route = %self.cfg().name, worker = self.worker, "{why}: restarting the copy session");
                self.replicator.health.metrics.error("Stalled");
                Some(why)
            }
            Some(why) => {
                if !self.stall_reported {
                    error!(route = %self.cfg().name, worker = self.worker, "{why}, again after a session restart: /healthz fails");
                }
                self.stall_reported = true;
                progress.set_stalled(self.worker, Some(why));
                None
            }
            None => {
                if self.stall_reported {
                    info!(route = %self.cfg().name, worker = self.worker, "copying again: /healthz ok");
                }
                self.stall_reported = false;
                progress.set_stalled(self.worker, None);
                None
            }
        }
    }

    pub(super) fn update_metrics(&mut self) {
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
            let counted = self.delivery.counted(slot, a);
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
