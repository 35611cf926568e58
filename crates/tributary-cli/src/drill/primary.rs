//! The primary role of an ActiveActive group as the drill observes it (pure): samples of the
//! `<name>-active` ConfigMap and Lease, which region may act as primary when, and the time two
//! regions may have acted as primary at once (split brain of the primary role).
//!
//! A region may act as primary from a sample that names it until the claim that sample shows
//! expires: the ConfigMap's `renewTime + ttlSeconds` (a consumer that read it may go on as
//! primary until then without reading it again; `fenced: "true"` or an empty `activeRegion`
//! is no claim), and the Lease's `renewTime + leaseDurationSeconds` for its holder. A claim
//! without a readable expiry lasts the sample's instant only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::verdict::overlap_of;

/// One observation of the ConfigMap and the Lease.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrimarySample {
    pub at_ms: i64,
    /// The ConfigMap's `activeRegion` (`None` when empty, fenced or the ConfigMap is absent).
    pub config_map_region: Option<String>,
    pub config_map_epoch: Option<i64>,
    /// `renewTime + ttlSeconds`.
    pub config_map_valid_until_ms: Option<i64>,
    pub lease_holder: Option<String>,
    pub lease_transitions: Option<i64>,
    /// `renewTime + leaseDurationSeconds`.
    pub lease_valid_until_ms: Option<i64>,
}

/// Per region, the merged stretches of time during which it may have acted as primary.
pub fn claims(samples: &[PrimarySample]) -> BTreeMap<String, Vec<(i64, i64)>> {
    let mut raw: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for s in samples {
        for (region, until) in [
            (&s.config_map_region, s.config_map_valid_until_ms),
            (&s.lease_holder, s.lease_valid_until_ms),
        ] {
            if let Some(region) = region.as_ref().filter(|r| !r.is_empty()) {
                let end = until.unwrap_or(s.at_ms).max(s.at_ms);
                raw.entry(region.clone()).or_default().push((s.at_ms, end));
            }
        }
    }
    for stretches in raw.values_mut() {
        stretches.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (a, b) in stretches.drain(..) {
            match merged.last_mut() {
                Some((_, end)) if a <= *end => *end = (*end).max(b),
                _ => merged.push((a, b)),
            }
        }
        *stretches = merged;
    }
    raw
}

/// The stretches of time during which two or more regions may have acted as primary (a
/// claim that expires as the next begins is a clean hand-over).
pub fn primary_overlaps(samples: &[PrimarySample]) -> Vec<(i64, i64)> {
    overlap_of(claims(samples).values().flatten())
}

/// When a sample first named `region` as primary in the ConfigMap at `epoch`.
pub fn first_named(samples: &[PrimarySample], region: &str, epoch: i64) -> Option<i64> {
    samples
        .iter()
        .find(|s| {
            s.config_map_region.as_deref() == Some(region) && s.config_map_epoch == Some(epoch)
        })
        .map(|s| s.at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, cm: Option<(&str, i64)>, lease: Option<(&str, i64)>) -> PrimarySample {
        PrimarySample {
            at_ms,
            config_map_region: cm.map(|(r, _)| r.to_string()),
            config_map_epoch: cm.map(|_| 1),
            config_map_valid_until_ms: cm.map(|(_, u)| u),
            lease_holder: lease.map(|(r, _)| r.to_string()),
            lease_transitions: lease.map(|_| 1),
            lease_valid_until_ms: lease.map(|(_, u)| u),
        }
    }

    #[test]
    fn a_hand_over_after_the_old_claim_expired_is_no_split_brain() {
        // east renewed last at 1 s (valid until 6 s); west took over at 6.2 s.
        let samples = [
            sample(1_000, Some(("east", 6_000)), Some(("east", 6_000))),
            sample(3_000, Some(("east", 6_000)), Some(("east", 6_000))),
            sample(6_200, Some(("west", 11_200)), Some(("west", 11_200))),
        ];
        assert_eq!(primary_overlaps(&samples), vec![]);
        let c = claims(&samples);
        assert_eq!(c["east"], vec![(1_000, 6_000)]);
        assert_eq!(c["west"], vec![(6_200, 11_200)]);
    }

    #[test]
    fn a_new_primary_before_the_old_claim_expired_is_split_brain() {
        // The Lease moved to west at 4 s while east's ConfigMap claim ran until 6 s.
        let samples = [
            sample(1_000, Some(("east", 6_000)), Some(("east", 6_000))),
            sample(4_000, Some(("east", 6_000)), Some(("west", 9_000))),
            sample(4_500, Some(("west", 9_500)), Some(("west", 9_000))),
        ];
        assert_eq!(primary_overlaps(&samples), vec![(4_000, 6_000)]);
    }

    #[test]
    fn a_fenced_or_empty_config_map_claims_nothing() {
        let mut fenced = sample(1_000, None, None);
        fenced.config_map_region = Some(String::new());
        let samples = [fenced, sample(2_000, Some(("west", 7_000)), None)];
        assert_eq!(claims(&samples).len(), 1);
        assert_eq!(first_named(&samples, "west", 1), Some(2_000));
        assert_eq!(first_named(&samples, "west", 2), None);
    }
}
