//! `RegionalStream`: the streams one region produces into its regional Kafka cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{DNS1123_LABEL, KafkaConnection, TOPIC_NAME};

/// The topics one region's producers write to, on that region's regional cluster. Every
/// AggregateCluster whose `sources` select this object copies these topics (one replicator
/// Deployment per route).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "RegionalStream",
    namespaced,
    status = "RegionalStreamStatus",
    shortname = "rs",
    shortname = "rstream",
    category = "tributary",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Topics","type":"string","description":"Topics that exist / topics wanted","jsonPath":".status.topicsReady"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("(has(self.topics) && size(self.topics) > 0) || has(self.topicPattern)")
    .message("must list topics or set topicPattern"))]
#[serde(rename_all = "camelCase")]
pub struct RegionalStreamSpec {
    /// The region whose producers write these streams (a DNS-1123 label such as `east`).
    /// Immutable: a stream does not move between regions.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("region is immutable"))]
    pub region: String,

    /// Connection to the region's regional Kafka cluster.
    pub kafka: KafkaConnection,

    /// Topics of this region, unique by name. With `manageTopics` they are created and grown
    /// to match.
    // A list-map keyed by name: the API server refuses duplicate names at no CEL cost (an
    // all/exists_one rule over 512 topics exceeds the CRD's CEL budget), and server-side apply
    // merges topics per name, so two GitOps sources can own different topics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub topics: Vec<TopicSpec>,

    /// A regular expression (RE2 syntax, anchored) selecting topics that already exist on the
    /// regional cluster, in addition to `topics`. Matched topics are observed and replicated,
    /// never created or altered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub topic_pattern: Option<String>,

    /// Whether the operator creates missing topics, grows partitions and reconciles topic
    /// configs (`true`), or only observes them (`false`).
    #[serde(default = "default_true")]
    pub manage_topics: bool,

    /// What happens to managed topics when this object is deleted: `Retain` keeps them (the
    /// default: data outlives its description), `Delete` deletes them from the regional cluster.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_true() -> bool {
    true
}

/// One topic of a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name (Kafka's rules: letters, digits, `.`, `_`, `-`; at most 249 characters; not
    /// `.` or `..`).
    #[schemars(length(min = 1, max = 249), regex(pattern = TOPIC_NAME))]
    #[x_kube(validation = kube::core::Rule::new("self != '.' && self != '..'").message("topic name must not be '.' or '..'"))]
    pub name: String,

    /// Number of partitions (at least 1). Partitions can grow, never shrink.
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,

    /// Replication factor (at least 1).
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,

    /// Topic configs (for example `retention.ms`, `cleanup.policy`), applied as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub config: BTreeMap<String, String>,
}

fn default_replication_factor() -> i32 {
    3
}

/// What to do with Kafka-side state when the object that manages it is deleted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Keep the Kafka topics.
    #[default]
    Retain,
    /// Delete the Kafka topics.
    Delete,
}

/// Observed state of a RegionalStream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionalStreamStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Degraded`, with reasons such as `ClusterUnreachable`, `TopicMissing`,
    /// `PartitionsShrinkRefused`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// `existing/wanted` topics, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics_ready: Option<String>,

    /// Per topic: what the regional cluster has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicStatus>,
}

/// What the regional cluster has for one topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,
    /// Whether the topic exists on the regional cluster.
    pub exists: bool,
    /// Partitions the topic has on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Sum of the partitions' end offsets (records ever written, as seen at the last probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_offset_total: Option<i64>,
    /// Records per second produced, from the last two probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produce_rate: Option<f64>,
    /// Why the topic differs from its spec, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
