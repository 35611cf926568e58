//! The verdict of a series of drills, from the load's own event streams (pure): lost and
//! skipped records, duplicates raw and after dedupe with the published watermarks, the
//! split-brain window, non-monotonic consumption ([`super::monotonic`]), the epoch's steps,
//! and the RTO split into its phases.
//!
//! Attribution: drill `i` owns the time from its fault to the next drill's fault (the first
//! drill also owns the warm-up before it). A record is charged to the drill in whose time it
//! was acknowledged (lost, skipped); a repeated consumption to the drill in whose time it
//! happened (duplicates), and deduped with that drill's move's watermarks.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::events::{Ack, Consumption, SessionMark};
use super::faults::Fault;
use super::monotonic::{NonMonotonic, non_monotonic};
use super::primary::{PrimarySample, primary_overlaps};

/// Records the killed region acknowledged within this long before its loss may die with it
/// (not yet replicated): they are not a surviving region's records.
pub const KILL_MARGIN_MS: i64 = 5_000;

/// Consumption events of one region closer than this belong to one stretch of activity.
pub const ACTIVITY_GAP_MS: i64 = 1_000;

/// When each phase of a move was reached (ms since the epoch), as far as status tells.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Phases {
    /// `status.pendingMove.detected`: the active region first seen down (unplanned moves).
    pub detected_ms: Option<i64>,
    /// `status.pendingMove.started`: the operator decided to move.
    pub decided_ms: Option<i64>,
    /// `status.pendingMove.plan.received`: the translation arrived.
    pub translated_ms: Option<i64>,
    /// `status.lastFailover.finished`: committed in the new region.
    pub committed_ms: Option<i64>,
    /// The target workload first seen with a ready replica (polled by the drill).
    pub ready_ms: Option<i64>,
    /// The first record the target region's consumers consumed after the fault
    /// (VerifiableConsumer's own timestamp).
    pub first_consumed_ms: Option<i64>,
    /// ActiveActive: the `<name>-active` ConfigMap first seen naming the new primary at the
    /// new epoch (its consumers never stopped: this is the move's end).
    pub primary_ms: Option<i64>,
}

/// What the runner observed of one drill.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrillRun {
    pub index: usize,
    pub fault: Option<Fault>,
    pub from: String,
    pub to: String,
    /// The region the fault killed (restored before the drill settled).
    pub killed_region: Option<String>,
    /// The fault injected (region-down started, or the spec edited).
    pub started_ms: i64,
    /// aggregate-down: the region whose aggregate cluster was killed (its records still count).
    pub killed_aggregate: Option<String>,
    /// The killed region (or aggregate cluster) restored.
    pub restored_ms: Option<i64>,
    /// operator-kill: when the operator's pods were deleted, and whether a move was pending
    /// then (status.pendingMove seen: the kill hit the middle of the move).
    pub operator_killed_ms: Option<i64>,
    pub operator_killed_mid_move: Option<bool>,
    /// region-isolate: the region cut off from the coordination apiserver (healed before the
    /// drill settled; its cluster, pods and Kafka ran on, so its records count), when its
    /// `<name>-active` ConfigMap was first seen `fenced: "true"`, and when another region took
    /// the Lease (its `acquireTime`, else when the drill first saw the new holder).
    pub isolated_region: Option<String>,
    pub fenced_ms: Option<i64>,
    pub lease_taken_ms: Option<i64>,
    /// Settled again: Ready, every region healthy, no move pending.
    pub settled_ms: i64,
    pub epoch_before: i64,
    pub epoch_after: i64,
    /// Every distinct epoch status showed while the drill ran, in order.
    pub epochs_seen: Vec<i64>,
    pub phases: Phases,
    /// The move's published watermarks for the drill's topic: `(source region, partition)` →
    /// offset.
    #[serde(serialize_with = "watermark_list")]
    pub watermarks: HashMap<(String, i32), i64>,
    /// The plan's bounds (`pendingMove.plan.maxDuplicates`, `lastFailover.maxDuplicatesAfterDedupe`).
    pub max_duplicates: Option<i64>,
    pub max_duplicates_after_dedupe: Option<i64>,
    /// `status.lastFailover.rtoSeconds`, the operator's own figure.
    pub operator_rto_s: Option<f64>,
    /// Why the drill did not complete (a timeout), if it did not.
    pub error: Option<String>,
    /// Standby regions whose group members the operator reported (`StandbyHasMembers`) and
    /// the drill repaired with `--standby-members-repair-cmd`: an environment fault (members
    /// a restarted broker loaded and never expires), not part of the verdict.
    pub standby_member_repairs: Vec<StandbyMemberRepair>,
}

/// One repair of a standby region's reported members.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StandbyMemberRepair {
    pub region: String,
    pub at_ms: i64,
    /// The members status counted there, and the Degraded condition's message.
    pub members: i32,
    pub message: String,
    /// The repair command's failure, if it failed.
    pub error: Option<String>,
}

/// The watermarks as `[{sourceRegion, partition, offset}]`, sorted (JSON has no tuple keys).
fn watermark_list<S: serde::Serializer>(
    w: &HashMap<(String, i32), i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut v: Vec<_> = w.iter().collect();
    v.sort();
    s.collect_seq(v.into_iter().map(|((region, partition), offset)| {
        serde_json::json!({"sourceRegion": region, "partition": partition, "offset": offset})
    }))
}

/// The RTO split into phases (seconds); a phase whose timestamps status does not have is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseSplit {
    pub detect_s: Option<f64>,
    pub decide_s: Option<f64>,
    pub translate_s: Option<f64>,
    pub commit_s: Option<f64>,
    pub consumers_ready_s: Option<f64>,
    pub first_record_s: Option<f64>,
}

/// The verdict of one drill.
#[derive(Clone, Debug, Serialize)]
pub struct DrillVerdict {
    pub index: usize,
    pub fault: Option<Fault>,
    pub from: String,
    pub to: String,
    /// Records acknowledged in the drill's time.
    pub acked: usize,
    /// Acknowledged by a surviving region, never consumed.
    pub lost: usize,
    /// A few lost values, to look for.
    pub lost_examples: Vec<String>,
    /// Never consumed while a later record of the same source partition was: a hole.
    pub skipped: usize,
    /// Acknowledged by the killed region just before or while it was down, never consumed
    /// (not a surviving region's record: reported, not failed).
    pub killed_region_unconsumed: usize,
    pub dups_raw: usize,
    pub dups_deduped: usize,
    /// The plan's bound on raw duplicates (`pendingMove.plan.maxDuplicates`).
    pub dups_raw_bound: Option<i64>,
    /// The plan's bound on duplicates after dedupe, and whether both bounds held.
    pub dups_deduped_bound: Option<i64>,
    pub dups_within_bound: bool,
    /// Seconds during which two regions consumed the group at once (ActivePassive), or may
    /// both have acted as the primary (ActiveActive, [`super::primary`]).
    pub split_brain_s: f64,
    /// Records consumed by one region while another region was consuming.
    pub split_brain_records: usize,
    /// Backwards steps within a consumer session outside a rebalance (see
    /// [`super::monotonic`]), and the first few of them.
    pub non_monotonic: usize,
    pub non_monotonic_examples: Vec<NonMonotonic>,
    pub epoch_before: i64,
    pub epoch_after: i64,
    pub epoch_ok: bool,
    /// Fault → first record consumed in the new region.
    pub rto_s: Option<f64>,
    pub phases: PhaseSplit,
    pub operator_rto_s: Option<f64>,
    /// region-isolate: whether the isolated holder was seen fenced before another region
    /// took the Lease (never seen fenced: `false`), and by how many seconds.
    pub fenced_before_taken: Option<bool>,
    pub fence_lead_s: Option<f64>,
    pub error: Option<String>,
    /// Standby regions whose reported members the drill repaired ([`StandbyMemberRepair`]).
    pub standby_member_repairs: usize,
}

impl DrillVerdict {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.skipped == 0
            && self.split_brain_s == 0.0
            && self.split_brain_records == 0
            && self.non_monotonic == 0
            && self.epoch_ok
            && self.fenced_before_taken != Some(false)
            && self.error.is_none()
    }
}

fn secs(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    Some((to? - from?) as f64 / 1000.0)
}

impl PhaseSplit {
    pub fn of(started_ms: i64, p: &Phases) -> Self {
        let decided_from = p.detected_ms.or(Some(started_ms));
        PhaseSplit {
            detect_s: p.detected_ms.and(secs(Some(started_ms), p.detected_ms)),
            decide_s: secs(decided_from, p.decided_ms),
            translate_s: secs(p.decided_ms, p.translated_ms),
            commit_s: secs(p.translated_ms.or(p.decided_ms), p.committed_ms),
            consumers_ready_s: secs(p.committed_ms, p.ready_ms),
            first_record_s: secs(p.ready_ms, p.first_consumed_ms),
        }
    }
}

/// The drill whose time holds `t`: the last that started at or before it (the first drill
/// also holds everything before it).
fn owner(runs: &[DrillRun], t: i64) -> usize {
    runs.iter().rposition(|r| r.started_ms <= t).unwrap_or(0)
}

/// Whether `ack` came from a region while it was being killed or down.
fn from_killed_region(runs: &[DrillRun], ack: &Ack) -> bool {
    runs.iter().any(|r| {
        r.killed_region.as_deref() == Some(ack.region.as_str())
            && ack.at_ms >= r.started_ms - KILL_MARGIN_MS
            && ack.at_ms <= r.restored_ms.unwrap_or(r.settled_ms)
    })
}

/// Stretches of activity per region: `[first, last]` of runs of events closer than
/// [`ACTIVITY_GAP_MS`].
fn activity(consumed: &[Consumption]) -> BTreeMap<&str, Vec<(i64, i64)>> {
    let mut times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for c in consumed {
        times.entry(c.region.as_str()).or_default().push(c.at_ms);
    }
    times
        .into_iter()
        .map(|(region, mut ts)| {
            ts.sort_unstable();
            let mut out: Vec<(i64, i64)> = Vec::new();
            for t in ts {
                match out.last_mut() {
                    Some((_, last)) if t - *last <= ACTIVITY_GAP_MS => *last = t,
                    _ => out.push((t, t)),
                }
            }
            (region, out)
        })
        .collect()
}

/// The stretches of time during which two or more regions were active at once.
pub fn overlaps(consumed: &[Consumption]) -> Vec<(i64, i64)> {
    overlap_of(activity(consumed).values().flatten())
}

/// The stretches of time covered by two or more of `stretches` (each region's own stretches
/// must not overlap each other).
pub fn overlap_of<'a>(stretches: impl IntoIterator<Item = &'a (i64, i64)>) -> Vec<(i64, i64)> {
    let mut edges: Vec<(i64, i32)> = stretches
        .into_iter()
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    // At one instant, an end before a start: touching stretches do not overlap.
    edges.sort_unstable();
    let mut out = Vec::new();
    let mut open = 0;
    let mut since = 0;
    for (t, d) in edges {
        if d > 0 {
            open += 1;
            if open == 2 {
                since = t;
            }
        } else {
            if open == 2 && t > since {
                out.push((since, t));
            }
            open -= 1;
        }
    }
    out
}

/// Records consumed by a region inside another region's stretch of activity.
fn interleaved(consumed: &[Consumption]) -> Vec<i64> {
    let stretches = activity(consumed);
    consumed
        .iter()
        .filter(|c| {
            stretches
                .iter()
                .filter(|(r, _)| **r != c.region.as_str())
                .any(|(_, s)| s.iter().any(|(a, b)| *a < c.at_ms && c.at_ms < *b))
        })
        .map(|c| c.at_ms)
        .collect()
}

/// The verdict of every drill of `runs` (in order of their faults).
pub fn judge(
    runs: &[DrillRun],
    acks: &[Ack],
    consumed: &[Consumption],
    sessions: &[SessionMark],
    primary: &[PrimarySample],
    active_passive: bool,
) -> Vec<DrillVerdict> {
    let mut verdicts: Vec<DrillVerdict> = runs
        .iter()
        .map(|r| DrillVerdict {
            index: r.index,
            fault: r.fault,
            from: r.from.clone(),
            to: r.to.clone(),
            acked: 0,
            lost: 0,
            lost_examples: Vec::new(),
            skipped: 0,
            killed_region_unconsumed: 0,
            dups_raw: 0,
            dups_deduped: 0,
            dups_raw_bound: r.max_duplicates,
            dups_deduped_bound: r.max_duplicates_after_dedupe,
            dups_within_bound: true,
            standby_member_repairs: r.standby_member_repairs.len(),
            split_brain_s: 0.0,
            split_brain_records: 0,
            non_monotonic: 0,
            non_monotonic_examples: Vec::new(),
            epoch_before: r.epoch_before,
            epoch_after: r.epoch_after,
            epoch_ok: r.epoch_after == r.epoch_before + 1
                && r.epochs_seen
                    .iter()
                    .all(|e| *e == r.epoch_before || *e == r.epoch_before + 1),
            rto_s: if active_passive {
                secs(Some(r.started_ms), r.phases.first_consumed_ms)
            } else {
                secs(Some(r.started_ms), r.phases.primary_ms)
            },
            phases: {
                let mut split = PhaseSplit::of(r.started_ms, &r.phases);
                if !active_passive {
                    // Every region kept consuming: there is no first record of a move.
                    split.first_record_s = None;
                }
                split
            },
            operator_rto_s: r.operator_rto_s,
            fenced_before_taken: r.isolated_region.as_ref().map(|_| {
                r.fenced_ms
                    .zip(r.lease_taken_ms)
                    .is_some_and(|(fenced, taken)| fenced < taken)
            }),
            fence_lead_s: r
                .isolated_region
                .as_ref()
                .and(secs(r.fenced_ms, r.lease_taken_ms)),
            error: r.error.clone(),
        })
        .collect();
    if runs.is_empty() {
        return verdicts;
    }

    let mut times: HashMap<&str, Vec<i64>> = HashMap::new();
    // ActiveActive: every region's group consumes every record; consumed per region.
    let mut by_region: HashMap<&str, HashMap<&str, Vec<i64>>> = HashMap::new();
    for c in consumed {
        times.entry(c.value.as_str()).or_default().push(c.at_ms);
        by_region
            .entry(c.region.as_str())
            .or_default()
            .entry(c.value.as_str())
            .or_default()
            .push(c.at_ms);
    }
    let mut regions: Vec<&str> = acks.iter().map(|a| a.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    // The highest consumed offset per source partition: an unconsumed record below it is a hole.
    let mut highest: HashMap<(&str, i32), i64> = HashMap::new();
    let mut provenance: HashMap<&str, &Ack> = HashMap::new();
    for a in acks {
        provenance.insert(a.value.as_str(), a);
        if times.contains_key(a.value.as_str()) {
            let h = highest
                .entry((a.region.as_str(), a.partition))
                .or_insert(-1);
            *h = (*h).max(a.offset);
        }
    }
    for a in acks {
        let i = owner(runs, a.at_ms);
        let v = &mut verdicts[i];
        v.acked += 1;
        if !active_passive && !from_killed_region(runs, a) {
            // Every surviving region's group must consume it (the killed region's too, once
            // it is back, but that is not this drill's promise).
            for region in regions
                .iter()
                .filter(|r| runs[i].killed_region.as_deref() != Some(**r))
            {
                let in_region = by_region
                    .get(region)
                    .is_some_and(|m| m.contains_key(a.value.as_str()));
                if !in_region && times.contains_key(a.value.as_str()) {
                    v.lost += 1;
                    if v.lost_examples.len() < 5 {
                        v.lost_examples.push(format!(
                            "{} ({}, not consumed in {region})",
                            a.value, a.region
                        ));
                    }
                }
            }
        }
        if times.contains_key(a.value.as_str()) {
            continue;
        }
        if highest
            .get(&(a.region.as_str(), a.partition))
            .is_some_and(|h| a.offset < *h)
        {
            v.skipped += 1;
        }
        if from_killed_region(runs, a) {
            v.killed_region_unconsumed += 1;
        } else {
            v.lost += 1;
            if v.lost_examples.len() < 5 {
                v.lost_examples.push(format!("{} ({})", a.value, a.region));
            }
        }
    }

    // Duplicates: a record consumed again by the group (ActivePassive: anywhere, a move
    // re-reads in another region) or by one region's group (ActiveActive).
    let mut repeated: Vec<(&str, &mut Vec<i64>)> = if active_passive {
        times.iter_mut().map(|(v, ts)| (*v, ts)).collect()
    } else {
        by_region
            .values_mut()
            .flat_map(|m| m.iter_mut().map(|(v, ts)| (*v, ts)))
            .collect()
    };
    for (value, ts) in &mut repeated {
        ts.sort_unstable();
        for t in ts.iter().skip(1) {
            let i = owner(runs, *t);
            verdicts[i].dups_raw += 1;
            let dropped = provenance.get(value).is_some_and(|a| {
                runs[i]
                    .watermarks
                    .get(&(a.region.clone(), a.partition))
                    .is_some_and(|w| a.offset < *w)
            });
            if !dropped {
                verdicts[i].dups_deduped += 1;
            }
        }
    }
    for v in &mut verdicts {
        v.dups_within_bound = v
            .dups_deduped_bound
            .is_none_or(|b| v.dups_deduped as i64 <= b)
            && v.dups_raw_bound.is_none_or(|b| v.dups_raw as i64 <= b);
    }

    for step in non_monotonic(consumed, sessions, acks) {
        let v = &mut verdicts[owner(runs, step.at_ms)];
        v.non_monotonic += 1;
        if v.non_monotonic_examples.len() < 5 {
            v.non_monotonic_examples.push(step);
        }
    }

    if active_passive {
        for (a, b) in overlaps(consumed) {
            verdicts[owner(runs, a)].split_brain_s += (b - a) as f64 / 1000.0;
        }
        for t in interleaved(consumed) {
            verdicts[owner(runs, t)].split_brain_records += 1;
        }
    } else {
        for (a, b) in primary_overlaps(primary) {
            verdicts[owner(runs, a)].split_brain_s += (b - a) as f64 / 1000.0;
        }
    }
    verdicts
}

/// Nearest-rank percentile of `v` (`p` in 0..=1); `None` when empty.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// The figures of the whole series, and the one summary line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub lost: usize,
    pub skipped: usize,
    pub dups_raw_max: usize,
    pub dups_deduped_max: usize,
    pub rto_p50_s: Option<f64>,
    pub rto_p99_s: Option<f64>,
    pub rto_max_s: Option<f64>,
    pub split_brain_s: f64,
    pub split_brain_records: usize,
    pub non_monotonic: usize,
    pub epoch_ok: bool,
    /// Drills that did not complete (timeouts).
    pub errors: usize,
    /// Drills whose duplicates after dedupe exceeded the plan's bound.
    pub over_bound: usize,
    /// region-isolate drills in which the Lease moved before the isolated holder was seen
    /// fenced.
    pub fence_violations: usize,
    /// Standby members reported and repaired by a broker restart (environment faults).
    pub standby_member_repairs: usize,
    /// The repairs made while the warm-up waited for the group, before the first drill
    /// (the summary line counts them with the drills' own).
    pub warmup_standby_member_repairs: Vec<StandbyMemberRepair>,
}

impl Summary {
    pub fn of(verdicts: &[DrillVerdict]) -> Self {
        let rtos: Vec<f64> = verdicts.iter().filter_map(|v| v.rto_s).collect();
        Summary {
            n: verdicts.len(),
            lost: verdicts.iter().map(|v| v.lost).sum(),
            skipped: verdicts.iter().map(|v| v.skipped).sum(),
            dups_raw_max: verdicts.iter().map(|v| v.dups_raw).max().unwrap_or(0),
            dups_deduped_max: verdicts.iter().map(|v| v.dups_deduped).max().unwrap_or(0),
            rto_p50_s: percentile(&rtos, 0.5),
            rto_p99_s: percentile(&rtos, 0.99),
            rto_max_s: percentile(&rtos, 1.0),
            split_brain_s: verdicts.iter().map(|v| v.split_brain_s).sum(),
            split_brain_records: verdicts.iter().map(|v| v.split_brain_records).sum(),
            non_monotonic: verdicts.iter().map(|v| v.non_monotonic).sum(),
            epoch_ok: verdicts.iter().all(|v| v.epoch_ok),
            errors: verdicts.iter().filter(|v| v.error.is_some()).count(),
            fence_violations: verdicts
                .iter()
                .filter(|v| v.fenced_before_taken == Some(false))
                .count(),
            over_bound: verdicts.iter().filter(|v| !v.dups_within_bound).count(),
            standby_member_repairs: verdicts.iter().map(|v| v.standby_member_repairs).sum(),
            warmup_standby_member_repairs: Vec::new(),
        }
    }

    /// The series' figures with the warm-up's repairs.
    pub fn with_warmup_repairs(self, repairs: Vec<StandbyMemberRepair>) -> Self {
        Self {
            warmup_standby_member_repairs: repairs,
            ..self
        }
    }

    /// Nothing lost or skipped, no split brain, every epoch +1, every drill completed.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.skipped == 0
            && self.split_brain_s == 0.0
            && self.split_brain_records == 0
            && self.non_monotonic == 0
            && self.epoch_ok
            && self.errors == 0
            && self.fence_violations == 0
            && self.n > 0
    }

    /// `drill: n=.. lost=.. skipped=.. dups_raw_max=.. dups_deduped_max=.. rto_p50_s=..
    /// rto_p99_s=.. split_brain_s=.. non_monotonic=.. epoch_ok=.. over_bound=..
    /// standby_member_repairs=..` (the last two are reported, not failed: a drill over the
    /// plan's duplicate bound shows in its row, a repair — the drills' and the warm-up's —
    /// in the report).
    pub fn line(&self) -> String {
        let s = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "nan".into());
        format!(
            "drill: n={} lost={} skipped={} dups_raw_max={} dups_deduped_max={} rto_p50_s={} rto_p99_s={} split_brain_s={:.1} non_monotonic={} epoch_ok={} over_bound={} standby_member_repairs={}",
            self.n,
            self.lost,
            self.skipped,
            self.dups_raw_max,
            self.dups_deduped_max,
            s(self.rto_p50_s),
            s(self.rto_p99_s),
            self.split_brain_s,
            self.non_monotonic,
            self.epoch_ok,
            self.over_bound,
            self.standby_member_repairs + self.warmup_standby_member_repairs.len()
        )
    }
}

/// Per fault kind: (drills, RTO p50, p99, max, duplicates after dedupe max).
pub fn by_fault(verdicts: &[DrillVerdict]) -> BTreeMap<String, serde_json::Value> {
    let mut kinds: BTreeMap<String, Vec<&DrillVerdict>> = BTreeMap::new();
    for v in verdicts {
        let k = v
            .fault
            .map(|f| f.to_string())
            .unwrap_or_else(|| "none".into());
        kinds.entry(k).or_default().push(v);
    }
    kinds
        .into_iter()
        .map(|(k, vs)| {
            let rtos: Vec<f64> = vs.iter().filter_map(|v| v.rto_s).collect();
            let value = serde_json::json!({
                "n": vs.len(),
                "lost": vs.iter().map(|v| v.lost).sum::<usize>(),
                "rto_p50_s": percentile(&rtos, 0.5),
                "rto_p99_s": percentile(&rtos, 0.99),
                "rto_max_s": percentile(&rtos, 1.0),
                "dups_raw_max": vs.iter().map(|v| v.dups_raw).max().unwrap_or(0),
                "dups_deduped_max": vs.iter().map(|v| v.dups_deduped).max().unwrap_or(0),
                "non_monotonic": vs.iter().map(|v| v.non_monotonic).sum::<usize>(),
                "split_brain_s": vs.iter().map(|v| v.split_brain_s).sum::<f64>(),
                "epoch_ok": vs.iter().all(|v| v.epoch_ok),
                "fenced_before_taken": vs.iter().filter_map(|v| v.fenced_before_taken)
                    .reduce(|a, b| a && b),
                "fence_lead_s_min": vs.iter().filter_map(|v| v.fence_lead_s).reduce(f64::min),
            });
            (k, value)
        })
        .collect()
}

/// The values consumed at least once (for waiting until the load drained).
pub fn consumed_values(consumed: &[Consumption]) -> HashSet<&str> {
    consumed.iter().map(|c| c.value.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(region: &str, value: &str, partition: i32, offset: i64, at_ms: i64) -> Ack {
        Ack {
            region: region.into(),
            value: value.into(),
            partition,
            offset,
            at_ms,
        }
    }

    /// A consumption with no position: a session of its own, so that no step is backwards.
    fn consumed(region: &str, value: &str, at_ms: i64) -> Consumption {
        Consumption {
            region: region.into(),
            value: value.into(),
            at_ms,
            session: format!("{region}/{value}/{at_ms}"),
            ..Consumption::default()
        }
    }

    fn run(index: usize, fault: Fault, started_ms: i64) -> DrillRun {
        DrillRun {
            index,
            fault: Some(fault),
            from: "east".into(),
            to: "west".into(),
            started_ms,
            settled_ms: started_ms + 20_000,
            epoch_before: index as i64 + 1,
            epoch_after: index as i64 + 2,
            epochs_seen: vec![index as i64 + 1, index as i64 + 2],
            ..DrillRun::default()
        }
    }

    #[test]
    fn an_acknowledged_record_never_consumed_is_lost_and_a_hole_is_a_skip() {
        let runs = vec![run(0, Fault::Switchover, 10_000)];
        let acks = vec![
            ack("west", "1.0", 0, 0, 11_000),
            ack("west", "1.1", 0, 1, 11_100),
            ack("west", "1.2", 0, 2, 11_200),
            ack("west", "1.3", 1, 0, 11_300),
        ];
        let c = vec![
            consumed("west", "1.0", 12_000),
            consumed("west", "1.2", 12_000),
        ];
        let v = judge(&runs, &acks, &c, &[], &[], true);
        assert_eq!(v[0].acked, 4);
        assert_eq!(v[0].lost, 2, "1.1 and 1.3 never consumed");
        assert_eq!(
            v[0].skipped, 1,
            "1.1 is below the consumed 1.2 of its partition"
        );
        assert!(!v[0].passed());
        let s = Summary::of(&v);
        assert!(!s.passed());
        assert_eq!((s.lost, s.skipped), (2, 1));
    }

    #[test]
    fn the_killed_regions_last_records_are_not_a_survivors_loss() {
        let mut r = run(0, Fault::RegionDown, 10_000);
        r.killed_region = Some("east".into());
        r.restored_ms = Some(30_000);
        let acks = vec![
            ack("east", "1.0", 0, 0, 1_000),
            ack("east", "1.1", 0, 1, 8_000),
            ack("west", "2.0", 0, 0, 8_000),
        ];
        let c = vec![
            consumed("east", "1.0", 2_000),
            consumed("west", "2.0", 15_000),
        ];
        let v = judge(&[r], &acks, &c, &[], &[], true);
        assert_eq!(v[0].lost, 0);
        assert_eq!(v[0].killed_region_unconsumed, 1);
        assert!(v[0].passed());
    }

    #[test]
    fn an_isolated_holder_must_be_seen_fenced_before_the_lease_moves() {
        let isolated = |fenced_ms: Option<i64>| {
            let mut r = run(0, Fault::RegionIsolate, 10_000);
            r.isolated_region = Some("east".into());
            r.fenced_ms = fenced_ms;
            r.lease_taken_ms = Some(17_000);
            r
        };
        let fenced_first = judge(&[isolated(Some(14_700))], &[], &[], &[], &[], true);
        assert_eq!(fenced_first[0].fenced_before_taken, Some(true));
        assert_eq!(fenced_first[0].fence_lead_s, Some(2.3));
        assert!(fenced_first[0].passed());
        for late_or_never in [Some(17_500), None] {
            let v = judge(&[isolated(late_or_never)], &[], &[], &[], &[], true);
            assert_eq!(v[0].fenced_before_taken, Some(false));
            assert!(!v[0].passed());
            assert!(!Summary::of(&v).passed());
        }
        // Other faults carry no fence verdict.
        let other = judge(
            &[run(0, Fault::RegionDown, 10_000)],
            &[],
            &[],
            &[],
            &[],
            true,
        );
        assert_eq!(other[0].fenced_before_taken, None);
    }

    #[test]
    fn duplicates_below_the_moves_watermarks_are_dropped_by_dedupe() {
        let mut r = run(0, Fault::Switchover, 10_000);
        r.watermarks.insert(("east".into(), 0), 2);
        r.max_duplicates_after_dedupe = Some(0);
        let acks = vec![
            ack("east", "1.0", 0, 0, 1_000),
            ack("east", "1.1", 0, 1, 1_000),
            ack("east", "1.2", 0, 2, 1_000),
        ];
        let c = vec![
            consumed("east", "1.0", 2_000),
            consumed("east", "1.1", 2_000),
            consumed("east", "1.2", 9_000),
            // Read again in west after the move: 1.0 and 1.1 are below the watermark 2.
            consumed("west", "1.0", 12_000),
            consumed("west", "1.1", 12_000),
            consumed("west", "1.2", 12_000),
        ];
        let v = judge(&[r], &acks, &c, &[], &[], true);
        assert_eq!(v[0].dups_raw, 3);
        assert_eq!(v[0].dups_deduped, 1, "1.2 is at the watermark: not covered");
        assert!(!v[0].dups_within_bound);
    }

    #[test]
    fn two_regions_consuming_at_once_is_split_brain_and_a_handover_is_not() {
        let runs = vec![run(0, Fault::Switchover, 10_000)];
        let handover = vec![
            consumed("east", "1.0", 9_000),
            consumed("east", "1.1", 9_800),
            consumed("west", "1.2", 10_500),
            consumed("west", "1.3", 11_000),
        ];
        let v = judge(&runs, &[], &handover, &[], &[], true);
        assert_eq!(v[0].split_brain_s, 0.0);
        assert_eq!(v[0].split_brain_records, 0);

        let both = vec![
            consumed("east", "1.0", 9_000),
            consumed("east", "1.4", 9_800),
            consumed("west", "1.1", 10_000),
            consumed("east", "1.2", 10_500),
            consumed("west", "1.3", 11_000),
        ];
        let v = judge(&runs, &[], &both, &[], &[], true);
        assert_eq!(
            v[0].split_brain_s, 0.5,
            "west 10.0–11.0 overlaps east 9.0–10.5"
        );
        assert!(v[0].split_brain_records >= 2);
        // ActiveActive: every region consumes by design.
        let v = judge(&runs, &[], &both, &[], &[], false);
        assert_eq!(v[0].split_brain_s, 0.0);
    }

    #[test]
    fn the_report_keeps_the_moves_watermarks() {
        let mut r = run(0, Fault::Switchover, 10_000);
        r.watermarks.insert(("west".into(), 1), 7);
        r.watermarks.insert(("east".into(), 0), 2);
        let json = serde_json::to_value(&r).expect("serializes");
        assert_eq!(
            json["watermarks"],
            serde_json::json!([
                {"sourceRegion": "east", "partition": 0, "offset": 2},
                {"sourceRegion": "west", "partition": 1, "offset": 7},
            ])
        );
    }

    #[test]
    fn an_epoch_that_rose_by_two_fails_the_drill() {
        let mut r = run(0, Fault::RegionDown, 10_000);
        r.epoch_after = 3;
        r.epochs_seen = vec![1, 2, 3];
        let v = judge(&[r], &[], &[], &[], &[], true);
        assert!(!v[0].epoch_ok);
        assert!(!Summary::of(&v).epoch_ok);
    }

    #[test]
    fn the_rto_is_split_into_the_phases_status_has() {
        let mut r = run(0, Fault::RegionDown, 10_000);
        r.phases = Phases {
            detected_ms: Some(12_000),
            decided_ms: Some(12_500),
            translated_ms: None,
            committed_ms: Some(17_000),
            ready_ms: Some(18_000),
            first_consumed_ms: Some(19_500),
            primary_ms: None,
        };
        let v = judge(&[r], &[], &[], &[], &[], true);
        assert_eq!(v[0].rto_s, Some(9.5));
        assert_eq!(
            v[0].phases,
            PhaseSplit {
                detect_s: Some(2.0),
                decide_s: Some(0.5),
                translate_s: None,
                commit_s: Some(4.5),
                consumers_ready_s: Some(1.0),
                first_record_s: Some(1.5),
            }
        );
    }

    #[test]
    fn the_summary_line_has_the_documented_shape() {
        let mut a = run(0, Fault::RegionDown, 10_000);
        a.phases.first_consumed_ms = Some(18_000);
        let mut b = run(1, Fault::Switchover, 40_000);
        b.phases.first_consumed_ms = Some(42_000);
        let v = judge(&[a, b], &[], &[], &[], &[], true);
        let s = Summary::of(&v);
        assert!(s.passed());
        assert_eq!(
            s.line(),
            "drill: n=2 lost=0 skipped=0 dups_raw_max=0 dups_deduped_max=0 rto_p50_s=2.0 rto_p99_s=8.0 split_brain_s=0.0 non_monotonic=0 epoch_ok=true over_bound=0 standby_member_repairs=0"
        );
        // A repair while the warm-up waited counts too (and is no failure).
        let s = s.with_warmup_repairs(vec![StandbyMemberRepair {
            region: "east".into(),
            members: 1,
            ..StandbyMemberRepair::default()
        }]);
        assert!(s.passed());
        assert!(
            s.line().ends_with(" standby_member_repairs=1"),
            "{}",
            s.line()
        );
    }

    #[test]
    fn a_backwards_step_in_a_session_fails_the_drill_but_a_move_does_not() {
        use crate::drill::events::{SessionChange, SessionMark};
        let runs = vec![run(0, Fault::Switchover, 10_000)];
        let at = |session: &str, region: &str, offset: i64, value: &str, at_ms: i64| Consumption {
            region: region.into(),
            value: value.into(),
            at_ms,
            session: session.into(),
            topic: "orders".into(),
            partition: 0,
            offset,
        };
        let acks = vec![
            ack("east", "1.0", 0, 0, 1_000),
            ack("east", "1.1", 0, 1, 1_100),
        ];
        // east consumed both; after the move west (another session) re-reads 1.1: a duplicate.
        let moved = vec![
            at("east-0", "east", 0, "1.0", 2_000),
            at("east-0", "east", 1, "1.1", 2_100),
            at("west-0", "west", 4, "1.1", 12_000),
        ];
        let v = judge(&runs, &acks, &moved, &[], &[], true);
        assert_eq!((v[0].non_monotonic, v[0].dups_raw), (0, 1));
        assert!(v[0].passed());
        // east's session reads offset 0 again with no rebalance: reported, failed.
        let mut back = moved[..2].to_vec();
        back.push(at("east-0", "east", 0, "1.0", 12_500));
        let v = judge(&runs, &acks, &back, &[], &[], true);
        assert_eq!(v[0].non_monotonic, 1);
        assert!(!v[0].passed());
        let s = Summary::of(&v);
        assert!(!s.passed());
        assert!(s.line().contains(" non_monotonic=1 "), "{}", s.line());
        // The same after a rebalance of the partition: re-delivery, not reported.
        let marks = [SessionMark {
            session: "east-0".into(),
            before: 2,
            change: SessionChange::Partitions(vec![("orders".into(), 0)]),
        }];
        let v = judge(&runs, &acks, &back, &marks, &[], true);
        assert_eq!(v[0].non_monotonic, 0);
    }

    #[test]
    fn active_active_needs_every_surviving_region_and_one_primary_at_a_time() {
        use crate::drill::primary::PrimarySample;
        let mut r = run(0, Fault::PrimaryKill, 10_000);
        r.killed_region = Some("east".into());
        r.restored_ms = Some(20_000);
        r.phases.primary_ms = Some(16_500);
        let acks = vec![
            ack("west", "2.0", 0, 0, 12_000),
            ack("central", "3.0", 0, 0, 12_000),
            ack("east", "1.0", 0, 0, 12_000),
        ];
        // 2.0 reached central and west; 3.0 only central: lost for west. east is the killed
        // region: not required to consume, and its own record is not a survivor's.
        let c = vec![
            consumed("west", "2.0", 12_100),
            consumed("central", "2.0", 12_100),
            consumed("central", "3.0", 12_100),
            consumed("central", "3.0", 12_200),
        ];
        let v = judge(std::slice::from_ref(&r), &acks, &c, &[], &[], false);
        assert_eq!(v[0].lost, 1, "{:?}", v[0].lost_examples);
        assert!(v[0].lost_examples[0].contains("not consumed in west"));
        assert_eq!(v[0].killed_region_unconsumed, 1);
        // Consumed by two regions is not a duplicate; twice by central is.
        assert_eq!(v[0].dups_raw, 1);
        assert_eq!(v[0].rto_s, Some(6.5));
        assert_eq!(v[0].split_brain_s, 0.0);
        // west became primary at 15 s while east's claim ran until 16 s: 1 s of split brain.
        let primary = vec![
            PrimarySample {
                at_ms: 9_000,
                config_map_region: Some("east".into()),
                config_map_valid_until_ms: Some(16_000),
                ..PrimarySample::default()
            },
            PrimarySample {
                at_ms: 15_000,
                lease_holder: Some("west".into()),
                lease_valid_until_ms: Some(20_000),
                ..PrimarySample::default()
            },
        ];
        let v = judge(&[r], &acks, &c, &[], &primary, false);
        assert_eq!(v[0].split_brain_s, 1.0);
        assert!(!v[0].passed());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
