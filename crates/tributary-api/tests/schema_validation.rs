//! The examples against the generated CRD schemas, without a cluster: every valid example
//! passes, every invalid example is refused with the error its header names.
//!
//! The API server validates in two layers: the OpenAPI schema (types, enums, patterns, bounds)
//! and the CEL rules. CEL is evaluated by kube's client-side evaluator; the OpenAPI layer by the
//! small checker below, which words its errors the way the API server does so that one
//! expectation per example serves this test and the e2e test against the real API server.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The openAPIV3Schema of a kind, from the generated CRDs.
fn schema_of(kind: &str) -> Value {
    let crd = tributary_api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// All errors the API server would report for `object` (created, or updated from `old`).
fn validate(object: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = object["kind"].as_str().expect("object has a kind");
    let schema = schema_of(kind);
    let mut errors = Vec::new();
    check_openapi(&schema, object, "", &mut errors);
    if errors.is_empty()
        && let Err(cel) = kube::core::cel::Validator::new().validate(&schema, object, old)
    {
        for e in cel.into_vec() {
            errors.push(format!("{}: Invalid value: {}", e.field_path, e.message));
        }
    }
    errors
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The OpenAPI subset the CRDs use, with the API server's wording.
fn check_openapi(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-int-or-string").is_some()
        || schema.get("x-kubernetes-preserve-unknown-fields").is_some()
        || path == "metadata"
    {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        errors.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let type_ok = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{path}: Invalid value: {value}: {path} in body must be of type {ty}"
        ));
        return;
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    match value {
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if bound("minLength").is_some_and(|m| len < m) {
                errors.push(format!("{path}: Invalid value: {value}: {path} in body should be at least {} chars long", schema["minLength"]));
            }
            if bound("maxLength").is_some_and(|m| len > m) {
                errors.push(format!(
                    "{path}: Too long: may not be more than {} bytes",
                    schema["maxLength"]
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                let re = regex::Regex::new(pattern).expect("schema pattern compiles");
                if !re.is_match(s) {
                    errors.push(format!(
                        "{path}: Invalid value: {value}: {path} in body should match '{pattern}'"
                    ));
                }
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or_default();
            if bound("minimum").is_some_and(|m| n < m) {
                errors.push(format!("{path}: Invalid value: {n}: {path} in body should be greater than or equal to {}", schema["minimum"]));
            }
            if bound("maximum").is_some_and(|m| n > m) {
                errors.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be less than or equal to {}",
                    schema["maximum"]
                ));
            }
        }
        Value::Array(items) => {
            let len = items.len() as f64;
            if bound("minItems").is_some_and(|m| len < m) {
                errors.push(format!(
                    "{path}: Invalid value: {len}: {path} in body should have at least {} items",
                    schema["minItems"]
                ));
            }
            if bound("maxItems").is_some_and(|m| len > m) {
                errors.push(format!(
                    "{path}: Too many: {len}: must have at most {} items",
                    schema["maxItems"]
                ));
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = std::collections::BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys.iter().map(|k| item[k].to_string()).collect();
                    if !seen.insert(key) {
                        errors.push(format!("{path}[{i}]: Duplicate value: {item}"));
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_openapi(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = required.as_str().unwrap_or_default();
                if !map.contains_key(name) {
                    errors.push(format!("{}: Required value", join(path, name)));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, v) in map {
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = properties.and_then(|p| p.get(key)) {
                    check_openapi(s, v, &join(path, key), errors);
                } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object())
                {
                    check_openapi(s, v, &join(path, key), errors);
                } else if properties.is_some() {
                    errors.push(format!("{}: unknown field \"{key}\"", join(path, key)));
                }
            }
        }
        _ => {}
    }
}

fn load_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            serde_json::to_value(v).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn header(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).expect("readable example");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("{} has no `# {key}:` header", path.display()))
        .to_string()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_examples_pass_schema_and_cel() {
    let files = yaml_files(&repo_root().join("examples/three-regions"));
    let mut count = 0;
    for file in files {
        // The consumer workloads (apps/v1 Deployments) are checked by the API server e2e.
        for doc in load_docs(&file).into_iter().filter(|d| {
            d["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("tributary.dev/"))
        }) {
            let errors = validate(&doc, None);
            assert!(
                errors.is_empty(),
                "{}: {} refused: {errors:?}",
                file.display(),
                doc["metadata"]["name"]
            );
            count += 1;
        }
    }
    assert_eq!(
        count,
        3 + 3 + 2,
        "three RegionalStreams, three AggregateClusters, two failovers"
    );
}

#[test]
fn every_invalid_example_is_refused_with_its_documented_error() {
    let files = yaml_files(&repo_root().join("examples/invalid"));
    assert!(files.len() >= 15, "at least 15 invalid examples");
    for file in files {
        let field = header(&file, "field");
        let expected = header(&file, "error");
        let docs = load_docs(&file);
        let errors = match docs.as_slice() {
            [object] => validate(object, None),
            [old, new] => {
                assert!(
                    validate(old, None).is_empty(),
                    "{}: the original must be valid",
                    file.display()
                );
                validate(new, Some(old))
            }
            _ => panic!("{}: one document, or two for an update", file.display()),
        };
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&expected) && e.contains(&field)),
            "{}: expected an error naming `{field}` containing `{expected}`, got {errors:?}",
            file.display()
        );
    }
}

#[test]
fn a_valid_update_passes_transition_rules() {
    let file = repo_root().join("examples/three-regions/consumergroupfailovers.yaml");
    let old = load_docs(&file).remove(0);
    let mut new = old.clone();
    new["spec"]["activeRegion"] = "west".into();
    assert_eq!(validate(&new, Some(&old)), Vec::<String>::new());
}

#[test]
fn generated_crds_are_committed_in_crds_and_the_chart() {
    for dir in ["crds", "charts/tributary/crds"] {
        for crd in tributary_api::crds() {
            let path = repo_root()
                .join(dir)
                .join(tributary_api::crd_file_name(&crd));
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            let generated = tributary_api::render_crd_yaml(&crd).expect("CRD renders");
            assert!(
                committed == generated,
                "{} is stale: run `make crds`",
                path.display()
            );
        }
    }
}

#[test]
fn every_kind_lists_in_the_tributary_category_with_status_and_printer_columns() {
    for crd in tributary_api::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["tributary".to_string()][..])
        );
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns = version
            .additional_printer_columns
            .as_deref()
            .unwrap_or_default();
        assert!(
            columns.iter().any(|c| c.name == "Ready"),
            "{} lacks a Ready column",
            names.kind
        );
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref()),
        )
        .expect("schema");
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{}: conditions merge by type",
            names.kind
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }
}

#[test]
fn every_spec_field_is_documented() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, s) in props {
                let p = join(path, name);
                if s.get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(p.clone());
                }
                walk(s, &p, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    for crd in tributary_api::crds() {
        let schema = schema_of(&crd.spec.names.kind);
        let mut missing = Vec::new();
        walk(&schema["properties"]["spec"], "spec", &mut missing);
        walk(&schema["properties"]["status"], "status", &mut missing);
        assert!(
            missing.is_empty(),
            "{}: undocumented fields {missing:?}",
            crd.spec.names.kind
        );
    }
}

/// A RegionalStream whose spec.kafka.properties is `{key: value}`.
fn stream_with_property(key: &str, value: &str) -> Value {
    serde_json::json!({
        "apiVersion": "tributary.dev/v1alpha1",
        "kind": "RegionalStream",
        "metadata": {"name": "props"},
        "spec": {
            "region": "east",
            "kafka": {"bootstrapServers": ["127.0.0.1:19092"], "properties": {key: value}},
            "topics": [{"name": "orders", "partitions": 1, "replicationFactor": 1}],
        },
    })
}

#[test]
fn the_schema_refuses_exactly_the_properties_the_secret_rule_names() {
    use tributary_core::secret_property::is_secret_property;
    for key in [
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.config",
        "sasl.password",
        "SASL.Password",
        " sasl.username",
        "ssl.key.pem",
        "ssl_key",
        "sasl.jaas.config",
        "my.new.api.token",
        "socket.keepalive.enable",
        "ssl.key.location",
        "ssl.endpoint.identification.algorithm",
        "linger.ms",
        "client.id",
    ] {
        let errors = validate(&stream_with_property(key, "hunter2"), None);
        let secret = is_secret_property(key);
        assert_eq!(
            !errors.is_empty(),
            secret,
            "{key:?}: the rule says secret={secret}, the schema said {errors:?}"
        );
        assert_eq!(
            tributary_api::refused_property(key).is_some(),
            secret,
            "{key:?}: the operator's check must agree with the rule"
        );
        if secret {
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("spec.kafka.properties: ")
                        && e.contains(&format!("must not set secret property {key}"))),
                "{key:?}: {errors:?}"
            );
            assert!(
                errors.iter().all(|e| !e.contains("hunter2")),
                "the refusal must not quote the value: {errors:?}"
            );
        }
    }
}

#[test]
fn bootstrap_servers_in_properties_is_refused_pointing_to_the_field() {
    let errors = validate(
        &stream_with_property("bootstrap.servers", "127.0.0.1:1"),
        None,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("must not set bootstrap.servers (use bootstrapServers)")),
        "{errors:?}"
    );
}
