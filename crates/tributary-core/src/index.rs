//! The checkpoint index: per `(route, topic, partition)`, the monotone map from source offsets
//! to destination offsets that the replicator's checkpoints describe, in bounded memory, with
//! the conservative lookups translation needs in both directions.
//!
//! # Precision traded for memory
//! Every checkpoint is a fact about one record; the index keeps a *subset* of them, which can
//! only make answers less precise, never wrong: a lookup uses the nearest retained checkpoint
//! on the safe side, so thinning means more duplicates after a failover, never a skipped
//! record. Retention is exponential in age, counted in checkpoints:
//! - the newest [`ThinningPolicy::recent`] checkpoints are all kept (default 128: the last
//!   ~2 minutes at one checkpoint a second);
//! - below them, level `j ≥ 1` keeps [`ThinningPolicy::per_level`] checkpoints (default 32)
//!   spaced `2^j` checkpoints apart.
//!
//! So a position `a` checkpoints older than the newest is bracketed by retained checkpoints at
//! most `(a − recent) / per_level + 2` checkpoints apart (about 3 % of the age with the
//! defaults), and an index holds `recent + per_level · ⌈log₂(n / per_level)⌉` entries after
//! `n` checkpoints: ~460 entries (16 bytes each, ~7.5 KiB) for a day at one a second, ~770
//! for a year.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::checkpoint::{
    CheckpointEntry, CheckpointKey, CheckpointRecord, MAX_OFFSET, OffsetCheckpoint, OffsetRange,
    RouteOrigin,
};
use crate::topology::Route;

/// How many checkpoints an index keeps (see the module docs for the precision this buys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinningPolicy {
    recent: usize,
    per_level: usize,
}

impl ThinningPolicy {
    /// `recent` newest checkpoints kept dense, `per_level` per older level (both at least 1).
    pub fn new(recent: usize, per_level: usize) -> Self {
        Self {
            recent: recent.max(1),
            per_level: per_level.max(1),
        }
    }

    pub fn recent(&self) -> usize {
        self.recent
    }

    pub fn per_level(&self) -> usize {
        self.per_level
    }

    fn capacity(&self, level: usize) -> usize {
        if level == 0 {
            self.recent
        } else {
            self.per_level
        }
    }
}

impl Default for ThinningPolicy {
    fn default() -> Self {
        Self::new(128, 32)
    }
}

/// A source offset and the destination offset its record landed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MappedOffset {
    pub source: u64,
    pub destination: u64,
}

/// What the index did with a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Beyond every retained checkpoint in both offsets: kept.
    Appended,
    /// The newest checkpoint again (an idle route re-emitting it); its floor may have risen.
    Refreshed,
    /// Not beyond the newest in either offset: older news, already covered.
    IgnoredStale,
    /// Source not beyond the newest but destination is: the replicator re-copied records after
    /// a restart (at-least-once). Ignored — the first copies already answer every lookup safely.
    IgnoredRewind,
    /// Source beyond the newest but destination not: the destination partition was recreated,
    /// two writers copy the route, or the checkpoints come from another cluster. Ignored, and
    /// the index stays [`CheckpointIndex::contradiction`]-marked until a restart origin
    /// resolves it: translation refuses its partition meanwhile, so the caller should alert.
    Contradiction,
    /// An origin that retained checkpoints contradict (they lie below it). Ignored.
    OriginContradicted,
    /// An origin below the newest checkpoint's destination offset: the destination log
    /// restarted (a recreated topic). Every retained checkpoint described the old log, so the
    /// index now holds only this origin; any contradiction is resolved.
    Restarted,
    /// Offsets outside Kafka's range. Ignored.
    Invalid,
}

/// A route's checkpoints that disagree with each other: until resolved, no lookup of the index
/// can be trusted (see [`InsertOutcome::Contradiction`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contradiction {
    /// What the index held: the newest retained checkpoint (or the restart origin) when the
    /// first contradicting checkpoint arrived.
    pub retained: MappedOffset,
    /// The first checkpoint that contradicted it.
    pub contradicting: MappedOffset,
    /// Contradicting checkpoints so far, the first included.
    pub checkpoints: u64,
}

/// Retained checkpoint: source offset, destination offset, and whether the route copied
/// nothing between the previous retained checkpoint and this one (packed in bit 63, which a
/// Kafka offset never uses) — 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    source: u64,
    destination_and_contiguity: u64,
}

const CONTIGUOUS_BIT: u64 = 1 << 63;

impl Entry {
    fn new(source: u64, destination: u64, contiguous: bool) -> Self {
        Self {
            source,
            destination_and_contiguity: destination | if contiguous { CONTIGUOUS_BIT } else { 0 },
        }
    }

    fn destination(self) -> u64 {
        self.destination_and_contiguity & !CONTIGUOUS_BIT
    }

    fn contiguous_with_previous(self) -> bool {
        self.destination_and_contiguity & CONTIGUOUS_BIT != 0
    }

    fn break_contiguity(&mut self) {
        self.destination_and_contiguity &= !CONTIGUOUS_BIT;
    }

    fn mapped(self) -> MappedOffset {
        MappedOffset {
            source: self.source,
            destination: self.destination(),
        }
    }
}

/// Where source `s`'s records stand relative to a consumer position in the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkEstimate {
    /// Every record of the source below this source offset lies below the position (was
    /// consumed). `None`: no record of the source is known below it.
    pub watermark: Option<u64>,
    /// No record of the source at or above the watermark lies below the position either.
    pub exact: bool,
    /// At most this many records of the source lie below the position at or above the
    /// watermark (consumed, but not covered by the watermark). 0 when exact.
    pub uncertainty: u64,
    /// Destination offsets where those records can be (empty when exact). Offsets that
    /// checkpoints show holding other sources' records are not theirs:
    /// [`CheckpointIndex::count_landed_between`] lets translation subtract them.
    pub unknown_positions: OffsetRange,
}

impl WatermarkEstimate {
    fn exact(watermark: Option<u64>) -> Self {
        Self {
            watermark,
            exact: true,
            uncertainty: 0,
            unknown_positions: OffsetRange { from: 0, to: 0 },
        }
    }

    fn bounded(watermark: Option<u64>, uncertainty: u64, unknown_positions: OffsetRange) -> Self {
        if uncertainty == 0 || unknown_positions.from >= unknown_positions.to {
            return Self::exact(watermark);
        }
        Self {
            watermark,
            exact: false,
            uncertainty,
            unknown_positions,
        }
    }

    /// Narrows the uncertainty to the unknown positions not known to hold other records.
    pub fn excluding_known_records(self, known_elsewhere: u64) -> Self {
        let free = (self.unknown_positions.to - self.unknown_positions.from)
            .saturating_sub(known_elsewhere);
        Self::bounded(
            self.watermark,
            self.uncertainty.min(free),
            self.unknown_positions,
        )
    }
}

/// A destination offset from which a consumer sees every record of the source at or above a
/// watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeEstimate {
    pub offset: u64,
    /// No record of the source below the watermark lies at or above `offset`.
    pub exact: bool,
}

/// Checkpoints of one `(route, topic, partition)`, thinned per [`ThinningPolicy`].
#[derive(Clone, Debug, Default)]
pub struct CheckpointIndex {
    policy: ThinningPolicy,
    /// `levels[0]` newest, dense; each deeper level older and sparser. Oldest first within.
    levels: Vec<VecDeque<Entry>>,
    /// Bit `j`: drop the next entry that reaches level `j` (every other one is kept).
    drop_next: u64,
    len: usize,
    latest_next_copy_floor: Option<u64>,
    origin: Option<RouteOrigin>,
    /// From re-emitted origins: while nothing is copied, the first copy lands at or above it.
    origin_next_copy_floor: Option<u64>,
    retention_gaps: VecDeque<OffsetRange>,
    latest_timestamp_ms: Option<i64>,
    contradiction: Option<Contradiction>,
    /// The origin that restarted the route in a new destination log: checkpoints below it
    /// describe the old log (a late writer) and contradict, instead of disproving the origin.
    restart: Option<RouteOrigin>,
}

/// Retention gaps are only reported, so a few recent ones suffice.
const RETAINED_GAPS: usize = 16;

impl CheckpointIndex {
    pub fn new(policy: ThinningPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Retained checkpoints.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn origin(&self) -> Option<RouteOrigin> {
        self.origin
    }

    /// The unresolved contradiction in this route's checkpoints, if any: translation must not
    /// use this index (it refuses the partition) until a restart origin resolves it.
    pub fn contradiction(&self) -> Option<Contradiction> {
        self.contradiction
    }

    pub fn latest(&self) -> Option<MappedOffset> {
        self.levels
            .first()
            .and_then(|level| level.back())
            .map(|e| e.mapped())
    }

    pub fn latest_timestamp_ms(&self) -> Option<i64> {
        self.latest_timestamp_ms
    }

    /// The newest checkpoint's floor for the route's next copy, if it stated one.
    pub fn latest_next_copy_floor(&self) -> Option<u64> {
        self.latest_next_copy_floor
    }

    /// Recent retention gaps of this route, oldest first.
    pub fn retention_gaps(&self) -> impl Iterator<Item = OffsetRange> + '_ {
        self.retention_gaps.iter().copied()
    }

    /// Retained checkpoints, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = MappedOffset> + '_ {
        self.levels
            .iter()
            .rev()
            .flat_map(|level| level.iter().map(|e| e.mapped()))
    }

    /// Heap and inline bytes this index holds.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.levels.capacity() * std::mem::size_of::<VecDeque<Entry>>()
            + self
                .levels
                .iter()
                .map(|level| level.capacity() * std::mem::size_of::<Entry>())
                .sum::<usize>()
            + self.retention_gaps.capacity() * std::mem::size_of::<OffsetRange>()
    }

    /// Adds one checkpoint (see [`InsertOutcome`] for what is kept).
    pub fn insert(&mut self, checkpoint: OffsetCheckpoint, timestamp_ms: i64) -> InsertOutcome {
        let OffsetCheckpoint {
            source_offset: source,
            destination_offset: destination,
            previous_source_offset,
            next_copy_floor,
        } = checkpoint;
        if source > MAX_OFFSET || destination > MAX_OFFSET {
            return InsertOutcome::Invalid;
        }
        // A floor is a promise about later copies; one at or below the record itself is void.
        let floor = next_copy_floor.filter(|f| *f > destination && *f <= MAX_OFFSET);
        let mapped = MappedOffset {
            source,
            destination,
        };
        if let Some(restart) = self.restart
            && (source < restart.source_offset || destination < restart.destination_offset)
        {
            // A record of the log before the restart, written late: not a fact about this log.
            self.note_contradiction(
                MappedOffset {
                    source: restart.source_offset,
                    destination: restart.destination_offset,
                },
                mapped,
            );
            return InsertOutcome::Contradiction;
        }
        let outcome = match self.latest() {
            None => InsertOutcome::Appended,
            Some(latest) if source == latest.source && destination == latest.destination => {
                InsertOutcome::Refreshed
            }
            Some(latest) if source > latest.source && destination > latest.destination => {
                InsertOutcome::Appended
            }
            Some(latest) if source > latest.source => InsertOutcome::Contradiction,
            Some(latest) if destination > latest.destination => InsertOutcome::IgnoredRewind,
            Some(_) => InsertOutcome::IgnoredStale,
        };
        match outcome {
            InsertOutcome::Appended => {
                let contiguous = self.latest().is_some_and(|latest| {
                    source == latest.source + 1 || previous_source_offset == Some(latest.source)
                });
                // A checkpoint below the origin proves the origin wrong; facts win over claims.
                if self
                    .origin
                    .is_some_and(|o| source < o.source_offset || destination < o.destination_offset)
                {
                    self.origin = None;
                }
                // Once something is copied the origin's idle floor has served its purpose.
                self.origin_next_copy_floor = None;
                self.push(Entry::new(source, destination, contiguous));
                self.latest_next_copy_floor = floor;
            }
            InsertOutcome::Refreshed => {
                self.latest_next_copy_floor = self.latest_next_copy_floor.max(floor);
            }
            InsertOutcome::Contradiction => {
                if let Some(latest) = self.latest() {
                    self.note_contradiction(latest, mapped);
                }
                return outcome;
            }
            _ => return outcome,
        }
        self.latest_timestamp_ms = self.latest_timestamp_ms.max(Some(timestamp_ms));
        outcome
    }

    fn note_contradiction(&mut self, retained: MappedOffset, contradicting: MappedOffset) {
        match &mut self.contradiction {
            Some(known) => known.checkpoints += 1,
            None => {
                self.contradiction = Some(Contradiction {
                    retained,
                    contradicting,
                    checkpoints: 1,
                })
            }
        }
    }

    /// Records the route's origin. Several origins combine into their weakest (lowest) bounds.
    /// An origin below the newest checkpoint's destination offset restarts the index
    /// ([`InsertOutcome::Restarted`]).
    pub fn record_origin(&mut self, origin: RouteOrigin) -> InsertOutcome {
        if origin.source_offset > MAX_OFFSET || origin.destination_offset > MAX_OFFSET {
            return InsertOutcome::Invalid;
        }
        // Even the route's first origin again restarts: a recreated log can start where the
        // old one did, and forgetting facts for a true claim costs precision only.
        if let Some(latest) = self.latest()
            && origin.destination_offset <= latest.destination
        {
            // The writer found the destination's end at or below a record it had copied and
            // seen acknowledged: the log restarted (recreated topic). An honest origin bounds
            // the new log; every retained checkpoint is about the old one.
            self.restart_at(origin);
            return InsertOutcome::Restarted;
        }
        if let Some(oldest) = self.entries().next()
            && (oldest.source < origin.source_offset
                || oldest.destination < origin.destination_offset)
        {
            return InsertOutcome::OriginContradicted;
        }
        let floor = origin
            .next_copy_floor
            .filter(|f| *f >= origin.destination_offset && *f <= MAX_OFFSET);
        // A floor only means something while nothing has been copied. An origin below the
        // known floor (a restarted log, a second writer) voids it: only its own floor holds.
        if self.is_empty() {
            self.origin_next_copy_floor = match self.origin_next_copy_floor {
                Some(known) if origin.destination_offset < known => floor,
                known => known.max(floor),
            };
        }
        self.origin = Some(match self.origin {
            None => RouteOrigin {
                next_copy_floor: None,
                ..origin
            },
            Some(known) => RouteOrigin {
                source_offset: known.source_offset.min(origin.source_offset),
                destination_offset: known.destination_offset.min(origin.destination_offset),
                next_copy_floor: None,
            },
        });
        InsertOutcome::Appended
    }

    /// Forgets the old log: only `origin` (and the source's retention gaps) remain.
    fn restart_at(&mut self, origin: RouteOrigin) {
        let floor = origin
            .next_copy_floor
            .filter(|f| *f >= origin.destination_offset && *f <= MAX_OFFSET);
        let origin = RouteOrigin {
            next_copy_floor: None,
            ..origin
        };
        *self = Self {
            policy: self.policy,
            origin: Some(origin),
            origin_next_copy_floor: floor,
            retention_gaps: std::mem::take(&mut self.retention_gaps),
            latest_timestamp_ms: self.latest_timestamp_ms,
            restart: Some(origin),
            ..Self::default()
        };
    }

    /// The lowest destination offset any record of the source can be at, if an origin says.
    fn lowest_destination(&self) -> Option<u64> {
        let idle_floor = self.origin_next_copy_floor.filter(|_| self.is_empty());
        self.origin
            .map(|origin| origin.destination_offset.max(idle_floor.unwrap_or(0)))
    }

    /// Records source offsets lost to the source's retention before this route copied them.
    pub fn record_retention_gap(&mut self, gap: OffsetRange) -> InsertOutcome {
        if gap.from >= gap.to {
            return InsertOutcome::Invalid;
        }
        if self.retention_gaps.contains(&gap) {
            return InsertOutcome::IgnoredStale;
        }
        if self.retention_gaps.len() == RETAINED_GAPS {
            self.retention_gaps.pop_front();
        }
        self.retention_gaps.push_back(gap);
        InsertOutcome::Appended
    }

    /// Appends the newest entry and thins older ones: an entry leaving a full level moves one
    /// level deeper, where only every other arrival is kept (so level `j` is spaced `2^j`).
    fn push(&mut self, entry: Entry) {
        self.len += 1;
        let mut carried = entry;
        let mut level = 0;
        loop {
            if level == self.levels.len() {
                self.levels
                    .push(VecDeque::with_capacity(self.policy.capacity(level)));
            }
            if level > 0 {
                let bit = 1u64 << level.min(63);
                let drop = self.drop_next & bit != 0;
                self.drop_next ^= bit;
                if drop {
                    self.len -= 1;
                    // Its successor now follows an older entry with a copied record between.
                    if let Some(successor) = self.levels[level - 1].front_mut() {
                        successor.break_contiguity();
                    }
                    return;
                }
            }
            let capacity = self.policy.capacity(level);
            let current = &mut self.levels[level];
            // Evict before pushing so the deque never outgrows its allocation.
            let evicted = if current.len() >= capacity {
                current.pop_front()
            } else {
                None
            };
            current.push_back(carried);
            match evicted {
                Some(older) => {
                    carried = older;
                    level += 1;
                }
                None => return,
            }
        }
    }

    /// Number of retained entries (oldest first) for which `pred` holds; `pred` must hold for
    /// a prefix of them.
    fn partition_point(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let mut before = 0;
        for level in self.levels.iter().rev() {
            match level.back() {
                None => continue,
                Some(last) if pred(last) => before += level.len(),
                Some(_) => return before + level.partition_point(&pred),
            }
        }
        before
    }

    fn entry_at(&self, mut position: usize) -> Option<Entry> {
        for level in self.levels.iter().rev() {
            if position < level.len() {
                return level.get(position).copied();
            }
            position -= level.len();
        }
        None
    }

    /// The retained entries on either side of a split point.
    fn bracket(&self, split: usize) -> Bracket {
        Bracket {
            below: split.checked_sub(1).and_then(|i| self.entry_at(i)),
            above: self.entry_at(split),
            below_is_latest: split == self.len && split > 0,
        }
    }

    /// The last retained checkpoint landing below `destination`.
    pub fn last_below_destination(&self, destination: u64) -> Option<MappedOffset> {
        let split = self.partition_point(|e| e.destination() < destination);
        self.bracket(split).below.map(Entry::mapped)
    }

    /// The first retained checkpoint landing at or above `destination`.
    pub fn first_at_or_after_destination(&self, destination: u64) -> Option<MappedOffset> {
        let split = self.partition_point(|e| e.destination() < destination);
        self.bracket(split).above.map(Entry::mapped)
    }

    /// The last retained checkpoint at or before source offset `source`: resuming at its
    /// destination offset skips no record of the source at or after `source`.
    pub fn last_at_or_before_source(&self, source: u64) -> Option<MappedOffset> {
        let split = self.partition_point(|e| e.source <= source);
        self.bracket(split).below.map(Entry::mapped)
    }

    /// The first retained checkpoint at or after source offset `source`.
    pub fn first_at_or_after_source(&self, source: u64) -> Option<MappedOffset> {
        let split = self.partition_point(|e| e.source < source);
        self.bracket(split).above.map(Entry::mapped)
    }

    /// Source `s`'s watermark for a consumer at destination offset `position` (everything
    /// below it consumed): one past the last checkpointed record below `position`.
    pub fn watermark_below(&self, position: u64) -> WatermarkEstimate {
        let Bracket {
            below,
            above,
            below_is_latest,
        } = self.bracket(self.partition_point(|e| e.destination() < position));
        match below {
            Some(below) => {
                let floor = self.latest_next_copy_floor.filter(|_| below_is_latest);
                let nothing_copied_between = above.is_some_and(|a| a.contiguous_with_previous());
                if nothing_copied_between || floor.is_some_and(|f| f >= position) {
                    return WatermarkEstimate::exact(Some(below.source + 1));
                }
                // Unknown records of the source may lie in (below, position).
                let mut uncertainty = position - below.destination() - 1;
                if let Some(above) = above {
                    uncertainty = uncertainty.min(above.source - below.source - 1);
                }
                if let Some(floor) = floor {
                    uncertainty = uncertainty.min(position.saturating_sub(floor));
                }
                let unknown = OffsetRange {
                    from: (below.destination() + 1).max(floor.unwrap_or(0)),
                    to: position,
                };
                WatermarkEstimate::bounded(Some(below.source + 1), uncertainty, unknown)
            }
            None => {
                // No checkpoint below `position`: no record is *known* consumed. Unknown ones
                // lie at or above the lowest destination, with sources below `above`'s.
                let lowest_source = self.origin.map_or(0, |o| o.source_offset);
                let lowest_destination = self.lowest_destination().unwrap_or(0);
                let mut uncertainty = position.saturating_sub(lowest_destination);
                if let Some(above) = above {
                    uncertainty = uncertainty.min(above.source.saturating_sub(lowest_source));
                }
                let unknown = OffsetRange {
                    from: lowest_destination,
                    to: position,
                };
                WatermarkEstimate::bounded(None, uncertainty, unknown)
            }
        }
    }

    /// How many retained checkpoints landed at destination offsets in `range`: those offsets
    /// hold this source's records, so no other source's.
    pub fn count_landed_between(&self, range: OffsetRange) -> u64 {
        if range.from >= range.to {
            return 0;
        }
        let below_to = self.partition_point(|e| e.destination() < range.to);
        let below_from = self.partition_point(|e| e.destination() < range.from);
        (below_to - below_from) as u64
    }

    /// Where a consumer must resume so that it sees every record of the source at or above
    /// `watermark` (every record of it, for `None`); `log_start` is the destination partition's
    /// first offset, the answer when the index knows nothing earlier.
    pub fn resume_position(&self, watermark: Option<u64>, log_start: u64) -> ResumeEstimate {
        let lowest_known = || self.lowest_destination().unwrap_or(0).max(log_start);
        let Some(watermark) = watermark else {
            return ResumeEstimate {
                offset: lowest_known(),
                exact: true,
            };
        };
        let Bracket {
            below,
            above,
            below_is_latest,
        } = self.bracket(self.partition_point(|e| e.source < watermark));
        if let Some(above) = above
            && (above.source == watermark || (below.is_some() && above.contiguous_with_previous()))
        {
            // `above` is the source's first record at or after the watermark.
            return ResumeEstimate {
                offset: above.destination(),
                exact: true,
            };
        }
        match below {
            Some(below) => {
                // Every later record of the source lands above `below`, and above the floor.
                let mut offset = below.destination() + 1;
                if below_is_latest && let Some(floor) = self.latest_next_copy_floor {
                    offset = offset.max(floor);
                }
                ResumeEstimate {
                    offset,
                    exact: watermark == below.source + 1,
                }
            }
            None => match self.origin {
                Some(origin) => ResumeEstimate {
                    offset: lowest_known(),
                    exact: watermark <= origin.source_offset,
                },
                None => ResumeEstimate {
                    offset: log_start,
                    exact: watermark == 0,
                },
            },
        }
    }

    /// At most how many records of the source with offsets below `watermark` lie at or above
    /// destination offset `from` (records a consumer resuming at `from` reads again).
    pub fn max_records_below_watermark_from(&self, from: u64, watermark: Option<u64>) -> u64 {
        let Some(watermark) = watermark else {
            return 0;
        };
        let Bracket { below, above, .. } =
            self.bracket(self.partition_point(|e| e.destination() < from));
        // Records at or above `from` come after `below` in source order.
        let lowest_source = match (below, self.origin) {
            (Some(below), _) => below.source + 1,
            (None, Some(origin)) => origin.source_offset,
            (None, None) => 0,
        };
        match above {
            Some(above) => {
                // Records in [from, above) have sources in [lowest_source, above.source).
                let between = if below.is_some() && above.contiguous_with_previous() {
                    0
                } else {
                    (above.destination() - from)
                        .min(watermark.min(above.source).saturating_sub(lowest_source))
                };
                // Records at or above `above` have sources from above.source on.
                between + watermark.saturating_sub(above.source)
            }
            None => watermark.saturating_sub(lowest_source),
        }
    }
}

struct Bracket {
    below: Option<Entry>,
    above: Option<Entry>,
    below_is_latest: bool,
}

/// Every route's checkpoint index, grouped by where the records land so that translation
/// finds all sources of an aggregate partition at once.
#[derive(Clone, Debug, Default)]
pub struct CheckpointIndexes {
    policy: ThinningPolicy,
    by_landing: HashMap<LandingPartition, BTreeMap<String, CheckpointIndex>>,
}

/// Destination region, source topic and partition: one aggregate partition's sources.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LandingPartition {
    destination_region: String,
    topic: String,
    partition: u32,
}

impl CheckpointIndexes {
    pub fn new(policy: ThinningPolicy) -> Self {
        Self {
            policy,
            by_landing: HashMap::new(),
        }
    }

    pub fn policy(&self) -> ThinningPolicy {
        self.policy
    }

    /// Adds one decoded checkpoint-topic record.
    pub fn apply(&mut self, record: &CheckpointRecord) -> InsertOutcome {
        let index = self.index_for_mut(&record.key);
        match record.entry {
            CheckpointEntry::Checkpoint(checkpoint) => {
                index.insert(checkpoint, record.timestamp_ms)
            }
            CheckpointEntry::Origin(origin) => index.record_origin(origin),
            CheckpointEntry::RetentionGap(gap) => index.record_retention_gap(gap),
        }
    }

    /// The index for `key`, created empty if absent (for bulk loading without decoding).
    pub fn index_for_mut(&mut self, key: &CheckpointKey) -> &mut CheckpointIndex {
        let policy = self.policy;
        self.by_landing
            .entry(LandingPartition {
                destination_region: key.route.destination_region.clone(),
                topic: key.topic.clone(),
                partition: key.partition,
            })
            .or_default()
            .entry(key.route.source_region.clone())
            .or_insert_with(|| CheckpointIndex::new(policy))
    }

    pub fn get(&self, key: &CheckpointKey) -> Option<&CheckpointIndex> {
        self.sources_into(&key.route.destination_region, &key.topic, key.partition)
            .find(|(source, _)| *source == key.route.source_region)
            .map(|(_, index)| index)
    }

    /// Every source region with an index for `topic`/`partition` landing in
    /// `destination_region`, with that index.
    pub fn sources_into(
        &self,
        destination_region: &str,
        topic: &str,
        partition: u32,
    ) -> impl Iterator<Item = (&str, &CheckpointIndex)> {
        self.by_landing
            .get(&LandingPartition {
                destination_region: destination_region.to_owned(),
                topic: topic.to_owned(),
                partition,
            })
            .into_iter()
            .flat_map(|sources| {
                sources
                    .iter()
                    .map(|(source, index)| (source.as_str(), index))
            })
    }

    /// Every key with an index.
    pub fn keys(&self) -> impl Iterator<Item = CheckpointKey> + '_ {
        self.by_landing.iter().flat_map(|(landing, sources)| {
            sources.keys().map(move |source| {
                CheckpointKey::new(
                    Route::new(source.clone(), landing.destination_region.clone()),
                    landing.topic.clone(),
                    landing.partition,
                )
            })
        })
    }

    pub fn index_count(&self) -> usize {
        self.by_landing.values().map(BTreeMap::len).sum()
    }

    pub fn entry_count(&self) -> usize {
        self.by_landing
            .values()
            .flat_map(BTreeMap::values)
            .map(CheckpointIndex::len)
            .sum()
    }

    /// Estimated bytes held: the indexes exactly, the maps' own overhead approximately.
    pub fn memory_bytes(&self) -> usize {
        // Hash-map slot: key, value and a control byte; B-tree: ~1.5 slots per element.
        let slot = std::mem::size_of::<LandingPartition>()
            + std::mem::size_of::<BTreeMap<String, CheckpointIndex>>()
            + 1;
        let mut bytes = self.by_landing.capacity() * slot;
        for (landing, sources) in &self.by_landing {
            bytes += landing.destination_region.capacity() + landing.topic.capacity();
            for (source, index) in sources {
                bytes += (std::mem::size_of::<String>() + source.capacity()) * 3 / 2;
                bytes += index.memory_bytes();
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index_of(pairs: &[(u64, u64)]) -> CheckpointIndex {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        for &(s, d) in pairs {
            index.insert(OffsetCheckpoint::new(s, d), 0);
        }
        index
    }

    #[test]
    fn lookups_both_ways() {
        let index = index_of(&[(10, 100), (20, 205), (30, 310)]);
        assert_eq!(
            index.last_at_or_before_source(25),
            Some(MappedOffset {
                source: 20,
                destination: 205
            })
        );
        assert_eq!(index.last_at_or_before_source(5), None);
        assert_eq!(
            index.first_at_or_after_source(21).map(|m| m.source),
            Some(30)
        );
        assert_eq!(
            index.last_below_destination(205).map(|m| m.source),
            Some(10)
        );
        assert_eq!(
            index
                .first_at_or_after_destination(205)
                .map(|m| m.destination),
            Some(205)
        );
        assert_eq!(index.first_at_or_after_destination(311), None);
    }

    #[test]
    fn watermark_is_one_past_the_last_checkpoint_below_the_position() {
        let index = index_of(&[(10, 100), (20, 205), (30, 310)]);
        let estimate = index.watermark_below(250);
        assert_eq!(estimate.watermark, Some(21));
        assert!(!estimate.exact);
        // Records between 205 and 250 can only be sources 21..=29: at most 9.
        assert_eq!(estimate.uncertainty, 9);
        // Right after a checkpoint whose successor is contiguous, the watermark is exact.
        let contiguous = index_of(&[(10, 100), (11, 150)]);
        let estimate = contiguous.watermark_below(120);
        assert_eq!(
            (estimate.watermark, estimate.exact, estimate.uncertainty),
            (Some(11), true, 0)
        );
    }

    #[test]
    fn resume_position_is_exact_at_checkpoints_and_conservative_between() {
        let index = index_of(&[(10, 100), (20, 205), (30, 310)]);
        assert_eq!(
            index.resume_position(Some(20), 0),
            ResumeEstimate {
                offset: 205,
                exact: true
            }
        );
        assert_eq!(
            index.resume_position(Some(25), 0),
            ResumeEstimate {
                offset: 206,
                exact: false
            }
        );
        assert_eq!(
            index.resume_position(Some(21), 0),
            ResumeEstimate {
                offset: 206,
                exact: true
            }
        );
        assert_eq!(
            index.resume_position(Some(5), 40),
            ResumeEstimate {
                offset: 40,
                exact: false
            }
        );
        assert_eq!(index.resume_position(None, 40).offset, 40);
    }

    #[test]
    fn previous_source_offset_bridges_offset_gaps() {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        index.insert(OffsetCheckpoint::new(10, 100), 0);
        // Source offset 11 is a transaction marker: the next record is 12.
        index.insert(
            OffsetCheckpoint {
                previous_source_offset: Some(10),
                ..OffsetCheckpoint::new(12, 140)
            },
            0,
        );
        assert_eq!(
            index.resume_position(Some(11), 0),
            ResumeEstimate {
                offset: 140,
                exact: true
            }
        );
        assert!(index.watermark_below(120).exact);
    }

    #[test]
    fn next_copy_floor_lets_an_idle_source_keep_up() {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        index.insert(OffsetCheckpoint::new(7, 10), 0);
        assert_eq!(
            index.insert(
                OffsetCheckpoint {
                    next_copy_floor: Some(5_000),
                    ..OffsetCheckpoint::new(7, 10)
                },
                1
            ),
            InsertOutcome::Refreshed
        );
        assert_eq!(index.resume_position(Some(8), 0).offset, 5_000);
        assert!(index.watermark_below(4_000).exact);
        assert!(!index.watermark_below(6_000).exact);
        assert_eq!(index.watermark_below(6_000).uncertainty, 1_000);
    }

    #[test]
    fn origin_bounds_a_source_without_checkpoints() {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        index.record_origin(RouteOrigin::new(50, 900));
        assert_eq!(index.resume_position(None, 0).offset, 900);
        assert_eq!(
            index.resume_position(Some(50), 0),
            ResumeEstimate {
                offset: 900,
                exact: true
            }
        );
        assert_eq!(index.watermark_below(900).watermark, None);
        assert!(index.watermark_below(900).exact);
        assert!(!index.watermark_below(901).exact);
        // Re-emitted while idle: nothing copied below 2_000 either.
        index.record_origin(RouteOrigin {
            next_copy_floor: Some(2_000),
            ..RouteOrigin::new(50, 900)
        });
        assert_eq!(index.resume_position(Some(50), 0).offset, 2_000);
        assert!(index.watermark_below(2_000).exact);
        assert_eq!(index.watermark_below(2_500).uncertainty, 500);
        // A checkpoint below the origin proves it wrong.
        index.insert(OffsetCheckpoint::new(60, 800), 0);
        assert_eq!(index.origin(), None);
    }

    #[test]
    fn out_of_order_checkpoints_are_classified_and_ignored() {
        let mut index = index_of(&[(10, 100), (20, 200)]);
        assert_eq!(
            index.insert(OffsetCheckpoint::new(15, 150), 0),
            InsertOutcome::IgnoredStale
        );
        assert_eq!(
            index.insert(OffsetCheckpoint::new(15, 250), 0),
            InsertOutcome::IgnoredRewind
        );
        assert_eq!(
            index.insert(OffsetCheckpoint::new(25, 190), 0),
            InsertOutcome::Contradiction
        );
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_contradiction_marks_the_index_until_a_restart_origin() {
        let mut index = index_of(&[(10, 100), (20, 200)]);
        assert_eq!(index.contradiction(), None);
        assert_eq!(
            index.insert(OffsetCheckpoint::new(21, 5), 0),
            InsertOutcome::Contradiction
        );
        assert_eq!(
            index.insert(OffsetCheckpoint::new(22, 6), 0),
            InsertOutcome::Contradiction
        );
        let mapped = |source, destination| MappedOffset {
            source,
            destination,
        };
        assert_eq!(
            index.contradiction(),
            Some(Contradiction {
                retained: mapped(20, 200),
                contradicting: mapped(21, 5),
                checkpoints: 2,
            })
        );
        // An origin at or above the newest destination offset restarts nothing.
        assert_eq!(
            index.record_origin(RouteOrigin::new(0, 250)),
            InsertOutcome::OriginContradicted
        );
        assert!(index.contradiction().is_some());
        // One below it does: the log restarted; only the origin is left.
        assert_eq!(
            index.record_origin(RouteOrigin::new(21, 0)),
            InsertOutcome::Restarted
        );
        assert_eq!(index.contradiction(), None);
        assert!(index.is_empty());
        assert_eq!(index.origin(), Some(RouteOrigin::new(21, 0)));
        assert_eq!(
            index.insert(OffsetCheckpoint::new(23, 7), 0),
            InsertOutcome::Appended
        );
        // Below the restart origin: a late record of the old log.
        assert_eq!(
            index.insert(OffsetCheckpoint::new(15, 150), 0),
            InsertOutcome::Contradiction
        );
        assert_eq!(
            index.contradiction().map(|c| c.retained),
            Some(mapped(21, 0))
        );
    }

    #[test]
    fn the_first_origin_again_restarts_a_recreated_log() {
        // ExactlyOnce on an empty topic: origin (0, 0); recreated empty, the route starts
        // afresh with the same origin.
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        index.record_origin(RouteOrigin::new(0, 0));
        index.insert(OffsetCheckpoint::new(5, 5), 0);
        assert_eq!(
            index.record_origin(RouteOrigin::new(0, 0)),
            InsertOutcome::Restarted
        );
        assert!(index.is_empty());
    }

    #[test]
    fn an_origin_below_the_idle_floor_voids_it() {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        index.record_origin(RouteOrigin {
            next_copy_floor: Some(500),
            ..RouteOrigin::new(0, 100)
        });
        assert_eq!(index.resume_position(None, 0).offset, 500);
        // A second writer (or a restarted log) claims copies from 40 on.
        index.record_origin(RouteOrigin::new(0, 40));
        assert_eq!(index.resume_position(None, 0).offset, 40);
    }

    #[test]
    fn a_day_of_checkpoints_fits_the_documented_budget() {
        let mut index = CheckpointIndex::new(ThinningPolicy::default());
        for second in 0..86_400u64 {
            index.insert(OffsetCheckpoint::new(second * 10, second * 30), 0);
        }
        assert!(index.len() <= 512, "{} entries", index.len());
        assert!(
            index.memory_bytes() <= 9 * 1024,
            "{} bytes",
            index.memory_bytes()
        );
        // The newest `recent` checkpoints are all there.
        let newest: Vec<_> = index.entries().rev().take(128).collect();
        assert!(newest.windows(2).all(|w| w[0].source == w[1].source + 10));
        // An hour back the bracket is at most (3600 − 128) / 32 + 2 checkpoints wide.
        let hour_ago = (86_400 - 3_600) * 30 + 1;
        let below = index
            .last_below_destination(hour_ago)
            .map(|m| m.destination);
        let above = index
            .first_at_or_after_destination(hour_ago)
            .map(|m| m.destination);
        let (Some(below), Some(above)) = (below, above) else {
            panic!("an hour back must be bracketed");
        };
        assert!((above - below) / 30 <= (3_600 - 128) / 32 + 2);
    }

    fn monotone_checkpoints() -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec((1..4u64, 1..6u64), 0..300).prop_map(|steps| {
            let (mut s, mut d) = (0, 0);
            steps
                .into_iter()
                .map(|(ds, dd)| {
                    s += ds;
                    d += dd;
                    (s, d)
                })
                .collect()
        })
    }

    proptest! {
        /// Thinned lookups are always on the safe side of the full checkpoint list.
        #[test]
        fn thinning_only_makes_lookups_more_conservative(
            pairs in monotone_checkpoints(),
            recent in 1..6usize,
            per_level in 1..4usize,
            query in 0..1_500u64,
        ) {
            let mut index = CheckpointIndex::new(ThinningPolicy::new(recent, per_level));
            for &(s, d) in &pairs {
                prop_assert_eq!(index.insert(OffsetCheckpoint::new(s, d), 0), InsertOutcome::Appended);
            }
            prop_assert_eq!(index.len(), index.entries().count());
            let retained: Vec<_> = index.entries().collect();
            prop_assert!(retained.windows(2).all(|w| w[0].source < w[1].source));
            prop_assert_eq!(retained.last().map(|m| (m.source, m.destination)), pairs.last().copied());

            // Truth: every checkpoint is a record (records without checkpoints are unknown).
            let true_last_below = pairs.iter().rev().find(|(_, d)| *d < query);
            let estimate = index.watermark_below(query);
            if let Some(w) = estimate.watermark {
                // Never claims a record consumed that was not.
                let consumed = true_last_below.map(|(s, _)| s + 1);
                prop_assert!(Some(w) <= consumed);
            }
            let first_at_or_after = pairs.iter().find(|(s, _)| *s >= query);
            let resume = index.resume_position(Some(query), 0);
            if let Some((_, d)) = first_at_or_after {
                prop_assert!(resume.offset <= *d);
            }
        }
    }
}
