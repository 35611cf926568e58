//! The chart's monitoring against the real local stack (`make stack-up`): every metric the
//! PrometheusRule and the Grafana dashboard use is exported by a real scrape of the operator,
//! the replicators and a standby checkpoint-sync pod, and the chart's PodMonitors select those
//! pods and find the labels they relabel.
//!
//! The rules and the dashboard are read from `helm template` with monitoring enabled (what a
//! cluster would get); the stack has no Prometheus Operator CRDs, so nothing of it is installed.
//! The test makes the events most metrics wait for (records in every region, a sync round, a
//! failed reconcile) and scrapes until every pod of a component exports every name of it
//! (a sample, or a `# TYPE` of its family). prometheus-client 0.24 writes nothing, not even
//! `# TYPE`, for a labelled family without series (as the Go client does), so the few families
//! that wait for rarer events (a retention gap, an error) are in `EVENT_ONLY`, checked against
//! their registration in the exporter's metrics.rs instead.

mod failover_support;

use std::collections::{BTreeMap, BTreeSet};

use failover_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tributary_e2e::{Stack, TestNamespace, repo_path, wait_until};

/// What `helm template` renders with every monitoring switch on.
fn rendered_monitoring(stack: &Stack) -> Vec<serde_yaml::Value> {
    let chart = repo_path("charts/tributary");
    let out = std::process::Command::new(&stack.helm)
        .args([
            "template",
            "tributary",
            chart.to_str().expect("path"),
            "--namespace",
            "tributary-system",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
        ])
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

fn of_kind<'a>(docs: &'a [serde_yaml::Value], kind: &str) -> Vec<&'a serde_yaml::Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

/// Every `tributary_*` identifier in `text` (PromQL, annotations, dashboard JSON).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("tributary_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            names.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// The sample names and `# TYPE` families of one scrape.
#[derive(Default)]
struct Exposition {
    samples: BTreeSet<String>,
    families: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                    e.families.insert(name.to_string(), kind.to_string());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                e.samples.insert(line[..end].to_string());
            }
        }
        e
    }

    /// `name` as a sample or as a series its family's type writes (`_total` of a counter,
    /// `_bucket`/`_sum`/`_count` of a histogram).
    fn exports(&self, name: &str) -> bool {
        if self.samples.contains(name) || self.families.contains_key(name) {
            return true;
        }
        let suffixed = |suffix: &str, kinds: &[&str]| {
            name.strip_suffix(suffix).is_some_and(|family| {
                self.families
                    .get(family)
                    .is_some_and(|k| kinds.contains(&k.as_str()))
            })
        };
        suffixed("_total", &["counter"])
            || suffixed("_bucket", &["histogram"])
            || suffixed("_sum", &["histogram"])
            || suffixed("_count", &["histogram"])
    }
}

async fn scrape(ip: &str, port: u16) -> Option<String> {
    let addr = format!("{ip}:{port}");
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: scrape\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    })
    .await
    .ok()
    .flatten()
}

/// The running pods of `selector` with their IPs, once there are `at_least`.
async fn running_pods(pods: &Api<Pod>, selector: &str, at_least: usize) -> Vec<Pod> {
    wait_until(
        &format!("{at_least} running pod(s) with {selector}"),
        SLOW,
        || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.status.as_ref().is_some_and(|s| {
                        s.phase.as_deref() == Some("Running") && s.pod_ip.is_some()
                    })
                })
                .collect();
            (running.len() >= at_least).then_some(running)
        },
    )
    .await
}

/// `matchLabels` of a rendered PodMonitor as a list selector, and the pod labels its
/// relabelings read (`__meta_kubernetes_pod_label_<sanitized>`).
fn pod_monitor_selector(pm: &serde_yaml::Value) -> (String, Vec<String>) {
    let labels = pm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("PodMonitor matchLabels");
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{}={}", k.as_str().unwrap_or(""), v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",");
    let relabeled = pm["spec"]["podMetricsEndpoints"][0]["relabelings"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|r| r["sourceLabels"].as_sequence().into_iter().flatten())
        .filter_map(|l| l.as_str()?.strip_prefix("__meta_kubernetes_pod_label_"))
        .map(str::to_string)
        .collect();
    (selector, relabeled)
}

/// Kubernetes meta labels are pod labels with every character outside `[a-zA-Z0-9_]` as `_`.
fn sanitized(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn assert_pod_monitor_fits(pm: &serde_yaml::Value, pods: &[Pod]) {
    let name = pm["metadata"]["name"].as_str().unwrap_or_default();
    let (_, relabeled) = pod_monitor_selector(pm);
    let port = pm["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .expect("endpoint port");
    for pod in pods {
        let labels: BTreeSet<String> = pod.labels().keys().map(|k| sanitized(k)).collect();
        for l in &relabeled {
            assert!(
                labels.contains(l),
                "PodMonitor {name} relabels pod label {l}, which pod {} lacks (labels {:?})",
                pod.name_any(),
                pod.labels()
            );
        }
        let ports: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| p.name.clone())
            .collect();
        assert!(
            ports.iter().any(|p| p == port),
            "PodMonitor {name} scrapes port {port}, pod {} has {ports:?}",
            pod.name_any()
        );
    }
}

fn container_port(pod: &Pod, name: &str) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or_else(|| panic!("pod {} has no port {name}", pod.name_any()))
}

/// Families whose first series appears only with an event this test does not cause (what the
/// event is): prometheus-client 0.24 writes no `# HELP`/`# TYPE` for a family without series,
/// as the Go client does, so a scrape cannot show them before. For these the test checks that
/// the exporter's metrics.rs registers the name; every other metric must be in a real scrape.
const EVENT_ONLY: [(&str, &str); 5] = [
    (
        "tributary_replicator_errors_total",
        "the first error of a category",
    ),
    (
        "tributary_replicator_retention_gap_records_total",
        "the first source records deleted by retention before they were copied",
    ),
    (
        "tributary_replicator_records_skipped_loop_total",
        "the first source record that is itself a copy",
    ),
    (
        "tributary_checkpoint_sync_errors_total",
        "the first error of a category",
    ),
    (
        "tributary_checkpoint_sync_checkpoint_contradictions_total",
        "the first checkpoint that contradicts its route's earlier ones",
    ),
];

/// Counted at the first failed reconcile, which the test causes after the other scrapes.
const RECONCILE_ERRORS: &str = "tributary_operator_reconcile_errors_total";

/// The component whose pods export `name`, by its prefix.
fn component_of(name: &str) -> Option<&'static str> {
    [
        ("tributary_operator_", "operator"),
        ("tributary_replicator_", "replicator"),
        ("tributary_checkpoint_sync_", "checkpoint-sync"),
    ]
    .into_iter()
    .find(|(prefix, _)| name.starts_with(prefix))
    .map(|(_, c)| c)
}

/// The families a component's metrics.rs registers (`Registry::with_prefix` + each
/// `register("name", ...)`), as a scrape would name their series.
fn registered_in_source(component: &str) -> BTreeSet<String> {
    let krate = match component {
        "operator" => "tributary-operator",
        "replicator" => "tributary-replicator",
        _ => "tributary-checkpoint-sync",
    };
    let path = repo_path(&format!("crates/{krate}/src/metrics.rs"));
    let src = std::fs::read_to_string(&path).expect("metrics.rs");
    let quoted_after = |s: &str, marker: &str| -> Vec<String> {
        s.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = s[at + marker.len()..].trim_start().strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_string())
            })
            .collect()
    };
    let prefix = quoted_after(&src, "Registry::with_prefix(")
        .into_iter()
        .next()
        .expect("a prefixed registry");
    quoted_after(&src, ".register(")
        .into_iter()
        .map(|n| format!("{prefix}_{n}"))
        .collect()
}

/// Scrapes every pod of `pods` until each exports every name of `wanted` (or the deadline
/// passes); returns the last scrapes and what was still missing.
async fn scrape_until(
    component: &str,
    pods: &[Pod],
    wanted: &BTreeSet<String>,
) -> (Vec<(String, Exposition)>, Vec<String>) {
    let deadline = std::time::Instant::now() + SLOW;
    loop {
        let mut scrapes = Vec::new();
        let mut missing = Vec::new();
        for pod in pods {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .expect("pod IP");
            let port = container_port(pod, "http");
            let e = Exposition::parse(&scrape(&ip, port).await.unwrap_or_default());
            missing.extend(wanted.iter().filter(|n| !e.exports(n)).map(|n| {
                format!(
                    "{n} (not in the scrape of {component} pod {})",
                    pod.name_any()
                )
            }));
            scrapes.push((pod.name_any(), e));
        }
        if missing.is_empty() || std::time::Instant::now() > deadline {
            return (scrapes, missing);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported_by_a_real_scrape() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    assert!(stack.regions.len() >= 2, "needs two regions");
    let docs = rendered_monitoring(&stack);
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1, "the chart renders one PrometheusRule");
    let dashboards: Vec<&serde_yaml::Value> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1"))
        .collect();
    assert_eq!(
        dashboards.len(),
        1,
        "the chart renders one dashboard ConfigMap"
    );
    let dashboard_json = dashboards[0]["data"]["tributary.json"]
        .as_str()
        .expect("dashboard JSON in the ConfigMap");
    let dashboard: serde_json::Value =
        serde_json::from_str(dashboard_json).expect("the dashboard is valid JSON");
    assert!(
        dashboard["panels"].as_array().is_some_and(|p| p.len() > 10),
        "dashboard has panels"
    );
    let used_by_rules = metric_names(&serde_yaml::to_string(rules[0]).expect("yaml"));
    let used_by_dashboard = metric_names(dashboard_json);
    let used: BTreeSet<String> = used_by_rules.union(&used_by_dashboard).cloned().collect();
    let unknown: Vec<&String> = used.iter().filter(|n| component_of(n).is_none()).collect();
    assert!(unknown.is_empty(), "no component exports {unknown:?}");
    for (name, _) in EVENT_ONLY {
        assert!(
            used.contains(name),
            "{name} is in EVENT_ONLY but unused: remove it"
        );
        let component = component_of(name).expect("component");
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            registered_in_source(component).contains(family),
            "{name}: {component}'s metrics.rs registers no family {family}"
        );
    }
    let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    assert!(
        used.contains(RECONCILE_ERRORS),
        "the alerts use {RECONCILE_ERRORS}"
    );
    for name in used
        .iter()
        .filter(|n| !EVENT_ONLY.iter().any(|(e, _)| e == n) && *n != RECONCILE_ERRORS)
    {
        wanted
            .entry(component_of(name).expect("component"))
            .or_default()
            .insert(name.clone());
    }
    assert_eq!(wanted.len(), 3, "every component is used: {wanted:?}");
    let pod_monitors: Vec<serde_yaml::Value> =
        of_kind(&docs, "PodMonitor").into_iter().cloned().collect();
    assert_eq!(
        pod_monitors.len(),
        2,
        "PodMonitors for replicators and syncs"
    );

    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-monitoring", move |t| async move {
        let stack = &t.stack;
        // The operator, routes between every pair of regions, and a group active in the first
        // region (its consumers commit there) with a standby sync Job in the others.
        let s = setup(&t, &Group::default(), 1).await;
        // Records in every region, so every route copies and reports lag and latency.
        for region in &stack.regions {
            produce_batch(stack, region, &s.topic, "monitoring", 30).await;
        }

        let pods: Api<Pod> = t.api();
        let routes = stack.regions.len() * stack.regions.len();
        let components = [
            (
                "replicator",
                pod_monitor_selector(&pod_monitors[0]).0,
                routes,
                Some(&pod_monitors[0]),
            ),
            (
                "checkpoint-sync",
                pod_monitor_selector(&pod_monitors[1]).0,
                stack.regions.len() - 1,
                Some(&pod_monitors[1]),
            ),
            (
                "operator",
                "app.kubernetes.io/component=operator".to_string(),
                1,
                None,
            ),
        ];
        let mut missing = Vec::new();
        let mut pods_scraped = 0;
        let mut operator_pods = Vec::new();
        for (component, selector, count, pod_monitor) in &components {
            let found = running_pods(&pods, selector, *count).await;
            if let Some(pm) = pod_monitor {
                assert_pod_monitor_fits(pm, &found);
            }
            let (scrapes, still_missing) = scrape_until(component, &found, &wanted[component]).await;
            pods_scraped += scrapes.len();
            missing.extend(still_missing);
            if *component == "operator" {
                operator_pods = found;
            }
        }
        assert!(
            missing.is_empty(),
            "metrics used by the chart's alerts or dashboard but not exported:\n  {}",
            missing.join("\n  ")
        );

        // A failed reconcile: a stream whose SASL password Secret does not exist.
        let regional = stack.bootstrap(&s.east, tributary_e2e::Role::Regional);
        tributary_e2e::apply_yaml(
            &stack.client,
            &s.ns,
            &format!(
                r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: broken}}
spec:
  region: {east}
  deletionPolicy: Retain
  kafka:
    bootstrapServers: ["{regional}"]
    sasl: {{mechanism: SCRAM-SHA-512, username: nobody, password: {{name: no-such-secret, key: password}}}}
  topics:
    - {{name: broken-{suffix}, partitions: 1, replicationFactor: 1}}
"#,
                east = s.east,
                suffix = s.ns.rsplit('-').next().unwrap_or("x"),
            ),
        )
        .await
        .expect("apply the broken stream");
        let errors = BTreeSet::from([RECONCILE_ERRORS.to_string()]);
        let (_, missing) = scrape_until("operator", &operator_pods, &errors).await;
        assert!(missing.is_empty(), "after a failed reconcile: {missing:?}");

        eprintln!(
            "{} metric names used ({} by the alerts, {} by the dashboard); {} found in real scrapes of {pods_scraped} pods, {} registered but event-only: {:?}",
            used.len(),
            used_by_rules.len(),
            used_by_dashboard.len(),
            used.len() - EVENT_ONLY.len(),
            EVENT_ONLY.len(),
            EVENT_ONLY.map(|(n, event)| format!("{n} (from {event})")),
        );
    })
    .await;
}

#[test]
fn metric_names_are_found_in_promql_and_text() {
    let names = metric_names(
        r#"sum(rate(tributary_replicator_records_copied_total{a="b"}[5m])) / x_tributary_no and "tributary_operator_leader""#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "tributary_operator_leader",
            "tributary_replicator_records_copied_total"
        ]
    );
}

#[test]
fn a_counter_without_samples_counts_as_exported_by_its_type_line() {
    let e = Exposition::parse(
        "# HELP tributary_operator_failovers Completed moves.\n# TYPE tributary_operator_failovers counter\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# EOF\n",
    );
    assert!(e.exports("tributary_operator_failovers_total"));
    assert!(e.exports("h_bucket"));
    assert!(e.exports("h_count"), "a histogram family writes _count");
    assert!(!e.exports("tributary_operator_failovers_bucket"));
    assert!(!e.exports("tributary_operator_other_total"));
}
