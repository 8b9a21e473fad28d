//! Every Istio object `peergate gen` emits, validated against Istio's own CRD schemas the way
//! the API server would: types, enums, required fields, bounds, and unknown fields as errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

/// `(group/version, kind)` → openAPIV3Schema.
fn schemas() -> &'static BTreeMap<(String, String), Value> {
    static SCHEMAS: OnceLock<BTreeMap<(String, String), Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/istio/crd-all.gen.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut out = BTreeMap::new();
        for doc in yaml_serde::Deserializer::from_str(&text) {
            let crd = Value::deserialize(doc).unwrap();
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let group = crd["spec"]["group"].as_str().unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let name = version["name"].as_str().unwrap();
                let schema = version["schema"]["openAPIV3Schema"].clone();
                out.insert((format!("{group}/{name}"), kind.to_owned()), schema);
            }
        }
        out
    })
}

fn check_required(
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) {
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        if !map.contains_key(name) {
            errors.push(format!("{path}: missing required field {name}"));
        }
    }
}

/// Validates `value` against a structural schema; returns every problem with its path.
pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: expected int or string, got {value}"));
        }
        return;
    }
    match schema["type"].as_str() {
        Some("object") => match value.as_object() {
            None => errors.push(format!("{path}: expected an object, got {value}")),
            Some(map) => {
                let properties = schema["properties"].as_object();
                for (key, child) in map {
                    let child_path = format!("{path}.{key}");
                    if let Some(sub) = properties.and_then(|p| p.get(key)) {
                        validate(sub, child, &child_path, errors);
                    } else if schema["additionalProperties"].is_object() {
                        validate(&schema["additionalProperties"], child, &child_path, errors);
                    } else if !preserve {
                        errors.push(format!("{child_path}: unknown field"));
                    }
                }
                check_required(schema, map, path, errors);
            }
        },
        Some("array") => match value.as_array() {
            None => errors.push(format!("{path}: expected an array, got {value}")),
            Some(items) => {
                if let Some(max) = schema["maxItems"].as_u64() {
                    if items.len() as u64 > max {
                        errors.push(format!("{path}: more than {max} items"));
                    }
                }
                if let Some(min) = schema["minItems"].as_u64() {
                    if (items.len() as u64) < min {
                        errors.push(format!("{path}: fewer than {min} items"));
                    }
                }
                for (i, item) in items.iter().enumerate() {
                    validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
        },
        Some("string") => match value.as_str() {
            None => errors.push(format!("{path}: expected a string, got {value}")),
            Some(s) => {
                if let Some(allowed) = schema["enum"].as_array() {
                    if !allowed.iter().any(|a| a == value) {
                        errors.push(format!("{path}: {s:?} is not one of {allowed:?}"));
                    }
                }
                if let Some(max) = schema["maxLength"].as_u64() {
                    if s.chars().count() as u64 > max {
                        errors.push(format!("{path}: longer than {max}"));
                    }
                }
            }
        },
        Some("integer") => match value.as_i64() {
            None => errors.push(format!("{path}: expected an integer, got {value}")),
            Some(n) => {
                if schema["minimum"].as_i64().is_some_and(|min| n < min) {
                    errors.push(format!("{path}: {n} below the minimum"));
                }
                if schema["maximum"].as_i64().is_some_and(|max| n > max) {
                    errors.push(format!("{path}: {n} above the maximum"));
                }
            }
        },
        Some("boolean") if !value.is_boolean() => {
            errors.push(format!("{path}: expected a boolean, got {value}"));
        }
        Some("number") if !value.is_number() => {
            errors.push(format!("{path}: expected a number, got {value}"));
        }
        Some("boolean" | "number") => {}
        Some(other) => errors.push(format!("{path}: schema type {other} not understood")),
        // Untyped schemas are the parts of oneOf/anyOf/not: `required` alone says which
        // fields are there (checking it only under `type: object` made every such part match).
        None => {
            if let Some(map) = value.as_object() {
                check_required(schema, map, path, errors);
            }
        }
    }
    // Istio expresses "at most one of" with oneOf/anyOf/not over `required`.
    if let Some(options) = schema["oneOf"].as_array() {
        let matching = options.iter().filter(|o| matches(o, value)).count();
        if matching != 1 {
            errors.push(format!(
                "{path}: matches {matching} of the oneOf alternatives"
            ));
        }
    }
    if let Some(options) = schema["anyOf"].as_array() {
        if !options.iter().any(|o| matches(o, value)) {
            errors.push(format!("{path}: matches none of the anyOf alternatives"));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        validate(part, value, path, errors);
    }
    if schema["not"].is_object() && matches(&schema["not"], value) {
        errors.push(format!("{path}: matches a forbidden combination"));
    }
}

/// Validates a whole object: the API server handles apiVersion, kind and metadata itself (the
/// CRD schemas describe only the rest).
pub fn validate_object(schema: &Value, object: &Value, kind: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        for implicit in ["apiVersion", "kind"] {
            map.remove(implicit);
        }
        match map.remove("metadata") {
            Some(meta) if meta["name"].is_string() => {
                for key in meta.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !["name", "namespace", "labels", "annotations"].contains(&key.as_str()) {
                        errors.push(format!("{kind}.metadata.{key}: unexpected field"));
                    }
                }
            }
            _ => errors.push(format!("{kind}.metadata.name: missing")),
        }
    }
    validate(schema, &rest, kind, &mut errors);
    errors
}

fn matches(schema: &Value, value: &Value) -> bool {
    let mut errors = Vec::new();
    validate(schema, value, "", &mut errors);
    errors.is_empty()
}

/// Validates one emitted object (YAML text); panics with every problem.
pub fn check_object(file: &str, yaml: &str) {
    let object: Value = yaml_serde::from_str(yaml).unwrap();
    let api_version = object["apiVersion"].as_str().unwrap().to_owned();
    let kind = object["kind"].as_str().unwrap().to_owned();
    let schema = schemas()
        .get(&(api_version.clone(), kind.clone()))
        .unwrap_or_else(|| panic!("{file}: no CRD for {api_version} {kind}"));
    let errors = validate_object(schema, &object, &kind);
    assert!(
        errors.is_empty(),
        "{file} ({kind}) violates its CRD schema:\n{}",
        errors.join("\n")
    );
}

fn generated(args: &[&str]) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_peergate"));
    cmd.arg("gen")
        .arg("--config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../mesh.toml"))
        .arg("--out")
        .arg(&out)
        .args(args);
    let status = cmd.status().unwrap();
    assert!(status.success());
    let mut istio = Vec::new();
    for cluster in ["cluster-a", "cluster-b"] {
        for entry in std::fs::read_dir(out.join(cluster)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let api_version = text.lines().find_map(|l| l.strip_prefix("apiVersion: "));
            if api_version.is_some_and(|v| v.contains(".istio.io/")) {
                istio.push((path.display().to_string(), text));
            }
        }
    }
    (dir, istio)
}

#[test]
fn every_emitted_istio_object_fits_its_crd() {
    let mut kinds = std::collections::BTreeSet::new();
    for args in [
        &[][..],
        &["--client-cert-mode", "credentialName", "--mode", "audit"][..],
        &["--fail-strategy", "FAIL_RELOAD", "--key-type", "ecdsa-p256"][..],
        &["--layer", "connection"][..],
        &["--api", "trafficextension", "--layer", "connection", "--wasm-image", "ghcr.io/acme/peergate:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"][..],
        &["--api", "trafficextension", "--wasm-url", "file:///var/local/peergate.wasm"][..],
    ] {
        let (_dir, objects) = generated(args);
        for (file, yaml) in &objects {
            check_object(file, yaml);
            let v: Value = yaml_serde::from_str(yaml).unwrap();
            kinds.insert(v["kind"].as_str().unwrap().to_owned());
        }
    }
    let expected: std::collections::BTreeSet<String> = [
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "TrafficExtension",
        "VirtualService",
        "WasmPlugin",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn the_validator_catches_what_the_api_server_would() {
    let (_dir, objects) = generated(&[]);
    let (_, gateway) = objects
        .iter()
        .find(|(f, _)| f.ends_with("gateway.yaml"))
        .unwrap();
    let mut object: Value = yaml_serde::from_str(gateway).unwrap();
    let schema = &schemas()[&("networking.istio.io/v1".to_owned(), "Gateway".to_owned())];
    let errors = validate_object(schema, &object, "Gateway");
    assert!(errors.is_empty(), "{errors:?}");

    object["spec"]["servers"][1]["tls"]["mode"] = "MUTUALLY".into();
    object["spec"]["servers"][0]["hostz"] = Value::Array(vec![]);
    object["spec"]["servers"][0]["port"]["number"] = "eighty".into();
    let text = validate_object(schema, &object, "Gateway").join("\n");
    assert!(text.contains("\"MUTUALLY\" is not one of"), "{text}");
    assert!(text.contains("servers[0].hostz: unknown field"), "{text}");
    assert!(text.contains("port.number: expected an integer"), "{text}");

    // oneOf over `required`: a TrafficExtension carrying both wasm and lua is refused.
    let (_dir, objects) = generated(&["--api", "trafficextension"]);
    let (_, extension) = objects
        .iter()
        .find(|(f, _)| f.ends_with("trafficextension.yaml"))
        .unwrap();
    let mut object: Value = yaml_serde::from_str(extension).unwrap();
    let schema = &schemas()[&(
        "extensions.istio.io/v1alpha1".to_owned(),
        "TrafficExtension".to_owned(),
    )];
    assert!(validate_object(schema, &object, "TrafficExtension").is_empty());
    object["spec"]["lua"] = serde_json::json!({ "inlineCode": "function envoy_on_request(h) end" });
    let text = validate_object(schema, &object, "TrafficExtension").join("\n");
    assert!(
        text.contains("matches 2 of the oneOf alternatives"),
        "{text}"
    );
}
