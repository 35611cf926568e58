//! The per-region topology of the local stack on its real processes (`make per-region-test`):
//! each region is a Kubernetes cluster of its own that runs its own pods; losing a region
//! loses its cluster but not the coordination quorum; isolating a region cuts only its path
//! to the coordination apiserver. `#[ignore]`d (the default stack is the stretched one); when
//! run without the per-region stack, every test fails with what to run.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tributary_e2e::per_region::PATH_TIMEOUT;
use tributary_e2e::{PerRegion, WAIT, wait_until};

/// The tests take regions down and cut paths: never two at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests to a region's own apiserver: short, so that a dead one fails fast.
const API_TIMEOUT: Duration = Duration::from_secs(5);

const REGION_LABEL: &str = "topology.kubernetes.io/region";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{prefix}-{nanos:08x}")
}

/// `agent://<pid>` of the pod's (first) container, empty if none.
fn container_id(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.container_id.clone())
        .unwrap_or_default()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The region's one Node, `tributary-<region>`, labelled with the region and Ready.
async fn assert_node_ready(stack: &PerRegion, region: &str) {
    let nodes: Api<Node> = Api::all(stack.cluster(region, API_TIMEOUT).await);
    let name = format!("tributary-{region}");
    let node = wait_until(
        &format!("node {name} Ready in {region}'s own cluster"),
        WAIT,
        || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            let names: Vec<String> = list
                .items
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            assert_eq!(
                names,
                vec![name.clone()],
                "{region}'s cluster must hold exactly its own node"
            );
            list.items.into_iter().find(node_ready)
        },
    )
    .await;
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get(REGION_LABEL).map(String::as_str),
        Some(region),
        "node {name}'s region label"
    );
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"tributary.dev/e2e": "true"}}
    }))
    .expect("namespace object");
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

/// A Deployment of one `sleep` pod (the project's image: the node agent runs its command).
async fn create_sleeper(client: &kube::Client, ns: &str, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "sleep",
                        "image": "local/tributary:dev",
                        "command": ["sleep", "3600"]
                    }]
                }
            }
        }
    }))
    .expect("deployment object");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap_or_else(|e| panic!("creating Deployment {ns}/{name}: {e}"));
}

/// The Deployment's Running pod, on `node`.
async fn running_pod(client: &kube::Client, ns: &str, app: &str, node: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_until(
        &format!("a Running pod of Deployment {ns}/{app} on {node}"),
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                let on = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                on && running
            })
        },
    )
    .await
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
}

fn lease(name: &str, holder: &str, epoch: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_transitions: Some(epoch),
            lease_duration_seconds: Some(10),
            ..Default::default()
        }),
    }
}

/// A Lease write (create, then a compare-and-swap move) as the operator, through `region`'s
/// coordination path.
async fn write_lease_via(stack: &PerRegion, region: &str, ns: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(stack.coordination_via(region).await, ns);
    let name = unique(&format!("via-{region}"));
    let created = leases
        .create(&PostParams::default(), &lease(&name, region, 1))
        .await?;
    let mut moved = created.clone();
    moved.spec = lease(&name, region, 2).spec;
    leases
        .replace(&name, &PostParams::default(), &moved)
        .await?;
    Ok(())
}

const COORDINATION_NS: &str = "tributary-e2e-per-region";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the per-region stack: make per-region-test"]
async fn every_region_runs_its_own_cluster_with_its_node_the_crds_and_its_own_pods() {
    let stack = PerRegion::connect().await;
    let _one = ONE_AT_A_TIME.lock().await;
    for region in &stack.regions {
        assert_node_ready(&stack, region).await;
        let crds: Api<CustomResourceDefinition> =
            Api::all(stack.cluster(region, API_TIMEOUT).await);
        for crd in tributary_api::crds() {
            let name = crd.metadata.name.clone().expect("CRD name");
            let c = crds.get(&name).await.unwrap_or_else(|e| {
                panic!(
                    "CRD {name} on {region}'s apiserver: {e}\n{}",
                    stack.status()
                )
            });
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            assert!(
                established,
                "CRD {name} is not Established on {region}'s apiserver"
            );
        }
    }
    // A Deployment in the first region's cluster runs there, and the others never see it.
    let (east, others) = stack.regions.split_first().expect("regions");
    let client = stack.cluster(east, API_TIMEOUT).await;
    let ns = unique("per-region");
    create_namespace(&client, &ns).await;
    create_sleeper(&client, &ns, "sleeper").await;
    let pod = running_pod(&client, &ns, "sleeper", &format!("tributary-{east}")).await;
    eprintln!(
        "Deployment {ns}/sleeper in {east}: pod {} Running on tributary-{east}",
        pod.metadata.name.unwrap_or_default()
    );
    for other in others {
        let namespaces: Api<Namespace> = Api::all(stack.cluster(other, API_TIMEOUT).await);
        let seen = namespaces
            .get_opt(&ns)
            .await
            .unwrap_or_else(|e| panic!("{other}'s apiserver: {e}"));
        assert!(
            seen.is_none(),
            "namespace {ns} of {east}'s cluster shows up in {other}'s"
        );
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the per-region stack: make per-region-test"]
async fn region_down_takes_only_its_own_cluster_and_the_coordination_quorum_survives() {
    let stack = PerRegion::connect().await;
    let _one = ONE_AT_A_TIME.lock().await;
    let (east, west) = (stack.regions[0].clone(), stack.regions[1].clone());
    let client = stack.cluster(&east, API_TIMEOUT).await;
    let ns = unique("region-down");
    create_namespace(&client, &ns).await;
    create_sleeper(&client, &ns, "sleeper").await;
    let before = running_pod(&client, &ns, "sleeper", &format!("tributary-{east}")).await;
    let pid_before = container_id(&before);
    create_namespace(&stack.coordination_admin, COORDINATION_NS).await;

    let t = Instant::now();
    let down = stack.region_down(&east);
    eprintln!("region-down {east} took {:?}", t.elapsed());

    // East's cluster is gone, the pod's process with it; west's cluster is fine.
    let nodes: Api<Node> = Api::all(stack.cluster(&east, API_TIMEOUT).await);
    let gone = nodes.list(&ListParams::default()).await;
    assert!(
        gone.is_err(),
        "{east}'s apiserver must be gone after region-down, got {gone:?}"
    );
    let pid: Option<i32> = pid_before
        .strip_prefix("agent://")
        .and_then(|p| p.parse().ok());
    if let Some(pid) = pid {
        assert!(
            !tributary_e2e::kube_util::process_alive(pid),
            "the pod's process {pid} in {east} survived region-down"
        );
    }
    assert_node_ready(&stack, &west).await;

    // The coordination quorum survives one region (2 of 3 etcd members): a Lease write
    // through west's path succeeds; east's path is gone with its region.
    let t = Instant::now();
    write_lease_via(&stack, &west, COORDINATION_NS)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "with {east} down, a Lease write through {west}'s path failed: {e}\n{}",
                stack.status()
            )
        });
    eprintln!(
        "Lease write through {west} with {east} down: {:?}",
        t.elapsed()
    );
    assert!(
        write_lease_via(&stack, &east, COORDINATION_NS)
            .await
            .is_err(),
        "{east}'s coordination path must be gone with its region"
    );

    let t = Instant::now();
    down.restore();
    eprintln!("region-up {east} took {:?}", t.elapsed());
    assert_node_ready(&stack, &east).await;
    let client = stack.cluster(&east, API_TIMEOUT).await;
    // The pod's status outlives its process (as with a dead kubelet): wait for a new process.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let after = wait_until(
        &format!("the sleeper pod running again in {east} (a new process)"),
        WAIT,
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=sleeper"))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                let id = container_id(p);
                !id.is_empty()
                    && id != pid_before
                    && tributary_e2e::kube_util::running_container(p).is_some()
            })
        },
    )
    .await;
    eprintln!(
        "after region-up: pod {} running again on tributary-{east} ({})",
        after.metadata.name.clone().unwrap_or_default(),
        container_id(&after)
    );
    wait_until(
        &format!("a Lease write through {east}'s path after region-up"),
        Duration::from_secs(30),
        || async { write_lease_via(&stack, &east, COORDINATION_NS).await.ok() },
    )
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the per-region stack: make per-region-test"]
async fn an_isolated_region_loses_only_its_path_to_the_coordination_apiserver() {
    let stack = PerRegion::connect().await;
    let _one = ONE_AT_A_TIME.lock().await;
    let (east, west) = (stack.regions[0].clone(), stack.regions[1].clone());
    create_namespace(&stack.coordination_admin, COORDINATION_NS).await;
    let name = unique("isolate");
    let via_east: Api<Lease> =
        Api::namespaced(stack.coordination_via(&east).await, COORDINATION_NS);
    via_east
        .create(&PostParams::default(), &lease(&name, &east, 1))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a Lease write through {east}'s path: {e}\n{}",
                stack.status()
            )
        });
    // The client keeps that connection open: isolation must stop it too, not only new ones.
    via_east
        .get(&name)
        .await
        .expect("a Lease read through east's path");

    let isolated = stack.region_isolate(&east);
    // Idempotent.
    stack
        .command(&["region-isolate", &east])
        .unwrap_or_else(|e| panic!("a second region-isolate: {e}"));

    let t = Instant::now();
    let on_open = via_east.get(&name).await;
    let on_open_took = t.elapsed();
    assert!(
        on_open.is_err(),
        "isolated {east}: a request on its open connection answered: {on_open:?}"
    );
    let t = Instant::now();
    let fresh = write_lease_via(&stack, &east, COORDINATION_NS).await;
    let fresh_took = t.elapsed();
    assert!(
        fresh.is_err(),
        "isolated {east}: a request on a new connection answered"
    );
    // A partition hangs (packets dropped) until the client gives up, rather than refusing at
    // once (a refusal takes milliseconds; the client's timers are not exact to the second).
    for (what, took) in [("open", on_open_took), ("new", fresh_took)] {
        assert!(
            took >= PATH_TIMEOUT / 2,
            "isolated {east}: a request on a {what} connection failed after {took:?}, before the client's timeout: a refusal, not a partition"
        );
    }
    eprintln!(
        "isolated {east}: open connection failed after {on_open_took:?} ({}), new one after {fresh_took:?}",
        on_open.err().map(|e| e.to_string()).unwrap_or_default()
    );

    // West's path works, and east itself keeps running.
    write_lease_via(&stack, &west, COORDINATION_NS)
        .await
        .unwrap_or_else(|e| {
            panic!("with {east} isolated, a Lease write through {west}'s path failed: {e}")
        });
    assert_node_ready(&stack, &east).await;

    let t = Instant::now();
    isolated.restore();
    stack
        .command(&["region-heal", &east])
        .unwrap_or_else(|e| panic!("a second region-heal: {e}"));
    wait_until(
        &format!("a Lease write through {east}'s path after region-heal"),
        Duration::from_secs(30),
        || async { write_lease_via(&stack, &east, COORDINATION_NS).await.ok() },
    )
    .await;
    eprintln!(
        "region-heal {east}: its path served a Lease write {:?} after the heal began",
        t.elapsed()
    );
}
