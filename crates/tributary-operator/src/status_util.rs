//! Status writes and their events: status is applied whole, and events fire on condition
//! transitions only (a reconcile that finds the same state says nothing).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use tributary_api::condition_type;

use crate::conditions::state_of;
use crate::context::Context;
use crate::error::{Error, Result};

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

/// A kind whose status the operator writes whole, with conditions.
pub trait HasStatus:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    type Status: serde::Serialize + Clone + Default + PartialEq;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
}

/// Writes `status` whole by server-side apply (one field manager, so fields it no longer sets
/// go), unless it equals what the object has; then announces condition transitions.
pub async fn write_status<K: HasStatus>(obj: &K, ctx: &Context, status: K::Status) -> Result<()> {
    use kube::ResourceExt;
    let old = obj.status().cloned().unwrap_or_default();
    if old == status {
        return Ok(());
    }
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: kube::Api<K> = kube::Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &kube::api::PatchParams::apply(crate::names::FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(patch),
    )
    .await
    .map_err(|source| Error::Status {
        what: format!("{} {ns}/{name}", K::kind(&())),
        source,
    })?;
    announce_transitions(
        ctx,
        &obj.object_ref(&()),
        K::conditions(&old),
        K::conditions(&status),
    )
    .await;
    Ok(())
}

macro_rules! has_status {
    ($kind:ty, $status:ty) => {
        impl HasStatus for $kind {
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn conditions(status: &$status) -> &[Condition] {
                &status.conditions
            }
        }
    };
}

has_status!(
    tributary_api::RegionalStream,
    tributary_api::RegionalStreamStatus
);
has_status!(
    tributary_api::AggregateCluster,
    tributary_api::AggregateClusterStatus
);
has_status!(
    tributary_api::ConsumerGroupFailover,
    tributary_api::ConsumerGroupFailoverStatus
);
