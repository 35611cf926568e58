//! The one rule for which Kafka client properties carry secrets. The CRD schema (as CEL), the
//! operator's validation, the replicator's flags and every redaction of client-library texts
//! use it, so what the API server refuses and what the logs hide can never drift apart.
//!
//! It fails closed: a key is secret when librdkafka marks it sensitive *or* its name merely
//! looks like a credential (`...password`, `...secret`, `...token...`), because a new
//! librdkafka release adds such properties faster than a fixed list is updated.

/// Fragments that make a property name secret wherever they occur (matched case-insensitively).
pub const SECRET_PROPERTY_FRAGMENTS: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "jaas",
    "private.key",
    "key.pem",
    "keystore.key",
];

/// Property names that are secret although no fragment matches: librdkafka's sensitive
/// properties not covered above (`sasl.oauthbearer.config` may hold a signing key, the user
/// name belongs with its password) and Java-style key material.
pub const SECRET_PROPERTY_NAMES: &[&str] = &[
    "sasl.username",
    "sasl.oauthbearer.config",
    "ssl_key",
    "ssl.keystore.certificate.chain",
];

/// Whether the value of client property `key` is a secret: it must come from a Secret, never
/// sit in a spec or on a command line, and is redacted wherever a text could quote it.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    SECRET_PROPERTY_NAMES.contains(&key.as_str())
        || SECRET_PROPERTY_FRAGMENTS.iter().any(|f| key.contains(f))
}

/// [`is_secret_property`] as a CEL expression over the string variable `var`, for
/// `x-kubernetes-validations` (generated from the same lists, so the two cannot disagree).
pub fn secret_property_cel(var: &str) -> String {
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "({var}.lowerAscii().trim() in [{names}] || [{fragments}].exists(f, {var}.lowerAscii().contains(f)))",
        names = quoted(SECRET_PROPERTY_NAMES),
        fragments = quoted(SECRET_PROPERTY_FRAGMENTS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sensitive_librdkafka_property_and_credential_lookalike_is_secret() {
        for key in [
            // librdkafka's _RK_SENSITIVE properties that carry a value (2.12).
            "sasl.password",
            "sasl.username",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.client.credentials.client.secret",
            "sasl.oauthbearer.assertion.private.key.pem",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl_key",
            "ssl.keystore.password",
            // Java-client names people copy over.
            "sasl.jaas.config",
            "ssl.truststore.password",
            "ssl.keystore.key",
            "ssl.keystore.certificate.chain",
            // Whatever comes next, and case games.
            "sasl.oauthbearer.token",
            "some.future.api.secret",
            "SASL.PASSWORD",
            " sasl.username ",
        ] {
            assert!(is_secret_property(key), "{key:?} must be secret");
        }
    }

    #[test]
    fn ordinary_tuning_properties_are_not_secret() {
        for key in [
            "socket.keepalive.enable",
            "linger.ms",
            "compression.type",
            "client.id",
            "ssl.endpoint.identification.algorithm",
            "ssl.ca.location",
            "ssl.key.location",
            "ssl.certificate.location",
            "sasl.mechanism",
            "security.protocol",
            "message.max.bytes",
            "bootstrap.servers",
        ] {
            assert!(!is_secret_property(key), "{key:?} is not a secret");
        }
    }

    #[test]
    fn the_cel_rule_lists_every_name_and_fragment() {
        let cel = secret_property_cel("k");
        for s in SECRET_PROPERTY_NAMES
            .iter()
            .chain(SECRET_PROPERTY_FRAGMENTS)
        {
            assert!(cel.contains(&format!("'{s}'")), "{s} missing from {cel}");
        }
        assert!(!cel.contains('"'), "CEL string literals use single quotes");
    }
}
