//! Property tests of the failover state machine: random sequences of probe results, standby
//! freshness, spec edits, the data-loss override, final-sync outcomes, crashes (an operator
//! acting on an old observation) and a second, concurrent mover — run against a simulated
//! world whose only agreement primitive is a compare-and-swap on the Lease, as in Kubernetes.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tributary_core::failover::{
    Consumers, FinalSync, GroupMode, LeaseView, Move, MoveKind, Observation, RegionView, Step,
    decide, desired_consumers,
};

const REGIONS: [&str; 3] = ["east", "west", "central"];
const MAX_SYNC_AGE: u64 = 30;

#[derive(Clone, Debug)]
enum Event {
    /// A region goes down (its pods die) or comes back.
    Health(usize, bool),
    /// A standby's freshness changes (`None`: unknown).
    SyncAge(usize, Option<u64>),
    /// `spec.activeRegion` is edited (or cleared).
    Intent(Option<usize>),
    AcceptDataLoss(bool),
    /// Time passes: pods converge to their desired state, the next final sync fails or not, the
    /// Lease of an unrenewed holder expires.
    Tick {
        final_sync_fails: bool,
    },
    /// Operator `0` or `1` acts; `stale`: on the observation it made last time (a restarted or
    /// slow replica acting on what it saw before).
    Act {
        operator: usize,
        stale: bool,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => (0..3usize, any::<bool>()).prop_map(|(r, h)| Event::Health(r, h)),
        2 => (0..3usize, prop::option::weighted(0.9, 0..60u64)).prop_map(|(r, a)| Event::SyncAge(r, a)),
        1 => prop::option::of(0..3usize).prop_map(Event::Intent),
        1 => any::<bool>().prop_map(Event::AcceptDataLoss),
        4 => any::<bool>().prop_map(|f| Event::Tick { final_sync_fails: f }),
        8 => (0..2usize, prop::bool::weighted(0.2)).prop_map(|(operator, stale)| Event::Act { operator, stale }),
    ]
}

#[derive(Clone, Debug)]
struct Lease {
    holder: String,
    epoch: u64,
    resource_version: u64,
    expired: bool,
    /// Renewed since the last tick of time.
    renewed: bool,
}

#[derive(Clone, Debug, Default)]
struct Region {
    healthy: bool,
    sync_age: Option<u64>,
    running: u32,
    desired: u32,
}

#[derive(Debug)]
struct World {
    mode: GroupMode,
    regions: Vec<Region>,
    intent: Option<String>,
    accept: bool,
    lease: Option<Lease>,
    // status
    in_progress: Option<Move>,
    acted_intent: Option<String>,
    previous_active: Option<String>,
    final_sync: BTreeMap<(String, u64), FinalSync>,
    /// The next final round fails (the standby answers with an error).
    final_sync_fails: bool,
    /// Every successful Lease write that changed the holder or epoch.
    history: Vec<(String, u64)>,
    /// What each operator saw last: the observation and the Lease's resourceVersion then.
    seen: [Option<(Observation, Option<u64>)>; 2],
}

impl World {
    fn new(mode: GroupMode) -> Self {
        World {
            mode,
            regions: vec![
                Region {
                    healthy: true,
                    sync_age: Some(1),
                    ..Default::default()
                };
                3
            ],
            intent: None,
            accept: false,
            lease: None,
            in_progress: None,
            acted_intent: None,
            previous_active: None,
            final_sync: BTreeMap::new(),
            final_sync_fails: false,
            history: Vec::new(),
            seen: [None, None],
        }
    }

    fn members(&self, i: usize) -> Option<u32> {
        self.regions[i].healthy.then_some(self.regions[i].running)
    }

    fn observe(&self) -> (Observation, Option<u64>) {
        let final_sync = self
            .in_progress
            .as_ref()
            .and_then(|m| self.final_sync.get(&(m.to.clone(), m.epoch)).cloned())
            .unwrap_or(FinalSync::NotStarted);
        let o = Observation {
            mode: self.mode,
            automatic: true,
            quorum_problem: None,
            accept_data_loss: self.accept,
            max_sync_age: Duration::from_secs(MAX_SYNC_AGE),
            regions: REGIONS
                .iter()
                .enumerate()
                .map(|(i, r)| RegionView {
                    region: r.to_string(),
                    healthy: self.regions[i].healthy,
                    answering: self.regions[i].healthy,
                    sync_age: self.regions[i].sync_age.map(Duration::from_secs),
                    group_members: self.members(i),
                    running_consumers: self.regions[i].running,
                })
                .collect(),
            intent: self.intent.clone(),
            acted_intent: self.acted_intent.clone(),
            lease: self.lease.as_ref().map(|l| LeaseView {
                holder: l.holder.clone(),
                epoch: l.epoch,
                expired: l.expired,
            }),
            in_progress: self.in_progress.clone(),
            previous_active: self.previous_active.clone(),
            final_sync,
        };
        (o, self.lease.as_ref().map(|l| l.resource_version))
    }

    fn index(name: &str) -> usize {
        REGIONS
            .iter()
            .position(|r| *r == name)
            .expect("known region")
    }

    /// Pods of AP regions never overlap: at most one region runs consumers.
    fn check_no_split_brain(&self) -> Result<(), TestCaseError> {
        if self.mode == GroupMode::ActivePassive {
            let running: Vec<&str> = REGIONS
                .iter()
                .enumerate()
                .filter(|(i, _)| self.regions[*i].running > 0)
                .map(|(_, r)| *r)
                .collect();
            prop_assert!(
                running.len() <= 1,
                "two regions consume at once: {running:?}"
            );
        }
        Ok(())
    }

    fn apply(&mut self, e: &Event, single_operator: bool) -> Result<(), TestCaseError> {
        match e {
            Event::Health(i, h) => {
                self.regions[*i].healthy = *h;
                if !h {
                    self.regions[*i].running = 0; // a dead region's pods die with it
                }
            }
            Event::SyncAge(i, a) => self.regions[*i].sync_age = *a,
            Event::Intent(i) => self.intent = i.map(|i| REGIONS[i].to_string()),
            Event::AcceptDataLoss(a) => self.accept = *a,
            Event::Tick { final_sync_fails } => {
                for r in &mut self.regions {
                    if r.healthy {
                        r.running = r.desired;
                    }
                }
                self.final_sync_fails = *final_sync_fails;
                // A Lease nobody renewed for a tick has expired.
                if let Some(l) = &mut self.lease {
                    l.expired = !l.renewed;
                    l.renewed = false;
                }
            }
            Event::Act { operator, stale } => {
                let operator = if single_operator { 0 } else { *operator };
                let (o, rv) = match (&self.seen[operator], *stale) {
                    (Some(seen), true) => seen.clone(),
                    _ => self.observe(),
                };
                self.seen[operator] = Some((o.clone(), rv));
                // Scale the workloads first, as the reconciler does on every pass.
                for (name, c) in desired_consumers(&o) {
                    self.regions[Self::index(&name)].desired =
                        if c == Consumers::Run { 2 } else { 0 };
                }
                self.perform(&o, rv, decide(&o), single_operator && !*stale)?;
            }
        }
        if single_operator {
            self.check_no_split_brain()?;
        }
        Ok(())
    }

    fn perform(
        &mut self,
        o: &Observation,
        rv: Option<u64>,
        step: Step,
        fresh_single: bool,
    ) -> Result<(), TestCaseError> {
        match step {
            Step::Steady {
                renew,
                acknowledge_intent,
            } => {
                if renew
                    && let Some(l) = &mut self.lease
                    && Some(l.resource_version) == rv
                {
                    l.expired = false;
                    l.renewed = true;
                    l.resource_version += 1;
                }
                if acknowledge_intent {
                    self.acted_intent = o.intent.clone();
                }
            }
            Step::Begin(m) => {
                if fresh_single && m.kind == MoveKind::Unplanned {
                    let t = &o.regions[Self::index(&m.to)];
                    prop_assert!(t.healthy, "unplanned move to an unhealthy region: {m:?}");
                    prop_assert!(
                        o.accept_data_loss
                            || o.mode == GroupMode::ActiveActive
                            || t.sync_age.is_some_and(|a| a.as_secs() <= MAX_SYNC_AGE),
                        "move to a stale standby without the override: {m:?} {t:?}"
                    );
                }
                self.in_progress = Some(m);
                if o.intent.is_some() {
                    self.acted_intent = o.intent.clone();
                }
            }
            Step::RunFinalSync { to, epoch, .. } => {
                // Answered within the step; a crash before the status write loses the
                // answer, which a stale `Act` (acting on an old observation) covers.
                let result = if self.final_sync_fails {
                    FinalSync::Failed("broker refused".into())
                } else {
                    FinalSync::Succeeded
                };
                self.final_sync.insert((to, epoch), result);
            }
            Step::RetryFinalSync { .. } => {
                if let Some(m) = &o.in_progress {
                    self.final_sync.remove(&(m.to.clone(), m.epoch));
                }
            }
            Step::TakeLease { to, epoch, expect } => {
                let current = self.lease.as_ref().map(|l| l.resource_version);
                if current != rv {
                    return Ok(()); // the compare-and-swap lost: someone wrote in between
                }
                let held = self.lease.as_ref().map(|l| (l.holder.clone(), l.epoch));
                prop_assert_eq!(&held, &expect, "the CAS must expect what was observed");
                prop_assert_eq!(epoch, held.as_ref().map(|(_, e)| e + 1).unwrap_or(1));
                if fresh_single
                    && let Some(m) = &o.in_progress
                    && m.kind == MoveKind::Planned
                    && o.mode == GroupMode::ActivePassive
                    && let Some(from) = &m.from
                {
                    let s = &self.regions[Self::index(from)];
                    prop_assert!(
                        s.running == 0 && self.members(Self::index(from)) == Some(0),
                        "planned move took the Lease before {from} was empty: {s:?}"
                    );
                    prop_assert_eq!(o.final_sync.clone(), FinalSync::Succeeded);
                }
                self.lease = Some(Lease {
                    holder: to.clone(),
                    epoch,
                    resource_version: current.unwrap_or(0) + 1,
                    expired: false,
                    renewed: true,
                });
                self.history.push((to, epoch));
            }
            Step::Finish(m) => {
                self.previous_active = m.from.clone();
                self.in_progress = None;
            }
            Step::Abandon { forget_intent, .. } => {
                self.in_progress = None;
                if forget_intent {
                    self.acted_intent = None;
                }
            }
            Step::WaitForGroupEmpty { .. }
            | Step::WaitForLeaseExpiry { .. }
            | Step::Blocked { .. } => {}
        }
        Ok(())
    }

    fn check_history(&self) -> Result<(), TestCaseError> {
        for (i, (_, epoch)) in self.history.iter().enumerate() {
            prop_assert_eq!(
                *epoch,
                i as u64 + 1,
                "epochs rise by one per move: {:?}",
                self.history
            );
        }
        Ok(())
    }
}

fn mode() -> impl Strategy<Value = GroupMode> {
    prop_oneof![
        Just(GroupMode::ActivePassive),
        Just(GroupMode::ActiveActive)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Two movers, stale observations: the Lease alone keeps one holder per epoch, +1 per move.
    #[test]
    fn concurrent_movers_never_share_an_epoch(mode in mode(), events in prop::collection::vec(event(), 1..300)) {
        let mut w = World::new(mode);
        for e in &events {
            w.apply(e, false)?;
        }
        w.check_history()?;
    }

    /// One operator (leader election), restarted at random: no split brain in ActivePassive,
    /// never a move to an unhealthy or stale region without the override, a planned move
    /// takes the Lease only once the source is empty and translated.
    #[test]
    fn one_operator_never_splits_the_group_or_skips_a_check(mode in mode(), events in prop::collection::vec(event(), 1..300)) {
        let mut w = World::new(mode);
        for e in &events {
            w.apply(e, true)?;
        }
        w.check_history()?;
    }

    /// Whatever happened, once the world is calm (every region healthy and fresh) the group
    /// settles: the operator stops moving and one region holds the Lease.
    #[test]
    fn a_calm_world_settles(mode in mode(), events in prop::collection::vec(event(), 1..200)) {
        let mut w = World::new(mode);
        for e in &events {
            w.apply(e, true)?;
        }
        for i in 0..3 {
            w.regions[i].healthy = true;
            w.regions[i].sync_age = Some(1);
        }
        for _ in 0..20 {
            w.apply(&Event::Act { operator: 0, stale: false }, true)?;
            w.apply(&Event::Tick { final_sync_fails: false }, true)?;
        }
        let (o, _) = w.observe();
        prop_assert!(w.lease.is_some() && w.in_progress.is_none(), "{:?}", w);
        prop_assert!(matches!(decide(&o), Step::Steady { .. }), "{:?}", decide(&o));
        w.check_history()?;
    }
}
