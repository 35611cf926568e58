//! Errors a person reads: each names the cluster (and topic where there is one) and has a
//! static category for metrics labels and event reasons. librdkafka's texts are redacted on
//! the way in ([`crate::redact`]): they echo the properties and values they refuse.

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use thiserror::Error;
use tributary_core::secret_property::is_secret_property;

use crate::redact::{REDACTED, redact};

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
    /// Not the rdkafka error itself: its `Display` (and `Debug`, and any error chain that
    /// prints it) would carry librdkafka's unredacted text.
    #[error("{operation} on {cluster} failed: {detail}")]
    Kafka {
        cluster: String,
        operation: String,
        detail: String,
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
    if let RdError::ClientConfig(_, description, key, value) = &err {
        // rust-rdkafka prints `<description> <key> <value>`: the value goes unless harmless.
        let value = if is_secret_property(key) {
            REDACTED
        } else {
            value.as_str()
        };
        return KafkaError::Config {
            cluster,
            detail: redact(&format!(
                "{operation}: {description} (property {key}, value {value:?})"
            )),
        };
    }
    let detail = || redact(&format!("{operation}: {err}"));
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
            detail: redact(&err.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaConfRes;

    use super::*;

    #[test]
    fn a_refused_secret_property_is_a_config_error_without_its_value() {
        // What ClientConfig::create returns when librdkafka refuses a property.
        let err = RdError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cr3t-value\" for configuration property \"sasl.oauthbearer.client.secret\"".into(),
            "sasl.oauthbearer.client.secret".into(),
            "s3cr3t-value".into(),
        );
        let classified = classify(
            "east regional cluster",
            "creating an admin client",
            None,
            err,
        );
        let shown = format!("{classified} {classified:?}");
        assert_eq!(classified.category(), "Config");
        assert!(!classified.is_transient(), "a bad property does not heal");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("east regional cluster")
                && shown.contains("sasl.oauthbearer.client.secret"),
            "{shown}"
        );
    }

    #[test]
    fn a_harmless_refused_property_keeps_its_value_for_the_reader() {
        let err = RdError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"lz5\" for configuration property \"compression.type\"".into(),
            "compression.type".into(),
            "lz5".into(),
        );
        let shown =
            classify("west aggregate cluster", "creating a producer", None, err).to_string();
        assert!(
            shown.contains("lz5") && shown.contains("compression.type"),
            "{shown}"
        );
    }

    #[test]
    fn other_rdkafka_errors_are_redacted_too() {
        let err = RdError::ClientCreation(
            "sasl.oauthbearer.config=principal=admin is not supported".into(),
        );
        let shown = classify("east regional cluster", "creating a consumer", None, err).to_string();
        assert!(!shown.contains("principal=admin"), "{shown}");
    }
}
