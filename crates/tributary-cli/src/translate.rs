//! `translate GROUP --to REGION`: a dry run of a move's translation. It builds the same
//! checkpoint-sync configuration the operator gives the target's standby sync (group, topics,
//! both aggregate clusters, checkpoint topic, naming, every source region), runs one
//! [`CheckpointSync::dry_run`] — the translation of `tributary_core::translate`, read like a
//! final round, nothing committed — and shows the plan: per partition the group's offset in
//! the active region, the resume offset, the target's current offset and what a planned
//! move's final round would commit, the watermarks and the duplicate bounds.
//!
//! [`inputs`] (which clusters, which sources; every refusal) and [`TranslateView`] (the JSON
//! shape and the table) are pure; [`dry_run`] is the Kafka I/O, on a thread of its own
//! (librdkafka calls block).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use serde::Serialize;
use tributary_api::aggregate_cluster::TopicNaming as ApiNaming;
use tributary_api::consumer_group_failover::FailoverMode;
use tributary_api::{AggregateCluster, ConsumerGroupFailover, KafkaConnection, RegionalStream};
use tributary_checkpoint_sync::http::Health;
use tributary_checkpoint_sync::{CheckpointSync, Mode, RoundOutcome, SyncConfig};
use tributary_connection::ResolveError;
use tributary_core::{
    AggregatePartition, PartitionOutcome, StandbyCommit, TopicNaming, TranslationPlan,
};
use tributary_kafka::ClientSettings;

use crate::table::{Cell, Table};

/// What a dry run needs, resolved from the objects: the same values the operator puts into
/// the target's standby sync Job.
#[derive(Clone, Debug, PartialEq)]
pub struct TranslateInputs {
    pub namespace: String,
    pub name: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub from_region: String,
    pub to_region: String,
    pub epoch: Option<i64>,
    pub from: AggregateConnection,
    pub to: AggregateConnection,
    pub checkpoint_topic: String,
    pub naming: TopicNaming,
    pub sources: Vec<String>,
}

/// Whether `labels` match `selector` (matchLabels and matchExpressions, as the API server
/// evaluates them). `None` selects everything.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// One aggregate cluster of the dry run as its object declares it (the `--bootstrap
/// REGION=HOST:PORT` override applied); its Secrets are read when the dry run starts
/// ([`client_settings`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateConnection {
    /// `east aggregate cluster (host:port)`: names the cluster in errors.
    pub name: String,
    pub kafka: KafkaConnection,
    /// `AggregateCluster east: spec.kafka`: names the object and field in Secret errors.
    pub field: String,
}

fn aggregate_connection(
    region: &str,
    agg: &AggregateCluster,
    overrides: &BTreeMap<String, String>,
) -> AggregateConnection {
    let mut kafka = agg.spec.kafka.clone();
    if let Some(bootstrap) = overrides.get(region) {
        kafka.bootstrap_servers = bootstrap.split(',').map(str::to_string).collect();
    }
    AggregateConnection {
        name: format!(
            "{region} aggregate cluster ({})",
            kafka.bootstrap_servers.join(",")
        ),
        kafka,
        field: format!("AggregateCluster {}: spec.kafka", agg.name_any()),
    }
}

/// The client settings of `c`, its TLS material and SASL password read from the Secrets of
/// `namespace` with the caller's own credentials, as the operator reads them (in memory,
/// never shown).
pub async fn client_settings(
    client: &kube::Client,
    namespace: &str,
    c: &AggregateConnection,
) -> Result<ClientSettings> {
    let resolved = tributary_connection::resolve(client, namespace, c.name.clone(), &c.kafka, &c.field)
        .await
        .map_err(|e| match e {
            ResolveError::Read {
                what,
                source: kube::Error::Api(s),
            } if s.code == 403 => anyhow!(
                "reading {what}: forbidden ({}); translate reads the aggregate's Secrets with your own credentials: it needs get on secrets in namespace {namespace}",
                s.message
            ),
            other => anyhow!("{other}"),
        })?;
    Ok(resolved.client_settings())
}

/// Resolves and checks everything a dry run of moving `cgf` to `to` needs. Refuses (fails
/// closed) where the answer would not be the move's: no current status, an unknown or the
/// active region, an ActiveActive group (a move translates nothing there), aggregates that
/// are missing, of another region, or laid out differently.
pub fn inputs(
    cgf: &ConsumerGroupFailover,
    aggregates: &[AggregateCluster],
    streams: &[RegionalStream],
    to: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<TranslateInputs> {
    let name = cgf.name_any();
    let namespace = cgf.namespace().unwrap_or_default();
    let known: Vec<&str> = cgf.spec.regions.iter().map(|r| r.region.as_str()).collect();
    let Some(target) = cgf.spec.regions.iter().find(|r| r.region == to) else {
        bail!(
            "unknown region {to:?}: ConsumerGroupFailover {namespace}/{name} has regions {} (spec.regions)",
            known.join(", ")
        );
    };
    if cgf.spec.mode == FailoverMode::ActiveActive {
        bail!(
            "ConsumerGroupFailover {namespace}/{name} is ActiveActive: every region consumes with offsets of its own, a move changes only the primary and translates nothing"
        );
    }
    let status = cgf.status.as_ref().ok_or_else(|| {
        anyhow!(
            "ConsumerGroupFailover {namespace}/{name} has no status: the active region is unknown (is the operator running?)"
        )
    })?;
    if status.observed_generation < cgf.metadata.generation {
        bail!(
            "the status of ConsumerGroupFailover {namespace}/{name} is for an older spec (observed generation {} < {}): the active region is not known for the current spec; wait for the operator",
            status.observed_generation.unwrap_or_default(),
            cgf.metadata.generation.unwrap_or_default()
        );
    }
    let from = status.active_region.clone().ok_or_else(|| {
        anyhow!("ConsumerGroupFailover {namespace}/{name}: status names no active region yet")
    })?;
    if from == to {
        bail!(
            "{name} is active in {to} already: nothing to translate (pick another of {})",
            known.join(", ")
        );
    }
    let Some(source) = cgf.spec.regions.iter().find(|r| r.region == from) else {
        bail!(
            "ConsumerGroupFailover {namespace}/{name}: the active region {from} is not in spec.regions"
        );
    };
    let aggregate = |region: &str, agg_name: &str| -> Result<&AggregateCluster> {
        let agg = aggregates
            .iter()
            .find(|a| a.name_any() == agg_name)
            .ok_or_else(|| {
                anyhow!(
                    "AggregateCluster {namespace}/{agg_name} (region {region} of {name}) not found"
                )
            })?;
        if agg.spec.region != region {
            bail!(
                "AggregateCluster {agg_name} is region {}, not {region} (spec.regions of {name})",
                agg.spec.region
            );
        }
        Ok(agg)
    };
    let a = aggregate(&from, &source.aggregate_cluster)?;
    let b = aggregate(to, &target.aggregate_cluster)?;
    if a.spec.topic_naming != b.spec.topic_naming
        || a.spec.checkpoints.topic != b.spec.checkpoints.topic
    {
        bail!(
            "the AggregateClusters of {from} and {to} differ in topicNaming or checkpoints.topic; offsets translate only between aggregates laid out alike"
        );
    }
    // Every region replicated into either aggregate, as the operator declares them: a source
    // left out would make the plan skip its records instead of staying conservative.
    let mut sources = BTreeSet::new();
    for (region, agg) in [(&from, a), (&to.to_string(), b)] {
        let before = sources.len();
        sources.extend(
            streams
                .iter()
                .filter(|s| selects(agg.spec.sources.as_ref(), s.labels()))
                .map(|s| s.spec.region.clone()),
        );
        if sources.len() == before && !sources.contains(region) {
            sources.insert(region.clone());
        }
    }
    Ok(TranslateInputs {
        namespace,
        name,
        group_id: cgf.spec.group_id.clone(),
        topics: cgf.spec.topics.clone(),
        from_region: from.clone(),
        to_region: to.to_string(),
        epoch: status.epoch,
        from: aggregate_connection(&from, a, overrides),
        to: aggregate_connection(to, b, overrides),
        checkpoint_topic: b.spec.checkpoints.topic.clone(),
        naming: match b.spec.topic_naming {
            ApiNaming::Identity => TopicNaming::Identity,
            ApiNaming::Prefixed => TopicNaming::Prefixed,
        },
        sources: sources.into_iter().collect(),
    })
}

/// The sync configuration of a dry run between the clusters `from` and `to` (the client
/// settings of `i.from` and `i.to`): a one-shot run (no epoch file: it commits nothing, so
/// there is nothing to fence) reading the checkpoint topics to their end within
/// `catch_up_timeout`.
pub fn sync_config(
    i: &TranslateInputs,
    from: ClientSettings,
    to: ClientSettings,
    catch_up_timeout: Duration,
) -> SyncConfig {
    let mut topics = i.topics.clone();
    topics.sort();
    topics.dedup();
    SyncConfig {
        group: i.group_id.clone(),
        topics,
        from_region: i.from_region.clone(),
        to_region: i.to_region.clone(),
        from,
        to,
        checkpoint_topic: i.checkpoint_topic.clone(),
        naming: i.naming,
        sources: i.sources.clone(),
        interval: Duration::from_secs(1),
        epoch: None,
        epoch_file: None,
        mode: Mode::Once,
        plan_file: None,
        observe_tail_max: 10_000,
        catch_up_timeout,
    }
}

/// What the dry run found.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub plan: TranslationPlan,
    pub would_commit: BTreeMap<AggregatePartition, StandbyCommit>,
    pub current: BTreeMap<AggregatePartition, u64>,
    pub members: usize,
}

/// Runs the dry run (blocking Kafka I/O, on its own thread and runtime).
pub async fn dry_run(cfg: SyncConfig) -> Result<DryRun> {
    tokio::task::spawn_blocking(move || -> Result<DryRun> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut sync = CheckpointSync::new(cfg, Arc::new(Health::new()), runtime.handle().clone())
            .map_err(|e| anyhow!("{e}"))?;
        let report = sync.dry_run().map_err(|e| {
            anyhow!(
                "the dry run failed, nothing to show: {e} (category {})",
                e.category()
            )
        })?;
        drop(sync);
        runtime.shutdown_timeout(Duration::from_secs(1));
        match report.outcome {
            RoundOutcome::DryRun {
                would_commit,
                current,
                members,
            } => Ok(DryRun {
                plan: report.plan,
                would_commit,
                current,
                members,
            }),
            other => Err(anyhow!("the dry run answered {other:?}, not a dry run")),
        }
    })
    .await?
}

/// One aggregate partition of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionRow {
    pub topic: String,
    pub partition: u32,
    /// The group's committed offset in the active region.
    pub committed_offset: Option<u64>,
    /// `resume` | `not_committed` | `missing_in_destination` | `contradicted`.
    pub status: String,
    /// The plan's resume offset in the target (what `--once --final` would commit).
    pub resume_offset: Option<u64>,
    pub exact: Option<bool>,
    pub max_duplicates: Option<u64>,
    pub max_duplicates_after_dedupe: Option<u64>,
    /// The source partition whose resume offset is the minimum.
    pub limited_by: Option<String>,
    /// The group's committed offset in the target now (kept warm by the standby sync).
    pub current_offset: Option<u64>,
    /// What a planned move's final round would leave committed in the target: the resume
    /// offset, or the current one where the plan lies behind it (never backwards).
    pub would_commit: Option<u64>,
    /// `commit` (moves the target's offset) | `keep` (already there or ahead) | `none`.
    pub action: String,
    /// Why a contradicted partition is refused.
    pub reason: Option<String>,
}

/// One source partition's watermark.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkRow {
    pub topic: String,
    pub partition: u32,
    pub source_region: String,
    pub source_topic: String,
    pub source_partition: u32,
    pub watermark: Option<u64>,
    pub watermark_exact: bool,
    /// `r_s`: the target offset from which this source's records at or above the watermark
    /// are seen.
    pub resume_offset: u64,
    pub resume_exact: bool,
}

/// The `-o json` shape (`kind: TributaryTranslation`, `version: 1`) and what the table shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TranslateView {
    pub kind: &'static str,
    pub version: u32,
    pub namespace: String,
    pub name: String,
    pub group_id: String,
    pub from: String,
    pub to: String,
    pub epoch: Option<i64>,
    /// Always true: nothing was committed.
    pub dry_run: bool,
    pub sources: Vec<String>,
    pub exact: bool,
    pub max_duplicates: u64,
    pub max_duplicates_after_dedupe: u64,
    /// The group's members in the target's aggregate cluster now; a final round refuses
    /// while there are any.
    pub members_in_target: usize,
    /// Partitions refused because their checkpoints contradict themselves or the target's
    /// log: a move would not commit them.
    pub contradicted: usize,
    pub partitions: Vec<PartitionRow>,
    pub watermarks: Vec<WatermarkRow>,
    /// The plan exactly as `tributary checkpoint-sync --once` prints it.
    pub plan: TranslationPlan,
}

impl TranslateView {
    pub fn new(i: &TranslateInputs, d: &DryRun) -> Self {
        let mut partitions = Vec::new();
        let mut watermarks = Vec::new();
        let mut contradicted = 0;
        for p in &d.plan.partitions {
            let key = AggregatePartition::new(p.topic.clone(), p.partition);
            let current = d.current.get(&key).copied();
            let decision = d.would_commit.get(&key).copied();
            let mut row = PartitionRow {
                topic: p.topic.clone(),
                partition: p.partition,
                committed_offset: p.committed_offset,
                status: String::new(),
                resume_offset: None,
                exact: None,
                max_duplicates: None,
                max_duplicates_after_dedupe: None,
                limited_by: None,
                current_offset: current,
                would_commit: decision.map(StandbyCommit::offset),
                action: match decision {
                    Some(StandbyCommit::Commit(o)) if current != Some(o) => "commit",
                    Some(_) => "keep",
                    None => "none",
                }
                .to_string(),
                reason: None,
            };
            match &p.outcome {
                PartitionOutcome::Resume(r) => {
                    row.status = "resume".into();
                    row.resume_offset = Some(r.resume_offset);
                    row.exact = Some(r.exact);
                    row.max_duplicates = Some(r.max_duplicates);
                    row.max_duplicates_after_dedupe = Some(r.max_duplicates_after_dedupe);
                    row.limited_by = r.limited_by.as_ref().map(ToString::to_string);
                    for s in &r.sources {
                        watermarks.push(WatermarkRow {
                            topic: p.topic.clone(),
                            partition: p.partition,
                            source_region: s.source.region.clone(),
                            source_topic: s.source.topic.clone(),
                            source_partition: s.source.partition,
                            watermark: s.watermark,
                            watermark_exact: s.watermark_exact,
                            resume_offset: s.resume_offset,
                            resume_exact: s.resume_exact,
                        });
                    }
                }
                PartitionOutcome::NotCommitted => row.status = "not_committed".into(),
                PartitionOutcome::MissingInDestination => {
                    row.status = "missing_in_destination".into()
                }
                PartitionOutcome::Contradicted(c) => {
                    contradicted += 1;
                    row.status = "contradicted".into();
                    row.reason = Some(c.reason.clone());
                }
            }
            partitions.push(row);
        }
        TranslateView {
            kind: "TributaryTranslation",
            version: 1,
            namespace: i.namespace.clone(),
            name: i.name.clone(),
            group_id: i.group_id.clone(),
            from: i.from_region.clone(),
            to: i.to_region.clone(),
            epoch: i.epoch,
            dry_run: true,
            sources: i.sources.clone(),
            exact: d.plan.exact,
            max_duplicates: d.plan.max_duplicates,
            max_duplicates_after_dedupe: d.plan.max_duplicates_after_dedupe,
            members_in_target: d.members,
            contradicted,
            partitions,
            watermarks,
            plan: d.plan.clone(),
        }
    }

    /// The plan is usable: no partition refused.
    pub fn usable(&self) -> bool {
        self.contradicted == 0
    }

    /// The tables for people.
    pub fn render(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let mut out = format!(
            "Dry run: {}/{} (group {}) {}→{} at epoch {} — nothing committed\n\
             sources {}; {}; at most {} duplicates, {} after dedupe with the watermarks\n",
            self.namespace,
            self.name,
            self.group_id,
            self.from,
            self.to,
            self.epoch.map_or_else(|| "?".into(), |e| e.to_string()),
            self.sources.join(","),
            if self.exact { "exact" } else { "conservative" },
            self.max_duplicates,
            self.max_duplicates_after_dedupe,
        );
        out.push_str("\nPARTITIONS\n");
        let mut t = Table::new([
            "TOPIC".to_string(),
            "PARTITION".into(),
            format!("COMMITTED IN {}", self.from.to_uppercase()),
            "RESUME".into(),
            format!("CURRENT IN {}", self.to.to_uppercase()),
            "WOULD COMMIT".into(),
            "DUPS".into(),
            "DUPS AFTER DEDUPE".into(),
            "STATUS".into(),
        ]);
        for p in &self.partitions {
            let status = match (p.status.as_str(), p.exact) {
                ("resume", Some(true)) => "exact".to_string(),
                ("resume", _) => format!(
                    "conservative{}",
                    p.limited_by
                        .as_ref()
                        .map(|l| format!(" (limited by {l})"))
                        .unwrap_or_default()
                ),
                (s, _) => s.replace('_', " "),
            };
            t.row(
                [
                    p.topic.clone(),
                    p.partition.to_string(),
                    opt(p.committed_offset),
                    opt(p.resume_offset),
                    opt(p.current_offset),
                    match (p.action.as_str(), p.would_commit) {
                        ("keep", Some(o)) => format!("{o} (kept)"),
                        (_, o) => opt(o),
                    },
                    opt(p.max_duplicates),
                    opt(p.max_duplicates_after_dedupe),
                    status,
                ]
                .into_iter()
                .map(Cell::plain)
                .collect(),
            );
        }
        out.push_str(&t.render(false));
        out.push_str("\nWATERMARKS (every record of the source partition below it was consumed)\n");
        let mut w = Table::new([
            "PARTITION",
            "SOURCE",
            "WATERMARK",
            "EXACT",
            "SOURCE RESUMES AT",
        ]);
        for s in &self.watermarks {
            w.row(
                [
                    format!("{}/{}", s.topic, s.partition),
                    format!(
                        "{}/{}/{}",
                        s.source_region, s.source_topic, s.source_partition
                    ),
                    opt(s.watermark),
                    if s.watermark_exact { "yes" } else { "no" }.into(),
                    format!(
                        "{}{}",
                        s.resume_offset,
                        if s.resume_exact {
                            ""
                        } else {
                            " (conservative)"
                        }
                    ),
                ]
                .into_iter()
                .map(Cell::plain)
                .collect(),
            );
        }
        out.push_str(&w.render(false));
        if self.members_in_target > 0 {
            out.push_str(&format!(
                "\nnote: the group has {} member(s) in {} now; a planned move stops them first (a final round refuses while any consume there)\n",
                self.members_in_target, self.to
            ));
        }
        for p in self
            .partitions
            .iter()
            .filter(|p| p.status == "contradicted")
        {
            out.push_str(&format!(
                "\nREFUSED {}/{}: {}\n",
                p.topic,
                p.partition,
                p.reason.as_deref().unwrap_or("contradicted")
            ));
        }
        out
    }
}

/// `--bootstrap REGION=HOST:PORT` values.
pub fn parse_overrides(values: &[String]) -> Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|v| {
            v.split_once('=')
                .filter(|(r, b)| !r.is_empty() && !b.is_empty())
                .map(|(r, b)| (r.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("--bootstrap {v:?}: expected REGION=HOST:PORT"))
        })
        .collect()
}
