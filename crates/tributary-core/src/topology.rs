//! Identities of routes and partitions, and how source partitions map into aggregates.
//!
//! A source partition `(region, topic, p)` of a regional cluster lands in partition `p` of one
//! aggregate topic in every region: `topic` itself under [`TopicNaming::Identity`] (all regions
//! merged), or `<region>.<topic>` under [`TopicNaming::Prefixed`] (one source per partition).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One copy path: a source region's regional cluster into one region's aggregate cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    pub source_region: String,
    pub destination_region: String,
}

impl Route {
    pub fn new(source_region: impl Into<String>, destination_region: impl Into<String>) -> Self {
        Self {
            source_region: source_region.into(),
            destination_region: destination_region.into(),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{}", self.source_region, self.destination_region)
    }
}

/// A partition of a regional cluster's topic: where records are produced.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourcePartition {
    pub region: String,
    pub topic: String,
    pub partition: u32,
}

impl SourcePartition {
    pub fn new(region: impl Into<String>, topic: impl Into<String>, partition: u32) -> Self {
        Self {
            region: region.into(),
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for SourcePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.topic, self.partition)
    }
}

/// A partition of an aggregate cluster's topic (named the same in every region).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AggregatePartition {
    pub topic: String,
    pub partition: u32,
}

impl AggregatePartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for AggregatePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// How aggregate topics are named (mirrors `AggregateCluster.spec.topicNaming`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicNaming {
    /// Same name as the source topic; every region's records of a topic merge into it.
    #[default]
    Identity,
    /// `<source region>.<source topic>`: one source per aggregate partition.
    Prefixed,
}

impl TopicNaming {
    /// The aggregate topic that `source_topic` of `source_region` lands in.
    pub fn aggregate_topic(self, source_region: &str, source_topic: &str) -> String {
        match self {
            TopicNaming::Identity => source_topic.to_owned(),
            TopicNaming::Prefixed => format!("{source_region}.{source_topic}"),
        }
    }

    /// Which source topic (and, when prefixed, which region) feeds `aggregate_topic`.
    /// `None` for a prefixed name without a `.`: no source region can be named.
    pub fn source_of(self, aggregate_topic: &str) -> Option<SourceSelector<'_>> {
        match self {
            TopicNaming::Identity => Some(SourceSelector {
                region: None,
                topic: aggregate_topic,
            }),
            // Region names are DNS-1123 labels (no `.`), so the first `.` ends the region.
            TopicNaming::Prefixed => {
                aggregate_topic
                    .split_once('.')
                    .map(|(region, topic)| SourceSelector {
                        region: Some(region),
                        topic,
                    })
            }
        }
    }
}

/// The source side of one aggregate topic: its source topic, and the only region feeding it
/// when names are prefixed (`None`: every region may feed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceSelector<'a> {
    pub region: Option<&'a str>,
    pub topic: &'a str,
}

impl SourceSelector<'_> {
    pub fn admits(&self, region: &str) -> bool {
        self.region.is_none_or(|only| only == region)
    }
}

/// Which source partitions an aggregate cluster is declared to receive: the naming policy and,
/// per source region and topic, the partition count last observed on the regional cluster.
///
/// Counts are lower bounds (Kafka partitions only grow), so translation also treats as a
/// source any region that the checkpoints show copying into a partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AggregateLayout {
    pub naming: TopicNaming,
    source_topics: BTreeMap<(String, String), u32>,
}

impl AggregateLayout {
    pub fn new(naming: TopicNaming) -> Self {
        Self {
            naming,
            source_topics: BTreeMap::new(),
        }
    }

    /// Declares that `region` produces `topic` with `partitions` partitions.
    pub fn with_source_topic(
        mut self,
        region: impl Into<String>,
        topic: impl Into<String>,
        partitions: u32,
    ) -> Self {
        self.add_source_topic(region, topic, partitions);
        self
    }

    /// Declares (or grows) `region`'s `topic`; a smaller count never shrinks it.
    pub fn add_source_topic(
        &mut self,
        region: impl Into<String>,
        topic: impl Into<String>,
        partitions: u32,
    ) {
        let count = self
            .source_topics
            .entry((region.into(), topic.into()))
            .or_insert(0);
        *count = (*count).max(partitions);
    }

    /// The declared source partitions that land in `aggregate`.
    pub fn declared_sources(&self, aggregate: &AggregatePartition) -> Vec<SourcePartition> {
        let Some(selector) = self.naming.source_of(&aggregate.topic) else {
            return Vec::new();
        };
        self.source_topics
            .iter()
            .filter(|((region, topic), partitions)| {
                topic == selector.topic
                    && selector.admits(region)
                    && aggregate.partition < **partitions
            })
            .map(|((region, topic), _)| SourcePartition::new(region, topic, aggregate.partition))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_merges_every_region_that_has_the_partition() {
        let layout = AggregateLayout::new(TopicNaming::Identity)
            .with_source_topic("east", "orders", 4)
            .with_source_topic("west", "orders", 2)
            .with_source_topic("west", "payments", 8);
        let p1 = layout.declared_sources(&AggregatePartition::new("orders", 1));
        assert_eq!(
            p1,
            vec![
                SourcePartition::new("east", "orders", 1),
                SourcePartition::new("west", "orders", 1)
            ]
        );
        let p3 = layout.declared_sources(&AggregatePartition::new("orders", 3));
        assert_eq!(p3, vec![SourcePartition::new("east", "orders", 3)]);
    }

    #[test]
    fn prefixed_names_one_source_per_partition() {
        let layout = AggregateLayout::new(TopicNaming::Prefixed)
            .with_source_topic("east", "orders.v2", 4)
            .with_source_topic("west", "orders.v2", 4);
        assert_eq!(
            TopicNaming::Prefixed.aggregate_topic("east", "orders.v2"),
            "east.orders.v2"
        );
        let sources = layout.declared_sources(&AggregatePartition::new("east.orders.v2", 0));
        assert_eq!(sources, vec![SourcePartition::new("east", "orders.v2", 0)]);
        assert!(
            layout
                .declared_sources(&AggregatePartition::new("orders", 0))
                .is_empty()
        );
    }

    #[test]
    fn partition_counts_only_grow() {
        let mut layout = AggregateLayout::new(TopicNaming::Identity);
        layout.add_source_topic("east", "orders", 4);
        layout.add_source_topic("east", "orders", 2);
        assert_eq!(
            layout
                .declared_sources(&AggregatePartition::new("orders", 3))
                .len(),
            1
        );
    }
}
