//! The holder's side of the active-region Lease (`failover.coordinationLoss: FailClosed`):
//! after each confirmed renewal the holder may act for `fence_ttl(leaseDuration)`; a Lease
//! request that cannot be confirmed by then (the coordination API server unreachable or
//! without a quorum) fences the holder: its consumers are scaled to 0 and its `<name>-active`
//! ConfigMap says `fenced: "true"` with no active region — a third of `leaseDuration` before
//! another region could take the Lease. Lease requests are bounded by the time left, so a
//! hanging one cannot carry the holder past the deadline. The next confirmed renewal lifts
//! the fence (the reconcile scales the consumers back and rewrites the ConfigMap).
//!
//! The deadline is counted from when the renewal was *sent* (the server's `renewTime` is no
//! earlier), on this process's monotonic clock. An operator that starts without being able to
//! read the Lease knows no deadline: it fences at once (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per group (`namespace/name`): until when its holder may act, and whether it is fenced.
#[derive(Debug, Default)]
pub struct Fences(Mutex<HashMap<String, Armed>>);

#[derive(Clone, Debug)]
struct Armed {
    deadline: Instant,
    holder: String,
    fenced: bool,
}

/// What to do after a Lease request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Not due yet: try again within `Duration` (before the deadline).
    RetryWithin(Duration),
    /// Fence `holder` now (`None`: unknown, fence what the ConfigMap names).
    Fence { holder: Option<String> },
    /// Already fenced (`holder`): fence again (idempotent), keep trying to renew.
    Fenced { holder: String },
}

/// The key of a group: `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Fences {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Armed>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A renewal (or acquisition) by `holder`, sent at `sent`, was confirmed.
    pub fn renewed(&self, key: &str, holder: &str, sent: Instant, ttl: Duration) {
        self.lock().insert(
            key.to_string(),
            Armed {
                deadline: sent + ttl,
                holder: holder.to_string(),
                fenced: false,
            },
        );
    }

    /// Arms the fence from the Lease as read, if nothing is known yet (a restarted holder's
    /// operator): the holder may act for `remaining` more, what its last renewal left.
    pub fn adopt(&self, key: &str, holder: &str, remaining: Duration) {
        self.lock().entry(key.to_string()).or_insert_with(|| Armed {
            deadline: Instant::now() + remaining,
            holder: holder.to_string(),
            fenced: false,
        });
    }

    /// Whether `holder` must be fenced now: no confirmed renewal of its own within the fence
    /// TTL (or none known). Per-region operators check it on every pass, not only after a
    /// failed request: a holder that stops renewing for any reason stops acting in time.
    pub fn due(&self, key: &str, holder: &str) -> bool {
        match self.lock().get(key) {
            Some(a) if a.holder == holder => a.fenced || Instant::now() >= a.deadline,
            _ => true,
        }
    }

    /// How long a Lease request may take: until the deadline (at least `floor`, so that a
    /// request can be made at all), at most `max`.
    pub fn request_bound(&self, key: &str, floor: Duration, max: Duration) -> Duration {
        match self.lock().get(key) {
            Some(a) if !a.fenced => a
                .deadline
                .saturating_duration_since(Instant::now())
                .clamp(floor, max),
            _ => max,
        }
    }

    /// A Lease request failed: what now.
    pub fn on_failure(&self, key: &str) -> OnFailure {
        self.decide(key, Instant::now())
    }

    fn decide(&self, key: &str, now: Instant) -> OnFailure {
        match self.lock().get(key) {
            Some(a) if a.fenced => OnFailure::Fenced {
                holder: a.holder.clone(),
            },
            Some(a) if now < a.deadline => OnFailure::RetryWithin(
                (a.deadline - now).clamp(Duration::from_millis(100), Duration::from_secs(1)),
            ),
            Some(a) => OnFailure::Fence {
                holder: Some(a.holder.clone()),
            },
            None => OnFailure::Fence { holder: None },
        }
    }

    /// Whether the group's holder is fenced now (until a confirmed renewal).
    pub fn is_fenced(&self, key: &str) -> bool {
        self.lock().get(key).is_some_and(|a| a.fenced)
    }

    /// The fence was applied.
    pub fn fenced(&self, key: &str, holder: &str) {
        let mut map = self.lock();
        let entry = map.entry(key.to_string()).or_insert_with(|| Armed {
            deadline: Instant::now(),
            holder: holder.to_string(),
            fenced: true,
        });
        entry.fenced = true;
    }

    /// The group is gone (or its holder no longer ours to fence).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_due_without_a_renewal_of_its_own_and_adopts_what_the_lease_left() {
        let fences = Fences::default();
        assert!(fences.due("ns/g", "east"), "nothing known: fail closed");
        fences.adopt("ns/g", "east", Duration::from_secs(5));
        assert!(!fences.due("ns/g", "east"));
        assert!(fences.due("ns/g", "west"), "armed for another holder");
        // Adopting never extends what a renewal armed.
        fences.renewed("ns/g", "east", Instant::now(), Duration::ZERO);
        fences.adopt("ns/g", "east", Duration::from_secs(60));
        assert!(fences.due("ns/g", "east"));
    }

    #[test]
    fn a_renewal_arms_the_fence_until_its_ttl_and_an_unknown_one_fences_at_once() {
        let fences = Fences::default();
        assert_eq!(
            fences.on_failure("ns/g"),
            OnFailure::Fence { holder: None },
            "no renewal known: fail closed"
        );
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        fences.renewed("ns/g", "east", sent, ttl);
        assert!(matches!(
            fences.decide("ns/g", sent + Duration::from_secs(3)),
            OnFailure::RetryWithin(d) if d == Duration::from_secs(1)
        ));
        assert!(matches!(
            fences.decide("ns/g", sent + Duration::from_millis(9_950)),
            OnFailure::RetryWithin(d) if d == Duration::from_millis(100)
        ));
        assert_eq!(
            fences.decide("ns/g", sent + ttl),
            OnFailure::Fence {
                holder: Some("east".into())
            }
        );
        // Requests are bounded by what is left of the TTL.
        let bound =
            fences.request_bound("ns/g", Duration::from_millis(200), Duration::from_secs(5));
        assert!(
            bound <= ttl && bound >= Duration::from_millis(200),
            "{bound:?}"
        );
        fences.fenced("ns/g", "east");
        assert_eq!(
            fences.on_failure("ns/g"),
            OnFailure::Fenced {
                holder: "east".into()
            }
        );
        // A confirmed renewal lifts it.
        fences.renewed("ns/g", "east", Instant::now(), ttl);
        assert!(matches!(
            fences.on_failure("ns/g"),
            OnFailure::RetryWithin(_)
        ));
    }
}
