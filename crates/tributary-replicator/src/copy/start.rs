//! Where each partition of a worker's share starts: the stored position (ALO: the source
//! group's; EOS: the destination group's, committed with the data), or — below the log
//! start — the log start after a reported retention gap, or — beyond the log end — the
//! recreated log's start, or — none stored — the log start with an origin checkpoint.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::warn;
use tributary_core::RouteOrigin;
use tributary_core::checkpoint::CheckpointEntry;
use tributary_kafka::{KafkaAdmin, KafkaError, classify};

use crate::config::Delivery;

use super::checkpoints::CheckpointWriter;
use super::clients::LoggingContext;
use super::slot::{Slot, TopicRoute};
use super::{REQUEST_TIMEOUT, RouteReplicator};

impl RouteReplicator {
    /// Places every owned slot (`next_offset`, `committed`, `origin`), writes origins and
    /// retention gaps, stores new start positions (ALO), and returns the assignment.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_positions(
        &self,
        routes: &[TopicRoute],
        slots: &mut [Slot],
        consumer: &BaseConsumer<LoggingContext>,
        dest_group: Option<&BaseConsumer<LoggingContext>>,
        checkpoints: &CheckpointWriter,
        source_admin: &KafkaAdmin,
        dest_admin: &KafkaAdmin,
    ) -> Result<TopicPartitionList, KafkaError> {
        let cfg = &self.config;
        let eos = cfg.delivery == Delivery::ExactlyOnce;
        self.health.progress.beat();
        let mut wanted = TopicPartitionList::new();
        for slot in slots.iter().filter(|s| s.owned) {
            let route = &routes[slot.route];
            let topic = if eos { &route.dest } else { &route.source };
            wanted.add_partition(topic, slot.partition);
        }
        let committed = tributary_kafka::group::committed_offsets(
            dest_group.unwrap_or(consumer),
            &wanted,
            REQUEST_TIMEOUT,
        )
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
        let at_start = |list: &mut TopicPartitionList, topic: &str, partition: i32, offset: i64| {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(|e| classify(&cfg.source.name, "committing", None, e))
        };
        for route in routes {
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
                            checkpoints,
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
                        at_start(&mut restarted, &route.source, slot.partition, low)?;
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
                        at_start(&mut fresh, &route.source, slot.partition, low)?;
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
        Ok(assignment)
    }
}
