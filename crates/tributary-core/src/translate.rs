//! Offset translation: a consumer group's committed offsets in region A's aggregate cluster,
//! expressed as resume offsets in region B's aggregate cluster (DESIGN.md, "Offset
//! translation"), and the rule that keeps a standby's position from moving backwards.
//!
//! For aggregate partition `p` with committed offset `c` in A, and each source partition `s`
//! interleaved into `p`:
//! 1. `w_s`, the watermark: one past the last record of `s` known to lie below `c` in A (from
//!    the `s→A` checkpoints, or exactly from the provenance of A's records read below `c`).
//!    Every record of `s` below `w_s` was consumed. `None` if none is known to be.
//! 2. `r_s`: the offset in B of `s`'s first record at or after `w_s` if the `s→B` checkpoints
//!    pin it, else a conservative earlier offset (just after the last checkpoint before it).
//! 3. `resume_B(p) = min_s r_s`, raised to B's log start (earlier records are gone).
//!
//! Where the checkpoints contradict themselves (a route's index holds an unresolved
//! [`crate::index::Contradiction`]) or B's log (the minimum lies beyond B's log end, as after a
//! recreated destination topic), no offset is known to be safe: the partition is
//! [`PartitionOutcome::Contradicted`] and nothing is committed for it. Clamping to the log end
//! instead would skip every record of the new log below it.
//!
//! Never skip: no record of `s` at or above `w_s` lies below the resume offset in B. Records
//! of `s` below `w_s` that B holds at or above it are duplicates; the plan bounds them, and
//! [`crate::dedupe::Deduper`] drops them using the watermarks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointKey, OffsetRange};
use crate::dedupe::Provenance;
use crate::index::{
    CheckpointIndex, CheckpointIndexes, Contradiction, ResumeEstimate, WatermarkEstimate,
};
use crate::topology::{AggregateLayout, AggregatePartition, Route, SourcePartition};

/// The `v` of every plan this crate writes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A partition's first and next offsets (`[start, end)` holds its records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOffsets {
    pub start: u64,
    pub end: u64,
}

/// One record of A's aggregate partition as read by checkpoint-sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedRecord {
    pub offset: u64,
    /// `None` for a record without provenance headers.
    pub provenance: Option<Provenance>,
}

/// Every record of an aggregate partition in A from `start` up to the group's committed
/// offset, read so that watermarks are exact instead of bounded by checkpoint spacing.
/// Records at or above the committed offset are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTail {
    pub start: u64,
    pub records: Vec<ObservedRecord>,
}

/// Everything one translation reads. Borrowed: checkpoint-sync keeps it between rounds.
#[derive(Clone, Copy, Debug)]
pub struct TranslationRequest<'a> {
    pub group_id: &'a str,
    /// A: where the group consumed.
    pub from_region: &'a str,
    /// B: where it will resume.
    pub to_region: &'a str,
    pub layout: &'a AggregateLayout,
    /// Must hold the `s→A` and `s→B` checkpoints. Any prefix of the checkpoint topics gives a
    /// correct (if less precise) plan, so a lagging reader is safe.
    pub checkpoints: &'a CheckpointIndexes,
    /// The group's committed offsets in A. A partition absent here was never committed.
    pub committed: &'a BTreeMap<AggregatePartition, u64>,
    /// Log offsets of the group's partitions in B. A partition absent here does not exist
    /// (yet) in B.
    pub destination: &'a BTreeMap<AggregatePartition, LogOffsets>,
    /// Optional reads of A below the committed offsets (may be empty).
    pub observed: &'a BTreeMap<AggregatePartition, ObservedTail>,
}

/// The outcome of one translation; its JSON is what `checkpoint-sync --once --final` prints
/// and what the operator records in `lastFailover`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranslationPlan {
    pub v: u32,
    pub group_id: String,
    pub from_region: String,
    pub to_region: String,
    /// Every resumed partition is exact (see [`ResumePlan::exact`]) and none is
    /// [`PartitionOutcome::Contradicted`].
    pub exact: bool,
    /// Upper bound over all partitions: records the group reads again in B.
    pub max_duplicates: u64,
    /// Upper bound over all partitions: duplicates left after [`crate::dedupe::Deduper`].
    pub max_duplicates_after_dedupe: u64,
    pub partitions: Vec<PartitionPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: u32,
    /// The group's committed offset in A.
    pub committed_offset: Option<u64>,
    #[serde(flatten)]
    pub outcome: PartitionOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PartitionOutcome {
    /// Commit `resume_offset` in B.
    Resume(ResumePlan),
    /// The group never committed this partition in A: commit nothing, so that the consumer's
    /// `auto.offset.reset` applies in B exactly as it would have in A (use `earliest` for a
    /// group that must not skip).
    NotCommitted,
    /// The partition does not exist in B (yet): the topic grew in A first. Commit nothing;
    /// a later round translates it once B's topic has grown.
    MissingInDestination,
    /// The checkpoints contradict themselves or B's log, so every offset could skip records:
    /// commit nothing for this partition until the contradiction is resolved (for a
    /// recreated destination: a restart origin for the route, see docs/checkpoint-format.md).
    Contradicted(ContradictionPlan),
}

/// Why a partition is refused ([`PartitionOutcome::Contradicted`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContradictionPlan {
    /// For people: what contradicts what, and what resolves it.
    pub reason: String,
    /// Routes whose checkpoints contradict each other (empty if only `beyond_log_end`).
    pub routes: Vec<ContradictedRoute>,
    /// Set when the checkpoints put the resume offset beyond B's log end.
    pub beyond_log_end: Option<BeyondLogEnd>,
}

/// One route's contradiction (see [`crate::index::Contradiction`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContradictedRoute {
    pub source_region: String,
    pub destination_region: String,
    /// The checkpoint the index held (source offset → destination offset).
    pub retained_source_offset: u64,
    pub retained_destination_offset: u64,
    /// The first checkpoint that contradicted it: a later source offset, not a later
    /// destination offset.
    pub contradicting_source_offset: u64,
    pub contradicting_destination_offset: u64,
    /// Contradicting checkpoints read so far.
    pub contradicting_checkpoints: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeyondLogEnd {
    /// Where the checkpoints say the group resumes in B.
    pub resume_offset: u64,
    /// B's log end: no record there yet.
    pub log_end: u64,
    /// The source whose checkpoints put it there.
    pub limited_by: Option<SourcePartition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePlan {
    pub resume_offset: u64,
    /// Every watermark and every per-source resume offset is exact: no duplicates after
    /// dedupe, and none before it beyond those the interleaving minimum forces.
    pub exact: bool,
    pub max_duplicates: u64,
    pub max_duplicates_after_dedupe: u64,
    /// The source whose resume offset is the minimum.
    pub limited_by: Option<SourcePartition>,
    /// Set when the minimum lay below B's log start: records there are already deleted.
    pub raised_to_log_start_from: Option<u64>,
    pub sources: Vec<SourcePlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePlan {
    #[serde(flatten)]
    pub source: SourcePartition,
    /// Every record of this source below it was consumed in A; `None`: none known to be.
    pub watermark: Option<u64>,
    pub watermark_exact: bool,
    /// `r_s`: B offset from which every record at or above the watermark is seen.
    pub resume_offset: u64,
    pub resume_exact: bool,
    pub max_duplicates: u64,
    pub max_duplicates_after_dedupe: u64,
    /// Source ranges at or above the watermark that were deleted before reaching B: the group
    /// will not see them there.
    pub lost_in_destination: Vec<OffsetRange>,
}

impl TranslationPlan {
    /// Watermarks for [`crate::dedupe::Deduper`]: every source with one.
    pub fn watermarks(&self) -> Vec<(SourcePartition, u64)> {
        self.resumed()
            .flat_map(|(_, plan)| plan.sources.iter())
            .filter_map(|source| source.watermark.map(|w| (source.source.clone(), w)))
            .collect()
    }

    /// The offsets to commit in B at a failover.
    pub fn resume_offsets(&self) -> BTreeMap<AggregatePartition, u64> {
        self.resumed()
            .map(|(partition, plan)| (partition, plan.resume_offset))
            .collect()
    }

    /// What a standby sync commits given the group's current offsets in B: never backwards.
    pub fn standby_commits(
        &self,
        current: &BTreeMap<AggregatePartition, u64>,
    ) -> BTreeMap<AggregatePartition, StandbyCommit> {
        self.resumed()
            .map(|(partition, plan)| {
                let decision = advance_only(current.get(&partition).copied(), plan.resume_offset);
                (partition, decision)
            })
            .collect()
    }

    /// The partitions refused because their checkpoints contradict themselves or B's log.
    pub fn contradicted(&self) -> impl Iterator<Item = (AggregatePartition, &ContradictionPlan)> {
        self.partitions
            .iter()
            .filter_map(|partition| match &partition.outcome {
                PartitionOutcome::Contradicted(plan) => Some((
                    AggregatePartition::new(&partition.topic, partition.partition),
                    plan,
                )),
                _ => None,
            })
    }

    fn resumed(&self) -> impl Iterator<Item = (AggregatePartition, &ResumePlan)> {
        self.partitions
            .iter()
            .filter_map(|partition| match &partition.outcome {
                PartitionOutcome::Resume(plan) => Some((
                    AggregatePartition::new(&partition.topic, partition.partition),
                    plan,
                )),
                _ => None,
            })
    }
}

/// A standby sync's decision for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "offset", rename_all = "snake_case")]
pub enum StandbyCommit {
    /// Commit this offset (first commit, or forward).
    Commit(u64),
    /// Keep the current offset: the plan lies behind it (thinner checkpoints, a stale index).
    /// Safe because the group only moves forward in A, so what was safe to skip stays so.
    Keep(u64),
}

impl StandbyCommit {
    pub fn offset(self) -> u64 {
        match self {
            StandbyCommit::Commit(offset) | StandbyCommit::Keep(offset) => offset,
        }
    }
}

/// Never move a standby's committed offset backwards outside a failover.
///
/// This is safe only while the group moves forward in A. If its offsets in A go backwards
/// (someone rewound the group there), the caller must commit the plan as is — as at a
/// failover — or the standby would stay ahead of records the group will now re-read in A.
pub fn advance_only(current: Option<u64>, planned: u64) -> StandbyCommit {
    match current {
        Some(current) if current >= planned => StandbyCommit::Keep(current),
        _ => StandbyCommit::Commit(planned),
    }
}

/// Translates the group's committed offsets in A into resume offsets in B. Pure and
/// infallible: what it cannot know it answers conservatively, and says so in the plan.
pub fn translate(request: &TranslationRequest<'_>) -> TranslationPlan {
    let mut partitions: BTreeSet<&AggregatePartition> = request.committed.keys().collect();
    partitions.extend(request.destination.keys());

    let partitions: Vec<PartitionPlan> = partitions
        .into_iter()
        .map(|aggregate| {
            let committed = request.committed.get(aggregate).copied();
            let outcome = match (committed, request.destination.get(aggregate)) {
                (None, _) => PartitionOutcome::NotCommitted,
                (Some(_), None) => PartitionOutcome::MissingInDestination,
                (Some(committed), Some(log)) => {
                    translate_partition(request, aggregate, committed, *log)
                }
            };
            PartitionPlan {
                topic: aggregate.topic.clone(),
                partition: aggregate.partition,
                committed_offset: committed,
                outcome,
            }
        })
        .collect();

    let resumed = partitions.iter().filter_map(|p| match &p.outcome {
        PartitionOutcome::Resume(plan) => Some(plan),
        _ => None,
    });
    let any_contradicted = partitions
        .iter()
        .any(|p| matches!(p.outcome, PartitionOutcome::Contradicted(_)));
    let (mut exact, mut max_duplicates, mut max_duplicates_after_dedupe) =
        (!any_contradicted, 0u64, 0u64);
    for plan in resumed {
        exact &= plan.exact;
        max_duplicates = max_duplicates.saturating_add(plan.max_duplicates);
        max_duplicates_after_dedupe =
            max_duplicates_after_dedupe.saturating_add(plan.max_duplicates_after_dedupe);
    }
    TranslationPlan {
        v: PLAN_FORMAT_VERSION,
        group_id: request.group_id.to_owned(),
        from_region: request.from_region.to_owned(),
        to_region: request.to_region.to_owned(),
        exact,
        max_duplicates,
        max_duplicates_after_dedupe,
        partitions,
    }
}

/// Per source: its watermark in A and where it resumes in B.
struct SourceTranslation<'a> {
    source: SourcePartition,
    from_index: &'a CheckpointIndex,
    to_index: &'a CheckpointIndex,
    watermark: WatermarkEstimate,
    resume: ResumeEstimate,
}

fn translate_partition(
    request: &TranslationRequest<'_>,
    aggregate: &AggregatePartition,
    committed: u64,
    log: LogOffsets,
) -> PartitionOutcome {
    let empty = CheckpointIndex::default();
    let observed = request.observed.get(aggregate);
    let last_observed = last_observed_per_source(observed, committed);
    let index = |source: &SourcePartition, region: &str| {
        request
            .checkpoints
            .get(&CheckpointKey::new(
                Route::new(&source.region, region),
                &source.topic,
                source.partition,
            ))
            .unwrap_or(&empty)
    };

    let translations: Vec<SourceTranslation<'_>> =
        sources_of(request, aggregate, last_observed.keys())
            .into_iter()
            .map(|source| {
                let from_index = index(&source, request.from_region);
                let to_index = index(&source, request.to_region);
                let watermark = match (last_observed.get(&source), observed) {
                    (Some(&last_source_offset), _) => {
                        // Every record in [tail start, committed) was read, so the last one of
                        // this source is the last one below the committed offset.
                        let from_checkpoints = from_index.watermark_below(committed);
                        if from_checkpoints.watermark > Some(last_source_offset + 1) {
                            // A checkpoint knows a later record the tail missed: the tail is
                            // incomplete, so trust only the checkpoints.
                            from_checkpoints
                        } else {
                            WatermarkEstimate {
                                watermark: Some(last_source_offset + 1),
                                exact: true,
                                uncertainty: 0,
                                unknown_positions: OffsetRange { from: 0, to: 0 },
                            }
                        }
                    }
                    // None of this source's records lie in the tail: it is as if the group
                    // stood at the tail's start.
                    (None, Some(tail)) => from_index.watermark_below(tail.start.min(committed)),
                    (None, None) => from_index.watermark_below(committed),
                };
                let resume = to_index.resume_position(watermark.watermark, log.start);
                SourceTranslation {
                    source,
                    from_index,
                    to_index,
                    watermark,
                    resume,
                }
            })
            .collect();
    let contradicted = contradicted_routes(request, &translations);
    if !contradicted.is_empty() {
        return PartitionOutcome::Contradicted(ContradictionPlan {
            reason: describe_contradictions(aggregate, &contradicted),
            routes: contradicted,
            beyond_log_end: None,
        });
    }
    let translations = exclude_known_records(translations);

    let limiting = translations
        .iter()
        .min_by_key(|t| t.resume.offset)
        .map(|t| (t.resume.offset, t.source.clone()));
    // No known source: nothing pins any record, so resume at the start.
    let minimum = limiting.as_ref().map_or(log.start, |(offset, _)| *offset);
    if minimum > log.end {
        // The checkpoints describe records B does not have (a recreated topic, checkpoints
        // of another cluster, a truncated log): resuming at B's end would skip its records.
        let limited_by = limiting.map(|(_, source)| source);
        let route = limited_by.as_ref().map_or_else(
            || format!("into {}", request.to_region),
            |s| format!("{}→{}", s.region, request.to_region),
        );
        return PartitionOutcome::Contradicted(ContradictionPlan {
            reason: format!(
                "the checkpoints of route {route} put the resume offset of {aggregate} at {minimum}, beyond the end {} of {}'s log: they describe records {} does not have (was the topic recreated there?). Resuming at the end would skip records, so nothing is committed for this partition until a restart origin for the route is written (docs/checkpoint-format.md, \"Contradictions\")",
                log.end, request.to_region, request.to_region
            ),
            routes: Vec::new(),
            beyond_log_end: Some(BeyondLogEnd {
                resume_offset: minimum,
                log_end: log.end,
                limited_by,
            }),
        });
    }
    let (resume_offset, raised_to_log_start_from) = if minimum < log.start {
        (log.start, Some(minimum))
    } else {
        (minimum, None)
    };

    let sources: Vec<SourcePlan> = translations
        .into_iter()
        .map(|t| {
            let watermark = t.watermark.watermark;
            let reread = t
                .to_index
                .max_records_below_watermark_from(resume_offset, watermark);
            SourcePlan {
                watermark,
                watermark_exact: t.watermark.exact,
                resume_offset: t.resume.offset,
                resume_exact: t.resume.exact,
                max_duplicates: reread.saturating_add(t.watermark.uncertainty),
                max_duplicates_after_dedupe: t.watermark.uncertainty,
                lost_in_destination: t
                    .to_index
                    .retention_gaps()
                    .filter(|gap| gap.to > watermark.unwrap_or(0))
                    .collect(),
                source: t.source,
            }
        })
        .collect();

    PartitionOutcome::Resume(ResumePlan {
        resume_offset,
        exact: !sources.is_empty() && sources.iter().all(|s| s.watermark_exact && s.resume_exact),
        max_duplicates: sources
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.max_duplicates)),
        max_duplicates_after_dedupe: sources.iter().fold(0u64, |sum, s| {
            sum.saturating_add(s.max_duplicates_after_dedupe)
        }),
        limited_by: limiting.map(|(_, source)| source),
        raised_to_log_start_from,
        sources,
    })
}

/// Every route into A or B whose index holds an unresolved contradiction.
fn contradicted_routes(
    request: &TranslationRequest<'_>,
    translations: &[SourceTranslation<'_>],
) -> Vec<ContradictedRoute> {
    let mut routes = Vec::new();
    for t in translations {
        for (region, index) in [
            (request.from_region, t.from_index),
            (request.to_region, t.to_index),
        ] {
            if let Some(Contradiction {
                retained,
                contradicting,
                checkpoints,
            }) = index.contradiction()
            {
                let route = ContradictedRoute {
                    source_region: t.source.region.clone(),
                    destination_region: region.to_owned(),
                    retained_source_offset: retained.source,
                    retained_destination_offset: retained.destination,
                    contradicting_source_offset: contradicting.source,
                    contradicting_destination_offset: contradicting.destination,
                    contradicting_checkpoints: checkpoints,
                };
                if !routes.contains(&route) {
                    routes.push(route);
                }
            }
        }
    }
    routes
}

fn describe_contradictions(aggregate: &AggregatePartition, routes: &[ContradictedRoute]) -> String {
    let each: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                "route {}→{}: source offset {} landed at {}, not after {}→{} ({} contradicting checkpoint(s))",
                r.source_region,
                r.destination_region,
                r.contradicting_source_offset,
                r.contradicting_destination_offset,
                r.retained_source_offset,
                r.retained_destination_offset,
                r.contradicting_checkpoints
            )
        })
        .collect();
    format!(
        "the checkpoints of {aggregate} contradict each other ({}): the destination topic was recreated, or two replicators write one route. Nothing is committed for this partition until a restart origin for the route is written (docs/checkpoint-format.md, \"Contradictions\")",
        each.join("; ")
    )
}

/// Tightens each inexact watermark: an offset in A where another source's checkpointed record
/// landed holds no record of this source. With every record checkpointed, this alone makes
/// watermarks exact.
fn exclude_known_records(
    mut translations: Vec<SourceTranslation<'_>>,
) -> Vec<SourceTranslation<'_>> {
    let narrowed: Vec<WatermarkEstimate> = translations
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.watermark.exact {
                return t.watermark;
            }
            let known_elsewhere: u64 = translations
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, other)| {
                    other
                        .from_index
                        .count_landed_between(t.watermark.unknown_positions)
                })
                .sum();
            t.watermark.excluding_known_records(known_elsewhere)
        })
        .collect();
    for (t, watermark) in translations.iter_mut().zip(narrowed) {
        t.watermark = watermark;
    }
    translations
}

/// Per source, the source offset of its last record in the observed tail below `committed`.
fn last_observed_per_source(
    observed: Option<&ObservedTail>,
    committed: u64,
) -> BTreeMap<SourcePartition, u64> {
    let mut last = BTreeMap::new();
    let Some(tail) = observed else {
        return last;
    };
    for record in &tail.records {
        if record.offset < tail.start || record.offset >= committed {
            continue;
        }
        if let Some(provenance) = &record.provenance {
            let slot = last.entry(provenance.source_partition()).or_insert(0);
            *slot = (*slot).max(provenance.offset);
        }
    }
    last
}

/// Source partitions interleaved into `aggregate`: the declared ones, any that checkpoints in
/// A or B show copying into it (a source removed from the layout still has records there),
/// and any seen in A's records.
/// The first route whose checkpoints, as read, cannot place the group's position as precisely
/// as the whole checkpoint topic could: a reader that started inside the topic (checkpoint
/// format v2, "Reading a window") reads further back until this is `None` or it reached the
/// topic's start. Translation is correct either way; this is about precision only.
///
/// A route `s→A` needs a checkpoint below the committed offset (or its origin: the route
/// started inside the window); `s→B` needs a checkpoint below the watermark that gives (or
/// an origin at or above it). Observed tails and `destination` are not consulted: tails
/// sharpen watermarks but do not replace the checkpoints `s→B` needs.
pub fn window_shortfall(request: &TranslationRequest<'_>) -> Option<CheckpointKey> {
    let empty = CheckpointIndex::default();
    for (aggregate, &committed) in request.committed {
        for source in sources_of(request, aggregate, std::iter::empty()) {
            let key = |region: &str| {
                CheckpointKey::new(
                    Route::new(&source.region, region),
                    &source.topic,
                    source.partition,
                )
            };
            let from_key = key(request.from_region);
            let from_index = request.checkpoints.get(&from_key).unwrap_or(&empty);
            if from_index.origin().is_none()
                && from_index.last_below_destination(committed).is_none()
            {
                return Some(from_key);
            }
            let to_key = key(request.to_region);
            let to_index = request.checkpoints.get(&to_key).unwrap_or(&empty);
            let covered = match from_index.watermark_below(committed).watermark {
                None | Some(0) => to_index.origin().is_some(),
                Some(watermark) => {
                    to_index
                        .origin()
                        .is_some_and(|o| o.source_offset >= watermark)
                        || to_index.last_at_or_before_source(watermark - 1).is_some()
                }
            };
            if !covered {
                return Some(to_key);
            }
        }
    }
    None
}

fn sources_of<'a>(
    request: &TranslationRequest<'_>,
    aggregate: &AggregatePartition,
    observed: impl Iterator<Item = &'a SourcePartition>,
) -> BTreeSet<SourcePartition> {
    let mut sources: BTreeSet<SourcePartition> = request
        .layout
        .declared_sources(aggregate)
        .into_iter()
        .collect();
    if let Some(selector) = request.layout.naming.source_of(&aggregate.topic) {
        for region in [request.from_region, request.to_region] {
            for (source_region, _) in
                request
                    .checkpoints
                    .sources_into(region, selector.topic, aggregate.partition)
            {
                if selector.admits(source_region) {
                    sources.insert(SourcePartition::new(
                        source_region,
                        selector.topic,
                        aggregate.partition,
                    ));
                }
            }
        }
    }
    sources.extend(observed.cloned());
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_only_never_moves_a_standby_backwards() {
        assert_eq!(advance_only(None, 10), StandbyCommit::Commit(10));
        assert_eq!(advance_only(Some(5), 10), StandbyCommit::Commit(10));
        assert_eq!(advance_only(Some(10), 10), StandbyCommit::Keep(10));
        assert_eq!(advance_only(Some(12), 10), StandbyCommit::Keep(12));
        assert_eq!(advance_only(Some(12), 10).offset(), 12);
    }
}
