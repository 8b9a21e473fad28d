//! Test support, not product code: reads what `peergate gen` wrote for both clusters and
//! derives the Envoy configurations istiod would give cluster A's sidecar and cluster B's
//! ingress gateway for exactly these objects.
//!
//! It knows exactly the fields the generator emits. Every struct refuses unknown fields and
//! every enumerated value is checked, so a generator change the translator does not understand
//! fails the tests instead of being silently ignored.
//!
//! Stand-ins for what a cluster provides: DNS for the ServiceEntry host resolves to the gateway
//! Envoy's loopback address; `helloworld.service.svc.cluster.local` resolves to a local backend;
//! the WasmPlugin's `url` is the locally built module; the generated gateway's Service gives
//! its listener ports (an existing gateway's are istioctl's, 80 and 443 on 8080 and 8443, the
//! plugin's `match` naming the HTTPS one).
//!
//! This is not the proof that Istio runs the output that way: the Istio oracle (tests/istio)
//! is. The translator serves what needs no Go build: `cargo make demo`, the benchmarks and the
//! fuzzers' seed capture. It reads only the objects it needs (of the gateway it reads its
//! Service), each refusing fields it does not know.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::gateway::{admin, downstream_mtls, router_filter, static_cluster, upstream_mtls};

/// istioctl's istio-ingressgateway (an existing gateway): Service port → listener port.
pub const EXISTING_GATEWAY_LISTENER_PORTS: [(u16, u16); 2] = [(80, 8080), (443, 8443)];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    name: String,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Kustomization {
    api_version: String,
    kind: String,
    resources: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Namespace {
    metadata: Meta,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Secret {
    metadata: Meta,
    #[serde(rename = "type")]
    type_: String,
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccount {
    metadata: Meta,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Deployment {
    metadata: Meta,
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: u32,
    selector: LabelSelector,
    template: PodTemplate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabelSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodTemplate {
    metadata: PodMeta,
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodMeta {
    labels: BTreeMap<String, String>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodSpec {
    service_account_name: Option<String>,
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    command: Option<Vec<String>>,
    ports: Option<Vec<ContainerPort>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserVolume {
    secret: UserVolumeSecret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserVolumeSecret {
    secret_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserVolumeMount {
    mount_path: String,
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    metadata: Meta,
    spec: ServiceSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    #[serde(rename = "type")]
    type_: Option<String>,
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServicePort {
    name: String,
    port: u16,
    target_port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Role {
    metadata: Meta,
    rules: Vec<PolicyRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyRule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleBinding {
    metadata: Meta,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleRef {
    api_group: String,
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Istio<S> {
    metadata: Meta,
    spec: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct ServiceEntrySpec {
    hosts: Vec<String>,
    export_to: Option<Vec<String>>,
    location: String,
    resolution: String,
    ports: Vec<NamedPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedPort {
    number: u16,
    name: String,
    protocol: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSelector {
    number: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct VirtualServiceSpec {
    hosts: Vec<String>,
    export_to: Option<Vec<String>>,
    gateways: Option<Vec<String>>,
    http: Vec<HttpRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRoute {
    #[serde(rename = "match")]
    matches: Option<Vec<HttpMatch>>,
    route: Vec<RouteDestination>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpMatch {
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDestination {
    destination: Destination,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Destination {
    host: String,
    subset: Option<String>,
    port: PortSelector,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DestinationRuleSpec {
    host: String,
    export_to: Option<Vec<String>>,
    workload_selector: Option<LabelSelector>,
    subsets: Vec<Subset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Subset {
    name: String,
    traffic_policy: TrafficPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrafficPolicy {
    port_level_settings: Vec<PortTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortTls {
    port: PortSelector,
    tls: ClientTls,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientTls {
    mode: String,
    client_certificate: Option<String>,
    private_key: Option<String>,
    ca_certificates: Option<String>,
    credential_name: Option<String>,
    sni: String,
    subject_alt_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySpec {
    selector: BTreeMap<String, String>,
    servers: Vec<GatewayServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayServer {
    port: NamedPort,
    hosts: Vec<String>,
    tls: ServerTls,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServerTls {
    https_redirect: Option<bool>,
    mode: Option<String>,
    credential_name: Option<String>,
    subject_alt_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WasmPluginSpec {
    selector: LabelSelector,
    url: String,
    sha256: Option<String>,
    // Pulling is the agent's business; the stand-in loads the built module.
    #[serde(rename = "imagePullSecret")]
    _image_pull_secret: Option<String>,
    #[serde(rename = "imagePullPolicy")]
    _image_pull_policy: Option<String>,
    phase: String,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    fail_strategy: String,
    #[serde(rename = "match")]
    matches: Option<Vec<TrafficSelector>>,
    plugin_config: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrafficExtensionSpec {
    selector: LabelSelector,
    phase: String,
    #[serde(rename = "match")]
    matches: Option<Vec<TrafficSelector>>,
    wasm: TrafficExtensionWasm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrafficExtensionWasm {
    url: String,
    sha256: Option<String>,
    #[serde(rename = "imagePullSecret")]
    _image_pull_secret: Option<String>,
    #[serde(rename = "imagePullPolicy")]
    _image_pull_policy: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    fail_strategy: String,
    plugin_config: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficSelector {
    mode: String,
    ports: Vec<PortSelector>,
}

/// TLS material, PEM.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain.
    pub cert: String,
    /// Private key.
    pub key: String,
    /// CA bundle to verify the peer.
    pub ca: String,
}

/// Cluster A's sidecar, as istiod would configure it for the emitted objects.
#[derive(Debug, Clone)]
pub struct ClientSide {
    /// The ServiceEntry host the application calls over plain HTTP on port 80.
    pub host: String,
    /// The upstream port (VirtualService destination port).
    pub upstream_port: u16,
    /// Cluster name, as Istio names it.
    pub cluster: String,
    /// SNI sent to the gateway.
    pub sni: String,
    /// SANs the gateway's certificate must carry.
    pub server_sans: Vec<String>,
    /// Client credential.
    pub tls: Tls,
}

/// One Gateway server.
#[derive(Debug, Clone)]
pub struct GatewayListener {
    /// Gateway (Service) port.
    pub port: u16,
    /// The gateway container's listener port for it.
    pub listener_port: u16,
    /// Hosts served.
    pub hosts: Vec<String>,
    /// Redirect to HTTPS.
    pub https_redirect: bool,
    /// MUTUAL termination: credential and required client SANs.
    pub mutual: Option<(Tls, Vec<String>)>,
    /// Whether the WasmPlugin applies to this listener.
    pub plugin: bool,
}

/// Cluster B's ingress gateway.
#[derive(Debug, Clone)]
pub struct GatewaySide {
    /// Listeners, one per Gateway server.
    pub listeners: Vec<GatewayListener>,
    /// The backend service host and port from the VirtualService.
    pub backend_host: String,
    /// Its port.
    pub backend_port: u16,
    /// The WasmPlugin's pluginConfig, as JSON text.
    pub plugin_config: String,
    /// Whether a failing plugin is skipped (FAIL_OPEN).
    pub fail_open: bool,
    /// `type: NETWORK`: the module is a network filter ahead of the connection manager.
    pub network_plugin: bool,
}

fn b64(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("Secret data is not base64: {e}"));
    String::from_utf8(bytes).expect("Secret data is PEM text")
}

struct Objects {
    by_kind: BTreeMap<String, Vec<Value>>,
}

impl Objects {
    fn read(dir: &Path) -> Self {
        let k: Kustomization = serde_json::from_value(yaml(&dir.join("kustomization.yaml")))
            .expect("kustomization.yaml");
        assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
        assert_eq!(k.kind, "Kustomization");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f != "kustomization.yaml" && f != "ingressgateway-xfcc-patch.yaml")
            .collect();
        on_disk.sort();
        let mut listed = k.resources.clone();
        listed.sort();
        assert_eq!(
            listed,
            on_disk,
            "{}: kustomization.yaml lists every object file",
            dir.display()
        );
        let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for file in &k.resources {
            let v = yaml(&dir.join(file));
            let kind = v["kind"].as_str().expect("kind").to_owned();
            by_kind.entry(kind).or_default().push(v);
        }
        Objects { by_kind }
    }

    fn all<T: for<'de> Deserialize<'de>>(&self, kind: &str, api_version: &str) -> Vec<T> {
        self.by_kind
            .get(kind)
            .into_iter()
            .flatten()
            .map(|v| {
                assert_eq!(v["apiVersion"], api_version, "{kind}: apiVersion");
                let mut v = v.clone();
                let map = v.as_object_mut().unwrap();
                map.remove("apiVersion");
                map.remove("kind");
                serde_json::from_value(v)
                    .unwrap_or_else(|e| panic!("{kind}: the translator does not know this: {e}"))
            })
            .collect()
    }

    fn one<T: for<'de> Deserialize<'de>>(&self, kind: &str, api_version: &str) -> T {
        let mut all = self.all(kind, api_version);
        assert_eq!(all.len(), 1, "exactly one {kind}");
        all.remove(0)
    }

    /// The one object of a kind in a namespace.
    fn one_in<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        api_version: &str,
        namespace: &str,
    ) -> T {
        let matching: Vec<Value> = self
            .by_kind
            .get(kind)
            .into_iter()
            .flatten()
            .filter(|v| v["metadata"]["namespace"] == namespace)
            .cloned()
            .collect();
        assert_eq!(matching.len(), 1, "exactly one {kind} in {namespace}");
        let single = Objects {
            by_kind: BTreeMap::from([(kind.to_owned(), matching)]),
        };
        single.one(kind, api_version)
    }

    fn kinds(&self) -> Vec<&str> {
        self.by_kind.keys().map(String::as_str).collect()
    }
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn secret_tls(secret: &Secret, keys: [&str; 3]) -> Tls {
    let get = |k: &str| {
        b64(secret
            .data
            .get(k)
            .unwrap_or_else(|| panic!("Secret {} has no {k}", secret.metadata.name)))
    };
    assert_eq!(
        secret.data.len(),
        3,
        "Secret {}: exactly {keys:?}",
        secret.metadata.name
    );
    Tls {
        cert: get(keys[0]),
        key: get(keys[1]),
        ca: get(keys[2]),
    }
}

/// Translates `DIR/cluster-a/`.
pub fn client_side(dir: &Path) -> ClientSide {
    let objects = Objects::read(&dir.join("cluster-a"));
    let mut kinds = objects.kinds();
    kinds.retain(|k| !["Role", "RoleBinding"].contains(k));
    assert_eq!(
        kinds,
        [
            "Deployment",
            "DestinationRule",
            "Namespace",
            "Secret",
            "ServiceAccount",
            "ServiceEntry",
            "VirtualService"
        ],
        "cluster-a kinds"
    );
    let ns: Namespace = objects.one("Namespace", "v1");
    let namespace = ns.metadata.name.clone();
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    assert!(
        labels.get("istio-injection").map(String::as_str) == Some("enabled")
            || labels.contains_key("istio.io/rev"),
        "the client namespace needs sidecars: {labels:?}"
    );
    let in_ns = |m: &Meta| {
        assert_eq!(
            m.namespace.as_deref(),
            Some(namespace.as_str()),
            "{}",
            m.name
        )
    };
    let sa: ServiceAccount = objects.one("ServiceAccount", "v1");
    in_ns(&sa.metadata);
    let secret: Secret = objects.one("Secret", "v1");
    in_ns(&secret.metadata);
    assert_eq!(secret.type_, "kubernetes.io/tls");
    let dep: Deployment = objects.one("Deployment", "apps/v1");
    in_ns(&dep.metadata);
    assert_eq!(dep.spec.replicas, 1);
    assert_eq!(
        dep.spec.selector.match_labels,
        dep.spec.template.metadata.labels
    );
    assert_eq!(
        dep.spec.template.spec.service_account_name.as_deref(),
        Some(sa.metadata.name.as_str())
    );
    let [container] = &dep.spec.template.spec.containers[..] else {
        panic!("one container")
    };
    assert!(!container.name.is_empty() && !container.image.is_empty());
    assert!(container.command.is_some() && container.ports.is_none());

    let se: Istio<ServiceEntrySpec> = objects.one("ServiceEntry", "networking.istio.io/v1");
    in_ns(&se.metadata);
    let own_namespace_only = Some(vec![".".to_owned()]);
    assert_eq!(
        se.spec.export_to, own_namespace_only,
        "the ServiceEntry's exportTo"
    );
    assert_eq!(se.spec.location, "MESH_EXTERNAL");
    assert_eq!(se.spec.resolution, "DNS");
    let [host] = &se.spec.hosts[..] else {
        panic!("one ServiceEntry host")
    };
    let ports: Vec<(u16, &str, &str)> = se
        .spec
        .ports
        .iter()
        .map(|p| (p.number, p.name.as_str(), p.protocol.as_str()))
        .collect();
    assert_eq!(ports, [(80, "http", "HTTP"), (443, "https", "HTTPS")]);

    let vs: Istio<VirtualServiceSpec> = objects.one("VirtualService", "networking.istio.io/v1");
    in_ns(&vs.metadata);
    assert_eq!(
        vs.spec.export_to, own_namespace_only,
        "the VirtualService's exportTo"
    );
    assert_eq!(&vs.spec.hosts, std::slice::from_ref(host));
    assert!(vs.spec.gateways.is_none(), "mesh (sidecar) VirtualService");
    let [route] = &vs.spec.http[..] else {
        panic!("one route")
    };
    let matches = route.matches.as_ref().expect("the route matches port 80");
    assert_eq!(matches.iter().map(|m| m.port).collect::<Vec<_>>(), [80]);
    let [dest] = &route.route[..] else {
        panic!("one destination")
    };
    assert_eq!(&dest.destination.host, host);
    let subset = dest.destination.subset.clone().expect("a subset");
    let upstream_port = dest.destination.port.number;

    let dr: Istio<DestinationRuleSpec> = objects.one("DestinationRule", "networking.istio.io/v1");
    in_ns(&dr.metadata);
    assert_eq!(
        dr.spec.export_to, own_namespace_only,
        "the DestinationRule's exportTo"
    );
    assert_eq!(&dr.spec.host, host);
    let s = dr
        .spec
        .subsets
        .iter()
        .find(|s| s.name == subset)
        .expect("the VirtualService's subset");
    assert_eq!(dr.spec.subsets.len(), 1);
    let [setting] = &s.traffic_policy.port_level_settings[..] else {
        panic!("one port setting")
    };
    assert_eq!(setting.port.number, upstream_port);
    let tls = &setting.tls;
    assert_eq!(tls.mode, "MUTUAL");

    let annotations = dep
        .spec
        .template
        .metadata
        .annotations
        .clone()
        .unwrap_or_default();
    let credential = match &tls.credential_name {
        None => {
            // Mounted: the files named by the DestinationRule are keys of the Secret mounted
            // into the sidecar by the pod annotations.
            assert!(dr.spec.workload_selector.is_none());
            assert_eq!(annotations.len(), 2, "{annotations:?}");
            // Istio's injector reads both as maps from the volume's name.
            let volumes: BTreeMap<String, UserVolume> =
                serde_json::from_str(&annotations["sidecar.istio.io/userVolume"]).unwrap();
            let mounts: BTreeMap<String, UserVolumeMount> =
                serde_json::from_str(&annotations["sidecar.istio.io/userVolumeMount"]).unwrap();
            let ([(volume_name, volume)], [(mount_name, mount)]) = (
                &volumes.iter().collect::<Vec<_>>()[..],
                &mounts.iter().collect::<Vec<_>>()[..],
            ) else {
                panic!("one user volume and its mount")
            };
            assert_eq!(volume_name, mount_name);
            assert!(mount.read_only);
            assert_eq!(volume.secret.secret_name, secret.metadata.name);
            let key_of = |file: &Option<String>| -> String {
                let file = file.as_deref().expect("a file in mounted mode");
                file.strip_prefix(&format!("{}/", mount.mount_path))
                    .unwrap_or_else(|| panic!("{file} is not under {}", mount.mount_path))
                    .to_owned()
            };
            let keys = [
                key_of(&tls.client_certificate),
                key_of(&tls.private_key),
                key_of(&tls.ca_certificates),
            ];
            secret_tls(&secret, [&keys[0], &keys[1], &keys[2]])
        }
        Some(name) => {
            assert!(tls.client_certificate.is_none() && tls.private_key.is_none());
            assert!(tls.ca_certificates.is_none());
            assert!(annotations.is_empty(), "no mounts in credentialName mode");
            assert_eq!(name, &secret.metadata.name);
            let selector = dr
                .spec
                .workload_selector
                .as_ref()
                .expect("credentialName needs a workloadSelector");
            assert_eq!(selector.match_labels, dep.spec.template.metadata.labels);
            // The sidecar reads the Secret with its ServiceAccount: it needs the RBAC.
            let role: Role = objects.one("Role", "rbac.authorization.k8s.io/v1");
            in_ns(&role.metadata);
            let [rule] = &role.rules[..] else {
                panic!("one rule")
            };
            assert_eq!(rule.api_groups, [""]);
            assert_eq!(rule.resources, ["secrets"]);
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
            let binding: RoleBinding = objects.one("RoleBinding", "rbac.authorization.k8s.io/v1");
            in_ns(&binding.metadata);
            assert_eq!(
                (
                    binding.role_ref.api_group.as_str(),
                    binding.role_ref.kind.as_str(),
                    &binding.role_ref.name
                ),
                ("rbac.authorization.k8s.io", "Role", &role.metadata.name)
            );
            let [subject] = &binding.subjects[..] else {
                panic!("one subject")
            };
            assert_eq!(
                (subject.kind.as_str(), &subject.name, &subject.namespace),
                ("ServiceAccount", &sa.metadata.name, &namespace)
            );
            secret_tls(&secret, ["tls.crt", "tls.key", "ca.crt"])
        }
    };
    if tls.credential_name.is_none() {
        assert!(
            !objects.by_kind.contains_key("Role") && !objects.by_kind.contains_key("RoleBinding")
        );
    }
    ClientSide {
        host: host.clone(),
        upstream_port,
        cluster: format!("outbound|{upstream_port}|{subset}|{host}"),
        sni: tls.sni.clone(),
        server_sans: tls.subject_alt_names.clone(),
        tls: credential,
    }
}

/// Translates `DIR/cluster-b/`.
pub fn gateway_side(dir: &Path) -> GatewaySide {
    let objects = Objects::read(&dir.join("cluster-b"));
    // The filter is installed by a WasmPlugin or (Istio >= 1.30) a TrafficExtension.
    let plugin_kind = if objects.kinds().contains(&"TrafficExtension") {
        "TrafficExtension"
    } else {
        "WasmPlugin"
    };
    let gw: Istio<GatewaySpec> = objects.one("Gateway", "networking.istio.io/v1");
    let gateway_namespace = gw
        .metadata
        .namespace
        .clone()
        .expect("the Gateway's namespace");
    let vs: Istio<VirtualServiceSpec> = objects.one("VirtualService", "networking.istio.io/v1");
    let namespace = vs
        .metadata
        .namespace
        .clone()
        .expect("the VirtualService's namespace");
    let secret: Secret = objects.one("Secret", "v1");
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some(gateway_namespace.as_str()),
        "the credential lives with the gateway (Istio's SDS reads the gateway Pod's namespace)"
    );
    // The kubernetes.io/tls layout, where Istio reads ca.crl (the translator does not model
    // CRLs: the oracle, tests/istio, runs those through Istio's own SDS).
    assert_eq!(secret.type_, "kubernetes.io/tls");
    let service: Service = objects.one_in("Service", "v1", &namespace);
    let dep: Deployment = objects.one_in("Deployment", "apps/v1", &namespace);
    let [port] = &service.spec.ports[..] else {
        panic!("one Service port")
    };
    for (k, v) in &service.spec.selector {
        assert_eq!(
            dep.spec.template.metadata.labels.get(k),
            Some(v),
            "the Service selects the Deployment"
        );
    }
    let [container] = &dep.spec.template.spec.containers[..] else {
        panic!("one container")
    };
    let container_ports: Vec<u16> = container
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(
        container_ports,
        [port.target_port],
        "the Service reaches the container port"
    );
    assert_eq!(port.name, "http");
    // A gateway of its own: its Service (selecting the Gateway's labels) maps Service ports
    // to the listener ports; an existing gateway is istioctl's.
    let own_gateway = objects
        .by_kind
        .get("Service")
        .into_iter()
        .flatten()
        .any(|v| v["metadata"]["namespace"] == gateway_namespace.as_str());
    let gateway_ports: Vec<(u16, u16)> = if own_gateway {
        let gateway_service: Service = objects.one_in("Service", "v1", &gateway_namespace);
        assert_eq!(gateway_service.spec.selector, gw.spec.selector);
        assert_eq!(gateway_service.spec.type_.as_deref(), Some("LoadBalancer"));
        gateway_service
            .spec
            .ports
            .iter()
            .map(|p| (p.port, p.target_port))
            .collect()
    } else {
        EXISTING_GATEWAY_LISTENER_PORTS.to_vec()
    };

    assert_eq!(
        vs.spec.gateways.as_deref(),
        Some(&[format!("{gateway_namespace}/{}", gw.metadata.name)][..])
    );
    let [route] = &vs.spec.http[..] else {
        panic!("one route")
    };
    assert!(route.matches.is_none());
    let [dest] = &route.route[..] else {
        panic!("one destination")
    };
    assert!(dest.destination.subset.is_none());
    assert_eq!(
        dest.destination.host,
        format!("{}.{namespace}.svc.cluster.local", service.metadata.name),
        "the route names the Service"
    );
    assert_eq!(dest.destination.port.number, port.port);

    let plugin: Istio<WasmPluginSpec> = if plugin_kind == "TrafficExtension" {
        let extension: Istio<TrafficExtensionSpec> =
            objects.one("TrafficExtension", "extensions.istio.io/v1alpha1");
        // The same fields as a WasmPlugin's, the Wasm ones under `wasm`.
        Istio {
            metadata: extension.metadata,
            spec: WasmPluginSpec {
                selector: extension.spec.selector,
                url: extension.spec.wasm.url,
                sha256: extension.spec.wasm.sha256,
                _image_pull_secret: extension.spec.wasm._image_pull_secret,
                _image_pull_policy: extension.spec.wasm._image_pull_policy,
                phase: extension.spec.phase,
                plugin_type: extension.spec.wasm.plugin_type,
                fail_strategy: extension.spec.wasm.fail_strategy,
                matches: extension.spec.matches,
                plugin_config: extension.spec.wasm.plugin_config,
            },
        }
    } else {
        objects.one("WasmPlugin", "extensions.istio.io/v1alpha1")
    };
    assert_eq!(
        plugin.metadata.namespace.as_deref(),
        Some(gateway_namespace.as_str())
    );
    assert_eq!(plugin.spec.selector.match_labels, gw.spec.selector);
    assert!(plugin.spec.url.contains("://"));
    if let Some(sha) = &plugin.spec.sha256 {
        assert_eq!(sha.len(), 64);
    }
    assert_eq!(plugin.spec.phase, "AUTHN");
    let network_plugin = match plugin.spec.plugin_type.as_deref() {
        None | Some("HTTP") => false,
        Some("NETWORK") => true,
        Some(other) => panic!("unknown WasmPlugin type {other}"),
    };
    let fail_open = match plugin.spec.fail_strategy.as_str() {
        "FAIL_CLOSE" | "FAIL_RELOAD" => false,
        "FAIL_OPEN" => true,
        other => panic!("unknown failStrategy {other}"),
    };
    let plugin_ports: Option<Vec<u16>> = plugin.spec.matches.as_ref().map(|selectors| {
        selectors
            .iter()
            .flat_map(|s| {
                assert_eq!(s.mode, "CLIENT", "gateway traffic is CLIENT mode");
                s.ports.iter().map(|p| p.number)
            })
            .collect()
    });

    let listeners = gw
        .spec
        .servers
        .iter()
        .map(|server| {
            let mut listener_port = gateway_ports
                .iter()
                .find(|(p, _)| *p == server.port.number)
                .unwrap_or_else(|| {
                    panic!(
                        "gateway port {} is not one the gateway's Service exposes",
                        server.port.number
                    )
                })
                .1;
            // An existing gateway's HTTPS listener is the port the plugin's match names.
            if server.port.protocol == "HTTPS" && !own_gateway {
                if let Some([port]) = plugin_ports.as_deref() {
                    listener_port = *port;
                }
            }
            assert_eq!(
                &server.hosts, &vs.spec.hosts,
                "Gateway and VirtualService hosts"
            );
            let tls = &server.tls;
            let mutual = match (server.port.protocol.as_str(), tls.mode.as_deref()) {
                ("HTTP", None) => {
                    assert!(tls.credential_name.is_none() && tls.subject_alt_names.is_none());
                    None
                }
                ("HTTPS", Some("MUTUAL")) => {
                    assert!(tls.https_redirect.is_none());
                    assert_eq!(
                        tls.credential_name.as_deref(),
                        Some(secret.metadata.name.as_str())
                    );
                    Some((
                        secret_tls(&secret, ["tls.crt", "tls.key", "ca.crt"]),
                        tls.subject_alt_names.clone().unwrap_or_default(),
                    ))
                }
                other => panic!("gateway server {other:?} not understood"),
            };
            GatewayListener {
                port: server.port.number,
                listener_port,
                hosts: server.hosts.clone(),
                https_redirect: tls.https_redirect == Some(true),
                mutual,
                plugin: plugin_ports
                    .as_ref()
                    .is_none_or(|ports| ports.contains(&listener_port)),
            }
        })
        .collect();
    GatewaySide {
        listeners,
        backend_host: dest.destination.host.clone(),
        backend_port: dest.destination.port.number,
        plugin_config: plugin.spec.plugin_config.to_string(),
        fail_open,
        network_plugin,
    }
}

/// Cluster A's sidecar: plain HTTP in on `outbound_80`, mutual TLS out to `gateway`.
pub fn client_bootstrap(client: &ClientSide, gateway: SocketAddr, listen_port: u16) -> Value {
    let upstream_tls = upstream_mtls(
        &client.tls.cert,
        &client.tls.key,
        &client.tls.ca,
        &client.sni,
        &client.server_sans,
    );
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [{
                "name": "outbound_80",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": listen_port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound_80",
                        "route_config": { "virtual_hosts": [{
                            "name": format!("{}:80", client.host),
                            "domains": [client.host, format!("{}:80", client.host)],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": client.cluster } }]
                        }]},
                        "http_filters": [router_filter()]
                    }
                }]}]
            }],
            "clusters": [static_cluster(&client.cluster, gateway, Some(upstream_tls))]
        }
    })
}

/// Cluster B's ingress gateway: one listener per Gateway server, named `gateway_<port>`,
/// routing to `backend`. `listen_ports` maps Gateway ports to local ports (0: any).
pub fn gateway_bootstrap(
    gw: &GatewaySide,
    wasm: &Path,
    backend: SocketAddr,
    listen_ports: &BTreeMap<u16, u16>,
) -> Value {
    let backend_cluster = format!("outbound|{}||{}", gw.backend_port, gw.backend_host);
    let listeners: Vec<Value> = gw
        .listeners
        .iter()
        .map(|l| {
            let mut filters = Vec::new();
            let mut network_filters = Vec::new();
            if l.plugin {
                let mut wasm_filter = if gw.network_plugin {
                    crate::gateway::network_wasm_filter("peergate", wasm, &gw.plugin_config)
                } else {
                    crate::gateway::wasm_filter(wasm, &gw.plugin_config)
                };
                wasm_filter["typed_config"]["config"]["fail_open"] = gw.fail_open.into();
                if gw.network_plugin {
                    network_filters.push(wasm_filter);
                } else {
                    filters.push(wasm_filter);
                }
            }
            filters.push(router_filter());
            let mut domains = Vec::new();
            for h in &l.hosts {
                domains.push(h.clone());
                domains.push(format!("{h}:*"));
            }
            let mut vhost = json!({
                "name": format!("{}:{}", l.hosts.join(","), l.port),
                "domains": domains,
                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": backend_cluster } }]
            });
            if l.https_redirect {
                vhost["require_tls"] = "ALL".into();
            }
            let mut hcm = json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": format!("gateway_{}", l.port),
                "route_config": { "virtual_hosts": [vhost] },
                "http_filters": filters
            });
            let mut chain = json!({});
            if let Some((tls, client_sans)) = &l.mutual {
                hcm["forward_client_cert_details"] = "SANITIZE_SET".into();
                hcm["set_current_client_cert_details"] =
                    json!({ "subject": true, "cert": true, "dns": true, "uri": true });
                chain["filter_chain_match"] = json!({ "server_names": l.hosts });
                chain["transport_socket"] =
                    downstream_mtls(&tls.cert, &tls.key, &tls.ca, client_sans);
            }
            network_filters.push(json!({
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm
            }));
            chain["filters"] = network_filters.into();
            let mut listener = json!({
                "name": format!("gateway_{}", l.port),
                "address": { "socket_address": {
                    "address": "127.0.0.1",
                    "port_value": listen_ports.get(&l.port).copied().unwrap_or(0)
                }},
                "filter_chains": [chain]
            });
            if l.mutual.is_some() {
                listener["listener_filters"] = json!([{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
                }]);
            }
            listener
        })
        .collect();
    json!({
        "admin": admin(),
        "static_resources": {
            "listeners": listeners,
            "clusters": [static_cluster(&backend_cluster, backend, None)]
        }
    })
}
