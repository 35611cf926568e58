//! The build step for a ConsumerGroupFailover's standby sync Jobs, pure: the checkpoint-sync of
//! one region, kept warm every `sync.interval` until its epoch is superseded, which also runs
//! the final translation of a planned move when the operator asks it to (`POST /final`). Same
//! inputs, same object.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, KeyToPath, PodSpec, PodTemplateSpec,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use tributary_api::KafkaConnection;
use tributary_api::aggregate_cluster::TopicNaming;

use crate::names;
use crate::replicator::{
    SecretMounts, connection_args, pod_env, region_affinity, resources_with_defaults,
    restricted_container, restricted_pod,
};

/// Port of a standby sync's /metrics (scraped by the operator for the standby's freshness).
pub const SYNC_PORT: i32 = 8080;
/// Where the `<name>-active` ConfigMap is mounted in sync pods.
pub const ACTIVE_MOUNT: &str = "/etc/tributary/active";

/// Memory of a sync pod when `spec.sync.resources` names none: requested for its usual
/// index (tens of MiB), with room up to the limit for a plan whose checkpoint window widens
/// over a long topic; an OOM-killed final sync would hold up the move.
pub const DEFAULT_SYNC_MEMORY_REQUEST: &str = "128Mi";
pub const DEFAULT_SYNC_MEMORY_LIMIT: &str = "1Gi";
/// CPU request of a sync pod when `spec.sync.resources` names no CPU.
pub const DEFAULT_SYNC_CPU: &str = "50m";

/// `app.kubernetes.io/component` of standby sync Jobs (and their container's name).
pub const COMPONENT: &str = "checkpoint-sync";

/// Everything one sync Job needs, validated.
#[derive(Clone, Debug)]
pub struct SyncJob<'a> {
    pub failover: &'a str,
    pub namespace: &'a str,
    pub group: &'a str,
    pub topics: &'a [String],
    pub from_region: &'a str,
    pub to_region: &'a str,
    pub from: &'a KafkaConnection,
    pub to: &'a KafkaConnection,
    pub checkpoint_topic: &'a str,
    pub naming: TopicNaming,
    pub sources: &'a [String],
    pub interval: &'a str,
    /// `spec.sync.resources` (defaults filled in by `build`).
    pub resources: Option<&'a ResourceRequirements>,
    pub epoch: u64,
    pub image: &'a str,
    pub owner: OwnerReference,
}

impl SyncJob<'_> {
    pub fn name(&self) -> String {
        names::sync_job_name(self.failover, self.to_region, self.epoch)
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = names::failover_selector_labels(self.failover);
        labels.insert("app.kubernetes.io/component".into(), COMPONENT.into());
        labels.insert(names::REGION_LABEL.into(), self.to_region.into());
        labels.insert(names::EPOCH_LABEL.into(), self.epoch.to_string());
        labels
    }

    /// The Job: runs in the region it writes into (it must outlive the active region), with
    /// the ConfigMap's `epoch` as its epoch file and the clusters' Secrets mounted as files.
    pub fn build(&self) -> Job {
        let mut mounts = SecretMounts::default();
        let mut args = vec![
            "checkpoint-sync".to_string(),
            format!("--group={}", self.group),
            format!("--topics={}", self.topics.join(",")),
            format!("--from-region={}", self.from_region),
            format!("--to-region={}", self.to_region),
        ];
        args.extend(connection_args("from", self.from, &mut mounts));
        args.extend(connection_args("to", self.to, &mut mounts));
        args.extend([
            format!("--checkpoint-topic={}", self.checkpoint_topic),
            format!(
                "--topic-naming={}",
                match self.naming {
                    TopicNaming::Identity => "identity",
                    TopicNaming::Prefixed => "prefixed",
                }
            ),
            format!("--sources={}", self.sources.join(",")),
            format!("--interval={}", self.interval),
            format!("--epoch={}", self.epoch),
            format!("--epoch-file={ACTIVE_MOUNT}/epoch"),
            "--log-format=json".to_string(),
            // The pod IP, not 0.0.0.0: pods sharing a network must not collide.
            format!("--listen=$(POD_IP):{SYNC_PORT}"),
        ]);
        let mut volumes = mounts.volumes;
        let mut volume_mounts = mounts.mounts;
        volumes.push(Volume {
            name: "active".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::active_name(self.failover),
                items: Some(vec![KeyToPath {
                    key: "epoch".into(),
                    path: "epoch".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        volume_mounts.push(VolumeMount {
            name: "active".into(),
            mount_path: ACTIVE_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
        let labels = self.labels();
        let container = Container {
            name: COMPONENT.into(),
            image: Some(self.image.into()),
            args: Some(args),
            env: Some(pod_env()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: SYNC_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            volume_mounts: Some(volume_mounts),
            resources: Some(resources_with_defaults(
                self.resources,
                DEFAULT_SYNC_MEMORY_REQUEST,
                DEFAULT_SYNC_MEMORY_LIMIT,
                DEFAULT_SYNC_CPU,
            )),
            security_context: Some(restricted_container()),
            // A failed sync's reason reaches the operator (and status) this way.
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        };
        Job {
            metadata: ObjectMeta {
                name: Some(self.name()),
                namespace: Some(self.namespace.into()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            spec: Some(JobSpec {
                // A failed Job is replaced by the operator (a new pod, fresh flags), not retried.
                backoff_limit: Some(0),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        volumes: Some(volumes),
                        restart_policy: Some("Never".into()),
                        affinity: Some(region_affinity(self.to_region)),
                        termination_grace_period_seconds: Some(15),
                        automount_service_account_token: Some(false),
                        security_context: Some(restricted_pod()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use tributary_api::KafkaTls;

    #[test]
    fn a_sync_job_gets_tls_flags_and_reads_its_secrets_as_nonroot() {
        let tls = KafkaConnection {
            bootstrap_servers: vec!["east-agg:9093".into()],
            tls: Some(KafkaTls::default()),
            sasl: None,
            properties: Default::default(),
        };
        let plain = KafkaConnection {
            tls: None,
            bootstrap_servers: vec!["west-agg:9092".into()],
            ..tls.clone()
        };
        let topics = ["orders".to_string()];
        let sources = ["east".to_string()];
        let job = SyncJob {
            failover: "orders",
            namespace: "dr",
            group: "billing",
            topics: &topics,
            from_region: "east",
            to_region: "west",
            from: &tls,
            to: &plain,
            checkpoint_topic: "tributary.checkpoints",
            naming: TopicNaming::Identity,
            sources: &sources,
            interval: "5s",
            resources: None,
            epoch: 3,
            image: "local/tributary:dev",
            owner: OwnerReference::default(),
        }
        .build();
        let pod = job.spec.and_then(|s| s.template.spec).expect("pod spec");
        let args = pod.containers[0].args.clone().unwrap_or_default();
        assert!(args.contains(&"--from-tls".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--to-tls")), "{args:?}");
        let sc = pod.security_context.unwrap_or_default();
        assert_eq!((sc.run_as_user, sc.fs_group), (Some(65532), Some(65532)));
        // Never BestEffort: a final sync evicted first under memory pressure holds up a move.
        let r = pod.containers[0].resources.clone().unwrap_or_default();
        let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(get(&r.requests, "memory").as_deref(), Some("128Mi"));
        assert_eq!(get(&r.limits, "memory").as_deref(), Some("1Gi"));
        assert_eq!(get(&r.requests, "cpu").as_deref(), Some("50m"));
        assert_eq!(get(&r.limits, "cpu"), None);
    }
}
