//! Command-line flags (with environment variables) for one cluster connection. The same
//! flags exist twice, `--source-*` (`TRIBUTARY_SOURCE_*`) and `--dest-*`
//! (`TRIBUTARY_DEST_*`); flatten the ones a subcommand needs.

use std::path::PathBuf;

use tributary_core::secret_property::is_secret_property;

use crate::error::KafkaError;
use crate::settings::{ClientSettings, SaslSettings, TlsSettings};

macro_rules! connection_args {
    ($(#[$doc:meta])* $name:ident, $flag:literal, $env:literal, $help_side:literal) => {
        $(#[$doc])*
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct $name {
            #[arg(id = concat!($flag, "_bootstrap"), long = concat!($flag, "-bootstrap"), env = concat!($env, "BOOTSTRAP"), value_name = "HOST:PORT,...", help = concat!("Bootstrap servers of the ", $help_side, " cluster (host:port,...)."))]
            pub bootstrap: String,
            #[arg(id = concat!($flag, "_tls_ca_file"), long = concat!($flag, "-tls-ca-file"), env = concat!($env, "TLS_CA_FILE"), value_name = "FILE", help = concat!("Enable TLS to the ", $help_side, " cluster, trusting this CA bundle (PEM)."))]
            pub tls_ca_file: Option<PathBuf>,
            #[arg(id = concat!($flag, "_tls_cert_file"), long = concat!($flag, "-tls-cert-file"), env = concat!($env, "TLS_CERT_FILE"), value_name = "FILE", requires = concat!($flag, "_tls_key_file"), help = concat!("Client certificate (PEM) for mutual TLS to the ", $help_side, " cluster."))]
            pub tls_cert_file: Option<PathBuf>,
            #[arg(id = concat!($flag, "_tls_key_file"), long = concat!($flag, "-tls-key-file"), env = concat!($env, "TLS_KEY_FILE"), value_name = "FILE", requires = concat!($flag, "_tls_cert_file"), help = concat!("Client key (PEM) for mutual TLS to the ", $help_side, " cluster."))]
            pub tls_key_file: Option<PathBuf>,
            #[arg(id = concat!($flag, "_tls"), long = concat!($flag, "-tls"), env = concat!($env, "TLS"), help = concat!("Use TLS to the ", $help_side, " cluster with the system trust store (implied by the TLS file flags)."))]
            pub tls: bool,
            #[arg(id = concat!($flag, "_sasl_mechanism"), long = concat!($flag, "-sasl-mechanism"), env = concat!($env, "SASL_MECHANISM"), value_name = "MECHANISM", requires_all = [concat!($flag, "_sasl_username"), concat!($flag, "_sasl_password_file")], help = concat!("SASL mechanism for the ", $help_side, " cluster: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."))]
            pub sasl_mechanism: Option<String>,
            #[arg(id = concat!($flag, "_sasl_username"), long = concat!($flag, "-sasl-username"), env = concat!($env, "SASL_USERNAME"), value_name = "USER", help = concat!("SASL user name for the ", $help_side, " cluster."))]
            pub sasl_username: Option<String>,
            #[arg(id = concat!($flag, "_sasl_password_file"), long = concat!($flag, "-sasl-password-file"), env = concat!($env, "SASL_PASSWORD_FILE"), value_name = "FILE", help = concat!("File holding the SASL password for the ", $help_side, " cluster (read at runtime, never logged)."))]
            pub sasl_password_file: Option<PathBuf>,
            #[arg(id = concat!($flag, "_property"), long = concat!($flag, "-property"), env = concat!($env, "PROPERTIES"), value_name = "KEY=VALUE", help = concat!("Extra librdkafka property for the ", $help_side, " cluster clients, KEY=VALUE (repeatable)."))]
            pub property: Vec<String>,
        }

        impl $name {
            /// The settings these flags describe; `name` is how errors will call the cluster.
            pub fn to_settings(&self, name: impl Into<String>) -> Result<ClientSettings, KafkaError> {
                to_settings(
                    name.into(),
                    &self.bootstrap,
                    self.tls,
                    &self.tls_ca_file,
                    &self.tls_cert_file,
                    &self.tls_key_file,
                    &self.sasl_mechanism,
                    &self.sasl_username,
                    &self.sasl_password_file,
                    &self.property,
                )
            }
        }
    };
}

connection_args!(
    /// The source (regional) cluster: `--source-*` flags, `TRIBUTARY_SOURCE_*` variables.
    SourceConnectionArgs, "source", "TRIBUTARY_SOURCE_", "source"
);
connection_args!(
    /// The destination (aggregate) cluster: `--dest-*` flags, `TRIBUTARY_DEST_*` variables.
    DestConnectionArgs, "dest", "TRIBUTARY_DEST_", "destination"
);
connection_args!(
    /// The active region's aggregate cluster of a checkpoint sync: `--from-*` flags,
    /// `TRIBUTARY_FROM_*` variables.
    FromConnectionArgs, "from", "TRIBUTARY_FROM_", "active (from) region's aggregate"
);
connection_args!(
    /// The standby region's aggregate cluster of a checkpoint sync: `--to-*` flags,
    /// `TRIBUTARY_TO_*` variables.
    ToConnectionArgs, "to", "TRIBUTARY_TO_", "standby (to) region's aggregate"
);

#[allow(clippy::too_many_arguments)]
fn to_settings(
    name: String,
    bootstrap: &str,
    tls: bool,
    ca: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    mechanism: &Option<String>,
    username: &Option<String>,
    password_file: &Option<PathBuf>,
    properties: &[String],
) -> Result<ClientSettings, KafkaError> {
    let config_error = |detail: String| KafkaError::Config {
        cluster: name.clone(),
        detail,
    };
    let tls = (tls || ca.is_some() || cert.is_some() || key.is_some()).then(|| TlsSettings {
        ca_file: ca.clone(),
        cert_file: cert.clone(),
        key_file: key.clone(),
    });
    let sasl = match (mechanism, username, password_file) {
        (None, None, None) => None,
        (Some(mechanism), Some(username), Some(password_file)) => Some(SaslSettings {
            mechanism: mechanism.clone(),
            username: username.clone(),
            password_file: password_file.clone(),
        }),
        _ => {
            return Err(config_error(
                "SASL needs a mechanism, a username and a password file together".into(),
            ));
        }
    };
    let properties = properties
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    // Only the key part: the value might be a secret.
                    let key = p.split(['=', ':']).next().unwrap_or_default();
                    config_error(format!("property {key:?} is not KEY=VALUE"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A flag's value shows in the pod spec and the process list: secrets come as files.
    if let Some((key, _)) = properties.iter().find(|(k, _)| is_secret_property(k)) {
        return Err(config_error(format!(
            "property {key:?} carries a secret and must not be given as a flag; use the TLS key and SASL password file flags"
        )));
    }
    Ok(ClientSettings {
        name: name.clone(),
        bootstrap_servers: bootstrap.to_owned(),
        tls,
        sasl,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Both {
        #[command(flatten)]
        source: SourceConnectionArgs,
        #[command(flatten)]
        dest: DestConnectionArgs,
    }

    #[test]
    fn prefixed_flags_fill_both_sides() -> Result<(), Box<dyn std::error::Error>> {
        let both = Both::try_parse_from([
            "x",
            "--source-bootstrap",
            "a:1",
            "--source-tls-ca-file",
            "/ca.pem",
            "--dest-bootstrap",
            "b:2",
            "--dest-property",
            "linger.ms=5",
            "--dest-property",
            "acks=all",
        ])?;
        let source = both.source.to_settings("east regional cluster")?;
        assert_eq!(source.bootstrap_servers, "a:1");
        assert_eq!(source.security_protocol(), "ssl");
        let dest = both.dest.to_settings("west aggregate cluster")?;
        assert_eq!(dest.security_protocol(), "plaintext");
        assert_eq!(dest.properties.len(), 2);
        Ok(())
    }

    #[test]
    fn a_secret_given_as_a_property_flag_is_refused_without_echoing_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let both = Both::try_parse_from([
            "x",
            "--source-bootstrap",
            "a:1",
            "--source-property",
            "sasl.oauthbearer.client.secret=s3cr3t",
            "--dest-bootstrap",
            "b:2",
        ])?;
        let err = both
            .source
            .to_settings("east regional cluster")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("sasl.oauthbearer.client.secret") && !err.contains("s3cr3t"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn sasl_needs_all_three_parts() {
        let parsed = Both::try_parse_from([
            "x",
            "--source-bootstrap",
            "a:1",
            "--source-sasl-mechanism",
            "PLAIN",
            "--dest-bootstrap",
            "b:2",
        ]);
        assert!(parsed.is_err());
    }
}
