//! A small simulated world for translation tests: source partitions produce records, every
//! aggregate interleaves the routes' copies in its own order, and replicators write
//! checkpoints with a chosen sparsity. The world knows the truth (every record's position in
//! every aggregate), so tests can check a plan against it.
//!
//! Optionally it is as messy as production: replicators restart and copy records again
//! (at-least-once: duplicates in the aggregate), the restarted writer's checkpoints interleave
//! with the old writer's late ones in the checkpoint topic (concurrent writers), and the last
//! aggregate's partitions are recreated (the old log is gone; each route writes a restart
//! origin into the new one, as docs/checkpoint-format.md asks).

use std::collections::BTreeMap;

use tributary_core::checkpoint::{self, CheckpointEntry, CheckpointKey, CheckpointRecord};
use tributary_core::index::ThinningPolicy;
use tributary_core::{
    AggregateLayout, AggregatePartition, CheckpointIndexes, OffsetCheckpoint, OffsetRange,
    Provenance, Route, RouteOrigin, TopicNaming,
};

pub const TOPIC: &str = "orders";

/// splitmix64: deterministic, seedable, no dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Which copies a replicator writes a checkpoint for.
#[derive(Clone, Copy, Debug)]
pub enum Sparsity {
    EveryRecord,
    EveryKth(usize),
    Random { percent: u64 },
}

#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub sources: usize,
    pub aggregates: usize,
    pub partitions: u32,
    pub max_records: u64,
    pub sparsity: Sparsity,
    /// Every route checkpoints every copy (origins, previous offsets and floors stay random).
    pub exact: bool,
    pub mess: Mess,
}

/// What goes wrong in the world (all off: the clean world).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mess {
    /// Replicators restart from an earlier source position and copy records again.
    pub recopies: bool,
    /// A restarted replicator's checkpoints and its predecessor's late ones interleave in any
    /// order in the checkpoint topic (each writer's own stay in order).
    pub concurrent_writers: bool,
    /// Partitions of the last aggregate are recreated at a random point.
    pub recreated_destination: bool,
}

/// One record in an aggregate partition: which source produced it, at which source offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Copied {
    pub source: usize,
    pub source_offset: u64,
}

/// What one route copied into one aggregate partition, and how its replicator checkpoints.
#[derive(Clone, Debug)]
struct RouteLog {
    /// (source offset, destination offset), in copy order. Destination offsets are the
    /// partition's offsets before any recreation; see `recreated_at`.
    copies: Vec<(u64, u64)>,
    /// Where each writer (replicator run) starts in `copies`: 0 and each restart.
    run_starts: Vec<usize>,
    /// The partition was recreated when its log held this many records: copies below it are
    /// gone, the rest landed at `destination − recreated_at`.
    recreated_at: Option<u64>,
    checkpointed: Vec<bool>,
    origin: Option<RouteOrigin>,
    gap: Option<(OffsetRange, u64)>,
    with_previous: bool,
    with_floor: bool,
}

#[derive(Clone, Debug)]
pub struct World {
    pub source_regions: Vec<String>,
    pub aggregate_regions: Vec<String>,
    pub partitions: u32,
    /// Partition count of each source's regional topic (≤ `partitions`).
    pub source_partitions: Vec<u32>,
    /// `logs[aggregate][partition]`: the aggregate partition's full log.
    pub logs: Vec<Vec<Vec<Copied>>>,
    /// Keyed by (source, aggregate, partition).
    routes: BTreeMap<(usize, usize, u32), RouteLog>,
    pub mess: Mess,
    /// Seed for the order in which concurrent writers' records reach the checkpoint topic.
    shuffle_seed: u64,
    /// Aggregate partitions that were recreated.
    pub recreated: Vec<(usize, u32)>,
}

impl World {
    pub fn build(config: &WorldConfig) -> World {
        let mut rng = Rng::new(config.seed);
        let source_regions: Vec<String> = (0..config.sources).map(|s| format!("s{s}")).collect();
        let aggregate_regions: Vec<String> =
            (0..config.aggregates).map(|x| format!("x{x}")).collect();
        // Some sources have fewer partitions: their topic never grew.
        let source_partitions: Vec<u32> = (0..config.sources)
            .map(|_| 1 + rng.below(u64::from(config.partitions)) as u32)
            .collect();
        // streams[s][p]: the source offsets of records, skipping some (transaction markers).
        let streams: Vec<Vec<Vec<u64>>> = (0..config.sources)
            .map(|s| {
                (0..source_partitions[s])
                    .map(|_| {
                        let count = rng.below(config.max_records + 1);
                        let mut offset = rng.below(3);
                        (0..count)
                            .map(|_| {
                                let this = offset;
                                offset += 1 + u64::from(rng.chance(20));
                                this
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();

        let mut logs = vec![vec![Vec::new(); config.partitions as usize]; config.aggregates];
        let mut routes = BTreeMap::new();
        for (x, aggregate_logs) in logs.iter_mut().enumerate() {
            for p in 0..config.partitions {
                // What each route copies: its stream from a (sometimes late) start, minus a
                // (sometimes) retention gap.
                #[allow(clippy::type_complexity)]
                let mut pending: Vec<(
                    usize,
                    Vec<u64>,
                    Option<OffsetRange>,
                    u64,
                    Vec<usize>,
                )> = Vec::new();
                for (s, partitions) in streams.iter().enumerate() {
                    let Some(stream) = partitions.get(p as usize) else {
                        continue;
                    };
                    let start = if rng.chance(20) {
                        rng.below(stream.len() as u64 + 1) as usize
                    } else {
                        0
                    };
                    let next_offset = |i: usize| {
                        stream
                            .get(i)
                            .copied()
                            .unwrap_or_else(|| stream.last().map_or(0, |l| l + 1))
                    };
                    let origin_source = next_offset(start);
                    let mut copied: Vec<u64> = stream[start..].to_vec();
                    let mut gap = None;
                    if copied.len() > 2 && rng.chance(20) {
                        let from = 1 + rng.below(copied.len() as u64 - 1) as usize;
                        let to = from + 1 + rng.below((copied.len() - from) as u64) as usize;
                        let to_offset = next_offset(start + to);
                        gap = Some(OffsetRange {
                            from: copied[from],
                            to: to_offset,
                        });
                        copied.drain(from..to);
                    }
                    // At-least-once: the replicator restarts after copying `k` records and goes
                    // back to a stored position at or before it, copying those records again.
                    let mut run_starts = vec![0];
                    if config.mess.recopies && copied.len() >= 2 && rng.chance(50) {
                        let k = 1 + rng.below(copied.len() as u64 - 1) as usize;
                        let resume_at = rng.below(k as u64 + 1) as usize;
                        let again: Vec<u64> = copied[resume_at..].to_vec();
                        copied.truncate(k);
                        copied.extend(again);
                        run_starts.push(k);
                    }
                    pending.push((s, copied, gap, origin_source, run_starts));
                }
                // Interleave: each step copies the next record of a random route, with
                // per-aggregate weights so that interleavings differ in shape too.
                let weights: Vec<u64> = pending.iter().map(|_| 1 + rng.below(4)).collect();
                let mut cursors = vec![0usize; pending.len()];
                let mut copies: Vec<Vec<(u64, u64)>> = vec![Vec::new(); pending.len()];
                let log = &mut aggregate_logs[p as usize];
                loop {
                    let open: Vec<usize> = (0..pending.len())
                        .filter(|&i| cursors[i] < pending[i].1.len())
                        .collect();
                    if open.is_empty() {
                        break;
                    }
                    let total: u64 = open.iter().map(|&i| weights[i]).sum();
                    let mut pick = rng.below(total);
                    let mut chosen = open[0];
                    for &i in &open {
                        if pick < weights[i] {
                            chosen = i;
                            break;
                        }
                        pick -= weights[i];
                    }
                    let source_offset = pending[chosen].1[cursors[chosen]];
                    cursors[chosen] += 1;
                    copies[chosen].push((source_offset, log.len() as u64));
                    log.push(Copied {
                        source: pending[chosen].0,
                        source_offset,
                    });
                }
                let log_len = log.len() as u64;
                // Recreated: the log is cut at a random point; what follows starts at 0.
                let recreated_at = (config.mess.recreated_destination
                    && x + 1 == config.aggregates
                    && rng.chance(60))
                .then(|| rng.below(log_len + 1));
                for ((s, _, gap, origin_source, run_starts), copies) in
                    pending.into_iter().zip(copies)
                {
                    let exact = config.exact;
                    let checkpointed = copies
                        .iter()
                        .enumerate()
                        .map(|(i, _)| match (exact, config.sparsity) {
                            (true, _) | (false, Sparsity::EveryRecord) => true,
                            (false, Sparsity::EveryKth(k)) => i % k.max(1) == k.max(1) - 1,
                            (false, Sparsity::Random { percent }) => rng.chance(percent),
                        })
                        .collect();
                    // The route started when the destination ended somewhere at or before its
                    // first copy.
                    let first_landing = copies.first().map_or(log_len, |c| c.1);
                    let origin_destination = first_landing.saturating_sub(rng.below(3));
                    let origin = rng
                        .chance(60)
                        .then(|| RouteOrigin::new(origin_source, origin_destination));
                    // Where the gap was noticed: at the first copy after it.
                    let gap = gap.map(|range| {
                        let noticed = copies
                            .iter()
                            .find(|c| c.0 >= range.to)
                            .map_or(log_len, |c| c.1);
                        (range, noticed)
                    });
                    routes.insert(
                        (s, x, p),
                        RouteLog {
                            copies,
                            run_starts,
                            recreated_at,
                            checkpointed,
                            origin,
                            gap,
                            with_previous: rng.chance(50),
                            with_floor: rng.chance(50),
                        },
                    );
                }
            }
        }
        let mut recreated = Vec::new();
        for (x, aggregate_logs) in logs.iter_mut().enumerate() {
            for (p, log) in aggregate_logs.iter_mut().enumerate() {
                let cut = routes
                    .iter()
                    .find(|((_, rx, rp), _)| *rx == x && *rp as usize == p)
                    .and_then(|(_, route)| route.recreated_at);
                if let Some(cut) = cut {
                    log.drain(..cut as usize);
                    recreated.push((x, p as u32));
                }
            }
        }
        World {
            source_regions,
            aggregate_regions,
            partitions: config.partitions,
            source_partitions,
            logs,
            routes,
            mess: config.mess,
            shuffle_seed: rng.next(),
            recreated,
        }
    }

    /// Whether the aggregate partition was recreated (its log restarted at 0).
    pub fn is_recreated(&self, aggregate: usize, partition: u32) -> bool {
        self.recreated.contains(&(aggregate, partition))
    }

    pub fn log(&self, aggregate: usize, partition: u32) -> &[Copied] {
        &self.logs[aggregate][partition as usize]
    }

    pub fn layout(&self) -> AggregateLayout {
        let mut layout = AggregateLayout::new(TopicNaming::Identity);
        for (s, region) in self.source_regions.iter().enumerate() {
            layout.add_source_topic(region, TOPIC, self.source_partitions[s]);
        }
        layout
    }

    /// The checkpoint records of every route into `aggregate`, as a reader sees them when
    /// each partition's log (and checkpoint stream) has reached `visible_end[p]` (offsets of
    /// the log as it is now, after any recreation).
    pub fn checkpoint_records(
        &self,
        aggregate: usize,
        visible_end: &[u64],
    ) -> Vec<CheckpointRecord> {
        // One stream per writer (route and run), each in its own order.
        let mut writers: Vec<Vec<CheckpointRecord>> = Vec::new();
        for (&(s, x, p), route) in &self.routes {
            if x != aggregate {
                continue;
            }
            let cut = route.recreated_at.unwrap_or(0);
            let end = visible_end[p as usize];
            let key = CheckpointKey::new(
                Route::new(&self.source_regions[s], &self.aggregate_regions[x]),
                TOPIC,
                p,
            );
            let record = |entry| CheckpointRecord {
                key: key.clone(),
                timestamp_ms: 0,
                entry,
            };
            // A destination offset before the recreation is in the old log: always visible
            // (written before it), and as it was. After it: shifted, visible below `end`.
            let old = |d: u64| route.recreated_at.is_some() && d < cut;
            let visible = |d: u64| old(d) || d - cut < end;
            let now = |d: u64| if old(d) { d } else { d - cut };
            let mut stream = Vec::new();
            if let Some(origin) = route.origin
                && (old(origin.destination_offset) || now(origin.destination_offset) <= end)
            {
                // Re-emitted while nothing is copied yet, with the destination's end as floor.
                let nothing_visible = route.copies.first().is_none_or(|c| !visible(c.1));
                let next_copy_floor =
                    (route.with_floor && nothing_visible && !old(origin.destination_offset))
                        .then(|| route.copies.first().map_or(end, |c| now(c.1).min(end)));
                stream.push(record(CheckpointEntry::Origin(RouteOrigin {
                    next_copy_floor,
                    destination_offset: now(origin.destination_offset),
                    ..origin
                })));
            }
            if let Some((gap, noticed)) = route.gap
                && visible(noticed)
            {
                stream.push(record(CheckpointEntry::RetentionGap(gap)));
            }
            let mut restart_written = route.recreated_at.is_none();
            for (i, &(source_offset, destination_offset)) in route.copies.iter().enumerate() {
                if route.run_starts.contains(&i) && i > 0 && self.mess.concurrent_writers {
                    writers.push(std::mem::take(&mut stream));
                }
                if !restart_written && !old(destination_offset) {
                    // The writer found the destination recreated: a restart origin for the new
                    // log before its first copy there (visible once the recreation is).
                    restart_written = true;
                    stream.push(record(CheckpointEntry::Origin(self.restart_origin(route))));
                }
                if !visible(destination_offset) {
                    break;
                }
                if !route.checkpointed[i] {
                    continue;
                }
                // The floor a writer re-emits: the log's end then, so at most the next landing
                // (and, in the old log, at most where it ended).
                let next = route.copies.get(i + 1);
                let next_landing = if old(destination_offset) {
                    next.map_or(cut, |c| c.1.min(cut))
                } else {
                    next.map_or(end, |c| now(c.1).min(end))
                };
                let first_of_run = route.run_starts.contains(&i);
                stream.push(record(CheckpointEntry::Checkpoint(OffsetCheckpoint {
                    source_offset,
                    destination_offset: now(destination_offset),
                    previous_source_offset: (route.with_previous && !first_of_run)
                        .then(|| route.copies[i - 1].0),
                    next_copy_floor: (route.with_floor && next_landing > now(destination_offset))
                        .then_some(next_landing),
                })));
            }
            if !restart_written && route.copies.iter().all(|c| old(c.1)) {
                // Recreated, nothing copied since: the restart origin is all the new log has.
                stream.push(record(CheckpointEntry::Origin(self.restart_origin(route))));
            }
            writers.push(stream);
        }
        if !self.mess.concurrent_writers {
            return writers.concat();
        }
        // Any interleaving that keeps each writer's order, as in a shared checkpoint topic.
        let mut rng = Rng::new(self.shuffle_seed ^ aggregate as u64);
        let mut cursors = vec![0usize; writers.len()];
        let mut records = Vec::new();
        loop {
            let open: Vec<usize> = (0..writers.len())
                .filter(|&w| cursors[w] < writers[w].len())
                .collect();
            if open.is_empty() {
                return records;
            }
            let w = open[rng.below(open.len() as u64) as usize];
            records.push(writers[w][cursors[w]].clone());
            cursors[w] += 1;
        }
    }

    /// The origin a writer states for a recreated destination: every copy from now on is of
    /// a source offset at or above the lowest it copies there, and lands at or above 0.
    fn restart_origin(&self, route: &RouteLog) -> RouteOrigin {
        let cut = route.recreated_at.unwrap_or(0);
        let lowest = route
            .copies
            .iter()
            .filter(|c| c.1 >= cut)
            .map(|c| c.0)
            .min()
            .unwrap_or(0);
        RouteOrigin::new(lowest, 0)
    }

    /// Applies records through the wire format, as checkpoint-sync would.
    pub fn load(indexes: &mut CheckpointIndexes, records: &[CheckpointRecord]) {
        for record in records {
            let encoded = checkpoint::encode(record).expect("simulated records are valid");
            let decoded =
                checkpoint::decode(&encoded.key, &encoded.value).expect("encoded records decode");
            indexes.apply(&decoded);
        }
    }

    pub fn indexes(
        &self,
        policy: ThinningPolicy,
        views: &[(usize, Vec<u64>)],
    ) -> CheckpointIndexes {
        let mut indexes = CheckpointIndexes::new(policy);
        for (aggregate, visible_end) in views {
            Self::load(
                &mut indexes,
                &self.checkpoint_records(*aggregate, visible_end),
            );
        }
        indexes
    }

    /// Per source: one past its last record below `committed` in the aggregate partition.
    pub fn true_watermarks(
        &self,
        aggregate: usize,
        partition: u32,
        committed: u64,
    ) -> Vec<Option<u64>> {
        let mut watermarks = vec![None; self.source_regions.len()];
        for record in self
            .log(aggregate, partition)
            .iter()
            .take(committed as usize)
        {
            // Re-copies come later with lower offsets: the highest consumed counts.
            let slot = &mut watermarks[record.source];
            *slot = (*slot).max(Some(record.source_offset + 1));
        }
        watermarks
    }

    pub fn provenance(&self, record: Copied, partition: u32) -> Provenance {
        Provenance {
            region: self.source_regions[record.source].clone(),
            cluster: None,
            topic: TOPIC.to_owned(),
            partition,
            offset: record.source_offset,
        }
    }

    pub fn aggregate_partition(partition: u32) -> AggregatePartition {
        AggregatePartition::new(TOPIC, partition)
    }
}

/// What a resume offset does to a group that consumed `committed` records in `from`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records at or above a source's true watermark (or of a source the group has not
    /// started) that lie below the resume offset.
    pub skipped: u64,
    /// Records the group consumed in `from` that lie at or above the resume offset.
    pub duplicates: u64,
    /// Of those, the ones a deduper with the plan's watermarks lets through.
    pub duplicates_after_dedupe: u64,
}

pub fn outcome(
    world: &World,
    (from, to): (usize, usize),
    partition: u32,
    committed: u64,
    resume: u64,
    deduper: &tributary_core::Deduper,
) -> Outcome {
    let true_watermarks = world.true_watermarks(from, partition, committed);
    let consumed: std::collections::BTreeSet<Copied> = world
        .log(from, partition)
        .iter()
        .take(committed as usize)
        .copied()
        .collect();
    let mut outcome = Outcome::default();
    // A record is skipped if none of its copies (re-copies included) lies at or above resume.
    let mut seen_from_resume = std::collections::BTreeMap::<Copied, bool>::new();
    for (position, record) in world.log(to, partition).iter().enumerate() {
        let position = position as u64;
        // Below the watermark but never in `from` (a gap or a late start of that route) is
        // behind the group's position in the source's order: neither skipped nor duplicated.
        let behind = true_watermarks[record.source].is_some_and(|w| record.source_offset < w);
        if !behind {
            *seen_from_resume.entry(*record).or_default() |= position >= resume;
        }
        if position >= resume && consumed.contains(record) {
            outcome.duplicates += 1;
            if deduper.should_process(&world.provenance(*record, partition)) {
                outcome.duplicates_after_dedupe += 1;
            }
        }
    }
    outcome.skipped = seen_from_resume.values().filter(|seen| !**seen).count() as u64;
    outcome
}
