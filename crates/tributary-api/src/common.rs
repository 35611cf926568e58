//! Types shared by all kinds: the Kafka connection, Secret references, conditions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// DNS-1123 label: what a region name must be (it becomes part of object and topic names).
pub const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1123 subdomain: names of Kubernetes objects (Secrets, AggregateClusters, Deployments).
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Kafka's legal topic characters; `.` and `..` are refused separately by CEL.
pub const TOPIC_NAME: &str = r"^[a-zA-Z0-9._-]+$";
/// `host:port`, with a bracketed IPv6 literal allowed as the host.
pub const HOST_PORT: &str =
    r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$";
/// A Go-style duration as Kubernetes uses them: `500ms`, `1s`, `5m`, `1h30m`.
pub const DURATION: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Keys allowed in a Secret's data.
pub const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// Client properties that carry secrets: they must come from a Secret through `tls` / `sasl`,
/// never sit in the spec in clear text (the spec is readable by anyone who can read the object).
pub const SECRET_PROPERTIES: &[&str] = &[
    "sasl.jaas.config",
    "sasl.password",
    "sasl.username",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.password",
    "ssl.key.pem",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "bootstrap.servers",
];

/// How to reach one Kafka cluster. Secrets are referenced, never inlined: the operator mounts
/// them into the pods that need them and never copies them into status, events or logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConnection {
    /// Bootstrap servers of the cluster, each in `host:port` form.
    #[schemars(length(min = 1, max = 32), inner(regex(pattern = HOST_PORT), length(max = 261)))]
    pub bootstrap_servers: Vec<String>,

    /// TLS for the connection. Without it the connection is plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,

    /// SASL authentication. Without it the connection is unauthenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,

    /// Extra librdkafka client properties (for example `socket.keepalive.enable`). Properties
    /// that carry secrets and `bootstrap.servers` are refused here: use `tls`, `sasl` and
    /// `bootstrapServers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(k, !(k in ['sasl.jaas.config', 'sasl.password', 'sasl.username', 'ssl.key.password', 'ssl.keystore.password', 'ssl.truststore.password', 'ssl.key.pem', 'ssl.keystore.key', 'ssl.keystore.certificate.chain', 'bootstrap.servers']))"
    ).message("must not set secrets or bootstrap.servers: reference Secrets through tls/sasl and use bootstrapServers"))]
    pub properties: BTreeMap<String, String>,
}

/// TLS material, each piece read from a key of a Secret in the object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.clientCert) == has(self.clientKey)")
    .message("clientCert and clientKey must be set together"))]
pub struct KafkaTls {
    /// The CA bundle (PEM) that signs the brokers' certificates. Without it the system's
    /// trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretKeyRef>,
    /// The client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<SecretKeyRef>,
    /// The client private key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretKeyRef>,
}

/// SASL authentication.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// The SASL user name.
    #[schemars(length(min = 1, max = 256))]
    pub username: String,
    /// The Secret key that holds the password.
    pub password: SecretKeyRef,
}

/// A SASL mechanism Tributary speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SaslMechanism {
    /// `PLAIN` (only sensible over TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// One key of a Secret in the same namespace as the object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

/// The standard condition types every kind reports.
pub mod condition_type {
    /// The object is doing what its spec says.
    pub const READY: &str = "Ready";
    /// The object works partly (e.g. some routes stalled) or is waiting for a fix.
    pub const DEGRADED: &str = "Degraded";
    /// A ConsumerGroupFailover's active region is moving.
    pub const FAILING_OVER: &str = "FailingOver";
    /// A ConsumerGroupFailover needs a move that is refused (stale standby, no healthy region).
    pub const FAILOVER_BLOCKED: &str = "FailoverBlocked";
}

/// Looks up a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
