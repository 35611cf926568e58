//! The ConsumerGroupFailover controller: observes the group's world (the active-region Lease on
//! the coordination API server, the move recorded in status, region health from the
//! [`GroupProber`](crate::group_prober), standby freshness scraped from the sync Jobs, the
//! workloads, the final translation's answer), asks [`tributary_core::failover::decide`] for the next
//! step, performs that one step, and writes what it sees: the `<name>-active` ConfigMap, the
//! standby sync Jobs, the workloads' scale, status, events and metrics.
//!
//! Pipeline: validate + dereference (AggregateClusters, Secrets) → observe → decide → apply
//! (scale, the step, ConfigMap, sync Jobs) → status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tributary_api::aggregate_cluster::TopicNaming;
use tributary_api::consumer_group_failover::{
    CoordinationLoss, FailoverMode, FailoverRecord, PartitionOffset, PendingMove, RegionStatus,
    STANDBY_HAS_MEMBERS, WorkloadKind, WorkloadRef,
};
use tributary_api::{
    AggregateCluster, ConsumerGroupFailover, ConsumerGroupFailoverStatus, KafkaConnection,
    condition_type,
};
use tributary_core::failover::{
    Consumers, FinalSync, GroupMode, LeaseView, Move, MoveKind, MoveReason, Observation,
    RegionView, Step, decide, desired_consumers, fence_ttl, standby_regions,
};
use tributary_core::handover::{
    HANDOVER_ANNOTATION, Handover, HolderAnswer, acquisition_delay, holder_answer, holder_running,
};
use tributary_runtime::parse_duration;

use crate::conditions::{self, Wanted};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::fence::OnFailure;
use crate::frame::Reconciled;
use crate::group_prober::{GroupTarget, RegionHealth};
use crate::names::{self, FIELD_MANAGER};
use crate::sync_job::SyncJob;
use crate::{model, secrets, standby_client, status_util};

const KIND: &str = "ConsumerGroupFailover";
/// How long the final round of a planned move may take (the standby's checkpoint catch-up
/// budget plus its commit and read-back).
const FINAL_ROUND_TIMEOUT: Duration = Duration::from_secs(90);

impl Reconciled for ConsumerGroupFailover {
    const KIND: &'static str = KIND;

    async fn reconcile(&self, ctx: &Context) -> Result<Action> {
        reconcile_inner(self, ctx).await
    }

    /// A paused group's Lease is not renewed (docs/failover.md, "Pausing").
    async fn paused(&self, ctx: &Context) {
        let key = crate::fence::key(&self.namespace().unwrap_or_default(), &self.name_any());
        ctx.renewer.revoke(&key).await;
    }

    async fn report_failure(&self, ctx: &Context, error: &Error) {
        let mut status = self.status.clone().unwrap_or_default();
        let wanted = [
            Wanted::new(
                condition_type::READY,
                false,
                error.category(),
                error.to_string(),
            ),
            Wanted::new(
                condition_type::DEGRADED,
                true,
                error.category(),
                error.to_string(),
            ),
        ];
        let mut merged = conditions::merge(&status.conditions, &wanted, self.meta().generation);
        merged.extend(
            status
                .conditions
                .iter()
                .filter(|c| wanted.iter().all(|w| w.type_ != c.type_))
                .cloned(),
        );
        status.conditions = merged;
        let _ = status_util::write_status(self, ctx, status).await;
    }
}

/// One region of the group, validated and dereferenced.
struct RegionPlan {
    region: String,
    kafka: KafkaConnection,
    checkpoint_topic: String,
    naming: TopicNaming,
    /// Source regions replicated into this region's aggregate.
    sources: Vec<String>,
    workload: Option<WorkloadRef>,
}

/// The validated spec.
struct Plan {
    mode: GroupMode,
    probe_period: Duration,
    lease_duration: Duration,
    max_sync_age: Duration,
    regions: Vec<RegionPlan>,
}

fn duration(field: &str, value: &str) -> Result<Duration> {
    parse_duration(value).map_err(|e| Error::InvalidSpec(format!("{field}: {e}")))
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn to_time(t: SystemTime) -> Time {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    Time(Timestamp::from_millisecond(secs).unwrap_or_else(|_| Timestamp::now()))
}

fn time_unix(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

async fn validate(cgf: &ConsumerGroupFailover, ctx: &Context) -> Result<Plan> {
    let name = cgf.name_any();
    let namespace = cgf.namespace().unwrap_or_default();
    let spec = &cgf.spec;
    let aggregates: Api<AggregateCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let streams: Vec<_> = ctx
        .streams
        .state()
        .iter()
        .filter_map(|s| s.0.as_ref().ok().cloned())
        .collect();
    let mut regions = Vec::new();
    for (i, r) in spec.regions.iter().enumerate() {
        let field = format!("spec.regions[{i}].aggregateCluster");
        let agg = aggregates
            .get_opt(&r.aggregate_cluster)
            .await
            .map_err(|source| Error::Dereference {
                what: format!("AggregateCluster {namespace}/{} ({field})", r.aggregate_cluster),
                source,
            })?
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "ConsumerGroupFailover {name}: {field}: AggregateCluster {} not found in namespace {namespace}",
                    r.aggregate_cluster
                ))
            })?;
        if agg.spec.region != r.region {
            return Err(Error::InvalidSpec(format!(
                "ConsumerGroupFailover {name}: {field}: AggregateCluster {} is region {}, not {}",
                r.aggregate_cluster, agg.spec.region, r.region
            )));
        }
        let aggregate_plan = model::plan_aggregate(&agg, &streams)?;
        let mut sources: Vec<String> = aggregate_plan
            .routes
            .iter()
            .map(|r| r.source_region.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if sources.is_empty() {
            sources.push(r.region.clone());
        }
        regions.push(RegionPlan {
            region: r.region.clone(),
            kafka: agg.spec.kafka.clone(),
            checkpoint_topic: aggregate_plan.checkpoints.topic.clone(),
            naming: aggregate_plan.naming,
            sources,
            workload: r.workload_ref.clone(),
        });
    }
    if let Some(first) = regions.first()
        && let Some(other) = regions
            .iter()
            .find(|r| r.naming != first.naming || r.checkpoint_topic != first.checkpoint_topic)
    {
        return Err(Error::InvalidSpec(format!(
            "ConsumerGroupFailover {name}: the AggregateClusters of {} and {} differ in topicNaming or checkpoints.topic; offsets translate only between aggregates laid out alike",
            first.region, other.region
        )));
    }
    let f = &spec.failover;
    Ok(Plan {
        mode: match spec.mode {
            FailoverMode::ActivePassive => GroupMode::ActivePassive,
            FailoverMode::ActiveActive => GroupMode::ActiveActive,
        },
        probe_period: duration("spec.failover.probePeriod", &f.probe_period)?,
        lease_duration: duration("spec.failover.leaseDuration", &f.lease_duration)?,
        max_sync_age: duration("spec.failover.maxSyncAge", &f.max_sync_age)?,
        regions,
    })
}

fn pending_to_move(p: &PendingMove) -> Option<Move> {
    Some(Move {
        from: p.from.clone(),
        to: p.to.clone(),
        reason: MoveReason::parse(&p.reason)?,
        kind: match p.kind.as_str() {
            "Planned" => MoveKind::Planned,
            "Unplanned" => MoveKind::Unplanned,
            _ => return None,
        },
        epoch: u64::try_from(p.epoch).ok()?,
    })
}

fn kind_str(k: MoveKind) -> &'static str {
    match k {
        MoveKind::Planned => "Planned",
        MoveKind::Unplanned => "Unplanned",
    }
}

/// `renewTime` of the Lease (Unix seconds; 0 when absent).
fn lease_renewed(lease: &Lease) -> f64 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.as_millisecond() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// The Lease as the decision reads it; `expired` once `renewTime + leaseDurationSeconds +
/// extra` has passed on this operator's clock (`extra`: a less preferred standby's wait).
fn lease_view(lease: &Lease, duration: Duration, extra: Duration) -> Option<LeaseView> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone()?;
    let epoch = u64::try_from(spec.lease_transitions.unwrap_or(0)).ok()?;
    let seconds = spec
        .lease_duration_seconds
        .map(|s| s as f64)
        .unwrap_or(duration.as_secs_f64());
    Some(LeaseView {
        holder,
        epoch,
        expired: lease_renewed(lease) + seconds + extra.as_secs_f64() < now_unix(),
    })
}

/// The handover request the Lease carries, if any (per-region operators).
fn lease_handover(lease: Option<&Lease>) -> Option<Handover> {
    Handover::parse(lease?.annotations().get(HANDOVER_ANNOTATION)?)
}

/// Writes (`Some`) or removes (`None`) the handover request, by compare-and-swap on `lease`.
async fn write_handover(
    ctx: &Context,
    fence_key: &str,
    leases: &Api<Lease>,
    lease: &Lease,
    handover: Option<&Handover>,
) -> kube::Result<Lease> {
    swap_lease(ctx, fence_key, leases, lease, |l| set_handover(l, handover)).await
}

fn lease_duration_seconds(lease: &Lease) -> Option<i32> {
    lease.spec.as_ref()?.lease_duration_seconds
}

/// Replaces the Lease as `read` with `change` applied, by compare-and-swap on its
/// resourceVersion. A conflict that only a renewal caused (the Lease is as read but for its
/// `renewTime` and resourceVersion) is tried once more on the Lease as it is now: the
/// renewer (`crate::renewer`) renews between passes, and a handover request or its answer
/// must not lose to it.
async fn swap_lease(
    ctx: &Context,
    fence_key: &str,
    leases: &Api<Lease>,
    read: &Lease,
    change: impl Fn(&mut Lease),
) -> kube::Result<Lease> {
    let post = PostParams::default();
    let name = read.name_any();
    let mut l = read.clone();
    change(&mut l);
    let err = match lease_request(ctx, fence_key, leases.replace(&name, &post, &l)).await {
        Err(kube::Error::Api(e)) if e.code == 409 => kube::Error::Api(e),
        answer => return answer,
    };
    let Some(now) = lease_request(ctx, fence_key, leases.get_opt(&name)).await? else {
        return Err(err);
    };
    if !crate::renewer::only_renewed(read, &now) {
        return Err(err);
    }
    let mut l = now;
    change(&mut l);
    lease_request(ctx, fence_key, leases.replace(&name, &post, &l)).await
}

fn set_handover(lease: &mut Lease, handover: Option<&Handover>) {
    let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match handover {
        Some(h) => {
            annotations.insert(HANDOVER_ANNOTATION.to_string(), h.encode());
        }
        None => {
            annotations.remove(HANDOVER_ANNOTATION);
        }
    }
}

/// What the operator reads of a consumer workload, whatever its kind.
trait Workload:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    /// `spec.replicas` and the pod selector's labels.
    fn scale_and_selector(&self) -> (Option<i32>, Option<BTreeMap<String, String>>);
}

impl Workload for k8s_openapi::api::apps::v1::Deployment {
    fn scale_and_selector(&self) -> (Option<i32>, Option<BTreeMap<String, String>>) {
        let spec = self.spec.as_ref();
        (
            spec.and_then(|s| s.replicas),
            spec.and_then(|s| s.selector.match_labels.clone()),
        )
    }
}

impl Workload for k8s_openapi::api::apps::v1::StatefulSet {
    fn scale_and_selector(&self) -> (Option<i32>, Option<BTreeMap<String, String>>) {
        let spec = self.spec.as_ref();
        (
            spec.and_then(|s| s.replicas),
            spec.and_then(|s| s.selector.match_labels.clone()),
        )
    }
}

/// Reads the workload; with `scale_to`, scales it through its `scale` subresource when it
/// differs (server-side apply: the operator owns `spec.replicas`, nothing else of it).
/// Returns its selector and whether it was scaled; `None` when it does not exist.
async fn read_and_scale<K: Workload>(
    ctx: &Context,
    namespace: &str,
    w: &WorkloadRef,
    scale_to: Option<i32>,
) -> Result<Option<(Option<BTreeMap<String, String>>, bool)>> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let what = format!("{:?} {namespace}/{}", w.kind, w.name);
    let Some(obj) = api
        .get_opt(&w.name)
        .await
        .map_err(|source| Error::Dereference {
            what: what.clone(),
            source,
        })?
    else {
        return Ok(None);
    };
    let (current, selector) = obj.scale_and_selector();
    let Some(replicas) = scale_to.filter(|r| current != Some(*r)) else {
        return Ok(Some((selector, false)));
    };
    let patch = Patch::Apply(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": w.name, "namespace": namespace},
        "spec": {"replicas": replicas},
    }));
    api.patch_scale(&w.name, &PatchParams::apply(FIELD_MANAGER).force(), &patch)
        .await
        .map_err(|source| Error::Apply { what, source })?;
    Ok(Some((selector, true)))
}

async fn workload(
    ctx: &Context,
    namespace: &str,
    w: &WorkloadRef,
    scale_to: Option<i32>,
) -> Result<Option<(Option<BTreeMap<String, String>>, bool)>> {
    match w.kind {
        WorkloadKind::Deployment => {
            read_and_scale::<k8s_openapi::api::apps::v1::Deployment>(ctx, namespace, w, scale_to)
                .await
        }
        WorkloadKind::StatefulSet => {
            read_and_scale::<k8s_openapi::api::apps::v1::StatefulSet>(ctx, namespace, w, scale_to)
                .await
        }
    }
}

/// The pods of a workload that still exist (terminating ones included: a consumer that has
/// not exited may still hold partitions).
async fn running_consumers(ctx: &Context, namespace: &str, w: &WorkloadRef) -> Result<u32> {
    let Some((Some(labels), _)) = workload(ctx, namespace, w, None).await? else {
        return Ok(0);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&names::selector_string(&labels)))
        .await
        .map_err(|source| Error::Dereference {
            what: format!("pods of {namespace}/{}", w.name),
            source,
        })?;
    Ok(list
        .items
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count() as u32)
}

/// `Some(why)` when a Job failed (its pod's termination message).
async fn job_failure(ctx: &Context, namespace: &str, job: &Job) -> Option<String> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = job.status.clone().unwrap_or_default();
    let failed = status.failed.unwrap_or(0) > 0
        || status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
    if !failed {
        return None;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let message = pods
        .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
        .await
        .ok()
        .and_then(|l| {
            l.items.iter().find_map(|p| {
                p.status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .iter()
                    .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            })
        })
        .map(|m| {
            let m = m.trim();
            m.lines().last().unwrap_or(m).to_string()
        })
        .unwrap_or_else(|| "the Job failed (see its pod's log)".into());
    Some(format!("Job {}: {message}", job.name_any()))
}

fn job_epoch(job: &Job) -> Option<u64> {
    job.labels().get(names::EPOCH_LABEL)?.parse().ok()
}

fn job_region(job: &Job) -> Option<&str> {
    job.labels().get(names::REGION_LABEL).map(String::as_str)
}

fn is_standby_job(job: &Job) -> bool {
    job.labels()
        .get("app.kubernetes.io/component")
        .is_some_and(|c| c == crate::sync_job::COMPONENT)
}

/// What runs for a group between passes stops: its probes, its fence, its renewals.
fn forget_group(ctx: &Context, obj: &ObjectRef<ConsumerGroupFailover>) {
    let key = crate::fence::key(obj.namespace.as_deref().unwrap_or(""), &obj.name);
    ctx.group_prober.forget(obj);
    ctx.fences.forget(&key);
    ctx.renewer.forget(&key);
}

async fn reconcile_inner(cached: &ConsumerGroupFailover, ctx: &Context) -> Result<Action> {
    let name = cached.name_any();
    let ns = cached.namespace().unwrap_or_default();
    let obj_ref = ObjectRef::from_obj(cached);
    if cached.meta().deletion_timestamp.is_some() {
        // Jobs and the ConfigMap go with their owner; the Lease stays on the coordination
        // server, so a re-created object continues the epoch sequence.
        forget_group(ctx, &obj_ref);
        return Ok(Action::await_change());
    }
    // The status is the memory of a move: read it fresh, not from the watch cache.
    let api: Api<ConsumerGroupFailover> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cgf) = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Dereference {
            what: format!("{KIND} {ns}/{name}"),
            source,
        })?
    else {
        // Gone without a deletion seen (no finalizer): nothing probes or renews for it.
        forget_group(ctx, &obj_ref);
        return Ok(Action::await_change());
    };
    let plan = validate(&cgf, ctx).await?;
    let image = ctx.default_image.clone().ok_or_else(|| {
        Error::InvalidSpec(format!(
            "{KIND} {name}: no image for the sync Jobs: set TRIBUTARY_IMAGE on the operator"
        ))
    })?;
    let owner = cgf
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec(format!("{KIND} {name} has no uid yet")))?;
    // The standby sync Job translating the group from `from` into `to`.
    let sync_job = |from: &str, to: &str, epoch: u64| -> Result<Job> {
        let region = |r: &str| {
            plan.regions.iter().find(|p| p.region == r).ok_or_else(|| {
                Error::InvalidSpec(format!("{KIND} {name}: region {r} is not in spec.regions"))
            })
        };
        let (a, b) = (region(from)?, region(to)?);
        Ok(SyncJob {
            failover: &name,
            namespace: &ns,
            group: &cgf.spec.group_id,
            topics: &cgf.spec.topics,
            from_region: from,
            to_region: to,
            from: &a.kafka,
            to: &b.kafka,
            checkpoint_topic: &b.checkpoint_topic,
            naming: b.naming,
            sources: &union(&a.sources, &b.sources),
            interval: &cgf.spec.sync.interval,
            resources: cgf.spec.sync.resources.as_ref(),
            epoch,
            image: &image,
            owner: owner.clone(),
        }
        .build())
    };

    // Dereference: the aggregate clusters' Secrets, for the prober.
    let mut targets = Vec::new();
    for r in &plan.regions {
        let conn = secrets::resolve(
            &ctx.client,
            &ns,
            format!("aggregate cluster of {}", r.region),
            &r.kafka,
            "spec.kafka",
        )
        .await?;
        targets.push((r.region.clone(), conn));
    }
    ctx.group_prober.watch(
        obj_ref.clone(),
        GroupTarget {
            group: cgf.spec.group_id.clone(),
            topics: cgf.spec.topics.clone(),
            period: plan.probe_period,
            failure_threshold: cgf.spec.failover.failure_threshold.max(1) as u32,
            regions: targets,
        },
    );
    // A planned move waits for its consumers to leave: look now, not at the next probe.
    if let Some(m) = cgf
        .status
        .as_ref()
        .and_then(|s| s.pending_move.as_ref())
        .filter(|m| m.kind == kind_str(MoveKind::Planned))
    {
        let ends: Vec<&str> = [m.from.as_deref(), Some(m.to.as_str())]
            .into_iter()
            .flatten()
            .collect();
        ctx.group_prober.refresh(&obj_ref, &ends).await;
    }
    let health = ctx.group_prober.health(&obj_ref);

    // Observe.
    let leases: Api<Lease> = Api::namespaced(ctx.coordination.client.clone(), &ns);
    let server = &ctx.coordination.description;
    let lease_name = names::active_name(&name);
    let fence_key = crate::fence::key(&ns, &name);
    let lease = match lease_request(ctx, &fence_key, leases.get_opt(&lease_name)).await {
        Ok(lease) => lease,
        Err(source) => {
            let message = format!(
                "reading Lease {ns}/{lease_name} on {server}{}: {source}",
                crate::coordination::no_answer_hint(&source)
            );
            return Err(lease_failed(ctx, &cgf, &plan, message).await);
        }
    };
    // Per region, a less preferred standby sees the holder's Lease expire later.
    let region_names: Vec<String> = plan.regions.iter().map(|r| r.region.clone()).collect();
    let view = lease.as_ref().and_then(|l| {
        let holder = l.spec.as_ref()?.holder_identity.as_deref()?;
        let extra = match ctx.region.as_deref() {
            Some(me) if me != holder => acquisition_delay(&region_names, holder, me),
            _ => Duration::ZERO,
        };
        lease_view(l, plan.lease_duration, extra)
    });
    if lease.is_some() && view.is_none() {
        // Fail closed: a Lease we cannot read is not a Lease we may overwrite.
        return Err(Error::InvalidSpec(format!(
            "Lease {ns}/{lease_name} has no holderIdentity or a negative leaseTransitions; fix or delete it by hand"
        )));
    }
    let old_status = cgf.status.clone().unwrap_or_default();
    let in_progress = old_status.pending_move.as_ref().and_then(pending_to_move);
    // Fail closed: a region whose health is not known yet (a restarted operator's first
    // probes) is neither healthy nor down. The regions a decision turns on — the holder, the
    // move's ends, or all of them before the first activation — must be known; any other
    // unknown region only cannot be moved to.
    let relevant: Vec<&str> = match (&view, &in_progress) {
        (None, _) => plan.regions.iter().map(|r| r.region.as_str()).collect(),
        (Some(l), None) => vec![l.holder.as_str()],
        (Some(l), Some(m)) => [
            Some(l.holder.as_str()),
            Some(m.to.as_str()),
            m.from.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let unknown: Vec<&str> = relevant
        .into_iter()
        .filter(|r| plan.regions.iter().any(|p| p.region == *r))
        .filter(|r| health.get(*r).is_none_or(|h| !h.probed))
        .collect();
    if !unknown.is_empty() {
        tracing::debug!(
            namespace = ns,
            name,
            ?unknown,
            "waiting for the first probes"
        );
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs = jobs_api
        .list(&ListParams::default().labels(&names::selector_string(
            &names::failover_selector_labels(&name),
        )))
        .await
        .map_err(|source| Error::Dereference {
            what: format!("Jobs of {KIND} {ns}/{name}"),
            source,
        })?
        .items;

    // The standbys of the current epoch: their pods (for the final round and the last plan)
    // and their freshness.
    let mut last_synced: BTreeMap<String, f64> = BTreeMap::new();
    let mut standby_ips: BTreeMap<String, String> = BTreeMap::new();
    if let Some(l) = &view {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        for job in jobs
            .iter()
            .filter(|j| is_standby_job(j) && job_epoch(j) == Some(l.epoch))
        {
            let Some(region) = job_region(job) else {
                continue;
            };
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
                .await
                .map_err(|source| Error::Dereference {
                    what: format!("pods of Job {ns}/{}", job.name_any()),
                    source,
                })?;
            for p in &list.items {
                let Some(ip) = p
                    .status
                    .as_ref()
                    .filter(|s| !matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
                    .and_then(|s| s.pod_ip.as_deref())
                else {
                    continue;
                };
                standby_ips.insert(region.to_string(), ip.to_string());
                if let Some(ts) = standby_client::last_synced(ip).await {
                    last_synced.insert(region.to_string(), ts);
                }
                if let Some(z) = standby_client::zombie_report(ip).await {
                    report_zombies(ctx, &cgf, region, &z).await;
                }
            }
        }
    }
    let handover = lease_handover(lease.as_ref());
    // Per region: this operator's own region, when it holds the Lease.
    let holding = ctx
        .region
        .as_deref()
        .filter(|me| view.as_ref().is_some_and(|l| l.holder == *me));
    let mut running = BTreeMap::new();
    for r in &plan.regions {
        if let Some(w) = &r.workload {
            let n = if ctx.acts_for(&r.region) {
                running_consumers(ctx, &ns, w).await?
            } else if view.as_ref().is_some_and(|l| l.holder == r.region) {
                // Another cluster's workload: what its operator said in the handover request.
                let me = ctx.region.as_deref().unwrap_or_default();
                holder_running(
                    handover.as_ref(),
                    me,
                    in_progress.as_ref().map_or(0, |m| m.epoch),
                )
            } else {
                0
            };
            running.insert(r.region.clone(), n);
        }
    }
    let final_sync = match &old_status.pending_move {
        Some(p)
            if p.plan
                .as_ref()
                .is_some_and(|pl| pl.origin == standby_client::ORIGIN_FINAL) =>
        {
            FinalSync::Succeeded
        }
        Some(PendingMove {
            final_sync_error: Some(e),
            ..
        }) => FinalSync::Failed(e.clone()),
        _ => FinalSync::NotStarted,
    };
    let now = now_unix();
    // A standby's staleness is what it missed of the active region's progress: measured up to
    // now while the active region runs, and up to its first failed probe once it fails
    // (nothing is consumed there after that, so the standby ages for nothing). A first failed
    // probe seen late (a new operator leader) only makes the standby look staler.
    let fresh_as_of = view
        .as_ref()
        .and_then(|l| health.get(&l.holder))
        .and_then(|h| h.failing_since)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(now)
        .min(now);
    let observation = Observation {
        mode: plan.mode,
        automatic: cgf.spec.failover.automatic,
        quorum_problem: cgf.spec.quorum_problem().map(str::to_string),
        accept_data_loss: cgf
            .annotations()
            .get(names::ACCEPT_DATA_LOSS_ANNOTATION)
            .is_some_and(|v| v == "true"),
        max_sync_age: plan.max_sync_age,
        regions: plan
            .regions
            .iter()
            .map(|r| {
                let h = health.get(&r.region).cloned().unwrap_or_default();
                // Per region, another region's expired Lease counts as that region down, even
                // when its aggregate answers: it may be cut off from the coordination server
                // (and has fenced itself).
                let lease_lost = !ctx.acts_for(&r.region)
                    && view
                        .as_ref()
                        .is_some_and(|l| l.holder == r.region && l.expired);
                RegionView {
                    region: r.region.clone(),
                    healthy: h.healthy && !lease_lost,
                    answering: h.healthy && h.consecutive_failures == 0 && !lease_lost,
                    sync_age: last_synced
                        .get(&r.region)
                        .map(|ts| Duration::from_secs_f64((fresh_as_of - ts).max(0.0))),
                    group_members: h.position.as_ref().map(|p| p.members.len() as u32),
                    running_consumers: running.get(&r.region).copied().unwrap_or(0),
                }
            })
            .collect(),
        intent: cgf.spec.active_region.clone(),
        acted_intent: old_status.acted_active_region.clone(),
        lease: view.clone(),
        in_progress: in_progress.clone(),
        // The Lease says where the group was before the last move; a status only knows the
        // moves of its own operator (one cluster per region).
        previous_active: lease
            .as_ref()
            .and_then(|l| {
                l.annotations()
                    .get(names::PREVIOUS_HOLDER_ANNOTATION)
                    .cloned()
            })
            .or_else(|| {
                old_status
                    .last_failover
                    .as_ref()
                    .and_then(|f| f.from.clone())
            }),
        final_sync,
    };
    let mut step = decide(&observation);
    tracing::debug!(namespace = ns, name, ?step, "decided");
    let mut moving: Option<(String, String)> = None; // (reason, message)
    // Per region, only a move to this region is this operator's to make.
    if let (Some(me), Step::Begin(m)) = (ctx.region.as_deref(), &step)
        && m.to != me
    {
        moving = Some((
            "WaitingForRegion".into(),
            format!("moving to {}: its operator makes the move", m.to),
        ));
        step = Step::Steady {
            renew: false,
            acknowledge_intent: false,
        };
    }

    // Per region, the holder's side: a handover request, and the fence when it has not
    // renewed within the fence TTL for whatever reason (a restarted operator adopts what
    // the Lease's last renewal left).
    let answer = match (holding, &view) {
        (Some(_), Some(l)) => {
            let target = handover
                .as_ref()
                .and_then(|h| observation.regions.iter().find(|r| r.region == h.to));
            holder_answer(
                handover.as_ref(),
                l.epoch,
                target.is_some(),
                target.is_some_and(|t| t.healthy),
                holding.and_then(|me| running.get(me)).copied().unwrap_or(0),
                now,
            )
        }
        _ => HolderAnswer::None,
    };
    let fence_due = match (holding, &lease) {
        (Some(me), Some(l))
            if cgf.spec.failover.coordination_loss == CoordinationLoss::FailClosed =>
        {
            let left = lease_renewed(l) + fence_ttl(plan.lease_duration).as_secs_f64() - now;
            if left > 0.0 {
                ctx.fences
                    .adopt(&fence_key, me, Duration::from_secs_f64(left));
            }
            ctx.fences.due(&fence_key, me)
        }
        _ => false,
    };
    if let (true, Some(me)) = (fence_due, holding) {
        let first = !ctx.fences.is_fenced(&fence_key);
        fence(ctx, &cgf, &plan, Some(me.to_string())).await?;
        ctx.fences.fenced(&fence_key, me);
        if first {
            let what = format!(
                "{me} has not renewed the Lease within {:.1}s: its consumers stopped and {} marked fenced (coordinationLoss FailClosed) until it renews",
                fence_ttl(plan.lease_duration).as_secs_f64(),
                names::active_name(&name)
            );
            tracing::error!(namespace = ns, name, "fenced: {what}");
            ctx.event(&cgf.object_ref(&()), true, "Fenced", "Fence", what)
                .await;
        }
    }
    let stop_mine = fence_due
        || matches!(
            answer,
            HolderAnswer::Stop | HolderAnswer::MarkStopped | HolderAnswer::Wait
        );

    let renew_interval = (plan.lease_duration / 3)
        .min(plan.probe_period)
        .max(Duration::from_secs(1));
    // The holder renews: one operator when the decision says so; per region, the holder's
    // operator whenever its region answers (a move to another region is that region's to
    // make, and the holder keeps the Lease alive meanwhile). The renewal carries the
    // holder's answer to a handover request.
    let answering = |region: &str| {
        observation
            .regions
            .iter()
            .any(|r| r.region == region && r.answering)
    };
    let renew = match (ctx.region.as_deref(), &step) {
        (None, Step::Steady { renew, .. }) => *renew,
        // The move's last pass renews for the new holder at once: consumers (and their active
        // gates) count freshness from the Lease's renewTime, which was set at `TakeLease`,
        // a loaded pass or two ago.
        (None, Step::Finish(m)) => answering(&m.to),
        (None, _) => false,
        (Some(_), _) => holding.is_some_and(answering),
    };
    // Between passes the renewer keeps renewing what this decision allows, and nothing else
    // (`crate::renewer`): revoked before anything of another decision happens.
    match view.as_ref().filter(|_| renew) {
        Some(v) => {
            let licence = crate::renewer::Licence {
                group: obj_ref.clone(),
                holder: v.holder.clone(),
                epoch: v.epoch,
                lease_duration: plan.lease_duration,
                interval: renew_interval,
            };
            ctx.renewer.grant(&fence_key, licence).await;
        }
        None => ctx.renewer.revoke(&fence_key).await,
    }

    // Apply: the workloads first (a move stops the source before anything else happens).
    apply_consumers(ctx, &ns, &name, &plan, &observation, stop_mine).await?;

    let regarding = cgf.object_ref(&());
    let mut status = old_status.clone();
    let mut lease_now = lease.clone();
    let mut requeue = renew_interval;
    let mut blocked: Option<(&'static str, String)> = None;
    // When this pass's renewal was sent (`None`: not renewed). A renewal that carries
    // nothing but the time is the renewer's; the pass renews only as its backstop, when the
    // renewer has not renewed within two intervals (the first pass, a licence run out).
    let mut renewal_sent: Option<Instant> = None;
    let carries_answer = matches!(answer, HolderAnswer::MarkStopped | HolderAnswer::Decline(_));
    let renew_here = renew
        && (carries_answer
            || lease_now.as_ref().is_some_and(|l| {
                lease_duration_seconds(l) != Some(plan.lease_duration.as_secs() as i32)
            })
            || !view.as_ref().is_some_and(|v| {
                ctx.renewer
                    .renewed_within(&fence_key, &v.holder, v.epoch, renew_interval * 2)
            }));
    if renew_here && let Some(l) = &lease {
        let change = |l: &mut Lease| {
            if let Some(spec) = l.spec.as_mut() {
                spec.renew_time = Some(MicroTime(Timestamp::now()));
                spec.lease_duration_seconds = Some(plan.lease_duration.as_secs() as i32);
            }
            match &answer {
                HolderAnswer::MarkStopped => {
                    let marked = handover.clone().map(|h| Handover { stopped: true, ..h });
                    set_handover(l, marked.as_ref());
                }
                HolderAnswer::Decline(_) => set_handover(l, None),
                _ => {}
            }
        };
        let sent = Instant::now();
        match swap_lease(ctx, &fence_key, &leases, l, change).await {
            Ok(l) => {
                renewal_sent = Some(sent);
                ctx.renewer
                    .renewed_by_pass(&fence_key, sent, &l, plan.lease_duration);
                lease_now = Some(l);
                if let HolderAnswer::Decline(why) = &answer {
                    ctx.event(
                        &regarding,
                        true,
                        "HandoverDeclined",
                        "MoveActiveRegion",
                        format!("{why}; consumers resume here"),
                    )
                    .await;
                }
                if answer == HolderAnswer::MarkStopped {
                    tracing::info!(namespace = ns, name, to = ?handover.as_ref().map(|h| &h.to), "consumers stopped for the handover");
                }
            }
            Err(kube::Error::Api(e)) if e.code == 409 => requeue = Duration::from_secs(1),
            Err(source) => {
                let message = format!(
                    "applying Lease {ns}/{lease_name} (renew) on {server}{}: {source}",
                    crate::coordination::no_answer_hint(&source)
                );
                return Err(lease_failed(ctx, &cgf, &plan, message).await);
            }
        }
    }
    match &step {
        Step::Steady {
            renew: _,
            acknowledge_intent,
        } => {
            if *acknowledge_intent {
                status.acted_active_region = cgf.spec.active_region.clone();
            }
        }
        Step::Begin(m) => {
            let detected = m
                .from
                .as_ref()
                .and_then(|f| health.get(f))
                .and_then(|h: &RegionHealth| h.failing_since)
                .filter(|_| m.kind == MoveKind::Unplanned)
                .map(to_time);
            // An unplanned move resumes from the standby's last committed round: its plan
            // (the watermarks) is kept now, before the standby ends with its epoch.
            let plan = match (m.kind, standby_ips.get(&m.to)) {
                (MoveKind::Unplanned, Some(ip)) => standby_client::last_plan(ip).await.map(|p| {
                    standby_client::move_plan(&p, standby_client::ORIGIN_LAST_STANDBY_ROUND)
                }),
                _ => None,
            };
            status.pending_move = Some(PendingMove {
                from: m.from.clone(),
                to: m.to.clone(),
                reason: m.reason.as_str().into(),
                kind: kind_str(m.kind).into(),
                epoch: m.epoch as i64,
                started: Some(Time(Timestamp::now())),
                detected,
                plan,
                final_sync_error: None,
            });
            if cgf.spec.active_region.is_some() {
                status.acted_active_region = cgf.spec.active_region.clone();
            }
            ctx.event(
                &regarding,
                m.reason == MoveReason::RegionDown,
                "FailoverStarted",
                "MoveActiveRegion",
                format!(
                    "moving group {} from {} to {} ({}, {}), epoch {} -> {}",
                    cgf.spec.group_id,
                    m.from.as_deref().unwrap_or("-"),
                    m.to,
                    m.reason.as_str(),
                    kind_str(m.kind),
                    m.epoch - 1,
                    m.epoch
                ),
            )
            .await;
            moving = Some(("Started".into(), format!("moving to {}", m.to)));
            requeue = Duration::from_millis(200);
        }
        Step::WaitForGroupEmpty { region, detail } => {
            // Per region, the holder's operator stops its consumers when asked in the Lease.
            if let (Some(me), Some(m), Some(l)) = (ctx.region.as_deref(), &in_progress, &lease)
                && m.kind == MoveKind::Planned
                && handover
                    .as_ref()
                    .is_none_or(|h| h.to != me || h.epoch != m.epoch)
            {
                let ask = Handover {
                    to: me.to_string(),
                    epoch: m.epoch,
                    requested: now,
                    stopped: false,
                };
                match write_handover(ctx, &fence_key, &leases, l, Some(&ask)).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {} // a conflict: asked again next pass
                    Err(source) => {
                        let message = format!(
                            "applying Lease {ns}/{lease_name} (handover request) on {server}{}: {source}",
                            crate::coordination::no_answer_hint(&source)
                        );
                        return Err(lease_failed(ctx, &cgf, &plan, message).await);
                    }
                }
            }
            moving = Some(("Draining".into(), format!("waiting for {region}: {detail}")));
            // Membership is probed on demand while a planned move drains.
            requeue = Duration::from_millis(250);
        }
        Step::RunFinalSync { from, to, epoch } => {
            // The target's standby (warm, acting for the source's epoch) translates the
            // stopped group once more, with complete input, and answers after the read-back.
            let standby_epoch = epoch.saturating_sub(1);
            let answer = match standby_ips.get(to) {
                Some(ip) => {
                    standby_client::final_round(ip, standby_epoch, FINAL_ROUND_TIMEOUT).await
                }
                None => Err(format!(
                    "no running standby sync in {to} at epoch {standby_epoch} (Job {})",
                    names::sync_job_name(&name, to, standby_epoch)
                )),
            };
            if let Some(p) = status.pending_move.as_mut() {
                match answer {
                    Ok(plan) => {
                        tracing::info!(
                            namespace = ns,
                            name,
                            from,
                            to,
                            exact = plan.exact,
                            "final translation committed"
                        );
                        p.plan = Some(standby_client::move_plan(
                            &plan,
                            standby_client::ORIGIN_FINAL,
                        ));
                        p.final_sync_error = None;
                    }
                    Err(e) => {
                        p.final_sync_error =
                            Some(format!("final translation from {from} into {to}: {e}"));
                    }
                }
            }
            moving = Some((
                "FinalSync".into(),
                format!("translating the group's final position from {from} into {to}"),
            ));
            requeue = Duration::from_millis(50);
        }
        Step::RetryFinalSync { message } => {
            if let Some(p) = status.pending_move.as_mut() {
                p.final_sync_error = None;
            }
            ctx.event(
                &regarding,
                true,
                "FinalSyncFailed",
                "MoveActiveRegion",
                format!("{message}; running it again"),
            )
            .await;
            moving = Some(("FinalSyncFailed".into(), message.clone()));
            requeue = Duration::from_secs(1);
        }
        Step::WaitForLeaseExpiry { holder } => {
            moving = Some((
                "WaitingForLeaseExpiry".into(),
                format!("waiting for the Lease of {holder} to expire (it fences itself meanwhile)"),
            ));
            requeue = Duration::from_millis(500);
        }
        Step::TakeLease { to, epoch, expect } => {
            // `expect` is the observed Lease itself (the view was made from it): create when
            // there is none, else replace with its resourceVersion, a compare-and-swap.
            debug_assert_eq!(
                expect.as_ref().map(|(h, e)| (h.as_str(), *e)),
                view.as_ref().map(|v| (v.holder.as_str(), v.epoch))
            );
            let sent = Instant::now();
            let result = match &lease {
                None => {
                    let l = Lease {
                        metadata: ObjectMeta {
                            name: Some(lease_name.clone()),
                            namespace: Some(ns.clone()),
                            labels: Some(names::failover_selector_labels(&name)),
                            ..Default::default()
                        },
                        spec: Some(new_lease_spec(to, *epoch, plan.lease_duration)),
                    };
                    lease_request(ctx, &fence_key, leases.create(&PostParams::default(), &l)).await
                }
                Some(l) => {
                    let mut l = l.clone();
                    l.spec = Some(new_lease_spec(to, *epoch, plan.lease_duration));
                    // A handover request ends with the move it asked for (or any other).
                    set_handover(&mut l, None);
                    if let Some((previous, _)) = expect {
                        l.metadata
                            .annotations
                            .get_or_insert_with(BTreeMap::new)
                            .insert(names::PREVIOUS_HOLDER_ANNOTATION.into(), previous.clone());
                    }
                    let post = PostParams::default();
                    let swap = leases.replace(&lease_name, &post, &l);
                    lease_request(ctx, &fence_key, swap).await
                }
            };
            match result {
                Ok(l) => {
                    ctx.fences
                        .renewed(&fence_key, to, sent, fence_ttl(plan.lease_duration));
                    lease_now = Some(l);
                    ctx.metrics.active_epoch.set(*epoch as i64);
                    requeue = Duration::from_millis(100);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Another mover won the compare-and-swap: re-observe.
                    requeue = Duration::from_millis(200);
                }
                Err(source) => {
                    let message = format!(
                        "applying Lease {ns}/{lease_name} (move to {to}) on {server}{}: {source}",
                        crate::coordination::no_answer_hint(&source)
                    );
                    return Err(lease_failed(ctx, &cgf, &plan, message).await);
                }
            }
            moving = Some(("TakingLease".into(), format!("moving the Lease to {to}")));
        }
        Step::Finish(m) => {
            let pending = status.pending_move.take();
            let move_plan = pending.as_ref().and_then(|p| p.plan.clone());
            let started = pending.as_ref().and_then(|p| p.started.clone());
            let since = pending
                .as_ref()
                .and_then(|p| p.detected.clone().or(p.started.clone()));
            let rto = since.as_ref().map(|t| (now_unix() - time_unix(t)).max(0.0));
            let resume_offsets = health
                .get(&m.to)
                .and_then(|h| h.position.as_ref())
                .map(|p| {
                    p.committed
                        .iter()
                        .map(|((topic, partition), offset)| PartitionOffset {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: *offset,
                        })
                        .collect()
                })
                .unwrap_or_default();
            status.last_failover = Some(FailoverRecord {
                from: m.from.clone(),
                to: m.to.clone(),
                reason: m.reason.as_str().into(),
                kind: Some(kind_str(m.kind).into()),
                epoch: m.epoch as i64,
                started,
                finished: Some(Time(Timestamp::now())),
                rto_seconds: rto.map(|r| (r * 100.0).round() / 100.0),
                resume_offsets,
                plan_origin: move_plan.as_ref().map(|p| p.origin.clone()),
                // Only a final plan bounds what dedupe leaves: after a last standby round,
                // the dead region may have consumed past it (up to a sync interval), which
                // no watermark covers (issue 11's drills: 6 to 24 left after dedupe).
                max_duplicates_after_dedupe: move_plan
                    .as_ref()
                    .filter(|p| p.origin == standby_client::ORIGIN_FINAL)
                    .map(|p| p.max_duplicates_after_dedupe),
                watermarks: move_plan.map(|p| p.watermarks).unwrap_or_default(),
            });
            ctx.metrics.count_failover(m.reason.as_str());
            ctx.event(
                &regarding,
                false,
                "FailoverCompleted",
                "MoveActiveRegion",
                format!(
                    "group {} is active in {} at epoch {} ({}{})",
                    cgf.spec.group_id,
                    m.to,
                    m.epoch,
                    m.reason.as_str(),
                    rto.map(|r| format!(", {r:.1}s")).unwrap_or_default()
                ),
            )
            .await;
            requeue = Duration::from_millis(100);
        }
        Step::Abandon {
            reason,
            forget_intent,
        } => {
            status.pending_move = None;
            if *forget_intent {
                status.acted_active_region = None;
            }
            // Per region: withdraw this region's handover request, so the holder resumes now.
            if let (Some(me), Some(l), Some(h)) = (ctx.region.as_deref(), &lease, &handover)
                && h.to == me
                && let Err(e) = write_handover(ctx, &fence_key, &leases, l, None).await
            {
                tracing::warn!(namespace = ns, name, error = %e, "could not withdraw the handover request (the holder declines it after its timeout)");
            }
            ctx.event(
                &regarding,
                true,
                "FailoverAbandoned",
                "MoveActiveRegion",
                reason.clone(),
            )
            .await;
            requeue = Duration::from_millis(200);
        }
        Step::Blocked { reason, message } => {
            blocked = Some((reason, message.clone()));
        }
    }

    // The ConfigMap mirrors the Lease (the fact) for consumers, with the newest renewal: no
    // renewal lands between choosing it and the write (which would set the gates back).
    let paused = ctx.renewer.pause(&fence_key).await;
    let lease_now = ctx.renewer.newest(&fence_key, lease_now);
    let fact = lease_now
        .as_ref()
        .and_then(|l| lease_view(l, plan.lease_duration, Duration::ZERO));
    // A fenced holder's ConfigMap stays fenced until a renewal of this pass lifts it.
    let fenced_now = fence_due && renewal_sent.is_none();
    if let (Some(l), Some(spec), false) = (
        &fact,
        lease_now.as_ref().and_then(|l| l.spec.as_ref()),
        fenced_now,
    ) {
        let active_kafka = plan.regions.iter().find(|r| r.region == l.holder);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(names::active_name(&name)),
                namespace: Some(ns.clone()),
                labels: Some(names::failover_selector_labels(&name)),
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            },
            data: Some(BTreeMap::from([
                ("activeRegion".to_string(), l.holder.clone()),
                ("epoch".to_string(), l.epoch.to_string()),
                (
                    "bootstrapServers".to_string(),
                    active_kafka
                        .map(|r| r.kafka.bootstrap_servers.join(","))
                        .unwrap_or_default(),
                ),
                (
                    "renewTime".to_string(),
                    lease_now
                        .as_ref()
                        .map(crate::renewer::renew_time_text)
                        .unwrap_or_default(),
                ),
                // The fence (crate::fence) sets it; every confirmed apply lifts it.
                ("fenced".to_string(), "false".to_string()),
                (
                    "ttlSeconds".to_string(),
                    spec.lease_duration_seconds.unwrap_or(15).to_string(),
                ),
            ])),
            ..Default::default()
        };
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        cms.patch(
            &names::active_name(&name),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|source| Error::Apply {
            what: format!("ConfigMap {ns}/{}", names::active_name(&name)),
            source,
        })?;
    }

    drop(paused);

    // Standby sync Jobs: one per standby region at the current epoch; Jobs of other epochs
    // and failed ones go (a failed one is replaced next pass).
    let after = Observation {
        lease: fact.clone(),
        in_progress: status.pending_move.as_ref().and_then(pending_to_move),
        ..observation.clone()
    };
    // A finished (or dropped) move starts the new holder's consumers in this same pass, before
    // the status says the group is active there.
    if matches!(step, Step::Finish(_) | Step::Abandon { .. }) && after.in_progress.is_none() {
        apply_consumers(ctx, &ns, &name, &plan, &after, false).await?;
    }
    // Per region, only this region's standby Job is this operator's (in its own cluster).
    let wanted: BTreeSet<String> = standby_regions(&after)
        .into_iter()
        .filter(|r| ctx.acts_for(r))
        .collect();
    let current_epoch = fact.as_ref().map(|l| l.epoch);
    for job in &jobs {
        // Final-sync Jobs of older operator versions are not standby Jobs: they go too.
        let keep = is_standby_job(job)
            && job_epoch(job) == current_epoch
            && job_region(job).is_some_and(|r| Some(r) != fact.as_ref().map(|l| l.holder.as_str()))
            && job_failure(ctx, &ns, job).await.is_none();
        if !keep && job.metadata.deletion_timestamp.is_none() {
            delete_job(&jobs_api, &ns, &job.name_any()).await?;
        }
    }
    // A holder no longer in spec.regions has nothing to sync from (the move is refused).
    if let Some(l) = fact
        .as_ref()
        .filter(|l| plan.regions.iter().any(|r| r.region == l.holder))
    {
        for region in &wanted {
            let jn = names::sync_job_name(&name, region, l.epoch);
            if jobs.iter().any(|j| j.name_any() == jn) {
                continue;
            }
            let job = sync_job(&l.holder, region, l.epoch)?;
            create_job(&jobs_api, &ns, &job).await?;
        }
    }

    // Status.
    let standby_members = standby_members_note(&plan, fact.as_ref(), &health, SystemTime::now());
    let reported_members = conditions::state_of(&status.conditions, condition_type::DEGRADED)
        .is_some_and(|(_, reason)| reason == STANDBY_HAS_MEMBERS);
    let status = build_status(
        &cgf,
        &plan,
        status,
        fact.as_ref(),
        &health,
        &last_synced,
        blocked,
        moving,
        standby_members.clone(),
    );
    if let Some(note) = standby_members.filter(|_| !reported_members)
        && conditions::state_of(&status.conditions, condition_type::DEGRADED)
            .is_some_and(|(_, reason)| reason == STANDBY_HAS_MEMBERS)
    {
        tracing::warn!(namespace = ns, name, "{note}");
        ctx.event(
            &cgf.object_ref(&()),
            true,
            STANDBY_HAS_MEMBERS,
            "Probe",
            note,
        )
        .await;
    }
    for r in &status.regions {
        ctx.metrics.set_region(
            &r.region,
            r.healthy,
            last_synced.get(&r.region).map(|ts| now - ts),
        );
    }
    status_util::write_status(&cgf, ctx, status).await?;
    // Renewals one interval apart, whatever this pass cost after its renewal (on a loaded
    // node a pass takes seconds, and the gates' fresh window is only 2/3 of the Lease).
    if let Some(sent) = renewal_sent {
        requeue = requeue.min(
            renew_interval
                .saturating_sub(sent.elapsed())
                .max(Duration::from_millis(100)),
        );
    }
    Ok(Action::requeue(requeue))
}

/// A standby found commits of an older epoch (a consumer that outlived its fence): a
/// Warning event when their count rises, naming what the standby holds back.
async fn report_zombies(
    ctx: &Context,
    cgf: &ConsumerGroupFailover,
    region: &str,
    z: &tributary_core::commit_epoch::ZombieReport,
) {
    let (ns, name) = (cgf.namespace().unwrap_or_default(), cgf.name_any());
    let rise = ctx.zombie_rise(&format!("{ns}/{name}/{region}"), z.zombie_commits_total);
    if rise == 0 {
        return;
    }
    let held: Vec<String> = z
        .held_partitions
        .iter()
        .map(|c| {
            format!(
                "{}-{} at {} (epoch {}, region {})",
                c.topic, c.partition, c.offset, c.epoch, c.region
            )
        })
        .collect();
    let note = format!(
        "the standby sync into {region} saw {rise} commit(s) of an older epoch (zombie consumers that outlived their fence); not translated, the standby keeps its last good position{}",
        if held.is_empty() {
            String::new()
        } else {
            format!(": {}", held.join(", "))
        }
    );
    tracing::warn!(namespace = ns, name, region, "{note}");
    ctx.event(&cgf.object_ref(&()), true, "ZombieCommits", "Sync", note)
        .await;
}

/// A request to the Lease server, bounded by the holder's fence TTL
/// ([`crate::coordination::lease_request`]).
async fn lease_request<T>(
    ctx: &Context,
    fence_key: &str,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    crate::coordination::lease_request(&ctx.coordination, &ctx.fences, fence_key, request).await
}

/// A Lease request failed (`message` names the server and the request): the error to
/// return, after fencing the holder if its TTL ran out (`coordinationLoss: FailClosed`, a
/// separate coordination server; see `crate::fence`).
async fn lease_failed(
    ctx: &Context,
    cgf: &ConsumerGroupFailover,
    plan: &Plan,
    message: String,
) -> Error {
    let (ns, name) = (cgf.namespace().unwrap_or_default(), cgf.name_any());
    let key = crate::fence::key(&ns, &name);
    let retry = Duration::from_secs(1);
    if !ctx.coordination.separate {
        return Error::Coordination {
            message,
            retry: Duration::from_secs(2),
        };
    }
    if cgf.spec.failover.coordination_loss == CoordinationLoss::HoldLast {
        return Error::Coordination {
            message: format!(
                "{message}; coordinationLoss HoldLast: the active region keeps running, no failover until the Lease can be renewed"
            ),
            retry,
        };
    }
    let holder = match ctx.fences.on_failure(&key) {
        OnFailure::RetryWithin(retry) => return Error::Coordination { message, retry },
        OnFailure::Fenced { holder } => {
            // Again (idempotent): a pass that read the Lease but could not renew it may have
            // started the consumers again.
            let again = fence(ctx, cgf, plan, Some(holder)).await.err();
            return Error::Coordination {
                message: format!(
                    "{message}; fenced (coordinationLoss FailClosed): nothing is active until the Lease is renewed{}",
                    again
                        .map(|e| format!(" (fencing again failed: {e})"))
                        .unwrap_or_default()
                ),
                retry,
            };
        }
        OnFailure::Fence { holder } => holder,
    };
    match fence(ctx, cgf, plan, holder).await {
        Ok(holder) => {
            ctx.fences.fenced(&key, &holder);
            let what = format!(
                "the Lease could not be renewed within {:.1}s of the last renewal: {holder}'s consumers stopped and {} marked fenced (coordinationLoss FailClosed); they resume once the Lease is renewed",
                fence_ttl(plan.lease_duration).as_secs_f64(),
                names::active_name(&name)
            );
            tracing::error!(namespace = ns, name, holder, "fenced: {what}");
            ctx.event(&cgf.object_ref(&()), true, "Fenced", "Fence", what.clone())
                .await;
            Error::Coordination {
                message: format!("{message}; fenced: {what}"),
                retry,
            }
        }
        Err(e) => Error::Coordination {
            message: format!("{message}; fencing failed, retrying: {e}"),
            retry,
        },
    }
}

/// Fences `holder` (else the region the `<name>-active` ConfigMap names): ActivePassive
/// consumers scaled to 0, the ConfigMap marked `fenced: "true"` with no active region.
/// Returns the region fenced.
async fn fence(
    ctx: &Context,
    cgf: &ConsumerGroupFailover,
    plan: &Plan,
    holder: Option<String>,
) -> Result<String> {
    let (ns, name) = (cgf.namespace().unwrap_or_default(), cgf.name_any());
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm_name = names::active_name(&name);
    let holder = match holder {
        Some(h) => h,
        None => cms
            .get_opt(&cm_name)
            .await
            .map_err(|source| Error::Dereference {
                what: format!("ConfigMap {ns}/{cm_name}"),
                source,
            })?
            .and_then(|cm| cm.data?.get("activeRegion").cloned())
            .unwrap_or_default(),
    };
    if plan.mode == GroupMode::ActivePassive
        && let Some(w) = plan
            .regions
            .iter()
            .find(|r| r.region == holder)
            .and_then(|r| r.workload.as_ref())
    {
        workload(ctx, &ns, w, Some(0)).await?;
    }
    let patch = json!({"data": {"activeRegion": "", "fenced": "true"}});
    match cms
        .patch(
            &cm_name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(source) => {
            return Err(Error::Apply {
                what: format!("ConfigMap {ns}/{cm_name} (fence)"),
                source,
            });
        }
    }
    Ok(holder)
}

/// Scales each region's workload this operator acts for as `o` wants it (a no-op where it
/// already is); `stop_mine`: this operator's region stops whatever `o` says (fenced, or
/// handing over).
async fn apply_consumers(
    ctx: &Context,
    ns: &str,
    name: &str,
    plan: &Plan,
    o: &Observation,
    stop_mine: bool,
) -> Result<()> {
    for (region, mut consumers) in desired_consumers(o) {
        if !ctx.acts_for(&region) {
            continue;
        }
        if stop_mine && ctx.region.as_deref() == Some(region.as_str()) {
            consumers = Consumers::Stop;
        }
        let Some(w) = plan
            .regions
            .iter()
            .find(|r| r.region == region)
            .and_then(|r| r.workload.as_ref())
        else {
            continue;
        };
        let replicas = match consumers {
            Consumers::Run => w.replicas,
            Consumers::Standby => w.standby_replicas,
            Consumers::Stop => 0,
        };
        if let Some((_, true)) = workload(ctx, ns, w, Some(replicas)).await? {
            tracing::info!(
                namespace = ns,
                name,
                region,
                replicas,
                "scaled the group's workload"
            );
        }
    }
    Ok(())
}

fn union(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .chain(b)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn new_lease_spec(holder: &str, epoch: u64, duration: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_transitions: Some(epoch as i32),
        lease_duration_seconds: Some(duration.as_secs() as i32),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        ..Default::default()
    }
}

async fn create_job(api: &Api<Job>, ns: &str, job: &Job) -> Result<()> {
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(source) => Err(Error::Apply {
            what: format!("Job {ns}/{}", job.name_any()),
            source,
        }),
    }
}

async fn delete_job(api: &Api<Job>, ns: &str, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::Prune {
            what: format!("Job {ns}/{name}"),
            source,
        }),
    }
}

/// How long a standby region of an ActivePassive group may show members before it is
/// reported: the members of a region the group just left go within their session timeout
/// (45 s by default), so members past this are consumers that should not run there, or
/// members a restarted broker loaded that nothing owns.
const STANDBY_MEMBERS_GRACE: Duration = Duration::from_secs(120);

/// `Some(message)` when a standby region of an ActivePassive group has had members for longer
/// than [`STANDBY_MEMBERS_GRACE`] (and no move is under way): its standby sync commits nothing
/// there (it never commits over members) and a planned move there waits for them. Pure.
fn standby_members_note(
    plan: &Plan,
    lease: Option<&LeaseView>,
    health: &BTreeMap<String, RegionHealth>,
    now: SystemTime,
) -> Option<String> {
    if plan.mode != GroupMode::ActivePassive {
        return None;
    }
    let holder = lease.map(|l| l.holder.as_str());
    let notes: Vec<String> = plan
        .regions
        .iter()
        .filter(|r| Some(r.region.as_str()) != holder)
        .filter_map(|r| {
            let h = health.get(&r.region)?;
            let since = now.duration_since(h.members_since?).ok()?;
            let members = &h.position.as_ref()?.members;
            (h.healthy && !members.is_empty() && since >= STANDBY_MEMBERS_GRACE).then(|| {
                // A few are enough to find them; the note must stay within 1 KiB.
                let shown = members
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = members.len().saturating_sub(3);
                format!(
                    "standby region {} has had {} member(s) of the group for {}s ({shown}{})",
                    r.region,
                    members.len(),
                    since.as_secs(),
                    if more > 0 {
                        format!(", {more} more")
                    } else {
                        String::new()
                    }
                )
            })
        })
        .collect();
    (!notes.is_empty()).then(|| {
        format!(
            "{}; the standby sync commits nothing over members and a planned move there waits for them to leave. Stop consumers of the group that run there; if none runs (outside its gate), the members are left over, e.g. loaded by a restarted broker: stop and start the broker that coordinates the group (a clean stop, not a kill), or remove them (Admin removeMembersFromConsumerGroup)",
            notes.join("; ")
        )
    })
}

/// The status from what was observed and done. Pure.
#[allow(clippy::too_many_arguments)]
fn build_status(
    cgf: &ConsumerGroupFailover,
    plan: &Plan,
    mut status: ConsumerGroupFailoverStatus,
    lease: Option<&LeaseView>,
    health: &BTreeMap<String, RegionHealth>,
    last_synced: &BTreeMap<String, f64>,
    blocked: Option<(&'static str, String)>,
    moving: Option<(String, String)>,
    standby_members: Option<String>,
) -> ConsumerGroupFailoverStatus {
    status.observed_generation = cgf.meta().generation;
    status.active_region = lease.map(|l| l.holder.clone());
    status.epoch = lease.map(|l| l.epoch as i64);
    status.regions = plan
        .regions
        .iter()
        .map(|r| {
            let h = health.get(&r.region).cloned().unwrap_or_default();
            let active = lease.is_some_and(|l| l.holder == r.region);
            RegionStatus {
                region: r.region.clone(),
                healthy: h.healthy,
                failed_probes: h.consecutive_failures as i32,
                committed_lag: h.position.as_ref().map(|p| p.lag),
                last_sync_time: last_synced
                    .get(&r.region)
                    .map(|ts| to_time(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(*ts))),
                members: h.position.as_ref().map(|p| p.members.len() as i32),
                role: Some(
                    if !h.healthy {
                        "Down"
                    } else if active {
                        "Active"
                    } else {
                        "Standby"
                    }
                    .into(),
                ),
            }
        })
        .collect();
    let down: Vec<String> = status
        .regions
        .iter()
        .filter(|r| !r.healthy)
        .map(|r| {
            let why = health
                .get(&r.region)
                .and_then(|h| h.last_error.clone())
                .unwrap_or_else(|| "not probed yet".into());
            format!("{}: {why}", r.region)
        })
        .collect();
    let mut wanted = Vec::new();
    match (&moving, &blocked, lease) {
        (Some((reason, message)), _, _) => {
            wanted.push(Wanted::new(
                condition_type::READY,
                false,
                "FailingOver",
                message.clone(),
            ));
            wanted.push(Wanted::new(
                condition_type::FAILING_OVER,
                true,
                reason,
                message.clone(),
            ));
        }
        (None, Some((reason, message)), _) => {
            wanted.push(Wanted::new(
                condition_type::READY,
                false,
                reason,
                message.clone(),
            ));
            wanted.push(Wanted::new(condition_type::FAILING_OVER, false, "Idle", ""));
        }
        (None, None, Some(l)) => {
            let mut message = format!("active in {} at epoch {}", l.holder, l.epoch);
            if let Some(intent) = cgf.spec.active_region.as_ref().filter(|i| **i != l.holder) {
                // An automatic failover is not undone by a spec that still names the old
                // region: say how to fail back.
                message.push_str(&format!(
                    "; spec.activeRegion still says {intent} (not acted on since the failover): set it to {} to acknowledge, then to {intent} to fail back",
                    l.holder
                ));
            }
            wanted.push(Wanted::new(condition_type::READY, true, "Active", message));
            wanted.push(Wanted::new(condition_type::FAILING_OVER, false, "Idle", ""));
        }
        (None, None, None) => {
            wanted.push(Wanted::new(
                condition_type::READY,
                false,
                "NotActivated",
                "no active region yet",
            ));
            wanted.push(Wanted::new(condition_type::FAILING_OVER, false, "Idle", ""));
        }
    }
    wanted.push(match &blocked {
        Some((reason, message)) => Wanted::new(
            condition_type::FAILOVER_BLOCKED,
            true,
            reason,
            message.clone(),
        ),
        None => Wanted::new(condition_type::FAILOVER_BLOCKED, false, "AsExpected", ""),
    });
    let standby_members = standby_members.filter(|_| moving.is_none());
    wanted.push(match (down.is_empty(), standby_members) {
        (true, None) => Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
        (true, Some(note)) => {
            Wanted::new(condition_type::DEGRADED, true, STANDBY_HAS_MEMBERS, note)
        }
        (false, note) => Wanted::new(
            condition_type::DEGRADED,
            true,
            "RegionDown",
            down.into_iter().chain(note).collect::<Vec<_>>().join("; "),
        ),
    });
    status.conditions = conditions::merge(&status.conditions, &wanted, cgf.meta().generation);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::GroupPosition;

    fn plan(mode: GroupMode) -> Plan {
        let region = |name: &str| RegionPlan {
            region: name.into(),
            kafka: KafkaConnection::default(),
            checkpoint_topic: "tributary.checkpoints".into(),
            naming: TopicNaming::Identity,
            sources: vec![name.into()],
            workload: None,
        };
        Plan {
            mode,
            probe_period: Duration::from_secs(1),
            lease_duration: Duration::from_secs(5),
            max_sync_age: Duration::from_secs(60),
            regions: vec![region("east"), region("west")],
        }
    }

    fn answered(members: &[&str], since: Option<SystemTime>) -> RegionHealth {
        RegionHealth {
            probed: true,
            healthy: true,
            position: Some(GroupPosition {
                members: members.iter().map(|m| m.to_string()).collect(),
                ..Default::default()
            }),
            members_since: since,
            ..Default::default()
        }
    }

    #[test]
    fn standby_members_are_reported_only_past_the_grace_and_never_for_the_holder() {
        let now = SystemTime::now();
        let long_ago = now - STANDBY_MEMBERS_GRACE - Duration::from_secs(1);
        let lease = LeaseView {
            holder: "west".into(),
            epoch: 3,
            expired: false,
        };
        let members = ["c1 from /10.0.0.1 (m-1)", "c2 from /10.0.0.2 (m-2)"];
        let health = |east_since| {
            BTreeMap::from([
                ("east".to_string(), answered(&members, east_since)),
                ("west".to_string(), answered(&members, Some(long_ago))),
            ])
        };
        let ap = plan(GroupMode::ActivePassive);

        let note = standby_members_note(&ap, Some(&lease), &health(Some(long_ago)), now)
            .expect("east has had members past the grace");
        assert!(
            note.contains("standby region east has had 2 member(s)"),
            "{note}"
        );
        assert!(note.contains("c2 from /10.0.0.2 (m-2)"), "{note}");
        assert!(
            !note.contains("region west"),
            "the holder's members are its consumers: {note}"
        );

        let recent = now - STANDBY_MEMBERS_GRACE / 2;
        assert_eq!(
            standby_members_note(&ap, Some(&lease), &health(Some(recent)), now),
            None
        );
        assert_eq!(
            standby_members_note(
                &plan(GroupMode::ActiveActive),
                Some(&lease),
                &health(Some(long_ago)),
                now
            ),
            None,
            "every region consumes in ActiveActive"
        );
        let mut empty = health(Some(long_ago));
        empty.insert("east".into(), answered(&[], None));
        assert_eq!(standby_members_note(&ap, Some(&lease), &empty, now), None);
    }

    #[test]
    fn members_since_starts_at_the_first_answer_with_members_and_ends_without() {
        let mut h = RegionHealth::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let with = |n: usize| GroupPosition {
            members: (0..n).map(|i| format!("m-{i}")).collect(),
            ..Default::default()
        };
        h.answered(with(0), t0);
        assert_eq!(h.members_since, None);
        h.answered(with(2), t0);
        h.answered(with(1), t0 + Duration::from_secs(5));
        assert_eq!(h.members_since, Some(t0));
        h.answered(with(0), t0 + Duration::from_secs(9));
        assert_eq!(h.members_since, None);
    }
}
