//! The zombie-commit rule on real Kafka, with real replicators: a standby sync acting for
//! epoch 3 translates the group's commits made with `tributary epoch=3 region=<A>` (and
//! those without the convention), but a commit whose metadata names epoch 2 is a zombie's:
//! counted once (`zombie_commits_total`), listed by `GET /status`, and never translated —
//! the standby keeps its last good position for that partition until the current epoch
//! commits there again.
//!
//! Needs the stack (`make stack-up`); with `TRIBUTARY_SKIP_E2E=1` it says SKIPPED.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_core::commit_epoch::{ZombieReport, commit_metadata};

const PARTITIONS: i32 = 3;
const EPOCH: u64 = 3;

/// Commits `offsets` (partition → (offset, metadata)) for `group`, as a consumer of that
/// epoch would (a non-member commit).
fn commit_with_metadata(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64, &str)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut list = TopicPartitionList::new();
    for (p, o, metadata) in offsets {
        list.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap_or_else(|e| panic!("{e}"));
        list.find_partition(topic, *p)
            .unwrap_or_else(|| panic!("partition {p} in the list"))
            .set_metadata(*metadata);
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("committing for {group}: {e}"));
}

/// [`wait_for`], with the sync's log in the failure.
fn wait_logged(sync: &Process, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; checkpoint-sync log:\n{}",
            sync.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(sync: &Process) -> Option<ZombieReport> {
    let raw = http_get(sync.port, "/status").ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1.trim()).ok()
}

#[test]
fn a_commit_of_an_older_epoch_is_counted_and_never_translated() -> TestResult {
    let _serial = serial();
    let Some(regions) = stack_regions() else {
        return Ok(());
    };
    let started = Instant::now();
    let (from, to) = (&regions[0], &regions[1]);
    let topic = unique("orders");
    let checkpoints = unique("ckpt");
    let group = unique("billing");
    create_topic(&from.regional, &topic, PARTITIONS);
    let mut replicators = vec![
        start_replicator(from, from, &topic, "identity", &checkpoints),
        start_replicator(from, to, &topic, "identity", &checkpoints),
    ];
    produce(&from.regional, &topic, PARTITIONS, &from.name, 600, 0);
    for r in [from, to] {
        wait_for(
            "records in both aggregates",
            Duration::from_secs(30),
            || {
                end_offsets(&r.aggregate, &topic, PARTITIONS)
                    .values()
                    .sum::<i64>()
                    >= 600
            },
        );
    }
    let current = commit_metadata(EPOCH, &from.name);
    let zombie = commit_metadata(EPOCH - 1, &from.name);
    commit_with_metadata(
        &from.aggregate,
        &group,
        &topic,
        &[(0, 20, &current), (1, 20, &current), (2, 20, &current)],
    );

    let epoch_file = std::env::temp_dir().join(format!("{group}.epoch"));
    std::fs::write(&epoch_file, format!("{EPOCH}\n"))?;
    let port = free_port();
    let mut command = sync_command(
        from,
        to,
        &regions[..1],
        &group,
        &topic,
        "identity",
        &checkpoints,
    );
    command.args([
        "--interval",
        "300ms",
        "--epoch",
        &EPOCH.to_string(),
        "--epoch-file",
        &epoch_file.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let sync = Process::spawn("checkpoint-sync", command, port);
    wait_logged(
        &sync,
        "the current epoch's commits translated",
        Duration::from_secs(30),
        || committed(&to.aggregate, &group, &topic, PARTITIONS).len() == PARTITIONS as usize,
    );
    let good = committed(&to.aggregate, &group, &topic, PARTITIONS);

    // Everything consumed (the ends: the replicators' last checkpoints place them exactly
    // in B): a zombie of epoch 2 commits its end on partition 1, the current epoch on 0,
    // and a consumer without the convention on 2.
    let ends = end_offsets(&from.aggregate, &topic, PARTITIONS);
    let end = |p: i32| ends.get(&p).copied().unwrap_or_default();
    commit_with_metadata(
        &from.aggregate,
        &group,
        &topic,
        &[(0, end(0), &current), (1, end(1), &zombie), (2, end(2), "")],
    );
    wait_logged(
        &sync,
        "the others translated past the zombie",
        Duration::from_secs(30),
        || {
            let now = committed(&to.aggregate, &group, &topic, PARTITIONS);
            now.get(&0) > good.get(&0) && now.get(&2) > good.get(&2)
        },
    );
    wait_logged(&sync, "the zombie counted", Duration::from_secs(10), || {
        sync.metric_sum("tributary_checkpoint_sync_zombie_commits_total") >= 1.0
    });
    // Several more rounds: still held, counted once.
    std::thread::sleep(Duration::from_millis(1500));
    let now = committed(&to.aggregate, &group, &topic, PARTITIONS);
    assert_eq!(
        now.get(&1),
        good.get(&1),
        "the zombie's partition keeps its last good position: {now:?} (before: {good:?})"
    );
    assert_eq!(
        sync.metric_sum("tributary_checkpoint_sync_zombie_commits_total"),
        1.0,
        "counted once however many rounds see it"
    );
    let metrics = http_get(port, "/metrics")?;
    let line = format!(
        r#"tributary_checkpoint_sync_zombie_commits_total{{topic="{topic}",partition="1",region="{}"}} 1"#,
        from.name
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    assert!(metrics.contains("tributary_checkpoint_sync_zombie_held_partitions 1"));
    let report = status(&sync).ok_or("GET /status answers JSON")?;
    assert_eq!(report.epoch, Some(EPOCH));
    assert_eq!(report.zombie_commits_total, 1);
    let held = report.held_partitions.first().ok_or("one held partition")?;
    assert_eq!(
        (
            held.partition,
            held.offset,
            held.epoch,
            held.region.as_str()
        ),
        (1, end(1) as u64, EPOCH - 1, from.name.as_str())
    );
    assert!(
        sync.log().contains("zombie commit"),
        "the log names it:\n{}",
        sync.log()
    );

    // The current epoch commits partition 1 again: translated, nothing held.
    commit_with_metadata(&from.aggregate, &group, &topic, &[(1, end(1), &current)]);
    wait_logged(
        &sync,
        "partition 1 translated again",
        Duration::from_secs(30),
        || committed(&to.aggregate, &group, &topic, PARTITIONS).get(&1) > good.get(&1),
    );
    wait_logged(&sync, "nothing held", Duration::from_secs(10), || {
        status(&sync).is_some_and(|r| r.held_partitions.is_empty() && r.zombie_commits_total == 1)
    });
    for r in &mut replicators {
        r.terminate();
    }
    let _ = std::fs::remove_file(&epoch_file);
    eprintln!("zombie-commit test took {:?}", started.elapsed());
    Ok(())
}
