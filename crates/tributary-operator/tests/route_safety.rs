//! What happens to running routes when something around them goes wrong, on the pure steps
//! (no cluster, no Kafka): an invalid source freezes its route instead of losing it, a source
//! whose Secret is missing degrades only its own route, a replicator that fails after its
//! rollout shows Degraded, and only changes an AggregateCluster reads of a source reconcile it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use kube::core::DeserializeGuard;
use kube::{Resource, ResourceExt};
use serde::Deserialize as _;
use tributary_api::regional_stream::TopicStatus;
use tributary_api::{AggregateCluster, RegionalStream, RegionalStreamStatus, find_condition};
use tributary_operator::aggregate_cluster::{
    build_status, build_status_with, is_applied, reconcile_fingerprint, source_fingerprint,
};
use tributary_operator::model::{UnreadableStream, plan_aggregate, plan_aggregate_with};
use tributary_operator::replicator::build_route_deployment;
use tributary_operator::secrets::SecretVersions;

fn three_regions() -> (Vec<RegionalStream>, Vec<AggregateCluster>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/three-regions/");
    let parse = |file: &str| -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(
            &std::fs::read_to_string(format!("{root}{file}")).expect("example"),
        )
        .map(|d| serde_yaml::Value::deserialize(d).expect("yaml"))
        .filter(|v| !v.is_null())
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

/// A Deployment whose rollout completed for its current generation, with `ready` replicas now.
fn rolled_out(ready: i32, observed_generation: i64) -> Deployment {
    let mut d = Deployment::default();
    d.metadata.generation = Some(2);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(observed_generation),
        replicas: Some(1),
        updated_replicas: Some(1),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        conditions: Some(vec![
            DeploymentCondition {
                type_: "Available".into(),
                status: if ready > 0 { "True" } else { "False" }.into(),
                reason: Some("MinimumReplicasUnavailable".into()),
                message: Some("Deployment does not have minimum availability.".into()),
                ..Default::default()
            },
            DeploymentCondition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: Some("NewReplicaSetAvailable".into()),
                message: Some("ReplicaSet \"r-1\" has successfully progressed.".into()),
                ..Default::default()
            },
        ]),
        ..Default::default()
    });
    d
}

#[test]
fn an_invalid_source_freezes_its_route_and_the_status_names_the_stream_and_the_field() {
    let (mut streams, aggs) = three_regions();
    let agg = &aggs[0];
    let healthy = plan_aggregate(agg, &streams).expect("valid");
    let broken = streams[0].name_any();
    streams[0].spec.topic_pattern = Some("orders-(".into());
    let plan = plan_aggregate(agg, &streams).expect("the AggregateCluster itself is valid");

    // The broken source is not planned (nothing is updated from it) but not forgotten either:
    // its route is frozen, so prune keeps its Deployment.
    assert_eq!(plan.routes.len(), healthy.routes.len() - 1);
    assert!(plan.routes.iter().all(|r| r.source != broken));
    assert_eq!(plan.invalid_sources.len(), 1, "{:?}", plan.invalid_sources);
    let frozen = &plan.invalid_sources[0];
    let before = healthy
        .routes
        .iter()
        .find(|r| r.source == broken)
        .expect("route of the broken source");
    assert_eq!(frozen.deployment, before.deployment);
    assert!(
        frozen.problem.contains(&format!("RegionalStream {broken}"))
            && frozen.problem.contains("spec.topicPattern"),
        "{}",
        frozen.problem
    );

    // The status keeps the route (Degraded, its replicas as they run) and says why.
    let deployments: BTreeMap<String, Deployment> = healthy
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), rolled_out(1, 2)))
        .collect();
    let status = build_status(agg, &plan, &deployments, None, None);
    let route = status
        .routes
        .iter()
        .find(|r| r.deployment == frozen.deployment)
        .expect("the frozen route is still in status");
    assert_eq!(
        (route.state.as_str(), route.ready_replicas),
        ("Degraded", 1)
    );
    assert!(
        route
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("SourceInvalid:") && m.contains("keeps running")),
        "{route:?}"
    );
    let degraded = find_condition(&status.conditions, "Degraded").expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SourceInvalid")
    );
    assert!(
        degraded.message.contains(&broken) && degraded.message.contains("spec.topicPattern"),
        "{}",
        degraded.message
    );
}

#[test]
fn an_unreadable_source_freezes_its_route_too() {
    let (streams, aggs) = three_regions();
    let agg = &aggs[0];
    let mut meta = streams[0].metadata.clone();
    meta.name = Some("drifted".into());
    let plan = plan_aggregate_with(
        agg,
        &streams[1..],
        &[UnreadableStream {
            metadata: meta,
            error: "unknown variant `Sometimes`".into(),
        }],
    )
    .expect("valid");
    assert_eq!(plan.invalid_sources.len(), 1);
    assert!(plan.invalid_sources[0].problem.contains("drifted"));
    assert!(
        plan.invalid_sources[0].deployment.contains("drifted-to-"),
        "{:?}",
        plan.invalid_sources[0]
    );
}

#[test]
fn a_source_whose_secret_is_missing_degrades_only_its_own_route() {
    let (streams, aggs) = three_regions();
    let agg = &aggs[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let deployments: BTreeMap<String, Deployment> = plan
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), rolled_out(1, 2)))
        .collect();
    let held_route = plan.routes[1].deployment.clone();
    let held = BTreeMap::from([(
        held_route.clone(),
        "SecretMissing: RegionalStream x: Secret east-sasl (spec.kafka.sasl.password) not found; create it".to_string(),
    )]);
    let status = build_status_with(agg, &plan, &deployments, None, None, &held);
    for r in &status.routes {
        let want = if r.deployment == held_route {
            "Degraded"
        } else {
            "Ready"
        };
        assert_eq!(r.state, want, "{r:?}");
    }
    let degraded = find_condition(&status.conditions, "Degraded").expect("Degraded");
    assert_eq!(degraded.reason, "SecretMissing");
    assert!(
        degraded.message.contains("east-sasl"),
        "{}",
        degraded.message
    );
}

#[test]
fn a_replicator_that_fails_after_its_rollout_is_degraded_not_pending() {
    let (streams, aggs) = three_regions();
    let agg = &aggs[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let mut deployments: BTreeMap<String, Deployment> = plan
        .routes
        .iter()
        .map(|r| (r.deployment.clone(), rolled_out(1, 2)))
        .collect();
    let failed = plan.routes[0].deployment.clone();
    // The rollout completed (Progressing stays NewReplicaSetAvailable; the progress deadline
    // never fires again), then the replicator crashed: 0 of 1 ready.
    deployments.insert(failed.clone(), rolled_out(0, 2));
    let status = build_status(agg, &plan, &deployments, None, None);
    let route = status
        .routes
        .iter()
        .find(|r| r.deployment == failed)
        .expect("route");
    assert_eq!(route.state, "Degraded", "{route:?}");
    assert!(
        route
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("ReplicatorUnready:")),
        "{route:?}"
    );
    assert_eq!(
        find_condition(&status.conditions, "Ready").map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("False", "RouteDegraded"))
    );

    // While a new generation rolls out, missing replicas are Pending (Recreate stops the old
    // pod first), not Degraded.
    deployments.insert(failed.clone(), rolled_out(0, 1));
    let status = build_status(agg, &plan, &deployments, None, None);
    let route = status
        .routes
        .iter()
        .find(|r| r.deployment == failed)
        .expect("route");
    assert_eq!(route.state, "Pending", "{route:?}");
}

fn guarded(rs: &RegionalStream) -> DeserializeGuard<RegionalStream> {
    DeserializeGuard(Ok(rs.clone()))
}

#[test]
fn only_what_an_aggregate_reads_of_a_source_reconciles_it() {
    let (streams, _) = three_regions();
    let mut rs = streams[0].clone();
    let topic = rs.spec.topics[0].name.clone();
    let topic_status = |partitions: i32, end: i64| RegionalStreamStatus {
        topics: vec![TopicStatus {
            name: topic.clone(),
            exists: true,
            partitions: Some(partitions),
            end_offset_total: Some(end),
            produce_rate: Some(end as f64 / 10.0),
            message: None,
        }],
        topics_ready: Some("1/1".into()),
        ..Default::default()
    };
    rs.status = Some(topic_status(3, 100));
    let before = source_fingerprint(&guarded(&rs));

    // Records produced (end offsets, rates) and condition churn: nothing an aggregate reads.
    rs.status = Some(topic_status(3, 250));
    rs.metadata.resource_version = Some("42".into());
    assert_eq!(source_fingerprint(&guarded(&rs)), before);

    // Partitions grown, a label changed, the spec changed: the aggregates must replan.
    rs.status = Some(topic_status(6, 250));
    assert_ne!(source_fingerprint(&guarded(&rs)), before);
    rs.status = Some(topic_status(3, 250));
    rs.labels_mut().insert("tier".into(), "gold".into());
    assert_ne!(source_fingerprint(&guarded(&rs)), before);
    rs.labels_mut().remove("tier");
    assert_eq!(source_fingerprint(&guarded(&rs)), before);
    rs.spec.topic_pattern = Some("audit-.*".into());
    assert_ne!(source_fingerprint(&guarded(&rs)), before);
}

#[test]
fn the_operators_own_status_writes_do_not_retrigger_an_aggregate() {
    let (_, aggs) = three_regions();
    let mut agg = aggs[0].clone();
    let before = reconcile_fingerprint(&DeserializeGuard(Ok(agg.clone())));
    agg.status = Some(Default::default());
    agg.metadata.resource_version = Some("43".into());
    assert_eq!(
        reconcile_fingerprint(&DeserializeGuard(Ok(agg.clone()))),
        before
    );
    agg.metadata.generation = Some(2);
    assert_ne!(reconcile_fingerprint(&DeserializeGuard(Ok(agg))), before);
}

#[test]
fn a_deployment_as_last_applied_needs_no_patch_but_drift_does() {
    let (streams, aggs) = three_regions();
    let agg = &aggs[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let owner = agg.controller_owner_ref(&()).expect("uid");
    let desired = build_route_deployment(
        &plan,
        &plan.routes[0],
        "local/tributary:dev",
        &SecretVersions::default(),
        owner,
    );

    // What the API server returns: our fields plus defaults, status, bookkeeping.
    let mut live = serde_json::to_value(&desired).expect("json");
    live["metadata"]["resourceVersion"] = "7".into();
    live["metadata"]["uid"] = "d-uid".into();
    live["metadata"]["managedFields"] = serde_json::json!([{"manager": "tributary-operator"}]);
    live["spec"]["revisionHistoryLimit"] = 10.into();
    let container = &mut live["spec"]["template"]["spec"]["containers"][0];
    container["terminationMessagePath"] = "/dev/termination-log".into();
    container["imagePullPolicy"] = "IfNotPresent".into();
    container["readinessProbe"]["timeoutSeconds"] = 1.into();
    live["status"] = serde_json::json!({"readyReplicas": 1});
    let live: Deployment = serde_json::from_value(live).expect("deployment");
    assert!(is_applied(&live, &desired));

    // Drift of a field the operator owns (an arg edited by hand) is re-applied.
    let mut drifted = live.clone();
    if let Some(args) = drifted
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers[0].args.as_mut())
    {
        args.pop();
    }
    assert!(!is_applied(&drifted, &desired));
}
