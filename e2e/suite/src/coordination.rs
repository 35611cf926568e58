//! The coordination plane of the local stack (`e2e/stack/coordination.sh`): a kube-apiserver
//! over a three-member etcd, one member per region. Tests reach it through the operator's own
//! kubeconfig (`TRIBUTARY_COORDINATION_KUBECONFIG`, Lease verbs only) and, for setup, through
//! the admin kubeconfig beside it; they kill and restart single etcd members.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

/// The running coordination plane.
#[derive(Clone)]
pub struct Coordination {
    /// As the operator: `get`, `create`, `update` on Leases, nothing else.
    pub operator: kube::Client,
    /// `system:masters`, for setup (namespaces) and diagnostics.
    pub admin: kube::Client,
    /// The kubeconfig the operator is given.
    pub operator_kubeconfig: PathBuf,
    /// The plane's state dir (kubeconfigs, pki, etcd data, logs, pids).
    pub dir: PathBuf,
    /// The etcd members' regions, in member order.
    pub regions: Vec<String>,
}

async fn client_from(path: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    // A request the plane cannot answer (no etcd quorum) must fail the test, not hang it, and
    // show the server's answer rather than kube's silent retries of 503/504.
    config.read_timeout = Some(Duration::from_secs(30));
    config.reset_reader_on_write = true;
    config.default_retry = false;
    kube::Client::try_from(config).expect("kube client")
}

impl Coordination {
    /// Connects to the coordination plane. `None` only when `TRIBUTARY_SKIP_E2E=1`; panics
    /// with what to run when the plane is not up.
    pub async fn connect() -> Option<Coordination> {
        if std::env::var("TRIBUTARY_SKIP_E2E").is_ok_and(|v| v == "1") {
            eprintln!(
                "SKIPPED: TRIBUTARY_SKIP_E2E=1 (this test needs the coordination plane: make coordination-up)"
            );
            return None;
        }
        let operator_kubeconfig = std::env::var("TRIBUTARY_COORDINATION_KUBECONFIG")
            .ok()
            .or_else(|| crate::env_file_vars().remove("TRIBUTARY_COORDINATION_KUBECONFIG"))
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "the coordination plane is not up (no TRIBUTARY_COORDINATION_KUBECONFIG in the environment or in e2e/.state/env): run `make coordination-test`, or `make stack-up COORDINATION=1`"
                )
            });
        let dir = operator_kubeconfig
            .parent()
            .expect("the kubeconfig lives in the plane's state dir")
            .to_path_buf();
        let regions: Vec<String> = std::fs::read_to_string(dir.join("regions"))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (is the coordination plane up? bash e2e/stack/coordination.sh status)",
                    dir.join("regions").display()
                )
            })
            .trim()
            .split(',')
            .map(str::to_string)
            .collect();
        assert!(
            regions.len() >= 3,
            "the coordination plane has {} etcd members ({regions:?}); it needs three",
            regions.len()
        );
        Some(Coordination {
            operator: client_from(&operator_kubeconfig).await,
            admin: client_from(&dir.join("kubeconfig")).await,
            operator_kubeconfig,
            dir,
            regions,
        })
    }

    /// Creates `name` on the coordination apiserver if it is missing (nothing deletes
    /// namespaces there: the plane runs no controller-manager to finalize them).
    pub async fn ensure_namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"tributary.dev/e2e": "true"}}
        }))
        .expect("namespace object");
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("creating namespace {name} on the coordination apiserver: {e}"),
        }
    }

    /// Runs `e2e/stack/coordination.sh <args>` on this plane; `Err` describes a failure.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("bash")
            .arg(crate::repo_path("e2e/stack/coordination.sh"))
            .args(args)
            .env("COORDINATION_STATE_DIR", &self.dir)
            .output()
            .map_err(|e| format!("coordination.sh {args:?} did not run: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("coordination.sh {args:?} failed:\n{text}"))
        }
    }

    /// Kills the etcd member of `region` (SIGKILL). The returned guard restarts it when
    /// dropped, also when the test panics.
    #[must_use]
    pub fn member_down(&self, region: &str) -> MemberDown {
        self.command(&["member-down", region])
            .unwrap_or_else(|e| panic!("{e}"));
        MemberDown {
            plane: self.clone(),
            region: region.to_string(),
        }
    }

    /// `coordination.sh status`: one line per process and the apiserver's readiness.
    pub fn status(&self) -> String {
        self.command(&["status"]).unwrap_or_else(|e| e)
    }
}

/// One etcd member killed; restarted (and waited for) on drop.
pub struct MemberDown {
    plane: Coordination,
    pub region: String,
}

impl MemberDown {
    /// Restarts the member now and waits until it is healthy.
    pub fn restore(self) {
        drop(self);
    }
}

impl Drop for MemberDown {
    fn drop(&mut self) {
        if let Err(e) = self.plane.command(&["member-up", &self.region]) {
            eprintln!(
                "restarting the coordination etcd member of {}: {e}",
                self.region
            );
        }
    }
}
