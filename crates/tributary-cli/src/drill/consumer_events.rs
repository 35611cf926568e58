//! Where the drill reads its consumers' event lines (VerifiableConsumer's JSON on stdout):
//! the local stack's log files, or the Kubernetes API (`pods/log`, followed), which works on
//! any cluster. Only the source differs: every line goes to [`super::run`]'s one parser.
//!
//! The API source follows every container of every pod of each region's workload (listed by
//! the workload's selector every second, so new pods are followed as they appear). A dropped
//! stream is resumed with `sinceTime` (whole seconds, rounded down) and the lines stamped at
//! or before the last one read are dropped: nothing is lost or counted twice. When the
//! container restarted in between, the rest of its previous run is read first
//! (`previous=true`). Each run of a container (`restartCount`) is its own consumer session.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use kube::core::Selector;
use tokio::sync::watch;

use super::events::Tail;

/// `--consumer-events`: where the consumers' events are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumerEventsFrom {
    /// The local stack's node agent files (`--pod-logs`).
    Files,
    /// The Kubernetes API: `pods/log` of the workloads' pods, followed.
    Api,
}

/// One event line of a consumer session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerLine {
    pub region: String,
    /// One VerifiableConsumer process: a log file, or one run of a pod's container.
    pub session: String,
    pub line: String,
}

/// The consumers' event lines, read since the last call.
pub enum ConsumerEvents {
    Files(PodLogFiles),
    Api(PodLogStreams),
}

impl ConsumerEvents {
    pub fn new_lines(&mut self) -> Vec<ConsumerLine> {
        match self {
            ConsumerEvents::Files(f) => f.new_lines(),
            ConsumerEvents::Api(a) => a.new_lines(),
        }
    }

    pub fn stop(&mut self) {
        if let ConsumerEvents::Api(a) = self {
            let _ = a.stop.send(true);
        }
    }
}

/// The local stack's node agent files: `<pod-logs>/agent-*/pods/<ns>_<workload>-*/*.log`
/// (kept after the pods are gone).
pub struct PodLogFiles {
    pub pod_logs: PathBuf,
    /// `<namespace>_<workload>-` → region.
    pub pod_prefixes: Vec<(String, String)>,
    pub tail: Tail,
}

impl PodLogFiles {
    fn new_lines(&mut self) -> Vec<ConsumerLine> {
        let mut out = Vec::new();
        let Ok(agents) = std::fs::read_dir(&self.pod_logs) else {
            return out;
        };
        for agent in agents.flatten() {
            let Ok(pods) = std::fs::read_dir(agent.path().join("pods")) else {
                continue;
            };
            for pod in pods.flatten() {
                let name = pod.file_name().to_string_lossy().to_string();
                let Some((_, region)) = self.pod_prefixes.iter().find(|(p, _)| name.starts_with(p))
                else {
                    continue;
                };
                let Ok(files) = std::fs::read_dir(pod.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let path = f.path();
                    if path.extension().is_none_or(|e| e != "log") {
                        continue;
                    }
                    let session = path.display().to_string();
                    for line in self.tail.new_lines(&path) {
                        out.push(ConsumerLine {
                            region: region.clone(),
                            session: session.clone(),
                            line,
                        });
                    }
                }
            }
        }
        out
    }
}

/// `pods/log` streams of the workloads' pods, followed by background tasks.
pub struct PodLogStreams {
    lines: Arc<Mutex<Vec<ConsumerLine>>>,
    stop: watch::Sender<bool>,
}

const LIST_PERIOD: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(1);

impl PodLogStreams {
    /// Starts following the pods of each region's workload (`region` → (its cluster, the
    /// Deployment's name)) in `ns`. Fails when a workload's selector cannot be read.
    pub async fn start(
        ns: &str,
        workloads: BTreeMap<String, (kube::Client, String)>,
    ) -> Result<Self> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        for (region, (client, workload)) in workloads {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let d = deployments
                .get(&workload)
                .await
                .with_context(|| format!("reading Deployment {ns}/{workload} (the workload of {region}) for its pod selector"))?;
            let selector = selector_of(&d).with_context(|| {
                format!("Deployment {ns}/{workload} (the workload of {region})")
            })?;
            let follow = RegionPods {
                pods: Api::namespaced(client, ns),
                ns: ns.to_string(),
                region,
                selector,
                lines: lines.clone(),
                stopped: stopped.clone(),
            };
            tokio::spawn(follow.run());
        }
        Ok(PodLogStreams { lines, stop })
    }

    fn new_lines(&mut self) -> Vec<ConsumerLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The Deployment's pod selector (kube's own parsing of `matchLabels` and
/// `matchExpressions`); one that selects every pod of the namespace is refused.
fn selector_of(d: &Deployment) -> Result<Selector> {
    let Some(s) = d.spec.as_ref().map(|s| s.selector.clone()) else {
        bail!("has no spec.selector");
    };
    let selector = Selector::try_from(s).context("spec.selector")?;
    if selector.selects_all() {
        bail!("spec.selector selects every pod of the namespace");
    }
    Ok(selector)
}

/// Lists a region's workload pods and starts a [`ContainerLog`] for each new container.
struct RegionPods {
    pods: Api<Pod>,
    ns: String,
    region: String,
    selector: Selector,
    lines: Arc<Mutex<Vec<ConsumerLine>>>,
    stopped: watch::Receiver<bool>,
}

impl RegionPods {
    async fn run(mut self) {
        let mut following: HashSet<(String, String)> = HashSet::new();
        let mut warned = false;
        loop {
            match self
                .pods
                .list(&ListParams::default().labels_from(&self.selector))
                .await
            {
                Ok(list) => {
                    warned = false;
                    for p in list.items {
                        let (Some(name), Some(uid)) =
                            (p.metadata.name.clone(), p.metadata.uid.clone())
                        else {
                            continue;
                        };
                        // Logs exist once the pod is on a node.
                        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
                            continue;
                        }
                        for c in p.spec.iter().flat_map(|s| &s.containers) {
                            if following.insert((uid.clone(), c.name.clone())) {
                                let log = ContainerLog {
                                    pods: self.pods.clone(),
                                    session: format!("{}/{name}/{}", self.ns, c.name),
                                    pod: name.clone(),
                                    uid: uid.clone(),
                                    container: c.name.clone(),
                                    region: self.region.clone(),
                                    lines: self.lines.clone(),
                                    last: None,
                                    run: None,
                                };
                                tokio::spawn(log.follow(self.stopped.clone()));
                            }
                        }
                    }
                }
                // A region's cluster may be down (the drill's fault): keep trying.
                Err(e) if !warned => {
                    warned = true;
                    eprintln!(
                        "drill: listing the consumer pods of {} ({}): {e} (retrying)",
                        self.region, self.selector
                    );
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(LIST_PERIOD) => {}
                _ = self.stopped.changed() => return,
            }
        }
    }
}

/// One container's log, followed across dropped streams and restarts.
struct ContainerLog {
    pods: Api<Pod>,
    pod: String,
    uid: String,
    container: String,
    region: String,
    /// `<ns>/<pod>/<container>`; each run adds ` (restart N)`.
    session: String,
    lines: Arc<Mutex<Vec<ConsumerLine>>>,
    /// The stamp of the last line taken.
    last: Option<Timestamp>,
    /// The container's `restartCount` when the current stream was opened.
    run: Option<i32>,
}

/// The outcome of one stream.
enum Ended {
    /// The stream ended or dropped: open another.
    Again,
    /// The pod is gone (or replaced): nothing more to read.
    Gone,
}

impl ContainerLog {
    async fn follow(mut self, mut stopped: watch::Receiver<bool>) {
        loop {
            let ended = tokio::select! {
                e = self.one_stream() => e,
                _ = stopped.changed() => return,
            };
            if matches!(ended, Ended::Gone) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = stopped.changed() => return,
            }
        }
    }

    /// The container's restart count now; `Err(Gone)` when the pod is no more this one.
    async fn restart_count(&self) -> Result<Option<i32>, Ended> {
        match self.pods.get_opt(&self.pod).await {
            Ok(Some(p)) if p.metadata.uid.as_deref() == Some(&self.uid) => Ok(p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|cs| cs.into_iter().find(|c| c.name == self.container))
                .map(|c| c.restart_count)),
            Ok(_) => Err(Ended::Gone),
            Err(_) => Ok(None),
        }
    }

    async fn one_stream(&mut self) -> Ended {
        let now = match self.restart_count().await {
            Ok(n) => n,
            Err(gone) => return gone,
        };
        if let (Some(seen), Some(now)) = (self.run, now)
            && now > seen
            && self.last.is_some()
        {
            // It restarted since the last stream: what that run wrote after our last line.
            let session = self.run_session(seen);
            let params = self.params(false, true);
            if let Ok(text) = self.pods.logs(&self.pod, &params).await {
                for line in text.lines() {
                    self.take(line, &session);
                }
            }
        }
        if now.is_some() {
            self.run = now;
        }
        let session = self.run_session(self.run.unwrap_or(0));
        let params = self.params(true, false);
        let Ok(stream) = self.pods.log_stream(&self.pod, &params).await else {
            return Ended::Again; // not started yet, or its node is down
        };
        let mut lines = stream.lines();
        while let Ok(Some(line)) = lines.try_next().await {
            self.take(&line, &session);
        }
        Ended::Again
    }

    fn run_session(&self, run: i32) -> String {
        format!("{} (restart {run})", self.session)
    }

    fn params(&self, follow: bool, previous: bool) -> LogParams {
        LogParams {
            container: Some(self.container.clone()),
            follow,
            previous,
            timestamps: true,
            // The API takes whole seconds: round down, and drop what was read already.
            since_time: self
                .last
                .and_then(|t| Timestamp::from_second(t.as_second()).ok()),
            ..LogParams::default()
        }
    }

    /// Takes a `<RFC 3339 stamp> <line>` unless it is at or before the last one taken.
    fn take(&mut self, stamped: &str, session: &str) {
        let Some((stamp, line)) = stamped.split_once(' ') else {
            return;
        };
        let Ok(at) = stamp.parse::<Timestamp>() else {
            return;
        };
        if self.last.is_some_and(|last| at <= last) {
            return;
        }
        self.last = Some(at);
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ConsumerLine {
                region: self.region.clone(),
                session: session.to_string(),
                line: line.to_string(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> ContainerLog {
        let client = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:1".parse().expect("url"),
        ))
        .expect("client");
        ContainerLog {
            pods: Api::namespaced(client, "ns"),
            pod: "p".into(),
            uid: "u".into(),
            container: "c".into(),
            region: "east".into(),
            session: "ns/p/c".into(),
            lines: Arc::default(),
            last: None,
            run: None,
        }
    }

    #[tokio::test]
    async fn a_resumed_stream_neither_loses_nor_repeats_a_line() {
        let mut l = log();
        l.take("2026-12-02T03:00:00.100000000Z one", "s");
        l.take("2026-12-02T03:00:00.700000000Z two", "s");
        // Resumed from the whole second before the last line: the repeats are dropped.
        let since = l.params(true, false).since_time.expect("since");
        assert_eq!(since.to_string(), "2026-12-02T03:00:00Z");
        l.take("2026-12-02T03:00:00.100000000Z one", "s");
        l.take("2026-12-02T03:00:00.700000000Z two", "s");
        l.take("2026-12-02T03:00:00.700000001Z three", "s");
        l.take("not stamped", "s");
        let got: Vec<String> = l
            .lines
            .lock()
            .expect("lock")
            .iter()
            .map(|c| c.line.clone())
            .collect();
        assert_eq!(got, ["one", "two", "three"]);
    }

    fn deployment(selector: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "billing-east"},
            "spec": {"selector": selector, "template": {}}
        }))
        .expect("deployment")
    }

    #[test]
    fn the_pod_selector_is_the_deployments_labels_and_expressions() {
        let d = deployment(serde_json::json!({
            "matchLabels": {"app": "billing"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["consumer"]}]
        }));
        let s = selector_of(&d).expect("selector").to_string();
        assert!(s.contains("app=billing"), "{s}");
        assert!(s.contains("tier in (consumer)"), "{s}");
    }

    #[test]
    fn a_selector_of_every_pod_is_refused() {
        let err = selector_of(&deployment(serde_json::json!({}))).expect_err("refused");
        assert!(err.to_string().contains("every pod"), "{err}");
    }
}
