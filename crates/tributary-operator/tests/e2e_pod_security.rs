//! The operator's pods work under a kubelet's security rules, on the real local stack
//! (`make stack-up`): a replicator runs as uid 65532 (the image's non-root user) and can read
//! the Secret file of its SASL password (root-owned, mode 0440: readable only through the
//! pod's `fsGroup`), on a node agent of this checkout's build, which honours
//! `securityContext`, file modes and ownership. The stack's own agents may be older builds, so
//! the test starts a third agent for a fake region of its own, tainted so that no other pod
//! lands there; the replicator's Deployment gets the toleration from the test.
//!
//! Needs the node agent built in the same target dir (`cargo build -p tributary-node-agent`),
//! or its path in `TRIBUTARY_NODE_AGENT`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tributary_e2e::{Role, Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(180);
const TAINT: &str = "tributary.dev/e2e-pod-security";

/// A node agent of this checkout for region `region`, stopped (and its Node deleted) on drop.
struct OwnAgent {
    child: Child,
    node: String,
    state_dir: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl OwnAgent {
    async fn start(stack: &Stack, region: &str) -> OwnAgent {
        let agent = std::env::var("TRIBUTARY_NODE_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                // target/<profile>/deps/<this test> → target/<profile>/tributary-node-agent
                let exe = std::env::current_exe().expect("test binary path");
                exe.parent()
                    .and_then(|d| d.parent())
                    .map(|d| d.join("tributary-node-agent"))
                    .expect("target dir")
            });
        assert!(
            agent.is_file(),
            "no node agent at {} (run `cargo build -p tributary-node-agent` with the same target dir, or set TRIBUTARY_NODE_AGENT)",
            agent.display()
        );
        let node = format!("tributary-{region}");
        // The Node exists, tainted, before the agent makes it Ready: no other test's pod can
        // be scheduled to it in between. The agent's apply leaves the taint alone (another
        // field manager owns it).
        let nodes: Api<Node> = Api::all(stack.client.clone());
        let tainted = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node},
            "spec": {"taints": [{"key": TAINT, "value": "true", "effect": "NoSchedule"}]},
        });
        nodes
            .patch(
                &node,
                &PatchParams::apply("e2e-pod-security").force(),
                &Patch::Apply(&tainted),
            )
            .await
            .expect("tainted Node");
        let state_dir = std::env::temp_dir().join(format!("agent-{region}"));
        let log = std::fs::File::create(std::env::temp_dir().join(format!("agent-{region}.log")))
            .expect("agent log");
        let child = Command::new(&agent)
            .arg("--kubeconfig")
            .arg(stack.state_dir.join("kubeconfig"))
            .args(["--region", region, "--node-name", &node])
            .arg("--binary")
            .arg(&stack.tributary_bin)
            .arg("--binaries-dir")
            .arg(stack.state_dir.join("binaries"))
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("node agent starts");
        let own = OwnAgent {
            child,
            node: node.clone(),
            state_dir,
            kubectl: stack.kubectl.clone(),
            kubeconfig: stack.state_dir.join("kubeconfig"),
        };
        wait_until("the test's own Node is Ready", SLOW, || async {
            let n = nodes.get(&node).await.ok()?;
            let ready = n
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        })
        .await;
        own
    }

    fn pod_dir(&self, ns: &str, pod: &str) -> PathBuf {
        self.state_dir.join("pods").join(format!("{ns}_{pod}"))
    }
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        // SIGTERM: the agent kills its pods' processes and marks the Node down.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        // Synchronously (a kube client would need the test's runtime, which Drop blocks).
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "node", &self.node, "--wait=false"])
            .output();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.state_dir.with_extension("log"));
        }
    }
}

#[tokio::test]
async fn a_replicator_runs_as_nonroot_and_reads_its_sasl_password_secret() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    // The agent outlives the test namespace, so the namespace's pods end as on a real node.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let region = format!("sec-{:08x}", nanos ^ std::process::id());
    let agent = std::sync::Arc::new(OwnAgent::start(&stack, &region).await);
    let in_test = agent.clone();
    TestNamespace::run(&stack, "podsec", |t| async move {
        let agent = in_test;
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let _operator = stack.install_operator(
            &format!("tributary-{ns}"),
            &ns,
            &["replicaCount=1".to_string()],
        );
        let source = stack.regions[0].clone();
        let password = format!("pw-{suffix}");
        // The aggregate of a fake region, on the source region's aggregate Kafka, with SASL
        // (the stack's brokers speak plaintext: the replicator reads its password file at
        // start, then fails to authenticate, which is not what this test looks at).
        let yaml = format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: aggregate-sasl}}
stringData: {{password: "{password}"}}
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: podsec, labels: {{podsec: "true"}}}}
spec:
  region: {source}
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics: [{{name: podsec-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: podsec}}
spec:
  region: {region}
  kafka:
    bootstrapServers: ["{aggregate}"]
    sasl: {{mechanism: PLAIN, username: podsec, password: {{name: aggregate-sasl, key: password}}}}
  sources: {{matchLabels: {{podsec: "true"}}}}
  checkpoints: {{interval: 1s, topic: checkpoints-podsec-{suffix}, retention: 168h}}
"#,
            regional = stack.bootstrap(&source, Role::Regional),
            aggregate = stack.bootstrap(&source, Role::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");

        // The replicator's Deployment, as the operator builds it, plus the test node's
        // toleration (from a field manager of its own: the operator's applies keep it).
        let deployments: Api<Deployment> = t.api();
        // Another checkout's operator on the shared stack (every operator watches every
        // namespace) may apply its template too: wait for this build's, which is non-root
        // with the group that can read the Secret files.
        let this_build = |d: &Deployment| {
            let sc = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.security_context.clone())
                .unwrap_or_default();
            (sc.run_as_user, sc.fs_group) == (Some(65532), Some(65532))
        };
        let deployment = wait_until(
            "the route's replicator Deployment, non-root with fsGroup",
            SLOW,
            || async {
                let list = deployments
                    .list(&ListParams::default().labels("app.kubernetes.io/component=replicator"))
                    .await
                    .ok()?;
                list.items.into_iter().find(this_build)
            },
        )
        .await;
        let name = deployment.name_any();
        let toleration = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"tolerations": [
                {"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}
            ]}}},
        });
        deployments
            .patch(
                &name,
                &PatchParams::apply("e2e-pod-security").force(),
                &Patch::Apply(&toleration),
            )
            .await
            .expect("toleration");

        // The pod runs on the test's node, and its process started.
        let pods: Api<Pod> = t.api();
        let pod = wait_until(
            "the replicator pod started on the test's node",
            SLOW,
            || async {
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=replicator"))
                    .await
                    .ok()?;
                list.items.into_iter().find(|p| {
                    // Another checkout's operator on the shared stack may apply its own
                    // template meanwhile: look at the pods of this build's template only.
                    let this_build = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.security_context.as_ref())
                        .and_then(|c| c.fs_group)
                        == Some(65532);
                    this_build
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                            == Some(agent.node.as_str())
                        && p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c.started == Some(true) || c.restart_count > 0)
                            })
                })
            },
        )
        .await;
        let pod_dir = agent.pod_dir(&ns, &pod.name_any());
        let log_path = pod_dir.join("replicator.log");
        // Give a failing start time to show in the log.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        assert!(
            log.contains("as uid=65532 gid=65532 groups=[65532]"),
            "the replicator runs as 65532 with the fsGroup: {log}"
        );
        assert!(
            !log.contains("cannot read the SASL password file"),
            "the replicator could not read its password file:\n{log}"
        );

        // The same process identity and mounts, running `cat` on the password file: the file
        // a real kubelet would give this pod is readable to it.
        let spec_path = pod_dir.join("replicator.launch.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&spec_path).expect("launch spec")).expect("json");
        assert_eq!(spec["identity"]["uid"], 65532);
        let file = "/var/run/tributary/dest-sasl-password/password";
        spec["program"] = "/bin/cat".into();
        spec["args"] = serde_json::json!([file]);
        let probe_path = pod_dir.join("probe.launch.json");
        std::fs::write(&probe_path, serde_json::to_vec(&spec).expect("json")).expect("write");
        let agent_exe = std::env::var("TRIBUTARY_NODE_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent()?.parent().map(|d| d.join("tributary-node-agent")))
                    .expect("agent path")
            });
        let out = Command::new(agent_exe)
            .arg("__mount-exec")
            .arg(&probe_path)
            .output()
            .expect("helper runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            password,
            "uid 65532 reads the mounted password: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And the file is what a kubelet leaves: root-owned, group fsGroup, 0440.
        let volume = pod_dir.join("volumes/dest-sasl-password/password");
        let meta = std::fs::metadata(&volume).expect("volume file");
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (0, 65532, 0o440)
        );
    })
    .await;
    // The namespace is being deleted: its pods end through the agent before it stops.
    let pods: Api<Pod> = Api::all(stack.client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={}", agent.node));
    for _ in 0..60 {
        match pods.list(&on_node).await {
            Ok(list) if list.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    drop(agent);
}
