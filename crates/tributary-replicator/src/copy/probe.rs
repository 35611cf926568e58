//! End-offset reads on their own thread (floors, source ends, visibility checks).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tributary_kafka::{ClientSettings, KafkaError, classify};

use super::REQUEST_TIMEOUT;
use super::clients::LoggingContext;

pub(super) struct FloorRequest {
    pub(super) slot: usize,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) produced: u64,
    /// Also read from this offset: is a record there for a reader?
    pub(super) confirm_from: Option<i64>,
}

pub(super) struct FloorResult {
    pub(super) slot: usize,
    pub(super) produced: u64,
    pub(super) end: i64,
    /// With `confirm_from`: whether a record was read there.
    pub(super) visible: Option<bool>,
}

/// Reads destination end offsets on its own thread, so a slow cluster never stalls the copy
/// loop: one batched request (ListOffsets, latest) for every idle partition of an interval,
/// and no new batch while one is unanswered — however many partitions, however slow the
/// cluster, at most one batch is queued.
pub(super) struct FloorProbe {
    pub(super) requests: std::sync::mpsc::Sender<Vec<FloorRequest>>,
    pub(super) results: std::sync::mpsc::Receiver<Vec<FloorResult>>,
    pub(super) in_flight: bool,
}

impl FloorProbe {
    /// An end-offset reader of `cluster`: its log end offsets, or with `reader_group` its
    /// last stable offsets (what a `read_committed` consumer can reach), and it reads
    /// records for `confirm_from` (librdkafka serves fetched records only to a consumer
    /// with a group id; this one never joins the group nor commits to it).
    pub(super) fn start(
        cluster: &ClientSettings,
        reader_group: Option<&str>,
    ) -> Result<Self, KafkaError> {
        let mut config = cluster.client_config()?;
        config.set("enable.auto.commit", "false").set(
            "isolation.level",
            if reader_group.is_some() {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
        if let Some(group) = reader_group {
            config.set("group.id", group);
        }
        let client: BaseConsumer<LoggingContext> = config
            .create_with_context(LoggingContext::new(&cluster.name))
            .map_err(|e| classify(&cluster.name, "creating the offset reader", None, e))?;
        let (requests, inbox) = std::sync::mpsc::channel::<Vec<FloorRequest>>();
        let (outbox, results) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("floor-probe".into())
            .spawn(move || {
                // Ends when the session drops its sender.
                while let Ok(batch) = inbox.recv() {
                    let ends = end_offsets(&client, &batch);
                    let visible = visible_records(&client, &batch);
                    let answer = batch
                        .iter()
                        .map(|request| FloorResult {
                            slot: request.slot,
                            produced: request.produced,
                            end: ends
                                .get(&(request.topic.as_str(), request.partition))
                                .copied()
                                .unwrap_or(-1),
                            visible: request.confirm_from.map(|_| {
                                visible.contains(&(request.topic.as_str(), request.partition))
                            }),
                        })
                        .collect();
                    if outbox.send(answer).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| KafkaError::Config {
                cluster: cluster.name.clone(),
                detail: format!("cannot start the offset reader thread: {e}"),
            })?;
        Ok(Self {
            requests,
            results,
            in_flight: false,
        })
    }

    /// Asks for the end offsets of `batch`, unless the previous batch is unanswered (its
    /// answer is as good: the partitions are asked again next interval).
    pub(super) fn ask(&mut self, batch: Vec<FloorRequest>) {
        if batch.is_empty() || self.in_flight {
            return;
        }
        self.in_flight = self.requests.send(batch).is_ok();
    }

    pub(super) fn answered(&mut self) -> Option<Vec<FloorResult>> {
        let answer = self.results.try_recv().ok()?;
        self.in_flight = false;
        Some(answer)
    }
}

/// The requested partitions (those with `confirm_from`) in which `client` reads a record at
/// or after `confirm_from` within a few seconds: whether records below the end offset are
/// really there for a reader (not only transaction markers or aborted records).
pub(super) fn visible_records<'a>(
    client: &BaseConsumer<LoggingContext>,
    batch: &'a [FloorRequest],
) -> std::collections::HashSet<(&'a str, i32)> {
    let mut seen = std::collections::HashSet::new();
    let mut list = TopicPartitionList::new();
    for request in batch {
        if let Some(from) = request.confirm_from
            && list
                .add_partition_offset(&request.topic, request.partition, Offset::Offset(from))
                .is_err()
        {
            return seen;
        }
    }
    if list.count() == 0 || client.assign(&list).is_err() {
        return seen;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < list.count() && Instant::now() < deadline {
        if let Some(Ok(message)) = client.poll(Duration::from_millis(200))
            && let Some(request) = batch
                .iter()
                .find(|r| r.topic == message.topic() && r.partition == message.partition())
        {
            seen.insert((request.topic.as_str(), request.partition));
        }
    }
    let _ = client.unassign();
    seen
}

/// End offsets of the requested partitions in one ListOffsets round (librdkafka's
/// offsets-for-times with the "latest" timestamp); an empty map when the cluster does not
/// answer (no floor is written then).
pub(super) fn end_offsets<'a>(
    client: &BaseConsumer<LoggingContext>,
    batch: &'a [FloorRequest],
) -> HashMap<(&'a str, i32), i64> {
    let mut list = TopicPartitionList::new();
    for request in batch {
        if list
            .add_partition_offset(&request.topic, request.partition, Offset::End)
            .is_err()
        {
            return HashMap::new();
        }
    }
    let Ok(answer) = client.offsets_for_times(list, REQUEST_TIMEOUT) else {
        return HashMap::new();
    };
    let mut ends = HashMap::new();
    for request in batch {
        let end = answer
            .find_partition(&request.topic, request.partition)
            .filter(|e| e.error().is_ok())
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        if let Some(end) = end {
            ends.insert((request.topic.as_str(), request.partition), end);
        }
    }
    ends
}
