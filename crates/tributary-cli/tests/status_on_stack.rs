//! `kubectl tributary status` against the real API server of the local stack: objects whose
//! status this test writes itself (no operator: every object is paused, so an operator that
//! another test installed leaves them alone), read back by the built binary — directly and
//! through `kubectl tributary`, which proves kubectl discovers the plugin on PATH.

mod support;

use std::process::Command;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use support::{Stack, columns, line_of, plugin, run_plugin, stdout_of};

fn rfc3339_ago(seconds: i64) -> String {
    let t = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("time");
    serde_json::to_value(Time(t))
        .expect("time JSON")
        .as_str()
        .expect("string")
        .to_string()
}

const PAUSED: &str = r#"annotations: {tributary.dev/paused: "true"}"#;

async fn write_topology(stack: &Stack, ns: &str) {
    for region in ["east", "west"] {
        stack
            .apply(
                ns,
                &format!(
                    r#"apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: {region}, {PAUSED}}}
spec:
  region: {region}
  kafka: {{bootstrapServers: ["kafka-{region}.invalid:9092"]}}
  topics: [{{name: orders, partitions: 3, replicationFactor: 1}}]
"#
                ),
            )
            .await;
        stack
            .apply(
                ns,
                &format!(
                    r#"apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: {region}, {PAUSED}}}
spec:
  region: {region}
  kafka: {{bootstrapServers: ["kafka-agg-{region}.invalid:9092"]}}
"#
                ),
            )
            .await;
    }
    stack
        .apply(
            ns,
            &format!(
                r#"apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {{name: billing, {PAUSED}}}
spec:
  groupId: billing-group
  topics: [orders]
  mode: ActivePassive
  regions:
    - {{region: east, aggregateCluster: east}}
    - {{region: west, aggregateCluster: west}}
  failover: {{witness: witness}}
  activeRegion: east
"#
            ),
        )
        .await;

    let ready = |reason: &str| {
        format!(
            r#"{{type: Ready, status: "True", reason: {reason}, message: "", lastTransitionTime: "{}"}}"#,
            rfc3339_ago(600)
        )
    };
    stack
        .apply_status(
            ns,
            "RegionalStream",
            "east",
            &format!(
                "{{observedGeneration: 1, topicsReady: 1/1, conditions: [{}]}}",
                ready("TopicsReady")
            ),
        )
        .await;
    // West's stream: written for generation 1, then its spec changes (generation 2): stale.
    stack
        .apply_status(
            ns,
            "RegionalStream",
            "west",
            &format!(
                "{{observedGeneration: 1, topicsReady: 1/1, conditions: [{}]}}",
                ready("TopicsReady")
            ),
        )
        .await;
    stack
        .apply(
            ns,
            &format!(
                r#"apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: west, {PAUSED}}}
spec:
  region: west
  kafka: {{bootstrapServers: ["kafka-west.invalid:9092"]}}
  topics: [{{name: orders, partitions: 6, replicationFactor: 1}}]
"#
            ),
        )
        .await;
    // East's aggregate: two routes, west→east degraded. West's aggregate: no status at all.
    stack
        .apply_status(
            ns,
            "AggregateCluster",
            "east",
            &format!(
                r#"
observedGeneration: 1
routesReady: "1/2"
maxLagRecords: 42
conditions:
  - {{type: Ready, status: "False", reason: RouteDegraded, message: "route west→east: source unreachable", lastTransitionTime: "{}"}}
routes:
  - {{source: east, sourceRegion: east, deployment: east-from-east, readyReplicas: 1, lagRecords: 0, lagSeconds: 0, lastCheckpointTime: "{}", state: Ready}}
  - {{source: west, sourceRegion: west, deployment: east-from-west, readyReplicas: 0, lagRecords: 42, lagSeconds: 30, lastCheckpointTime: "{}", state: Degraded, message: "source kafka-west.invalid:9092 unreachable"}}
"#,
                rfc3339_ago(60),
                rfc3339_ago(1),
                rfc3339_ago(125)
            ),
        )
        .await;
    stack
        .apply_status(
            ns,
            "ConsumerGroupFailover",
            "billing",
            &format!(
                r#"
observedGeneration: 1
activeRegion: east
epoch: 2
actedActiveRegion: east
conditions:
  - {{type: Ready, status: "True", reason: Active, message: "east is active", lastTransitionTime: "{t}"}}
regions:
  - {{region: east, healthy: true, failedProbes: 0, members: 2, committedLag: 3, role: Active}}
  - {{region: west, healthy: true, failedProbes: 0, members: 0, committedLag: 9, role: Standby, lastSyncTime: "{sync}"}}
lastFailover: {{from: west, to: east, reason: Failback, kind: Planned, epoch: 2, started: "{t}", finished: "{t}", rtoSeconds: 1.5}}
"#,
                t = rfc3339_ago(600),
                sync = rfc3339_ago(5)
            ),
        )
        .await;
}

#[tokio::test]
async fn status_shows_the_topology_from_status_and_never_calls_unknown_healthy() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let s = stack.clone();
    stack
        .in_namespace("cli-status", |ns| async move {
            let stack = s;
            write_topology(&stack, &ns).await;

            // Plain text (stdout is a pipe): no colour.
            let text = stdout_of(&run_plugin(&stack, &["status", "-n", &ns]), "status");
            println!("{text}");
            assert!(!text.contains('\x1b'), "colour on a pipe:\n{text}");
            assert!(text.starts_with(&format!("Tributary in namespace {ns} at ")));
            assert_eq!(
                columns(line_of(&text, "east ")),
                ["east", "Degraded", "Ready", "NotReady (RouteDegraded)", "1/2 Ready", "1 answering"]
            );
            assert_eq!(
                columns(line_of(&text, "west ")),
                [
                    "west",
                    "Unknown",
                    "Unknown (stale: observed generation 1 < 2, was Ready)",
                    "Unknown (no status)",
                    "unknown",
                    "1 answering"
                ]
            );
            let degraded = columns(line_of(&text, "west→east"));
            assert_eq!(&degraded[..6], ["west→east", "east", "Degraded", "0", "42", "30s"]);
            // Written 125 s before "now"; the render may come a few seconds after the write.
            assert!(
                ["2m05s", "2m06s", "2m07s", "2m08s"].contains(&degraded[6]),
                "checkpoint age: {degraded:?}"
            );
            assert!(degraded[7].ends_with(" ago"), "{degraded:?}");
            let group = columns(line_of(&text, "billing "));
            assert_eq!(&group[..6], ["billing", "billing-group", "ActivePassive", "east", "2", "Ready"]);
            assert!(group[6].starts_with("west "), "standby sync age: {group:?}");
            assert!(text.contains(
                "- AggregateCluster west: no status yet (is the operator running and watching this namespace?)"
            ));
            assert!(text.contains("- route west→east (east-from-west): source kafka-west.invalid:9092 unreachable"));

            // --color always colours even a pipe; NO_COLOR does not override an explicit choice.
            let coloured = stdout_of(
                &run_plugin(&stack, &["status", "-n", &ns, "--color", "always"]),
                "status --color always",
            );
            assert!(coloured.contains("\x1b[31mDegraded\x1b[0m"), "{coloured}");

            // -o json: the documented shape, with the server's generations and write times.
            let json = stdout_of(&run_plugin(&stack, &["status", "-n", &ns, "-o", "json"]), "status -o json");
            let j: serde_json::Value = serde_json::from_str(&json).expect("JSON output");
            assert_eq!(j["kind"], "TributaryStatus");
            assert_eq!(j["version"], 1);
            assert_eq!(j["namespace"], ns.as_str());
            let regions = j["regions"].as_array().expect("regions");
            assert_eq!(regions.len(), 2);
            assert_eq!(regions[0]["region"], "east");
            assert_eq!(regions[0]["health"], "Degraded");
            assert_eq!(regions[1]["health"], "Unknown");
            let west_stream = &regions[1]["regionalStreams"][0];
            assert_eq!(west_stream["health"], "Unknown");
            assert_eq!(west_stream["lastKnownHealth"], "Ready");
            assert_eq!(west_stream["observation"]["freshness"], "Stale");
            assert_eq!(west_stream["observation"]["generation"], 2);
            assert_eq!(regions[1]["aggregateClusters"][0]["observation"]["freshness"], "Missing");
            let east_agg = &regions[0]["aggregateClusters"][0]["observation"];
            let age = east_agg["statusAgeSeconds"].as_f64().expect("status age from managedFields");
            assert!((0.0..120.0).contains(&age), "status age {age}");
            let routes = j["routes"].as_array().expect("routes");
            assert_eq!(routes.len(), 2);
            assert_eq!(routes[1]["sourceRegion"], "west");
            assert_eq!(routes[1]["state"], "Degraded");
            assert_eq!(routes[1]["lagRecords"], 42);
            let checkpoint_age = routes[1]["lastCheckpointAgeSeconds"]
                .as_f64()
                .expect("checkpoint age from lastCheckpointTime");
            assert!(
                (125.0..185.0).contains(&checkpoint_age),
                "checkpoint age {checkpoint_age}"
            );
            let g = &j["groups"][0];
            assert_eq!(g["groupId"], "billing-group");
            assert_eq!(g["activeRegion"], "east");
            assert_eq!(g["epoch"], 2);
            assert_eq!(g["specActiveRegion"], "east");
            assert_eq!(g["lastFailover"]["reason"], "Failback");
            let sync = g["regions"][1]["syncAgeSeconds"].as_f64().expect("sync age");
            assert!((4.0..120.0).contains(&sync), "sync age {sync}: measured from now");

            // Through kubectl: `kubectl tributary` finds the binary on PATH.
            let dir = plugin().parent().expect("binary dir");
            let path = format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let out = Command::new(&stack.kubectl)
                .args(["tributary", "status", "-n", &ns])
                .env("PATH", path)
                .env("KUBECONFIG", &stack.kubeconfig)
                .output()
                .expect("kubectl runs");
            let via_kubectl = stdout_of(&out, "kubectl tributary status");
            assert_eq!(
                line_of(&via_kubectl, "west "),
                line_of(&text, "west "),
                "kubectl ran the plugin:\n{via_kubectl}"
            );

            // -A lists this namespace among the others, with a NAMESPACE column.
            let all = stdout_of(&run_plugin(&stack, &["status", "-A"]), "status -A");
            assert!(all.starts_with("Tributary in all namespaces"));
            assert!(all.contains("NAMESPACE"));
            assert!(all.lines().any(|l| l.starts_with(&ns) && l.contains("billing-group")), "{all}");
        })
        .await;
}

#[tokio::test]
async fn status_of_an_empty_namespace_says_nothing_is_there() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let s = stack.clone();
    stack
        .in_namespace("cli-empty", |ns| async move {
            let text = stdout_of(&run_plugin(&s, &["status", "-n", &ns]), "status");
            assert_eq!(
                text,
                format!("No Tributary resources found in namespace {ns}.\n")
            );
            // kubectl's own flags: an explicit kubeconfig and context reach the same cluster.
            let out = Command::new(plugin())
                .args(["--kubeconfig"])
                .arg(&s.kubeconfig)
                .args(["--context", "no-such-context", "status", "-n", &ns])
                .env_remove("KUBECONFIG")
                .output()
                .expect("runs");
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no-such-context"), "{err}");
        })
        .await;
}
