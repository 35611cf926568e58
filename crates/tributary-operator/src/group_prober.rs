//! Health of the regions of every ConsumerGroupFailover, as an external relation: one task per
//! group probes each region's aggregate cluster every `failover.probePeriod` (the group's
//! members and committed offsets there, which is also the reachability check) and triggers a
//! reconcile when a region's health or the group's membership changes. A region is down after
//! `failureThreshold` consecutive failed probes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::runtime::reflector::ObjectRef;
use tributary_api::ConsumerGroupFailover;

use crate::kafka::{ClusterAdmin, GroupPosition, ResolvedConnection};

/// What to probe for one group.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupTarget {
    pub group: String,
    pub topics: Vec<String>,
    pub period: Duration,
    pub failure_threshold: u32,
    /// Region → its aggregate cluster, in preference order.
    pub regions: Vec<(String, ResolvedConnection)>,
}

/// The last probes of one region.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionHealth {
    pub consecutive_failures: u32,
    /// Health is known: a probe answered, or `failureThreshold` probes in a row failed.
    /// Until then the region is neither healthy nor down, and nothing is decided.
    pub probed: bool,
    pub healthy: bool,
    /// The last successful probe.
    pub position: Option<GroupPosition>,
    /// When the current run of failures began.
    pub failing_since: Option<SystemTime>,
    /// The last failure, phrased for a person.
    pub last_error: Option<String>,
    /// Since when the answers have named members of the group (reset by an answer without).
    pub members_since: Option<SystemTime>,
}

impl RegionHealth {
    /// Records an answer probed at `at`.
    pub(crate) fn answered(&mut self, position: GroupPosition, at: SystemTime) {
        if position.members.is_empty() {
            self.members_since = None;
        } else {
            self.members_since.get_or_insert(at);
        }
        self.position = Some(position);
    }
}

struct Probing {
    target: GroupTarget,
    task: tokio::task::JoinHandle<()>,
}

/// Shared between the controller (register, read) and the probe tasks.
#[derive(Clone)]
pub struct GroupProber {
    health: Arc<RwLock<HashMap<String, BTreeMap<String, RegionHealth>>>>,
    probing: Arc<std::sync::Mutex<HashMap<String, Probing>>>,
    trigger: UnboundedSender<ObjectRef<ConsumerGroupFailover>>,
    admin: Arc<dyn ClusterAdmin>,
}

impl std::fmt::Debug for GroupProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupProber")
    }
}

fn key(obj: &ObjectRef<ConsumerGroupFailover>) -> String {
    format!("{}/{}", obj.namespace.as_deref().unwrap_or(""), obj.name)
}

/// A probe's time budget: long enough for a loaded cluster, short enough that a dead one is
/// noticed within about `failureThreshold` periods.
pub fn probe_timeout(period: Duration) -> Duration {
    period.clamp(Duration::from_secs(2), Duration::from_secs(8))
}

impl GroupProber {
    pub fn new(
        admin: Arc<dyn ClusterAdmin>,
    ) -> (Self, UnboundedReceiver<ObjectRef<ConsumerGroupFailover>>) {
        let (trigger, rx) = unbounded();
        (
            Self {
                health: Arc::default(),
                probing: Arc::default(),
                trigger,
                admin,
            },
            rx,
        )
    }

    /// Starts (or, when the target changed, restarts) probing for a group.
    pub fn watch(&self, obj: ObjectRef<ConsumerGroupFailover>, target: GroupTarget) {
        let k = key(&obj);
        let Ok(mut probing) = self.probing.lock() else {
            return;
        };
        if probing.get(&k).is_some_and(|p| p.target == target) {
            return;
        }
        if let Some(old) = probing.remove(&k) {
            old.task.abort();
        }
        let task = tokio::spawn(self.clone().probe_loop(obj, target.clone()));
        probing.insert(k, Probing { target, task });
    }

    /// Stops probing a group that is gone.
    pub fn forget(&self, obj: &ObjectRef<ConsumerGroupFailover>) {
        let k = key(obj);
        if let Ok(mut p) = self.probing.lock()
            && let Some(old) = p.remove(&k)
        {
            old.task.abort();
        }
        if let Ok(mut h) = self.health.write() {
            h.remove(&k);
        }
    }

    /// The regions' health as last probed.
    pub fn health(&self, obj: &ObjectRef<ConsumerGroupFailover>) -> BTreeMap<String, RegionHealth> {
        self.health
            .read()
            .ok()
            .and_then(|h| h.get(&key(obj)).cloned())
            .unwrap_or_default()
    }

    /// Probes `regions` of a watched group now (a move under way must not wait for the next
    /// period to see its consumers leave). Only answers are recorded: failures are counted by
    /// the periodic probes alone, so `failureThreshold` keeps its meaning.
    pub async fn refresh(&self, obj: &ObjectRef<ConsumerGroupFailover>, regions: &[&str]) {
        let k = key(obj);
        let Some(target) = self
            .probing
            .lock()
            .ok()
            .and_then(|p| p.get(&k).map(|p| p.target.clone()))
        else {
            return;
        };
        let timeout = probe_timeout(target.period);
        let probes = target
            .regions
            .iter()
            .filter(|(region, _)| regions.contains(&region.as_str()))
            .map(|(region, conn)| self.probe(&target, region, conn, timeout));
        let results = futures::future::join_all(probes).await;
        let Ok(mut all) = self.health.write() else {
            return;
        };
        let entry = all.entry(k).or_default();
        for (region, started, result) in results {
            if let (Ok(position), Some(h)) = (result, entry.get_mut(&region))
                && h.healthy
            {
                h.answered(position, started);
            }
        }
    }

    async fn probe(
        &self,
        target: &GroupTarget,
        region: &str,
        conn: &ResolvedConnection,
        timeout: Duration,
    ) -> (
        String,
        SystemTime,
        Result<GroupPosition, crate::kafka::KafkaFailure>,
    ) {
        let started = SystemTime::now();
        let result = tokio::time::timeout(timeout + Duration::from_secs(1), async {
            self.admin
                .group_position(conn, &target.group, &target.topics, timeout)
                .await
        })
        .await
        .unwrap_or_else(|_| {
            Err(crate::kafka::KafkaFailure {
                message: format!("{} did not answer within {timeout:?}", conn.name),
                category: "Unreachable",
                transient: true,
            })
        });
        (region.to_string(), started, result)
    }

    async fn probe_loop(self, obj: ObjectRef<ConsumerGroupFailover>, target: GroupTarget) {
        let k = key(&obj);
        let timeout = probe_timeout(target.period);
        let mut tick = tokio::time::interval(target.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probes = target
                .regions
                .iter()
                .map(|(region, conn)| self.probe(&target, region, conn, timeout));
            let results = futures::future::join_all(probes).await;
            let changed = {
                let Ok(mut all) = self.health.write() else {
                    return;
                };
                let entry = all.entry(k.clone()).or_default();
                let mut changed = false;
                for (region, started, result) in results {
                    let h = entry.entry(region).or_default();
                    let before = (
                        h.healthy,
                        h.probed,
                        h.position.as_ref().map(|p| p.members.len()),
                    );
                    match result {
                        Ok(position) => {
                            h.consecutive_failures = 0;
                            h.healthy = true;
                            h.failing_since = None;
                            h.last_error = None;
                            h.answered(position, started);
                        }
                        Err(e) => {
                            h.consecutive_failures += 1;
                            // The failure began no later than the probe that saw it.
                            h.failing_since.get_or_insert(started);
                            h.last_error = Some(e.message);
                            if h.consecutive_failures >= target.failure_threshold {
                                h.healthy = false;
                                h.probed = true;
                                h.position = None;
                                h.members_since = None;
                            }
                        }
                    }
                    if h.healthy {
                        h.probed = true;
                    }
                    changed |= before
                        != (
                            h.healthy,
                            h.probed,
                            h.position.as_ref().map(|p| p.members.len()),
                        );
                }
                changed
            };
            if changed {
                let _ = self.trigger.unbounded_send(obj.clone());
            }
        }
    }
}
