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

/// Streams, aggregates, one VerifiableConsumer Deployment per region (replicas 0: the operator
/// owns the scale) and the ConsumerGroupFailover, with names unique to this run.
pub fn manifests(regions: &[RegionKafka], suffix: &str, group: &Group) -> String {
    let mut yaml = String::new();
    for RegionKafka {
        region: r,
        regional,
        aggregate,
    } in regions
    {
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
      containers:
        - name: consumer
          image: apache/kafka:4.2.0
          command: ["/opt/kafka/bin/kafka-verifiable-consumer.sh"]
          args: ["--bootstrap-server", "{aggregate}", "--topic", "orders-{suffix}",
                 "--group-id", "billing-{suffix}", "--reset-policy", "earliest", "--verbose",
                 "--session-timeout", "10000"]
"#
        ));
    }
    let entries: String = regions
        .iter()
        .map(|RegionKafka { region: r, .. }| {
            format!(
                "    - {{region: {r}, aggregateCluster: {r}, workloadRef: {{kind: Deployment, name: billing-{r}, replicas: 1}}}}\n"
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
        }
    }
}
