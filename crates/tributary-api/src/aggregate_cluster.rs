//! `AggregateCluster`: one region's aggregate Kafka cluster, which receives every selected
//! region's streams through one replicator Deployment per route.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{DNS1123_LABEL, DURATION, KafkaConnection, TOPIC_NAME};

/// One region's aggregate cluster: consumers read here. The operator creates the aggregate
/// topics (partition `p` of a source lands in partition `p`), the checkpoint topic, and one
/// replicator Deployment per selected RegionalStream (route), so that losing one source region
/// stalls only its own route.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "AggregateCluster",
    namespaced,
    status = "AggregateClusterStatus",
    shortname = "agg",
    shortname = "aggc",
    category = "tributary",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Naming","type":"string","priority":1,"jsonPath":".spec.topicNaming"}"#,
    printcolumn = r#"{"name":"Delivery","type":"string","priority":1,"jsonPath":".spec.replicator.delivery"}"#,
    printcolumn = r#"{"name":"Routes","type":"string","description":"Routes ready / routes","jsonPath":".status.routesReady"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","description":"Largest route lag in records","jsonPath":".status.maxLagRecords"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AggregateClusterSpec {
    /// The region this aggregate cluster serves (a DNS-1123 label). Replicator pods are
    /// scheduled into this region (`topology.kubernetes.io/region`). Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("region is immutable"))]
    pub region: String,

    /// Connection to the region's aggregate Kafka cluster.
    pub kafka: KafkaConnection,

    /// Which RegionalStreams (in this namespace) to aggregate, by label. Empty or absent
    /// selects all of them, this region's own included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<LabelSelector>,

    /// How aggregate topics are named: `Identity` keeps the source name so every region's
    /// records of a topic merge into one topic (Uber's layout); `Prefixed` names them
    /// `<region>.<topic>`, one source per topic.
    #[serde(default)]
    pub topic_naming: TopicNaming,

    /// How the replicators of this cluster's routes run.
    #[serde(default)]
    pub replicator: ReplicatorSpec,

    /// Where and how often replicators record exactly where each source offset landed.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
}

/// Naming of aggregate topics.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum TopicNaming {
    /// Same name as the source topic; all regions merged.
    #[default]
    Identity,
    /// `<source region>.<source topic>`.
    Prefixed,
}

/// Replicator Deployment settings, applied to every route into this cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatorSpec {
    /// Replicas per route Deployment: `1` runs every route into this cluster, `0` pauses
    /// them. More are refused until replicas share a route's partitions: each replica would
    /// copy every partition (duplicates in the aggregate, competing commits).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    #[x_kube(validation = kube::core::Rule::new("self <= 1")
        .message("must be 0 or 1: every replica of a route copies every partition, so more would duplicate records and compete for commits"))]
    pub replicas: i32,

    /// Compute resources of each replicator container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::resources_schema")]
    pub resources: Option<ResourceRequirements>,

    /// Image override for the replicator (default: the operator's own image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Producer batching towards the aggregate cluster.
    #[serde(default)]
    pub batching: BatchingSpec,

    /// `AtLeastOnce`: idempotent producer, the source position is committed after the
    /// aggregate acknowledged. `ExactlyOnce`: data and source position are written in one
    /// transaction on the aggregate cluster.
    #[serde(default)]
    pub delivery: Delivery,
}

impl Default for ReplicatorSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            resources: None,
            image: None,
            batching: BatchingSpec::default(),
            delivery: Delivery::default(),
        }
    }
}

fn default_replicas() -> i32 {
    1
}

/// Delivery guarantee of a route.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Delivery {
    /// No loss; a crash may repeat records.
    #[default]
    AtLeastOnce,
    /// No loss and, for `read_committed` consumers, no repeats.
    ExactlyOnce,
}

/// Producer batching and compression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchingSpec {
    /// How long the producer waits to fill a batch, in milliseconds.
    #[serde(default = "default_linger_ms")]
    #[schemars(range(min = 0, max = 10000))]
    pub linger_ms: i32,
    /// Largest batch in bytes.
    #[serde(default = "default_batch_bytes")]
    #[schemars(range(min = 1024, max = 16777216))]
    pub batch_bytes: i32,
    /// Compression of batches written to the aggregate cluster.
    #[serde(default)]
    pub compression: Compression,
}

impl Default for BatchingSpec {
    fn default() -> Self {
        Self {
            linger_ms: default_linger_ms(),
            batch_bytes: default_batch_bytes(),
            compression: Compression::default(),
        }
    }
}

fn default_linger_ms() -> i32 {
    5
}
fn default_batch_bytes() -> i32 {
    1_048_576
}

/// Batch compression codec.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (fast, the default).
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

/// Checkpoint settings of the routes into this cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// How often a replicator writes checkpoints (Go duration, 100ms to 5m). Shorter means
    /// fewer duplicates after a failover where the mapping is not known record by record.
    #[serde(default = "default_checkpoint_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('5m')")
        .message("checkpoint interval must be between 100ms and 5m"))]
    pub interval: String,

    /// The checkpoint topic on this aggregate cluster.
    #[serde(default = "default_checkpoint_topic")]
    #[schemars(length(min = 1, max = 249), regex(pattern = TOPIC_NAME))]
    #[x_kube(validation = kube::core::Rule::new("self != '.' && self != '..'").message("topic name must not be '.' or '..'"))]
    pub topic: String,

    /// How long checkpoints are kept (Go duration, 1h to 8760h). Keep it at least as long as
    /// the aggregated data: a group can only be translated while its position is covered.
    #[serde(default = "default_checkpoint_retention")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1h') && duration(self) <= duration('8760h')")
        .message("checkpoint retention must be between 1h and 8760h"))]
    pub retention: String,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: default_checkpoint_interval(),
            topic: default_checkpoint_topic(),
            retention: default_checkpoint_retention(),
        }
    }
}

fn default_checkpoint_interval() -> String {
    "1s".into()
}
fn default_checkpoint_topic() -> String {
    "tributary.checkpoints".into()
}
fn default_checkpoint_retention() -> String {
    "168h".into()
}

/// Observed state of an AggregateCluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregateClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Degraded`, with reasons such as `ClusterUnreachable`, `RouteDegraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// `ready/total` routes, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_ready: Option<String>,

    /// The largest lag in records over all routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_records: Option<i64>,

    /// One entry per route into this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
}

/// Observed state of one route (source RegionalStream → this cluster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The source RegionalStream's name.
    pub source: String,
    /// The source region.
    pub source_region: String,
    /// The replicator Deployment serving the route.
    pub deployment: String,
    /// Ready replicator replicas.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Records in the source not yet in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_records: Option<i64>,
    /// Age of the oldest record not yet copied, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// When the route's newest checkpoint record was written. While the route copies this is
    /// within the checkpoint interval; an idle route writes only when its floor rises or once
    /// a heartbeat (1 h by default; docs/checkpoint-format.md, layout v2). A time, not an age,
    /// so that the status does not change while nothing happens. The replicator's
    /// `checkpoint_age_seconds` metric says whether its writes fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Deprecated, no longer set: an age in status changed at every write while nothing
    /// happened. Kept so that statuses written by older operators stay valid; read
    /// `lastCheckpointTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_age_seconds: Option<f64>,
    /// `Ready`, `Degraded`, `Pending`.
    pub state: String,
    /// Why the route is not ready, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
