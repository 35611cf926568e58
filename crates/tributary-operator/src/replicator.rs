//! The build step for routes: the replicator Deployment of one route, as a pure function of
//! the validated plan. Same plan, same object: re-applying it changes nothing, so a no-op
//! reconcile never rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tributary_api::aggregate_cluster::{Compression, Delivery, TopicNaming};
use tributary_api::{KafkaConnection, SaslMechanism, SecretKeyRef};

use crate::model::{AggregatePlan, RoutePlan};
use crate::names;
use crate::secrets::{SECRET_VERSIONS_ANNOTATION, SecretVersions};

/// Port of the replicator's /healthz, /readyz and /metrics, on the pod IP.
pub const REPLICATOR_PORT: i32 = 8080;
/// Where Secret material of the source and destination connections is mounted.
const SECRETS_ROOT: &str = "/var/run/tributary";
/// The image's user and group (Dockerfile `USER 65532:65532`); also the pods' `fsGroup`, so
/// the Secret files (root-owned, 0440) are readable through the group.
pub const POD_USER: i64 = 65532;
/// Memory of a replicator when the spec names none: the default client buffers (512 MiB
/// producer + 128 MiB consumer queue) plus the process itself.
pub const DEFAULT_REPLICATOR_MEMORY: &str = "768Mi";
/// CPU request of a replicator when the spec names none (no CPU limit: throttling a copier
/// only adds lag).
pub const DEFAULT_REPLICATOR_CPU: &str = "100m";

/// Builds the Deployment serving `route` into the aggregate cluster of `plan`. The image is
/// `spec.replicator.image` if set, else `default_image` (the operator's own).
///
/// `secrets`: the versions of the Secrets the route mounts, as the pod template's
/// `tributary.dev/secret-versions`: a rotated Secret changes the template, and the route's pod
/// is replaced (its clients read credentials once, at start).
pub fn build_route_deployment(
    plan: &AggregatePlan,
    route: &RoutePlan,
    default_image: &str,
    secrets: &SecretVersions,
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
    ]);
    let resources = replicator_resources(r.resources.as_ref());
    let buffers = ClientBuffers::for_resources(&resources);
    args.extend([
        format!("--producer-buffer-kbytes={}", buffers.producer_kbytes),
        format!("--consumer-queue-kbytes={}", buffers.consumer_kbytes),
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
        resources: Some(resources),
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
                    annotations: secrets.annotation().map(|versions| {
                        BTreeMap::from([(SECRET_VERSIONS_ANNOTATION.to_string(), versions)])
                    }),
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
/// its group as `fsGroup` (Secret files readable), runtime-default seccomp.
pub(crate) fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(POD_USER),
        run_as_group: Some(POD_USER),
        // Secret volumes are root-owned 0440: without the group the non-root user cannot
        // read its own TLS key or SASL password.
        fs_group: Some(POD_USER),
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
        // `tls: {}` means TLS with the system trust store: the flag says so on its own.
        args.push(format!("--{side}-tls"));
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

/// The replicator container's resources: the spec's, with a default memory request and limit
/// when it names neither (and a default CPU request when it names no CPU), so a replicator is
/// never BestEffort while its clients buffer hundreds of MiB.
pub fn replicator_resources(spec: Option<&ResourceRequirements>) -> ResourceRequirements {
    resources_with_defaults(
        spec,
        DEFAULT_REPLICATOR_MEMORY,
        DEFAULT_REPLICATOR_MEMORY,
        DEFAULT_REPLICATOR_CPU,
    )
}

/// `spec`, with the given memory request and limit when it names no memory, and the CPU
/// request when it names no CPU (never a CPU limit: throttling only adds lag).
pub fn resources_with_defaults(
    spec: Option<&ResourceRequirements>,
    memory_request: &str,
    memory_limit: &str,
    cpu_request: &str,
) -> ResourceRequirements {
    let mut r = spec.cloned().unwrap_or_default();
    let names = |r: &ResourceRequirements, key: &str| {
        r.requests.as_ref().is_some_and(|m| m.contains_key(key))
            || r.limits.as_ref().is_some_and(|m| m.contains_key(key))
    };
    if !names(&r, "memory") {
        r.requests
            .get_or_insert_with(Default::default)
            .insert("memory".into(), Quantity(memory_request.into()));
        r.limits
            .get_or_insert_with(Default::default)
            .insert("memory".into(), Quantity(memory_limit.into()));
    }
    if !names(&r, "cpu") {
        r.requests
            .get_or_insert_with(Default::default)
            .insert("cpu".into(), Quantity(cpu_request.into()));
    }
    r
}

/// The replicator's librdkafka buffers, sized from its memory so the pod's limit holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientBuffers {
    pub producer_kbytes: u32,
    pub consumer_kbytes: u32,
}

impl ClientBuffers {
    /// 5/6 of the memory limit (else request) for client buffers, 4:1 between the producer
    /// and the consumer's pre-fetch queue; the rest is the process. 768 MiB gives librdkafka's
    /// sizes the replicator has always used (512 + 128 MiB). At least 4 + 1 MiB.
    pub fn for_resources(r: &ResourceRequirements) -> Self {
        let memory = |m: &Option<BTreeMap<String, Quantity>>| {
            m.as_ref()
                .and_then(|m| m.get("memory"))
                .and_then(|q| quantity_bytes(&q.0))
        };
        let bytes = memory(&r.limits)
            .or_else(|| memory(&r.requests))
            .or_else(|| quantity_bytes(DEFAULT_REPLICATOR_MEMORY))
            .unwrap_or(768 << 20);
        let budget_kb = bytes / 1024 * 5 / 6;
        let clamp = |kb: u64, min: u64| u32::try_from(kb.clamp(min, 2_097_151)).unwrap_or(u32::MAX);
        ClientBuffers {
            producer_kbytes: clamp(budget_kb * 4 / 5, 4096),
            consumer_kbytes: clamp(budget_kb / 5, 1024),
        }
    }
}

/// Bytes of a Kubernetes memory quantity (`768Mi`, `1G`, `1.5Gi`, `134217728`, `1e9`);
/// `None` when it is not one.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let n: f64 = number.parse().ok()?;
    let bytes = (n * factor).ceil();
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::KafkaTls;

    fn connection(tls: Option<KafkaTls>) -> KafkaConnection {
        KafkaConnection {
            bootstrap_servers: vec!["kafka:9093".into()],
            tls,
            sasl: None,
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn tls_with_the_system_trust_store_reaches_the_replicator_as_a_flag() {
        let mut mounts = SecretMounts::default();
        let args = connection_args(
            "source",
            &connection(Some(KafkaTls::default())),
            &mut mounts,
        );
        assert_eq!(args, ["--source-bootstrap=kafka:9093", "--source-tls"]);
        assert!(
            mounts.volumes.is_empty(),
            "nothing to mount for the system trust store"
        );
        let args = connection_args("dest", &connection(None), &mut mounts);
        assert_eq!(args, ["--dest-bootstrap=kafka:9093"], "no tls: plaintext");
    }

    #[test]
    fn tls_flags_parse_as_the_replicator_and_checkpoint_sync_read_them() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            from: tributary_kafka::FromConnectionArgs,
            #[command(flatten)]
            to: tributary_kafka::ToConnectionArgs,
        }
        let mut mounts = SecretMounts::default();
        let ca = SecretKeyRef {
            name: "ca".into(),
            key: "ca.crt".into(),
        };
        let mut argv = vec!["x".to_string()];
        argv.extend(connection_args(
            "from",
            &connection(Some(KafkaTls::default())),
            &mut mounts,
        ));
        argv.extend(connection_args(
            "to",
            &connection(Some(KafkaTls {
                ca: Some(ca),
                ..Default::default()
            })),
            &mut mounts,
        ));
        let flags = Flags::try_parse_from(argv).expect("flags the binary accepts");
        let from = flags.from.to_settings("from").expect("settings");
        let to = flags.to.to_settings("to").expect("settings");
        assert_eq!(
            (from.security_protocol(), to.security_protocol()),
            ("ssl", "ssl")
        );
        assert!(from.tls.as_ref().is_some_and(|t| t.ca_file.is_none()));
    }

    #[test]
    fn secret_files_are_readable_by_the_pod_user_through_fs_group() {
        let pod = restricted_pod();
        assert_eq!(pod.run_as_user, Some(POD_USER));
        assert_eq!(
            pod.fs_group,
            Some(POD_USER),
            "0440 root-owned files need the group"
        );
        let mut mounts = SecretMounts::default();
        let sk = SecretKeyRef {
            name: "s".into(),
            key: "k".into(),
        };
        mounts.file("v", &sk, "f");
        let mode = mounts.volumes[0]
            .secret
            .as_ref()
            .and_then(|s| s.default_mode)
            .unwrap_or(0o644);
        assert_eq!(mode & 0o040, 0o040, "group-readable");
        assert_eq!(mode & 0o007, 0, "not world-readable");
    }

    #[test]
    fn a_replicator_without_resources_gets_memory_for_its_buffers() {
        let r = replicator_resources(None);
        let q = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(q(&r.requests, "memory").as_deref(), Some("768Mi"));
        assert_eq!(q(&r.limits, "memory").as_deref(), Some("768Mi"));
        assert_eq!(q(&r.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(q(&r.limits, "cpu"), None, "no CPU limit");
        assert_eq!(
            ClientBuffers::for_resources(&r),
            ClientBuffers {
                producer_kbytes: 524_288,
                consumer_kbytes: 131_072
            },
            "the defaults are the replicator's historical buffer sizes"
        );
    }

    #[test]
    fn buffers_follow_the_spec_memory_limit_and_fit_under_it() {
        let spec = ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("256Mi".into()))].into()),
            ..Default::default()
        };
        let r = replicator_resources(Some(&spec));
        assert_eq!(
            r.requests.as_ref().and_then(|m| m.get("memory")),
            None,
            "the limit is the request"
        );
        let b = ClientBuffers::for_resources(&r);
        let total = (u64::from(b.producer_kbytes) + u64::from(b.consumer_kbytes)) * 1024;
        assert!(total < 256 << 20 && total > 200 << 20, "{b:?}");
        let tiny = ResourceRequirements {
            requests: Some([("memory".to_string(), Quantity("1Mi".into()))].into()),
            ..Default::default()
        };
        assert_eq!(ClientBuffers::for_resources(&tiny).producer_kbytes, 4096);
    }

    #[test]
    fn memory_quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity_bytes("768Mi"), Some(768 << 20));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("134217728"), Some(134_217_728));
        assert_eq!(quantity_bytes("1e9"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("abc"), None);
        assert_eq!(quantity_bytes("12Qi"), None);
    }
}
