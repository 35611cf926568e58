//! The operator over mutual TLS and SASL/SCRAM-SHA-512, with credentials from Secrets, on the
//! stack's secure Kafka cluster (`TRIBUTARY_KAFKA_SECURE`, certificates made with openssl at
//! stack-up). One RegionalStream and one AggregateCluster on that cluster, a SCRAM user of the
//! test's own (created with Kafka's ConfigCommand, so rotating its password touches no other
//! test):
//! - the stream's topic is created and the route's replicator copies, over SASL_SSL;
//! - rotating the password (Kafka first, then the Secret) replaces the replicator's pod, which
//!   copies again with the new password;
//! - a wrong password gives `KafkaAuthFailed` (condition and event) and no crash loop; fixing
//!   the Secret heals it;
//! - no log, status or event of the run holds a password or the private key.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tributary_api::{AggregateCluster, RegionalStream};
use tributary_e2e::kafka::{end_offset_total, produce};
use tributary_e2e::secure::{SCRAM_SECRET, SecureCluster};
use tributary_e2e::{Stack, TestNamespace, apply_yaml, wait_until};

const SLOW: Duration = Duration::from_secs(180);
const REPLICATOR: &str = "app.kubernetes.io/component=replicator";

async fn set_secret_password(secrets: &Api<Secret>, password: &str) {
    let patch = serde_json::json!({"stringData": {"password": password}});
    secrets
        .patch(SCRAM_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the password Secret updated");
}

/// `(reason, status)` of a condition of `type_` in `conditions`.
fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.reason.clone(), c.status.clone()))
}

/// The running replicator pod of the route (`None` while there is none or more than one).
async fn route_pod(pods: &Api<Pod>) -> Option<Pod> {
    let list = pods
        .list(&ListParams::default().labels(REPLICATOR))
        .await
        .ok()?;
    let live: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    match live.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

#[tokio::test]
async fn tls_and_scram_from_secrets_copy_rotate_and_fail_clearly_without_leaking() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "secure", |t| async move {
        let stack = t.stack.clone();
        let ns = t.name.clone();
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let secure = SecureCluster::from_stack();
        let plaintext = secure.plaintext.clone();
        let user = format!("e2e-{suffix}");
        let first = format!("first-{suffix}-pw");
        let rotated = format!("rotated-{suffix}-pw");
        let wrong = format!("wrong-{suffix}-pw");
        secure.set_scram_password(&user, &first);

        let _operator = stack.install_operator(
            &format!("tributary-{ns}"),
            &ns,
            &["replicaCount=1".to_string()],
        );
        let (source_region, aggregate_region) = (&stack.regions[0], &stack.regions[1]);
        let topic = format!("secure-{suffix}");
        let aggregate_topic = format!("{source_region}.{topic}");
        let connection = secure.connection_yaml(&user);
        let yaml = format!(
            r#"
{secrets}---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {{name: secure, labels: {{secure-e2e: "true"}}}}
spec:
  region: {source_region}
  kafka:
    {connection}
  topics: [{{name: {topic}, partitions: 2, replicationFactor: 1}}]
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: secure}}
spec:
  region: {aggregate_region}
  kafka:
    {connection}
  sources: {{matchLabels: {{secure-e2e: "true"}}}}
  topicNaming: Prefixed
  checkpoints: {{interval: 1s, topic: checkpoints-secure-{suffix}, retention: 168h}}
"#,
            secrets = secure.secrets_yaml(&first),
        );
        apply_yaml(&stack.client, &ns, &yaml).await.expect("apply");
        let streams: Api<RegionalStream> = t.api();
        let aggregates: Api<AggregateCluster> = t.api();
        let pods: Api<Pod> = t.api();
        let secrets: Api<Secret> = t.api();

        // 1. Reconciled and copying over SASL_SSL.
        wait_until("the stream Ready over TLS + SCRAM", SLOW, || async {
            let rs = streams.get("secure").await.ok()?;
            let c = rs.status?.conditions;
            (condition(&c, "Ready")? == ("TopicsReady".into(), "True".into())).then_some(())
        })
        .await;
        wait_until("the route Ready (1/1)", SLOW, || async {
            let ac = aggregates.get("secure").await.ok()?;
            (ac.status?.routes_ready.as_deref() == Some("1/1")).then_some(())
        })
        .await;
        let batch = |from: usize, n: usize| -> Vec<(i32, String, String)> {
            (from..from + n)
                .map(|i| ((i % 2) as i32, format!("k{i}"), format!("v{i}")))
                .collect()
        };
        produce(&plaintext, &topic, &batch(0, 100)).await;
        let copied = |n: i64| {
            let (plaintext, aggregate_topic) = (plaintext.clone(), aggregate_topic.clone());
            async move { (end_offset_total(&plaintext, &aggregate_topic)? >= n).then_some(()) }
        };
        wait_until("100 records copied over SASL_SSL", SLOW, || copied(100)).await;
        let before = route_pod(&pods).await.expect("one route pod");
        let versions = before
            .annotations()
            .get("tributary.dev/secret-versions")
            .cloned()
            .unwrap_or_default();
        assert!(
            versions.contains("secure-scram=") && versions.contains("secure-tls="),
            "the pod names the Secret versions it started with: {versions:?}"
        );

        // 2. Rotation: Kafka takes the new password, then the Secret; the pod is replaced.
        secure.set_scram_password(&user, &rotated);
        set_secret_password(&secrets, &rotated).await;
        let rotated_at = std::time::Instant::now();
        let after = wait_until("a new route pod, Ready", SLOW, || async {
            let p = route_pod(&pods).await?;
            (p.uid() != before.uid() && ready(&p)).then_some(p)
        })
        .await;
        eprintln!(
            "Secret rotated → new replicator pod Ready in {:?}",
            rotated_at.elapsed()
        );
        produce(&plaintext, &topic, &batch(100, 50)).await;
        wait_until(
            "50 more records copied with the rotated password",
            SLOW,
            || copied(150),
        )
        .await;

        // 3. A wrong password: KafkaAuthFailed, an event, no crash loop.
        set_secret_password(&secrets, &wrong).await;
        wait_until("KafkaAuthFailed on the stream", SLOW, || async {
            let rs = streams.get("secure").await.ok()?;
            let c = rs.status?.conditions;
            (condition(&c, "Ready")?.0 == "KafkaAuthFailed").then_some(())
        })
        .await;
        wait_until("a KafkaAuthFailed event", SLOW, || async {
            let events: Api<k8s_openapi::api::events::v1::Event> = t.api();
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("KafkaAuthFailed"))
                .then_some(())
        })
        .await;
        let failing = wait_until(
            "the route pod replaced for the wrong password",
            SLOW,
            || async {
                let p = route_pod(&pods).await?;
                (p.uid() != after.uid()).then_some(p)
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let failing = pods.get(&failing.name_any()).await.expect("the pod");
        assert_eq!(
            restarts(&failing),
            0,
            "a refused login is retried inside the process, not by restarting it"
        );
        assert!(
            !ready(&failing),
            "a replicator that cannot log in is not Ready"
        );

        // 4. Fixed: the condition heals and records flow again.
        set_secret_password(&secrets, &rotated).await;
        wait_until("the stream Ready again", SLOW, || async {
            let rs = streams.get("secure").await.ok()?;
            let c = rs.status?.conditions;
            (condition(&c, "Ready")? == ("TopicsReady".into(), "True".into())).then_some(())
        })
        .await;
        produce(&plaintext, &topic, &batch(150, 50)).await;
        wait_until("records copied after the fix", SLOW, || copied(200)).await;

        // 5. Nothing secret anywhere: pod logs (operator and replicators), status, events.
        let mut texts: Vec<(String, String)> = Vec::new();
        for region in &stack.regions {
            let dir = stack.state_dir.join(format!("agent-{region}/pods"));
            for pod_dir in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !pod_dir
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{ns}_"))
                {
                    continue;
                }
                for file in std::fs::read_dir(pod_dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let path = file.path();
                    if path.extension().is_some_and(|x| x == "log") {
                        texts.push((
                            path.display().to_string(),
                            std::fs::read_to_string(&path).unwrap_or_default(),
                        ));
                    }
                }
            }
        }
        let logs = texts.len();
        assert!(
            logs >= 2,
            "the operator's and the replicators' logs were read ({logs})"
        );
        let out = std::process::Command::new(&stack.kubectl)
            .arg("--kubeconfig")
            .arg(stack.state_dir.join("kubeconfig"))
            .args([
                "get",
                "regionalstreams,aggregateclusters,deployments,pods,jobs,events.events.k8s.io",
                "-n",
                &ns,
                "-o",
                "json",
            ])
            .output()
            .expect("kubectl runs");
        texts.push((
            "status and events".into(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
        let key_body: BTreeSet<&str> = secure
            .key
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .collect();
        for (name, text) in &texts {
            for secret in [&first, &rotated, &wrong] {
                assert!(!text.contains(secret.as_str()), "{name} holds a password");
            }
            for line in &key_body {
                assert!(!text.contains(line), "{name} holds private key material");
            }
        }
        eprintln!(
            "{} texts checked ({logs} log files): no password, no private key",
            texts.len()
        );
    })
    .await;
}
