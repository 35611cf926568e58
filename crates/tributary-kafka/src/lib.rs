//! Speaking Kafka for Tributary: how to connect ([`ClientSettings`], with TLS and SASL whose
//! secrets are read from files at runtime and never printed), the CLI flags that fill them
//! ([`SourceConnectionArgs`], [`DestConnectionArgs`]), and the few admin operations the
//! operator and the replicator need ([`admin::KafkaAdmin`]). Errors ([`KafkaError`]) name the
//! cluster and topic and carry a static [`KafkaError::category`] for metrics and events; texts
//! from librdkafka in them are [`redact`]ed, so no secret value reaches status, events or logs.
//!
//! rdkafka is re-exported so that dependants use the same version.

pub mod admin;
mod args;
mod error;
pub mod group;
pub mod redact;
mod settings;

pub use admin::{KafkaAdmin, PartitionOffsets, TopicDescription, TopicSpec};
pub use args::{DestConnectionArgs, FromConnectionArgs, SourceConnectionArgs, ToConnectionArgs};
pub use error::{KafkaError, classify};
pub use rdkafka;
pub use redact::{redact, remember_secret};
pub use settings::{ClientSettings, SaslSettings, TlsSettings};
