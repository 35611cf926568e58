//! checkpoint-sync end to end on real Kafka (the e2e stack), with real `tributary replicate`
//! processes for every route: producers write in every region, a group consumes part of A's
//! aggregate, a standby sync keeps B warm, and the group resumes in B from the final plan.
//!
//! Needs the stack (`make stack-up`); with `TRIBUTARY_SKIP_E2E=1` each test says SKIPPED.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_core::{Deduper, TranslationPlan};

const PARTITIONS: i32 = 3;

/// Replicators for every route among `regions`, each ready.
fn start_all_routes(
    regions: &[Region],
    topic: &str,
    naming: &str,
    checkpoints: &str,
) -> Vec<Process> {
    let mut replicators = Vec::new();
    for source in regions {
        for dest in regions {
            replicators.push(start_replicator(source, dest, topic, naming, checkpoints));
        }
    }
    for r in &replicators {
        wait_for(
            &format!("{} ready", r.name),
            Duration::from_secs(30),
            || http_get(r.port, "/readyz").is_ok_and(|b| b.contains("200 OK")),
        );
    }
    replicators
}

fn total(offsets: &BTreeMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

fn epoch_file(name: &str, epoch: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.epoch"));
    std::fs::write(&path, format!("{epoch}\n")).unwrap_or_else(|e| panic!("epoch file: {e}"));
    path
}

/// The whole active-passive story over `regions` (A = first, B = second), with aggregate
/// topics named `naming` (`identity`: one topic, every region merged; `prefixed`: one
/// `<region>.<topic>` per source region, which the group consumes all of).
fn failover_story(regions: &[Region], naming: &str, test: &str) -> TestResult {
    let (from, to) = (&regions[0], &regions[1]);
    let started = Instant::now();
    let topic = unique("orders");
    let checkpoints = unique("ckpt");
    let group = unique("billing");
    for r in regions {
        create_topic(&r.regional, &topic, PARTITIONS);
    }
    let aggregate_topics: Vec<String> = match naming {
        "prefixed" => regions
            .iter()
            .map(|r| format!("{}.{topic}", r.name))
            .collect(),
        _ => vec![topic.clone()],
    };
    let topic_list = aggregate_topics.join(",");
    let mut replicators = start_all_routes(regions, &topic, naming, &checkpoints);

    let epoch = epoch_file(&group, 1);
    let mut standby = start_standby_sync(
        sync_command(from, to, regions, &group, &topic_list, naming, &checkpoints),
        &epoch,
    );

    // Never backwards: watch the group's offsets in B while the standby sync runs.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watching, bootstrap, group, topics) = (
            watching.clone(),
            to.aggregate.clone(),
            group.clone(),
            aggregate_topics.clone(),
        );
        std::thread::spawn(move || {
            let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
            let mut backwards = Vec::new();
            while watching.load(Ordering::Relaxed) {
                for (p, o) in committed_all(&bootstrap, &group, &topics, PARTITIONS) {
                    if let Some(before) = last.insert(p.clone(), o)
                        && o < before
                    {
                        backwards.push((p, before, o));
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            (last, backwards)
        })
    };

    // Producers in every region while the group consumes part of A's aggregate.
    let per_region = 1200;
    let producers: Vec<_> = regions
        .iter()
        .map(|r| {
            let (bootstrap, topic, tag) = (r.regional.clone(), topic.clone(), r.name.clone());
            std::thread::spawn(move || {
                produce(&bootstrap, &topic, PARTITIONS, &tag, per_region, 300)
            })
        })
        .collect();
    let total_produced = per_region * regions.len();
    let subscribed: Vec<&str> = aggregate_topics.iter().map(String::as_str).collect();
    let in_active = consume_and_commit(
        &from.aggregate,
        &subscribed,
        &group,
        total_produced * 2 / 5,
        37,
        Duration::from_secs(40),
    );
    for p in producers {
        p.join().map_err(|_| "producer thread panicked")?;
    }
    let produced: BTreeSet<String> = regions
        .iter()
        .flat_map(|r| (0..per_region).map(move |i| format!("{}-{i}", r.name)))
        .collect();
    for r in regions {
        wait_for(
            &format!("every record in {}'s aggregate", r.name),
            Duration::from_secs(40),
            || total_records(&r.aggregate, &aggregate_topics, PARTITIONS) >= total_produced as i64,
        );
    }

    // The standby catches up with the group's last commit in A, then is superseded.
    let rounds = standby.metric_sum("tributary_checkpoint_sync_rounds_total");
    wait_for("two more standby rounds", Duration::from_secs(20), || {
        standby.metric_sum("tributary_checkpoint_sync_rounds_total") >= rounds + 2.0
    });
    let metrics = http_get(standby.port, "/metrics")?;
    assert!(
        metrics.contains("tributary_checkpoint_sync_translated_lag_records{"),
        "{metrics}"
    );
    assert!(metrics.contains("tributary_checkpoint_sync_sync_age_seconds"));
    assert!(http_get(standby.port, "/readyz")?.contains("200 OK"));
    std::fs::write(&epoch, "2\n")?;
    assert_eq!(
        standby.wait_exit(Duration::from_secs(15)),
        Some(true),
        "the standby sync must exit 0 once its epoch is superseded:\n{}",
        standby.log()
    );
    watching.store(false, Ordering::Relaxed);
    let (warm, backwards) = watcher.join().map_err(|_| "watcher panicked")?;
    assert!(
        backwards.is_empty(),
        "the standby moved backwards: {backwards:?}"
    );
    let in_a = committed_all(&from.aggregate, &group, &aggregate_topics, PARTITIONS);
    assert!(
        warm.keys().eq(in_a.keys()),
        "the standby kept every partition warm: {warm:?}\n{}",
        standby.log()
    );

    // Failover: the final translation, then the group resumes in B.
    let plan_file = std::env::temp_dir().join(format!("{group}.plan.json"));
    let printed = run_final(
        sync_command(from, to, regions, &group, &topic_list, naming, &checkpoints),
        &plan_file,
    )?;
    let plan: TranslationPlan = serde_json::from_str(&printed)?;
    let written: TranslationPlan = serde_json::from_slice(&std::fs::read(&plan_file)?)?;
    assert_eq!(plan, written, "the plan file holds the printed plan");
    let resume = committed_all(&to.aggregate, &group, &aggregate_topics, PARTITIONS);
    for (partition, offset) in plan.resume_offsets() {
        assert_eq!(
            resume.get(&(partition.topic.clone(), partition.partition as i32)),
            Some(&(offset as i64)),
            "the final plan is committed in B"
        );
    }
    let in_standby: Vec<Seen> = aggregate_topics
        .iter()
        .flat_map(|t| resume_and_read_all(&to.aggregate, &group, t, PARTITIONS))
        .collect();
    let counts = count_failover(
        &produced,
        &in_active,
        &in_standby,
        &Deduper::from_plan(&plan),
    );
    eprintln!(
        "{test}: produced {} | processed in {} {} | read in {} {} | duplicates {} (plan bound {}) | after dedupe {} (bound {}) | warm standby {warm:?} vs final {:?} | {:?}",
        counts.produced,
        from.name,
        in_active.len(),
        to.name,
        in_standby.len(),
        counts.duplicates,
        plan.max_duplicates,
        counts.duplicates_after_dedupe,
        plan.max_duplicates_after_dedupe,
        plan.resume_offsets().values().collect::<Vec<_>>(),
        started.elapsed()
    );
    assert!(
        counts.missing.is_empty(),
        "records lost to the group across the failover: {:?}",
        &counts.missing[..counts.missing.len().min(20)]
    );
    assert!(
        counts.duplicates as u64 <= plan.max_duplicates,
        "{} duplicates exceed the plan's bound {}",
        counts.duplicates,
        plan.max_duplicates
    );
    assert!(
        counts.missing_after_dedupe.is_empty(),
        "the deduper dropped unprocessed records: {:?}",
        &counts.missing_after_dedupe[..counts.missing_after_dedupe.len().min(20)]
    );
    assert_eq!(
        plan.max_duplicates_after_dedupe, 0,
        "provenance tails make watermarks exact"
    );
    assert_eq!(
        counts.duplicates_after_dedupe, 0,
        "zero duplicates with the deduper"
    );

    for r in &mut replicators {
        r.terminate();
    }
    let _ = std::fs::remove_file(&epoch);
    let _ = std::fs::remove_file(&plan_file);
    Ok(())
}

#[test]
fn two_regions_failover_sees_every_record_and_dedupes_to_zero() -> TestResult {
    let _serial = serial();
    let Some(regions) = stack_regions() else {
        return Ok(());
    };
    assert!(regions.len() >= 2, "the stack has at least two regions");
    failover_story(&regions[..2], "identity", "two_regions")
}

#[test]
fn two_regions_prefixed_naming_failover_sees_every_record_and_dedupes_to_zero() -> TestResult {
    let _serial = serial();
    let Some(regions) = stack_regions() else {
        return Ok(());
    };
    failover_story(&regions[..2], "prefixed", "two_regions_prefixed")
}

/// A consumer in B that stays a member of the group until told to stop.
fn active_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    // Return only once the member has joined and holds partitions: a sync round that ran
    // before the join would rightly see an empty group and commit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member in B never got an assignment"
        );
        let _ = consumer.poll(Duration::from_millis(100));
    }
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        consumer.unsubscribe();
    })
}

#[test]
fn sync_refuses_a_group_active_in_the_standby_and_never_moves_it_backwards() -> TestResult {
    let _serial = serial();
    let Some(regions) = stack_regions() else {
        return Ok(());
    };
    let (from, to) = (&regions[0], &regions[1]);
    let topic = unique("orders");
    let checkpoints = unique("ckpt");
    let group = unique("billing");
    create_topic(&from.regional, &topic, PARTITIONS);
    // One source region is enough here: both its routes.
    let sources = std::slice::from_ref(from);
    let mut replicators = vec![
        start_replicator(from, from, &topic, "identity", &checkpoints),
        start_replicator(from, to, &topic, "identity", &checkpoints),
    ];
    produce(&from.regional, &topic, PARTITIONS, &from.name, 600, 0);
    for r in [from, to] {
        wait_for(
            "records in both aggregates",
            Duration::from_secs(30),
            || total(&end_offsets(&r.aggregate, &topic, PARTITIONS)) >= 600,
        );
    }
    consume_and_commit(
        &from.aggregate,
        &[topic.as_str()],
        &group,
        250,
        50,
        Duration::from_secs(30),
    );
    let in_a = committed(&from.aggregate, &group, &topic, PARTITIONS);

    // A member of the group consumes in B: the sync must not touch the group.
    let member_stop = Arc::new(AtomicBool::new(false));
    let member = active_member(&to.aggregate, &group, &topic, member_stop.clone());
    let epoch = epoch_file(&group, 1);
    let mut standby = start_standby_sync(
        sync_command(from, to, sources, &group, &topic, "identity", &checkpoints),
        &epoch,
    );
    wait_for(
        "rounds skipped for the active group",
        Duration::from_secs(30),
        || {
            standby.metric_sum("tributary_checkpoint_sync_commits_skipped_group_active_total")
                >= 2.0
        },
    );
    assert!(
        committed(&to.aggregate, &group, &topic, PARTITIONS).is_empty(),
        "nothing committed while the group is active in B"
    );
    let plan_file = std::env::temp_dir().join(format!("{group}.plan.json"));
    let refused = run_final(
        sync_command(from, to, sources, &group, &topic, "identity", &checkpoints),
        &plan_file,
    );
    let refusal = refused.err().unwrap_or_default();
    assert!(
        refusal.contains("active member"),
        "--final refuses an active group with a clear error: {refusal}"
    );
    assert!(
        !plan_file.exists(),
        "no plan file for a failed final translation"
    );

    // The member leaves: the standby warms up.
    member_stop.store(true, Ordering::Relaxed);
    member.join().map_err(|_| "member thread panicked")?;
    wait_for_or_show(
        "the standby commits once the group is idle in B",
        Duration::from_secs(30),
        || {
            committed(&to.aggregate, &group, &topic, PARTITIONS)
                .keys()
                .eq(in_a.keys())
        },
        || standby.log(),
    );
    let warm = committed(&to.aggregate, &group, &topic, PARTITIONS);

    // Someone put the standby ahead of the translation: the sync keeps it (never backwards).
    let ahead = end_offsets(&to.aggregate, &topic, PARTITIONS);
    assert!(warm.iter().all(|(p, offset)| ahead[p] >= *offset));
    commit_offsets(&to.aggregate, &group, &topic, &ahead);
    let kept = standby.metric_sum("tributary_checkpoint_sync_partitions_kept_total");
    wait_for(
        "rounds that keep the offsets ahead",
        Duration::from_secs(20),
        || {
            standby.metric_sum("tributary_checkpoint_sync_partitions_kept_total")
                >= kept + 2.0 * PARTITIONS as f64
        },
    );
    assert_eq!(
        committed(&to.aggregate, &group, &topic, PARTITIONS),
        ahead,
        "the standby sync never moves the group backwards"
    );
    std::fs::write(&epoch, "2\n")?;
    assert_eq!(
        standby.wait_exit(Duration::from_secs(15)),
        Some(true),
        "{}",
        standby.log()
    );

    // A failover commits the plan as is, even behind B's current offsets: it is authoritative.
    let plan: TranslationPlan = serde_json::from_str(&run_final(
        sync_command(from, to, sources, &group, &topic, "identity", &checkpoints),
        &plan_file,
    )?)?;
    let after = committed(&to.aggregate, &group, &topic, PARTITIONS);
    for (partition, offset) in plan.resume_offsets() {
        let p = partition.partition as i32;
        assert_eq!(after.get(&p), Some(&(offset as i64)));
        assert_eq!(
            warm.get(&p),
            Some(&(offset as i64)),
            "the warm standby matched the final plan"
        );
    }
    for r in &mut replicators {
        r.terminate();
    }
    let _ = std::fs::remove_file(&epoch);
    let _ = std::fs::remove_file(&plan_file);
    Ok(())
}

/// Writes one checkpoint-topic record into `bootstrap`'s checkpoint topic through the real
/// encoder, as a replicator would.
fn write_checkpoint_record(
    bootstrap: &str,
    checkpoint_topic: &str,
    record: &tributary_core::CheckpointRecord,
) -> TestResult {
    use rdkafka::producer::{BaseRecord, Producer};
    let encoded = tributary_core::checkpoint::encode(record)?;
    let producer = producer(bootstrap);
    producer
        .send(
            BaseRecord::to(checkpoint_topic)
                .key(&encoded.key)
                .payload(&encoded.value),
        )
        .map_err(|(e, _)| format!("writing a checkpoint record: {e}"))?;
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}

/// Real replicators fill both aggregates; then a checkpoint arrives for one partition of the
/// east→west route as after a recreated west topic (a later source offset at destination
/// offset 0). `--once --final` commits the other partitions, refuses that one with an error
/// naming it, and writes no plan; a restart origin for the route resolves it.
#[test]
fn a_contradicted_partition_is_refused_until_a_restart_origin() -> TestResult {
    use tributary_core::checkpoint::{CheckpointEntry, CheckpointKey, CheckpointRecord};
    use tributary_core::{OffsetCheckpoint, Route, RouteOrigin};
    let _serial = serial();
    let Some(regions) = stack_regions() else {
        return Ok(());
    };
    let (from, to) = (&regions[0], &regions[1]);
    let topic = unique("orders");
    let checkpoints = unique("ckpt");
    let group = unique("billing");
    create_topic(&from.regional, &topic, PARTITIONS);
    let sources = std::slice::from_ref(from);
    let mut replicators = vec![
        start_replicator(from, from, &topic, "identity", &checkpoints),
        start_replicator(from, to, &topic, "identity", &checkpoints),
    ];
    produce(&from.regional, &topic, PARTITIONS, &from.name, 300, 0);
    for r in [from, to] {
        wait_for(
            "records in both aggregates",
            Duration::from_secs(30),
            || total(&end_offsets(&r.aggregate, &topic, PARTITIONS)) >= 300,
        );
    }
    // Everything consumed, so the group has a committed offset on every partition in A.
    consume_and_commit(
        &from.aggregate,
        &[topic.as_str()],
        &group,
        300,
        50,
        Duration::from_secs(30),
    );
    // No more checkpoints from the replicators: what follows is the only news.
    for r in &mut replicators {
        r.terminate();
    }
    let key = CheckpointKey::new(Route::new(&from.name, &to.name), &topic, 1);
    let record = |entry| CheckpointRecord {
        key: key.clone(),
        timestamp_ms: 0,
        entry,
    };
    write_checkpoint_record(
        &to.aggregate,
        &checkpoints,
        &record(CheckpointEntry::Checkpoint(OffsetCheckpoint::new(
            1_000_000, 0,
        ))),
    )?;

    let plan_file = std::env::temp_dir().join(format!("{group}.plan.json"));
    let command = || sync_command(from, to, sources, &group, &topic, "identity", &checkpoints);
    let refusal = run_final(command(), &plan_file)
        .err()
        .ok_or("--once --final succeeded with a contradicted partition")?;
    assert!(
        refusal.contains(&format!("{topic}/1")) && refusal.contains("contradict"),
        "the error names the partition: {refusal}"
    );
    assert!(
        !plan_file.exists(),
        "no plan for a refused final translation"
    );
    let after = committed(&to.aggregate, &group, &topic, PARTITIONS);
    assert!(
        !after.contains_key(&1),
        "the contradicted partition is not committed: {after:?}"
    );
    assert!(
        after.contains_key(&0) && after.contains_key(&2),
        "the others are: {after:?}"
    );

    // A restart origin for the route: the partition is translated again, conservatively.
    write_checkpoint_record(
        &to.aggregate,
        &checkpoints,
        &record(CheckpointEntry::Origin(RouteOrigin::new(0, 0))),
    )?;
    let plan: TranslationPlan = serde_json::from_str(&run_final(command(), &plan_file)?)?;
    assert_eq!(plan.contradicted().count(), 0);
    let resumed = plan.resume_offsets();
    let p1 = resumed
        .iter()
        .find(|(p, _)| p.partition == 1)
        .map(|(_, offset)| *offset as i64)
        .ok_or("partition 1 resumed")?;
    assert_eq!(
        committed(&to.aggregate, &group, &topic, PARTITIONS).get(&1),
        Some(&p1)
    );
    let _ = std::fs::remove_file(&plan_file);
    Ok(())
}

/// A third region's two Kafka clusters, started with the stack's kafka.sh under a private
/// state directory and stopped (and removed) on drop.
struct ExtraRegion {
    region: Region,
    state_dir: std::path::PathBuf,
    names: [String; 2],
}

impl ExtraRegion {
    fn start(name: &str, regional_port: u16, aggregate_port: u16) -> Result<Self, String> {
        let state_dir = std::env::temp_dir().join(unique("tributary-cs-state"));
        let names = [
            format!("cs-{name}-regional"),
            format!("cs-{name}-aggregate"),
        ];
        let script = format!(
            "source {kafka_sh} && {{ kafka_up {r} {rp} & r=$!; kafka_up {a} {ap} & a=$!; wait $r && wait $a; }}",
            kafka_sh = tributary_e2e::repo_path("e2e/stack/kafka.sh").display(),
            r = names[0],
            rp = regional_port,
            a = names[1],
            ap = aggregate_port,
        );
        let extra = Self {
            region: Region {
                name: name.to_owned(),
                regional: format!("127.0.0.1:{regional_port}"),
                aggregate: format!("127.0.0.1:{aggregate_port}"),
            },
            state_dir,
            names,
        };
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("TRIBUTARY_STATE_DIR", &extra.state_dir)
            .output()
            .map_err(|e| format!("running kafka.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "starting {name}'s Kafka clusters failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(extra)
    }
}

impl Drop for ExtraRegion {
    fn drop(&mut self) {
        let script = format!(
            "source {} && kafka_stop {} ; kafka_stop {}",
            tributary_e2e::repo_path("e2e/stack/kafka.sh").display(),
            self.names[0],
            self.names[1]
        );
        let _ = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("TRIBUTARY_STATE_DIR", &self.state_dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

#[test]
fn three_regions_failover_sees_every_record_and_dedupes_to_zero() -> TestResult {
    let _serial = serial();
    let Some(mut regions) = stack_regions() else {
        return Ok(());
    };
    regions.truncate(2);
    let base: u16 = std::env::var("TRIBUTARY_CS_CENTRAL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(29492);
    let central = ExtraRegion::start("central", base, base + 2)?;
    regions.push(central.region.clone());
    // A = central (the region the stack did not start), B = east: both directions of
    // translation involve a source whose routes run in the other regions.
    let order = vec![regions[2].clone(), regions[0].clone(), regions[1].clone()];
    let result = failover_story(&order, "identity", "three_regions");
    drop(central);
    result
}
