//! Speaking Kafka for Tributary: how to connect ([`ClientSettings`], with TLS and SASL whose
//! secrets are read from files at runtime and never printed), the CLI flags that fill them
//! ([`SourceConnectionArgs`], [`DestConnectionArgs`]), and the few admin operations the
//! operator and the replicator need ([`admin::KafkaAdmin`]). Errors ([`KafkaError`]) name the
//! cluster and topic and carry a static [`KafkaError::category`] for metrics and events.
//!
//! rdkafka is re-exported so that dependants use the same version.

pub mod admin;
mod args;
mod error;
mod settings;

pub use admin::{KafkaAdmin, PartitionOffsets, TopicDescription, TopicSpec};
pub use args::{DestConnectionArgs, FromConnectionArgs, SourceConnectionArgs, ToConnectionArgs};
pub use error::{KafkaError, classify};
pub use rdkafka;
pub use settings::{ClientSettings, SaslSettings, TlsSettings};
