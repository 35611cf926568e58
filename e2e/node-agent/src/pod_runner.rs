//! One task per pod bound to this node: prepares its volumes and ServiceAccount kubeconfig,
//! runs its containers as local processes (init containers first), restarts them per
//! `restartPolicy`, probes readiness, reports status, and carries out deletion.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::kafka_image::{self, KafkaTools};
use crate::launch::{ImageKind, Launch, build_launch, image_kind};
use crate::mount_exec::{LaunchSpec, MountSpec, SUBCOMMAND};
use crate::node::now;
use crate::phase::{RestartPolicy, Seen, pod_phase};
use crate::probe::{self, Check};
use crate::procs::{ProcessTable, signal_group};
use crate::security;
use crate::sources::{HOST_IP, Sources, pod_ip};
use crate::token::{ApiServer, PodTokens, write_pod_kubeconfig};
use crate::volumes::{self, Backing};

const TICK: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_secs(10);
const RETRY: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long before exiting restarts without back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every pod task shares.
pub struct Agent {
    pub client: kube::Client,
    pub node_name: String,
    pub binary: PathBuf,
    /// `--binaries-dir`: builds of the binary by image tag.
    pub binaries_dir: Option<PathBuf>,
    pub image_match: String,
    /// JVM and jars for apache/kafka containers; the error is why they cannot run.
    pub kafka: Result<KafkaTools, String>,
    pub state_dir: PathBuf,
    pub agent_exe: PathBuf,
    pub api: ApiServer,
    pub procs: ProcessTable,
}

#[derive(Debug)]
pub enum PodMsg {
    Update(Box<Pod>),
    /// The pod is gone from the API (force-deleted or missed deletion).
    Gone,
}

#[derive(Debug, Clone)]
struct Terminated {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    message: Option<String>,
    started_at: Option<Time>,
    finished_at: Time,
    container_id: Option<String>,
}

impl Terminated {
    fn to_json(&self) -> Value {
        json!({
            "exitCode": self.exit_code, "signal": self.signal, "reason": self.reason, "message": self.message,
            "startedAt": self.started_at, "finishedAt": self.finished_at, "containerID": self.container_id,
        })
    }
}

struct Readiness {
    check: Result<Check, String>,
    period: Duration,
    timeout: Duration,
    success_threshold: i32,
    failure_threshold: i32,
    successes: i32,
    failures: i32,
    next: Instant,
}

struct Running {
    child: tokio::process::Child,
    pid: i32,
    started_at: Time,
    since: Instant,
    ready: bool,
    readiness: Option<Readiness>,
}

enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running(Box<Running>),
    Terminated(Terminated),
}

struct ContainerRun {
    spec: Container,
    init: bool,
    state: State,
    restart_count: i32,
    /// Ran before (in this or an earlier agent run): the next start is a restart.
    started_before: bool,
    last: Option<Terminated>,
    backoff: Duration,
    start_after: Instant,
}

impl ContainerRun {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn seen(&self) -> Seen {
        match &self.state {
            State::Running(_) => Seen::Running,
            State::Terminated(t) => Seen::Terminated {
                exit_code: t.exit_code,
            },
            State::Waiting { .. } => Seen::Waiting {
                last_exit: self.last.as_ref().map(|t| t.exit_code),
            },
        }
    }

    fn ready(&self) -> bool {
        matches!(&self.state, State::Running(r) if r.ready)
    }

    fn wait(&mut self, reason: &str, message: Option<String>) {
        self.state = State::Waiting {
            reason: reason.into(),
            message,
        };
    }
}

struct Terminating {
    deadline: Instant,
    killed: bool,
}

pub struct PodRunner {
    agent: Arc<Agent>,
    pod: Pod,
    key: String,
    uid: String,
    dir: PathBuf,
    policy: RestartPolicy,
    runs: Vec<ContainerRun>,
    start_time: Time,
    /// Why the pod cannot run at all (an image this agent does not run).
    unrunnable: Option<String>,
    /// Terminal phase reached (or found at adoption): nothing runs again.
    finished: Option<&'static str>,
    prepared: bool,
    next_prepare: Instant,
    volume_paths: HashMap<String, PathBuf>,
    volume_backings: HashMap<String, Backing>,
    tokens: PodTokens,
    kubeconfig: Option<PathBuf>,
    terminating: Option<Terminating>,
    conditions: BTreeMap<&'static str, (bool, Time)>,
    last_status: Option<Value>,
}

/// Runs the pod until it is deleted (or gone, or the agent stops).
pub async fn run_pod(agent: Arc<Agent>, pod: Pod, mut rx: mpsc::UnboundedReceiver<PodMsg>) {
    let mut runner = PodRunner::adopt(agent, pod);
    tracing::info!(pod = %runner.key, phase = runner.finished.unwrap_or("active"), "managing pod");
    loop {
        if runner.agent.procs.is_stopping() {
            return; // region down: the agent killed every process at once
        }
        if runner.step().await {
            return;
        }
        runner.flush_status().await;
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(PodMsg::Update(pod)) => {
                    let mut pod = *pod;
                    // Coalesce a burst of updates.
                    while let Ok(PodMsg::Update(next)) = rx.try_recv() {
                        pod = *next;
                    }
                    runner.pod = pod;
                }
                // A closed channel without a stop is a dropped watch: treat the pod as gone.
                Some(PodMsg::Gone) | None if !runner.agent.procs.is_stopping() => {
                    runner.stop_for_good().await;
                    return;
                }
                Some(PodMsg::Gone) | None => return,
            },
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

impl PodRunner {
    /// Builds the runner from the pod as the API has it: containers that ran under an
    /// earlier agent run count as started (their next start is a restart); a terminal pod
    /// stays terminal.
    fn adopt(agent: Arc<Agent>, pod: Pod) -> Self {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let policy = RestartPolicy::parse(spec.restart_policy.as_deref());
        let finished = match status.phase.as_deref() {
            Some("Succeeded") => Some("Succeeded"),
            Some("Failed") => Some("Failed"),
            _ => None,
        };
        let now_i = Instant::now();
        let mut runs = Vec::new();
        let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
        let main_statuses = status.container_statuses.clone().unwrap_or_default();
        for (init, containers, statuses) in [
            (
                true,
                spec.init_containers.clone().unwrap_or_default(),
                &init_statuses,
            ),
            (false, spec.containers.clone(), &main_statuses),
        ] {
            for c in containers {
                let prior = statuses.iter().find(|s| s.name == c.name);
                runs.push(adopt_container(
                    c,
                    init,
                    prior,
                    policy,
                    finished.is_some(),
                    now_i,
                ));
            }
        }
        let refusals: Vec<Option<String>> =
            runs.iter().map(|r| not_runnable(&agent, &r.spec)).collect();
        let foreign: Vec<String> = runs
            .iter()
            .zip(&refusals)
            .filter_map(|(r, why)| {
                let why = why.as_ref()?;
                let image = r.spec.image.clone().unwrap_or_default();
                Some(format!("{} ({image}): {why}", r.name()))
            })
            .collect();
        let unrunnable = (!foreign.is_empty())
            .then(|| format!("node agent cannot run container(s) {}", foreign.join("; ")));
        if unrunnable.is_some() && finished.is_none() {
            for (r, why) in runs.iter_mut().zip(refusals) {
                match why {
                    Some(why) => r.wait("ImageNotRunnable", Some(why)),
                    None => r.wait(
                        "ContainerCreating",
                        Some("another container of this pod cannot run on the node agent".into()),
                    ),
                }
            }
        }
        let mut conditions = BTreeMap::new();
        for c in status.conditions.clone().unwrap_or_default() {
            if let Some(t) = managed_condition(&c.type_) {
                conditions.insert(
                    t,
                    (
                        c.status == "True",
                        c.last_transition_time.unwrap_or_else(now),
                    ),
                );
            }
        }
        let tokens = PodTokens::new(agent.client.clone());
        PodRunner {
            dir: agent.state_dir.join("pods").join(format!("{ns}_{name}")),
            key: format!("{ns}/{name}"),
            uid,
            policy,
            runs,
            start_time: status.start_time.clone().unwrap_or_else(now),
            unrunnable,
            finished,
            prepared: false,
            next_prepare: now_i,
            volume_paths: HashMap::new(),
            volume_backings: HashMap::new(),
            tokens,
            kubeconfig: None,
            terminating: None,
            conditions,
            last_status: None,
            pod,
            agent,
        }
    }

    /// One round of work; true when the pod is finished with (deleted).
    async fn step(&mut self) -> bool {
        self.reap();
        if self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate_for_deletion().await;
        }
        if self.finished.is_some() || self.unrunnable.is_some() {
            return false;
        }
        if Instant::now() >= self.next_prepare {
            self.prepare().await;
        }
        if !self.prepared {
            return false;
        }
        let init_done = self.init_done();
        let now_i = Instant::now();
        let mut to_start = Vec::new();
        for (i, r) in self.runs.iter().enumerate() {
            let due = matches!(r.state, State::Waiting { .. }) && now_i >= r.start_after;
            if !due {
                continue;
            }
            if r.init {
                // Init containers run one at a time, in order.
                let first_pending = self
                    .runs
                    .iter()
                    .position(|r| r.init && !matches!(r.seen(), Seen::Terminated { exit_code: 0 }));
                if first_pending == Some(i) {
                    to_start.push(i);
                }
            } else if init_done {
                to_start.push(i);
            }
        }
        for i in to_start {
            self.start(i).await;
        }
        self.probe_readiness().await;
        let phase = self.phase();
        if phase == "Succeeded" || phase == "Failed" {
            tracing::info!(pod = %self.key, phase, "pod finished");
            self.finished = Some(phase);
        }
        false
    }

    fn init_done(&self) -> bool {
        self.runs
            .iter()
            .filter(|r| r.init)
            .all(|r| matches!(r.seen(), Seen::Terminated { exit_code: 0 }))
    }

    /// Collects exited processes and decides on restarts.
    fn reap(&mut self) {
        let policy = self.policy;
        let no_restart = self.finished.is_some() || self.terminating.is_some();
        let log_dir = self.dir.clone();
        for r in &mut self.runs {
            let State::Running(running) = &mut r.state else {
                continue;
            };
            let status = match running.child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(container = %r.spec.name, error = %e, "cannot wait for container process");
                    continue;
                }
            };
            let signal = status.signal();
            let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
            let ran_for = running.since.elapsed();
            let mut message = None;
            if exit_code != 0
                && r.spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
            {
                message = log_tail(&log_dir.join(format!("{}.log", r.spec.name)));
            }
            let term = Terminated {
                exit_code,
                signal,
                reason: if exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message,
                started_at: Some(running.started_at.clone()),
                finished_at: now(),
                container_id: Some(format!("agent://{}", running.pid)),
            };
            self.agent
                .procs
                .unregister(&proc_key(&self.uid, &r.spec.name));
            tracing::info!(pod = %self.key, container = %r.spec.name, exit_code, ?signal, "container exited");
            let restarts = if r.init {
                exit_code != 0 && policy != RestartPolicy::Never
            } else {
                policy.restarts(exit_code)
            };
            if restarts && !no_restart {
                if ran_for >= BACKOFF_RESET_AFTER {
                    r.backoff = BACKOFF_START;
                }
                let delay = r.backoff;
                r.backoff = (r.backoff * 2).min(BACKOFF_MAX);
                r.start_after = Instant::now() + delay;
                r.last = Some(term);
                let msg = format!(
                    "back-off {}s restarting failed container={} pod={}",
                    delay.as_secs(),
                    r.spec.name,
                    self.key
                );
                r.wait("CrashLoopBackOff", Some(msg));
            } else {
                r.state = State::Terminated(term);
            }
        }
    }

    /// Materializes the pod dir, the ServiceAccount kubeconfig and the volumes; repeated
    /// every `REFRESH` so ConfigMap/Secret updates and token refreshes reach the files.
    async fn prepare(&mut self) {
        match self.try_prepare().await {
            Ok(()) => {
                self.prepared = true;
                self.next_prepare = Instant::now() + REFRESH;
            }
            Err(e) if self.prepared => {
                tracing::warn!(pod = %self.key, error = %e, "refreshing volumes/token failed (will retry)");
                self.next_prepare = Instant::now() + RETRY;
            }
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "pod setup failed (will retry)");
                for r in &mut self.runs {
                    if matches!(r.state, State::Waiting { .. }) && r.last.is_none() {
                        r.wait("ContainerCreating", Some(e.clone()));
                    }
                }
                self.next_prepare = Instant::now() + RETRY;
            }
        }
    }

    async fn try_prepare(&mut self) -> Result<(), String> {
        let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
        if !self.prepared {
            // A pod of the same name but another uid used this dir: start its volumes fresh.
            let marker = self.dir.join("uid");
            if std::fs::read_to_string(&marker).is_ok_and(|u| u != self.uid) {
                let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
            }
            for d in ["volumes", "work", "kube"] {
                std::fs::create_dir_all(self.dir.join(d))
                    .map_err(|e| io("creating the pod dir", e))?;
            }
            std::fs::write(&marker, &self.uid).map_err(|e| io("writing the pod dir marker", e))?;
            // HOME and the fallback working dir: the containers' processes are not root.
            std::fs::set_permissions(
                self.dir.join("work"),
                std::fs::Permissions::from_mode(0o1777),
            )
            .map_err(|e| io("opening the pod's work dir", e))?;
        }
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let token = self.tokens.token(&self.pod, None, 3600).await?;
        self.kubeconfig = Some(
            write_pod_kubeconfig(&self.dir.join("kube"), &self.agent.api, &ns, &token)
                .map_err(|e| io("writing the pod kubeconfig", e))?,
        );
        let mut sources = Sources::new(self.agent.client.clone(), &ns);
        let fs_group = security::pod_fs_group(&self.pod);
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for v in &volumes {
            let backing = volumes::resolve(
                v,
                &self.pod,
                &self.agent.node_name,
                &mut sources,
                &mut self.tokens,
            )
            .await?;
            let dir = self.dir.join("volumes").join(&v.name);
            let path =
                volumes::materialize(&dir, &backing, self.volume_backings.get(&v.name), fs_group)
                    .map_err(|e| io(&format!("writing volume {:?}", v.name), e))?;
            self.volume_paths.insert(v.name.clone(), path);
            self.volume_backings.insert(v.name.clone(), backing);
        }
        Ok(())
    }

    /// Starts (or restarts) container `i`.
    async fn start(&mut self, i: usize) {
        let env = {
            let mut sources = Sources::new(
                self.agent.client.clone(),
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            crate::env::container_env(
                &mut sources,
                &self.pod,
                &self.runs[i].spec,
                &self.agent.node_name,
            )
            .await
        };
        let env = match env.and_then(|env| self.launch_spec(i, env)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(pod = %self.key, container = %self.runs[i].name(), error = %e, "cannot create container (will retry)");
                let r = &mut self.runs[i];
                r.wait("CreateContainerConfigError", Some(e));
                r.start_after = Instant::now() + RETRY;
                return;
            }
        };
        let (env, spec_path, launch, identity) = env;
        let name = self.runs[i].name().to_string();
        let log_path = self.dir.join(format!("{name}.log"));
        let restart_count = self.runs[i].restart_count + i32::from(self.runs[i].started_before);
        let spawned = (|| -> std::io::Result<tokio::process::Child> {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?;
            writeln!(
                log,
                "=== {} node agent: starting container {name} (restart {restart_count}) as uid={} gid={} groups={:?}{}: {} {}",
                now().0,
                identity.uid,
                identity.gid,
                identity.groups,
                if identity.read_only_root {
                    " read-only-root"
                } else {
                    ""
                },
                launch.program.display(),
                launch.args.join(" ")
            )?;
            let mut cmd = tokio::process::Command::new(&self.agent.agent_exe);
            cmd.arg(SUBCOMMAND)
                .arg(&spec_path)
                .env_clear()
                .envs(&env)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .process_group(0);
            cmd.spawn()
        })();
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let r = &mut self.runs[i];
                tracing::warn!(pod = %self.key, container = %name, error = %e, "cannot start container process");
                r.wait(
                    "RunContainerError",
                    Some(format!("starting the process: {e}")),
                );
                r.start_after = Instant::now() + RETRY;
                return;
            }
        };
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        if self
            .agent
            .procs
            .register(&proc_key(&self.uid, &name), pid, &self.key, &name)
            .is_err()
        {
            return; // the agent is stopping; the process is already killed
        }
        tracing::info!(pod = %self.key, container = %name, pid, restart_count, program = %launch.program.display(), "container started");
        let r = &mut self.runs[i];
        r.restart_count = restart_count;
        r.started_before = true;
        let readiness = if r.init {
            None
        } else {
            r.spec.readiness_probe.as_ref().map(|p| {
                let check = probe::check_for(p, &r.spec);
                if let Ok(Check::Unsupported(kind)) = &check {
                    tracing::warn!(container = %r.spec.name, kind, "readiness probe kind not supported; the container counts as ready when running");
                }
                Readiness {
                    check,
                    period: secs(p.period_seconds, 10),
                    timeout: secs(p.timeout_seconds, 1),
                    success_threshold: p.success_threshold.unwrap_or(1).max(1),
                    failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
                    successes: 0,
                    failures: 0,
                    next: Instant::now() + secs(p.initial_delay_seconds, 0),
                }
            })
        };
        r.state = State::Running(Box::new(Running {
            child,
            pid,
            started_at: now(),
            since: Instant::now(),
            ready: readiness.is_none(),
            readiness,
        }));
    }

    /// The environment, the helper's spec file and the launch of container `i`.
    #[allow(clippy::type_complexity)]
    fn launch_spec(
        &self,
        i: usize,
        mut env: HashMap<String, String>,
    ) -> Result<(HashMap<String, String>, PathBuf, Launch, security::Identity), String> {
        let c = &self.runs[i].spec;
        let (host, port) = self.agent.api.host_port();
        let work = self.dir.join("work");
        let defaults = [
            ("PATH", DEFAULT_PATH.to_string()),
            (
                "HOSTNAME",
                self.pod.metadata.name.clone().unwrap_or_default(),
            ),
            ("HOME", work.display().to_string()),
            ("KUBERNETES_SERVICE_HOST", host.clone()),
            ("KUBERNETES_SERVICE_PORT", port.clone()),
            ("KUBERNETES_SERVICE_PORT_HTTPS", port.clone()),
            ("KUBERNETES_PORT", format!("tcp://{host}:{port}")),
            ("TRIBUTARY_POD_DIR", self.dir.display().to_string()),
        ];
        for (k, v) in defaults {
            env.entry(k.to_string()).or_insert(v);
        }
        if let Some(kc) = &self.kubeconfig {
            env.entry("KUBECONFIG".into())
                .or_insert_with(|| kc.display().to_string());
        }
        let launch = self.agent.launch(c, &env)?;
        let kind = image_kind(
            c.image.as_deref().unwrap_or_default(),
            &self.agent.image_match,
        );
        let identity = security::identity(&self.pod, c, kind)?;
        let mut mounts = Vec::new();
        for m in c.volume_mounts.as_deref().unwrap_or_default() {
            let base = self
                .volume_paths
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?}: no volume of that name", m.name))?;
            let sub = match (&m.sub_path, &m.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => s.clone(),
                (_, Some(e)) if !e.is_empty() => {
                    crate::launch::expand(e, &|n: &str| env.get(n).cloned())
                }
                _ => String::new(),
            };
            let source = if sub.is_empty() {
                base.clone()
            } else {
                base.join(&sub)
            };
            if !sub.is_empty() && !source.exists() {
                std::fs::create_dir_all(&source)
                    .map_err(|e| format!("creating subPath {sub:?}: {e}"))?;
            }
            mounts.push(MountSpec {
                source,
                target: PathBuf::from(&m.mount_path),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        let spec = LaunchSpec {
            mounts,
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            fallback_dir: work,
            program: launch.program.clone(),
            args: launch.args.clone(),
            identity: Some(identity.clone()),
        };
        let spec_path = self.dir.join(format!("{}.launch.json", c.name));
        let text = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&spec_path, text)
            .map_err(|e| format!("writing {}: {e}", spec_path.display()))?;
        Ok((env, spec_path, launch, identity))
    }

    async fn probe_readiness(&mut self) {
        let now_i = Instant::now();
        for r in &mut self.runs {
            let State::Running(running) = &mut r.state else {
                continue;
            };
            let Some(p) = running.readiness.as_mut() else {
                continue;
            };
            if now_i < p.next {
                continue;
            }
            p.next = now_i + p.period;
            let result = match &p.check {
                Ok(check) => probe::run(check, &pod_ip(&self.uid), p.timeout).await,
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(()) => {
                    p.failures = 0;
                    p.successes += 1;
                    if p.successes >= p.success_threshold && !running.ready {
                        tracing::info!(pod = %self.key, container = %r.spec.name, "readiness probe passed");
                        running.ready = true;
                    }
                }
                Err(e) => {
                    p.successes = 0;
                    p.failures += 1;
                    if running.ready && p.failures >= p.failure_threshold {
                        tracing::info!(pod = %self.key, container = %r.spec.name, error = %e, "readiness probe failing");
                        running.ready = false;
                    } else {
                        tracing::debug!(pod = %self.key, container = %r.spec.name, error = %e, "readiness probe failed");
                    }
                }
            }
        }
    }

    /// Deletion as the kubelet does it: SIGTERM, SIGKILL after the grace period, final
    /// status, then delete with grace 0. True once the pod is deleted.
    async fn terminate_for_deletion(&mut self) -> bool {
        if self.terminating.is_none() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0);
            tracing::info!(pod = %self.key, grace_seconds = grace, "pod deleted: stopping containers");
            self.terminating = Some(Terminating {
                deadline: Instant::now() + Duration::from_secs(grace as u64),
                killed: false,
            });
            self.signal_all(Signal::SIGTERM);
        }
        let any_running = self
            .runs
            .iter()
            .any(|r| matches!(r.state, State::Running(_)));
        if let Some(t) = &mut self.terminating
            && any_running
        {
            if Instant::now() >= t.deadline && !t.killed {
                tracing::info!(pod = %self.key, "grace period over: SIGKILL");
                t.killed = true;
                self.signal_all(Signal::SIGKILL);
            }
            return false;
        }
        // Containers waiting for a restart will not start again.
        for r in &mut self.runs {
            if let (State::Waiting { .. }, Some(last)) = (&r.state, &r.last) {
                r.state = State::Terminated(last.clone());
            }
        }
        self.flush_status().await;
        let api: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(self.pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %self.key, "pod deleted");
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "final delete failed (will retry)");
                false
            }
        }
    }

    /// The pod vanished from the API: stop its processes (short grace) and forget it.
    async fn stop_for_good(&mut self) {
        tracing::info!(pod = %self.key, "pod gone: stopping its processes");
        self.signal_all(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            self.terminating.get_or_insert(Terminating {
                deadline,
                killed: false,
            });
            self.reap();
            if !self
                .runs
                .iter()
                .any(|r| matches!(r.state, State::Running(_)))
            {
                return;
            }
            if Instant::now() >= deadline {
                self.signal_all(Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal_all(&self, signal: Signal) {
        for r in &self.runs {
            if let State::Running(running) = &r.state {
                signal_group(running.pid, signal);
            }
        }
    }

    fn phase(&self) -> &'static str {
        if let Some(p) = self.finished {
            return p;
        }
        if self.unrunnable.is_some() {
            return if self.policy == RestartPolicy::Never {
                "Failed"
            } else {
                "Pending"
            };
        }
        let init: Vec<Seen> = self
            .runs
            .iter()
            .filter(|r| r.init)
            .map(ContainerRun::seen)
            .collect();
        let main: Vec<Seen> = self
            .runs
            .iter()
            .filter(|r| !r.init)
            .map(ContainerRun::seen)
            .collect();
        let terminal = self.terminating.is_some()
            && !self
                .runs
                .iter()
                .any(|r| matches!(r.state, State::Running(_)));
        pod_phase(self.policy, &init, &main, terminal)
    }

    fn set_condition(&mut self, type_: &'static str, status: bool) -> (bool, Time) {
        let entry = self
            .conditions
            .entry(type_)
            .or_insert_with(|| (status, now()));
        if entry.0 != status {
            *entry = (status, now());
        }
        entry.clone()
    }

    /// Writes the pod status when it changed: a strategic-merge patch, so the agent's
    /// conditions merge by `type` and the container lists are replaced whole.
    async fn flush_status(&mut self) {
        let phase = self.phase();
        let terminal = phase == "Succeeded" || phase == "Failed";
        let main: Vec<&ContainerRun> = self.runs.iter().filter(|r| !r.init).collect();
        let unready: Vec<String> = main
            .iter()
            .filter(|r| !r.ready())
            .map(|r| r.name().to_string())
            .collect();
        let uninitialized: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.init && !matches!(r.seen(), Seen::Terminated { exit_code: 0 }))
            .map(|r| r.name().to_string())
            .collect();
        let initialized = uninitialized.is_empty();
        let containers_ready = unready.is_empty() && !terminal;
        let sandbox = self.prepared;
        let readiness_reason = if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let ready_message = format!("containers with unready status: [{}]", unready.join(" "));
        let init_message = format!(
            "containers with incomplete status: [{}]",
            uninitialized.join(" ")
        );
        let ready = crate::readiness::ready_condition(
            if containers_ready {
                Ok(())
            } else {
                Err((readiness_reason, ready_message.clone()))
            },
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.readiness_gates.as_deref())
                .unwrap_or_default(),
            self.pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default(),
        );
        let mut conditions = Vec::new();
        for (type_, status, reason, message) in [
            ("PodReadyToStartContainers", sandbox, None, None),
            (
                "Initialized",
                initialized,
                (!initialized).then_some("ContainersNotInitialized"),
                (!initialized).then_some(init_message),
            ),
            ("Ready", ready.ready, ready.reason.as_deref(), ready.message),
            (
                "ContainersReady",
                containers_ready,
                (!containers_ready).then_some(readiness_reason),
                (!containers_ready).then_some(ready_message),
            ),
            ("PodScheduled", true, None, None),
        ] {
            let (s, t) = self.set_condition(type_, status);
            conditions.push(json!({"type": type_, "status": if s { "True" } else { "False" }, "lastTransitionTime": t,
                                   "reason": reason, "message": message, "lastProbeTime": null}));
        }
        // Only the agent's own conditions: the strategic-merge patch below merges them by
        // `type`, so conditions of other writers (readiness gates, DisruptionTarget) are left
        // as the API server has them, never overwritten from a stale copy.
        let statuses = |init: bool| -> Vec<Value> {
            self.runs
                .iter()
                .filter(|r| r.init == init)
                .map(container_status)
                .collect()
        };
        let mut status = json!({
            "phase": phase,
            "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": pod_ip(&self.uid), "podIPs": [{"ip": pod_ip(&self.uid)}],
            "startTime": self.start_time,
            "containerStatuses": statuses(false),
        });
        if self.runs.iter().any(|r| r.init) {
            status["initContainerStatuses"] = Value::Array(statuses(true));
        }
        if let Some(why) = &self.unrunnable {
            status["reason"] = "ImageNotRunnable".into();
            status["message"] = why.clone().into();
        }
        strip_nulls(&mut status);
        // After strip_nulls: a condition's `reason: null` must reach the strategic merge,
        // which otherwise keeps the reason of its previous state.
        status["conditions"] = Value::Array(conditions);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"uid": self.uid}, "status": status});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(pod) => {
                tracing::debug!(pod = %self.key, phase, "status written");
                self.last_status = Some(status);
                if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) {
                    self.pod = pod;
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %self.key, error = %e, "status update failed (will retry)")
            }
        }
    }
}

impl Agent {
    /// The program and argv of container `c` by its image's rules.
    fn launch(&self, c: &Container, env: &HashMap<String, String>) -> Result<Launch, String> {
        let command = c.command.as_deref().unwrap_or_default();
        let args = c.args.as_deref().unwrap_or_default();
        let image = c.image.as_deref().unwrap_or_default();
        match image_kind(image, &self.image_match) {
            ImageKind::Project => Ok(build_launch(
                &crate::launch::binary_for_image(image, &self.binary, self.binaries_dir.as_deref()),
                &self.image_match,
                command,
                args,
                env,
            )),
            ImageKind::Kafka => {
                kafka_image::build_kafka_launch(self.kafka.as_ref()?, command, args, env)
            }
            ImageKind::Other => Err(other_image(&self.image_match)),
        }
    }
}

/// Why container `c` cannot run on this agent, if it cannot (decided when the pod is adopted).
fn not_runnable(agent: &Agent, c: &Container) -> Option<String> {
    match image_kind(c.image.as_deref().unwrap_or_default(), &agent.image_match) {
        ImageKind::Project => None,
        ImageKind::Kafka => match &agent.kafka {
            Err(why) => Some(why.clone()),
            Ok(_) => kafka_image::tool(
                c.command.as_deref().unwrap_or_default(),
                c.args.as_deref().unwrap_or_default(),
            )
            .err(),
        },
        ImageKind::Other => Some(other_image(&agent.image_match)),
    }
}

fn other_image(image_match: &str) -> String {
    format!("node agent runs only images named {image_match} and apache/kafka")
}

fn managed_condition(type_: &str) -> Option<&'static str> {
    [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .into_iter()
    .find(|t| *t == type_)
}

fn proc_key(uid: &str, container: &str) -> String {
    format!("{uid}/{container}")
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

fn container_status(r: &ContainerRun) -> Value {
    let image = r.spec.image.clone().unwrap_or_default();
    let (state, container_id, started) = match &r.state {
        State::Waiting { reason, message } => (
            json!({"waiting": {"reason": reason, "message": message}}),
            r.last.as_ref().and_then(|t| t.container_id.clone()),
            false,
        ),
        State::Running(running) => (
            json!({"running": {"startedAt": running.started_at}}),
            Some(format!("agent://{}", running.pid)),
            true,
        ),
        State::Terminated(t) => (
            json!({"terminated": t.to_json()}),
            t.container_id.clone(),
            false,
        ),
    };
    let last_state = r
        .last
        .as_ref()
        .map(|t| json!({"terminated": t.to_json()}))
        .unwrap_or_else(|| json!({}));
    json!({
        "name": r.spec.name,
        "image": image,
        "imageID": format!("agent://{image}"),
        "containerID": container_id,
        "ready": r.ready(),
        "started": started,
        "restartCount": r.restart_count,
        "state": state,
        "lastState": last_state,
    })
}

/// Rebuilds a container's run state from its last reported status (agent restart / region up).
fn adopt_container(
    spec: Container,
    init: bool,
    prior: Option<&ContainerStatus>,
    policy: RestartPolicy,
    pod_finished: bool,
    now_i: Instant,
) -> ContainerRun {
    let mut run = ContainerRun {
        state: State::Waiting {
            reason: if init {
                "PodInitializing".into()
            } else {
                "ContainerCreating".into()
            },
            message: None,
        },
        spec,
        init,
        restart_count: 0,
        started_before: false,
        last: None,
        backoff: BACKOFF_START,
        start_after: now_i,
    };
    let Some(prior) = prior else { return run };
    run.restart_count = prior.restart_count;
    let terminated = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| Terminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone(),
        started_at: t.started_at.clone(),
        finished_at: t.finished_at.clone().unwrap_or_else(now),
        container_id: t.container_id.clone(),
    };
    run.last = prior
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(terminated);
    let state = prior.state.clone().unwrap_or_default();
    run.started_before =
        state.running.is_some() || state.terminated.is_some() || run.last.is_some();
    if let Some(t) = &state.terminated {
        let t = terminated(t);
        let again = if init {
            t.exit_code != 0 && policy != RestartPolicy::Never
        } else {
            policy.restarts(t.exit_code)
        };
        if pod_finished || !again {
            run.state = State::Terminated(t);
        } else {
            run.last = Some(t);
        }
    } else if let Some(r) = &state.running {
        // The process died with the previous agent run (region down, agent crash).
        let lost = Terminated {
            exit_code: 137,
            signal: None,
            reason: "ContainerStatusUnknown".into(),
            message: Some("the node agent restarted; the container's process was lost".into()),
            started_at: r.started_at.clone(),
            finished_at: now(),
            container_id: prior.container_id.clone(),
        };
        let again = if init {
            policy != RestartPolicy::Never
        } else {
            policy.restarts(137)
        };
        if pod_finished || !again {
            run.state = State::Terminated(lost);
        } else {
            run.last = Some(lost);
        }
    } else if pod_finished && let Some(w) = &state.waiting {
        run.state = State::Waiting {
            reason: w.reason.clone().unwrap_or_default(),
            message: w.message.clone(),
        };
    }
    run
}

fn log_tail(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let start = text.len().saturating_sub(2048);
    let tail = String::from_utf8_lossy(&text[start..]).into_owned();
    let lines: Vec<&str> = tail.lines().filter(|l| !l.starts_with("=== ")).collect();
    let keep = lines.len().saturating_sub(20);
    Some(lines[keep..].join("\n")).filter(|s| !s.is_empty())
}

/// Removes null members (absent optional fields) so status comparisons are stable.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
