//! `kubectl tributary failover` against the real API server: the spec edit is a server-side
//! apply with the plugin's own field manager, a field another manager owns is refused unless
//! `--force`, and the plugin follows the move in status until the new epoch. No operator runs
//! (objects are paused): the test writes the statuses an operator would, in order.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use kube::core::DynamicObject;
use support::{Stack, plugin, run_plugin, stdout_of, wait_until};

fn group_yaml(active: Option<&str>) -> String {
    format!(
        r#"apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {{name: billing, annotations: {{tributary.dev/paused: "true"}}}}
spec:
  groupId: billing
  topics: [orders]
  mode: ActivePassive
  regions:
    - {{region: east, aggregateCluster: east}}
    - {{region: west, aggregateCluster: west}}
  failover: {{witness: witness}}
{}"#,
        active
            .map(|a| format!("  activeRegion: {a}\n"))
            .unwrap_or_default()
    )
}

const ACTIVE_EAST: &str = r#"
observedGeneration: 1
activeRegion: east
epoch: 1
conditions:
  - {type: Ready, status: "True", reason: Active, message: "east is active", lastTransitionTime: "2026-12-01T12:00:00Z"}
  - {type: FailingOver, status: "False", reason: Idle, message: "", lastTransitionTime: "2026-12-01T12:00:00Z"}
regions:
  - {region: east, healthy: true, role: Active}
  - {region: west, healthy: true, role: Standby}
lastFailover: {to: east, reason: Initial, epoch: 1}
"#;

fn owners_of_active_region(obj: &DynamicObject) -> Vec<String> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:activeRegion").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

#[tokio::test]
async fn failover_sets_the_spec_as_its_own_manager_and_follows_the_move_to_the_new_epoch() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let s = stack.clone();
    stack
        .in_namespace("cli-failover", |ns| async move {
            let stack = s;
            stack.apply(&ns, &group_yaml(None)).await;
            stack
                .apply_status(&ns, "ConsumerGroupFailover", "billing", ACTIVE_EAST)
                .await;

            let child = Command::new(plugin())
                .args(["failover", "billing", "--to", "west", "-n", &ns, "--timeout", "60s"])
                .env("KUBECONFIG", &stack.kubeconfig)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl-tributary starts");

            // Play the operator: see the intent, begin the move, drain, finish at epoch 2.
            let api = stack.tributary_api(&ns, "ConsumerGroupFailover", "consumergroupfailovers");
            let edited = wait_until("spec.activeRegion: west", Duration::from_secs(30), || async {
                let o = api.get("billing").await.ok()?;
                (o.data["spec"]["activeRegion"] == "west").then_some(o)
            })
            .await;
            assert_eq!(owners_of_active_region(&edited), ["kubectl-tributary"]);
            let generation = edited.metadata.generation.expect("generation");
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    &format!(
                        r#"
observedGeneration: {generation}
activeRegion: east
epoch: 1
actedActiveRegion: west
conditions:
  - {{type: Ready, status: "False", reason: FailingOver, message: "moving to west", lastTransitionTime: "2026-12-01T12:00:00Z"}}
  - {{type: FailingOver, status: "True", reason: Draining, message: "east: 2 consumer pods still running", lastTransitionTime: "2026-12-01T12:00:00Z"}}
pendingMove: {{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 2}}
"#
                    ),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    &format!(
                        r#"
observedGeneration: {generation}
activeRegion: west
epoch: 2
actedActiveRegion: west
conditions:
  - {{type: Ready, status: "True", reason: Active, message: "west is active", lastTransitionTime: "2026-12-01T12:00:00Z"}}
  - {{type: FailingOver, status: "False", reason: Idle, message: "", lastTransitionTime: "2026-12-01T12:00:00Z"}}
lastFailover: {{from: east, to: west, reason: SpecChanged, kind: Planned, epoch: 2, rtoSeconds: 1.5, maxDuplicatesAfterDedupe: 0}}
"#
                    ),
                )
                .await;

            let out = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .expect("join")
                .expect("plugin output");
            let text = stdout_of(&out, "failover billing --to west");
            println!("{text}");
            assert!(text.contains("spec.activeRegion of billing set to west (field manager kubectl-tributary"), "{text}");
            assert!(
                text.contains("Planned SpecChanged move east→west (epoch 2): Draining — east: 2 consumer pods still running"),
                "{text}"
            );
            let last = text.lines().last().expect("a result line");
            assert!(
                last.ends_with("billing is active in west at epoch 2: Planned SpecChanged move from east, RTO 1.5s, at most 0 duplicates after dedupe"),
                "{last}"
            );

            // Asking again: already there, nothing to do, no write.
            let again = stdout_of(
                &run_plugin(&stack, &["failover", "billing", "--to", "west", "-n", &ns]),
                "failover again",
            );
            assert!(again.contains("already active in west at epoch 2"), "{again}");

            // `plan` shows the finished move from status, as text and as JSON.
            let plan = stdout_of(&run_plugin(&stack, &["plan", "billing", "-n", &ns]), "plan");
            assert!(plan.starts_with("billing: active in west at epoch 2\n"), "{plan}");
            assert!(plan.contains("no move under way\n"), "{plan}");
            assert!(plan.contains("LAST MOVE\nPlanned SpecChanged move east→west at epoch 2\n"), "{plan}");
            let json = stdout_of(&run_plugin(&stack, &["plan", "billing", "-n", &ns, "-o", "json"]), "plan -o json");
            let j: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            assert_eq!(j["kind"], "TributaryPlan");
            assert_eq!(j["lastFailover"]["maxDuplicatesAfterDedupe"], 0);
        })
        .await;
}

#[tokio::test]
async fn failover_refuses_a_field_another_manager_owns_unless_forced() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let s = stack.clone();
    stack
        .in_namespace("cli-conflict", |ns| async move {
            let stack = s;
            stack
                .apply_as(&ns, "argocd-controller", &group_yaml(Some("east")))
                .await;
            stack
                .apply_status(&ns, "ConsumerGroupFailover", "billing", ACTIVE_EAST)
                .await;
            let api = stack.tributary_api(&ns, "ConsumerGroupFailover", "consumergroupfailovers");

            let out = run_plugin(&stack, &["failover", "billing", "--to", "west", "-n", &ns, "--no-wait"]);
            assert!(!out.status.success(), "a GitOps-owned field must be refused");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("is owned by argocd-controller (Apply)"), "{err}");
            assert!(err.contains("set activeRegion: west in Git instead"), "{err}");
            assert!(err.contains("--force"), "{err}");
            let unchanged = api.get("billing").await.expect("get");
            assert_eq!(unchanged.data["spec"]["activeRegion"], "east");

            let out = run_plugin(
                &stack,
                &["failover", "billing", "--to", "west", "-n", &ns, "--no-wait", "--force"],
            );
            let text = stdout_of(&out, "failover --force");
            assert!(text.contains("not waiting (--no-wait)"), "{text}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("warning: took spec.activeRegion of billing from argocd-controller (Apply): change activeRegion to west in Git too"),
                "{err}"
            );
            let forced = api.get("billing").await.expect("get");
            assert_eq!(forced.data["spec"]["activeRegion"], "west");
            assert_eq!(owners_of_active_region(&forced), ["kubectl-tributary"]);

            // Refusals name what is wrong.
            let out = run_plugin(&stack, &["failover", "billing", "--to", "mars", "-n", &ns]);
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains("has no region mars: spec.regions lists east, west"));
            let out = run_plugin(&stack, &["failover", "nope", "--to", "west", "-n", &ns]);
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no ConsumerGroupFailover nope in namespace {ns}")));
        })
        .await;
}

#[tokio::test]
async fn failback_after_an_automatic_failover_makes_the_runbooks_two_edits() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let s = stack.clone();
    stack
        .in_namespace("cli-failback", |ns| async move {
            let stack = s;
            stack.apply(&ns, &group_yaml(None)).await;
            // An earlier `kubectl tributary failover --to east` (a partial apply, as the plugin's).
            stack
                .apply_as(
                    &ns,
                    "kubectl-tributary",
                    "{apiVersion: tributary.dev/v1alpha1, kind: ConsumerGroupFailover, metadata: {name: billing}, spec: {activeRegion: east}}",
                )
                .await;
            let api = stack.tributary_api(&ns, "ConsumerGroupFailover", "consumergroupfailovers");
            let generation = api.get("billing").await.expect("get").metadata.generation.expect("generation");
            // Then east died and the group moved to west by itself; the spec still says east.
            let status = |generation: i64, active: &str, epoch: i64, acted: &str, last: &str| {
                format!(
                    r#"
observedGeneration: {generation}
activeRegion: {active}
epoch: {epoch}
actedActiveRegion: {acted}
conditions:
  - {{type: Ready, status: "True", reason: Active, message: "{active} is active", lastTransitionTime: "2026-12-01T12:00:00Z"}}
regions:
  - {{region: east, healthy: true}}
  - {{region: west, healthy: true}}
lastFailover: {last}
"#
                )
            };
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    &status(generation, "west", 2, "east", "{from: east, to: west, reason: RegionDown, kind: Unplanned, epoch: 2}"),
                )
                .await;

            let child = Command::new(plugin())
                .args(["failback", "billing", "-n", &ns, "--timeout", "60s"])
                .env("KUBECONFIG", &stack.kubeconfig)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("kubectl-tributary starts");

            // First edit: the current region, acknowledged without a move.
            let first = wait_until("spec.activeRegion: west", Duration::from_secs(30), || async {
                let o = api.get("billing").await.ok()?;
                (o.data["spec"]["activeRegion"] == "west").then_some(o)
            })
            .await;
            let g1 = first.metadata.generation.expect("generation");
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    &status(g1, "west", 2, "west", "{from: east, to: west, reason: RegionDown, kind: Unplanned, epoch: 2}"),
                )
                .await;
            // Second edit: the target; the move finishes at epoch 3.
            let second = wait_until("spec.activeRegion: east", Duration::from_secs(30), || async {
                let o = api.get("billing").await.ok()?;
                (o.data["spec"]["activeRegion"] == "east").then_some(o)
            })
            .await;
            let g2 = second.metadata.generation.expect("generation");
            assert!(g2 > g1);
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    &status(g2, "east", 3, "east", "{from: west, to: east, reason: Failback, kind: Planned, epoch: 3, rtoSeconds: 2.1}"),
                )
                .await;

            let out = tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .expect("join")
                .expect("plugin output");
            let text = stdout_of(&out, "failback billing");
            println!("{text}");
            assert!(text.contains("spec.activeRegion already says east and was acted on, but billing is active in west"), "{text}");
            assert!(text.contains("billing is active in west at epoch 2 (spec acknowledged, no move)"), "{text}");
            assert!(
                text.lines().last().expect("result").ends_with("billing is active in east at epoch 3: Planned Failback move from west, RTO 2.1s"),
                "{text}"
            );
        })
        .await;
}
