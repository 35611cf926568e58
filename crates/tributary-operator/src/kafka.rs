//! The seam to Kafka: what the operator asks of a cluster, behind a trait so that reconcile
//! logic is tested without brokers. The real implementation speaks through `tributary-kafka`.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

pub use tributary_connection::ResolvedConnection;

/// What a cluster has for one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: i32,
    /// Only the configs the caller asked about.
    pub config: BTreeMap<String, String>,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub config: BTreeMap<String, String>,
}

/// A failed Kafka call, already phrased for a person (names the cluster).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KafkaFailure {
    pub message: String,
    /// `Unreachable`, `Auth`, `TopicMissing`, `Config`, `Kafka`, ...
    pub category: &'static str,
    pub transient: bool,
}

/// The latest checkpoint of one source partition of a route, as read from the checkpoint topic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteProgress {
    /// `(topic, partition)` → next source offset to copy (last copied + 1).
    pub next_source_offsets: BTreeMap<(String, i32), i64>,
    /// Unix milliseconds of the newest checkpoint of the route.
    pub last_checkpoint_ms: Option<i64>,
}

/// Where a consumer group stands on one cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupPosition {
    /// Members of the group (classic protocol, DescribeGroups), each as
    /// `<client id> from <host> (<member id>)`.
    pub members: Vec<String>,
    /// `(topic, partition)` → committed offset, for partitions the group committed.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Log end minus committed offset, summed over the committed partitions.
    pub lag: i64,
}

/// The admin calls the operator makes. Every call is bounded in time by the implementation.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// Topics of the cluster with their partition counts and the asked configs; `names: None`
    /// lists every topic (for patterns).
    fn describe_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        names: Option<&'a [String]>,
        config_keys: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaFailure>>;

    fn create_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [NewTopic],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>>;

    /// Grows `topic` to `total` partitions.
    fn grow_partitions<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>>;

    /// Sets the given configs of `topic` (others untouched).
    fn alter_topic_config<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topic: &'a str,
        config: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>>;

    fn delete_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>>;

    /// End (high watermark) offsets per partition of `topics` that exist.
    fn end_offsets<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<i64>>, KafkaFailure>>;

    /// Drops cached clients of connections no longer in use (objects deleted or changed).
    fn retain_connections(&self, _in_use: &[&ResolvedConnection]) {}

    /// The group's members and committed offsets on `topics` (also the failover health probe:
    /// an error means the cluster did not answer within `timeout`).
    fn group_position<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        group: &'a str,
        topics: &'a [String],
        timeout: std::time::Duration,
    ) -> BoxFuture<'a, Result<GroupPosition, KafkaFailure>>;

    /// The latest checkpoint of every partition of `routes` in `checkpoint_topic`.
    fn route_progress<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        checkpoint_topic: &'a str,
        routes: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, RouteProgress>, KafkaFailure>>;
}

/// What to do to make a cluster's topics match the wanted ones. Pure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicChanges {
    pub create: Vec<NewTopic>,
    /// `(topic, from, to)`.
    pub grow: Vec<(String, i32, i32)>,
    /// `(topic, wanted, has)`: the spec asks for fewer partitions than the topic has.
    pub shrink_refused: Vec<(String, i32, i32)>,
    /// Configs that differ from the wanted values.
    pub alter_config: Vec<(String, BTreeMap<String, String>)>,
}

impl TopicChanges {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.grow.is_empty() && self.alter_config.is_empty()
    }
}

/// Compares wanted topics with what the cluster has. Partitions only grow: asking for fewer
/// is refused (Kafka cannot shrink a topic, and `p → p` mapping would break).
pub fn plan_topic_changes(
    wanted: &[NewTopic],
    observed: &BTreeMap<String, ObservedTopic>,
) -> TopicChanges {
    let mut changes = TopicChanges::default();
    for w in wanted {
        match observed.get(&w.name) {
            None => changes.create.push(w.clone()),
            Some(o) => {
                if w.partitions > o.partitions {
                    changes
                        .grow
                        .push((w.name.clone(), o.partitions, w.partitions));
                } else if w.partitions < o.partitions {
                    changes
                        .shrink_refused
                        .push((w.name.clone(), w.partitions, o.partitions));
                }
                let differing: BTreeMap<String, String> = w
                    .config
                    .iter()
                    .filter(|(k, v)| o.config.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !differing.is_empty() {
                    changes.alter_config.push((w.name.clone(), differing));
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: i32, config: &[(&str, &str)]) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn missing_topics_are_created_grown_ones_grown_and_shrinks_refused() {
        let observed = BTreeMap::from([
            (
                "grow".to_string(),
                ObservedTopic {
                    partitions: 2,
                    config: BTreeMap::new(),
                },
            ),
            (
                "shrink".to_string(),
                ObservedTopic {
                    partitions: 8,
                    config: BTreeMap::new(),
                },
            ),
            (
                "same".to_string(),
                ObservedTopic {
                    partitions: 3,
                    config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                },
            ),
        ]);
        let wanted = [
            topic("new", 4, &[]),
            topic("grow", 6, &[]),
            topic("shrink", 4, &[]),
            topic("same", 3, &[("retention.ms", "1000")]),
        ];
        let changes = plan_topic_changes(&wanted, &observed);
        assert_eq!(changes.create, vec![topic("new", 4, &[])]);
        assert_eq!(changes.grow, vec![("grow".to_string(), 2, 6)]);
        assert_eq!(changes.shrink_refused, vec![("shrink".to_string(), 4, 8)]);
        assert!(changes.alter_config.is_empty());
    }

    #[test]
    fn only_differing_configs_are_altered() {
        let observed = BTreeMap::from([(
            "t".to_string(),
            ObservedTopic {
                partitions: 1,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        )]);
        let changes = plan_topic_changes(
            &[topic(
                "t",
                1,
                &[("retention.ms", "2000"), ("cleanup.policy", "delete")],
            )],
            &observed,
        );
        assert_eq!(changes.alter_config.len(), 1);
        assert_eq!(changes.alter_config[0].1.len(), 2);
        assert!(changes.grow.is_empty() && changes.create.is_empty());
    }
}
