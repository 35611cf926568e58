//! Where the active-region Leases of ConsumerGroupFailovers live: the operator's own cluster
//! (the stretched topology, the default) or a coordination API server reached by kubeconfig
//! (`--coordination-kubeconfig`), whose etcd keeps a voting member in three regions
//! (docs/coordination.md). The compare-and-swap on the Lease is the only agreement primitive;
//! this module only chooses the server and bounds how long a request to it may take.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// The longest a request to a separate coordination API server may take, retries included:
/// a renewal that cannot finish must fail in time to be counted against the Lease's
/// duration (the smallest `failover.leaseDuration` is 5 s), not hang in a client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Lease server and how messages name it.
#[derive(Clone)]
pub struct LeaseServer {
    pub client: kube::Client,
    /// `the operator's own cluster` or `the coordination API server <url>`.
    pub description: String,
    /// A server apart from the operator's own cluster: the holder fences itself when it
    /// cannot renew there (`crate::fence`). In its own cluster there is nothing to fence
    /// against: the operator that cannot reach it cannot scale anything either, and no other
    /// operator can take the Lease from a server nobody reaches.
    pub separate: bool,
}

impl std::fmt::Debug for LeaseServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// A request to the Lease server, bounded on a separate coordination server by what is left
/// of the holder's fence TTL: a hanging request must not carry the holder past its fence.
pub async fn lease_request<T>(
    server: &LeaseServer,
    fences: &crate::fence::Fences,
    fence_key: &str,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    if !server.separate {
        return request.await;
    }
    let bound = fences.request_bound(fence_key, Duration::from_millis(500), REQUEST_TIMEOUT);
    match tokio::time::timeout(bound, request).await {
        Ok(answer) => answer,
        Err(_) => Err(kube::Error::Service(
            format!(
                "request timed out after {:.1}s (the holder's fence is due then)",
                bound.as_secs_f64()
            )
            .into(),
        )),
    }
}

/// The Lease server: `kubeconfig`'s cluster, else the operator's own (`own`, unchanged).
pub async fn lease_server(
    own: &kube::Client,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<LeaseServer> {
    let Some(path) = kubeconfig else {
        return Ok(LeaseServer {
            client: own.clone(),
            description: "the operator's own cluster".into(),
            separate: false,
        });
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading --coordination-kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("--coordination-kubeconfig {}", path.display()))?;
    let config = bounded(config);
    let description = format!("the coordination API server {}", config.cluster_url);
    let client = kube::Client::try_from(config).with_context(|| {
        format!(
            "connecting to {description} (--coordination-kubeconfig {})",
            path.display()
        )
    })?;
    Ok(LeaseServer {
        client,
        description,
        separate: true,
    })
}

/// A client config whose every request ends within [`REQUEST_TIMEOUT`]: no silent retries of
/// 503/504 (kube's default retries them up to 15 times with back-off, which would hide a lost
/// quorum for minutes), bounded connect and response times.
pub fn bounded(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    // The read timeout counts from the request, not from when a pooled connection went idle.
    config.reset_reader_on_write = true;
    config
}

/// What to say after a failed Lease request that got no answer in time (a client timeout, or
/// the server's 504 or `500 etcdserver: request timed out` when its etcd cannot commit): the
/// quorum is the likely cause. Empty for other failures, whose own message says enough (409,
/// 403, 404, ...).
pub fn no_answer_hint(err: &kube::Error) -> &'static str {
    let timed_out = match err {
        kube::Error::Api(s) => {
            s.code == 504 || (s.code >= 500 && s.message.contains("etcdserver:"))
        }
        other => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(other);
            let mut found = false;
            while let Some(e) = source {
                let io_timeout = e
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
                if io_timeout || e.to_string().contains("timed out") {
                    found = true;
                    break;
                }
                source = e.source();
            }
            found
        }
    };
    if timed_out {
        " (no answer in time: is the coordination API server reachable, and does its etcd have a quorum?)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_request_without_an_answer_says_to_check_the_quorum() {
        let gateway_timeout = kube::Error::Api(
            kube::core::Status {
                code: 504,
                reason: "Timeout".into(),
                ..Default::default()
            }
            .boxed(),
        );
        assert!(no_answer_hint(&gateway_timeout).contains("quorum"));
        let etcd_timeout = kube::Error::Api(
            kube::core::Status {
                code: 500,
                message: "etcdserver: request timed out".into(),
                ..Default::default()
            }
            .boxed(),
        );
        assert!(no_answer_hint(&etcd_timeout).contains("quorum"));
        let client_timeout = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "deadline has elapsed",
        )));
        assert!(no_answer_hint(&client_timeout).contains("quorum"));
        let conflict = kube::Error::Api(
            kube::core::Status {
                code: 409,
                reason: "Conflict".into(),
                ..Default::default()
            }
            .boxed(),
        );
        assert_eq!(no_answer_hint(&conflict), "");
    }

    #[test]
    fn a_coordination_client_never_waits_longer_than_the_request_timeout() {
        let config = bounded(kube::Config::new(
            "https://coordination.example:6443".parse().expect("url"),
        ));
        assert!(
            !config.default_retry,
            "503/504 must reach the reconcile, not be retried"
        );
        for t in [
            config.connect_timeout,
            config.read_timeout,
            config.write_timeout,
        ] {
            assert_eq!(t, Some(REQUEST_TIMEOUT));
        }
        assert!(config.reset_reader_on_write);
        // The smallest leaseDuration the API accepts is 5 s: a request must not outlast it.
        assert!(REQUEST_TIMEOUT <= Duration::from_secs(5));
    }
}
