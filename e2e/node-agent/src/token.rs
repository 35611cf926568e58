//! ServiceAccount tokens for a pod, from the TokenRequest API and bound to the pod (so they
//! die with it), refreshed at 80% of their lifetime as the kubelet does. Also the pod's
//! kubeconfig: the agent's server and CA, with a `tokenFile` that refreshes in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// Where the agent's kubeconfig says the API server is.
#[derive(Debug, Clone)]
pub struct ApiServer {
    pub server: String,
    pub ca_data: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
}

impl ApiServer {
    /// `(host, port)` of the server URL, for `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub fn host_port(&self) -> (String, String) {
        let rest = self.server.split("://").nth(1).unwrap_or(&self.server);
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').unwrap_or((bracketed, ""));
            return (
                host.to_string(),
                after.strip_prefix(':').unwrap_or("443").to_string(),
            );
        }
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (authority.to_string(), "443".into()),
        }
    }
}

struct Cached {
    token: String,
    refresh_at: Timestamp,
}

/// Tokens of one pod, keyed by audience and requested lifetime.
pub struct PodTokens {
    client: kube::Client,
    cache: HashMap<(String, i64), Cached>,
}

impl PodTokens {
    pub fn new(client: kube::Client) -> Self {
        PodTokens {
            client,
            cache: HashMap::new(),
        }
    }

    /// A token for the pod's ServiceAccount; `audience` `None` means the API server's.
    pub async fn token(
        &mut self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String> {
        let key = (audience.unwrap_or_default().to_string(), expiration_seconds);
        if let Some(c) = self.cache.get(&key)
            && Timestamp::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
        let answer = api
            .create_token_request(&sa, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("requesting a token for serviceaccount {ns}/{sa}: {e}"))?;
        let status = answer.status.ok_or_else(|| {
            format!("token request for serviceaccount {ns}/{sa} returned no status")
        })?;
        let now = Timestamp::now();
        let lifetime = status.expiration_timestamp.0.duration_since(now);
        // Refresh at 80% of the lifetime, and at least daily (as the kubelet's token manager).
        let refresh_in =
            SignedDuration::from_secs((lifetime.as_secs() * 8 / 10).clamp(0, 24 * 3600));
        let refresh_at = now.checked_add(refresh_in).unwrap_or(now);
        self.cache.insert(
            key,
            Cached {
                token: status.token.clone(),
                refresh_at,
            },
        );
        Ok(status.token)
    }
}

/// Writes `<dir>/token` and `<dir>/kubeconfig` (which reads the token file, so a refreshed
/// token reaches long-running clients: client-go and kube-rs both re-read `tokenFile`).
pub fn write_pod_kubeconfig(
    dir: &Path,
    api: &ApiServer,
    namespace: &str,
    token: &str,
) -> std::io::Result<PathBuf> {
    let token_path = dir.join("token");
    write_if_changed(&token_path, token.as_bytes())?;
    let mut cluster = serde_json::json!({"server": api.server});
    if let Some(data) = &api.ca_data {
        cluster["certificate-authority-data"] = data.clone().into();
    } else if let Some(file) = &api.ca_file {
        cluster["certificate-authority"] = file.display().to_string().into();
    }
    if api.insecure {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tributary-e2e", "cluster": cluster}],
        "users": [{"name": "pod", "user": {"tokenFile": token_path.display().to_string()}}],
        "contexts": [{"name": "pod", "context": {"cluster": "tributary-e2e", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    });
    let path = dir.join("kubeconfig");
    write_if_changed(
        &path,
        serde_json::to_string_pretty(&kubeconfig)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(path)
}

/// Atomic replace (write + rename) when the content differs.
pub fn write_if_changed(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_host_and_port_come_from_the_server_url() {
        let api = |s: &str| ApiServer {
            server: s.into(),
            ca_data: None,
            ca_file: None,
            insecure: false,
        };
        assert_eq!(
            api("https://127.0.0.1:16443").host_port(),
            ("127.0.0.1".into(), "16443".into())
        );
        assert_eq!(
            api("https://kube.example/").host_port(),
            ("kube.example".into(), "443".into())
        );
        assert_eq!(
            api("https://[::1]:6443").host_port(),
            ("::1".into(), "6443".into())
        );
    }
}
