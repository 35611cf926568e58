//! What the plugin read from the API server: the three kinds' objects as listed, and when.
//! Pure data; [`crate::cluster`] fills it, [`crate::topology`] interprets it.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tributary_api::{AggregateCluster, ConsumerGroupFailover, RegionalStream};

/// Which namespaces a command looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespace(String),
    AllNamespaces,
}

impl Scope {
    /// The namespace, or `None` for all of them.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Scope::Namespace(ns) => Some(ns),
            Scope::AllNamespaces => None,
        }
    }
}

/// Every Tributary object of a scope, read at `taken_at`.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub scope: Scope,
    pub taken_at: Timestamp,
    pub streams: Vec<RegionalStream>,
    pub aggregates: Vec<AggregateCluster>,
    pub groups: Vec<ConsumerGroupFailover>,
}

impl Snapshot {
    /// Orders every list by (namespace, name) so output does not depend on the server's order.
    pub fn sorted(mut self) -> Self {
        self.streams.sort_by_key(|o| (o.namespace(), o.name_any()));
        self.aggregates
            .sort_by_key(|o| (o.namespace(), o.name_any()));
        self.groups.sort_by_key(|o| (o.namespace(), o.name_any()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.aggregates.is_empty() && self.groups.is_empty()
    }
}

/// When the object's status was last written: the newest `managedFields` entry of the `status`
/// subresource. The operator writes status only when it changes, so this is the age of the
/// newest observation that changed something, not a heartbeat.
pub fn status_written_at<K: ResourceExt>(obj: &K) -> Option<Timestamp> {
    obj.managed_fields()
        .iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.time.as_ref().map(|t| t.0))
        .max()
}
