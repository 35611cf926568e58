//! Steady-state cost of the operator on the real local stack (`make stack-up`): reconciles per
//! minute (the operator's own metrics) and API requests per minute (the API server's
//! `apiserver_request_total`, by verb and resource), while records are produced to every source
//! all the time and nothing else changes.
//!
//! Topology: 3 source regions x 20 topics into 2 AggregateClusters (6 routes). The stack has
//! two regions' Kafka clusters; the third source region, `central`, is a RegionalStream on the
//! first region's regional cluster with its own topics (a source region needs no node: a
//! route's replicator runs in its aggregate's region).
//!
//! Run: `TRIBUTARY_IMAGE_TAG=<tag> cargo test -p tributary-operator --test bench_reconcile --
//! --nocapture` (`dev`: the stack's build). The API server's counters are cluster-wide: run it
//! while no other operator is installed (every operator reconciles every namespace). It
//! asserts: no Deployment or RegionalStream written at steady state, AggregateCluster status
//! writes and reconciles bounded (at most 2 a minute each), far below one per probe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use tributary_api::{AggregateCluster, RegionalStream};
use tributary_e2e::kafka::produce;
use tributary_e2e::{Role, Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(300);
const TOPICS: usize = 20;

fn env_secs(key: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// `apiserver_request_total` summed by (verb, resource), for the resources the operator uses.
async fn api_requests(stack: &Stack) -> BTreeMap<(String, String), f64> {
    let kubectl = stack.kubectl.clone();
    let kubeconfig = stack.state_dir.join("kubeconfig");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .args(["get", "--raw", "/metrics"])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("kubectl");
    assert!(out.status.success(), "kubectl get --raw /metrics failed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = label("resource");
        if ![
            "regionalstreams",
            "aggregateclusters",
            "consumergroupfailovers",
            "deployments",
            "secrets",
            "events",
            "leases",
            "pods",
            "jobs",
            "configmaps",
        ]
        .contains(&resource.as_str())
        {
            continue;
        }
        let verb = label("verb");
        if verb == "WATCH" {
            continue;
        }
        *out.entry((verb, resource)).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// `tributary_operator_reconciles_total` by kind, from the operator pod's /metrics.
async fn reconciles(pods: &Api<Pod>) -> BTreeMap<String, f64> {
    let ip = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component!=replicator"),
        )
        .await
        .expect("pods")
        .items
        .into_iter()
        .find_map(|p| p.status?.pod_ip)
        .expect("operator pod IP");
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(format!("{ip}:8080")).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        r
    })
    .await
    .expect("scrape");
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("tributary_operator_reconciles_total{kind=\"")
            && let Some((kind, value)) = rest.split_once("\"} ")
        {
            out.insert(kind.to_string(), value.parse().unwrap_or(0.0));
        }
    }
    out
}

fn delta<K: Ord + Clone>(before: &BTreeMap<K, f64>, after: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

#[tokio::test]
async fn steady_state_with_traffic_writes_nothing_and_reconciles_rarely() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "bench-reconcile", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let _operator = stack.install_operator(
            &format!("tributary-{ns}"),
            &ns,
            &["replicaCount=1".to_string()],
        );
        let (a, b) = (stack.regions[0].clone(), stack.regions[1].clone());
        // (source region, regional cluster, topic prefix)
        let sources = [
            (a.clone(), stack.bootstrap(&a, Role::Regional).to_string()),
            (b.clone(), stack.bootstrap(&b, Role::Regional).to_string()),
            (
                "central".to_string(),
                stack.bootstrap(&a, Role::Regional).to_string(),
            ),
        ];
        let mut yaml = String::new();
        for (region, bootstrap) in &sources {
            let topics: Vec<String> = (0..TOPICS)
                .map(|i| {
                    format!("{{name: b-{region}-{i}-{suffix}, partitions: 2, replicationFactor: 1}}")
                })
                .collect();
            yaml.push_str(&format!(
                "---\napiVersion: tributary.dev/v1alpha1\nkind: RegionalStream\nmetadata: {{name: {region}}}\nspec:\n  region: {region}\n  deletionPolicy: Retain\n  kafka: {{bootstrapServers: [\"{bootstrap}\"]}}\n  topics: [{}]\n",
                topics.join(", ")
            ));
        }
        for region in [&a, &b] {
            yaml.push_str(&format!(
                "---\napiVersion: tributary.dev/v1alpha1\nkind: AggregateCluster\nmetadata: {{name: {region}}}\nspec:\n  region: {region}\n  topicNaming: Prefixed\n  kafka: {{bootstrapServers: [\"{}\"]}}\n  replicator: {{replicas: 1}}\n  checkpoints: {{interval: 5s, topic: checkpoints-bench-{suffix}, retention: 168h}}\n",
                stack.bootstrap(region, Role::Aggregate)
            ));
        }
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let aggs: Api<AggregateCluster> = t.api();
        wait_until("all 6 routes Ready", SLOW, || async {
            let list = aggs.list(&ListParams::default()).await.ok()?;
            let ready = list
                .items
                .iter()
                .flat_map(|a| a.status.iter().flat_map(|s| s.routes.iter()))
                .filter(|r| r.state == "Ready")
                .count();
            (ready == 6).then_some(())
        })
        .await;

        // Traffic: two records (one per partition) to one topic of every source every 500 ms,
        // round robin over the topics.
        let stop = Arc::new(AtomicBool::new(false));
        let mut producers = Vec::new();
        for (region, bootstrap) in sources.clone() {
            let stop = stop.clone();
            let suffix = suffix.clone();
            producers.push(tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let topic = format!("b-{region}-{}-{suffix}", i % TOPICS);
                    let records = [
                        (0, format!("k{i}"), format!("v{i}")),
                        (1, format!("k{i}"), format!("v{i}")),
                    ];
                    produce(&bootstrap, &topic, &records).await;
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }));
        }
        let warmup = env_secs("TRIBUTARY_BENCH_WARMUP_SECS", 60);
        let window = env_secs("TRIBUTARY_BENCH_WINDOW_SECS", 120);
        tokio::time::sleep(warmup).await;

        // Writes to this namespace's objects during the window, as the watch sees them.
        let modified = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));
        let mut watchers = Vec::new();
        macro_rules! count_changes {
            ($kind:ty, $label:expr) => {{
                let api: Api<$kind> = t.api();
                let modified = modified.clone();
                watchers.push(tokio::spawn(async move {
                    let mut events = watcher(api, watcher::Config::default()).boxed();
                    let mut initialised = false;
                    while let Some(e) = events.next().await {
                        match e {
                            Ok(watcher::Event::InitDone) => initialised = true,
                            Ok(watcher::Event::Apply(_)) | Ok(watcher::Event::Delete(_))
                                if initialised =>
                            {
                                *modified
                                    .lock()
                                    .expect("lock")
                                    .entry($label.to_string())
                                    .or_insert(0) += 1;
                            }
                            _ => {}
                        }
                    }
                }));
            }};
        }
        count_changes!(RegionalStream, "RegionalStream");
        count_changes!(AggregateCluster, "AggregateCluster");
        count_changes!(Deployment, "Deployment");
        tokio::time::sleep(Duration::from_secs(2)).await;

        let pods: Api<Pod> = t.api();
        let started = Instant::now();
        let api_before = api_requests(&stack).await;
        let rec_before = reconciles(&pods).await;
        tokio::time::sleep(window).await;
        let api_after = api_requests(&stack).await;
        let rec_after = reconciles(&pods).await;
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        stop.store(true, Ordering::Relaxed);
        for w in watchers {
            w.abort();
        }
        for p in producers {
            let _ = p.await;
        }

        let per_min = |v: f64| (v / minutes * 10.0).round() / 10.0;
        let rec = delta(&rec_before, &rec_after);
        let api = delta(&api_before, &api_after);
        let changes = modified.lock().expect("lock").clone();
        println!(
            "BENCH image tag {}: 3 source regions x {TOPICS} topics, 2 AggregateClusters, 6 routes, \
             2 records to every source every 500 ms; window {:.1} min after {}s warm-up",
            tributary_e2e::image_tag(),
            minutes,
            warmup.as_secs()
        );
        for (kind, n) in &rec {
            println!("BENCH reconciles/min {kind}: {}", per_min(*n));
        }
        let mut writes = 0.0;
        let mut reads = 0.0;
        for ((verb, resource), n) in &api {
            println!("BENCH api requests/min {verb} {resource}: {}", per_min(*n));
            if ["GET", "LIST"].contains(&verb.as_str()) {
                reads += n;
            } else {
                writes += n;
            }
        }
        println!(
            "BENCH api requests/min total: reads {} writes {} (cluster-wide)",
            per_min(reads),
            per_min(writes)
        );
        for (kind, n) in &changes {
            println!("BENCH object changes/min in the namespace {kind}: {}", per_min(*n as f64));
        }

        // No Deployment and no RegionalStream is written at steady state. An AggregateCluster's
        // status is refreshed only when its routes' lags settle at another order of magnitude,
        // at most every 30 s (prober::FIGURES_REFRESH): at most 2 a minute each. Before, every
        // probe (5 s) rewrote both kinds and re-applied every Deployment.
        let per_min_of = |kind: &str| per_min(changes.get(kind).copied().unwrap_or(0) as f64);
        assert_eq!(per_min_of("Deployment"), 0.0, "{changes:?}");
        assert_eq!(per_min_of("RegionalStream"), 0.0, "{changes:?}");
        assert!(
            per_min_of("AggregateCluster") <= 4.0,
            "AggregateCluster status writes at steady state: {changes:?}"
        );
        let agg_reconciles = rec.get("AggregateCluster").copied().unwrap_or(0.0);
        // Two AggregateClusters probed every 5 s would be 24 reconciles a minute; the resync
        // alone is 0.4.
        assert!(
            per_min(agg_reconciles) <= 4.0,
            "AggregateCluster reconciles at steady state: {}/min",
            per_min(agg_reconciles)
        );
    })
    .await;
}
