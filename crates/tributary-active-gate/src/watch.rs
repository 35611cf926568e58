//! Follows one ConfigMap through the API server with the two verbs its RBAC grants (`get`
//! and `watch`, restricted to its name): a GET gives the state and a resourceVersion, a
//! watch from there gives every change. A watch that ends by its timeout resumes from the
//! last resourceVersion seen; one that fails (or an expired resourceVersion) marks the state
//! [`Observed::WatchLost`] until a new GET succeeds, so the gate fails closed in between.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, WatchEvent, WatchParams};
use tokio::sync::watch;

use crate::verdict::Observed;

/// How long one watch request lasts before it is renewed (the API server's own limit is
/// about 30 min; kube's default read timeout is 295 s).
const WATCH_SECONDS: u32 = 240;
/// Back-off between failed attempts.
const RETRY: Duration = Duration::from_secs(1);

fn observed_of(cm: &ConfigMap) -> Observed {
    Observed::Present(cm.data.clone().unwrap_or_default())
}

/// Keeps `state` current until the task is dropped. `restarts` counts failed watches.
pub async fn follow(
    api: Api<ConfigMap>,
    name: String,
    state: watch::Sender<Observed>,
    on_lost: impl Fn(),
) {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(WATCH_SECONDS);
    let lose = |why: String| {
        on_lost();
        tracing::warn!(configmap = %name, "watch lost: {why}");
        state.send_replace(Observed::WatchLost(why));
    };
    loop {
        // A fresh state and the resourceVersion it was read at.
        let mut version = match api.get_opt(&name).await {
            Ok(Some(cm)) => {
                state.send_replace(observed_of(&cm));
                cm.metadata.resource_version.unwrap_or_default()
            }
            Ok(None) => {
                state.send_replace(Observed::Missing);
                // Watch from "any" version: a ConfigMap created meanwhile arrives as ADDED.
                "0".to_string()
            }
            Err(e) => {
                lose(format!("reading ConfigMap {name}: {e}"));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Watch requests, renewed while they end normally.
        'watching: loop {
            let mut stream = match api.watch(&params, &version).await {
                Ok(stream) => stream.boxed(),
                Err(e) => {
                    lose(format!("watching ConfigMap {name}: {e}"));
                    tokio::time::sleep(RETRY).await;
                    break 'watching;
                }
            };
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm)) => {
                        if let Some(v) = cm.metadata.resource_version.clone() {
                            version = v;
                        }
                        state.send_replace(observed_of(&cm));
                    }
                    Ok(WatchEvent::Deleted(cm)) => {
                        if let Some(v) = cm.metadata.resource_version.clone() {
                            version = v;
                        }
                        state.send_replace(Observed::Missing);
                    }
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    Ok(WatchEvent::Error(status)) if status.code == 410 => {
                        // Our resourceVersion is too old: read the state again (not a loss).
                        tracing::debug!(configmap = %name, "watch expired (410): re-reading");
                        break 'watching;
                    }
                    Ok(WatchEvent::Error(status)) => {
                        lose(format!(
                            "the API server ended the watch: {} ({})",
                            status.message, status.code
                        ));
                        tokio::time::sleep(RETRY).await;
                        break 'watching;
                    }
                    Err(e) => {
                        lose(format!("the watch of ConfigMap {name} broke: {e}"));
                        tokio::time::sleep(RETRY).await;
                        break 'watching;
                    }
                }
            }
            // The request's timeout: resume from the last version seen.
        }
    }
}
