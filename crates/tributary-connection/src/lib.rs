//! A Kafka connection of a custom resource (`spec.kafka` of a RegionalStream or an
//! AggregateCluster) with the Secrets it references read into memory: by the operator for its
//! admin clients, and by `kubectl tributary translate` for its dry run, each with its own
//! credentials. Values live in memory only (PEM and password properties, never files) and
//! never reach `Debug`, errors, status, events or logs.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tributary_api::{KafkaConnection, SaslMechanism, SecretKeyRef};
use tributary_kafka::ClientSettings;

/// Why a connection's Secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The API server did not give the Secret (missing, forbidden, unreachable).
    #[error("reading {what}: {source}")]
    Read {
        /// The Secret and the field that references it: `Secret east-scram (spec.kafka.sasl.password)`.
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The Secret exists but the reference into it is wrong (no such key, not text): retrying
    /// will not help until the Secret or the reference changes.
    #[error("{0}")]
    Invalid(String),
}

/// The `resourceVersion` of every Secret a connection references, by name: it changes when a
/// Secret is rotated. Versions, never content: a digest of a password in an annotation anyone
/// may read could be guessed offline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretVersions(BTreeMap<String, String>);

impl SecretVersions {
    /// Both sets (a route reads its source's Secrets and its aggregate's).
    pub fn merged(&self, other: &SecretVersions) -> SecretVersions {
        let mut all = self.0.clone();
        all.extend(other.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        SecretVersions(all)
    }

    /// `name=resourceVersion,...` in name order; `None` when no Secret is referenced.
    pub fn annotation(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(name, version)| format!("{name}={version}"))
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

impl FromIterator<(String, String)> for SecretVersions {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        SecretVersions(pairs.into_iter().collect())
    }
}

/// A Kafka connection with its Secret material resolved. `Debug` never shows secret values.
#[derive(Clone, Default, PartialEq)]
pub struct ResolvedConnection {
    /// A readable name for errors: `regional cluster of east (RegionalStream ns/east)`.
    pub name: String,
    pub bootstrap_servers: Vec<String>,
    pub properties: BTreeMap<String, String>,
    pub tls_ca_pem: Option<String>,
    pub tls_cert_pem: Option<String>,
    pub tls_key_pem: Option<String>,
    pub tls: bool,
    /// `(mechanism, username, password)`.
    pub sasl: Option<(String, String, String)>,
    /// Which versions of the referenced Secrets these values came from.
    pub secret_versions: SecretVersions,
}

impl fmt::Debug for ResolvedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedConnection")
            .field("name", &self.name)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("tls", &self.tls)
            .field("sasl_mechanism", &self.sasl.as_ref().map(|s| &s.0))
            .finish_non_exhaustive()
    }
}

impl ResolvedConnection {
    /// Identity of the cluster for caches: same servers, same cluster.
    pub fn key(&self) -> String {
        self.bootstrap_servers.join(",")
    }

    /// The client settings of this connection: the Secret material as librdkafka's PEM and
    /// SASL properties (in memory, no files), then the spec's own properties, which win.
    pub fn client_settings(&self) -> ClientSettings {
        let mut properties: Vec<(String, String)> = Vec::new();
        let protocol = match (self.tls, self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        properties.push(("security.protocol".into(), protocol.into()));
        if let Some(ca) = &self.tls_ca_pem {
            properties.push(("ssl.ca.pem".into(), ca.clone()));
        }
        if let Some(cert) = &self.tls_cert_pem {
            properties.push(("ssl.certificate.pem".into(), cert.clone()));
        }
        if let Some(key) = &self.tls_key_pem {
            properties.push(("ssl.key.pem".into(), key.clone()));
        }
        if let Some((mechanism, username, password)) = &self.sasl {
            properties.push(("sasl.mechanism".into(), mechanism.clone()));
            properties.push(("sasl.username".into(), username.clone()));
            properties.push(("sasl.password".into(), password.clone()));
        }
        properties.extend(self.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        ClientSettings {
            name: self.name.clone(),
            bootstrap_servers: self.bootstrap_servers.join(","),
            tls: None,
            sasl: None,
            properties,
        }
    }
}

/// Whether `conn` reads any Secret (TLS material or a SASL password).
pub fn references_secrets(conn: &KafkaConnection) -> bool {
    conn.sasl.is_some()
        || conn
            .tls
            .as_ref()
            .is_some_and(|t| t.ca.is_some() || t.client_cert.is_some() || t.client_key.is_some())
}

async fn read_key(
    secrets: &Api<Secret>,
    r: &SecretKeyRef,
    field: &str,
    versions: &mut SecretVersions,
) -> Result<String, ResolveError> {
    let secret = secrets
        .get(&r.name)
        .await
        .map_err(|source| ResolveError::Read {
            what: format!("Secret {} ({field})", r.name),
            source,
        })?;
    if let Some(version) = &secret.metadata.resource_version {
        versions.0.insert(r.name.clone(), version.clone());
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| {
            ResolveError::Invalid(format!(
                "{field}: Secret {} has no key {:?}; add it or fix the reference",
                r.name, r.key
            ))
        })?;
    String::from_utf8(bytes).map_err(|_| {
        ResolveError::Invalid(format!(
            "{field}: key {:?} of Secret {} is not UTF-8 text",
            r.key, r.name
        ))
    })
}

/// Reads what `conn` references from the Secrets of `namespace`. `name` names the cluster in
/// errors; `field` names the connection (`spec.kafka`).
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    name: String,
    conn: &KafkaConnection,
    field: &str,
) -> Result<ResolvedConnection, ResolveError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut resolved = ResolvedConnection {
        name,
        bootstrap_servers: conn.bootstrap_servers.clone(),
        properties: conn.properties.clone(),
        ..Default::default()
    };
    let versions = &mut resolved.secret_versions;
    if let Some(tls) = &conn.tls {
        resolved.tls = true;
        for (reference, key, into) in [
            (&tls.ca, "ca", &mut resolved.tls_ca_pem),
            (&tls.client_cert, "clientCert", &mut resolved.tls_cert_pem),
            (&tls.client_key, "clientKey", &mut resolved.tls_key_pem),
        ] {
            if let Some(r) = reference {
                *into = Some(read_key(&secrets, r, &format!("{field}.tls.{key}"), versions).await?);
            }
        }
    }
    if let Some(sasl) = &conn.sasl {
        let password = read_key(
            &secrets,
            &sasl.password,
            &format!("{field}.sasl.password"),
            versions,
        )
        .await?;
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        resolved.sasl = Some((
            mechanism.into(),
            sasl.username.clone(),
            password.trim_end_matches(['\r', '\n']).to_string(),
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_connection_never_shows_secrets() {
        let c = ResolvedConnection {
            name: "east".into(),
            tls_key_pem: Some("PRIVATE".into()),
            sasl: Some(("PLAIN".into(), "user".into(), "hunter2".into())),
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("PRIVATE") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn secret_material_becomes_in_memory_properties_and_the_spec_properties_win() {
        let c = ResolvedConnection {
            name: "east aggregate".into(),
            bootstrap_servers: vec!["a:9093".into(), "b:9093".into()],
            properties: [("security.protocol".to_string(), "SSL".to_string())].into(),
            tls: true,
            tls_ca_pem: Some("CA".into()),
            sasl: Some(("SCRAM-SHA-512".into(), "u".into(), "p".into())),
            ..Default::default()
        };
        let s = c.client_settings();
        assert_eq!(s.bootstrap_servers, "a:9093,b:9093");
        assert!(s.tls.is_none() && s.sasl.is_none(), "no files");
        let props: Vec<(&str, &str)> = s
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(props.first(), Some(&("security.protocol", "sasl_ssl")));
        assert!(props.contains(&("ssl.ca.pem", "CA")));
        assert!(props.contains(&("sasl.password", "p")));
        assert_eq!(props.last(), Some(&("security.protocol", "SSL")));
    }
}
