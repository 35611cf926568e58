//! Support for the plugin's tests on the local stack (`make stack-up`): connect from the
//! stack's env, make sure the CRDs exist, run each test in a fresh namespace that is deleted
//! afterwards, write objects and their status, and run the `kubectl-tributary` binary.
//!
//! Like `e2e/suite` (whose `Stack::connect` this follows), a missing stack is a failure, not a
//! skip; only `TRIBUTARY_SKIP_E2E=1` (`make unit-test`) skips, and says so. Like it, this
//! applies the checkout's CRDs, so the status the tests write has this checkout's schema. The
//! group's manifests are the suite's (`tributary_e2e::failover`), shared with the operator's
//! failover tests.

#![allow(dead_code)]

pub mod operator;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;

/// The field manager of everything the tests write.
pub const MANAGER: &str = "tributary-cli-e2e";

/// The running stack, as far as these tests need it.
#[derive(Clone)]
pub struct Stack {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `KEY=value` exports of the stack's env file (`$TRIBUTARY_STATE_DIR/env`, else this
/// checkout's `e2e/.state/env`), so `cargo test` works without sourcing it.
fn env_file_vars() -> BTreeMap<String, String> {
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

/// A variable of the stack's env (the process's environment first, then the env file).
pub fn stack_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| env_file_vars().get(name).cloned())
}

/// The checkout's root (charts, e2e/stack).
pub fn repo_dir() -> PathBuf {
    repo_root()
}

impl Stack {
    /// Connects; `None` only under `TRIBUTARY_SKIP_E2E=1`. Panics when the stack's env is
    /// missing: a test that needs the stack must not pass without it.
    pub async fn connect() -> Option<Stack> {
        if std::env::var("TRIBUTARY_SKIP_E2E").is_ok_and(|v| v == "1") {
            eprintln!(
                "SKIPPED: TRIBUTARY_SKIP_E2E=1 (this test needs the local stack: make stack-up)"
            );
            return None;
        }
        let file = env_file_vars();
        let var = |k: &str| std::env::var(k).ok().or_else(|| file.get(k).cloned());
        let kubeconfig = PathBuf::from(var("KUBECONFIG").unwrap_or_else(|| {
            panic!(
                "the local stack is not up (no KUBECONFIG, no e2e/.state/env): run `make stack-up` \
                 or `source <checkout>/e2e/.state/env`; TRIBUTARY_SKIP_E2E=1 skips"
            )
        }));
        let kubectl = PathBuf::from(
            var("TRIBUTARY_KUBECTL").expect("the stack's env sets TRIBUTARY_KUBECTL"),
        );
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("readable kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("valid kubeconfig");
        let client = kube::Client::try_from(config).expect("kube client");
        let stack = Stack {
            client,
            kubeconfig,
            kubectl,
        };
        stack.ensure_crds().await;
        Some(stack)
    }

    /// Applies the CRDs from `crds/` (server-side, as the e2e suite does) and waits until
    /// each is Established.
    async fn ensure_crds(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in tributary_api::crds() {
            let name = crd.metadata.name.clone().expect("CRD name");
            let committed = std::fs::read_to_string(
                repo_root()
                    .join("crds")
                    .join(tributary_api::crd_file_name(&crd)),
            )
            .expect("crds/ holds the generated CRD");
            let obj: CustomResourceDefinition =
                serde_yaml::from_str(&committed).expect("CRD YAML parses");
            api.patch(
                &name,
                &kube::api::PatchParams::apply("tributary-cli-tests").force(),
                &kube::api::Patch::Apply(&obj),
            )
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
            wait_until(
                &format!("CRD {name} Established"),
                Duration::from_secs(60),
                || async {
                    let c = api.get(&name).await.ok()?;
                    c.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                },
            )
            .await;
        }
    }

    /// Runs `test` in a new namespace `<prefix>-<random>`, deleted afterwards (also when the
    /// test panics, whose panic is then passed on).
    pub async fn in_namespace<F, Fut>(&self, prefix: &str, test: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"tributary.dev/e2e": "true"}}
        }))
        .expect("namespace object");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        let result = tokio::spawn(test(name.clone())).await;
        let _ = namespaces.delete(&name, &DeleteParams::default()).await;
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// The API of a Tributary kind (`plural`) in `ns`.
    pub fn tributary_api(&self, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: "tributary.dev".into(),
            version: "v1alpha1".into(),
            api_version: "tributary.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        Api::namespaced_with(self.client.clone(), ns, &ar)
    }

    /// Server-side applies one Tributary object given as YAML (its spec and metadata).
    pub async fn apply(&self, ns: &str, yaml: &str) -> DynamicObject {
        self.apply_as(ns, MANAGER, yaml).await
    }

    /// [`Stack::apply`] with another field manager (a GitOps tool, say).
    pub async fn apply_as(&self, ns: &str, manager: &str, yaml: &str) -> DynamicObject {
        let obj: DynamicObject = serde_yaml::from_str(yaml).expect("object YAML");
        let api = self.api_of(ns, &obj);
        let name = obj.metadata.name.clone().expect("name");
        api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
    }

    /// Server-side applies the status subresource of an object (`status` given as YAML).
    pub async fn apply_status(&self, ns: &str, kind: &str, name: &str, status: &str) {
        let status: serde_json::Value = serde_yaml::from_str(status).expect("status YAML");
        let api = self.tributary_api(ns, kind, &plural(kind));
        let body = serde_json::json!({
            "apiVersion": "tributary.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .unwrap_or_else(|e| panic!("writing the status of {kind} {name}: {e}"));
    }

    fn api_of(&self, ns: &str, obj: &DynamicObject) -> Api<DynamicObject> {
        let kind = obj.types.as_ref().expect("kind").kind.clone();
        self.tributary_api(ns, &kind, &plural(&kind))
    }
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The plugin binary cargo built for this test.
pub fn plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubectl-tributary"))
}

/// Runs the plugin with `args` and the stack's KUBECONFIG; stdout is a pipe (not a terminal).
pub fn run_plugin(stack: &Stack, args: &[&str]) -> Output {
    Command::new(plugin())
        .args(args)
        .env("KUBECONFIG", &stack.kubeconfig)
        .env_remove("NO_COLOR")
        .output()
        .expect("kubectl-tributary runs")
}

/// stdout of a run that must succeed.
pub fn stdout_of(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// The line of `text` that starts with `start`.
pub fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{text}"))
}

/// The cells of a table line (columns are separated by at least three spaces).
pub fn columns(line: &str) -> Vec<&str> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}
