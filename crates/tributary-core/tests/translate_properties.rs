//! Property tests: random interleavings of 1–4 sources into 2–3 aggregates, random checkpoint
//! sparsity, stale readers and group positions, translated from one aggregate to another and
//! checked against the simulated truth — also in messy worlds: at-least-once re-copies
//! (duplicates in the aggregates), a restarted writer's checkpoints interleaved with its
//! predecessor's late ones (concurrent writers), and a recreated destination topic.

mod sim;

use std::collections::BTreeMap;

use proptest::prelude::*;
use sim::{Mess, Rng, Sparsity, World, WorldConfig};
use tributary_core::CheckpointIndexes;
use tributary_core::index::ThinningPolicy;
use tributary_core::{
    AggregatePartition, Deduper, LogOffsets, ObservedRecord, ObservedTail, PartitionOutcome,
    TranslationRequest, translate,
};

fn sparsity() -> impl Strategy<Value = Sparsity> {
    prop_oneof![
        Just(Sparsity::EveryRecord),
        (2..6usize).prop_map(Sparsity::EveryKth),
        (5..95u64).prop_map(|percent| Sparsity::Random { percent }),
    ]
}

fn config(exact: bool) -> impl Strategy<Value = WorldConfig> {
    config_with(exact, Just(Mess::default()))
}

fn mess() -> impl Strategy<Value = Mess> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(recopies, concurrent, recreated)| {
        Mess {
            recopies: recopies || concurrent,
            // A writer that has not seen the recreation is not modelled next to one that has
            // (one writer per route at a time: Recreate strategy, transactional fencing).
            concurrent_writers: concurrent && !recreated,
            recreated_destination: recreated,
        }
    })
}

fn config_with(
    exact: bool,
    mess: impl Strategy<Value = Mess>,
) -> impl Strategy<Value = WorldConfig> {
    (
        mess,
        any::<u64>(),
        1..=4usize,
        2..=3usize,
        1..=3u32,
        0..=30u64,
        sparsity(),
    )
        .prop_map(
            move |(mess, seed, sources, aggregates, partitions, max_records, sparsity)| {
                WorldConfig {
                    seed,
                    sources,
                    aggregates,
                    partitions,
                    max_records,
                    sparsity,
                    exact,
                    mess,
                }
            },
        )
}

fn policy() -> impl Strategy<Value = ThinningPolicy> {
    prop_oneof![
        Just(ThinningPolicy::default()),
        (1..5usize, 1..4usize)
            .prop_map(|(recent, per_level)| ThinningPolicy::new(recent, per_level)),
    ]
}

/// One translation scenario drawn from a seed: which regions, how far each reader and the
/// group have got.
struct Scenario {
    from: usize,
    to: usize,
    committed: BTreeMap<AggregatePartition, u64>,
    destination: BTreeMap<AggregatePartition, LogOffsets>,
    observed: BTreeMap<AggregatePartition, ObservedTail>,
    from_checkpoints_end: Vec<u64>,
    to_end: Vec<u64>,
}

fn scenario(world: &World, seed: u64, exact: bool) -> Scenario {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let aggregates = world.aggregate_regions.len() as u64;
    let (from, to) = if world.mess.recreated_destination {
        // The recreated aggregate (the last) is where the group resumes.
        (rng.below(aggregates - 1) as usize, aggregates as usize - 1)
    } else {
        let from = rng.below(aggregates) as usize;
        (
            from,
            (from + 1 + rng.below(aggregates - 1) as usize) % aggregates as usize,
        )
    };
    let mut scenario = Scenario {
        from,
        to,
        committed: BTreeMap::new(),
        destination: BTreeMap::new(),
        observed: BTreeMap::new(),
        from_checkpoints_end: Vec::new(),
        to_end: Vec::new(),
    };
    for p in 0..world.partitions {
        let aggregate = World::aggregate_partition(p);
        let from_len = world.log(from, p).len() as u64;
        let to_len = world.log(to, p).len() as u64;
        // B lags behind by a random amount; the checkpoint reader of A may be stale.
        let to_end = if rng.chance(50) {
            to_len
        } else {
            rng.below(to_len + 1)
        };
        let from_checkpoints_end = if exact || rng.chance(50) {
            from_len
        } else {
            rng.below(from_len + 1)
        };
        scenario.to_end.push(to_end);
        scenario.from_checkpoints_end.push(from_checkpoints_end);
        scenario.destination.insert(
            aggregate.clone(),
            LogOffsets {
                start: 0,
                end: to_end,
            },
        );
        if rng.chance(10) {
            continue; // never committed
        }
        let committed = rng.below(from_len + 1);
        scenario.committed.insert(aggregate.clone(), committed);
        if !exact && rng.chance(30) {
            let start = rng.below(committed + 1);
            let records = world
                .log(from, p)
                .iter()
                .enumerate()
                .skip(start as usize)
                .take((committed - start) as usize)
                .map(|(offset, record)| ObservedRecord {
                    offset: offset as u64,
                    provenance: Some(world.provenance(*record, p)),
                })
                .collect();
            scenario
                .observed
                .insert(aggregate, ObservedTail { start, records });
        }
    }
    scenario
}

/// Translates and checks every resumed partition against the truth; returns the plan.
fn check_translation(
    world: &World,
    scenario: &Scenario,
    policy: ThinningPolicy,
    exact: bool,
) -> Result<tributary_core::TranslationPlan, TestCaseError> {
    let indexes = world.indexes(
        policy,
        &[
            (scenario.from, scenario.from_checkpoints_end.clone()),
            (scenario.to, scenario.to_end.clone()),
        ],
    );
    check_translation_of(world, scenario, &indexes, exact)
}

/// As [`check_translation`], from indexes of a suffix of each checkpoint topic: what a reader
/// that starts inside the topic (layout v2's window, or a topic that retention cut) holds.
fn check_translation_of_suffixes(
    world: &World,
    scenario: &Scenario,
    policy: ThinningPolicy,
    seed: u64,
) -> Result<tributary_core::TranslationPlan, TestCaseError> {
    let mut rng = Rng::new(seed);
    let mut indexes = CheckpointIndexes::new(policy);
    for (aggregate, end) in [
        (scenario.from, &scenario.from_checkpoints_end),
        (scenario.to, &scenario.to_end),
    ] {
        let records = world.checkpoint_records(aggregate, end);
        let skip = rng.below(records.len() as u64 + 1) as usize;
        World::load(&mut indexes, &records[skip..]);
    }
    check_translation_of(world, scenario, &indexes, false)
}

fn check_translation_of(
    world: &World,
    scenario: &Scenario,
    indexes: &CheckpointIndexes,
    exact: bool,
) -> Result<tributary_core::TranslationPlan, TestCaseError> {
    let layout = world.layout();
    let plan = translate(&TranslationRequest {
        group_id: "g",
        from_region: &world.aggregate_regions[scenario.from],
        to_region: &world.aggregate_regions[scenario.to],
        layout: &layout,
        checkpoints: indexes,
        committed: &scenario.committed,
        destination: &scenario.destination,
        observed: &scenario.observed,
    });
    let deduper = Deduper::from_plan(&plan);
    // Every duplicate bound counts records the routes copied once; at-least-once re-copies are
    // outside them (docs/checkpoint-format.md). Never-skip and the watermarks hold regardless.
    let bounds_hold = !world.mess.recopies;
    for partition in &plan.partitions {
        let p = partition.partition;
        let resume = match &partition.outcome {
            PartitionOutcome::Resume(resume) => resume,
            PartitionOutcome::Contradicted(refused) => {
                // Refusing is safe (nothing is committed) but must not happen in a world
                // without contradicting writers; a restart origin resolves a recreation.
                prop_assert!(
                    world.mess.concurrent_writers,
                    "refused without a reason in the world: {:#?}",
                    refused
                );
                continue;
            }
            _ => {
                prop_assert!(partition.committed_offset.is_none());
                continue;
            }
        };
        let committed = partition.committed_offset.unwrap_or_default();
        let truth = world.true_watermarks(scenario.from, p, committed);
        let outcome = sim::outcome(
            world,
            (scenario.from, scenario.to),
            p,
            committed,
            resume.resume_offset,
            &deduper,
        );
        prop_assert_eq!(outcome.skipped, 0, "skipped records: {:#?}", resume);
        prop_assert!(resume.resume_offset <= scenario.to_end[p as usize]);
        prop_assert!(
            !bounds_hold || outcome.duplicates <= resume.max_duplicates,
            "{} duplicates above the bound {}: {:#?}",
            outcome.duplicates,
            resume.max_duplicates,
            resume
        );
        prop_assert!(
            !bounds_hold || outcome.duplicates_after_dedupe <= resume.max_duplicates_after_dedupe,
            "{} duplicates after dedupe above the bound {}: {:#?}",
            outcome.duplicates_after_dedupe,
            resume.max_duplicates_after_dedupe,
            resume
        );
        for source in &resume.sources {
            let s = world
                .source_regions
                .iter()
                .position(|r| *r == source.source.region)
                .unwrap_or(usize::MAX);
            prop_assert!(
                s < world.source_regions.len(),
                "unknown source {:?}",
                source.source
            );
            // A watermark never claims more than was consumed.
            prop_assert!(
                source.watermark <= truth[s],
                "{:?} vs truth {:?}",
                source,
                truth[s]
            );
            if exact {
                prop_assert_eq!(source.watermark, truth[s]);
                prop_assert!(source.watermark_exact);
            }
        }
        if exact && bounds_hold {
            prop_assert_eq!(resume.max_duplicates_after_dedupe, 0);
            prop_assert_eq!(outcome.duplicates_after_dedupe, 0);
        }
    }
    Ok(plan)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn translation_never_skips_and_stays_within_its_duplicate_bound(
        config in config(false),
        policy in policy(),
        scenario_seed in any::<u64>(),
    ) {
        let world = World::build(&config);
        let scenario = scenario(&world, scenario_seed, false);
        check_translation(&world, &scenario, policy, false)?;
    }

    /// Layout v2 readers start inside the checkpoint topics: from any suffix of them, a
    /// translation never skips and stays within its bounds, in a messy world too.
    #[test]
    fn translation_from_any_suffix_of_the_checkpoint_topics_never_skips(
        config in config_with(false, mess()),
        policy in policy(),
        scenario_seed in any::<u64>(),
        suffix_seed in any::<u64>(),
    ) {
        let world = World::build(&config);
        let scenario = scenario(&world, scenario_seed, false);
        check_translation_of_suffixes(&world, &scenario, policy, suffix_seed)?;
    }

    /// Re-copies, concurrent checkpoint writers and a recreated destination: a partition is
    /// resumed without skipping a record, or refused; never resumed where it could skip.
    #[test]
    fn translation_never_skips_in_a_messy_world(
        config in config_with(false, mess()),
        policy in policy(),
        scenario_seed in any::<u64>(),
    ) {
        let world = World::build(&config);
        let scenario = scenario(&world, scenario_seed, false);
        check_translation(&world, &scenario, policy, false)?;
    }

    /// Re-copies make watermarks inexact (the index ignores rewinds, so it cannot tell a
    /// re-copy from a record it has not seen), so exactness is pinned for recreation alone.
    #[test]
    fn per_record_checkpoints_stay_exact_after_a_recreated_destination(
        config in config(true),
        scenario_seed in any::<u64>(),
    ) {
        let config = WorldConfig {
            mess: Mess { recreated_destination: true, ..Mess::default() },
            ..config
        };
        let world = World::build(&config);
        let scenario = scenario(&world, scenario_seed, true);
        check_translation(&world, &scenario, ThinningPolicy::default(), true)?;
    }

    #[test]
    fn per_record_checkpoints_give_exact_watermarks_and_zero_duplicates_after_dedupe(
        config in config(true),
        scenario_seed in any::<u64>(),
    ) {
        let world = World::build(&config);
        let scenario = scenario(&world, scenario_seed, true);
        check_translation(&world, &scenario, ThinningPolicy::default(), true)?;
    }

    /// A standby sync repeated as the group, the replicators and the checkpoint readers move
    /// on: committed offsets in B never go backwards, and each one is still safe — also with
    /// re-copies and concurrent checkpoint writers.
    #[test]
    fn standby_sync_is_monotone_and_never_skips(
        config in config_with(false, mess().prop_map(|m| Mess { recreated_destination: false, ..m })),
        policy in policy(),
        seed in any::<u64>(),
        rounds in 2..6usize,
    ) {
        let world = World::build(&config);
        let mut rng = Rng::new(seed);
        let aggregates = world.aggregate_regions.len() as u64;
        let from = rng.below(aggregates) as usize;
        let to = (from + 1 + rng.below(aggregates - 1) as usize) % aggregates as usize;
        let layout = world.layout();
        let partitions = world.partitions as usize;
        let mut committed_in_from = vec![0u64; partitions];
        let mut from_end = vec![0u64; partitions];
        let mut to_end = vec![0u64; partitions];
        let mut standby: BTreeMap<AggregatePartition, u64> = BTreeMap::new();
        let mut indexes = tributary_core::CheckpointIndexes::new(policy);
        // What the reader has read: each round reads only records it has not.
        let mut read: Vec<tributary_core::CheckpointRecord> = Vec::new();
        for _ in 0..rounds {
            for p in 0..partitions {
                let from_len = world.log(from, p as u32).len() as u64;
                let to_len = world.log(to, p as u32).len() as u64;
                committed_in_from[p] += rng.below(from_len - committed_in_from[p] + 1);
                from_end[p] += rng.below(from_len - from_end[p] + 1);
                to_end[p] += rng.below(to_len - to_end[p] + 1);
            }
            // Incremental, as a long-running sync reads the checkpoint topics.
            for records in [
                world.checkpoint_records(from, &from_end),
                world.checkpoint_records(to, &to_end),
            ] {
                let new: Vec<_> = records.into_iter().filter(|r| !read.contains(r)).collect();
                World::load(&mut indexes, &new);
                read.extend(new);
            }
            let committed: BTreeMap<_, _> = (0..world.partitions)
                .map(|p| (World::aggregate_partition(p), committed_in_from[p as usize]))
                .collect();
            let destination: BTreeMap<_, _> = (0..world.partitions)
                .map(|p| (World::aggregate_partition(p), LogOffsets { start: 0, end: to_end[p as usize] }))
                .collect();
            let plan = translate(&TranslationRequest {
                group_id: "g",
                from_region: &world.aggregate_regions[from],
                to_region: &world.aggregate_regions[to],
                layout: &layout,
                checkpoints: &indexes,
                committed: &committed,
                destination: &destination,
                observed: &BTreeMap::new(),
            });
            let deduper = Deduper::from_plan(&plan);
            for (partition, _) in plan.contradicted() {
                prop_assert!(world.mess.concurrent_writers, "refused in a clean world: {}", partition);
            }
            for (partition, decision) in plan.standby_commits(&standby) {
                let previous = standby.get(&partition).copied();
                let offset = decision.offset();
                prop_assert!(previous.is_none_or(|previous| offset >= previous));
                let p = partition.partition;
                let outcome = sim::outcome(
                    &world,
                    (from, to),
                    p,
                    committed_in_from[p as usize],
                    offset,
                    &deduper,
                );
                prop_assert_eq!(outcome.skipped, 0);
                standby.insert(partition, offset);
            }
        }
    }
}

/// The messy worlds above are not vacuous: over fixed seeds they re-copy records, refuse
/// partitions whose writers contradict each other, and resume recreated partitions.
#[test]
fn messy_worlds_exercise_recopies_refusals_and_recreated_partitions() {
    let (mut resumed_recreated, mut refused, mut duplicated) = (0, 0, 0);
    for seed in 0..400u64 {
        let mess = Mess {
            recopies: true,
            concurrent_writers: seed % 2 == 0,
            recreated_destination: seed % 2 == 1,
        };
        let config = WorldConfig {
            seed,
            sources: 1 + (seed % 3) as usize,
            aggregates: 2,
            partitions: 2,
            max_records: 30,
            sparsity: Sparsity::EveryKth(2),
            exact: false,
            mess,
        };
        let world = World::build(&config);
        let scenario = scenario(&world, seed, false);
        let plan = check_translation(&world, &scenario, ThinningPolicy::default(), false)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        refused += plan.contradicted().count();
        for partition in &plan.partitions {
            if matches!(partition.outcome, PartitionOutcome::Resume(_))
                && world.is_recreated(scenario.to, partition.partition)
            {
                resumed_recreated += 1;
            }
        }
        for p in 0..world.partitions {
            let log = world.log(scenario.to, p);
            let distinct: std::collections::BTreeSet<_> = log.iter().collect();
            duplicated += usize::from(distinct.len() < log.len());
        }
    }
    assert!(refused > 0, "no contradiction was ever refused");
    assert!(resumed_recreated > 0, "no recreated partition was resumed");
    assert!(duplicated > 0, "no aggregate held a re-copy");
    println!("refused={refused} resumed_recreated={resumed_recreated} duplicated={duplicated}");
}
