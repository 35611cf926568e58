//! The active-region Lease on the coordination plane (`make coordination-test`): with
//! `--coordination-kubeconfig` the operator keeps the Lease on the coordination API server (a
//! kube-apiserver over a three-member etcd) and not in its own cluster, renews it there
//! through the loss of one etcd member, and names that server in the group's status when the
//! quorum is lost. Two ways of running the operator:
//! - out of cluster, as a process, against a bare API server of the test's own (its own etcd,
//!   no controller-manager, no pods), with the stack's Kafka clusters: no other operator of a
//!   shared stack can reconcile what the test creates;
//! - in the stack, installed by the chart with `coordination.kubeconfigSecret` (the kubeconfig
//!   mounted from a Secret). Every operator watches every namespace, so this one fails at once
//!   when another Tributary operator runs in the stack.
//!
//! Opt-in (`#[ignore]`): the plane is not part of the default stack. When run, a missing stack
//! or plane fails the tests. `TRIBUTARY_BIN` picks the out-of-cluster operator's binary;
//! `TRIBUTARY_E2E_IMAGE_TAG` the chart's image tag (the node agent runs
//! `<binaries-dir>/<tag>`, so a checkout can test its own build).

mod failover_support;

use std::time::Duration;

use failover_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tributary_api::ConsumerGroupFailover;
use tributary_e2e::{Coordination, Stack, TestNamespace, apply_yaml, wait_until};

const SECRET: &str = "tributary-coordination";

fn renew_time(l: &Lease) -> Option<Timestamp> {
    l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

fn holder_and_epoch(l: &Lease) -> (String, i32) {
    let s = l.spec.as_ref().expect("lease spec");
    (
        s.holder_identity.clone().unwrap_or_default(),
        s.lease_transitions.unwrap_or(-1),
    )
}

/// Every operator watches every namespace: another one in the stack would reconcile this
/// test's group too, and keep its Lease in the stretched cluster. Fails naming them.
async fn assert_no_other_operator(stack: &Stack, own_namespace: &str) {
    let deployments: Api<Deployment> = Api::all(stack.client.clone());
    let others: Vec<String> = deployments
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=tributary,app.kubernetes.io/component=operator"),
        )
        .await
        .expect("list operator Deployments")
        .items
        .iter()
        .filter(|d| d.namespace().as_deref() != Some(own_namespace))
        .map(|d| format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()))
        .collect();
    assert!(
        others.is_empty(),
        "another Tributary operator runs in the stack ({others:?}); it would also reconcile this test's group and keep its Lease in the stretched cluster: run this test alone"
    );
}

/// Waits until the Lease's renewTime passes `after`; returns the renewed Lease.
async fn renewed_after(leases: &Api<Lease>, name: &str, after: Timestamp, what: &str) -> Lease {
    wait_until(what, Duration::from_secs(30), || async {
        leases
            .get(name)
            .await
            .ok()
            .filter(|l| renew_time(l).is_some_and(|t| t > after))
    })
    .await
}

/// What both ways of running the operator must show, once the group is active in `east` at
/// epoch 1: the Lease on the plane and not in `local` (the operator's own cluster), renewals
/// there through one member's loss, the server named without a quorum, renewals again after.
async fn lease_lives_on_the_plane(
    plane: &Coordination,
    ns: &str,
    local: &Api<Lease>,
    cgfs: &Api<ConsumerGroupFailover>,
    east: &str,
    cluster: &kube::Client,
) {
    let deployments: Api<Deployment> = Api::namespaced(cluster.clone(), ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.clone(), ns);
    let active = |key: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            configmaps
                .get("billing-active")
                .await
                .ok()
                .and_then(|cm| cm.data?.get(key).cloned())
                .unwrap_or_default()
        }
    };
    let consumers = format!("billing-{east}");
    wait_until("the holder's consumers running", SLOW, || async {
        (replicas(&deployments, &consumers).await == 1).then_some(())
    })
    .await;
    let remote: Api<Lease> = Api::namespaced(plane.admin.clone(), ns);
    let lease = remote
        .get("billing-active")
        .await
        .expect("the Lease is on the coordination API server");
    assert_eq!(holder_and_epoch(&lease), (east.to_string(), 1));
    assert!(
        local
            .get_opt("billing-active")
            .await
            .expect("read the operator's own cluster's Leases")
            .is_none(),
        "with a coordination kubeconfig the Lease must not be in the operator's own cluster"
    );

    // Renewed there (tight settings: leaseDuration 5s, probePeriod 1s).
    let first = renew_time(&lease).expect("renewTime");
    let lease = renewed_after(
        &remote,
        "billing-active",
        first,
        "a renewal on the coordination server",
    )
    .await;

    // One etcd member lost: renewals go on, nothing moves.
    let down = plane.member_down(&plane.regions[0]);
    let killed_at = renew_time(&lease).expect("renewTime");
    let mut l = lease;
    for i in 0..3 {
        l = renewed_after(
            &remote,
            "billing-active",
            renew_time(&l).expect("renewTime"),
            &format!(
                "renewal {} with etcd member {} down",
                i + 1,
                plane.regions[0]
            ),
        )
        .await;
    }
    assert_eq!(
        holder_and_epoch(&l),
        (east.to_string(), 1),
        "no move with one member down"
    );
    eprintln!(
        "3 renewals with member {} down, the last {:?} after the kill",
        plane.regions[0],
        renew_time(&l).expect("renewTime").duration_since(killed_at)
    );
    let st = status_of(cgfs).await;
    assert_eq!(st.active_region.as_deref(), Some(east));
    assert_eq!(st.epoch, Some(1));

    // The quorum lost: the group's status names the coordination server, within a few
    // request timeouts; the holder fences itself (coordinationLoss FailClosed, the default)
    // before its Lease (5 s) could expire: consumers at 0, the ConfigMap marked fenced.
    let down2 = plane.member_down(&plane.regions[1]);
    wait_until("the holder fenced", Duration::from_secs(20), || async {
        (replicas(&deployments, &consumers).await == 0 && active("fenced").await == "true")
            .then_some(())
    })
    .await;
    // The ConfigMap keeps the last renewal the operator saw confirmed.
    let last_renewal: Timestamp = active("renewTime")
        .await
        .parse()
        .expect("the ConfigMap's renewTime");
    let fenced_after = Timestamp::now().duration_since(last_renewal);
    eprintln!("fenced {fenced_after:?} after the last renewal (leaseDuration 5s)");
    assert!(
        fenced_after < SignedDuration::from_secs(5),
        "the fence must act before the Lease expires: {fenced_after:?} after the last renewal"
    );
    assert_eq!(
        active("activeRegion").await,
        "",
        "no active region while fenced"
    );
    let message = wait_until(
        "a condition naming the coordination API server",
        Duration::from_secs(60),
        || async {
            status_of(cgfs)
                .await
                .conditions
                .iter()
                .find(|c| {
                    c.message
                        .contains("the coordination API server https://127.0.0.1")
                })
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
        },
    )
    .await;
    eprintln!("without a quorum: {message}");
    assert!(
        message.contains("no answer in time") && message.contains("quorum"),
        "the message must say what to check: {message}"
    );

    // Quorum back: the Lease is renewed again, still in the first region.
    down.restore();
    let back = wait_until(
        "a renewal with the quorum back",
        Duration::from_secs(60),
        || async {
            remote.get("billing-active").await.ok().filter(|l| {
                renew_time(l).is_some_and(|t| {
                    Timestamp::now().duration_since(t) < SignedDuration::from_secs(3)
                })
            })
        },
    )
    .await;
    eprintln!("with the quorum back: {:?}", holder_and_epoch(&back));
    assert_eq!(
        holder_and_epoch(&back).0,
        east,
        "the healthy holder keeps the Lease"
    );
    wait_until("the fence lifted", Duration::from_secs(30), || async {
        (replicas(&deployments, &consumers).await == 1
            && active("fenced").await == "false"
            && active("activeRegion").await == east)
            .then_some(())
    })
    .await;
    down2.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the stack and the coordination plane: make coordination-test"]
async fn the_chart_installed_operator_keeps_its_lease_on_the_coordination_server_through_a_member_loss()
 {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let Some(plane) = Coordination::connect().await else {
        return;
    };
    assert!(stack.regions.len() >= 2, "needs two regions");
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-coord", move |t| async move {
        let ns = t.name.clone();
        // The namespace exists on the coordination server too (the operator creates nothing
        // but Leases there), and the operator gets its kubeconfig from a Secret.
        plane.ensure_namespace(&ns).await;
        let kubeconfig =
            std::fs::read_to_string(&plane.operator_kubeconfig).expect("operator kubeconfig");
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": SECRET},
            "stringData": {"kubeconfig": kubeconfig},
        }))
        .expect("secret");
        t.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the coordination kubeconfig Secret");
        let mut operator_sets = vec![
            format!("coordination.kubeconfigSecret.name={SECRET}"),
            "coordination.kubeconfigSecret.key=kubeconfig".to_string(),
        ];
        if let Ok(tag) = std::env::var("TRIBUTARY_E2E_IMAGE_TAG") {
            operator_sets.push(format!("image.tag={tag}"));
        }
        let group = Group {
            operator_sets,
            ..Group::default()
        };
        assert_no_other_operator(&t.stack, &ns).await;
        // Activation: epoch 1 in the first region (setup waits for status to say so).
        let s = setup(&t, &group, 1).await;
        assert_no_other_operator(&t.stack, &ns).await;

        lease_lives_on_the_plane(&plane, &ns, &t.api(), &s.cgfs, &s.east, &t.stack.client).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the stack's Kafka and the coordination plane: make coordination-test"]
async fn an_operator_out_of_cluster_keeps_its_lease_on_the_coordination_server_through_a_member_loss()
 {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let Some(plane) = Coordination::connect().await else {
        return;
    };
    assert!(stack.regions.len() >= 2, "needs two regions");
    let _one = ONE_OPERATOR.lock().await;
    let suffix = format!(
        "{:08x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    );
    let ns = format!("e2e-coord-{suffix}");
    let cluster = plane.bare_cluster(&suffix).await;
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("namespace");
    Api::<Namespace>::all(cluster.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create the namespace in the bare cluster");
    plane.ensure_namespace(&ns).await;
    apply_yaml(
        &cluster.client,
        &ns,
        &manifests(&stack, &suffix, &Group::default()),
    )
    .await
    .expect("apply the streams, aggregates, workloads and the group");

    let operator = operator_process(
        &stack,
        "operator",
        &[format!(
            "--coordination-kubeconfig={}",
            plane.operator_kubeconfig.display()
        )],
        &cluster.kubeconfig,
        cluster.dir.join("operator.log"),
    );
    let log = operator.log.clone();
    let client = cluster.client.clone();
    let east = stack.regions[0].clone();
    let result = tokio::spawn(async move {
        let cgfs: Api<ConsumerGroupFailover> = Api::namespaced(client.clone(), &ns);
        // No pods run in a bare cluster, so the group never gets Ready (no standby sync);
        // activation is what counts: the Lease taken, status mirroring it.
        wait_until(
            "billing active in the first region at epoch 1",
            SLOW,
            || async {
                let s = status_of(&cgfs).await;
                (s.active_region.as_deref() == Some(east.as_str()) && s.epoch == Some(1))
                    .then_some(())
            },
        )
        .await;
        let local: Api<Lease> = Api::namespaced(client.clone(), &ns);
        lease_lives_on_the_plane(&plane, &ns, &local, &cgfs, &east, &client).await;
    })
    .await;
    if let Err(e) = result {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "===== operator log (last 60 lines of {}) =====\n{}",
            log.display(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
        drop(operator);
        std::panic::resume_unwind(e.into_panic());
    }
}
