//! The per-region topology of the local stack (`make stack-up TOPOLOGY=per-region`): a
//! Kubernetes cluster of its own per region (etcd, kube-apiserver, kube-controller-manager,
//! node agent) and, per region, a path of its own to the coordination apiserver. Tests reach
//! each region's cluster as admin, the coordination apiserver through each region's path as
//! the operator, and drive `stack.sh region-down|region-up|region-isolate|region-heal`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::coordination::config_from;

/// How long a request through a coordination path may take: a cut path must show as a
/// failure within this, not hang the test.
pub const PATH_TIMEOUT: Duration = Duration::from_secs(5);

/// The running per-region stack, as described by its env file.
#[derive(Clone)]
pub struct PerRegion {
    /// The regions, in stack order (region i holds coordination etcd member i).
    pub regions: Vec<String>,
    pub state_dir: PathBuf,
    kubeconfigs: BTreeMap<String, PathBuf>,
    coordination_kubeconfigs: BTreeMap<String, PathBuf>,
    /// `system:masters` on the coordination apiserver, directly (no region's path).
    pub coordination_admin: kube::Client,
}

fn upper(region: &str) -> String {
    region.to_uppercase().replace('-', "_")
}

/// A client whose every request ends within `timeout` (connect, write and read), never
/// retried: a dead or cut server shows as an error, not as a hang.
pub async fn bounded_client(path: &std::path::Path, timeout: Duration) -> kube::Client {
    let mut config = config_from(path).await;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // The read timeout counts from the request, not from an idle connection's last read.
    config.reset_reader_on_write = true;
    config.default_retry = false;
    kube::Client::try_from(config).expect("kube client")
}

impl PerRegion {
    /// Connects to the per-region stack; panics with what to run when it is not up (also
    /// under `TRIBUTARY_SKIP_E2E=1`: these tests are `#[ignore]`d, so whoever runs them
    /// asked for the stack).
    pub async fn connect() -> PerRegion {
        let file = crate::env_file_vars();
        let var =
            |k: &str| -> Option<String> { std::env::var(k).ok().or_else(|| file.get(k).cloned()) };
        let topology = var("TRIBUTARY_TOPOLOGY").unwrap_or_default();
        assert!(
            topology == "per-region",
            "the per-region stack is not up (TRIBUTARY_TOPOLOGY={topology:?} in the environment or e2e/.state/env): \
             run `make per-region-test`, or `make stack-up TOPOLOGY=per-region` and then `source e2e/.state/env`"
        );
        let need = |k: &str| -> String {
            var(k).unwrap_or_else(|| {
                panic!("{k} is not set: the per-region stack must run (make stack-up TOPOLOGY=per-region)")
            })
        };
        let regions: Vec<String> = need("TRIBUTARY_REGIONS")
            .split(',')
            .map(str::to_string)
            .collect();
        let mut kubeconfigs = BTreeMap::new();
        let mut coordination_kubeconfigs = BTreeMap::new();
        for r in &regions {
            let u = upper(r);
            kubeconfigs.insert(
                r.clone(),
                PathBuf::from(need(&format!("TRIBUTARY_KUBECONFIG_{u}"))),
            );
            coordination_kubeconfigs.insert(
                r.clone(),
                PathBuf::from(need(&format!("TRIBUTARY_COORDINATION_KUBECONFIG_{u}"))),
            );
        }
        let coordination_admin = bounded_client(
            &PathBuf::from(need("TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG")),
            Duration::from_secs(30),
        )
        .await;
        PerRegion {
            regions,
            state_dir: PathBuf::from(need("TRIBUTARY_STATE_DIR")),
            kubeconfigs,
            coordination_kubeconfigs,
            coordination_admin,
        }
    }

    /// The admin kubeconfig of `region`'s own cluster.
    pub fn kubeconfig(&self, region: &str) -> &std::path::Path {
        self.kubeconfigs
            .get(region)
            .unwrap_or_else(|| panic!("no region {region} in the stack ({:?})", self.regions))
    }

    /// Admin of `region`'s own cluster, each request bounded by `timeout`.
    pub async fn cluster(&self, region: &str, timeout: Duration) -> kube::Client {
        bounded_client(self.kubeconfig(region), timeout).await
    }

    /// The operator's identity on the coordination apiserver, through `region`'s path, each
    /// request bounded by [`PATH_TIMEOUT`]. A fresh client: no connection of an earlier one.
    pub async fn coordination_via(&self, region: &str) -> kube::Client {
        bounded_client(self.coordination_kubeconfig(region), PATH_TIMEOUT).await
    }

    /// The operator's kubeconfig of the coordination apiserver through `region`'s path.
    pub fn coordination_kubeconfig(&self, region: &str) -> &std::path::Path {
        self.coordination_kubeconfigs
            .get(region)
            .unwrap_or_else(|| panic!("no region {region} in the stack ({:?})", self.regions))
    }

    /// Runs `e2e/stack/stack.sh <args>` on this stack; `Err` describes a failure.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        crate::run_script(
            "e2e/stack/stack.sh",
            args,
            ("TRIBUTARY_STATE_DIR", &self.state_dir),
        )
        .map(|out| crate::output_text(&out))
    }

    /// `stack.sh status` (every process of the topology), for failure messages.
    pub fn status(&self) -> String {
        self.command(&["status"]).unwrap_or_else(|e| e)
    }

    /// `stack.sh region-down <region>`. The guard runs `region-up` when dropped, also when
    /// the test panics.
    #[must_use]
    pub fn region_down(&self, region: &str) -> RegionFault {
        self.command(&["region-down", region])
            .unwrap_or_else(|e| panic!("{e}"));
        RegionFault {
            stack: self.clone(),
            region: region.to_string(),
            undo: "region-up",
        }
    }

    /// `stack.sh region-isolate <region>`. The guard runs `region-heal` when dropped.
    #[must_use]
    pub fn region_isolate(&self, region: &str) -> RegionFault {
        self.command(&["region-isolate", region])
            .unwrap_or_else(|e| panic!("{e}"));
        RegionFault {
            stack: self.clone(),
            region: region.to_string(),
            undo: "region-heal",
        }
    }
}

/// A region taken down or isolated; undone on drop.
pub struct RegionFault {
    stack: PerRegion,
    pub region: String,
    undo: &'static str,
}

impl RegionFault {
    /// Undoes the fault now (region-up or region-heal), panicking when that fails.
    pub fn restore(mut self) {
        // Taken, so that the drop that follows does nothing.
        let undo = std::mem::take(&mut self.undo);
        self.stack
            .command(&[undo, &self.region])
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for RegionFault {
    fn drop(&mut self) {
        if self.undo.is_empty() {
            return;
        }
        if let Err(e) = self.stack.command(&[self.undo, &self.region]) {
            eprintln!("{} {}: {e}", self.undo, self.region);
        }
    }
}
