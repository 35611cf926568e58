//! The faults a drill injects, and the seeded choice among them (the same seed replays the
//! same sequence of faults and targets).

use std::fmt;
use std::str::FromStr;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Kill the active region (its cluster, pods and Kafka): an automatic, unplanned move.
    RegionDown,
    /// Edit `spec.activeRegion` to another healthy region: a planned move.
    Switchover,
    /// Move the group back to the region its last move left (`status.lastFailover.from`).
    Failback,
    /// Kill only the active region's aggregate cluster (its regional cluster, nodes and pods
    /// stay up): the group must move, and the region's records still reach the others.
    AggregateDown,
    /// A planned switchover with the operator's pods deleted in the middle of the move: the
    /// restarted operator must resume it from `status.pendingMove`, at the same epoch.
    OperatorKill,
    /// ActiveActive: kill the primary (active) region; a surviving region must become primary
    /// at epoch + 1 with no time in which two regions held the primary role.
    PrimaryKill,
    /// Per-region topology: cut only the active region's path to the coordination apiserver
    /// (the region, its cluster, pods and Kafka keep running). It must fence itself before
    /// another region takes the Lease; that region then moves the group (unplanned).
    RegionIsolate,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::RegionDown,
        Fault::Switchover,
        Fault::Failback,
        Fault::AggregateDown,
        Fault::OperatorKill,
        Fault::PrimaryKill,
        Fault::RegionIsolate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::RegionDown => "region-down",
            Fault::Switchover => "switchover",
            Fault::Failback => "failback",
            Fault::AggregateDown => "aggregate-down",
            Fault::OperatorKill => "operator-kill",
            Fault::PrimaryKill => "primary-kill",
            Fault::RegionIsolate => "region-isolate",
        }
    }

    /// Whether the operator moves by itself (detection counts) or on an edit.
    pub fn planned(self) -> bool {
        !matches!(
            self,
            Fault::RegionDown | Fault::AggregateDown | Fault::PrimaryKill | Fault::RegionIsolate
        )
    }

    /// Whether the fault needs the per-region topology (a coordination path per region),
    /// or cannot run there (the operators of the per-region setup are processes, not pods).
    pub fn topology_fit(self, per_region: bool) -> Result<(), String> {
        match (self, per_region) {
            (Fault::RegionIsolate, false) => Err(
                "region-isolate needs the per-region topology (--region-kubeconfig for every \
                 region, --coordination-kubeconfig): the stretched one has no path of a \
                 region's own to a coordination apiserver"
                    .into(),
            ),
            (Fault::OperatorKill, true) => Err(
                "operator-kill is not built for the per-region topology: it deletes operator \
                 pods of one cluster, and the per-region setup runs an operator process per region"
                    .into(),
            ),
            (Fault::PrimaryKill, true) => Err(
                "primary-kill (ActiveActive) is not built for the per-region topology: the \
                 primary role is sampled from one cluster's ConfigMap"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The region the fault kills, if any (the active one).
    pub fn kills_region(self) -> bool {
        matches!(self, Fault::RegionDown | Fault::PrimaryKill)
    }

    /// Whether the fault drills a group of this mode: `primary-kill` is the ActiveActive
    /// fault, every other one drills an ActivePassive group's moves.
    pub fn drills(self, active_active: bool) -> bool {
        (self == Fault::PrimaryKill) == active_active
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault {s:?}: one of region-down, switchover, failback, \
                     aggregate-down, operator-kill, region-isolate (ActivePassive), \
                     primary-kill (ActiveActive)"
                )
            })
    }
}

/// A small seeded generator (splitmix64): no dependency, the same sequence on every machine.
#[derive(Clone, Debug)]
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// One of `items`; `None` when empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        let i = (self.next_u64() % items.len() as u64) as usize;
        items.get(i)
    }
}

/// The faults that can run now: a failback needs a region the last move left that is healthy
/// again; a switchover and a region loss need another healthy region to move to; only
/// `primary-kill` drills an ActiveActive group, and only the others an ActivePassive one.
pub fn applicable(
    allowed: &[Fault],
    active: &str,
    healthy_others: &[String],
    failback_to: Option<&str>,
    active_active: bool,
) -> Vec<Fault> {
    allowed
        .iter()
        .copied()
        .filter(|f| f.drills(active_active))
        .filter(|f| match f {
            Fault::RegionDown
            | Fault::Switchover
            | Fault::AggregateDown
            | Fault::OperatorKill
            | Fault::PrimaryKill
            | Fault::RegionIsolate => !healthy_others.is_empty(),
            Fault::Failback => {
                failback_to.is_some_and(|r| r != active && healthy_others.iter().any(|h| h == r))
            }
        })
        .collect()
}

/// `cmd` with `{region}` replaced; run by `sh -c`.
pub fn fault_command(template: &str, region: &str) -> String {
    template.replace("{region}", region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_picks_the_same_faults() {
        let faults = Fault::ALL;
        let run = |seed| {
            let mut d = Dice::new(seed);
            (0..40)
                .map(|_| *d.pick(&faults).expect("non-empty"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        // Every kind comes up in a handful of drills.
        let picked = run(7);
        assert!(Fault::ALL.iter().all(|f| picked.contains(f)));
    }

    #[test]
    fn failback_needs_the_left_region_healthy_again() {
        let healthy = vec!["west".to_string()];
        assert_eq!(
            applicable(&Fault::ALL, "east", &healthy, Some("central"), false),
            vec![
                Fault::RegionDown,
                Fault::Switchover,
                Fault::AggregateDown,
                Fault::OperatorKill,
                Fault::RegionIsolate
            ]
        );
        let mut all_but_primary_kill = Fault::ALL[..5].to_vec();
        all_but_primary_kill.push(Fault::RegionIsolate);
        assert_eq!(
            applicable(&Fault::ALL, "east", &healthy, Some("west"), false),
            all_but_primary_kill
        );
        assert!(applicable(&Fault::ALL, "east", &[], Some("west"), false).is_empty());
    }

    #[test]
    fn only_primary_kill_drills_an_active_active_group() {
        let healthy = vec!["west".to_string()];
        assert_eq!(
            applicable(&Fault::ALL, "east", &healthy, Some("west"), true),
            vec![Fault::PrimaryKill]
        );
        assert!(applicable(&Fault::ALL, "east", &[], None, true).is_empty());
        assert!(Fault::PrimaryKill.kills_region() && !Fault::PrimaryKill.planned());
    }

    #[test]
    fn isolation_needs_the_per_region_topology_and_pod_kills_the_stretched_one() {
        assert!(Fault::RegionIsolate.topology_fit(true).is_ok());
        assert!(Fault::RegionIsolate.topology_fit(false).is_err());
        assert!(Fault::OperatorKill.topology_fit(true).is_err());
        assert!(Fault::PrimaryKill.topology_fit(true).is_err());
        for f in [Fault::RegionDown, Fault::Switchover, Fault::Failback] {
            assert!(f.topology_fit(true).is_ok() && f.topology_fit(false).is_ok());
        }
        assert!(!Fault::RegionIsolate.planned() && !Fault::RegionIsolate.kills_region());
    }

    #[test]
    fn faults_parse_by_their_names() {
        assert_eq!("region-down".parse::<Fault>(), Ok(Fault::RegionDown));
        assert_eq!("operator-kill".parse::<Fault>(), Ok(Fault::OperatorKill));
        assert_eq!("aggregate-down".parse::<Fault>(), Ok(Fault::AggregateDown));
        assert_eq!("primary-kill".parse::<Fault>(), Ok(Fault::PrimaryKill));
        assert_eq!("region-isolate".parse::<Fault>(), Ok(Fault::RegionIsolate));
        assert!("primary".parse::<Fault>().is_err());
        assert_eq!(
            fault_command("bash e2e/stack/stack.sh region-down {region}", "east"),
            "bash e2e/stack/stack.sh region-down east"
        );
    }
}
