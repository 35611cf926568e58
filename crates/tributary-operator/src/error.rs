//! Reconcile errors: one variant per pipeline step, each with a static category used for
//! metrics labels, events and the retry policy.

use std::time::Duration;

/// What went wrong in one reconcile, by pipeline step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading what the object refers to (Secrets, RegionalStreams, Deployments) failed.
    #[error("reading {what}: {source}")]
    Dereference {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The spec cannot be acted on; retrying will not help until it changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A Kafka cluster did not answer or refused an admin request (the message names it).
    #[error("{message}")]
    Kafka {
        message: String,
        /// `tributary-kafka`'s category: `Unreachable`, `Auth`, `TopicMissing`, `Config`, ...
        kafka_category: &'static str,
        /// Whether a retry soon may succeed (unreachable, timeout) or needs a fix elsewhere
        /// (credentials, ACLs, broker config: retried slowly, as the fix is outside the object).
        transient: bool,
    },
    /// Applying a child object (server-side apply) failed.
    #[error("applying {what}: {source}")]
    Apply {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Deleting an orphaned child failed.
    #[error("pruning {what}: {source}")]
    Prune {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing status failed.
    #[error("writing status of {what}: {source}")]
    Status {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The active-region Lease could not be read or renewed (the message names the server);
    /// retried within `retry`, before the holder's fence is due (see `fence`).
    #[error("{message}")]
    Coordination { message: String, retry: Duration },
}

/// `Forbidden` from the API server: the operator's RBAC lacks a verb. Named in status and logs.
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403)
}

impl From<crate::kafka::KafkaFailure> for Error {
    fn from(e: crate::kafka::KafkaFailure) -> Self {
        Error::Kafka {
            message: e.message,
            kafka_category: e.category,
            transient: e.transient,
        }
    }
}

impl Error {
    /// A static, bounded label for metrics and the `reason` of events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Dereference { source, .. }
            | Error::Apply { source, .. }
            | Error::Prune { source, .. }
            | Error::Status { source, .. }
                if is_forbidden(source) =>
            {
                "Forbidden"
            }
            Error::Dereference { .. } => "Dereference",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Kafka { kafka_category, .. } => match *kafka_category {
                "Unreachable" => "ClusterUnreachable",
                "Auth" => "KafkaAuthFailed",
                "TopicMissing" => "TopicMissing",
                "TooFewPartitions" => "TooFewPartitions",
                "Config" => "KafkaConfigInvalid",
                _ => "KafkaError",
            },
            Error::Apply { .. } => "Apply",
            Error::Prune { .. } => "Prune",
            Error::Status { .. } => "Status",
            Error::Finalizer(_) => "Finalizer",
            Error::Coordination { .. } => "CoordinationLost",
        }
    }

    /// How long to wait before the next attempt; `None`: wait for a change of the object.
    pub fn retry_after(&self, attempt: u32) -> Option<Duration> {
        match self {
            Error::InvalidSpec(_) => None,
            Error::Coordination { retry, .. } => Some(*retry),
            // The fix is usually a Secret (not watched): look again as soon as for a
            // rotation.
            Error::Kafka {
                kafka_category: "Auth",
                ..
            } => Some(crate::secrets::SECRET_RECHECK),
            Error::Kafka {
                transient: false, ..
            } => Some(Duration::from_secs(300)),
            _ => {
                // Exponential back-off, 2 s to 5 min: transient errors heal without hammering.
                let secs = 2u64.saturating_pow(attempt.min(8)).clamp(2, 300);
                Some(Duration::from_secs(secs))
            }
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_spec_waits_for_a_change_and_transient_errors_back_off() {
        assert_eq!(Error::InvalidSpec("x".into()).retry_after(3), None);
        let kafka = Error::Kafka {
            message: "east is unreachable".into(),
            kafka_category: "Unreachable",
            transient: true,
        };
        assert_eq!(kafka.retry_after(0), Some(Duration::from_secs(2)));
        assert_eq!(kafka.retry_after(3), Some(Duration::from_secs(8)));
        assert_eq!(kafka.retry_after(30), Some(Duration::from_secs(256)));
        assert_eq!(kafka.category(), "ClusterUnreachable");
    }

    #[test]
    fn a_refused_login_is_retried_as_soon_as_a_fixed_secret_could_show() {
        let auth = Error::Kafka {
            message: "SASL authentication failed".into(),
            kafka_category: "Auth",
            transient: false,
        };
        assert_eq!(auth.category(), "KafkaAuthFailed");
        assert_eq!(auth.retry_after(5), Some(crate::secrets::SECRET_RECHECK));
        let config = Error::Kafka {
            message: "bad property".into(),
            kafka_category: "Config",
            transient: false,
        };
        assert_eq!(config.retry_after(0), Some(Duration::from_secs(300)));
    }
}
