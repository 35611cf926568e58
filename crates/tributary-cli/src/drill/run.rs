//! The drill's I/O: the load (VerifiableProducer processes, the consumers' event logs), the
//! faults (region commands, spec edits), following each move in status, and the outputs.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams};
use tributary_api::consumer_group_failover::{FailoverMode, STANDBY_HAS_MEMBERS};
use tributary_api::{ConsumerGroupFailover, RegionalStream, condition_type, find_condition};

use super::clusters::{Clusters, parse_region_kubeconfigs};
use super::consumer_events::{
    ConsumerEvents, ConsumerEventsFrom, ConsumerLine, PodLogFiles, PodLogStreams,
};

use super::events::{
    Ack, Consumption, SessionMark, Tail, parse_ack, parse_consumption, parse_session_change,
};
use super::faults::{Dice, Fault, applicable, fault_command};
use super::primary::{PrimarySample, first_named};
use super::report::{print_row, print_table, report_json};
use super::timeline::{Mark, render};
use super::verdict::{DrillRun, StandbyMemberRepair, Summary, judge};
use crate::cluster::Connection;
use crate::failover::{Request, decide, failback_target};

/// What `kubectl tributary drill` was asked to do.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    pub group: String,
    pub drills: usize,
    pub faults: Vec<Fault>,
    /// Take the faults in the order given (cycling) instead of at random.
    pub in_order: bool,
    pub seed: u64,
    pub report: Option<PathBuf>,
    pub timeline: Option<PathBuf>,
    pub region_down_cmd: String,
    pub region_up_cmd: String,
    pub aggregate_down_cmd: String,
    pub aggregate_up_cmd: String,
    /// region-isolate: cuts a region's path to the coordination apiserver, and restores it.
    pub region_isolate_cmd: String,
    pub region_heal_cmd: String,
    /// Restarts a region's aggregate broker ({region} is replaced) when the operator reports
    /// members of the group in that standby region (`Degraded` `StandbyHasMembers`) while
    /// the drill waits for the group to settle: a broker restarted by a fault can load
    /// members that nothing owns and never expires them (docs/failover.md). `None`: no
    /// repair, the settle times out. Live members rejoin after the restart, so the drill
    /// still fails on them.
    pub standby_members_repair_cmd: Option<String>,
    /// The per-region topology: `REGION=PATH`, the kubeconfig of every region's own cluster
    /// (the same Tributary objects in each, an operator per region), and the coordination
    /// apiserver's kubeconfig (the Lease). Empty: the stretched topology, the one cluster of
    /// the connection.
    pub region_kubeconfigs: Vec<String>,
    pub coordination_kubeconfig: Option<PathBuf>,
    /// The Java classpath holding Kafka's tools (VerifiableProducer).
    pub kafka_classpath: String,
    pub java: String,
    /// Records per second each region's producer sends.
    pub rate: u32,
    /// The topic to produce to (default: the group's first topic).
    pub topic: Option<String>,
    /// Where the consumers' event lines are read: files or the Kubernetes API.
    pub consumer_events: ConsumerEventsFrom,
    /// `files`: where the consumers' logs are, the local stack's state dir (`agent-*/pods/*/`).
    pub pod_logs: PathBuf,
    /// Where the producers' event streams are written (kept).
    pub work_dir: Option<PathBuf>,
    /// `REGION=HOST:PORT` overrides of the regional clusters' bootstrap servers.
    pub bootstrap: Vec<String>,
    pub force: bool,
    /// operator-kill: where the operator's pods are, and their label selector.
    pub operator_namespace: String,
    pub operator_selector: String,
    pub move_timeout: Duration,
    pub settle_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Steady time between a drill settling and the next fault.
const SETTLE_DWELL: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn ms(t: &Option<Time>) -> Option<i64> {
    t.as_ref().map(|t| t.0.as_millisecond())
}

/// The load: one VerifiableProducer per region (a local JVM) and the consumers' event logs.
struct Load {
    producers: Vec<(String, tokio::process::Child, PathBuf)>,
    tail: Tail,
    acks: Vec<Ack>,
    consumed: Vec<Consumption>,
    /// Rebalances and restarts of the consumer sessions, in log order among `consumed`.
    sessions: Vec<SessionMark>,
    /// Where the consumers' event lines come from (`--consumer-events`).
    consumers: ConsumerEvents,
    prefixes: Vec<String>,
}

impl Load {
    /// Reads what the producers and consumers wrote since the last call.
    fn refresh(&mut self) {
        for (region, _, path) in &self.producers {
            for line in self.tail.new_lines(path) {
                if let Some(a) = parse_ack(region, &line) {
                    self.acks.push(a);
                }
            }
        }
        for ConsumerLine {
            region,
            session,
            line,
        } in self.consumers.new_lines()
        {
            if let Some(mut c) = parse_consumption(&region, &line, &self.prefixes) {
                c.session = session;
                self.consumed.push(c);
            } else if let Some(change) = parse_session_change(&line) {
                self.sessions.push(SessionMark {
                    session,
                    before: self.consumed.len(),
                    change,
                });
            }
        }
    }

    fn first_consumed_in(&self, region: &str, since_ms: i64) -> Option<i64> {
        self.consumed
            .iter()
            .filter(|c| c.region == region && c.at_ms >= since_ms)
            .map(|c| c.at_ms)
            .min()
    }

    async fn stop(&mut self) {
        for (region, child, _) in &mut self.producers {
            if let Err(e) = child.kill().await {
                eprintln!("warning: stopping the producer of {region}: {e}");
            }
        }
    }
}

/// Ready, every region healthy, no move pending, every standby synced within 10 s of `now_ms`
/// and at or after `since_ms` (the last move: a standby warm from before it is not warm for
/// the next).
fn settled_at(cgf: &ConsumerGroupFailover, since_ms: i64, now_ms: i64) -> bool {
    let Some(s) = cgf.status.as_ref() else {
        return false;
    };
    let ready = find_condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
    let active = s.active_region.clone().unwrap_or_default();
    // ActiveActive groups have no standby syncs: every region keeps its own position.
    let standbys_synced = cgf.spec.mode == FailoverMode::ActivePassive;
    ready
        && s.pending_move.is_none()
        && !s.regions.is_empty()
        && s.regions.iter().all(|r| {
            r.healthy
                && (r.region == active
                    || !standbys_synced
                    || ms(&r.last_sync_time).is_some_and(|t| now_ms - t <= 10_000 && t >= since_ms))
        })
}

/// The standby regions with members while the operator reports them (`Degraded`
/// `StandbyHasMembers`): `(region, members)`, and the condition's message. Pure.
fn reported_standby_members(cgf: &ConsumerGroupFailover) -> Option<(Vec<(String, i32)>, String)> {
    let s = cgf.status.as_ref()?;
    let degraded = find_condition(&s.conditions, condition_type::DEGRADED)
        .filter(|c| c.status == "True" && c.reason == STANDBY_HAS_MEMBERS)?;
    let active = s.active_region.as_deref();
    let regions: Vec<(String, i32)> = s
        .regions
        .iter()
        .filter(|r| Some(r.region.as_str()) != active)
        .filter_map(|r| r.members.filter(|m| *m > 0).map(|m| (r.region.clone(), m)))
        .collect();
    (!regions.is_empty()).then(|| (regions, degraded.message.clone()))
}

/// Runs `cmd` with `sh -c`; fails with its output when it fails.
async fn run_command(cmd: &str) -> Result<()> {
    let out = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

struct Drill {
    /// The connection's cluster (operator-kill deletes the operator's pods there).
    client: kube::Client,
    /// Where the group, its workloads, ConfigMaps and Lease are (one cluster, or per region).
    clusters: Clusters,
    ns: String,
    /// Per region: why the regions' copies of the group did not agree at the last read.
    disagreement: Option<String>,
    name: String,
    topic: String,
    /// region → its workload's name.
    workloads: BTreeMap<String, String>,
    regions: Vec<String>,
    load: Load,
    opts: DrillOptions,
    started: Instant,
    /// ActiveActive: the `<name>-active` ConfigMap and Lease, sampled as the drill waits.
    active_active: bool,
    config_maps: Api<ConfigMap>,
    leases: Api<Lease>,
    primary: Vec<PrimarySample>,
}

impl Drill {
    fn say(&self, line: &str) {
        println!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
    }

    /// The group as every region's cluster tells it ([`super::clusters::merge`]).
    async fn group(&mut self) -> Result<ConsumerGroupFailover> {
        let view = self.clusters.group(&self.ns, &self.name).await?;
        self.disagreement = view.disagreement;
        Ok(view.cgf)
    }

    async fn ready_replicas(&self, region: &str) -> i32 {
        let (Some(name), Ok(client)) =
            (self.workloads.get(region), self.clusters.of_region(region))
        else {
            return 0;
        };
        Api::<Deployment>::namespaced(client.clone(), &self.ns)
            .get(name)
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    }

    /// One observation of the primary role (ActiveActive): the ConfigMap and the Lease.
    async fn sample_primary(&mut self) {
        let name = format!("{}-active", self.name);
        let (cm, lease) = tokio::join!(self.config_maps.get_opt(&name), self.leases.get_opt(&name));
        let parse_ms = |t: &str| {
            t.parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond())
        };
        let mut sample = PrimarySample {
            at_ms: now_ms(),
            ..PrimarySample::default()
        };
        if let Ok(Some(cm)) = cm {
            let data = cm.data.unwrap_or_default();
            let fenced = data.get("fenced").is_some_and(|f| f == "true");
            sample.config_map_region = data
                .get("activeRegion")
                .filter(|r| !r.is_empty() && !fenced)
                .cloned();
            sample.config_map_epoch = data.get("epoch").and_then(|e| e.parse().ok());
            let ttl_ms = data
                .get("ttlSeconds")
                .and_then(|t| t.parse::<i64>().ok())
                .map(|t| t * 1000);
            sample.config_map_valid_until_ms = data
                .get("renewTime")
                .and_then(|t| parse_ms(t))
                .zip(ttl_ms)
                .map(|(r, t)| r + t);
        }
        if let Ok(Some(lease)) = lease
            && let Some(spec) = lease.spec
        {
            sample.lease_holder = spec.holder_identity.filter(|h| !h.is_empty());
            sample.lease_transitions = spec.lease_transitions.map(i64::from);
            sample.lease_valid_until_ms = spec
                .renew_time
                .map(|t| t.0.as_millisecond())
                .zip(spec.lease_duration_seconds)
                .map(|(r, d)| r + i64::from(d) * 1000);
        }
        self.primary.push(sample);
    }

    /// region-isolate: whether the isolated region's ConfigMap says fenced yet, and whether
    /// another region holds the Lease at the next epoch on the coordination apiserver (read
    /// directly, not through any region's path). A read that fails is a sample missed.
    async fn sample_isolation(&self, run: &mut DrillRun) {
        let Some(isolated) = run.isolated_region.clone() else {
            return;
        };
        let name = format!("{}-active", self.name);
        if run.fenced_ms.is_none()
            && let Ok(client) = self.clusters.of_region(&isolated)
            && let Ok(Some(cm)) = Api::<ConfigMap>::namespaced(client.clone(), &self.ns)
                .get_opt(&name)
                .await
            && cm
                .data
                .as_ref()
                .and_then(|d| d.get("fenced"))
                .map(String::as_str)
                == Some("true")
        {
            run.fenced_ms = Some(now_ms());
        }
        if run.lease_taken_ms.is_none()
            && let Ok(Some(lease)) = self.leases.get_opt(&name).await
            && let Some(spec) = lease.spec
            && spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty() && h != isolated)
            && spec.lease_transitions.map(i64::from) == Some(run.epoch_before + 1)
        {
            run.lease_taken_ms = Some(
                spec.acquire_time
                    .map(|t| t.0.as_millisecond())
                    .unwrap_or_else(now_ms),
            );
        }
    }

    /// Polls `check` every 250 ms (refreshing the load) until it answers, or fails after `timeout`.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        run: &mut DrillRun,
        mut check: impl AsyncFnMut(&mut Self, &ConsumerGroupFailover, &mut DrillRun) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.load.refresh();
            if self.active_active {
                self.sample_primary().await;
            }
            self.sample_isolation(run).await;
            let cgf = self.group().await?;
            if let Some(e) = cgf.status.as_ref().and_then(|s| s.epoch)
                && run.epochs_seen.last() != Some(&e)
            {
                run.epochs_seen.push(e);
            }
            if let Some(t) = check(self, &cgf, run).await {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {}s waiting for {what}{}",
                    timeout.as_secs(),
                    self.disagreement
                        .as_ref()
                        .map(|d| format!(" (the regions' clusters disagree: {d})"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Settled, and (per region) every region's cluster tells the same.
    fn settled(&self, cgf: &ConsumerGroupFailover, since_ms: i64) -> bool {
        self.disagreement.is_none() && settled_at(cgf, since_ms, now_ms())
    }

    /// `--standby-members-repair-cmd`: restarts the aggregate broker of each standby region
    /// the operator reports members in, once per region and drill.
    async fn repair_standby_members(&self, cgf: &ConsumerGroupFailover, run: &mut DrillRun) {
        let (Some(cmd), Some((regions, message))) = (
            self.opts.standby_members_repair_cmd.as_deref(),
            reported_standby_members(cgf),
        ) else {
            return;
        };
        for (region, members) in regions {
            if run
                .standby_member_repairs
                .iter()
                .any(|r| r.region == region)
            {
                continue;
            }
            self.say(&format!(
                "drill {}: {members} member(s) in standby region {region} ({message}): restarting its aggregate broker",
                run.index + 1
            ));
            let error = run_command(&fault_command(cmd, &region))
                .await
                .err()
                .map(|e| format!("{e:#}"));
            if let Some(e) = &error {
                self.say(&format!("drill {}: the repair failed: {e}", run.index + 1));
            }
            run.standby_member_repairs.push(StandbyMemberRepair {
                region,
                at_ms: now_ms(),
                members,
                message: message.clone(),
                error,
            });
        }
    }

    async fn wait_settled(&mut self, run: &mut DrillRun) -> Result<()> {
        let timeout = self.opts.settle_timeout;
        let since = run
            .phases
            .committed_ms
            .or(run.restored_ms)
            .unwrap_or(run.started_ms);
        self.wait_for(
            "the group to settle (Ready, every region healthy and synced since the move, no move pending)",
            timeout,
            run,
            async |d, cgf, run| {
                if d.settled(cgf, since) {
                    return Some(());
                }
                d.repair_standby_members(cgf, run).await;
                None
            },
        )
        .await?;
        // A little steady traffic between drills, so that each drill starts from a steady state.
        tokio::time::sleep(SETTLE_DWELL).await;
        Ok(())
    }

    /// Sets `spec.activeRegion: to` in every cluster (per region: the same objects in each,
    /// as GitOps keeps them) the way `kubectl tributary failover` does (server-side apply,
    /// field manager kubectl-tributary); acknowledges the current region first when an
    /// automatic failover left the spec naming the old one.
    async fn edit_active_region(&mut self, to: &str, run: &mut DrillRun) -> Result<()> {
        let cgf = self.group().await?;
        match decide(&cgf, to)? {
            Request::Set { to, .. } => self.set_active_region(&to).await?,
            Request::AcknowledgeThenSet { current, to } => {
                self.set_active_region(&current).await?;
                self.acknowledged(&current, run).await?;
                self.set_active_region(&to).await?;
            }
            Request::AlreadyActive { region, .. } => {
                bail!("{} is already active in {region}", self.name)
            }
            Request::WaitForPending { to, .. } => {
                bail!("a move of {} to {to} is under way already", self.name)
            }
        }
        Ok(())
    }

    async fn set_active_region(&self, to: &str) -> Result<()> {
        let say = |l: &str| self.say(l);
        self.clusters
            .set_active_region_everywhere(&self.ns, &self.name, to, self.opts.force, &say)
            .await
    }

    /// Deletes every operator pod (no grace) as soon as status shows the move pending (or
    /// after 5 s of not seeing it: the move may be that quick).
    async fn kill_operator_mid_move(&mut self, before: i64, run: &mut DrillRun) -> Result<()> {
        let pending = self
            .wait_for(
                "the move pending",
                Duration::from_secs(5),
                run,
                async |_, cgf, _| {
                    cgf.status
                        .as_ref()?
                        .pending_move
                        .as_ref()
                        .filter(|p| p.epoch == before + 1)
                        .map(|_| ())
                },
            )
            .await
            .is_ok();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.opts.operator_namespace);
        let list = pods
            .list(&ListParams::default().labels(&self.opts.operator_selector))
            .await
            .with_context(|| {
                format!(
                    "listing the operator's pods ({} in {})",
                    self.opts.operator_selector, self.opts.operator_namespace
                )
            })?;
        if list.items.is_empty() {
            bail!(
                "no operator pods match {} in namespace {} (--operator-namespace, --operator-selector)",
                self.opts.operator_selector,
                self.opts.operator_namespace
            );
        }
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        for p in &list.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            pods.delete(&name, &now)
                .await
                .with_context(|| format!("deleting operator pod {name}"))?;
        }
        run.operator_killed_ms = Some(now_ms());
        run.operator_killed_mid_move = Some(pending);
        self.say(&format!(
            "drill {}: deleted {} operator pod(s){}",
            run.index + 1,
            list.items.len(),
            if pending {
                " with the move pending"
            } else {
                " (the move was not seen pending)"
            }
        ));
        Ok(())
    }

    /// What brings back what the drill killed or cut off: `(region, command)`.
    fn restore_command(&self, run: &DrillRun) -> Option<(String, String)> {
        if let Some(r) = &run.killed_region {
            return Some((r.clone(), fault_command(&self.opts.region_up_cmd, r)));
        }
        if let Some(r) = &run.isolated_region {
            return Some((r.clone(), fault_command(&self.opts.region_heal_cmd, r)));
        }
        run.killed_aggregate
            .as_ref()
            .map(|r| (r.clone(), fault_command(&self.opts.aggregate_up_cmd, r)))
    }

    async fn acknowledged(&mut self, region: &str, run: &mut DrillRun) -> Result<()> {
        let region = region.to_string();
        self.wait_for(
            "the operator to acknowledge spec.activeRegion",
            Duration::from_secs(60),
            run,
            async |_, cgf, _| {
                (cgf.status
                    .as_ref()
                    .and_then(|s| s.acted_active_region.as_deref())
                    == Some(region.as_str()))
                .then_some(())
            },
        )
        .await
    }

    /// One drill: inject, follow the move to the first record consumed, restore, settle.
    async fn one(&mut self, index: usize, fault: Fault, dice: &mut Dice) -> DrillRun {
        let mut run = DrillRun {
            index,
            fault: Some(fault),
            ..DrillRun::default()
        };
        if let Err(e) = self.drive(fault, dice, &mut run).await {
            self.say(&format!("drill {} failed: {e:#}", index + 1));
            run.error = Some(format!("{e:#}"));
            // Leave the stack usable for the next drill: the killed region back, settled.
            if let (Some((killed, cmd)), None) = (self.restore_command(&run), run.restored_ms) {
                if let Err(e) = run_command(&cmd).await {
                    self.say(&format!("could not restore {killed}: {e:#}"));
                }
                run.restored_ms = Some(now_ms());
            }
            let _ = self.wait_settled(&mut run).await;
        }
        run.settled_ms = now_ms();
        run
    }

    async fn drive(&mut self, fault: Fault, dice: &mut Dice, run: &mut DrillRun) -> Result<()> {
        let cgf = self.group().await?;
        let status = cgf.status.clone().unwrap_or_default();
        let from = status
            .active_region
            .clone()
            .ok_or_else(|| anyhow!("{} has no active region", self.name))?;
        let before = status.epoch.unwrap_or(0);
        run.from = from.clone();
        run.epoch_before = before;
        run.epochs_seen.push(before);
        let healthy: Vec<String> = status
            .regions
            .iter()
            .filter(|r| r.healthy && r.region != from)
            .map(|r| r.region.clone())
            .collect();
        let planned_to = match fault {
            Fault::RegionDown
            | Fault::AggregateDown
            | Fault::PrimaryKill
            | Fault::RegionIsolate => None,
            Fault::Switchover | Fault::OperatorKill => dice.pick(&healthy).cloned(),
            Fault::Failback => Some(failback_target(&cgf)?),
        };
        self.say(&format!(
            "drill {}: {fault} (active {from}, epoch {before}{})",
            run.index + 1,
            planned_to
                .as_ref()
                .map(|t| format!(", to {t}"))
                .unwrap_or_default()
        ));
        run.started_ms = now_ms();
        let injecting = match fault {
            Fault::RegionDown | Fault::PrimaryKill => {
                run.killed_region = Some(from.clone());
                let cmd = fault_command(&self.opts.region_down_cmd, &from);
                Some(tokio::spawn(async move { run_command(&cmd).await }))
            }
            Fault::AggregateDown => {
                run.killed_aggregate = Some(from.clone());
                let cmd = fault_command(&self.opts.aggregate_down_cmd, &from);
                Some(tokio::spawn(async move { run_command(&cmd).await }))
            }
            Fault::RegionIsolate => {
                run.isolated_region = Some(from.clone());
                let cmd = fault_command(&self.opts.region_isolate_cmd, &from);
                Some(tokio::spawn(async move { run_command(&cmd).await }))
            }
            _ => {
                let to = planned_to.clone().unwrap_or_default();
                self.edit_active_region(&to, run).await?;
                if fault == Fault::OperatorKill {
                    self.kill_operator_mid_move(before, run).await?;
                }
                None
            }
        };
        // Follow the move: the phases from status, the workload's readiness, the first record.
        let timeout = self.opts.move_timeout;
        let started_ms = run.started_ms;
        let from_c = from.clone();
        let topic = self.topic.clone();
        self.wait_for(
            "the move to finish and the new region to consume",
            timeout,
            run,
            async move |d, cgf, run| {
                let s = cgf.status.as_ref()?;
                if let Some(p) = s.pending_move.as_ref().filter(|p| p.epoch == before + 1) {
                    run.to = p.to.clone();
                    run.phases.detected_ms = run.phases.detected_ms.or(ms(&p.detected));
                    run.phases.decided_ms = run.phases.decided_ms.or(ms(&p.started));
                    if let Some(plan) = &p.plan {
                        run.phases.translated_ms = run.phases.translated_ms.or(ms(&plan.received));
                        run.max_duplicates = Some(plan.max_duplicates);
                    }
                }
                let moved = s.epoch == Some(before + 1)
                    && s.active_region.as_deref().is_some_and(|a| a != from_c)
                    && find_condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
                if !moved {
                    return None;
                }
                let to = s.active_region.clone().unwrap_or_default();
                run.to = to.clone();
                if let Some(f) = s.last_failover.as_ref().filter(|f| f.epoch == before + 1) {
                    run.phases.committed_ms = ms(&f.finished);
                    run.phases.decided_ms = run.phases.decided_ms.or(ms(&f.started));
                    run.operator_rto_s = f.rto_seconds;
                    run.max_duplicates_after_dedupe = f.max_duplicates_after_dedupe;
                    run.watermarks = f
                        .watermarks
                        .iter()
                        .filter(|w| w.topic == topic)
                        .map(|w| ((w.source_region.clone(), w.partition), w.offset))
                        .collect();
                }
                if run.phases.ready_ms.is_none() && d.ready_replicas(&to).await > 0 {
                    run.phases.ready_ms = Some(now_ms());
                }
                run.phases.first_consumed_ms = d.load.first_consumed_in(&to, started_ms);
                if d.active_active {
                    // Its consumers never stopped: the move ends when the ConfigMap names it.
                    run.phases.primary_ms = first_named(&d.primary, &to, before + 1);
                    run.phases.primary_ms?;
                }
                (run.phases.ready_ms.is_some() && run.phases.first_consumed_ms.is_some())
                    .then_some(())
            },
        )
        .await?;
        if let Some(injecting) = injecting {
            injecting.await.context("the fault's command")??;
        }
        let cgf = self.group().await?;
        run.epoch_after = cgf.status.as_ref().and_then(|s| s.epoch).unwrap_or(0);
        self.say(&format!(
            "drill {}: {} active in {} at epoch {} after {:.1}s ({}); operator rtoSeconds {}",
            run.index + 1,
            self.name,
            run.to,
            run.epoch_after,
            (run.phases
                .primary_ms
                .or(run.phases.first_consumed_ms)
                .unwrap_or(run.started_ms)
                - run.started_ms) as f64
                / 1000.0,
            if self.active_active {
                "the ConfigMap names the new primary"
            } else {
                "first record consumed"
            },
            run.operator_rto_s
                .map(|r| format!("{r:.1}"))
                .unwrap_or_else(|| "-".into())
        ));
        if let Some((killed, cmd)) = self.restore_command(run) {
            run_command(&cmd).await?;
            run.restored_ms = Some(now_ms());
            self.say(&format!("drill {}: {killed} restored", run.index + 1));
            let k = killed.clone();
            let timeout = self.opts.settle_timeout;
            self.wait_for(
                "the killed region healthy again",
                timeout,
                run,
                async |_, cgf, _| {
                    cgf.status
                        .as_ref()?
                        .regions
                        .iter()
                        .any(|r| r.region == k && r.healthy)
                        .then_some(())
                },
            )
            .await?;
            // The spec still names the lost region: acknowledge where the group is, so that the
            // next planned move is one edit.
            let cgf = self.group().await?;
            let current = run.to.clone();
            if cgf
                .spec
                .active_region
                .as_deref()
                .is_some_and(|a| a != current)
            {
                self.set_active_region(&current).await?;
                self.acknowledged(&current, run).await?;
            }
        }
        self.wait_settled(run).await?;
        Ok(())
    }
}

/// Regional bootstrap servers per region, from the namespace's RegionalStreams (overridable).
async fn regional_bootstrap(
    client: &kube::Client,
    ns: &str,
    regions: &[String],
    overrides: &[String],
) -> Result<BTreeMap<String, String>> {
    let api: Api<RegionalStream> = Api::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    for s in api
        .list(&ListParams::default())
        .await
        .context("listing RegionalStreams")?
    {
        out.entry(s.spec.region.clone())
            .or_insert_with(|| s.spec.kafka.bootstrap_servers.join(","));
    }
    for o in overrides {
        let (r, b) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("--bootstrap {o:?}: expected REGION=HOST:PORT"))?;
        out.insert(r.to_string(), b.to_string());
    }
    for r in regions {
        if !out.contains_key(r) {
            bail!(
                "no RegionalStream for region {r} in namespace {ns}: the drill produces into each \
                 region's regional cluster; pass --bootstrap {r}=HOST:PORT"
            );
        }
    }
    Ok(out)
}

fn spawn_producer(
    opts: &DrillOptions,
    dir: &Path,
    region: &str,
    bootstrap: &str,
    topic: &str,
    prefix: &str,
) -> Result<(tokio::process::Child, PathBuf)> {
    let out = dir.join(format!("producer-{region}.jsonl"));
    let err = dir.join(format!("producer-{region}.stderr"));
    let child = tokio::process::Command::new(&opts.java)
        .args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-cp",
            &opts.kafka_classpath,
            "org.apache.kafka.tools.VerifiableProducer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--acks",
            "-1",
            "--throughput",
            &opts.rate.to_string(),
            "--value-prefix",
            prefix,
            "--repeating-keys",
            "64",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?)
        .stderr(std::fs::File::create(&err)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (VerifiableProducer for {region})", opts.java))?;
    Ok((child, out))
}

/// `kubectl tributary drill`: `Ok(true)` when every drill passed.
pub async fn drill(conn: &Connection, opts: DrillOptions) -> Result<bool> {
    if opts.faults.is_empty() || opts.drills == 0 {
        bail!("nothing to drill: --drills must be at least 1 and --faults name at least one fault");
    }
    let ns = conn.default_namespace.clone();
    let clusters = if opts.region_kubeconfigs.is_empty() {
        Clusters::One(conn.client.clone())
    } else {
        let kubeconfigs = parse_region_kubeconfigs(&opts.region_kubeconfigs)?;
        let coordination = opts.coordination_kubeconfig.as_ref().ok_or_else(|| {
            anyhow!(
                "--region-kubeconfig (the per-region topology) needs --coordination-kubeconfig: \
                 the active-region Lease is on the coordination apiserver"
            )
        })?;
        Clusters::per_region(&kubeconfigs, coordination).await?
    };
    let per_region = clusters.per_region_topology();
    for f in &opts.faults {
        f.topology_fit(per_region)
            .map_err(|e| anyhow!("--faults {f}: {e}"))?;
    }
    let cgf = clusters
        .group(&ns, &opts.group)
        .await
        .with_context(|| {
            format!(
                "the group to drill (--group {}, namespace {ns})",
                opts.group
            )
        })?
        .cgf;
    let regions: Vec<String> = cgf.spec.regions.iter().map(|r| r.region.clone()).collect();
    clusters.check_regions(&regions)?;
    let workloads: BTreeMap<String, String> = cgf
        .spec
        .regions
        .iter()
        .filter_map(|r| {
            r.workload_ref
                .as_ref()
                .map(|w| (r.region.clone(), w.name.clone()))
        })
        .collect();
    if workloads.len() != regions.len() {
        bail!(
            "ConsumerGroupFailover {} needs a workloadRef in every region: the drill's verdict \
             comes from those consumers' events (VerifiableConsumer --verbose)",
            opts.group
        );
    }
    let topic = opts
        .topic
        .clone()
        .or_else(|| cgf.spec.topics.first().cloned())
        .ok_or_else(|| anyhow!("{} has no topics", opts.group))?;
    let active_passive = cgf.spec.mode == FailoverMode::ActivePassive;
    if per_region && !active_passive {
        bail!(
            "{} is ActiveActive: the per-region topology drills ActivePassive groups only (the \
             primary role is sampled from one cluster's ConfigMap)",
            opts.group
        );
    }
    let any_cluster = clusters.every()[0].1.clone();
    let bootstrap = regional_bootstrap(&any_cluster, &ns, &regions, &opts.bootstrap).await?;
    let nonce = (now_ms() / 1000) % 100_000;
    let dir = opts
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tributary-drill-{nonce}")));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut producers = Vec::new();
    let mut prefixes = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let prefix = (nonce * 10 + i as i64).to_string();
        let (child, out) = spawn_producer(&opts, &dir, r, &bootstrap[r], &topic, &prefix)?;
        producers.push((r.clone(), child, out));
        prefixes.push(prefix);
    }
    let consumers = match opts.consumer_events {
        ConsumerEventsFrom::Files => ConsumerEvents::Files(PodLogFiles {
            pod_logs: opts.pod_logs.clone(),
            pod_prefixes: workloads
                .iter()
                .map(|(r, w)| (format!("{ns}_{w}-"), r.clone()))
                .collect(),
            tail: Tail::default(),
        }),
        ConsumerEventsFrom::Api => {
            let mut of_region = BTreeMap::new();
            for (r, w) in &workloads {
                of_region.insert(r.clone(), (clusters.of_region(r)?.clone(), w.clone()));
            }
            ConsumerEvents::Api(PodLogStreams::start(&ns, of_region).await?)
        }
    };
    let lease_cluster = clusters.lease_cluster().clone();
    let mut d = Drill {
        client: conn.client.clone(),
        clusters,
        ns: ns.clone(),
        disagreement: None,
        name: opts.group.clone(),
        topic: topic.clone(),
        load: Load {
            producers,
            tail: Tail::default(),
            acks: Vec::new(),
            consumed: Vec::new(),
            sessions: Vec::new(),
            consumers,
            prefixes,
        },
        workloads,
        regions: regions.clone(),
        opts: opts.clone(),
        started: Instant::now(),
        active_active: !active_passive,
        config_maps: Api::namespaced(any_cluster.clone(), &ns),
        leases: Api::namespaced(lease_cluster, &ns),
        primary: Vec::new(),
    };
    d.say(&format!(
        "drilling {ns}/{} ({:?}, regions {}{}) {} times, faults {}, seed {}; load: VerifiableProducer {} records/s per region into {topic}; events in {}",
        opts.group,
        cgf.spec.mode,
        regions.join(","),
        if per_region {
            ", a cluster per region"
        } else {
            ""
        },
        opts.drills,
        opts.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        opts.seed,
        opts.rate,
        dir.display()
    ));
    let result = series(&mut d).await;
    d.load.stop().await;
    let (warmup_repairs, runs) = result?;
    // Drain: every acknowledged record should reach the group (ActiveActive: every region's).
    let deadline = Instant::now() + opts.drain_timeout;
    loop {
        d.load.refresh();
        let seen: HashSet<(&str, &str)> = d
            .load
            .consumed
            .iter()
            .map(|c| {
                let region = if active_passive {
                    ""
                } else {
                    c.region.as_str()
                };
                (region, c.value.as_str())
            })
            .collect();
        let in_all = |value: &str| {
            if active_passive {
                seen.contains(&("", value))
            } else {
                d.regions
                    .iter()
                    .all(|r| seen.contains(&(r.as_str(), value)))
            }
        };
        let missing = d
            .load
            .acks
            .iter()
            .filter(|a| !in_all(a.value.as_str()))
            .count();
        if missing == 0 || Instant::now() >= deadline {
            d.say(&format!(
                "load stopped: {} records acknowledged, {} consumption events, {missing} not consumed",
                d.load.acks.len(),
                d.load.consumed.len()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    d.load.consumers.stop();
    let verdicts = judge(
        &runs,
        &d.load.acks,
        &d.load.consumed,
        &d.load.sessions,
        &d.primary,
        active_passive,
    );
    let summary = Summary::of(&verdicts).with_warmup_repairs(warmup_repairs);
    print_table(&verdicts);
    if let Some(path) = &opts.report {
        let json = report_json(&ns, &opts, &topic, &dir, &runs, &verdicts, &summary);
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if let Some(path) = &opts.timeline {
        let pick = runs
            .iter()
            .find(|r| r.fault.is_some_and(Fault::kills_region) && r.error.is_none())
            .or_else(|| runs.first());
        if let Some(r) = pick {
            let mut marks = vec![Mark {
                at_ms: r.started_ms,
                label: format!("{} {}", r.fault.map(|f| f.name()).unwrap_or("-"), r.from),
            }];
            let p = &r.phases;
            for (t, label) in [
                (p.detected_ms, "detected".to_string()),
                (
                    p.committed_ms,
                    format!("epoch {} → {} ({})", r.epoch_before, r.epoch_after, r.to),
                ),
                (p.first_consumed_ms, format!("first record in {}", r.to)),
                (r.restored_ms, "restored".to_string()),
            ] {
                if let Some(at_ms) = t {
                    marks.push(Mark { at_ms, label });
                }
            }
            let svg = render(
                &format!(
                    "drill {}: {} {} → {} ({}/{})",
                    r.index + 1,
                    r.fault.map(|f| f.name()).unwrap_or("-"),
                    r.from,
                    r.to,
                    ns,
                    opts.group
                ),
                &d.regions,
                &d.load.acks,
                &d.load.consumed,
                &marks,
                r.started_ms - 10_000,
                r.settled_ms + 5_000,
            );
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
            println!("timeline: {}", path.display());
        }
    }
    println!("{}", summary.line());
    Ok(summary.passed())
}

/// Warm-up, then the drills; stops early when the group no longer settles. Also returns
/// the standby members repaired while the warm-up waited.
async fn series(d: &mut Drill) -> Result<(Vec<StandbyMemberRepair>, Vec<DrillRun>)> {
    let mut warmup = DrillRun::default();
    let timeout = d.opts.settle_timeout;
    let regions = d.regions.clone();
    d.wait_for(
        "every region's producer acknowledged and the group consuming this drill's records",
        timeout,
        &mut warmup,
        async |d, cgf, warmup| {
            d.repair_standby_members(cgf, warmup).await;
            let active = cgf.status.as_ref()?.active_region.clone()?;
            let acked: HashSet<&str> = d.load.acks.iter().map(|a| a.region.as_str()).collect();
            (regions.iter().all(|r| acked.contains(r.as_str()))
                && d.load.first_consumed_in(&active, 0).is_some()
                && d.settled(cgf, 0))
            .then_some(())
        },
    )
    .await?;
    d.say("load running, group settled: starting");
    let mut dice = Dice::new(d.opts.seed);
    let mut runs = Vec::new();
    for i in 0..d.opts.drills {
        let cgf = d.group().await?;
        let s = cgf.status.clone().unwrap_or_default();
        let active = s.active_region.clone().unwrap_or_default();
        let healthy: Vec<String> = s
            .regions
            .iter()
            .filter(|r| r.healthy && r.region != active)
            .map(|r| r.region.clone())
            .collect();
        let failback_to = s.last_failover.as_ref().and_then(|f| f.from.clone());
        let choices = applicable(
            &d.opts.faults,
            &active,
            &healthy,
            failback_to.as_deref(),
            d.active_active,
        );
        let next = d.opts.faults[i % d.opts.faults.len().max(1)];
        let picked = if d.opts.in_order && choices.contains(&next) {
            Some(next)
        } else {
            dice.pick(&choices).copied()
        };
        let Some(fault) = picked else {
            bail!(
                "no fault of {:?} applies now (active {active}, healthy others {healthy:?})",
                d.opts.faults
            );
        };
        let run = d.one(i, fault, &mut dice).await;
        print_row(&run);
        let failed = run.error.is_some();
        runs.push(run);
        if failed && !d.group().await.is_ok_and(|c| d.settled(&c, 0)) {
            d.say("the group did not settle after a failed drill: stopping the series");
            break;
        }
    }
    Ok((warmup.standby_member_repairs, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(standby_synced: &str, pending: bool) -> ConsumerGroupFailover {
        let mut status = serde_json::json!({
            "activeRegion": "east",
            "epoch": 2,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Active", "message": "",
                            "lastTransitionTime": "2026-12-01T12:00:00Z"}],
            "regions": [
                {"region": "east", "healthy": true, "role": "Active"},
                {"region": "west", "healthy": true, "role": "Standby", "lastSyncTime": standby_synced},
            ],
        });
        if pending {
            status["pendingMove"] = serde_json::json!({"to": "west", "reason": "SpecChanged", "kind": "Planned", "epoch": 3});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1",
            "kind": "ConsumerGroupFailover",
            "metadata": {"name": "billing", "namespace": "shop"},
            "spec": {"groupId": "billing", "topics": ["orders"], "mode": "ActivePassive",
                     "regions": [{"region": "east", "aggregateCluster": "east"},
                                 {"region": "west", "aggregateCluster": "west"}]},
            "status": status,
        }))
        .expect("a ConsumerGroupFailover")
    }

    #[test]
    fn a_standby_synced_before_the_move_is_not_settled() {
        // 2026-12-01T12:00:05Z
        let synced = 1_796_126_405_000;
        let g = group("2026-12-01T12:00:05Z", false);
        assert!(settled_at(&g, synced - 1_000, synced + 2_000));
        assert!(
            !settled_at(&g, synced + 500, synced + 2_000),
            "synced before the move"
        );
        assert!(
            !settled_at(&g, synced - 1_000, synced + 11_000),
            "synced too long ago"
        );
        let pending = group("2026-12-01T12:00:05Z", true);
        assert!(
            !settled_at(&pending, synced - 1_000, synced + 2_000),
            "a move is pending"
        );
    }

    #[test]
    fn only_reported_members_of_a_standby_region_are_repaired() {
        let mut g = group("2026-12-01T12:00:05Z", false);
        let s = g.status.as_mut().expect("status");
        s.regions[0].members = Some(2);
        s.regions[1].members = Some(2);
        assert_eq!(
            reported_standby_members(&g),
            None,
            "members, but the operator reports none (within its grace)"
        );
        let degraded = |reason: &str| {
            serde_json::from_value(serde_json::json!({
                "type": "Degraded", "status": "True", "reason": reason,
                "message": "west: 2 members", "lastTransitionTime": "2026-12-01T12:02:05Z"}))
            .expect("a condition")
        };
        let s = g.status.as_mut().expect("status");
        s.conditions.push(degraded("RegionDown"));
        assert_eq!(reported_standby_members(&g), None, "another reason");
        let s = g.status.as_mut().expect("status");
        s.conditions[1] = degraded(STANDBY_HAS_MEMBERS);
        assert_eq!(
            reported_standby_members(&g),
            Some((vec![("west".into(), 2)], "west: 2 members".into())),
            "the standby region, never the active one"
        );
    }
}
