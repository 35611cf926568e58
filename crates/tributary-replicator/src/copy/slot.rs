//! Per-partition state of the copy loop.

use std::time::Instant;

use tributary_core::{OffsetCheckpoint, RouteOrigin};

use super::delivery::Acked;

/// Main-thread state of one partition.
pub(super) struct Slot {
    /// Whether this worker copies the partition (every worker keeps every slot so that
    /// indexes are shared; the others stay inert).
    pub(super) owned: bool,
    pub(super) route: usize,
    pub(super) partition: i32,
    pub(super) partition_text: String,
    /// Next source offset to consume (past copied and skipped records).
    pub(super) next_offset: i64,
    /// Records handed to the producer in this session.
    pub(super) produced: u64,
    /// Position last committed (ALO: to the source group; EOS: in a transaction).
    pub(super) committed: i64,
    /// Durable (acknowledged / committed) copy, for checkpoints.
    pub(super) durable: Acked,
    pub(super) checkpointed_source: i64,
    pub(super) first_checkpointed: bool,
    /// The last checkpoint written in this session (re-emitted with a floor while idle).
    pub(super) last_checkpoint: Option<OffsetCheckpoint>,
    /// The floor last re-emitted for the idle partition, and when: the same floor again is
    /// written only once the heartbeat is due (checkpoint format v2).
    pub(super) last_floor: Option<(u64, Instant)>,
    /// The origin written at the start of this session (fresh partitions only).
    pub(super) origin: Option<RouteOrigin>,
    /// Source timestamp of the last consumed record.
    pub(super) last_timestamp_ms: i64,
    /// The source's end (last stable) offset as last read by the session (-1: not yet).
    pub(super) source_end: i64,
    /// `next_offset` when the partition last moved; the source end up to which a reader
    /// found nothing to read after it (markers, aborted records: caught up); since when
    /// the source's end has been beyond it with no move (see `check_progress`).
    pub(super) progress_offset: i64,
    pub(super) invisible_end: i64,
    pub(super) waiting_since: Option<Instant>,
    pub(super) skipped: u64,
    pub(super) reported_copied: u64,
    pub(super) reported_bytes: u64,
}

impl Slot {
    pub(super) fn new(route: usize, partition: i32) -> Self {
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

/// One source topic of the route and its destination.
pub(super) struct TopicRoute {
    pub(super) source: String,
    pub(super) dest: String,
    /// Index of partition 0's slot.
    pub(super) base: usize,
}
