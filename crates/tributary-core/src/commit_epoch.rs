//! The epoch in offset-commit metadata: a consumer that commits with the metadata
//! `tributary epoch=N region=R` says it acted for epoch `N` of its group's active-region Lease,
//! in region `R`. A standby sync acting for epoch `E` treats a commit of an older epoch
//! (`N < E`) as a *zombie commit*: a consumer that missed a move kept committing. It is
//! counted and never translated ([`CommitVerdict`]). Commits without the convention are
//! translated as before. The format is ASCII, well under Kafka's default 4 KiB
//! `offset.metadata.max.bytes`.
//!
//! Grammar: `tributary` then space-separated `key=value` fields; `epoch` (decimal, required)
//! and `region` (required) must appear once each; unknown keys are ignored, so the
//! convention can grow. Metadata that starts with `tributary ` but does not parse is
//! [`CommitClaim::Malformed`]: it claims the convention and cannot be trusted (fail closed).

use serde::{Deserialize, Serialize};

/// The first word of the convention.
pub const PREFIX: &str = "tributary";

/// Longest metadata this module writes or accepts as the convention (Kafka's default limit
/// is 4096 bytes; a region name is a DNS label, so real values are ~40 bytes).
pub const MAX_METADATA_BYTES: usize = 4096;

/// The metadata a consumer commits with, acting for `epoch` in `region`.
pub fn commit_metadata(epoch: u64, region: &str) -> String {
    format!("{PREFIX} epoch={epoch} region={region}")
}

/// What a commit's metadata says about its writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitClaim {
    /// No metadata, or metadata of another convention: nothing is known.
    Unclaimed,
    /// `tributary epoch=N region=R`.
    Epoch { epoch: u64, region: String },
    /// Starts with `tributary ` but does not parse (the reason, for a person).
    Malformed(String),
}

/// Reads a commit's metadata.
pub fn parse_commit_metadata(metadata: &str) -> CommitClaim {
    let Some(rest) = metadata.strip_prefix(PREFIX) else {
        return CommitClaim::Unclaimed;
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        // `tributaryX...`: another word, not the convention.
        return CommitClaim::Unclaimed;
    }
    if metadata.len() > MAX_METADATA_BYTES {
        return CommitClaim::Malformed(format!(
            "longer than {MAX_METADATA_BYTES} bytes ({})",
            metadata.len()
        ));
    }
    let mut epoch = None;
    let mut region = None;
    for field in rest.split_ascii_whitespace() {
        let Some((key, value)) = field.split_once('=') else {
            return CommitClaim::Malformed(format!("field {field:?} is not key=value"));
        };
        let slot = match key {
            "epoch" => &mut epoch,
            "region" => &mut region,
            _ => continue,
        };
        if slot.is_some() {
            return CommitClaim::Malformed(format!("{key} appears twice"));
        }
        *slot = Some(value.to_string());
    }
    let Some(epoch) = epoch else {
        return CommitClaim::Malformed("no epoch=N".into());
    };
    let Ok(epoch) = epoch.parse::<u64>() else {
        return CommitClaim::Malformed(format!("epoch {epoch:?} is not a number"));
    };
    match region {
        Some(region) if !region.is_empty() => CommitClaim::Epoch { epoch, region },
        _ => CommitClaim::Malformed("no region=R".into()),
    }
}

/// What a sync acting for `ours` does with a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitVerdict {
    /// Translate it (no convention, or the sync's own epoch, or the sync knows no epoch).
    Translate,
    /// An older epoch: a zombie. Counted, never translated.
    Zombie { epoch: u64, region: String },
    /// Not translated this round, not a zombie: a newer epoch than the sync's (it is about
    /// to be superseded) or a claim that does not parse.
    Hold { reason: String },
}

impl CommitVerdict {
    pub fn translates(&self) -> bool {
        matches!(self, CommitVerdict::Translate)
    }
}

/// The rule: `ours` is the sync's `--epoch` (`None`: it acts for no epoch, every commit is
/// translated as before).
pub fn judge_commit(claim: &CommitClaim, ours: Option<u64>) -> CommitVerdict {
    let Some(ours) = ours else {
        return CommitVerdict::Translate;
    };
    match claim {
        CommitClaim::Unclaimed => CommitVerdict::Translate,
        CommitClaim::Epoch { epoch, .. } if *epoch == ours => CommitVerdict::Translate,
        CommitClaim::Epoch { epoch, region } if *epoch < ours => CommitVerdict::Zombie {
            epoch: *epoch,
            region: region.clone(),
        },
        CommitClaim::Epoch { epoch, .. } => CommitVerdict::Hold {
            reason: format!(
                "committed for epoch {epoch}, newer than this sync's {ours} (superseded soon)"
            ),
        },
        CommitClaim::Malformed(why) => CommitVerdict::Hold {
            reason: format!("metadata claims the tributary convention but {why}"),
        },
    }
}

/// A standby's report of zombie commits, served at `GET /status` and read by the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZombieReport {
    /// The epoch the sync acts for.
    pub epoch: Option<u64>,
    /// Zombie commits seen since the sync started (one per partition and committed offset).
    pub zombie_commits_total: u64,
    /// Partitions whose latest commit in the active region is a zombie's (held: not
    /// translated; the standby keeps its last good position).
    pub held_partitions: Vec<ZombieCommit>,
}

/// One partition held by a zombie commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZombieCommit {
    pub topic: String,
    pub partition: u32,
    /// The zombie's committed offset in the active region (never translated).
    pub offset: u64,
    pub epoch: u64,
    pub region: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_convention_round_trips_and_other_metadata_is_unclaimed() {
        assert_eq!(
            parse_commit_metadata(&commit_metadata(7, "east")),
            CommitClaim::Epoch {
                epoch: 7,
                region: "east".into()
            }
        );
        assert_eq!(parse_commit_metadata(""), CommitClaim::Unclaimed);
        assert_eq!(parse_commit_metadata("my-app v2"), CommitClaim::Unclaimed);
        assert_eq!(
            parse_commit_metadata("tributaryx epoch=1"),
            CommitClaim::Unclaimed
        );
        assert_eq!(
            parse_commit_metadata("tributary region=west  epoch=3 host=a"),
            CommitClaim::Epoch {
                epoch: 3,
                region: "west".into()
            },
            "order free, unknown keys ignored"
        );
        for bad in [
            "tributary",
            "tributary epoch=x region=east",
            "tributary region=east",
            "tributary epoch=1",
            "tributary epoch=1 epoch=2 region=east",
            "tributary epoch=1 region=",
            "tributary epoch=-1 region=east",
            "tributary epoch 1",
        ] {
            assert!(
                matches!(parse_commit_metadata(bad), CommitClaim::Malformed(_)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_older_epoch_is_a_zombie_and_only_the_own_epoch_or_no_claim_translates() {
        let claim = |e| CommitClaim::Epoch {
            epoch: e,
            region: "east".into(),
        };
        assert_eq!(judge_commit(&claim(4), Some(4)), CommitVerdict::Translate);
        assert_eq!(
            judge_commit(&claim(3), Some(4)),
            CommitVerdict::Zombie {
                epoch: 3,
                region: "east".into()
            }
        );
        assert!(matches!(
            judge_commit(&claim(5), Some(4)),
            CommitVerdict::Hold { .. }
        ));
        assert!(matches!(
            judge_commit(&CommitClaim::Malformed("x".into()), Some(4)),
            CommitVerdict::Hold { .. }
        ));
        assert_eq!(
            judge_commit(&CommitClaim::Unclaimed, Some(4)),
            CommitVerdict::Translate
        );
        assert_eq!(judge_commit(&claim(1), None), CommitVerdict::Translate);
    }

    #[test]
    fn the_metadata_stays_far_below_kafkas_limit() {
        // A DNS-1123 label is at most 63 characters.
        let longest = commit_metadata(u64::MAX, &"r".repeat(63));
        assert!(longest.len() < 128, "{}", longest.len());
    }
}
