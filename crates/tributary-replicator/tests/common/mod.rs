//! Helpers for the replicator's tests on real Kafka: cluster addresses from the stack's env
//! file, unique names, a replicator child process, and plain produce/read helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tributary_kafka::{ClientSettings, KafkaAdmin, TopicSpec};

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use tributary_e2e::blocking::{free_port, http_get, runtime, unique, wait_for};
#[allow(unused_imports)]
pub use tributary_e2e::kafka::producer;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `KEY=value` exports of the stack's env file (`$TRIBUTARY_STATE_DIR/env`, else this
/// checkout's `e2e/.state/env`), so the tests also run by hand with plain `cargo test`.
fn env_file_vars() -> BTreeMap<String, String> {
    let state = std::env::var("TRIBUTARY_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e/.state")
        });
    let Ok(text) = std::fs::read_to_string(state.join("env")) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// Bootstrap servers of `<REGION>`'s regional or aggregate cluster, from the env the stack
/// writes (`e2e/.state/env`: `TRIBUTARY_KAFKA_<REGION>_{REGIONAL,AGGREGATE}`).
pub fn cluster(region: &str, role: &str) -> Option<String> {
    let key = format!(
        "TRIBUTARY_KAFKA_{}_{}",
        region.to_uppercase(),
        role.to_uppercase()
    );
    std::env::var(&key)
        .ok()
        .or_else(|| env_file_vars().remove(&key))
        .filter(|v| !v.is_empty())
}

/// East regional, west aggregate, east aggregate. As everywhere in this repository
/// (`tributary_e2e::Stack::connect`): `None` (and a loud SKIPPED) only when
/// `TRIBUTARY_SKIP_E2E=1` (`make unit-test`); a missing stack otherwise fails the test,
/// because a test that did not run must not pass.
pub fn stack(test: &str) -> Option<(String, String, String)> {
    if std::env::var("TRIBUTARY_SKIP_E2E").is_ok_and(|v| v == "1") {
        eprintln!(
            "\n*** SKIPPED {test}: TRIBUTARY_SKIP_E2E=1 (this test needs the local stack: make stack-up)\n"
        );
        return None;
    }
    match (
        cluster("east", "regional"),
        cluster("west", "aggregate"),
        cluster("east", "aggregate"),
    ) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => panic!(
            "{test} needs the local stack, but TRIBUTARY_KAFKA_EAST_REGIONAL / _WEST_AGGREGATE / \
             _EAST_AGGREGATE are not set and no stack env file was found: run `make stack-up` \
             and `source e2e/.state/env` (or set TRIBUTARY_STATE_DIR), or set \
             TRIBUTARY_SKIP_E2E=1 to skip the tests that need it"
        ),
    }
}

pub fn admin(bootstrap: &str) -> KafkaAdmin {
    KafkaAdmin::new(&ClientSettings::plaintext(bootstrap, bootstrap))
        .unwrap_or_else(|e| panic!("admin for {bootstrap}: {e}"))
}

pub fn create_topic(bootstrap: &str, topic: &str, partitions: usize) {
    let rt = runtime();
    rt.block_on(admin(bootstrap).create_topic(&TopicSpec {
        name: topic.to_owned(),
        partitions,
        replication_factor: None,
        configs: vec![],
    }))
    .unwrap_or_else(|e| panic!("creating {topic}: {e}"));
}

/// Produces `count` records to `topic`/`partition` (key `k<i>`, value `<tag>-<i>` padded to
/// `size` bytes, one app header), at most `rate` records/s (0: unlimited).
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    tag: &str,
    count: usize,
    size: usize,
    rate: usize,
) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    for i in 0..count {
        let key = format!("k{i}");
        let mut value = format!("{tag}-{i}");
        if value.len() < size {
            value.push_str(&".".repeat(size - value.len()));
        }
        let headers = OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "app",
            value: Some(tag.as_bytes()),
        });
        let mut record = BaseRecord::to(topic)
            .partition(partition)
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
        if rate > 0 && i % 100 == 0 {
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

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn source_offset(&self) -> Option<i64> {
        self.header("tributary.source.offset")?.parse().ok()
    }
}

/// Every record of every partition of `topic` up to the current end (the last stable
/// offset for `read_committed`), per partition in offset order.
pub fn read_all(bootstrap: &str, topic: &str, read_committed: bool) -> BTreeMap<i32, Vec<Read>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("enable.partition.eof", "true")
        .create()
        .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    consumer
        .assign(&list)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let mut out: BTreeMap<i32, Vec<Read>> = partitions.iter().map(|p| (*p, vec![])).collect();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.entry(m.partition()).or_default().push(Read {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
                at_end.remove(&m.partition());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// End offsets of all partitions of `topic` (empty if the topic does not exist yet);
/// transient errors of a busy stack are retried.
pub fn end_offsets(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let rt = runtime();
    let admin = admin(bootstrap);
    let mut last_error = None;
    for _ in 0..5 {
        match rt.block_on(admin.partition_offsets(topic, &[])) {
            Ok(offsets) => return offsets.into_iter().map(|o| (o.partition, o.end)).collect(),
            Err(tributary_kafka::KafkaError::TopicMissing { .. }) => return BTreeMap::new(),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("end offsets of {topic} on {bootstrap}: {last_error:?}");
    BTreeMap::new()
}

/// A `tributary-replicate` child process; its stderr is kept for assertions.
pub struct Replicator {
    pub child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

pub struct RouteSpec<'a> {
    pub route: &'a str,
    pub source_region: &'a str,
    pub dest_region: &'a str,
    pub source: &'a str,
    pub dest: &'a str,
    pub topics: &'a str,
    pub naming: &'a str,
    pub delivery: &'a str,
    pub checkpoint_topic: &'a str,
    /// `--workers`: partition sets copied in parallel.
    pub workers: usize,
}

impl Replicator {
    pub fn start(spec: &RouteSpec<'_>) -> Self {
        Self::start_with(spec, &[])
    }

    /// [`Replicator::start`] with more flags (applied after the spec's).
    pub fn start_with(spec: &RouteSpec<'_>, extra: &[&str]) -> Self {
        Self::start_with_env(spec, extra, &[])
    }

    /// [`Replicator::start_with`] with environment variables for the child (e.g.
    /// `TRIBUTARY_TEST_FAULT`).
    pub fn start_with_env(spec: &RouteSpec<'_>, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tributary-replicate"))
            .args([
                "--route",
                spec.route,
                "--source-region",
                spec.source_region,
                "--dest-region",
                spec.dest_region,
                "--source-bootstrap",
                spec.source,
                "--dest-bootstrap",
                spec.dest,
                "--topics",
                spec.topics,
                "--topic-naming",
                spec.naming,
                "--delivery",
                spec.delivery,
                "--checkpoint-topic",
                spec.checkpoint_topic,
                "--checkpoint-interval",
                "500ms",
                "--workers",
                &spec.workers.to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tributary-replicate: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if std::env::var_os("TRIBUTARY_TEST_VERBOSE").is_some() {
                        eprintln!("[replicator] {line}");
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        Self { child, port, log }
    }

    /// SIGSTOP: the process is alive but does nothing (a zombie-to-be: a long GC pause, a
    /// frozen node).
    pub fn pause(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    pub fn kill9(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit (up to 30 s, then SIGKILL and `false`).
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The value of an unlabelled-or-labelled metric line starting with `prefix`, summed.
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

impl Drop for Replicator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether `GET path` answers 200, and the response.
pub fn http_ok(port: u16, path: &str) -> (bool, String) {
    match http_get(port, path) {
        Ok(response) => (response.starts_with("HTTP/1.1 200"), response),
        Err(e) => (false, e.to_string()),
    }
}

/// Decoded checkpoint-topic records of `topic` (all routes).
pub fn read_checkpoints(bootstrap: &str, topic: &str) -> Vec<tributary_core::CheckpointRecord> {
    read_all(bootstrap, topic, false)
        .into_values()
        .flatten()
        .filter_map(|r| {
            tributary_core::checkpoint::decode(
                r.key.as_deref().unwrap_or_default(),
                r.value.as_deref().unwrap_or_default(),
            )
            .ok()
        })
        .collect()
}

/// A single-node Kafka cluster of the test's own (`e2e/stack/kafka.sh`, data under a temp
/// dir), for tests that must stop a destination without touching the shared stack.
/// Dropped: killed and its data removed.
pub struct ThrowawayBroker {
    pub bootstrap: String,
    pid: String,
    state: std::path::PathBuf,
}

impl ThrowawayBroker {
    pub fn start(name: &str) -> Self {
        Self::start_with(name, "")
    }

    /// [`ThrowawayBroker::start`] with extra `server.properties` lines (they win over the
    /// stack's).
    pub fn start_with(name: &str, extra_properties: &str) -> Self {
        let state = std::env::temp_dir().join(unique("tributary-test-broker"));
        // kafka.sh uses PORT and PORT + 1 (controller).
        let port = (0..50)
            .map(|_| free_port())
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok())
            .unwrap_or_else(|| panic!("no two free adjacent ports"));
        let script =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e/stack/kafka.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["kafka_up", name, &port.to_string()])
            .env("TRIBUTARY_STATE_DIR", &state)
            // Never build the shared class-data archive from a test.
            .env("KAFKA_CDS", "0")
            .env("KAFKA_HEAP_OPTS", "-Xms64m -Xmx384m")
            .env("KAFKA_EXTRA_PROPS", extra_properties)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        let pid = std::fs::read_to_string(state.join(format!("pids/kafka-{name}.pid")))
            .map(|p| p.trim().to_owned())
            .unwrap_or_default();
        let broker = Self {
            bootstrap: format!("127.0.0.1:{port}"),
            pid,
            state,
        };
        assert!(
            out.status.success() && !broker.pid.is_empty(),
            "starting a throwaway broker on port {port} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        broker
    }

    fn signal(&self, signal: &str) {
        if !self.pid.is_empty() {
            let _ = Command::new("kill").args([signal, &self.pid]).status();
        }
    }

    /// SIGSTOP: connections stay open and new ones are accepted by the kernel, but the
    /// broker never answers — a destination that hangs.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for ThrowawayBroker {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.signal("-KILL");
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The committed offsets of consumer group `group` for `topic`'s `partitions`.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer for {bootstrap}: {e}"));
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect()
}
