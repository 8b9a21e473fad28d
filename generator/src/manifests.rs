//! Every Kubernetes and Istio object of both clusters, as YAML files.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, PodSpec, PodTemplateSpec, Secret, SecretVolumeSource,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use serde::Serialize;

use crate::certs::CertAndKey;
use crate::istio::{
    ClientTls, Destination, DestinationRuleSpec, GatewayPort, GatewayServer, GatewaySpec,
    HttpMatch, HttpRoute, Kustomization, Metadata, Object, PortSelector, PortTrafficPolicy,
    RouteDestination, ServerTls, ServiceEntrySpec, Subset, TrafficExtensionSpec,
    TrafficExtensionWasm, TrafficPolicy, TrafficSelector, VirtualServiceSpec, WasmPluginSpec,
    WorkloadSelector,
};
use crate::mesh::{ClientCertMode, Mesh, PluginApi};

/// Where the client Secret is mounted in the sidecar (mounted mode).
pub const CLIENT_CERT_DIR: &str = "/etc/peergate/client";
/// The DestinationRule subset that originates mutual TLS.
pub const TLS_SUBSET: &str = "tls-origination";
/// Namespace of the ingress gateway and its credential.
pub const GATEWAY_NAMESPACE: &str = "istio-system";
/// Labels of Istio's default ingress gateway.
pub const GATEWAY_LABEL: (&str, &str) = ("istio", "ingressgateway");
/// The patch for istio-ingressgateway, not part of any kustomization.
pub const XFCC_PATCH_FILE: &str = "ingressgateway-xfcc-patch.yaml";

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
    /// The root.
    pub root: &'a CertAndKey,
    /// Cluster A's client.
    pub client: &'a CertAndKey,
    /// Cluster B's server.
    pub server: &'a CertAndKey,
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

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            labels: Some(labels(&[("istio-injection", "enabled")])),
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

    fn kustomization(&mut self, cluster: Cluster) {
        let resources = self
            .out
            .iter()
            .filter(|m| m.cluster == cluster && m.file != XFCC_PATCH_FILE)
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

/// The pluginConfig the WasmPlugin carries.
pub fn plugin_config(mesh: &Mesh, pki: &Pki<'_>) -> peergate_filter::PluginConfig {
    peergate_filter::PluginConfig {
        mode: mesh.plugin.mode,
        layer: mesh.plugin.layer,
        trusted_issuers: vec![pki.root.cert.clone()],
        allowed_sans: Some(mesh.allowed_sans()),
        ..Default::default()
    }
}

/// Every file of both clusters, in a stable order.
pub fn manifests(mesh: &Mesh, pki: &Pki<'_>) -> Result<Vec<Manifest>, ManifestError> {
    let mut e = Emitter {
        out: Vec::new(),
        error: None,
    };
    cluster_a(&mut e, mesh, pki);
    e.kustomization(Cluster::A);
    cluster_b(&mut e, mesh, pki);
    e.kustomization(Cluster::B);
    match e.error {
        Some(error) => Err(error),
        None => Ok(e.out),
    }
}

fn cluster_a(e: &mut Emitter, mesh: &Mesh, pki: &Pki<'_>) {
    let a = &mesh.cluster_a;
    let ns = a.namespace.as_str();
    let domain = &mesh.cluster_b.domain;
    let app = labels(&[("app", &a.deployment)]);
    let secret_name = mesh.client_secret_name();

    e.emit(Cluster::A, "namespace.yaml", &namespace(ns), false);
    let sa = ServiceAccount {
        metadata: meta(&a.service_account, Some(ns)),
        ..Default::default()
    };
    e.emit(Cluster::A, "serviceaccount.yaml", &sa, false);
    let client_secret = secret(
        &secret_name,
        ns,
        "kubernetes.io/tls",
        &[
            ("tls.crt", &pki.client.cert),
            ("tls.key", &pki.client.key),
            ("ca.crt", &pki.root.cert),
        ],
    );
    e.emit(
        Cluster::A,
        &format!("secret-{secret_name}.yaml"),
        &client_secret,
        true,
    );

    let annotations = match a.client_cert_mode {
        ClientCertMode::Mounted => {
            let volume = Volume {
                name: "peergate-client-cert".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mount = VolumeMount {
                name: "peergate-client-cert".into(),
                mount_path: CLIENT_CERT_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            };
            Some(labels(&[
                ("sidecar.istio.io/userVolume", &compact_json(&[volume])),
                ("sidecar.istio.io/userVolumeMount", &compact_json(&[mount])),
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

    let name = object_name(domain);
    let se = Object {
        api_version: "networking.istio.io/v1",
        kind: "ServiceEntry",
        metadata: istio_meta(&name, ns),
        spec: ServiceEntrySpec {
            hosts: vec![domain.clone()],
            location: "MESH_EXTERNAL".into(),
            resolution: "DNS".into(),
            ports: vec![
                crate::istio::ServicePort {
                    number: 80,
                    name: "http".into(),
                    protocol: "HTTP".into(),
                },
                crate::istio::ServicePort {
                    number: 443,
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
            gateways: vec![],
            http: vec![HttpRoute {
                matches: vec![HttpMatch { port: 80 }],
                route: vec![RouteDestination {
                    destination: Destination {
                        host: domain.clone(),
                        subset: Some(TLS_SUBSET.into()),
                        port: PortSelector { number: 443 },
                    },
                }],
            }],
        },
    };
    e.emit(Cluster::A, "virtualservice.yaml", &vs, false);

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
                        port: PortSelector { number: 443 },
                        tls,
                    }],
                },
            }],
        },
    };
    e.emit(Cluster::A, "destinationrule.yaml", &dr, false);

    if a.client_cert_mode == ClientCertMode::CredentialName {
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
        let binding = RoleBinding {
            metadata: meta(&role_name, Some(ns)),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: role_name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: a.service_account.clone(),
                namespace: Some(ns.to_owned()),
                ..Default::default()
            }]),
        };
        e.emit(Cluster::A, "rolebinding.yaml", &binding, false);
    }
}

fn cluster_b(e: &mut Emitter, mesh: &Mesh, pki: &Pki<'_>) {
    let b = &mesh.cluster_b;
    let ns = b.namespace.as_str();
    let domain = &b.domain;
    let secret_name = mesh.server_secret_name();
    let app = labels(&[("app", &b.service)]);

    let credential = secret(
        &secret_name,
        GATEWAY_NAMESPACE,
        "Opaque",
        &[
            ("key", &pki.server.key),
            ("cert", &pki.server.cert),
            ("cacert", &pki.root.cert),
        ],
    );
    e.emit(
        Cluster::B,
        &format!("secret-{secret_name}.yaml"),
        &credential,
        true,
    );
    e.emit(Cluster::B, "namespace.yaml", &namespace(ns), false);

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

    let gateway_name = format!("{}-gateway", b.service);
    let selector = labels(&[GATEWAY_LABEL]);
    let gateway = Object {
        api_version: "networking.istio.io/v1",
        kind: "Gateway",
        metadata: istio_meta(&gateway_name, ns),
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
    e.emit(Cluster::B, "gateway.yaml", &gateway, false);

    let vs = Object {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: istio_meta(&b.service, ns),
        spec: VirtualServiceSpec {
            hosts: vec![domain.clone()],
            gateways: vec![gateway_name],
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

    // A connection-layer plugin is a network filter (Istio >= 1.20); HTTP is the default and
    // is left unsaid so the object reads as it always did.
    let plugin_type =
        (mesh.plugin.layer == peergate_filter::Layer::Connection).then(|| "NETWORK".to_owned());
    let matches: Vec<TrafficSelector> = b
        .plugin_listener_port
        .map(|port| TrafficSelector {
            mode: "CLIENT".into(),
            ports: vec![PortSelector { number: port }],
        })
        .into_iter()
        .collect();
    match mesh.plugin.api {
        PluginApi::WasmPlugin => {
            let plugin = Object {
                api_version: "extensions.istio.io/v1alpha1",
                kind: "WasmPlugin",
                metadata: istio_meta("peergate", GATEWAY_NAMESPACE),
                spec: WasmPluginSpec {
                    selector: WorkloadSelector {
                        match_labels: selector,
                    },
                    url: mesh.plugin.url.clone(),
                    sha256: mesh.plugin.sha256.clone(),
                    phase: "AUTHN".into(),
                    plugin_type,
                    fail_strategy: mesh.plugin.fail_strategy.name().into(),
                    matches,
                    plugin_config: plugin_config(mesh, pki),
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
                metadata: istio_meta("peergate", GATEWAY_NAMESPACE),
                spec: TrafficExtensionSpec {
                    selector: WorkloadSelector {
                        match_labels: selector,
                    },
                    phase: "AUTHN".into(),
                    matches,
                    wasm: TrafficExtensionWasm {
                        url: mesh.plugin.url.clone(),
                        sha256: mesh.plugin.sha256.clone(),
                        plugin_type,
                        fail_strategy: mesh.plugin.fail_strategy.name().into(),
                        plugin_config: plugin_config(mesh, pki),
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

    let patch = serde_json::json!({
        "spec": { "template": { "metadata": { "annotations": {
            "proxy.istio.io/config": "{\"gatewayTopology\":{\"forwardClientCertDetails\":\"SANITIZE_SET\"}}"
        }}}}
    });
    e.emit(Cluster::B, XFCC_PATCH_FILE, &patch, false);
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

/// Compact JSON for annotation values (plain k8s-openapi structs: cannot fail).
fn compact_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
