//! The frame every controller's reconcile runs in, whatever the kind: an object that cannot be
//! read (schema drift) is reported and waits for a fix instead of breaking the watch of every
//! other object; each run is counted and timed; a failure is counted by category, written to
//! the object's status, and retried with a per-object backoff (an invalid spec waits for a
//! change instead). An object paused by the annotation `tributary.dev/paused: "true"` is
//! left alone until the annotation changes or the object is deleted.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::{ErrorLabels, KindLabels};

/// A kind the operator reconciles.
pub trait Reconciled: Resource + Send + Sync + 'static {
    /// The kind's name, for metrics, logs and messages.
    const KIND: &'static str;

    /// The kind's pipeline: dereference → validate → build → apply → prune → status.
    fn reconcile(&self, ctx: &Context) -> impl Future<Output = Result<Action>> + Send;

    /// Writes a failure into the object's status (best effort: the failure is already counted
    /// and logged).
    fn report_failure(&self, ctx: &Context, error: &Error) -> impl Future<Output = ()> + Send;

    /// The one region the object belongs to, if it belongs to one: an operator with
    /// `--region` leaves other regions' objects (status included) to their own operator.
    fn region(&self) -> Option<&str> {
        None
    }

    /// The object is paused: stop what acts for it between passes.
    fn paused(&self, _ctx: &Context) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

fn failure_key<K: Reconciled>(obj: &impl Resource) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Whether the paused annotation asks to leave the object alone. Never once it is being
/// deleted: its finalizer (Kafka-side cleanup) must still run, or a paused object with one
/// could never go away.
pub fn is_paused(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_none()
        && meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::names::PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true")
}

/// The controller's reconcile function for kind `K`.
pub async fn reconcile<K: Reconciled>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action>
where
    DeserializeGuard<K>: Resource,
{
    let valid = match &obj.0 {
        Ok(valid) => valid,
        Err(invalid) => {
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ErrorLabels {
                    kind: K::KIND,
                    category: "InvalidSpec",
                })
                .inc();
            return Err(Error::InvalidSpec(format!(
                "{} {}/{} cannot be read ({}); fix or delete it",
                K::KIND,
                obj.namespace().unwrap_or_default(),
                obj.name_any(),
                invalid.error
            )));
        }
    };
    if let Some(region) = valid.region()
        && !ctx.acts_for(region)
    {
        return Ok(Action::await_change());
    }
    if is_paused(valid.meta()) {
        tracing::info!(
            kind = K::KIND,
            namespace = valid.namespace().unwrap_or_default(),
            name = valid.name_any(),
            "paused by annotation; not reconciling"
        );
        valid.paused(&ctx).await;
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let labels = KindLabels { kind: K::KIND };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let result = valid.reconcile(&ctx).await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => ctx.note_success(&failure_key::<K>(valid)),
        Err(e) => {
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ErrorLabels {
                    kind: K::KIND,
                    category: e.category(),
                })
                .inc();
            // A failure to write status is not written to status again.
            if !matches!(e, Error::Status { .. }) {
                valid.report_failure(&ctx, e).await;
            }
        }
    }
    result
}

/// The controller's error policy for kind `K`: back off per object, or wait for a change.
pub fn error_policy<K: Reconciled>(
    obj: Arc<DeserializeGuard<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action
where
    DeserializeGuard<K>: Resource,
{
    let attempt = ctx.note_failure(&failure_key::<K>(obj.as_ref()));
    tracing::warn!(
        kind = K::KIND,
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        category = err.category(),
        error = %tributary_kafka::redact(&err.to_string()),
        "reconcile failed"
    );
    match err.retry_after(attempt) {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn meta(paused: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            annotations: paused.map(|v| {
                BTreeMap::from([(crate::names::PAUSED_ANNOTATION.to_string(), v.to_string())])
            }),
            deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
            finalizers: Some(vec![crate::names::TOPICS_FINALIZER.to_string()]),
            ..Default::default()
        }
    }

    #[test]
    fn the_paused_annotation_stops_reconciles_of_a_live_object() {
        assert!(is_paused(&meta(Some("true"), false)));
        assert!(!is_paused(&meta(Some("false"), false)));
        assert!(!is_paused(&meta(None, false)));
    }

    #[test]
    fn a_paused_object_being_deleted_is_reconciled_so_its_finalizer_runs() {
        assert!(!is_paused(&meta(Some("true"), true)));
    }
}
