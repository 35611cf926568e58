//! The pure steps on YAML fixtures: source selection and topic planning (validate) and the
//! replicator Deployments (build). No cluster, no Kafka.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::core::ObjectMeta;
use kube::{Resource, ResourceExt};
use tributary_api::{AggregateCluster, RegionalStream};
use tributary_operator::error::Error;
use tributary_operator::model::{AggregatePlan, plan_aggregate, validate_stream};
use tributary_operator::replicator::build_route_deployment;
use tributary_operator::secrets::SecretVersions;

fn docs(yaml: &str) -> (Vec<RegionalStream>, Vec<AggregateCluster>) {
    let mut streams = Vec::new();
    let mut aggregates = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("yaml");
        if value.is_null() {
            continue;
        }
        match value["kind"].as_str() {
            Some("RegionalStream") => {
                streams.push(serde_yaml::from_value(value).expect("RegionalStream"))
            }
            Some("AggregateCluster") => {
                aggregates.push(serde_yaml::from_value(value).expect("AggregateCluster"))
            }
            _ => {}
        }
    }
    (streams, aggregates)
}

use serde::Deserialize as _;

fn in_namespace<K: kube::Resource>(mut objs: Vec<K>, ns: &str) -> Vec<K> {
    for o in &mut objs {
        o.meta_mut().namespace = Some(ns.into());
        let uid = format!("uid-of-{}", o.meta().name.clone().unwrap_or_default());
        o.meta_mut().uid.get_or_insert(uid);
    }
    objs
}

fn three_regions() -> (Vec<RegionalStream>, Vec<AggregateCluster>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/three-regions/");
    let (streams, _) =
        docs(&std::fs::read_to_string(format!("{root}regionalstreams.yaml")).expect("example"));
    let (_, aggregates) =
        docs(&std::fs::read_to_string(format!("{root}aggregateclusters.yaml")).expect("example"));
    (in_namespace(streams, "dr"), in_namespace(aggregates, "dr"))
}

fn secured() -> (Vec<RegionalStream>, Vec<AggregateCluster>) {
    docs(include_str!("fixtures/secured-sources.yaml"))
}

fn build(plan: &AggregatePlan, agg: &AggregateCluster, image: &str) -> Vec<Deployment> {
    let owner = agg.controller_owner_ref(&()).expect("uid");
    plan.routes
        .iter()
        .map(|r| build_route_deployment(plan, r, image, &SecretVersions::default(), owner.clone()))
        .collect()
}

fn args_of(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].args.clone())
        .unwrap_or_default()
}

#[test]
fn three_region_example_gives_every_aggregate_one_route_per_region() {
    let (streams, aggregates) = three_regions();
    assert_eq!(aggregates.len(), 3);
    let mut names = Vec::new();
    for agg in &aggregates {
        let plan = plan_aggregate(agg, &streams).expect("valid example");
        assert_eq!(plan.routes.len(), 3, "{}", agg.name_any());
        assert_eq!(plan.topics["orders"].partitions, 4);
        assert_eq!(plan.topics["payments"].partitions, 2);
        assert_eq!(
            plan.topics.len(),
            2,
            "Identity naming merges the regions' topics"
        );
        names.extend(
            build(&plan, agg, "local/tributary:dev")
                .into_iter()
                .map(|d| d.name_any()),
        );
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 9, "N×N distinct route Deployments: {names:?}");
    assert!(names.contains(&"tributary-route-east-to-west".to_string()));
}

#[test]
fn route_deployment_carries_the_spec_and_mounts_secrets_as_files_only() {
    let (streams, aggregates) = secured();
    let agg = &aggregates[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let ds = build(&plan, agg, "ignored/because-spec-overrides:1");
    let east = ds
        .iter()
        .find(|d| d.name_any() == "tributary-route-east-payments-to-central")
        .expect("east route");
    let args = args_of(east);
    let listen = "--listen=$(POD_IP):8080".to_string();
    // Pinned: the route id names the replicator's consumer group, so a change would make every
    // route start over from the source's log start.
    let route = "--route=team-a-east-payments-to-central-365af9a2ac".to_string();
    let want: Vec<&str> = vec![
        "replicate",
        &route,
        "--source-region=east",
        "--dest-region=central",
        "--source-bootstrap=east-0.kafka:9093,east-1.kafka:9093",
        "--source-tls",
        "--source-tls-ca-file=/var/run/tributary/source-tls-ca/ca.crt",
        "--source-tls-cert-file=/var/run/tributary/source-tls-cert/tls.crt",
        "--source-tls-key-file=/var/run/tributary/source-tls-key/tls.key",
        "--source-sasl-mechanism=SCRAM-SHA-512",
        "--source-sasl-username=replicator",
        "--source-sasl-password-file=/var/run/tributary/source-sasl-password/password",
        "--source-property=socket.keepalive.enable=true",
        "--dest-bootstrap=central-agg:9092",
        "--dest-sasl-mechanism=PLAIN",
        "--dest-sasl-username=aggregator",
        "--dest-sasl-password-file=/var/run/tributary/dest-sasl-password/password",
        "--topics=payments",
        "--topic-naming=prefixed",
        "--delivery=at-least-once",
        "--linger-ms=10",
        "--batch-bytes=65536",
        "--compression=zstd",
        "--checkpoint-interval=2s",
        "--checkpoint-topic=dr.checkpoints",
        "--checkpoint-retention=72h",
        // Sized from the spec's 128Mi memory limit.
        "--producer-buffer-kbytes=87380",
        "--consumer-queue-kbytes=21845",
        &listen,
        "--log-format=json",
    ];
    assert_eq!(args, want);
    // Secret names only appear as volume sources, never in args or env.
    let rendered_args = serde_json::to_string(&args).expect("json");
    for secret in [
        "east-kafka-ca",
        "east-kafka-client",
        "east-kafka-sasl",
        "central-agg-sasl",
    ] {
        assert!(!rendered_args.contains(secret), "{secret} leaked into args");
    }
    let pod = east
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    let volumes: BTreeMap<String, String> = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            (
                v.name,
                v.secret.and_then(|s| s.secret_name).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(volumes["source-tls-ca"], "east-kafka-ca");
    assert_eq!(volumes["dest-sasl-password"], "central-agg-sasl");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/tributary:1.2.3"));
    // Env carries no secret: only the pod IP (downward API) and the log filter.
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["POD_IP", "RUST_LOG"]);
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
            .as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .map(|l| l["memory"].0.clone())
            .as_deref(),
        Some("128Mi")
    );
    let term = &pod
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .expect("required affinity")
        .node_selector_terms[0];
    let req = &term.match_expressions.as_ref().expect("expressions")[0];
    assert_eq!(
        (req.key.as_str(), req.operator.as_str(), req.values.clone()),
        (
            "topology.kubernetes.io/region",
            "In",
            Some(vec!["central".to_string()])
        )
    );
    assert_eq!(east.spec.as_ref().and_then(|s| s.replicas), Some(1));
    let strategy = east.spec.as_ref().and_then(|s| s.strategy.clone());
    assert_eq!(
        strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "a rollout must never run two copiers of one route"
    );
    assert!(strategy.and_then(|s| s.rolling_update).is_none());

    let labels = east.labels();
    assert_eq!(labels["app.kubernetes.io/name"], "tributary");
    assert_eq!(labels["app.kubernetes.io/instance"], "central");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "tributary-operator");
    assert_eq!(labels["app.kubernetes.io/component"], "replicator");
    let owner = &east.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("AggregateCluster", "central", Some(true))
    );
}

/// A rotated Secret changes the pod template (the replicator reads credentials once, at
/// start, so its pod must be replaced); versions are named, content never.
#[test]
fn a_rotated_secret_changes_the_route_pod_template() {
    let (streams, aggregates) = secured();
    let agg = &aggregates[0];
    let plan = plan_aggregate(agg, &streams).expect("valid");
    let owner = agg.controller_owner_ref(&()).expect("uid");
    let template = |versions: &SecretVersions| {
        build_route_deployment(&plan, &plan.routes[0], "img", versions, owner.clone())
            .spec
            .expect("spec")
            .template
    };
    let annotation = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        t.metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("tributary.dev/secret-versions").cloned())
    };
    let before: SecretVersions = [
        ("east-scram".to_string(), "101".to_string()),
        ("central-tls".to_string(), "7".to_string()),
    ]
    .into_iter()
    .collect();
    let rotated: SecretVersions = [
        ("east-scram".to_string(), "205".to_string()),
        ("central-tls".to_string(), "7".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        annotation(&template(&before)).as_deref(),
        Some("central-tls=7,east-scram=101")
    );
    assert_ne!(template(&before), template(&rotated));
    assert_eq!(template(&before), template(&before.clone()));
    assert_eq!(annotation(&template(&SecretVersions::default())), None);
}

#[test]
fn label_selector_picks_sources_and_prefixed_naming_follows_the_largest_partition_count() {
    let (streams, aggregates) = secured();
    let plan = plan_aggregate(&aggregates[0], &streams).expect("valid");
    let sources: Vec<&str> = plan.routes.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(
        sources,
        ["east-payments", "west-payments"],
        "team=search is not selected"
    );
    assert_eq!(
        plan.topics.keys().collect::<Vec<_>>(),
        ["east.payments", "west.payments"]
    );
    assert_eq!(plan.topics["east.payments"].partitions, 6);
    assert_eq!(
        plan.topics["west.payments"].partitions, 8,
        "observed partitions beat the spec"
    );
}

#[test]
fn building_twice_gives_the_same_objects() {
    let (streams, aggregates) = three_regions();
    let plan = plan_aggregate(&aggregates[0], &streams).expect("valid");
    let a =
        serde_json::to_string(&build(&plan, &aggregates[0], "local/tributary:dev")).expect("json");
    let b =
        serde_json::to_string(&build(&plan, &aggregates[0], "local/tributary:dev")).expect("json");
    assert_eq!(a, b);
}

#[test]
fn a_source_being_deleted_loses_its_route() {
    let (mut streams, aggregates) = three_regions();
    streams[0].metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let gone = streams[0].name_any();
    let plan = plan_aggregate(&aggregates[0], &streams).expect("valid");
    assert_eq!(plan.routes.len(), 2);
    assert!(plan.routes.iter().all(|r| r.source != gone));
}

#[test]
fn sources_of_other_namespaces_are_never_selected() {
    let (streams, aggregates) = three_regions();
    let mut agg = aggregates[0].clone();
    agg.metadata = ObjectMeta {
        namespace: Some("elsewhere".into()),
        ..agg.metadata
    };
    assert!(
        plan_aggregate(&agg, &streams)
            .expect("valid")
            .routes
            .is_empty()
    );
}

#[test]
fn invalid_specs_are_refused_with_the_field_named() {
    let (streams, aggregates) = three_regions();
    let mut eos = aggregates[0].clone();
    eos.spec.replicator.delivery = tributary_api::aggregate_cluster::Delivery::ExactlyOnce;
    eos.spec.replicator.replicas = 2;
    let err = plan_aggregate(&eos, &streams).expect_err("two transactional replicas");
    assert!(
        matches!(err, Error::InvalidSpec(ref m) if m.contains("spec.replicator.replicas")),
        "{err}"
    );
    assert_eq!(
        err.retry_after(0),
        None,
        "an invalid spec waits for a change"
    );

    // AtLeastOnce too: every replica would copy every partition.
    let mut alo = aggregates[0].clone();
    alo.spec.replicator.delivery = tributary_api::aggregate_cluster::Delivery::AtLeastOnce;
    alo.spec.replicator.replicas = 2;
    let err = plan_aggregate(&alo, &streams).expect_err("two copying replicas");
    assert!(
        matches!(err, Error::InvalidSpec(ref m) if m.contains("spec.replicator.replicas") && m.contains("0 or 1")),
        "{err}"
    );

    let mut collide = aggregates[0].clone();
    collide.spec.checkpoints.topic = "orders".into();
    let err = plan_aggregate(&collide, &streams).expect_err("checkpoint topic collides");
    assert!(err.to_string().contains("spec.checkpoints.topic"), "{err}");

    let mut bad = streams[0].clone();
    bad.spec.topic_pattern = Some("(unclosed".into());
    let err = validate_stream(&bad).expect_err("pattern does not compile");
    assert!(err.to_string().contains("spec.topicPattern"), "{err}");
}

#[test]
fn two_sources_of_one_region_are_refused_with_both_named() {
    let (mut streams, aggregates) = three_regions();
    // A second RegionalStream of east (another team's), matched by the same selector.
    let mut team = streams[0].clone();
    team.metadata.name = Some("east-payments-team".into());
    team.metadata.uid = Some("uid-of-east-payments-team".into());
    assert_eq!(team.spec.region, "east");
    streams.push(team);
    for agg in &aggregates {
        let err = plan_aggregate(agg, &streams).expect_err("two sources of east");
        let message = err.to_string();
        assert!(
            matches!(err, Error::InvalidSpec(_)),
            "an invalid spec, reported as such: {err}"
        );
        assert_eq!(err.category(), "InvalidSpec");
        assert_eq!(err.retry_after(0), None, "waits for a change of the spec");
        assert!(
            message.contains("east: east, east-payments-team") && message.contains("spec.sources"),
            "names the region, both streams and the field: {message}"
        );
    }

    // A selector that picks one of them is valid again.
    let mut narrowed = aggregates[0].clone();
    narrowed.spec.sources = Some(serde_json::from_value(serde_json::json!({
        "matchExpressions": [{"key": "tributary.dev/region", "operator": "In", "values": ["west", "central"]}]
    })).expect("selector"));
    let plan = plan_aggregate(&narrowed, &streams).expect("one source per region");
    let regions: Vec<&str> = plan
        .routes
        .iter()
        .map(|r| r.source_region.as_str())
        .collect();
    assert_eq!(regions, ["central", "west"]);
}

#[test]
fn topics_matched_by_a_pattern_are_aggregated_with_their_observed_partitions() {
    let (mut streams, aggregates) = three_regions();
    let rs = &mut streams[0];
    rs.spec.topic_pattern = Some("audit\\..*".into());
    rs.status = Some(tributary_api::RegionalStreamStatus {
        topics: vec![
            tributary_api::regional_stream::TopicStatus {
                name: "audit.logins".into(),
                exists: true,
                partitions: Some(12),
                ..Default::default()
            },
            tributary_api::regional_stream::TopicStatus {
                name: "unrelated".into(),
                exists: true,
                partitions: Some(1),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let source = rs.name_any();
    let plan = plan_aggregate(&aggregates[0], &streams).expect("valid");
    let route = plan
        .routes
        .iter()
        .find(|r| r.source == source)
        .expect("route");
    assert!(
        route.topics.contains(&"audit.logins".to_string())
            && !route.topics.contains(&"unrelated".to_string()),
        "{:?}",
        route.topics
    );
    assert_eq!(route.topic_pattern.as_deref(), Some("audit\\..*"));
    assert_eq!(plan.topics["audit.logins"].partitions, 12);
    let d = build_route_deployment(
        &plan,
        route,
        "img",
        &SecretVersions::default(),
        aggregates[0].controller_owner_ref(&()).expect("uid"),
    );
    assert!(args_of(&d).contains(&"--topic-pattern=audit\\..*".to_string()));
}

#[test]
fn a_stored_object_with_a_secret_property_is_refused_and_no_route_carries_the_value() {
    // Objects stored before the schema refused them (or applied with validation off) must
    // still never put the value into a replicator's args.
    let (mut streams, aggregates) = three_regions();
    streams[0].spec.kafka.properties.insert(
        "sasl.oauthbearer.client.secret".into(),
        "s3cr3t-client-secret".into(),
    );
    let err = validate_stream(&streams[0]).expect_err("secret in properties");
    let message = err.to_string();
    assert!(
        message.contains("spec.kafka.properties")
            && message.contains("sasl.oauthbearer.client.secret")
            && !message.contains("s3cr3t"),
        "{message}"
    );
    assert_eq!(err.retry_after(0), None, "waits for a fixed spec");
    for agg in &aggregates {
        let plan = plan_aggregate(agg, &streams).expect("the other sources still plan");
        for d in build(&plan, agg, "local/tributary:dev") {
            let args = args_of(&d).join(" ");
            assert!(!args.contains("s3cr3t"), "{}: {args}", d.name_any());
        }
    }

    let mut agg = aggregates[0].clone();
    agg.spec
        .kafka
        .properties
        .insert("ssl.key.password".into(), "hunter2".into());
    let err = plan_aggregate(&agg, &streams).expect_err("secret in the aggregate's properties");
    assert!(
        err.to_string().contains("spec.kafka.properties") && !err.to_string().contains("hunter2"),
        "{err}"
    );
}

#[test]
fn same_named_routes_in_two_namespaces_have_distinct_replicator_identities() {
    let (streams, aggregates) = three_regions();
    let plan_in = |ns: &str| {
        let streams = in_namespace(streams.clone(), ns);
        let agg = in_namespace(vec![aggregates[0].clone()], ns).remove(0);
        plan_aggregate(&agg, &streams).expect("valid")
    };
    let (a, b) = (plan_in("team-a"), plan_in("team-b"));
    for (ra, rb) in a.routes.iter().zip(&b.routes) {
        assert_eq!(ra.deployment, rb.deployment, "Deployments are namespaced");
        assert_ne!(ra.route_id, rb.route_id, "group ids live in shared Kafka");
    }
}
