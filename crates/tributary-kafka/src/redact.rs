//! Redaction of texts that may quote secrets — librdkafka's error strings, which echo the
//! property and value they refuse — before they reach status, events or logs.
//!
//! Two layers, because either alone misses something: every value this process handed to a
//! client as a secret is remembered ([`remember_secret`]) and replaced wherever it appears,
//! and any `key=value`, `key: value` or `"value" for configuration property "key"` whose key
//! is secret by [`is_secret_property`] has its value replaced, known or not.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};

use regex::{Captures, Regex};
use tributary_core::secret_property::is_secret_property;

/// What a redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Secret values this process has put into a client config (SASL passwords read from files,
/// secret properties such as PEM keys). Process-wide: an error text can surface far from the
/// client that caused it (a log line, a condition written by another reconcile).
static KNOWN_SECRETS: LazyLock<Mutex<BTreeSet<String>>> =
    LazyLock::new(|| Mutex::new(BTreeSet::new()));

/// `key = value` / `key: value`, the key optionally quoted, the value quoted or a bare word.
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?P<key>["']?[A-Za-z0-9_.\-]+["']?)(?P<sep>\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;)"']+)"#,
    )
    .expect("assignment pattern compiles")
});

/// librdkafka's `Invalid value "<value>" for configuration property "<key>"`.
static INVALID_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(?P<value>[^"]*)"(?P<mid>\s+for\s+configuration\s+property\s+)"(?P<key>[^"]+)""#)
        .expect("invalid-value pattern compiles")
});

/// Remembers `value` as a secret: from now on [`redact`] replaces it in every text.
pub fn remember_secret(value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    if let Ok(mut known) = KNOWN_SECRETS.lock() {
        known.insert(value.to_owned());
    }
}

/// `text` with every remembered secret value and every value of a secret key replaced by
/// [`REDACTED`].
pub fn redact(text: &str) -> String {
    let known: Vec<String> = KNOWN_SECRETS
        .lock()
        .map(|k| k.iter().cloned().collect())
        .unwrap_or_default();
    redact_with(text, &known)
}

/// [`redact`] with an explicit set of known secret values (no process state; for tests and
/// callers that hold the values themselves).
pub fn redact_with(text: &str, known: &[String]) -> String {
    let mut out = text.to_owned();
    // Longest first, so a secret that contains another is replaced whole.
    let mut known: Vec<&String> = known.iter().filter(|k| !k.is_empty()).collect();
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for value in known {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), REDACTED);
        }
    }
    let out = INVALID_VALUE.replace_all(&out, |c: &Captures| {
        if is_secret_property(&c["key"]) {
            format!("\"{REDACTED}\"{}\"{}\"", &c["mid"], &c["key"])
        } else {
            c[0].to_owned()
        }
    });
    redact_assignments(&out)
}

/// Replaces the value of every `key=value` / `key: value` whose key is secret. Scans on after
/// the separator of a harmless key, because its "value" may itself be an assignment
/// (`client: sasl.password=x`).
fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(c) = ASSIGNMENT.captures_at(text, pos) {
        let (key, sep, value) = (&c["key"], &c["sep"], &c["value"]);
        let start = c.get(0).map_or(pos, |m| m.start());
        let value_start = start + key.len() + sep.len();
        // A path segment names a file, not a property (`/run/password: Permission denied`).
        let in_path = text[..start].ends_with('/');
        out.push_str(&text[pos..value_start]);
        let bare = key.trim_matches(['"', '\'']);
        if !in_path && is_secret_property(bare) && !value.contains(REDACTED) {
            match value.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    out.push(q);
                    out.push_str(REDACTED);
                    out.push(q);
                }
                _ => out.push_str(REDACTED),
            }
            pos = value_start + value.len();
        } else {
            pos = value_start;
        }
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn an_rdkafka_config_error_loses_the_value_of_a_secret_property() {
        // rust-rdkafka's KafkaError::ClientConfig Display, and librdkafka's errstr forms.
        for (text, secret) in [
            (
                "Client config error: Invalid value \"s3cr3t\" for configuration property \"sasl.oauthbearer.client.secret\"",
                "s3cr3t",
            ),
            (
                "Invalid value for configuration property \"sasl.oauthbearer.client.secret\": s3cr3t",
                "s3cr3t",
            ),
            (
                "creating an admin client: sasl.oauthbearer.config=principal=admin extension_k=v1",
                "principal=admin",
            ),
            (
                "Java config: sasl.jaas.config=\"org.apache.kafka.common.security.plain.PlainLoginModule required username=u password=hunter2;\"",
                "hunter2",
            ),
            ("{\"ssl.key.password\": \"pw-in-json\"}", "pw-in-json"),
            ("ssl.keystore.password = changeit, next", "changeit"),
            (
                "login failed: username=replicator password=hunter2;",
                "hunter2",
            ),
        ] {
            let redacted = redact_with(text, &none());
            assert!(
                !redacted.contains(secret),
                "{secret:?} survived in {redacted:?} (from {text:?})"
            );
            assert!(redacted.contains(REDACTED), "{redacted}");
        }
    }

    #[test]
    fn known_secret_values_are_replaced_wherever_they_appear() {
        let known = vec!["hunter2".to_string(), "hunter2-longer".to_string()];
        let text = "SASL authentication error: Authentication failed for user with password hunter2-longer (hunter2)";
        let redacted = redact_with(text, &known);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert_eq!(
            redacted,
            "SASL authentication error: Authentication failed for user with password <redacted> (<redacted>)"
        );
    }

    #[test]
    fn texts_without_secrets_are_left_alone() {
        for text in [
            "east regional cluster is unreachable (describing topics: Local: Broker transport failure); check the bootstrap servers",
            "Client config error: Invalid value \"lz5\" for configuration property \"compression.type\"",
            "socket.keepalive.enable=true linger.ms=5 bootstrap.servers=kafka:9092",
            "cannot read the SASL password file /var/run/tributary/source-sasl-password/password: Permission denied",
        ] {
            assert_eq!(redact_with(text, &none()), text);
        }
    }

    #[test]
    fn remembered_secrets_are_redacted_process_wide() {
        remember_secret("  remembered-pw-9f3\n");
        assert_eq!(
            redact("GSSAPI said remembered-pw-9f3 was wrong"),
            "GSSAPI said <redacted> was wrong"
        );
    }
}
