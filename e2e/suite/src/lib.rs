//! Test support for end-to-end tests on the local stack (`make stack-up`): connect to it from
//! its env file, run each test in a fresh random namespace (with a dump of pods, events and
//! process logs when the test fails), apply YAML, wait with deadlines, and speak Kafka.
//!
//! Tests that need the stack call [`Stack::connect`]. It fails loudly when the stack's env is
//! missing, unless `TRIBUTARY_SKIP_E2E=1` (set by `make unit-test`), where it returns `None`.

pub mod blocking;
pub mod coordination;
pub mod failover;
pub mod kafka;
pub mod kube_util;
pub mod per_region;
pub mod secure;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use coordination::Coordination;
pub use kube_util::{TestNamespace, apply_yaml, wait_until};
pub use per_region::PerRegion;

/// The running local stack, as described by its env file.
#[derive(Clone)]
pub struct Stack {
    pub client: kube::Client,
    pub regions: Vec<String>,
    pub state_dir: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub tributary_bin: PathBuf,
    bootstrap: BTreeMap<String, String>,
}

/// Which of a region's two Kafka clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Regional,
    Aggregate,
}

impl Role {
    fn env_suffix(self) -> &'static str {
        match self {
            Role::Regional => "REGIONAL",
            Role::Aggregate => "AGGREGATE",
        }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads `KEY=value` exports from the stack's env file, so tests also work when run by hand
/// with plain `cargo test` after `make stack-up`.
pub(crate) fn env_file_vars() -> BTreeMap<String, String> {
    let state = std::env::var("TRIBUTARY_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("e2e/.state"));
    let Ok(text) = std::fs::read_to_string(state.join("env")) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// A variable of the stack's env file (the process environment first): e.g.
/// `TRIBUTARY_KAFKA_SECURE`, `TRIBUTARY_KAFKA_LIB`. Panics naming it when the stack lacks it.
pub fn stack_var(name: &str) -> String {
    std::env::var(name)
        .ok()
        .or_else(|| env_file_vars().get(name).cloned())
        .unwrap_or_else(|| panic!("{name} is not set: the stack must run (make stack-up)"))
}

impl Stack {
    /// Connects to the stack. `None` only when `TRIBUTARY_SKIP_E2E=1`; panics with a clear
    /// message when the stack is not up.
    pub async fn connect() -> Option<Stack> {
        if std::env::var("TRIBUTARY_SKIP_E2E").is_ok_and(|v| v == "1") {
            eprintln!(
                "SKIPPED: TRIBUTARY_SKIP_E2E=1 (this test needs the local stack: make stack-up)"
            );
            return None;
        }
        let file = env_file_vars();
        let var =
            |k: &str| -> Option<String> { std::env::var(k).ok().or_else(|| file.get(k).cloned()) };
        let kubeconfig = var("KUBECONFIG")
            .unwrap_or_else(|| panic!("the local stack is not up (no e2e/.state/env): run `make stack-up`, or set TRIBUTARY_SKIP_E2E=1"));
        let regions: Vec<String> = var("TRIBUTARY_REGIONS")
            .expect("env file has TRIBUTARY_REGIONS")
            .split(',')
            .map(str::to_string)
            .collect();
        let mut bootstrap = BTreeMap::new();
        for r in &regions {
            for role in [Role::Regional, Role::Aggregate] {
                let key = format!(
                    "TRIBUTARY_KAFKA_{}_{}",
                    r.to_uppercase().replace('-', "_"),
                    role.env_suffix()
                );
                bootstrap.insert(
                    key.clone(),
                    var(&key).unwrap_or_else(|| panic!("env file lacks {key}")),
                );
            }
        }
        let kube_config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("readable kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("valid kubeconfig");
        let client = kube::Client::try_from(kube_config).expect("kube client");
        // The CRDs of this checkout, even on a stack started from an older one (Helm installs
        // a chart's CRDs only when they are absent, never updates them).
        kube_util::install_crds(&client).await;
        Some(Stack {
            client,
            regions,
            state_dir: PathBuf::from(
                var("TRIBUTARY_STATE_DIR").expect("env file has TRIBUTARY_STATE_DIR"),
            ),
            kubectl: PathBuf::from(
                var("TRIBUTARY_KUBECTL").expect("env file has TRIBUTARY_KUBECTL"),
            ),
            helm: PathBuf::from(var("TRIBUTARY_HELM").expect("env file has TRIBUTARY_HELM")),
            tributary_bin: PathBuf::from(var("TRIBUTARY_BIN").expect("env file has TRIBUTARY_BIN")),
            bootstrap,
        })
    }

    /// Bootstrap servers of one region's regional or aggregate cluster.
    pub fn bootstrap(&self, region: &str, role: Role) -> &str {
        let key = format!(
            "TRIBUTARY_KAFKA_{}_{}",
            region.to_uppercase().replace('-', "_"),
            role.env_suffix()
        );
        self.bootstrap
            .get(&key)
            .unwrap_or_else(|| panic!("no {key} in the stack"))
    }

    /// Runs `e2e/stack/stack.sh <args>` (region-down, region-up, status); panics on failure.
    pub fn stack_command(&self, args: &[&str]) -> std::process::Output {
        self.try_stack_command(args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `e2e/stack/stack.sh <args>`; `Err` describes a failure (for use where a panic
    /// would abort, such as `Drop`).
    pub fn try_stack_command(&self, args: &[&str]) -> Result<std::process::Output, String> {
        run_script(
            "e2e/stack/stack.sh",
            args,
            ("TRIBUTARY_STATE_DIR", &self.state_dir),
        )
    }

    /// The tail of a process log under the stack's state dir.
    pub fn log_tail(&self, relative: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.state_dir.join(relative)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// An operator release installed from `charts/tributary`; uninstalled when dropped, also when a
/// test fails (its ClusterRole and binding are cluster-scoped and would outlive the test).
pub struct HelmRelease {
    helm: PathBuf,
    kubeconfig: PathBuf,
    pub name: String,
    pub namespace: String,
}

impl Drop for HelmRelease {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.helm)
            .args([
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
    }
}

impl Stack {
    /// `helm install` of the chart with the stack's image (`local/tributary:<tag>`, run by the
    /// node agent; the tag is [`image_tag`]), JSON logs, `--wait`, and `sets` (`key=value`) on
    /// top. Panics on failure.
    #[must_use]
    pub fn install_operator(&self, release: &str, namespace: &str, sets: &[String]) -> HelmRelease {
        let chart = repo_path("charts/tributary");
        let mut args: Vec<String> = [
            "install",
            release,
            chart.to_str().expect("path"),
            "--namespace",
            namespace,
            "--set",
            "image.repository=local/tributary",
            "--set",
            &format!("image.tag={}", image_tag()),
            "--set",
            "logFormat=json",
            "--wait",
            "--timeout",
            "120s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for s in sets {
            args.extend(["--set".to_string(), s.clone()]);
        }
        let kubeconfig = self.state_dir.join("kubeconfig");
        let out = std::process::Command::new(&self.helm)
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        HelmRelease {
            helm: self.helm.clone(),
            kubeconfig,
            name: release.to_string(),
            namespace: namespace.to_string(),
        }
    }
}

/// Tag of the project image the tests install (`local/tributary:<tag>`): `dev` (the stack's
/// build), or `TRIBUTARY_IMAGE_TAG` to run another checkout's build that the node agents find
/// in `<state>/binaries/<tag>`.
pub fn image_tag() -> String {
    std::env::var("TRIBUTARY_IMAGE_TAG")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "dev".into())
}

/// Runs one of the stack's scripts (`relative` to the repo) with `args` and one state-dir
/// variable; `Err` names the script and carries its output when it fails.
pub fn run_script(
    relative: &str,
    args: &[&str],
    state: (&str, &std::path::Path),
) -> Result<std::process::Output, String> {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let out = std::process::Command::new("bash")
        .arg(repo_root().join(relative))
        .args(args)
        .env(state.0, state.1)
        .output()
        .map_err(|e| format!("{name} {args:?} did not run: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{name} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The combined stdout and stderr of a script's run.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path in the repository (examples, charts, crds).
pub fn repo_path(relative: &str) -> PathBuf {
    repo_root().join(relative)
}

/// A deadline-friendly default for waits on the local stack (2 shared cores).
pub const WAIT: Duration = Duration::from_secs(90);
