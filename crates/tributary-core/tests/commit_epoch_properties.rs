//! The commit-metadata epoch convention, over arbitrary input: what a consumer writes is read
//! back exactly, nothing panics, and only the sync's own epoch (or no claim) is translated.

use proptest::prelude::*;
use tributary_core::commit_epoch::{
    CommitClaim, CommitVerdict, commit_metadata, judge_commit, parse_commit_metadata,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_a_consumer_commits_is_read_back(epoch in any::<u64>(), region in "[a-z]([a-z0-9-]{0,61}[a-z0-9])?") {
        let metadata = commit_metadata(epoch, &region);
        prop_assert!(metadata.len() < 4096);
        prop_assert_eq!(parse_commit_metadata(&metadata), CommitClaim::Epoch { epoch, region });
    }

    #[test]
    fn any_metadata_gets_an_answer_and_only_the_own_epoch_translates(metadata in ".{0,80}", ours in proptest::option::of(0u64..10)) {
        let claim = parse_commit_metadata(&metadata);
        let verdict = judge_commit(&claim, ours);
        let expected = match (&claim, ours) {
            (_, None) | (CommitClaim::Unclaimed, _) => true,
            (CommitClaim::Epoch { epoch, .. }, Some(e)) => *epoch == e,
            (CommitClaim::Malformed(_), Some(_)) => false,
        };
        prop_assert_eq!(verdict.translates(), expected);
        if let CommitVerdict::Zombie { epoch, .. } = verdict {
            prop_assert!(ours.is_some_and(|e| epoch < e));
        }
    }

    #[test]
    fn older_epochs_are_zombies(ours in 1u64..1000, behind in 1u64..1000) {
        let epoch = ours.saturating_sub(behind);
        prop_assume!(epoch < ours);
        let claim = parse_commit_metadata(&commit_metadata(epoch, "east"));
        let is_zombie = matches!(judge_commit(&claim, Some(ours)), CommitVerdict::Zombie { .. });
        prop_assert!(is_zombie);
    }
}
