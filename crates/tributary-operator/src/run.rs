//! The operator process: logging, the HTTP endpoints, leader election on a Lease, the two
//! controllers and the prober, graceful shutdown on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, ResourceExt};
use tributary_api::{AggregateCluster, ConsumerGroupFailover, RegionalStream};
use tributary_runtime::{LogFormat, parse_duration};

use crate::context::Context;
use crate::group_prober::GroupProber;
use crate::kafka::ClusterAdmin;
use crate::kafka_admin::RealClusterAdmin;
use crate::metrics::Metrics;
use crate::prober::{Prober, guarded};
use crate::{frame, names};

/// `tributary operator` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How often the prober asks each Kafka cluster for reachability, offsets and checkpoints.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// Image of replicator pods unless an AggregateCluster sets spec.replicator.image.
    #[arg(long, env = "TRIBUTARY_IMAGE")]
    pub image: Option<String>,
    /// Elect a leader on a Lease so that several replicas can run (only the leader reconciles).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "tributary-operator-leader")]
    pub lease_name: String,
    /// Duration of the leader-election Lease: how long a dead leader blocks a standby replica
    /// (and with it every failover it would drive). Renewed every third of it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_lease_duration: Duration,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This instance's identity in the Lease and in events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Kubeconfig of the coordination API server that holds the active-region Leases of
    /// ConsumerGroupFailovers (its etcd should keep a member in three regions). Default: the
    /// operator's own cluster (the stretched topology).
    #[arg(long, env = "TRIBUTARY_COORDINATION_KUBECONFIG")]
    pub coordination_kubeconfig: Option<std::path::PathBuf>,
    /// The region whose share this operator acts on, when every region runs its own
    /// Kubernetes cluster and operator (docs/coordination.md, "One cluster per region"): its
    /// RegionalStreams and AggregateClusters, and for each ConsumerGroupFailover its workload,
    /// standby sync Job and ConfigMap; the Lease is shared on the coordination API server,
    /// which this mode requires. Unset: one operator acts for every region (stretched).
    #[arg(long, env = "TRIBUTARY_REGION", value_parser = parse_region)]
    pub region: Option<String>,
}

/// A region name: a DNS-1123 label, as in the resources' `region` fields.
fn parse_region(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a region name (a DNS-1123 label: a-z, 0-9, '-', at most 63)"
        ))
    }
}

/// What the operator answers on `/metrics`, `/healthz` and `/readyz`.
struct Http {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl tributary_runtime::Endpoints for Http {
    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn healthz(&self) -> Result<(), String> {
        Ok(())
    }

    fn readyz(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not ready: still starting".into())
        }
    }
}

/// Runs the operator until SIGTERM (exit 0) or until leadership is lost (error: the pod
/// restarts and stands by, as client-go's leader election does).
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    tributary_runtime::init_logging(args.log_format);
    // Fail closed: per-region operators with a Lease each in their own cluster would each
    // hold a Lease of their own, so every region could be active at once.
    if let Some(region) = &args.region
        && args.coordination_kubeconfig.is_none()
    {
        anyhow::bail!(
            "--region {region} needs --coordination-kubeconfig: with one cluster per region the active-region Lease must be shared on the coordination API server"
        );
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));

    let http = Http {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tokio::spawn(async move {
        if let Err(e) =
            tributary_runtime::serve(listener, Arc::new(http), std::future::pending()).await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tributary_runtime::termination().await;
        tracing::info!("termination signal: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "tributary".into()),
            std::process::id()
        )
    });
    ready.store(true, Ordering::Relaxed);

    // Leader election: wait for the Lease (or for termination).
    let mut leadership = None;
    if args.leader_election {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
                .with_namespace(&args.lease_namespace)
                .with_identity(&identity)
                .with_duration(args.leader_lease_duration.as_secs().max(2))
                .with_grace((args.leader_lease_duration.as_secs() / 3).max(1))
                .build()
                .await
                .with_context(|| {
                    format!(
                        "preparing the leader Lease {}/{}",
                        args.lease_namespace, args.lease_name
                    )
                })?;
        let (mut rx, task) = manager.watch().await;
        tracing::info!(identity, lease = args.lease_name, "waiting for leadership");
        let elected = tokio::select! {
            r = rx.wait_for(|leader| *leader) => r.is_ok(),
            _ = stopped() => false,
        };
        if !elected {
            drop(rx);
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            return Ok(());
        }
        tracing::info!(identity, "leading");
        leadership = Some((rx, task));
    }
    metrics.leader.set(1);

    let admin: Arc<dyn ClusterAdmin> = Arc::new(RealClusterAdmin::default());
    let (prober, triggers) = Prober::new();
    let coordination =
        crate::coordination::lease_server(&client, args.coordination_kubeconfig.as_deref()).await?;
    tracing::info!(server = %coordination.description, region = args.region.as_deref().unwrap_or("(every region)"), "active-region Leases");
    let (group_prober, group_triggers) = GroupProber::new(admin.clone());

    let streams_api: Api<DeserializeGuard<RegionalStream>> = Api::all(client.clone());
    let aggregates_api: Api<DeserializeGuard<AggregateCluster>> = Api::all(client.clone());
    let deployments_api: Api<Deployment> = Api::all(client.clone());

    // Each controller is triggered by changes of its objects other than status (its own status
    // writes would re-trigger it), by the prober, and by what the object reads elsewhere.
    let (streams, stream_writer) = reflector::store();
    let stream_events = watcher(streams_api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(stream_writer)
        .applied_objects()
        .predicate_filter(
            crate::regional_stream::reconcile_fingerprint,
            Default::default(),
        );
    let stream_controller = Controller::for_stream(stream_events, streams.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance: Some(identity.clone()),
        },
    );
    let prober_for_task = prober.clone();
    let admin_for_prober = admin.clone();
    let fences = Arc::new(crate::fence::Fences::default());
    let renewer = crate::renewer::Renewer::new(
        coordination.clone(),
        client.clone(),
        group_prober.clone(),
        fences.clone(),
        metrics.clone(),
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        coordination,
        fences,
        renewer,
        group_prober,
        admin,
        prober,
        recorder,
        metrics: metrics.clone(),
        default_image: args.image.clone().filter(|s| !s.is_empty()),
        streams: streams.clone(),
        failures: Default::default(),
        zombie_commits: Default::default(),
        region: args.region.clone(),
    });

    let stream_run = stream_controller
        .reconcile_on(triggers.streams.map(|o| guarded(&o)))
        .graceful_shutdown_on(stopped())
        .run(
            frame::reconcile::<RegionalStream>,
            frame::error_policy::<RegionalStream>,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));

    let (aggregates, aggregate_writer) = reflector::store();
    let aggregate_events = watcher(aggregates_api, watcher::Config::default())
        .default_backoff()
        .reflect(aggregate_writer)
        .applied_objects()
        .predicate_filter(
            crate::aggregate_cluster::reconcile_fingerprint,
            Default::default(),
        );
    let aggregate_controller = Controller::for_stream(aggregate_events, aggregates.clone());
    let prober_task = tokio::spawn(prober_for_task.run(
        admin_for_prober,
        args.probe_interval,
        streams.clone(),
        aggregates.clone(),
    ));
    let owned = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={},app.kubernetes.io/component=replicator",
        names::MANAGED_BY
    ));
    // A source's change (spec, labels, topics, partitions, deletion) changes the routes of
    // every AggregateCluster in its namespace; its end offsets and conditions do not.
    let source_changes = crate::aggregate_cluster::source_change_triggers(
        watcher(streams_api, watcher::Config::default()).default_backoff(),
        aggregates.clone(),
    );
    let aggregate_run = aggregate_controller
        .owns(deployments_api, owned)
        .reconcile_on(source_changes)
        .reconcile_on(triggers.aggregates.map(|o| guarded(&o)))
        .graceful_shutdown_on(stopped())
        .run(
            frame::reconcile::<AggregateCluster>,
            frame::error_policy::<AggregateCluster>,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    // Routes are planned from the RegionalStreams: never before that cache is complete (an
    // empty cache would prune every route).
    let aggregate_run = async move {
        if streams.wait_until_ready().await.is_ok() {
            aggregate_run.await;
        }
    };

    // ConsumerGroupFailovers: health from the group prober, their sync Jobs owned. The
    // ConfigMap is not watched: the operator itself rewrites it at every renewal.
    let failovers_api: Api<DeserializeGuard<ConsumerGroupFailover>> = Api::all(client.clone());
    let jobs_api: Api<Job> = Api::all(client.clone());
    let owned_jobs = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/managed-by={}",
        names::MANAGED_BY
    ));
    let failover_controller = Controller::new(failovers_api, watcher::Config::default());
    let failovers = failover_controller.store();
    let aggregates_for_failovers: Api<DeserializeGuard<AggregateCluster>> =
        Api::all(client.clone());
    let failover_run = failover_controller
        .owns(jobs_api, owned_jobs)
        // A group names its AggregateClusters: one created, changed or deleted later (GitOps
        // applies in any order) reconciles the groups that name it.
        .watches(
            aggregates_for_failovers,
            watcher::Config::default(),
            move |agg: DeserializeGuard<AggregateCluster>| {
                let (ns, name) = (agg.namespace(), agg.name_any());
                failovers
                    .state()
                    .iter()
                    .filter(|f| f.namespace() == ns)
                    .filter(|f| {
                        f.0.as_ref().is_ok_and(|f| {
                            f.spec.regions.iter().any(|r| r.aggregate_cluster == name)
                        })
                    })
                    .map(|f| ObjectRef::from_obj(f.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .reconcile_on(group_triggers.map(|o| guarded(&o)))
        .graceful_shutdown_on(stopped())
        .run(
            frame::reconcile::<ConsumerGroupFailover>,
            frame::error_policy::<ConsumerGroupFailover>,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let failover_streams = ctx.streams.clone();
    let failover_run = async move {
        if failover_streams.wait_until_ready().await.is_ok() {
            failover_run.await;
        }
    };

    let lost = async {
        match leadership.as_mut() {
            Some((rx, _)) => {
                let _ = rx.wait_for(|leader| !*leader).await;
            }
            None => futures::future::pending::<()>().await,
        }
    };
    let controllers = futures::future::join3(stream_run, aggregate_run, failover_run);
    let result = tokio::select! {
        _ = controllers => Ok(()),
        _ = lost => Err(anyhow::anyhow!("lost the leader Lease {}/{}; exiting so that a new leader takes over cleanly", args.lease_namespace, args.lease_name)),
    };
    prober_task.abort();
    metrics.leader.set(0);
    if let Some((rx, task)) = leadership {
        // Closing the channel makes the lease manager release the Lease: the next leader
        // starts at once instead of after the lease duration.
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("operator stopped");
    result
}

/// [`run`] on a multi-threaded runtime of its own (the binary's `main` is synchronous).
pub fn run_blocking(args: OperatorArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}
