//! The checkpoint topic grows with change, not with time × partitions (checkpoint layout v2,
//! docs/checkpoint-format.md): an idle partition writes again only when its floor rises or
//! its heartbeat is due, never merely because an interval passed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{create_topic, free_port, produce, read_checkpoints, stack, unique};
use tributary_core::checkpoint::CheckpointEntry;

/// Starts route east → west (prefixed naming) for `topic` with `extra` flags; its /metrics
/// port.
fn replicate(
    east: &str,
    west_aggregate: &str,
    topic: &str,
    checkpoint_topic: &str,
    extra: &[&str],
) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tributary-replicate"))
        .args([
            "--route",
            &unique("volume"),
            "--source-region",
            "east",
            "--dest-region",
            "west",
        ])
        .args([
            "--source-bootstrap",
            east,
            "--dest-bootstrap",
            west_aggregate,
        ])
        .args(["--topics", topic, "--topic-naming", "prefixed"])
        .args(["--checkpoint-topic", checkpoint_topic])
        .args(extra)
        .arg(format!("--listen=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tributary-replicate starts");
    (child, port)
}

#[test]
fn an_idle_partition_writes_its_heartbeat_not_a_record_per_interval() {
    // None only with TRIBUTARY_SKIP_E2E=1 (it says SKIPPED); a missing stack fails.
    let Some((east, west_aggregate, _)) =
        stack("an_idle_partition_writes_its_heartbeat_not_a_record_per_interval")
    else {
        return;
    };
    let topic = unique("volume");
    create_topic(&east, &topic, 2);
    produce(&east, &topic, 0, "busy", 5, 10, 0);
    let checkpoint_topic = unique("volume-checkpoints");
    let (mut child, _) = replicate(
        &east,
        &west_aggregate,
        &topic,
        &checkpoint_topic,
        &["--checkpoint-interval=100ms", "--checkpoint-heartbeat=2s"],
    );
    let copied = |records: &[tributary_core::CheckpointRecord]| {
        records.iter().any(|r| {
            r.key.partition == 0
                && matches!(r.entry, CheckpointEntry::Checkpoint(c) if c.source_offset == 4)
        })
    };
    common::wait_for(
        "the last record's checkpoint",
        Duration::from_secs(60),
        || copied(&read_checkpoints(&west_aggregate, &checkpoint_topic)),
    );
    let before = read_checkpoints(&west_aggregate, &checkpoint_topic);
    std::thread::sleep(Duration::from_secs(6));
    let after = read_checkpoints(&west_aggregate, &checkpoint_topic);
    let _ = child.kill();
    let _ = child.wait();

    for partition in [0, 1] {
        let written = |records: &[tributary_core::CheckpointRecord]| {
            records
                .iter()
                .filter(|r| r.key.partition == partition)
                .count()
        };
        let idle_writes = written(&after) - written(&before);
        // Heartbeats at 2 s over 6 s: 3, plus one for a floor that rose while we watched.
        assert!(
            (2..=5).contains(&idle_writes),
            "partition {partition}: {idle_writes} records written in 6 idle seconds; expected its heartbeat (2 s), not a record per 100 ms interval"
        );
    }
}

/// A destination topic recreated under a running at-least-once route: the route writes a
/// restart origin before the new log's checkpoints, so readers drop the old log's
/// checkpoints instead of refusing the partition as contradicted.
#[test]
fn a_recreated_destination_gets_a_restart_origin_before_its_checkpoints() {
    // None only with TRIBUTARY_SKIP_E2E=1 (it says SKIPPED); a missing stack fails.
    let Some((east, west_aggregate, _)) =
        stack("a_recreated_destination_gets_a_restart_origin_before_its_checkpoints")
    else {
        return;
    };
    let topic = unique("recreated");
    let dest_topic = format!("east.{topic}");
    create_topic(&east, &topic, 1);
    produce(&east, &topic, 0, "before", 50, 10, 0);
    let checkpoint_topic = unique("recreated-checkpoints");
    let (mut child, _) = replicate(
        &east,
        &west_aggregate,
        &topic,
        &checkpoint_topic,
        &["--checkpoint-interval=200ms"],
    );
    let checkpointed = |source: u64| {
        move |records: &[tributary_core::CheckpointRecord]| {
            records.iter().any(
                |r| matches!(r.entry, CheckpointEntry::Checkpoint(c) if c.source_offset == source),
            )
        }
    };
    common::wait_for(
        "the first records' checkpoint",
        Duration::from_secs(60),
        || checkpointed(49)(&read_checkpoints(&west_aggregate, &checkpoint_topic)),
    );
    // Recreate the destination with fewer records than the route had copied into it.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &west_aggregate)
            .create()
            .expect("admin client");
    common::runtime()
        .block_on(admin.delete_topics(&[&dest_topic], &rdkafka::admin::AdminOptions::new()))
        .expect("destination deleted");
    common::wait_for("the destination gone", Duration::from_secs(30), || {
        common::end_offsets(&west_aggregate, &dest_topic).is_empty()
    });
    create_topic(&west_aggregate, &dest_topic, 1);
    produce(&east, &topic, 0, "after", 10, 10, 0);
    common::wait_for(
        "the new records' checkpoint",
        Duration::from_secs(60),
        || checkpointed(59)(&read_checkpoints(&west_aggregate, &checkpoint_topic)),
    );
    let _ = child.kill();
    let _ = child.wait();

    let records = read_checkpoints(&west_aggregate, &checkpoint_topic);
    // The last origin at (0, 0) without a floor (the route's first origin is one too).
    let restart = records
        .iter()
        .rposition(|r| matches!(r.entry, CheckpointEntry::Origin(o) if o.source_offset == 0 && o.destination_offset == 0 && o.next_copy_floor.is_none()))
        .expect("a restart origin was written");
    let old = records
        .iter()
        .rposition(|r| matches!(r.entry, CheckpointEntry::Checkpoint(c) if c.source_offset == 49))
        .expect("the old log's last checkpoint");
    let new = records
        .iter()
        .position(|r| matches!(r.entry, CheckpointEntry::Checkpoint(c) if c.source_offset > 49))
        .expect("a checkpoint of the new log");
    assert!(
        old < restart && restart < new,
        "the restart origin lies between the old log's checkpoints and the new log's"
    );
    let mut index =
        tributary_core::CheckpointIndexes::new(tributary_core::ThinningPolicy::default());
    for r in &records {
        index.apply(r);
    }
    let key = records[new].key.clone();
    assert!(
        index.get(&key).is_some_and(|i| i.contradiction().is_none()),
        "a reader holds no contradiction for the route"
    );
}

/// Checkpoint writes the destination refuses are counted, and the checkpoint age grows from
/// the oldest unacknowledged write instead of restarting at every attempt.
#[test]
fn refused_checkpoint_writes_are_counted_and_age_the_checkpoints() {
    // None only with TRIBUTARY_SKIP_E2E=1 (it says SKIPPED); a missing stack fails.
    let Some((east, west_aggregate, _)) =
        stack("refused_checkpoint_writes_are_counted_and_age_the_checkpoints")
    else {
        return;
    };
    let topic = unique("refused");
    create_topic(&east, &topic, 1);
    produce(&east, &topic, 0, "data", 20, 10, 0);
    // A checkpoint topic whose records may be at most 64 bytes: every checkpoint is refused.
    let checkpoint_topic = unique("refused-checkpoints");
    common::runtime()
        .block_on(
            common::admin(&west_aggregate).create_topic(&tributary_kafka::TopicSpec {
                name: checkpoint_topic.clone(),
                partitions: 1,
                replication_factor: None,
                configs: vec![("max.message.bytes".into(), "64".into())],
            }),
        )
        .expect("checkpoint topic created");
    let (mut child, port) = replicate(
        &east,
        &west_aggregate,
        &topic,
        &checkpoint_topic,
        &["--checkpoint-interval=200ms"],
    );
    let metric = |name: &str| -> f64 {
        common::http_get(port, "/metrics")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    common::wait_for(
        "a refused checkpoint write",
        Duration::from_secs(60),
        || metric("tributary_replicator_checkpoint_delivery_failures_total") > 0.0,
    );
    common::wait_for(
        "the checkpoint age to pass 2 s",
        Duration::from_secs(30),
        || metric("tributary_replicator_checkpoint_age_seconds") > 2.0,
    );
    let _ = child.kill();
    let _ = child.wait();
}
