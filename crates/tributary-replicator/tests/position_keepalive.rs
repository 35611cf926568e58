//! Idle partitions keep their stored position (issue 13, defect 2): Kafka deletes a group's
//! offsets `offsets.retention.minutes` after their last commit, and a route that commits
//! only when the position moves would then copy an idle partition again from its log start
//! after a restart. Throwaway brokers with a one-minute retention hold the position (the
//! source in at-least-once, the destination in exactly-once).

mod common;

use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The stored position of `group` for `topic`/0 (`None`: none stored, or the cluster did
/// not answer: a fresh broker's coordinator is loading).
fn position(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .ok()?;
    match committed.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

const TEST_REGION: &str = "rt";
/// One minute, checked every 5 s: an offset not committed again is gone ~65 s later.
const SHORT_RETENTION: &str =
    "offsets.retention.minutes=1\noffsets.retention.check.interval.ms=5000";
/// Longer than the retention plus its check interval.
const IDLE: Duration = Duration::from_secs(100);

fn idle_partition_keeps_its_position(delivery: &str, test: &str) -> TestResult {
    let Some((east, west, _)) = stack(test) else {
        return Ok(());
    };
    let eos = delivery == "exactly-once";
    let broker = ThrowawayBroker::start_with("keepalive", SHORT_RETENTION);
    // The cluster holding the position is the one with the short retention.
    let (source, dest) = if eos {
        (east.as_str(), broker.bootstrap.as_str())
    } else {
        (broker.bootstrap.as_str(), west.as_str())
    };
    let topic = unique("idle");
    let dest_topic = format!("{TEST_REGION}.{topic}");
    create_topic(source, &topic, 1);
    produce(source, &topic, 0, "once", 100, 50, 0);
    let (route, checkpoint_topic) = (unique("idle"), unique("checkpoints"));
    let spec = RouteSpec {
        route: &route,
        source_region: TEST_REGION,
        dest_region: "west",
        source,
        dest,
        topics: &topic,
        naming: "prefixed",
        delivery,
        checkpoint_topic: &checkpoint_topic,
        workers: 1,
    };
    let args = ["--position-keepalive", "10s"];
    let mut replicator = Replicator::start_with(&spec, &args);
    let group = format!("tributary.route.{route}");
    let (position_cluster, position_topic) = if eos {
        (dest, dest_topic.as_str())
    } else {
        (source, topic.as_str())
    };
    wait_for(
        "the records copied and their position stored",
        Duration::from_secs(60),
        || position(position_cluster, &group, position_topic) == Some(100),
    );

    std::thread::sleep(IDLE);
    let committed = (0..5).find_map(|_| {
        let answer = position(position_cluster, &group, position_topic);
        if answer.is_none() {
            std::thread::sleep(Duration::from_secs(1));
        }
        answer
    });
    assert_eq!(
        committed,
        Some(100),
        "the idle partition's position outlived the offsets retention"
    );

    replicator.kill9();
    let _restarted = Replicator::start_with(&spec, &args);
    produce(source, &topic, 0, "after", 10, 50, 0);
    wait_for("the new records copied", Duration::from_secs(60), || {
        read_all(dest, &dest_topic, true)
            .values()
            .flatten()
            .any(|r| r.source_offset() == Some(109))
    });
    let copies = read_all(dest, &dest_topic, eos)
        .into_values()
        .flatten()
        .count();
    assert_eq!(
        copies, 110,
        "the restart resumed at the stored position, not at the log start"
    );
    Ok(())
}

#[test]
fn at_least_once_idle_partition_keeps_its_position_past_the_offsets_retention() -> TestResult {
    idle_partition_keeps_its_position(
        "at-least-once",
        "at_least_once_idle_partition_keeps_its_position_past_the_offsets_retention",
    )
}

#[test]
fn exactly_once_idle_partition_keeps_its_position_past_the_offsets_retention() -> TestResult {
    idle_partition_keeps_its_position(
        "exactly-once",
        "exactly_once_idle_partition_keeps_its_position_past_the_offsets_retention",
    )
}
