//! The gate's one decision, pure: from what the watch knows of the `<name>-active` ConfigMap,
//! this pod's region and the local clock, is this region the active one right now?
//! Active only when the watch is current, the ConfigMap names this region, `fenced` is not
//! `"true"` and the record is fresh: `now < renewTime + ttlSeconds − margin`. Anything else,
//! including a record that cannot be read, is not active (fail closed).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// What the watch knows of the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No answer from the API server yet.
    Starting,
    /// The API server says it does not exist.
    Missing,
    /// Its `data`, current as of the watch.
    Present(BTreeMap<String, String>),
    /// The watch failed (why); nothing is known until it is re-established.
    WatchLost(String),
}

/// Why the answer is what it is. `Active` is the only one that lets a consumer act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Reason {
    Active,
    NotActive,
    Fenced,
    Stale,
    ConfigMapMissing,
    WatchLost,
    Starting,
    Malformed,
    Stopped,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "Active",
            Reason::NotActive => "NotActive",
            Reason::Fenced => "Fenced",
            Reason::Stale => "Stale",
            Reason::ConfigMapMissing => "ConfigMapMissing",
            Reason::WatchLost => "WatchLost",
            Reason::Starting => "Starting",
            Reason::Malformed => "Malformed",
            Reason::Stopped => "Stopped",
        }
    }
}

/// The answer of `GET /active`, of the file and of the pod condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub active: bool,
    pub reason: Reason,
    /// For a person: what was seen.
    pub message: String,
    /// The active region as the ConfigMap names it (empty when none is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// Until when an `active` answer holds without news (`renewTime + ttlSeconds − margin`):
    /// a reader of the file must not act past it, whether or not the gate still runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

impl Answer {
    /// 200 while active, 409 otherwise.
    pub fn status_code(&self) -> u16 {
        if self.active { 200 } else { 409 }
    }

    fn not(reason: Reason, message: impl Into<String>) -> Self {
        Answer {
            active: false,
            reason,
            message: message.into(),
            region: None,
            epoch: None,
            renew_time: None,
            valid_until: None,
        }
    }

    /// The answer of a gate that is stopping.
    pub fn stopped() -> Self {
        Answer::not(Reason::Stopped, "the active-gate stopped")
    }
}

/// The default margin subtracted from `ttlSeconds`: the operator's own fence margin
/// (`leaseDuration / 3`, at least 1 s), so a consumer stops no later than the holder's
/// operator would fence it, a third of the Lease before another region could take it.
pub fn default_margin(ttl: Duration) -> Duration {
    ttl.saturating_sub(tributary_core::failover::fence_ttl(ttl))
}

/// The decision. `margin`: `None` for [`default_margin`].
pub fn decide(
    observed: &Observed,
    my_region: &str,
    now: Timestamp,
    margin: Option<Duration>,
) -> Answer {
    let data = match observed {
        Observed::Starting => {
            return Answer::not(
                Reason::Starting,
                "no answer from the API server yet about the ConfigMap",
            );
        }
        Observed::Missing => {
            return Answer::not(
                Reason::ConfigMapMissing,
                "the ConfigMap does not exist: no region is known to be active",
            );
        }
        Observed::WatchLost(why) => {
            return Answer::not(
                Reason::WatchLost,
                format!("the watch of the ConfigMap is lost ({why}); not active until it is back"),
            );
        }
        Observed::Present(data) => data,
    };
    let field = |k: &str| data.get(k).map(String::as_str).unwrap_or_default();
    let region = field("activeRegion").to_string();
    let renew_text = field("renewTime").to_string();
    let epoch = field("epoch").parse::<u64>().ok();
    let with_record = |mut a: Answer| {
        a.region = Some(region.clone());
        a.epoch = epoch;
        a.renew_time = (!renew_text.is_empty()).then(|| renew_text.clone());
        a
    };
    if field("fenced") == "true" {
        return with_record(Answer::not(
            Reason::Fenced,
            "the holder's operator fenced it (the coordination API server could not be reached): nothing is active",
        ));
    }
    if region != my_region {
        let whom = if region.is_empty() {
            "no region".to_string()
        } else {
            format!("{region:?}")
        };
        return with_record(Answer::not(
            Reason::NotActive,
            format!("the active region is {whom}, this pod runs in {my_region:?}"),
        ));
    }
    let Some(epoch) = epoch else {
        return with_record(Answer::not(
            Reason::Malformed,
            format!("epoch {:?} is not a number", field("epoch")),
        ));
    };
    let Ok(renew) = renew_text.parse::<Timestamp>() else {
        return with_record(Answer::not(
            Reason::Malformed,
            format!("renewTime {renew_text:?} is not an RFC 3339 time"),
        ));
    };
    let Ok(ttl) = field("ttlSeconds").parse::<u64>() else {
        return with_record(Answer::not(
            Reason::Malformed,
            format!("ttlSeconds {:?} is not a number", field("ttlSeconds")),
        ));
    };
    let ttl = Duration::from_secs(ttl);
    let margin = margin.unwrap_or_else(|| default_margin(ttl));
    let window =
        SignedDuration::try_from(ttl.saturating_sub(margin)).unwrap_or(SignedDuration::ZERO);
    let valid_until = renew.checked_add(window).unwrap_or(renew);
    let mut answer = if now < valid_until {
        Answer {
            active: true,
            reason: Reason::Active,
            message: format!("{my_region} is the active region at epoch {epoch}"),
            region: None,
            epoch: None,
            renew_time: None,
            valid_until: None,
        }
    } else {
        Answer::not(
            Reason::Stale,
            format!(
                "the record was last renewed at {renew_text}; with ttlSeconds {} and a margin of {:.1}s it expired at {valid_until} on this node's clock",
                ttl.as_secs(),
                margin.as_secs_f64()
            ),
        )
    };
    answer = with_record(answer);
    answer.valid_until = Some(valid_until.to_string());
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(region: &str, epoch: &str, renew: Timestamp, ttl: &str, fenced: &str) -> Observed {
        Observed::Present(BTreeMap::from([
            ("activeRegion".to_string(), region.to_string()),
            ("epoch".to_string(), epoch.to_string()),
            ("renewTime".to_string(), renew.to_string()),
            ("ttlSeconds".to_string(), ttl.to_string()),
            ("fenced".to_string(), fenced.to_string()),
            ("bootstrapServers".to_string(), "agg-east:9092".to_string()),
        ]))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn only_a_fresh_unfenced_record_naming_this_region_is_active() {
        let fresh = record("east", "3", at(0), "15", "false");
        let a = decide(&fresh, "east", at(1), None);
        assert_eq!((a.status_code(), a.reason), (200, Reason::Active));
        assert_eq!(a.epoch, Some(3));
        assert_eq!(a.region.as_deref(), Some("east"));
        assert_eq!(a.renew_time, Some(at(0).to_string()));

        let cases = [
            (decide(&fresh, "west", at(1), None), Reason::NotActive),
            (
                decide(
                    &record("east", "3", at(0), "15", "true"),
                    "east",
                    at(1),
                    None,
                ),
                Reason::Fenced,
            ),
            (
                decide(&record("", "3", at(0), "15", "true"), "east", at(1), None),
                Reason::Fenced,
            ),
            (
                decide(&record("", "3", at(0), "15", "false"), "east", at(1), None),
                Reason::NotActive,
            ),
            (
                decide(&Observed::Missing, "east", at(1), None),
                Reason::ConfigMapMissing,
            ),
            (
                decide(&Observed::Starting, "east", at(1), None),
                Reason::Starting,
            ),
            (
                decide(&Observed::WatchLost("x".into()), "east", at(1), None),
                Reason::WatchLost,
            ),
            (
                decide(
                    &record("east", "x", at(0), "15", "false"),
                    "east",
                    at(1),
                    None,
                ),
                Reason::Malformed,
            ),
            (
                decide(
                    &record("east", "3", at(0), "", "false"),
                    "east",
                    at(1),
                    None,
                ),
                Reason::Malformed,
            ),
        ];
        for (answer, reason) in cases {
            assert_eq!(
                (answer.status_code(), answer.reason),
                (409, reason),
                "{answer:?}"
            );
        }
    }

    #[test]
    fn freshness_ends_a_margin_before_the_ttl() {
        // 15 s Lease: the operator's margin is 5 s, so the record holds for 10 s.
        let r = record("east", "1", at(0), "15", "false");
        assert!(decide(&r, "east", at(9), None).active);
        let stale = decide(&r, "east", at(10), None);
        assert_eq!(stale.reason, Reason::Stale);
        assert_eq!(stale.valid_until, Some(at(10).to_string()));
        // An explicit margin of 0 is the plain rule: renewTime + ttlSeconds.
        assert!(decide(&r, "east", at(14), Some(Duration::ZERO)).active);
        assert!(!decide(&r, "east", at(15), Some(Duration::ZERO)).active);
        // A margin larger than the TTL is never fresh.
        assert!(!decide(&r, "east", at(0), Some(Duration::from_secs(60))).active);
    }
}
