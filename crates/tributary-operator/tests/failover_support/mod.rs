//! What the ConsumerGroupFailover e2e tests and the failover benchmark share: the operator
//! installed by the chart, the manifests (streams, aggregates, VerifiableConsumer workloads,
//! the group), Kafka's VerifiableConsumer output read from the pods' logs, and waits.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tributary_api::{ConsumerGroupFailover, find_condition};
#[allow(unused_imports)] // not every test binary uses every one
pub use tributary_e2e::failover::{Group, PARTITIONS, TIGHT};
use tributary_e2e::kafka::produce_acked;
use tributary_e2e::{HelmRelease, Role, Stack, TestNamespace, wait_until};

pub const SLOW: Duration = Duration::from_secs(240);

/// Brings a killed region back when the test ends, also on failure (later tests need it).
pub struct RegionGuard<'a> {
    pub stack: &'a Stack,
    pub region: String,
    pub down: bool,
}

impl Drop for RegionGuard<'_> {
    fn drop(&mut self) {
        if self.down
            && let Err(e) = self.stack.try_stack_command(&["region-up", &self.region])
        {
            eprintln!("could not bring {} back: {e}", self.region);
        }
    }
}

/// [`tributary_e2e::failover::manifests`] for the stack's regions.
pub fn manifests(stack: &Stack, suffix: &str, group: &Group) -> String {
    tributary_e2e::failover::manifests(&stack.region_kafka(), suffix, group)
}

/// One operator release at a time: every operator watches every namespace.
pub static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What every scenario starts from: the operator installed, the manifests applied, the group
/// active in the first region at epoch 1.
pub struct Setup {
    pub _release: HelmRelease,
    pub ns: String,
    pub topic: String,
    pub yaml: String,
    pub east: String,
    pub west: String,
    pub cgfs: Api<ConsumerGroupFailover>,
    pub deployments: Api<Deployment>,
}

pub async fn setup(t: &TestNamespace, group: &Group, operator_replicas: u32) -> Setup {
    let stack = &t.stack;
    let ns = t.name.clone();
    let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
    let mut sets = vec![
        format!("replicaCount={operator_replicas}"),
        format!("leaderElection.leaseDuration={}", group.leader_lease),
    ];
    sets.extend(group.operator_sets.iter().cloned());
    let release = stack.install_operator(&format!("tributary-{suffix}"), &ns, &sets);
    let yaml = manifests(stack, &suffix, group);
    // `kubectl apply` as a GitOps tool does it (client-side, three-way): the workloads say
    // `replicas: 0` and a re-apply leaves the operator's scale alone.
    if group.group_first {
        let at = yaml
            .find("---\napiVersion: tributary.dev/v1alpha1\nkind: ConsumerGroupFailover")
            .expect("the group is the last document");
        kubectl_apply(stack, &ns, &yaml[at..]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        kubectl_apply(stack, &ns, &yaml[..at]);
    } else {
        kubectl_apply(stack, &ns, &yaml);
    }
    let cgfs: Api<ConsumerGroupFailover> = t.api();
    let east = stack.regions[0].clone();
    wait_active(&cgfs, &east, 1).await;
    Setup {
        _release: release,
        topic: format!("orders-{suffix}"),
        yaml,
        east,
        west: stack.regions[1].clone(),
        cgfs,
        deployments: t.api(),
        ns,
    }
}

/// One record the VerifiableConsumer reported (`--verbose`: a `record_data` event per record).
#[derive(Clone, Debug)]
pub struct Consumed {
    pub value: String,
    pub at_ms: i64,
}

/// Every record consumed by the billing pods of `region` in this namespace, from the pods'
/// log files (kept by the node agent after the pods are gone).
pub fn consumed_in(stack: &Stack, ns: &str, region: &str) -> Vec<Consumed> {
    consumed_by_pod(stack, ns, region)
        .into_values()
        .flatten()
        .collect()
}

/// [`consumed_in`] per pod (by pod name).
pub fn consumed_by_pod(stack: &Stack, ns: &str, region: &str) -> BTreeMap<String, Vec<Consumed>> {
    let dir = stack.state_dir.join(format!("agent-{region}/pods"));
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pod) = name
            .strip_prefix(&format!("{ns}_"))
            .filter(|p| p.starts_with("billing-"))
        else {
            continue;
        };
        // Pods without a `consumer` container (the sync Jobs' `billing-sync-*`) are not consumers.
        let Ok(text) = std::fs::read_to_string(e.path().join("consumer.log")) else {
            continue;
        };
        let consumed: &mut Vec<Consumed> = out.entry(pod.to_string()).or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["name"] == "record_data" {
                consumed.push(Consumed {
                    value: v["value"].as_str().unwrap_or_default().to_string(),
                    at_ms: v["timestamp"].as_i64().unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// A billing pod's container log as the node agent keeps it (`""` when there is none yet).
pub fn pod_log(stack: &Stack, ns: &str, region: &str, pod: &str, container: &str) -> String {
    let path = stack
        .state_dir
        .join(format!("agent-{region}/pods/{ns}_{pod}/{container}.log"));
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn all_consumed(stack: &Stack, ns: &str) -> Vec<Consumed> {
    stack
        .regions
        .iter()
        .flat_map(|r| consumed_in(stack, ns, r))
        .collect()
}

/// Produces `n` records `<region>-<batch>-<i>` into `region`'s regional cluster.
pub async fn produce_batch(
    stack: &Stack,
    region: &str,
    topic: &str,
    batch: &str,
    n: usize,
) -> Vec<String> {
    produce_batch_acked(stack, region, topic, batch, n)
        .await
        .into_iter()
        .map(|a| a.value)
        .collect()
}

/// A record acknowledged by a regional cluster: its value and its provenance there.
#[derive(Clone, Debug)]
pub struct Acked {
    pub value: String,
    pub partition: i32,
    pub offset: i64,
}

/// [`produce_batch`], with where each record landed in the regional cluster.
pub async fn produce_batch_acked(
    stack: &Stack,
    region: &str,
    topic: &str,
    batch: &str,
    n: usize,
) -> Vec<Acked> {
    let records: Vec<(i32, String, String)> = (0..n)
        .map(|i| {
            (
                (i as i32) % PARTITIONS,
                format!("k{i}"),
                format!("{region}-{batch}-{i}"),
            )
        })
        .collect();
    let landed = produce_acked(stack.bootstrap(region, Role::Regional), topic, &records).await;
    records
        .into_iter()
        .zip(landed)
        .map(|((_, _, value), (partition, offset))| Acked {
            value,
            partition,
            offset,
        })
        .collect()
}

/// Waits until every value in `expected` was consumed at least once; returns the raw
/// duplicates among them.
pub async fn wait_consumed(stack: &Stack, ns: &str, what: &str, expected: &[String]) -> usize {
    let want: BTreeSet<&String> = expected.iter().collect();
    wait_until(what, SLOW, || async {
        let consumed = all_consumed(stack, ns);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &consumed {
            *counts.entry(c.value.as_str()).or_default() += 1;
        }
        let missing = want
            .iter()
            .filter(|v| !counts.contains_key(v.as_str()))
            .count();
        (missing == 0).then(|| {
            want.iter()
                .map(|v| counts[v.as_str()].saturating_sub(1))
                .sum::<usize>()
        })
    })
    .await
}

pub async fn status_of(
    api: &Api<ConsumerGroupFailover>,
) -> tributary_api::ConsumerGroupFailoverStatus {
    api.get("billing")
        .await
        .expect("get billing")
        .status
        .unwrap_or_default()
}

pub async fn wait_active(api: &Api<ConsumerGroupFailover>, region: &str, epoch: i64) {
    wait_until(
        &format!("billing active in {region} at epoch {epoch}"),
        SLOW,
        || async {
            let s = status_of(api).await;
            let ready = find_condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True");
            (s.active_region.as_deref() == Some(region) && s.epoch == Some(epoch) && ready)
                .then_some(())
        },
    )
    .await;
}

pub async fn replicas(deployments: &Api<Deployment>, name: &str) -> i32 {
    deployments
        .get(name)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(-1)
}

pub fn kubectl_apply(stack: &Stack, ns: &str, yaml: &str) {
    use std::io::Write;
    let out = Command::new(&stack.kubectl)
        .args(["apply", "-n", ns, "-f", "-"])
        .env("KUBECONFIG", stack.state_dir.join("kubeconfig"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .expect("kubectl apply runs");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub async fn condition(api: &Api<ConsumerGroupFailover>, type_: &str) -> Option<(String, String)> {
    let s = status_of(api).await;
    find_condition(&s.conditions, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

pub async fn wait_condition(
    api: &Api<ConsumerGroupFailover>,
    type_: &str,
    status: &str,
    reason: &str,
) {
    wait_until(&format!("{type_}={status} ({reason})"), SLOW, || async {
        (condition(api, type_).await == Some((status.to_string(), reason.to_string())))
            .then_some(())
    })
    .await;
}

pub async fn has_event(stack: &Stack, ns: &str, reason: &str) -> bool {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(stack.client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().any(|e| e.reason.as_deref() == Some(reason)))
        .unwrap_or(false)
}

pub async fn patch_spec(api: &Api<ConsumerGroupFailover>, patch: serde_json::Value) {
    api.patch("billing", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch the ConsumerGroupFailover");
}

/// The operator as a process of this test (out of cluster, no leader election, probing every
/// second), `extra` flags after the common ones, with `kubeconfig` as its own cluster and its
/// output in `log`. `TRIBUTARY_BIN` picks the binary (default: the stack's).
pub fn operator_process(
    stack: &Stack,
    name: &str,
    extra: &[String],
    kubeconfig: &std::path::Path,
    log: std::path::PathBuf,
) -> tributary_e2e::coordination::Process {
    let bin = std::env::var_os("TRIBUTARY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| stack.tributary_bin.clone());
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut args = vec![
        "operator".to_string(),
        "--leader-election=false".into(),
        format!("--listen={listen}"),
        "--probe-interval=1s".into(),
    ];
    args.extend(extra.iter().cloned());
    tributary_e2e::coordination::Process::start(
        name,
        &bin,
        &args,
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("RUST_LOG", "info,tributary_operator=debug".as_ref()),
            ("TRIBUTARY_IMAGE", "local/tributary:dev".as_ref()),
        ],
        log,
    )
}

/// A counter of the chart's operator pod in `ns` (`/metrics` on the pod's IP, port 8080):
/// the sample whose line starts with `series` (name and labels), 0 when it has none yet.
pub async fn operator_counter(stack: &Stack, ns: &str, series: &str) -> f64 {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(stack.client.clone(), ns);
    let ip = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await
        .expect("list the operator pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("a running operator pod");
    let series = series.to_string();
    let body = tokio::task::spawn_blocking(move || {
        tributary_e2e::blocking::http_get_from((ip.as_str(), 8080), "/metrics").ok()
    })
    .await
    .expect("scrape task")
    .expect("GET /metrics of the operator");
    body.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Restarts of `container` of a pod (0 when the pod does not report it yet).
pub async fn restarts(stack: &Stack, ns: &str, pod: &str, container: &str) -> i32 {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(stack.client.clone(), ns);
    pods.get(pod)
        .await
        .ok()
        .and_then(|p| p.status?.container_statuses)
        .and_then(|cs| cs.into_iter().find(|c| c.name == container))
        .map(|c| c.restart_count)
        .unwrap_or(0)
}
