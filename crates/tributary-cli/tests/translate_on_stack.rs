//! `kubectl tributary translate` against the real stack: the operator installed by its chart,
//! two regions' streams, aggregates and VerifiableConsumer workloads, an ActivePassive group
//! active in the first region. Records are produced in every region (Kafka's
//! VerifiableProducer) and consumed in the active one until the group has committed all of
//! them; then the dry run's plan must be what a real move commits: `translate --to <standby>
//! -o json`, then `failover --to <standby>`, and `status.lastFailover.resumeOffsets` must equal
//! the plan's `wouldCommit` for every partition. Also the refusals: an unknown region, an
//! unreachable cluster, checkpoint topics not read to their end, the active region itself.
//! And a dry run over mutual TLS and SASL/SCRAM with the aggregates' Secrets.
//!
//! Needs the stack (`make stack-up`); a missing stack fails the test (`TRIBUTARY_SKIP_E2E=1`
//! skips and says so).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::operator::{ONE_OPERATOR, bootstrap, install, regions, wait_first_activation};
use support::{Stack, run_plugin, stdout_of, wait_until};
use tributary_e2e::kafka::create_topic;
use tributary_e2e::secure::{SCRAM_SECRET, SecureCluster};

const RECORDS_PER_REGION: u32 = 150;

/// Produces `RECORDS_PER_REGION` records with acks=all into `topic` of `region`'s regional
/// cluster, with Kafka's VerifiableProducer (the stack's Kafka jars, the machine's Java).
fn produce(region: &str, topic: &str) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let classpath = std::env::var("TRIBUTARY_DRILL_KAFKA_CLASSPATH")
        .unwrap_or_else(|_| format!("{home}/.cache/tributary/kafka-4.2.0/lib/*"));
    let out = Command::new("java")
        .args([
            "-Xmx128m",
            "-cp",
            &classpath,
            "org.apache.kafka.tools.VerifiableProducer",
            "--bootstrap-server",
            &bootstrap(region, "regional"),
            "--topic",
            topic,
            "--max-messages",
            &RECORDS_PER_REGION.to_string(),
            "--acks",
            "-1",
            "--value-prefix",
            "7",
        ])
        .output()
        .expect("java runs VerifiableProducer");
    let acked = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("producer_send_success"))
        .count();
    assert_eq!(
        acked,
        RECORDS_PER_REGION as usize,
        "VerifiableProducer in {region}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn translate(stack: &Stack, ns: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-n", ns, "translate", "billing"];
    all.extend_from_slice(args);
    run_plugin(stack, &all)
}

fn refused(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a refusal with {needle:?}, it succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "stderr lacks {needle:?}:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_plans_what_the_move_then_commits() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let _one = ONE_OPERATOR.lock().await;
    let s = stack.clone();
    stack
        .in_namespace("translate", move |ns| async move {
            let stack = s;
            let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
            let regions = regions();
            let (active, standby) = (regions[0].clone(), regions[1].clone());
            let _cleanup = install(&stack, &ns, &suffix, "ActivePassive");
            wait_first_activation(&stack, &ns).await;
            let cgfs: kube::Api<tributary_api::ConsumerGroupFailover> =
                kube::Api::namespaced(stack.client.clone(), &ns);
            let topic = format!("orders-{suffix}");
            for r in &regions {
                produce(r, &topic);
            }
            let total = u64::from(RECORDS_PER_REGION) * regions.len() as u64;

            // The group has consumed and committed every record in the active region, the
            // checkpoints make the plan exact and the standby sync has caught up with it.
            let to = standby.as_str();
            let plan: serde_json::Value = wait_until(
                "the group committed every record and the standby is synced",
                Duration::from_secs(180),
                || async {
                    let out = translate(&stack, &ns, &["--to", to, "-o", "json"]);
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                        eprintln!("translate: {}", String::from_utf8_lossy(&out.stderr));
                        return None;
                    };
                    let parts = v["partitions"].as_array()?;
                    let committed: u64 = parts
                        .iter()
                        .filter_map(|p| p["committedOffset"].as_u64())
                        .sum();
                    // Partitions the producers' partitioner left empty are never committed. Until
                    // the checkpoints are in, a plan is conservative (and the standby behind):
                    // only a plan that resumes where the group stands (no duplicates) cannot
                    // change any more, so the second dry run below must show it again.
                    let synced = parts
                        .iter()
                        .filter(|p| p["status"] != "not_committed")
                        .all(|p| {
                            p["action"] == "keep"
                                && p["status"] == "resume"
                                && p["exact"] == true
                                && p["maxDuplicates"] == 0
                        });
                    if committed != total || !synced {
                        eprintln!(
                            "not yet: {committed}/{total} committed, synced {synced}: {}",
                            v["partitions"]
                        );
                    }
                    (committed == total && synced).then_some(v)
                },
            )
            .await;
            assert_eq!(plan["kind"], "TributaryTranslation");
            assert_eq!(plan["dryRun"], true);
            assert_eq!(plan["from"], active.as_str());
            assert_eq!(plan["to"], standby.as_str());
            assert_eq!(plan["contradicted"], 0);
            assert!(
                plan["watermarks"]
                    .as_array()
                    .is_some_and(|w| w.len() >= regions.len()),
                "a watermark per source: {plan}"
            );
            let planned: BTreeMap<(String, i64), i64> = plan["partitions"]
                .as_array()
                .expect("partitions")
                .iter()
                .filter_map(|p| {
                    Some((
                        (p["topic"].as_str()?.to_string(), p["partition"].as_i64()?),
                        p["wouldCommit"].as_i64()?,
                    ))
                })
                .collect();
            assert!(!planned.is_empty(), "a resume offset planned: {plan}");
            // The plan is shown, not committed: the standby's offsets did not move.
            let again = translate(&stack, &ns, &["--to", to, "-o", "json"]);
            let again: serde_json::Value =
                serde_json::from_str(&stdout_of(&again, "translate again")).expect("JSON");
            assert_eq!(again["partitions"], plan["partitions"]);
            let table = stdout_of(&translate(&stack, &ns, &["--to", to]), "translate");
            assert!(table.contains("nothing committed"), "{table}");
            assert!(table.contains("WATERMARKS"), "{table}");

            // Refusals.
            refused(
                &translate(&stack, &ns, &["--to", "north"]),
                "unknown region \"north\"",
            );
            refused(&translate(&stack, &ns, &["--to", &active]), "active in");
            refused(
                &translate(
                    &stack,
                    &ns,
                    &["--to", to, "--bootstrap", &format!("{to}=127.0.0.1:1")],
                ),
                "unreachable",
            );
            refused(
                &translate(&stack, &ns, &["--to", to, "--catch-up-timeout", "0s"]),
                "not read to their end",
            );

            // The real move: what it committed in the standby is what the dry run planned.
            let out = run_plugin(
                &stack,
                &[
                    "-n",
                    &ns,
                    "failover",
                    "billing",
                    "--to",
                    to,
                    "--timeout",
                    "3m",
                ],
            );
            stdout_of(&out, "failover");
            let moved = cgfs.get("billing").await.expect("billing");
            let last = moved
                .status
                .and_then(|s| s.last_failover)
                .expect("status.lastFailover after the move");
            assert_eq!(last.epoch, 2);
            let committed: BTreeMap<(String, i64), i64> = last
                .resume_offsets
                .iter()
                .map(|p| ((p.topic.clone(), i64::from(p.partition)), p.offset))
                .collect();
            assert_eq!(
                committed, planned,
                "the move committed what the dry run planned"
            );
        })
        .await;
}

/// Over mutual TLS and SASL/SCRAM: both regions' AggregateClusters on the stack's `secure`
/// cluster, their connections' Secrets read by the plugin with the caller's credentials, as
/// the operator reads them. No operator runs: the group's status is written by the test, and
/// the group never committed, so every partition is `not_committed` — what matters is that the
/// dry run reached both clusters through the Secrets. Then the failures: a wrong password
/// (Kafka refuses; named, the password shown nowhere) and a reference to a missing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_reads_the_aggregates_tls_and_sasl_secrets() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    // An operator of another test would reconcile this namespace too, and its status.
    let _one = ONE_OPERATOR.lock().await;
    let s = stack.clone();
    stack
        .in_namespace("translate-secure", move |ns| async move {
            let stack = s;
            let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
            let secure = SecureCluster::from_stack();
            let user = format!("translate-{suffix}");
            let password = format!("pw-{suffix}-right");
            secure.set_scram_password(&user, &password);
            let topic = format!("orders-{suffix}");
            let checkpoints = format!("checkpoints-{suffix}");
            create_topic(&secure.plaintext, &topic, 2).await;
            create_topic(&secure.plaintext, &checkpoints, 1).await;
            let connection = secure.connection_yaml(&user);
            let mut yaml = secure.secrets_yaml(&password);
            for region in ["east", "west"] {
                yaml.push_str(&format!(
                    r#"---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {{name: {region}}}
spec:
  region: {region}
  kafka:
    {connection}
  topicNaming: Identity
  checkpoints: {{interval: 1s, topic: {checkpoints}, retention: 168h}}
"#
                ));
            }
            yaml.push_str(&format!(
                r#"---
apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {{name: billing}}
spec:
  groupId: billing-{suffix}
  topics: [{topic}]
  mode: ActivePassive
  regions:
    - {{region: east, aggregateCluster: east, workloadRef: {{kind: Deployment, name: billing-east, replicas: 1}}}}
    - {{region: west, aggregateCluster: west, workloadRef: {{kind: Deployment, name: billing-west, replicas: 1}}}}
  failover: {{automatic: false}}
"#
            ));
            tributary_e2e::apply_yaml(&stack.client, &ns, &yaml)
                .await
                .expect("apply");
            stack
                .apply_status(
                    &ns,
                    "ConsumerGroupFailover",
                    "billing",
                    "{observedGeneration: 1, activeRegion: east, epoch: 1}",
                )
                .await;

            let shows_no_secret = |out: &std::process::Output, secrets: &[&str]| {
                let all = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                for s in secrets {
                    assert!(!all.contains(s), "output shows a secret {s:?}:\n{all}");
                }
                assert!(!all.contains("PRIVATE KEY"), "output shows the key:\n{all}");
            };
            let out = translate(&stack, &ns, &["--to", "west", "-o", "json"]);
            shows_no_secret(&out, &[&password]);
            let plan: serde_json::Value =
                serde_json::from_str(&stdout_of(&out, "translate over TLS + SCRAM")).expect("JSON");
            assert_eq!(plan["from"], "east");
            assert_eq!(plan["to"], "west");
            let parts = plan["partitions"].as_array().expect("partitions");
            assert_eq!(parts.len(), 2, "both partitions of {topic}: {plan}");
            assert!(
                parts.iter().all(|p| p["status"] == "not_committed"),
                "the group never committed: {plan}"
            );

            // Kafka refuses a wrong password: the error names the cluster, never the password.
            let wrong = format!("pw-{suffix}-wrong");
            let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
                kube::Api::namespaced(stack.client.clone(), &ns);
            secrets
                .patch(
                    SCRAM_SECRET,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({"stringData": {"password": wrong}})),
                )
                .await
                .expect("the password Secret updated");
            let out = translate(&stack, &ns, &["--to", "west"]);
            shows_no_secret(&out, &[&password, &wrong]);
            refused(&out, "aggregate cluster (");
            let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert!(
                stderr.contains("auth") || stderr.contains("sasl"),
                "the refusal says authentication failed: {stderr}"
            );

            // A reference to a key the Secret does not have: named, field and Secret.
            let aggregates = stack.tributary_api(&ns, "AggregateCluster", "aggregateclusters");
            aggregates
                .patch(
                    "west",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!(
                        {"spec": {"kafka": {"sasl": {"password": {"key": "nope"}}}}}
                    )),
                )
                .await
                .expect("west's AggregateCluster patched");
            refused(
                &translate(&stack, &ns, &["--to", "west"]),
                &format!(
                    "AggregateCluster west: spec.kafka.sasl.password: Secret {SCRAM_SECRET} has no key \"nope\""
                ),
            );
        })
        .await;
}
