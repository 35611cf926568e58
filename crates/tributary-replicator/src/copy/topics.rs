//! What a route copies: the source's topics as listed, the destination topics prepared.

use std::collections::BTreeMap;

use tracing::{info, warn};
use tributary_kafka::{KafkaAdmin, KafkaError, TopicSpec};

use crate::config::RouteConfig;
use crate::metrics::TopicLabels;

use super::{RouteReplicator, TOPOLOGY_INTERVAL};

impl RouteReplicator {
    /// A `--topics` entry the source lacks does not stop the others: it is named in a
    /// warning at every re-list and in `topic_missing{topic}` (1 while missing), and copied
    /// from the re-list that finds it.
    pub(super) fn report_missing_topics(&self, missing: &[String]) {
        let cfg = &self.config;
        for topic in &cfg.topics {
            let gone = missing.contains(topic);
            self.health
                .metrics
                .topic_missing
                .get_or_create(&TopicLabels {
                    topic: topic.clone(),
                })
                .set(i64::from(gone));
        }
        if !missing.is_empty() {
            self.health.metrics.error("TopicMissing");
            warn!(
                route = %cfg.name,
                missing = %missing.join(","),
                "{}: --topics {} not found; copying the other topics, and these once they exist (topics are re-listed every {:?})",
                cfg.source.name,
                missing.join(", "),
                TOPOLOGY_INTERVAL
            );
        }
    }
}

/// The source topics of a route as the source lists them.
pub(super) struct ResolvedTopics {
    /// Topics to copy, with their partition counts.
    pub(super) topics: BTreeMap<String, usize>,
    /// `--topics` entries the source does not have (yet).
    pub(super) missing: Vec<String>,
    /// Replication factor of each topic to copy (not part of what a re-list compares).
    pub(super) replication: BTreeMap<String, usize>,
}

/// Source topics to copy, with their partition counts, and the named ones that are missing.
pub(super) async fn resolve_topics(
    cfg: &RouteConfig,
    admin: &KafkaAdmin,
) -> Result<ResolvedTopics, KafkaError> {
    let all = admin.list_topics(None).await?;
    let mut topics = BTreeMap::new();
    let mut missing = Vec::new();
    let mut replication = BTreeMap::new();
    for name in &cfg.topics {
        match all.iter().find(|t| &t.name == name) {
            Some(found) => {
                topics.insert(found.name.clone(), found.partitions);
                replication.insert(found.name.clone(), found.replication_factor);
            }
            None => missing.push(name.clone()),
        }
    }
    if let Some(pattern) = &cfg.pattern {
        for t in all.iter().filter(|t| pattern.is_match(&t.name)) {
            // Never copy our own bookkeeping, even if a pattern matches it.
            if t.name != cfg.checkpoint_topic {
                topics.insert(t.name.clone(), t.partitions);
                replication.insert(t.name.clone(), t.replication_factor);
            }
        }
    }
    Ok(ResolvedTopics {
        topics,
        missing,
        replication,
    })
}

/// The replication factor a destination topic is created with, and where it came from.
pub(super) struct ReplicationFactor {
    pub(super) value: i32,
    /// For messages: "from --replication-factor" or "from the source topic ...".
    pub(super) from: String,
}

/// Creates the destination topic with the source's partition count, or grows it; refuses
/// when it has fewer partitions and cannot grow.
pub(super) async fn prepare_dest_topic(
    admin: &KafkaAdmin,
    topic: &str,
    partitions: usize,
    replication_factor: &ReplicationFactor,
) -> Result<(), KafkaError> {
    match admin.describe_topic(topic).await? {
        None => {
            admin
                .create_topic(&TopicSpec {
                    name: topic.to_owned(),
                    partitions,
                    replication_factor: Some(replication_factor.value),
                    configs: vec![],
                })
                .await
                .map_err(|e| match e {
                    KafkaError::Kafka { cluster, detail, .. } => KafkaError::Config {
                        detail: format!(
                            "cannot create destination topic {topic:?} with replication factor {} ({}): {detail}; set --replication-factor to what the destination cluster can hold",
                            replication_factor.value, replication_factor.from
                        ),
                        cluster,
                    },
                    other => other,
                })?;
            info!(
                topic,
                partitions,
                replication_factor = replication_factor.value,
                "created destination topic"
            );
            Ok(())
        }
        Some(existing) if existing.partitions < partitions => {
            admin.grow_partitions(topic, partitions).await?;
            info!(
                topic,
                from = existing.partitions,
                to = partitions,
                "grew destination topic"
            );
            Ok(())
        }
        Some(_) => Ok(()),
    }
}
