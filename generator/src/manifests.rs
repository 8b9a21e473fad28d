//! Every Kubernetes and Istio object of both clusters, as YAML files.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, Namespace, PodSecurityContext, PodSpec,
    PodTemplateSpec, Secret, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    Sysctl,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use serde::Serialize;

use crate::cert_manager::{certificate_spec, CaIssuer, CaIssuerSpec};
use crate::certs::CertAndKey;
use crate::certs::Role as LeafRole;
use crate::istio::{
    Attachment, ClientTls, Destination, DestinationRuleSpec, GatewayPort, GatewayServer,
    GatewaySpec, HttpMatch, HttpRoute, Kustomization, Metadata, Object, PortSelector,
    PortTrafficPolicy, RouteDestination, ServerTls, ServiceEntrySpec, Subset, TrafficExtensionSpec,
    TrafficExtensionWasm, TrafficPolicy, TrafficSelector, VirtualServiceSpec, WasmPluginSpec,
    WorkloadSelector,
};
use crate::kube_gateway::{self, Backend as KubeBackend, KubeGateway, SharedListener};
use crate::mesh::{
    Certificates, ClientCertMode, Gateway, GatewayApi, Mesh, MonitoringSection, PluginApi,
    DEFAULT_ISSUER, OWN_GATEWAY_HTTPS_PORT,
};
use crate::monitoring;

/// Where the client Secret is mounted in the sidecar (mounted mode).
pub const CLIENT_CERT_DIR: &str = "/etc/peergate/client";
/// The volume holding the client Secret in the sidecar (mounted mode).
pub const CLIENT_CERT_VOLUME: &str = "peergate-client-cert";
/// The DestinationRule subset that originates mutual TLS.
pub const TLS_SUBSET: &str = "tls-origination";
/// The plugin object's name.
pub const PLUGIN_NAME: &str = "peergate";
/// The patch for an existing gateway's Deployment, not part of any kustomization.
pub const XFCC_PATCH_FILE: &str = "ingressgateway-xfcc-patch.yaml";
/// What the owner of a shared Gateway API gateway merges into its Gateway (not part of any
/// kustomization, and not applicable as is).
pub const OWNER_GATEWAY_FILE: &str = "owner-gateway-fragment.yaml";
/// `[monitoring]`'s PrometheusRule.
pub const PROMETHEUS_RULE_FILE: &str = "prometheusrule.yaml";
/// `[monitoring]`'s dashboard ConfigMap.
pub const DASHBOARD_FILE: &str = "configmap-peergate-dashboard.yaml";
/// Files a run may or may not write, by cluster: a run removes those it did not write, so
/// switching a mode leaves no object of the other one to be applied (nor, switching to
/// cert-manager, a Secret with a leaf key).
pub fn optional_files(mesh: &Mesh) -> Vec<(Cluster, String)> {
    let client = mesh.client_secret_name();
    let server = mesh.server_secret_name();
    let mut files: Vec<(Cluster, String)> = [
        (Cluster::A, "role.yaml"),
        (Cluster::A, "rolebinding.yaml"),
        (Cluster::B, "wasmplugin.yaml"),
        (Cluster::B, "trafficextension.yaml"),
        (Cluster::B, "gateway-namespace.yaml"),
        (Cluster::B, "gateway-serviceaccount.yaml"),
        (Cluster::B, "gateway-role.yaml"),
        (Cluster::B, "gateway-rolebinding.yaml"),
        (Cluster::B, "gateway-deployment.yaml"),
        (Cluster::B, "gateway-service.yaml"),
        (Cluster::B, XFCC_PATCH_FILE),
        (Cluster::B, "gateway.yaml"),
        (Cluster::B, "virtualservice.yaml"),
        (Cluster::B, "gateway-parameters.yaml"),
        (Cluster::B, "httproute.yaml"),
        (Cluster::B, "httproute-redirect.yaml"),
        (Cluster::B, "referencegrant.yaml"),
        (Cluster::B, "listenerset.yaml"),
        (Cluster::B, OWNER_GATEWAY_FILE),
        (Cluster::B, PROMETHEUS_RULE_FILE),
        (Cluster::B, DASHBOARD_FILE),
    ]
    .iter()
    .map(|(c, f)| (*c, (*f).to_owned()))
    .collect();
    for (cluster, secret) in [(Cluster::A, &client), (Cluster::B, &server)] {
        files.push((cluster, format!("secret-{secret}.yaml")));
        files.push((cluster, format!("secret-{secret}-cacert.yaml")));
        files.push((cluster, format!("secret-{DEFAULT_ISSUER}.yaml")));
        files.push((cluster, "certificate.yaml".into()));
        files.push((cluster, "issuer.yaml".into()));
    }
    files.push((
        Cluster::B,
        format!("configmap-{}.yaml", kube_gateway::ca_bundle_name(&server)),
    ));
    files
}

/// Which cluster a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// `cluster-a/`.
    A,
    /// `cluster-b/`.
    B,
}

impl Cluster {
    /// The output folder.
    pub fn dir(self) -> &'static str {
        match self {
            Cluster::A => "cluster-a",
            Cluster::B => "cluster-b",
        }
    }
}

/// One emitted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its cluster.
    pub cluster: Cluster,
    /// File name in the cluster folder.
    pub file: String,
    /// Contents.
    pub yaml: String,
    /// Holds a private key: written 0600, never committed.
    pub secret: bool,
}

/// The certificates the objects embed.
pub struct Pki<'a> {
    /// The roots both sides trust: the agreed root, and during a rotation the next one too
    /// (their keys may be kept elsewhere).
    pub roots: &'a [&'a str],
    /// The CAs that sign leaves, one per root: the roots themselves, or their issuing CAs.
    pub issuers: &'a [&'a str],
    /// Whether `issuers` are issuing CAs under `roots` (then the roots are trust anchors).
    pub anchored: bool,
    /// The issuing CA that signed the leaves below, when there is one (sent with them).
    pub intermediate: Option<&'a str>,
    /// Cluster A's client (absent with cert-manager: it issues the leaves).
    pub client: Option<&'a CertAndKey>,
    /// Cluster B's server (absent with cert-manager).
    pub server: Option<&'a CertAndKey>,
    /// The CRLs in force (PEM), every CA's once there are any: Envoy checks the whole chain
    /// against them, and a CA without its CRL fails every handshake.
    pub crls: &'a [String],
    /// What cert-manager's default CA Issuer signs with, when gen emits it.
    pub ca_issuer: Option<&'a CaIssuerKey>,
}

/// The certificate (with the root above it, for an issuing CA) and key of the CA that
/// cert-manager's default Issuer signs with.
#[derive(Debug, Clone)]
pub struct CaIssuerKey {
    /// PEM: the CA, then the root when the CA is an issuing CA.
    pub cert_chain: String,
    /// PEM.
    pub key: String,
}

impl Pki<'_> {
    /// A leaf with the CA that issued it, as a TLS peer sends it (the root stays out).
    pub fn chain(&self, leaf: &CertAndKey) -> String {
        match self.intermediate {
            Some(intermediate) => format!("{}{intermediate}", leaf.cert),
            None => leaf.cert.clone(),
        }
    }

    /// The CRLs as one PEM bundle (`ca.crl`).
    pub fn crl_bundle(&self) -> String {
        self.crls.concat()
    }

    /// The roots as one PEM bundle (`ca.crt`).
    pub fn root_bundle(&self) -> String {
        self.roots.concat()
    }
}

/// Failure to serialize an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot serialize {file}: {message}")]
pub struct ManifestError {
    /// The file.
    pub file: String,
    /// The serializer's message.
    pub message: String,
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn istio_meta(name: &str, namespace: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

fn secret(name: &str, namespace: &str, type_: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(name, Some(namespace)),
        type_: Some(type_.to_owned()),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The label that selects a revision's injector and control plane.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// A namespace whose Pods get sidecars: `istio-injection: enabled`, or on a revision-based
/// install (where that label injects nothing) `istio.io/rev: REVISION`.
fn namespace(mesh: &Mesh, name: &str) -> Namespace {
    let injection = match &mesh.istio_revision {
        Some(revision) => labels(&[(REVISION_LABEL, revision)]),
        None => labels(&[("istio-injection", "enabled")]),
    };
    Namespace {
        metadata: ObjectMeta {
            labels: Some(injection),
            ..meta(name, None)
        },
        ..Default::default()
    }
}

fn deployment(
    name: &str,
    ns: &str,
    pod_labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
    service_account: Option<&str>,
    container: Container,
) -> Deployment {
    Deployment {
        metadata: meta(name, Some(ns)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(pod_labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: service_account.map(str::to_owned),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A DNS name turned into an object name (`helloworld.zufar.io` → `helloworld-zufar-io`).
pub fn object_name(domain: &str) -> String {
    domain.to_ascii_lowercase().replace('.', "-")
}

struct Emitter {
    out: Vec<Manifest>,
    error: Option<ManifestError>,
    /// Files for the owner of a shared gateway to apply, left out of the kustomization.
    owner_files: Vec<String>,
}

impl Emitter {
    fn emit<T: Serialize>(&mut self, cluster: Cluster, file: &str, object: &T, secret: bool) {
        match yaml_serde::to_string(object) {
            Ok(yaml) => self.out.push(Manifest {
                cluster,
                file: file.to_owned(),
                yaml,
                secret,
            }),
            Err(e) => {
                self.error.get_or_insert(ManifestError {
                    file: file.to_owned(),
                    message: e.to_string(),
                });
            }
        }
    }

    /// Leaves a cluster B file out of the kustomization: its owner applies it.
    fn for_the_owner(&mut self, file: &str) {
        self.owner_files.push(file.to_owned());
    }

    fn kustomization(&mut self, cluster: Cluster) {
        let resources = self
            .out
            .iter()
            .filter(|m| {
                m.cluster == cluster
                    && m.file != XFCC_PATCH_FILE
                    && !self.owner_files.contains(&m.file)
            })
            .map(|m| m.file.clone())
            .collect();
        let k = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources,
        };
        self.emit(cluster, "kustomization.yaml", &k, false);
    }
}

/// The pluginConfig the WasmPlugin carries. On an existing gateway the plugin runs on every
/// host of the HTTPS listener (Istio cannot scope it to a Gateway server), so it protects
/// only the domain's server name and lets other hosts pass untouched.
pub fn plugin_config(
    mesh: &Mesh,
    gateway: &Gateway,
    pki: &Pki<'_>,
) -> peergate_filter::PluginConfig {
    peergate_filter::PluginConfig {
        mode: mesh.plugin.mode,
        layer: mesh.layer(gateway).layer,
        // Under an issuing CA: it is the trusted issuer, scoped to the client's names, and the
        // agreed root is the anchor it must chain to.
        // During a rotation both generations, each with the same scope.
        trusted_issuers: pki
            .issuers
            .iter()
            .map(|issuer| {
                if pki.anchored {
                    peergate_filter::TrustedIssuerConfig::Scoped(peergate_filter::ScopedIssuer {
                        certificate: (*issuer).to_owned(),
                        scope: Some(mesh.cluster_a.sans.clone()),
                    })
                } else {
                    (*issuer).to_owned().into()
                }
            })
            .collect(),
        trust_anchors: if pki.anchored {
            pki.roots.iter().map(|r| (*r).to_owned()).collect()
        } else {
            Vec::new()
        },
        crls: pki.crls.to_vec(),
        expiry_warning_days: mesh.plugin.expiry_warning_days,
        allowed_sans: Some(mesh.allowed_sans()),
        routes: mesh.cluster_b.routes.clone(),
        routes_only: mesh.cluster_b.routes_only,
        protected_server_names: gateway
            .is_shared()
            .then(|| vec![mesh.cluster_b.domain.clone()]),
        ..Default::default()
    }
}

/// Every file of both clusters, in a stable order.
pub fn manifests(
    mesh: &Mesh,
    gateway: &Gateway,
    pki: &Pki<'_>,
) -> Result<Vec<Manifest>, ManifestError> {
    let mut e = Emitter {
        out: Vec::new(),
        error: None,
        owner_files: Vec::new(),
    };
    cluster_a(&mut e, mesh, gateway.public_https_port(), pki);
    e.kustomization(Cluster::A);
    cluster_b(&mut e, mesh, gateway, pki);
    e.kustomization(Cluster::B);
    match e.error {
        Some(error) => Err(error),
        None => Ok(e.out),
    }
}

fn cluster_a(e: &mut Emitter, mesh: &Mesh, https_port: u16, pki: &Pki<'_>) {
    let a = &mesh.cluster_a;
    let ns = a.namespace.as_str();
    let secret_name = mesh.client_secret_name();
    e.emit(Cluster::A, "namespace.yaml", &namespace(mesh, ns), false);
    let sa = ServiceAccount {
        metadata: meta(&a.service_account, Some(ns)),
        ..Default::default()
    };
    e.emit(Cluster::A, "serviceaccount.yaml", &sa, false);
    client_credential(e, mesh, pki, &secret_name);
    client_deployment(e, mesh, &secret_name);
    egress_routing(e, mesh, https_port);
    client_destination_rule(e, mesh, &secret_name, https_port);
    if a.client_cert_mode == ClientCertMode::CredentialName {
        credential_reader(e, mesh);
    }
}

/// The client's certificate: a Secret of gen's leaf, or cert-manager's objects that make one.
fn client_credential(e: &mut Emitter, mesh: &Mesh, pki: &Pki<'_>, secret_name: &str) {
    let ns = mesh.cluster_a.namespace.as_str();
    let secret_name = secret_name.to_owned();
    match pki.client {
        Some(client) => {
            let client_secret = secret(
                &secret_name,
                ns,
                "kubernetes.io/tls",
                &[
                    ("tls.crt", &pki.chain(client)),
                    ("tls.key", &client.key),
                    ("ca.crt", &pki.root_bundle()),
                ],
            );
            e.emit(
                Cluster::A,
                &format!("secret-{secret_name}.yaml"),
                &client_secret,
                true,
            );
        }
        None => cert_manager(e, Cluster::A, mesh, pki, LeafRole::Client, ns, &secret_name),
    }
}

/// The client workload, with the certificate mounted into its sidecar in the Mounted mode.
fn client_deployment(e: &mut Emitter, mesh: &Mesh, secret_name: &str) {
    let a = &mesh.cluster_a;
    let ns = a.namespace.as_str();
    let app = labels(&[("app", &a.deployment)]);
    let annotations = match a.client_cert_mode {
        ClientCertMode::Mounted => {
            // The map form Istio's injector reads: the key names the volume and its mount
            // (its template does `range $name, $value := fromJSON ...`). With cert-manager,
            // ca.crt comes from the trust Secret, not from cert-manager's Secret (whose ca.crt
            // is its issuer's CA, not the roots peergate trusts).
            let volume = match mesh.certificates {
                Certificates::Static => serde_json::json!({ (CLIENT_CERT_VOLUME): {
                    "secret": { "secretName": secret_name }
                }}),
                Certificates::CertManager => serde_json::json!({ (CLIENT_CERT_VOLUME): {
                    "projected": { "sources": [
                        { "secret": { "name": secret_name, "items": [
                            { "key": "tls.crt", "path": "tls.crt" },
                            { "key": "tls.key", "path": "tls.key" },
                        ]}},
                        { "secret": { "name": format!("{secret_name}-cacert"), "items": [
                            { "key": "ca.crt", "path": "ca.crt" },
                        ]}},
                    ]}
                }}),
            };
            let mount = serde_json::json!({ (CLIENT_CERT_VOLUME): {
                "mountPath": CLIENT_CERT_DIR, "readOnly": true
            }});
            Some(labels(&[
                ("sidecar.istio.io/userVolume", &volume.to_string()),
                ("sidecar.istio.io/userVolumeMount", &mount.to_string()),
            ]))
        }
        ClientCertMode::CredentialName => None,
    };
    let container = Container {
        name: a.deployment.clone(),
        image: Some(a.image.clone()),
        command: Some(vec!["/bin/sleep".into(), "infinity".into()]),
        ..Default::default()
    };
    let dep = deployment(
        &a.deployment,
        ns,
        app.clone(),
        annotations,
        Some(&a.service_account),
        container,
    );
    e.emit(Cluster::A, "deployment.yaml", &dep, false);
}

/// Cluster B's host as a mesh-external service, and the route that sends its plain HTTP to the
/// mutual-TLS subset.
fn egress_routing(e: &mut Emitter, mesh: &Mesh, https_port: u16) {
    let ns = mesh.cluster_a.namespace.as_str();
    let domain = &mesh.cluster_b.domain;
    let name = object_name(domain);
    let se = Object {
        api_version: "networking.istio.io/v1",
        kind: "ServiceEntry",
        metadata: istio_meta(&name, ns),
        spec: ServiceEntrySpec {
            hosts: vec![domain.clone()],
            export_to: own_namespace_only(),
            location: "MESH_EXTERNAL".into(),
            resolution: "DNS".into(),
            ports: vec![
                crate::istio::ServicePort {
                    number: 80,
                    name: "http".into(),
                    protocol: "HTTP".into(),
                },
                crate::istio::ServicePort {
                    number: https_port,
                    name: "https".into(),
                    protocol: "HTTPS".into(),
                },
            ],
        },
    };
    e.emit(Cluster::A, "serviceentry.yaml", &se, false);

    let vs = Object {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: istio_meta(&name, ns),
        spec: VirtualServiceSpec {
            hosts: vec![domain.clone()],
            export_to: own_namespace_only(),
            gateways: vec![],
            http: vec![HttpRoute {
                matches: vec![HttpMatch { port: 80 }],
                route: vec![RouteDestination {
                    destination: Destination {
                        host: domain.clone(),
                        subset: Some(TLS_SUBSET.into()),
                        port: PortSelector { number: https_port },
                    },
                }],
            }],
        },
    };
    e.emit(Cluster::A, "virtualservice.yaml", &vs, false);
}

/// The DestinationRule that originates mutual TLS with the client's certificate.
fn client_destination_rule(e: &mut Emitter, mesh: &Mesh, secret_name: &str, https_port: u16) {
    let a = &mesh.cluster_a;
    let ns = a.namespace.as_str();
    let domain = &mesh.cluster_b.domain;
    let name = object_name(domain);
    let app = labels(&[("app", &a.deployment)]);
    let secret_name = secret_name.to_owned();
    let file = |f: &str| Some(format!("{CLIENT_CERT_DIR}/{f}"));
    let tls = match a.client_cert_mode {
        ClientCertMode::Mounted => ClientTls {
            mode: "MUTUAL".into(),
            client_certificate: file("tls.crt"),
            private_key: file("tls.key"),
            ca_certificates: file("ca.crt"),
            credential_name: None,
            sni: domain.clone(),
            subject_alt_names: vec![domain.clone()],
        },
        ClientCertMode::CredentialName => ClientTls {
            mode: "MUTUAL".into(),
            client_certificate: None,
            private_key: None,
            ca_certificates: None,
            credential_name: Some(secret_name.clone()),
            sni: domain.clone(),
            subject_alt_names: vec![domain.clone()],
        },
    };
    let dr = Object {
        api_version: "networking.istio.io/v1",
        kind: "DestinationRule",
        metadata: istio_meta(&name, ns),
        spec: DestinationRuleSpec {
            host: domain.clone(),
            export_to: own_namespace_only(),
            workload_selector: match a.client_cert_mode {
                ClientCertMode::Mounted => None,
                ClientCertMode::CredentialName => Some(WorkloadSelector {
                    match_labels: app.clone(),
                }),
            },
            subsets: vec![Subset {
                name: TLS_SUBSET.into(),
                traffic_policy: TrafficPolicy {
                    port_level_settings: vec![PortTrafficPolicy {
                        port: PortSelector { number: https_port },
                        tls,
                    }],
                },
            }],
        },
    };
    e.emit(Cluster::A, "destinationrule.yaml", &dr, false);
}

/// In the credentialName mode, the client's sidecar reads its Secret: a Role and its binding.
fn credential_reader(e: &mut Emitter, mesh: &Mesh) {
    let a = &mesh.cluster_a;
    let ns = a.namespace.as_str();
    let role_name = format!("{}-credential-reader", a.service_account);
    let role = Role {
        metadata: meta(&role_name, Some(ns)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    e.emit(Cluster::A, "role.yaml", &role, false);
    e.emit(
        Cluster::A,
        "rolebinding.yaml",
        &role_binding(&role_name, ns, &a.service_account),
        false,
    );
}

/// cert-manager's objects for one leaf: its `Certificate` (cert-manager writes `secret_name`),
/// the trust Secret `SECRET-cacert` (the roots, and the CRLs), and unless `issuerRef` names
/// an issuer of the user's, the CA `Issuer` with its key.
///
/// The trust Secret is what Istio uses as the CA: for a `credentialName` it looks up
/// `NAME-cacert` before `ca.crt` of `NAME` itself (`GetCaCert`,
/// pilot/pkg/credentials/kube/secrets.go), and cert-manager's `ca.crt` is its issuer's CA
/// (the issuing CA under one), not the agreed roots; during a rotation both roots must be
/// there, which no issuer writes (istio/istio #29856).
fn cert_manager(
    e: &mut Emitter,
    cluster: Cluster,
    mesh: &Mesh,
    pki: &Pki<'_>,
    role: LeafRole,
    ns: &str,
    secret_name: &str,
) {
    let (issuer, emit_issuer) = mesh.issuer_ref();
    let certificate = Object {
        api_version: "cert-manager.io/v1",
        kind: "Certificate",
        metadata: istio_meta(
            match role {
                LeafRole::Client => &mesh.cluster_a.client_name,
                LeafRole::Server => &mesh.cluster_b.server_name,
            },
            ns,
        ),
        spec: certificate_spec(mesh, role, secret_name, &issuer),
    };
    e.emit(cluster, "certificate.yaml", &certificate, false);
    let roots = pki.root_bundle();
    let crls = pki.crl_bundle();
    let mut data = vec![("ca.crt", roots.as_str())];
    if role == LeafRole::Server && !crls.is_empty() {
        data.push(("ca.crl", crls.as_str()));
    }
    let trust_name = format!("{secret_name}-cacert");
    e.emit(
        cluster,
        &format!("secret-{trust_name}.yaml"),
        &secret(&trust_name, ns, "Opaque", &data),
        false,
    );
    if let (true, Some(ca)) = (emit_issuer, pki.ca_issuer) {
        let ca_secret = secret(
            DEFAULT_ISSUER,
            ns,
            "kubernetes.io/tls",
            &[("tls.crt", &ca.cert_chain), ("tls.key", &ca.key)],
        );
        e.emit(
            cluster,
            &format!("secret-{DEFAULT_ISSUER}.yaml"),
            &ca_secret,
            true,
        );
        let issuer_object = Object {
            api_version: "cert-manager.io/v1",
            kind: "Issuer",
            metadata: istio_meta(DEFAULT_ISSUER, ns),
            spec: CaIssuerSpec {
                ca: CaIssuer {
                    secret_name: DEFAULT_ISSUER.into(),
                },
            },
        };
        e.emit(cluster, "issuer.yaml", &issuer_object, false);
    }
}

fn cluster_b(e: &mut Emitter, mesh: &Mesh, gateway: &Gateway, pki: &Pki<'_>) {
    server_credential(e, mesh, gateway, pki);
    match gateway {
        Gateway::Own {
            api: GatewayApi::Istio,
            name,
            namespace: gw_ns,
            labels: gw_labels,
            replicas,
        } => own_gateway(e, mesh, name, gw_ns, gw_labels, *replicas),
        Gateway::Own {
            api: GatewayApi::Kubernetes,
            namespace: gw_ns,
            ..
        } => gateway_namespace(e, gw_ns),
        Gateway::Existing { .. } | Gateway::ListenerSet { .. } => {}
    }
    e.emit(
        Cluster::B,
        "namespace.yaml",
        &namespace(mesh, &mesh.cluster_b.namespace),
        false,
    );
    backend(e, mesh);
    match gateway {
        Gateway::Own {
            api: GatewayApi::Kubernetes,
            name,
            namespace: gw_ns,
            replicas,
            ..
        } => kubernetes_gateway(e, mesh, name, gw_ns, *replicas, pki),
        Gateway::ListenerSet {
            gateway: gateway_name,
            namespace: gw_ns,
            port,
            ..
        } => shared_listener(e, mesh, gateway_name, gw_ns, *port, pki),
        _ => gateway_routing(e, mesh, gateway),
    }
    peergate_plugin(e, mesh, gateway, pki);
    if let Some(section) = &mesh.monitoring {
        monitoring_objects(e, section, gateway);
    }
    match gateway {
        Gateway::Existing { .. } => xfcc_patch(e),
        // The plugin goes into the owner's namespace: the owner applies it.
        Gateway::ListenerSet { .. } => e.for_the_owner(mesh.plugin.api.file_name()),
        Gateway::Own { .. } => {}
    }
}

/// `[monitoring]`: the PrometheusRule and the dashboard ConfigMap.
fn monitoring_objects(e: &mut Emitter, section: &MonitoringSection, gateway: &Gateway) {
    let ns = section.namespace.as_deref().unwrap_or(gateway.namespace());
    if section.alerts {
        let rule = monitoring::prometheus_rule(section, ns, gateway.is_shared());
        e.emit(Cluster::B, PROMETHEUS_RULE_FILE, &rule, false);
    }
    if section.dashboard {
        let map = monitoring::dashboard_config_map(section, ns);
        e.emit(Cluster::B, DASHBOARD_FILE, &map, false);
    }
}

/// The ConfigMap of the client CAs and CRLs the Gateway API validation refers to.
fn ca_bundle(e: &mut Emitter, ns: &str, secret_name: &str, pki: &Pki<'_>) {
    let ca = kube_gateway::ca_bundle(ns, secret_name, &pki.root_bundle(), &pki.crl_bundle());
    let file = format!(
        "configmap-{}.yaml",
        kube_gateway::ca_bundle_name(secret_name)
    );
    e.emit(Cluster::B, &file, &ca, false);
}

/// On a Gateway API gateway of another owner: the ListenerSet, its route and the CA
/// ConfigMap in the backend's namespace, and the fragment the owner merges into its Gateway.
fn shared_listener(
    e: &mut Emitter,
    mesh: &Mesh,
    gateway_name: &str,
    gateway_ns: &str,
    port: u16,
    pki: &Pki<'_>,
) {
    let b = &mesh.cluster_b;
    let secret_name = mesh.server_secret_name();
    let shared = SharedListener {
        gateway: gateway_name,
        gateway_namespace: gateway_ns,
        namespace: &b.namespace,
        name: &b.service,
        domain: &b.domain,
        secret_name: &secret_name,
        port,
    };
    let backend = KubeBackend {
        service: &b.service,
        namespace: &b.namespace,
        port: b.port,
    };
    ca_bundle(e, &b.namespace, &secret_name, pki);
    e.emit(
        Cluster::B,
        "listenerset.yaml",
        &kube_gateway::listener_set(&shared),
        false,
    );
    e.emit(
        Cluster::B,
        "httproute.yaml",
        &kube_gateway::listener_set_route(&shared, &backend),
        false,
    );
    e.emit(
        Cluster::B,
        OWNER_GATEWAY_FILE,
        &kube_gateway::owner_fragment(&shared),
        false,
    );
    e.for_the_owner(OWNER_GATEWAY_FILE);
}

/// Cluster B's gateway under the Gateway API (see `kube_gateway`): the Pods Istio deploys
/// carry what the classic gateway's pod template carries (the decision lines at `wasm:info`,
/// the XFCC setting).
fn kubernetes_gateway(
    e: &mut Emitter,
    mesh: &Mesh,
    name: &str,
    ns: &str,
    replicas: u32,
    pki: &Pki<'_>,
) {
    let b = &mesh.cluster_b;
    let secret_name = mesh.server_secret_name();
    let kube = KubeGateway {
        name,
        namespace: ns,
        domain: &b.domain,
        secret_name: &secret_name,
        replicas,
        revision: mesh.istio_revision.as_deref(),
        // Istio's kube-gateway template reads the log levels from the Gateway's own
        // annotations, and copies `infrastructure.annotations` onto the Pods.
        annotations: labels(&[(
            "sidecar.istio.io/componentLogLevel",
            GATEWAY_COMPONENT_LOG_LEVEL,
        )]),
        pod_annotations: labels(&[(PROXY_CONFIG_ANNOTATION, XFCC_PROXY_CONFIG)]),
    };
    let backend = KubeBackend {
        service: &b.service,
        namespace: &b.namespace,
        port: b.port,
    };
    ca_bundle(e, ns, &secret_name, pki);
    e.emit(
        Cluster::B,
        "gateway-parameters.yaml",
        &kube_gateway::parameters(&kube),
        false,
    );
    e.emit(
        Cluster::B,
        "gateway.yaml",
        &kube_gateway::gateway(&kube),
        false,
    );
    e.emit(
        Cluster::B,
        "httproute.yaml",
        &kube_gateway::https_route(&kube, &backend),
        false,
    );
    e.emit(
        Cluster::B,
        "httproute-redirect.yaml",
        &kube_gateway::redirect_route(&kube, &backend),
        false,
    );
    e.emit(
        Cluster::B,
        "referencegrant.yaml",
        &kube_gateway::reference_grant(&kube, &backend),
        false,
    );
}

/// The gateway's credential: a Secret of gen's server leaf (with the client CAs and CRLs), or
/// cert-manager's objects that make one; in the gateway's namespace, where Istio's SDS reads it.
fn server_credential(e: &mut Emitter, mesh: &Mesh, gateway: &Gateway, pki: &Pki<'_>) {
    let secret_name = mesh.server_secret_name();
    let gateway_ns = mesh.credential_namespace(gateway);
    // The kubernetes.io/tls layout: Istio reads a CRL as `ca.crl` only beside `tls.crt` and
    // `tls.key` (an Opaque `cert`/`key` secret's would be `crl`), and `ca.crt` is the client CA
    // (pilot/pkg/credentials/kube/secrets.go, ExtractCertInfo and ExtractRoot).
    match pki.server {
        Some(server) => {
            let server_chain = pki.chain(server);
            let crl_bundle = pki.crl_bundle();
            let root_bundle = pki.root_bundle();
            let mut data = vec![
                ("tls.crt", server_chain.as_str()),
                ("tls.key", server.key.as_str()),
            ];
            // Under the Gateway API the client CAs and CRLs are the CA ConfigMap's: a ca.crt
            // here would be a second, unused trust list.
            let classic = matches!(
                gateway,
                Gateway::Own {
                    api: GatewayApi::Istio,
                    ..
                } | Gateway::Existing { .. }
            );
            if classic {
                data.push(("ca.crt", root_bundle.as_str()));
            }
            if classic && !crl_bundle.is_empty() {
                data.push(("ca.crl", crl_bundle.as_str()));
            }
            let credential = secret(&secret_name, gateway_ns, "kubernetes.io/tls", &data);
            e.emit(
                Cluster::B,
                &format!("secret-{secret_name}.yaml"),
                &credential,
                true,
            );
        }
        None => cert_manager(
            e,
            Cluster::B,
            mesh,
            pki,
            LeafRole::Server,
            gateway_ns,
            &secret_name,
        ),
    }
}

/// The backend behind the gateway: helloworld's Service and Deployment.
fn backend(e: &mut Emitter, mesh: &Mesh) {
    let b = &mesh.cluster_b;
    let ns = b.namespace.as_str();
    let app = labels(&[("app", &b.service)]);
    let service = Service {
        metadata: ObjectMeta {
            labels: Some(app.clone()),
            ..meta(&b.service, Some(ns))
        },
        spec: Some(ServiceSpec {
            selector: Some(app.clone()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(b.port),
                target_port: Some(IntOrString::Int(i32::from(b.port))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    e.emit(Cluster::B, "service.yaml", &service, false);

    let mut pod_labels = app.clone();
    pod_labels.insert("version".into(), "v1".into());
    let container = Container {
        name: b.service.clone(),
        image: Some(b.image.clone()),
        ports: Some(vec![ContainerPort {
            container_port: i32::from(b.port),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let dep = deployment(&b.service, ns, pod_labels, None, None, container);
    e.emit(Cluster::B, "deployment.yaml", &dep, false);
}

/// The Gateway terminating mutual TLS for our host, and the route to the backend.
fn gateway_routing(e: &mut Emitter, mesh: &Mesh, gateway: &Gateway) {
    let b = &mesh.cluster_b;
    let ns = b.namespace.as_str();
    let domain = &b.domain;
    let secret_name = mesh.server_secret_name();
    let gateway_ns = gateway.namespace();
    // The Gateway lives with the gateway Pods and their credential, so it also holds where
    // Istio scopes Gateways to their namespace (PILOT_SCOPE_GATEWAY_TO_NAMESPACE).
    let gateway_name = format!("{}-gateway", b.service);
    let selector = gateway.labels().clone();
    let gw = Object {
        api_version: "networking.istio.io/v1",
        kind: "Gateway",
        metadata: istio_meta(&gateway_name, gateway_ns),
        spec: GatewaySpec {
            selector: selector.clone(),
            servers: vec![
                GatewayServer {
                    port: GatewayPort {
                        number: 80,
                        name: "http".into(),
                        protocol: "HTTP".into(),
                    },
                    hosts: vec![domain.clone()],
                    tls: ServerTls {
                        https_redirect: Some(true),
                        mode: None,
                        credential_name: None,
                        subject_alt_names: vec![],
                    },
                },
                GatewayServer {
                    port: GatewayPort {
                        number: 443,
                        name: "https".into(),
                        protocol: "HTTPS".into(),
                    },
                    hosts: vec![domain.clone()],
                    tls: ServerTls {
                        https_redirect: None,
                        mode: Some("MUTUAL".into()),
                        credential_name: Some(secret_name.clone()),
                        // When every allowed SAN is exact, Istio enforces them itself as a
                        // first layer; patterns are for the filter alone.
                        subject_alt_names: exact_only(&mesh.allowed_sans()),
                    },
                },
            ],
        },
    };
    e.emit(Cluster::B, "gateway.yaml", &gw, false);

    let vs = Object {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: istio_meta(&b.service, ns),
        spec: VirtualServiceSpec {
            hosts: vec![domain.clone()],
            export_to: vec![],
            gateways: vec![format!("{gateway_ns}/{gateway_name}")],
            http: vec![HttpRoute {
                matches: vec![],
                route: vec![RouteDestination {
                    destination: Destination {
                        host: format!("{}.{ns}.svc.cluster.local", b.service),
                        subset: None,
                        port: PortSelector { number: b.port },
                    },
                }],
            }],
        },
    };
    e.emit(Cluster::B, "virtualservice.yaml", &vs, false);
}

/// Which Pods the plugin applies to: a Gateway API Gateway's by `targetRefs`, others by their
/// labels.
fn plugin_attachment(gateway: &Gateway) -> Attachment {
    match gateway {
        Gateway::Own {
            api: GatewayApi::Kubernetes,
            name,
            ..
        }
        | Gateway::ListenerSet { gateway: name, .. } => {
            Attachment::TargetRefs(vec![kube_gateway::target_ref(name)])
        }
        _ => Attachment::Selector(WorkloadSelector {
            match_labels: gateway.labels().clone(),
        }),
    }
}

/// The WasmPlugin (or TrafficExtension) that puts peergate on the gateway's HTTPS listener.
fn peergate_plugin(e: &mut Emitter, mesh: &Mesh, gateway: &Gateway, pki: &Pki<'_>) {
    let gateway_ns = gateway.namespace();
    let attachment = plugin_attachment(gateway);
    let config = plugin_config(mesh, gateway, pki);
    // A connection-layer plugin is a network filter (Istio >= 1.20): the type follows the
    // layer the pluginConfig names. HTTP is the default and is left unsaid so the object reads
    // as it always did.
    let plugin_type =
        (config.layer == peergate_filter::Layer::Connection).then(|| "NETWORK".to_owned());
    // Istio puts a plugin on every listener of the selected Pods that its `match` admits
    // (pilot/pkg/model/extensions.go): scoped to the HTTPS listener, the port-80 redirect
    // stays a redirect. `ports` is the listener port, after the Service's port -> targetPort.
    let matches = vec![TrafficSelector {
        mode: "CLIENT".into(),
        ports: vec![PortSelector {
            number: gateway.https_listener_port(),
        }],
    }];
    let image_pull_secret = mesh.plugin.image_pull_secret.clone();
    let image_pull_policy = mesh.plugin.image_pull_policy.map(|p| p.name().to_owned());
    match mesh.plugin.api {
        PluginApi::WasmPlugin => {
            let plugin = Object {
                api_version: "extensions.istio.io/v1alpha1",
                kind: "WasmPlugin",
                metadata: istio_meta(PLUGIN_NAME, gateway_ns),
                spec: WasmPluginSpec {
                    attachment,
                    url: mesh.plugin.url.clone(),
                    sha256: mesh.plugin.sha256.clone(),
                    image_pull_secret,
                    image_pull_policy,
                    phase: "AUTHN".into(),
                    plugin_type,
                    fail_strategy: mesh.plugin.fail_strategy.name().into(),
                    matches,
                    plugin_config: config,
                },
            };
            e.emit(
                Cluster::B,
                PluginApi::WasmPlugin.file_name(),
                &plugin,
                false,
            );
        }
        PluginApi::TrafficExtension => {
            let extension = Object {
                api_version: "extensions.istio.io/v1alpha1",
                kind: "TrafficExtension",
                metadata: istio_meta(PLUGIN_NAME, gateway_ns),
                spec: TrafficExtensionSpec {
                    attachment,
                    phase: "AUTHN".into(),
                    matches,
                    wasm: TrafficExtensionWasm {
                        url: mesh.plugin.url.clone(),
                        sha256: mesh.plugin.sha256.clone(),
                        image_pull_secret,
                        image_pull_policy,
                        plugin_type,
                        fail_strategy: mesh.plugin.fail_strategy.name().into(),
                        plugin_config: config,
                    },
                },
            };
            e.emit(
                Cluster::B,
                PluginApi::TrafficExtension.file_name(),
                &extension,
                false,
            );
        }
    }
}

/// For an existing gateway: the patch that makes it forward the client certificate (not applied
/// by the kustomization: the existing gateway's Deployment is not ours).
fn xfcc_patch(e: &mut Emitter) {
    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": {
            (PROXY_CONFIG_ANNOTATION): XFCC_PROXY_CONFIG
        }}}}
    });
    e.emit(Cluster::B, XFCC_PATCH_FILE, &patch, false);
}

/// What the gateway forwards to the backend about the client certificate: Istio's gateway
/// default, said explicitly (the filter's fallback on Envoy < 1.38 reads its `Cert=`).
const XFCC_PROXY_CONFIG: &str =
    r#"{"gatewayTopology":{"forwardClientCertDetails":"SANITIZE_SET"}}"#;
const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

/// The gateway of its own, installed the way Istio documents a manually deployed gateway
/// (gateway injection: the `gateway` template and the inject label, binding 80 and 443
/// itself), with the Role its ServiceAccount needs to read the credential (istiod checks it
/// before it hands the key over) and the wasm log level that puts the decision lines into
/// `kubectl logs` (pilot-agent starts Envoy at warning).
fn own_gateway(
    e: &mut Emitter,
    mesh: &Mesh,
    name: &str,
    ns: &str,
    pod_labels: &BTreeMap<String, String>,
    replicas: u32,
) {
    gateway_namespace(e, ns);
    let sa = ServiceAccount {
        metadata: meta(name, Some(ns)),
        ..Default::default()
    };
    e.emit(Cluster::B, "gateway-serviceaccount.yaml", &sa, false);
    let role_name = format!("{name}-sds");
    let role = Role {
        metadata: meta(&role_name, Some(ns)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "watch".into(), "list".into()],
            ..Default::default()
        }]),
    };
    e.emit(Cluster::B, "gateway-role.yaml", &role, false);
    e.emit(
        Cluster::B,
        "gateway-rolebinding.yaml",
        &role_binding(&role_name, ns, name),
        false,
    );

    gateway_deployment(e, mesh, name, ns, pod_labels, replicas);
    gateway_service(e, name, ns, pod_labels);
}

/// The namespace of a gateway of its own.
fn gateway_namespace(e: &mut Emitter, ns: &str) {
    let namespace = Namespace {
        metadata: meta(ns, None),
        ..Default::default()
    };
    e.emit(Cluster::B, "gateway-namespace.yaml", &namespace, false);
}

/// The gateway's Deployment, injected with Istio's `gateway` template.
fn gateway_deployment(
    e: &mut Emitter,
    mesh: &Mesh,
    name: &str,
    ns: &str,
    pod_labels: &BTreeMap<String, String>,
    replicas: u32,
) {
    let mut template_labels = pod_labels.clone();
    match &mesh.istio_revision {
        Some(revision) => template_labels.insert(REVISION_LABEL.into(), revision.clone()),
        None => template_labels.insert("sidecar.istio.io/inject".into(), "true".into()),
    };
    let annotations = labels(&[
        ("inject.istio.io/templates", "gateway"),
        (
            "sidecar.istio.io/componentLogLevel",
            GATEWAY_COMPONENT_LOG_LEVEL,
        ),
        (PROXY_CONFIG_ANNOTATION, XFCC_PROXY_CONFIG),
    ]);
    let dep = Deployment {
        metadata: meta(name, Some(ns)),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(pod_labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.to_owned()),
                    security_context: Some(PodSecurityContext {
                        // Bind 80 and 443 without privileges (a "safe" sysctl).
                        sysctls: Some(vec![Sysctl {
                            name: "net.ipv4.ip_unprivileged_port_start".into(),
                            value: "0".into(),
                        }]),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: "istio-proxy".into(),
                        // Injection replaces it with the control plane's proxy image.
                        image: Some("auto".into()),
                        security_context: Some(SecurityContext {
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".into()]),
                                ..Default::default()
                            }),
                            run_as_user: Some(1337),
                            run_as_group: Some(1337),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    e.emit(Cluster::B, "gateway-deployment.yaml", &dep, false);
}

/// The gateway's LoadBalancer Service (80 and 443).
fn gateway_service(e: &mut Emitter, name: &str, ns: &str, pod_labels: &BTreeMap<String, String>) {
    let port = |number: u16, port_name: &str| ServicePort {
        name: Some(port_name.into()),
        port: i32::from(number),
        target_port: Some(IntOrString::Int(i32::from(number))),
        ..Default::default()
    };
    let service = Service {
        metadata: ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..meta(name, Some(ns))
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(pod_labels.clone()),
            ports: Some(vec![
                port(80, "http2"),
                port(OWN_GATEWAY_HTTPS_PORT, "https"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    e.emit(Cluster::B, "gateway-service.yaml", &service, false);
}

/// The gateway Pods' `--proxyComponentLogLevel`: pilot-agent's default (`misc:error`) plus
/// the filter's decision lines, which it logs at info.
pub const GATEWAY_COMPONENT_LOG_LEVEL: &str = "misc:error,wasm:info";

fn role_binding(role: &str, ns: &str, service_account: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(role, Some(ns)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: role.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: service_account.to_owned(),
            namespace: Some(ns.to_owned()),
            ..Default::default()
        }]),
    }
}

/// The list itself when no entry is a pattern, else nothing (Istio matches SANs exactly).
fn exact_only(sans: &[String]) -> Vec<String> {
    use peergate_filter::pattern::SanPattern;
    let all_exact = sans
        .iter()
        .all(|s| SanPattern::parse(s).is_ok_and(|p| !p.is_pattern()));
    if all_exact {
        sans.to_vec()
    } else {
        Vec::new()
    }
}

/// `exportTo: ["."]`: cluster A's route to the partner is for the client namespace only. The
/// DestinationRule names the client's files (mounted mode) or Secret; exported, every other
/// sidecar of the mesh would get it and fail to load them, and the VirtualService would send
/// their traffic to a subset they have no rule for.
fn own_namespace_only() -> Vec<String> {
    vec![".".into()]
}
