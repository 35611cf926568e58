//! `region-down` kills one region (its node goes NotReady, its pods' processes and its Kafka
//! clusters die); `region-up` brings them back. One test per binary: it must not run beside
//! tests that use the region it kills.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use tributary_e2e::kafka::{consume_all, create_topic, produce};
use tributary_e2e::kube_util::{apply_yaml, process_alive, running_container};
use tributary_e2e::{Role, Stack, TestNamespace, WAIT, wait_until};

/// Runs `region-up` when dropped, also when the test panics.
struct RegionRestorer {
    stack: Stack,
    region: String,
}

impl Drop for RegionRestorer {
    fn drop(&mut self) {
        if let Err(e) = self.stack.try_stack_command(&["region-up", &self.region]) {
            eprintln!("restoring region {}: {e}", self.region);
        }
    }
}

async fn node_ready(nodes: &Api<Node>, name: &str) -> Option<bool> {
    let n = nodes.get(name).await.ok()?;
    let ready = n
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some(ready.status == "True")
}

fn kafka_answers(bootstrap: &str) -> bool {
    std::net::TcpStream::connect_timeout(
        &bootstrap.parse().expect("host:port"),
        Duration::from_secs(1),
    )
    .is_ok()
}

#[tokio::test]
async fn region_down_kills_its_pods_and_kafka_and_region_up_restores_them() {
    let Some(stack) = Stack::connect().await else {
        return;
    };
    let region = stack.regions[0].clone();
    TestNamespace::run(&stack, "region", move |ns| async move {
        let yaml = format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sleeper}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: sleeper}}}}
  template:
    metadata: {{labels: {{app: sleeper}}}}
    spec:
      nodeSelector: {{topology.kubernetes.io/region: {region}}}
      containers:
        - name: sleeper
          image: local/tributary:dev
          command: ["sleep", "3600"]
"#
        );
        apply_yaml(&ns.stack.client, &ns.name, &yaml)
            .await
            .expect("apply");
        let pods = ns.api::<Pod>();
        let lp = ListParams::default().labels("app=sleeper");
        let (pid, restarts) = wait_until("sleeper running", WAIT, || async {
            pods.list(&lp)
                .await
                .ok()?
                .items
                .first()
                .and_then(running_container)
        })
        .await;
        let pod = pods.list(&lp).await.expect("list").items.remove(0);
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            Some(format!("tributary-{region}"))
        );

        let regional = ns.stack.bootstrap(&region, Role::Regional).to_string();
        let aggregate = ns.stack.bootstrap(&region, Role::Aggregate).to_string();
        let topic = format!("e2e-region-{}", std::process::id());
        create_topic(&regional, &topic, 1).await;
        produce(&regional, &topic, &[(0, "k".into(), "before".into())]).await;

        ns.stack.stack_command(&["region-down", &region]);
        // Whatever happens below, the region comes back: later test binaries need it.
        let restore = RegionRestorer {
            stack: ns.stack.clone(),
            region: region.clone(),
        };
        let nodes: Api<Node> = Api::all(ns.stack.client.clone());
        let node = format!("tributary-{region}");
        wait_until("the region's node NotReady", WAIT, || async {
            (node_ready(&nodes, &node).await == Some(false)).then_some(())
        })
        .await;
        wait_until("the region's pod process killed", WAIT, || async {
            (!process_alive(pid)).then_some(())
        })
        .await;
        wait_until(
            "the region's Kafka clusters refusing connections",
            WAIT,
            || async { (!kafka_answers(&regional) && !kafka_answers(&aggregate)).then_some(()) },
        )
        .await;

        drop(restore);
        wait_until("the region's node Ready again", WAIT, || async {
            (node_ready(&nodes, &node).await == Some(true)).then_some(())
        })
        .await;
        let (new_pid, new_restarts) = wait_until("sleeper running again", WAIT, || async {
            pods.list(&lp)
                .await
                .ok()?
                .items
                .first()
                .and_then(running_container)
                .filter(|(p, _)| *p != pid)
        })
        .await;
        assert!(process_alive(new_pid));
        assert!(
            new_restarts > restarts,
            "restartCount grows across a region outage"
        );
        // Data written before the outage is still there; the cluster takes new writes.
        produce(&regional, &topic, &[(0, "k".into(), "after".into())]).await;
        let read = tokio::task::spawn_blocking(move || {
            consume_all(&regional, &topic, 2, Duration::from_secs(60))
        })
        .await
        .expect("reader");
        let values: Vec<_> = read
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(values, ["before", "after"]);
        assert!(
            kafka_answers(&aggregate),
            "aggregate Kafka of {region} is back"
        );
    })
    .await;
}
