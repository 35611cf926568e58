//! `tributary active-gate`: the consumer's side of the fence. A sidecar that follows its
//! group's `<name>-active` ConfigMap through the API server ([`watch`]) and says whether this
//! pod's region is the active one ([`verdict`]), three ways:
//! - `GET /active` on localhost: 200 with `{region, epoch, renewTime, ...}` while active, 409
//!   with the reason otherwise;
//! - a file (`--file`), replaced atomically (write + rename) on every change;
//! - the pod condition `tributary.dev/active` on its own pod (`pods/status`), for
//!   `spec.readinessGates`.
//!
//! The answer is re-evaluated on every watch event and on a timer (`--recheck`), because a
//! record goes stale without any event. `/active` decides at request time. SIGTERM: the file
//! and the condition say `Stopped`, then exit 0.

pub mod verdict;
pub mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tributary_runtime::{LogFormat, parse_duration};

pub use verdict::{Answer, Observed, Reason, decide};

/// The pod condition this gate keeps (name it in `spec.readinessGates`).
pub const CONDITION_TYPE: &str = "tributary.dev/active";

/// Flags of `tributary active-gate`.
#[derive(clap::Args, Debug, Clone)]
pub struct ActiveGateArgs {
    /// The ConfigMap to follow: `<ConsumerGroupFailover name>-active`.
    #[arg(long, env = "TRIBUTARY_ACTIVE_CONFIGMAP", value_name = "NAME")]
    pub configmap: String,
    /// The region this pod runs in (the ConfigMap's `activeRegion` must name it).
    #[arg(long, env = "TRIBUTARY_REGION")]
    pub region: String,
    /// Namespace of the ConfigMap and of this pod (downward API `metadata.namespace`).
    /// Default: the client's namespace (the ServiceAccount's, in a pod).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This pod's name (downward API `metadata.name`): the gate keeps the condition
    /// `tributary.dev/active` on it. Without it no condition is written.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Port of `GET /active`, `/healthz`, `/readyz` and `/metrics`, on 127.0.0.1 only.
    #[arg(long, env = "TRIBUTARY_ACTIVE_GATE_PORT", default_value_t = 9477)]
    pub port: u16,
    /// Also write the answer (JSON) to this file, atomically (temp file + rename).
    #[arg(long, env = "TRIBUTARY_ACTIVE_FILE", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Subtracted from `ttlSeconds`: the record is fresh until `renewTime + ttlSeconds −
    /// margin`. Default: the operator's own fence margin, ttlSeconds / 3 (at least 1 s).
    /// Make it at least the clock skew between this node and the operator's.
    #[arg(long, env = "TRIBUTARY_ACTIVE_MARGIN", value_parser = parse_duration)]
    pub margin: Option<Duration>,
    /// How often the answer is re-evaluated without news (a record goes stale by itself).
    #[arg(long, env = "TRIBUTARY_ACTIVE_RECHECK", default_value = "250ms", value_parser = parse_duration)]
    pub recheck: Duration,
    #[arg(long, env = "TRIBUTARY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Counters of the gate (prefix `tributary_active_gate_`).
struct Metrics {
    registry: Registry,
    active: Gauge,
    transitions: Counter,
    watch_lost: Counter,
    condition_errors: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tributary_active_gate");
        let m = Metrics {
            registry: Registry::default(),
            active: Gauge::default(),
            transitions: Counter::default(),
            watch_lost: Counter::default(),
            condition_errors: Counter::default(),
        };
        registry.register(
            "active",
            "1 while this region is the active one and the record is fresh",
            m.active.clone(),
        );
        registry.register(
            "transitions",
            "Changes of the answer (active or its reason)",
            m.transitions.clone(),
        );
        registry.register(
            "watch_lost",
            "Watches of the ConfigMap that failed (the gate answered 409 until re-established)",
            m.watch_lost.clone(),
        );
        registry.register(
            "condition_errors",
            "Failed writes of the pod condition (retried)",
            m.condition_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

struct Gate {
    region: String,
    margin: Option<Duration>,
    observed: tokio::sync::watch::Receiver<Observed>,
    metrics: Metrics,
    alive: AtomicBool,
}

impl Gate {
    fn answer(&self) -> Answer {
        decide(
            &self.observed.borrow(),
            &self.region,
            Timestamp::now(),
            self.margin,
        )
    }
}

impl tributary_runtime::Endpoints for Gate {
    fn metrics(&self) -> String {
        tributary_runtime::encode_registry(&self.metrics.registry)
    }

    fn healthz(&self) -> Result<(), String> {
        if self.alive.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("stopping".into())
        }
    }

    /// Ready once the gate knows the ConfigMap's state (active or not).
    fn readyz(&self) -> Result<(), String> {
        match &*self.observed.borrow() {
            Observed::Starting => Err("no answer from the API server yet".into()),
            Observed::WatchLost(why) => Err(format!("watch lost: {why}")),
            _ => Ok(()),
        }
    }
}

fn json_response(answer: &Answer) -> Response {
    let code = StatusCode::from_u16(answer.status_code()).unwrap_or(StatusCode::CONFLICT);
    match serde_json::to_string(answer) {
        Ok(body) => (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            body + "\n",
        )
            .into_response(),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
    }
}

async fn active(State(gate): State<Arc<Gate>>) -> Response {
    json_response(&gate.answer())
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// a reader sees the old answer or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The condition for `answer`, as a strategic-merge patch of `pods/status` (conditions merge
/// by `type`, so the kubelet's own conditions are left alone).
fn condition_patch(answer: &Answer) -> serde_json::Value {
    json!({"status": {"conditions": [{
        "type": CONDITION_TYPE,
        "status": if answer.active { "True" } else { "False" },
        "reason": answer.reason.as_str(),
        "message": answer.message,
        "lastTransitionTime": Timestamp::now().to_string(),
    }]}})
}

/// Keeps the pod condition equal to the answer: written when `(active, reason)` changes,
/// retried until it takes.
struct ConditionWriter {
    pods: Api<Pod>,
    pod: String,
    written: Option<(bool, Reason)>,
}

impl ConditionWriter {
    async fn sync(&mut self, answer: &Answer, metrics: &Metrics) {
        let want = (answer.active, answer.reason);
        if self.written == Some(want) {
            return;
        }
        let patch = condition_patch(answer);
        match tokio::time::timeout(
            Duration::from_secs(5),
            self.pods.patch_status(
                &self.pod,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            ),
        )
        .await
        {
            Ok(Ok(_)) => {
                tracing::info!(pod = %self.pod, active = answer.active, reason = answer.reason.as_str(), "pod condition {CONDITION_TYPE} written");
                self.written = Some(want);
            }
            Ok(Err(e)) => {
                metrics.condition_errors.inc();
                tracing::warn!(pod = %self.pod, "writing the pod condition {CONDITION_TYPE} failed (retrying; the ServiceAccount needs patch on pods/status): {e}");
            }
            Err(_) => {
                metrics.condition_errors.inc();
                tracing::warn!(pod = %self.pod, "writing the pod condition {CONDITION_TYPE} timed out (retrying)");
            }
        }
    }
}

/// Runs `tributary active-gate` until SIGTERM/SIGINT.
pub fn run(args: ActiveGateArgs) -> anyhow::Result<()> {
    tributary_runtime::init_logging(args.log_format);
    if args.region.trim().is_empty() {
        anyhow::bail!("--region is empty: name the region this pod runs in (TRIBUTARY_REGION)");
    }
    if args.configmap.trim().is_empty() {
        anyhow::bail!(
            "--configmap is empty: name the ConsumerGroupFailover's ConfigMap, <name>-active"
        );
    }
    if args.recheck.is_zero() {
        anyhow::bail!("--recheck must be above 0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("tributary-active-gate")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ActiveGateArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.context(
        "no Kubernetes client configuration (in a pod: the ServiceAccount token; else KUBECONFIG)",
    )?;
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{} (--port)", args.port))?;
    let (observed_tx, observed_rx) = tokio::sync::watch::channel(Observed::Starting);
    let gate = Arc::new(Gate {
        region: args.region.clone(),
        margin: args.margin,
        observed: observed_rx.clone(),
        metrics: Metrics::new(),
        alive: AtomicBool::new(true),
    });
    tracing::info!(
        configmap = %args.configmap, namespace = %namespace, region = %args.region,
        pod = ?args.pod_name, port = args.port, file = ?args.file,
        "tributary active-gate starting"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let lost_gate = gate.clone();
    let follower = tokio::spawn(watch::follow(
        cms,
        args.configmap.clone(),
        observed_tx,
        move || {
            lost_gate.metrics.watch_lost.inc();
        },
    ));

    let (stop_http, stop_http_rx) = tokio::sync::watch::channel(false);
    let mut stop_http_rx = stop_http_rx;
    let routes = Router::new()
        .route("/active", get(active))
        .with_state(gate.clone());
    let server = tokio::spawn(tributary_runtime::serve_with(
        listener,
        gate.clone(),
        routes,
        async move {
            let _ = stop_http_rx.wait_for(|stop| *stop).await;
        },
    ));

    let mut condition =
        args.pod_name
            .clone()
            .filter(|p| !p.is_empty())
            .map(|pod| ConditionWriter {
                pods: Api::namespaced(client.clone(), &namespace),
                pod,
                written: None,
            });
    if condition.is_none() {
        tracing::warn!("no --pod-name (POD_NAME): the pod condition {CONDITION_TYPE} is not kept");
    }
    let mut changes = observed_rx;
    let mut ticker = tokio::time::interval(args.recheck);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Published::default();
    let terminate = tributary_runtime::termination();
    tokio::pin!(terminate);
    loop {
        tokio::select! {
            _ = &mut terminate => break,
            changed = changes.changed() => {
                if changed.is_err() {
                    break; // the follower ended: cannot happen while it loops
                }
            }
            _ = ticker.tick() => {}
        }
        let answer = gate.answer();
        publish(&gate, &args, &mut last, &mut condition, answer).await;
    }

    tracing::info!("termination requested: answering Stopped and exiting");
    gate.alive.store(false, Ordering::Relaxed);
    follower.abort();
    let stopped = Answer::stopped();
    if let Some(path) = &args.file
        && let Err(e) = write_answer(path, &stopped)
    {
        tracing::warn!(file = %path.display(), "writing the Stopped answer failed: {e}");
    }
    if let Some(writer) = &mut condition {
        writer.sync(&stopped, &gate.metrics).await;
    }
    let _ = stop_http.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

fn write_answer(path: &Path, answer: &Answer) -> std::io::Result<()> {
    let body = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    write_atomically(path, &body)
}

/// What was last published: the answer (for the log and metrics) and the file's content.
#[derive(Default)]
struct Published {
    answer: Option<Answer>,
    file: Option<Answer>,
    file_error_logged: bool,
}

/// Hands a new answer to the file, the condition, the metrics and the log.
async fn publish(
    gate: &Gate,
    args: &ActiveGateArgs,
    last: &mut Published,
    condition: &mut Option<ConditionWriter>,
    answer: Answer,
) {
    let flipped = last
        .answer
        .as_ref()
        .is_none_or(|l| (l.active, l.reason) != (answer.active, answer.reason));
    if flipped {
        gate.metrics.transitions.inc();
        gate.metrics.active.set(i64::from(answer.active));
        tracing::info!(active = answer.active, reason = answer.reason.as_str(), epoch = ?answer.epoch, "{}", answer.message);
    }
    last.answer = Some(answer.clone());
    if let Some(path) = &args.file
        && last.file.as_ref() != Some(&answer)
    {
        match write_answer(path, &answer) {
            Ok(()) => {
                last.file = Some(answer.clone());
                last.file_error_logged = false;
            }
            // Retried every recheck; logged once per run of failures.
            Err(e) if !last.file_error_logged => {
                last.file_error_logged = true;
                tracing::warn!(file = %path.display(), "writing the answer failed (retrying): {e}");
            }
            Err(_) => {}
        }
    }
    if let Some(writer) = condition {
        writer.sync(&answer, &gate.metrics).await;
    }
}
