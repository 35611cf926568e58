//! Translation benchmark: a group with 1000 partitions × 3 sources, over a day of checkpoints
//! at one a second (86,400 per source partition and route), for both aggregates the
//! translation reads (A and B). Builds the index, then times `translate` for all partitions.
//!
//! Ends with one line that `make bench-translate` greps:
//! `translate-bench: partitions=1000 sources=3 ms=<x> index_mib=<y>`.
//! `TRANSLATE_BENCH_PARTITIONS` / `TRANSLATE_BENCH_SECONDS` shrink it for a quick run.
//!
//! Exits non-zero when the median translation takes longer than `TRANSLATE_BENCH_MAX_MS`
//! (default 50 ms: a standby round at a 1 s interval spends at most 5 % of it translating),
//! when the index outgrows `TRANSLATE_BENCH_MAX_INDEX_MIB` (default 64 MiB), or when the plan
//! does not resume every partition.

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{Duration, Instant};

use tributary_core::{
    AggregateLayout, AggregatePartition, CheckpointIndexes, CheckpointKey, LogOffsets,
    OffsetCheckpoint, Route, ThinningPolicy, TopicNaming, TranslationRequest, translate,
};

const SOURCES: [&str; 3] = ["east", "west", "central"];
const FROM: &str = "east";
const TO: &str = "west";
const TOPIC: &str = "orders";
const RUNS: usize = 15;
/// Targets for the default size (1000 partitions × 3 sources, a day at 1 s); measured here at
/// ~6 ms and ~49 MiB on 2 shared cores.
const MAX_MS: u64 = 50;
const MAX_INDEX_MIB: u64 = 64;

fn env_or(name: &str, default: u64) -> Result<u64, Box<dyn Error>> {
    match std::env::var(name) {
        Ok(value) => Ok(value.parse()?),
        Err(_) => Ok(default),
    }
}

/// Records a source partition produces in second `t`: 20–180, varying by source and time.
fn records_in_second(source: usize, partition: u64, t: u64) -> u64 {
    let mut x = (source as u64 + 1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(partition.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(t.wrapping_mul(0x94D0_49BB_1331_11EB));
    x ^= x >> 31;
    20 + x % 161
}

/// Resident set size from /proc/self/statm (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() -> Result<(), Box<dyn Error>> {
    let partitions = env_or("TRANSLATE_BENCH_PARTITIONS", 1000)?;
    let seconds = env_or("TRANSLATE_BENCH_SECONDS", 86_400)?;
    let max_ms = env_or("TRANSLATE_BENCH_MAX_MS", MAX_MS)?;
    let max_index_mib = env_or("TRANSLATE_BENCH_MAX_INDEX_MIB", MAX_INDEX_MIB)?;
    let rss_before = resident_bytes();

    let build_started = Instant::now();
    let mut indexes = CheckpointIndexes::new(ThinningPolicy::default());
    let mut committed = BTreeMap::new();
    let mut destination = BTreeMap::new();
    for p in 0..partitions {
        let partition = u32::try_from(p)?;
        // Each aggregate appends every second's batches in its own order (A: rotating one
        // way, B: the other), so the same source offsets land at different offsets.
        let batches: Vec<[u64; 3]> = (0..seconds)
            .map(|t| [0, 1, 2].map(|s| records_in_second(s, p, t)))
            .collect();
        let order = |aggregate: usize, k: usize, t: usize| {
            if aggregate == 0 {
                (k + t) % 3
            } else {
                (3 - k + t) % 3
            }
        };
        let mut ends = [0u64; 2];
        let mut from_end_at = Vec::with_capacity(seconds as usize);
        for (aggregate, region) in [FROM, TO].into_iter().enumerate() {
            for (s, source) in SOURCES.into_iter().enumerate() {
                let key = CheckpointKey::new(Route::new(source, region), TOPIC, partition);
                let index = indexes.index_for_mut(&key);
                let (mut end, mut source_next) = (0u64, 0u64);
                for (t, batch) in batches.iter().enumerate() {
                    for k in 0..3 {
                        let batch_source = order(aggregate, k, t);
                        end += batch[batch_source];
                        if batch_source == s {
                            // The second's last record of this source: one checkpoint.
                            let last = source_next + batch[s] - 1;
                            index.insert(
                                OffsetCheckpoint {
                                    previous_source_offset: Some(last - 1),
                                    ..OffsetCheckpoint::new(last, end - 1)
                                },
                                t as i64 * 1000,
                            );
                        }
                    }
                    source_next += batch[s];
                    if aggregate == 0 && s == 0 {
                        from_end_at.push(end);
                    }
                }
                ends[aggregate] = end;
            }
        }
        // Most groups trail by seconds to minutes; some by hours (thinned region).
        let lag_seconds = match p % 10 {
            0 => 3 * 3600 + p % 3600,
            1..=3 => 60 + p % 600,
            _ => p % 30,
        };
        let at = seconds.saturating_sub(lag_seconds + 1) as usize;
        let aggregate = AggregatePartition::new(TOPIC, partition);
        committed.insert(aggregate.clone(), from_end_at[at].saturating_sub(p % 97));
        destination.insert(
            aggregate,
            LogOffsets {
                start: 0,
                end: ends[1],
            },
        );
    }
    let build = build_started.elapsed();
    let rss_after = resident_bytes();

    let layout = SOURCES
        .iter()
        .fold(AggregateLayout::new(TopicNaming::Identity), |layout, s| {
            layout.with_source_topic(*s, TOPIC, u32::try_from(partitions).unwrap_or(u32::MAX))
        });
    let observed = BTreeMap::new();
    let request = TranslationRequest {
        group_id: "bench",
        from_region: FROM,
        to_region: TO,
        layout: &layout,
        checkpoints: &indexes,
        committed: &committed,
        destination: &destination,
        observed: &observed,
    };
    let mut timings: Vec<Duration> = Vec::with_capacity(RUNS);
    let mut plan = translate(&request);
    for _ in 0..RUNS {
        let started = Instant::now();
        plan = std::hint::black_box(translate(std::hint::black_box(&request)));
        timings.push(started.elapsed());
    }
    timings.sort();
    let median = timings[RUNS / 2];
    let index_bytes = indexes.memory_bytes();
    let index_mib = index_bytes as f64 / (1024.0 * 1024.0);

    println!(
        "built {} indexes ({} retained of {} checkpoints) in {:.1} s",
        indexes.index_count(),
        indexes.entry_count(),
        partitions * seconds * 6,
        build.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "resident memory grew {:.1} MiB while building (index estimate {index_mib:.1} MiB)",
            after.saturating_sub(before) as f64 / (1024.0 * 1024.0)
        );
    }
    println!(
        "translate over {} runs: min {:.2} ms, median {:.2} ms, max {:.2} ms",
        RUNS,
        timings[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        timings[RUNS - 1].as_secs_f64() * 1e3
    );
    println!(
        "plan: {} partitions, exact={}, max_duplicates={}, max_duplicates_after_dedupe={}",
        plan.partitions.len(),
        plan.exact,
        plan.max_duplicates,
        plan.max_duplicates_after_dedupe
    );
    println!(
        "translate-bench: partitions={partitions} sources={} ms={:.2} index_mib={index_mib:.1}",
        SOURCES.len(),
        median.as_secs_f64() * 1e3
    );

    let mut failures = Vec::new();
    if median > Duration::from_millis(max_ms) {
        failures.push(format!(
            "median translation {:.2} ms is above the target {max_ms} ms (TRANSLATE_BENCH_MAX_MS)",
            median.as_secs_f64() * 1e3
        ));
    }
    if index_mib > max_index_mib as f64 {
        failures.push(format!(
            "the index holds {index_mib:.1} MiB, above the target {max_index_mib} MiB (TRANSLATE_BENCH_MAX_INDEX_MIB)"
        ));
    }
    let resumed = plan.resume_offsets().len() as u64;
    if resumed != partitions {
        failures.push(format!(
            "the plan resumes {resumed} of {partitions} partitions ({} contradicted)",
            plan.contradicted().count()
        ));
    }
    if !failures.is_empty() {
        return Err(format!("translate-bench FAILED: {}", failures.join("; ")).into());
    }
    println!(
        "translate-bench: within target (median <= {max_ms} ms, index <= {max_index_mib} MiB)"
    );
    Ok(())
}
