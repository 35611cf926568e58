//! What a failover plan costs at scale (issue "Checkpoints at scale"): a week of checkpoints
//! for many partitions × 3 sources, written to the real checkpoint topics of both aggregates
//! in the format and with the re-emission rule the replicator uses (format v2), then a real
//! `checkpoint-sync --once --final` timed from start to its verified commit.
//!
//! - `failover_plan_over_a_week` (`make bench-failover-plan`, ignored by `cargo test`):
//!   1000 partitions × 3 sources × 7 days; prints `failover-plan-bench: ...` and fails above
//!   [`PLAN_GOAL`] or when the plan is not exact.
//! - `failover_plan_short`: the same on 100 partitions × 2 days, in `make test`.
//!
//! The synthetic week: every source partition copies a one-minute burst a day (a record a
//! second, checkpointed every second) into both aggregates, at a time of day of its own; all
//! sources copy during the last minute; the group consumed everything in A. Between bursts an
//! idle route writes its last checkpoint again only when its floor rose (another source moved
//! the destination partition) or its heartbeat (1 h) is due — the rule of
//! `tributary_core::checkpoint::floor_reemission_due`. A v1 writer would have written every
//! key every second: the bench prints that count beside the real one.

// The simulation walks parallel tables (aggregate × partition × source) by index.
#![allow(clippy::needless_range_loop)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Region, commit_offsets, committed, end_offsets, stack_regions, sync_command, unique};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tributary_core::checkpoint::{
    self, CheckpointEntry, CheckpointKey, CheckpointRecord, OffsetCheckpoint, RouteOrigin,
};
use tributary_core::{Provenance, Route};
use tributary_kafka::{ClientSettings, KafkaAdmin, TopicSpec};

const SOURCES: [&str; 3] = ["east", "west", "central"];
const HEARTBEAT: Duration = Duration::from_secs(3600);
const BURST_SECONDS: u64 = 60;
const DAY: u64 = 86_400;
/// Goal for a cold `--once --final` run, start to verified commit.
const PLAN_GOAL: Duration = Duration::from_secs(2);
/// Stated bound for the checkpoint topic after an idle week, per key: one heartbeat an hour
/// (169 records) of at most 200 bytes each, batch overhead included.
const IDLE_WEEK_BYTES_PER_KEY: u64 = 169 * 200;

#[test]
#[ignore = "benchmark: make bench-failover-plan"]
fn failover_plan_over_a_week() {
    bench(1000, 7, GroupAt::End, true);
}

/// The same on 100 partitions, without the time goal (a debug build, in `make test`): the
/// plan is exact and verified, the reader reads a window, not the week, and the idle week
/// stays within its bound.
#[test]
fn failover_plan_short() {
    bench(100, 7, GroupAt::End, false);
}

/// A group that lags by half a week: the first window does not reach back to its position,
/// so the reader widens it; the plan never skips and its duplicates stay within its bound.
#[test]
fn failover_plan_for_a_lagging_group_reads_further_back() {
    bench(50, 7, GroupAt::Middle, false);
}

/// Where the group's committed offsets stand in A.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GroupAt {
    /// At the end: it consumed everything (a planned move).
    End,
    /// Half way through each partition's log.
    Middle,
}

/// `TRIBUTARY_SYNC_BIN` (the bench's release build), else this crate's debug binary.
fn sync_bin() -> std::path::PathBuf {
    std::env::var_os("TRIBUTARY_SYNC_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_tributary-checkpoint-sync").into(),
        Into::into,
    )
}

fn bench(partitions: u32, days: u64, at: GroupAt, timed: bool) {
    // None only with TRIBUTARY_SKIP_E2E=1 (it says SKIPPED); a missing stack fails.
    let Some(regions) = stack_regions() else {
        return;
    };
    let (a, b) = (&regions[0], &regions[1]);
    let topic = unique("planbench");
    let checkpoints = unique("planbench.checkpoints");
    let _cleanup = DeleteTopics {
        clusters: vec![a.aggregate.clone(), b.aggregate.clone()],
        topics: vec![topic.clone(), checkpoints.clone()],
    };
    // The week's records carry timestamps up to `days` old: both topics keep them longer
    // than that, or the stack's retention (24 h, checked every minute) deletes the start of
    // a log while the test runs and the plan rightly resumes at the raised log start.
    let retention = ((days + 1) * DAY * 1000).to_string();
    let keep = [("retention.ms", retention.as_str())];
    for region in [a, b] {
        create(&region.aggregate, &topic, partitions as usize, &keep);
        create(&region.aggregate, &checkpoints, 1, &keep);
    }

    let started = Instant::now();
    let week = Week::new(partitions, days, a, b);
    let written = week.write(&topic, &checkpoints);
    let group = unique("planbench-group");
    for (p, end) in end_offsets(&a.aggregate, &topic, partitions as i32) {
        assert_eq!(
            end as u64, written.ends[0][p as usize],
            "A's log holds what the week wrote"
        );
    }
    let in_a: Vec<u64> = written.ends[0]
        .iter()
        .map(|end| if at == GroupAt::End { *end } else { end / 2 })
        .collect();
    commit_offsets(
        &a.aggregate,
        &group,
        &topic,
        &in_a
            .iter()
            .enumerate()
            .map(|(p, c)| (p as i32, *c as i64))
            .collect(),
    );
    eprintln!(
        "week written in {:.1}s: {} checkpoint records ({} bytes) per aggregate, {} aggregate records",
        started.elapsed().as_secs_f64(),
        written.checkpoint_records / 2,
        written.checkpoint_bytes / 2,
        written.data_records / 2
    );

    let sources: Vec<Region> = SOURCES
        .iter()
        .map(|name| Region {
            name: (*name).to_owned(),
            regional: String::new(),
            aggregate: String::new(),
        })
        .collect();
    let plan_file = std::env::temp_dir().join(format!("{group}.plan.json"));
    let flags = sync_command(a, b, &sources, &group, &topic, "identity", &checkpoints);
    let mut command = Command::new(sync_bin());
    command
        .args(flags.get_args())
        .args(["--once", "--final", "--plan-file"])
        .arg(&plan_file);
    let run = Instant::now();
    let output = command.output().expect("checkpoint-sync runs");
    let plan_s = run.elapsed().as_secs_f64();
    if std::env::var_os("TRIBUTARY_TEST_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        output.status.success(),
        "--once --final failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_file).expect("plan file")).expect("plan JSON");
    let exact = plan["exact"].as_bool().unwrap_or(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let records_read: u64 = stderr
        .split("checkpoint_records_read=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the sync logs how many checkpoint records it read");

    let widenings: u64 = stderr
        .split("checkpoint_window_widenings=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the sync logs how often it widened its window");

    // Verified against the logs as written: B's offset never skips a record the group did
    // not consume in A, and re-reads at most the plan's bound of records it did consume.
    let in_b = committed(&b.aggregate, &group, &topic, partitions as i32);
    for p in 0..partitions as usize {
        let (exact_resume, watermarks) =
            exact_resume(&written.logs[0][p], &written.logs[1][p], in_a[p]);
        let resumed = in_b.get(&(p as i32)).copied().unwrap_or(-1);
        assert!(
            resumed >= 0 && resumed as u64 <= exact_resume,
            "partition {p}: B resumes at {resumed}, beyond {exact_resume}, the first record the group did not consume: a skip (raised to B's log start from: {})",
            plan["partitions"][p]["raised_to_log_start_from"]
        );
        let reread = written.logs[1][p][resumed as usize..]
            .iter()
            .filter(|(source, offset)| watermarks[*source].is_some_and(|w| *offset < w))
            .count() as u64;
        let bound = plan["partitions"][p]["max_duplicates"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            reread <= bound,
            "partition {p}: {reread} records read again in B, above the plan's bound {bound}"
        );
        if at == GroupAt::End {
            assert_eq!(
                resumed as u64, written.ends[1][p],
                "partition {p}: B resumes at its end"
            );
        }
    }
    if at == GroupAt::Middle {
        assert!(
            widenings > 0,
            "the first window cannot reach half a week back, yet it was not widened"
        );
    }

    let idle_bytes = idle_week(a, partitions, days);
    let keys = u64::from(partitions) * SOURCES.len() as u64;
    let idle_bound = keys * IDLE_WEEK_BYTES_PER_KEY * days / 7;
    let v1_records = keys * days * DAY;
    println!(
        "failover-plan-bench: partitions={partitions} sources={} days={days} plan_s={plan_s:.2} exact={exact}",
        SOURCES.len()
    );
    println!(
        "failover-plan-bench: checkpoint_records={} read={records_read} v1_equivalent_records={v1_records} idle_week_bytes={idle_bytes} idle_week_bound_bytes={idle_bound}",
        written.checkpoint_records / 2
    );
    if timed {
        eprintln!(
            "plan: max_duplicates={} max_duplicates_after_dedupe={}",
            plan["max_duplicates"], plan["max_duplicates_after_dedupe"]
        );
    }
    if at == GroupAt::End {
        assert!(exact, "the plan is exact where the checkpoints are: {plan}");
    }
    assert!(
        idle_bytes <= idle_bound,
        "an idle week left {idle_bytes} bytes of checkpoints, above the stated bound {idle_bound}"
    );
    assert!(
        at != GroupAt::End || records_read < written.checkpoint_records / 2,
        "the reader read {records_read} records of the {} the two topics hold: it replayed the week instead of reading a window",
        written.checkpoint_records
    );
    if timed {
        assert!(
            plan_s <= PLAN_GOAL.as_secs_f64(),
            "the plan took {plan_s:.2}s, above the goal {PLAN_GOAL:?}"
        );
    }
}

/// The resume offset in B that re-reads nothing the group consumed below `committed` in A
/// and skips nothing it did not, from the logs as written; and each source's watermark.
fn exact_resume(
    in_a: &[(usize, u64)],
    in_b: &[(usize, u64)],
    committed: u64,
) -> (u64, [Option<u64>; 3]) {
    let mut watermarks = [None; 3];
    for (source, offset) in &in_a[..committed as usize] {
        watermarks[*source] = Some(offset + 1);
    }
    let resume = (0..SOURCES.len())
        .map(|s| {
            in_b.iter()
                .position(|(source, offset)| *source == s && *offset >= watermarks[s].unwrap_or(0))
                .unwrap_or(in_b.len()) as u64
        })
        .min()
        .unwrap_or(in_b.len() as u64);
    (resume, watermarks)
}

/// Deletes the bench's topics (a week of checkpoints is a gigabyte) when the test ends.
struct DeleteTopics {
    clusters: Vec<String>,
    topics: Vec<String>,
}

impl Drop for DeleteTopics {
    fn drop(&mut self) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        for cluster in &self.clusters {
            let Ok(admin) = ClientConfig::new()
                .set("bootstrap.servers", cluster)
                .create::<AdminClient<DefaultClientContext>>()
            else {
                continue;
            };
            let _ = common::runtime().block_on(admin.delete_topics(&topics, &AdminOptions::new()));
        }
    }
}

fn create(bootstrap: &str, topic: &str, partitions: usize, configs: &[(&str, &str)]) {
    let admin = KafkaAdmin::new(&ClientSettings::plaintext(bootstrap, bootstrap)).expect("admin");
    common::runtime()
        .block_on(
            admin.create_topic(&TopicSpec {
                name: topic.to_owned(),
                partitions,
                replication_factor: None,
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            }),
        )
        .expect("topic created");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One route's state into one aggregate partition, as its replicator would hold it.
#[derive(Clone, Default)]
struct RouteState {
    next_source: u64,
    origin: Option<RouteOrigin>,
    last: Option<OffsetCheckpoint>,
    /// Floor last written and when (ms).
    last_floor: Option<(u64, u64)>,
}

struct Week<'a> {
    partitions: u32,
    days: u64,
    regions: [&'a Region; 2],
    start_ms: u64,
    end_ms: u64,
}

struct Written {
    /// Per aggregate (A, B): each partition's log end.
    ends: [Vec<u64>; 2],
    /// Per aggregate and partition: the (source, source offset) of every record, in log order.
    logs: [Vec<Vec<(usize, u64)>>; 2],
    checkpoint_records: u64,
    checkpoint_bytes: u64,
    data_records: u64,
}

/// A second of copying: `source` copies one record into partition `partition` of both
/// aggregates at `at_ms`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Copy {
    at_ms: u64,
    partition: u32,
    source: usize,
}

impl<'a> Week<'a> {
    fn new(partitions: u32, days: u64, a: &'a Region, b: &'a Region) -> Self {
        let end_ms = now_ms();
        Self {
            partitions,
            days,
            regions: [a, b],
            start_ms: end_ms - days * DAY * 1000,
            end_ms,
        }
    }

    /// Every second of copying of the week, in time order: a burst a day per source
    /// partition at a time of its own, and all of them in the last minute.
    fn copies(&self) -> Vec<Copy> {
        let mut copies = Vec::new();
        let last_minute = self.end_ms - (BURST_SECONDS + 5) * 1000;
        for partition in 0..self.partitions {
            for source in 0..SOURCES.len() {
                for day in 0..self.days {
                    // A fixed pseudo-random time of day, before the last minute.
                    let mix = (u64::from(partition) * 7919 + source as u64 * 104_729 + day * 31)
                        .wrapping_mul(2_654_435_761);
                    let offset = mix % (DAY - 2 * BURST_SECONDS - 10);
                    let start = self.start_ms + (day * DAY + offset) * 1000;
                    if start + BURST_SECONDS * 1000 >= last_minute {
                        continue;
                    }
                    copies.extend((0..BURST_SECONDS).map(|s| Copy {
                        at_ms: start + s * 1000,
                        partition,
                        source,
                    }));
                }
                copies.extend((0..BURST_SECONDS).map(|s| Copy {
                    at_ms: last_minute + s * 1000,
                    partition,
                    source,
                }));
            }
        }
        copies.sort_unstable();
        copies
    }

    fn write(&self, topic: &str, checkpoints: &str) -> Written {
        let producers = self.regions.map(|r| bulk_producer(&r.aggregate));
        let mut routes =
            vec![vec![vec![RouteState::default(); SOURCES.len()]; self.partitions as usize]; 2];
        let mut logs = [
            vec![Vec::new(); self.partitions as usize],
            vec![Vec::new(); self.partitions as usize],
        ];
        let mut ends = [
            vec![0u64; self.partitions as usize],
            vec![0u64; self.partitions as usize],
        ];
        let mut written = (0u64, 0u64, 0u64);
        let mut emit = |aggregate: usize,
                        partition: u32,
                        source: usize,
                        at_ms: u64,
                        entry: CheckpointEntry| {
            let record = CheckpointRecord {
                key: CheckpointKey::new(
                    Route::new(SOURCES[source], &self.regions[aggregate].name),
                    topic,
                    partition,
                ),
                timestamp_ms: at_ms as i64,
                entry,
            };
            let encoded = checkpoint::encode(&record).expect("valid checkpoint");
            written.0 += 1;
            written.1 += (encoded.key.len() + encoded.value.len()) as u64;
            send(
                &producers[aggregate],
                BaseRecord::to(checkpoints)
                    .key(&encoded.key)
                    .payload(&encoded.value)
                    .partition(0)
                    .timestamp(at_ms as i64),
            );
        };

        // Origins before any copy: every route starts at the week's start.
        for aggregate in 0..2 {
            for partition in 0..self.partitions {
                for source in 0..SOURCES.len() {
                    let origin = RouteOrigin::new(0, 0);
                    routes[aggregate][partition as usize][source].origin = Some(origin);
                    emit(
                        aggregate,
                        partition,
                        source,
                        self.start_ms,
                        CheckpointEntry::Origin(origin),
                    );
                }
            }
        }
        let mut next_heartbeat_sweep = self.start_ms + HEARTBEAT.as_millis() as u64;
        let copies = self.copies();
        let mut i = 0;
        while i < copies.len() {
            let second = copies[i].at_ms;
            while next_heartbeat_sweep <= second {
                for aggregate in 0..2 {
                    for partition in 0..self.partitions {
                        for source in 0..SOURCES.len() {
                            let end = ends[aggregate][partition as usize];
                            let route = &mut routes[aggregate][partition as usize][source];
                            if let Some(entry) = reemission(route, end, next_heartbeat_sweep) {
                                emit(aggregate, partition, source, next_heartbeat_sweep, entry);
                            }
                        }
                    }
                }
                next_heartbeat_sweep += HEARTBEAT.as_millis() as u64;
            }
            // Every copy of this second, per partition; A takes the sources in order, B the
            // other way round (two replicators never interleave alike).
            let batch_end = copies[i..].partition_point(|c| c.at_ms == second) + i;
            let batch = &copies[i..batch_end];
            let mut touched = Vec::new();
            for aggregate in 0..2 {
                let mut ordered: Vec<&Copy> = batch.iter().collect();
                if aggregate == 1 {
                    ordered.sort_by_key(|c| (c.partition, std::cmp::Reverse(c.source)));
                }
                for c in ordered {
                    let route = &mut routes[aggregate][c.partition as usize][c.source];
                    let source_offset = route.next_source;
                    let destination = ends[aggregate][c.partition as usize];
                    let provenance = Provenance {
                        region: SOURCES[c.source].to_owned(),
                        cluster: None,
                        topic: topic.to_owned(),
                        partition: c.partition,
                        offset: source_offset,
                    };
                    let headers = provenance.to_headers().into_iter().fold(
                        rdkafka::message::OwnedHeaders::new(),
                        |h, (name, value)| {
                            h.insert(rdkafka::message::Header {
                                key: name,
                                value: Some(&value),
                            })
                        },
                    );
                    send(
                        &producers[aggregate],
                        BaseRecord::<(), [u8]>::to(topic)
                            .payload(b"record".as_slice())
                            .partition(c.partition as i32)
                            .headers(headers)
                            .timestamp(second as i64),
                    );
                    written.2 += 1;
                    ends[aggregate][c.partition as usize] += 1;
                    logs[aggregate][c.partition as usize].push((c.source, source_offset));
                    route.next_source += 1;
                    let checkpoint = OffsetCheckpoint {
                        source_offset,
                        destination_offset: destination,
                        previous_source_offset: source_offset.checked_sub(1),
                        next_copy_floor: None,
                    };
                    route.last = Some(checkpoint);
                    route.last_floor = None;
                    emit(
                        aggregate,
                        c.partition,
                        c.source,
                        second,
                        CheckpointEntry::Checkpoint(checkpoint),
                    );
                    touched.push((aggregate, c.partition, c.source));
                }
            }
            // A second later, the idle routes of the partitions that moved see a higher floor.
            touched.sort_unstable();
            touched.dedup_by_key(|(aggregate, partition, _)| (*aggregate, *partition));
            for (aggregate, partition, _) in touched {
                for source in 0..SOURCES.len() {
                    if batch
                        .iter()
                        .any(|c| c.partition == partition && c.source == source)
                    {
                        continue;
                    }
                    let end = ends[aggregate][partition as usize];
                    let route = &mut routes[aggregate][partition as usize][source];
                    if let Some(entry) = reemission(route, end, second + 1000) {
                        emit(aggregate, partition, source, second + 1000, entry);
                    }
                }
            }
            i = batch_end;
        }
        // After the last minute every route is idle: its floor rose with its own last copy.
        let settled = self.end_ms - 2000;
        for aggregate in 0..2 {
            for partition in 0..self.partitions {
                for source in 0..SOURCES.len() {
                    let end = ends[aggregate][partition as usize];
                    let route = &mut routes[aggregate][partition as usize][source];
                    if let Some(entry) = reemission(route, end, settled) {
                        emit(aggregate, partition, source, settled, entry);
                    }
                }
            }
        }
        for producer in &producers {
            producer.flush(Duration::from_secs(120)).expect("flushed");
        }
        Written {
            ends,
            logs,
            checkpoint_records: written.0,
            checkpoint_bytes: written.1,
            data_records: written.2,
        }
    }
}

/// The record an idle route writes at `at_ms` with the destination's end `end`, if the
/// replicator's rule says one is due.
fn reemission(route: &mut RouteState, end: u64, at_ms: u64) -> Option<CheckpointEntry> {
    let last = route
        .last_floor
        .map(|(floor, when)| (floor, Duration::from_millis(at_ms.saturating_sub(when))));
    if !checkpoint::floor_reemission_due(last, end, HEARTBEAT) {
        return None;
    }
    let entry = checkpoint::reemission(route.last, route.origin, end)?;
    route.last_floor = Some((end, at_ms));
    Some(entry)
}

fn bulk_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1048576")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap_or_else(|e| panic!("producer for {bootstrap}: {e}"))
}

fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("producing: {e}"),
        }
    }
}

/// Bytes of checkpoint-topic log on A's broker after a week in which nothing was copied:
/// each route writes its heartbeat once an hour (the replicator's rule), nothing else.
fn idle_week(a: &Region, partitions: u32, days: u64) -> u64 {
    let topic = unique("planbench.idle");
    let checkpoints = unique("planbench.idle.checkpoints");
    let _cleanup = DeleteTopics {
        clusters: vec![a.aggregate.clone()],
        topics: vec![checkpoints.clone()],
    };
    create(
        &a.aggregate,
        &checkpoints,
        1,
        &[("retention.ms", &(8 * DAY * 1000).to_string())],
    );
    let producer = bulk_producer(&a.aggregate);
    let end_ms = now_ms();
    let start_ms = end_ms - days * DAY * 1000;
    let mut routes = vec![vec![RouteState::default(); SOURCES.len()]; partitions as usize];
    let mut at = start_ms;
    while at <= end_ms {
        for (partition, sources) in routes.iter_mut().enumerate() {
            for (source, route) in sources.iter_mut().enumerate() {
                if route.last.is_none() {
                    // The week starts after some copying: a last checkpoint at offset 1000.
                    route.last = Some(OffsetCheckpoint::new(1000, 3000 + source as u64));
                }
                if let Some(entry) = reemission(route, 3003, at) {
                    let record = CheckpointRecord {
                        key: CheckpointKey::new(
                            Route::new(SOURCES[source], &a.name),
                            &topic,
                            partition as u32,
                        ),
                        timestamp_ms: at as i64,
                        entry,
                    };
                    let encoded = checkpoint::encode(&record).expect("valid checkpoint");
                    send(
                        &producer,
                        BaseRecord::to(&checkpoints)
                            .key(&encoded.key)
                            .payload(&encoded.value)
                            .partition(0)
                            .timestamp(at as i64),
                    );
                }
            }
        }
        // The replicator asks every checkpoint interval; nothing changes between heartbeats,
        // so stepping by a minute asks no less often than needed.
        at += 60_000;
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
    log_bytes(&a.name, &checkpoints)
}

/// Sum of the `.log` segment files of partition 0 of `topic` on `region`'s aggregate broker.
fn log_bytes(region: &str, topic: &str) -> u64 {
    let state =
        std::env::var("TRIBUTARY_STATE_DIR").expect("TRIBUTARY_STATE_DIR from the stack env");
    let dir = Path::new(&state)
        .join("kafka")
        .join(format!("{region}-aggregate"))
        .join("data")
        .join(format!("{topic}-0"));
    let mut total = 0;
    for _ in 0..50 {
        total = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        if total > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(total > 0, "no log segments under {}", dir.display());
    total
}
