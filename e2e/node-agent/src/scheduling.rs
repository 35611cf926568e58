//! The scheduler this stack lacks: every agent watches unscheduled pods and binds those it
//! wins. All agents apply the same deterministic rule to the same picture, so at most one
//! of them claims a pod; if two race anyway, the API server refuses the second binding.
//!
//! Rule: the candidate nodes are the Ready agent nodes that are schedulable, match the pod's
//! `nodeSelector` and required node affinity, and carry no taint the pod does not tolerate.
//! The pod goes to the candidate with the fewest pods matching its `topologySpreadConstraints`
//! in the candidate's topology domain (as a soft constraint: kube-scheduler's
//! `ScheduleAnyway`), then to the least loaded one (non-terminal pods per node), ties broken by
//! the lexicographically smallest name. A pod pinned to a region has one candidate: that
//! region's node; it stays Pending while that region is down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, Pod, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::Notify;

use crate::node::{AGENT_LABEL, node_is_ready};

/// A node as the scheduling rule sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
}

impl Candidate {
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.clone().unwrap_or_default();
        Candidate {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
        }
    }
}

/// A scheduled, active pod as topology spreading counts it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub node: String,
}

/// Pods matching `pod`'s spread constraints in `node`'s domain of each constraint's key.
fn spread_count(pod: &Pod, node: &Candidate, nodes: &[Candidate], placed: &[Placed]) -> usize {
    let Some(constraints) = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
    else {
        return 0;
    };
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let domain_of = |name: &str, key: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| n.labels.get(key).cloned())
    };
    constraints
        .iter()
        .map(|c| {
            let Some(domain) = node.labels.get(&c.topology_key) else {
                return 0;
            };
            let wanted = c
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default();
            placed
                .iter()
                .filter(|p| p.namespace == ns)
                .filter(|p| wanted.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                .filter(|p| domain_of(&p.node, &c.topology_key).as_ref() == Some(domain))
                .count()
        })
        .sum()
}

/// Picks the node for `pod` among `nodes` (already filtered to Ready agent nodes).
pub fn choose_node<'a>(
    pod: &Pod,
    nodes: &'a [Candidate],
    load: &HashMap<String, usize>,
    placed: &[Placed],
) -> Option<&'a str> {
    nodes
        .iter()
        .filter(|n| fits(pod, n))
        .min_by(|a, b| {
            let sa = spread_count(pod, a, nodes, placed);
            let sb = spread_count(pod, b, nodes, placed);
            let la = load.get(&a.name).copied().unwrap_or(0);
            let lb = load.get(&b.name).copied().unwrap_or(0);
            sa.cmp(&sb)
                .then(la.cmp(&lb))
                .then_with(|| a.name.cmp(&b.name))
        })
        .map(|n| n.name.as_str())
}

/// Whether the pod may run on the node (selector, required affinity, taints, cordon).
pub fn fits(pod: &Pod, node: &Candidate) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if node.unschedulable {
        return false;
    }
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(required) = required
        && !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return false;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    node.taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn term_matches(term: &NodeSelectorTerm, node: &Candidate) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false; // an empty term matches nothing (as in kube-scheduler)
    }
    let name_labels = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
    exprs.iter().all(|r| requirement_matches(r, &node.labels))
        && fields.iter().all(|r| requirement_matches(r, &name_labels))
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| number(v)),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or_default();
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
    }
}

/// Whether the pod still occupies its node.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn is_unscheduled(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s == "default-scheduler")
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
}

/// Decides, for a consistent snapshot, which unscheduled pods go where; returns the pods this
/// agent's node wins. Pods are taken oldest first and each decision counts towards the load,
/// so every agent reaches the same assignment from the same snapshot.
pub fn assignments_for(me: &str, pods: &[Arc<Pod>], nodes: &[Candidate]) -> Vec<Arc<Pod>> {
    let mut load: HashMap<String, usize> = HashMap::new();
    let mut placed = Vec::new();
    for p in pods {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref())
            && !n.is_empty()
            && is_active(p)
            && p.metadata.deletion_timestamp.is_none()
        {
            *load.entry(n.to_string()).or_default() += 1;
            placed.push(Placed {
                namespace: p.metadata.namespace.clone().unwrap_or_default(),
                labels: p.metadata.labels.clone().unwrap_or_default(),
                node: n.to_string(),
            });
        }
    }
    let mut pending: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_unscheduled(p)).collect();
    pending.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.clone(),
                p.metadata.namespace.clone(),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut mine = Vec::new();
    for pod in pending {
        if let Some(node) = choose_node(pod, nodes, &load, &placed) {
            *load.entry(node.to_string()).or_default() += 1;
            placed.push(Placed {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                labels: pod.metadata.labels.clone().unwrap_or_default(),
                node: node.to_string(),
            });
            if node == me {
                mine.push(pod.clone());
            }
        }
    }
    mine
}

/// Watches nodes and pods and binds the pods this node wins, until the process ends.
pub async fn run_scheduler(client: kube::Client, node_name: String) -> anyhow::Result<()> {
    let wake = Arc::new(Notify::new());
    let nodes: Store<Node> = spawn_reflector(
        Api::all(client.clone()),
        watcher::Config::default().labels(&format!("{AGENT_LABEL}=true")),
        wake.clone(),
    );
    let pods: Store<Pod> = spawn_reflector(
        Api::all(client.clone()),
        watcher::Config::default(),
        wake.clone(),
    );
    nodes.wait_until_ready().await?;
    pods.wait_until_ready().await?;

    // Pods this agent bound recently: the pod store may lag behind our own bindings.
    let mut recently_bound: HashMap<String, Instant> = HashMap::new();
    loop {
        let ready_nodes: Vec<Candidate> = nodes
            .state()
            .iter()
            .filter(|n| node_is_ready(n))
            .map(|n| Candidate::from_node(n))
            .collect();
        if ready_nodes.iter().any(|n| n.name == node_name) {
            recently_bound.retain(|_, at| at.elapsed() < Duration::from_secs(30));
            let snapshot = pods.state();
            let live: HashSet<String> = snapshot
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            recently_bound.retain(|uid, _| live.contains(uid));
            // Our own bindings the store has not caught up with count as bound here, so they
            // are neither bound twice nor missing from this node's load.
            let snapshot: Vec<Arc<Pod>> = snapshot
                .into_iter()
                .map(|p| {
                    let ours = p
                        .metadata
                        .uid
                        .as_ref()
                        .is_some_and(|u| recently_bound.contains_key(u));
                    if ours && is_unscheduled(&p) {
                        let mut bound = (*p).clone();
                        if let Some(spec) = bound.spec.as_mut() {
                            spec.node_name = Some(node_name.clone());
                        }
                        Arc::new(bound)
                    } else {
                        p
                    }
                })
                .collect();
            for pod in assignments_for(&node_name, &snapshot, &ready_nodes) {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if bind(&client, &pod, &node_name).await {
                    recently_bound.insert(uid, Instant::now());
                }
            }
        }
        // Re-evaluate on every change, and at least every 2 s (node readiness ages).
        let _ = tokio::time::timeout(Duration::from_secs(2), wake.notified()).await;
    }
}

fn spawn_reflector<K>(api: Api<K>, config: watcher::Config, wake: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, kind = K::kind(&()).as_ref(), "watch error (retrying)")
                }
            }
        }
    });
    reader
}

/// Binds the pod to the node; a lost race (409) or a vanished pod (404) is quiet.
async fn bind(client: &kube::Client, pod: &Pod, node_name: &str) -> bool {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = node_name, "bound pod");
            true
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
            tracing::debug!(pod = %format!("{ns}/{name}"), reason = %s.message, "binding lost (another agent or pod gone)");
            false
        }
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "binding failed (will retry)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    const REGION: &str = "topology.kubernetes.io/region";

    fn node(name: &str, region: &str) -> Candidate {
        Candidate {
            name: name.into(),
            labels: BTreeMap::from([(REGION.to_string(), region.to_string())]),
            taints: vec![],
            unschedulable: false,
        }
    }

    fn pod(name: &str, spec: serde_json::Value) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "t", "uid": name},
            "spec": spec,
        }))
        .expect("pod fixture");
        if p.spec.is_none() {
            p.spec = Some(PodSpec::default());
        }
        Arc::new(p)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn region_pinned_pod_goes_to_its_region_by_selector_or_affinity() {
        let nodes = [
            node("tributary-east", "east"),
            node("tributary-west", "west"),
        ];
        let by_selector = pod(
            "a",
            serde_json::json!({"containers": [], "nodeSelector": {REGION: "west"}}),
        );
        let by_affinity = pod(
            "b",
            serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": REGION, "operator": "In", "values": ["west", "central"]}]}
            ]}}}}),
        );
        for p in [by_selector, by_affinity] {
            assert_eq!(
                choose_node(&p, &nodes, &HashMap::new(), &[]),
                Some("tributary-west")
            );
        }
        let pinned_to_down_region = pod(
            "c",
            serde_json::json!({"containers": [], "nodeSelector": {REGION: "central"}}),
        );
        assert_eq!(
            choose_node(&pinned_to_down_region, &nodes, &HashMap::new(), &[]),
            None
        );
    }

    #[test]
    fn unpinned_pods_spread_and_every_agent_agrees() {
        let nodes = [
            node("tributary-east", "east"),
            node("tributary-west", "west"),
        ];
        let pods: Vec<Arc<Pod>> = (0..4)
            .map(|i| pod(&format!("p{i}"), serde_json::json!({"containers": []})))
            .collect();
        let east = assignments_for("tributary-east", &pods, &nodes);
        let west = assignments_for("tributary-west", &pods, &nodes);
        assert_eq!(names(&east), ["p0", "p2"]);
        assert_eq!(names(&west), ["p1", "p3"]);
    }

    #[test]
    fn spread_constraints_put_replicas_in_different_regions_whatever_the_load() {
        let nodes = [
            node("tributary-east", "east"),
            node("tributary-west", "west"),
        ];
        // West is busier, but east already has one replica of the spread set.
        let mut pods: Vec<Arc<Pod>> = (0..3)
            .map(|i| {
                pod(
                    &format!("busy{i}"),
                    serde_json::json!({"containers": [], "nodeName": "tributary-west"}),
                )
            })
            .collect();
        let spread = serde_json::json!([{"maxSkew": 1, "topologyKey": REGION,
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "op"}}}]);
        let mut first = (*pod(
            "op-0",
            serde_json::json!({"containers": [], "nodeName": "tributary-east", "topologySpreadConstraints": spread}),
        ))
        .clone();
        first.metadata.labels = Some(BTreeMap::from([("app".into(), "op".into())]));
        pods.push(Arc::new(first));
        let mut second = (*pod(
            "op-1",
            serde_json::json!({"containers": [], "topologySpreadConstraints": spread}),
        ))
        .clone();
        second.metadata.labels = Some(BTreeMap::from([("app".into(), "op".into())]));
        pods.push(Arc::new(second));
        assert_eq!(
            names(&assignments_for("tributary-west", &pods, &nodes)),
            ["op-1"]
        );
    }

    #[test]
    fn load_counts_only_active_pods_on_each_node() {
        let nodes = [
            node("tributary-east", "east"),
            node("tributary-west", "west"),
        ];
        let running_on_east = pod(
            "r",
            serde_json::json!({"containers": [], "nodeName": "tributary-east"}),
        );
        let mut done = (*pod(
            "d",
            serde_json::json!({"containers": [], "nodeName": "tributary-west"}),
        ))
        .clone();
        done.status = Some(
            serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).expect("status"),
        );
        let new = pod("n", serde_json::json!({"containers": []}));
        let pods = vec![running_on_east, Arc::new(done), new];
        assert_eq!(
            names(&assignments_for("tributary-west", &pods, &nodes)),
            ["n"]
        );
    }

    #[test]
    fn taints_need_tolerations_and_cordoned_nodes_are_skipped() {
        let mut tainted = node("tributary-east", "east");
        tainted.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("kafka".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }];
        let mut cordoned = node("tributary-west", "west");
        cordoned.unschedulable = true;
        let nodes = [tainted, cordoned];
        let plain = pod("a", serde_json::json!({"containers": []}));
        assert_eq!(choose_node(&plain, &nodes, &HashMap::new(), &[]), None);
        let tolerant = pod(
            "b",
            serde_json::json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}]}),
        );
        assert_eq!(
            choose_node(&tolerant, &nodes, &HashMap::new(), &[]),
            Some("tributary-east")
        );
    }
}
