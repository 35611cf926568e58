//! `kubectl tributary drill` on the local stack, the short version `make test` runs: the
//! operator installed by its chart into a fresh namespace, two regions' streams, aggregates,
//! VerifiableConsumer workloads and an ActivePassive group at the tight failover settings;
//! then two drills, a region loss and a planned switchover, must end with nothing lost or
//! skipped, no split brain and every epoch +1 (the plugin's own summary line and exit code).
//!
//! Needs the stack (`make stack-up`); a missing stack fails the test (`TRIBUTARY_SKIP_E2E=1`
//! skips and says so). It kills and restores a region; a panic brings every region back.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Stack, plugin, repo_dir, stack_var, wait_until};

/// One operator release at a time: every operator watches every namespace.
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn regions() -> Vec<String> {
    stack_var("TRIBUTARY_REGIONS")
        .expect("the stack's env names TRIBUTARY_REGIONS")
        .split(',')
        .map(str::to_string)
        .collect()
}

fn bootstrap(region: &str, role: &str) -> String {
    let var = format!(
        "TRIBUTARY_KAFKA_{}_{}",
        region.to_uppercase(),
        role.to_uppercase()
    );
    stack_var(&var).unwrap_or_else(|| panic!("the stack's env sets {var}"))
}

fn manifests(suffix: &str) -> String {
    let mut yaml = String::new();
    let regions = regions();
    for r in &regions {
        let regional = bootstrap(r, "regional");
        let aggregate = bootstrap(r, "aggregate");
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
    - {{name: orders-{suffix}, partitions: 3, replicationFactor: 1}}
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
        .map(|r| {
            format!(
                "    - {{region: {r}, aggregateCluster: {r}, workloadRef: {{kind: Deployment, name: billing-{r}, replicas: 1}}}}\n"
            )
        })
        .collect();
    yaml.push_str(&format!(
        r#"---
apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {{name: billing}}
spec:
  groupId: billing-{suffix}
  topics: [orders-{suffix}]
  mode: ActivePassive
  regions:
{entries}  failover: {{automatic: true, probePeriod: 1s, failureThreshold: 2, leaseDuration: 5s, maxSyncAge: 30s}}
  sync: {{interval: 1s}}
"#
    ));
    yaml
}

fn run(stack: &Stack, program: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", &stack.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("stdin written");
    drop(input);
    child.wait_with_output().expect("output")
}

/// Uninstalls the release and brings every region back when the test ends (also on a panic).
struct Cleanup {
    stack: Stack,
    release: String,
    ns: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stack_sh = repo_dir().join("e2e/stack/stack.sh");
        if std::thread::panicking() {
            for r in regions() {
                let _ = Command::new("bash")
                    .arg(&stack_sh)
                    .args(["region-up", &r])
                    .output();
            }
        }
        let helm = stack_var("TRIBUTARY_HELM").unwrap_or_else(|| "helm".into());
        let _ = Command::new(helm)
            .args([
                "uninstall",
                &self.release,
                "--namespace",
                &self.ns,
                "--wait",
            ])
            .env("KUBECONFIG", &self.stack.kubeconfig)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drills_lose_nothing_and_step_the_epoch_by_one() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    let s = stack.clone();
    stack
        .in_namespace("drill", move |ns| async move {
            let stack = s;
            let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
            let release = format!("tributary-{suffix}");
            let helm = stack_var("TRIBUTARY_HELM").expect("the stack's env sets TRIBUTARY_HELM");
            let tag = std::env::var("TRIBUTARY_IMAGE_TAG")
                .ok()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "dev".into());
            let chart = repo_dir().join("charts/tributary");
            let _cleanup = Cleanup {
                stack: stack.clone(),
                release: release.clone(),
                ns: ns.clone(),
            };
            let out = run(
                &stack,
                &helm,
                &[
                    "install",
                    &release,
                    chart.to_str().expect("path"),
                    "--namespace",
                    &ns,
                    "--set",
                    "image.repository=local/tributary",
                    "--set",
                    &format!("image.tag={tag}"),
                    "--set",
                    "replicaCount=2",
                    "--set",
                    "leaderElection.leaseDuration=4s",
                    "--wait",
                    "--timeout",
                    "120s",
                ],
                None,
            );
            assert!(
                out.status.success(),
                "helm install: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let kubectl = stack.kubectl.to_str().expect("path").to_string();
            let out = run(
                &stack,
                &kubectl,
                &["apply", "-n", &ns, "-f", "-"],
                Some(&manifests(&suffix)),
            );
            assert!(
                out.status.success(),
                "kubectl apply: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cgfs: kube::Api<tributary_api::ConsumerGroupFailover> =
                kube::Api::namespaced(stack.client.clone(), &ns);
            wait_until(
                "billing active at epoch 1",
                Duration::from_secs(240),
                || async {
                    let s = cgfs.get("billing").await.ok()?.status?;
                    (s.epoch == Some(1)).then_some(())
                },
            )
            .await;

            let dir = std::env::temp_dir().join(format!("drill-test-{suffix}"));
            std::fs::create_dir_all(&dir).expect("work dir");
            let stack_sh = repo_dir().join("e2e/stack/stack.sh");
            let state = stack_var("TRIBUTARY_STATE_DIR").expect("TRIBUTARY_STATE_DIR");
            let report = dir.join("report.json");
            let timeline = dir.join("timeline.svg");
            let out = Command::new(plugin())
                .args([
                    "-n",
                    &ns,
                    "drill",
                    "--group",
                    "billing",
                    "--drills",
                    "2",
                    "--faults",
                    "region-down,switchover",
                    "--in-order",
                    "--pod-logs",
                    &state,
                    "--work-dir",
                    dir.to_str().expect("path"),
                    "--report",
                    report.to_str().expect("path"),
                    "--timeline",
                    timeline.to_str().expect("path"),
                    "--region-down-cmd",
                    &format!("bash {} region-down {{region}}", stack_sh.display()),
                    "--region-up-cmd",
                    &format!("bash {} region-up {{region}}", stack_sh.display()),
                ])
                .env("KUBECONFIG", &stack.kubeconfig)
                .env("TRIBUTARY_STATE_DIR", &state)
                .output()
                .expect("kubectl-tributary drill runs");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            let summary = stdout.lines().last().unwrap_or_default();
            assert!(
                summary.starts_with("drill: n=2 lost=0 skipped=0 "),
                "the summary line: {summary}"
            );
            assert!(
                summary.ends_with("epoch_ok=true"),
                "the summary line: {summary}"
            );
            assert!(
                summary.contains(" split_brain_s=0.0 "),
                "the summary line: {summary}"
            );
            assert!(out.status.success(), "drill exited {}", out.status);
            let json: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&report).expect("the report is written"),
            )
            .expect("the report is JSON");
            let faults: Vec<&str> = json["drills"]
                .as_array()
                .expect("drills")
                .iter()
                .filter_map(|d| d["verdict"]["fault"].as_str())
                .collect();
            assert_eq!(faults, ["region-down", "switchover"]);
            assert!(
                std::fs::read_to_string(&timeline)
                    .expect("the timeline is written")
                    .contains("<polyline")
            );
        })
        .await;
}
