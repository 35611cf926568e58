//! The coordination plane of the local stack (`e2e/stack/coordination.sh`): a kube-apiserver
//! over a three-member etcd, one member per region. Tests reach it through the operator's own
//! kubeconfig (`TRIBUTARY_COORDINATION_KUBECONFIG`, Lease verbs only) and, for setup, through
//! the admin kubeconfig beside it; they kill and restart single etcd members. A
//! [`BareCluster`] (an API server over an etcd of the test's own) stands in for an operator's
//! own cluster where no operator of a shared stack may see the test's objects.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::blocking::free_port;

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

pub(crate) async fn config_from(path: &std::path::Path) -> kube::Config {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()))
}

async fn client_from(path: &std::path::Path) -> kube::Client {
    let mut config = config_from(path).await;
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
        crate::run_script(
            "e2e/stack/coordination.sh",
            args,
            ("COORDINATION_STATE_DIR", &self.dir),
        )
        .map(|out| crate::output_text(&out))
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

    /// For a failed test's output: the Leases of namespace `ns` (holder, epoch, renewal,
    /// annotations), or why they could not be read.
    pub async fn lease_dump(&self, ns: &str) -> String {
        let leases: Api<Lease> = Api::namespaced(self.admin.clone(), ns);
        match leases.list(&Default::default()).await {
            Ok(list) => list
                .items
                .iter()
                .map(|l| {
                    let spec = l.spec.clone().unwrap_or_default();
                    format!(
                        "{}: holder {:?}, epoch (leaseTransitions) {:?}, renewed {:?}, annotations {:?}",
                        l.metadata.name.as_deref().unwrap_or_default(),
                        spec.holder_identity,
                        spec.lease_transitions,
                        spec.renew_time.map(|t| t.0.to_string()),
                        l.metadata.annotations.clone().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("listing Leases in {ns} on the coordination apiserver: {e}"),
        }
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

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Process {
    pub name: String,
    child: std::process::Child,
    pub log: PathBuf,
}

impl Process {
    /// Starts `bin args...`, stdout and stderr appended to `log`.
    pub fn start(
        name: &str,
        bin: &std::path::Path,
        args: &[String],
        envs: &[(&str, &std::ffi::OsStr)],
        log: PathBuf,
    ) -> Process {
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().expect("log handle");
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args)
            .stdout(out)
            .stderr(err)
            .stdin(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", bin.display()));
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare Kubernetes API server of the test's own, over an etcd of its own (no
/// controller-manager, no nodes, so no pods run): "the operator's own cluster" for an
/// operator run out-of-cluster, where no other operator of the shared stack reconciles what
/// the test creates. Uses the coordination plane's CA and admin identity. Stopped and
/// removed when dropped.
pub struct BareCluster {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    // Dropped in order: the API server before its etcd.
    pub apiserver: Process,
    pub etcd: Process,
}

impl Drop for BareCluster {
    fn drop(&mut self) {
        let _ = self.apiserver.child.kill();
        let _ = self.apiserver.child.wait();
        let _ = self.etcd.child.kill();
        let _ = self.etcd.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Coordination {
    /// Starts a [`BareCluster`] named `name` under the plane's state dir, waits until it
    /// serves, and installs this checkout's CRDs in it.
    pub async fn bare_cluster(&self, name: &str) -> BareCluster {
        let bins = self.command(&["bins"]).unwrap_or_else(|e| panic!("{e}"));
        let mut lines = bins.lines();
        let etcd_bin = PathBuf::from(lines.next().expect("etcd binary"));
        let apiserver_bin = PathBuf::from(lines.next().expect("kube-apiserver binary"));
        let dir = self.dir.join(format!("bare-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etcd")).expect("bare cluster dir");
        let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Process::start(
            "etcd",
            &etcd_bin,
            &[
                format!("--name=bare-{name}"),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=bare-{name}={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &[],
            dir.join("etcd.log"),
        );
        let pki = self.dir.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let apiserver = Process::start(
            "kube-apiserver",
            &apiserver_bin,
            &[
                format!("--secure-port={api_port}"),
                "--advertise-address=127.0.0.1".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--etcd-servers={etcd_url}"),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                "--authorization-mode=RBAC".into(),
                "--anonymous-auth=false".into(),
                "--service-account-issuer=https://bare.tributary.invalid".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.0.2.0/24".into(),
                "--endpoint-reconciler-type=none".into(),
                "--enable-priority-and-fairness=false".into(),
                "--profiling=false".into(),
            ],
            &[],
            dir.join("kube-apiserver.log"),
        );
        // The admin kubeconfig of the plane, pointed at this server (same CA, same identity).
        let admin = std::fs::read_to_string(self.dir.join("kubeconfig")).expect("admin kubeconfig");
        let server_line = admin
            .lines()
            .find(|l| l.trim_start().starts_with("server:"))
            .expect("kubeconfig has a server")
            .to_string();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            admin.replace(
                &server_line,
                &format!("    server: https://127.0.0.1:{api_port}"),
            ),
        )
        .expect("write kubeconfig");
        let client = client_from(&kubeconfig).await;
        let mut cluster = BareCluster {
            client,
            kubeconfig,
            dir,
            apiserver,
            etcd,
        };
        let start = std::time::Instant::now();
        loop {
            if cluster.client.apiserver_version().await.is_ok() {
                let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
                if namespaces
                    .get_opt("default")
                    .await
                    .is_ok_and(|n| n.is_some())
                {
                    break;
                }
            }
            assert!(
                cluster.apiserver.running() && cluster.etcd.running(),
                "the bare cluster's processes exited:\n{}\n{}",
                cluster.etcd.log_tail(20),
                cluster.apiserver.log_tail(20)
            );
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the bare cluster did not serve within 90 s:\n{}",
                cluster.apiserver.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        crate::kube_util::install_crds(&cluster.client).await;
        cluster
    }
}
