//! The chart's `watchNamespaces` on the real local stack (`make stack-up`): Secrets are
//! granted by a Role in each listed namespace only. An AggregateCluster in a listed namespace
//! reads its SASL Secret and gets its route; the same object in another namespace is refused
//! by the API server, and its status says `Forbidden`, naming the Secret and the verb.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tributary_api::{AggregateCluster, find_condition};
use tributary_e2e::{Role as KafkaRole, Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(180);

fn objects(suffix: &str, region: &str, regional: &str, aggregate: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: aggregate-sasl}}
stringData: {{password: "pw-{suffix}"}}
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: scoped, labels: {{scoped: "true"}}}}
spec:
  region: {region}
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics: [{{name: scoped-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: scoped}}
spec:
  region: {region}
  kafka:
    bootstrapServers: ["{aggregate}"]
    sasl: {{mechanism: PLAIN, username: scoped, password: {{name: aggregate-sasl, key: password}}}}
  sources: {{matchLabels: {{scoped: "true"}}}}
  checkpoints: {{interval: 1s, topic: checkpoints-scoped-{suffix}, retention: 168h}}
"#
    )
}

#[tokio::test]
async fn watch_namespaces_grants_secrets_only_there_and_elsewhere_says_forbidden() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "scoped", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let outside = format!("unscoped-{suffix}");
        let namespaces: Api<Namespace> = Api::all(stack.client.clone());
        let other: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": outside, "labels": {"tributary.dev/e2e": "true"}}
        }))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &other)
            .await
            .expect("second namespace");
        let release = format!("tributary-{ns}");
        let operator = stack.install_operator(
            &release,
            &ns,
            &[
                "replicaCount=1".to_string(),
                format!("watchNamespaces={{{ns}}}"),
            ],
        );

        // The chart: no Secrets in the ClusterRole, a Role for them in the listed namespace.
        let cluster_roles: Api<ClusterRole> = Api::all(stack.client.clone());
        let cluster_role = cluster_roles.get(&release).await.expect("ClusterRole");
        assert!(
            !cluster_role.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|x| x == "secrets")),
            "Secrets are not granted cluster-wide"
        );
        let roles: Api<Role> = t.api();
        let role = roles
            .get(&release)
            .await
            .expect("Role in the watched namespace");
        let secrets_rule = role
            .rules
            .iter()
            .flatten()
            .find(|r| r.resources.iter().flatten().any(|x| x == "secrets"))
            .expect("a Secrets rule");
        assert_eq!(
            secrets_rule.verbs,
            ["get"],
            "read by name only, never listed or watched"
        );

        let region = stack.regions[0].clone();
        let yaml = objects(
            &suffix,
            &region,
            stack.bootstrap(&region, KafkaRole::Regional),
            stack.bootstrap(&region, KafkaRole::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml)
            .await
            .expect("apply inside");
        apply_yaml(&stack.client, &outside, &yaml)
            .await
            .expect("apply outside");

        // Outside: the Secret read is refused, and the status says so.
        let outside_aggs: Api<AggregateCluster> = Api::namespaced(stack.client.clone(), &outside);
        let message = wait_until(
            "Forbidden in the unwatched AggregateCluster's status",
            SLOW,
            || async {
                let a = outside_aggs.get("scoped").await.ok()?;
                let c = find_condition(&a.status?.conditions, "Ready")?.clone();
                (c.status == "False" && c.reason == "Forbidden").then_some(c.message)
            },
        )
        .await;
        assert!(
            message.contains("aggregate-sasl")
                && message.contains("forbidden")
                && message.contains("secrets"),
            "{message}"
        );
        // Inside: the Secret is read, the route's replicator Deployment is applied.
        let deployments: Api<Deployment> = t.api();
        wait_until("the watched namespace's route Deployment", SLOW, || async {
            let list = deployments
                .list(&ListParams::default().labels("app.kubernetes.io/component=replicator"))
                .await
                .ok()?;
            (!list.items.is_empty()).then_some(())
        })
        .await;
        let inside_aggs: Api<AggregateCluster> = t.api();
        let inside = inside_aggs.get("scoped").await.expect("inside object");
        let reason = inside
            .status
            .and_then(|s| find_condition(&s.conditions, "Ready").map(|c| c.reason.clone()))
            .unwrap_or_default();
        assert_ne!(
            reason, "Forbidden",
            "the watched namespace's Secret is readable"
        );

        drop(operator);
        let _ = namespaces.delete(&outside, &DeleteParams::default()).await;
    })
    .await;
}
