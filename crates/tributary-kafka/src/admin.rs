//! The admin operations Tributary needs on a cluster: topic descriptions, creation and
//! growth, per-partition start/end offsets, record deletion, cluster id.
//!
//! All methods are async. rdkafka's metadata calls block, so they run on tokio's blocking
//! pool; call from inside a tokio runtime.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;

use crate::error::{KafkaError, classify};
use crate::settings::ClientSettings;

/// A topic as the cluster describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: usize,
    /// Replicas of its most replicated partition (0 if it has no partitions).
    pub replication_factor: usize,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: usize,
    /// `None`: the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// Topic configs, e.g. `("cleanup.policy", "delete")`.
    pub configs: Vec<(String, String)>,
}

/// Log start (first offset still stored) and end (next offset to be written) of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// An admin client for one cluster. Cheap to clone.
#[derive(Clone)]
pub struct KafkaAdmin {
    cluster: Arc<str>,
    client: Arc<AdminClient<DefaultClientContext>>,
    /// TLS or SASL connections only: what tells a refused login from an unreachable cluster.
    login: Option<Arc<LoginWatch>>,
    timeout: Duration,
}

/// How long a login failure seen in the background explains a failed call.
const LOGIN_FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// Watches the connection's logins: librdkafka reports a refused login (wrong password,
/// certificate not accepted) as a broker failure through a client's main queue, which an
/// admin client never serves, so its calls just time out. A small producer on the same
/// settings, polled by its own thread, connects at once and sees the failure; a call that
/// fails as `Unreachable` meanwhile is reported as `Auth` with the broker's reason.
struct LoginWatch {
    producer: rdkafka::producer::ThreadedProducer<LoginContext>,
}

impl LoginWatch {
    fn start(config: &rdkafka::ClientConfig) -> Option<Self> {
        Some(Self {
            producer: config.create_with_context(LoginContext::default()).ok()?,
        })
    }

    /// The latest login failure, redacted, if it is recent.
    fn failure(&self) -> Option<String> {
        let last = self.producer.context().last.lock().ok()?;
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < LOGIN_FAILURE_MEMORY)
            .map(|(_, reason)| reason.clone())
    }

    /// `error` as the caller should see it: `Auth` when an `Unreachable` came with a refused
    /// login. A call can fail (a refused login closes its connection: "transport failure")
    /// before the watch, started with the client, has tried its own login: an `Unreachable`
    /// waits up to [`LOGIN_GRACE`] for the watch's verdict.
    async fn explain(login: Option<&Self>, error: KafkaError) -> KafkaError {
        let (Some(login), KafkaError::Unreachable { cluster, detail }) = (login, &error) else {
            return error;
        };
        let deadline = std::time::Instant::now() + LOGIN_GRACE;
        loop {
            if let Some(reason) = login.failure() {
                return KafkaError::Auth {
                    cluster: cluster.clone(),
                    detail: format!("{detail}: {reason}"),
                };
            }
            if std::time::Instant::now() >= deadline {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long an `Unreachable` call waits for the login watch's verdict (its producer connects
/// within about a second of the client's creation; a refused login is reported in under one).
const LOGIN_GRACE: Duration = Duration::from_secs(3);

#[derive(Default)]
struct LoginContext {
    last: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl LoginContext {
    fn remember(&self, reason: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((std::time::Instant::now(), crate::redact::redact(reason)));
        }
    }
}

impl rdkafka::producer::ProducerContext for LoginContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl ClientContext for LoginContext {
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, _: &str, message: &str) {
        let lower = message.to_ascii_lowercase();
        if lower.contains("authentication") || lower.contains("ssl handshake failed") {
            self.remember(message);
        }
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        if matches!(
            error.rdkafka_error_code(),
            Some(
                C::Authentication
                    | C::SaslAuthenticationFailed
                    | C::UnsupportedSASLMechanism
                    | C::IllegalSASLState
                    | C::SSL
            )
        ) {
            self.remember(reason);
        }
    }
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin")
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl KafkaAdmin {
    /// Connects lazily: creating the client does not contact the cluster (with TLS or SASL a
    /// [`LoginWatch`] producer connects at once).
    pub fn new(settings: &ClientSettings) -> Result<Self, KafkaError> {
        let config = settings.client_config()?;
        let client = config
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| classify(&settings.name, "creating an admin client", None, e))?;
        let login = settings
            .logs_in()
            .then(|| {
                let mut watch_config = config.clone();
                watch_config.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
                LoginWatch::start(&watch_config)
            })
            .flatten()
            .map(Arc::new);
        Ok(Self {
            cluster: settings.name.as_str().into(),
            client: Arc::new(client),
            login,
            timeout: Duration::from_secs(10),
        })
    }

    /// Per-request timeout (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The name errors use for this cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AdminClient<DefaultClientContext>, Duration) -> T + Send + 'static,
    ) -> T {
        let client = self.client.clone();
        let timeout = self.timeout;
        match tokio::task::spawn_blocking(move || f(&client, timeout)).await {
            Ok(value) => value,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// The cluster's id (also a cheap reachability probe).
    pub async fn cluster_id(&self) -> Result<String, KafkaError> {
        let cluster = self.cluster.clone();
        let id = self
            .blocking(move |client, timeout| {
                client
                    .inner()
                    .fetch_cluster_id(timeout)
                    .ok_or_else(|| KafkaError::Unreachable {
                        cluster: cluster.to_string(),
                        detail: format!("no cluster id within {timeout:?}"),
                    })
            })
            .await;
        match id {
            Ok(id) => Ok(id),
            Err(e) => Err(LoginWatch::explain(self.login.as_deref(), e).await),
        }
    }

    /// Every non-internal topic, optionally only those whose whole name matches `pattern`.
    pub async fn list_topics(
        &self,
        pattern: Option<&Regex>,
    ) -> Result<Vec<TopicDescription>, KafkaError> {
        let cluster = self.cluster.clone();
        let topics = self
            .blocking(move |client, timeout| {
                client
                    .inner()
                    .fetch_metadata(None, timeout)
                    .map_err(|e| classify(&cluster, "listing topics", None, e))
                    .map(|metadata| {
                        metadata
                            .topics()
                            .iter()
                            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                            .map(|t| TopicDescription {
                                name: t.name().to_owned(),
                                partitions: t.partitions().len(),
                                replication_factor: t
                                    .partitions()
                                    .iter()
                                    .map(|p| p.replicas().len())
                                    .max()
                                    .unwrap_or(0),
                            })
                            .collect::<Vec<_>>()
                    })
            })
            .await;
        let mut topics = match topics {
            Ok(topics) => topics,
            Err(e) => return Err(LoginWatch::explain(self.login.as_deref(), e).await),
        };
        if let Some(pattern) = pattern {
            let whole = anchored(pattern).map_err(|e| KafkaError::Config {
                cluster: self.cluster.to_string(),
                detail: format!("topic pattern: {e}"),
            })?;
            topics.retain(|t| whole.is_match(&t.name));
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// The named topics that exist (missing ones are left out; compare to find them).
    pub async fn describe_topics(
        &self,
        names: &[String],
    ) -> Result<Vec<TopicDescription>, KafkaError> {
        let all = self.list_topics(None).await?;
        Ok(all
            .into_iter()
            .filter(|t| names.contains(&t.name))
            .collect())
    }

    /// One topic, `None` if it does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, KafkaError> {
        Ok(self
            .describe_topics(&[name.to_owned()])
            .await?
            .into_iter()
            .next())
    }

    /// Creates a topic. `Ok(false)` if it existed already (its settings are not checked).
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<bool, KafkaError> {
        let partitions = i32::try_from(spec.partitions).map_err(|_| KafkaError::Config {
            cluster: self.cluster.to_string(),
            detail: format!(
                "topic {:?}: {} partitions is too many",
                spec.name, spec.partitions
            ),
        })?;
        let mut topic = NewTopic::new(
            &spec.name,
            partitions,
            TopicReplication::Fixed(spec.replication_factor.unwrap_or(-1)),
        );
        for (key, value) in &spec.configs {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .client
            .create_topics([&topic], &options)
            .await
            .map_err(|e| classify(&self.cluster, "creating a topic", Some(&spec.name), e))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(true),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
            Some(Err((_, code))) => Err(classify(
                &self.cluster,
                &format!("creating topic {:?}", spec.name),
                Some(&spec.name),
                rdkafka::error::KafkaError::AdminOp(code),
            )),
            None => Ok(false),
        }
    }

    /// Grows `topic` to `partitions` partitions (no-op if it has as many or more).
    pub async fn grow_partitions(&self, topic: &str, partitions: usize) -> Result<(), KafkaError> {
        let current =
            self.describe_topic(topic)
                .await?
                .ok_or_else(|| KafkaError::TopicMissing {
                    cluster: self.cluster.to_string(),
                    topic: topic.to_owned(),
                })?;
        if current.partitions >= partitions {
            return Ok(());
        }
        let growth = NewPartitions::new(topic, partitions);
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let too_few = |detail: String| KafkaError::TooFewPartitions {
            cluster: self.cluster.to_string(),
            topic: topic.to_owned(),
            have: current.partitions,
            need: partitions,
            detail,
        };
        let results = self
            .client
            .create_partitions([&growth], &options)
            .await
            .map_err(|e| too_few(e.to_string()))?;
        match results.into_iter().next() {
            Some(Err((_, code))) => Err(too_few(code.to_string())),
            _ => Ok(()),
        }
    }

    /// Log start and end offsets of `partitions` of `topic` (all partitions if empty).
    pub async fn partition_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<PartitionOffsets>, KafkaError> {
        let partitions = if partitions.is_empty() {
            let description =
                self.describe_topic(topic)
                    .await?
                    .ok_or_else(|| KafkaError::TopicMissing {
                        cluster: self.cluster.to_string(),
                        topic: topic.to_owned(),
                    })?;
            (0..description.partitions as i32).collect()
        } else {
            partitions.to_vec()
        };
        let cluster = self.cluster.clone();
        let topic = topic.to_owned();
        self.blocking(move |client, timeout| {
            partitions
                .iter()
                .map(|&partition| {
                    client
                        .inner()
                        .fetch_watermarks(&topic, partition, timeout)
                        .map(|(start, end)| PartitionOffsets {
                            partition,
                            start,
                            end,
                        })
                        .map_err(|e| classify(&cluster, "reading offsets", Some(&topic), e))
                })
                .collect()
        })
        .await
    }

    /// Deletes the records of `topic`/`partition` below `before` (tests and tooling).
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<(), KafkaError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(before))
            .map_err(|e| classify(&self.cluster, "deleting records", Some(topic), e))?;
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let result = self
            .client
            .delete_records(&list, &options)
            .await
            .map_err(|e| classify(&self.cluster, "deleting records", Some(topic), e))?;
        for element in result.elements() {
            if let Err(e) = element.error() {
                return Err(classify(&self.cluster, "deleting records", Some(topic), e));
            }
        }
        Ok(())
    }
}

/// `pattern` made to match whole names only (Kafka include patterns are whole-name matches).
pub fn anchored(pattern: &Regex) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{})$", pattern.as_str()))
}
