//! The topology at a glance, derived from a [`Snapshot`]: regions and their health, routes,
//! groups. Pure. It is both what `status` renders as tables and, serialized, the documented
//! `-o json` shape (docs/cli.md); fields are added, never renamed, within `version: 1`.
//!
//! Honesty rules: a value comes only from an object's status; a missing status is `Unknown`
//! (never healthy); a status older than the object's generation is `Unknown` with the last
//! known value kept beside it; every object carries the time its status was last written, so
//! ages in status (checkpoint age, lag age) can be read as "as of then".

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;
use tributary_api::{ConsumerGroupFailover, condition_type, find_condition};

use crate::snapshot::{Scope, Snapshot, status_written_at};

/// The shape's name and version in `-o json`.
pub const KIND: &str = "TributaryStatus";
pub const VERSION: u32 = 1;

/// Everything `status` shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub kind: &'static str,
    pub version: u32,
    /// When the plugin read the objects (RFC 3339).
    pub observed_at: String,
    /// The namespace shown, or `null` with `-A`.
    pub namespace: Option<String>,
    pub regions: Vec<RegionView>,
    pub routes: Vec<RouteView>,
    pub groups: Vec<GroupView>,
}

/// Ready-condition health of one object, as its status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Health {
    Ready,
    NotReady,
    /// No status, a status for an older generation, or `Ready=Unknown`.
    Unknown,
}

/// How current an object's status is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Freshness {
    /// Written for the object's current generation.
    Current,
    /// Written for an older generation: the operator has not looked at the latest spec.
    Stale,
    /// Never written (no operator, or it has not reached this object yet).
    Missing,
}

/// How current a status is and when it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub freshness: Freshness,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    /// Last write of the status subresource (RFC 3339), from `managedFields`.
    pub status_written_at: Option<String>,
    /// Seconds from that write to `observedAt`.
    pub status_age_seconds: Option<f64>,
}

/// One object's readiness.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// `Unknown` unless the status is current.
    pub health: Health,
    /// What the Ready condition last said, even when the status is stale.
    pub last_known_health: Option<Health>,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub observation: Observation,
}

/// A region's overall health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RegionHealth {
    /// Every object of the region is Ready and every group's probe of it answers.
    Healthy,
    /// Something of the region is not Ready (a route, a topic), but its clusters answer.
    Degraded,
    /// A group's probe of its aggregate cluster fails, or a cluster of it is unreachable.
    Down,
    /// Nothing current is known about some part of it.
    Unknown,
}

/// One region of one namespace.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionView {
    pub namespace: String,
    pub region: String,
    pub health: RegionHealth,
    /// RegionalStreams of the region.
    pub regional_streams: Vec<ObjectView>,
    /// AggregateClusters of the region.
    pub aggregate_clusters: Vec<ObjectView>,
    /// Routes into the region's aggregate clusters: Ready / all (current statuses only).
    pub routes_in_ready: usize,
    pub routes_in_total: usize,
    /// What the ConsumerGroupFailovers' probes of the region's aggregate cluster say.
    pub group_probes: GroupProbes,
}

/// The groups' view of one region's aggregate cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupProbes {
    /// Groups (with a current status) whose probe answers.
    pub healthy: usize,
    /// Groups (with a current status) whose probe fails.
    pub unhealthy: usize,
    /// The largest run of failed probes.
    pub max_failed_probes: i32,
}

/// One route: a source region's stream into one aggregate cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    pub namespace: String,
    pub aggregate_cluster: String,
    /// The aggregate cluster's region.
    pub region: String,
    pub source: String,
    pub source_region: String,
    pub deployment: String,
    /// `Ready`, `Degraded`, `Pending` as the operator reported it; `Unknown` when the
    /// aggregate cluster's status is stale.
    pub state: String,
    pub last_known_state: String,
    pub ready_replicas: i32,
    pub lag_records: Option<i64>,
    /// Lag age as of the status write (`observation.statusWrittenAt`).
    pub lag_seconds: Option<f64>,
    /// Now − `lastCheckpointTime`: exact, whatever the age of the status.
    pub last_checkpoint_age_seconds: Option<f64>,
    pub message: Option<String>,
    pub observation: Observation,
}

/// One ConsumerGroupFailover.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub namespace: String,
    pub name: String,
    pub group_id: String,
    pub mode: String,
    /// `status.activeRegion` / `status.epoch` (the Lease's mirror); last known when stale.
    pub active_region: Option<String>,
    pub epoch: Option<i64>,
    /// `spec.activeRegion` (intent), if set.
    pub spec_active_region: Option<String>,
    pub ready: ObjectView,
    /// The `FailingOver` condition while it is True.
    pub failing_over: Option<ConditionView>,
    /// The `FailoverBlocked` condition while it is True.
    pub failover_blocked: Option<ConditionView>,
    /// The `Degraded` condition while it is True (`RegionDown`: the message names each down
    /// region and its last probe error).
    pub degraded: Option<ConditionView>,
    pub pending_move: Option<MoveView>,
    pub last_failover: Option<MoveView>,
    /// Per region of `spec.regions`, in preference order.
    pub regions: Vec<GroupRegionView>,
}

/// A True condition's reason and message.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    pub reason: String,
    pub message: String,
}

/// A move of a group's active region, under way or the last one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveView {
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub kind: Option<String>,
    pub epoch: i64,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub rto_seconds: Option<f64>,
}

/// A group in one of its regions.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRegionView {
    pub region: String,
    /// `Active`, `Standby`, `Down`; `None` when the status does not list the region.
    pub role: Option<String>,
    /// Whether the probe of the region's aggregate answers; `None` when unknown.
    pub healthy: Option<bool>,
    pub failed_probes: Option<i32>,
    pub members: Option<i32>,
    pub committed_lag: Option<i64>,
    pub last_sync_time: Option<String>,
    /// `observedAt` − `lastSyncTime`: exact, whatever the age of the status.
    pub sync_age_seconds: Option<f64>,
}

impl Topology {
    /// Interprets a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Topology {
        let now = snapshot.taken_at;
        let mut routes = Vec::new();
        let mut regions: BTreeMap<(String, String), RegionView> = BTreeMap::new();
        for s in &snapshot.streams {
            let status = s.status.as_ref();
            let view = object_view(
                "RegionalStream",
                s,
                status.and_then(|st| st.observed_generation),
                status.map(|st| st.conditions.as_slice()).unwrap_or(&[]),
                now,
            );
            region(
                &mut regions,
                &s.namespace().unwrap_or_default(),
                &s.spec.region,
            )
            .regional_streams
            .push(view);
        }

        for a in &snapshot.aggregates {
            let ns = a.namespace().unwrap_or_default();
            let status = a.status.as_ref();
            let view = object_view(
                "AggregateCluster",
                a,
                status.and_then(|st| st.observed_generation),
                status.map(|st| st.conditions.as_slice()).unwrap_or(&[]),
                now,
            );
            let current = view.observation.freshness == Freshness::Current;
            let entry = region(&mut regions, &ns, &a.spec.region);
            for r in status.map(|st| st.routes.as_slice()).unwrap_or(&[]) {
                if current {
                    entry.routes_in_total += 1;
                    if r.state == "Ready" {
                        entry.routes_in_ready += 1;
                    }
                }
                routes.push(RouteView {
                    namespace: ns.clone(),
                    aggregate_cluster: a.name_any(),
                    region: a.spec.region.clone(),
                    source: r.source.clone(),
                    source_region: r.source_region.clone(),
                    deployment: r.deployment.clone(),
                    state: if current {
                        r.state.clone()
                    } else {
                        "Unknown".into()
                    },
                    last_known_state: r.state.clone(),
                    ready_replicas: r.ready_replicas,
                    lag_records: r.lag_records,
                    lag_seconds: r.lag_seconds,
                    last_checkpoint_age_seconds: r
                        .last_checkpoint_time
                        .as_ref()
                        .map(|t| seconds_between(t.0, now)),
                    message: r.message.clone(),
                    observation: view.observation.clone(),
                });
            }
            entry.aggregate_clusters.push(view);
        }

        let mut groups = Vec::new();
        for g in &snapshot.groups {
            let view = group_view(g, now);
            let current = view.ready.observation.freshness == Freshness::Current;
            for r in &view.regions {
                let entry = region(&mut regions, &view.namespace, &r.region);
                if !current {
                    continue;
                }
                match r.healthy {
                    Some(true) => entry.group_probes.healthy += 1,
                    Some(false) => entry.group_probes.unhealthy += 1,
                    None => {}
                }
                entry.group_probes.max_failed_probes = entry
                    .group_probes
                    .max_failed_probes
                    .max(r.failed_probes.unwrap_or(0));
            }
            groups.push(view);
        }

        let mut regions: Vec<RegionView> = regions.into_values().collect();
        for r in &mut regions {
            r.health = region_health(r);
        }
        routes.sort_by(|a, b| {
            (&a.namespace, &a.region, &a.source_region, &a.source).cmp(&(
                &b.namespace,
                &b.region,
                &b.source_region,
                &b.source,
            ))
        });
        Topology {
            kind: KIND,
            version: VERSION,
            observed_at: rfc3339_seconds(now),
            namespace: snapshot.scope.namespace().map(str::to_string),
            regions,
            routes,
            groups,
        }
    }

    /// Whether this lists more than one namespace (the renderer then adds a column).
    pub fn all_namespaces(&self) -> bool {
        self.namespace.is_none()
    }
}

/// The region `(ns, r)`, created empty on first mention.
fn region<'a>(
    regions: &'a mut BTreeMap<(String, String), RegionView>,
    ns: &str,
    r: &str,
) -> &'a mut RegionView {
    regions
        .entry((ns.to_string(), r.to_string()))
        .or_insert_with(|| RegionView {
            namespace: ns.to_string(),
            region: r.to_string(),
            health: RegionHealth::Unknown,
            regional_streams: Vec::new(),
            aggregate_clusters: Vec::new(),
            routes_in_ready: 0,
            routes_in_total: 0,
            group_probes: GroupProbes::default(),
        })
}

/// The scope a topology was taken in, for messages.
pub fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::Namespace(ns) => format!("namespace {ns}"),
        Scope::AllNamespaces => "any namespace".to_string(),
    }
}

fn observation<K: ResourceExt>(
    obj: &K,
    observed_generation: Option<i64>,
    conditions: &[Condition],
    now: Timestamp,
) -> Observation {
    let generation = obj.meta().generation;
    let written = status_written_at(obj);
    let freshness = if observed_generation.is_none() && conditions.is_empty() {
        Freshness::Missing
    } else {
        match (observed_generation, generation) {
            (Some(o), Some(g)) if o >= g => Freshness::Current,
            // No generation on the object (never on a real API server): trust the status.
            (Some(_), None) => Freshness::Current,
            _ => Freshness::Stale,
        }
    };
    Observation {
        freshness,
        generation,
        observed_generation,
        status_written_at: written.map(|t| t.to_string()),
        status_age_seconds: written.map(|t| seconds_between(t, now)),
    }
}

fn object_view<K: ResourceExt>(
    kind: &'static str,
    obj: &K,
    observed_generation: Option<i64>,
    conditions: &[Condition],
    now: Timestamp,
) -> ObjectView {
    let observation = observation(obj, observed_generation, conditions, now);
    let ready = find_condition(conditions, condition_type::READY);
    let last_known = ready.map(|c| match c.status.as_str() {
        "True" => Health::Ready,
        "False" => Health::NotReady,
        _ => Health::Unknown,
    });
    let health = match observation.freshness {
        Freshness::Current => last_known.unwrap_or(Health::Unknown),
        Freshness::Stale | Freshness::Missing => Health::Unknown,
    };
    ObjectView {
        kind,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        health,
        last_known_health: last_known,
        reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
        observation,
    }
}

fn true_condition(conditions: &[Condition], type_: &str) -> Option<ConditionView> {
    find_condition(conditions, type_)
        .filter(|c| c.status == "True")
        .map(|c| ConditionView {
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

fn group_view(g: &ConsumerGroupFailover, now: Timestamp) -> GroupView {
    let status = g.status.clone().unwrap_or_default();
    let ready = object_view(
        "ConsumerGroupFailover",
        g,
        status.observed_generation,
        &status.conditions,
        now,
    );
    let current = ready.observation.freshness == Freshness::Current;
    let regions = g
        .spec
        .regions
        .iter()
        .map(|spec_region| {
            let s = status
                .regions
                .iter()
                .find(|s| s.region == spec_region.region);
            let last_sync = s.and_then(|s| s.last_sync_time.as_ref()).map(|t| t.0);
            GroupRegionView {
                region: spec_region.region.clone(),
                role: s.and_then(|s| s.role.clone()),
                healthy: s.filter(|_| current).map(|s| s.healthy),
                failed_probes: s.map(|s| s.failed_probes),
                members: s.and_then(|s| s.members),
                committed_lag: s.and_then(|s| s.committed_lag),
                last_sync_time: last_sync.map(|t| t.to_string()),
                sync_age_seconds: last_sync.map(|t| seconds_between(t, now)),
            }
        })
        .collect();
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.to_string())
    };
    GroupView {
        namespace: g.namespace().unwrap_or_default(),
        name: g.name_any(),
        group_id: g.spec.group_id.clone(),
        mode: format!("{:?}", g.spec.mode),
        active_region: status.active_region.clone(),
        epoch: status.epoch,
        spec_active_region: g.spec.active_region.clone(),
        failing_over: true_condition(&status.conditions, condition_type::FAILING_OVER)
            .filter(|_| current),
        failover_blocked: true_condition(&status.conditions, condition_type::FAILOVER_BLOCKED)
            .filter(|_| current),
        degraded: true_condition(&status.conditions, condition_type::DEGRADED).filter(|_| current),
        pending_move: status.pending_move.as_ref().map(|m| MoveView {
            from: m.from.clone(),
            to: m.to.clone(),
            reason: m.reason.clone(),
            kind: Some(m.kind.clone()),
            epoch: m.epoch,
            started: time(&m.started),
            finished: None,
            rto_seconds: None,
        }),
        last_failover: status.last_failover.as_ref().map(|m| MoveView {
            from: m.from.clone(),
            to: m.to.clone(),
            reason: m.reason.clone(),
            kind: m.kind.clone(),
            epoch: m.epoch,
            started: time(&m.started),
            finished: time(&m.finished),
            rto_seconds: m.rto_seconds,
        }),
        ready,
        regions,
    }
}

/// Worst of the region's signals. A failed group probe or an unreachable cluster is `Down`;
/// anything not known for the current generation is `Unknown`, never `Healthy`.
fn region_health(r: &RegionView) -> RegionHealth {
    let objects = r.regional_streams.iter().chain(&r.aggregate_clusters);
    let unreachable = objects
        .clone()
        .any(|o| o.health == Health::NotReady && o.reason.as_deref() == Some("ClusterUnreachable"));
    if r.group_probes.unhealthy > 0 || unreachable {
        return RegionHealth::Down;
    }
    if objects.clone().any(|o| o.health == Health::NotReady) {
        return RegionHealth::Degraded;
    }
    let no_objects = r.regional_streams.is_empty() && r.aggregate_clusters.is_empty();
    if objects.clone().any(|o| o.health == Health::Unknown)
        || (no_objects && r.group_probes.healthy == 0)
    {
        return RegionHealth::Unknown;
    }
    RegionHealth::Healthy
}

/// `2026-12-01T12:00:10Z`: to the second, as Kubernetes writes times.
pub fn rfc3339_seconds(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Seconds from `earlier` to `later`, never negative (clocks of writer and reader differ).
pub fn seconds_between(earlier: Timestamp, later: Timestamp) -> f64 {
    let ms = later.as_millisecond() - earlier.as_millisecond();
    (ms.max(0) as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{edit, healthy_yaml, snapshot};

    fn json(docs: &[String]) -> serde_json::Value {
        serde_json::to_value(Topology::from_snapshot(&snapshot(docs))).expect("JSON")
    }

    #[test]
    fn json_has_the_documented_shape() {
        let j = json(&healthy_yaml());
        assert_eq!(j["kind"], "TributaryStatus");
        assert_eq!(j["version"], 1);
        assert_eq!(j["observedAt"], "2026-12-01T12:00:10Z");
        assert_eq!(j["namespace"], "demo");
        let east = &j["regions"][0];
        assert_eq!(east["region"], "east");
        assert_eq!(east["health"], "Healthy");
        assert_eq!(east["routesInReady"], 2);
        assert_eq!(east["routesInTotal"], 2);
        assert_eq!(east["groupProbes"]["healthy"], 1);
        assert_eq!(east["aggregateClusters"][0]["health"], "Ready");
        assert_eq!(
            east["aggregateClusters"][0]["observation"],
            serde_json::json!({
                "freshness": "Current",
                "generation": 1,
                "observedGeneration": 1,
                "statusWrittenAt": "2026-12-01T12:00:00Z",
                "statusAgeSeconds": 10.0,
            })
        );
        let route = &j["routes"][1];
        assert_eq!(route["sourceRegion"], "west");
        assert_eq!(route["region"], "east");
        assert_eq!(route["state"], "Ready");
        assert_eq!(route["lagRecords"], 4);
        assert_eq!(route["lastCheckpointAgeSeconds"], 2.0);
        let g = &j["groups"][0];
        assert_eq!(g["name"], "billing");
        assert_eq!(g["activeRegion"], "east");
        assert_eq!(g["epoch"], 3);
        assert_eq!(g["ready"]["health"], "Ready");
        assert_eq!(g["lastFailover"]["reason"], "Failback");
        assert_eq!(g["lastFailover"]["rtoSeconds"], 1.8);
        assert_eq!(g["regions"][1]["role"], "Standby");
        assert_eq!(g["regions"][1]["syncAgeSeconds"], 2.0);
        assert!(g["pendingMove"].is_null());
    }

    #[test]
    fn sync_age_counts_from_now_not_from_the_status_write() {
        // The group's status was written 70 s before the read, its standby synced 2 s before.
        let j = json(&healthy_yaml());
        assert_eq!(
            j["groups"][0]["ready"]["observation"]["statusAgeSeconds"],
            70.0
        );
        assert_eq!(j["groups"][0]["regions"][1]["syncAgeSeconds"], 2.0);
    }

    #[test]
    fn no_status_is_unknown_with_freshness_missing() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "RegionalStream", "east", |v| {
            v.as_mapping_mut().expect("map").remove("status");
        });
        let j = json(&docs);
        let s = &j["regions"][0]["regionalStreams"][0];
        assert_eq!(s["health"], "Unknown");
        assert_eq!(s["observation"]["freshness"], "Missing");
        assert_eq!(j["regions"][0]["health"], "Unknown");
    }

    #[test]
    fn a_stale_route_keeps_its_last_known_state_beside_unknown() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "AggregateCluster", "east", |v| {
            v["metadata"]["generation"] = 2.into();
        });
        let j = json(&docs);
        assert_eq!(j["routes"][0]["state"], "Unknown");
        assert_eq!(j["routes"][0]["lastKnownState"], "Ready");
        assert_eq!(j["routes"][0]["observation"]["freshness"], "Stale");
        assert_eq!(
            j["regions"][0]["routesInTotal"], 0,
            "stale routes are not counted"
        );
    }

    #[test]
    fn a_region_known_only_from_a_group_is_listed() {
        let mut docs = healthy_yaml();
        edit(&mut docs, "ConsumerGroupFailover", "billing", |v| {
            v["spec"]["regions"].as_sequence_mut().expect("list").push(
                serde_yaml::from_str("{region: central, aggregateCluster: central}")
                    .expect("region"),
            );
        });
        let j = json(&docs);
        let central = j["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .find(|r| r["region"] == "central")
            .expect("central listed")
            .clone();
        assert_eq!(central["health"], "Unknown", "no object and no probe of it");
        let g = &j["groups"][0]["regions"][2];
        assert_eq!(g["region"], "central");
        assert!(g["healthy"].is_null());
    }
}
