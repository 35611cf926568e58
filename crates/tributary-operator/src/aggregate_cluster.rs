//! The AggregateCluster controller: selects source RegionalStreams, provisions the aggregate
//! topics and the checkpoint topic, and runs one replicator Deployment per route.
//!
//! Pipeline: validate + select sources → dereference (Secrets, aggregate topics) → build
//! (Deployments, pure) → apply (topics, then Deployments by server-side apply) → prune
//! (Deployments of vanished routes, by label) → status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use tributary_api::aggregate_cluster::RouteStatus;
use tributary_api::{AggregateCluster, AggregateClusterStatus, RegionalStream, condition_type};

use crate::conditions::{self, Wanted};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::frame::Reconciled;
use crate::kafka::{NewTopic, plan_topic_changes};
use crate::model::{self, AggregatePlan, UnreadableStream};
use crate::names::{self, FIELD_MANAGER};
use crate::prober::{AggregateObservation, Reach, RouteTarget};
use crate::replicator::build_route_deployment;
use crate::secrets::SecretVersions;
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

    fn region(&self) -> Option<&str> {
        Some(&self.spec.region)
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

    // Validate (with the selected sources). A selected source that does not validate, or
    // cannot be read, freezes its own route (see `plan.invalid_sources`).
    let mut streams = Vec::new();
    let mut unreadable = Vec::new();
    for s in ctx.streams.state() {
        match &s.0 {
            Ok(rs) => streams.push(rs.clone()),
            Err(e) => unreadable.push(UnreadableStream {
                metadata: e.metadata.clone(),
                error: e.error.clone(),
            }),
        }
    }
    let plan = model::plan_aggregate_with(agg, &streams, &unreadable)?;
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

    // Dereference: Secrets of the aggregate (every route needs them) and of every source (for
    // the prober). A source whose Secrets cannot be read holds only its own route.
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
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    // Per route: the versions of its source's Secrets (its pods mount them).
    let mut source_secrets: BTreeMap<String, SecretVersions> = BTreeMap::new();
    for r in &plan.routes {
        let resolved = secrets::resolve(
            &ctx.client,
            &ns,
            format!(
                "regional cluster of {} (RegionalStream {ns}/{})",
                r.source_region, r.source
            ),
            &r.source_kafka,
            "spec.kafka",
        )
        .await;
        let source = match resolved {
            Ok(source) => source,
            Err(e) => {
                held.insert(r.deployment.clone(), source_secret_problem(&r.source, &e));
                continue;
            }
        };
        source_secrets.insert(r.deployment.clone(), source.secret_versions.clone());
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
    let existing_by_name: BTreeMap<String, &Deployment> =
        existing.items.iter().map(|d| (d.name_any(), d)).collect();
    let regarding = agg.object_ref(&());
    let mut applied: BTreeMap<String, Deployment> = BTreeMap::new();
    for route in &plan.routes {
        if held.contains_key(&route.deployment) {
            // Held: what runs keeps running, unchanged, until its Secrets can be read.
            if let Some(d) = existing_by_name.get(&route.deployment) {
                applied.insert(route.deployment.clone(), (*d).clone());
            }
            continue;
        }
        let secret_versions = source_secrets.get(&route.deployment).map_or_else(
            || conn.secret_versions.clone(),
            |s| s.merged(&conn.secret_versions),
        );
        let desired = build_route_deployment(&plan, route, &image, &secret_versions, owner.clone());
        if let Some(live) = existing_by_name.get(&route.deployment)
            && is_applied(live, &desired)
        {
            // Same object as the last apply: an SSA patch would change nothing but cost a write.
            applied.insert(route.deployment.clone(), (*live).clone());
            continue;
        }
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
        if !existing_by_name.contains_key(&route.deployment) {
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
    // Frozen: routes of invalid sources keep their Deployment as last applied.
    let frozen: BTreeSet<&str> = plan
        .invalid_sources
        .iter()
        .map(|i| i.deployment.as_str())
        .collect();
    for dn in &frozen {
        if let Some(d) = existing_by_name.get(*dn) {
            applied.insert((*dn).to_string(), (*d).clone());
        }
    }

    // Prune: Deployments of routes whose source vanished or is no longer selected — never
    // those of a source that is only invalid or whose Secrets are missing.
    for d in &existing.items {
        let dn = d.name_any();
        if applied.contains_key(&dn)
            || frozen.contains(dn.as_str())
            || held.contains_key(&dn)
            || d.meta().deletion_timestamp.is_some()
        {
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
    let status = build_status_with(
        agg,
        &plan,
        &applied,
        observation.as_ref(),
        topic_result.as_ref().err(),
        &held,
    );
    let states: Vec<&str> = status.routes.iter().map(|r| r.state.as_str()).collect();
    ctx.metrics
        .set_routes(&format!("{ns}/{name}"), Some(&states));
    announce_route_transitions(ctx, agg, &status).await;
    status_util::write_status(agg, ctx, status).await?;
    topic_result?;
    // Secrets are not watched: look again soon for a missing or rotated one.
    let connections =
        std::iter::once(&plan.kafka).chain(plan.routes.iter().map(|r| &r.source_kafka));
    Ok(Action::requeue(if held.is_empty() {
        secrets::resync_for(RESYNC, connections)
    } else {
        secrets::SECRET_RECHECK
    }))
}

/// Why a route is held for its source's Secrets: the Secret and the field, and what to do.
fn source_secret_problem(source: &str, e: &Error) -> String {
    let what = match e {
        Error::Dereference { what, source: err } if is_not_found(err) => {
            return format!(
                "SecretMissing: RegionalStream {source}: {what} not found; create it (the route keeps running as last applied)"
            );
        }
        Error::Dereference { what, .. } => format!("reading {what}: {}", e.category()),
        other => other.to_string(),
    };
    format!(
        "SecretUnreadable: RegionalStream {source}: {what} (the route keeps running as last applied)"
    )
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Whether `live` already holds every field of `desired` with the same value (lists element by
/// element): then the apply is a no-op. Fields the API server defaults are ignored; a value
/// changed by hand (drift) is not, so drift is still reverted.
pub fn is_applied(live: &Deployment, desired: &Deployment) -> bool {
    match (serde_json::to_value(live), serde_json::to_value(desired)) {
        (Ok(l), Ok(d)) => json_contains(&l, &d),
        _ => false,
    }
}

fn json_contains(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| json_contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| json_contains(lv, dv))
        }
        (l, d) => l == d,
    }
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
    build_status_with(
        agg,
        plan,
        deployments,
        observation,
        topic_error,
        &BTreeMap::new(),
    )
}

/// [`build_status`] with the routes held for their source's Secrets (Deployment → why).
pub fn build_status_with(
    agg: &AggregateCluster,
    plan: &AggregatePlan,
    deployments: &BTreeMap<String, Deployment>,
    observation: Option<&AggregateObservation>,
    topic_error: Option<&Error>,
    held: &BTreeMap<String, String>,
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
        let (state, message) = if let Some(why) = held.get(&r.deployment) {
            ("Degraded", Some(why.clone()))
        } else if want == 0 {
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
        } else if let Some(m) = d.and_then(|d| unready_after_rollout(d, ready, want)) {
            ("Degraded", Some(format!("ReplicatorUnready: {m}")))
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
    for i in &plan.invalid_sources {
        let d = deployments.get(&i.deployment);
        let ready = d
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let runs = if d.is_some() {
            "its route keeps running as last applied, unchanged, until the RegionalStream is fixed"
        } else {
            "no route runs for it until the RegionalStream is fixed"
        };
        routes.push(RouteStatus {
            source: i.source.clone(),
            source_region: i.source_region.clone(),
            deployment: i.deployment.clone(),
            ready_replicas: ready,
            lag_records: None,
            lag_seconds: None,
            last_checkpoint_time: None,
            last_checkpoint_age_seconds: None,
            state: "Degraded".to_string(),
            message: Some(format!("SourceInvalid: {}; {runs}", i.problem)),
        });
    }
    routes.sort_by(|a, b| a.source.cmp(&b.source));
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
            // The most specific cause names the condition; the message lists every route.
            let reason = ["SourceInvalid", "SecretMissing", "SecretUnreadable"]
                .into_iter()
                .find(|cause| {
                    degraded.iter().any(|r| {
                        r.message
                            .as_deref()
                            .is_some_and(|m| m.starts_with(&format!("{cause}:")))
                    })
                })
                .unwrap_or("RouteDegraded");
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
                Wanted::new(condition_type::READY, false, reason, m.clone()),
                Wanted::new(condition_type::DEGRADED, true, reason, m),
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

/// The route's rollout had completed (the Deployment controller says the newest ReplicaSet is
/// available, for the current generation) and replicas are missing since: the replicator
/// crashed or turned unready after being Ready. The progress deadline never fires after a
/// completed rollout, so without this the route would show Pending forever.
fn unready_after_rollout(d: &Deployment, ready: i32, want: i32) -> Option<String> {
    if ready >= want {
        return None;
    }
    let status = d.status.as_ref()?;
    let current = match (d.metadata.generation, status.observed_generation) {
        (Some(g), Some(o)) => o >= g,
        _ => false,
    };
    let conditions = status.conditions.as_ref()?;
    let rolled_out = conditions.iter().any(|c| {
        c.type_ == "Progressing"
            && c.status == "True"
            && c.reason.as_deref() == Some("NewReplicaSetAvailable")
    });
    if !(current && rolled_out) {
        return None;
    }
    let available = conditions
        .iter()
        .find(|c| c.type_ == "Available" && c.status == "False")
        .and_then(|c| c.message.clone())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    Some(format!(
        "{ready}/{want} replicator replicas ready after the rollout had completed{available}: the replicator crashed or is failing its readiness probe; see its pod's status and log"
    ))
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

/// What an AggregateCluster reads of a RegionalStream: namespace, labels (selection),
/// deletion, the spec, readability, and per topic whether it exists with how many partitions.
/// End offsets, rates and conditions are not in it: their changes need no AggregateCluster
/// reconcile.
pub fn source_fingerprint(rs: &DeserializeGuard<RegionalStream>) -> u64 {
    let seen = match &rs.0 {
        Ok(rs) => serde_json::json!({
            "namespace": rs.metadata.namespace,
            "labels": rs.metadata.labels,
            "deleting": rs.metadata.deletion_timestamp.is_some(),
            "spec": rs.spec,
            "topics": rs.status.iter().flat_map(|s| s.topics.iter())
                .map(|t| (t.name.as_str(), t.exists, t.partitions))
                .collect::<Vec<_>>(),
        }),
        Err(invalid) => serde_json::json!({
            "namespace": invalid.metadata.namespace,
            "labels": invalid.metadata.labels,
            "deleting": invalid.metadata.deletion_timestamp.is_some(),
            "unreadable": invalid.error,
        }),
    };
    hash_of(&seen.to_string())
}

/// What a reconcile of an AggregateCluster acts on of the object itself: not its status (the
/// operator's own writes would otherwise re-trigger it).
pub fn reconcile_fingerprint(agg: &DeserializeGuard<AggregateCluster>) -> Option<u64> {
    let meta = agg.meta();
    let unreadable = agg.0.as_ref().err().map(|e| e.error.clone());
    Some(hash_of(
        &serde_json::json!({
            "uid": meta.uid,
            "generation": meta.generation,
            "labels": meta.labels,
            "annotations": meta.annotations,
            "finalizers": meta.finalizers,
            "deleting": meta.deletion_timestamp.is_some(),
            "unreadable": unreadable,
        })
        .to_string(),
    ))
}

pub(crate) fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The AggregateClusters to reconcile for changes of RegionalStreams: those of the stream's
/// namespace, and only when what they read of it changed ([`source_fingerprint`]) or it was
/// deleted.
pub fn source_change_triggers<S>(
    events: S,
    aggregates: Store<DeserializeGuard<AggregateCluster>>,
) -> impl Stream<Item = ObjectRef<DeserializeGuard<AggregateCluster>>> + Send + 'static
where
    S: Stream<Item = Result<watcher::Event<DeserializeGuard<RegionalStream>>, watcher::Error>>
        + Send
        + 'static,
{
    let mut seen: HashMap<ObjectRef<DeserializeGuard<RegionalStream>>, u64> = HashMap::new();
    events
        .filter_map(move |event| {
            let changed = match event {
                Ok(watcher::Event::Apply(rs) | watcher::Event::InitApply(rs)) => {
                    let fingerprint = source_fingerprint(&rs);
                    (seen.insert(ObjectRef::from_obj(&rs), fingerprint) != Some(fingerprint))
                        .then_some(rs)
                }
                Ok(watcher::Event::Delete(rs)) => {
                    seen.remove(&ObjectRef::from_obj(&rs));
                    Some(rs)
                }
                _ => None,
            };
            futures::future::ready(changed)
        })
        .flat_map(move |rs| {
            let ns = rs.namespace();
            let refs: Vec<_> = aggregates
                .state()
                .iter()
                .filter(|a| a.namespace() == ns)
                .map(|a| ObjectRef::from_obj(a.as_ref()))
                .collect();
            futures::stream::iter(refs)
        })
}
