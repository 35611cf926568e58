//! Test fixtures: a two-region topology as the operator would report it, written as YAML the
//! way `kubectl get -o yaml` shows it, read at a fixed instant.

use k8s_openapi::jiff::Timestamp;
use tributary_api::{AggregateCluster, ConsumerGroupFailover, RegionalStream};

use crate::snapshot::{Scope, Snapshot};

/// The instant the fixtures are "read": 10 s after the statuses were written.
pub const NOW: &str = "2026-12-01T12:00:10Z";

fn managed(time: &str) -> String {
    format!(
        r#"  managedFields:
    - manager: tributary-operator
      operation: Apply
      subresource: status
      apiVersion: tributary.dev/v1alpha1
      time: "{time}"
"#
    )
}

fn stream(region: &str) -> String {
    format!(
        r#"apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata:
  name: {region}
  namespace: demo
  generation: 1
{managed}spec:
  region: {region}
  kafka: {{bootstrapServers: ["kafka-{region}:9092"]}}
  topics: [{{name: orders, partitions: 3}}]
status:
  observedGeneration: 1
  topicsReady: 1/1
  conditions:
    - {{type: Ready, status: "True", reason: TopicsReady, message: "", lastTransitionTime: "2026-12-01T11:00:00Z"}}
"#,
        managed = managed("2026-12-01T12:00:00Z")
    )
}

fn aggregate(region: &str, routes: &str, ready: &str) -> String {
    format!(
        r#"apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata:
  name: {region}
  namespace: demo
  generation: 1
{managed}spec:
  region: {region}
  kafka: {{bootstrapServers: ["kafka-agg-{region}:9092"]}}
status:
  observedGeneration: 1
  routesReady: "2/2"
  maxLagRecords: 0
  conditions:
    - {ready}
  routes:
{routes}"#,
        managed = managed("2026-12-01T12:00:00Z")
    )
}

fn route(source: &str, target: &str, state: &str, lag: i64, checkpoint_age: f64) -> String {
    let checkpoint_time = NOW
        .parse::<Timestamp>()
        .expect("fixture time")
        .checked_sub(std::time::Duration::from_secs_f64(checkpoint_age))
        .expect("a time before NOW");
    format!(
        r#"    - source: {source}
      sourceRegion: {source}
      deployment: {target}-from-{source}
      readyReplicas: 1
      lagRecords: {lag}
      lagSeconds: 0
      lastCheckpointTime: "{checkpoint_time}"
      state: {state}
"#
    )
}

const READY: &str = r#"{type: Ready, status: "True", reason: RoutesReady, message: "", lastTransitionTime: "2026-12-01T11:00:00Z"}"#;

fn group() -> String {
    format!(
        r#"apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata:
  name: billing
  namespace: demo
  generation: 2
{managed}spec:
  groupId: billing
  topics: [orders]
  mode: ActivePassive
  regions:
    - {{region: east, aggregateCluster: east}}
    - {{region: west, aggregateCluster: west}}
  activeRegion: east
status:
  observedGeneration: 2
  activeRegion: east
  epoch: 3
  actedActiveRegion: east
  conditions:
    - {{type: Ready, status: "True", reason: Active, message: "east is active", lastTransitionTime: "2026-12-01T11:00:00Z"}}
    - {{type: FailingOver, status: "False", reason: Idle, message: "", lastTransitionTime: "2026-12-01T11:00:00Z"}}
  regions:
    - {{region: east, healthy: true, failedProbes: 0, members: 2, committedLag: 5, role: Active}}
    - {{region: west, healthy: true, failedProbes: 0, members: 0, committedLag: 7, role: Standby, lastSyncTime: "2026-12-01T12:00:08Z"}}
  lastFailover:
    from: west
    to: east
    reason: Failback
    kind: Planned
    epoch: 3
    started: "2026-12-01T11:00:00Z"
    finished: "2026-12-01T11:00:02Z"
    rtoSeconds: 1.8
"#,
        managed = managed("2026-12-01T11:59:00Z")
    )
}

/// The YAML documents of a healthy two-region topology.
pub fn healthy_yaml() -> Vec<String> {
    vec![
        stream("east"),
        stream("west"),
        aggregate(
            "east",
            &(route("east", "east", "Ready", 0, 1.0) + &route("west", "east", "Ready", 4, 2.0)),
            READY,
        ),
        aggregate(
            "west",
            &(route("east", "west", "Ready", 0, 1.0) + &route("west", "west", "Ready", 0, 1.0)),
            READY,
        ),
        group(),
    ]
}

/// Reads YAML documents into a snapshot of namespace `demo` taken at [`NOW`].
pub fn snapshot(docs: &[String]) -> Snapshot {
    let mut s = Snapshot {
        scope: Scope::Namespace("demo".into()),
        taken_at: NOW.parse::<Timestamp>().expect("fixture time"),
        streams: Vec::new(),
        aggregates: Vec::new(),
        groups: Vec::new(),
    };
    for doc in docs {
        let v: serde_yaml::Value = serde_yaml::from_str(doc).expect("fixture YAML");
        match v["kind"].as_str() {
            Some("RegionalStream") => s
                .streams
                .push(serde_yaml::from_value::<RegionalStream>(v).expect("RegionalStream")),
            Some("AggregateCluster") => s
                .aggregates
                .push(serde_yaml::from_value::<AggregateCluster>(v).expect("AggregateCluster")),
            Some("ConsumerGroupFailover") => s.groups.push(
                serde_yaml::from_value::<ConsumerGroupFailover>(v).expect("ConsumerGroupFailover"),
            ),
            other => panic!("fixture of unknown kind {other:?}"),
        }
    }
    s.sorted()
}

/// Applies `edit` to the fixture document whose kind and name match.
pub fn edit(
    docs: &mut [String],
    kind: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_yaml::Value),
) {
    for doc in docs.iter_mut() {
        let mut v: serde_yaml::Value = serde_yaml::from_str(doc).expect("fixture YAML");
        if v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name) {
            edit(&mut v);
            *doc = serde_yaml::to_string(&v).expect("YAML");
            return;
        }
    }
    panic!("no fixture {kind} {name}");
}
