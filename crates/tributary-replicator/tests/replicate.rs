//! The replicator on real Kafka (the e2e stack's clusters): content and order, provenance,
//! no loops, kill -9 in both delivery modes, exact checkpoints, retention gaps.
//!
//! Needs `TRIBUTARY_KAFKA_{EAST_REGIONAL,WEST_AGGREGATE,EAST_AGGREGATE}` (from
//! `e2e/.state/env`); without them each test fails, naming what is missing, unless
//! `TRIBUTARY_SKIP_E2E=1` (`make unit-test`), where each says SKIPPED.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{BaseRecord, Producer};
use tributary_core::CheckpointEntry;

fn produce_spread(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    tag: &str,
    count: usize,
    size: usize,
    rate: usize,
) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    let pad = ".".repeat(size);
    for i in 0..count {
        let key = format!("{tag}-k{i}");
        let mut value = format!("{tag}-{i}-");
        value.push_str(&pad[..size.saturating_sub(value.len())]);
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "app",
            value: Some(tag.as_bytes()),
        });
        let mut record = BaseRecord::to(topic)
            .partition((i % partitions as usize) as i32)
            .key(&key)
            .payload(&value)
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(2));
                    record = back;
                }
            }
        }
        if rate > 0 && i % 200 == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flush to {topic}: {e}"));
}

/// Source region of the routes under test: a name no stack route uses, and prefixed naming,
/// so the stack's own replicators (which may match these topics) never write into the
/// destination topics these tests count.
const TEST_REGION: &str = "rt";

fn total(offsets: &BTreeMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

#[test]
fn content_and_order_survive_concurrent_producers_with_provenance() -> TestResult {
    let Some((east, west_aggregate, _)) =
        stack("content_and_order_survive_concurrent_producers_with_provenance")
    else {
        return Ok(());
    };
    let topic = unique("orders");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 8;
    create_topic(&east, &topic, partitions as usize);
    let route = unique("order");
    let checkpoints = unique("ckpt");
    let _replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoints,
        workers: 1,
    });
    // Four producers at once, each over every partition.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (east, topic) = (&east, &topic);
            s.spawn(move || {
                produce_spread(east, topic, partitions, &format!("p{t}"), 8000, 200, 0)
            });
        }
    });

    wait_for(
        "all 32000 records in the aggregate",
        Duration::from_secs(60),
        || total(&end_offsets(&west_aggregate, &dest_topic)) >= 32_000,
    );
    let source = read_all(&east, &topic, false);
    let dest = read_all(&west_aggregate, &dest_topic, false);
    for (p, src) in &source {
        let copies = &dest[p];
        assert_eq!(copies.len(), src.len(), "partition {p}: record count");
        for (s, d) in src.iter().zip(copies) {
            assert_eq!(d.key, s.key, "partition {p} offset {}: key", s.offset);
            assert_eq!(d.value, s.value, "partition {p} offset {}: value", s.offset);
            assert_eq!(
                d.timestamp, s.timestamp,
                "partition {p} offset {}: timestamp",
                s.offset
            );
            assert_eq!(d.header("app"), s.header("app"), "application header kept");
            assert_eq!(
                d.source_offset(),
                Some(s.offset),
                "provenance offset, in order"
            );
            assert_eq!(d.header("tributary.source.region"), Some(TEST_REGION));
            assert_eq!(d.header("tributary.source.topic"), Some(topic.as_str()));
            assert_eq!(
                d.header("tributary.source.partition"),
                Some(p.to_string().as_str())
            );
            assert!(
                d.header("tributary.source.cluster")
                    .is_some_and(|c| !c.is_empty())
            );
        }
    }
    Ok(())
}

#[test]
fn two_way_wiring_does_not_loop() -> TestResult {
    let Some((_, west_aggregate, east_aggregate)) = stack("two_way_wiring_does_not_loop") else {
        return Ok(());
    };
    let topic = unique("both-ways");
    create_topic(&east_aggregate, &topic, 2);
    create_topic(&west_aggregate, &topic, 2);
    produce_spread(&east_aggregate, &topic, 2, "east", 500, 50, 0);
    produce_spread(&west_aggregate, &topic, 2, "west", 500, 50, 0);
    let checkpoints = unique("ckpt");
    let (east_to_west, west_to_east) = (unique("e2w"), unique("w2e"));
    let a = Replicator::start(&RouteSpec {
        route: &east_to_west,
        source_region: "east",
        dest_region: "west",
        source: &east_aggregate,
        dest: &west_aggregate,
        topics: &topic,
        naming: "identity",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoints,
        workers: 1,
    });
    let b = Replicator::start(&RouteSpec {
        route: &west_to_east,
        source_region: "west",
        dest_region: "east",
        source: &west_aggregate,
        dest: &east_aggregate,
        topics: &topic,
        naming: "identity",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoints,
        workers: 1,
    });
    wait_for(
        "each side to hold both sides' records",
        Duration::from_secs(45),
        || {
            total(&end_offsets(&east_aggregate, &topic)) >= 1000
                && total(&end_offsets(&west_aggregate, &topic)) >= 1000
        },
    );
    wait_for(
        "each replicator to count 500 skipped copies",
        Duration::from_secs(20),
        || {
            a.metric_sum("tributary_replicator_records_skipped_loop_total") >= 500.0
                && b.metric_sum("tributary_replicator_records_skipped_loop_total") >= 500.0
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        total(&end_offsets(&east_aggregate, &topic)),
        1000,
        "east: no copy of a copy"
    );
    assert_eq!(
        total(&end_offsets(&west_aggregate, &topic)),
        1000,
        "west: no copy of a copy"
    );
    assert_eq!(
        a.metric_sum("tributary_replicator_records_copied_total"),
        500.0
    );
    assert_eq!(
        b.metric_sum("tributary_replicator_records_copied_total"),
        500.0
    );
    Ok(())
}

#[test]
fn checkpoints_agree_with_destination_offsets() -> TestResult {
    let Some((east, west_aggregate, _)) = stack("checkpoints_agree_with_destination_offsets")
    else {
        return Ok(());
    };
    let topic = unique("ckpt-data");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 4);
    // The aggregate already holds other records, so destination offsets differ from source
    // offsets and a checkpoint that merely repeated the source offset would be caught.
    create_topic(&west_aggregate, &dest_topic, 4);
    produce_spread(&west_aggregate, &dest_topic, 4, "other", 400, 20, 0);
    produce_spread(&east, &topic, 4, "east", 6000, 100, 0);
    let route = unique("ckpt");
    let checkpoint_topic = unique("checkpoints");
    let mut replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    });
    wait_for("the copy", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 6400
    });
    // More while it runs, so several checkpoints per partition are written.
    produce_spread(&east, &topic, 4, "east2", 2000, 100, 2000);
    wait_for("the second copy", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 8400
    });
    // Idle for a few intervals: the last checkpoints are re-emitted with a floor.
    std::thread::sleep(Duration::from_secs(2));
    assert!(replicator.terminate(), "clean exit on SIGTERM");

    let dest = read_all(&west_aggregate, &dest_topic, false);
    let records = read_checkpoints(&west_aggregate, &checkpoint_topic);
    let mut floors = 0;
    let mut checked = 0;
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for record in &records {
        assert_eq!(record.key.topic, topic);
        assert_eq!(record.key.route.source_region, TEST_REGION);
        if let CheckpointEntry::Checkpoint(c) = record.entry {
            let p = record.key.partition as i32;
            let at = dest[&p]
                .iter()
                .find(|r| r.offset == c.destination_offset as i64)
                .unwrap_or_else(|| {
                    panic!("no record at destination offset {}", c.destination_offset)
                });
            assert_eq!(
                at.source_offset(),
                Some(c.source_offset as i64),
                "partition {p}: the record at destination offset {} is source offset {:?}, checkpoint says {}",
                c.destination_offset,
                at.source_offset(),
                c.source_offset
            );
            if let Some(previous) = c.previous_source_offset {
                assert!(previous < c.source_offset);
            }
            if let Some(floor) = c.next_copy_floor {
                floors += 1;
                assert!(
                    dest[&p]
                        .iter()
                        .filter(|r| r
                            .source_offset()
                            .is_some_and(|s| s > c.source_offset as i64))
                        .all(|r| r.offset >= floor as i64),
                    "partition {p}: a later copy landed below the floor {floor}"
                );
            }
            last.insert(record.key.partition, c.source_offset);
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "at least two checkpoints per partition, got {checked}"
    );
    assert!(
        floors >= 4,
        "idle partitions re-emit their checkpoint with a floor, got {floors}"
    );
    let source_ends = end_offsets(&east, &topic);
    for (p, end) in source_ends {
        assert_eq!(
            last.get(&(p as u32)).copied(),
            Some(end as u64 - 1),
            "partition {p}: the final checkpoint names the last copied record"
        );
    }
    assert!(
        records
            .iter()
            .any(|r| matches!(r.entry, CheckpointEntry::Origin(o) if o.destination_offset == 100)),
        "origin written before the first copy, at the destination's end offset"
    );
    Ok(())
}

/// 200k records flow in while the replicator is killed with SIGKILL every few seconds.
fn kill_9_while_records_flow(delivery: &str, test: &str) -> TestResult {
    let Some((east, west_aggregate, _)) = stack(test) else {
        return Ok(());
    };
    let topic = unique("kill9");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 8;
    create_topic(&east, &topic, partitions as usize);
    let route = unique("kill9");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery,
        checkpoint_topic: &checkpoint_topic,
        // Two copy workers where they are allowed (exactly-once runs one: its fencing is
        // partition-exact only with one transactional id per route).
        workers: if delivery == "exactly-once" { 1 } else { 2 },
    };
    let total_records = 200_000;
    let mut kills = 0;
    std::thread::scope(|s| {
        let producing =
            s.spawn(|| produce_spread(&east, &topic, partitions, "k", total_records, 100, 16_000));
        let mut replicator = Replicator::start(&spec);
        while !producing.is_finished() {
            std::thread::sleep(Duration::from_millis(2500));
            replicator.kill9();
            kills += 1;
            replicator = Replicator::start(&spec);
        }
        std::thread::sleep(Duration::from_millis(1500));
        replicator.kill9();
        kills += 1;
        let replicator = Replicator::start(&spec);
        let mut source_ends = end_offsets(&east, &topic);
        wait_for("the source's end offsets", Duration::from_secs(20), || {
            source_ends = end_offsets(&east, &topic);
            total(&source_ends) == total_records as i64
        });
        let copied_all = || {
            let dest_ends = end_offsets(&west_aggregate, &dest_topic);
            source_ends
                .iter()
                .all(|(p, end)| dest_ends.get(p).is_some_and(|d| d >= end))
        };
        wait_for(
            "the aggregate to catch up",
            Duration::from_secs(60),
            copied_all,
        );
        if delivery == "exactly-once" {
            // The last transaction commits within ~100 ms of its records.
            std::thread::sleep(Duration::from_secs(2));
        }
        drop(replicator);
    });
    assert!(kills >= 3, "killed {kills} times");

    let source_ends = end_offsets(&east, &topic);
    let dest = read_all(&west_aggregate, &dest_topic, delivery == "exactly-once");
    let mut duplicates = 0;
    for (p, end) in &source_ends {
        let seen: Vec<i64> = dest[p].iter().filter_map(Read::source_offset).collect();
        let mut unique_offsets = seen.clone();
        unique_offsets.sort_unstable();
        unique_offsets.dedup();
        duplicates += seen.len() - unique_offsets.len();
        let expected: Vec<i64> = (0..*end).collect();
        assert_eq!(
            unique_offsets.len(),
            expected.len(),
            "partition {p}: lost {} records",
            expected.len() as i64 - unique_offsets.len() as i64
        );
        assert_eq!(
            unique_offsets, expected,
            "partition {p}: every source offset copied"
        );
        if delivery == "exactly-once" {
            assert_eq!(
                seen, expected,
                "partition {p}: each record exactly once, in order"
            );
        }
    }
    eprintln!("{test}: {kills} kills, {duplicates} duplicates visible to the reader");
    Ok(())
}

#[test]
fn at_least_once_survives_kill_9_without_loss() -> TestResult {
    kill_9_while_records_flow(
        "at-least-once",
        "at_least_once_survives_kill_9_without_loss",
    )
}

#[test]
fn exactly_once_survives_kill_9_and_read_committed_sees_each_record_once() -> TestResult {
    kill_9_while_records_flow(
        "exactly-once",
        "exactly_once_survives_kill_9_and_read_committed_sees_each_record_once",
    )
}

#[test]
fn retention_gap_is_reported_with_its_range() -> TestResult {
    let Some((east, west_aggregate, _)) = stack("retention_gap_is_reported_with_its_range") else {
        return Ok(());
    };
    let topic = unique("gap");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 1);
    produce_spread(&east, &topic, 1, "a", 1000, 50, 0);
    let route = unique("gap");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let mut first = Replicator::start(&spec);
    wait_for("the first 1000 records", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 1000
    });
    assert!(first.terminate(), "clean exit on SIGTERM");

    // While the route is down, 1000 more arrive and retention deletes up to 1500.
    produce_spread(&east, &topic, 1, "b", 1000, 50, 0);
    runtime().block_on(admin(&east).delete_records(&topic, 0, 1500))?;

    let second = Replicator::start(&spec);
    wait_for("the records after the gap", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 1500
    });
    wait_for("the gap metric", Duration::from_secs(10), || {
        second.metric_sum("tributary_replicator_retention_gap_records_total") == 500.0
    });
    let log = second.log();
    assert!(
        log.contains("retention gap") && log.contains("[1000, 1500)"),
        "warning names the lost range:\n{log}"
    );
    let gaps: Vec<_> = read_checkpoints(&west_aggregate, &checkpoint_topic)
        .into_iter()
        .filter_map(|r| match r.entry {
            CheckpointEntry::RetentionGap(g) => Some((r.key.partition, g.from, g.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        gaps,
        vec![(0, 1000, 1500)],
        "one gap marker in the checkpoint topic"
    );
    let dest = read_all(&west_aggregate, &dest_topic, false);
    let offsets: Vec<i64> = dest[&0].iter().filter_map(Read::source_offset).collect();
    assert_eq!(offsets, (0..1000).chain(1500..2000).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn destination_grows_when_the_source_grows() -> TestResult {
    let Some((east, west_aggregate, _)) = stack("destination_grows_when_the_source_grows") else {
        return Ok(());
    };
    let topic = unique("grow");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 2);
    let route = unique("grow");
    let checkpoint_topic = unique("checkpoints");
    let _replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    });
    produce_spread(&east, &topic, 2, "before", 200, 50, 0);
    wait_for("the first records", Duration::from_secs(30), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 200
    });
    runtime().block_on(admin(&east).grow_partitions(&topic, 4))?;
    produce_spread(&east, &topic, 4, "after", 400, 50, 0);
    // Topics are re-listed every 15 s; then the destination grows and p → p holds.
    wait_for(
        "the new partitions' records",
        Duration::from_secs(75),
        || {
            let ends = end_offsets(&west_aggregate, &dest_topic);
            ends.len() == 4 && total(&ends) >= 600
        },
    );
    let dest = read_all(&west_aggregate, &dest_topic, false);
    for (p, records) in &dest {
        assert!(
            records
                .iter()
                .all(|r| r.header("tributary.source.partition") == Some(p.to_string().as_str()))
        );
    }
    assert_eq!(dest[&3].len(), 100, "partition 3 copied into partition 3");
    Ok(())
}

/// Produces `records` to `topic`/`partition` exactly as given (headers included), as an
/// application that consumed them elsewhere and passes their headers through would.
fn produce_passing_headers_through(bootstrap: &str, topic: &str, partition: i32, records: &[Read]) {
    let producer = producer(bootstrap);
    for r in records {
        let mut headers = rdkafka::message::OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(rdkafka::message::Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).headers(headers);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &r.value {
            record = record.payload(value.as_slice());
        }
        producer
            .send(record)
            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    }
    producer
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("flush to {topic}: {e}"));
}

/// Kafka Streams and most frameworks pass headers through: a record an application derived
/// from the aggregate and produced to its regional cluster carries the provenance of the
/// copy it came from. It is new data and must be replicated (with its own provenance), while
/// a copy read back from the aggregate it was copied into is still never copied again.
#[test]
fn records_an_application_derived_from_the_aggregate_with_passed_through_headers_are_replicated()
-> TestResult {
    let Some((east, west_aggregate, _)) = stack(
        "records_an_application_derived_from_the_aggregate_with_passed_through_headers_are_replicated",
    ) else {
        return Ok(());
    };
    let (orders, enriched) = (unique("orders"), unique("enriched"));
    let (dest_orders, dest_enriched) = (
        format!("{TEST_REGION}.{orders}"),
        format!("{TEST_REGION}.{enriched}"),
    );
    create_topic(&east, &orders, 1);
    create_topic(&east, &enriched, 1);
    let route = unique("derived");
    let checkpoints = unique("ckpt");
    let replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &format!("{orders},{enriched}"),
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoints,
        workers: 1,
    });
    produce(&east, &orders, 0, "order", 100, 20, 0);
    wait_for(
        "the orders in the aggregate",
        Duration::from_secs(45),
        || total(&end_offsets(&west_aggregate, &dest_orders)) >= 100,
    );

    // The application: consumes the aggregate, produces derived records to the regional
    // cluster with every header passed through.
    let copies = read_all(&west_aggregate, &dest_orders, false)
        .remove(&0)
        .unwrap_or_default();
    assert_eq!(copies.len(), 100);
    produce_passing_headers_through(&east, &enriched, 0, &copies);

    wait_for(
        "the derived records in the aggregate",
        Duration::from_secs(45),
        || total(&end_offsets(&west_aggregate, &dest_enriched)) >= 100,
    );
    let derived = read_all(&west_aggregate, &dest_enriched, false)
        .remove(&0)
        .unwrap_or_default();
    assert!(
        copies[0].header("tributary.destination.cluster").is_some(),
        "a copy names the aggregate cluster it was written into: {:?}",
        copies[0].headers
    );

    assert_eq!(derived.len(), 100, "each derived record copied once");
    for (i, d) in derived.iter().enumerate() {
        assert_eq!(d.header("app"), Some("order"), "application header kept");
        assert_eq!(d.header("tributary.source.topic"), Some(enriched.as_str()));
        assert_eq!(
            d.source_offset(),
            Some(i as i64),
            "fresh provenance, in order"
        );
        for name in tributary_core::dedupe::REPLICATOR_HEADERS {
            assert_eq!(
                d.headers.iter().filter(|(n, _)| n == name).count(),
                1,
                "{name} once (the passed-through value replaced): {:?}",
                d.headers
            );
        }
        assert_eq!(
            d.header("tributary.destination.cluster"),
            copies[0].header("tributary.destination.cluster")
        );
    }
    assert_eq!(
        replicator.metric_sum("tributary_replicator_records_skipped_loop_total"),
        0.0,
        "nothing skipped as a loop"
    );
    Ok(())
}

#[test]
fn a_missing_topic_does_not_stop_the_others_and_is_copied_once_it_exists() -> TestResult {
    let Some((east, west_aggregate, _)) =
        stack("a_missing_topic_does_not_stop_the_others_and_is_copied_once_it_exists")
    else {
        return Ok(());
    };
    let (present, late) = (unique("present"), unique("late"));
    let (dest_present, dest_late) = (
        format!("{TEST_REGION}.{present}"),
        format!("{TEST_REGION}.{late}"),
    );
    create_topic(&east, &present, 2);
    produce_spread(&east, &present, 2, "present", 200, 20, 0);
    let route = unique("missing");
    let checkpoints = unique("ckpt");
    let replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &format!("{present},{late}"),
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoints,
        workers: 1,
    });
    wait_for(
        "the existing topic copied although the other is missing",
        Duration::from_secs(45),
        || total(&end_offsets(&west_aggregate, &dest_present)) >= 200,
    );
    let missing_metric = format!("tributary_replicator_topic_missing{{topic=\"{late}\"}}");
    assert_eq!(
        replicator.metric_sum(&missing_metric),
        1.0,
        "{missing_metric}"
    );
    assert!(
        http_get(replicator.port, "/readyz")?.contains("200 OK"),
        "ready: the route copies what exists"
    );
    let log = replicator.log();
    assert!(
        log.contains(&late) && log.contains("not found"),
        "the warning names the missing topic:\n{log}"
    );

    // Created later: picked up by the next re-list (every 15 s).
    create_topic(&east, &late, 2);
    produce_spread(&east, &late, 2, "late", 100, 20, 0);
    produce_spread(&east, &present, 2, "present2", 100, 20, 0);
    wait_for("the late topic copied", Duration::from_secs(60), || {
        total(&end_offsets(&west_aggregate, &dest_late)) >= 100
            && total(&end_offsets(&west_aggregate, &dest_present)) >= 300
    });
    wait_for(
        "the missing gauge back to 0",
        Duration::from_secs(10),
        || replicator.metric_sum(&missing_metric) == 0.0,
    );
    let dest = read_all(&west_aggregate, &dest_late, false);
    for (p, records) in &dest {
        let offsets: Vec<i64> = records.iter().filter_map(Read::source_offset).collect();
        assert_eq!(offsets, (0..50).collect::<Vec<_>>(), "partition {p}");
    }
    Ok(())
}

/// Deletes `topic` and creates it again with `partitions` (retrying while the broker still
/// finishes the deletion).
fn recreate_topic(bootstrap: &str, topic: &str, partitions: usize) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let rt = runtime();
    let client: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("admin client: {e}"));
    let deleted = rt
        .block_on(client.delete_topics(&[topic], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("deleting {topic}: {e}"));
    assert!(
        deleted.iter().all(Result::is_ok),
        "deleting {topic}: {deleted:?}"
    );
    wait_for(
        "the topic to be gone and created again",
        Duration::from_secs(30),
        || {
            end_offsets(bootstrap, topic).is_empty()
                && rt
                    .block_on(admin(bootstrap).create_topic(&tributary_kafka::TopicSpec {
                        name: topic.to_owned(),
                        partitions,
                        replication_factor: None,
                        configs: vec![],
                    }))
                    .is_ok_and(|created| created)
        },
    );
}

/// Kafka drops the source group's offsets of a deleted topic, so at-least-once starts the
/// new log as a fresh partition; exactly-once keeps its position in the destination (keyed
/// by the aggregate topic, which stays), beyond the new log's end.
fn recreated_source_topic_is_copied_from_its_start(delivery: &str, test: &str) -> TestResult {
    let Some((east, west_aggregate, _)) = stack(test) else {
        return Ok(());
    };
    let eos = delivery == "exactly-once";
    let topic = unique("recreated");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 1);
    produce(&east, &topic, 0, "old", 1000, 20, 0);
    let route = unique("recreated");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery,
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let mut first = Replicator::start(&spec);
    wait_for("the old log copied", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 1000
    });
    assert!(first.terminate(), "clean exit on SIGTERM");

    // While the route is down the topic is recreated; its new log is shorter than the
    // stored position (1000).
    recreate_topic(&east, &topic, 1);
    produce(&east, &topic, 0, "new", 300, 20, 0);

    let mut second = Replicator::start(&spec);
    wait_for(
        "the new log's records in the aggregate",
        Duration::from_secs(45),
        || total(&end_offsets(&west_aggregate, &dest_topic)) >= 1300,
    );
    let log = second.log();
    assert!(
        !eos || (log.contains("recreated") && log.contains("beyond the source's end offset 300")),
        "the warning says what happened:\n{log}"
    );
    assert!(second.terminate(), "clean exit on SIGTERM");

    // The new position is stored: a third start copies nothing again.
    let third = Replicator::start(&spec);
    wait_for(
        "the third start to be ready",
        Duration::from_secs(30),
        || http_get(third.port, "/readyz").is_ok_and(|r| r.contains("200 OK")),
    );
    std::thread::sleep(Duration::from_secs(3));
    let dest = read_all(&west_aggregate, &dest_topic, eos);
    let copies: Vec<(i64, String)> = dest[&0]
        .iter()
        .map(|r| {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            (
                r.source_offset().unwrap_or(-1),
                value.split('-').next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = (0..1000)
        .map(|o| (o, "old".to_owned()))
        .chain((0..300).map(|o| (o, "new".to_owned())))
        .collect();
    assert_eq!(
        copies, expected,
        "the old log, then all of the new log, once"
    );
    Ok(())
}

#[test]
fn at_least_once_copies_a_recreated_source_topic_from_its_start() -> TestResult {
    recreated_source_topic_is_copied_from_its_start(
        "at-least-once",
        "at_least_once_copies_a_recreated_source_topic_from_its_start",
    )
}

#[test]
fn exactly_once_copies_a_recreated_source_topic_from_its_start() -> TestResult {
    recreated_source_topic_is_copied_from_its_start(
        "exactly-once",
        "exactly_once_copies_a_recreated_source_topic_from_its_start",
    )
}

/// The destination stops answering (SIGSTOP, connections stay open) while half a million
/// records wait: the producer's queue fills up. SIGTERM must still end the process within
/// the drain timeout, having committed no position beyond what the destination acknowledged,
/// and the next run must copy everything.
#[test]
fn sigterm_drains_within_the_drain_timeout_while_the_destination_does_not_answer() -> TestResult {
    let Some((east, _, _)) =
        stack("sigterm_drains_within_the_drain_timeout_while_the_destination_does_not_answer")
    else {
        return Ok(());
    };
    let broker = ThrowawayBroker::start("drain-dest");
    let topic = unique("drain");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 4;
    create_topic(&east, &topic, partitions as usize);
    produce_spread(&east, &topic, partitions, "before", 1000, 50, 0);
    let route = unique("drain");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &broker.bootstrap,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let drain = Duration::from_secs(3);
    let mut replicator = Replicator::start_with(&spec, &["--drain-timeout", "3s"]);
    wait_for("the first records copied", Duration::from_secs(60), || {
        total(&end_offsets(&broker.bootstrap, &dest_topic)) >= 1000
    });
    let group = format!("tributary.route.{route}");
    wait_for("their position committed", Duration::from_secs(10), || {
        committed_offsets(&east, &group, &topic, partitions)
            .values()
            .all(|&o| o == 250)
    });

    broker.freeze();
    // More than the producer's queue holds (500k records): the copy loop ends up waiting
    // for room that never comes.
    let more = 520_000;
    produce_spread(&east, &topic, partitions, "after", more, 50, 0);
    // It stops reading once the queue is full: the lag stays put.
    let mut last_lag = -1.0;
    let mut steady_since = Instant::now();
    wait_for(
        "the replicator to stop reading (its producer queue full)",
        Duration::from_secs(120),
        || {
            let lag = replicator.metric_sum("tributary_replicator_lag_records");
            if lag != last_lag {
                last_lag = lag;
                steady_since = Instant::now();
            }
            lag > 0.0 && steady_since.elapsed() > Duration::from_secs(5)
        },
    );
    // The lag follows the source's end while the loop waits for room: at least the
    // records the queue could not take.
    let untaken = (more - 500_000) as f64;
    assert!(
        last_lag >= untaken,
        "lag while the destination is frozen: {last_lag}, expected at least {untaken}"
    );

    let asked = Instant::now();
    let clean = replicator.terminate();
    let took = asked.elapsed();
    let log = replicator.log();
    eprintln!("SIGTERM with the destination frozen: exited in {took:?} (clean: {clean})");
    assert!(
        clean && took < drain + Duration::from_secs(5),
        "SIGTERM ended the process in {took:?} (clean: {clean}), drain timeout {drain:?}:\n{}",
        log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
    // Nothing after the freeze was acknowledged, so nothing after it may be committed.
    let committed = committed_offsets(&east, &group, &topic, partitions);
    assert!(
        committed.values().all(|&o| o == 250),
        "committed only what the destination acknowledged: {committed:?}"
    );

    broker.thaw();
    let _next = Replicator::start(&spec);
    let source_ends = end_offsets(&east, &topic);
    wait_for(
        "the next run to copy everything",
        Duration::from_secs(120),
        || {
            let dest_ends = end_offsets(&broker.bootstrap, &dest_topic);
            source_ends
                .iter()
                .all(|(p, end)| dest_ends.get(p).is_some_and(|d| d >= end))
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let dest = read_all(&broker.bootstrap, &dest_topic, false);
    for (p, end) in &source_ends {
        let mut seen: Vec<i64> = dest[p].iter().filter_map(Read::source_offset).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen,
            (0..*end).collect::<Vec<_>>(),
            "partition {p}: every record copied"
        );
    }
    Ok(())
}

/// While another member holds the route's group on the source (a mistaken deployment, an
/// admin tool), the cluster refuses the replicator's asynchronous commits. A refused commit
/// must not count as stored: once the group is free, the position is committed again.
#[test]
fn a_refused_position_commit_is_committed_again() -> TestResult {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let Some((east, west_aggregate, _)) = stack("a_refused_position_commit_is_committed_again")
    else {
        return Ok(());
    };
    let topic = unique("refused");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 1);
    let route = unique("refused");
    let checkpoint_topic = unique("checkpoints");
    let group = format!("tributary.route.{route}");
    let replicator = Replicator::start(&RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    });
    produce(&east, &topic, 0, "a", 100, 20, 0);
    wait_for(
        "the first position committed",
        Duration::from_secs(45),
        || committed_offsets(&east, &group, &topic, 1).get(&0) == Some(&100),
    );

    let intruder: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &east)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()?;
    intruder.subscribe(&[&topic])?;
    wait_for(
        "the intruder to join the group",
        Duration::from_secs(30),
        || {
            let _ = intruder.poll(Duration::from_millis(100));
            intruder.assignment().is_ok_and(|a| a.count() > 0)
        },
    );
    produce(&east, &topic, 0, "b", 100, 20, 0);
    wait_for("the records copied", Duration::from_secs(30), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 200
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        committed_offsets(&east, &group, &topic, 1).get(&0),
        Some(&100),
        "the group's member holds the position meanwhile"
    );
    drop(intruder);

    wait_for(
        "the position after the refused commits stored",
        Duration::from_secs(15),
        || committed_offsets(&east, &group, &topic, 1).get(&0) == Some(&200),
    );
    let log = replicator.log();
    assert!(
        log.contains("committing the route's position failed"),
        "the refusal is logged:\n{log}"
    );
    drop(replicator);
    Ok(())
}

/// The destination brokers' `default.replication.factor` says nothing about how durable a
/// copy must be: created topics take the source topic's (or `--replication-factor`). Here the
/// destination's default (3) is more than its one broker holds, so a topic created with the
/// default could not exist at all.
#[test]
fn created_topics_take_the_source_topics_replication_factor_not_the_brokers_default() -> TestResult
{
    let Some((east, _, _)) =
        stack("created_topics_take_the_source_topics_replication_factor_not_the_brokers_default")
    else {
        return Ok(());
    };
    let broker = ThrowawayBroker::start_with("rf-dest", "default.replication.factor=3");
    let topic = unique("rf");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 2);
    produce_spread(&east, &topic, 2, "rf", 100, 20, 0);
    let checkpoint_topic = unique("checkpoints");
    let route = unique("rf");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &broker.bootstrap,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let replicator = Replicator::start(&spec);
    wait_for("the records copied", Duration::from_secs(45), || {
        total(&end_offsets(&broker.bootstrap, &dest_topic)) >= 100
    });
    let described = runtime().block_on(admin(&broker.bootstrap).list_topics(None))?;
    for name in [&dest_topic, &checkpoint_topic] {
        let t = described
            .iter()
            .find(|t| &t.name == name)
            .unwrap_or_else(|| panic!("{name} created"));
        assert_eq!(t.replication_factor, 1, "{name}: the source topic's");
    }
    drop(replicator);

    // Explicit, and more than the destination holds: refused, naming the flag.
    let other = unique("rf-explicit");
    create_topic(&east, &other, 1);
    let other_route = unique("rf-explicit");
    let explicit = Replicator::start_with(
        &RouteSpec {
            route: &other_route,
            topics: &other,
            ..spec
        },
        &["--replication-factor", "2"],
    );
    wait_for(
        "the error naming --replication-factor",
        Duration::from_secs(30),
        || {
            explicit
                .log()
                .contains("with replication factor 2 (from --replication-factor)")
        },
    );
    Ok(())
}

/// After a retention gap with nothing left to copy, the new start (the log start) must be
/// stored: otherwise every restart, even after a kill -9, reports the same gap again.
#[test]
fn a_retention_gap_is_reported_once_across_restarts() -> TestResult {
    let Some((east, west_aggregate, _)) = stack("a_retention_gap_is_reported_once_across_restarts")
    else {
        return Ok(());
    };
    let topic = unique("gap-once");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(&east, &topic, 1);
    produce(&east, &topic, 0, "a", 1000, 20, 0);
    let route = unique("gap-once");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west_aggregate,
        topics: &topic,
        naming: "prefixed",
        delivery: "at-least-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let mut first = Replicator::start(&spec);
    wait_for("the first 1000 records", Duration::from_secs(45), || {
        total(&end_offsets(&west_aggregate, &dest_topic)) >= 1000
    });
    assert!(first.terminate(), "clean exit on SIGTERM");

    // While the route is down, 500 more arrive and retention deletes all of them.
    produce(&east, &topic, 0, "b", 500, 20, 0);
    runtime().block_on(admin(&east).delete_records(&topic, 0, 1500))?;

    let mut second = Replicator::start(&spec);
    wait_for("the gap reported", Duration::from_secs(30), || {
        second.metric_sum("tributary_replicator_retention_gap_records_total") == 500.0
    });
    std::thread::sleep(Duration::from_secs(2));
    second.kill9();

    let third = Replicator::start(&spec);
    wait_for(
        "the third start to be ready",
        Duration::from_secs(30),
        || http_get(third.port, "/readyz").is_ok_and(|r| r.contains("200 OK")),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !third.log().contains("retention gap"),
        "the gap is not reported again:\n{}",
        third.log()
    );
    drop(third);
    let gaps = read_checkpoints(&west_aggregate, &checkpoint_topic)
        .into_iter()
        .filter(|r| matches!(r.entry, CheckpointEntry::RetentionGap(_)))
        .count();
    assert_eq!(gaps, 1, "one gap marker in the checkpoint topic");
    Ok(())
}

/// Exactly-once with a destination that stops answering: the copy loop waits in a
/// transaction commit (bounded by its 15 s request timeout), then the drain's, bounded by
/// the drain timeout. After the destination is back, a `read_committed` reader sees every
/// record exactly once.
#[test]
fn exactly_once_sigterm_ends_in_bounded_time_while_the_destination_does_not_answer() -> TestResult {
    let Some((east, _, _)) =
        stack("exactly_once_sigterm_ends_in_bounded_time_while_the_destination_does_not_answer")
    else {
        return Ok(());
    };
    let broker = ThrowawayBroker::start("drain-eos-dest");
    let topic = unique("drain-eos");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 4;
    create_topic(&east, &topic, partitions as usize);
    produce_spread(&east, &topic, partitions, "before", 1000, 50, 0);
    let route = unique("drain-eos");
    let checkpoint_topic = unique("checkpoints");
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &broker.bootstrap,
        topics: &topic,
        naming: "prefixed",
        delivery: "exactly-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let drain = Duration::from_secs(3);
    let mut replicator = Replicator::start_with(&spec, &["--drain-timeout", "3s"]);
    wait_for("the first records copied", Duration::from_secs(60), || {
        read_all(&broker.bootstrap, &dest_topic, true)
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= 1000
    });

    broker.freeze();
    produce_spread(&east, &topic, partitions, "after", 20_000, 50, 0);
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    let clean = replicator.terminate();
    let took = asked.elapsed();
    eprintln!("exactly-once SIGTERM with the destination frozen: exited in {took:?}");
    // The commit under way when SIGTERM came (15 s request timeout), the drain, the abort.
    let bound = Duration::from_secs(15) + drain + Duration::from_secs(5);
    assert!(
        clean && took < bound,
        "SIGTERM ended the process in {took:?} (clean: {clean}), bound {bound:?}:\n{}",
        replicator
            .log()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    );

    broker.thaw();
    let _next = Replicator::start(&spec);
    let source_ends = end_offsets(&east, &topic);
    let expected: usize = source_ends.values().map(|&e| e as usize).sum();
    wait_for(
        "the next run to commit everything",
        Duration::from_secs(120),
        || {
            read_all(&broker.bootstrap, &dest_topic, true)
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= expected
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let dest = read_all(&broker.bootstrap, &dest_topic, true);
    for (p, end) in &source_ends {
        let seen: Vec<i64> = dest[p].iter().filter_map(Read::source_offset).collect();
        assert_eq!(
            seen,
            (0..*end).collect::<Vec<_>>(),
            "partition {p}: each record exactly once, in order"
        );
    }
    Ok(())
}
