//! The agent's Node: registration, the Ready heartbeat (Node status + node Lease), and the
//! "region down" mark written when the agent stops.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const AGENT_LABEL: &str = "tributary.dev/node-agent";
const FIELD_MANAGER: &str = "tributary-node-agent";
pub const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// A Ready condition older than this is stale (its agent died without saying so).
const STALE_AFTER: Duration = Duration::from_secs(45);

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Ready=True with a recent heartbeat: an agent killed with SIGKILL stops counting after
/// `STALE_AFTER`, before the node lifecycle controller notices.
pub fn node_is_ready(node: &Node) -> bool {
    let Some(ready) = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
    else {
        return false;
    };
    let fresh = ready
        .last_heartbeat_time
        .as_ref()
        .is_some_and(|t| Timestamp::now().duration_since(t.0).unsigned_abs() < STALE_AFTER);
    ready.status == "True" && fresh
}

#[derive(Clone)]
pub struct NodeRegistration {
    client: kube::Client,
    pub name: String,
    region: String,
    ready_since: Time,
    uid: String,
    /// Where the apiserver reaches this node's log endpoint (0: none).
    kubelet_port: u16,
}

impl NodeRegistration {
    pub fn new(client: kube::Client, name: String, region: String, kubelet_port: u16) -> Self {
        NodeRegistration {
            client,
            name,
            region,
            ready_since: now(),
            uid: String::new(),
            kubelet_port,
        }
    }

    /// Creates or updates the Node (labels, spec) and marks it Ready.
    pub async fn register(&mut self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    REGION_LABEL: self.region,
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                    AGENT_LABEL: "true",
                },
            },
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let node = nodes.patch(&self.name, &pp, &Patch::Apply(&node)).await?;
        self.uid = node.metadata.uid.unwrap_or_default();
        self.heartbeat().await
    }

    /// Node status with Ready=True and a renewed node Lease.
    pub async fn heartbeat(&self) -> anyhow::Result<()> {
        self.write_status(
            true,
            "KubeletReady",
            "tributary node agent is posting ready status",
        )
        .await?;
        self.renew_lease().await
    }

    /// Ready=False, reason RegionDown: the agent is stopping (the region is being lost).
    pub async fn mark_down(&self) -> anyhow::Result<()> {
        self.write_status(
            false,
            "RegionDown",
            "tributary node agent stopped: region down",
        )
        .await
    }

    async fn write_status(&self, ready: bool, reason: &str, message: &str) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let t = now();
        let since = if ready {
            self.ready_since.clone()
        } else {
            t.clone()
        };
        let resources =
            json!({"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"});
        let pressure = |type_: &str, reason: &str| {
            json!({"type": type_, "status": "False", "reason": reason, "message": "not monitored by the node agent",
                   "lastHeartbeatTime": t, "lastTransitionTime": self.ready_since})
        };
        let status = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ],
                "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": reason, "message": message,
                     "lastHeartbeatTime": t, "lastTransitionTime": since},
                    pressure("MemoryPressure", "KubeletHasSufficientMemory"),
                    pressure("DiskPressure", "KubeletHasNoDiskPressure"),
                    pressure("PIDPressure", "KubeletHasSufficientPID"),
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
                "nodeInfo": {
                    "machineID": self.name, "systemUUID": self.name, "bootID": "",
                    "kernelVersion": "", "osImage": "tributary node agent (local processes)",
                    "containerRuntimeVersion": "agent://0", "kubeletVersion": "v1.35.0-tributary-node-agent",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
                },
            },
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        nodes
            .patch_status(&self.name, &pp, &Patch::Apply(&status))
            .await?;
        Ok(())
    }

    async fn renew_lease(&self) -> anyhow::Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}],
            },
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": MicroTime(Timestamp::now()),
            },
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        leases.patch(&self.name, &pp, &Patch::Apply(&lease)).await?;
        Ok(())
    }

    /// Keeps the node Ready until the process ends; errors are logged and retried.
    pub async fn run_heartbeat(self) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(node = %self.name, error = %e, "node heartbeat failed (retrying)");
            }
        }
    }
}
