//! Two live instances of one exactly-once route (issue 13, defect 10): the first is paused
//! (SIGSTOP) mid-stream, a second starts and takes over, then the first resumes. The first
//! must be fenced — it writes nothing more that a `read_committed` reader sees — and that
//! reader sees every source record exactly once. And a failed transaction commit: the
//! later transaction is aborted and the copy resumes from the last committed position.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const TEST_REGION: &str = "rt";

#[test]
fn a_resumed_older_instance_is_fenced_and_read_committed_sees_each_record_once() -> TestResult {
    let Some((east, west, _)) =
        stack("a_resumed_older_instance_is_fenced_and_read_committed_sees_each_record_once")
    else {
        return Ok(());
    };
    let topic = unique("zombie");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 2;
    create_topic(&east, &topic, partitions);
    let (route, checkpoint_topic) = (unique("zombie"), unique("checkpoints"));
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west,
        topics: &topic,
        naming: "prefixed",
        delivery: "exactly-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    // Records keep flowing through the whole takeover (60 s).
    let per_partition = 6000;
    let producers: Vec<_> = (0..partitions as i32)
        .map(|p| {
            let (east, topic) = (east.clone(), topic.clone());
            std::thread::spawn(move || produce(&east, &topic, p, "live", per_partition, 50, 100))
        })
        .collect();

    let mut first = Replicator::start(&spec);
    let copied = |replicator: &Replicator| {
        replicator.metric_sum("tributary_replicator_records_copied_total")
    };
    wait_for(
        "the first instance to copy",
        Duration::from_secs(60),
        || copied(&first) >= 500.0,
    );
    first.pause();
    let second = Replicator::start(&spec);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while copied(&second) < 200.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second instance did not take over: {}\n{}",
            http_get(second.port, "/metrics").unwrap_or_default(),
            second.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    first.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while first.metric_sum("tributary_replicator_errors_total{category=\"Fenced\"}") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first instance was not fenced:\n--- first\n{}\n--- second\n{}",
            first
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
            second
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // It backs off 30 s before it would fence the second back; stop it there.
    first.kill9();
    for producer in producers {
        let _ = producer.join();
    }
    let source_ends = end_offsets(&east, &topic);
    wait_until_committed(&west, &dest_topic, &source_ends);
    assert_each_record_once_in_order(&west, &dest_topic, &source_ends);
    assert!(
        first.log().to_lowercase().contains("fenced"),
        "the first instance says it was fenced:\n{}",
        first
            .log()
            .lines()
            .rev()
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// What a `read_committed` reader of `dest_topic` sees: every source offset below the
/// source's end, once, in order.
fn assert_each_record_once_in_order(
    west: &str,
    dest_topic: &str,
    source_ends: &BTreeMap<i32, i64>,
) {
    let committed = read_all(west, dest_topic, true);
    for (p, end) in source_ends {
        let seen: Vec<i64> = committed[p]
            .iter()
            .filter_map(Read::source_offset)
            .collect();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for offset in &seen {
            *counts.entry(*offset).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "partition {p}: copied more than once: {twice:?}"
        );
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            (0..*end).collect::<Vec<_>>(),
            "partition {p}: every source record exactly once"
        );
        assert_eq!(
            seen,
            (0..*end).collect::<Vec<_>>(),
            "partition {p}: in source order"
        );
    }
}

/// Waits until a `read_committed` reader of `dest_topic` reaches every source end.
fn wait_until_committed(west: &str, dest_topic: &str, source_ends: &BTreeMap<i32, i64>) {
    wait_for(
        "the route to copy everything",
        Duration::from_secs(120),
        || {
            let committed = read_all(west, dest_topic, true);
            source_ends.iter().all(|(p, end)| {
                committed
                    .get(p)
                    .and_then(|r| r.iter().filter_map(Read::source_offset).max())
                    .is_some_and(|max| max + 1 >= *end)
            })
        },
    );
}

/// A transaction commit fails (test fault `fail-commit`, after the copy loop went on into
/// the next transaction on the route's other producer): that later transaction is aborted,
/// the session restarts from the last committed position, and a `read_committed` reader
/// sees every record once, in order — nothing skipped past the failed transaction, nothing
/// of it or of the later one visible twice.
#[test]
fn a_failed_commit_aborts_the_later_transaction_and_read_committed_sees_each_record_once()
-> TestResult {
    let Some((east, west, _)) = stack(
        "a_failed_commit_aborts_the_later_transaction_and_read_committed_sees_each_record_once",
    ) else {
        return Ok(());
    };
    let topic = unique("failcommit");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    let partitions = 2;
    create_topic(&east, &topic, partitions);
    let (route, checkpoint_topic) = (unique("failcommit"), unique("checkpoints"));
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source: &east,
        dest: &west,
        topics: &topic,
        naming: "prefixed",
        delivery: "exactly-once",
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    // Records flow before, during and after the failed commit (~6 s).
    let per_partition = 3000;
    let producers: Vec<_> = (0..partitions as i32)
        .map(|p| {
            let (east, topic) = (east.clone(), topic.clone());
            std::thread::spawn(move || produce(&east, &topic, p, "live", per_partition, 50, 500))
        })
        .collect();
    let replicator =
        Replicator::start_with_env(&spec, &[], &[("TRIBUTARY_TEST_FAULT", "fail-commit:10")]);
    // Ten commits take a few seconds; the bound is for a loaded machine, where starting the
    // session's two transactional producers alone took most of a minute.
    wait_for(
        "the failed commit to end the session",
        Duration::from_secs(180),
        || replicator.metric_sum("tributary_replicator_errors_total{category=\"Kafka\"}") >= 1.0,
    );
    for producer in producers {
        let _ = producer.join();
    }
    let source_ends = end_offsets(&east, &topic);
    wait_until_committed(&west, &dest_topic, &source_ends);
    assert_each_record_once_in_order(&west, &dest_topic, &source_ends);
    let log = replicator.log();
    assert!(
        log.contains("test fault: transaction commit") && log.contains("copy session failed"),
        "the commit failed and the session restarted:\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        replicator.metric_sum("tributary_replicator_transactions_total") >= 10.0,
        "transactions committed after the restart"
    );
    Ok(())
}

/// With several copy workers a transactional id belongs to a worker slot, not to a
/// partition set, so fencing would not be partition-exact: the replicator refuses to start.
#[test]
fn exactly_once_with_several_workers_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary-replicate"))
        .args([
            "--route",
            "r",
            "--source-region",
            "east",
            "--dest-region",
            "west",
            "--source-bootstrap",
            "127.0.0.1:1",
            "--dest-bootstrap",
            "127.0.0.1:1",
            "--topics",
            "orders",
            "--delivery",
            "exactly-once",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap_or_else(|e| panic!("spawning tributary-replicate: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("--workers 2") && stderr.contains("exactly-once"),
        "names both flags: {stderr}"
    );
}
