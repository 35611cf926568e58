//! The operator on the real local stack (`make stack-up`): installed by the Helm chart, running
//! under its ServiceAccount's RBAC as a pod of the node agent, reconciling two regions.
//!
//! One scenario in order (one operator release at a time: operators watch every namespace):
//! topics and N×N routes become Available → records of every region reach every aggregate and
//! lag goes to 0 → re-applying changes nothing → a restarted operator converges to the same
//! objects → deleting a RegionalStream prunes its routes → the chart's RBAC minus one verb
//! fails with a clear Forbidden in status and logs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use tributary_api::{AggregateCluster, RegionalStream, find_condition};
use tributary_e2e::kafka::{consume_all, produce};
use tributary_e2e::{HelmRelease, Role, Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(180);

/// One operator release at a time: every operator watches every namespace.
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[must_use]
fn install(stack: &Stack, release: &str, ns: &str) -> HelmRelease {
    install_with(stack, release, ns, 1)
}

#[must_use]
fn install_with(stack: &Stack, release: &str, ns: &str, replicas: u32) -> HelmRelease {
    stack.install_operator(release, ns, &[format!("replicaCount={replicas}")])
}

/// RegionalStreams and AggregateClusters for every region of the stack, with topic names
/// unique to this run (the stack's Kafka clusters outlive test namespaces).
fn manifests(stack: &Stack, suffix: &str, orders_partitions: i32) -> String {
    let mut yaml = String::new();
    let last = stack.regions.last().cloned().unwrap_or_default();
    for r in &stack.regions {
        // The last region's topics go with its RegionalStream (finalizer); the others stay.
        let policy = if *r == last { "Delete" } else { "Retain" };
        yaml.push_str(&format!(
            r#"---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata:
  name: {r}
  labels: {{tributary.dev/region: {r}}}
spec:
  region: {r}
  deletionPolicy: {policy}
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics:
    - {{name: orders-{suffix}, partitions: {orders_partitions}, replicationFactor: 1, config: {{retention.ms: "604800000"}}}}
    - {{name: payments-{suffix}, partitions: 2, replicationFactor: 1}}
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata:
  name: {r}
spec:
  region: {r}
  kafka: {{bootstrapServers: ["{aggregate}"]}}
  topicNaming: Identity
  replicator:
    replicas: 1
    resources: {{requests: {{cpu: 50m, memory: 64Mi}}, limits: {{memory: 256Mi}}}}
  checkpoints: {{interval: 1s, topic: checkpoints-{suffix}, retention: 168h}}
"#,
            regional = stack.bootstrap(r, Role::Regional),
            aggregate = stack.bootstrap(r, Role::Aggregate),
        ));
    }
    yaml
}

fn ready_reason(agg: &AggregateCluster) -> Option<(String, String, String)> {
    let c = find_condition(&agg.status.as_ref()?.conditions, "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn versions(deployments: &[Deployment]) -> BTreeMap<String, (String, i64)> {
    deployments
        .iter()
        .map(|d| {
            (
                d.name_any(),
                (
                    d.resource_version().unwrap_or_default(),
                    d.metadata.generation.unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn routes_only() -> ListParams {
    ListParams::default().labels("app.kubernetes.io/component=replicator")
}

async fn http_get(addr: &str, path: &str) -> String {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|| panic!("GET http://{addr}{path} failed"))
}

/// `None` while nothing answers (a pod starting or stopping).
async fn try_http_get(addr: &str, path: &str) -> Option<String> {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).ok()?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        Some(body)
    })
    .await
    .ok()
    .flatten()
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn operator_pid(pods: &Api<Pod>) -> Option<i32> {
    let list = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component!=replicator"),
        )
        .await
        .ok()?;
    list.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| {
            let s = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
            s.state.as_ref()?.running.as_ref()?;
            s.container_id
                .as_ref()?
                .strip_prefix("agent://")?
                .parse()
                .ok()
        })
}

fn operator_log(stack: &Stack, ns: &str) -> String {
    let mut text = String::new();
    for r in &stack.regions {
        let dir = stack.state_dir.join(format!("agent-{r}/pods"));
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{ns}_tributary-{ns}")) {
                text.push_str(
                    &std::fs::read_to_string(entry.path().join("operator.log")).unwrap_or_default(),
                );
            }
        }
    }
    text
}

#[tokio::test]
async fn operator_from_the_chart_runs_every_route_and_keeps_them_as_specified() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "operator-e2e", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let release = format!("tributary-{ns}");
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let n = stack.regions.len();

        // Install the operator with the chart (image repository must end in /tributary).
        let installed = install(&stack, &release, &ns);
        let pods: Api<Pod> = t.api();
        let pid = wait_until("the operator process", SLOW, || operator_pid(&pods)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_rss = rss_kib(pid).unwrap_or(0);

        // Apply both regions; all topics and N×N Deployments become Available.
        let started = Instant::now();
        let yaml = manifests(&stack, &suffix, 4);
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply manifests");
        let deployments: Api<Deployment> = t.api();
        let aggs: Api<AggregateCluster> = t.api();
        let streams: Api<RegionalStream> = t.api();
        wait_until(&format!("{} available route Deployments", n * n), SLOW, || async {
            let list = deployments.list(&ListParams::default().labels("app.kubernetes.io/component=replicator")).await.ok()?;
            let available = list.items.iter().filter(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)).count();
            (list.items.len() == n * n && available == n * n).then_some(())
        })
        .await;
        wait_until("every AggregateCluster Ready with all routes", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            list.items.iter().all(|a| {
                ready_reason(a).is_some_and(|(s, _, _)| s == "True")
                    && a.status.as_ref().and_then(|s| s.routes_ready.clone()) == Some(format!("{n}/{n}"))
            }).then_some(())
        })
        .await;
        let time_to_ready = started.elapsed();
        let rs_list = streams.list(&ListParams::default()).await.expect("list RegionalStreams");
        for rs in &rs_list.items {
            let st = rs.status.clone().unwrap_or_default();
            assert_eq!(st.topics_ready.as_deref(), Some("2/2"), "{}: {st:?}", rs.name_any());
        }
        let pod_list = pods.list(&ListParams::default().labels("app.kubernetes.io/component=replicator")).await.expect("pods");
        for p in &pod_list.items {
            let region = p.labels().get("app.kubernetes.io/instance").cloned().unwrap_or_default();
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            assert_eq!(node, format!("tributary-{region}"), "replicator {} runs in its aggregate's region", p.name_any());
        }

        // Records of every region reach every aggregate; lag goes to 0.
        let topic = format!("orders-{suffix}");
        for r in &stack.regions {
            let records: Vec<(i32, String, String)> = (0..100).map(|i| (i % 4, format!("k{i}"), format!("{r}-{i}"))).collect();
            produce(stack.bootstrap(r, Role::Regional), &topic, &records).await;
        }
        let expected = 100 * n;
        for r in &stack.regions {
            let bootstrap = stack.bootstrap(r, Role::Aggregate).to_string();
            let topic = topic.clone();
            let got = tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, expected, Duration::from_secs(120)))
                .await
                .expect("consumer");
            assert_eq!(got.len(), expected, "aggregate of {r} holds every region's records");
        }
        let lag_started = Instant::now();
        wait_until("lag 0 on every route", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            list.items.iter().all(|a| {
                a.status.as_ref().is_some_and(|s| s.routes.len() == n && s.routes.iter().all(|r| r.lag_records == Some(0)))
            }).then_some(())
        })
        .await;
        let loaded_rss = match operator_pid(&pods).await {
            Some(p) => rss_kib(p).unwrap_or(0),
            None => 0,
        };
        eprintln!(
            "MEASURED: {n} regions, {} routes Ready in {:.1}s after apply; lag 0 reported {:.1}s after the records were consumed; operator RSS idle {} KiB, with routes {} KiB",
            n * n,
            time_to_ready.as_secs_f64(),
            lag_started.elapsed().as_secs_f64(),
            idle_rss,
            loaded_rss
        );

        // /metrics: reconciles by kind, routes by state (the pod shares the host network here).
        let op_ip = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component!=replicator"))
            .await
            .expect("pods")
            .items
            .iter()
            .find_map(|p| p.status.as_ref()?.pod_ip.clone())
            .expect("operator pod IP");
        let op_addr = format!("{op_ip}:8080");
        // The routes gauge follows reconciles: wait for it to catch up with the Ready routes
        // (a route that flapped under load, or another test's routes going away, settle).
        let ready_line = format!("tributary_operator_routes{{state=\"Ready\"}} {}", n * n);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let metrics = loop {
            let metrics = http_get(&op_addr, "/metrics").await;
            if metrics.contains(&ready_line) || std::time::Instant::now() > deadline {
                break metrics;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert!(metrics.contains("tributary_operator_reconciles_total{kind=\"AggregateCluster\"}"), "{metrics}");
        assert!(metrics.contains(&ready_line), "{metrics}");
        assert!(metrics.lines().any(|l| l == "tributary_operator_leader 1"), "{metrics}");
        assert!(http_get(&op_addr, "/readyz").await.starts_with("HTTP/1.1 200"));

        // Re-applying the same manifests changes nothing (GitOps: no drift, no rollout).
        tokio::time::sleep(Duration::from_secs(6)).await;
        let before = versions(&deployments.list(&routes_only()).await.expect("list").items);
        let agg_before: BTreeMap<String, String> = aggs.list(&ListParams::default()).await.expect("list").items.iter().map(|a| (a.name_any(), a.resource_version().unwrap_or_default())).collect();
        apply_yaml(&stack.client, &ns, &yaml).await.expect("re-apply");
        tokio::time::sleep(Duration::from_secs(12)).await;
        let after = versions(&deployments.list(&routes_only()).await.expect("list").items);
        assert_eq!(before, after, "re-applying must not touch the Deployments");
        let agg_after: BTreeMap<String, String> = aggs.list(&ListParams::default()).await.expect("list").items.iter().map(|a| (a.name_any(), a.resource_version().unwrap_or_default())).collect();
        assert_eq!(agg_before, agg_after, "re-applying must not rewrite AggregateClusters (spec or status)");

        // A restarted operator converges to the same objects.
        pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component!=replicator")).await.expect("delete operator pod");
        let new_pid = wait_until("a new operator process", SLOW, || async {
            operator_pid(&pods).await.filter(|p| *p != pid)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        let after_restart = versions(&deployments.list(&routes_only()).await.expect("list").items);
        assert_eq!(before, after_restart, "a restarted operator must converge without changing the Deployments");

        // An unreachable source degrades only its own routes, with a reason and an event.
        let ghost = format!(r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: ghost}}
spec:
  region: north
  kafka: {{bootstrapServers: ["127.0.0.1:1"]}}
  topics: [{{name: ghost-{suffix}, partitions: 1, replicationFactor: 1}}]
"#);
        apply_yaml(&stack.client, &ns, &ghost).await.expect("apply ghost");
        wait_until("ghost routes Degraded, the others Ready", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            list.items.iter().all(|a| {
                let Some(st) = a.status.as_ref() else { return false };
                st.routes.len() == n + 1
                    && st.routes.iter().all(|r| if r.source == "ghost" {
                        r.state == "Degraded" && r.message.as_deref().unwrap_or_default().contains("ClusterUnreachable")
                    } else {
                        r.state == "Ready"
                    })
                    && ready_reason(a).is_some_and(|(s, reason, _)| s == "False" && reason == "RouteDegraded")
            }).then_some(())
        })
        .await;
        let ghost_rs = streams.get("ghost").await.expect("ghost");
        let c = find_condition(&ghost_rs.status.clone().unwrap_or_default().conditions, "Ready").cloned().expect("ghost Ready condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ClusterUnreachable"), "{}", c.message);
        let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
        wait_until("a RouteDegraded event", SLOW, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.iter().any(|e| e.reason.as_deref() == Some("RouteDegraded") && e.note.as_deref().unwrap_or_default().contains("ghost")).then_some(())
        })
        .await;
        streams.delete("ghost", &DeleteParams::default()).await.expect("delete ghost");
        wait_until("ghost routes pruned and every AggregateCluster Ready again", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            let deps = deployments.list(&routes_only()).await.ok()?;
            (deps.items.len() == n * n
                && list.items.iter().all(|a| ready_reason(a).is_some_and(|(s, _, _)| s == "True")))
                .then_some(())
        })
        .await;

        // Growing a source topic grows the aggregate topics; records keep flowing. The operator
        // is killed right after the change: its successor converges from where it stopped.
        apply_yaml(&stack.client, &ns, &manifests(&stack, &suffix, 6)).await.expect("grow partitions");
        pods.delete_collection(
            &DeleteParams { grace_period_seconds: Some(0), ..Default::default() },
            &ListParams::default().labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component!=replicator"),
        )
        .await
        .expect("kill the operator mid-way");
        for r in &stack.regions {
            let admin = tributary_kafka::KafkaAdmin::new(&tributary_kafka::ClientSettings::plaintext(
                format!("{r} aggregate"),
                stack.bootstrap(r, Role::Aggregate),
            ))
            .expect("admin");
            let topic = topic.clone();
            wait_until(&format!("{topic} grown to 6 partitions on {r}'s aggregate"), SLOW, || {
                let admin = admin.clone();
                let topic = topic.clone();
                async move { admin.describe_topic(&topic).await.ok().flatten().filter(|t| t.partitions == 6).map(|_| ()) }
            })
            .await;
        }
        wait_until("regional topics grown to 6 partitions (RegionalStream status)", SLOW, || async {
            let list = streams.list(&ListParams::default()).await.ok()?;
            list.items.iter().all(|rs| {
                rs.status.as_ref().is_some_and(|s| s.topics.iter().any(|t| t.name == topic && t.partitions == Some(6)))
            }).then_some(())
        })
        .await;
        for r in &stack.regions {
            produce(stack.bootstrap(r, Role::Regional), &topic, &[(5, "grown".into(), format!("{r}-p5"))]).await;
        }
        for r in &stack.regions {
            let bootstrap = stack.bootstrap(r, Role::Aggregate).to_string();
            let topic = topic.clone();
            let got = tokio::task::spawn_blocking(move || consume_all(&bootstrap, &topic, expected + n, Duration::from_secs(120)))
                .await
                .expect("consumer");
            let on_p5 = got.iter().filter(|rec| rec.partition == 5).count();
            assert_eq!(on_p5, n, "aggregate of {r}: records of the new partition 5 arrive in partition 5 ({} records in all)", got.len());
        }

        // The pause annotation stops reconciling one object; removing it applies what changed.
        let paused_agg = stack.regions[0].clone();
        let of_paused = ListParams::default().labels(&format!(
            "app.kubernetes.io/component=replicator,tributary.dev/aggregate={paused_agg}"
        ));
        let merge = |v: serde_json::Value| kube::api::Patch::Merge(v);
        aggs.patch(&paused_agg, &kube::api::PatchParams::default(), &merge(serde_json::json!({
            "metadata": {"annotations": {"tributary.dev/paused": "true"}},
            "spec": {"replicator": {"replicas": 0}}
        })))
        .await
        .expect("pause and scale to 0");
        tokio::time::sleep(Duration::from_secs(8)).await;
        for d in deployments.list(&of_paused).await.expect("list").items {
            assert_eq!(d.spec.and_then(|s| s.replicas), Some(1), "paused: {} untouched", d.metadata.name.unwrap_or_default());
        }
        aggs.patch(&paused_agg, &kube::api::PatchParams::default(), &merge(serde_json::json!({
            "metadata": {"annotations": {"tributary.dev/paused": null}}
        })))
        .await
        .expect("unpause");
        wait_until("unpaused: routes scaled to 0", SLOW, || async {
            let list = deployments.list(&of_paused).await.ok()?;
            (!list.items.is_empty() && list.items.iter().all(|d| d.spec.as_ref().and_then(|s| s.replicas) == Some(0))).then_some(())
        })
        .await;
        // With its replicators stopped, the paused aggregate's routes show the lag the
        // records below create; scaled back, the lag goes to 0 again.
        wait_until("replicators of the paused aggregate stopped", SLOW, || async {
            let list = pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/component=replicator,tributary.dev/aggregate={paused_agg}"))).await.ok()?;
            list.items.is_empty().then_some(())
        })
        .await;
        for r in &stack.regions {
            let records: Vec<(i32, String, String)> = (0..10).map(|i| (i % 6, format!("lag{i}"), format!("{r}-lag-{i}"))).collect();
            produce(stack.bootstrap(r, Role::Regional), &topic, &records).await;
        }
        wait_until("every route into the paused aggregate shows lag 10", SLOW, || async {
            let a = aggs.get(&paused_agg).await.ok()?;
            let st = a.status?;
            (st.routes.len() == n && st.routes.iter().all(|r| r.lag_records == Some(10) && r.state == "Paused")).then_some(())
        })
        .await;
        aggs.patch(&paused_agg, &kube::api::PatchParams::default(), &merge(serde_json::json!({
            "spec": {"replicator": {"replicas": 1}}
        })))
        .await
        .expect("scale back");
        let resumed = Instant::now();
        wait_until("lag back to 0 after scaling back", SLOW, || async {
            let a = aggs.get(&paused_agg).await.ok()?;
            let st = a.status?;
            (st.routes.len() == n && st.routes.iter().all(|r| r.lag_records == Some(0) && r.state == "Ready")).then_some(())
        })
        .await;
        eprintln!("MEASURED: lag 10 -> 0 on every route {:.1}s after scaling the replicators back", resumed.elapsed().as_secs_f64());

        // Deleting a RegionalStream prunes its routes (and only those).
        let gone = stack.regions[n - 1].clone();
        streams.delete(&gone, &DeleteParams::default()).await.expect("delete RegionalStream");
        wait_until(&format!("routes from {gone} pruned"), SLOW, || async {
            let list = deployments.list(&ListParams::default().labels("app.kubernetes.io/component=replicator")).await.ok()?;
            let from_gone = list.items.iter().filter(|d| d.labels().get("tributary.dev/source") == Some(&gone)).count();
            (from_gone == 0 && list.items.len() == n * (n - 1)).then_some(())
        })
        .await;

        // deletionPolicy: Delete removed the gone region's topics; Retain kept the others'.
        let regional = |r: &str| {
            tributary_kafka::KafkaAdmin::new(&tributary_kafka::ClientSettings::plaintext(
                format!("{r} regional"),
                stack.bootstrap(r, Role::Regional),
            ))
            .expect("admin")
        };
        let gone_admin = regional(&gone);
        wait_until(&format!("{topic} deleted from {gone}'s regional cluster"), SLOW, || {
            let admin = gone_admin.clone();
            let topic = topic.clone();
            async move { admin.describe_topic(&topic).await.ok().filter(Option::is_none).map(|_| ()) }
        })
        .await;
        assert!(regional(&stack.regions[0]).describe_topic(&topic).await.expect("describe").is_some(), "Retain keeps topics");
        assert!(streams.get_opt(&gone).await.expect("get").is_none(), "finalizer removed after cleanup");

        // RBAC minus one verb (delete on Deployments): pruning fails with a clear Forbidden.
        let roles: Api<ClusterRole> = Api::all(stack.client.clone());
        let mut role = roles.get(&release).await.expect("chart's ClusterRole");
        let original = role.clone();
        for rule in role.rules.iter_mut().flatten() {
            if rule.resources.iter().flatten().any(|r| r == "deployments") {
                rule.verbs.retain(|v| v != "delete");
            }
        }
        role.metadata.managed_fields = None;
        roles.replace(&release, &Default::default(), &role).await.expect("remove the verb");
        let victim = stack.regions[0].clone();
        streams.delete(&victim, &DeleteParams::default()).await.expect("delete RegionalStream");
        let (_, reason, message) = wait_until("Forbidden in an AggregateCluster's status", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            list.items.iter().filter_map(ready_reason).find(|(s, reason, _)| s == "False" && reason == "Forbidden")
        })
        .await;
        assert!(message.contains("forbidden") && message.contains("delete") && message.contains("deployments"), "{reason}: {message}");
        let log = operator_log(&stack, &ns);
        assert!(log.contains("Forbidden") && log.contains("forbidden"), "operator log names the Forbidden error");

        // Restoring the RBAC heals it.
        let mut restored = roles.get(&release).await.expect("role");
        restored.rules = original.rules.clone();
        restored.metadata.managed_fields = None;
        roles.replace(&release, &Default::default(), &restored).await.expect("restore the verb");
        wait_until(&format!("routes from {victim} pruned after RBAC restored"), SLOW, || async {
            let list = deployments.list(&ListParams::default().labels("app.kubernetes.io/component=replicator")).await.ok()?;
            list.items.iter().all(|d| d.labels().get("tributary.dev/source") != Some(&victim)).then_some(())
        })
        .await;
        let _ = new_pid;

        drop(installed);
        // The operator is gone; cluster-scoped RBAC went with the release.
        assert!(roles.get_opt(&release).await.expect("get").is_none());
    })
    .await;
}

/// BENCHMARKS.md: time from applying every region × 20 topics to all routes Ready, and the
/// operator's RSS idle and with that load.
#[tokio::test]
async fn benchmark_all_routes_ready_for_20_topics_per_region() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "operator-bench", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let release = format!("tributary-{ns}");
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let n = stack.regions.len();
        let installed = install(&stack, &release, &ns);
        let pods: Api<Pod> = t.api();
        let pid = wait_until("the operator process", SLOW, || operator_pid(&pods)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = rss_kib(pid).unwrap_or(0);

        let mut yaml = String::new();
        for r in &stack.regions {
            let topics: String = (0..20)
                .map(|i| format!("    - {{name: bench-{suffix}-{i:02}, partitions: 3, replicationFactor: 1}}\n"))
                .collect();
            yaml.push_str(&format!(
                "---\napiVersion: tributary.dev/v1alpha1\nkind: RegionalStream\nmetadata: {{name: {r}}}\nspec:\n  region: {r}\n  kafka: {{bootstrapServers: [\"{}\"]}}\n  topics:\n{topics}---\napiVersion: tributary.dev/v1alpha1\nkind: AggregateCluster\nmetadata: {{name: {r}}}\nspec:\n  region: {r}\n  kafka: {{bootstrapServers: [\"{}\"]}}\n  checkpoints: {{topic: bench-checkpoints-{suffix}}}\n",
                stack.bootstrap(r, Role::Regional),
                stack.bootstrap(r, Role::Aggregate),
            ));
        }
        let aggs: Api<AggregateCluster> = t.api();
        let streams: Api<RegionalStream> = t.api();
        let started = Instant::now();
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        wait_until("all routes Ready and all topics present", Duration::from_secs(300), || async {
            let a = aggs.list(&ListParams::default()).await.ok()?;
            let s = streams.list(&ListParams::default()).await.ok()?;
            (a.items.len() == n
                && a.items.iter().all(|a| a.status.as_ref().and_then(|s| s.routes_ready.clone()) == Some(format!("{n}/{n}")))
                && s.items.iter().all(|s| s.status.as_ref().and_then(|s| s.topics_ready.clone()) == Some("20/20".into())))
            .then_some(())
        })
        .await;
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let loaded = operator_pid(&pods).await.and_then(rss_kib).unwrap_or(0);
        eprintln!(
            "BENCHMARK: {n} regions x 20 topics (3 partitions): {} routes Ready {:.1}s after apply; operator RSS idle {:.1} MiB, under load {:.1} MiB",
            n * n,
            elapsed.as_secs_f64(),
            idle as f64 / 1024.0,
            loaded as f64 / 1024.0
        );
        drop(installed);
    })
    .await;
}

/// The chart's default of two replicas is safe: one holds the Lease and reconciles; when it
/// stops, it releases the Lease and the other takes over.
#[tokio::test]
async fn two_replicas_elect_one_leader_and_hand_over_on_shutdown() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "operator-lease", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let release = format!("tributary-{ns}");
        let installed = install_with(&stack, &release, &ns, 2);
        let pods: Api<Pod> = t.api();
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = t.api();
        let leaders = || async {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=tributary"))
                .await
                .ok()?;
            let mut leading = Vec::new();
            for p in list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                let m = tokio::time::timeout(
                    Duration::from_secs(2),
                    try_http_get(&format!("{ip}:8080"), "/metrics"),
                )
                .await
                .ok()??;
                if m.lines().any(|l| l == "tributary_operator_leader 1") {
                    leading.push(p.name_any());
                }
            }
            Some(leading)
        };
        let first = wait_until("exactly one leader", SLOW, || async {
            let l = leaders().await?;
            (l.len() == 1).then(|| l[0].clone())
        })
        .await;
        let holder = leases
            .get("tributary-operator-leader")
            .await
            .expect("Lease")
            .spec
            .and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some(first.as_str()));

        let started = Instant::now();
        pods.delete(&first, &DeleteParams::default())
            .await
            .expect("delete leader");
        let second = wait_until("the other replica leads", SLOW, || async {
            let l = leaders().await?;
            (l.len() == 1 && l[0] != first).then(|| l[0].clone())
        })
        .await;
        eprintln!(
            "MEASURED: leadership moved from {first} to {second} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        drop(installed);
    })
    .await;
}
