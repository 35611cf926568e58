//! Running routes survive trouble at one source, on the real local stack (`make stack-up`),
//! each test with the chart's operator (image tag `TRIBUTARY_IMAGE_TAG`, default `dev`) in a
//! fresh namespace:
//! - a RegionalStream whose spec turns invalid (a `topicPattern` that does not compile) keeps
//!   its route's Deployment running unchanged, the AggregateCluster says which stream and field
//!   (condition and event), and the other routes still follow their sources;
//! - a source whose Secret is missing degrades only its own route; the others are created and
//!   run, and the held route follows once the Secret exists.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tributary_api::{AggregateCluster, RegionalStream, find_condition};
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

fn suffix_of(ns: &str) -> String {
    ns.rsplit('-').next().unwrap_or("x").to_string()
}

fn args_of(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].args.clone())
        .unwrap_or_default()
}

/// The Warning/Normal events regarding `name` with `reason`, as `note`s.
async fn event_notes(t: &TestNamespace, name: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
    events
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                })
                .filter_map(|e| e.note)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn an_invalid_source_keeps_its_running_route_and_says_which_stream_and_field() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "invalid-source", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let (a, b) = (stack.regions[0].clone(), stack.regions[1].clone());
        let yaml = format!(
            r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: src-a}}
spec:
  region: {a}
  deletionPolicy: Retain
  kafka: {{bootstrapServers: ["{regional_a}"]}}
  topics: [{{name: inv-a-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: src-b}}
spec:
  region: {b}
  deletionPolicy: Retain
  kafka: {{bootstrapServers: ["{regional_b}"]}}
  topics: [{{name: inv-b-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: agg}}
spec:
  region: {a}
  kafka: {{bootstrapServers: ["{aggregate_a}"]}}
  replicator: {{replicas: 1}}
  checkpoints: {{interval: 1s, topic: checkpoints-inv-{suffix}, retention: 168h}}
"#,
            regional_a = stack.bootstrap(&a, Role::Regional),
            regional_b = stack.bootstrap(&b, Role::Regional),
            aggregate_a = stack.bootstrap(&a, Role::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let deployments: Api<Deployment> = t.api();
        let route_a = "tributary-route-src-a-to-agg";
        let route_b = "tributary-route-src-b-to-agg";
        let running = wait_until("both routes are Available", SLOW, || async {
            let d = deployments.get_opt(route_a).await.ok()??;
            let avail = |d: &Deployment| d.status.as_ref().and_then(|s| s.available_replicas);
            let other = deployments.get_opt(route_b).await.ok()??;
            (avail(&d) == Some(1) && avail(&other) == Some(1)).then_some(d)
        })
        .await;

        // A typo: the pattern does not compile (the CRD has no regex check).
        let streams: Api<RegionalStream> = t.api();
        streams
            .patch(
                "src-a",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"topicPattern": "inv-(a"}})),
            )
            .await
            .expect("break src-a");

        // The other source still drives its route: a topic added to src-b reaches its
        // replicator's args.
        let added = format!("inv-b2-{suffix}");
        streams
            .patch(
                "src-b",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"topics": [
                    {"name": format!("inv-b-{suffix}"), "partitions": 1, "replicationFactor": 1},
                    {"name": added, "partitions": 1, "replicationFactor": 1},
                ]}})),
            )
            .await
            .expect("add a topic to src-b");
        wait_until("src-b's route copies the added topic", SLOW, || async {
            let d = deployments.get(route_b).await.ok()?;
            args_of(&d)
                .iter()
                .any(|a| a.starts_with("--topics=") && a.contains(&added))
                .then_some(())
        })
        .await;

        // Meanwhile (several reconciles later) src-a's route runs as it was: same object,
        // same generation, never pruned, never updated.
        let d = deployments
            .get_opt(route_a)
            .await
            .expect("get")
            .expect("the invalid source's route Deployment was deleted");
        assert_eq!(d.uid(), running.uid(), "the route Deployment was recreated");
        assert_eq!(
            d.metadata.generation, running.metadata.generation,
            "the frozen route's Deployment was updated"
        );
        assert_eq!(
            d.status.as_ref().and_then(|s| s.available_replicas),
            Some(1),
            "the frozen route still runs"
        );

        // The AggregateCluster names the stream and the field.
        let aggs: Api<AggregateCluster> = t.api();
        let degraded = wait_until(
            "the AggregateCluster reports the invalid source",
            SLOW,
            || async {
                let st = aggs.get("agg").await.ok()?.status?;
                let c = find_condition(&st.conditions, "Degraded")?.clone();
                (c.status == "True" && c.reason == "SourceInvalid").then_some(c)
            },
        )
        .await;
        assert!(
            degraded.message.contains("src-a") && degraded.message.contains("spec.topicPattern"),
            "{}",
            degraded.message
        );
        wait_until("a SourceInvalid event names the stream", SLOW, || async {
            event_notes(&t, "agg", "SourceInvalid")
                .await
                .iter()
                .any(|n| n.contains("src-a") && n.contains("spec.topicPattern"))
                .then_some(())
        })
        .await;

        // Fixed: the route is planned again and the condition clears.
        streams
            .patch(
                "src-a",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"topicPattern": null}})),
            )
            .await
            .expect("fix src-a");
        wait_until("the AggregateCluster is Ready again", SLOW, || async {
            let st = aggs.get("agg").await.ok()?.status?;
            let c = find_condition(&st.conditions, "Ready")?.clone();
            (c.status == "True").then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_missing_secret_degrades_only_its_own_route() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "missing-secret", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let (a, b) = (stack.regions[0].clone(), stack.regions[1].clone());
        // src-a names a SASL password Secret that does not exist (yet).
        let yaml = format!(
            r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: src-a}}
spec:
  region: {a}
  deletionPolicy: Retain
  manageTopics: false
  kafka:
    bootstrapServers: ["{regional_a}"]
    sasl: {{mechanism: PLAIN, username: nobody, password: {{name: src-a-sasl, key: password}}}}
  topics: [{{name: sec-a-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: src-b}}
spec:
  region: {b}
  deletionPolicy: Retain
  kafka: {{bootstrapServers: ["{regional_b}"]}}
  topics: [{{name: sec-b-{suffix}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: agg}}
spec:
  region: {a}
  kafka: {{bootstrapServers: ["{aggregate_a}"]}}
  replicator: {{replicas: 1}}
  checkpoints: {{interval: 1s, topic: checkpoints-sec-{suffix}, retention: 168h}}
"#,
            regional_a = stack.bootstrap(&a, Role::Regional),
            regional_b = stack.bootstrap(&b, Role::Regional),
            aggregate_a = stack.bootstrap(&a, Role::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let deployments: Api<Deployment> = t.api();
        let aggs: Api<AggregateCluster> = t.api();
        let route_a = "tributary-route-src-a-to-agg";
        let route_b = "tributary-route-src-b-to-agg";

        // The healthy source's route is created and runs.
        wait_until("src-b's route is Available", SLOW, || async {
            let d = deployments.get_opt(route_b).await.ok()??;
            (d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)).then_some(())
        })
        .await;

        // Only src-a's route is Degraded, naming the Secret.
        let st = wait_until(
            "src-a's route is Degraded for its Secret",
            SLOW,
            || async {
                let st = aggs.get("agg").await.ok()?.status?;
                let held = st.routes.iter().find(|r| r.source == "src-a")?;
                (held.state == "Degraded"
                    && held
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains("src-a-sasl")))
                .then_some(st)
            },
        )
        .await;
        let b_route = st
            .routes
            .iter()
            .find(|r| r.source == "src-b")
            .expect("src-b's route in status");
        assert_ne!(b_route.state, "Degraded", "{b_route:?}");
        let degraded = find_condition(&st.conditions, "Degraded").expect("Degraded");
        assert_eq!(degraded.reason, "SecretMissing", "{degraded:?}");
        assert!(degraded.message.contains("src-a-sasl"), "{degraded:?}");
        wait_until("an event names the missing Secret", SLOW, || async {
            let mut notes = event_notes(&t, "agg", "RouteDegraded").await;
            notes.extend(event_notes(&t, "agg", "SecretMissing").await);
            notes
                .iter()
                .any(|n| n.contains("src-a-sasl"))
                .then_some(())
        })
        .await;
        assert!(
            deployments.get_opt(route_a).await.expect("get").is_none(),
            "a route whose Secret cannot be read is not created"
        );

        // The Secret appears: the held route follows without any other change.
        apply_yaml(
            &stack.client,
            &ns,
            "apiVersion: v1\nkind: Secret\nmetadata: {name: src-a-sasl}\nstringData: {password: not-used-here}\n",
        )
        .await
        .expect("secret");
        wait_until("src-a's route Deployment is created", SLOW, || async {
            deployments.get_opt(route_a).await.ok()?.map(|_| ())
        })
        .await;
        wait_until("src-a's route is no longer held", SLOW, || async {
            let st = aggs.get("agg").await.ok()?.status?;
            let r = st.routes.iter().find(|r| r.source == "src-a")?;
            (!r.message.as_deref().unwrap_or_default().contains("SecretMissing")).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_replicator_that_fails_after_its_rollout_shows_degraded_not_pending() {
    use tributary_operator::kafka::{ClusterAdmin, ResolvedConnection};
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    TestNamespace::run(&stack, "failed-route", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = suffix_of(&ns);
        let _operator = install(&stack, &ns);
        let a = stack.regions[0].clone();
        let regional = stack.bootstrap(&a, Role::Regional).to_string();
        // An observed topic (manageTopics: false): the operator will not recreate it.
        let topic = format!("fail-{suffix}");
        tributary_e2e::kafka::create_topic(&regional, &topic, 1).await;
        let yaml = format!(
            r#"
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: src-a}}
spec:
  region: {a}
  deletionPolicy: Retain
  manageTopics: false
  kafka: {{bootstrapServers: ["{regional}"]}}
  topics: [{{name: {topic}, partitions: 1, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: agg}}
spec:
  region: {a}
  kafka: {{bootstrapServers: ["{aggregate}"]}}
  replicator: {{replicas: 1}}
  checkpoints: {{interval: 1s, topic: checkpoints-fail-{suffix}, retention: 168h}}
"#,
            aggregate = stack.bootstrap(&a, Role::Aggregate),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let aggs: Api<AggregateCluster> = t.api();
        let route_state = || async {
            let st = aggs.get("agg").await.ok()?.status?;
            let r = st.routes.iter().find(|r| r.source == "src-a")?.clone();
            Some(r)
        };
        wait_until("the route is Ready", SLOW, || async {
            route_state()
                .await
                .filter(|r| r.state == "Ready")
                .map(|_| ())
        })
        .await;

        // The source topic goes away under the running replicator: it turns unready for good
        // (the rollout is long complete, so the progress deadline never fires).
        let admin = tributary_operator::kafka_admin::RealClusterAdmin::default();
        let conn = ResolvedConnection {
            name: format!("{a} regional"),
            bootstrap_servers: vec![regional.clone()],
            ..Default::default()
        };
        admin
            .delete_topics(&conn, std::slice::from_ref(&topic))
            .await
            .expect("delete the source topic");
        let route = wait_until(
            "the route shows Degraded after its replicator failed",
            SLOW,
            || async { route_state().await.filter(|r| r.state == "Degraded") },
        )
        .await;
        assert!(
            route
                .message
                .as_deref()
                .is_some_and(|m| m.starts_with("ReplicatorUnready")),
            "{route:?}"
        );
        let st = aggs.get("agg").await.expect("agg").status.expect("status");
        let ready = find_condition(&st.conditions, "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "RouteDegraded")
        );
    })
    .await;
}
