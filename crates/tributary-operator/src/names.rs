//! Deterministic names and labels of the objects the operator owns.

use std::collections::BTreeMap;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tributary-operator";
/// `app.kubernetes.io/managed-by` of every owned object.
pub const MANAGED_BY: &str = "tributary-operator";
/// Annotation that stops reconciling one object while set to `"true"`.
pub const PAUSED_ANNOTATION: &str = "tributary.dev/paused";
/// Finalizer for Kafka-side cleanup (only with `deletionPolicy: Delete`).
pub const TOPICS_FINALIZER: &str = "tributary.dev/delete-topics";
/// Label naming the AggregateCluster a replicator Deployment serves.
pub const AGGREGATE_LABEL: &str = "tributary.dev/aggregate";
/// Label naming the source RegionalStream of a replicator Deployment.
pub const SOURCE_LABEL: &str = "tributary.dev/source";
/// Label naming the route (the Deployment's own name); the selector of its pods.
pub const ROUTE_LABEL: &str = "tributary.dev/route";
/// Where the replicator pods must run.
pub const REGION_TOPOLOGY_KEY: &str = "topology.kubernetes.io/region";

const MAX_NAME: usize = 63;

/// The replicator Deployment of route `source → aggregate`: `tributary-route-<source>-to-<aggregate>`,
/// truncated and suffixed with a hash when longer than 63 characters (so it is still a valid
/// label value and unique per route).
pub fn route_deployment_name(source: &str, aggregate: &str) -> String {
    bounded_name(format!("tributary-route-{source}-to-{aggregate}"))
}

/// The standby sync Job of a ConsumerGroupFailover into `region` for `epoch`.
pub fn sync_job_name(failover: &str, region: &str, epoch: u64) -> String {
    bounded_name(format!("{failover}-sync-{region}-e{epoch}"))
}

/// The Lease and the ConfigMap of a ConsumerGroupFailover: `<name>-active`.
pub fn active_name(failover: &str) -> String {
    format!("{failover}-active")
}

/// Label naming the ConsumerGroupFailover of a sync Job.
pub const FAILOVER_LABEL: &str = "tributary.dev/failover";
/// Label naming the region a sync Job writes into.
pub const REGION_LABEL: &str = "tributary.dev/region";
/// Label naming the epoch a sync Job acts for.
pub const EPOCH_LABEL: &str = "tributary.dev/epoch";
/// Annotation that lets an automatic failover proceed to a stale or unknown standby.
pub const ACCEPT_DATA_LOSS_ANNOTATION: &str = "tributary.dev/accept-data-loss";

/// Annotation of the active-region Lease: the holder before the last move. A move back there
/// is a failback, whichever operator (whose status remembers only its own moves) makes it.
pub const PREVIOUS_HOLDER_ANNOTATION: &str = "tributary.dev/previous-holder";

/// Labels of the sync Jobs of one ConsumerGroupFailover (the prune selector).
pub fn failover_selector_labels(failover: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "tributary".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            failover.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (FAILOVER_LABEL.to_string(), failover.to_string()),
    ])
}

/// `full` if it is a valid name length, else truncated to 63 with a stable hash suffix (so it
/// is still a valid label value and unique).
fn bounded_name(full: String) -> String {
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = format!("{:016x}", fnv1a64(full.as_bytes()));
    let keep = MAX_NAME - 1 - 10;
    let mut prefix: String = full.chars().take(keep).collect();
    // A name must not end in '-' or '.' before the hash separator.
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{}", &hash[..10])
}

/// The route's identity on the Kafka side (the replicator's `--route`): it names the consumer
/// group and transactional id, which live in Kafka clusters that every namespace shares. So it
/// carries the namespace, and always ends in a hash of the exact (namespace, source, aggregate):
/// the readable part maps `.` to `-` (the replicator takes a DNS-1123 label) and may be cut,
/// and neither may make two routes share a group or fence each other's producers.
pub fn route_id(namespace: &str, source: &str, aggregate: &str) -> String {
    let readable = format!("{namespace}-{source}-to-{aggregate}").replace('.', "-");
    // '/' cannot occur in any of the three names: the hashed identity is unambiguous.
    let hash = format!(
        "{:016x}",
        fnv1a64(format!("{namespace}/{source}/{aggregate}").as_bytes())
    );
    let keep = MAX_NAME - 1 - 10;
    let mut prefix: String = readable.chars().take(keep).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    format!("{prefix}-{}", &hash[..10])
}

/// Labels of every replicator Deployment (and its pods) of route `source → aggregate`.
pub fn route_labels(source: &str, aggregate: &str) -> BTreeMap<String, String> {
    let mut labels = aggregate_selector_labels(aggregate);
    labels.insert("app.kubernetes.io/name".into(), "tributary".into());
    labels.insert(SOURCE_LABEL.into(), source.into());
    labels.insert(ROUTE_LABEL.into(), route_deployment_name(source, aggregate));
    labels
}

/// The labels that select the pods of one route Deployment (immutable once created).
pub fn route_selector_labels(source: &str, aggregate: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/instance".to_string(),
            aggregate.to_string(),
        ),
        (
            ROUTE_LABEL.to_string(),
            route_deployment_name(source, aggregate),
        ),
    ])
}

/// Labels shared by every replicator Deployment into one AggregateCluster: the prune selector.
pub fn aggregate_selector_labels(aggregate: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/instance".to_string(),
            aggregate.to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "replicator".to_string(),
        ),
        (AGGREGATE_LABEL.to_string(), aggregate.to_string()),
    ])
}

/// `k=v,k=v` of a label map, for list calls.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// FNV-1a: stable across releases and platforms (std's hasher is not), so names never change.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_route_names_are_readable() {
        assert_eq!(
            route_deployment_name("east", "west"),
            "tributary-route-east-to-west"
        );
    }

    fn is_dns_label(s: &str) -> bool {
        s.len() <= 63
            && regex::Regex::new(tributary_api::DNS1123_LABEL)
                .expect("regex")
                .is_match(s)
    }

    #[test]
    fn same_named_routes_in_two_namespaces_get_distinct_kafka_identities() {
        let a = route_id("team-a", "east", "west");
        let b = route_id("team-b", "east", "west");
        assert_ne!(a, b);
        assert!(a.starts_with("team-a-east-to-west-"), "{a}");
        assert_eq!(a, route_id("team-a", "east", "west"), "stable across calls");
    }

    #[test]
    fn route_ids_from_dotted_or_long_names_are_dns_labels_the_replicator_accepts() {
        for (ns, source, aggregate) in [
            ("dr", "east.payments", "west"),
            ("dr", "east", "west.aggregate.v2"),
            ("dr", &"s".repeat(120) as &str, "west"),
            (&"n".repeat(63) as &str, "east", "west"),
            ("dr", "east-", "west"),
        ] {
            let id = route_id(ns, source, aggregate);
            assert!(is_dns_label(&id), "{id:?} from {ns}/{source}/{aggregate}");
        }
    }

    #[test]
    fn names_that_differ_only_in_dots_or_separators_never_share_a_route_id() {
        let ids = [
            route_id("dr", "east.payments", "west"),
            route_id("dr", "east-payments", "west"),
            route_id("dr-east", "payments", "west"),
            route_id("dr", "east-to-payments", "west"),
            route_id("dr", "east", "payments-to-west"),
            route_id("dr", &"s".repeat(100), "west-1"),
            route_id("dr", &"s".repeat(100), "west-2"),
        ];
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn long_route_names_are_truncated_to_63_and_stay_unique() {
        let a = route_deployment_name(&"s".repeat(60), "aggregate-one");
        let b = route_deployment_name(&"s".repeat(60), "aggregate-two");
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, route_deployment_name(&"s".repeat(60), "aggregate-one"));
        let dns = regex::Regex::new(tributary_api::DNS1123_LABEL).expect("regex");
        assert!(dns.is_match(&a), "{a}");
    }
}
