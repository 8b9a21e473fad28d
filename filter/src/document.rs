//! Finding the plugin's configuration where people keep it: a WasmPlugin manifest (YAML or
//! JSON, one document or many, a `kind: List`), or the `pluginConfig` itself (JSON or YAML).
//! Used by `peergate audit` and the browser page; the filter itself receives plain JSON.

use serde_json::Value;

use crate::config::{ParseError, PluginConfig};

/// A `pluginConfig` found in a document.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundConfig {
    /// What held it: `WasmPlugin istio-system/peergate`, or `pluginConfig`.
    pub origin: String,
    /// The configuration, read exactly as the filter reads it.
    pub config: Result<PluginConfig, ParseError>,
}

/// Why no configuration could be taken from a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Neither JSON nor YAML.
    #[error("not YAML or JSON: {0}")]
    Syntax(String),
    /// Parsed, but holds no WasmPlugin with a peergate `pluginConfig`.
    #[error("no peergate WasmPlugin or TrafficExtension (one whose pluginConfig has trustedIssuers) and no pluginConfig{}", seen_suffix(.seen))]
    NotFound {
        /// The kinds of the objects that were there, e.g. `Gateway gw`.
        seen: Vec<String>,
    },
}

fn seen_suffix(seen: &[String]) -> String {
    if seen.is_empty() {
        String::new()
    } else {
        format!(" (found: {})", seen.join(", "))
    }
}

/// Every peergate configuration in `text`, in document order.
pub fn find_plugin_configs(text: &str) -> Result<Vec<FoundConfig>, DocumentError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        // A JSON object: parse it with serde_json first so a bare pluginConfig gets exactly
        // the filter's messages (with line and column).
        let value: Value =
            serde_json::from_str(text).map_err(|e| DocumentError::Syntax(format!("JSON: {e}")))?;
        if value.get("kind").is_none() {
            return Ok(vec![FoundConfig {
                origin: "pluginConfig".to_owned(),
                config: PluginConfig::from_json(text.as_bytes()),
            }]);
        }
        return collect(vec![value]);
    }
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| DocumentError::Syntax(format!("YAML: {e}")))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    collect(documents)
}

fn collect(documents: Vec<Value>) -> Result<Vec<FoundConfig>, DocumentError> {
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for document in documents {
        visit(document, &mut found, &mut seen);
    }
    if found.is_empty() {
        return Err(DocumentError::NotFound { seen });
    }
    Ok(found)
}

fn visit(mut document: Value, found: &mut Vec<FoundConfig>, seen: &mut Vec<String>) {
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match kind.as_deref() {
        Some("List") => {
            if let Some(Value::Array(items)) = document.get_mut("items").map(Value::take) {
                for item in items {
                    visit(item, found, seen);
                }
            }
        }
        Some(kind) => {
            let metadata = document.get("metadata");
            let field = |f: &str| metadata.and_then(|m| m.get(f)).and_then(Value::as_str);
            let name = match (field("namespace"), field("name")) {
                (Some(ns), Some(name)) => format!("{ns}/{name}"),
                (None, Some(name)) => name.to_owned(),
                _ => "(unnamed)".to_owned(),
            };
            // A WasmPlugin carries it in spec.pluginConfig, a TrafficExtension (Istio >= 1.30)
            // in spec.wasm.pluginConfig.
            let plugin_config = match kind {
                "WasmPlugin" => document.pointer("/spec/pluginConfig"),
                "TrafficExtension" => document.pointer("/spec/wasm/pluginConfig"),
                _ => None,
            };
            match plugin_config {
                Some(config) if config.get("trustedIssuers").is_some() => found.push(FoundConfig {
                    origin: format!("{kind} {name}"),
                    config: from_value(config),
                }),
                _ => seen.push(format!("{kind} {name}")),
            }
        }
        None if document.get("trustedIssuers").is_some() => found.push(FoundConfig {
            origin: "pluginConfig".to_owned(),
            config: from_value(&document),
        }),
        None => seen.push("a document without kind".to_owned()),
    }
}

/// Reads a configuration through the JSON the proxy would hand the filter (Istio renders the
/// WasmPlugin's `pluginConfig` as JSON), so errors are the filter's own.
fn from_value(value: &Value) -> Result<PluginConfig, ParseError> {
    PluginConfig::from_json(value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASMPLUGIN: &str = "apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: peergate
  namespace: istio-system
spec:
  url: oci://example/peergate:1
  pluginConfig:
    trustedIssuers: [pem]
    allowedSans: ['spiffe://a/*']
";

    #[test]
    fn finds_the_wasmplugin_among_other_documents() {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\n---\n{WASMPLUGIN}"
        );
        let found = find_plugin_configs(&text).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].origin, "WasmPlugin istio-system/peergate");
        let config = found[0].config.clone().unwrap();
        assert_eq!(config.trusted_issuers, vec!["pem".into()]);
    }

    #[test]
    fn finds_a_traffic_extension() {
        let text = "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata: {name: peergate, namespace: istio-system}\nspec:\n  wasm:\n    url: oci://example/p:1\n    pluginConfig: {trustedIssuers: [pem], allowedSans: [a.example]}\n";
        let found = find_plugin_configs(text).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].origin, "TrafficExtension istio-system/peergate");
        assert_eq!(
            found[0].config.clone().unwrap().allowed_sans,
            Some(vec!["a.example".to_owned()])
        );
    }

    #[test]
    fn reads_lists_and_json_objects() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            WASMPLUGIN
                .lines()
                .enumerate()
                .map(|(i, l)| if i == 0 {
                    format!("- {l}\n")
                } else {
                    format!("  {l}\n")
                })
                .collect::<String>()
        );
        assert_eq!(find_plugin_configs(&list).unwrap().len(), 1);
        let value: Value = yaml_serde::from_str(WASMPLUGIN).unwrap();
        assert_eq!(find_plugin_configs(&value.to_string()).unwrap().len(), 1);
    }

    #[test]
    fn a_bare_plugin_config_keeps_the_filters_messages() {
        let found = find_plugin_configs("{\"trustedIssuers\":[],\n\"allowedSan\":[]}").unwrap();
        let direct = PluginConfig::from_json(b"{\"trustedIssuers\":[],\n\"allowedSan\":[]}");
        assert_eq!(found[0].origin, "pluginConfig");
        assert_eq!(found[0].config, direct);
        assert!(direct.is_err());
    }

    #[test]
    fn other_plugins_and_objects_are_named_when_nothing_is_found() {
        let text = "kind: WasmPlugin\nmetadata: {name: other}\nspec: {pluginConfig: {x: 1}}\n---\nkind: Service\nmetadata: {name: s, namespace: n}\n";
        let err = find_plugin_configs(text).unwrap_err();
        assert_eq!(
            err,
            DocumentError::NotFound {
                seen: vec!["WasmPlugin other".into(), "Service n/s".into()]
            }
        );
        assert!(matches!(
            find_plugin_configs("a: [b"),
            Err(DocumentError::Syntax(_))
        ));
    }
}
