//! Operator hardening on the real local stack (`make stack-up`), each test with the chart's
//! operator in a fresh namespace:
//! - secrets never reach the API server's refusals, status, events, Deployments or any log —
//!   neither a secret client property (refused by the schema) nor Secret material that
//!   librdkafka fails on;
//! - a paused RegionalStream with `deletionPolicy: Delete` can still be deleted;
//! - same-named routes in two namespaces, with a dot in the source's name, both run (distinct
//!   consumer groups, no crash loop), and a route's rollout never runs two replicator pods.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tributary_api::{AggregateCluster, RegionalStream, find_condition};
use tributary_e2e::kafka::{consume_all, produce};
use tributary_e2e::{HelmRelease, Role, Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(180);

/// One operator release at a time: every operator watches every namespace.
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[must_use]
fn install(stack: &Stack, ns: &str) -> HelmRelease {
    stack.install_operator(
        &format!("tributary-{ns}"),
        ns,
        &["replicaCount=1".to_string()],
    )
}

/// Every process log (`<container>.log`) of every pod of namespace `ns`, on every node. Not the
/// pods' volumes: those hold the mounted Secrets themselves.
fn pod_logs(stack: &Stack, ns: &str) -> String {
    let mut text = String::new();
    for r in &stack.regions {
        let dir = stack.state_dir.join(format!("agent-{r}/pods"));
        for pod in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !pod
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{ns}_"))
            {
                continue;
            }
            for f in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = f.path();
                if path.extension().is_some_and(|e| e == "log") {
                    text.push_str(&read(&path));
                }
            }
        }
    }
    text
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn suffix_of(ns: &str) -> String {
    ns.rsplit('-').next().unwrap_or("x").to_string()
}

#[tokio::test]
async fn secrets_never_reach_refusals_status_events_deployments_or_logs() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "leak", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let region = stack.regions[0].clone();
        let oauth = format!("oauth-marker-{suffix}");
        let key = format!("key-marker-{suffix}");
        let password = format!("password-marker-{suffix}");

        // 1. The API server refuses a secret property, naming the field and key, not the value.
        let streams: Api<RegionalStream> = t.api();
        let inline: RegionalStream = serde_yaml::from_str(&format!(
            r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: inline-secret}}
spec:
  region: {region}
  kafka:
    bootstrapServers: ["{regional}"]
    properties: {{sasl.oauthbearer.client.secret: "{oauth}"}}
  topics: [{{name: inline-{suffix}, partitions: 1, replicationFactor: 1}}]
"#,
            regional = stack.bootstrap(&region, Role::Regional),
        ))
        .expect("object");
        let refusal = match streams.create(&PostParams::default(), &inline).await {
            Err(kube::Error::Api(status)) => status.message,
            other => panic!("the API server accepted a secret property: {other:?}"),
        };
        assert!(
            refusal.contains("spec.kafka.properties")
                && refusal.contains("sasl.oauthbearer.client.secret")
                && !refusal.contains(&oauth),
            "{refusal}"
        );

        // 2. Secret material librdkafka fails on (a key that is no PEM, behind SASL): the
        // RegionalStream reports the failure, the route's replicator crash-loops on it.
        let yaml = format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: client-tls}}
stringData:
  tls.crt: "-----BEGIN CERTIFICATE-----\nnot-a-cert\n-----END CERTIFICATE-----\n"
  tls.key: "-----BEGIN PRIVATE KEY-----\n{key}\n-----END PRIVATE KEY-----\n"
---
apiVersion: v1
kind: Secret
metadata: {{name: client-sasl}}
stringData: {{password: "{password}"}}
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: leaky, labels: {{leak: "true"}}}}
spec:
  region: {region}
  kafka:
    bootstrapServers: ["{regional}"]
    tls:
      clientCert: {{name: client-tls, key: tls.crt}}
      clientKey: {{name: client-tls, key: tls.key}}
    sasl: {{mechanism: PLAIN, username: leaky-user, password: {{name: client-sasl, key: password}}}}
  topics: [{{name: leak-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: leak-agg}}
spec:
  region: {region}
  kafka: {{bootstrapServers: ["{aggregate}"]}}
  sources: {{matchLabels: {{leak: "true"}}}}
  checkpoints: {{interval: 1s, topic: checkpoints-leak-{suffix}, retention: 168h}}
"#,
            regional = stack.bootstrap(&region, Role::Regional),
            aggregate = stack.bootstrap(&region, Role::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        wait_until(
            "the leaky RegionalStream reports Ready=False",
            SLOW,
            || async {
                let rs = streams.get("leaky").await.ok()?;
                let c = find_condition(&rs.status?.conditions, "Ready")?.clone();
                (c.status == "False").then_some(())
            },
        )
        .await;
        let pods: Api<Pod> = t.api();
        // The operator either refuses to deploy the route (it cannot build a client from
        // that key either: the route is Degraded, nothing runs) or deploys it and the
        // replicator fails; both paths write texts that must not carry the secrets.
        let aggs_api: Api<AggregateCluster> = t.api();
        wait_until(
            "the leaky route's replicator has run, or the route was refused",
            SLOW,
            || async {
                let refused = aggs_api.get("leak-agg").await.ok().and_then(|a| {
                    let c = find_condition(&a.status?.conditions, "Ready")?.clone();
                    (c.status == "False" && c.message.contains("ClusterUnreachable")).then_some(())
                });
                if refused.is_some() {
                    return refused;
                }
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=replicator"))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .any(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .into_iter()
                            .flatten()
                            .any(|c| {
                                c.restart_count > 0
                                    || c.state.as_ref().is_some_and(|s| s.terminated.is_some())
                            })
                    })
                    .then_some(())
            },
        )
        .await;
        // Let a few more reconciles and retries write what they write.
        tokio::time::sleep(Duration::from_secs(15)).await;

        // 3. Nothing a person or a tool reads holds any of the secrets.
        let mut seen = String::new();
        let aggs: Api<AggregateCluster> = t.api();
        let deployments: Api<Deployment> = t.api();
        let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
        seen.push_str(&json(
            &streams.list(&ListParams::default()).await.expect("streams"),
        ));
        seen.push_str(&json(
            &aggs.list(&ListParams::default()).await.expect("aggregates"),
        ));
        seen.push_str(&json(
            &deployments
                .list(&ListParams::default())
                .await
                .expect("deployments"),
        ));
        seen.push_str(&json(
            &pods.list(&ListParams::default()).await.expect("pods"),
        ));
        seen.push_str(&json(
            &events.list(&ListParams::default()).await.expect("events"),
        ));
        let logs = pod_logs(&stack, &ns);
        assert!(
            logs.contains("reconcile failed") || logs.contains("leaky"),
            "the operator's log was found"
        );
        seen.push_str(&logs);
        for secret in [&oauth, &key, &password] {
            assert!(
                !seen.contains(secret.as_str()),
                "{secret} leaked into status, events, Deployments or logs"
            );
        }
    })
    .await;
}

/// An object list as JSON, for grepping.
fn json<T: serde::Serialize + Clone>(list: &kube::api::ObjectList<T>) -> String {
    serde_json::to_string(&list.items).unwrap_or_default()
}

#[tokio::test]
async fn a_paused_stream_with_the_delete_policy_can_be_deleted() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "paused-delete", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let region = stack.regions[0].clone();
        let topic = format!("paused-{suffix}");
        let yaml = format!(
            r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: doomed}}
spec:
  region: {region}
  deletionPolicy: Delete
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics: [{{name: {topic}, partitions: 1, replicationFactor: 1}}]
"#,
            regional = stack.bootstrap(&region, Role::Regional),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let streams: Api<RegionalStream> = t.api();
        wait_until(
            "the topic exists and the finalizer is set",
            SLOW,
            || async {
                let rs = streams.get("doomed").await.ok()?;
                let ready =
                    find_condition(&rs.status.clone()?.conditions, "Ready")?.status == "True";
                (ready
                    && rs
                        .finalizers()
                        .iter()
                        .any(|f| f == "tributary.dev/delete-topics"))
                .then_some(())
            },
        )
        .await;
        streams
            .patch(
                "doomed",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"annotations": {"tributary.dev/paused": "true"}}
                })),
            )
            .await
            .expect("pause");
        streams
            .delete("doomed", &DeleteParams::default())
            .await
            .expect("delete");
        wait_until("the paused RegionalStream is gone", SLOW, || async {
            streams
                .get_opt("doomed")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
        let admin = tributary_kafka::KafkaAdmin::new(&tributary_kafka::ClientSettings::plaintext(
            format!("{region} regional"),
            stack.bootstrap(&region, Role::Regional),
        ))
        .expect("admin");
        wait_until(
            &format!("{topic} deleted (deletionPolicy: Delete)"),
            SLOW,
            || {
                let admin = admin.clone();
                let topic = topic.clone();
                async move {
                    admin
                        .describe_topic(&topic)
                        .await
                        .ok()?
                        .is_none()
                        .then_some(())
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn same_named_dotted_routes_in_two_namespaces_both_copy_and_roll_out_one_pod_at_a_time() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "routes", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let namespaces: Api<Namespace> = Api::all(stack.client.clone());
        let other = format!("{ns}-b");
        let second: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": other, "labels": {"tributary.dev/e2e": "true"}}
        }))
        .expect("namespace");
        namespaces
            .create(&PostParams::default(), &second)
            .await
            .expect("second namespace");

        // The same source (a name with a dot) and the same AggregateCluster name in both
        // namespaces, into two regions' aggregates: before the fix both replicators shared
        // one consumer group, and the dot made them crash-loop.
        let source = stack.regions[0].clone();
        let topic = format!("dots-{suffix}");
        let dest_of = |i: usize| stack.regions[i * (stack.regions.len() - 1)].clone();
        for (i, namespace) in [&ns, &other].into_iter().enumerate() {
            let dest = dest_of(i);
            let yaml = format!(
                r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: {source}.payments}}
spec:
  region: {source}
  deletionPolicy: Retain
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics: [{{name: {topic}, partitions: 2, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: agg}}
spec:
  region: {dest}
  kafka: {{bootstrapServers: ["{aggregate}"]}}
  replicator: {{replicas: 1}}
  checkpoints: {{interval: 1s, topic: checkpoints-{suffix}-{i}, retention: 168h}}
"#,
                regional = stack.bootstrap(&source, Role::Regional),
                aggregate = stack.bootstrap(&dest, Role::Aggregate),
            );
            apply_yaml(&stack.client, namespace, &yaml)
                .await
                .expect("apply");
        }
        let mut routes = Vec::new();
        for namespace in [&ns, &other] {
            let deployments: Api<Deployment> = Api::namespaced(stack.client.clone(), namespace);
            let d = wait_until(
                &format!("the route in {namespace} is Available"),
                SLOW,
                || async {
                    let list = deployments
                        .list(
                            &ListParams::default().labels("app.kubernetes.io/component=replicator"),
                        )
                        .await
                        .ok()?;
                    list.items
                        .into_iter()
                        .find(|d| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1))
                },
            )
            .await;
            let spec = d.spec.clone().expect("spec");
            assert_eq!(
                spec.strategy.and_then(|s| s.type_).as_deref(),
                Some("Recreate"),
                "{}",
                d.name_any()
            );
            let args = spec.template.spec.expect("pod").containers[0]
                .args
                .clone()
                .unwrap_or_default();
            let route = args
                .iter()
                .find(|a| a.starts_with("--route="))
                .cloned()
                .expect("--route");
            assert!(
                route.starts_with(&format!("--route={namespace}-")) && !route.contains('.'),
                "{route}"
            );
            routes.push((d.name_any(), route));
        }
        assert_ne!(
            routes[0].1, routes[1].1,
            "two namespaces, two consumer groups"
        );

        // Both copy every record.
        let records: Vec<(i32, String, String)> = (0..20)
            .map(|i| (i % 2, format!("k{i}"), format!("v{i}")))
            .collect();
        produce(stack.bootstrap(&source, Role::Regional), &topic, &records).await;
        for i in 0..2 {
            let bootstrap = stack.bootstrap(&dest_of(i), Role::Aggregate).to_string();
            let topic = topic.clone();
            let got = tokio::task::spawn_blocking(move || {
                consume_all(&bootstrap, &topic, 20, Duration::from_secs(120))
            })
            .await
            .expect("consumer");
            assert!(
                got.len() >= 20,
                "aggregate {i} got {} of 20 records",
                got.len()
            );
        }

        // A rollout (new args) never runs two pods of the route: Recreate stops the old first.
        let aggs: Api<AggregateCluster> = t.api();
        aggs.patch(
            "agg",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"replicator": {"batching": {"lingerMs": 7}}}
            })),
        )
        .await
        .expect("change the replicator args");
        let pods: Api<Pod> = t.api();
        let route_pods =
            ListParams::default().labels(&format!("tributary.dev/route={}", routes[0].0));
        let deadline = std::time::Instant::now() + SLOW;
        loop {
            let list = pods.list(&route_pods).await.expect("pods");
            // A pod in a terminal phase runs no process any more (its object may outlive it
            // for a moment, as with a real kubelet); Recreate starts the new one after that.
            let live: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .map(|p| p.name_any())
                .collect();
            assert!(
                live.len() <= 1,
                "two live pods of one route during a rollout: {live:?}"
            );
            let rolled = list.items.iter().any(|p| {
                let args = p
                    .spec
                    .as_ref()
                    .map(|s| s.containers[0].args.clone().unwrap_or_default())
                    .unwrap_or_default();
                args.iter().any(|a| a == "--linger-ms=7")
                    && p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .into_iter()
                        .flatten()
                        .any(|c| c.ready)
            });
            if rolled {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the rollout did not finish"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let _ = namespaces.delete(&other, &DeleteParams::default()).await;
    })
    .await;
}
