//! Errors a person reads: each names the cluster (and topic where there is one) and has a
//! static category for metrics labels and event reasons.

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KafkaError {
    #[error(
        "{cluster} is unreachable ({detail}); check the bootstrap servers and that the cluster is up"
    )]
    Unreachable { cluster: String, detail: String },
    #[error(
        "{cluster} refused our credentials or permissions ({detail}); check the TLS/SASL settings and ACLs"
    )]
    Auth { cluster: String, detail: String },
    #[error("topic {topic:?} does not exist on {cluster}")]
    TopicMissing { cluster: String, topic: String },
    #[error(
        "topic {topic:?} on {cluster} has {have} partitions but needs {need} (partition p must map to p); it could not be grown: {detail}"
    )]
    TooFewPartitions {
        cluster: String,
        topic: String,
        have: usize,
        need: usize,
        detail: String,
    },
    #[error(
        "record too large for {cluster} (topic {topic:?}): {detail}; raise max.message.bytes on the topic or message.max.bytes"
    )]
    RecordTooLarge {
        cluster: String,
        topic: String,
        detail: String,
    },
    #[error(
        "another instance took over the transactional producer on {cluster} ({detail}); this instance is fenced"
    )]
    Fenced { cluster: String, detail: String },
    #[error("invalid settings for {cluster}: {detail}")]
    Config { cluster: String, detail: String },
    #[error("{operation} on {cluster} failed: {source}")]
    Kafka {
        cluster: String,
        operation: String,
        #[source]
        source: Box<RdError>,
    },
}

impl KafkaError {
    /// A bounded label: `Unreachable`, `Auth`, `TopicMissing`, `TooFewPartitions`,
    /// `RecordTooLarge`, `Fenced`, `Config` or `Kafka` (anything else).
    pub fn category(&self) -> &'static str {
        match self {
            KafkaError::Unreachable { .. } => "Unreachable",
            KafkaError::Auth { .. } => "Auth",
            KafkaError::TopicMissing { .. } => "TopicMissing",
            KafkaError::TooFewPartitions { .. } => "TooFewPartitions",
            KafkaError::RecordTooLarge { .. } => "RecordTooLarge",
            KafkaError::Fenced { .. } => "Fenced",
            KafkaError::Config { .. } => "Config",
            KafkaError::Kafka { .. } => "Kafka",
        }
    }

    /// Whether retrying later can help without a change of configuration.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KafkaError::Unreachable { .. } | KafkaError::Kafka { .. }
        )
    }
}

/// Maps an rdkafka error from `operation` on `cluster` (about `topic`, if any) to a
/// [`KafkaError`] with the right category.
pub fn classify(cluster: &str, operation: &str, topic: Option<&str>, err: RdError) -> KafkaError {
    use RDKafkaErrorCode as C;
    let code = match &err {
        RdError::Transaction(e) => Some(e.code()),
        other => other.rdkafka_error_code(),
    };
    let cluster = cluster.to_owned();
    let detail = || format!("{operation}: {err}");
    match code {
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::Resolve
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::CoordinatorNotAvailable
            | C::NotCoordinator,
        ) => KafkaError::Unreachable {
            cluster,
            detail: detail(),
        },
        Some(
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
            | C::SSL,
        ) => KafkaError::Auth {
            cluster,
            detail: detail(),
        },
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            KafkaError::TopicMissing {
                cluster,
                topic: topic.unwrap_or("?").to_owned(),
            }
        }
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => KafkaError::RecordTooLarge {
            cluster,
            topic: topic.unwrap_or("?").to_owned(),
            detail: detail(),
        },
        Some(C::ProducerFenced | C::InvalidProducerEpoch | C::Fenced) => KafkaError::Fenced {
            cluster,
            detail: detail(),
        },
        _ => KafkaError::Kafka {
            cluster,
            operation: operation.to_owned(),
            source: Box::new(err),
        },
    }
}
