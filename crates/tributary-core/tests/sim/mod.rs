//! A small simulated world for translation tests: source partitions produce records, every
//! aggregate interleaves the routes' copies in its own order, and replicators write
//! checkpoints with a chosen sparsity. The world knows the truth (every record's position in
//! every aggregate), so tests can check a plan against it.

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
    /// (source offset, destination offset), in copy order.
    copies: Vec<(u64, u64)>,
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
                let mut pending: Vec<(usize, Vec<u64>, Option<OffsetRange>, u64)> = Vec::new();
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
                    pending.push((s, copied, gap, origin_source));
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
                for ((s, _, gap, origin_source), copies) in pending.into_iter().zip(copies) {
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
        World {
            source_regions,
            aggregate_regions,
            partitions: config.partitions,
            source_partitions,
            logs,
            routes,
        }
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
    /// each partition's log (and checkpoint stream) has reached `visible_end[p]`.
    pub fn checkpoint_records(
        &self,
        aggregate: usize,
        visible_end: &[u64],
    ) -> Vec<CheckpointRecord> {
        let mut records = Vec::new();
        for (&(s, x, p), route) in &self.routes {
            if x != aggregate {
                continue;
            }
            let end = visible_end[p as usize];
            let key = CheckpointKey::new(
                Route::new(&self.source_regions[s], &self.aggregate_regions[x]),
                TOPIC,
                p,
            );
            let mut push = |entry| {
                records.push(CheckpointRecord {
                    key: key.clone(),
                    timestamp_ms: 0,
                    entry,
                })
            };
            let visible_copies = route.copies.iter().take_while(|c| c.1 < end).count();
            if let Some(origin) = route.origin
                && origin.destination_offset <= end
            {
                // Re-emitted while nothing is copied yet, with the destination's end as floor.
                let next_copy_floor = (route.with_floor && visible_copies == 0)
                    .then(|| route.copies.first().map_or(end, |c| c.1.min(end)));
                push(CheckpointEntry::Origin(RouteOrigin {
                    next_copy_floor,
                    ..origin
                }));
            }
            if let Some((gap, noticed)) = route.gap
                && noticed < end
            {
                push(CheckpointEntry::RetentionGap(gap));
            }
            for (i, &(source_offset, destination_offset)) in
                route.copies[..visible_copies].iter().enumerate()
            {
                if !route.checkpointed[i] {
                    continue;
                }
                let next_landing = route.copies.get(i + 1).map_or(end, |c| c.1.min(end));
                push(CheckpointEntry::Checkpoint(OffsetCheckpoint {
                    source_offset,
                    destination_offset,
                    previous_source_offset: (route.with_previous && i > 0)
                        .then(|| route.copies[i - 1].0),
                    next_copy_floor: (route.with_floor && next_landing > destination_offset)
                        .then_some(next_landing),
                }));
            }
        }
        records
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
            watermarks[record.source] = Some(record.source_offset + 1);
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
    for (position, record) in world.log(to, partition).iter().enumerate() {
        let position = position as u64;
        // Below the watermark but never in `from` (a gap or a late start of that route) is
        // behind the group's position in the source's order: neither skipped nor duplicated.
        let behind = true_watermarks[record.source].is_some_and(|w| record.source_offset < w);
        if position < resume && !behind {
            outcome.skipped += 1;
        }
        if position >= resume && consumed.contains(record) {
            outcome.duplicates += 1;
            if deduper.should_process(&world.provenance(*record, partition)) {
                outcome.duplicates_after_dedupe += 1;
            }
        }
    }
    outcome
}
