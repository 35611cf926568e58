//! The AggregateCluster controller: selects source RegionalStreams, provisions the aggregate
//! topics and the checkpoint topic, and runs one replicator Deployment per route.
//!
//! Pipeline: validate + select sources → dereference (Secrets, aggregate topics) → build
//! (Deployments, pure) → apply (topics, then Deployments by server-side apply) → prune
//! (Deployments of vanished routes, by label) → status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use tributary_api::aggregate_cluster::RouteStatus;
use tributary_api::{AggregateCluster, AggregateClusterStatus, condition_type};

use crate::conditions::{self, Wanted};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::frame::Reconciled;
use crate::kafka::{NewTopic, plan_topic_changes};
use crate::model::{self, AggregatePlan};
use crate::names::{self, FIELD_MANAGER};
use crate::prober::{AggregateObservation, Reach, RouteTarget};
use crate::replicator::build_route_deployment;
use crate::{secrets, status_util};

const KIND: &str = "AggregateCluster";
const RESYNC: Duration = Duration::from_secs(300);

impl Reconciled for AggregateCluster {
    const KIND: &'static str = KIND;

    async fn reconcile(&self, ctx: &Context) -> Result<Action> {
        reconcile_inner(self, ctx).await
    }

    async fn report_failure(&self, ctx: &Context, error: &Error) {
        let _ = status_util::write_status(self, ctx, error_status(self, error)).await;
    }
}

async fn reconcile_inner(agg: &AggregateCluster, ctx: &Context) -> Result<Action> {
    let name = agg.name_any();
    let ns = agg.namespace().unwrap_or_default();
    let obj_ref = ObjectRef::from_obj(agg);
    if agg.meta().deletion_timestamp.is_some() {
        // Route Deployments go with their owner (garbage collection); nothing Kafka-side.
        ctx.prober.forget_aggregate(&obj_ref);
        ctx.metrics.set_routes(&format!("{ns}/{name}"), None);
        return Ok(Action::await_change());
    }

    // Validate (with the selected sources).
    let streams: Vec<_> = ctx
        .streams
        .state()
        .iter()
        .filter_map(|s| s.0.as_ref().ok().cloned())
        .collect();
    let plan = model::plan_aggregate(agg, &streams)?;
    let image = plan
        .replicator
        .image
        .clone()
        .or_else(|| ctx.default_image.clone())
        .ok_or_else(|| Error::InvalidSpec(format!(
            "AggregateCluster {name}: no replicator image: set spec.replicator.image, or TRIBUTARY_IMAGE on the operator"
        )))?;
    let owner = agg
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec(format!("AggregateCluster {name} has no uid yet")))?;

    // Dereference: Secrets of the aggregate and of every source (for the prober).
    let conn = secrets::resolve(
        &ctx.client,
        &ns,
        format!(
            "aggregate cluster of {} (AggregateCluster {ns}/{name})",
            plan.region
        ),
        &plan.kafka,
        "spec.kafka",
    )
    .await?;
    let mut targets = Vec::new();
    for r in &plan.routes {
        let source = secrets::resolve(
            &ctx.client,
            &ns,
            format!(
                "regional cluster of {} (RegionalStream {ns}/{})",
                r.source_region, r.source
            ),
            &r.source_kafka,
            "spec.kafka",
        )
        .await?;
        targets.push(RouteTarget {
            deployment: r.deployment.clone(),
            source_region: r.source_region.clone(),
            source,
            topics: r.topics.clone(),
        });
    }
    ctx.prober.watch_aggregate(
        obj_ref.clone(),
        conn.clone(),
        plan.region.clone(),
        plan.checkpoints.topic.clone(),
        targets,
    );

    // Apply, Kafka side: aggregate topics and the checkpoint topic. A failure here does not
    // stop the Deployments (they wait for the cluster themselves); it is reported and retried.
    let topic_result = apply_topics(agg, ctx, &plan, &conn).await;

    // Build and apply the route Deployments.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = names::selector_string(&names::aggregate_selector_labels(&name));
    let existing = deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Dereference {
            what: format!("Deployments of AggregateCluster {ns}/{name}"),
            source,
        })?;
    let existing_names: BTreeSet<String> = existing.items.iter().map(|d| d.name_any()).collect();
    let regarding = agg.object_ref(&());
    let mut applied: BTreeMap<String, Deployment> = BTreeMap::new();
    for route in &plan.routes {
        let desired = build_route_deployment(&plan, route, &image, owner.clone());
        let result = deployments
            .patch(
                &route.deployment,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .map_err(|source| Error::Apply {
                what: format!("Deployment {ns}/{}", route.deployment),
                source,
            })?;
        if !existing_names.contains(&route.deployment) {
            ctx.event(
                &regarding,
                false,
                "RouteCreated",
                "ApplyDeployment",
                format!(
                    "route {} -> {}: Deployment {}",
                    route.source, name, route.deployment
                ),
            )
            .await;
        }
        applied.insert(route.deployment.clone(), result);
    }

    // Prune: Deployments of routes whose source vanished or is no longer selected.
    for d in &existing.items {
        let dn = d.name_any();
        if applied.contains_key(&dn) || d.meta().deletion_timestamp.is_some() {
            continue;
        }
        deployments
            .delete(&dn, &DeleteParams::background())
            .await
            .map_err(|source| Error::Prune {
                what: format!("Deployment {ns}/{dn}"),
                source,
            })?;
        let source = d
            .labels()
            .get(names::SOURCE_LABEL)
            .cloned()
            .unwrap_or_default();
        ctx.event(&regarding, false, "RouteDeleted", "DeleteDeployment",
            format!("route {source} -> {name}: the source is gone or no longer selected; deleted Deployment {dn}")).await;
    }

    // Status.
    let observation = ctx.prober.aggregate(&obj_ref);
    let status = build_status(
        agg,
        &plan,
        &applied,
        observation.as_ref(),
        topic_result.as_ref().err(),
    );
    let states: Vec<&str> = status.routes.iter().map(|r| r.state.as_str()).collect();
    ctx.metrics
        .set_routes(&format!("{ns}/{name}"), Some(&states));
    announce_route_transitions(ctx, agg, &status).await;
    status_util::write_status(agg, ctx, status).await?;
    topic_result?;
    Ok(Action::requeue(RESYNC))
}

async fn apply_topics(
    agg: &AggregateCluster,
    ctx: &Context,
    plan: &AggregatePlan,
    conn: &crate::kafka::ResolvedConnection,
) -> Result<()> {
    let mut wanted: Vec<NewTopic> = plan
        .topics
        .iter()
        .map(|(t, a)| NewTopic {
            name: t.clone(),
            partitions: a.partitions,
            replication_factor: a.replication_factor,
            config: BTreeMap::new(),
        })
        .collect();
    let retention_ms = tributary_runtime::parse_duration(&plan.checkpoints.retention)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .map_err(|e| Error::InvalidSpec(format!("spec.checkpoints.retention: {e}")))?;
    wanted.push(NewTopic {
        name: plan.checkpoints.topic.clone(),
        partitions: 1,
        replication_factor: plan
            .topics
            .values()
            .map(|t| t.replication_factor)
            .max()
            .unwrap_or(-1),
        config: BTreeMap::from([
            ("cleanup.policy".to_string(), "delete".to_string()),
            ("retention.ms".to_string(), retention_ms.to_string()),
        ]),
    });
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
    let keys = vec!["cleanup.policy".to_string(), "retention.ms".to_string()];
    let failure = Error::from;
    let observed = ctx
        .admin
        .describe_topics(conn, Some(&names), &keys)
        .await
        .map_err(failure)?;
    let changes = plan_topic_changes(&wanted, &observed);
    let regarding = agg.object_ref(&());
    if !changes.create.is_empty() {
        ctx.admin
            .create_topics(conn, &changes.create)
            .await
            .map_err(failure)?;
        let created: Vec<&str> = changes.create.iter().map(|t| t.name.as_str()).collect();
        ctx.event(
            &regarding,
            false,
            "TopicCreated",
            "CreateTopic",
            format!(
                "created topics {} on the aggregate cluster of {}",
                created.join(", "),
                plan.region
            ),
        )
        .await;
    }
    for (topic, from, to) in &changes.grow {
        ctx.admin
            .grow_partitions(conn, topic, *to)
            .await
            .map_err(failure)?;
        ctx.event(
            &regarding,
            false,
            "PartitionsGrown",
            "GrowPartitions",
            format!("aggregate topic {topic}: partitions {from} -> {to} (to match the sources)"),
        )
        .await;
    }
    for (topic, config) in &changes.alter_config {
        ctx.admin
            .alter_topic_config(conn, topic, config)
            .await
            .map_err(failure)?;
    }
    // Only partition mismatches on data topics matter: more aggregate partitions than the
    // source is harmless (p still maps to p), so shrink refusals are not errors here.
    Ok(())
}

/// The status from the applied Deployments and the prober's last observation. Pure.
pub fn build_status(
    agg: &AggregateCluster,
    plan: &AggregatePlan,
    deployments: &BTreeMap<String, Deployment>,
    observation: Option<&AggregateObservation>,
    topic_error: Option<&Error>,
) -> AggregateClusterStatus {
    let old = agg.status.clone().unwrap_or_default();
    let mut routes = Vec::new();
    for r in &plan.routes {
        let d = deployments.get(&r.deployment);
        let ready = d
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let want = plan.replicator.replicas;
        let ro = observation.and_then(|o| o.routes.get(&r.deployment));
        let (state, message) = if want == 0 {
            ("Paused", Some("spec.replicator.replicas is 0".to_string()))
        } else if let Some(Reach::Unreachable(m)) = ro.map(|o| &o.source_reach) {
            (
                "Degraded",
                Some(format!(
                    "ClusterUnreachable: source {}: {m}",
                    r.source_region
                )),
            )
        } else if let Some(Reach::Unreachable(m)) = observation.map(|o| &o.reach) {
            (
                "Degraded",
                Some(format!(
                    "ClusterUnreachable: aggregate {}: {m}",
                    plan.region
                )),
            )
        } else if ready >= want {
            ("Ready", None)
        } else if let Some(m) = d.and_then(stalled_rollout) {
            ("Degraded", Some(format!("RolloutStalled: {m}")))
        } else {
            (
                "Pending",
                Some(format!("{ready}/{want} replicator replicas ready")),
            )
        };
        routes.push(RouteStatus {
            source: r.source.clone(),
            source_region: r.source_region.clone(),
            deployment: r.deployment.clone(),
            ready_replicas: ready,
            lag_records: ro.and_then(|o| o.lag_records),
            lag_seconds: ro.and_then(|o| o.lag_seconds),
            last_checkpoint_time: ro
                .and_then(|o| o.last_checkpoint_ms)
                .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            last_checkpoint_age_seconds: None,
            state: state.to_string(),
            message,
        });
    }
    let ready = routes.iter().filter(|r| r.state == "Ready").count();
    let degraded: Vec<&RouteStatus> = routes.iter().filter(|r| r.state == "Degraded").collect();
    let pending = routes.iter().filter(|r| r.state == "Pending").count();
    let agg_unreachable = match observation.map(|o| &o.reach) {
        Some(Reach::Unreachable(m)) => Some(m.clone()),
        _ => None,
    };
    let wanted: Vec<Wanted> =
        if let Some(m) = agg_unreachable.or_else(|| topic_error.map(|e| e.to_string())) {
            vec![
                Wanted::new(
                    condition_type::READY,
                    false,
                    "ClusterUnreachable",
                    m.clone(),
                ),
                Wanted::new(condition_type::DEGRADED, true, "ClusterUnreachable", m),
            ]
        } else if !degraded.is_empty() {
            let m = degraded
                .iter()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r.deployment,
                        r.message.clone().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            vec![
                Wanted::new(condition_type::READY, false, "RouteDegraded", m.clone()),
                Wanted::new(condition_type::DEGRADED, true, "RouteDegraded", m),
            ]
        } else if pending > 0 {
            vec![
                Wanted::new(
                    condition_type::READY,
                    false,
                    "RoutesPending",
                    format!("{ready}/{} routes ready", routes.len()),
                ),
                Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
            ]
        } else if routes.iter().any(|r| r.state == "Paused") {
            vec![
                Wanted::new(
                    condition_type::READY,
                    true,
                    "RoutesPaused",
                    format!(
                        "spec.replicator.replicas is 0: {} routes paused, {ready} ready",
                        routes.iter().filter(|r| r.state == "Paused").count()
                    ),
                ),
                Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
            ]
        } else if routes.is_empty() {
            vec![
                Wanted::new(
                    condition_type::READY,
                    true,
                    "NoSources",
                    "no RegionalStream matches spec.sources",
                ),
                Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
            ]
        } else {
            vec![
                Wanted::new(
                    condition_type::READY,
                    true,
                    "RoutesReady",
                    format!("{ready}/{} routes ready", routes.len()),
                ),
                Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
            ]
        };
    AggregateClusterStatus {
        observed_generation: agg.meta().generation,
        conditions: conditions::merge(&old.conditions, &wanted, agg.meta().generation),
        routes_ready: Some(format!("{ready}/{}", routes.len())),
        max_lag_records: routes.iter().filter_map(|r| r.lag_records).max(),
        routes,
    }
}

/// The Deployment controller gave up waiting for the replicators (`progressDeadlineSeconds`):
/// the route is not just starting, it is stuck (crash loop, unschedulable, failing probes).
fn stalled_rollout(d: &Deployment) -> Option<String> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "progress deadline exceeded".into())
        })
}

async fn announce_route_transitions(
    ctx: &Context,
    agg: &AggregateCluster,
    new: &AggregateClusterStatus,
) {
    let old = agg.status.clone().unwrap_or_default();
    let regarding = agg.object_ref(&());
    for r in &new.routes {
        let before = old
            .routes
            .iter()
            .find(|o| o.deployment == r.deployment)
            .map(|o| o.state.as_str());
        match (before, r.state.as_str()) {
            (Some(b), "Degraded") if b != "Degraded" => {
                ctx.event(
                    &regarding,
                    true,
                    "RouteDegraded",
                    "ProbeRoute",
                    format!(
                        "route {} -> {}: {}",
                        r.source,
                        agg.name_any(),
                        r.message.clone().unwrap_or_default()
                    ),
                )
                .await;
            }
            (None, "Degraded") => {
                ctx.event(
                    &regarding,
                    true,
                    "RouteDegraded",
                    "ProbeRoute",
                    format!(
                        "route {} -> {}: {}",
                        r.source,
                        agg.name_any(),
                        r.message.clone().unwrap_or_default()
                    ),
                )
                .await;
            }
            (Some(b), "Ready") if b != "Ready" => {
                ctx.event(
                    &regarding,
                    false,
                    "RouteReady",
                    "ProbeRoute",
                    format!(
                        "route {} -> {}: {} replicas ready",
                        r.source,
                        agg.name_any(),
                        r.ready_replicas
                    ),
                )
                .await;
            }
            _ => {}
        }
    }
}

fn error_status(agg: &AggregateCluster, e: &Error) -> AggregateClusterStatus {
    let old = agg.status.clone().unwrap_or_default();
    let reason = e.category();
    let wanted = [
        Wanted::new(condition_type::READY, false, reason, e.to_string()),
        Wanted::new(condition_type::DEGRADED, true, reason, e.to_string()),
    ];
    AggregateClusterStatus {
        observed_generation: agg.meta().generation,
        conditions: conditions::merge(&old.conditions, &wanted, agg.meta().generation),
        ..old
    }
}
