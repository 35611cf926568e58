//! Helpers for checkpoint-sync's end-to-end tests on real Kafka: the stack's clusters, real
//! `tributary replicate` processes for every route, a `checkpoint-sync` child process,
//! producers, a consumer group in the active region, and reads of the standby region.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_core::dedupe::parse_provenance;
use tributary_core::{Deduper, Provenance};

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use tributary_e2e::blocking::{
    free_port, http_get, runtime, unique, wait_for, wait_for_or_show,
};
#[allow(unused_imports)]
pub use tributary_e2e::kafka::producer;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One region's two clusters.
#[derive(Clone, Debug)]
pub struct Region {
    pub name: String,
    pub regional: String,
    pub aggregate: String,
}

/// Serialises this binary's stack tests: each runs up to nine replicators, and `cargo test`
/// would otherwise run them all at once on the stack's two shared cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stack's regions (`None` and a loud SKIPPED when `TRIBUTARY_SKIP_E2E=1`).
pub fn stack_regions() -> Option<Vec<Region>> {
    let rt = runtime();
    let stack = rt.block_on(tributary_e2e::Stack::connect())?;
    Some(
        stack
            .regions
            .iter()
            .map(|r| Region {
                name: r.clone(),
                regional: stack.bootstrap(r, tributary_e2e::Role::Regional).to_owned(),
                aggregate: stack
                    .bootstrap(r, tributary_e2e::Role::Aggregate)
                    .to_owned(),
            })
            .collect(),
    )
}

/// The `tributary` binary with `replicate` (the stack's `TRIBUTARY_BIN`, else target/debug).
pub fn tributary_bin() -> PathBuf {
    let from_env = std::env::var("TRIBUTARY_BIN").ok().map(PathBuf::from);
    from_env
        .filter(|p| p.exists())
        .unwrap_or_else(|| tributary_e2e::repo_path("target/debug/tributary"))
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    runtime().block_on(tributary_e2e::kafka::create_topic(
        bootstrap, topic, partitions,
    ));
}

/// A child process whose stderr is kept (and echoed with TRIBUTARY_TEST_VERBOSE).
pub struct Process {
    pub name: String,
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, port: u16) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        for (pipe, sink, echo) in [
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                log.clone(),
                true,
            ),
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                stdout.clone(),
                false,
            ),
        ] {
            let Some(pipe) = pipe else { continue };
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if echo && std::env::var_os("TRIBUTARY_TEST_VERBOSE").is_some() {
                        eprintln!("[{name}] {line}");
                    }
                    if let Ok(mut sink) = sink.lock() {
                        sink.push_str(&line);
                        sink.push('\n');
                    }
                }
            });
        }
        Self {
            name: name.to_owned(),
            child,
            port,
            log,
            stdout,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then wait (SIGKILL after 20 s). Returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(Duration::from_secs(20)).unwrap_or(false)
    }

    /// Waits for the process to exit: `Some(success)`, or `None` (killed) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Sum of the metric lines starting with `prefix` on its /metrics.
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        let Ok(body) = http_get(self.port, "/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tributary replicate` for route `source → dest`.
pub fn start_replicator(
    source: &Region,
    dest: &Region,
    topic: &str,
    naming: &str,
    checkpoint_topic: &str,
) -> Process {
    let port = free_port();
    let mut command = Command::new(tributary_bin());
    command.args([
        "replicate",
        "--route",
        &unique(&format!("{}-{}", source.name, dest.name)),
        "--source-region",
        &source.name,
        "--dest-region",
        &dest.name,
        "--source-bootstrap",
        &source.regional,
        "--dest-bootstrap",
        &dest.aggregate,
        "--topics",
        topic,
        "--topic-naming",
        naming,
        "--delivery",
        "at-least-once",
        "--checkpoint-topic",
        checkpoint_topic,
        "--checkpoint-interval",
        "500ms",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    Process::spawn(
        &format!("replicate {}→{}", source.name, dest.name),
        command,
        port,
    )
}

/// The checkpoint-sync binary of this crate with the connection flags of `from → to`.
pub fn sync_command(
    from: &Region,
    to: &Region,
    sources: &[Region],
    group: &str,
    topics: &str,
    naming: &str,
    checkpoint_topic: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tributary-checkpoint-sync"));
    let sources: Vec<&str> = sources.iter().map(|r| r.name.as_str()).collect();
    command.args([
        "--group",
        group,
        "--topics",
        topics,
        "--topic-naming",
        naming,
        "--from-region",
        &from.name,
        "--to-region",
        &to.name,
        "--from-bootstrap",
        &from.aggregate,
        "--to-bootstrap",
        &to.aggregate,
        "--checkpoint-topic",
        checkpoint_topic,
        "--sources",
        &sources.join(","),
    ]);
    command
}

/// Starts a standby sync (every 500 ms) serving /metrics on a free port.
pub fn start_standby_sync(mut command: Command, epoch_file: &Path) -> Process {
    let port = free_port();
    command.args([
        "--interval",
        "500ms",
        "--epoch",
        "1",
        "--epoch-file",
        &epoch_file.display().to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    Process::spawn("checkpoint-sync", command, port)
}

/// Runs `--once --final`, returning the plan it printed (and wrote to `plan_file`).
pub fn run_final(mut command: Command, plan_file: &Path) -> Result<String, String> {
    let output = command
        .args(["--once", "--final", "--plan-file"])
        .arg(plan_file)
        .output()
        .map_err(|e| format!("spawning checkpoint-sync --once --final: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Produces `count` records `<tag>-<i>` round-robin over `partitions`, at about `rate`/s.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    tag: &str,
    count: usize,
    rate: usize,
) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    for i in 0..count {
        let value = format!("{tag}-{i}");
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic)
            .partition((i % partitions as usize) as i32)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(2));
                    record = back;
                }
            }
        }
        if rate > 0 && i % 20 == 0 {
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

/// A consumed record: its value and its provenance.
#[derive(Clone, Debug)]
pub struct Seen {
    pub value: String,
    pub provenance: Option<Provenance>,
}

fn seen(m: &rdkafka::message::BorrowedMessage<'_>) -> Seen {
    let provenance = m.headers().and_then(|h| {
        parse_provenance(h.iter().map(|h| (h.key, h.value.unwrap_or_default())))
            .ok()
            .flatten()
    });
    Seen {
        value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        provenance,
    }
}

/// The group consuming in the active region: subscribes, processes records, and commits
/// exactly what it processed (every `commit_every` records, and at the end), until
/// `stop_after` records were processed. Returns what it processed.
pub fn consume_and_commit(
    bootstrap: &str,
    topics: &[&str],
    group: &str,
    stop_after: usize,
    commit_every: usize,
    timeout: Duration,
) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        // Small fetches interleave the partitions, so the group stops mid-way in each.
        .set("max.partition.fetch.bytes", "1024")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    consumer
        .subscribe(topics)
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let commit = |next: &BTreeMap<(String, i32), i64>| {
        if next.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, p), o) in next {
            list.add_partition_offset(topic, *p, Offset::Offset(*o))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        consumer
            .commit(&list, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("commit in the active region: {e}"));
    };
    while out.len() < stop_after && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(seen(&m));
                next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                if out.len() % commit_every == 0 {
                    commit(&next);
                }
            }
            Some(Err(e)) => panic!("consuming in the active region: {e}"),
            None => {}
        }
    }
    commit(&next);
    consumer.unsubscribe();
    drop(consumer);
    out
}

/// Committed offsets of `group` on `topic` (partitions `0..partitions`) in a cluster.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    // The group coordinator may move or still be loading on a busy broker: asked again.
    let list = tributary_kafka::group::committed_offsets(&consumer, &list, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("committed offsets of {group} on {bootstrap}: {e}"));
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Commits `offsets` for `group` (a non-member commit, as an admin would).
pub fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut list = TopicPartitionList::new();
    for (p, o) in offsets {
        list.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("committing for {group}: {e}"));
}

/// End offsets of `topic`'s partitions.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or((0, 0));
            (p, high)
        })
        .collect()
}

/// Resumes the group in the standby region as a consumer would: from its committed offsets
/// there (earliest where none), reading every partition to its end.
pub fn resume_and_read_all(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Seen> {
    let starts = committed(bootstrap, group, topic, partitions);
    let ends = end_offsets(bootstrap, topic, partitions);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("resume-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut list = TopicPartitionList::new();
    let mut pending = BTreeSet::new();
    for p in 0..partitions {
        let start = starts.get(&p).copied();
        list.add_partition_offset(topic, p, start.map_or(Offset::Beginning, Offset::Offset))
            .unwrap_or_else(|e| panic!("{e}"));
        if start.unwrap_or(0) < ends[&p] {
            pending.insert(p);
        }
    }
    consumer
        .assign(&list)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while !pending.is_empty() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap_or_else(|e| panic!("reading the standby: {e}"));
            out.push(seen(&m));
            if m.offset() + 1 >= ends[&m.partition()] {
                pending.remove(&m.partition());
            }
        }
    }
    assert!(
        pending.is_empty(),
        "could not read partitions {pending:?} of the standby to their end"
    );
    out
}

/// Counts after a failover: what the group processed in A and B, against what was produced.
#[derive(Debug)]
pub struct FailoverCounts {
    pub produced: usize,
    pub missing: Vec<String>,
    pub duplicates: usize,
    pub duplicates_after_dedupe: usize,
    /// Produced records neither processed in A nor let through by the deduper in B.
    pub missing_after_dedupe: Vec<String>,
}

pub fn count_failover(
    produced: &BTreeSet<String>,
    in_active: &[Seen],
    in_standby: &[Seen],
    deduper: &Deduper,
) -> FailoverCounts {
    let active: BTreeSet<&str> = in_active.iter().map(|s| s.value.as_str()).collect();
    let standby: BTreeSet<&str> = in_standby.iter().map(|s| s.value.as_str()).collect();
    let missing = produced
        .iter()
        .filter(|v| !active.contains(v.as_str()) && !standby.contains(v.as_str()))
        .cloned()
        .collect();
    let duplicates = in_standby
        .iter()
        .filter(|s| active.contains(s.value.as_str()))
        .count();
    let duplicates_after_dedupe = in_standby
        .iter()
        .filter(|s| {
            s.provenance
                .as_ref()
                .is_none_or(|p| deduper.should_process(p))
        })
        .filter(|s| active.contains(s.value.as_str()))
        .count();
    let passed: BTreeSet<&str> = in_standby
        .iter()
        .filter(|s| {
            s.provenance
                .as_ref()
                .is_none_or(|p| deduper.should_process(p))
        })
        .map(|s| s.value.as_str())
        .collect();
    let missing_after_dedupe = produced
        .iter()
        .filter(|v| !active.contains(v.as_str()) && !passed.contains(v.as_str()))
        .cloned()
        .collect();
    FailoverCounts {
        missing_after_dedupe,
        produced: produced.len(),
        missing,
        duplicates,
        duplicates_after_dedupe,
    }
}

/// [`committed`] over several topics, keyed by (topic, partition).
pub fn committed_all(
    bootstrap: &str,
    group: &str,
    topics: &[String],
    partitions: i32,
) -> BTreeMap<(String, i32), i64> {
    topics
        .iter()
        .flat_map(|t| {
            committed(bootstrap, group, t, partitions)
                .into_iter()
                .map(move |(p, o)| ((t.clone(), p), o))
        })
        .collect()
}

/// Records in `topics` (sum of end offsets).
pub fn total_records(bootstrap: &str, topics: &[String], partitions: i32) -> i64 {
    topics
        .iter()
        .map(|t| end_offsets(bootstrap, t, partitions).values().sum::<i64>())
        .sum()
}
