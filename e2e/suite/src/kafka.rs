//! Kafka helpers over rdkafka: create topics, produce, consume everything back.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord, ThreadedProducer};

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// An idempotent producer with room for a million queued records, for tests that produce
/// from plain threads (send, then `flush`).
pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap_or_else(|e| panic!("producer for {bootstrap}: {e}"))
}

/// Creates a topic (replication factor 1, as the stack's clusters have one broker).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        config(bootstrap).create().expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics answered");
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("creating topic {t} on {bootstrap}: {e}"),
        }
    }
}

/// Produces `(partition, key, value)` records and waits for every acknowledgement.
pub async fn produce(bootstrap: &str, topic: &str, records: &[(i32, String, String)]) {
    produce_acked(bootstrap, topic, records).await;
}

/// [`produce`], returning where each record landed, in order: `(partition, offset)`.
pub async fn produce_acked(
    bootstrap: &str,
    topic: &str,
    records: &[(i32, String, String)],
) -> Vec<(i32, i64)> {
    let producer: FutureProducer = config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends: Vec<_> = records
        .iter()
        .map(|(p, k, v)| {
            producer.send(
                FutureRecord::to(topic).partition(*p).key(k).payload(v),
                Duration::from_secs(30),
            )
        })
        .collect();
    futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|s| match s {
            Ok(delivery) => (delivery.partition, delivery.offset),
            Err((e, _)) => panic!("producing to {topic} on {bootstrap}: {e}"),
        })
        .collect()
}

/// Reads every partition of `topic` from the beginning until `expected` records arrived or
/// `timeout` passed; returns what was read, in arrival order per partition.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("e2e-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap_or_else(|e| panic!("consuming {topic} on {bootstrap}: {e}"));
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}

/// The sum of `topic`'s end offsets on `bootstrap` (`None` while the topic does not exist).
pub fn end_offset_total(bootstrap: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = config(bootstrap).create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len();
    if partitions == 0 {
        return None;
    }
    let mut total = 0;
    for p in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .ok()?;
        total += high;
    }
    Some(total)
}

/// A consumer that joins `group` on a cluster (subscribed to `topic`, committing nothing) and
/// stays a member, polling on its own thread, until dropped; dropping it leaves the group.
pub struct GroupMember {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupMember {
    pub fn join(bootstrap: &str, group: &str, topic: &str, client_id: &str) -> Self {
        let consumer: BaseConsumer = config(bootstrap)
            .set("group.id", group)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("consumer of {group} on {bootstrap}: {e}"));
        consumer
            .subscribe(&[topic])
            .unwrap_or_else(|e| panic!("subscribing {group} to {topic}: {e}"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                // Records and errors alike are ignored: only the membership matters.
                let _ = consumer.poll(Duration::from_millis(200));
            }
            consumer.unsubscribe();
        });
        GroupMember {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
