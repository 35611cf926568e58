//! The operator's side of Secrets: reading a connection's (through `tributary-connection`,
//! values in memory only, never in status, events or logs), how soon an object that reads
//! Secrets is looked at again, and the pod annotation that names their versions.

use std::time::Duration;

use tributary_api::KafkaConnection;
use tributary_connection::ResolveError;
pub use tributary_connection::{SecretVersions, references_secrets};

use crate::error::{Error, Result};
use crate::kafka::ResolvedConnection;

/// How soon an object whose connection references Secrets is reconciled again, changed or
/// not: Secrets are not watched (the operator may only `get` them), so this bounds how long a
/// rotated or fixed Secret takes to reach the pods and conditions that use it.
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);

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

/// Pod-template annotation naming the Secret versions a pod was started with: they change
/// when a Secret is rotated, so the pods that mounted the old content are replaced.
pub const SECRET_VERSIONS_ANNOTATION: &str = "tributary.dev/secret-versions";

/// Reads what `conn` references. `field` names the connection in errors (`spec.kafka`).
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    name: String,
    conn: &KafkaConnection,
    field: &str,
) -> Result<ResolvedConnection> {
    tributary_connection::resolve(client, namespace, name, conn, field)
        .await
        .map_err(|e| match e {
            ResolveError::Read { what, source } => Error::Dereference { what, source },
            ResolveError::Invalid(message) => Error::InvalidSpec(message),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::{KafkaSasl, SaslMechanism, SecretKeyRef};

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
