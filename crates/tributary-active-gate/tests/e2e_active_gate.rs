//! `tributary active-gate` against the stack's real kube-apiserver: a pod with the gate as a
//! sidecar and the readiness gate `tributary.dev/active`, run by the node agent under the
//! RBAC of examples/active-gate/rbac.yaml. The test writes the `billing-active` ConfigMap as
//! the operator does (renewing `renewTime`), then moves it: `GET /active`, the file, the pod
//! condition and the pod's Ready flip with it — for a move, a fence, a record that goes stale
//! without any event, and a deleted ConfigMap. A second test stops a gate with SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tributary_e2e::{Stack, TestNamespace, apply_yaml, image_tag, repo_path, wait_until};

const CM: &str = "billing-active";
const POD: &str = "billing-gate-0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// `GET /active`: (status code, JSON body); `None` while nothing listens.
fn get_active(port: u16) -> Option<(u16, Value)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET /active HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let code = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1;
    Some((code, serde_json::from_str(body.trim()).ok()?))
}

/// The ConfigMap as the operator writes it, renewed `age` ago.
fn record(region: &str, epoch: u64, fenced: bool, age: Duration) -> BTreeMap<String, String> {
    let renew = Timestamp::now()
        .checked_sub(SignedDuration::try_from(age).unwrap_or(SignedDuration::ZERO))
        .unwrap_or_else(|_| Timestamp::now());
    BTreeMap::from([
        ("activeRegion".into(), region.into()),
        ("epoch".into(), epoch.to_string()),
        ("bootstrapServers".into(), "127.0.0.1:1".into()),
        ("renewTime".into(), renew.to_string()),
        ("ttlSeconds".into(), "30".into()),
        ("fenced".into(), fenced.to_string()),
    ])
}

async fn write_cm(cms: &Api<ConfigMap>, data: BTreeMap<String, String>) {
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(CM.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    cms.patch(
        CM,
        &PatchParams::apply("e2e-operator").force(),
        &Patch::Apply(&cm),
    )
    .await
    .unwrap_or_else(|e| panic!("writing ConfigMap {CM}: {e}"));
}

/// Polls `/active` until `want(code, body)`; returns how long it took.
async fn until_active(port: u16, what: &str, want: impl Fn(u16, &Value) -> bool) -> Duration {
    let start = Instant::now();
    wait_until(what, Duration::from_secs(30), || {
        let ok = get_active(port).is_some_and(|(c, b)| want(c, &b));
        async move { ok.then_some(()) }
    })
    .await;
    start.elapsed()
}

fn condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until the pod's `tributary.dev/active` and `Ready` are both `want`; returns how long
/// it took and Ready's reason.
async fn until_ready(pods: &Api<Pod>, want: bool, what: &str) -> (Duration, Option<String>) {
    let start = Instant::now();
    let status = if want { "True" } else { "False" };
    let reason = wait_until(what, Duration::from_secs(30), || async {
        let pod = pods.get(POD).await.ok()?;
        let gate = condition(&pod, "tributary.dev/active")?;
        let ready = condition(&pod, "Ready")?;
        (gate.0 == status && ready.0 == status).then_some(ready.1)
    })
    .await;
    (start.elapsed(), reason)
}

fn read_file(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn pod_spec(region: &str, port: u16) -> Pod {
    let image = format!("local/tributary:{}", image_tag());
    serde_json::from_value(json!({
        "metadata": {"name": POD, "labels": {"app": "billing"}},
        "spec": {
            "serviceAccountName": "billing-consumer",
            "readinessGates": [{"conditionType": "tributary.dev/active"}],
            "nodeSelector": {"topology.kubernetes.io/region": region},
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532},
            "volumes": [{"name": "active", "emptyDir": {}}],
            "containers": [
                {"name": "consumer", "image": image, "command": ["sleep", "3600"]},
                {"name": "active-gate", "image": image,
                 "args": ["active-gate", "--configmap", CM, "--region", region,
                          "--port", port.to_string(), "--file", "/var/run/tributary/active.json",
                          "--recheck", "100ms"],
                 "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                 ],
                 "volumeMounts": [{"name": "active", "mountPath": "/var/run/tributary"}],
                 "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true}}
            ]
        }
    }))
    .unwrap_or_else(|e| panic!("pod object: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_answers_409_when_its_region_stops_being_active_and_the_pod_turns_unready() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "gate", |ns| async move {
        let region = ns.stack.regions[0].clone();
        let other = ns.stack.regions[1].clone();
        let rbac = std::fs::read_to_string(repo_path("examples/active-gate/rbac.yaml"))
            .unwrap_or_else(|e| panic!("examples/active-gate/rbac.yaml: {e}"));
        apply_yaml(&ns.stack.client, &ns.name, &rbac)
            .await
            .unwrap_or_else(|e| panic!("applying the example RBAC: {e}"));
        let cms: Api<ConfigMap> = ns.api();
        let pods: Api<Pod> = ns.api();

        // The operator: one record, renewed every second while `renewing`.
        let current = Arc::new(std::sync::Mutex::new((region.clone(), 1u64, false)));
        let renewing = Arc::new(AtomicBool::new(true));
        write_cm(&cms, record(&region, 1, false, Duration::ZERO)).await;
        let renewer = {
            let (cms, current, renewing) = (cms.clone(), current.clone(), renewing.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if renewing.load(Ordering::Relaxed) {
                        let (r, e, f) = current.lock().map(|c| c.clone()).unwrap_or_default();
                        write_cm(&cms, record(&r, e, f, Duration::ZERO)).await;
                    }
                }
            })
        };
        let set = |r: &str, e: u64, f: bool| {
            if let Ok(mut c) = current.lock() {
                *c = (r.to_string(), e, f);
            }
        };

        let port = free_port();
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod_spec(&region, port))
            .await
            .unwrap_or_else(|e| panic!("creating the pod: {e}"));
        let (_, reason) = until_ready(&pods, true, "the pod Ready with its gate True").await;
        assert_eq!(reason, None);
        eprintln!("pod created → Ready (gate True): {:?}", started.elapsed());
        let (code, body) = get_active(port).unwrap_or_else(|| panic!("no answer on /active"));
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (body["region"].as_str(), body["epoch"].as_u64()),
            (Some(region.as_str()), Some(1))
        );
        assert!(body["renewTime"].is_string(), "{body}");
        let file = ns.stack.state_dir.join(format!(
            "agent-{region}/pods/{}_{POD}/volumes/active/active.json",
            ns.name
        ));
        let on_file = read_file(&file).unwrap_or_else(|| panic!("no answer in {}", file.display()));
        assert_eq!(
            (on_file["active"].as_bool(), on_file["epoch"].as_u64()),
            (Some(true), Some(1))
        );

        // A move to the other region, as the operator writes it.
        set(&other, 2, false);
        let flip = Instant::now();
        write_cm(&cms, record(&other, 2, false, Duration::ZERO)).await;
        let took = until_active(port, "409 NotActive after the move", |c, b| {
            c == 409 && b["reason"] == "NotActive" && b["epoch"] == 2
        })
        .await;
        let (to_unready, reason) =
            until_ready(&pods, false, "the pod unready after the move").await;
        eprintln!(
            "move: /active 409 after {took:?}, pod Ready=False after {:?}",
            flip.elapsed()
        );
        assert_eq!(reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert!(to_unready < Duration::from_secs(10));
        let on_file = read_file(&file).unwrap_or_default();
        assert_eq!(
            (on_file["active"].as_bool(), on_file["reason"].as_str()),
            (Some(false), Some("NotActive"))
        );

        // Back (epoch 3), then fenced: nothing active.
        set(&region, 3, false);
        write_cm(&cms, record(&region, 3, false, Duration::ZERO)).await;
        until_active(port, "200 at epoch 3", |c, b| c == 200 && b["epoch"] == 3).await;
        until_ready(&pods, true, "the pod Ready again").await;
        set("", 3, true);
        write_cm(&cms, record("", 3, true, Duration::ZERO)).await;
        until_active(port, "409 Fenced", |c, b| {
            c == 409 && b["reason"] == "Fenced"
        })
        .await;
        until_ready(&pods, false, "the pod unready while fenced").await;

        // Renewals stop: a record renewed 18 s ago holds 2 s more (30 s TTL − 10 s margin)
        // and goes stale with no event at all.
        renewing.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        write_cm(&cms, record(&region, 3, false, Duration::from_secs(18))).await;
        until_active(port, "200 before the record expires", |c, _| c == 200).await;
        let stale_after = until_active(port, "409 Stale by the timer", |c, b| {
            c == 409 && b["reason"] == "Stale"
        })
        .await;
        eprintln!("stale by the timer after {stale_after:?} (expected about 2 s)");
        assert!(stale_after < Duration::from_secs(4), "{stale_after:?}");
        until_ready(&pods, false, "the pod unready once stale").await;

        // No ConfigMap at all: fail closed; it comes back through the same watch.
        renewer.abort();
        cms.delete(CM, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting the ConfigMap: {e}"));
        until_active(port, "409 ConfigMapMissing", |c, b| {
            c == 409 && b["reason"] == "ConfigMapMissing"
        })
        .await;
        write_cm(&cms, record(&region, 4, false, Duration::ZERO)).await;
        until_active(port, "200 at epoch 4 after re-creation", |c, b| {
            c == 200 && b["epoch"] == 4
        })
        .await;
        until_ready(&pods, true, "the pod Ready after re-creation").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_stops_on_sigterm_and_leaves_a_stopped_answer() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "gate-term", |ns| async move {
        let region = ns.stack.regions[0].clone();
        let cms: Api<ConfigMap> = ns.api();
        write_cm(&cms, record(&region, 7, false, Duration::ZERO)).await;
        let port = free_port();
        let file: PathBuf = std::env::temp_dir().join(format!("{}-active.json", ns.name));
        let kubeconfig = tributary_e2e::stack_var("KUBECONFIG");
        let mut child = std::process::Command::new(&ns.stack.tributary_bin)
            .args(["active-gate", "--configmap", CM, "--region", &region])
            .args(["--namespace", &ns.name, "--port", &port.to_string()])
            .arg("--file")
            .arg(&file)
            .env("KUBECONFIG", kubeconfig)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning tributary active-gate: {e}"));
        until_active(port, "200 from the process", |c, b| {
            c == 200 && b["epoch"] == 7
        })
        .await;
        assert_eq!(
            read_file(&file).and_then(|v| v["active"].as_bool()),
            Some(true)
        );

        let pid = nix_pid(&child);
        let signalled = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success());
        let exited = loop {
            if let Some(s) = child.try_wait().unwrap_or(None) {
                break s;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "no exit within 5 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!("SIGTERM → exit in {:?}", signalled.elapsed());
        assert!(exited.success(), "exit status {exited:?}");
        let left = read_file(&file).unwrap_or_default();
        assert_eq!(
            (left["active"].as_bool(), left["reason"].as_str()),
            (Some(false), Some("Stopped"))
        );
        let _ = std::fs::remove_file(&file);
    })
    .await;
}

fn nix_pid(child: &std::process::Child) -> u32 {
    child.id()
}
