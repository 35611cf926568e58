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

/// Client properties owned by a typed field of [`KafkaConnection`]: refused in `properties` so
/// that there is one place to read them.
pub const FIELD_OWNED_PROPERTIES: &[(&str, &str)] = &[("bootstrap.servers", "bootstrapServers")];

/// Why `properties` must not hold `key`, or `None` when it may. Secrets (the rule of
/// [`tributary_core::secret_property`]) must come from a Secret through `tls` / `sasl`: the
/// spec is readable by anyone who can read the object, and its properties become replicator
/// arguments.
pub fn refused_property(key: &str) -> Option<String> {
    if tributary_core::secret_property::is_secret_property(key) {
        return Some(
            "it carries a secret: reference a Secret through tls or sasl instead".to_string(),
        );
    }
    let normalized = key.trim().to_ascii_lowercase();
    FIELD_OWNED_PROPERTIES
        .iter()
        .find(|(property, _)| *property == normalized)
        .map(|(_, field)| format!("it is set by {field}"))
}

/// The CEL form of the secret half of [`refused_property`]; the message names the (first)
/// offending key. `filter(..)[0]`, not `join`: the API server's cost estimate refuses `join`
/// over a map of unbounded keys.
fn secret_properties_rule() -> kube::core::Rule {
    let secret = tributary_core::secret_property::secret_property_cel("k");
    kube::core::Rule::new(format!("self.all(k, !{secret})")).message(
        kube::core::Message::Expression(format!(
            "'must not set secret property ' + self.filter(k, {secret})[0] + ': reference a Secret through tls or sasl instead'"
        )),
    )
}

/// Every bootstrap server's port is 1–65535 ([`HOST_PORT`] checks only its form); the
/// message names the first one that is not.
fn bootstrap_ports_rule() -> kube::core::Rule {
    let bad = "(s.matches(':[0-9]{1,5}$') && (int(s.substring(s.lastIndexOf(':') + 1)) < 1 || int(s.substring(s.lastIndexOf(':') + 1)) > 65535))";
    kube::core::Rule::new(format!("!self.exists(s, {bad})")).message(
        kube::core::Message::Expression(format!(
            "'port must be from 1 to 65535: ' + self.filter(s, {bad})[0]"
        )),
    )
}

/// The schema of an optional `ResourceRequirements` field (`#[schemars(schema_with = ..)]`):
/// `requests` and `limits` only (no `claims`: nothing here uses dynamic resource
/// allocation), at most 8 entries each (the API server's CEL cost estimate needs a bound),
/// every entry a Kubernetes quantity and no cpu, memory or ephemeral-storage request above
/// its limit. Without the checks
/// `cpu: abc` is accepted and fails only when the workload's pods are refused, far from its
/// cause.
pub fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let map = |what: &str| {
        serde_json::json!({
            "type": "object",
            "description": format!("{what} (Kubernetes quantities, for example 250m or 512Mi)."),
            "maxProperties": 8,
            "additionalProperties": {"x-kubernetes-int-or-string": true},
        })
    };
    let quantities = |map: &str| {
        let bad = format!("!isQuantity(string(self.{map}[k]))");
        kube::core::Rule::new(format!("!has(self.{map}) || !self.{map}.exists(k, {bad})")).message(
            kube::core::Message::Expression(format!(
                "'{map}.' + self.{map}.filter(k, {bad})[0] + ' must be a Kubernetes quantity (for example 250m, 2, 512Mi, 1Gi)'"
            )),
        )
    };
    // Over the named resources, not every key: the cost estimate of four quantity parses per
    // entry of a map of 8 is above the API server's budget.
    const COMPARED: &str = "['cpu', 'memory', 'ephemeral-storage']";
    let over = "k in self.requests && k in self.limits && isQuantity(string(self.requests[k])) && isQuantity(string(self.limits[k])) && quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) > 0";
    let within = kube::core::Rule::new(format!(
        "!has(self.requests) || !has(self.limits) || !{COMPARED}.exists(k, {over})"
    ))
    .message(kube::core::Message::Expression(format!(
        "'requests.' + {COMPARED}.filter(k, {over})[0] + ' must not exceed its limit'"
    )));
    let rules = [quantities("requests"), quantities("limits"), within];
    let value = serde_json::json!({
        "type": "object",
        "nullable": true,
        "properties": {
            "requests": map("Requested resources: what the scheduler reserves"),
            "limits": map("Resource limits: memory above it is OOM-killed"),
        },
        "x-kubernetes-validations": serde_json::to_value(rules).expect("rules serialize"),
    });
    schemars::Schema::try_from(value).expect("an object schema")
}

/// The CEL form of the field-owned half of [`refused_property`].
fn field_owned_properties_rule() -> kube::core::Rule {
    let names: Vec<String> = FIELD_OWNED_PROPERTIES
        .iter()
        .map(|(property, _)| format!("'{property}'"))
        .collect();
    let uses: Vec<String> = FIELD_OWNED_PROPERTIES
        .iter()
        .map(|(property, field)| format!("{property} (use {field})"))
        .collect();
    kube::core::Rule::new(format!(
        "self.all(k, !(k.lowerAscii().trim() in [{}]))",
        names.join(", ")
    ))
    .message(format!("must not set {}", uses.join(", ")).as_str())
}

/// How to reach one Kafka cluster. Secrets are referenced, never inlined: the operator mounts
/// them into the pods that need them and never copies them into status, events or logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConnection {
    /// Bootstrap servers of the cluster, each in `host:port` form.
    #[schemars(length(min = 1, max = 32), inner(regex(pattern = HOST_PORT), length(max = 261)))]
    #[x_kube(validation = bootstrap_ports_rule())]
    pub bootstrap_servers: Vec<String>,

    /// TLS for the connection. Without it the connection is plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,

    /// SASL authentication. Without it the connection is unauthenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,

    /// Extra librdkafka client properties (for example `socket.keepalive.enable`). Properties
    /// that carry secrets (any name containing password, secret, token, credential, jaas,
    /// passphrase or private key material, and librdkafka's other sensitive ones) and
    /// `bootstrap.servers` are refused here: use `tls`, `sasl` and `bootstrapServers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = secret_properties_rule(), validation = field_owned_properties_rule())]
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
