//! Edge cases of offset translation, each pinned with hand-built logs. Regions `east` (A, where
//! the group consumed) and `west` (B, where it resumes) are also the two source regions.

use std::collections::BTreeMap;

use tributary_core::checkpoint::{CheckpointEntry, CheckpointRecord};
use tributary_core::translate::{ResumePlan, SourcePlan};
use tributary_core::{
    AggregateLayout, AggregatePartition, CheckpointIndexes, CheckpointKey, Deduper, LogOffsets,
    ObservedRecord, ObservedTail, OffsetCheckpoint, OffsetRange, PartitionOutcome, Provenance,
    Route, RouteOrigin, SourcePartition, StandbyCommit, ThinningPolicy, TopicNaming,
    TranslationPlan, TranslationRequest, translate,
};

const A: &str = "east";
const B: &str = "west";

struct Fixture {
    layout: AggregateLayout,
    checkpoints: CheckpointIndexes,
    committed: BTreeMap<AggregatePartition, u64>,
    destination: BTreeMap<AggregatePartition, LogOffsets>,
    observed: BTreeMap<AggregatePartition, ObservedTail>,
}

impl Fixture {
    fn new(naming: TopicNaming) -> Self {
        Self {
            layout: AggregateLayout::new(naming),
            checkpoints: CheckpointIndexes::new(ThinningPolicy::default()),
            committed: BTreeMap::new(),
            destination: BTreeMap::new(),
            observed: BTreeMap::new(),
        }
    }

    /// Both regions produce `orders` with `partitions` partitions.
    fn identity(partitions: u32) -> Self {
        let mut fixture = Self::new(TopicNaming::Identity);
        fixture.layout.add_source_topic(A, "orders", partitions);
        fixture.layout.add_source_topic(B, "orders", partitions);
        fixture
    }

    fn apply(&mut self, source: &str, into: &str, partition: u32, entry: CheckpointEntry) {
        self.checkpoints.apply(&CheckpointRecord {
            key: CheckpointKey::new(Route::new(source, into), "orders", partition),
            timestamp_ms: 0,
            entry,
        });
    }

    /// Checkpoints for every `(source offset, destination offset)` pair, each stating the
    /// previous one so that consecutive pairs are known contiguous.
    fn every_record(&mut self, source: &str, into: &str, partition: u32, pairs: &[(u64, u64)]) {
        let mut previous = None;
        for &(s, d) in pairs {
            self.apply(
                source,
                into,
                partition,
                CheckpointEntry::Checkpoint(OffsetCheckpoint {
                    previous_source_offset: previous,
                    ..OffsetCheckpoint::new(s, d)
                }),
            );
            previous = Some(s);
        }
    }

    /// Checkpoints for some pairs only (the replicator copied records in between).
    fn sparse(&mut self, source: &str, into: &str, partition: u32, pairs: &[(u64, u64)]) {
        for &(s, d) in pairs {
            self.apply(
                source,
                into,
                partition,
                CheckpointEntry::Checkpoint(OffsetCheckpoint::new(s, d)),
            );
        }
    }

    fn origin(&mut self, source: &str, into: &str, partition: u32, s: u64, d: u64) {
        self.apply(
            source,
            into,
            partition,
            CheckpointEntry::Origin(RouteOrigin::new(s, d)),
        );
    }

    fn committed(&mut self, partition: u32, offset: u64) {
        self.committed
            .insert(AggregatePartition::new("orders", partition), offset);
    }

    fn destination(&mut self, partition: u32, start: u64, end: u64) {
        self.destination.insert(
            AggregatePartition::new("orders", partition),
            LogOffsets { start, end },
        );
    }

    fn request(&self) -> TranslationRequest<'_> {
        TranslationRequest {
            group_id: "billing",
            from_region: A,
            to_region: B,
            layout: &self.layout,
            checkpoints: &self.checkpoints,
            committed: &self.committed,
            destination: &self.destination,
            observed: &self.observed,
        }
    }

    fn translate(&self) -> TranslationPlan {
        translate(&self.request())
    }
}

fn resumed(plan: &TranslationPlan, topic: &str, partition: u32) -> ResumePlan {
    let found = plan
        .partitions
        .iter()
        .find(|p| p.topic == topic && p.partition == partition)
        .map(|p| p.outcome.clone());
    match found {
        Some(PartitionOutcome::Resume(resume)) => resume,
        other => panic!("{topic}/{partition}: expected a resume plan, got {other:?}"),
    }
}

fn source<'a>(resume: &'a ResumePlan, region: &str) -> &'a SourcePlan {
    resume
        .sources
        .iter()
        .find(|s| s.source.region == region)
        .unwrap_or_else(|| panic!("no source {region} in {resume:#?}"))
}

/// A: east's records 0..10 at 0..10 and west's 0..10 at 10..20. B: west's first (0..10),
/// then east's (10..20). Every record checkpointed.
fn two_sources_every_record() -> Fixture {
    let mut f = Fixture::identity(1);
    let pairs = |base: u64| (0..10).map(|i| (i, base + i)).collect::<Vec<_>>();
    f.every_record(A, A, 0, &pairs(0));
    f.every_record(B, A, 0, &pairs(10));
    f.every_record(B, B, 0, &pairs(0));
    f.every_record(A, B, 0, &pairs(10));
    f.destination(0, 0, 20);
    f
}

#[test]
fn per_record_checkpoints_give_exact_watermarks_and_zero_duplicates_after_dedupe() {
    let mut f = two_sources_every_record();
    // Consumed east 0..10 and west 0..3 in A.
    f.committed(0, 13);
    let plan = f.translate();
    let resume = resumed(&plan, "orders", 0);
    assert_eq!(source(&resume, A).watermark, Some(10));
    assert_eq!(source(&resume, B).watermark, Some(3));
    assert_eq!(source(&resume, A).resume_offset, 20);
    assert_eq!(source(&resume, B).resume_offset, 3);
    // West's position wins; east's ten records at 10..20 are read again.
    assert_eq!(resume.resume_offset, 3);
    assert_eq!(
        resume.limited_by,
        Some(SourcePartition::new(B, "orders", 0))
    );
    assert!(resume.exact && plan.exact);
    assert_eq!(resume.max_duplicates, 10);
    assert_eq!(resume.max_duplicates_after_dedupe, 0);
    let deduper = Deduper::from_plan(&plan);
    let east = |offset| Provenance {
        region: A.into(),
        cluster: None,
        topic: "orders".into(),
        partition: 0,
        offset,
    };
    assert!(!deduper.should_process(&east(9)));
    assert!(deduper.should_process(&east(10)));
}

#[test]
fn source_with_no_checkpoint_yet_resumes_from_destination_log_start() {
    let mut f = Fixture::identity(1);
    f.every_record(A, A, 0, &[(0, 0), (1, 1), (2, 2)]);
    f.every_record(A, B, 0, &[(0, 30), (1, 31), (2, 32)]);
    // West is declared but its replicators have written nothing: its records may be anywhere,
    // e.g. at A offsets 3 and 4, which no checkpoint accounts for.
    f.committed(0, 5);
    f.destination(0, 5, 40);
    let resume = resumed(&f.translate(), "orders", 0);
    let west = source(&resume, B);
    assert_eq!(west.watermark, None);
    assert!(!west.watermark_exact);
    assert_eq!(west.resume_offset, 5);
    assert_eq!(resume.resume_offset, 5);
    assert!(!resume.exact);
    // Offsets 3 and 4 hold two records of either source.
    assert_eq!(west.max_duplicates_after_dedupe, 2);
    assert_eq!(source(&resume, A).max_duplicates_after_dedupe, 2);
}

#[test]
fn source_with_only_an_origin_resumes_at_its_origin() {
    let mut f = Fixture::identity(1);
    f.every_record(A, A, 0, &[(0, 0), (1, 1), (2, 2)]);
    f.every_record(A, B, 0, &[(0, 30), (1, 31), (2, 32)]);
    // West's routes started (A's end was 3, B's 25) but have copied nothing yet.
    f.origin(B, A, 0, 0, 3);
    f.origin(B, B, 0, 0, 25);
    f.committed(0, 3);
    f.destination(0, 5, 40);
    let resume = resumed(&f.translate(), "orders", 0);
    let west = source(&resume, B);
    assert_eq!(west.watermark, None);
    assert!(west.watermark_exact);
    assert_eq!(west.resume_offset, 25);
    assert_eq!(resume.resume_offset, 25);
    assert!(resume.exact);
}

#[test]
fn source_added_later_does_not_pull_resume_back_to_log_start() {
    let mut f = Fixture::identity(1);
    // East alone for 100 records in both aggregates, checkpointed every 10.
    let every_tenth: Vec<(u64, u64)> = (0..10).map(|i| (i * 10, i * 10)).collect();
    f.sparse(A, A, 0, &every_tenth);
    f.sparse(A, B, 0, &every_tenth);
    // West joins later: at A offset 100, B offset 150.
    f.origin(B, A, 0, 0, 100);
    f.origin(B, B, 0, 0, 150);
    f.every_record(B, A, 0, &[(0, 100), (1, 101)]);
    f.every_record(B, B, 0, &[(0, 150), (1, 151)]);
    f.committed(0, 60);
    f.destination(0, 0, 160);
    let resume = resumed(&f.translate(), "orders", 0);
    let west = source(&resume, B);
    assert_eq!((west.watermark, west.watermark_exact), (None, true));
    assert_eq!(west.resume_offset, 150);
    let east = source(&resume, A);
    // Sparse: the last known east record below 60 is 50, so resume just after it in B.
    assert_eq!(east.watermark, Some(51));
    assert_eq!(east.resume_offset, 51);
    assert_eq!(resume.resume_offset, 51);
    // East records 51..60 were consumed but are unknown: at most 9 duplicates.
    assert_eq!(resume.max_duplicates_after_dedupe, 9);
}

#[test]
fn empty_partitions_resume_at_the_start() {
    let mut f = Fixture::identity(2);
    // Partition 0: empty in A, the group committed 0; B holds east's records from 0.
    f.every_record(A, B, 0, &[(0, 0), (1, 1)]);
    f.committed(0, 0);
    f.destination(0, 0, 2);
    // Partition 1: empty everywhere.
    f.committed(1, 0);
    f.destination(1, 0, 0);
    let plan = f.translate();
    let p0 = resumed(&plan, "orders", 0);
    assert_eq!(p0.resume_offset, 0);
    assert!(p0.sources.iter().all(|s| s.watermark.is_none()));
    assert_eq!(p0.max_duplicates, 0);
    let p1 = resumed(&plan, "orders", 1);
    assert_eq!(p1.resume_offset, 0);
    assert_eq!(p1.max_duplicates, 0);
}

#[test]
fn retention_gap_in_destination_resumes_after_the_gap_and_reports_it() {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    f.every_record(A, A, 0, &(0..30).map(|i| (i, i)).collect::<Vec<_>>());
    // East's records 10..20 were deleted before they reached B.
    let mut into_b: Vec<(u64, u64)> = (0..10).map(|i| (i, i)).collect();
    into_b.extend((20..30).map(|i| (i, i - 10)));
    f.apply(
        A,
        B,
        0,
        CheckpointEntry::RetentionGap(OffsetRange { from: 10, to: 20 }),
    );
    f.every_record(A, B, 0, &into_b);
    f.committed(0, 12);
    f.destination(0, 0, 20);
    let resume = resumed(&f.translate(), "orders", 0);
    let east = source(&resume, A);
    assert_eq!(east.watermark, Some(12));
    // Record 20 (the first one B has at or after 12) is at B offset 10.
    assert_eq!((east.resume_offset, east.resume_exact), (10, true));
    assert_eq!(
        east.lost_in_destination,
        vec![OffsetRange { from: 10, to: 20 }]
    );
}

#[test]
fn retention_gap_in_origin_route_still_delivers_what_destination_has() {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    // A lost east's 10..20; B has everything.
    let mut into_a: Vec<(u64, u64)> = (0..10).map(|i| (i, i)).collect();
    into_a.extend((20..30).map(|i| (i, i - 10)));
    f.apply(
        A,
        A,
        0,
        CheckpointEntry::RetentionGap(OffsetRange { from: 10, to: 20 }),
    );
    f.every_record(A, A, 0, &into_a);
    f.every_record(A, B, 0, &(0..30).map(|i| (i, i)).collect::<Vec<_>>());
    // The group consumed 0..10 and stands before record 20.
    f.committed(0, 10);
    f.destination(0, 0, 30);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(source(&resume, A).watermark, Some(10));
    // In B it reads 10..20 too: records it never saw in A.
    assert_eq!(resume.resume_offset, 10);
    assert!(resume.exact);
}

#[test]
fn destination_lagging_behind_resumes_after_the_last_copied_record() {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    f.every_record(A, A, 0, &(0..100).map(|i| (i, i)).collect::<Vec<_>>());
    // B has received only east's records 0..50.
    f.every_record(A, B, 0, &(0..50).map(|i| (i, i)).collect::<Vec<_>>());
    f.committed(0, 80);
    f.destination(0, 0, 50);
    let resume = resumed(&f.translate(), "orders", 0);
    let east = source(&resume, A);
    assert_eq!(east.watermark, Some(80));
    // Records 50..80 are not in B yet; whatever arrives lands at or above 50.
    assert_eq!((east.resume_offset, east.resume_exact), (50, false));
    assert_eq!(resume.resume_offset, 50);
    // They will arrive and be read again: 30 duplicates before dedupe, none after.
    assert_eq!(resume.max_duplicates, 30);
    assert_eq!(resume.max_duplicates_after_dedupe, 0);
}

#[test]
fn idle_source_with_a_next_copy_floor_does_not_hold_resume_back() {
    let mut f = two_sources_every_record();
    // West went quiet after its 10 records; its replicator into B keeps saying so.
    f.apply(
        B,
        B,
        0,
        CheckpointEntry::Checkpoint(OffsetCheckpoint {
            previous_source_offset: Some(8),
            next_copy_floor: Some(20),
            ..OffsetCheckpoint::new(9, 9)
        }),
    );
    f.committed(0, 20);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(source(&resume, B).resume_offset, 20);
    assert_eq!(resume.resume_offset, 20);
    assert_eq!(resume.max_duplicates, 0);
}

#[test]
fn group_never_committed_gets_no_offset_for_that_partition() {
    let mut f = two_sources_every_record();
    f.destination(1, 0, 0);
    f.committed(0, 13);
    let plan = f.translate();
    let p1 = plan
        .partitions
        .iter()
        .find(|p| p.partition == 1)
        .map(|p| (p.committed_offset, p.outcome.clone()));
    assert_eq!(p1, Some((None, PartitionOutcome::NotCommitted)));
    assert_eq!(
        plan.resume_offsets().keys().collect::<Vec<_>>(),
        vec![&AggregatePartition::new("orders", 0)]
    );
}

#[test]
fn partitions_that_grew_in_origin_only_are_left_for_a_later_round() {
    let mut f = two_sources_every_record();
    f.committed(0, 13);
    // The topic grew to 3 partitions in A; B's aggregate topic has not grown yet.
    f.committed(1, 4);
    f.committed(2, 0);
    let plan = f.translate();
    for partition in [1, 2] {
        let outcome = plan
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.outcome.clone());
        assert_eq!(outcome, Some(PartitionOutcome::MissingInDestination));
    }
    assert_eq!(plan.resume_offsets().len(), 1);
}

#[test]
fn new_partition_without_checkpoints_resumes_conservatively() {
    let mut f = Fixture::identity(2);
    // Partition 1 grew in both aggregates; replicators have not checkpointed it yet.
    f.committed(1, 7);
    f.destination(1, 0, 9);
    let resume = resumed(&f.translate(), "orders", 1);
    assert_eq!(resume.resume_offset, 0);
    assert!(!resume.exact);
    // Seven consumed records, of either source, may be read again.
    assert_eq!(resume.max_duplicates_after_dedupe, 14);
}

#[test]
fn prefixed_naming_translates_each_partition_from_its_one_source() {
    let mut f = Fixture::new(TopicNaming::Prefixed);
    f.layout.add_source_topic(A, "orders", 1);
    f.layout.add_source_topic(B, "orders", 1);
    // east.orders holds only east's records; west.orders only west's.
    f.every_record(A, A, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.every_record(A, B, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.every_record(B, A, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.every_record(B, B, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.committed
        .insert(AggregatePartition::new("east.orders", 0), 7);
    f.committed
        .insert(AggregatePartition::new("west.orders", 0), 2);
    for topic in ["east.orders", "west.orders"] {
        f.destination.insert(
            AggregatePartition::new(topic, 0),
            LogOffsets { start: 0, end: 10 },
        );
    }
    let plan = f.translate();
    let east = resumed(&plan, "east.orders", 0);
    assert_eq!(east.sources.len(), 1);
    assert_eq!(east.resume_offset, 7);
    let west = resumed(&plan, "west.orders", 0);
    assert_eq!(west.sources.len(), 1);
    assert_eq!(west.resume_offset, 2);
    assert_eq!(plan.max_duplicates, 0);
}

#[test]
fn source_removed_from_layout_is_still_translated() {
    let mut f = two_sources_every_record();
    // West no longer feeds the aggregate, but its records are still there.
    f.layout = AggregateLayout::new(TopicNaming::Identity).with_source_topic(A, "orders", 1);
    f.committed(0, 13);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(resume.sources.len(), 2);
    assert_eq!(resume.resume_offset, 3);
}

#[test]
fn observed_tail_makes_sparse_watermarks_exact() {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    f.sparse(A, A, 0, &[(0, 0), (10, 10), (20, 20)]);
    f.every_record(A, B, 0, &(0..30).map(|i| (i, i)).collect::<Vec<_>>());
    f.committed(0, 17);
    f.destination(0, 0, 30);
    assert_eq!(
        source(&resumed(&f.translate(), "orders", 0), A).watermark,
        Some(11)
    );
    // checkpoint-sync read A from the last checkpoint below the committed offset.
    let records = (10..17)
        .map(|offset| ObservedRecord {
            offset,
            provenance: Some(Provenance {
                region: A.into(),
                cluster: None,
                topic: "orders".into(),
                partition: 0,
                offset,
            }),
        })
        .collect();
    f.observed.insert(
        AggregatePartition::new("orders", 0),
        ObservedTail { start: 10, records },
    );
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(source(&resume, A).watermark, Some(17));
    assert_eq!(resume.resume_offset, 17);
    assert!(resume.exact);
}

#[test]
fn resume_below_destination_log_start_is_raised_and_reported() {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    f.every_record(A, A, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.every_record(A, B, 0, &(0..10).map(|i| (i, i)).collect::<Vec<_>>());
    f.committed(0, 3);
    // B's retention already deleted 0..5.
    f.destination(0, 5, 10);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(resume.resume_offset, 5);
    assert_eq!(resume.raised_to_log_start_from, Some(3));
}

#[test]
fn standby_commits_never_move_backwards() {
    let mut f = two_sources_every_record();
    f.committed(0, 13);
    let plan = f.translate();
    let current = BTreeMap::from([(AggregatePartition::new("orders", 0), 9)]);
    assert_eq!(
        plan.standby_commits(&current)
            .get(&AggregatePartition::new("orders", 0)),
        Some(&StandbyCommit::Keep(9))
    );
    let behind = BTreeMap::from([(AggregatePartition::new("orders", 0), 1)]);
    assert_eq!(
        plan.standby_commits(&behind)
            .get(&AggregatePartition::new("orders", 0)),
        Some(&StandbyCommit::Commit(3))
    );
}

#[test]
fn plan_json_round_trips_and_names_its_fields() -> Result<(), serde_json::Error> {
    let mut f = two_sources_every_record();
    f.committed(0, 13);
    f.destination(1, 0, 0);
    let plan = f.translate();
    let json = serde_json::to_value(&plan)?;
    assert_eq!(json["v"], 1);
    assert_eq!(json["group_id"], "billing");
    assert_eq!(json["partitions"][0]["status"], "resume");
    assert_eq!(json["partitions"][0]["resume_offset"], 3);
    assert_eq!(json["partitions"][0]["sources"][0]["region"], "east");
    assert_eq!(json["partitions"][0]["sources"][0]["watermark"], 10);
    assert_eq!(json["partitions"][1]["status"], "not_committed");
    let back: TranslationPlan = serde_json::from_value(json)?;
    assert_eq!(back, plan);
    Ok(())
}

fn contradicted(plan: &TranslationPlan, partition: u32) -> tributary_core::ContradictionPlan {
    let found = plan
        .partitions
        .iter()
        .find(|p| p.topic == "orders" && p.partition == partition)
        .map(|p| p.outcome.clone());
    match found {
        Some(PartitionOutcome::Contradicted(contradiction)) => contradiction,
        other => panic!("orders/{partition}: expected a refusal, got {other:?}"),
    }
}

/// East only, one partition: A holds east's records 0..1000 at 0..1000, every one
/// checkpointed; B held them at 7000..8000 until its topic was recreated.
fn east_only_with_b_recreated() -> Fixture {
    let mut f = Fixture::new(TopicNaming::Identity);
    f.layout.add_source_topic(A, "orders", 1);
    f.every_record(A, A, 0, &(0..1000).map(|i| (i, i)).collect::<Vec<_>>());
    f.every_record(
        A,
        B,
        0,
        &(0..1000).map(|i| (i, 7000 + i)).collect::<Vec<_>>(),
    );
    f.committed(0, 990);
    f
}

#[test]
fn resume_beyond_a_recreated_destinations_end_is_refused_not_clamped() {
    let mut f = east_only_with_b_recreated();
    // B's topic was recreated and the replicator has copied 50 records into it (east's
    // 1000..1050, not checkpointed yet): the old checkpoints put the group at 7990.
    f.destination(0, 0, 50);
    let plan = f.translate();
    let refused = contradicted(&plan, 0);
    let beyond = refused.beyond_log_end.clone().expect("beyond B's log end");
    assert_eq!((beyond.resume_offset, beyond.log_end), (7990, 50));
    assert_eq!(
        beyond.limited_by,
        Some(SourcePartition::new(A, "orders", 0))
    );
    assert!(
        refused.reason.contains("orders/0") && refused.reason.contains("east→west"),
        "names the partition and the route: {}",
        refused.reason
    );
    // Nothing to commit for it, and the plan says it is not complete.
    assert!(plan.resume_offsets().is_empty());
    assert!(!plan.exact);
    assert_eq!(plan.contradicted().count(), 1);
}

#[test]
fn contradicting_checkpoints_refuse_the_partition_until_a_restart_origin() {
    let mut f = east_only_with_b_recreated();
    f.committed(0, 1020);
    f.every_record(A, A, 0, &(1000..1100).map(|i| (i, i)).collect::<Vec<_>>());
    // The recreated B received east's 1000.. from offset 0 on, and its log has grown past
    // the old one: 9000 records. Only the first checkpoint of the new log is read so far.
    f.sparse(A, B, 0, &[(1000, 0)]);
    f.destination(0, 0, 9000);
    let plan = f.translate();
    let refused = contradicted(&plan, 0);
    assert_eq!(refused.routes.len(), 1);
    let route = &refused.routes[0];
    assert_eq!(
        (
            route.source_region.as_str(),
            route.destination_region.as_str()
        ),
        (A, B)
    );
    assert_eq!(
        (
            route.retained_source_offset,
            route.retained_destination_offset
        ),
        (999, 7999)
    );
    assert_eq!(
        (
            route.contradicting_source_offset,
            route.contradicting_destination_offset
        ),
        (1000, 0)
    );
    assert!(
        refused.reason.contains("orders/0") && refused.reason.contains("restart origin"),
        "names the partition and the fix: {}",
        refused.reason
    );
    assert!(plan.resume_offsets().is_empty());

    // More checkpoints of the new log do not resolve it, even once past the old log's end.
    f.sparse(A, B, 0, &[(1010, 10), (9500, 8500)]);
    assert_eq!(
        contradicted(&f.translate(), 0).routes[0].contradicting_checkpoints,
        2
    );

    // The replicator (or an operator) writes a restart origin for the route: B's log starts
    // at 0 and holds east from 1000 on. The partition resumes, at or before east's 1020.
    f.origin(A, B, 0, 1000, 0);
    f.sparse(A, B, 0, &[(1019, 19), (1030, 30)]);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(source(&resume, A).watermark, Some(1020));
    assert!(resume.resume_offset <= 20, "{resume:#?}");
}

#[test]
fn an_origin_written_before_copying_into_a_recreated_destination_restarts_the_route() {
    let mut f = east_only_with_b_recreated();
    f.committed(0, 1020);
    f.every_record(A, A, 0, &(1000..1100).map(|i| (i, i)).collect::<Vec<_>>());
    // ExactlyOnce: the stored position went with B's topic, so the replicator starts the route
    // afresh with an origin at B's new end (east's log now starts at 1000), then copies.
    f.origin(A, B, 0, 1000, 0);
    f.every_record(
        A,
        B,
        0,
        &(1000..1100).map(|i| (i, i - 1000)).collect::<Vec<_>>(),
    );
    f.destination(0, 0, 100);
    let resume = resumed(&f.translate(), "orders", 0);
    assert_eq!(resume.resume_offset, 20);
    assert!(resume.exact);

    // A checkpoint of the old log arriving late (a second writer) lies below the restart
    // origin: a contradiction, not a fact about the new log.
    f.sparse(A, B, 0, &[(990, 7990)]);
    let refused = contradicted(&f.translate(), 0);
    assert_eq!(
        (
            refused.routes[0].retained_source_offset,
            refused.routes[0].contradicting_source_offset
        ),
        (1000, 990)
    );
}

#[test]
fn a_contradicted_plan_serializes_its_reason() -> Result<(), serde_json::Error> {
    let mut f = east_only_with_b_recreated();
    f.destination(0, 0, 50);
    let plan = f.translate();
    let json = serde_json::to_value(&plan)?;
    assert_eq!(json["exact"], false);
    assert_eq!(json["partitions"][0]["status"], "contradicted");
    assert_eq!(json["partitions"][0]["committed_offset"], 990);
    assert_eq!(json["partitions"][0]["beyond_log_end"]["log_end"], 50);
    assert!(json["partitions"][0]["reason"].is_string());
    let back: TranslationPlan = serde_json::from_value(json)?;
    assert_eq!(back, plan);
    Ok(())
}

impl Fixture {
    fn shortfall(&self) -> Option<CheckpointKey> {
        tributary_core::window_shortfall(&self.request())
    }
}

#[test]
fn a_window_that_holds_the_checkpoints_around_the_position_has_no_shortfall() {
    let mut f = two_sources_every_record();
    assert_eq!(f.shortfall(), None, "the whole log read");
    // A window that starts after the group's position in A: nothing places it.
    let mut late = Fixture::identity(1);
    late.committed(0, 2);
    late.every_record(A, A, 0, &[(5, 10), (6, 11)]);
    late.every_record(B, A, 0, &[(5, 12)]);
    late.every_record(A, B, 0, &[(5, 20)]);
    late.every_record(B, B, 0, &[(5, 21)]);
    assert_eq!(
        late.shortfall(),
        Some(CheckpointKey::new(Route::new(A, A), "orders", 0))
    );
    // The route's origin is in the window: it started there, nothing older exists.
    late.origin(A, A, 0, 5, 10);
    late.origin(B, A, 0, 5, 12);
    assert_eq!(
        late.shortfall(),
        Some(CheckpointKey::new(Route::new(A, B), "orders", 0)),
        "nothing of A's records is consumed, so B needs the route's origin"
    );
    late.origin(A, B, 0, 5, 20);
    late.origin(B, B, 0, 5, 21);
    assert_eq!(late.shortfall(), None);
    // At offset 3 of A nothing of west's lies below: only its origin can say so.
    f.committed(0, 3);
    assert_eq!(
        f.shortfall(),
        Some(CheckpointKey::new(Route::new(B, A), "orders", 0))
    );
    let mut with_origins = Fixture::identity(1);
    with_origins.origin(A, A, 0, 0, 0);
    with_origins.origin(B, A, 0, 0, 10);
    with_origins.origin(B, B, 0, 0, 0);
    with_origins.origin(A, B, 0, 0, 10);
    let pairs = |base: u64| (0..10).map(|i| (i, base + i)).collect::<Vec<_>>();
    with_origins.every_record(A, A, 0, &pairs(0));
    with_origins.every_record(B, A, 0, &pairs(10));
    with_origins.every_record(B, B, 0, &pairs(0));
    with_origins.every_record(A, B, 0, &pairs(10));
    with_origins.committed(0, 3);
    assert_eq!(with_origins.shortfall(), None);
}

#[test]
fn a_window_missing_the_standby_side_below_the_watermark_is_short() {
    let mut f = Fixture::identity(1);
    f.committed(0, 11);
    f.every_record(A, A, 0, &[(5, 10), (6, 11)]);
    f.origin(B, A, 0, 0, 12);
    f.origin(B, B, 0, 0, 0);
    // The group consumed A's source up to offset 5: B must know where offset 5 or lower is.
    f.every_record(A, B, 0, &[(7, 30), (8, 31)]);
    assert_eq!(
        f.shortfall(),
        Some(CheckpointKey::new(Route::new(A, B), "orders", 0))
    );
    f.every_record(A, B, 0, &[(9, 32)]);
    f.sparse(A, B, 0, &[(5, 29)]);
    assert_eq!(
        f.shortfall(),
        Some(CheckpointKey::new(Route::new(A, B), "orders", 0)),
        "an older checkpoint that arrives late is stale news, not a window reaching back"
    );
    let mut read_from_earlier = Fixture::identity(1);
    read_from_earlier.committed(0, 11);
    read_from_earlier.every_record(A, A, 0, &[(5, 10), (6, 11)]);
    read_from_earlier.origin(B, A, 0, 0, 12);
    read_from_earlier.origin(B, B, 0, 0, 0);
    read_from_earlier.every_record(A, B, 0, &[(4, 28), (5, 29), (7, 30)]);
    assert_eq!(read_from_earlier.shortfall(), None);
}
