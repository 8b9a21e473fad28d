//! The Istio kinds the generator emits, as typed serde structs (fields as in Istio's CRDs;
//! only those peergate sets).

use std::collections::BTreeMap;

use serde::Serialize;

/// `metadata` of an Istio object.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// Object name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels (a Gateway API Gateway's `istio.io/rev`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (a Gateway API Gateway's carry Istio's settings for the Pods it deploys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An Istio object: apiVersion, kind, metadata and a typed spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S> {
    /// e.g. `networking.istio.io/v1`.
    pub api_version: &'static str,
    /// e.g. `Gateway`.
    pub kind: &'static str,
    /// Name and namespace.
    pub metadata: Metadata,
    /// The spec.
    pub spec: S,
}

/// Port of a ServiceEntry.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePort {
    /// Port number.
    pub number: u16,
    /// Port name.
    pub name: String,
    /// `HTTP`, `HTTPS`, ...
    pub protocol: String,
}

/// ServiceEntry spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Hosts.
    pub hosts: Vec<String>,
    /// Namespaces that see it (`.`: its own only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// `MESH_EXTERNAL`.
    pub location: String,
    /// `DNS`.
    pub resolution: String,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// A port selector (`{number: 443}`).
#[derive(Debug, Clone, Serialize)]
pub struct PortSelector {
    /// Port number.
    pub number: u16,
}

/// Destination of a route.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Host.
    pub host: String,
    /// Subset, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port.
    pub port: PortSelector,
}

/// A weighted destination.
#[derive(Debug, Clone, Serialize)]
pub struct RouteDestination {
    /// The destination.
    pub destination: Destination,
}

/// An HTTP match condition.
#[derive(Debug, Clone, Serialize)]
pub struct HttpMatch {
    /// Match on the port the request came in on.
    pub port: u16,
}

/// An HTTP route.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Match conditions (empty: all).
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch>,
    /// Destinations.
    pub route: Vec<RouteDestination>,
}

/// VirtualService spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts.
    pub hosts: Vec<String>,
    /// Namespaces that see it (`.`: its own only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Gateways (absent: the mesh's sidecars).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes.
    pub http: Vec<HttpRoute>,
}

/// Client TLS settings of a DestinationRule.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// `MUTUAL`.
    pub mode: String,
    /// Client certificate file (mounted mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client key file (mounted mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA file for the server (mounted mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Secret with the client credential (credentialName mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// SNI sent to the server.
    pub sni: String,
    /// SANs the server's certificate must carry.
    pub subject_alt_names: Vec<String>,
}

/// Port-level traffic policy.
#[derive(Debug, Clone, Serialize)]
pub struct PortTrafficPolicy {
    /// The port.
    pub port: PortSelector,
    /// TLS origination.
    pub tls: ClientTls,
}

/// Traffic policy of a subset.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Per-port settings.
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// A DestinationRule subset.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Subset name.
    pub name: String,
    /// Its policy.
    pub traffic_policy: TrafficPolicy,
}

/// A workload selector.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels.
    pub match_labels: BTreeMap<String, String>,
}

/// DestinationRule spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    /// Host.
    pub host: String,
    /// Namespaces that see it (`.`: its own only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Restricts the rule to these workloads (needed for `credentialName` on sidecars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Subsets.
    pub subsets: Vec<Subset>,
}

/// Port of a Gateway server.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayPort {
    /// Number.
    pub number: u16,
    /// Name.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
}

/// TLS settings of a Gateway server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTls {
    /// Redirect plain HTTP to HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// `MUTUAL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Secret in the gateway's namespace with `tls.crt`, `tls.key`, `ca.crt` (and `ca.crl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Client SANs Istio itself requires (exact match).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// A Gateway server.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayServer {
    /// Port.
    pub port: GatewayPort,
    /// Hosts.
    pub hosts: Vec<String>,
    /// TLS.
    pub tls: ServerTls,
}

/// Gateway spec.
#[derive(Debug, Clone, Serialize)]
pub struct GatewaySpec {
    /// Gateway workload labels.
    pub selector: BTreeMap<String, String>,
    /// Servers.
    pub servers: Vec<GatewayServer>,
}

/// Traffic selector of a WasmPlugin.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficSelector {
    /// `CLIENT` for gateway listeners.
    pub mode: String,
    /// Listener ports.
    pub ports: Vec<PortSelector>,
}

/// Which proxies a WasmPlugin or TrafficExtension applies to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Attachment {
    /// The Pods with these labels.
    Selector(WorkloadSelector),
    /// The Pods Istio deploys for these Gateway API Gateways.
    TargetRefs(Vec<PolicyTargetReference>),
}

/// A `targetRefs[]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTargetReference {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    /// Its name, in the plugin's namespace.
    pub name: String,
}

/// WasmPlugin spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// Which proxies: `selector` or `targetRefs`.
    #[serde(flatten)]
    pub attachment: Attachment,
    /// Module location.
    pub url: String,
    /// Module digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Registry credentials: a Secret in the plugin's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// `IfNotPresent` or `Always`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// `AUTHN`: before Istio's authorization.
    pub phase: String,
    /// `NETWORK` for the connection layer; absent (HTTP) otherwise.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub plugin_type: Option<String>,
    /// `FAIL_CLOSE`, `FAIL_RELOAD` or `FAIL_OPEN`.
    pub fail_strategy: String,
    /// Which listeners.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TrafficSelector>,
    /// The filter's configuration.
    pub plugin_config: peergate_filter::PluginConfig,
}

/// `TrafficExtension.spec` (Istio >= 1.30): the WasmPlugin's fields, the Wasm ones under
/// `wasm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficExtensionSpec {
    /// Which proxies: `selector` or `targetRefs`.
    #[serde(flatten)]
    pub attachment: Attachment,
    /// `AUTHN`: before Istio's authorization.
    pub phase: String,
    /// Which listeners.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TrafficSelector>,
    /// The module and its configuration.
    pub wasm: TrafficExtensionWasm,
}

/// `TrafficExtension.spec.wasm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficExtensionWasm {
    /// Module location.
    pub url: String,
    /// Module digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Registry credentials: a Secret in the plugin's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// `IfNotPresent` or `Always`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// `NETWORK` for the connection layer; absent (HTTP) otherwise.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub plugin_type: Option<String>,
    /// `FAIL_CLOSE`, `FAIL_RELOAD` or `FAIL_OPEN`.
    pub fail_strategy: String,
    /// The filter's configuration.
    pub plugin_config: peergate_filter::PluginConfig,
}

/// `kustomization.yaml`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1`.
    pub api_version: &'static str,
    /// `Kustomization`.
    pub kind: &'static str,
    /// The files.
    pub resources: Vec<String>,
}
