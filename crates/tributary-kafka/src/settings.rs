//! Connection settings of one Kafka cluster and their translation into an rdkafka
//! [`ClientConfig`].

use std::fmt;
use std::path::PathBuf;

use rdkafka::ClientConfig;

use tributary_core::secret_property::is_secret_property;

use crate::error::KafkaError;
use crate::redact::{REDACTED, remember_secret};

/// How to reach one Kafka cluster. Secrets are *paths*: the SASL password is read from its
/// file each time a client config is built (so rotated Secrets are picked up on reconnect),
/// and TLS files are handed to librdkafka by path.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// A human name for errors and logs, e.g. `east regional cluster`.
    pub name: String,
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    pub tls: Option<TlsSettings>,
    pub sasl: Option<SaslSettings>,
    /// Extra librdkafka properties, applied last (they override what the fields set).
    pub properties: Vec<(String, String)>,
}

/// TLS to the brokers. Without a CA file the system trust store is used; cert and key
/// together enable mutual TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// SASL authentication (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanism: String,
    pub username: String,
    /// File holding the password (trailing newline ignored).
    pub password_file: PathBuf,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("ClientSettings")
            .field("name", &self.name)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("tls", &self.tls)
            .field("sasl", &self.sasl)
            .field("properties", &properties)
            .finish()
    }
}

impl ClientSettings {
    /// Whether connections log in (TLS or SASL, by field or by `security.protocol` among
    /// the properties): a refused login then explains a cluster that seems unreachable.
    pub fn logs_in(&self) -> bool {
        self.tls.is_some()
            || self.sasl.is_some()
            || self.properties.iter().any(|(k, v)| {
                k == "security.protocol" && !v.trim().eq_ignore_ascii_case("plaintext")
            })
    }

    /// Plaintext settings for `bootstrap_servers` (tests, local stacks).
    pub fn plaintext(name: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bootstrap_servers: bootstrap_servers.into(),
            ..Self::default()
        }
    }

    /// The librdkafka security protocol these settings imply.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// A client config with connection, TLS and SASL set; callers add role-specific
    /// properties. Reads the SASL password file now. Never log the result's values.
    pub fn client_config(&self) -> Result<ClientConfig, KafkaError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(KafkaError::Config {
                cluster: self.name.clone(),
                detail: "no bootstrap servers given".into(),
            });
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("security.protocol", self.security_protocol())
            // A cluster that is down must not make every call hang for minutes.
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("reconnect.backoff.max.ms", "5000")
            // TCP_NODELAY, as Kafka's Java clients always set it. librdkafka leaves Nagle's
            // algorithm on by default: a request's last small segment behind unacknowledged
            // pipelined ones waits for the peer's delayed ACK (~40 ms on Linux).
            .set("socket.nagle.disable", "true");
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.to_string_lossy().into_owned();
            if let Some(ca) = &tls.ca_file {
                config.set("ssl.ca.location", path(ca));
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    config
                        .set("ssl.certificate.location", path(cert))
                        .set("ssl.key.location", path(key));
                }
                (None, None) => {}
                _ => {
                    return Err(KafkaError::Config {
                        cluster: self.name.clone(),
                        detail: "TLS client certificate and key must be given together".into(),
                    });
                }
            }
        }
        if let Some(sasl) = &self.sasl {
            let password =
                std::fs::read_to_string(&sasl.password_file).map_err(|e| KafkaError::Config {
                    cluster: self.name.clone(),
                    detail: format!(
                        "cannot read the SASL password file {}: {e}",
                        sasl.password_file.display()
                    ),
                })?;
            let password = password.trim_end_matches(['\r', '\n']);
            // Before the client exists: its first error may already quote the password.
            remember_secret(password);
            config
                .set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", password);
        }
        for (key, value) in &self.properties {
            if is_secret_property(key) {
                remember_secret(value);
            }
            config.set(key, value);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_seen_in_fields_and_in_the_security_protocol_property() {
        let plain = ClientSettings::plaintext("east", "east:9092");
        assert!(!plain.logs_in());
        let mut by_property = plain.clone();
        by_property
            .properties
            .push(("security.protocol".into(), "SASL_SSL".into()));
        assert!(by_property.logs_in());
        let mut explicit_plaintext = plain;
        explicit_plaintext
            .properties
            .push(("security.protocol".into(), "plaintext".into()));
        assert!(!explicit_plaintext.logs_in());
    }

    #[test]
    fn debug_never_shows_secrets() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("tributary-kafka-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let password_file = dir.join("password");
        std::fs::write(&password_file, "hunter2\n")?;
        let settings = ClientSettings {
            name: "east regional cluster".into(),
            bootstrap_servers: "k:9092".into(),
            tls: Some(TlsSettings::default()),
            sasl: Some(SaslSettings {
                mechanism: "SCRAM-SHA-512".into(),
                username: "replicator".into(),
                password_file,
            }),
            properties: vec![
                ("ssl.key.password".into(), "topsecret".into()),
                (
                    "sasl.oauthbearer.client.secret".into(),
                    "oauth-s3cr3t".into(),
                ),
            ],
        };
        let config = settings.client_config()?;
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        let shown = format!("{settings:?} {config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(!shown.contains("oauth-s3cr3t"), "{shown}");
        // Building the config remembered both: an error text quoting them is redacted.
        let echoed = crate::redact::redact("auth failed for hunter2 / topsecret");
        assert!(
            !echoed.contains("hunter2") && !echoed.contains("topsecret"),
            "{echoed}"
        );
        Ok(())
    }

    #[test]
    fn unreadable_password_file_names_the_cluster_and_file() {
        let settings = ClientSettings {
            sasl: Some(SaslSettings {
                mechanism: "PLAIN".into(),
                username: "u".into(),
                password_file: "/nonexistent/pw".into(),
            }),
            ..ClientSettings::plaintext("west aggregate cluster", "k:9092")
        };
        let err = settings
            .client_config()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("west aggregate cluster") && err.contains("/nonexistent/pw"),
            "{err}"
        );
    }
}
