//! The ConsumerGroupFailover setup that the operator's failover tests, the failover benchmark
//! and the plugin's tests share: per region a RegionalStream, an AggregateCluster and a
//! VerifiableConsumer Deployment (replicas 0: the operator owns the scale), and one group
//! `billing` over them, with names unique to a run.

use crate::{Role, Stack};

/// Partitions of the group's topic.
pub const PARTITIONS: i32 = 3;

/// One region's two Kafka clusters.
#[derive(Clone, Debug)]
pub struct RegionKafka {
    pub region: String,
    pub regional: String,
    pub aggregate: String,
}

impl Stack {
    /// Every region of the stack with its clusters' bootstrap servers.
    pub fn region_kafka(&self) -> Vec<RegionKafka> {
        self.regions
            .iter()
            .map(|r| RegionKafka {
                region: r.clone(),
                regional: self.bootstrap(r, Role::Regional).to_string(),
                aggregate: self.bootstrap(r, Role::Aggregate).to_string(),
            })
            .collect()
    }
}

/// Builds (when its sources changed) the warm-standby Java agent and returns the directory
/// that holds `tributary-gate-agent.jar` (docs/active-gate.md, "Warm standby").
pub fn gate_agent_dir() -> std::path::PathBuf {
    let script = crate::repo_path("crates/tributary-active-gate/agent/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "building the gate agent failed: {}",
        crate::output_text(&out)
    );
    let jar = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    jar.parent()
        .unwrap_or_else(|| panic!("build.sh printed {jar:?}, not a jar's path"))
        .to_path_buf()
}

/// The warm standby's parts of a consumer pod: the gate sidecar (on `--port 0`: the local
/// stack's pods share the host's network) writing its answer to a shared emptyDir, and the
/// agent holding the VerifiableConsumer's main back until that answer says active.
fn warm_standby_pod_parts(region: &str, agent_dir: &std::path::Path) -> (String, String, String) {
    let tag = crate::image_tag();
    let agent_dir = agent_dir.display();
    let consumer_extra = r#"          env:
            - {name: KAFKA_OPTS, value: "-javaagent:/opt/tributary/tributary-gate-agent.jar=file=/var/run/tributary/active.json"}
          volumeMounts:
            - {name: active, mountPath: /var/run/tributary, readOnly: true}
            - {name: gate-agent, mountPath: /opt/tributary, readOnly: true}
"#
    .to_string();
    let sidecar = format!(
        r#"        - name: active-gate
          image: local/tributary:{tag}
          args: [active-gate, --configmap=billing-active, --region={region}, --port=0, --file=/var/run/tributary/active.json]
          env:
            - name: POD_NAMESPACE
              valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
          volumeMounts:
            - {{name: active, mountPath: /var/run/tributary}}
"#
    );
    let pod_extra = format!(
        r#"      serviceAccountName: billing-consumer
      volumes:
        - name: active
          emptyDir: {{medium: Memory, sizeLimit: 1Mi}}
        - name: gate-agent
          hostPath: {{path: "{agent_dir}", type: Directory}}
"#
    );
    (pod_extra, consumer_extra, sidecar)
}

/// Streams, aggregates, one VerifiableConsumer Deployment per region (replicas 0: the operator
/// owns the scale) and the ConsumerGroupFailover, with names unique to this run. With
/// `group.warm_standby`, the consumers wait behind the active gate and every region keeps
/// one standby replica.
pub fn manifests(regions: &[RegionKafka], suffix: &str, group: &Group) -> String {
    let mut yaml = String::new();
    let agent_dir = group.warm_standby.then(gate_agent_dir);
    if agent_dir.is_some() {
        // The gate's ServiceAccount and RBAC, as users get them.
        let rbac = crate::repo_path("examples/active-gate/rbac.yaml");
        yaml.push_str(
            &std::fs::read_to_string(&rbac).unwrap_or_else(|e| panic!("{}: {e}", rbac.display())),
        );
    }
    for RegionKafka {
        region: r,
        regional,
        aggregate,
    } in regions
    {
        let (pod_extra, consumer_extra, sidecar) = match &agent_dir {
            Some(dir) => warm_standby_pod_parts(r, dir),
            None => Default::default(),
        };
        yaml.push_str(&format!(
            r#"---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: {r}}}
spec:
  region: {r}
  deletionPolicy: Retain
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics:
    - {{name: orders-{suffix}, partitions: {PARTITIONS}, replicationFactor: 1}}
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: {r}}}
spec:
  region: {r}
  kafka: {{bootstrapServers: ["{aggregate}"]}}
  topicNaming: Identity
  replicator:
    replicas: 1
    delivery: AtLeastOnce
    resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
  checkpoints: {{interval: 1s, topic: tributary.checkpoints, retention: 168h}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: billing-{r}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: billing, region: {r}}}}}
  template:
    metadata: {{labels: {{app: billing, region: {r}}}}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions: [{{key: topology.kubernetes.io/region, operator: In, values: [{r}]}}]
      terminationGracePeriodSeconds: 10
{pod_extra}      containers:
        - name: consumer
          image: apache/kafka:4.2.0
          command: ["/opt/kafka/bin/kafka-verifiable-consumer.sh"]
          args: ["--bootstrap-server", "{aggregate}", "--topic", "orders-{suffix}",
                 "--group-id", "billing-{suffix}", "--reset-policy", "earliest", "--verbose",
                 "--session-timeout", "10000"]
{consumer_extra}{sidecar}"#
        ));
    }
    let standby = if group.warm_standby {
        ", standbyReplicas: 1"
    } else {
        ""
    };
    let entries: String = regions
        .iter()
        .map(|RegionKafka { region: r, .. }| {
            format!(
                "    - {{region: {r}, aggregateCluster: {r}, workloadRef: {{kind: Deployment, name: billing-{r}, replicas: 1{standby}}}}}\n"
            )
        })
        .collect();
    let Group {
        mode,
        failover,
        sync_interval,
        ..
    } = group;
    yaml.push_str(&format!(
        r#"---
apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {{name: billing}}
spec:
  groupId: billing-{suffix}
  topics: [orders-{suffix}]
  mode: {mode}
  regions:
{entries}  failover: {failover}
  sync: {{interval: {sync_interval}}}
"#
    ));
    yaml
}

/// The ConsumerGroupFailover's settings under test.
pub struct Group {
    pub mode: &'static str,
    pub failover: &'static str,
    pub sync_interval: &'static str,
    /// The operator's `leaderElection.leaseDuration`.
    pub leader_lease: &'static str,
    /// Apply the ConsumerGroupFailover before the AggregateClusters it names (GitOps tools
    /// apply in any order): it must start once they exist.
    pub group_first: bool,
    /// More `helm --set key=value` for the operator's release (later ones win).
    pub operator_sets: Vec<String>,
    /// Consumers behind the active gate, one standby replica in every region.
    pub warm_standby: bool,
}

pub const TIGHT: &str = "{automatic: true, probePeriod: 1s, failureThreshold: 2, leaseDuration: 5s, maxSyncAge: 30s, witness: witness}";

impl Default for Group {
    fn default() -> Self {
        Group {
            mode: "ActivePassive",
            failover: TIGHT,
            sync_interval: "1s",
            leader_lease: "4s",
            group_first: false,
            operator_sets: Vec::new(),
            warm_standby: false,
        }
    }
}
