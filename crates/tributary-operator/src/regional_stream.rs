//! The RegionalStream controller: keeps a region's topics as the spec says (create, grow, set
//! configs; never shrink) or only observes them, and reports per-topic state.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tributary_api::regional_stream::{DeletionPolicy, TopicStatus};
use tributary_api::{RegionalStream, RegionalStreamStatus, condition_type};

use crate::conditions::{self, Wanted};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::frame::Reconciled;
use crate::kafka::{KafkaFailure, NewTopic, ObservedTopic, plan_topic_changes};
use crate::model::{self, ValidStream};
use crate::names::TOPICS_FINALIZER;
use crate::prober::Reach;
use crate::{secrets, status_util};

const KIND: &str = "RegionalStream";
/// Even when nothing changes, look again now and then (drift on the Kafka side).
const RESYNC: Duration = Duration::from_secs(300);

impl Reconciled for RegionalStream {
    const KIND: &'static str = KIND;

    async fn reconcile(&self, ctx: &Context) -> Result<Action> {
        reconcile_inner(self, ctx).await
    }

    async fn report_failure(&self, ctx: &Context, error: &Error) {
        let _ = status_util::write_status(self, ctx, error_status(self, error)).await;
    }

    fn region(&self) -> Option<&str> {
        Some(&self.spec.region)
    }
}

async fn reconcile_inner(rs: &RegionalStream, ctx: &Context) -> Result<Action> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<RegionalStream> = Api::namespaced(ctx.client.clone(), &ns);
    let obj_ref = ObjectRef::from_obj(rs);
    // Deletion: Kafka-side cleanup only when the user asked for it.
    if rs.meta().deletion_timestamp.is_some() {
        ctx.prober.forget_stream(&obj_ref);
        if rs.finalizers().iter().any(|f| f == TOPICS_FINALIZER) {
            if rs.spec.deletion_policy == DeletionPolicy::Delete && rs.spec.manage_topics {
                let conn = secrets::resolve(
                    &ctx.client,
                    &ns,
                    cluster_name(rs),
                    &rs.spec.kafka,
                    "spec.kafka",
                )
                .await?;
                let topics: Vec<String> = rs.spec.topics.iter().map(|t| t.name.clone()).collect();
                ctx.admin
                    .delete_topics(&conn, &topics)
                    .await
                    .map_err(|e| kafka_error(rs, e))?;
                ctx.event(
                    &rs.object_ref(&()),
                    false,
                    "TopicsDeleted",
                    "DeleteTopics",
                    format!(
                        "deleted topics {} (deletionPolicy: Delete)",
                        topics.join(", ")
                    ),
                )
                .await;
            }
            remove_finalizer(&api, rs).await?;
        }
        return Ok(Action::await_change());
    }

    // Validate.
    let valid = model::validate_stream(rs)?;
    sync_finalizer(&api, rs, &valid).await?;

    // Dereference: Secrets, then what the cluster has.
    let conn = secrets::resolve(
        &ctx.client,
        &ns,
        cluster_name(rs),
        &valid.kafka,
        "spec.kafka",
    )
    .await?;
    let config_keys: Vec<String> = valid
        .topics
        .iter()
        .flat_map(|t| t.config.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let names: Vec<String> = valid.topics.iter().map(|t| t.name.clone()).collect();
    let described = if valid.topic_pattern.is_some() {
        ctx.admin.describe_topics(&conn, None, &config_keys).await
    } else {
        ctx.admin
            .describe_topics(&conn, Some(&names), &config_keys)
            .await
    };
    let mut observed = match described {
        Ok(o) => o,
        Err(e) => {
            ctx.prober.watch_stream(obj_ref.clone(), conn, names);
            return Err(kafka_error(rs, e));
        }
    };

    // Build the wanted topics; apply (only when managing).
    let wanted: Vec<NewTopic> = valid
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: t.config.clone(),
        })
        .collect();
    let changes = plan_topic_changes(&wanted, &observed);
    let regarding = rs.object_ref(&());
    if valid.manage_topics {
        if !changes.create.is_empty() {
            ctx.admin
                .create_topics(&conn, &changes.create)
                .await
                .map_err(|e| kafka_error(rs, e))?;
            for t in &changes.create {
                observed.insert(
                    t.name.clone(),
                    ObservedTopic {
                        partitions: t.partitions,
                        config: t.config.clone(),
                    },
                );
            }
            let created: Vec<&str> = changes.create.iter().map(|t| t.name.as_str()).collect();
            ctx.event(
                &regarding,
                false,
                "TopicCreated",
                "CreateTopic",
                format!(
                    "created topics {} on the regional cluster of {}",
                    created.join(", "),
                    valid.region
                ),
            )
            .await;
        }
        for (topic, from, to) in &changes.grow {
            ctx.admin
                .grow_partitions(&conn, topic, *to)
                .await
                .map_err(|e| kafka_error(rs, e))?;
            if let Some(o) = observed.get_mut(topic) {
                o.partitions = *to;
            }
            ctx.event(
                &regarding,
                false,
                "PartitionsGrown",
                "GrowPartitions",
                format!("topic {topic}: partitions {from} -> {to}"),
            )
            .await;
        }
        for (topic, config) in &changes.alter_config {
            ctx.admin
                .alter_topic_config(&conn, topic, config)
                .await
                .map_err(|e| kafka_error(rs, e))?;
            if let Some(o) = observed.get_mut(topic) {
                o.config.extend(config.clone());
            }
            ctx.event(
                &regarding,
                false,
                "TopicConfigured",
                "AlterTopicConfig",
                format!(
                    "topic {topic}: set {}",
                    config.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
            .await;
        }
    }

    // Topics to watch: the listed ones plus those the pattern matches now.
    let mut probe_topics = names.clone();
    if let Some(p) = &valid.topic_pattern {
        let re =
            regex::Regex::new(&model::anchor(p)).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        for t in observed.keys() {
            if re.is_match(t) && !probe_topics.contains(t) {
                probe_topics.push(t.clone());
            }
        }
    }
    ctx.prober
        .watch_stream(obj_ref.clone(), conn, probe_topics.clone());

    let status = build_status(
        rs,
        &valid,
        &observed,
        &probe_topics,
        &changes.shrink_refused,
        ctx.prober.stream(&obj_ref).map(|o| (o.reach.clone(), o)),
    );
    status_util::write_status(rs, ctx, status).await?;
    Ok(Action::requeue(secrets::resync_for(
        RESYNC,
        std::iter::once(&rs.spec.kafka),
    )))
}

fn cluster_name(rs: &RegionalStream) -> String {
    format!(
        "regional cluster of {} (RegionalStream {}/{})",
        rs.spec.region,
        rs.namespace().unwrap_or_default(),
        rs.name_any()
    )
}

fn kafka_error(_rs: &RegionalStream, e: KafkaFailure) -> Error {
    Error::from(e)
}

/// The status from what was observed. Pure.
pub fn build_status(
    rs: &RegionalStream,
    valid: &ValidStream,
    observed: &BTreeMap<String, ObservedTopic>,
    topics: &[String],
    shrink_refused: &[(String, i32, i32)],
    probe: Option<(Reach, crate::prober::StreamObservation)>,
) -> RegionalStreamStatus {
    let old = rs.status.clone().unwrap_or_default();
    let probe_obs = probe.as_ref().map(|(_, o)| o);
    let mut statuses = Vec::new();
    let mut missing = Vec::new();
    for t in topics {
        let o = observed.get(t);
        let ends = probe_obs.and_then(|p| p.end_offsets.get(t));
        let message = shrink_refused
            .iter()
            .find(|(n, _, _)| n == t)
            .map(|(_, want, has)| {
                format!("spec asks for {want} partitions but the topic has {has}; partitions never shrink: set partitions >= {has}")
            })
            .or_else(|| o.is_none().then(|| {
                if valid.manage_topics { "topic does not exist yet".to_string() }
                else { "topic does not exist and manageTopics is false: create it on the regional cluster".to_string() }
            }));
        if o.is_none() {
            missing.push(t.clone());
        }
        statuses.push(TopicStatus {
            name: t.clone(),
            exists: o.is_some(),
            partitions: o.map(|o| o.partitions),
            end_offset_total: ends.map(|e| e.iter().sum()),
            produce_rate: probe_obs
                .and_then(|p| p.rates.get(t))
                .map(|r| (r * 10.0).round() / 10.0),
            message,
        });
    }
    let existing = statuses.iter().filter(|s| s.exists).count();
    let unreachable = match probe.as_ref().map(|(r, _)| r) {
        Some(Reach::Unreachable(m)) => Some(m.clone()),
        _ => None,
    };
    let wanted: Vec<Wanted> = if let Some(m) = unreachable {
        vec![
            Wanted::new(
                condition_type::READY,
                false,
                "ClusterUnreachable",
                m.clone(),
            ),
            Wanted::new(condition_type::DEGRADED, true, "ClusterUnreachable", m),
        ]
    } else if !missing.is_empty() {
        let m = format!(
            "topics missing on the regional cluster: {}",
            missing.join(", ")
        );
        vec![
            Wanted::new(condition_type::READY, false, "TopicMissing", m.clone()),
            Wanted::new(condition_type::DEGRADED, true, "TopicMissing", m),
        ]
    } else if !shrink_refused.is_empty() {
        let m = shrink_refused
            .iter()
            .map(|(t, want, has)| format!("{t}: spec {want} < actual {has}"))
            .collect::<Vec<_>>()
            .join("; ");
        vec![
            Wanted::new(
                condition_type::READY,
                true,
                "TopicsReady",
                "every topic exists",
            ),
            Wanted::new(
                condition_type::DEGRADED,
                true,
                "PartitionsShrinkRefused",
                format!("partitions never shrink ({m}); raise spec partitions to the actual count"),
            ),
        ]
    } else {
        vec![
            Wanted::new(
                condition_type::READY,
                true,
                "TopicsReady",
                "every topic exists",
            ),
            Wanted::new(condition_type::DEGRADED, false, "AsExpected", ""),
        ]
    };
    RegionalStreamStatus {
        observed_generation: rs.meta().generation,
        conditions: conditions::merge(&old.conditions, &wanted, rs.meta().generation),
        topics_ready: Some(format!("{existing}/{}", topics.len())),
        topics: statuses,
    }
}

fn error_status(rs: &RegionalStream, e: &Error) -> RegionalStreamStatus {
    let old = rs.status.clone().unwrap_or_default();
    let reason = e.category();
    let wanted = [
        Wanted::new(condition_type::READY, false, reason, e.to_string()),
        Wanted::new(condition_type::DEGRADED, true, reason, e.to_string()),
    ];
    RegionalStreamStatus {
        observed_generation: rs.meta().generation,
        conditions: conditions::merge(&old.conditions, &wanted, rs.meta().generation),
        ..old
    }
}

async fn sync_finalizer(
    api: &Api<RegionalStream>,
    rs: &RegionalStream,
    v: &ValidStream,
) -> Result<()> {
    let want = v.deletion_policy == DeletionPolicy::Delete && v.manage_topics;
    let has = rs.finalizers().iter().any(|f| f == TOPICS_FINALIZER);
    if want && !has {
        let patch = if rs.meta().finalizers.is_none() {
            json!([{"op": "add", "path": "/metadata/finalizers", "value": [TOPICS_FINALIZER]}])
        } else {
            json!([{"op": "add", "path": "/metadata/finalizers/-", "value": TOPICS_FINALIZER}])
        };
        json_patch(api, rs, patch).await?;
    } else if !want && has {
        remove_finalizer(api, rs).await?;
    }
    Ok(())
}

async fn remove_finalizer(api: &Api<RegionalStream>, rs: &RegionalStream) -> Result<()> {
    if let Some(i) = rs.finalizers().iter().position(|f| f == TOPICS_FINALIZER) {
        let path = format!("/metadata/finalizers/{i}");
        // `test` first: never remove someone else's finalizer after a concurrent change.
        let patch = json!([
            {"op": "test", "path": path, "value": TOPICS_FINALIZER},
            {"op": "remove", "path": path}
        ]);
        json_patch(api, rs, patch).await?;
    }
    Ok(())
}

async fn json_patch(
    api: &Api<RegionalStream>,
    rs: &RegionalStream,
    patch: serde_json::Value,
) -> Result<()> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Finalizer(e.to_string()))?;
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|e| Error::Finalizer(format!("{KIND} {}: {e}", rs.name_any())))?;
    Ok(())
}

/// What a reconcile of a RegionalStream acts on of the object itself: not its status (the
/// operator's own status writes would otherwise re-trigger it at once).
pub fn reconcile_fingerprint(rs: &kube::core::DeserializeGuard<RegionalStream>) -> Option<u64> {
    let meta = rs.meta();
    let unreadable = rs.0.as_ref().err().map(|e| e.error.clone());
    Some(crate::aggregate_cluster::hash_of(
        &json!({
            "uid": meta.uid,
            "generation": meta.generation,
            "labels": meta.labels,
            "annotations": meta.annotations,
            "finalizers": meta.finalizers,
            "deleting": meta.deletion_timestamp.is_some(),
            "unreadable": unreadable,
        })
        .to_string(),
    ))
}
