//! The coordination plane on real processes (`make coordination-test`): the active-region
//! Lease lives on a kube-apiserver whose etcd has one voting member per region. With any one
//! member killed the Lease is still read and moved by compare-and-swap; with two killed there
//! is no quorum and every request fails with a timeout instead of answering stale or
//! split-brained data. Opt-in (`#[ignore]`): the plane is not part of the default stack yet.
//! When run, a missing plane fails the test.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tributary_e2e::{Coordination, wait_until};

/// The tests kill members of the one plane: never two at once.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NAMESPACE: &str = "tributary-e2e-coordination";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{prefix}-{nanos:08x}")
}

fn lease_spec(holder: &str, epoch: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_transitions: Some(epoch),
        lease_duration_seconds: Some(10),
        ..Default::default()
    }
}

fn holder_and_epoch(l: &Lease) -> (String, i32) {
    let s = l.spec.as_ref().expect("lease spec");
    (
        s.holder_identity.clone().unwrap_or_default(),
        s.lease_transitions.unwrap_or(-1),
    )
}

/// The operator's move: replace carrying the observed resourceVersion (a compare-and-swap).
async fn move_lease(
    leases: &Api<Lease>,
    observed: &Lease,
    to: &str,
    epoch: i32,
) -> Result<Lease, kube::Error> {
    let mut l = observed.clone();
    l.spec = Some(lease_spec(to, epoch));
    leases
        .replace(
            &l.metadata.name.clone().expect("name"),
            &PostParams::default(),
            &l,
        )
        .await
}

async fn create_lease(plane: &Coordination, name: &str, holder: &str) -> Api<Lease> {
    plane.ensure_namespace(NAMESPACE).await;
    let leases: Api<Lease> = Api::namespaced(plane.operator.clone(), NAMESPACE);
    let l = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(lease_spec(holder, 1)),
    };
    leases
        .create(&PostParams::default(), &l)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating Lease {NAMESPACE}/{name} as the operator: {e}\n{}",
                plane.status()
            )
        });
    leases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the coordination plane: make coordination-test"]
async fn the_lease_is_read_and_moved_with_any_one_etcd_member_killed() {
    let Some(plane) = Coordination::connect().await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let name = unique("quorum");
    let leases = create_lease(&plane, &name, &plane.regions[0]).await;
    let mut epoch = 1;
    // Every member once: one of them is the etcd leader, so a leader's loss is covered too.
    for (i, region) in plane.regions.clone().iter().enumerate() {
        let before = leases.get(&name).await.expect("lease before the kill");
        let down = plane.member_down(region);
        let killed = Instant::now();
        let to = &plane.regions[(i + 1) % plane.regions.len()];

        // The apiserver's etcd client may have been talking to the killed member: it moves
        // to another endpoint. Count what fails meanwhile; the test asserts it is brief.
        let mut errors = Vec::new();
        let moved = loop {
            let current = leases.get(&name).await;
            let result = match current {
                Ok(current) => {
                    assert_eq!(
                        holder_and_epoch(&current),
                        holder_and_epoch(&before),
                        "the Lease changed under us"
                    );
                    move_lease(&leases, &current, to, epoch + 1).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(l) => break l,
                Err(e) => {
                    errors.push(e.to_string());
                    assert!(
                        killed.elapsed() < Duration::from_secs(15),
                        "with etcd member {region} killed, the Lease was not movable within 15 s: {errors:?}\n{}",
                        plane.status()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        epoch += 1;
        assert_eq!(holder_and_epoch(&moved), (to.clone(), epoch));
        eprintln!(
            "etcd member {region} killed: Lease moved to {to} (epoch {epoch}) after {:?}, {} failed attempts before {errors:?}",
            killed.elapsed(),
            errors.len()
        );
        // The compare-and-swap still holds: a writer with the old resourceVersion loses.
        let stale = move_lease(&leases, &before, region, epoch + 1).await;
        assert!(
            matches!(&stale, Err(kube::Error::Api(e)) if e.code == 409),
            "a move from a stale Lease must conflict (409), got {stale:?}"
        );
        assert_eq!(
            holder_and_epoch(&leases.get(&name).await.expect("lease")),
            (to.clone(), epoch),
            "a reread with member {region} down sees the move"
        );
        down.restore();
    }
    assert_eq!(epoch, 1 + plane.regions.len() as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the coordination plane: make coordination-test"]
async fn without_an_etcd_quorum_lease_requests_fail_with_a_timeout_and_nothing_else_moves() {
    let Some(plane) = Coordination::connect().await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let name = unique("noquorum");
    let (a, b, c) = (&plane.regions[0], &plane.regions[1], &plane.regions[2]);
    let leases = create_lease(&plane, &name, a).await;
    let before = leases.get(&name).await.expect("lease");

    let down_a = plane.member_down(a);
    let down_b = plane.member_down(b);
    // The coordination apiserver runs with --request-timeout=10s: a request etcd cannot
    // commit or linearize fails as 504 Timeout, well inside the client's 30 s.
    let t = Instant::now();
    let write = move_lease(&leases, &before, c, 2).await;
    let write_took = t.elapsed();
    match &write {
        Err(kube::Error::Api(e)) => {
            assert!(
                e.code == 504 || e.code == 500 || e.code == 503,
                "without a quorum, a Lease write fails as a server timeout or error, got {e:?}"
            );
            eprintln!(
                "write without quorum failed after {write_took:?}: {} {} {}",
                e.code, e.reason, e.message
            );
        }
        other => panic!(
            "with etcd members {a} and {b} down, a Lease write must fail, got {other:?}\n{}",
            plane.status()
        ),
    }
    assert!(
        write_took < Duration::from_secs(20),
        "a write without quorum must fail promptly (the apiserver's request timeout is 10 s), took {write_took:?}"
    );
    // A read is linearizable (a quorum read): no stale answer either.
    let t = Instant::now();
    let read = leases.get(&name).await;
    assert!(
        read.is_err(),
        "with etcd members {a} and {b} down, a Lease read must fail, got {read:?}"
    );
    eprintln!(
        "read without quorum failed after {:?}: {}",
        t.elapsed(),
        read.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let status = plane.status();
    assert!(
        status.contains("not ready"),
        "the coordination apiserver must report itself not ready without a quorum:\n{status}"
    );

    // Quorum back: the Lease is served again. A write that timed out has an unknown outcome
    // (etcd may commit it once the quorum returns), so the Lease is either as it was or as
    // that write left it; never anything else.
    down_a.restore();
    let after = wait_until(
        "the Lease readable with the quorum back",
        Duration::from_secs(60),
        || async { leases.get(&name).await.ok() },
    )
    .await;
    let seen = holder_and_epoch(&after);
    assert!(
        seen == (a.clone(), 1) || seen == (c.clone(), 2),
        "after the quorum returned, the Lease must be as before or as the timed-out write left it, got {seen:?}"
    );
    let moved = move_lease(&leases, &after, b, seen.1 + 1)
        .await
        .expect("with the quorum back (2 of 3 members), the Lease moves again");
    assert_eq!(holder_and_epoch(&moved), (b.clone(), seen.1 + 1));
    down_b.restore();
}
