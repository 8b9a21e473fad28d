//! Every Istio object `peergate gen` emits, validated against Istio's own CRD schemas the way
//! the API server validates them, with a JSON-schema validator (the `jsonschema` crate): types,
//! enums, required fields, bounds, lengths, patterns, formats, map sizes, oneOf/anyOf/not, and
//! unknown fields as errors (the API server prunes or, with strict field validation, refuses
//! them). What this cannot do: the CRDs' CEL rules (`x-kubernetes-validations`) are not
//! evaluated here, and Kubernetes' own kinds have no CRD; the Istio oracle (tests/istio) runs
//! both through Istio's and Kubernetes' own code, for each pinned release.
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
use serde_json::{json, Value};

/// `(group/version, kind)` → the CRD's openAPIV3Schema as JSON Schema.
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
                let schema = json_schema(&version["schema"]["openAPIV3Schema"]);
                out.insert((format!("{group}/{name}"), kind.to_owned()), schema);
            }
        }
        out
    })
}

/// A structural schema (OpenAPI v3 as Kubernetes restricts it) as JSON Schema: an object with
/// `properties` admits no other field unless it preserves unknown fields or gives
/// `additionalProperties`; `nullable` admits null; `x-kubernetes-int-or-string` is either. The
/// `x-kubernetes-*` keywords themselves mean nothing to JSON Schema and are left out.
fn json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, value) in map {
                if key.starts_with("x-kubernetes-") || key == "nullable" {
                    continue;
                }
                let converted = match key.as_str() {
                    // Property names are data, not schemas.
                    "properties" => Value::Object(
                        value
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(name, sub)| (name.clone(), json_schema(sub)))
                            .collect(),
                    ),
                    "enum" | "required" | "default" | "example" => value.clone(),
                    _ => json_schema(value),
                };
                out.insert(key.clone(), converted);
            }
            let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserve
            {
                out.insert("additionalProperties".into(), json!(false));
            }
            if map.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
                out.remove("type");
                out.insert(
                    "anyOf".into(),
                    json!([{ "type": "integer" }, { "type": "string" }]),
                );
            }
            if map.get("nullable") == Some(&json!(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(json_schema).collect()),
        other => other.clone(),
    }
}

/// Validates a whole object: the API server handles apiVersion, kind and metadata itself (the
/// CRD schemas describe only the rest). Returns every problem with its path.
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
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{kind}: the CRD schema does not compile: {e}"));
    for error in validator.iter_errors(&rest) {
        errors.push(format!("{kind}{}: {error}", error.instance_path()));
    }
    errors
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
    assert!(
        text.contains("/spec/servers/1/tls/mode: \"MUTUALLY\" is not one of"),
        "{text}"
    );
    assert!(
        text.contains("/spec/servers/0: Additional properties are not allowed ('hostz'"),
        "{text}"
    );
    assert!(
        text.contains("/spec/servers/0/port/number: \"eighty\" is not of type \"integer\""),
        "{text}"
    );

    // `pattern`: the WasmPlugin's sha256 is 64 lower-case hex digits (Istio's CRD), so an
    // upper-case digest is refused as the API server refuses it.
    let (_dir, objects) = generated(&[
        "--wasm-image",
        "ghcr.io/acme/peergate:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ]);
    let (_, plugin) = objects
        .iter()
        .find(|(f, _)| f.ends_with("wasmplugin.yaml"))
        .unwrap();
    let mut object: Value = yaml_serde::from_str(plugin).unwrap();
    let schema = &schemas()[&(
        "extensions.istio.io/v1alpha1".to_owned(),
        "WasmPlugin".to_owned(),
    )];
    assert!(validate_object(schema, &object, "WasmPlugin").is_empty());
    object["spec"]["sha256"] = "ABCDEF0123456789".repeat(4).into();
    object["spec"]["selector"]["matchLabels"] = json!({});
    let text = validate_object(schema, &object, "WasmPlugin").join("\n");
    assert!(text.contains("/spec/sha256: \"ABCDEF"), "{text}");
    assert!(
        text.contains("does not match \"(^$|^[a-f0-9]{64}$)\""),
        "{text}"
    );

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
    assert!(text.contains("/spec: "), "{text}");
    assert!(text.contains("oneOf"), "{text}");
}
