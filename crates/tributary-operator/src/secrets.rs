//! Dereference of a Kafka connection: reads the referenced Secrets (in the object's namespace)
//! into a [`ResolvedConnection`] held in memory. Values never reach status, events or logs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tributary_api::{KafkaConnection, SaslMechanism, SecretKeyRef};

use crate::error::{Error, Result};
use crate::kafka::ResolvedConnection;

/// The `resourceVersion` of every Secret a connection references, by name: it changes when
/// a Secret is rotated, so the pods that mounted the old content are replaced (see
/// [`SecretVersions::annotation`]). Versions, never content: a digest of a password in
/// an annotation anyone may read could be guessed offline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretVersions(BTreeMap<String, String>);

/// How soon an object whose connection references Secrets is reconciled again, changed or
/// not: Secrets are not watched (the operator may only `get` them), so this bounds how long a
/// rotated or fixed Secret takes to reach the pods and conditions that use it.
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);

/// Whether `conn` reads any Secret (TLS material or a SASL password).
pub fn references_secrets(conn: &KafkaConnection) -> bool {
    conn.sasl.is_some()
        || conn
            .tls
            .as_ref()
            .is_some_and(|t| t.ca.is_some() || t.client_cert.is_some() || t.client_key.is_some())
}

/// `resync`, or [`SECRET_RECHECK`] when one of `conns` references Secrets.
pub fn resync_for<'a>(
    resync: Duration,
    mut conns: impl Iterator<Item = &'a KafkaConnection>,
) -> Duration {
    if conns.any(references_secrets) {
        resync.min(SECRET_RECHECK)
    } else {
        resync
    }
}

/// Pod-template annotation naming the Secret versions a pod was started with.
pub const SECRET_VERSIONS_ANNOTATION: &str = "tributary.dev/secret-versions";

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

async fn read_key(
    secrets: &Api<Secret>,
    r: &SecretKeyRef,
    field: &str,
    versions: &mut SecretVersions,
) -> Result<String> {
    let secret = secrets
        .get(&r.name)
        .await
        .map_err(|source| Error::Dereference {
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
            Error::InvalidSpec(format!(
                "{field}: Secret {} has no key {:?}; add it or fix the reference",
                r.name, r.key
            ))
        })?;
    String::from_utf8(bytes).map_err(|_| {
        Error::InvalidSpec(format!(
            "{field}: key {:?} of Secret {} is not UTF-8 text",
            r.key, r.name
        ))
    })
}

/// Reads what `conn` references. `field` names the connection in errors (`spec.kafka`).
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    name: String,
    conn: &KafkaConnection,
    field: &str,
) -> Result<ResolvedConnection> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut resolved = ResolvedConnection {
        name,
        bootstrap_servers: conn.bootstrap_servers.clone(),
        properties: conn.properties.clone(),
        ..Default::default()
    };
    if let Some(tls) = &conn.tls {
        resolved.tls = true;
        if let Some(r) = &tls.ca {
            resolved.tls_ca_pem = Some(
                read_key(
                    &secrets,
                    r,
                    &format!("{field}.tls.ca"),
                    &mut resolved.secret_versions,
                )
                .await?,
            );
        }
        if let Some(r) = &tls.client_cert {
            resolved.tls_cert_pem = Some(
                read_key(
                    &secrets,
                    r,
                    &format!("{field}.tls.clientCert"),
                    &mut resolved.secret_versions,
                )
                .await?,
            );
        }
        if let Some(r) = &tls.client_key {
            resolved.tls_key_pem = Some(
                read_key(
                    &secrets,
                    r,
                    &format!("{field}.tls.clientKey"),
                    &mut resolved.secret_versions,
                )
                .await?,
            );
        }
    }
    if let Some(sasl) = &conn.sasl {
        let password = read_key(
            &secrets,
            &sasl.password,
            &format!("{field}.sasl.password"),
            &mut resolved.secret_versions,
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
    use tributary_api::KafkaSasl;

    #[test]
    fn objects_reading_secrets_are_looked_at_again_within_the_secret_recheck() {
        let plain = KafkaConnection {
            bootstrap_servers: vec!["east:9092".into()],
            ..Default::default()
        };
        let sasl = KafkaConnection {
            sasl: Some(KafkaSasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "replicator".into(),
                password: SecretKeyRef {
                    name: "east-scram".into(),
                    key: "password".into(),
                },
            }),
            ..plain.clone()
        };
        let resync = Duration::from_secs(300);
        assert_eq!(resync_for(resync, [&plain].into_iter()), resync);
        assert_eq!(
            resync_for(resync, [&plain, &sasl].into_iter()),
            SECRET_RECHECK
        );
    }
}
