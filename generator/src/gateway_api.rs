//! The Kubernetes Gateway API kinds the generator emits (`gateway.networking.k8s.io/v1` and
//! `v1beta1`), as typed serde structs: only the fields peergate sets, named as in the CRDs of
//! sigs.k8s.io/gateway-api (v1.4 to v1.6, the versions Istio 1.28 to 1.31 vendor).

use std::collections::BTreeMap;

use serde::Serialize;

/// `Gateway.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// `istio`: Istio's built-in class, whose controller deploys the gateway.
    pub gateway_class_name: String,
    /// Labels and annotations Istio copies onto what it deploys (the Pods among them).
    pub infrastructure: Infrastructure,
    /// The listeners.
    pub listeners: Vec<Listener>,
    /// Client-certificate validation (GEP-91).
    pub tls: GatewayTls,
}

/// `Gateway.spec.infrastructure`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Infrastructure {
    /// Annotations of the deployed objects, the Pod template's among them.
    pub annotations: BTreeMap<String, String>,
    /// A ConfigMap of overlays for what Istio deploys (the Deployment's replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<LocalParametersReference>,
}

/// `Gateway.spec.infrastructure.parametersRef`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalParametersReference {
    /// `""` (core).
    pub group: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Its name, in the Gateway's namespace.
    pub name: String,
}

/// A listener.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Its name: what routes' `sectionName` and the status name.
    pub name: String,
    /// The host it serves.
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Server TLS (HTTPS only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    pub allowed_routes: AllowedRoutes,
}

/// `Listener.tls`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate`.
    pub mode: String,
    /// The server credential.
    pub certificate_refs: Vec<ObjectReference>,
}

/// A reference to a Secret or ConfigMap.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReference {
    /// `""` (core).
    pub group: String,
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// `Listener.allowedRoutes`.
#[derive(Debug, Clone, Serialize)]
pub struct AllowedRoutes {
    /// Namespaces routes may attach from.
    pub namespaces: RouteNamespaces,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteNamespaces {
    /// `Same`: only the Gateway's own namespace (another tenant cannot attach a route).
    pub from: String,
}

/// `Gateway.spec.tls`.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayTls {
    /// Validation of client certificates.
    pub frontend: FrontendTls,
}

/// `Gateway.spec.tls.frontend`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTls {
    /// For every port without its own entry (required by the CRD; peergate leaves it empty).
    pub default: FrontendTlsConfig,
    /// Per port.
    pub per_port: Vec<FrontendTlsPort>,
}

/// `frontend.default` / `perPort[].tls`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FrontendTlsConfig {
    /// The client-certificate validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<FrontendValidation>,
}

/// `frontend.perPort[]`.
#[derive(Debug, Clone, Serialize)]
pub struct FrontendTlsPort {
    /// The listener port.
    pub port: u16,
    /// Its validation.
    pub tls: FrontendTlsConfig,
}

/// `validation`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendValidation {
    /// The CAs a client certificate must chain to.
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly`: no certificate, no connection.
    pub mode: String,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The listener it attaches to.
    pub parent_refs: Vec<ParentReference>,
    /// Hosts.
    pub hostnames: Vec<String>,
    /// Rules.
    pub rules: Vec<HttpRouteRule>,
}

/// `parentRefs[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// `gateway.networking.k8s.io` for a ListenerSet (a Gateway's is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `ListenerSet` (`Gateway` is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Gateway or ListenerSet.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The listener's name.
    pub section_name: String,
}

/// `rules[]`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Filters (the redirect).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendReference>,
}

/// A `RequestRedirect` filter.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// `RequestRedirect`.
    #[serde(rename = "type")]
    pub filter_type: String,
    /// The redirect.
    pub request_redirect: RequestRedirect,
}

/// `requestRedirect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `https`.
    pub scheme: String,
    /// 301, as Istio's `httpsRedirect`.
    pub status_code: u16,
}

/// `backendRefs[]`: a Service.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReference {
    /// Service name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its port.
    pub port: u16,
}

/// `ReferenceGrant.spec` (`gateway.networking.k8s.io/v1beta1`).
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    pub from: Vec<ReferenceGrantFrom>,
    /// To what.
    pub to: Vec<ReferenceGrantTo>,
}

/// `from[]`.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceGrantFrom {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `HTTPRoute`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
}

/// `to[]`.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceGrantTo {
    /// `""` (core).
    pub group: String,
    /// `Service`.
    pub kind: String,
    /// The one Service.
    pub name: String,
}

/// `ListenerSet.spec` (`gateway.networking.k8s.io/v1`, Gateway API v1.5 and later).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway whose Pods serve the listeners.
    pub parent_ref: ParentGatewayReference,
    /// The listeners.
    pub listeners: Vec<Listener>,
}

/// `ListenerSet.spec.parentRef`.
#[derive(Debug, Clone, Serialize)]
pub struct ParentGatewayReference {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// What the owner of a shared Gateway merges into its spec for a ListenerSet with client
/// validation: which namespaces' ListenerSets it accepts, and the port's validation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayFragmentSpec {
    /// `allowedListeners`.
    pub allowed_listeners: AllowedListeners,
    /// `tls.frontend.perPort` (with the required, empty `default`).
    pub tls: GatewayTls,
}

/// `Gateway.spec.allowedListeners`.
#[derive(Debug, Clone, Serialize)]
pub struct AllowedListeners {
    /// The namespaces.
    pub namespaces: ListenerNamespaces,
}

/// `allowedListeners.namespaces`: `Selector` with the namespace's name label.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerNamespaces {
    /// `Selector`.
    pub from: String,
    /// Which namespaces.
    pub selector: LabelSelector,
}

/// A label selector.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels.
    pub match_labels: std::collections::BTreeMap<String, String>,
}
