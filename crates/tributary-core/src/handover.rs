//! What per-region operators (one Kubernetes cluster per region, `--region`) agree on through
//! the active-region Lease on the coordination API server, beside its holder and epoch: the
//! order in which standbys may take an expired Lease, and the planned handover.
//!
//! Each region's operator decides only for its own region: the holder renews, a standby takes
//! the Lease only for itself, and only a move *to* a region is driven by that region's operator
//! (its own status records it, as in the one-operator topology). A planned move also needs the
//! holder to stop its consumers, which only the holder's operator can do: the target asks by
//! writing a [`Handover`] into the Lease (a compare-and-swap, like every write to it); the
//! holder stops its consumers, then marks the request `stopped`; the target translates the
//! final position and takes the Lease, which clears the request.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The Lease annotation that carries a [`Handover`] as JSON.
pub const HANDOVER_ANNOTATION: &str = "tributary.dev/handover";

/// How much longer each less preferred standby waits after the Lease expired before it takes
/// it: the `k`-th standby in `spec.regions` order (the holder skipped, `k` from 0) waits
/// `k × PREFERENCE_STEP`, so that a more preferred, healthy and fresh standby wins the
/// compare-and-swap and the others find a live Lease.
pub const PREFERENCE_STEP: Duration = Duration::from_secs(2);

/// How long a holder honours a handover request before it declines it and resumes: the
/// target's final translation may take up to 90 s; beyond that the target is presumed gone.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(120);

/// A planned move's request to the holder, written by the target region's operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handover {
    /// The region the group moves to (the requester).
    pub to: String,
    /// The epoch the move produces (the Lease's epoch + 1 when it was asked).
    pub epoch: u64,
    /// When it was asked (Unix seconds, the requester's clock).
    pub requested: f64,
    /// The holder's consumers are stopped (its workload has no running pod).
    #[serde(default)]
    pub stopped: bool,
}

impl Handover {
    pub fn parse(annotation: &str) -> Option<Handover> {
        serde_json::from_str(annotation).ok()
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Extra wait before `me` may take `holder`'s expired Lease: its rank among the standbys in
/// preference order times [`PREFERENCE_STEP`].
pub fn acquisition_delay(regions: &[String], holder: &str, me: &str) -> Duration {
    let rank = regions
        .iter()
        .filter(|r| r.as_str() != holder)
        .position(|r| r == me)
        .unwrap_or(regions.len());
    PREFERENCE_STEP * rank as u32
}

/// What the holder's operator does about a handover request it finds in its Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderAnswer {
    /// No request for this epoch: run as usual.
    None,
    /// Stop the consumers (they are still running).
    Stop,
    /// The consumers are stopped: mark the request `stopped` (a compare-and-swap).
    MarkStopped,
    /// Already marked: keep them stopped, wait for the target to take the Lease.
    Wait,
    /// Remove the request and resume: it cannot complete (the reason says why).
    Decline(String),
}

/// The holder's answer to `request`, with the Lease at `epoch`, the target's health as the
/// holder sees it, its own running consumer pods, and `now` (Unix seconds).
pub fn holder_answer(
    request: Option<&Handover>,
    epoch: u64,
    target_known: bool,
    target_healthy: bool,
    running: u32,
    now: f64,
) -> HolderAnswer {
    let Some(h) = request else {
        return HolderAnswer::None;
    };
    if h.epoch != epoch + 1 {
        return HolderAnswer::Decline(format!(
            "handover to {} asks for epoch {}, but the Lease is at {epoch}",
            h.to, h.epoch
        ));
    }
    if !target_known {
        return HolderAnswer::Decline(format!("handover to {}: not in spec.regions", h.to));
    }
    if !target_healthy {
        return HolderAnswer::Decline(format!(
            "handover to {}: its aggregate cluster is not healthy as seen from the holder",
            h.to
        ));
    }
    if now - h.requested > HANDOVER_TIMEOUT.as_secs_f64() {
        return HolderAnswer::Decline(format!(
            "handover to {} asked {:.0}s ago and not completed (timeout {}s)",
            h.to,
            now - h.requested,
            HANDOVER_TIMEOUT.as_secs()
        ));
    }
    match (running, h.stopped) {
        (0, true) => HolderAnswer::Wait,
        (0, false) => HolderAnswer::MarkStopped,
        _ => HolderAnswer::Stop,
    }
}

/// How many of the holder's consumer pods the target counts while it waits for a handover:
/// 0 only when the holder marked this move's request stopped; unknown counts as running.
pub fn holder_running(request: Option<&Handover>, me: &str, epoch: u64) -> u32 {
    match request {
        Some(h) if h.to == me && h.epoch == epoch && h.stopped => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn standbys_take_an_expired_lease_in_preference_order() {
        let r = regions(&["east", "west", "central"]);
        assert_eq!(acquisition_delay(&r, "east", "west"), Duration::ZERO);
        assert_eq!(acquisition_delay(&r, "east", "central"), PREFERENCE_STEP);
        assert_eq!(acquisition_delay(&r, "west", "east"), Duration::ZERO);
        assert_eq!(acquisition_delay(&r, "west", "central"), PREFERENCE_STEP);
        // A region not listed waits longer than any listed one.
        assert!(acquisition_delay(&r, "east", "south") > PREFERENCE_STEP);
    }

    fn request(stopped: bool) -> Handover {
        Handover {
            to: "west".into(),
            epoch: 3,
            requested: 1000.0,
            stopped,
        }
    }

    #[test]
    fn the_holder_stops_then_marks_then_waits() {
        let r = request(false);
        assert_eq!(
            holder_answer(None, 2, true, true, 2, 1001.0),
            HolderAnswer::None
        );
        assert_eq!(
            holder_answer(Some(&r), 2, true, true, 2, 1001.0),
            HolderAnswer::Stop
        );
        assert_eq!(
            holder_answer(Some(&r), 2, true, true, 0, 1001.0),
            HolderAnswer::MarkStopped
        );
        let marked = request(true);
        assert_eq!(
            holder_answer(Some(&marked), 2, true, true, 0, 1001.0),
            HolderAnswer::Wait
        );
        // A pod that came back (a restarted workload) is stopped again.
        assert_eq!(
            holder_answer(Some(&marked), 2, true, true, 1, 1001.0),
            HolderAnswer::Stop
        );
    }

    #[test]
    fn the_holder_declines_what_cannot_complete() {
        let r = request(false);
        for (answer, why) in [
            (holder_answer(Some(&r), 3, true, true, 0, 1001.0), "epoch"),
            (
                holder_answer(Some(&r), 2, false, true, 0, 1001.0),
                "spec.regions",
            ),
            (
                holder_answer(Some(&r), 2, true, false, 0, 1001.0),
                "not healthy",
            ),
            (
                holder_answer(Some(&r), 2, true, true, 0, 1000.0 + 121.0),
                "timeout",
            ),
        ] {
            assert!(
                matches!(&answer, HolderAnswer::Decline(m) if m.contains(why)),
                "{why}: {answer:?}"
            );
        }
    }

    #[test]
    fn the_target_counts_the_holder_stopped_only_when_marked_for_its_move() {
        assert_eq!(holder_running(None, "west", 3), 1);
        assert_eq!(holder_running(Some(&request(false)), "west", 3), 1);
        assert_eq!(holder_running(Some(&request(true)), "west", 3), 0);
        assert_eq!(holder_running(Some(&request(true)), "west", 4), 1);
        assert_eq!(holder_running(Some(&request(true)), "central", 3), 1);
    }

    #[test]
    fn a_request_round_trips_and_garbage_is_no_request() {
        let r = request(true);
        assert_eq!(Handover::parse(&r.encode()), Some(r));
        assert_eq!(Handover::parse("not json"), None);
    }
}
