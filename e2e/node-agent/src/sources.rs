//! What a pod's env and volumes refer to: ConfigMaps, Secrets, and the pod's own fields
//! (downward API). Lookups are cached for one resolution pass.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;

/// Key → bytes of a ConfigMap (`data` and `binaryData`) or a Secret (`data`).
pub type KeyValues = BTreeMap<String, Vec<u8>>;

pub struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<KeyValues>>,
    secrets: HashMap<String, Option<KeyValues>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Sources {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    /// The ConfigMap's keys, or `None` if it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<KeyValues>, String> {
        if let Some(cached) = self.config_maps.get(name) {
            return Ok(cached.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading configmap {:?}: {e}", name))?;
        let kv = found.map(|cm| {
            let mut kv: KeyValues = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            kv.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            kv
        });
        self.config_maps.insert(name.to_string(), kv.clone());
        Ok(kv)
    }

    /// The Secret's keys, or `None` if it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<KeyValues>, String> {
        if let Some(cached) = self.secrets.get(name) {
            return Ok(cached.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading secret {:?}: {e}", name))?;
        let kv = found.map(|s| {
            let mut kv: KeyValues = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            kv.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            kv
        });
        self.secrets.insert(name.to_string(), kv.clone());
        Ok(kv)
    }

    /// One key of a ConfigMap (`secret = false`) or Secret; `Ok(None)` when `optional` and
    /// missing; an error worded like the kubelet's otherwise.
    pub async fn key(
        &mut self,
        secret: bool,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<Vec<u8>>, String> {
        let kind = if secret { "secret" } else { "configmap" };
        let kv = if secret {
            self.secret(name).await?
        } else {
            self.config_map(name).await?
        };
        match kv {
            None if optional => Ok(None),
            None => Err(format!("{kind} \"{name}\" not found")),
            Some(kv) => match kv.get(key) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {key} in {kind} {}/{name}",
                    self.namespace
                )),
            },
        }
    }
}

/// The node's IP: the host's loopback.
pub const HOST_IP: &str = "127.0.0.1";

/// The pod's IP: an address of its own in 127.0.0.0/8, derived from the pod's uid. Pods share
/// the host's network, but a process that binds its pod IP (e.g. `--listen=$(POD_IP):8080`)
/// does not collide with the same port of another pod, and probes reach it there. Linux
/// routes all of 127.0.0.0/8 to `lo`, so no address needs configuring.
pub fn pod_ip(uid: &str) -> String {
    // FNV-1a: stable across agent restarts, so a pod keeps its IP.
    let h = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let (a, b, c) = ((h >> 16) as u8, (h >> 8) as u8, h as u8);
    format!("127.{}.{}.{}", 1 + a % 254, b, 1 + c % 254)
}

/// Downward API `fieldRef` values, as the kubelet resolves them.
pub fn field_ref(pod: &Pod, node_name: &str, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    if let Some(v) = keyed("metadata.labels['", &meta.labels) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", &meta.annotations) {
        return Ok(v);
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip(meta.uid.as_deref().unwrap_or_default()),
        "status.hostIP" | "status.hostIPs" => HOST_IP.to_string(),
        other => return Err(format!("unsupported fieldRef fieldPath {other:?}")),
    })
}

/// `key="value"` lines, sorted, as in a downward API volume file.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_refs_resolve_like_the_kubelet() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x", "b": "y"}},
            "spec": {"containers": [], "nodeName": "tributary-east"},
        }))
        .expect("pod");
        assert_eq!(field_ref(&pod, "n", "metadata.name").as_deref(), Ok("p"));
        assert_eq!(
            field_ref(&pod, "n", "metadata.namespace").as_deref(),
            Ok("ns")
        );
        assert_eq!(
            field_ref(&pod, "n", "spec.nodeName").as_deref(),
            Ok("tributary-east")
        );
        assert_eq!(
            field_ref(&pod, "n", "status.hostIP").as_deref(),
            Ok("127.0.0.1")
        );
        assert_eq!(
            field_ref(&pod, "n", "metadata.labels['app']").as_deref(),
            Ok("x")
        );
        assert_eq!(
            field_ref(&pod, "n", "metadata.labels").as_deref(),
            Ok("app=\"x\"\nb=\"y\"\n")
        );
        assert!(field_ref(&pod, "n", "spec.bogus").is_err());
    }
}

#[cfg(test)]
mod pod_ip_tests {
    use super::pod_ip;

    #[test]
    fn pod_ips_are_stable_loopback_addresses_off_127_0_0() {
        let a = pod_ip("2f1c0b9e-0000-4000-8000-000000000001");
        assert_eq!(a, pod_ip("2f1c0b9e-0000-4000-8000-000000000001"));
        assert_ne!(a, pod_ip("2f1c0b9e-0000-4000-8000-000000000002"));
        let octets: Vec<u8> = a.split('.').map(|o| o.parse().expect("octet")).collect();
        assert_eq!(octets[0], 127);
        assert!(
            octets[1] >= 1,
            "never 127.0.x.x, where the host's own services listen"
        );
        assert!(octets[3] != 0 && octets[3] != 255);
    }
}
