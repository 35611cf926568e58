//! The stack's `secure` Kafka cluster (mutual TLS + SASL/SCRAM-SHA-512, certificates made by
//! `e2e/stack/kafka.sh` with openssl) as the tests use it: a SCRAM user of the test's own, the
//! two Secrets a connection references and the `spec.kafka` that references them.

use std::path::PathBuf;

use crate::stack_var;

/// Names of the Secrets [`SecureCluster::secrets_yaml`] writes.
pub const TLS_SECRET: &str = "secure-tls";
pub const SCRAM_SECRET: &str = "secure-scram";

/// The secure cluster's addresses and client certificate.
#[derive(Clone, Debug)]
pub struct SecureCluster {
    /// The mutual-TLS + SASL listener.
    pub bootstrap: String,
    /// Its PLAINTEXT listener, for the tests' own administration (users, topics).
    pub plaintext: String,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl SecureCluster {
    /// From the stack's env; panics when the stack is not up.
    pub fn from_stack() -> SecureCluster {
        let pki = PathBuf::from(stack_var("TRIBUTARY_KAFKA_SECURE_PKI"));
        let read = |f: &str| {
            std::fs::read_to_string(pki.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", pki.join(f).display()))
        };
        SecureCluster {
            bootstrap: stack_var("TRIBUTARY_KAFKA_SECURE"),
            plaintext: stack_var("TRIBUTARY_KAFKA_SECURE_PLAINTEXT"),
            ca: read("ca.crt"),
            cert: read("client.crt"),
            key: read("client.key"),
        }
    }

    /// Sets the SCRAM-SHA-512 password of `user` (through the PLAINTEXT listener, with Kafka's
    /// own tool).
    pub fn set_scram_password(&self, user: &str, password: &str) {
        let lib = stack_var("TRIBUTARY_KAFKA_LIB");
        let out = std::process::Command::new("java")
            .arg("-cp")
            .arg(format!("{lib}/*"))
            .arg("kafka.admin.ConfigCommand")
            .args([
                "--bootstrap-server",
                &self.plaintext,
                "--alter",
                "--add-config",
                &format!("SCRAM-SHA-512=[iterations=4096,password={password}]"),
                "--entity-type",
                "users",
                "--entity-name",
                user,
            ])
            .output()
            .expect("java runs");
        assert!(
            out.status.success(),
            "setting the SCRAM credential of {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The Secrets [`TLS_SECRET`] (CA, client certificate and key) and [`SCRAM_SECRET`]
    /// (`password`).
    pub fn secrets_yaml(&self, password: &str) -> String {
        let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
        format!(
            r#"apiVersion: v1
kind: Secret
metadata: {{name: {TLS_SECRET}}}
stringData:
  ca.crt: |
    {ca}
  tls.crt: |
    {cert}
  tls.key: |
    {key}
---
apiVersion: v1
kind: Secret
metadata: {{name: {SCRAM_SECRET}}}
stringData: {{password: "{password}"}}
"#,
            ca = indent(&self.ca),
            cert = indent(&self.cert),
            key = indent(&self.key),
        )
    }

    /// A `spec.kafka` (its first line unindented, the others at 4 spaces: it goes under
    /// `  kafka:\n    `) that reaches the cluster as `user` with the Secrets' material.
    pub fn connection_yaml(&self, user: &str) -> String {
        format!(
            r#"bootstrapServers: ["{}"]
    tls:
      ca: {{name: {TLS_SECRET}, key: ca.crt}}
      clientCert: {{name: {TLS_SECRET}, key: tls.crt}}
      clientKey: {{name: {TLS_SECRET}, key: tls.key}}
    sasl: {{mechanism: SCRAM-SHA-512, username: {user}, password: {{name: {SCRAM_SECRET}, key: password}}}}"#,
            self.bootstrap
        )
    }
}
