//! Cluster B's gateway declared with the Kubernetes Gateway API: a `Gateway` of class `istio`
//! (Istio deploys `<name>-istio` for it), its routes, the ReferenceGrant the cross-namespace
//! backend needs, and the ConfigMaps it refers to. Built here, written by `manifests`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::gateway_api::{
    AllowedListeners, AllowedRoutes, BackendReference, FrontendTls, FrontendTlsConfig,
    FrontendTlsPort, FrontendValidation, GatewayFragmentSpec, GatewaySpec, GatewayTls,
    HttpRouteFilter, HttpRouteRule, HttpRouteSpec, Infrastructure, LabelSelector, Listener,
    ListenerNamespaces, ListenerSetSpec, ListenerTls, LocalParametersReference, ObjectReference,
    ParentGatewayReference, ParentReference, ReferenceGrantFrom, ReferenceGrantSpec,
    ReferenceGrantTo, RequestRedirect, RouteNamespaces,
};
use crate::istio::{Metadata, Object, PolicyTargetReference};
use crate::mesh::OWN_GATEWAY_HTTPS_PORT;

/// The API group of the Gateway API kinds.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// Istio's built-in GatewayClass: its controller deploys and programs the gateway.
pub const ISTIO_GATEWAY_CLASS: &str = "istio";
/// The HTTPS listener's name (routes attach to it by `sectionName`; status names it).
pub const HTTPS_LISTENER: &str = "https";
/// The plain-HTTP listener, whose only route redirects to HTTPS.
pub const HTTP_LISTENER: &str = "http";

/// What the generated gateway is: its name and namespace, and what its Pods carry.
pub struct KubeGateway<'a> {
    /// The Gateway's name (Istio deploys `<name>-istio`).
    pub name: &'a str,
    /// Its namespace: the credential, the CA ConfigMap, the routes and the plugin are there.
    pub namespace: &'a str,
    /// The domain the partner calls.
    pub domain: &'a str,
    /// The server credential Secret (`tls.crt`, `tls.key`).
    pub secret_name: &'a str,
    /// Replicas of the Deployment Istio makes.
    pub replicas: u32,
    /// `istio.io/rev` of the control plane that should own it, on a revision-based install.
    pub revision: Option<&'a str>,
    /// Annotations of the Gateway itself (Istio's injection template reads some from there).
    pub annotations: BTreeMap<String, String>,
    /// Annotations Istio puts on the Pods it deploys (`spec.infrastructure.annotations`).
    pub pod_annotations: BTreeMap<String, String>,
}

/// The backend the HTTPS route leads to.
pub struct Backend<'a> {
    /// Service name.
    pub service: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its port.
    pub port: u16,
}

fn metadata(name: &str, namespace: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

fn core_ref(kind: &str, name: &str) -> ObjectReference {
    ObjectReference {
        group: String::new(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// The ConfigMap of the roots a client certificate must chain to (`ca.crt`) and the CRLs
/// in force (`ca.crl`): the Gateway's `caCertificateRefs`. A ConfigMap, not a Secret: Istio
/// 1.28 and 1.30 report a `caCertificateRefs` Secret resolved but serve it to no gateway
/// over SDS (tests/istio/gatewaystatus_test.go).
pub fn ca_bundle_name(secret_name: &str) -> String {
    format!("{secret_name}-ca")
}

/// The ConfigMap holding [`ca_bundle_name`]'s data, in `namespace` beside the credential.
pub fn ca_bundle(namespace: &str, secret_name: &str, roots: &str, crls: &str) -> ConfigMap {
    let mut data = BTreeMap::from([("ca.crt".to_owned(), roots.to_owned())]);
    if !crls.is_empty() {
        data.insert("ca.crl".to_owned(), crls.to_owned());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ca_bundle_name(secret_name)),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// The ConfigMap of overlays Istio applies to what it deploys (`parametersRef`): replicas.
pub fn parameters_name(gateway_name: &str) -> String {
    format!("{gateway_name}-parameters")
}

/// The ConfigMap named by [`parameters_name`].
pub fn parameters(gateway: &KubeGateway<'_>) -> ConfigMap {
    let overlay = format!("spec:\n  replicas: {}\n", gateway.replicas);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(parameters_name(gateway.name)),
            namespace: Some(gateway.namespace.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("deployment".to_owned(), overlay)])),
        ..Default::default()
    }
}

/// The Gateway: HTTPS on 443 for the domain with the credential, HTTP on 80 (redirected),
/// and client-certificate validation on 443 only, against the CA ConfigMap.
pub fn gateway(gateway: &KubeGateway<'_>) -> Object<GatewaySpec> {
    let mut meta = metadata(gateway.name, gateway.namespace);
    meta.annotations.clone_from(&gateway.annotations);
    if let Some(revision) = gateway.revision {
        meta.labels
            .insert("istio.io/rev".to_owned(), revision.to_owned());
    }
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "Gateway",
        metadata: meta,
        spec: GatewaySpec {
            gateway_class_name: ISTIO_GATEWAY_CLASS.into(),
            infrastructure: Infrastructure {
                annotations: gateway.pod_annotations.clone(),
                parameters_ref: Some(LocalParametersReference {
                    group: String::new(),
                    kind: "ConfigMap".into(),
                    name: parameters_name(gateway.name),
                }),
            },
            listeners: vec![
                Listener {
                    name: HTTP_LISTENER.into(),
                    hostname: gateway.domain.to_owned(),
                    port: 80,
                    protocol: "HTTP".into(),
                    tls: None,
                    allowed_routes: same_namespace_routes(),
                },
                Listener {
                    name: HTTPS_LISTENER.into(),
                    hostname: gateway.domain.to_owned(),
                    port: OWN_GATEWAY_HTTPS_PORT,
                    protocol: "HTTPS".into(),
                    tls: Some(ListenerTls {
                        mode: "Terminate".into(),
                        certificate_refs: vec![core_ref("Secret", gateway.secret_name)],
                    }),
                    allowed_routes: same_namespace_routes(),
                },
            ],
            tls: port_validation(OWN_GATEWAY_HTTPS_PORT, gateway.secret_name),
        },
    }
}

/// Client-certificate validation of one port against the CA ConfigMap of the credential (no
/// certificate, no connection); nothing for the other ports.
fn port_validation(port: u16, secret_name: &str) -> GatewayTls {
    GatewayTls {
        frontend: FrontendTls {
            default: FrontendTlsConfig::default(),
            per_port: vec![FrontendTlsPort {
                port,
                tls: FrontendTlsConfig {
                    validation: Some(FrontendValidation {
                        ca_certificate_refs: vec![core_ref(
                            "ConfigMap",
                            &ca_bundle_name(secret_name),
                        )],
                        mode: "AllowValidOnly".into(),
                    }),
                },
            }],
        },
    }
}

/// Only routes of the listener's own namespace attach: no other tenant can route the
/// partner's requests to a backend of theirs.
fn same_namespace_routes() -> AllowedRoutes {
    AllowedRoutes {
        namespaces: RouteNamespaces {
            from: "Same".into(),
        },
    }
}

/// A rule sending everything to the backend.
fn backend_rule(backend: &Backend<'_>) -> HttpRouteRule {
    HttpRouteRule {
        filters: Vec::new(),
        backend_refs: vec![BackendReference {
            name: backend.service.to_owned(),
            namespace: backend.namespace.to_owned(),
            port: backend.port,
        }],
    }
}

fn parent(gateway: &KubeGateway<'_>, listener: &str) -> ParentReference {
    ParentReference {
        group: None,
        kind: None,
        name: gateway.name.to_owned(),
        namespace: gateway.namespace.to_owned(),
        section_name: listener.to_owned(),
    }
}

/// The route of the HTTPS listener to the backend (in the gateway's namespace: a route of
/// the backend's namespace could not attach, see `allowedRoutes`).
pub fn https_route(gateway: &KubeGateway<'_>, backend: &Backend<'_>) -> Object<HttpRouteSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "HTTPRoute",
        metadata: metadata(backend.service, gateway.namespace),
        spec: HttpRouteSpec {
            parent_refs: vec![parent(gateway, HTTPS_LISTENER)],
            hostnames: vec![gateway.domain.to_owned()],
            rules: vec![backend_rule(backend)],
        },
    }
}

/// The route of the HTTP listener: a 301 to HTTPS, as the classic `httpsRedirect`.
pub fn redirect_route(gateway: &KubeGateway<'_>, backend: &Backend<'_>) -> Object<HttpRouteSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "HTTPRoute",
        metadata: metadata(&format!("{}-redirect", backend.service), gateway.namespace),
        spec: HttpRouteSpec {
            parent_refs: vec![parent(gateway, HTTP_LISTENER)],
            hostnames: vec![gateway.domain.to_owned()],
            rules: vec![HttpRouteRule {
                filters: vec![HttpRouteFilter {
                    filter_type: "RequestRedirect".into(),
                    request_redirect: RequestRedirect {
                        scheme: "https".into(),
                        status_code: 301,
                    },
                }],
                backend_refs: Vec::new(),
            }],
        },
    }
}

/// The backend's namespace lets the gateway namespace's HTTPRoutes refer to that one
/// Service.
pub fn reference_grant(
    gateway: &KubeGateway<'_>,
    backend: &Backend<'_>,
) -> Object<ReferenceGrantSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1beta1",
        kind: "ReferenceGrant",
        metadata: metadata(
            &format!("{}-from-{}", backend.service, gateway.namespace),
            backend.namespace,
        ),
        spec: ReferenceGrantSpec {
            from: vec![ReferenceGrantFrom {
                group: GATEWAY_API_GROUP.into(),
                kind: "HTTPRoute".into(),
                namespace: gateway.namespace.to_owned(),
            }],
            to: vec![ReferenceGrantTo {
                group: String::new(),
                kind: "Service".into(),
                name: backend.service.to_owned(),
            }],
        },
    }
}

/// What the plugin's `targetRefs` name: the Gateway (Istio attaches the plugin to the Pods it
/// deploys for it).
pub fn target_ref(gateway_name: &str) -> PolicyTargetReference {
    PolicyTargetReference {
        group: GATEWAY_API_GROUP.into(),
        kind: "Gateway".into(),
        name: gateway_name.to_owned(),
    }
}

/// peergate's listener on a Gateway API gateway of another owner: a ListenerSet in the
/// backend's namespace, on a port of its own.
pub struct SharedListener<'a> {
    /// The owner's Gateway.
    pub gateway: &'a str,
    /// Its namespace.
    pub gateway_namespace: &'a str,
    /// The ListenerSet's namespace (the backend's): its credential and CA ConfigMap are there,
    /// where Istio resolves the ListenerSet's references (pilot/pkg/config/kube/gateway
    /// conversion.go, buildTLS and buildCaCertificateReference take the ListenerSet as the
    /// object whose namespace a reference defaults to).
    pub namespace: &'a str,
    /// The ListenerSet's name.
    pub name: &'a str,
    /// The domain.
    pub domain: &'a str,
    /// The server credential Secret.
    pub secret_name: &'a str,
    /// The HTTPS port.
    pub port: u16,
}

/// The ListenerSet: HTTPS on its port for the domain, with the credential; routes of its own
/// namespace only.
pub fn listener_set(shared: &SharedListener<'_>) -> Object<ListenerSetSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "ListenerSet",
        metadata: metadata(shared.name, shared.namespace),
        spec: ListenerSetSpec {
            parent_ref: ParentGatewayReference {
                group: GATEWAY_API_GROUP.into(),
                kind: "Gateway".into(),
                name: shared.gateway.to_owned(),
                namespace: shared.gateway_namespace.to_owned(),
            },
            listeners: vec![Listener {
                name: HTTPS_LISTENER.into(),
                hostname: shared.domain.to_owned(),
                port: shared.port,
                protocol: "HTTPS".into(),
                tls: Some(ListenerTls {
                    mode: "Terminate".into(),
                    certificate_refs: vec![core_ref("Secret", shared.secret_name)],
                }),
                allowed_routes: same_namespace_routes(),
            }],
        },
    }
}

/// The route of the ListenerSet's listener to the backend (same namespace: no grant).
pub fn listener_set_route(
    shared: &SharedListener<'_>,
    backend: &Backend<'_>,
) -> Object<HttpRouteSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "HTTPRoute",
        metadata: metadata(backend.service, shared.namespace),
        spec: HttpRouteSpec {
            parent_refs: vec![ParentReference {
                group: Some(GATEWAY_API_GROUP.into()),
                kind: Some("ListenerSet".into()),
                name: shared.name.to_owned(),
                namespace: shared.namespace.to_owned(),
                section_name: HTTPS_LISTENER.into(),
            }],
            hostnames: vec![shared.domain.to_owned()],
            rules: vec![backend_rule(backend)],
        },
    }
}

/// What the owner merges into its Gateway: ListenerSets of the backend's namespace accepted,
/// and the ListenerSet's port validated against the CA ConfigMap (a name without namespace:
/// Istio looks it up in the ListenerSet's namespace). Not applicable as is: a Gateway needs
/// its listeners, which this leaves out.
pub fn owner_fragment(shared: &SharedListener<'_>) -> Object<GatewayFragmentSpec> {
    Object {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "Gateway",
        metadata: metadata(shared.gateway, shared.gateway_namespace),
        spec: GatewayFragmentSpec {
            allowed_listeners: AllowedListeners {
                namespaces: ListenerNamespaces {
                    from: "Selector".into(),
                    selector: LabelSelector {
                        match_labels: BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            shared.namespace.to_owned(),
                        )]),
                    },
                },
            },
            tls: port_validation(shared.port, shared.secret_name),
        },
    }
}
