//! The validate step: pure functions from the raw objects to the validated models that the
//! build and apply steps use instead of the spec. Nothing here does I/O.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use tributary_api::aggregate_cluster::{BatchingSpec, CheckpointSpec, ReplicatorSpec, TopicNaming};
use tributary_api::regional_stream::{DeletionPolicy, TopicSpec};
use tributary_api::{AggregateCluster, KafkaConnection, RegionalStream};

use crate::error::{Error, Result};
use crate::names;

/// A RegionalStream whose spec can be acted on.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidStream {
    pub name: String,
    pub namespace: String,
    pub region: String,
    pub kafka: KafkaConnection,
    pub topics: Vec<TopicSpec>,
    /// The pattern anchored as Kafka tools anchor it (whole-name match).
    pub topic_pattern: Option<String>,
    pub manage_topics: bool,
    pub deletion_policy: DeletionPolicy,
}

/// Validates a RegionalStream (the API server's schema refuses most mistakes; this catches
/// what it cannot, such as a pattern that does not compile).
pub fn validate_stream(rs: &RegionalStream) -> Result<ValidStream> {
    let name = rs.name_any();
    let spec = &rs.spec;
    check_label("spec.region", &spec.region)?;
    check_kafka("spec.kafka", &spec.kafka)?;
    for (i, t) in spec.topics.iter().enumerate() {
        check_topic(&format!("spec.topics[{i}].name"), &t.name)?;
        if t.partitions < 1 {
            return Err(Error::InvalidSpec(format!(
                "RegionalStream {name}: spec.topics[{i}].partitions must be at least 1"
            )));
        }
        if t.replication_factor < 1 {
            return Err(Error::InvalidSpec(format!(
                "RegionalStream {name}: spec.topics[{i}].replicationFactor must be at least 1"
            )));
        }
    }
    let topic_pattern = match &spec.topic_pattern {
        Some(p) => {
            regex::Regex::new(&anchor(p)).map_err(|e| {
                Error::InvalidSpec(format!(
                    "RegionalStream {name}: spec.topicPattern does not compile: {e}"
                ))
            })?;
            Some(p.clone())
        }
        None => None,
    };
    if spec.topics.is_empty() && topic_pattern.is_none() {
        return Err(Error::InvalidSpec(format!(
            "RegionalStream {name}: list spec.topics or set spec.topicPattern"
        )));
    }
    Ok(ValidStream {
        name,
        namespace: rs.namespace().unwrap_or_default(),
        region: spec.region.clone(),
        kafka: spec.kafka.clone(),
        topics: spec.topics.clone(),
        topic_pattern,
        manage_topics: spec.manage_topics,
        deletion_policy: spec.deletion_policy,
    })
}

/// `^(?:p)$`: topic patterns match whole names.
pub fn anchor(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// One aggregate topic: the partitions and replication factor it must have at least.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateTopic {
    pub partitions: i32,
    pub replication_factor: i32,
}

/// One route into the aggregate cluster: what its replicator copies and from where.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutePlan {
    /// The source RegionalStream.
    pub source: String,
    pub source_region: String,
    pub source_kafka: KafkaConnection,
    /// Source topics copied by name (spec topics and those matched by the pattern so far).
    pub topics: Vec<String>,
    pub topic_pattern: Option<String>,
    pub deployment: String,
    pub route_id: String,
}

/// A selected source that cannot be acted on (its spec does not validate, or the object cannot
/// be read): its route is frozen — the Deployment keeps running as last applied, is neither
/// updated nor pruned — until the RegionalStream is fixed or deselected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSource {
    /// The RegionalStream's name.
    pub source: String,
    /// Its `spec.region` as written (it may be the invalid part), empty when unreadable.
    pub source_region: String,
    /// The route Deployment the source had or would have.
    pub deployment: String,
    /// What is wrong, naming the stream and the field.
    pub problem: String,
}

/// A RegionalStream in the cache that could not be deserialized (schema drift): only its
/// metadata is known.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableStream {
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    pub error: String,
}

/// A validated AggregateCluster with its selected sources resolved: everything the build and
/// apply steps need.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatePlan {
    pub name: String,
    pub namespace: String,
    pub region: String,
    pub kafka: KafkaConnection,
    pub naming: TopicNaming,
    pub replicator: ReplicatorSpec,
    pub checkpoints: CheckpointSpec,
    /// Routes in source-name order (deterministic builds).
    pub routes: Vec<RoutePlan>,
    /// Aggregate topics by name, partition counts matching the sources (`p` lands in `p`).
    pub topics: BTreeMap<String, AggregateTopic>,
    /// Selected sources that do not validate, in source-name order: their routes are frozen.
    pub invalid_sources: Vec<InvalidSource>,
}

/// The aggregate topic that source topic `topic` of region `region` lands in.
pub fn aggregate_topic_name(naming: TopicNaming, region: &str, topic: &str) -> String {
    match naming {
        TopicNaming::Identity => topic.to_string(),
        TopicNaming::Prefixed => format!("{region}.{topic}"),
    }
}

/// Selects the sources of `agg` among `streams` and plans topics and routes. Streams being
/// deleted are left out (their routes are pruned). A selected stream with an invalid spec is
/// not: it goes into `invalid_sources`, and its route is frozen (never pruned for a typo).
pub fn plan_aggregate(agg: &AggregateCluster, streams: &[RegionalStream]) -> Result<AggregatePlan> {
    plan_aggregate_with(agg, streams, &[])
}

/// [`plan_aggregate`], with the streams of the cache that could not be read: a selected one
/// freezes its route as an invalid spec does.
pub fn plan_aggregate_with(
    agg: &AggregateCluster,
    streams: &[RegionalStream],
    unreadable: &[UnreadableStream],
) -> Result<AggregatePlan> {
    let name = agg.name_any();
    let namespace = agg.namespace().unwrap_or_default();
    let spec = &agg.spec;
    check_label("spec.region", &spec.region)?;
    check_kafka("spec.kafka", &spec.kafka)?;
    check_topic("spec.checkpoints.topic", &spec.checkpoints.topic)?;
    check_replicator(&name, &spec.replicator)?;
    let selector: Selector = match &spec.sources {
        Some(s) => s.clone().try_into().map_err(|e| {
            Error::InvalidSpec(format!("AggregateCluster {name}: spec.sources: {e}"))
        })?,
        None => Selector::default(),
    };

    let candidates: Vec<&RegionalStream> = streams
        .iter()
        .filter(|rs| rs.namespace().unwrap_or_default() == namespace)
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .filter(|rs| selector.matches(rs.labels()))
        .collect();
    let mut invalid_sources = Vec::new();
    let mut selected: Vec<(&RegionalStream, ValidStream)> = Vec::new();
    for rs in candidates {
        match validate_stream(rs) {
            Ok(v) => selected.push((rs, v)),
            Err(e) => invalid_sources.push(InvalidSource {
                source: rs.name_any(),
                source_region: rs.spec.region.clone(),
                deployment: names::route_deployment_name(&rs.name_any(), &name),
                problem: invalid_problem(&rs.name_any(), &e),
            }),
        }
    }
    for u in unreadable {
        let meta = &u.metadata;
        let labels = meta.labels.clone().unwrap_or_default();
        if meta.namespace.as_deref().unwrap_or_default() != namespace
            || meta.deletion_timestamp.is_some()
            || !selector.matches(&labels)
        {
            continue;
        }
        let source = meta.name.clone().unwrap_or_default();
        invalid_sources.push(InvalidSource {
            deployment: names::route_deployment_name(&source, &name),
            problem: format!(
                "RegionalStream {source} cannot be read ({}); fix or delete it",
                u.error
            ),
            source,
            source_region: String::new(),
        });
    }
    selected.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    check_one_source_per_region(&name, &selected)?;

    let mut topics: BTreeMap<String, AggregateTopic> = BTreeMap::new();
    let mut routes = Vec::new();
    for (rs, v) in selected {
        // Observed partitions win over the spec when larger (a topic grown outside, or a
        // pattern match): the aggregate must have every partition the source has.
        let observed: BTreeMap<&str, i32> = rs
            .status
            .iter()
            .flat_map(|s| s.topics.iter())
            .filter(|t| t.exists)
            .filter_map(|t| t.partitions.map(|p| (t.name.as_str(), p)))
            .collect();
        let mut route_topics: BTreeMap<String, (i32, i32)> = BTreeMap::new();
        for t in &v.topics {
            let p = observed
                .get(t.name.as_str())
                .copied()
                .unwrap_or(0)
                .max(t.partitions);
            route_topics.insert(t.name.clone(), (p, t.replication_factor));
        }
        if let Some(p) = &v.topic_pattern {
            let re = regex::Regex::new(&anchor(p)).map_err(|e| {
                Error::InvalidSpec(format!("RegionalStream {}: spec.topicPattern: {e}", v.name))
            })?;
            for (t, parts) in &observed {
                if re.is_match(t) && !route_topics.contains_key(*t) {
                    route_topics.insert((*t).to_string(), (*parts, 1));
                }
            }
        }
        for (t, (parts, rf)) in &route_topics {
            let agg_name = aggregate_topic_name(spec.topic_naming, &v.region, t);
            // Refused for the whole AggregateCluster (its checkpoint topic or a source may be
            // at fault): the reconcile stops before it changes anything, so nothing is pruned.
            if agg_name == spec.checkpoints.topic {
                return Err(Error::InvalidSpec(format!(
                    "AggregateCluster {name}: aggregate topic {agg_name} (from RegionalStream {}) collides with spec.checkpoints.topic",
                    v.name
                )));
            }
            let entry = topics.entry(agg_name).or_insert(AggregateTopic {
                partitions: 0,
                replication_factor: 0,
            });
            entry.partitions = entry.partitions.max(*parts);
            entry.replication_factor = entry.replication_factor.max(*rf);
        }
        routes.push(RoutePlan {
            deployment: names::route_deployment_name(&v.name, &name),
            route_id: names::route_id(&namespace, &v.name, &name),
            source: v.name.clone(),
            source_region: v.region.clone(),
            source_kafka: v.kafka.clone(),
            topics: route_topics.into_keys().collect(),
            topic_pattern: v.topic_pattern.clone(),
        });
    }
    invalid_sources.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(AggregatePlan {
        name,
        namespace,
        region: spec.region.clone(),
        kafka: spec.kafka.clone(),
        naming: spec.topic_naming,
        replicator: spec.replicator.clone(),
        checkpoints: spec.checkpoints.clone(),
        routes,
        topics,
        invalid_sources,
    })
}

/// The validation failure of source `source`, phrased with the stream's name in front (the
/// field-level checks name only the field).
fn invalid_problem(source: &str, e: &Error) -> String {
    let text = match e {
        Error::InvalidSpec(m) => m.clone(),
        other => other.to_string(),
    };
    if text.contains(&format!("RegionalStream {source}")) {
        text
    } else {
        format!("RegionalStream {source}: {text}")
    }
}

/// Checkpoint keys, provenance headers and dedupe watermarks name a source by its region, so
/// two selected RegionalStreams of one region would write into each other's checkpoints and
/// make translation and dedupe unsound.
fn check_one_source_per_region(
    name: &str,
    selected: &[(&RegionalStream, ValidStream)],
) -> Result<()> {
    let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, v) in selected {
        by_region
            .entry(v.region.as_str())
            .or_default()
            .push(v.name.as_str());
    }
    let clashes: Vec<String> = by_region
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(region, names)| format!("{region}: {}", names.join(", ")))
        .collect();
    if clashes.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "AggregateCluster {name}: spec.sources selects more than one RegionalStream of a region ({}); checkpoints and dedupe watermarks are keyed by region, so select one RegionalStream per region (narrow spec.sources, or merge the streams' topics into one RegionalStream)",
        clashes.join("; ")
    )))
}

fn check_replicator(name: &str, r: &ReplicatorSpec) -> Result<()> {
    // Every replica of a route copies every partition: more than one duplicates records and
    // competes for commits (AtLeastOnce) or fences the other (ExactlyOnce).
    if !(0..=1).contains(&r.replicas) {
        return Err(Error::InvalidSpec(format!(
            "AggregateCluster {name}: spec.replicator.replicas is {}; it must be 0 or 1 until replicas share a route's partitions",
            r.replicas
        )));
    }
    let BatchingSpec {
        linger_ms,
        batch_bytes,
        ..
    } = &r.batching;
    if *linger_ms < 0 || *batch_bytes < 1024 {
        return Err(Error::InvalidSpec(format!(
            "AggregateCluster {name}: spec.replicator.batching: lingerMs >= 0 and batchBytes >= 1024"
        )));
    }
    Ok(())
}

fn check_label(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{field} {value:?} is not a DNS-1123 label"
        )))
    }
}

fn check_topic(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 249
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "{field} {value:?} is not a legal Kafka topic name"
        )))
    }
}

fn check_kafka(field: &str, k: &KafkaConnection) -> Result<()> {
    if k.bootstrap_servers.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "{field}.bootstrapServers must list at least one host:port"
        )));
    }
    // The API server refuses these too (same rule); this catches objects stored before it.
    for key in k.properties.keys() {
        if let Some(why) = tributary_api::refused_property(key) {
            return Err(Error::InvalidSpec(format!(
                "{field}.properties must not set {key:?}: {why}"
            )));
        }
    }
    Ok(())
}
