//! The stack itself: pods of the project's image run as processes through the real
//! controllers, and every Kafka cluster takes and returns records.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use tributary_e2e::kafka::{consume_all, create_topic, produce};
use tributary_e2e::kube_util::{apply_yaml, process_alive, running_container};
use tributary_e2e::{Role, Stack, TestNamespace, WAIT, wait_until};

#[tokio::test]
async fn a_deployment_of_our_image_becomes_available_and_deleting_its_pod_stops_the_process() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "deploy", |ns| async move {
        // The image is the project's; the command is a plain HTTP server so that this test of the
        // node agent does not depend on any one subcommand. Both replicas listen on the same
        // port, each on its own pod IP, as the operator's pods do (`--listen=$(POD_IP):8080`).
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: local/tributary:dev
          command: ["python3", "-m", "http.server", "18080", "--bind", "$(POD_IP)"]
          env:
            - name: POD_IP
              valueFrom: {fieldRef: {fieldPath: status.podIP}}
          readinessProbe:
            httpGet: {path: /, port: 18080}
            periodSeconds: 1
"#;
        apply_yaml(&ns.stack.client, &ns.name, yaml)
            .await
            .expect("apply Deployment");
        let deployments = ns.api::<Deployment>();
        wait_until("Deployment web Available", WAIT, || async {
            let d = deployments.get("web").await.ok()?;
            let available = d
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
            available.then_some(())
        })
        .await;

        let pods = ns.api::<Pod>();
        let listed = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list pods")
            .items;
        let ips: std::collections::BTreeSet<String> = listed
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        assert_eq!(
            ips.len(),
            2,
            "each replica has a pod IP of its own: {ips:?}"
        );
        for ip in &ips {
            let answer = tokio::net::TcpStream::connect((ip.as_str(), 18080)).await;
            assert!(answer.is_ok(), "the replica on {ip} answers on port 18080");
        }
        let pod = listed.into_iter().next().expect("a pod");
        let pid = running_container(&pod)
            .map(|(pid, _)| pid)
            .expect("running container reports agent://<pid>");
        assert!(process_alive(pid), "container process {pid} runs");

        let name = pod.metadata.name.clone().expect("pod name");
        pods.delete(&name, &DeleteParams::default())
            .await
            .expect("delete pod");
        wait_until("the deleted pod's process to stop", WAIT, || async {
            (!process_alive(pid)).then_some(())
        })
        .await;
        wait_until("the deleted pod to disappear", WAIT, || async {
            pods.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
        // The ReplicaSet replaces it, through the real controller.
        wait_until("a replacement pod running", WAIT, || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            list.items
                .iter()
                .find(|p| p.metadata.name.as_deref() != Some(&name))
                .and_then(running_container)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_job_of_our_binary_completes() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "job", |ns| async move {
        let yaml = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: print-crds}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: crd
          image: local/tributary:dev
          args: ["crd"]
"#;
        apply_yaml(&ns.stack.client, &ns.name, yaml)
            .await
            .expect("apply Job");
        let jobs = ns.api::<Job>();
        wait_until("Job print-crds Complete", WAIT, || async {
            let j = jobs.get("print-crds").await.ok()?;
            let done = j
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            done.then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_pod_of_another_image_fails_with_a_clear_reason() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    TestNamespace::run(&stack, "foreign", |ns| async move {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: nginx}
spec:
  restartPolicy: Never
  containers:
    - name: nginx
      image: nginx:1.27
"#;
        apply_yaml(&ns.stack.client, &ns.name, yaml)
            .await
            .expect("apply Pod");
        let pods = ns.api::<Pod>();
        let reason = wait_until("the foreign pod's waiting reason", WAIT, || async {
            let p = pods.get("nginx").await.ok()?;
            let s = p.status?.container_statuses?.into_iter().next()?;
            s.state?.waiting?.reason
        })
        .await;
        assert_eq!(reason, "ImageNotRunnable");
    })
    .await;
}

#[tokio::test]
async fn every_kafka_cluster_returns_what_it_was_given() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    for region in stack.regions.clone() {
        for role in [Role::Regional, Role::Aggregate] {
            let bootstrap = stack.bootstrap(&region, role).to_string();
            let topic = format!("e2e-roundtrip-{}", std::process::id());
            create_topic(&bootstrap, &topic, 3).await;
            let records: Vec<(i32, String, String)> = (0..300)
                .map(|i| (i % 3, format!("k{i}"), format!("{region}-{role:?}-{i}")))
                .collect();
            produce(&bootstrap, &topic, &records).await;
            let read = tokio::task::spawn_blocking({
                let (b, t) = (bootstrap.clone(), topic.clone());
                move || consume_all(&b, &t, 300, Duration::from_secs(60))
            })
            .await
            .expect("consumer thread");
            assert_eq!(
                read.len(),
                300,
                "{region} {role:?} ({bootstrap}) returned {} of 300",
                read.len()
            );
            for p in 0..3 {
                let values: Vec<String> = read
                    .iter()
                    .filter(|r| r.partition == p)
                    .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).expect("utf-8"))
                    .collect();
                let sent: Vec<String> = records
                    .iter()
                    .filter(|r| r.0 == p)
                    .map(|r| r.2.clone())
                    .collect();
                assert_eq!(
                    values, sent,
                    "partition {p} of {region} {role:?} keeps order and content"
                );
            }
        }
    }
}
