//! The gate's decision over arbitrary records and clocks: 200 exactly when the watch is
//! current, the record names this region, is not fenced, parses, and is fresh on the local
//! clock; a 200 always carries the region and epoch of the record.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use tributary_active_gate::verdict::{Observed, Reason, decide, default_margin};

const BASE: i64 = 1_700_000_000;

fn region() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("east".to_string()),
        Just("west".to_string()),
        Just(String::new())
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_gate_is_open_only_for_a_fresh_unfenced_record_of_its_own_region(
        active in region(),
        epoch in prop_oneof![(0u64..100).prop_map(|e| e.to_string()), Just("x".to_string())],
        fenced in prop_oneof![Just("true"), Just("false"), Just(""), Just("TRUE")],
        ttl in prop_oneof![(5u64..120).prop_map(|t| t.to_string()), Just(String::new())],
        renew_offset in -200i64..200,
        margin_ms in proptest::option::of(0u64..60_000),
        watch in 0u8..4,
    ) {
        let renew = Timestamp::from_second(BASE + renew_offset).unwrap_or(Timestamp::UNIX_EPOCH);
        let now = Timestamp::from_second(BASE).unwrap_or(Timestamp::UNIX_EPOCH);
        let data = BTreeMap::from([
            ("activeRegion".to_string(), active.clone()),
            ("epoch".to_string(), epoch.clone()),
            ("renewTime".to_string(), renew.to_string()),
            ("ttlSeconds".to_string(), ttl.clone()),
            ("fenced".to_string(), fenced.to_string()),
        ]);
        let observed = match watch {
            0 => Observed::Present(data),
            1 => Observed::Missing,
            2 => Observed::WatchLost("gone".into()),
            _ => Observed::Starting,
        };
        let margin = margin_ms.map(Duration::from_millis);
        let answer = decide(&observed, "east", now, margin);

        let expected = watch == 0
            && active == "east"
            && fenced != "true"
            && epoch.parse::<u64>().is_ok()
            && ttl.parse::<u64>().is_ok_and(|t| {
                let ttl = Duration::from_secs(t);
                let window = ttl.saturating_sub(margin.unwrap_or_else(|| default_margin(ttl)));
                // fresh: now < renew + window
                (-renew_offset as i128) * 1000 < window.as_millis() as i128
            });
        prop_assert_eq!(answer.active, expected, "{:?}", answer);
        prop_assert_eq!(answer.status_code(), if expected { 200 } else { 409 });
        prop_assert_eq!(answer.reason == Reason::Active, expected);
        if expected {
            prop_assert_eq!(answer.region.as_deref(), Some("east"));
            prop_assert_eq!(answer.epoch.map(|e| e.to_string()), Some(epoch));
        }
    }
}
