//! The real operator on the stack for the plugin's tests: its chart installed into a test's
//! namespace, the stack's regions as RegionalStreams, AggregateClusters and
//! VerifiableConsumer workloads, and one ConsumerGroupFailover `billing` over them.

use std::process::Command;

use std::time::Duration;

use tributary_e2e::failover::{Group, RegionKafka};

use super::{Stack, repo_dir, stack_var, wait_until};

/// One operator release at a time: every operator watches every namespace.
pub static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn regions() -> Vec<String> {
    stack_var("TRIBUTARY_REGIONS")
        .expect("the stack's env names TRIBUTARY_REGIONS")
        .split(',')
        .map(str::to_string)
        .collect()
}

pub fn bootstrap(region: &str, role: &str) -> String {
    let var = format!(
        "TRIBUTARY_KAFKA_{}_{}",
        region.to_uppercase(),
        role.to_uppercase()
    );
    stack_var(&var).unwrap_or_else(|| panic!("the stack's env sets {var}"))
}

/// The stack's regions with a group `billing` in `mode` (`ActivePassive` | `ActiveActive`) at
/// the tight failover settings (the operator's failover tests' setup).
pub fn manifests(suffix: &str, mode: &'static str) -> String {
    let regions: Vec<RegionKafka> = regions()
        .into_iter()
        .map(|r| RegionKafka {
            regional: bootstrap(&r, "regional"),
            aggregate: bootstrap(&r, "aggregate"),
            region: r,
        })
        .collect();
    tributary_e2e::failover::manifests(
        &regions,
        suffix,
        &Group {
            mode,
            ..Group::default()
        },
    )
}

pub fn run(
    stack: &Stack,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
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
pub struct Cleanup {
    pub stack: Stack,
    pub release: String,
    pub ns: String,
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

/// Installs the operator's chart as release `tributary-<suffix>` into `ns` (two replicas,
/// image local/tributary:$TRIBUTARY_IMAGE_TAG or dev) and applies [`manifests`]; the returned
/// guard uninstalls it.
pub fn install(stack: &Stack, ns: &str, suffix: &str, mode: &'static str) -> Cleanup {
    let release = format!("tributary-{suffix}");
    let helm = stack_var("TRIBUTARY_HELM").expect("the stack's env sets TRIBUTARY_HELM");
    let tag = std::env::var("TRIBUTARY_IMAGE_TAG")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "dev".into());
    let chart = repo_dir().join("charts/tributary");
    let cleanup = Cleanup {
        stack: stack.clone(),
        release: release.clone(),
        ns: ns.to_string(),
    };
    let out = run(
        stack,
        &helm,
        &[
            "install",
            &release,
            chart.to_str().expect("path"),
            "--namespace",
            ns,
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
        stack,
        &kubectl,
        &["apply", "-n", ns, "-f", "-"],
        Some(&manifests(suffix, mode)),
    );
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cleanup
}

/// Waits until the group `billing` of `ns` is active at epoch 1 (the first activation).
pub async fn wait_first_activation(stack: &Stack, ns: &str) {
    let cgfs: kube::Api<tributary_api::ConsumerGroupFailover> =
        kube::Api::namespaced(stack.client.clone(), ns);
    wait_until(
        "billing active at epoch 1",
        Duration::from_secs(240),
        || async {
            let s = cgfs.get("billing").await.ok()?.status?;
            (s.epoch == Some(1)).then_some(())
        },
    )
    .await;
}
