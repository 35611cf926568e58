//! Status from observations (pure), and the prober as an external relation: it triggers a
//! reconcile only when something meaningful changed. A fake `ClusterAdmin` stands in for Kafka.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use kube::runtime::reflector::ObjectRef;
use serde::Deserialize as _;
use tributary_api::{AggregateCluster, RegionalStream, find_condition};
use tributary_operator::aggregate_cluster::build_status;
use tributary_operator::kafka::{
    ClusterAdmin, KafkaFailure, NewTopic, ObservedTopic, ResolvedConnection, RouteProgress,
};
use tributary_operator::model::plan_aggregate;
use tributary_operator::prober::{
    AggregateObservation, Prober, Reach, RouteObservation, RouteTarget,
};

fn three_regions() -> (Vec<RegionalStream>, Vec<AggregateCluster>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/three-regions/");
    let parse = |file: &str| -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(
            &std::fs::read_to_string(format!("{root}{file}")).expect("example"),
        )
        .map(|d| serde_yaml::Value::deserialize(d).expect("yaml"))
        .collect()
    };
    let mut streams: Vec<RegionalStream> = parse("regionalstreams.yaml")
        .into_iter()
        .map(|v| serde_yaml::from_value(v).expect("rs"))
        .collect();
    let mut aggs: Vec<AggregateCluster> = parse("aggregateclusters.yaml")
        .into_iter()
        .map(|v| serde_yaml::from_value(v).expect("agg"))
        .collect();
    for s in &mut streams {
        s.metadata.namespace = Some("dr".into());
    }
    for a in &mut aggs {
        a.metadata.namespace = Some("dr".into());
        a.metadata.uid = Some("uid".into());
        a.metadata.generation = Some(1);
    }
    (streams, aggs)
}

fn ready_deployment(ready: i32) -> Deployment {
    Deployment {
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn an_unreachable_source_degrades_only_its_own_route() {
    let (streams, aggs) = three_regions();
    let agg = &aggs[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let deployments: BTreeMap<String, Deployment> = plan
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), ready_deployment(1)))
        .collect();
    let mut obs = AggregateObservation {
        reach: Reach::Reachable,
        routes: BTreeMap::new(),
    };
    for r in &plan.routes {
        let source_reach = if r.source_region == "west" {
            Reach::Unreachable("west regional cluster is unreachable".into())
        } else {
            Reach::Reachable
        };
        obs.routes.insert(
            r.deployment.clone(),
            RouteObservation {
                source_reach,
                lag_records: Some(0),
                lag_seconds: Some(0.0),
                last_checkpoint_age_seconds: Some(1.0),
                last_checkpoint_ms: Some(1_764_590_400_000),
            },
        );
    }
    let status = build_status(agg, &plan, &deployments, Some(&obs), None);
    let states: BTreeMap<&str, &str> = status
        .routes
        .iter()
        .map(|r| (r.source_region.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("central", "Ready"),
            ("east", "Ready"),
            ("west", "Degraded")
        ])
    );
    let west = status
        .routes
        .iter()
        .find(|r| r.source_region == "west")
        .expect("west route");
    assert!(
        west.message
            .as_deref()
            .unwrap_or_default()
            .contains("ClusterUnreachable"),
        "{west:?}"
    );
    let ready = find_condition(&status.conditions, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "RouteDegraded")
    );
    assert_eq!(
        find_condition(&status.conditions, "Degraded").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(status.routes_ready.as_deref(), Some("2/3"));
    assert_eq!(status.max_lag_records, Some(0));
}

#[test]
fn all_routes_with_ready_replicas_make_the_aggregate_ready() {
    let (streams, aggs) = three_regions();
    let plan = plan_aggregate(&aggs[1], &streams).expect("valid");
    let mut deployments: BTreeMap<String, Deployment> = plan
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), ready_deployment(0)))
        .collect();
    let pending = build_status(&aggs[1], &plan, &deployments, None, None);
    assert_eq!(
        find_condition(&pending.conditions, "Ready").map(|c| c.reason.as_str()),
        Some("RoutesPending")
    );
    for d in deployments.values_mut() {
        *d = ready_deployment(1);
    }
    let ready = build_status(&aggs[1], &plan, &deployments, None, None);
    let c = find_condition(&ready.conditions, "Ready").expect("Ready");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RoutesReady")
    );
    assert!(
        ready
            .routes
            .iter()
            .all(|r| r.state == "Ready" && r.ready_replicas == 1)
    );
}

/// Kafka as the tests want it: end offsets and reachability set by the test.
#[derive(Default)]
struct FakeKafka {
    ends: Mutex<BTreeMap<String, Vec<i64>>>,
    down: Mutex<bool>,
    progress: Mutex<BTreeMap<String, RouteProgress>>,
}

impl FakeKafka {
    fn fail<T>(&self) -> Result<T, KafkaFailure> {
        Err(KafkaFailure {
            message: "cluster is unreachable".into(),
            category: "Unreachable",
            transient: true,
        })
    }
    fn is_down(&self) -> bool {
        self.down.lock().map(|d| *d).unwrap_or(true)
    }
}

impl ClusterAdmin for FakeKafka {
    fn describe_topics<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: Option<&'a [String]>,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaFailure>> {
        async { Ok(BTreeMap::new()) }.boxed()
    }
    fn create_topics<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a [NewTopic],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async { Ok(()) }.boxed()
    }
    fn grow_partitions<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a str,
        _: i32,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async { Ok(()) }.boxed()
    }
    fn alter_topic_config<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a str,
        _: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async { Ok(()) }.boxed()
    }
    fn delete_topics<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async { Ok(()) }.boxed()
    }
    fn end_offsets<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<i64>>, KafkaFailure>> {
        async move {
            if self.is_down() && conn.name == "source" {
                return self.fail();
            }
            Ok(self.ends.lock().map(|e| e.clone()).unwrap_or_default())
        }
        .boxed()
    }
    fn group_position<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a str,
        _: &'a [String],
        _: std::time::Duration,
    ) -> BoxFuture<'a, Result<tributary_operator::kafka::GroupPosition, KafkaFailure>> {
        async move {
            if self.is_down() {
                return self.fail();
            }
            Ok(Default::default())
        }
        .boxed()
    }
    fn route_progress<'a>(
        &'a self,
        _: &'a ResolvedConnection,
        _: &'a str,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, RouteProgress>, KafkaFailure>> {
        async move { Ok(self.progress.lock().map(|p| p.clone()).unwrap_or_default()) }.boxed()
    }
}

fn drain<T>(rx: &mut futures::channel::mpsc::UnboundedReceiver<T>) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

#[tokio::test]
async fn prober_triggers_a_reconcile_only_when_reachability_or_lag_changes() {
    let kafka = Arc::new(FakeKafka::default());
    kafka
        .ends
        .lock()
        .expect("lock")
        .insert("orders".into(), vec![10, 5]);
    let (prober, mut triggers) = Prober::new();
    let agg: ObjectRef<AggregateCluster> = ObjectRef::new("west").within("dr");
    let source = ResolvedConnection {
        name: "source".into(),
        bootstrap_servers: vec!["east:9092".into()],
        ..Default::default()
    };
    let aggregate = ResolvedConnection {
        name: "aggregate".into(),
        bootstrap_servers: vec!["west-agg:9092".into()],
        ..Default::default()
    };
    prober.watch_aggregate(
        agg.clone(),
        aggregate,
        "west".into(),
        "tributary.checkpoints".into(),
        vec![RouteTarget {
            deployment: "tributary-route-east-to-west".into(),
            source_region: "east".into(),
            source,
            topics: vec!["orders".into()],
        }],
    );

    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(
        drain(&mut triggers.aggregates),
        1,
        "first observation triggers"
    );
    let obs = prober.aggregate(&agg).expect("observed");
    assert_eq!(
        obs.routes["tributary-route-east-to-west"].lag_records,
        Some(15),
        "nothing checkpointed yet"
    );

    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(
        drain(&mut triggers.aggregates),
        0,
        "same state: no reconcile"
    );

    // The replicator caught up: lag 0 and a reconcile.
    kafka.progress.lock().expect("lock").insert(
        "east->west".into(),
        RouteProgress {
            next_source_offsets: BTreeMap::from([
                (("orders".to_string(), 0), 10),
                (("orders".to_string(), 1), 5),
            ]),
            last_checkpoint_ms: Some(0),
        },
    );
    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(drain(&mut triggers.aggregates), 1);
    let route =
        prober.aggregate(&agg).expect("observed").routes["tributary-route-east-to-west"].clone();
    assert_eq!((route.lag_records, route.lag_seconds), (Some(0), Some(0.0)));

    *kafka.down.lock().expect("lock") = true;
    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(
        drain(&mut triggers.aggregates),
        1,
        "source became unreachable"
    );
    let route =
        prober.aggregate(&agg).expect("observed").routes["tributary-route-east-to-west"].clone();
    assert!(
        matches!(route.source_reach, Reach::Unreachable(_)),
        "{route:?}"
    );
}

#[test]
fn asking_for_fewer_partitions_is_refused_with_a_condition_naming_the_topic() {
    let (streams, _) = three_regions();
    let mut rs = streams[0].clone();
    rs.spec.topics[0].partitions = 2; // orders has 4 on the cluster
    let valid = tributary_operator::model::validate_stream(&rs).expect("valid");
    let observed: BTreeMap<String, ObservedTopic> = rs
        .spec
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                ObservedTopic {
                    partitions: 4,
                    config: t.config.clone(),
                },
            )
        })
        .collect();
    let topics: Vec<String> = rs.spec.topics.iter().map(|t| t.name.clone()).collect();
    let changes = tributary_operator::kafka::plan_topic_changes(
        &rs.spec
            .topics
            .iter()
            .map(|t| NewTopic {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: 1,
                config: t.config.clone(),
            })
            .collect::<Vec<_>>(),
        &observed,
    );
    assert!(changes.grow.is_empty() && changes.create.is_empty());
    let status = tributary_operator::regional_stream::build_status(
        &rs,
        &valid,
        &observed,
        &topics,
        &changes.shrink_refused,
        None,
    );
    let degraded = find_condition(&status.conditions, "Degraded").expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PartitionsShrinkRefused")
    );
    assert!(degraded.message.contains("orders"), "{}", degraded.message);
    let orders = status
        .topics
        .iter()
        .find(|t| t.name == "orders")
        .expect("orders");
    assert_eq!(orders.partitions, Some(4));
    assert!(
        orders
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("never shrink")
    );
}

#[test]
fn observe_only_streams_report_missing_topics_without_creating_them() {
    let (streams, _) = three_regions();
    let mut rs = streams[0].clone();
    rs.spec.manage_topics = false;
    let valid = tributary_operator::model::validate_stream(&rs).expect("valid");
    let topics: Vec<String> = rs.spec.topics.iter().map(|t| t.name.clone()).collect();
    let status = tributary_operator::regional_stream::build_status(
        &rs,
        &valid,
        &BTreeMap::new(),
        &topics,
        &[],
        None,
    );
    let ready = find_condition(&status.conditions, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "TopicMissing")
    );
    assert_eq!(status.topics_ready.as_deref(), Some("0/2"));
    assert!(
        status.topics[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("manageTopics is false")
    );
}

#[tokio::test]
async fn prober_forgets_objects_that_are_gone() {
    let kafka = FakeKafka::default();
    let (prober, _triggers) = Prober::new();
    let rs: ObjectRef<RegionalStream> = ObjectRef::new("east").within("dr");
    prober.watch_stream(
        rs.clone(),
        ResolvedConnection::default(),
        vec!["orders".into()],
    );
    prober.probe_once(&kafka).await;
    assert!(prober.stream(&rs).is_some());
    prober.retain(|_| false, |_| true);
    assert!(prober.stream(&rs).is_none());
}

#[test]
fn a_route_whose_rollout_stalled_is_degraded_not_pending() {
    let (streams, aggs) = three_regions();
    let plan = plan_aggregate(&aggs[0], &streams).expect("valid");
    let mut deployments: BTreeMap<String, Deployment> = plan
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), ready_deployment(1)))
        .collect();
    let stuck = plan.routes[0].deployment.clone();
    deployments.insert(
        stuck.clone(),
        Deployment {
            status: Some(DeploymentStatus {
                ready_replicas: Some(0),
                conditions: Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some("ProgressDeadlineExceeded".into()),
                    message: Some(format!(
                        "ReplicaSet \"{stuck}-abc\" has timed out progressing."
                    )),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let status = build_status(&aggs[0], &plan, &deployments, None, None);
    let route = status
        .routes
        .iter()
        .find(|r| r.deployment == stuck)
        .expect("route");
    assert_eq!(route.state, "Degraded");
    assert!(
        route
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("RolloutStalled"),
        "{route:?}"
    );
    assert_eq!(
        find_condition(&status.conditions, "Ready").map(|c| c.reason.as_str()),
        Some("RouteDegraded")
    );
}

#[tokio::test]
async fn records_produced_at_every_probe_do_not_trigger_a_reconcile_at_every_probe() {
    let kafka = Arc::new(FakeKafka::default());
    kafka
        .ends
        .lock()
        .expect("lock")
        .insert("orders".into(), vec![10, 5]);
    let (prober, mut triggers) = Prober::new();
    let rs: ObjectRef<RegionalStream> = ObjectRef::new("east").within("dr");
    let agg: ObjectRef<AggregateCluster> = ObjectRef::new("west").within("dr");
    let source = ResolvedConnection {
        name: "source".into(),
        bootstrap_servers: vec!["east:9092".into()],
        ..Default::default()
    };
    prober.watch_stream(rs.clone(), source.clone(), vec!["orders".into()]);
    prober.watch_aggregate(
        agg.clone(),
        ResolvedConnection {
            name: "aggregate".into(),
            bootstrap_servers: vec!["west-agg:9092".into()],
            ..Default::default()
        },
        "west".into(),
        "tributary.checkpoints".into(),
        vec![RouteTarget {
            deployment: "tributary-route-east-to-west".into(),
            source_region: "east".into(),
            source,
            topics: vec!["orders".into()],
        }],
    );
    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(drain(&mut triggers.streams), 1, "first observation");
    assert_eq!(drain(&mut triggers.aggregates), 1, "first observation");

    // Traffic: end offsets and lag move at every probe. Before, every probe reconciled the
    // stream, and each of those every AggregateCluster of the namespace.
    for i in 1..=6 {
        kafka
            .ends
            .lock()
            .expect("lock")
            .insert("orders".into(), vec![10 + 3 * i, 5 + i]);
        prober.probe_once(kafka.as_ref()).await;
    }
    assert_eq!(
        drain(&mut triggers.streams),
        0,
        "offsets moving: no reconcile"
    );
    assert_eq!(
        drain(&mut triggers.aggregates),
        0,
        "lag moving: no reconcile"
    );
    assert_eq!(
        prober.stream(&rs).expect("observed").end_offsets["orders"],
        vec![28, 11],
        "the observation itself is current"
    );

    // A partition added is a change of shape: the stream reconciles at once.
    kafka
        .ends
        .lock()
        .expect("lock")
        .insert("orders".into(), vec![28, 11, 0]);
    prober.probe_once(kafka.as_ref()).await;
    assert_eq!(drain(&mut triggers.streams), 1, "partitions grew");
}
