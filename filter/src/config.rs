//! The plugin's configuration: the WasmPlugin's `pluginConfig`, exactly as users write it.
//!
//! This is the one type both sides use: the generator serializes it, the filter parses it.
//! Unknown fields are rejected so a typo never silently weakens the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the filter does with a peer the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse the request with `denyStatus`.
    #[default]
    Enforce,
    /// Let the request through; log and count what would have been refused.
    Audit,
}

impl Mode {
    /// The name used in the configuration and the decision log.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// Where the filter takes its decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// An HTTP filter: every request is decided (a denial is an HTTP reply with `denyStatus`).
    #[default]
    Request,
    /// A network filter: each TLS connection is decided once, on its first bytes, and a
    /// denied connection is closed. Needs the WasmPlugin's `type: NETWORK`.
    Connection,
}

impl Layer {
    /// The name used in the configuration and the decision log.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Request => "request",
            Layer::Connection => "connection",
        }
    }

    /// The default layer (serde skips it when writing).
    pub fn is_request(&self) -> bool {
        *self == Layer::Request
    }
}

/// The `pluginConfig` of the peergate WasmPlugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// `enforce` (default) or `audit`.
    #[serde(default)]
    pub mode: Mode,
    /// `request` (default) or `connection`.
    #[serde(default, skip_serializing_if = "Layer::is_request")]
    pub layer: Layer,
    /// The CAs that may sign the peer's leaf (directly), each a PEM string or an object with a
    /// `scope` bounding the names it may vouch for.
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
    /// PEM root certificates every trusted issuer that is not one of them must chain to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<String>,
    /// SAN patterns for every authority without its own entry in `hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_sans: Option<Vec<String>>,
    /// Subject DNs (RFC 4514, a trailing `*` in the CN value matches a prefix) for every
    /// authority without its own entry in `hosts`: a peer passes the name check when a SAN
    /// matches `allowedSans` or its subject matches one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_subjects: Option<Vec<String>>,
    /// The verified identity handed to the backend in headers under a prefix (default on,
    /// `x-peergate-`); `false` sets none. Client-sent headers with the prefix are removed
    /// either way.
    #[serde(default, skip_serializing_if = "ForwardIdentity::is_default")]
    pub forward_identity: ForwardIdentity,
    /// Per-path rules for every authority without its own entry in `hosts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// With the top-level `routes`: a path no route matches is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub routes_only: bool,
    /// Per-authority overrides, keyed by host name (no port, case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostConfig>,
    /// Serial numbers (hex) that are refused even when everything else passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_serials: Vec<String>,
    /// SHA-256 fingerprints (hex, of the DER) that are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_fingerprints: Vec<String>,
    /// PEM CRLs, each signed by a trusted issuer or anchor: a leaf on its issuer's CRL, or
    /// under a CA on its parent's, is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<String>,
    /// HTTP status of the local reply on a denial (400-599); 403 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_status: Option<u16>,
    /// Also write a decision-log line for allowed requests (denials are always logged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log_allowed: bool,
    /// The TLS server names (SNI, case-insensitive) the filter protects, on a gateway shared
    /// with other hosts: a connection whose server name is another passes untouched (no
    /// decision, no log line, counted as `peergate.unprotected`); one without a server name is
    /// decided. Absent: every connection is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_server_names: Option<Vec<String>>,
    /// The client profile (default on): a leaf must not be a CA, its key usages must allow
    /// TLS client authentication, and it may carry no critical extension the filter does not
    /// read. Off only to audit a legacy PKI; RSA keys under 2048 bits are refused either way.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub client_profile: bool,
    /// Days before a peer's notAfter in which its (allowed) decisions carry `daysLeft`, are
    /// logged once per certificate and counted as `peergate.expiring`; trusted issuers and
    /// anchors inside it are warned about at configure time. 0 turns this off.
    #[serde(
        default = "default_expiry_warning_days",
        skip_serializing_if = "is_default_expiry_warning_days"
    )]
    pub expiry_warning_days: u32,
}

/// `expiryWarningDays` when absent.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;

fn default_expiry_warning_days() -> u32 {
    DEFAULT_EXPIRY_WARNING_DAYS
}

fn is_default_expiry_warning_days(days: &u32) -> bool {
    *days == DEFAULT_EXPIRY_WARNING_DAYS
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Default for PluginConfig {
    /// What an empty `pluginConfig` object means (trustedIssuers aside, which is required).
    fn default() -> Self {
        PluginConfig {
            mode: Mode::default(),
            layer: Layer::default(),
            trusted_issuers: Vec::new(),
            trust_anchors: Vec::new(),
            allowed_sans: None,
            allowed_subjects: None,
            forward_identity: ForwardIdentity::default(),
            routes: Vec::new(),
            routes_only: false,
            hosts: BTreeMap::new(),
            denied_serials: Vec::new(),
            denied_fingerprints: Vec::new(),
            crls: Vec::new(),
            deny_status: None,
            log_allowed: false,
            protected_server_names: None,
            client_profile: true,
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
        }
    }
}

/// The rule for one authority: at least one of its lists must be given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// SAN patterns allowed on this authority, instead of the top-level list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sans: Vec<String>,
    /// Subject DNs allowed on this authority, instead of the top-level list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_subjects: Vec<String>,
    /// Per-path rules: the longest matching `pathPrefix` decides (request layer only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// A path no route matches is refused (`route_not_allowed`) instead of falling back to
    /// this host's names.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub routes_only: bool,
}

/// The identity headers' prefix when `forwardIdentity` gives none.
pub const DEFAULT_HEADER_PREFIX: &str = "x-peergate-";

/// `forwardIdentity`: `false`, `true`, or `{"headerPrefix": "x-peergate-"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardIdentity {
    /// Whether allowed requests carry the identity headers.
    pub enabled: bool,
    /// Their prefix, also of the client-sent headers that are removed.
    pub header_prefix: String,
}

impl Default for ForwardIdentity {
    fn default() -> Self {
        Self {
            enabled: true,
            header_prefix: DEFAULT_HEADER_PREFIX.to_owned(),
        }
    }
}

impl ForwardIdentity {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ForwardIdentityForm {
    Switch(bool),
    Prefix(ForwardIdentityPrefix),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ForwardIdentityPrefix {
    header_prefix: String,
}

impl Serialize for ForwardIdentity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.enabled {
            ForwardIdentityForm::Prefix(ForwardIdentityPrefix {
                header_prefix: self.header_prefix.clone(),
            })
        } else {
            ForwardIdentityForm::Switch(false)
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ForwardIdentity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match ForwardIdentityForm::deserialize(deserializer)? {
            ForwardIdentityForm::Switch(enabled) => ForwardIdentity {
                enabled,
                ..Self::default()
            },
            ForwardIdentityForm::Prefix(p) => ForwardIdentity {
                enabled: true,
                header_prefix: p.header_prefix,
            },
        })
    }
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// A prefix ending in `/`, or an exact path; canonical (no dot-segment, `//`, needless
    /// percent-encoding), no query.
    pub path_prefix: String,
    /// The methods admitted, exact and case-sensitive; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// SAN patterns admitted on the route; absent (with `allowedSubjects`): the host's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_sans: Option<Vec<String>>,
    /// Subject DNs admitted on the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_subjects: Option<Vec<String>>,
}

/// One `trustedIssuers` entry: a PEM string, as it always was, or
/// `{"certificate": "<PEM>", "scope": ["<pattern>", ...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIssuerConfig {
    /// PEM certificates (a bundle trusts each), unscoped.
    Pem(String),
    /// A certificate with the names it may vouch for.
    Scoped(ScopedIssuer),
}

/// The object form of a `trustedIssuers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScopedIssuer {
    /// PEM certificates (a bundle trusts each, all with this scope).
    pub certificate: String,
    /// SAN patterns (the `allowedSans` language): a peer this issuer signed passes only on a
    /// SAN that the allow-list admits and one of these matches. Absent: any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

impl TrustedIssuerConfig {
    /// The PEM text.
    pub fn pem(&self) -> &str {
        match self {
            TrustedIssuerConfig::Pem(pem) => pem,
            TrustedIssuerConfig::Scoped(scoped) => &scoped.certificate,
        }
    }

    /// The scope, when one is given.
    pub fn scope(&self) -> Option<&[String]> {
        match self {
            TrustedIssuerConfig::Pem(_) => None,
            TrustedIssuerConfig::Scoped(scoped) => scoped.scope.as_deref(),
        }
    }
}

impl From<String> for TrustedIssuerConfig {
    fn from(pem: String) -> Self {
        TrustedIssuerConfig::Pem(pem)
    }
}

impl From<&str> for TrustedIssuerConfig {
    fn from(pem: &str) -> Self {
        TrustedIssuerConfig::Pem(pem.to_owned())
    }
}

impl Serialize for TrustedIssuerConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TrustedIssuerConfig::Pem(pem) => serializer.serialize_str(pem),
            TrustedIssuerConfig::Scoped(scoped) => scoped.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for TrustedIssuerConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = TrustedIssuerConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a PEM certificate string or an object {\"certificate\": PEM, \"scope\": [patterns]}",
                )
            }

            fn visit_str<E: serde::de::Error>(self, pem: &str) -> Result<Self::Value, E> {
                Ok(TrustedIssuerConfig::Pem(pem.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                ScopedIssuer::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(TrustedIssuerConfig::Scoped)
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

/// The configuration could not be read as JSON of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pluginConfig{}: {message}", path_suffix(.path))]
pub struct ParseError {
    /// Where in the document the problem is, as a dotted path (`hosts.example.com.allowedSans`).
    pub path: String,
    /// What is wrong there, with serde's line and column.
    pub message: String,
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" field `{path}`")
    }
}

impl PluginConfig {
    /// Reads the configuration from the JSON the proxy hands the plugin.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config: PluginConfig =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ParseError {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        de.end().map_err(|e| ParseError {
            path: String::new(),
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// The JSON form, as it goes into the WasmPlugin's `pluginConfig`.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string keys, no
        // custom serializers.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() {
        let config =
            PluginConfig::from_json(br#"{"trustedIssuers":["x"],"allowedSans":["a"]}"#).unwrap();
        assert_eq!(config.mode, Mode::Enforce);
        assert_eq!(config.deny_status, None);
        assert!(config.hosts.is_empty());
        assert!(config.client_profile);
        assert_eq!(
            config,
            PluginConfig {
                trusted_issuers: vec!["x".into()],
                allowed_sans: Some(vec!["a".into()]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let err =
            PluginConfig::from_json(br#"{"trustedIssuers":[],"allowedSan":["a"]}"#).unwrap_err();
        assert!(err.message.contains("unknown field `allowedSan`"), "{err}");
    }

    #[test]
    fn unknown_nested_field_is_named_with_its_path() {
        let err = PluginConfig::from_json(
            br#"{"trustedIssuers":[],"hosts":{"a.example":{"allowedSans":[],"mode":"audit"}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("hosts.a.example"), "{err}");
        assert!(err.to_string().contains("unknown field `mode`"), "{err}");
    }

    #[test]
    fn bad_mode_is_named() {
        let err =
            PluginConfig::from_json(br#"{"trustedIssuers":[],"mode":"permissive"}"#).unwrap_err();
        assert_eq!(err.path, "mode");
        assert!(err.message.contains("permissive"), "{err}");
    }

    #[test]
    fn trusted_issuers_are_strings_or_objects() {
        let config = PluginConfig::from_json(
            br#"{"trustedIssuers":["a",{"certificate":"b"},{"certificate":"c","scope":["x"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            config.trusted_issuers[0],
            TrustedIssuerConfig::Pem("a".into())
        );
        assert_eq!(config.trusted_issuers[1].scope(), None);
        assert_eq!(
            config.trusted_issuers[2].scope(),
            Some(&["x".to_owned()][..])
        );
        let err = PluginConfig::from_json(br#"{"trustedIssuers":[{"certificate":"b","scop":[]}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("trustedIssuers[0]"), "{err}");
        assert!(err.message.contains("unknown field `scop`"), "{err}");
        let err = PluginConfig::from_json(br#"{"trustedIssuers":[7]}"#).unwrap_err();
        assert!(
            err.message
                .contains("a PEM certificate string or an object"),
            "{err}"
        );
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        assert!(PluginConfig::from_json(br#"{"trustedIssuers":[]} x"#).is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let mut config = PluginConfig {
            mode: Mode::Audit,
            trusted_issuers: vec!["pem".into()],
            allowed_sans: Some(vec!["spiffe://a/*".into()]),
            deny_status: Some(401),
            log_allowed: true,
            ..Default::default()
        };
        config.hosts.insert(
            "h.example".into(),
            HostConfig {
                allowed_sans: vec!["x".into()],
                ..Default::default()
            },
        );
        config
            .trusted_issuers
            .push(TrustedIssuerConfig::Scoped(ScopedIssuer {
                certificate: "pem2".into(),
                scope: Some(vec!["spiffe://a/*".into()]),
            }));
        config.trust_anchors = vec!["root".into()];
        config.allowed_subjects = Some(vec!["CN=a,O=b".into()]);
        let json = config.to_json();
        assert!(json.contains("\"trustedIssuers\":[\"pem\",{\"certificate\":\"pem2\",\"scope\":[\"spiffe://a/*\"]}]"), "{json}");
        assert!(json.contains("\"allowedSans\""), "{json}");
        assert_eq!(PluginConfig::from_json(json.as_bytes()).unwrap(), config);
    }
}
