//! ConsumerGroupFailover on the real local stack (`make stack-up`): the operator installed by
//! the Helm chart, replicators between two regions, and the group's consumers run as Kafka's
//! own VerifiableConsumer (image `apache/kafka`), so lost and duplicated records are counted
//! from Kafka's tool, not from our code.
//!
//! One scenario in order: first activation (Lease epoch 1, ConfigMap, only east consumes, a
//! standby sync Job keeps west warm) → east killed while both regions produce: the group moves
//! to west by itself, every record acknowledged to west is consumed, RTO printed → east back:
//! it becomes a standby, no second move → GitOps failback by editing `spec.activeRegion`:
//! planned switchover, nothing lost → re-applying the manifests changes nothing the operator
//! owns. Then, each on its own: `automatic: false` and a stale standby (`FailoverBlocked`
//! until the data-loss annotation), ActiveActive (only the primary moves), and an operator
//! killed in the middle of a switchover (the move completes, epoch + 1 exactly once), and a
//! warm standby (`standbyReplicas`) whose waiting pod takes a planned switchover over.

mod failover_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use failover_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tributary_e2e::{Role, Stack, TestNamespace, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fails_over_by_itself_and_fails_back_by_one_edit_without_losing_a_record() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    assert!(stack.regions.len() >= 2, "needs two regions");
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-failover", |t| async move {
        let stack = &t.stack;
        // Two operator replicas spread over the regions: the one in the killed region may be
        // the leader, and the other must take over quickly.
        let Setup {
            _release,
            ns,
            topic,
            yaml,
            east,
            west,
            cgfs,
            deployments,
        } = setup(&t, &Group::default(), 2).await;
        let leases: Api<Lease> = t.api();
        let cms: Api<ConfigMap> = t.api();
        let jobs: Api<Job> = t.api();

        // First activation.
        let lease = leases.get("billing-active").await.expect("lease");
        let spec = lease.spec.expect("lease spec");
        assert_eq!(spec.holder_identity.as_deref(), Some(east.as_str()));
        assert_eq!(spec.lease_transitions, Some(1));
        let cm = cms.get("billing-active").await.expect("configmap");
        let data = cm.data.unwrap_or_default();
        assert_eq!(data.get("activeRegion"), Some(&east));
        assert_eq!(data.get("epoch").map(String::as_str), Some("1"));
        assert_eq!(
            data.get("bootstrapServers").map(String::as_str),
            Some(stack.bootstrap(&east, Role::Aggregate))
        );
        wait_until("only east's consumers scaled up", SLOW, || async {
            (replicas(&deployments, &format!("billing-{east}")).await == 1
                && replicas(&deployments, &format!("billing-{west}")).await == 0)
                .then_some(())
        })
        .await;
        wait_until("a standby sync Job for west at epoch 1", SLOW, || async {
            jobs.get_opt(&format!("billing-sync-{west}-e1"))
                .await
                .ok()
                .flatten()
                .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        })
        .await;

        let mut expected = Vec::new();
        for r in [&east, &west] {
            expected.extend(produce_batch(stack, r, &topic, "before", 60).await);
        }
        let dups = wait_consumed(stack, &ns, "records of both regions consumed in east", &expected).await;
        assert!(consumed_in(stack, &ns, &west).is_empty(), "west consumed while standby");
        eprintln!("first activation: {} records consumed in {east}, {dups} raw duplicates", expected.len());
        wait_until("west's standby offsets fresh (status.regions lastSyncTime)", SLOW, || async {
            let s = status_of(&cgfs).await;
            s.regions
                .iter()
                .find(|r| r.region == west)
                .and_then(|r| r.last_sync_time.clone())
                .filter(|t| (now_ms() - t.0.as_millisecond()) < 5_000)
        })
        .await;

        // Kill east while west keeps producing.
        let killed_ms = now_ms();
        let killed = Instant::now();
        let mut guard = RegionGuard {
            stack,
            region: east.clone(),
            down: true,
        };
        stack.stack_command(&["region-down", &east]);
        // West keeps producing through the outage, concurrently with the wait.
        let producer = {
            let (stack, west, topic) = (stack.clone(), west.clone(), topic.clone());
            tokio::spawn(async move {
                let mut produced = Vec::new();
                for i in 0..10 {
                    produced.extend(
                        produce_batch(&stack, &west, &topic, &format!("outage{i}"), 20).await,
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                produced
            })
        };
        wait_active(&cgfs, &west, 2).await;
        let decided = killed.elapsed();
        let surviving = producer.await.expect("producer task");
        let dups = wait_consumed(stack, &ns, "every record acknowledged to west consumed", &surviving).await;
        let first_in_west = consumed_in(stack, &ns, &west)
            .iter()
            .map(|c| c.at_ms)
            .filter(|t| *t >= killed_ms)
            .min()
            .expect("west consumed");
        let s = status_of(&cgfs).await;
        let last = s.last_failover.clone().expect("lastFailover");
        assert_eq!((last.reason.as_str(), last.from.as_deref()), ("RegionDown", Some(east.as_str())));
        // The standby's last committed round is what west resumed from: its watermarks.
        assert_eq!(last.plan_origin.as_deref(), Some("LastStandbyRound"), "{last:?}");
        assert!(!last.watermarks.is_empty(), "watermarks of the unplanned move: {last:?}");
        eprintln!(
            "unplanned failover: RTO (killed -> first record consumed in {west}) {:.1}s, Lease moved after {:.1}s, operator rtoSeconds {:?}; {} records from {west} all consumed, {dups} raw duplicates",
            (first_in_west - killed_ms) as f64 / 1000.0,
            decided.as_secs_f64(),
            last.rto_seconds,
            surviving.len()
        );
        assert_eq!(replicas(&deployments, &format!("billing-{east}")).await, 0);

        // East returns: a standby now, no second move. Every route is Ready again within 30 s,
        // before any new record is produced (an idle source must not keep a route NotReady).
        stack.stack_command(&["region-up", &east]);
        guard.down = false;
        let back = Instant::now();
        let aggregates: Api<tributary_api::AggregateCluster> = t.api();
        wait_until("every route Ready again after region-up", Duration::from_secs(30), || async {
            let list = aggregates.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|a| {
                    a.status
                        .as_ref()
                        .and_then(|s| tributary_api::find_condition(&s.conditions, "Ready"))
                        .is_some_and(|c| c.status == "True")
                })
                .then_some(())
        })
        .await;
        eprintln!("region-up: every route Ready after {:.1}s", back.elapsed().as_secs_f64());
        wait_until("a standby sync Job for east at epoch 2", SLOW, || async {
            jobs.get_opt(&format!("billing-sync-{east}-e2")).await.ok().flatten()
        })
        .await;
        wait_until("east healthy again", SLOW, || async {
            status_of(&cgfs)
                .await
                .regions
                .iter()
                .find(|r| r.region == east && r.healthy)
                .map(|_| ())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = status_of(&cgfs).await;
        assert_eq!((s.active_region.as_deref(), s.epoch), (Some(west.as_str()), Some(2)), "no second move");

        // GitOps failback: one edit.
        let mut more = Vec::new();
        for r in [&east, &west] {
            more.extend(produce_batch(stack, r, &topic, "after", 40).await);
        }
        wait_consumed(stack, &ns, "records consumed in west before the failback", &more).await;
        let before_failback = all_consumed(stack, &ns).len();
        let started = Instant::now();
        cgfs.patch(
            "billing",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"activeRegion": east}})),
        )
        .await
        .expect("edit spec.activeRegion");
        wait_active(&cgfs, &east, 3).await;
        let switchover = started.elapsed();
        let mut last_batch = Vec::new();
        for r in [&east, &west] {
            last_batch.extend(produce_batch(stack, r, &topic, "failback", 40).await);
        }
        wait_consumed(stack, &ns, "records consumed in east after the failback", &last_batch).await;
        let after = all_consumed(stack, &ns);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &after {
            *counts.entry(c.value.as_str()).or_default() += 1;
        }
        let planned_dups: usize = last_batch
            .iter()
            .chain(&more)
            .map(|v| counts.get(v.as_str()).copied().unwrap_or(0).saturating_sub(1))
            .sum();
        let s = status_of(&cgfs).await;
        let last = s.last_failover.clone().expect("lastFailover");
        assert_eq!(last.reason, "Failback");
        assert_eq!(last.kind.as_deref(), Some("Planned"));
        // The final round ran in east's warm standby; its plan's watermarks are in status.
        assert_eq!(last.plan_origin.as_deref(), Some("Final"), "{last:?}");
        assert!(!last.watermarks.is_empty(), "watermarks of the planned move: {last:?}");
        assert_eq!(
            last.max_duplicates_after_dedupe,
            Some(0),
            "a planned move's watermarks are exact: {last:?}"
        );
        eprintln!(
            "planned failback: {:.1}s from the edit to active in {east} (operator rtoSeconds {:?}); raw duplicates of the records around it {planned_dups} ({} consumed before the edit)",
            switchover.as_secs_f64(),
            last.rto_seconds,
            before_failback
        );
        let lease = leases.get("billing-active").await.expect("lease");
        assert_eq!(lease.spec.and_then(|s| s.lease_transitions), Some(3), "epoch +1 per move");

        // Re-applying the manifests changes nothing the operator owns.
        let owned = |d: &Deployment| (d.name_any(), d.spec.as_ref().and_then(|s| s.replicas));
        let before: Vec<_> = deployments
            .list(&ListParams::default().labels("app=billing"))
            .await
            .expect("list")
            .items
            .iter()
            .map(owned)
            .collect();
        let cm_before = cms.get("billing-active").await.expect("cm").data;
        kubectl_apply(stack, &ns, &yaml);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after: Vec<_> = deployments
            .list(&ListParams::default().labels("app=billing"))
            .await
            .expect("list")
            .items
            .iter()
            .map(owned)
            .collect();
        assert_eq!(before, after, "re-applying the manifests must not change the scale");
        let cm_after = cms.get("billing-active").await.expect("cm").data;
        assert_eq!(
            cm_before.as_ref().and_then(|d| d.get("epoch")),
            cm_after.as_ref().and_then(|d| d.get("epoch"))
        );
        let s = status_of(&cgfs).await;
        assert_eq!((s.active_region.as_deref(), s.epoch), (Some(east.as_str()), Some(3)));
    })
    .await;
}

/// `automatic: false`: a dead active region is reported and nothing moves; a stale standby
/// blocks the failover (`FailoverBlocked`) until the data-loss annotation accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_group_waits_and_a_stale_standby_waits_for_the_override() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-failover-manual", |t| async move {
        let stack = &t.stack;
        // The standby syncs once when its Job starts and then every 10 minutes: by the time east
        // dies it has missed more than maxSyncAge of east's progress.
        let group = Group {
            failover: "{automatic: false, probePeriod: 1s, failureThreshold: 2, leaseDuration: 5s, maxSyncAge: 5s, witness: witness}",
            sync_interval: "10m",
            ..Group::default()
        };
        // Two operator replicas: the leader may die with east.
        let s = setup(&t, &group, 2).await;
        let mut guard = RegionGuard {
            stack,
            region: s.east.clone(),
            down: true,
        };
        let consumed = produce_batch(stack, &s.east, &s.topic, "manual", 20).await;
        wait_consumed(stack, &s.ns, "records consumed in east", &consumed).await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        stack.stack_command(&["region-down", &s.east]);
        wait_condition(&s.cgfs, "FailoverBlocked", "True", "AutomaticFailoverDisabled").await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let st = status_of(&s.cgfs).await;
        assert_eq!((st.active_region.as_deref(), st.epoch), (Some(s.east.as_str()), Some(1)), "no move with automatic: false");
        assert!(has_event(stack, &s.ns, "AutomaticFailoverDisabled").await, "an event says the region is down");

        // Automatic again, but the standby missed more than maxSyncAge of east's progress.
        patch_spec(&s.cgfs, serde_json::json!({"spec": {"failover": {"automatic": true}}})).await;
        wait_condition(&s.cgfs, "FailoverBlocked", "True", "FailoverBlocked").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(status_of(&s.cgfs).await.epoch, Some(1), "a stale standby is not failed over to");
        assert!(has_event(stack, &s.ns, "FailoverBlocked").await);
        s.cgfs
            .patch(
                "billing",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"tributary.dev/accept-data-loss": "true"}}})),
            )
            .await
            .expect("annotate");
        wait_active(&s.cgfs, &s.west, 2).await;
        assert_eq!(replicas(&s.deployments, &format!("billing-{}", s.west)).await, 1);
        stack.stack_command(&["region-up", &s.east]);
        guard.down = false;
    })
    .await;
}

/// ActiveActive: both regions consume throughout; on region loss only the Lease and the
/// ConfigMap move, no workload is scaled. The group is applied before the AggregateClusters it
/// names and starts once they exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_active_group_moves_only_its_primary() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-failover-aa", |t| async move {
        let stack = &t.stack;
        let group = Group {
            mode: "ActiveActive",
            group_first: true,
            ..Group::default()
        };
        let s = setup(&t, &group, 2).await;
        let cms: Api<ConfigMap> = t.api();
        wait_until("consumers in both regions", SLOW, || async {
            (replicas(&s.deployments, &format!("billing-{}", s.east)).await == 1
                && replicas(&s.deployments, &format!("billing-{}", s.west)).await == 1)
                .then_some(())
        })
        .await;
        let mut before = Vec::new();
        for r in [&s.east, &s.west] {
            before.extend(produce_batch(stack, r, &s.topic, "aa", 30).await);
        }
        // Each region's group consumes its own aggregate: every record in both.
        for r in [&s.east, &s.west] {
            wait_until(&format!("every record consumed in {r}"), SLOW, || async {
                let seen: BTreeSet<String> = consumed_in(stack, &s.ns, r)
                    .into_iter()
                    .map(|c| c.value)
                    .collect();
                before.iter().all(|v| seen.contains(v)).then_some(())
            })
            .await;
        }
        let mut guard = RegionGuard {
            stack,
            region: s.east.clone(),
            down: true,
        };
        stack.stack_command(&["region-down", &s.east]);
        wait_active(&s.cgfs, &s.west, 2).await;
        let data = cms
            .get("billing-active")
            .await
            .expect("cm")
            .data
            .unwrap_or_default();
        assert_eq!(data.get("activeRegion"), Some(&s.west));
        assert_eq!(
            replicas(&s.deployments, &format!("billing-{}", s.east)).await,
            1,
            "ActiveActive scales nothing"
        );
        assert_eq!(
            replicas(&s.deployments, &format!("billing-{}", s.west)).await,
            1
        );
        let during = produce_batch(stack, &s.west, &s.topic, "aa-outage", 30).await;
        wait_until("west keeps consuming", SLOW, || async {
            let seen: BTreeSet<String> = consumed_in(stack, &s.ns, &s.west)
                .into_iter()
                .map(|c| c.value)
                .collect();
            during.iter().all(|v| seen.contains(v)).then_some(())
        })
        .await;
        stack.stack_command(&["region-up", &s.east]);
        guard.down = false;
    })
    .await;
}

/// The operator killed in the middle of a planned switchover: the restarted one finishes the
/// move from the Lease and the status, and the epoch rises exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_switchover_finishes_the_move_once() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-failover-crash", |t| async move {
        let stack = &t.stack;
        let s = setup(&t, &Group::default(), 1).await;
        let leases: Api<Lease> = t.api();
        let pods: Api<k8s_openapi::api::core::v1::Pod> = t.api();
        let mut expected = Vec::new();
        for r in [&s.east, &s.west] {
            expected.extend(produce_batch(stack, r, &s.topic, "crash", 40).await);
        }
        wait_consumed(stack, &s.ns, "records consumed in east", &expected).await;
        patch_spec(
            &s.cgfs,
            serde_json::json!({"spec": {"activeRegion": s.west}}),
        )
        .await;
        wait_until("the switchover under way", SLOW, || async {
            status_of(&s.cgfs).await.pending_move.map(|_| ())
        })
        .await;
        let operators = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
            .await
            .expect("operator pods");
        assert!(!operators.items.is_empty());
        for p in &operators.items {
            pods.delete(
                &p.name_any(),
                &kube::api::DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .expect("kill the operator");
        }
        wait_active(&s.cgfs, &s.west, 2).await;
        let lease = leases.get("billing-active").await.expect("lease");
        assert_eq!(
            lease.spec.and_then(|s| s.lease_transitions),
            Some(2),
            "epoch + 1 exactly once"
        );
        let st = status_of(&s.cgfs).await;
        assert_eq!(st.last_failover.as_ref().map(|f| f.epoch), Some(2));
        assert!(st.pending_move.is_none());
        let more = produce_batch(stack, &s.west, &s.topic, "after-crash", 40).await;
        let all: Vec<String> = expected.iter().chain(&more).cloned().collect();
        let dups = wait_consumed(stack, &s.ns, "every record consumed across the move", &all).await;
        eprintln!(
            "operator killed mid-switchover: move finished at epoch 2, {dups} raw duplicates"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(status_of(&s.cgfs).await.epoch, Some(2), "no second move");
    })
    .await;
}

/// Warm standby (`workloadRef.standbyReplicas`): the standby region keeps a consumer pod whose
/// VerifiableConsumer waits behind the active gate (the `tributary active-gate` sidecar and
/// the gate agent, docs/active-gate.md) and is no member of the group, so the standby sync
/// keeps committing to it. A planned switchover is taken over by that very pod, without a
/// pod start, nothing lost; the region left keeps a gated standby pod of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_standby_waits_behind_the_gate_and_takes_over_without_a_pod_start() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-warm-standby", |t| async move {
        let stack = &t.stack;
        let group = Group {
            warm_standby: true,
            ..Group::default()
        };
        let Setup {
            _release,
            ns,
            topic,
            east,
            west,
            cgfs,
            deployments,
            ..
        } = setup(&t, &group, 1).await;
        let pods: Api<k8s_openapi::api::core::v1::Pod> = t.api();
        let gated_pod = |region: String| {
            let (pods, ns) = (pods.clone(), ns.clone());
            async move {
                wait_until(
                    &format!("a running billing pod in {region} waiting behind the gate"),
                    SLOW,
                    || async {
                        let list = pods
                            .list(&ListParams::default().labels(&format!("app=billing,region={region}")))
                            .await
                            .ok()?;
                        list.items
                            .iter()
                            .filter(|p| p.metadata.deletion_timestamp.is_none())
                            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                            .map(|p| p.name_any())
                            .find(|name| {
                                pod_log(stack, &ns, &region, name, "consumer")
                                    .contains("tributary-gate-agent: waiting")
                            })
                    },
                )
                .await
            }
        };
        let members_and_sync = |region: String| {
            let cgfs = cgfs.clone();
            async move {
                let s = status_of(&cgfs).await;
                let r = s.regions.iter().find(|r| r.region == region).cloned();
                r.map(|r| (r.members, r.last_sync_time.map(|t| t.0)))
            }
        };

        // West's standby: one pod running, held back by the gate, no member of the group;
        // the standby sync still commits there (it could not with a member in the group).
        let standby = gated_pod(west.clone()).await;
        assert_eq!(replicas(&deployments, &format!("billing-{west}")).await, 1);
        assert_eq!(replicas(&deployments, &format!("billing-{east}")).await, 1);
        let pod_seen = k8s_openapi::jiff::Timestamp::now();
        wait_until("west synced while its warm pod waits (0 members there)", SLOW, || async {
            let (members, synced) = members_and_sync(west.clone()).await?;
            (members == Some(0) && synced.is_some_and(|t| t > pod_seen)).then_some(())
        })
        .await;
        // Between passes the renewer keeps the Lease (and the gates) fresh.
        let renewer = "tributary_operator_lease_renewals_total{by=\"renewer\"}";
        wait_until("renewals by the renewer between passes", SLOW, || async {
            (operator_counter(stack, &ns, renewer).await > 0.0).then_some(())
        })
        .await;
        let mut before = Vec::new();
        for r in [&east, &west] {
            before.extend(produce_batch(stack, r, &topic, "warm-before", 40).await);
        }
        wait_consumed(stack, &ns, "records consumed in east", &before).await;
        assert!(
            consumed_by_pod(stack, &ns, &west)
                .get(&standby)
                .is_none_or(|c| c.is_empty()),
            "the gated standby pod {standby} consumed while east was active"
        );

        // The planned switchover: the waiting pod takes over.
        let edit_ms = now_ms();
        patch_spec(&cgfs, serde_json::json!({"spec": {"activeRegion": west}})).await;
        wait_active(&cgfs, &west, 2).await;
        let mut after = Vec::new();
        for r in [&east, &west] {
            after.extend(produce_batch(stack, r, &topic, "warm-after", 40).await);
        }
        let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
        wait_consumed(stack, &ns, "every record consumed, the last ones in west", &after).await;
        let in_west = consumed_by_pod(stack, &ns, &west);
        let first_ms = in_west
            .get(&standby)
            .and_then(|c| c.iter().map(|c| c.at_ms).min())
            .unwrap_or_else(|| panic!("the standby pod {standby} did not take over: {:?}", in_west.keys()));
        assert_eq!(
            in_west.keys().collect::<Vec<_>>(),
            vec![&standby],
            "west consumed only with its warm pod (no pod start)"
        );
        // The gate never said Stale to it: the agent would have ended the JVM (exit 3).
        assert_eq!(restarts(stack, &ns, &standby, "consumer").await, 0, "the standby pod {standby} restarted");
        let consumed: BTreeSet<String> = all_consumed(stack, &ns).into_iter().map(|c| c.value).collect();
        let lost: Vec<&String> = expected.iter().filter(|v| !consumed.contains(*v)).collect();
        assert!(lost.is_empty(), "lost {} records: {lost:?}", lost.len());
        let s = status_of(&cgfs).await;
        eprintln!(
            "warm planned switchover: edit -> first record in {west} {:.2}s, by the standby pod {standby} (operator rtoSeconds {:?})",
            (first_ms - edit_ms) as f64 / 1000.0,
            s.last_failover.as_ref().and_then(|l| l.rto_seconds)
        );

        // East, the region left, is a gated standby again.
        let east_standby = gated_pod(east.clone()).await;
        assert_eq!(replicas(&deployments, &format!("billing-{east}")).await, 1);
        wait_until("east holds no member of the group", SLOW, || async {
            let (members, _) = members_and_sync(east.clone()).await?;
            (members == Some(0)).then_some(())
        })
        .await;
        assert!(
            consumed_by_pod(stack, &ns, &east)
                .get(&east_standby)
                .is_none_or(|c| c.is_empty()),
            "east's new standby pod {east_standby} consumed while west was active"
        );
    })
    .await;
}

/// A member of the group in the standby region (a consumer that should not run there, or one a
/// restarted broker loaded that nothing owns) blocks that region's standby sync: after the
/// grace it is reported by `Degraded` (`StandbyHasMembers`) and an event that name it, and the
/// report ends when the member leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_in_the_standby_region_is_reported_by_name_until_it_leaves() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "e2e-failover-stray", |t| async move {
        let stack = &t.stack;
        let s = setup(&t, &Group::default(), 1).await;
        let suffix = s.ns.rsplit('-').next().unwrap_or("x").to_string();
        let west_aggregate = stack
            .region_kafka()
            .into_iter()
            .find(|r| r.region == s.west)
            .expect("west is a region of the stack")
            .aggregate;
        let member = tributary_e2e::kafka::GroupMember::join(
            &west_aggregate,
            &format!("billing-{suffix}"),
            &s.topic,
            "stray-consumer",
        );
        wait_until("west shows the stray member", SLOW, || async {
            let st = status_of(&s.cgfs).await;
            st.regions
                .iter()
                .any(|r| r.region == s.west && r.members == Some(1))
                .then_some(())
        })
        .await;
        let seen = Instant::now();
        wait_condition(&s.cgfs, "Degraded", "True", "StandbyHasMembers").await;
        let after = seen.elapsed();
        assert!(
            after >= Duration::from_secs(100),
            "reported {after:?} after the member appeared: the grace lets a region the group just left drain first"
        );
        let st = status_of(&s.cgfs).await;
        let message = &tributary_api::find_condition(&st.conditions, "Degraded").expect("Degraded").message;
        assert!(
            message.contains(&format!("standby region {} has had 1 member(s)", s.west))
                && message.contains("stray-consumer from"),
            "the message names the region and the member: {message}"
        );
        assert!(has_event(stack, &s.ns, "StandbyHasMembers").await, "a Warning event says it too");
        assert_eq!(st.epoch, Some(1), "a stray member moves nothing");

        drop(member);
        wait_condition(&s.cgfs, "Degraded", "False", "AsExpected").await;
    })
    .await;
}
