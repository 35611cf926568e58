//! The failover state machine of one consumer group: which region is active, when the active
//! region moves, and which step of a move comes next. Pure: the reconciler observes the world
//! (the active-region Lease, the move recorded in status, region health, standby freshness,
//! workloads, the final translation's answer), calls [`decide`], performs the one [`Step`] it returns, and
//! observes again. A crash between steps loses nothing: every input is re-observed, and the
//! only state of a move is the [`Move`] written to status *before* the first act of the move.
//!
//! Authority: the Lease (`holderIdentity` = active region, `leaseTransitions` = epoch). A move
//! ends with one compare-and-swap on the Lease from `(from, epoch − 1)` to `(to, epoch)`: two
//! movers cannot both win, and the epoch rises by exactly one per move.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the group runs across regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupMode {
    /// One region consumes; a move drains it and translates its position into the target.
    ActivePassive,
    /// Every region consumes; only the primary role (the Lease) moves.
    ActiveActive,
}

/// Why the active region moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveReason {
    /// The first activation: no Lease existed.
    Initial,
    /// The active region is down (unplanned).
    RegionDown,
    /// `spec.activeRegion` was edited (planned).
    SpecChanged,
    /// `spec.activeRegion` was edited back to the region the group left at its last move.
    Failback,
}

impl MoveReason {
    /// The word used in status, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::Initial => "Initial",
            MoveReason::RegionDown => "RegionDown",
            MoveReason::SpecChanged => "SpecChanged",
            MoveReason::Failback => "Failback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            MoveReason::Initial,
            MoveReason::RegionDown,
            MoveReason::SpecChanged,
            MoveReason::Failback,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Whether the region the group leaves takes part in the move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveKind {
    /// The source is reachable: stop it, wait until the group is empty there, translate its
    /// final position into the target, then move the Lease. Nothing lost, nothing duplicated
    /// after dedupe.
    Planned,
    /// The source is gone: wait for its Lease to expire (it fences itself), then move the
    /// Lease; the target resumes from its own warm standby offsets.
    Unplanned,
}

/// A move in progress, persisted in status before its first act so that a restarted operator
/// resumes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The region left (`None` at the first activation).
    pub from: Option<String>,
    pub to: String,
    pub reason: MoveReason,
    pub kind: MoveKind,
    /// The epoch the move produces: the Lease's epoch when the move began, plus one.
    pub epoch: u64,
}

/// The active-region Lease as read (with the reconciler's clock for expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: String,
    pub epoch: u64,
    /// `renewTime + leaseDurationSeconds` is in the past.
    pub expired: bool,
}

/// One region as observed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionView {
    pub region: String,
    /// Its aggregate cluster answered (fewer than `failureThreshold` consecutive failures).
    pub healthy: bool,
    /// Its latest probe answered. A holder whose latest probe failed keeps the group (it is
    /// still healthy) but its Lease is not renewed: the Lease starts to run out at the first
    /// failed probe, not at the `failureThreshold`-th, so a lost region's Lease has mostly
    /// expired by the time the region is declared down.
    pub answering: bool,
    /// How old the standby's committed offsets are (time since its sync last matched a full
    /// translation); `None`: unknown (no sync Job, not scraped, never synced).
    pub sync_age: Option<Duration>,
    /// Members of the group in this region's aggregate cluster; `None`: could not be read.
    pub group_members: Option<u32>,
    /// Pods of the region's workload still running (0 when it has no workload).
    pub running_consumers: u32,
}

/// The final translation of the move in progress: the target's standby sync runs it on
/// request and answers when its commit was read back, so it is never observed running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinalSync {
    NotStarted,
    /// Completed, and its commit was verified in the target.
    Succeeded,
    Failed(String),
}

/// Everything a decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub mode: GroupMode,
    /// `failover.automatic`.
    pub automatic: bool,
    /// Why automatic moves are refused although `automatic` is set (two regions without a
    /// witness: no majority to tell a dead region from a cut-off one). Planned moves still go.
    pub quorum_problem: Option<String>,
    /// The annotation `tributary.dev/accept-data-loss: "true"` is set.
    pub accept_data_loss: bool,
    /// `failover.maxSyncAge`.
    pub max_sync_age: Duration,
    /// In preference order.
    pub regions: Vec<RegionView>,
    /// `spec.activeRegion`.
    pub intent: Option<String>,
    /// The `spec.activeRegion` the operator last acted on (status); a planned move starts only
    /// when the intent changes, so an automatic failover is not undone when the pinned region
    /// returns.
    pub acted_intent: Option<String>,
    pub lease: Option<LeaseView>,
    /// The move recorded in status, if one is under way.
    pub in_progress: Option<Move>,
    /// The region the group left at its last completed move (for the `Failback` reason).
    pub previous_active: Option<String>,
    pub final_sync: FinalSync,
}

/// The one thing the reconciler does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing moves. `renew`: renew the Lease (its holder is healthy). `acknowledge_intent`:
    /// record `spec.activeRegion` as acted on (it already names the active region).
    Steady {
        renew: bool,
        acknowledge_intent: bool,
    },
    /// Write the move to status (nothing else yet).
    Begin(Move),
    /// Wait: the source's consumers are stopping, or the group still has members in the
    /// source or in the target (a consumer lost with its region stays a member until its
    /// session times out; offsets are never moved under a member).
    WaitForGroupEmpty { region: String, detail: String },
    /// Ask the target's standby sync for the final translation (`from → to`, for the move to
    /// `epoch`), and record its answer.
    RunFinalSync {
        from: String,
        to: String,
        epoch: u64,
    },
    /// The final translation failed: forget the answer (the next decision asks again).
    RetryFinalSync { message: String },
    /// The source's Lease has not expired yet (unplanned): it may still be fencing itself.
    WaitForLeaseExpiry { holder: String },
    /// Compare-and-swap the Lease to `(to, epoch)`; `expect` is what it must still hold
    /// (`None`: it must not exist).
    TakeLease {
        to: String,
        epoch: u64,
        expect: Option<(String, u64)>,
    },
    /// The Lease names the move's target at its epoch: record the move as finished.
    Finish(Move),
    /// The move can no longer complete as recorded (the Lease moved elsewhere, or the target
    /// went down before the Lease moved): drop it; the next decision starts afresh.
    /// `forget_intent`: the move was asked for by `spec.activeRegion`; forget that it was acted
    /// on, so that the request is tried again once it can be.
    Abandon { reason: String, forget_intent: bool },
    /// A move is needed but refused; the reason is a condition reason (`FailoverBlocked`,
    /// `NoHealthyRegion`, `AutomaticFailoverDisabled`, `WitnessRequired`).
    Blocked {
        reason: &'static str,
        message: String,
    },
}

/// What a region's workload does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumers {
    /// Consume: `replicas` pods.
    Run,
    /// Warm standby: `standbyReplicas` pods that wait for the active gate and are not
    /// members of the group (0 pods unless the workload asks for a warm standby).
    Standby,
    /// No pods: the region is being moved away from (or is the holder during a move).
    Stop,
}

fn region<'a>(o: &'a Observation, name: &str) -> Option<&'a RegionView> {
    o.regions.iter().find(|r| r.region == name)
}

fn fresh(o: &Observation, r: &RegionView) -> bool {
    o.mode == GroupMode::ActiveActive
        || o.accept_data_loss
        || r.sync_age.is_some_and(|a| a <= o.max_sync_age)
}

/// Why a healthy region may not take over: its standby offsets are stale or unknown.
fn staleness(o: &Observation, r: &RegionView) -> String {
    match r.sync_age {
        Some(a) => format!(
            "standby {} last synced {:.1}s ago (> failover.maxSyncAge {:.1}s)",
            r.region,
            a.as_secs_f64(),
            o.max_sync_age.as_secs_f64()
        ),
        None => format!("standby {}: sync freshness unknown", r.region),
    }
}

/// The first healthy region (other than `except`) in preference order whose standby is fresh,
/// or why there is none.
fn failover_target(o: &Observation, except: &str) -> Result<String, (&'static str, String)> {
    let healthy: Vec<&RegionView> = o
        .regions
        .iter()
        .filter(|r| r.region != except && r.healthy)
        .collect();
    if healthy.is_empty() {
        return Err((
            "NoHealthyRegion",
            format!("active region {except} is down and no other region is healthy"),
        ));
    }
    match healthy.iter().find(|r| fresh(o, r)) {
        Some(r) => Ok(r.region.clone()),
        None => Err((
            "FailoverBlocked",
            format!(
                "active region {except} is down; refusing to fail over: {}; set the annotation tributary.dev/accept-data-loss=\"true\" to fail over anyway",
                healthy
                    .iter()
                    .map(|r| staleness(o, r))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

/// How long before the Lease's expiry the holder fences itself when it cannot renew: a third
/// of `lease_duration` (at least 1 s). The timing invariant (docs/coordination.md):
/// fence TTL + clock skew + watch delay < lease duration, i.e. the margin must cover the
/// clock skew between the holder and any acquirer plus the delay before the fence acts.
pub fn fence_margin(lease_duration: Duration) -> Duration {
    (lease_duration / 3).max(Duration::from_secs(1))
}

/// How long after its last successful renewal the holder may keep acting:
/// `lease_duration − fence_margin(lease_duration)`.
pub fn fence_ttl(lease_duration: Duration) -> Duration {
    lease_duration.saturating_sub(fence_margin(lease_duration))
}

/// The next step. Pure and total: every observation gets an answer.
pub fn decide(o: &Observation) -> Step {
    match &o.in_progress {
        Some(m) => match continue_move(o, m) {
            Step::Abandon { reason, .. } => Step::Abandon {
                reason,
                forget_intent: matches!(m.reason, MoveReason::SpecChanged | MoveReason::Failback),
            },
            step => step,
        },
        None => next_move(o),
    }
}

fn abandon(reason: String) -> Step {
    Step::Abandon {
        reason,
        forget_intent: false,
    }
}

fn continue_move(o: &Observation, m: &Move) -> Step {
    // The Lease is the fact: has this move (or another) already happened?
    if let Some(l) = &o.lease {
        if l.holder == m.to && l.epoch == m.epoch {
            return Step::Finish(m.clone());
        }
        if l.epoch >= m.epoch {
            return abandon(format!(
                "the Lease moved to {} at epoch {} while this move ({} at epoch {}) was under way",
                l.holder, l.epoch, m.to, m.epoch
            ));
        }
    }
    let expect = o.lease.as_ref().map(|l| (l.holder.clone(), l.epoch));
    if expect.as_ref().map(|(_, e)| e + 1).unwrap_or(1) != m.epoch {
        return abandon(format!(
            "the move to {} expects epoch {} but the Lease is at {:?}",
            m.to,
            m.epoch,
            expect.as_ref().map(|(_, e)| *e)
        ));
    }
    let Some(target) = region(o, &m.to) else {
        return abandon(format!("region {} is no longer in spec.regions", m.to));
    };
    if !target.healthy {
        return abandon(format!(
            "target region {} went down before the move completed",
            m.to
        ));
    }
    let take = Step::TakeLease {
        to: m.to.clone(),
        epoch: m.epoch,
        expect: expect.clone(),
    };
    let Some(from) = &m.from else {
        return take; // first activation: nothing to drain
    };
    match (m.kind, o.mode) {
        (MoveKind::Unplanned, _) | (MoveKind::Planned, GroupMode::ActiveActive) => {
            if m.kind == MoveKind::Unplanned
                && o.mode == GroupMode::ActivePassive
                && region(o, from).is_some_and(|s| s.healthy)
                && o.lease.as_ref().is_some_and(|l| !l.expired)
            {
                return abandon(format!(
                    "region {from} is healthy again before its Lease expired: the group stays there"
                ));
            }
            // Freshness was judged when the move began. Once the source is down nothing is
            // consumed there, so the standby's growing age since then loses nothing more.
            match &o.lease {
                Some(l) if m.kind == MoveKind::Unplanned && !l.expired => {
                    Step::WaitForLeaseExpiry {
                        holder: l.holder.clone(),
                    }
                }
                _ => take,
            }
        }
        (MoveKind::Planned, GroupMode::ActivePassive) => {
            let source = region(o, from);
            if source.is_none_or(|s| !s.healthy) {
                // The source died mid-move: no final translation is possible any more.
                return abandon(format!(
                    "source region {from} went down during the planned move; deciding again as a region failure"
                ));
            }
            let source = source.expect("checked above");
            if source.running_consumers > 0 {
                return Step::WaitForGroupEmpty {
                    region: from.clone(),
                    detail: format!(
                        "{} consumer pod(s) still running in {from}",
                        source.running_consumers
                    ),
                };
            }
            match source.group_members {
                Some(0) => {}
                Some(n) => {
                    return Step::WaitForGroupEmpty {
                        region: from.clone(),
                        detail: format!("the group still has {n} member(s) in {from}"),
                    };
                }
                None => {
                    return Step::WaitForGroupEmpty {
                        region: from.clone(),
                        detail: format!("the group's members in {from} could not be read"),
                    };
                }
            }
            match target.group_members {
                Some(0) => {}
                n => {
                    return Step::WaitForGroupEmpty {
                        region: m.to.clone(),
                        detail: match n {
                            Some(n) => format!(
                                "the group has {n} member(s) in {} (consumers lost there stay members until their session times out)",
                                m.to
                            ),
                            None => format!("the group's members in {} could not be read", m.to),
                        },
                    };
                }
            }
            match &o.final_sync {
                FinalSync::NotStarted => Step::RunFinalSync {
                    from: from.clone(),
                    to: m.to.clone(),
                    epoch: m.epoch,
                },
                FinalSync::Failed(message) => Step::RetryFinalSync {
                    message: message.clone(),
                },
                FinalSync::Succeeded => take,
            }
        }
    }
}

fn next_move(o: &Observation) -> Step {
    let intent_changed = o.intent.is_some() && o.intent != o.acted_intent;
    let Some(lease) = &o.lease else {
        // First activation: the intent, else the first healthy region.
        let to = match &o.intent {
            Some(t) => t.clone(),
            None => match o.regions.iter().find(|r| r.healthy) {
                Some(r) => r.region.clone(),
                None => {
                    return Step::Blocked {
                        reason: "NoHealthyRegion",
                        message: "no region is healthy: nothing to activate".into(),
                    };
                }
            },
        };
        if region(o, &to).is_none_or(|r| !r.healthy) {
            return Step::Blocked {
                reason: "NoHealthyRegion",
                message: format!("region {to} is not healthy: waiting to activate it"),
            };
        }
        return Step::Begin(Move {
            from: None,
            to,
            reason: MoveReason::Initial,
            kind: MoveKind::Planned,
            epoch: 1,
        });
    };
    let active = lease.holder.as_str();
    let active_view = region(o, active);
    let active_healthy = active_view.is_some_and(|r| r.healthy);
    let epoch = lease.epoch + 1;

    // Fail closed: a removed region's workload is no longer known, so it cannot be drained.
    if active_view.is_none() {
        return Step::Blocked {
            reason: "ActiveRegionRemoved",
            message: format!(
                "spec.regions no longer lists the active region {active}: move the group first (spec.activeRegion), then remove the region"
            ),
        };
    }
    let wanted = if intent_changed && o.intent.as_deref() != Some(active) {
        o.intent.clone()
    } else {
        None
    };

    if let Some(to) = wanted {
        let Some(target) = region(o, &to) else {
            return Step::Blocked {
                reason: "NoHealthyRegion",
                message: format!("no region to move to from {active}"),
            };
        };
        if !target.healthy {
            return Step::Blocked {
                reason: "TargetUnhealthy",
                message: format!("spec.activeRegion {to} is not healthy: waiting to move there"),
            };
        }
        let reason = if o.previous_active.as_deref() == Some(to.as_str()) {
            MoveReason::Failback
        } else {
            MoveReason::SpecChanged
        };
        if active_healthy {
            return Step::Begin(Move {
                from: Some(active.to_string()),
                to,
                reason,
                kind: MoveKind::Planned,
                epoch,
            });
        }
        // The user asks for a move away from a dead region: unplanned, same freshness rule.
        if !fresh(o, target) {
            return Step::Blocked {
                reason: "FailoverBlocked",
                message: format!(
                    "active region {active} is down; refusing to move to {to}: {}; set the annotation tributary.dev/accept-data-loss=\"true\" to move anyway",
                    staleness(o, target)
                ),
            };
        }
        return Step::Begin(Move {
            from: Some(active.to_string()),
            to,
            reason,
            kind: MoveKind::Unplanned,
            epoch,
        });
    }

    if active_healthy {
        return Step::Steady {
            renew: active_view.is_some_and(|r| r.answering),
            acknowledge_intent: intent_changed,
        };
    }
    if !o.automatic {
        return Step::Blocked {
            reason: "AutomaticFailoverDisabled",
            message: format!(
                "active region {active} is down and failover.automatic is false: edit spec.activeRegion to move the group"
            ),
        };
    }
    if let Some(problem) = &o.quorum_problem {
        return Step::Blocked {
            reason: "WitnessRequired",
            message: format!(
                "active region {active} is down and no automatic move is made: {problem}"
            ),
        };
    }
    match failover_target(o, active) {
        Ok(to) => Step::Begin(Move {
            from: Some(active.to_string()),
            to,
            reason: MoveReason::RegionDown,
            kind: MoveKind::Unplanned,
            epoch,
        }),
        Err((reason, message)) => Step::Blocked { reason, message },
    }
}

/// What each region's consumers do (in `o.regions` order). ActiveActive: run everywhere.
/// ActivePassive: only the Lease's holder runs, and nobody while a move is under way (the
/// target consumes only after it holds the Lease, the source stops before anything else
/// happens); every other region keeps its warm standby, which the active gate holds back.
pub fn desired_consumers(o: &Observation) -> Vec<(String, Consumers)> {
    o.regions
        .iter()
        .map(|r| {
            let holder = o.lease.as_ref().is_some_and(|l| l.holder == r.region);
            let consumers = match (o.mode, &o.in_progress) {
                (GroupMode::ActiveActive, _) => Consumers::Run,
                (GroupMode::ActivePassive, None) if holder => Consumers::Run,
                (GroupMode::ActivePassive, None) => Consumers::Standby,
                // A move stops the region it leaves (and any other holder of the Lease) before
                // anything else; the target (which holds the Lease between `TakeLease` and
                // `Finish`) and every other region keep their warm standby, gated.
                (GroupMode::ActivePassive, Some(m))
                    if r.region != m.to
                        && (holder || m.from.as_deref() == Some(r.region.as_str())) =>
                {
                    Consumers::Stop
                }
                (GroupMode::ActivePassive, Some(_)) => Consumers::Standby,
            };
            (r.region.clone(), consumers)
        })
        .collect()
}

/// The regions that get a standby sync Job from the active region: every other region, in
/// ActivePassive only (in ActiveActive each region's group keeps its own position), and none
/// while a move is under way (their epoch is about to be superseded).
pub fn standby_regions(o: &Observation) -> Vec<String> {
    match (&o.lease, &o.in_progress, o.mode) {
        (Some(l), None, GroupMode::ActivePassive) => o
            .regions
            .iter()
            .filter(|r| r.region != l.holder)
            .map(|r| r.region.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_acts_a_third_of_the_lease_before_its_expiry() {
        let s = Duration::from_secs;
        assert_eq!(fence_ttl(s(15)), s(10));
        assert_eq!(fence_margin(s(15)), s(5));
        // The smallest lease (5 s): the margin stays above a second.
        assert!(fence_margin(s(5)) >= s(1));
        assert!(fence_ttl(s(5)) + fence_margin(s(5)) == s(5));
    }

    fn view(name: &str, healthy: bool, sync_age: Option<u64>) -> RegionView {
        RegionView {
            region: name.into(),
            healthy,
            answering: healthy,
            sync_age: sync_age.map(Duration::from_secs),
            group_members: Some(0),
            running_consumers: 0,
        }
    }

    fn obs(regions: Vec<RegionView>, lease: Option<(&str, u64, bool)>) -> Observation {
        Observation {
            mode: GroupMode::ActivePassive,
            automatic: true,
            quorum_problem: None,
            accept_data_loss: false,
            max_sync_age: Duration::from_secs(30),
            regions,
            intent: None,
            acted_intent: None,
            lease: lease.map(|(h, e, expired)| LeaseView {
                holder: h.into(),
                epoch: e,
                expired,
            }),
            in_progress: None,
            previous_active: None,
            final_sync: FinalSync::NotStarted,
        }
    }

    #[test]
    fn first_activation_picks_the_first_healthy_region_at_epoch_one() {
        let o = obs(
            vec![view("east", false, None), view("west", true, None)],
            None,
        );
        let Step::Begin(m) = decide(&o) else {
            panic!("{:?}", decide(&o))
        };
        assert_eq!(
            (m.to.as_str(), m.epoch, m.reason),
            ("west", 1, MoveReason::Initial)
        );
    }

    #[test]
    fn a_dead_active_region_fails_over_to_the_first_fresh_standby() {
        let o = obs(
            vec![
                view("east", false, None),
                view("west", true, Some(60)),
                view("central", true, Some(1)),
            ],
            Some(("east", 3, false)),
        );
        let Step::Begin(m) = decide(&o) else {
            panic!("{:?}", decide(&o))
        };
        assert_eq!(
            (m.to.as_str(), m.epoch, m.kind),
            ("central", 4, MoveKind::Unplanned)
        );
        // It then waits for the Lease to expire before taking it.
        let mut o = o;
        o.in_progress = Some(m.clone());
        assert!(matches!(decide(&o), Step::WaitForLeaseExpiry { .. }));
        o.lease.as_mut().expect("lease").expired = true;
        assert_eq!(
            decide(&o),
            Step::TakeLease {
                to: "central".into(),
                epoch: 4,
                expect: Some(("east".into(), 3))
            }
        );
    }

    #[test]
    fn stale_standbys_block_failover_until_data_loss_is_accepted() {
        let mut o = obs(
            vec![view("east", false, None), view("west", true, Some(60))],
            Some(("east", 1, true)),
        );
        assert!(matches!(
            decide(&o),
            Step::Blocked {
                reason: "FailoverBlocked",
                ..
            }
        ));
        o.accept_data_loss = true;
        assert!(matches!(decide(&o), Step::Begin(_)));
    }

    #[test]
    fn two_regions_without_a_witness_move_only_on_request() {
        let mut o = obs(
            vec![view("east", false, None), view("west", true, Some(1))],
            Some(("east", 1, true)),
        );
        o.quorum_problem = Some("no witness".into());
        assert!(matches!(
            decide(&o),
            Step::Blocked {
                reason: "WitnessRequired",
                ..
            }
        ));
        // A person who knows east is gone moves the group by editing spec.activeRegion.
        o.intent = Some("west".into());
        let Step::Begin(m) = decide(&o) else {
            panic!("{:?}", decide(&o))
        };
        assert_eq!((m.to.as_str(), m.epoch), ("west", 2));
    }

    #[test]
    fn a_holder_whose_latest_probe_failed_is_not_renewed_but_keeps_the_group() {
        let mut o = obs(
            vec![view("east", true, Some(1)), view("west", true, Some(1))],
            Some(("east", 1, false)),
        );
        o.regions[0].answering = false;
        assert_eq!(
            decide(&o),
            Step::Steady {
                renew: false,
                acknowledge_intent: false
            }
        );
    }

    #[test]
    fn an_automatic_failover_is_not_undone_when_the_pinned_region_returns() {
        let mut o = obs(
            vec![view("east", true, Some(1)), view("west", true, Some(1))],
            Some(("west", 2, false)),
        );
        o.intent = Some("east".into());
        o.acted_intent = Some("east".into());
        o.previous_active = Some("east".into());
        assert_eq!(
            decide(&o),
            Step::Steady {
                renew: true,
                acknowledge_intent: false
            }
        );
    }

    #[test]
    fn standbys_stay_warm_except_where_a_move_leaves() {
        let mut o = obs(
            vec![
                view("east", false, Some(1)),
                view("west", true, Some(1)),
                view("central", true, Some(1)),
            ],
            Some(("east", 3, false)),
        );
        let what = |o: &Observation| {
            desired_consumers(o)
                .into_iter()
                .map(|(_, c)| c)
                .collect::<Vec<_>>()
        };
        use Consumers::{Run, Standby, Stop};
        assert_eq!(what(&o), [Run, Standby, Standby]);
        // East is down: the unplanned move stops east (its pods must not return with it);
        // west, the target, and central stay warm behind the gate.
        o.in_progress = Some(Move {
            from: Some("east".into()),
            to: "west".into(),
            reason: MoveReason::RegionDown,
            kind: MoveKind::Unplanned,
            epoch: 4,
        });
        assert_eq!(what(&o), [Stop, Standby, Standby]);
        // The Lease moved (TakeLease), the move is not finished yet: west's standby stays
        // (a scale-down here would kill the very pods that are about to take over).
        o.lease.as_mut().expect("a lease").holder = "west".into();
        assert_eq!(what(&o), [Stop, Standby, Standby]);
        // Finished: west runs, east is a standby again.
        o.in_progress = None;
        assert_eq!(what(&o), [Standby, Run, Standby]);
        o.mode = GroupMode::ActiveActive;
        assert_eq!(what(&o), [Run, Run, Run]);
    }

    #[test]
    fn a_planned_move_drains_translates_then_takes_the_lease() {
        let mut o = obs(
            vec![view("east", true, Some(1)), view("west", true, Some(1))],
            Some(("east", 1, false)),
        );
        o.intent = Some("west".into());
        o.acted_intent = Some("east".into());
        let Step::Begin(m) = decide(&o) else {
            panic!("{:?}", decide(&o))
        };
        assert_eq!(m.kind, MoveKind::Planned);
        o.in_progress = Some(m);
        assert_eq!(
            desired_consumers(&o),
            vec![
                ("east".to_string(), Consumers::Stop),
                ("west".to_string(), Consumers::Standby)
            ]
        );
        o.regions[0].running_consumers = 2;
        assert!(matches!(decide(&o), Step::WaitForGroupEmpty { .. }));
        o.regions[0].running_consumers = 0;
        o.regions[0].group_members = Some(1);
        assert!(matches!(decide(&o), Step::WaitForGroupEmpty { .. }));
        o.regions[0].group_members = Some(0);
        assert!(matches!(decide(&o), Step::RunFinalSync { epoch: 2, .. }));
        o.final_sync = FinalSync::Succeeded;
        assert!(matches!(decide(&o), Step::TakeLease { epoch: 2, .. }));
        o.lease = Some(LeaseView {
            holder: "west".into(),
            epoch: 2,
            expired: false,
        });
        assert!(matches!(decide(&o), Step::Finish(_)));
    }
}
