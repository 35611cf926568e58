//! One Kubernetes cluster per region (`make stack-up TOPOLOGY=per-region`, issue 12): an
//! operator per region (`--region`), each acting on its own cluster, the same Tributary
//! objects applied to every cluster, the active-region Lease shared on the coordination API
//! server (a kube-apiserver over a three-member etcd, one member per region). The scenarios,
//! on real processes and real Kafka, in one run:
//! 1. The group activates in the first region (epoch 1) and every region's status says so.
//! 2. The active region is killed (its control plane, node agent, pods, Kafka clusters, etcd
//!    member, and its operator): the standby takes the Lease (epoch + 1) and resumes; nothing
//!    acknowledged is lost; the coordination plane keeps serving without the dead member.
//! 3. The region comes back as a standby (its consumers stay at 0).
//! 4. The active region is cut off from the coordination server only: it fences itself
//!    (consumers stopped, ConfigMap fenced) before the other region takes the Lease, and the
//!    VerifiableConsumer streams show no moment when both regions consumed (split brain 0).
//!    Healed, it becomes a standby.
//! 5. A planned failback across clusters (`spec.activeRegion` edited in every cluster, as
//!    GitOps does): the holder stops when asked in the Lease, the target translates the final
//!    position and takes the Lease; nothing lost, 0 duplicates after dedupe.
//! 6. Two regions without a witness (`automatic: false`, the witness's etcd member killed):
//!    the active region dies and takes the Lease's quorum with it. Nothing moves and nothing is
//!    active (fail closed: the standby cannot read the Lease). The break-glass: the survivor's
//!    etcd member becomes the whole coordination cluster (`coordination.sh break-glass`), the
//!    Lease answers again, and `spec.activeRegion` moves the group through it (epoch + 1);
//!    nothing lost. The dead region returns as a standby, its member re-added.
//!
//! Opt-in (`#[ignore]`): `make per-region-test` brings the topology up and runs it. When run
//! without that topology it fails with what to run.

mod failover_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use failover_support::*;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use tributary_api::ConsumerGroupFailover;
use tributary_e2e::coordination::Process;
use tributary_e2e::per_region::PerRegion;
use tributary_e2e::{Coordination, Stack, apply_yaml, wait_until};

/// One region's cluster and its operator.
struct Region {
    name: String,
    client: kube::Client,
    kubeconfig: PathBuf,
    coordination_kubeconfig: PathBuf,
    operator: Option<Process>,
}

impl Region {
    fn cgfs(&self, ns: &str) -> Api<ConsumerGroupFailover> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn start_operator(&mut self, stack: &Stack, log_dir: &std::path::Path) {
        let log = log_dir.join(format!(
            "operator-{}-{}.log",
            self.name,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        ));
        self.operator = Some(operator_process(
            stack,
            &format!("operator-{}", self.name),
            &[
                format!("--region={}", self.name),
                format!(
                    "--coordination-kubeconfig={}",
                    self.coordination_kubeconfig.display()
                ),
            ],
            &self.kubeconfig,
            log,
        ));
    }

    /// The operator's log without its per-pass DEBUG lines (they crowd out what happened):
    /// the last 60 INFO, WARN and ERROR lines.
    fn log_excerpt(&self) -> String {
        let Some(p) = &self.operator else {
            return String::new();
        };
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ")).collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// What a failed run shows per region: the group's status in its cluster.
async fn status_dump(r: &Region, ns: &str) -> String {
    match r.cgfs(ns).get_opt("billing").await {
        Ok(Some(c)) => serde_json::to_string_pretty(&c.status).unwrap_or_default(),
        Ok(None) => "no ConsumerGroupFailover billing".into(),
        Err(e) => format!("reading the ConsumerGroupFailover: {e}"),
    }
}

async fn active_in(r: &Region, ns: &str) -> (Option<String>, Option<i64>) {
    let s = status_of(&r.cgfs(ns)).await;
    (s.active_region, s.epoch)
}

async fn wait_active_in(r: &Region, ns: &str, region: &str, epoch: i64) -> Instant {
    wait_until(
        &format!(
            "{}'s operator reports the group active in {region} at epoch {epoch}",
            r.name
        ),
        SLOW,
        || async {
            (active_in(r, ns).await == (Some(region.to_string()), Some(epoch))).then(Instant::now)
        },
    )
    .await
}

async fn replicas_in(r: &Region, ns: &str, name: &str) -> i32 {
    let api: Api<Deployment> = Api::namespaced(r.client.clone(), ns);
    replicas(&api, name).await
}

/// Waits until region `r`'s own consumers are scaled to 0 (a standby, or fenced).
async fn wait_standby(r: &Region, ns: &str, what: &str) {
    let workload = format!("billing-{}", r.name);
    wait_until(what, SLOW, || async {
        (replicas_in(r, ns, &workload).await == 0).then_some(())
    })
    .await;
}

async fn active_configmap(r: &Region, ns: &str) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(r.client.clone(), ns);
    api.get_opt("billing-active")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data)
        .unwrap_or_default()
}

/// When each region's consumers consumed, from the VerifiableConsumer streams: (first, last)
/// `record_data` timestamp at or after `since_ms`.
fn consumed_span(stack: &Stack, ns: &str, region: &str, since_ms: i64) -> Option<(i64, i64)> {
    let ts: Vec<i64> = consumed_in(stack, ns, region)
        .into_iter()
        .map(|c| c.at_ms)
        .filter(|t| *t >= since_ms)
        .collect();
    Some((*ts.iter().min()?, *ts.iter().max()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the per-region topology: make per-region-test"]
async fn per_region_operators_fail_over_fence_and_switch_through_the_shared_lease() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let Some(plane) = Coordination::connect().await else {
        return;
    };
    // Panics with what to run unless TOPOLOGY=per-region is up.
    let stack_regions = PerRegion::connect().await;
    assert!(stack.regions.len() >= 2, "needs two regions");
    let mut regions = Vec::new();
    for r in &stack.regions {
        regions.push(Region {
            name: r.clone(),
            client: stack_regions.cluster(r, Duration::from_secs(30)).await,
            kubeconfig: stack_regions.kubeconfig(r).to_path_buf(),
            coordination_kubeconfig: stack_regions.coordination_kubeconfig(r).to_path_buf(),
            operator: None,
        });
    }
    let suffix = format!(
        "{:08x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos()
    );
    let ns = format!("e2e-pr-{suffix}");
    let log_dir = stack.state_dir.join("logs");
    // The same objects in every cluster (the GitOps ApplicationSet pattern).
    let group = Group {
        failover: "{automatic: true, probePeriod: 1s, failureThreshold: 2, leaseDuration: 6s, maxSyncAge: 30s, witness: witness}",
        ..Group::default()
    };
    let yaml = manifests(&stack, &suffix, &group);
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("namespace");
    plane.ensure_namespace(&ns).await;
    for r in &mut regions {
        Api::<Namespace>::all(r.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {ns} in {}: {e}", r.name));
        apply_yaml(&r.client, &ns, &yaml)
            .await
            .unwrap_or_else(|e| panic!("apply the manifests in {}: {e}", r.name));
        r.start_operator(&stack, &log_dir);
    }
    let (east, west) = (stack.regions[0].clone(), stack.regions[1].clone());
    let topic = format!("orders-{suffix}");

    let outcome = std::panic::AssertUnwindSafe(scenarios(
        &stack,
        &plane,
        &mut regions,
        &ns,
        &east,
        &west,
        &topic,
    ))
    .catch_unwind()
    .await;
    if outcome.is_err() {
        for r in &regions {
            eprintln!(
                "===== {}'s operator (last 60 lines, DEBUG left out) =====\n{}\n===== status in {} =====\n{}",
                r.name,
                r.log_excerpt(),
                r.name,
                status_dump(r, &ns).await
            );
        }
        eprintln!("===== the Lease =====\n{}", plane.lease_dump(&ns).await);
        // Either region may be the isolated one (the scenarios' roles follow the first
        // activation); healing a healthy region is a no-op.
        for r in &regions {
            let _ = stack.try_stack_command(&["region-heal", &r.name]);
        }
    }
    // The run's objects go while the operators still run (they hold the streams' finalizers):
    // a later operator that watches every namespace must not find them.
    for r in &regions {
        let namespaces: Api<Namespace> = Api::all(r.client.clone());
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
        let gone = async {
            while namespaces.get_opt(&ns).await.ok().flatten().is_some() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(60), gone)
            .await
            .is_err()
        {
            eprintln!("namespace {ns} in {} still terminating after 60s", r.name);
        }
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenarios(
    stack: &Stack,
    plane: &Coordination,
    regions: &mut [Region],
    ns: &str,
    east: &str,
    west: &str,
    topic: &str,
) {
    let log_dir = stack.state_dir.join("logs");
    // 1. Activation at epoch 1, seen alike by every region's operator. With no
    //    `spec.activeRegion` the group activates in the first region its operators find
    //    healthy: the first listed, unless another region's operator saw it failing at its
    //    first look (a region just restarted by the stack's own test). The scenarios below
    //    call the first active region `east`, the other `west`.
    let first = wait_until("the group active somewhere at epoch 1", SLOW, || async {
        for r in regions.iter() {
            if let (Some(active), Some(1)) = active_in(r, ns).await {
                return Some(active);
            }
        }
        None
    })
    .await;
    let (east, west) = if first == east {
        (east, west)
    } else {
        eprintln!("the group activated in {first}, not {east}: the roles swap");
        regions.swap(0, 1);
        (west, east)
    };
    assert_eq!(first, east, "activated in a region of the scenarios");
    for r in regions.iter() {
        wait_active_in(r, ns, east, 1).await;
    }
    let mut acked = produce_batch(stack, east, topic, "a", 60).await;
    acked.extend(produce_batch(stack, west, topic, "a", 60).await);
    wait_consumed(stack, ns, "batch a consumed in the first region", &acked).await;
    assert_eq!(
        replicas_in(&regions[1], ns, &format!("billing-{west}")).await,
        0
    );
    // The standby must be warm before its region can take over (maxSyncAge).
    wait_until("the standby in the second region synced", SLOW, || async {
        let s = status_of(&regions[1].cgfs(ns)).await;
        s.regions
            .iter()
            .any(|r| r.region == west && r.last_sync_time.is_some())
            .then_some(())
    })
    .await;

    // 2. Kill the active region, its operator with it.
    let killed = Instant::now();
    let mut guard = RegionGuard {
        stack,
        region: east.to_string(),
        down: true,
    };
    stack.stack_command(&["region-down", east]);
    regions[0].operator = None;
    let took_over = wait_active_in(&regions[1], ns, west, 2).await;
    eprintln!(
        "region-down {east}: {west} active at epoch 2 after {:.1}s",
        took_over.duration_since(killed).as_secs_f64()
    );
    let b = produce_batch(stack, west, topic, "b", 60).await;
    acked.extend(b);
    wait_consumed(
        stack,
        ns,
        "every acknowledged record consumed after the failover",
        &acked,
    )
    .await;

    // 3. The region returns as a standby.
    stack.stack_command(&["region-up", east]);
    guard.down = false;
    regions[0].start_operator(stack, &log_dir);
    wait_active_in(&regions[0], ns, west, 2).await;
    wait_standby(&regions[0], ns, "the returned region's consumers stay at 0").await;
    let s = status_of(&regions[0].cgfs(ns)).await;
    assert_eq!(s.epoch, Some(2), "the returned region moved nothing");

    // 4. Cut the active region (west) off the coordination server only, under load.
    let load = {
        let (stack_regions, topic) = (vec![east.to_string(), west.to_string()], topic.to_string());
        let stack = Stack::connect().await.expect("the stack");
        tokio::spawn(async move {
            let mut all = Vec::new();
            for i in 0..40 {
                for r in &stack_regions {
                    all.extend(produce_batch(&stack, r, &topic, &format!("c{i}"), 5).await);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            all
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let isolated_ms = now_ms();
    let isolated = Instant::now();
    stack.stack_command(&["region-isolate", west]);
    let fenced = wait_until("the isolated holder fences itself", SLOW, || async {
        let cm = active_configmap(&regions[1], ns).await;
        (cm.get("fenced").map(String::as_str) == Some("true")
            && replicas_in(&regions[1], ns, &format!("billing-{west}")).await == 0)
            .then(Instant::now)
    })
    .await;
    let acquired = wait_active_in(&regions[0], ns, east, 3).await;
    eprintln!(
        "region-isolate {west}: fenced after {:.1}s, {east} active at epoch 3 after {:.1}s",
        fenced.duration_since(isolated).as_secs_f64(),
        acquired.duration_since(isolated).as_secs_f64()
    );
    assert!(
        fenced < acquired,
        "the holder fenced itself before the Lease passed"
    );
    let c = load.await.expect("the load");
    acked.extend(c);
    wait_consumed(
        stack,
        ns,
        "every acknowledged record consumed after the isolation",
        &acked,
    )
    .await;
    let west_span = consumed_span(stack, ns, west, isolated_ms - 3_000);
    let east_span = consumed_span(stack, ns, east, isolated_ms);
    if let (Some((_, west_last)), Some((east_first, _))) = (west_span, east_span) {
        eprintln!(
            "split brain: {west} consumed until {west_last}, {east} from {east_first} ({} ms apart)",
            east_first - west_last
        );
        assert!(
            west_last < east_first,
            "both regions consumed at once: {west} until {west_last}, {east} from {east_first}"
        );
    }
    stack.stack_command(&["region-heal", west]);
    wait_active_in(&regions[1], ns, east, 3).await;
    wait_standby(&regions[1], ns, "the healed region's consumers stay at 0").await;
    wait_until(
        "the healed region's ConfigMap names the new holder",
        SLOW,
        || async {
            let cm = active_configmap(&regions[1], ns).await;
            (cm.get("activeRegion").map(String::as_str) == Some(east)
                && cm.get("fenced").map(String::as_str) == Some("false"))
            .then_some(())
        },
    )
    .await;

    // 5. Planned switchover to west, edited in every cluster.
    wait_until("the standby in the healed region synced", SLOW, || async {
        let w = status_of(&regions[1].cgfs(ns)).await;
        w.regions
            .iter()
            .any(|r| r.region == west && r.last_sync_time.is_some())
            .then_some(())
    })
    .await;
    let asked = Instant::now();
    for r in regions.iter() {
        patch_spec(
            &r.cgfs(ns),
            serde_json::json!({"spec": {"activeRegion": west}}),
        )
        .await;
    }
    for r in regions.iter() {
        wait_active_in(r, ns, west, 4).await;
    }
    eprintln!(
        "planned failback to {west}: epoch 4 after {:.1}s",
        asked.elapsed().as_secs_f64()
    );
    let d = produce_batch(stack, east, topic, "d", 60).await;
    acked.extend(d);
    wait_consumed(
        stack,
        ns,
        "every acknowledged record consumed after the switchover",
        &acked,
    )
    .await;
    let s = status_of(&regions[1].cgfs(ns)).await;
    let last = s.last_failover.expect("lastFailover");
    assert_eq!(last.plan_origin.as_deref(), Some("Final"), "{last:?}");
    // Back to where the group ran before the isolation: a failback (the Lease names the
    // previous holder; west's own status never saw the move away), whose final round's
    // watermarks leave nothing to re-deliver after dedupe.
    assert_eq!(
        (last.reason.as_str(), last.kind.as_deref()),
        ("Failback", Some("Planned")),
        "{last:?}"
    );
    assert_eq!(
        last.max_duplicates_after_dedupe,
        Some(0),
        "a planned move's watermarks are exact: {last:?}"
    );

    // 6. Two regions without a witness: moves are a person's (automatic: false), and the
    //    witness's etcd member is gone, so the active region's loss takes the quorum with it.
    for r in regions.iter() {
        patch_spec(
            &r.cgfs(ns),
            serde_json::json!({"spec": {"failover": {"automatic": false}}}),
        )
        .await;
    }
    let witness = plane.member_down("witness");
    let mut guard = RegionGuard {
        stack,
        region: west.to_string(),
        down: true,
    };
    stack.stack_command(&["region-down", west]);
    regions[1].operator = None;
    wait_until(
        &format!("{east}'s operator reports the Lease unreachable"),
        SLOW,
        || async {
            (condition(&regions[0].cgfs(ns), "Ready")
                .await
                .map(|c| c.1)
                .as_deref()
                == Some("CoordinationLost"))
            .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        replicas_in(&regions[0], ns, &format!("billing-{east}")).await,
        0,
        "without the Lease nothing becomes active"
    );
    let e = produce_batch(stack, east, topic, "e", 60).await;
    let broken = Instant::now();
    plane
        .command(&["break-glass", east])
        .unwrap_or_else(|e| panic!("break-glass: {e}"));
    wait_condition(
        &regions[0].cgfs(ns),
        "FailoverBlocked",
        "True",
        "AutomaticFailoverDisabled",
    )
    .await;
    patch_spec(
        &regions[0].cgfs(ns),
        serde_json::json!({"spec": {"activeRegion": east}}),
    )
    .await;
    wait_active_in(&regions[0], ns, east, 5).await;
    eprintln!(
        "break-glass: {east} active at epoch 5 {:.1}s after the quorum was forced on its member",
        broken.elapsed().as_secs_f64()
    );
    acked.extend(e);
    wait_consumed(
        stack,
        ns,
        "every acknowledged record consumed after the break-glass",
        &acked,
    )
    .await;
    // The dead region returns (its etcd member re-added, empty) and stays a standby.
    stack.stack_command(&["region-up", west]);
    guard.down = false;
    witness.restore();
    patch_spec(
        &regions[1].cgfs(ns),
        serde_json::json!({"spec": {"activeRegion": east}}),
    )
    .await;
    regions[1].start_operator(stack, &log_dir);
    wait_active_in(&regions[1], ns, east, 5).await;
    wait_standby(&regions[1], ns, "the returned region's consumers stay at 0").await;
}
