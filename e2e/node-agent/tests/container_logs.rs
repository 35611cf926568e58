//! The kubelet's log endpoint on the real apiserver: `pods/log` (what `kubectl logs` and
//! `Api::<Pod>::logs` call) of a pod the node agent runs returns its output, with the
//! kubelet's timestamps, `sinceTime`, `tailLines`, `follow` and `previous`.
//!
//! Needs the stack (`make stack-up`); a missing stack fails the test (`TRIBUTARY_SKIP_E2E=1`
//! skips and says so).

use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::LogParams;
use tributary_e2e::kube_util::apply_yaml;
use tributary_e2e::{Stack, TestNamespace, WAIT, wait_until};

/// `<stamp> <text>` lines, the stamps parsed.
fn stamped(text: &str) -> Vec<(Timestamp, String)> {
    text.lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').expect("a stamped line");
            (t.parse().expect("an RFC 3339 stamp"), rest.to_string())
        })
        .collect()
}

#[tokio::test]
async fn kubectl_logs_of_an_agent_pod_returns_its_output() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "logs", |ns| async move {
        // Prints three lines, then one a second; exits after 4 lines (restartPolicy: Always,
        // so the second run makes a `previous` log).
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: talk
      image: local/tributary:dev
      command: ["/bin/sh", "-c", "echo one; echo two; echo three; sleep 1; echo four; sleep 2; exit 1"]
"#;
        apply_yaml(&ns.stack.client, &ns.name, yaml)
            .await
            .expect("apply Pod");
        let pods = ns.api::<Pod>();
        let params = |f: fn(&mut LogParams)| {
            let mut p = LogParams {
                container: Some("talk".into()),
                ..LogParams::default()
            };
            f(&mut p);
            p
        };
        let logs = wait_until("the pod's log through the apiserver", WAIT, || async {
            let text = pods.logs("talker", &params(|_| {})).await.ok()?;
            text.starts_with("one\ntwo\nthree\n").then_some(text)
        })
        .await;
        assert!(!logs.contains("node agent: starting container"), "{logs}");

        // Timestamps: RFC 3339, unique and rising.
        let text = pods
            .logs("talker", &params(|p| p.timestamps = true))
            .await
            .expect("logs with timestamps");
        let lines = stamped(&text);
        assert_eq!(lines[0].1, "one");
        assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "{text}");

        // tailLines and sinceTime (whole seconds: the line stamped after it is in).
        let tail = pods
            .logs("talker", &params(|p| p.tail_lines = Some(1)))
            .await
            .expect("tailLines");
        assert_eq!(tail.lines().count(), 1, "{tail}");
        let future = pods
            .logs(
                "talker",
                &params(|p| p.since_time = Some(Timestamp::now() + std::time::Duration::from_secs(3600))),
            )
            .await
            .expect("sinceTime in the future");
        assert_eq!(future, "", "nothing is stamped after an hour from now");

        // follow: the stream brings lines as they are written, and ends when the container
        // restarts (as a kubelet's ends when its container exits).
        let stream = pods
            .log_stream("talker", &params(|p| {
                p.follow = true;
                p.timestamps = true;
            }))
            .await
            .expect("follow");
        let followed: Vec<String> = tokio::time::timeout(WAIT, stream.lines().try_collect())
            .await
            .expect("the follow ends when the container exits")
            .expect("read the stream");
        let texts: Vec<&str> = followed.iter().map(|l| l.split_once(' ').expect("stamp").1).collect();
        assert!(texts.starts_with(&["one", "two", "three"]), "{followed:?}");
        assert!(texts.len() <= 4, "one run only: {followed:?}");

        // previous: the first run, once the container restarted.
        let previous = wait_until("the container's previous run", WAIT, || async {
            let text = pods
                .logs("talker", &params(|p| p.previous = true))
                .await
                .ok()?;
            (text == "one\ntwo\nthree\nfour\n").then_some(text)
        })
        .await;
        assert_eq!(previous, "one\ntwo\nthree\nfour\n");
    })
    .await;
}
