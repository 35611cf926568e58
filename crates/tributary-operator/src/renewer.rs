//! Keeps a group's active-region Lease renewed between reconcile passes.
//!
//! The reconcile pass decides whether the holder may be renewed (its region answers, nothing
//! moves) and used to renew only within the pass. On a loaded node a pass takes seconds, so
//! renewals came further apart than the active gates' fresh window (`leaseDuration − margin`,
//! 3.3 s of a 5 s Lease) and warm standbys' gates said `Stale`. Now a pass that decides
//! "renew" also grants a licence, and a task of the group renews every renew interval while
//! the licence holds:
//! - only while the holder's latest probe answered (the test the decision itself makes), so
//!   a region that goes down stops being renewed at its first failed probe, as before;
//! - only the same holder at the same epoch (JSON Patch `test` on `holderIdentity` and
//!   `leaseTransitions`): a move, or another operator's write, makes the renewal fail and
//!   ends the licence;
//! - for at most [`LICENCE_PASSES`] Lease durations without a pass granting it again.
//!
//! After each renewal the task refreshes `renewTime` of the `<name>-active` ConfigMap, if it
//! still names the same holder and epoch and is not fenced (the gates read the ConfigMap).
//! A pass whose decision is anything but "renew" revokes the licence first and waits for a
//! renewal in flight, so a move never races a renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tributary_api::ConsumerGroupFailover;

use crate::coordination::LeaseServer;
use crate::fence::Fences;
use crate::group_prober::GroupProber;
use crate::metrics::Metrics;
use crate::names;

/// How many Lease durations a licence outlives the pass that granted it: a pass on the
/// loaded local stack took up to about one Lease duration.
pub const LICENCE_PASSES: u32 = 2;

/// What a pass allows the task to renew.
#[derive(Clone, Debug, PartialEq)]
pub struct Licence {
    pub group: ObjectRef<ConsumerGroupFailover>,
    pub holder: String,
    pub epoch: u64,
    pub lease_duration: Duration,
    /// Renewals this far apart.
    pub interval: Duration,
}

/// The Lease's `renewTime` as the ConfigMap carries it.
pub fn renew_time_text(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default()
}

/// Holder and epoch of a Lease.
fn identity(lease: &Lease) -> Option<(&str, u64)> {
    let spec = lease.spec.as_ref()?;
    let epoch = u64::try_from(spec.lease_transitions?).ok()?;
    Some((spec.holder_identity.as_deref()?, epoch))
}

fn renewed_at(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

/// `last` when it renews what `read` says (same holder and epoch) later; else `read`.
fn newest(read: Lease, last: Option<Lease>) -> Lease {
    match last {
        Some(last)
            if identity(&last).is_some()
                && identity(&last) == identity(&read)
                && renewed_at(&last) > renewed_at(&read) =>
        {
            last
        }
        _ => read,
    }
}

/// Whether `now` is `read` but for a renewal (its `renewTime`, resourceVersion and managed
/// fields): a compare-and-swap that lost to a renewal alone may be tried again on `now`.
pub fn only_renewed(read: &Lease, now: &Lease) -> bool {
    let but_renewal = |l: &Lease| {
        let mut l = l.clone();
        l.metadata.resource_version = None;
        l.metadata.managed_fields = None;
        if let Some(spec) = l.spec.as_mut() {
            spec.renew_time = None;
        }
        l
    };
    but_renewal(read) == but_renewal(now)
}

struct Granted {
    licence: Licence,
    until: Instant,
}

#[derive(Default)]
struct Slot {
    /// Held by the task during a renewal; a revoke or a pause waits for it.
    granted: Arc<AsyncMutex<Option<Granted>>>,
    /// The last confirmed renewal, by a pass or the task: when it was sent, and the Lease.
    last: Mutex<Option<(Instant, Lease)>>,
    /// A renewal was refused for lack of the `patch` verb (warned once).
    forbidden: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn last(&self) -> Option<(Instant, Lease)> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, sent: Instant, lease: &Lease) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_none_or(|(s, _)| *s <= sent) {
            *last = Some((sent, lease.clone()));
        }
    }
}

struct Deps {
    coordination: LeaseServer,
    client: kube::Client,
    group_prober: GroupProber,
    fences: Arc<Fences>,
    metrics: Arc<Metrics>,
}

impl Deps {
    /// Books a renewal the coordination server confirmed, whoever sent it: the holder's fence
    /// deadline moves on, `slot` remembers the newest renewal, the count by `by` rises.
    fn confirmed(
        &self,
        key: &str,
        slot: Option<&Slot>,
        sent: Instant,
        lease: &Lease,
        lease_duration: Duration,
        by: &'static str,
    ) {
        if let Some(holder) = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
        {
            self.fences.renewed(
                key,
                holder,
                sent,
                tributary_core::failover::fence_ttl(lease_duration),
            );
        }
        if let Some(slot) = slot {
            slot.record(sent, lease);
        }
        self.metrics.count_renewal(by);
    }
}

/// A group's slot and the task that renews from it.
type Running = (Arc<Slot>, tokio::task::JoinHandle<()>);

/// The renewal tasks, one per group that was granted a licence.
#[derive(Clone)]
pub struct Renewer {
    deps: Arc<Deps>,
    slots: Arc<Mutex<HashMap<String, Running>>>,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renewer")
    }
}

/// Renewals paused while a pass writes the ConfigMap (so a renewal cannot land between the
/// pass choosing `renewTime` and its write, which would set the ConfigMap back).
pub struct Paused {
    _guard: Option<OwnedMutexGuard<Option<Granted>>>,
}

impl Renewer {
    pub fn new(
        coordination: LeaseServer,
        client: kube::Client,
        group_prober: GroupProber,
        fences: Arc<Fences>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            deps: Arc::new(Deps {
                coordination,
                client,
                group_prober,
                fences,
                metrics,
            }),
            slots: Arc::default(),
        }
    }

    fn slot(&self, key: &str) -> Option<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.get(key).map(|(s, _)| s.clone())
    }

    fn slot_or_start(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(key.to_string())
            .or_insert_with(|| {
                let slot = Arc::new(Slot::default());
                let task = tokio::spawn(run(self.deps.clone(), key.to_string(), slot.clone()));
                (slot, task)
            })
            .0
            .clone()
    }

    /// A pass decided the holder is renewed: the task may renew for the next
    /// [`LICENCE_PASSES`] Lease durations.
    pub async fn grant(&self, key: &str, licence: Licence) {
        let slot = self.slot_or_start(key);
        let until = Instant::now() + licence.lease_duration * LICENCE_PASSES;
        *slot.granted.lock().await = Some(Granted { licence, until });
    }

    /// A pass decided otherwise: no renewal from now on, none in flight when this returns.
    pub async fn revoke(&self, key: &str) {
        if let Some(slot) = self.slot(key) {
            *slot.granted.lock().await = None;
        }
    }

    /// A pass renewed the Lease itself (sent at `sent`; `lease` as the server returned it).
    pub fn renewed_by_pass(
        &self,
        key: &str,
        sent: Instant,
        lease: &Lease,
        lease_duration: Duration,
    ) {
        let slot = self.slot(key);
        self.deps
            .confirmed(key, slot.as_deref(), sent, lease, lease_duration, "pass");
    }

    /// Whether a renewal of `holder` at `epoch` was sent within `within`.
    pub fn renewed_within(&self, key: &str, holder: &str, epoch: u64, within: Duration) -> bool {
        self.slot(key)
            .and_then(|s| s.last())
            .is_some_and(|(sent, l)| {
                identity(&l) == Some((holder, epoch)) && sent.elapsed() < within
            })
    }

    /// Pauses renewals until the returned value is dropped.
    pub async fn pause(&self, key: &str) -> Paused {
        match self.slot(key) {
            Some(slot) => Paused {
                _guard: Some(slot.granted.clone().lock_owned().await),
            },
            None => Paused { _guard: None },
        }
    }

    /// The newest of `read` and the last renewal, when both are of one holder and epoch.
    pub fn newest(&self, key: &str, read: Option<Lease>) -> Option<Lease> {
        let last = self.slot(key).and_then(|s| s.last()).map(|(_, l)| l);
        Some(newest(read?, last))
    }

    /// The group is gone.
    pub fn forget(&self, key: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, task)) = slots.remove(key) {
            task.abort();
        }
    }
}

/// How often an idle task looks for a licence.
const IDLE: Duration = Duration::from_millis(250);

async fn run(deps: Arc<Deps>, key: String, slot: Arc<Slot>) {
    let mut wait = IDLE;
    loop {
        tokio::time::sleep(wait).await;
        let mut granted = slot.granted.lock().await;
        wait = match granted.as_ref() {
            None => IDLE,
            Some(g) if Instant::now() >= g.until => {
                tracing::debug!(
                    group = key,
                    "renewal licence ran out (no pass granted it again)"
                );
                *granted = None;
                IDLE
            }
            Some(g) => {
                let interval = g.licence.interval;
                let due = slot.last().map(|(sent, _)| sent + interval);
                match due.filter(|d| *d > Instant::now()) {
                    Some(due) => due - Instant::now(),
                    None => match renew_once(&deps, &key, &slot, &g.licence).await {
                        Renewal::Done | Renewal::Skipped => interval,
                        Renewal::Failed => interval.min(Duration::from_secs(1)) / 2,
                        Renewal::Superseded => {
                            *granted = None;
                            IDLE
                        }
                    },
                }
            }
        };
    }
}

enum Renewal {
    Done,
    /// The holder's latest probe failed: the pass decides what follows.
    Skipped,
    Failed,
    /// The Lease changed holder or epoch (or is gone): the licence ends.
    Superseded,
}

async fn renew_once(deps: &Deps, key: &str, slot: &Slot, l: &Licence) -> Renewal {
    let answers = deps
        .group_prober
        .health(&l.group)
        .get(&l.holder)
        .is_some_and(|h| h.probed && h.healthy && h.consecutive_failures == 0);
    if !answers {
        return Renewal::Skipped;
    }
    let ns = l.group.namespace.clone().unwrap_or_default();
    let name = names::active_name(&l.group.name);
    let now = MicroTime(Timestamp::now());
    let patch = json!([
        {"op": "test", "path": "/spec/holderIdentity", "value": l.holder},
        {"op": "test", "path": "/spec/leaseTransitions", "value": l.epoch},
        {"op": "replace", "path": "/spec/renewTime", "value": now},
    ]);
    let Ok(patch) = serde_json::from_value::<json_patch::Patch>(patch) else {
        return Renewal::Failed;
    };
    let leases: Api<Lease> = Api::namespaced(deps.coordination.client.clone(), &ns);
    let params = PatchParams::default();
    let sent = Instant::now();
    let patch = Patch::<()>::Json(patch);
    let request = leases.patch(&name, &params, &patch);
    let lease = match crate::coordination::lease_request(
        &deps.coordination,
        &deps.fences,
        key,
        request,
    )
    .await
    {
        Ok(lease) => lease,
        // A failed `test` (another holder or epoch), a Lease gone: not ours to renew.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {
            tracing::debug!(group = key, holder = l.holder, error = %e, "renewal superseded");
            return Renewal::Superseded;
        }
        // Not the passes' problem (they update, the renewer patches): said once.
        Err(kube::Error::Api(e)) if e.code == 403 => {
            if !slot
                .forbidden
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(group = key, error = %e, "the operator may not patch the Lease (RBAC: leases needs get, create, update, patch): renewed only by reconcile passes");
            }
            return Renewal::Failed;
        }
        Err(e) => {
            tracing::debug!(group = key, holder = l.holder, error = %e, "renewal failed (the pass retries and reports)");
            return Renewal::Failed;
        }
    };
    deps.confirmed(key, Some(slot), sent, &lease, l.lease_duration, "renewer");
    // The ConfigMap, if it still says what the licence does (a fenced one stays fenced).
    let patch = json!([
        {"op": "test", "path": "/data/activeRegion", "value": l.holder},
        {"op": "test", "path": "/data/epoch", "value": l.epoch.to_string()},
        {"op": "test", "path": "/data/fenced", "value": "false"},
        {"op": "replace", "path": "/data/renewTime", "value": renew_time_text(&lease)},
    ]);
    if let Ok(patch) = serde_json::from_value::<json_patch::Patch>(patch) {
        let cms: Api<ConfigMap> = Api::namespaced(deps.client.clone(), &ns);
        if let Err(e) = cms.patch(&name, &params, &Patch::<()>::Json(patch)).await {
            tracing::debug!(group = key, error = %e, "ConfigMap renewTime not refreshed (the pass writes it)");
        }
    }
    Renewal::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use std::collections::BTreeMap;

    fn lease(holder: &str, epoch: i32, renewed_ms: i64) -> Lease {
        let mut l = Lease::default();
        l.metadata.resource_version = Some(renewed_ms.to_string());
        l.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        l.spec = Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_transitions: Some(epoch),
            lease_duration_seconds: Some(5),
            renew_time: Some(MicroTime(
                Timestamp::from_millisecond(renewed_ms).expect("valid"),
            )),
            ..Default::default()
        });
        l
    }

    #[test]
    fn the_newest_renewal_of_the_same_holder_and_epoch_wins() {
        let read = lease("east", 3, 1_000);
        assert_eq!(newest(read.clone(), None), read);
        let later = lease("east", 3, 2_000);
        assert_eq!(newest(read.clone(), Some(later.clone())), later);
        // An older renewal never sets the ConfigMap back.
        assert_eq!(newest(later.clone(), Some(read.clone())), later);
        // Another holder or epoch is another Lease: what the pass read stands.
        assert_eq!(newest(read.clone(), Some(lease("west", 3, 9_000))), read);
        assert_eq!(newest(read.clone(), Some(lease("east", 4, 9_000))), read);
    }

    #[test]
    fn a_swap_is_retried_after_a_renewal_and_after_nothing_else() {
        let read = lease("east", 3, 1_000);
        assert!(only_renewed(&read, &lease("east", 3, 2_000)));
        assert!(!only_renewed(&read, &lease("west", 4, 2_000)));
        assert!(!only_renewed(&read, &lease("east", 4, 2_000)));
        let mut handover = lease("east", 3, 2_000);
        handover
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("handover".into(), "west".into());
        assert!(!only_renewed(&read, &handover));
        let mut longer = lease("east", 3, 2_000);
        if let Some(s) = longer.spec.as_mut() {
            s.lease_duration_seconds = Some(15);
        }
        assert!(!only_renewed(&read, &longer));
    }
}
