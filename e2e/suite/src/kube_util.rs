//! Kubernetes helpers: per-test namespaces with diagnostics, YAML apply, polling waits.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{self, Scope};

use crate::Stack;

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

/// A fresh namespace for one test. [`TestNamespace::run`] deletes it afterwards and, when the
/// test failed, prints its pods, events and the tails of the pods' process logs first.
pub struct TestNamespace {
    pub name: String,
    pub stack: Stack,
}

impl TestNamespace {
    /// Runs `test` in a new namespace named `<prefix>-<random>`.
    pub async fn run<F, Fut>(stack: &Stack, prefix: &str, test: F)
    where
        F: FnOnce(TestNamespace) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let namespaces: Api<Namespace> = Api::all(stack.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"tributary.dev/e2e": "true"}}
        }))
        .expect("namespace object");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // The namespace's default ServiceAccount appears through the real SA controller.
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(stack.client.clone(), &name);
        wait_until("the default ServiceAccount", crate::WAIT, || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;

        let result = tokio::spawn(test(TestNamespace {
            name: name.clone(),
            stack: stack.clone(),
        }))
        .await;
        if result.is_err() {
            dump_namespace(stack, &name).await;
        }
        let _ = namespaces.delete(&name, &DeleteParams::default()).await;
        if let Err(e) = result {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.stack.client.clone(), &self.name)
    }
}

pub(crate) fn rand_u32() -> u32 {
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

/// Prints what a person debugging a failed test looks at first.
pub async fn dump_namespace(stack: &Stack, ns: &str) {
    eprintln!("===== diagnostics for namespace {ns} =====");
    let pods: Api<Pod> = Api::namespaced(stack.client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default()).await {
        for p in list {
            let name = p.metadata.name.clone().unwrap_or_default();
            let status = p.status.clone().unwrap_or_default();
            eprintln!(
                "pod {name}: node={:?} phase={:?} containers={}",
                p.spec.as_ref().and_then(|s| s.node_name.clone()),
                status.phase,
                serde_json::to_string(&status.container_statuses).unwrap_or_default()
            );
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let region = node.strip_prefix("tributary-").unwrap_or_default();
            for c in p.spec.iter().flat_map(|s| s.containers.iter()) {
                let log = format!("agent-{region}/pods/{ns}_{name}/{}.log", c.name);
                eprintln!("--- tail of {log}:\n{}", stack.log_tail(&log, 30));
            }
        }
    }
    let events: Api<Event> = Api::namespaced(stack.client.clone(), ns);
    if let Ok(list) = events.list(&ListParams::default()).await {
        for e in list {
            eprintln!(
                "event {} {}/{}: {} {}",
                e.type_.unwrap_or_default(),
                e.involved_object.kind.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
        }
    }
    eprintln!("===== end of diagnostics for {ns} =====");
}

/// Parses multi-document YAML into objects (empty documents dropped).
pub fn parse_yaml_docs(yaml: &str) -> Vec<DynamicObject> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| {
            let v = serde_yaml::Value::deserialize(doc).expect("valid YAML");
            (!v.is_null()).then(|| serde_yaml::from_value(v).expect("a Kubernetes object"))
        })
        .collect()
}

/// The API for an object's kind, in `namespace` when the kind is namespaced.
pub async fn api_for(
    client: &kube::Client,
    obj: &DynamicObject,
    namespace: &str,
) -> kube::Result<Api<DynamicObject>> {
    let types = obj.types.as_ref().expect("object has apiVersion and kind");
    let gvk = GroupVersionKind::try_from(types).expect("parsable apiVersion");
    let (resource, caps) = discovery::pinned_kind(client, &gvk).await?;
    Ok(match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    })
}

/// Server-side applies every object of `yaml` (field manager `tributary-e2e`).
pub async fn apply_yaml(
    client: &kube::Client,
    namespace: &str,
    yaml: &str,
) -> kube::Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for obj in parse_yaml_docs(yaml) {
        let api = api_for(client, &obj, namespace).await?;
        let name = obj.metadata.name.clone().expect("object has a name");
        let pp = PatchParams::apply("tributary-e2e").force();
        applied.push(api.patch(&name, &pp, &Patch::Apply(&obj)).await?);
    }
    Ok(applied)
}

/// Creates one object (POST), returning the API server's answer.
pub async fn create(
    client: &kube::Client,
    namespace: &str,
    obj: &DynamicObject,
) -> kube::Result<DynamicObject> {
    api_for(client, obj, namespace)
        .await?
        .create(&PostParams::default(), obj)
        .await
}

/// Replaces one object (PUT) with the current resourceVersion.
pub async fn replace(
    client: &kube::Client,
    namespace: &str,
    obj: &DynamicObject,
) -> kube::Result<DynamicObject> {
    let api = api_for(client, obj, namespace).await?;
    let name = obj.metadata.name.clone().expect("object has a name");
    let current = api.get(&name).await?;
    let mut next = obj.clone();
    next.metadata.resource_version = current.metadata.resource_version;
    api.replace(&name, &PostParams::default(), &next).await
}

/// Applies the generated CRDs from `crds/` (server-side, idempotent) and waits until the API
/// server reports each one Established.
pub async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in tributary_api::crds() {
        let name = crd.metadata.name.clone().expect("CRD name");
        let committed = std::fs::read_to_string(
            crate::repo_path("crds").join(tributary_api::crd_file_name(&crd)),
        )
        .expect("crds/ holds the generated CRD");
        let obj: CustomResourceDefinition =
            serde_yaml::from_str(&committed).expect("CRD YAML parses");
        api.patch(
            &name,
            &PatchParams::apply("tributary-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        wait_until(&format!("CRD {name} Established"), crate::WAIT, || async {
            let c = api.get(&name).await.ok()?;
            let established = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

/// The pid and restart count of a pod's first container while it runs, from the node agent's
/// `agent://<pid>` container id.
pub fn running_container(pod: &Pod) -> Option<(i32, i32)> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    status.state.as_ref()?.running.as_ref()?;
    let pid = status
        .container_id
        .as_ref()?
        .strip_prefix("agent://")?
        .parse()
        .ok()?;
    Some((pid, status.restart_count))
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
}
