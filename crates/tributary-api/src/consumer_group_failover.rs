//! `ConsumerGroupFailover`: one consumer group's disaster-recovery policy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use k8s_openapi::api::core::v1::ResourceRequirements;

use crate::common::{DNS1123_LABEL, DNS1123_SUBDOMAIN, DURATION, TOPIC_NAME};

/// Keeps one consumer group's position valid in every region and moves the group's active
/// region on failure (automatic) or on request (`spec.activeRegion`). The operator maintains an
/// active-region Lease (holder = active region, `leaseTransitions` = epoch), a ConfigMap
/// `<name>-active` for consumers, and checkpoint-sync Jobs that keep standby regions warm.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "ConsumerGroupFailover",
    namespaced,
    status = "ConsumerGroupFailoverStatus",
    shortname = "cgf",
    category = "tributary",
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".spec.groupId"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeRegion"}"#,
    printcolumn = r#"{"name":"Epoch","type":"integer","jsonPath":".status.epoch"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.activeRegion) || self.regions.exists(r, r.region == self.activeRegion)")
    .message("activeRegion must be one of regions[].region").field_path(".activeRegion"))]
#[x_kube(validation = kube::core::Rule::new(
    "size(self.regions) >= 3 || (has(self.failover) && ((has(self.failover.automatic) && !self.failover.automatic) || has(self.failover.witness)))"
).message(WITNESS_REQUIRED).field_path(".failover.witness"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.failover) || !has(self.failover.witness) || !self.regions.exists(r, r.region == self.failover.witness)"
).message(WITNESS_IS_A_REGION).field_path(".failover.witness"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupFailoverSpec {
    /// The Kafka consumer group id. Immutable: a new group is a new object.
    #[schemars(length(min = 1, max = 249))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("groupId is immutable"))]
    pub group_id: String,

    /// The (aggregate) topics the group consumes.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 249), regex(pattern = TOPIC_NAME)))]
    #[x_kube(validation = kube::core::Rule::new("self.all(t, t != '.' && t != '..')").message("topic name must not be '.' or '..'"))]
    pub topics: Vec<String>,

    /// `ActivePassive`: only the active region consumes; on failover the group resumes in
    /// another region from translated offsets. `ActiveActive`: every region consumes; the
    /// active region is the primary for single-writer side effects.
    pub mode: FailoverMode,

    /// The regions the group may run in, in order of preference (at least two, unique).
    #[schemars(length(min = 2, max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(r, self.exists_one(o, o.region == r.region))")
        .message("regions must be unique"))]
    pub regions: Vec<FailoverRegion>,

    /// The active region, when set by hand or by GitOps: editing it switches (or fails back)
    /// the group. Absent: the operator picks the first healthy region in preference order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub active_region: Option<String>,

    /// When and how the operator moves the active region by itself.
    #[serde(default)]
    pub failover: FailoverPolicy,

    /// How standby regions are kept warm.
    #[serde(default)]
    pub sync: SyncPolicy,
}

/// How the group runs across regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum FailoverMode {
    /// One region consumes at a time.
    ActivePassive,
    /// Every region consumes; one is primary.
    ActiveActive,
}

/// One region the group may run in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRegion {
    /// The region (a DNS-1123 label).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub region: String,
    /// Name of the AggregateCluster (same namespace) the group reads in this region.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub aggregate_cluster: String,
    /// The group's consumer workload in this region. In `ActivePassive` the operator scales it
    /// to `replicas` in the active region, to zero in the region a move leaves, and to
    /// `standbyReplicas` (default 0) elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
}

/// A consumer Deployment or StatefulSet in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Deployment` or `StatefulSet`.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
    /// Replicas while this region is active.
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,
    /// Warm standby (ActivePassive): replicas kept running while this region is not active
    /// and no move is leaving it. Their pods must wait for the active gate before they join
    /// the group (docs/active-gate.md, "Warm standby"): a standby pod that joins holds up
    /// every planned move into this region and the standby's offset commits. Default 0: the
    /// workload is scaled from zero when the region becomes active.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 10000))]
    pub standby_replicas: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Kinds a workloadRef may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
}

/// Automatic failover settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// Whether the operator fails over by itself when the active region is down.
    #[serde(default = "default_true")]
    pub automatic: bool,
    /// How often each region's aggregate cluster is probed (Go duration, 1s to 5m).
    #[serde(default = "default_probe_period")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('5m')")
        .message("probePeriod must be between 1s and 5m"))]
    pub probe_period: String,
    /// Consecutive failed probes after which a region counts as down.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Duration of the active-region Lease (Go duration, 5s to 10m).
    #[serde(default = "default_lease_duration")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('5s') && duration(self) <= duration('10m')")
        .message("leaseDuration must be between 5s and 10m"))]
    pub lease_duration: String,
    /// How stale a standby's offsets may be for an automatic failover to it (Go duration, 1s
    /// to 1h): time since its sync Job last matched a full translation. Staler or unknown ⇒
    /// the failover is refused (`FailoverBlocked`) until the annotation
    /// `tributary.dev/accept-data-loss: "true"` is set.
    #[serde(default = "default_max_sync_age")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')")
        .message("maxSyncAge must be between 1s and 1h"))]
    pub max_sync_age: String,
    /// What the active region does when the Lease cannot be renewed (the coordination API
    /// server unreachable or without a quorum). `FailClosed` (default): a third of
    /// `leaseDuration` before the Lease would expire, its consumers are scaled to 0 and the
    /// `<name>-active` ConfigMap says `fenced: "true"` with no active region, so nothing is
    /// active when another region could acquire; they resume once the Lease is renewed.
    /// `HoldLast`: the active region keeps consuming; no failover is possible meanwhile.
    #[serde(default)]
    pub coordination_loss: CoordinationLoss,
    /// The third site that holds a voting member of the quorum the active-region Lease lives
    /// on (the coordination API server's etcd, or the stretched cluster's), when the group has
    /// only two regions; a name for the record, not a region of the group. Required for
    /// `automatic: true` with two regions: without a third voter, losing either region (or the
    /// link between them) leaves no majority that could tell "the other region is down" from
    /// "I am cut off", so an automatic move could make two regions active. Three or more
    /// regions each hold a voter and need none. See docs/coordination.md ("Two regions").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub witness: Option<String>,
}

/// The API server's (and the operator's) refusal of automatic failover between two regions
/// without a witness.
pub const WITNESS_REQUIRED: &str = "automatic failover between two regions needs failover.witness: the third site holding a voting member of the Lease's quorum; without it, losing one region or the link leaves no majority to tell a dead region from a cut-off one, and both could become active. Name the witness site, or set failover.automatic: false and move by editing activeRegion (break-glass: docs/coordination.md)";

/// The `Degraded` reason (and event reason) when a standby region of an ActivePassive group
/// has had members for longer than the operator's grace: its standby sync commits nothing
/// there, and a planned move there waits for them (docs/failover.md, "StandbyHasMembers").
pub const STANDBY_HAS_MEMBERS: &str = "StandbyHasMembers";

/// The witness must be a third site, not one of the group's regions.
pub const WITNESS_IS_A_REGION: &str =
    "failover.witness must be a third site, not one of regions[].region";

impl ConsumerGroupFailoverSpec {
    /// Why this spec's group must not fail over by itself (`None`: nothing refuses it): the
    /// CRD's CEL rules on the witness, for objects stored before them (the API server
    /// ratchets unchanged objects).
    pub fn quorum_problem(&self) -> Option<&'static str> {
        let f = &self.failover;
        if let Some(w) = &f.witness
            && self.regions.iter().any(|r| &r.region == w)
        {
            return Some(WITNESS_IS_A_REGION);
        }
        (f.automatic && self.regions.len() < 3 && f.witness.is_none()).then_some(WITNESS_REQUIRED)
    }
}

/// See [`FailoverPolicy::coordination_loss`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum CoordinationLoss {
    /// Stop the active region's consumers before the Lease could pass to another region.
    #[default]
    FailClosed,
    /// Keep the active region running; no failover while the Lease cannot be renewed.
    HoldLast,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            automatic: true,
            probe_period: default_probe_period(),
            failure_threshold: default_failure_threshold(),
            lease_duration: default_lease_duration(),
            max_sync_age: default_max_sync_age(),
            coordination_loss: CoordinationLoss::default(),
            witness: None,
        }
    }
}

fn default_max_sync_age() -> String {
    "30s".into()
}

fn default_true() -> bool {
    true
}
fn default_probe_period() -> String {
    "5s".into()
}
fn default_failure_threshold() -> i32 {
    3
}
fn default_lease_duration() -> String {
    "15s".into()
}

/// Checkpoint-sync settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// How often the group's committed offsets are translated into each standby region (Go
    /// duration, 100ms to 10m).
    #[serde(default = "default_sync_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('10m')")
        .message("sync interval must be between 100ms and 10m"))]
    pub interval: String,

    /// Compute resources of the sync pods (the standby Jobs and a move's final sync). What
    /// it leaves out defaults to a memory request of 128Mi, a memory limit of 1Gi and a CPU
    /// request of 50m. Applies to Jobs created after the change (the next epoch's, or a
    /// failed Job's replacement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            interval: default_sync_interval(),
            resources: None,
        }
    }
}

fn default_sync_interval() -> String {
    "1s".into()
}

/// Observed state of a ConsumerGroupFailover.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupFailoverStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Degraded`, `FailingOver`, `FailoverBlocked`, with reasons such as
    /// `RegionDown`, `FailoverBlocked`, `AutomaticFailoverDisabled`, `Draining`, `FinalSync`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The region where the group is active now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_region: Option<String>,

    /// Grows by one at every change of active region; the fencing token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,

    /// Health and position of the group in each region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionStatus>,

    /// The most recent change of active region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,

    /// The change of active region under way, written before its first step so that a
    /// restarted operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_move: Option<PendingMove>,

    /// The `spec.activeRegion` the operator last acted on: a planned move starts when the
    /// spec differs from it, so an automatic failover is not undone when the pinned region
    /// returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acted_active_region: Option<String>,
}

/// A change of active region under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingMove {
    /// The region the group leaves (absent at the first activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The region the group moves to.
    pub to: String,
    /// `Initial`, `RegionDown`, `SpecChanged`, `Failback`.
    pub reason: String,
    /// `Planned` (drain, final translation, then the Lease) or `Unplanned` (the source is
    /// down: wait for its Lease to expire, resume from the standby's warm offsets).
    pub kind: String,
    /// The epoch the move produces.
    pub epoch: i64,
    /// When the move started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// When the region the group leaves was first seen down (unplanned moves): the start of
    /// the measured RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected: Option<Time>,
    /// The translation the group resumes from, once the target's standby sync answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<MovePlan>,
    /// The last final translation's failure (planned moves); it is asked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_sync_error: Option<String>,
}

/// The translation a move resumes from, as the target region's standby sync answered it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovePlan {
    /// `Final`: translated after the source's consumers stopped (planned moves), committed and
    /// read back. `LastStandbyRound`: the standby's last committed round before the source
    /// was lost (unplanned moves); nothing newer can exist.
    pub origin: String,
    /// When the operator received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Time>,
    /// Every resume offset and watermark is exact.
    pub exact: bool,
    /// Upper bound on records the group reads again in the new region.
    pub max_duplicates: i64,
    /// Upper bound on duplicates left after dropping records below the watermarks (0: the
    /// watermarks drop exactly what was consumed before the move).
    pub max_duplicates_after_dedupe: i64,
    /// Per source partition, the source watermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<SourceWatermark>,
}

/// Health and position of the group in one region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionStatus {
    /// The region.
    pub region: String,
    /// Whether the region's aggregate cluster answered the last probes.
    pub healthy: bool,
    /// Consecutive failed probes.
    #[serde(default)]
    pub failed_probes: i32,
    /// Records between the group's committed offsets and the log end, summed over partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_lag: Option<i64>,
    /// When the group's offsets were last translated into this region (its standby sync
    /// Job's last full match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Members of the group in this region's aggregate cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i32>,
    /// `Active`, `Standby`, or `Down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A change of active region.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// The region the group left (absent at the first activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The region the group moved to.
    pub to: String,
    /// Why: `Initial`, `RegionDown`, `SpecChanged`, `Failback`.
    pub reason: String,
    /// `Planned` or `Unplanned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The epoch the move produced.
    pub epoch: i64,
    /// When the move started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Time>,
    /// When the group was committed in the new region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,
    /// Seconds from the failure's detection (unplanned) or the move's start (planned) until
    /// the new region held the Lease with its consumers scaled up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// Per aggregate partition, where the group resumed in the new region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume_offsets: Vec<PartitionOffset>,
    /// Per source partition, the source watermark: every record of that source below it had
    /// been consumed. With provenance headers a consumer can drop exactly what it already saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<SourceWatermark>,
    /// Where the watermarks come from: `Final` or `LastStandbyRound` (see `pendingMove.plan`);
    /// absent when no standby answered (then there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_origin: Option<String>,
    /// Upper bound on duplicates left after dedupe with the watermarks (0: exact). Set only
    /// when the plan was final (`planOrigin: Final`); after an unplanned move the old region
    /// may have consumed past the standby's last round (up to one `sync.interval` of its
    /// consumption), which no watermark covers, so no bound is stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duplicates_after_dedupe: Option<i64>,
}

/// A topic partition and an offset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// A source region's watermark for one source partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceWatermark {
    /// Source region.
    pub source_region: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Every record of the source partition below this offset had been consumed.
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(regions: &[&str], failover: serde_json::Value) -> ConsumerGroupFailoverSpec {
        serde_json::from_value(serde_json::json!({
            "groupId": "billing",
            "topics": ["orders"],
            "mode": "ActivePassive",
            "regions": regions.iter().map(|r| serde_json::json!({"region": r, "aggregateCluster": r})).collect::<Vec<_>>(),
            "failover": failover,
        }))
        .expect("spec parses")
    }

    #[test]
    fn two_regions_fail_over_automatically_only_with_a_witness() {
        let two = ["east", "west"];
        assert_eq!(
            spec(&two, serde_json::json!({})).quorum_problem(),
            Some(WITNESS_REQUIRED)
        );
        assert_eq!(
            spec(&two, serde_json::json!({"witness": "central"})).quorum_problem(),
            None
        );
        assert_eq!(
            spec(&two, serde_json::json!({"automatic": false})).quorum_problem(),
            None
        );
        assert_eq!(
            spec(&two, serde_json::json!({"witness": "west"})).quorum_problem(),
            Some(WITNESS_IS_A_REGION)
        );
        assert_eq!(
            spec(&["east", "west", "central"], serde_json::json!({})).quorum_problem(),
            None
        );
    }
}
