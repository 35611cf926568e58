//! The Helm chart renders, lints clean, ships the same CRDs as `crds/`, and its RBAC names
//! every verb and resource explicitly.

use std::process::Command;

use tributary_e2e::{Stack, repo_path};

fn helm(stack: &Stack, args: &[&str]) -> String {
    let out = Command::new(&stack.helm)
        .args(args)
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn chart_lints_clean_and_rbac_has_no_wildcards() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let chart = repo_path("charts/tributary");
    let chart = chart.to_str().expect("utf-8 path");
    helm(&stack, &["lint", "--strict", chart]);
    let rendered = helm(
        &stack,
        &[
            "template",
            "t",
            chart,
            "--namespace",
            "tributary-system",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ],
    );
    let docs = tributary_e2e::kube_util::parse_yaml_docs(&rendered);
    let kinds: Vec<String> = docs
        .iter()
        .filter_map(|d| d.types.as_ref().map(|t| t.kind.clone()))
        .collect();
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "ServiceMonitor",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "chart renders no {kind}: {kinds:?}"
        );
    }
    let role = docs
        .iter()
        .find(|d| d.types.as_ref().is_some_and(|t| t.kind == "ClusterRole"))
        .expect("ClusterRole");
    let rules = role.data["rules"].as_array().expect("rules");
    for rule in rules {
        for key in ["apiGroups", "resources", "verbs"] {
            let values = rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule lacks {key}: {rule}"));
            assert!(values.iter().all(|v| v != "*"), "wildcard in {key}: {rule}");
        }
    }
    let secrets = rules
        .iter()
        .find(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "secrets"))
        })
        .expect("a rule for secrets");
    assert_eq!(
        secrets["verbs"],
        serde_json::json!(["get"]),
        "secrets are read one by one: never listed or watched"
    );

    let deployment = docs
        .iter()
        .find(|d| d.types.as_ref().is_some_and(|t| t.kind == "Deployment"))
        .expect("Deployment");
    let pod = &deployment.data["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(container["livenessProbe"].is_object() && container["readinessProbe"].is_object());
}

#[test]
fn chart_crds_are_the_files_in_crds() {
    for entry in std::fs::read_dir(repo_path("crds")).expect("crds/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name");
        let chart_copy = repo_path("charts/tributary/crds").join(name);
        assert_eq!(
            std::fs::read(&path).expect("readable"),
            std::fs::read(&chart_copy).unwrap_or_default(),
            "{} differs from crds/: run `make crds`",
            chart_copy.display()
        );
    }
}

#[tokio::test]
async fn chart_region_runs_the_operator_per_region_only_with_a_coordination_server() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let chart = repo_path("charts/tributary");
    let chart = chart.to_str().expect("utf-8 path");
    let rendered = helm(
        &stack,
        &[
            "template",
            "t",
            chart,
            "--set",
            "region=east,coordination.kubeconfigSecret.name=coordination,coordination.kubeconfigSecret.key=kubeconfig",
        ],
    );
    assert!(rendered.contains("- --region=east"), "{rendered}");
    assert!(!helm(&stack, &["template", "t", chart]).contains("--region"));
    // Per-region operators without a shared Lease could all be active at once: refused.
    let refused = Command::new(&stack.helm)
        .args(["template", "t", chart, "--set", "region=east"])
        .output()
        .expect("helm runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("coordination.kubeconfigSecret is required"),
        "{stderr}"
    );
}
