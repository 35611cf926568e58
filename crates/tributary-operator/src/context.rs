//! What every reconcile is handed: the client, the Kafka seam, the prober's observations, the
//! event recorder and metrics. The seam for tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use tributary_api::RegionalStream;

use crate::kafka::ClusterAdmin;
use crate::metrics::Metrics;
use crate::prober::Prober;

pub struct Context {
    pub client: kube::Client,
    /// The API server that holds the active-region Leases: the operator's own cluster by
    /// default, or the one of `--coordination-kubeconfig`.
    pub coordination: crate::coordination::LeaseServer,
    /// Until when each group's holder may act without a confirmed renewal.
    pub fences: Arc<crate::fence::Fences>,
    /// Renews the Leases between passes, as the passes allow.
    pub renewer: crate::renewer::Renewer,
    /// Region health of every ConsumerGroupFailover.
    pub group_prober: crate::group_prober::GroupProber,
    pub admin: Arc<dyn ClusterAdmin>,
    pub prober: Prober,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The replicator image unless an AggregateCluster overrides it (env `TRIBUTARY_IMAGE`).
    pub default_image: Option<String>,
    /// Every RegionalStream, for source selection (ready before AggregateClusters reconcile).
    pub streams: Store<DeserializeGuard<RegionalStream>>,
    /// Consecutive failures per object, for back-off.
    pub failures: Mutex<HashMap<String, u32>>,
    /// The zombie commits each standby (`namespace/name/region`) last reported, so a rise
    /// raises one event.
    pub zombie_commits: Mutex<HashMap<String, u64>>,
    /// `--region`: the one region this operator acts for (one cluster per region); `None`:
    /// every region (one operator, stretched cluster).
    pub region: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Context")
    }
}

/// events.k8s.io/v1 `note`: at most 1 KiB.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

impl Context {
    /// Publishes an event (its note redacted); a failure is logged (it must not fail the
    /// reconcile).
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            // Redacted before it is cut (a cut secret would no longer be recognised); the
            // API server refuses notes over 1 KiB (e.g. "created topics" naming many).
            note: Some(crate::conditions::truncate(
                &tributary_kafka::redact(&note),
                EVENT_NOTE_MAX_BYTES,
            )),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Whether this operator acts for `region`.
    pub fn acts_for(&self, region: &str) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
    }

    /// Records a standby's zombie-commit count; the rise since the last report (0 at first
    /// sight of a standby that reports none).
    pub fn zombie_rise(&self, key: &str, total: u64) -> u64 {
        let Ok(mut seen) = self.zombie_commits.lock() else {
            return 0;
        };
        let before = seen.insert(key.to_string(), total).unwrap_or(0);
        total.saturating_sub(before)
    }

    pub fn note_failure(&self, key: &str) -> u32 {
        let Ok(mut f) = self.failures.lock() else {
            return 0;
        };
        let n = f.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n - 1
    }

    pub fn note_success(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}
