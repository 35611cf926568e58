//! `kubectl tributary drill` on the local stack, the short version `make test` runs: the
//! operator installed by its chart into a fresh namespace, two regions' streams, aggregates,
//! VerifiableConsumer workloads and an ActivePassive group at the tight failover settings;
//! then two drills, a region loss and a planned switchover, must end with nothing lost or
//! skipped, no split brain and every epoch +1 (the plugin's own summary line and exit code).
//! The same for an ActiveActive group and `primary-kill`: a new primary at epoch + 1, every
//! record consumed in every surviving region, no time with two primaries; that drill reads
//! the consumers' events through the Kubernetes API (`--consumer-events api`), the other from
//! the node agent's files.
//!
//! Needs the stack (`make stack-up`); a missing stack fails the test (`TRIBUTARY_SKIP_E2E=1`
//! skips and says so). It kills and restores a region; a panic brings every region back.

mod support;

use std::process::Command;

use support::operator::{ONE_OPERATOR, install, wait_first_activation};
use support::{Stack, plugin, repo_dir, stack_var};

/// Runs `drill` against `billing` in a fresh namespace with the operator installed and
/// returns (summary line, exit success, report JSON, timeline SVG).
async fn drill_on_stack(
    prefix: &str,
    mode: &'static str,
    drill_args: &'static [&'static str],
) -> Option<(String, bool, serde_json::Value, String)> {
    let stack = Stack::connect().await?;
    let _one = ONE_OPERATOR.lock().await;
    let result = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (s, out_slot) = (stack.clone(), result.clone());
    stack
        .in_namespace(prefix, move |ns| async move {
            let stack = s;
            let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
            let _cleanup = install(&stack, &ns, &suffix, mode);
            wait_first_activation(&stack, &ns).await;

            let dir = std::env::temp_dir().join(format!("drill-test-{suffix}"));
            std::fs::create_dir_all(&dir).expect("work dir");
            let stack_sh = repo_dir().join("e2e/stack/stack.sh");
            let state = stack_var("TRIBUTARY_STATE_DIR").expect("TRIBUTARY_STATE_DIR");
            let report = dir.join("report.json");
            let timeline = dir.join("timeline.svg");
            let mut args: Vec<String> = ["-n", &ns, "drill", "--group", "billing"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            args.extend(drill_args.iter().map(|a| a.to_string()));
            args.extend([
                "--pod-logs".to_string(),
                state.clone(),
                "--work-dir".into(),
                dir.display().to_string(),
                "--report".into(),
                report.display().to_string(),
                "--timeline".into(),
                timeline.display().to_string(),
                "--region-down-cmd".into(),
                format!("bash {} region-down {{region}}", stack_sh.display()),
                "--region-up-cmd".into(),
                format!("bash {} region-up {{region}}", stack_sh.display()),
            ]);
            let out = Command::new(plugin())
                .args(&args)
                .env("KUBECONFIG", &stack.kubeconfig)
                .env("TRIBUTARY_STATE_DIR", &state)
                .output()
                .expect("kubectl-tributary drill runs");
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            let summary = stdout.lines().last().unwrap_or_default().to_string();
            let json: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&report).expect("the report is written"),
            )
            .expect("the report is JSON");
            let svg = std::fs::read_to_string(&timeline).expect("the timeline is written");
            *out_slot.lock().expect("slot") = Some((summary, out.status.success(), json, svg));
        })
        .await;
    let taken = result.lock().expect("slot").take();
    Some(taken.expect("the drill ran"))
}

fn faults_of(report: &serde_json::Value) -> Vec<String> {
    report["drills"]
        .as_array()
        .expect("drills")
        .iter()
        .filter_map(|d| d["verdict"]["fault"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drills_lose_nothing_and_step_the_epoch_by_one() {
    let Some((summary, passed, json, svg)) = drill_on_stack(
        "drill",
        "ActivePassive",
        &[
            "--drills",
            "2",
            "--faults",
            "region-down,switchover",
            "--in-order",
        ],
    )
    .await
    else {
        return;
    };
    assert!(
        summary.starts_with("drill: n=2 lost=0 skipped=0 "),
        "the summary line: {summary}"
    );
    assert!(
        summary.contains(" non_monotonic=0 epoch_ok=true "),
        "the summary line: {summary}"
    );
    assert!(
        summary.ends_with(" standby_member_repairs=0"),
        "no repair asked for: {summary}"
    );
    assert!(
        summary.contains(" split_brain_s=0.0 "),
        "the summary line: {summary}"
    );
    assert!(passed, "drill failed: {summary}");
    assert_eq!(faults_of(&json), ["region-down", "switchover"]);
    assert!(svg.contains("<polyline"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_of_an_active_active_group_elects_one_new_primary() {
    // The consumers' events through the Kubernetes API (`pods/log`, followed) rather than the
    // node agent's files: the same verdict, at no extra time.
    let Some((summary, passed, json, _)) = drill_on_stack(
        "drill-aa",
        "ActiveActive",
        &[
            "--drills",
            "1",
            "--faults",
            "primary-kill",
            "--consumer-events",
            "api",
        ],
    )
    .await
    else {
        return;
    };
    assert!(
        summary.starts_with("drill: n=1 lost=0 skipped=0 "),
        "the summary line: {summary}"
    );
    assert!(
        summary.contains(" split_brain_s=0.0 non_monotonic=0 epoch_ok=true"),
        "the summary line: {summary}"
    );
    assert!(passed, "drill failed: {summary}");
    assert_eq!(faults_of(&json), ["primary-kill"]);
    assert_eq!(json["consumerEvents"], "api", "read through pods/log");
    let verdict = &json["drills"][0]["verdict"];
    assert_eq!(verdict["epoch_after"], 2, "{verdict}");
    assert!(verdict["rto_s"].as_f64().is_some(), "{verdict}");
}
