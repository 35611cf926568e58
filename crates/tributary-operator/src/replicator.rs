//! The build step for routes: the replicator Deployment of one route, as a pure function of
//! the validated plan. Same plan, same object: re-applying it changes nothing, so a no-op
//! reconcile never rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tributary_api::aggregate_cluster::{Compression, Delivery, TopicNaming};
use tributary_api::{KafkaConnection, SaslMechanism, SecretKeyRef};

use crate::model::{AggregatePlan, RoutePlan};
use crate::names;

/// Port of the replicator's /healthz, /readyz and /metrics, on the pod IP.
pub const REPLICATOR_PORT: i32 = 8080;
/// Where Secret material of the source and destination connections is mounted.
const SECRETS_ROOT: &str = "/var/run/tributary";

/// Builds the Deployment serving `route` into the aggregate cluster of `plan`. The image is
/// `spec.replicator.image` if set, else `default_image` (the operator's own).
pub fn build_route_deployment(
    plan: &AggregatePlan,
    route: &RoutePlan,
    default_image: &str,
    owner: OwnerReference,
) -> Deployment {
    let image = plan.replicator.image.as_deref().unwrap_or(default_image);
    let labels = names::route_labels(&route.source, &plan.name);
    let port = REPLICATOR_PORT;
    let mut mounts = SecretMounts::default();
    let mut args = vec![
        "replicate".to_string(),
        format!("--route={}", route.route_id),
        format!("--source-region={}", route.source_region),
        format!("--dest-region={}", plan.region),
    ];
    args.extend(connection_args("source", &route.source_kafka, &mut mounts));
    args.extend(connection_args("dest", &plan.kafka, &mut mounts));
    if !route.topics.is_empty() {
        args.push(format!("--topics={}", route.topics.join(",")));
    }
    if let Some(p) = &route.topic_pattern {
        args.push(format!("--topic-pattern={p}"));
    }
    let r = &plan.replicator;
    args.extend([
        format!(
            "--topic-naming={}",
            match plan.naming {
                TopicNaming::Identity => "identity",
                TopicNaming::Prefixed => "prefixed",
            }
        ),
        format!(
            "--delivery={}",
            match r.delivery {
                Delivery::AtLeastOnce => "at-least-once",
                Delivery::ExactlyOnce => "exactly-once",
            }
        ),
        format!("--linger-ms={}", r.batching.linger_ms),
        format!("--batch-bytes={}", r.batching.batch_bytes),
        format!(
            "--compression={}",
            match r.batching.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Snappy => "snappy",
                Compression::Lz4 => "lz4",
                Compression::Zstd => "zstd",
            }
        ),
        format!("--checkpoint-interval={}", plan.checkpoints.interval),
        format!("--checkpoint-topic={}", plan.checkpoints.topic),
        format!("--checkpoint-retention={}", plan.checkpoints.retention),
        // The pod IP, not 0.0.0.0: pods sharing a network (hostNetwork, the local e2e
        // stack) must not collide, and nothing else in the pod needs the port.
        format!("--listen=$(POD_IP):{port}"),
        "--log-format=json".to_string(),
    ]);

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };

    let container = Container {
        name: "replicator".into(),
        image: Some(image.into()),
        args: Some(args),
        env: Some(pod_env()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: r.resources.clone(),
        volume_mounts: (!mounts.mounts.is_empty()).then(|| mounts.mounts.clone()),
        security_context: Some(restricted_container()),
        ..Default::default()
    };

    Deployment {
        metadata: ObjectMeta {
            name: Some(route.deployment.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(r.replicas),
            // Never two copiers of one route, not even during a rollout: the old pod drains and
            // stops before the new one starts (RollingUpdate would run both, copying twice).
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            // A replicator is ready in seconds; after 2 min without progress the route shows
            // Degraded (RolloutStalled) instead of Pending.
            progress_deadline_seconds: Some(120),
            selector: LabelSelector {
                match_labels: Some(names::route_selector_labels(&route.source, &plan.name)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: (!mounts.volumes.is_empty()).then_some(mounts.volumes),
                    affinity: Some(region_affinity(&plan.region)),
                    // The replicator drains and writes a last checkpoint on SIGTERM.
                    termination_grace_period_seconds: Some(30),
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

/// `POD_IP` (for `--listen=$(POD_IP):port`) and `RUST_LOG` of every container the operator runs.
pub(crate) fn pod_env() -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "RUST_LOG".into(),
            value: Some("info".into()),
            ..Default::default()
        },
    ]
}

/// The container security of every pod the operator runs: no privilege escalation, read-only
/// root, no capabilities.
pub(crate) fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod security of every pod the operator runs: non-root (the image's nonroot user),
/// runtime-default seccomp.
pub(crate) fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Required node affinity to the aggregate's region: a route's replicator runs next to its
/// destination, so a source region's loss stalls only the routes it feeds.
pub(crate) fn region_affinity(region: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: names::REGION_TOPOLOGY_KEY.into(),
                        operator: "In".into(),
                        values: Some(vec![region.into()]),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
pub(crate) struct SecretMounts {
    pub(crate) volumes: Vec<Volume>,
    pub(crate) mounts: Vec<VolumeMount>,
}

impl SecretMounts {
    /// Mounts one Secret key as a file and returns its path. Only the path reaches the args.
    fn file(&mut self, volume: &str, secret: &SecretKeyRef, file: &str) -> String {
        let dir = format!("{SECRETS_ROOT}/{volume}");
        self.volumes.push(Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: file.into(),
                    mode: None,
                }]),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: dir.clone(),
            read_only: Some(true),
            ..Default::default()
        });
        format!("{dir}/{file}")
    }
}

/// `--<side>-bootstrap` and friends for one connection; TLS/SASL secrets become mounted files.
pub(crate) fn connection_args(
    side: &str,
    k: &KafkaConnection,
    mounts: &mut SecretMounts,
) -> Vec<String> {
    let mut args = vec![format!(
        "--{side}-bootstrap={}",
        k.bootstrap_servers.join(",")
    )];
    if let Some(tls) = &k.tls {
        if let Some(ca) = &tls.ca {
            let path = mounts.file(&format!("{side}-tls-ca"), ca, "ca.crt");
            args.push(format!("--{side}-tls-ca-file={path}"));
        }
        if let Some(cert) = &tls.client_cert {
            let path = mounts.file(&format!("{side}-tls-cert"), cert, "tls.crt");
            args.push(format!("--{side}-tls-cert-file={path}"));
        }
        if let Some(key) = &tls.client_key {
            let path = mounts.file(&format!("{side}-tls-key"), key, "tls.key");
            args.push(format!("--{side}-tls-key-file={path}"));
        }
    }
    if let Some(sasl) = &k.sasl {
        let mech = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        args.push(format!("--{side}-sasl-mechanism={mech}"));
        args.push(format!("--{side}-sasl-username={}", sasl.username));
        let path = mounts.file(&format!("{side}-sasl-password"), &sasl.password, "password");
        args.push(format!("--{side}-sasl-password-file={path}"));
    }
    let props: &BTreeMap<String, String> = &k.properties;
    for (key, value) in props {
        args.push(format!("--{side}-property={key}={value}"));
    }
    args
}
