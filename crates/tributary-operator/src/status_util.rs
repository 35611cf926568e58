//! Events on condition transitions only: a reconcile that finds the same state says nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use tributary_api::condition_type;

use crate::conditions::state_of;
use crate::context::Context;

/// Publishes one event per condition (`Ready`, `Degraded`, `FailingOver`, `FailoverBlocked`)
/// whose status or reason changed.
pub async fn announce_transitions(
    ctx: &Context,
    regarding: &ObjectReference,
    old: &[Condition],
    new: &[Condition],
) {
    for type_ in [
        condition_type::READY,
        condition_type::DEGRADED,
        condition_type::FAILING_OVER,
        condition_type::FAILOVER_BLOCKED,
    ] {
        let quiet_when_false = type_ != condition_type::READY;
        let before = state_of(old, type_);
        let Some((status, reason)) = state_of(new, type_) else {
            continue;
        };
        if before.as_ref() == Some(&(status.clone(), reason.clone())) {
            continue;
        }
        // A fresh object that is fine needs no "not degraded" event.
        if quiet_when_false && status == "False" && before.is_none() {
            continue;
        }
        let message = new
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let warning = (type_ == condition_type::READY && status == "False")
            || (type_ == condition_type::DEGRADED && status == "True")
            || (type_ == condition_type::FAILOVER_BLOCKED && status == "True");
        let reason = if type_ == condition_type::DEGRADED && status == "False" {
            "Recovered".to_string()
        } else {
            reason
        };
        ctx.event(
            regarding,
            warning,
            &reason,
            "Reconcile",
            format!("{type_}={status}: {message}"),
        )
        .await;
    }
}
