//! [`ClusterAdmin`] on real clusters: `tributary-kafka`'s `KafkaAdmin` for topics and offsets,
//! plus what it does not offer (topic configs, topic deletion, following the checkpoint topic)
//! straight on rdkafka. Clients are cached per cluster; every call is bounded in time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tributary_kafka::rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, ResourceSpecifier,
};
use tributary_kafka::rdkafka::client::DefaultClientContext;
use tributary_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_kafka::rdkafka::message::Message;
use tributary_kafka::rdkafka::{Offset, TopicPartitionList};
use tributary_kafka::{KafkaAdmin, KafkaError, TopicSpec};

use crate::kafka::{
    ClusterAdmin, GroupPosition, KafkaFailure, NewTopic, ObservedTopic, ResolvedConnection,
    RouteProgress,
};

const TIMEOUT: Duration = Duration::from_secs(8);
/// How far back the checkpoint topic is read when the operator starts following it.
const CHECKPOINT_BACKLOG: i64 = 20_000;

struct Follower {
    consumer: BaseConsumer,
    topic: String,
    /// `(source region, dest region)` → progress.
    progress: HashMap<String, RouteProgress>,
    partitions: usize,
}

#[derive(Default)]
struct Clients {
    admins: HashMap<String, KafkaAdmin>,
    raw: HashMap<String, Arc<AdminClient<DefaultClientContext>>>,
    followers: HashMap<String, Arc<Mutex<Follower>>>,
    /// One consumer per (cluster, group), never subscribed: OffsetFetch and DescribeGroups only.
    groups: HashMap<String, Arc<BaseConsumer>>,
}

/// The production [`ClusterAdmin`].
#[derive(Default)]
pub struct RealClusterAdmin {
    clients: Mutex<Clients>,
}

impl std::fmt::Debug for RealClusterAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RealClusterAdmin")
    }
}

fn failure(e: KafkaError) -> KafkaFailure {
    KafkaFailure {
        transient: e.is_transient(),
        category: e.category(),
        // Already redacted by classify; again for errors built elsewhere. The connection's
        // secrets were remembered when its client config was built.
        message: tributary_kafka::redact(&e.to_string()),
    }
}

fn rd_failure(
    conn: &ResolvedConnection,
    op: &str,
    topic: Option<&str>,
    e: tributary_kafka::rdkafka::error::KafkaError,
) -> KafkaFailure {
    failure(tributary_kafka::classify(&conn.name, op, topic, e))
}

/// Cache key: the connection as a whole, servers and credentials (as an in-memory digest):
/// a rotated or fixed Secret gets a new client, since a client authenticates when it
/// connects and would otherwise keep its old connections, or keep failing.
fn cache_key(conn: &ResolvedConnection) -> String {
    use std::hash::{Hash, Hasher};
    let mut credentials = std::collections::hash_map::DefaultHasher::new();
    (
        &conn.tls,
        &conn.tls_ca_pem,
        &conn.tls_cert_pem,
        &conn.tls_key_pem,
        &conn.sasl,
    )
        .hash(&mut credentials);
    format!(
        "{}|{:?}|{}|{:016x}",
        conn.key(),
        conn.properties,
        conn.name,
        credentials.finish()
    )
}

impl RealClusterAdmin {
    fn admin(&self, conn: &ResolvedConnection) -> Result<KafkaAdmin, KafkaFailure> {
        let key = cache_key(conn);
        let mut c = self.clients.lock().map_err(|_| poisoned())?;
        if let Some(a) = c.admins.get(&key) {
            return Ok(a.clone());
        }
        let a = KafkaAdmin::new(&conn.client_settings())
            .map_err(failure)?
            .with_timeout(TIMEOUT);
        c.admins.insert(key, a.clone());
        Ok(a)
    }

    fn raw(
        &self,
        conn: &ResolvedConnection,
    ) -> Result<Arc<AdminClient<DefaultClientContext>>, KafkaFailure> {
        let key = cache_key(conn);
        let mut c = self.clients.lock().map_err(|_| poisoned())?;
        if let Some(a) = c.raw.get(&key) {
            return Ok(a.clone());
        }
        let client: AdminClient<DefaultClientContext> = conn
            .client_settings()
            .client_config()
            .map_err(failure)?
            .create()
            .map_err(|e| rd_failure(conn, "creating an admin client", None, e))?;
        let client = Arc::new(client);
        c.raw.insert(key, client.clone());
        Ok(client)
    }

    fn follower(
        &self,
        conn: &ResolvedConnection,
        topic: &str,
    ) -> Result<Arc<Mutex<Follower>>, KafkaFailure> {
        let key = format!("{}|{topic}", cache_key(conn));
        let mut c = self.clients.lock().map_err(|_| poisoned())?;
        if let Some(f) = c.followers.get(&key) {
            return Ok(f.clone());
        }
        let mut config = conn.client_settings().client_config().map_err(failure)?;
        config
            .set("group.id", "tributary-operator-checkpoint-probe")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| rd_failure(conn, "creating a checkpoint reader", Some(topic), e))?;
        let f = Arc::new(Mutex::new(Follower {
            consumer,
            topic: topic.to_string(),
            progress: HashMap::new(),
            partitions: 0,
        }));
        c.followers.insert(key, f.clone());
        Ok(f)
    }
}

impl RealClusterAdmin {
    fn group_reader(
        &self,
        conn: &ResolvedConnection,
        group: &str,
    ) -> Result<Arc<BaseConsumer>, KafkaFailure> {
        let key = format!("{}|group:{group}", cache_key(conn));
        let mut c = self.clients.lock().map_err(|_| poisoned())?;
        if let Some(g) = c.groups.get(&key) {
            return Ok(g.clone());
        }
        let mut config = conn.client_settings().client_config().map_err(failure)?;
        // The group's own id, so that OffsetFetch reads its offsets; never subscribed, so it
        // never joins (it cannot disturb the group's members).
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| rd_failure(conn, "creating a group reader", None, e))?;
        let consumer = Arc::new(consumer);
        c.groups.insert(key, consumer.clone());
        Ok(consumer)
    }
}

/// DescribeGroups, metadata, OffsetFetch and ListOffsets for one group, each bounded by
/// `timeout` (blocking: run on a blocking thread).
fn read_group_position(
    consumer: &BaseConsumer,
    conn: &ResolvedConnection,
    group: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<GroupPosition, KafkaFailure> {
    let groups = consumer
        .fetch_group_list(Some(group), timeout)
        .map_err(|e| rd_failure(conn, "describing the consumer group", None, e))?;
    let members = groups
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| {
            g.members()
                .iter()
                .map(|m| format!("{} from {} ({})", m.client_id(), m.client_host(), m.id()))
                .collect()
        })
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| rd_failure(conn, "reading topic metadata", Some(topic), e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let mut position = GroupPosition {
        members,
        ..Default::default()
    };
    if tpl.count() == 0 {
        return Ok(position);
    }
    let committed = tributary_kafka::group::committed_offsets(consumer, &tpl, timeout)
        .map_err(|e| rd_failure(conn, "reading committed offsets", None, e))?;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            let (_, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .map_err(|err| rd_failure(conn, "reading offsets", Some(e.topic()), err))?;
            position.lag += (high - o).max(0);
            position
                .committed
                .insert((e.topic().to_string(), e.partition()), o);
        }
    }
    Ok(position)
}

fn poisoned() -> KafkaFailure {
    KafkaFailure {
        message: "internal: client cache poisoned".into(),
        category: "Kafka",
        transient: true,
    }
}

impl Follower {
    /// Reads what was appended since the last call (bounded in time), keeping the latest
    /// checkpoint per route and source partition.
    fn catch_up(&mut self, conn: &ResolvedConnection) -> Result<(), KafkaFailure> {
        let client = self.consumer.client();
        let metadata = client
            .fetch_metadata(Some(&self.topic), TIMEOUT)
            .map_err(|e| {
                rd_failure(
                    conn,
                    "reading checkpoint topic metadata",
                    Some(&self.topic),
                    e,
                )
            })?;
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if partitions == 0 {
            return Ok(());
        }
        let mut highs = Vec::with_capacity(partitions);
        for p in 0..partitions as i32 {
            let (lo, hi) = client
                .fetch_watermarks(&self.topic, p, TIMEOUT)
                .map_err(|e| {
                    rd_failure(conn, "reading checkpoint offsets", Some(&self.topic), e)
                })?;
            highs.push((lo, hi));
        }
        if partitions != self.partitions {
            let mut tpl = TopicPartitionList::new();
            for (p, (lo, hi)) in highs.iter().enumerate() {
                let start = (*hi - CHECKPOINT_BACKLOG).max(*lo);
                tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(start))
                    .map_err(|e| {
                        rd_failure(conn, "assigning the checkpoint topic", Some(&self.topic), e)
                    })?;
            }
            self.consumer.assign(&tpl).map_err(|e| {
                rd_failure(conn, "assigning the checkpoint topic", Some(&self.topic), e)
            })?;
            self.partitions = partitions;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut positions: Vec<i64> = vec![-1; partitions];
        loop {
            if let Ok(tpl) = self.consumer.position() {
                for e in tpl.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && let Some(slot) = positions.get_mut(e.partition() as usize)
                    {
                        *slot = o;
                    }
                }
            }
            let done = highs
                .iter()
                .enumerate()
                .all(|(p, (lo, hi))| hi <= lo || positions[p] >= *hi);
            if done || Instant::now() >= deadline {
                break;
            }
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(200)) {
                let (Some(k), Some(v)) = (m.key(), m.payload()) else {
                    continue;
                };
                let Ok(rec) = tributary_core::checkpoint::decode(k, v) else {
                    continue;
                };
                let route = format!(
                    "{}->{}",
                    rec.key.route.source_region, rec.key.route.destination_region
                );
                let next = match rec.entry {
                    tributary_core::CheckpointEntry::Checkpoint(c) => c.source_offset as i64 + 1,
                    tributary_core::CheckpointEntry::Origin(o) => o.source_offset as i64,
                    tributary_core::CheckpointEntry::RetentionGap(g) => g.to as i64,
                };
                let entry = self.progress.entry(route).or_default();
                let slot = entry
                    .next_source_offsets
                    .entry((rec.key.topic.clone(), rec.key.partition as i32))
                    .or_insert(next);
                *slot = (*slot).max(next);
                entry.last_checkpoint_ms =
                    Some(entry.last_checkpoint_ms.unwrap_or(0).max(rec.timestamp_ms));
            }
        }
        Ok(())
    }
}

impl ClusterAdmin for RealClusterAdmin {
    fn retain_connections(&self, in_use: &[&ResolvedConnection]) {
        let keys: std::collections::HashSet<String> = in_use.iter().map(|c| cache_key(c)).collect();
        if let Ok(mut c) = self.clients.lock() {
            c.admins.retain(|k, _| keys.contains(k));
            c.raw.retain(|k, _| keys.contains(k));
            c.followers
                .retain(|k, _| keys.iter().any(|key| k.starts_with(&format!("{key}|"))));
            c.groups
                .retain(|k, _| keys.iter().any(|key| k.starts_with(&format!("{key}|"))));
        }
    }

    fn describe_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        names: Option<&'a [String]>,
        config_keys: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaFailure>> {
        async move {
            let admin = self.admin(conn)?;
            let topics = match names {
                Some(n) => admin.describe_topics(n).await,
                None => admin.list_topics(None).await,
            }
            .map_err(failure)?;
            let mut out: BTreeMap<String, ObservedTopic> = topics
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        ObservedTopic {
                            partitions: t.partitions as i32,
                            config: BTreeMap::new(),
                        },
                    )
                })
                .collect();
            if !config_keys.is_empty() && !out.is_empty() {
                let raw = self.raw(conn)?;
                let names: Vec<String> = out.keys().cloned().collect();
                let specs: Vec<ResourceSpecifier<'_>> =
                    names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
                let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
                let results = raw
                    .describe_configs(specs.iter(), &opts)
                    .await
                    .map_err(|e| rd_failure(conn, "describing topic configs", None, e))?;
                for (name, result) in names.iter().zip(results) {
                    let Ok(resource) = result else { continue };
                    if let Some(t) = out.get_mut(name) {
                        for key in config_keys {
                            if let Some(v) = resource.get(key).and_then(|e| e.value.clone()) {
                                t.config.insert(key.clone(), v);
                            }
                        }
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn create_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [NewTopic],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async move {
            let admin = self.admin(conn)?;
            for t in topics {
                admin
                    .create_topic(&TopicSpec {
                        name: t.name.clone(),
                        partitions: t.partitions.max(1) as usize,
                        replication_factor: (t.replication_factor > 0)
                            .then_some(t.replication_factor),
                        configs: t
                            .config
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    })
                    .await
                    .map_err(failure)?;
            }
            Ok(())
        }
        .boxed()
    }

    fn grow_partitions<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topic: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async move {
            self.admin(conn)?
                .grow_partitions(topic, total.max(1) as usize)
                .await
                .map_err(failure)
        }
        .boxed()
    }

    fn alter_topic_config<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topic: &'a str,
        config: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async move {
            let raw = self.raw(conn)?;
            let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
            // AlterConfigs replaces the topic's whole dynamic config: start from what is set.
            let current = raw
                .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
                .await
                .map_err(|e| rd_failure(conn, "describing topic configs", Some(topic), e))?;
            let mut merged: BTreeMap<String, String> = BTreeMap::new();
            if let Some(Ok(resource)) = current.into_iter().next() {
                for e in resource.entries {
                    if e.source == ConfigSource::DynamicTopic
                        && !e.is_sensitive
                        && let Some(v) = e.value
                    {
                        merged.insert(e.name, v);
                    }
                }
            }
            merged.extend(config.clone());
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
            for (k, v) in &merged {
                alter = alter.set(k, v);
            }
            let results = raw
                .alter_configs([&alter], &opts)
                .await
                .map_err(|e| rd_failure(conn, "altering topic configs", Some(topic), e))?;
            if let Some(Err((_, code))) = results.into_iter().next() {
                return Err(KafkaFailure {
                    message: format!(
                        "{}: altering configs of topic {topic:?} failed: {code}",
                        conn.name
                    ),
                    category: "Config",
                    transient: false,
                });
            }
            Ok(())
        }
        .boxed()
    }

    fn delete_topics<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<(), KafkaFailure>> {
        async move {
            if topics.is_empty() {
                return Ok(());
            }
            let raw = self.raw(conn)?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            let results = raw
                .delete_topics(&names, &opts)
                .await
                .map_err(|e| rd_failure(conn, "deleting topics", None, e))?;
            for r in results {
                if let Err((name, code)) = r
                    && code != tributary_kafka::rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                {
                    return Err(KafkaFailure {
                        message: format!("{}: deleting topic {name:?} failed: {code}", conn.name),
                        category: "Kafka",
                        transient: true,
                    });
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn end_offsets<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<i64>>, KafkaFailure>> {
        async move {
            let admin = self.admin(conn)?;
            // One metadata call answers reachability and which topics exist.
            let existing = admin.describe_topics(topics).await.map_err(failure)?;
            let mut out = BTreeMap::new();
            for t in existing {
                let offsets = admin
                    .partition_offsets(&t.name, &[])
                    .await
                    .map_err(failure)?;
                out.insert(t.name, offsets.iter().map(|o| o.end).collect());
            }
            Ok(out)
        }
        .boxed()
    }

    fn group_position<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        group: &'a str,
        topics: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<GroupPosition, KafkaFailure>> {
        async move {
            let consumer = self.group_reader(conn, group)?;
            let (conn, group, topics) = (conn.clone(), group.to_string(), topics.to_vec());
            tokio::task::spawn_blocking(move || {
                read_group_position(&consumer, &conn, &group, &topics, timeout)
            })
            .await
            .map_err(|_| poisoned())?
        }
        .boxed()
    }

    fn route_progress<'a>(
        &'a self,
        conn: &'a ResolvedConnection,
        checkpoint_topic: &'a str,
        routes: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, RouteProgress>, KafkaFailure>> {
        async move {
            let follower = self.follower(conn, checkpoint_topic)?;
            let conn = conn.clone();
            let routes = routes.to_vec();
            tokio::task::spawn_blocking(move || {
                let mut f = follower.lock().map_err(|_| poisoned())?;
                f.catch_up(&conn)?;
                Ok(routes
                    .iter()
                    .filter_map(|r| f.progress.get(r).map(|p| (r.clone(), p.clone())))
                    .collect())
            })
            .await
            .map_err(|_| poisoned())?
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_password_gets_a_client_of_its_own() {
        let conn = |password: &str| ResolvedConnection {
            name: "regional cluster of east".into(),
            bootstrap_servers: vec!["east:9093".into()],
            sasl: Some(("SCRAM-SHA-512".into(), "replicator".into(), password.into())),
            ..Default::default()
        };
        assert_eq!(cache_key(&conn("one")), cache_key(&conn("one")));
        assert_ne!(cache_key(&conn("one")), cache_key(&conn("two")));
        assert!(!cache_key(&conn("secret-pw")).contains("secret-pw"));
    }
}
