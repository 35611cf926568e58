//! Watches the pods bound to this node (field selector `spec.nodeName`) and keeps one
//! `run_pod` task per pod uid, feeding it every update.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::pod_runner::{Agent, PodMsg, run_pod};

struct Task {
    tx: mpsc::UnboundedSender<PodMsg>,
    handle: JoinHandle<()>,
}

pub async fn run_pod_watch(agent: Arc<Agent>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut tasks: HashMap<String, Task> = HashMap::new();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(seen), Some(uid)) = (relisted.as_mut(), pod.metadata.uid.clone()) {
                    seen.insert(uid);
                }
                deliver(&agent, &mut tasks, pod);
            }
            Ok(watcher::Event::InitDone) => {
                // Pods deleted while the watch was down.
                let seen = relisted.take().unwrap_or_default();
                let gone: Vec<String> = tasks
                    .keys()
                    .filter(|uid| !seen.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(t) = tasks.remove(&uid) {
                        let _ = t.tx.send(PodMsg::Gone);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => deliver(&agent, &mut tasks, pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(t) = pod.metadata.uid.as_ref().and_then(|uid| tasks.remove(uid)) {
                    let _ = t.tx.send(PodMsg::Gone);
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch error (retrying)"),
        }
        tasks.retain(|_, t| !t.handle.is_finished());
    }
    Ok(())
}

fn deliver(agent: &Arc<Agent>, tasks: &mut HashMap<String, Task>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(t) = tasks.get(&uid)
        && !t.handle.is_finished()
    {
        let _ = t.tx.send(PodMsg::Update(Box::new(pod)));
        return;
    }
    if agent.procs.is_stopping() {
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run_pod(agent.clone(), pod, rx));
    tasks.insert(uid, Task { tx, handle });
}
