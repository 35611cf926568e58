//! Prometheus metrics of one route. Labels are bounded: the route's source topics and
//! their partitions, and static error categories.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

impl PartitionLabels {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partition: partition.to_string(),
        }
    }
}

/// A `--topics` entry (bounded by the route's flags).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub records_copied: Family<PartitionLabels, Counter>,
    pub bytes_copied: Family<PartitionLabels, Counter>,
    pub records_skipped_loop: Family<PartitionLabels, Counter>,
    pub lag_records: Family<PartitionLabels, Gauge>,
    pub lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    pub retention_gap_records: Family<PartitionLabels, Counter>,
    pub topic_missing: Family<TopicLabels, Gauge>,
    pub checkpoint_age_seconds: Gauge<f64, AtomicU64>,
    pub checkpoints_written: Counter,
    /// Checkpoint records the destination did not acknowledge (each also counts as an error
    /// of category `Checkpoint`).
    pub checkpoint_delivery_failures: Counter,
    pub transactions: Counter,
    pub errors: Family<CategoryLabels, Counter>,
    pub replication_latency_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary_replicator");
        let m = Self {
            records_copied: Family::default(),
            bytes_copied: Family::default(),
            records_skipped_loop: Family::default(),
            lag_records: Family::default(),
            lag_seconds: Family::default(),
            retention_gap_records: Family::default(),
            topic_missing: Family::default(),
            checkpoint_age_seconds: Gauge::default(),
            checkpoints_written: Counter::default(),
            checkpoint_delivery_failures: Counter::default(),
            transactions: Counter::default(),
            errors: Family::default(),
            replication_latency_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            registry: Registry::default(),
        };
        registry.register(
            "records_copied",
            "Records written to the destination and acknowledged",
            m.records_copied.clone(),
        );
        registry.register(
            "bytes_copied",
            "Key and value bytes written to the destination and acknowledged",
            m.bytes_copied.clone(),
        );
        registry.register(
            "records_skipped_loop",
            "Source records not copied because they are copies a route wrote into the source cluster (loops)",
            m.records_skipped_loop.clone(),
        );
        registry.register(
            "lag_records",
            "Source records not yet copied (source end offset - next offset to copy)",
            m.lag_records.clone(),
        );
        registry.register(
            "lag_seconds",
            "Age of the newest copied record's source timestamp while records are waiting",
            m.lag_seconds.clone(),
        );
        registry.register(
            "retention_gap_records",
            "Source records deleted by retention before they were copied",
            m.retention_gap_records.clone(),
        );
        registry.register(
            "topic_missing",
            "1 while a topic named in --topics does not exist in the source cluster (the others are copied)",
            m.topic_missing.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Seconds a checkpoint write has been owed: since the oldest one the destination has not acknowledged (failed writes stay owed until a later one is); 0 when every write was acknowledged, however idle the route",
            m.checkpoint_age_seconds.clone(),
        );
        registry.register(
            "checkpoint_delivery_failures",
            "Checkpoint records the destination did not acknowledge",
            m.checkpoint_delivery_failures.clone(),
        );
        registry.register(
            "checkpoints_written",
            "Checkpoint records written",
            m.checkpoints_written.clone(),
        );
        registry.register(
            "transactions",
            "Transactions committed (exactly-once)",
            m.transactions.clone(),
        );
        registry.register("errors", "Errors by category", m.errors.clone());
        registry.register(
            "replication_latency_seconds",
            "Destination acknowledgement time minus source record timestamp",
            m.replication_latency_seconds.clone(),
        );
        Self { registry, ..m }
    }

    pub fn error(&self, category: &'static str) {
        self.errors
            .get_or_create(&CategoryLabels { category })
            .inc();
    }

    pub fn encode(&self) -> String {
        tributary_runtime::encode_registry(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
