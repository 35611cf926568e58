//! Conditions as Kubernetes wants them: `lastTransitionTime` moves only when the status flips,
//! so re-writing the same state is a no-op for server-side apply. Every message is redacted
//! here, the one door to every kind's conditions (and so to the events announcing them).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition to set; the transition time is filled in by [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Wanted {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The new conditions, keeping `lastTransitionTime` of those whose status did not change.
pub fn merge(old: &[Condition], wanted: &[Wanted], generation: Option<i64>) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" }.to_string();
            let previous = old.iter().find(|c| c.type_ == w.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Time(Timestamp::now()),
            };
            Condition {
                type_: w.type_.into(),
                status,
                reason: w.reason.clone(),
                // Redacted before truncation: a cut secret would no longer be recognised.
                message: truncate(&tributary_kafka::redact(&w.message), 1024),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// `(status, reason)` of a condition type, for transition checks.
pub fn state_of(conditions: &[Condition], type_: &str) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// `s` cut to at most `max` bytes (at a character boundary), ending in "…" when cut: the
/// API server refuses longer messages (an event's note: 1 KiB), and a refused event or
/// status is lost whole.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    const MARK: &str = "…";
    let mut end = max.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_marked() {
        assert_eq!(truncate("short", 1024), "short");
        let long = "é".repeat(600); // 1200 bytes
        let cut = truncate(&long, 1024);
        assert!(cut.len() <= 1024, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let first = merge(
            &[],
            &[Wanted::new("Ready", true, "RoutesReady", "ok")],
            Some(1),
        );
        let again = merge(
            &first,
            &[Wanted::new("Ready", true, "RoutesReady", "still ok")],
            Some(2),
        );
        assert_eq!(first[0].last_transition_time, again[0].last_transition_time);
        assert_eq!(again[0].observed_generation, Some(2));
    }

    #[test]
    fn a_condition_never_carries_a_secret_a_client_library_echoed() {
        let merged = merge(
            &[],
            &[Wanted::new(
                "Ready",
                false,
                "KafkaConfigInvalid",
                "creating an admin client on east failed: Client config error: Invalid value \"s3cr3t\" for configuration property \"sasl.oauthbearer.client.secret\"",
            )],
            Some(1),
        );
        assert!(
            !merged[0].message.contains("s3cr3t"),
            "{}",
            merged[0].message
        );
        assert!(merged[0].message.contains("sasl.oauthbearer.client.secret"));
    }
}
