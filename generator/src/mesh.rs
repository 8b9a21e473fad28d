//! `mesh.toml`: the declarative description of both clusters. Its defaults are the reference
//! scenario, so an empty file (or none) generates it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Key algorithm for every key the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// RSA 2048 (the default), signatures with SHA-256.
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// RSA 3072.
    #[serde(rename = "rsa3072")]
    Rsa3072,
    /// RSA 4096.
    #[serde(rename = "rsa4096")]
    Rsa4096,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// Ed25519.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    /// The name used in `mesh.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// Whether this is an RSA type (leaves then also get keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How cluster A's sidecar gets the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientCertMode {
    /// A Secret mounted into the sidecar (`sidecar.istio.io/userVolume`), files named in the
    /// DestinationRule.
    Mounted,
    /// DestinationRule `credentialName` with a `workloadSelector` (Istio >= 1.14), plus the RBAC
    /// the sidecar needs to read the Secret.
    CredentialName,
}

/// Who issues the leaves (`certificates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Certificates {
    /// `gen` issues them and puts them, keys and all, in the clusters' Secrets.
    #[default]
    #[serde(rename = "static")]
    Static,
    /// cert-manager issues and renews them from `Certificate` resources `gen` emits.
    #[serde(rename = "cert-manager")]
    CertManager,
}

impl Certificates {
    /// The word `mesh.toml` and `--certificates` use.
    pub fn word(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::CertManager => "cert-manager",
        }
    }
}

/// The issuer cert-manager's `Certificate`s name (`[certManager.issuerRef]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// The issuer's name.
    pub name: String,
    /// `Issuer` (in each Certificate's namespace), `ClusterIssuer`, or an external issuer's
    /// kind (`StepIssuer`, …).
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    /// The API group: `cert-manager.io`, or an external issuer's (`certmanager.step.sm`, …).
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// cert-manager (`[certManager]`), read when `certificates = "cert-manager"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CertManagerSection {
    /// The issuer both Certificates name. Absent: `gen` emits a CA `Issuer` named
    /// `peergate-ca` in each cluster, signing with the agreed root (or the issuing CA), whose
    /// key then sits in a Secret of each cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// The default CA Issuer's name (and its Secret's).
pub const DEFAULT_ISSUER: &str = "peergate-ca";

/// What the gateway does when the plugin cannot be loaded or crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailStrategy {
    /// Refuse traffic (the default).
    #[serde(rename = "FAIL_CLOSE")]
    FailClose,
    /// Reload the VM and keep refusing while it is down.
    #[serde(rename = "FAIL_RELOAD")]
    FailReload,
    /// Skip the plugin: after a trap the policy is silently not applied.
    #[serde(rename = "FAIL_OPEN")]
    FailOpen,
}

impl FailStrategy {
    /// The Istio enum name.
    pub fn name(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSE",
            FailStrategy::FailReload => "FAIL_RELOAD",
            FailStrategy::FailOpen => "FAIL_OPEN",
        }
    }
}

/// Which Istio API installs the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginApi {
    /// `WasmPlugin` (extensions.istio.io/v1alpha1), every Istio with Wasm support.
    #[default]
    WasmPlugin,
    /// `TrafficExtension` (extensions.istio.io/v1alpha1, Istio >= 1.30), which supersedes it.
    TrafficExtension,
}

impl PluginApi {
    /// Every API, for finding the file of the one not emitted.
    pub const ALL: [PluginApi; 2] = [PluginApi::WasmPlugin, PluginApi::TrafficExtension];

    /// The file its object is written to, in `cluster-b/`.
    pub fn file_name(self) -> &'static str {
        match self {
            PluginApi::WasmPlugin => "wasmplugin.yaml",
            PluginApi::TrafficExtension => "trafficextension.yaml",
        }
    }
}

/// `plugin.layer`: where the filter decides, or `auto` to let `gen` choose (see
/// [`Mesh::layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerChoice {
    /// The connection layer where it is correct and the release has it, else the request layer.
    #[default]
    Auto,
    /// An HTTP filter: every request is decided, a refused one gets a 403 with the reason.
    Request,
    /// A network filter: each TLS connection is decided once, a refused one is closed.
    Connection,
}

/// The layer the filter runs at, and why it is that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenLayer {
    /// The layer.
    pub layer: peergate_filter::Layer,
    /// Why, for people: what decided it and what a refused peer sees.
    pub why: &'static str,
}

/// The Istio release the clusters run, `1.MINOR` or `1.MINOR.PATCH`. Features are refused
/// before the release that introduced them (see [`Mesh::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    /// The minor release (`28` for 1.28).
    pub minor: u32,
    /// The patch release, when given.
    pub patch: Option<u32>,
}

/// The oldest Istio peergate supports (the oldest release the Istio oracle is pinned to).
pub const OLDEST_ISTIO_MINOR: u32 = 28;
/// The newest Istio the oracle is pinned to: the default `istioVersion`.
pub const NEWEST_ISTIO_MINOR: u32 = 31;

impl IstioVersion {
    /// Parses `1.28` or `1.28.2` (a leading `v` is allowed).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        let minor = number(parts.next()?)?;
        let patch = match parts.next() {
            Some(part) => Some(number(part)?),
            None => None,
        };
        parts.next().is_none().then_some(Self { minor, patch })
    }

    /// The newest pinned release.
    pub fn newest() -> Self {
        Self {
            minor: NEWEST_ISTIO_MINOR,
            patch: None,
        }
    }

    /// Whether this is 1.`minor` or later.
    pub fn at_least(self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(patch) => write!(f, "1.{}.{patch}", self.minor),
            None => write!(f, "1.{}", self.minor),
        }
    }
}

impl Serialize for IstioVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IstioVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        IstioVersion::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid Istio version {text:?}: write 1.MINOR or 1.MINOR.PATCH, like \"1.28\""
            ))
        })
    }
}

/// A feature that needs a given Istio release, and why.
#[derive(Debug, Clone, Copy)]
pub struct FeatureGate {
    /// The `mesh.toml` key that asks for it.
    pub field: &'static str,
    /// The release that introduced it (1.`since`).
    pub since: u32,
    /// What is missing before it.
    pub why: &'static str,
    /// The value that asks for it, when the mesh does.
    pub asked: fn(&Mesh) -> Option<&'static str>,
}

/// The Istio release whose Envoy first has `connection.peer_certificate`, which the connection
/// layer reads.
pub const CONNECTION_LAYER_SINCE: u32 = 30;

/// The first Istio with the standard Gateway API ListenerSet.
pub const LISTENER_SET_SINCE: u32 = 30;

/// Features an older Istio cannot run, checked by [`Mesh::validate`]. The Istio oracle
/// (tests/istio) checks every gate against each pinned release's own CRDs and proxies.
pub const FEATURE_GATES: [FeatureGate; 4] = [
    FeatureGate {
        field: "clusterB.gateway.api",
        since: 28,
        why: "Gateway API frontend client-certificate validation (spec.tls.frontend) is first implemented in Istio 1.28; before it a Gateway API listener cannot ask for a client certificate",
        asked: |mesh| {
            let api = mesh.cluster_b.gateway.as_ref().map(|g| g.api);
            (api == Some(GatewayApi::Kubernetes)).then_some("kubernetes")
        },
    },
    FeatureGate {
        field: "clusterB.gateway.existing",
        since: LISTENER_SET_SINCE,
        why: "on an existing Gateway API gateway peergate adds a ListenerSet, standard from Gateway API v1.5 (Istio 1.30); Istio 1.28 has only the experimental XListenerSet behind PILOT_ENABLE_ALPHA_GATEWAY_API",
        asked: |mesh| {
            let section = mesh.cluster_b.gateway.as_ref()?;
            (section.existing && section.api == GatewayApi::Kubernetes).then_some("true")
        },
    },
    FeatureGate {
        field: "plugin.layer",
        since: CONNECTION_LAYER_SINCE,
        why: "layer connection reads the connection.peer_certificate property, first in the Envoy of Istio 1.30 (1.38); before it every connection would be refused",
        asked: |mesh| (mesh.plugin.layer == LayerChoice::Connection).then_some("connection"),
    },
    FeatureGate {
        field: "plugin.api",
        since: 30,
        why: "the TrafficExtension API first ships with Istio 1.30",
        asked: |mesh| (mesh.plugin.api == PluginApi::TrafficExtension).then_some("trafficextension"),
    },
];

/// How the WasmPlugin pulls its image (`imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    /// Pull when the image is not cached (Istio's default for a tag other than `latest`).
    IfNotPresent,
    /// Pull every time the plugin (re)loads.
    Always,
}

impl ImagePullPolicy {
    /// The Istio enum name.
    pub fn name(self) -> &'static str {
        match self {
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Always => "Always",
        }
    }
}

/// The ingress gateway that terminates the partner's mutual TLS (`[clusterB.gateway]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Which API declares the gateway: Istio's own `Gateway` (the default) or the Kubernetes
    /// Gateway API, where Istio deploys the gateway itself for the `Gateway` object.
    pub api: GatewayApi,
    /// `true`: an existing gateway shared with other hosts, selected by `labels` in
    /// `namespace`, whose listener for Service port 443 is `listenerPort`; under the Gateway
    /// API the owner's Gateway `name` in `namespace`, where peergate adds a ListenerSet on
    /// `listenerPort`. `false` (the default): a gateway of its own, generated.
    pub existing: bool,
    /// The generated gateway's Deployment, Service and ServiceAccount (own gateway); the
    /// Gateway API Gateway (its own, or the owner's for a ListenerSet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The gateway Pods' namespace; the credential Secret, the Gateway and the plugin go there.
    pub namespace: String,
    /// The labels that select the gateway Pods (the Gateway's and the plugin's selector).
    pub labels: BTreeMap<String, String>,
    /// Replicas of the generated gateway (own gateway only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// The listener port Istio builds on the existing gateway for Service port 443 (its
    /// targetPort: 8443 for istioctl's istio-ingressgateway, 443 for the istio/gateway
    /// chart); under the Gateway API the ListenerSet's port. Existing gateway only: the
    /// generated one listens on 443 itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_port: Option<u16>,
}

/// Defaults of the generated gateway.
pub const DEFAULT_GATEWAY_NAME: &str = "peergate-ingressgateway";
/// Its namespace.
pub const DEFAULT_GATEWAY_NAMESPACE: &str = "peergate-ingress";
/// Its replicas: a gateway in front of partners should survive one Pod.
pub const DEFAULT_GATEWAY_REPLICAS: u32 = 2;

/// `[clusterB.gateway] api`: the API cluster B's gateway is declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayApi {
    /// Istio's `networking.istio.io` Gateway on a gateway Deployment peergate writes.
    #[default]
    Istio,
    /// A `gateway.networking.k8s.io` Gateway of class `istio`: Istio deploys `<name>-istio`.
    Kubernetes,
}

impl GatewayApi {
    /// The `mesh.toml` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayApi::Istio => "istio",
            GatewayApi::Kubernetes => "kubernetes",
        }
    }
}

/// The label Istio puts on the Pods it deploys for a Gateway API `Gateway`: its name
/// (pilot/pkg/config/kube/gateway*/deploymentcontroller.go, `GatewayNameLabel`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            api: GatewayApi::Istio,
            existing: false,
            name: None,
            namespace: DEFAULT_GATEWAY_NAMESPACE.into(),
            labels: BTreeMap::from([("istio".into(), DEFAULT_GATEWAY_NAME.into())]),
            replicas: None,
            listener_port: None,
        }
    }
}

/// The gateway the output targets, resolved from `[clusterB.gateway]` (or the legacy
/// `clusterB.pluginListenerPort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateway {
    /// Generated: its objects are part of cluster B's output.
    Own {
        /// The API it is declared with.
        api: GatewayApi,
        /// Deployment, Service and ServiceAccount name (under the Gateway API: the `Gateway`'s
        /// name; Istio names what it deploys `<name>-istio`).
        name: String,
        /// Namespace.
        namespace: String,
        /// Pod labels (selector).
        labels: BTreeMap<String, String>,
        /// Replicas.
        replicas: u32,
    },
    /// A Gateway API Gateway of another owner, shared with other hosts: peergate adds a
    /// ListenerSet on a port of its own, and the owner adds that port's client-certificate
    /// validation and the plugin.
    ListenerSet {
        /// The owner's Gateway.
        gateway: String,
        /// Its namespace (the owner's plugin goes there).
        namespace: String,
        /// The labels Istio puts on its Pods (`gateway.networking.k8s.io/gateway-name`).
        labels: BTreeMap<String, String>,
        /// The ListenerSet's HTTPS port, which the partner calls.
        port: u16,
    },
    /// Shared with other hosts: only selected.
    Existing {
        /// Namespace of its Pods.
        namespace: String,
        /// Its Pods' labels.
        labels: BTreeMap<String, String>,
        /// Its listener port for Service port 443.
        listener_port: u16,
    },
}

/// Port of the generated gateway's Service (and listener: it binds it itself) for HTTPS.
pub const OWN_GATEWAY_HTTPS_PORT: u16 = 443;

impl Gateway {
    /// Namespace of the gateway Pods.
    pub fn namespace(&self) -> &str {
        match self {
            Gateway::Own { namespace, .. }
            | Gateway::Existing { namespace, .. }
            | Gateway::ListenerSet { namespace, .. } => namespace,
        }
    }

    /// Labels selecting them.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Gateway::Own { labels, .. }
            | Gateway::Existing { labels, .. }
            | Gateway::ListenerSet { labels, .. } => labels,
        }
    }

    /// The Deployment of a gateway of its own: peergate's, or the one Istio deploys for a
    /// Gateway API Gateway (`<name>-istio`).
    pub fn deployment_name(&self) -> Option<String> {
        match self {
            Gateway::Own {
                api: GatewayApi::Istio,
                name,
                ..
            } => Some(name.clone()),
            Gateway::Own {
                api: GatewayApi::Kubernetes,
                name,
                ..
            } => Some(format!("{name}-istio")),
            Gateway::Existing { .. } | Gateway::ListenerSet { .. } => None,
        }
    }

    /// Shared with other hosts (only the request layer tells ours from theirs).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Gateway::Own { .. })
    }

    /// The port the partner calls the domain on: 443, or the ListenerSet's own port.
    pub fn public_https_port(&self) -> u16 {
        match self {
            Gateway::ListenerSet { port, .. } => *port,
            _ => OWN_GATEWAY_HTTPS_PORT,
        }
    }

    /// The listener port Istio builds for the Gateway's port 443: the plugin's `match`.
    pub fn https_listener_port(&self) -> u16 {
        match self {
            Gateway::Own { .. } => OWN_GATEWAY_HTTPS_PORT,
            Gateway::Existing { listener_port, .. } => *listener_port,
            // Istio's Service for a Gateway API gateway maps each listener port to itself.
            Gateway::ListenerSet { port, .. } => *port,
        }
    }
}

/// A validity period written as `<n>h` or `<n>d` (e.g. `87600h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity(pub Duration);

impl Validity {
    /// Parses `<n>h` or `<n>d`.
    pub fn parse(text: &str) -> Option<Self> {
        let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
        let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
        let hours = match unit {
            "h" => n,
            "d" => n.checked_mul(24)?,
            _ => return None,
        };
        Some(Validity(Duration::from_secs(hours.checked_mul(3600)?)))
    }

    /// Whole hours.
    pub fn hours(self) -> u64 {
        self.0.as_secs() / 3600
    }
}

impl Serialize for Validity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}h", self.hours()))
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Validity::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid validity {text:?}: write a positive number of hours or days, like \"8760h\" or \"365d\""
            ))
        })
    }
}

/// The root CA both meshes agree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RootSection {
    /// Common name of the root.
    pub name: String,
    /// How long the root is valid.
    pub validity: Validity,
}

/// An issuing CA between the root and the leaves (`[intermediate]`): the root's key then
/// signs only it (and CRLs), and can stay offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IntermediateSection {
    /// Common name of the issuing CA (also its file name in `certs/`).
    pub name: String,
    /// How long the issuing CA is valid.
    pub validity: Validity,
}

impl Default for IntermediateSection {
    fn default() -> Self {
        Self {
            name: "a-b-issuing-ca".into(),
            validity: Validity(Duration::from_secs(43_800 * 3600)),
        }
    }
}

/// Cluster A: the client side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterASection {
    /// Name of the client certificate (file names, Secret names, CN).
    pub client_name: String,
    /// Namespace of the client workload.
    pub namespace: String,
    /// The client Deployment.
    pub deployment: String,
    /// Its ServiceAccount.
    pub service_account: String,
    /// Its image.
    pub image: String,
    /// The client's identity: SANs of its certificate (`spiffe://…` and other URIs, DNS names,
    /// IPs, `user@domain` emails). The gateway's policy allows exactly these.
    pub sans: Vec<String>,
    /// Validity of the client certificate.
    pub validity: Validity,
    /// `mounted` or `credentialName`.
    pub client_cert_mode: ClientCertMode,
}

/// Cluster B: the server side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterBSection {
    /// Name of the server certificate.
    pub server_name: String,
    /// The domain cluster A calls and the gateway serves.
    pub domain: String,
    /// Validity of the server certificate.
    pub validity: Validity,
    /// Namespace of the service.
    pub namespace: String,
    /// Name of the service (and its Deployment).
    pub service: String,
    /// Its image.
    pub image: String,
    /// Its port.
    pub port: u16,
    /// The gateway's allow-list: SAN patterns (exact, `*.domain`, `scheme://…/*`) of the clients
    /// it admits. Absent: exactly cluster A's client SANs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_sans: Option<Vec<String>>,
    /// Per-path rules for the domain (`[[clusterB.routes]]`: `pathPrefix`, `methods`,
    /// `allowedSans`, `allowedSubjects`), the pluginConfig's `routes`; they need the request
    /// layer, which `auto` then picks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<peergate_filter::config::RouteConfig>,
    /// A path no route matches is refused (`route_not_allowed`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub routes_only: bool,
    /// Deprecated: `[clusterB.gateway] existing = true` with this `listenerPort`, on
    /// istio-system's `istio: ingressgateway` (what it meant before gateways of their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_listener_port: Option<u16>,
    /// The gateway (`[clusterB.gateway]`); absent: a gateway of its own with the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySection>,
}

/// The WasmPlugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PluginSection {
    /// Where the gateway fetches the module (`oci://…`, `https://…` or `file://…`).
    pub url: String,
    /// SHA-256 of the module, hex, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `FAIL_CLOSE` (default), `FAIL_RELOAD`, or `FAIL_OPEN` (needs `allowFailOpen`).
    pub fail_strategy: FailStrategy,
    /// The explicit opt-in FAIL_OPEN needs.
    pub allow_fail_open: bool,
    /// `enforce` or `audit`.
    pub mode: peergate_filter::Mode,
    /// `auto` (the default: see [`Mesh::layer`]), `request` (an HTTP filter) or `connection`
    /// (a network filter, `type: NETWORK`, one decision per TLS connection).
    pub layer: LayerChoice,
    /// The module as an OCI image, `REF[@sha256:HEX]`: `url` becomes `oci://REF` and `sha256`
    /// the image's manifest digest (what Istio checks for `oci://` URLs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_image: Option<String>,
    /// The module over `https://` or `http://` (`sha256` becomes the module's own digest,
    /// computed from the built module) or `file://` (no digest: Istio ignores it there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_url: Option<String>,
    /// `wasmplugin` (default) or `trafficextension`.
    pub api: PluginApi,
    /// A Secret (in the plugin's namespace) with the credentials of a private registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// `IfNotPresent` or `Always`; absent: Istio's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Days before notAfter in which the filter flags a peer as expiring (pluginConfig
    /// `expiryWarningDays`) and `gen` warns about a certificate, with the command that renews it.
    pub expiry_warning_days: u32,
}

/// The whole of `mesh.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Mesh {
    /// The Istio release of the clusters (default: the newest the oracle is pinned to).
    pub istio_version: IstioVersion,
    /// A revision-based install's revision: namespaces and the gateway get `istio.io/rev`
    /// instead of the default injection labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_revision: Option<String>,
    /// Key algorithm of every key.
    pub key_type: KeyType,
    /// The agreed root CA.
    pub root: RootSection,
    /// An issuing CA under the root that signs the leaves; absent: the root signs them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate: Option<IntermediateSection>,
    /// The client cluster.
    pub cluster_a: ClusterASection,
    /// The server cluster.
    pub cluster_b: ClusterBSection,
    /// The WasmPlugin.
    pub plugin: PluginSection,
    /// Who issues the leaves: `static` (gen) or `cert-manager`.
    pub certificates: Certificates,
    /// cert-manager's issuer, with `certificates = "cert-manager"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerSection>,
    /// Alerts and a dashboard for the filter's counters; absent: none are written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSection>,
}

/// `[monitoring]`: a PrometheusRule (prometheus-operator) and a Grafana dashboard in a
/// ConfigMap, written into cluster B's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringSection {
    /// Write the PrometheusRule.
    pub alerts: bool,
    /// Write the dashboard ConfigMap.
    pub dashboard: bool,
    /// Namespace of both objects; absent: the gateway's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Denials per minute, over 5 minutes and held 10, above which `PeergateDenialsHigh` fires.
    pub denied_per_minute: u32,
    /// Labels on the PrometheusRule (what the Prometheus resource's `ruleSelector` selects,
    /// e.g. `{ release = "kube-prometheus-stack" }`).
    pub rule_labels: BTreeMap<String, String>,
    /// The label, set to "1", that the Grafana sidecar looks for on ConfigMaps.
    pub dashboard_label: String,
}

impl Default for MonitoringSection {
    fn default() -> Self {
        Self {
            alerts: true,
            dashboard: true,
            namespace: None,
            denied_per_minute: 6,
            rule_labels: BTreeMap::new(),
            dashboard_label: "grafana_dashboard".into(),
        }
    }
}

impl Mesh {
    /// The issuer cert-manager's Certificates name, and whether `gen` emits it (the default CA
    /// Issuer).
    pub fn issuer_ref(&self) -> (IssuerRef, bool) {
        match self
            .cert_manager
            .as_ref()
            .and_then(|c| c.issuer_ref.clone())
        {
            Some(issuer) => (issuer, false),
            None => (
                IssuerRef {
                    name: DEFAULT_ISSUER.into(),
                    kind: default_issuer_kind(),
                    group: default_issuer_group(),
                },
                true,
            ),
        }
    }
}

impl Default for RootSection {
    fn default() -> Self {
        Self {
            name: "a-b-root-ca".into(),
            validity: Validity(Duration::from_secs(87_600 * 3600)),
        }
    }
}

impl Default for ClusterASection {
    fn default() -> Self {
        Self {
            client_name: "cluster-a-client".into(),
            namespace: "client".into(),
            deployment: "sleep".into(),
            service_account: "sleep".into(),
            image: "curlimages/curl".into(),
            sans: vec!["spiffe://cluster-a/ns/client/sa/sleep".into()],
            validity: Validity(Duration::from_secs(8_760 * 3600)),
            client_cert_mode: ClientCertMode::Mounted,
        }
    }
}

impl Default for ClusterBSection {
    fn default() -> Self {
        Self {
            server_name: "cluster-b-server".into(),
            domain: "helloworld.zufar.io".into(),
            validity: Validity(Duration::from_secs(8_760 * 3600)),
            namespace: "service".into(),
            service: "helloworld".into(),
            image: "docker.io/istio/examples-helloworld-v1".into(),
            port: 5000,
            allowed_sans: None,
            routes: Vec::new(),
            routes_only: false,
            plugin_listener_port: None,
            gateway: None,
        }
    }
}

impl Default for PluginSection {
    fn default() -> Self {
        Self {
            url: "oci://registry.example.com/peergate/peergate-filter:0.1.0".into(),
            sha256: None,
            fail_strategy: FailStrategy::FailClose,
            allow_fail_open: false,
            mode: peergate_filter::Mode::Enforce,
            layer: LayerChoice::Auto,
            wasm_image: None,
            wasm_url: None,
            api: PluginApi::WasmPlugin,
            image_pull_secret: None,
            image_pull_policy: None,
            expiry_warning_days: peergate_filter::config::DEFAULT_EXPIRY_WARNING_DAYS,
        }
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            istio_version: IstioVersion::newest(),
            istio_revision: None,
            key_type: KeyType::Rsa2048,
            root: RootSection::default(),
            intermediate: None,
            cluster_a: ClusterASection::default(),
            cluster_b: ClusterBSection::default(),
            plugin: PluginSection::default(),
            certificates: Certificates::Static,
            cert_manager: None,
            monitoring: None,
        }
    }
}

/// Splits `REF[@sha256:HEX]` (an optional `oci://` in front) into the reference and the digest's
/// hex, checking both.
pub fn split_image_reference(image: &str) -> Result<(&str, Option<&str>), String> {
    let image = image.strip_prefix("oci://").unwrap_or(image);
    let (reference, digest) = match image.split_once('@') {
        Some((reference, digest)) => {
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or("the digest must be sha256:<64 hex digits>")?;
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err("the digest must be sha256:<64 lower-case hex digits>".into());
            }
            (reference, Some(hex))
        }
        None => (image, None),
    };
    if reference.is_empty()
        || reference.starts_with('/')
        || !reference.contains('/')
        || reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("expected registry/repository[:tag], e.g. ghcr.io/acme/peergate:0.1.0".into());
    }
    Ok((reference, digest))
}

/// A problem with the input, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// TOML syntax, an unknown key or a bad value.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, with the field.
        message: String,
    },
    /// A value that parses but makes no sense.
    #[error("{source_name}: {field}: {message}")]
    Invalid {
        /// The file, or `--flag` for command-line values.
        source_name: String,
        /// The field (`clusterB.domain`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Mesh {
    /// Reads `mesh.toml`.
    pub fn load(path: &Path) -> Result<Self, MeshError> {
        let text = std::fs::read_to_string(path).map_err(|e| MeshError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a `mesh.toml` (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, MeshError> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            MeshError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// The layer the filter runs at. `auto` picks the connection layer (one decision per TLS
    /// connection, cheaper per request than Envoy's native RBAC, see BENCHMARKS.md) wherever it
    /// decides exactly what the request layer would: on a gateway of peergate's own (on a
    /// shared one only the request layer can tell our host's requests from the others') and
    /// with an Envoy that has `connection.peer_certificate` (Istio 1.30; before it the request
    /// layer reads the certificate from XFCC). `gen` emits no `hosts`, `denyStatus` or
    /// `protectedServerNames` on a gateway of its own, the other things only the request layer
    /// can do.
    pub fn layer(&self, gateway: &Gateway) -> ChosenLayer {
        use peergate_filter::Layer;
        let (layer, why) = match self.plugin.layer {
            LayerChoice::Request => (Layer::Request, "plugin.layer = \"request\": an HTTP filter deciding every request; a refused peer gets a 403 with the reason"),
            LayerChoice::Connection => (Layer::Connection, "plugin.layer = \"connection\": a network filter deciding once per TLS connection; a refused peer's connection is closed"),
            LayerChoice::Auto if !self.cluster_b.routes.is_empty() => (Layer::Request, "auto: [[clusterB.routes]] judge each request's path and method, which only the request layer sees; a refused peer gets a 403 with the reason"),
            LayerChoice::Auto if gateway.is_shared() => (Layer::Request, "auto: the gateway is shared with other hosts, where only the request layer tells this host's requests from theirs; a refused peer gets a 403 with the reason"),
            LayerChoice::Auto if !self.istio_version.at_least(CONNECTION_LAYER_SINCE) => (Layer::Request, "auto: this Istio's Envoy has no connection.peer_certificate (first in Istio 1.30), so the request layer reads the certificate; a refused peer gets a 403 with the reason"),
            LayerChoice::Auto => (Layer::Connection, "auto: a gateway of its own on Istio 1.30 or newer, where one decision per TLS connection decides what the request layer would, for fewer instructions per request than Envoy's native RBAC; a refused peer's connection is closed (plugin.layer = \"request\" or --layer request for a 403 with the reason)"),
        };
        ChosenLayer { layer, why }
    }

    /// Checks what serde cannot: names usable as Kubernetes names, a domain, SANs the filter
    /// accepts as exact patterns, the fail-open opt-in. `source_name` says where values came
    /// from.
    pub fn validate(&self, source_name: &str) -> Result<(), MeshError> {
        let invalid = |field: &str, message: String| MeshError::Invalid {
            source_name: source_name.to_owned(),
            field: field.to_owned(),
            message,
        };
        self.check_pki_sections(&invalid)?;
        self.check_names(&invalid)?;
        self.check_plugin_source(&invalid)?;
        self.check_istio_release(&invalid)?;
        self.check_gateway_and_failure(&invalid)?;
        self.check_monitoring(&invalid)?;
        Ok(())
    }

    /// `[monitoring]`: Kubernetes names and labels, a threshold above zero.
    fn check_monitoring(
        &self,
        invalid: &dyn Fn(&str, String) -> MeshError,
    ) -> Result<(), MeshError> {
        let Some(m) = &self.monitoring else {
            return Ok(());
        };
        if let Some(ns) = &m.namespace {
            if !is_dns_label(ns) {
                return Err(invalid(
                    "monitoring.namespace",
                    format!("{ns:?} is not a Kubernetes namespace name"),
                ));
            }
        }
        if m.denied_per_minute == 0 {
            return Err(invalid(
                "monitoring.deniedPerMinute",
                "must be at least 1: the alert fires above it".into(),
            ));
        }
        let label_ok = |k: &str| {
            let name = k.rsplit('/').next().unwrap_or(k);
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !label_ok(&m.dashboard_label) {
            return Err(invalid(
                "monitoring.dashboardLabel",
                format!("{:?} is not a Kubernetes label key", m.dashboard_label),
            ));
        }
        if let Some((k, _)) = m
            .rule_labels
            .iter()
            .find(|(k, v)| !label_ok(k) || v.len() > 63)
        {
            return Err(invalid(
                &format!("monitoring.ruleLabels.{k}"),
                "is not a Kubernetes label (key and value at most 63 characters)".into(),
            ));
        }
        if !m.alerts && !m.dashboard {
            return Err(invalid(
                "monitoring",
                "alerts and dashboard are both false: remove [monitoring] instead".into(),
            ));
        }
        Ok(())
    }

    /// `[certManager]` only with cert-manager, and an issuing CA that fits under the root.
    fn check_pki_sections(
        &self,
        invalid: &dyn Fn(&str, String) -> MeshError,
    ) -> Result<(), MeshError> {
        if let Some(section) = &self.cert_manager {
            if self.certificates != Certificates::CertManager {
                return Err(invalid(
                    "certManager",
                    "is read only with certificates = \"cert-manager\"".into(),
                ));
            }
            if let Some(issuer) = &section.issuer_ref {
                if !is_domain(&issuer.name) && !is_dns_label(&issuer.name) {
                    return Err(invalid(
                        "certManager.issuerRef.name",
                        format!("{:?} is not a Kubernetes object name", issuer.name),
                    ));
                }
                if issuer.kind.is_empty() || !issuer.kind.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err(invalid(
                        "certManager.issuerRef.kind",
                        format!(
                            "{:?} is not a Kubernetes kind (Issuer, ClusterIssuer, StepIssuer, …)",
                            issuer.kind
                        ),
                    ));
                }
                if !is_domain(&issuer.group) {
                    return Err(invalid(
                        "certManager.issuerRef.group",
                        format!(
                            "{:?} is not an API group (cert-manager.io, certmanager.step.sm, …)",
                            issuer.group
                        ),
                    ));
                }
            }
        }
        if let Some(intermediate) = &self.intermediate {
            if !is_dns_label(&intermediate.name) {
                return Err(invalid(
                    "intermediate.name",
                    format!("{:?} is not a Kubernetes name (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit): it names files in certs/", intermediate.name),
                ));
            }
            for (other, name) in [
                ("root.name", &self.root.name),
                ("clusterA.clientName", &self.cluster_a.client_name),
                ("clusterB.serverName", &self.cluster_b.server_name),
            ] {
                if intermediate.name == *name {
                    return Err(invalid(
                        "intermediate.name",
                        format!(
                            "{name:?} is also {other}: their files in certs/ would be the same"
                        ),
                    ));
                }
            }
            if intermediate.validity.0 > self.root.validity.0 {
                return Err(invalid(
                    "intermediate.validity",
                    "is longer than root.validity: the issuing CA would outlive the root".into(),
                ));
            }
        }
        Ok(())
    }

    /// Names usable as Kubernetes names, the domain, the leaves' validity, the port, the SANs.
    fn check_names(&self, invalid: &dyn Fn(&str, String) -> MeshError) -> Result<(), MeshError> {
        for (field, value) in [
            ("root.name", &self.root.name),
            ("clusterA.clientName", &self.cluster_a.client_name),
            ("clusterA.namespace", &self.cluster_a.namespace),
            ("clusterA.deployment", &self.cluster_a.deployment),
            ("clusterA.serviceAccount", &self.cluster_a.service_account),
            ("clusterB.serverName", &self.cluster_b.server_name),
            ("clusterB.namespace", &self.cluster_b.namespace),
            ("clusterB.service", &self.cluster_b.service),
        ] {
            if !is_dns_label(value) {
                return Err(invalid(
                    field,
                    format!("{value:?} is not a Kubernetes name (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)"),
                ));
            }
        }
        if !is_domain(&self.cluster_b.domain) {
            return Err(invalid(
                "clusterB.domain",
                format!("{:?} is not a DNS name", self.cluster_b.domain),
            ));
        }
        for (field, value) in [
            ("clusterA.image", &self.cluster_a.image),
            ("clusterB.image", &self.cluster_b.image),
        ] {
            if value.is_empty() || value.chars().any(char::is_whitespace) {
                return Err(invalid(
                    field,
                    format!("{value:?} is not an image reference"),
                ));
            }
        }
        for (field, leaf) in [
            ("clusterA.validity", self.cluster_a.validity),
            ("clusterB.validity", self.cluster_b.validity),
        ] {
            if leaf.0 > self.root.validity.0 {
                return Err(invalid(
                    field,
                    format!(
                        "{}h is longer than root.validity ({}h): the root would expire first and take the certificate with it",
                        leaf.hours(),
                        self.root.validity.hours()
                    ),
                ));
            }
        }
        if self.cluster_b.port == 0 {
            return Err(invalid("clusterB.port", "0 is not a port".into()));
        }
        self.check_sans(invalid)
    }

    /// Cluster A's SANs (at least one, each an exact pattern the filter accepts) and the
    /// gateway's allow-list.
    fn check_sans(&self, invalid: &dyn Fn(&str, String) -> MeshError) -> Result<(), MeshError> {
        if self.cluster_a.sans.is_empty() {
            return Err(invalid(
                "clusterA.sans",
                "the client needs at least one SAN: it is how the gateway tells clients apart"
                    .into(),
            ));
        }
        for (i, san) in self.cluster_a.sans.iter().enumerate() {
            match peergate_filter::pattern::SanPattern::parse(san) {
                Ok(p) if p.is_pattern() => {
                    return Err(invalid(
                        &format!("clusterA.sans[{i}]"),
                        format!("{san:?} is a pattern; a certificate SAN must be a plain name"),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(invalid(&format!("clusterA.sans[{i}]"), e.to_string())),
            }
            if !san.is_ascii() {
                return Err(invalid(
                    &format!("clusterA.sans[{i}]"),
                    format!("{san:?}: SANs must be ASCII (IA5String)"),
                ));
            }
        }
        self.check_routes(invalid)?;
        if let Some(allowed) = &self.cluster_b.allowed_sans {
            if allowed.is_empty() {
                return Err(invalid(
                    "clusterB.allowedSans",
                    "empty: leave it out to allow cluster A's client".into(),
                ));
            }
            if let Err((i, e)) = peergate_filter::pattern::SanAllowList::parse(allowed) {
                return Err(invalid(
                    &format!("clusterB.allowedSans[{i}]"),
                    e.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// `[[clusterB.routes]]`: what the filter compiles, each error naming the mesh.toml key.
    fn check_routes(&self, invalid: &dyn Fn(&str, String) -> MeshError) -> Result<(), MeshError> {
        use peergate_filter::routes::{compile, RouteError};
        let names = |index: usize, route: &peergate_filter::config::RouteConfig| {
            let at = |list: &str, i: usize| format!("clusterB.routes[{index}].{list}[{i}]");
            if let Some(sans) = &route.allowed_sans {
                peergate_filter::pattern::SanAllowList::parse(sans)
                    .map_err(|(i, e)| FieldError(at("allowedSans", i), e.to_string()))?;
            }
            if let Some(subjects) = &route.allowed_subjects {
                peergate_filter::subject::SubjectAllowList::parse(subjects)
                    .map_err(|(i, e)| FieldError(at("allowedSubjects", i), e.to_string()))?;
            }
            Ok::<Option<()>, FieldError>(None)
        };
        match compile(&self.cluster_b.routes, self.cluster_b.routes_only, names) {
            Ok(_) => Ok(()),
            Err(RouteError::Names(FieldError(field, message))) => Err(invalid(&field, message)),
            Err(other) => {
                let text = other.to_string();
                let (field, message) = text.split_once(": ").unwrap_or(("routes", &text));
                Err(invalid(&format!("clusterB.{field}"), message.to_owned()))
            }
        }
    }

    /// Where the module comes from: one source, a usable URL or image, a digest of the right form.
    fn check_plugin_source(
        &self,
        invalid: &dyn Fn(&str, String) -> MeshError,
    ) -> Result<(), MeshError> {
        if self.plugin.wasm_image.is_some() && self.plugin.wasm_url.is_some() {
            return Err(invalid(
                "plugin.wasmImage",
                "give plugin.wasmImage or plugin.wasmUrl, not both".into(),
            ));
        }
        if let Some(image) = &self.plugin.wasm_image {
            if let Err(why) = split_image_reference(image) {
                return Err(invalid("plugin.wasmImage", format!("{image:?}: {why}")));
            }
        }
        if let Some(url) = &self.plugin.wasm_url {
            if !["https://", "http://", "file://"]
                .iter()
                .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len())
            {
                return Err(invalid(
                    "plugin.wasmUrl",
                    format!("{url:?}: use an https://, http:// or file:// URL (oci:// images go in plugin.wasmImage)"),
                ));
            }
        }
        if self.plugin.url.is_empty()
            || !["oci://", "https://", "http://", "file://"]
                .iter()
                .any(|scheme| self.plugin.url.starts_with(scheme))
        {
            return Err(invalid(
                "plugin.url",
                format!(
                    "{:?}: use an oci://, https://, http:// or file:// URL",
                    self.plugin.url
                ),
            ));
        }
        if let Some(sha) = &self.plugin.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(invalid(
                    "plugin.sha256",
                    format!("{sha:?} is not 64 lower-case hex digits (Istio's CRD requires ^[a-f0-9]{{64}}$)"),
                ));
            }
        }
        Ok(())
    }

    /// The Istio release and its feature gates, the revision, the image pull Secret.
    fn check_istio_release(
        &self,
        invalid: &dyn Fn(&str, String) -> MeshError,
    ) -> Result<(), MeshError> {
        // A feature's own release first: it says more than the oldest supported one.
        for gate in &FEATURE_GATES {
            if let Some(value) = (gate.asked)(self) {
                if !self.istio_version.at_least(gate.since) {
                    return Err(invalid(
                        gate.field,
                        format!(
                            "{value} needs Istio 1.{} or later ({}); istioVersion is {}",
                            gate.since, gate.why, self.istio_version
                        ),
                    ));
                }
            }
        }
        if !self.istio_version.at_least(OLDEST_ISTIO_MINOR) {
            return Err(invalid(
                "istioVersion",
                format!(
                    "{} is older than Istio 1.{OLDEST_ISTIO_MINOR}, the oldest release peergate is tested with",
                    self.istio_version
                ),
            ));
        }
        if let Some(revision) = &self.istio_revision {
            if !is_dns_label(revision) {
                return Err(invalid(
                    "istioRevision",
                    format!(
                        "{revision:?} is not a revision name (lower-case letters, digits and '-')"
                    ),
                ));
            }
        }
        if let Some(secret) = &self.plugin.image_pull_secret {
            if !is_dns_subdomain(secret) {
                return Err(invalid(
                    "plugin.imagePullSecret",
                    format!("{secret:?} is not a Secret name"),
                ));
            }
        }
        Ok(())
    }

    /// The gateway (a connection layer only on one of its own) and the fail-open opt-in.
    fn check_gateway_and_failure(
        &self,
        invalid: &dyn Fn(&str, String) -> MeshError,
    ) -> Result<(), MeshError> {
        let gateway = self
            .gateway()
            .map_err(|(field, message)| invalid(&field, message))?;
        if !self.cluster_b.routes.is_empty() && self.plugin.layer == LayerChoice::Connection {
            return Err(invalid(
                "plugin.layer",
                "connection with [[clusterB.routes]]: a network filter never sees a request's path or method; use layer = \"request\" or \"auto\"".into(),
            ));
        }
        if gateway.is_shared() && self.plugin.layer == LayerChoice::Connection {
            return Err(invalid(
                "plugin.layer",
                "connection on an existing, shared gateway: a connection opened for another team's host would pass the network filter untouched and could then carry requests for yours (HTTP/2 connection coalescing does); use layer = \"request\" there (every request is decided by its server name and its authority), or a gateway of its own".into(),
            ));
        }
        // The Pods Istio deploys for a Gateway API Gateway: istiod refuses their ServiceAccount
        // a classic credential (Istio applies no Role for it), and from 1.31 merges no classic
        // Gateway of another namespace into them (PILOT_ENABLE_STRICT_GATEWAY_MERGING).
        if let Gateway::Existing { labels, .. } = &gateway {
            if labels.contains_key(GATEWAY_NAME_LABEL) {
                return Err(invalid(
                    "clusterB.gateway.labels",
                    format!("{GATEWAY_NAME_LABEL} selects Pods that Istio deploys for a Gateway API Gateway: istiod would refuse their ServiceAccount the credential (Istio binds it no Role to read Secrets), and from Istio 1.31 (strict gateway merging) a classic Gateway outside that Gateway's namespace is not merged at all, so this output would serve nothing there. Use api = \"kubernetes\" with existing = true, name and listenerPort: a ListenerSet on that Gateway (README, \"An existing gateway under the Gateway API\")"),
                ));
            }
        }
        if self.plugin.fail_strategy == FailStrategy::FailOpen && !self.plugin.allow_fail_open {
            return Err(invalid(
                "plugin.failStrategy",
                "FAIL_OPEN skips the policy silently after a trap; set plugin.allowFailOpen = true (or --allow-fail-open) if you really want it".into(),
            ));
        }
        Ok(())
    }

    /// The SAN patterns the gateway admits.
    pub fn allowed_sans(&self) -> Vec<String> {
        self.cluster_b
            .allowed_sans
            .clone()
            .unwrap_or_else(|| self.cluster_a.sans.clone())
    }

    /// The Secret holding the gateway's credential (`<server>-cert`).
    pub fn server_secret_name(&self) -> String {
        format!("{}-cert", self.cluster_b.server_name)
    }

    /// Where cluster B's credential lives: with the gateway Pods (Istio's SDS reads it there),
    /// or for a ListenerSet on another owner's Gateway in the backend's namespace, where Istio
    /// resolves the ListenerSet's references.
    pub fn credential_namespace<'a>(&'a self, gateway: &'a Gateway) -> &'a str {
        match gateway {
            Gateway::ListenerSet { .. } => &self.cluster_b.namespace,
            _ => gateway.namespace(),
        }
    }

    /// The Secret holding the client's certificate in cluster A.
    pub fn client_secret_name(&self) -> String {
        format!("{}-cert", self.cluster_a.client_name)
    }

    /// The gateway the output targets: `[clusterB.gateway]`, or the legacy
    /// `clusterB.pluginListenerPort` (istio-system's shared `istio: ingressgateway`, scoped to
    /// that port), or by default a gateway of its own. Errors name the field.
    pub fn gateway(&self) -> Result<Gateway, (String, String)> {
        let b = &self.cluster_b;
        let err = |field: &str, message: String| Err((field.to_owned(), message));
        let section = match (&b.gateway, b.plugin_listener_port) {
            (Some(_), Some(_)) => return err(
                "clusterB.pluginListenerPort",
                "replaced by [clusterB.gateway] (existing = true, listenerPort = ...): remove it"
                    .into(),
            ),
            (None, Some(port)) => GatewaySection {
                existing: true,
                namespace: "istio-system".into(),
                labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
                listener_port: Some(port),
                ..GatewaySection::default()
            },
            (Some(section), None) => section.clone(),
            (None, None) => GatewaySection::default(),
        };
        if !is_dns_label(&section.namespace) {
            return err(
                "clusterB.gateway.namespace",
                format!("{:?} is not a namespace name", section.namespace),
            );
        }
        if section.labels.is_empty() {
            return err(
                "clusterB.gateway.labels",
                "empty: the Gateway and the plugin select the gateway Pods by these labels".into(),
            );
        }
        for (key, value) in &section.labels {
            if !is_label_key(key) || !is_label_value(value) {
                return err(
                    "clusterB.gateway.labels",
                    format!("{key:?} = {value:?} is not a Kubernetes label"),
                );
            }
        }
        match (section.existing, section.api) {
            (true, GatewayApi::Istio) => existing_gateway(section),
            (true, GatewayApi::Kubernetes) => listener_set(section),
            (false, GatewayApi::Istio) => own_gateway(section),
            (false, GatewayApi::Kubernetes) => kubernetes_gateway(section),
        }
    }
}

/// `[clusterB.gateway]` with `existing = true`: selected by namespace and labels, its listener
/// port given. Errors name the field.
fn existing_gateway(section: GatewaySection) -> Result<Gateway, (String, String)> {
    let err = |field: &str, message: String| Err((field.to_owned(), message));
    for (field, set) in [
        ("clusterB.gateway.name", section.name.is_some()),
        ("clusterB.gateway.replicas", section.replicas.is_some()),
    ] {
        if set {
            return err(field, "only for a gateway of its own: an existing gateway is selected by namespace and labels".into());
        }
    }
    let Some(listener_port) = section.listener_port.filter(|p| *p != 0) else {
        return err(
            "clusterB.gateway.listenerPort",
            "required for an existing gateway: the port Istio builds for its Service port 443, the Service's targetPort (kubectl -n NAMESPACE get service -l LABEL=VALUE -o jsonpath='{.items[*].spec.ports[?(@.port==443)].targetPort}'; 8443 for istioctl's istio-ingressgateway, 443 for the istio/gateway chart)".into(),
        );
    };
    Ok(Gateway::Existing {
        namespace: section.namespace,
        labels: section.labels,
        listener_port,
    })
}

/// `existing = true` under the Gateway API: the owner's Gateway (`name`, `namespace`) and the
/// port of peergate's ListenerSet (`listenerPort`). Errors name the field.
fn listener_set(section: GatewaySection) -> Result<Gateway, (String, String)> {
    let err = |field: &str, message: String| Err((field.to_owned(), message));
    if section.labels != GatewaySection::default().labels {
        return err(
            "clusterB.gateway.labels",
            format!("does not apply under api = \"kubernetes\": the owner's Gateway is named by name and namespace, and Istio labels its Pods itself ({GATEWAY_NAME_LABEL})"),
        );
    }
    if section.replicas.is_some() {
        return err(
            "clusterB.gateway.replicas",
            "only for a gateway of its own: the existing Gateway's Deployment is its owner's"
                .into(),
        );
    }
    let Some(gateway) = section.name.filter(|n| is_dns_label(n)) else {
        return err(
            "clusterB.gateway.name",
            "required for an existing Gateway API gateway: the name of the owner's Gateway (kubectl get gateways -A), a Kubernetes name".into(),
        );
    };
    let port = match section.listener_port {
        Some(port) if port != 0 && port != 80 => port,
        _ => return err(
            "clusterB.gateway.listenerPort",
            "required for an existing Gateway API gateway, not 0 or 80: the port of peergate's ListenerSet, which the partner calls and the owner's spec.tls.frontend.perPort entry validates; a port no other host of the Gateway listens on, since that validation holds for every listener of the port".into(),
        ),
    };
    let labels = BTreeMap::from([(GATEWAY_NAME_LABEL.to_owned(), gateway.clone())]);
    Ok(Gateway::ListenerSet {
        gateway,
        namespace: section.namespace,
        labels,
        port,
    })
}

/// A gateway of its own: its name and replicas (the listener port is its own). Errors name the
/// field.
fn own_gateway(section: GatewaySection) -> Result<Gateway, (String, String)> {
    let (name, replicas) = own_name_and_replicas(&section)?;
    Ok(Gateway::Own {
        api: GatewayApi::Istio,
        name,
        namespace: section.namespace,
        labels: section.labels,
        replicas,
    })
}

/// A gateway of its own declared with the Gateway API: Istio deploys it and labels its Pods,
/// so `labels` do not apply. Errors name the field.
fn kubernetes_gateway(section: GatewaySection) -> Result<Gateway, (String, String)> {
    if section.labels != GatewaySection::default().labels {
        return Err((
            "clusterB.gateway.labels".into(),
            format!("does not apply under api = \"kubernetes\": Istio labels the Pods it deploys for the Gateway itself ({GATEWAY_NAME_LABEL}: <name>), and the plugin attaches to the Gateway by targetRefs"),
        ));
    }
    let (name, replicas) = own_name_and_replicas(&section)?;
    // Istio names the Deployment, Service and ServiceAccount `<name>-istio`.
    if name.len() + "-istio".len() > 63 {
        return Err((
            "clusterB.gateway.name".into(),
            format!("{name:?} is too long: Istio names what it deploys {name}-istio, at most 63 characters"),
        ));
    }
    let labels = BTreeMap::from([(GATEWAY_NAME_LABEL.to_owned(), name.clone())]);
    Ok(Gateway::Own {
        api: GatewayApi::Kubernetes,
        name,
        namespace: section.namespace,
        labels,
        replicas,
    })
}

/// The name and replicas of a gateway of its own (which has no `listenerPort`).
fn own_name_and_replicas(section: &GatewaySection) -> Result<(String, u32), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_owned(), message));
    if section.listener_port.is_some() {
        return err(
            "clusterB.gateway.listenerPort",
            format!("only for an existing gateway (existing = true): the generated gateway listens on {OWN_GATEWAY_HTTPS_PORT} itself"),
        );
    }
    let name = section
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_GATEWAY_NAME.to_owned());
    if !is_dns_label(&name) {
        return err(
            "clusterB.gateway.name",
            format!("{name:?} is not a Kubernetes name"),
        );
    }
    let replicas = section.replicas.unwrap_or(DEFAULT_GATEWAY_REPLICAS);
    if replicas == 0 {
        return err(
            "clusterB.gateway.replicas",
            "0 replicas would leave the partner's traffic nowhere to go".into(),
        );
    }
    Ok((name, replicas))
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

/// A mesh.toml key and what is wrong with it.
#[derive(Debug)]
struct FieldError(String, String);

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

/// RFC 1123 label, as Kubernetes names most objects.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain, as Kubernetes names Secrets.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A label value: at most 63 of letters, digits, `-`, `_` and `.`, starting and ending with a
/// letter or digit (or empty).
fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_reference_scenario() {
        let mesh = Mesh::parse("", Path::new("mesh.toml")).unwrap();
        assert_eq!(mesh, Mesh::default());
        assert_eq!(mesh.root.validity.hours(), 87_600);
        mesh.validate("mesh.toml").unwrap();
    }

    #[test]
    fn unknown_key_names_file_line_and_field() {
        let text = "keyType = \"ed25519\"\n[clusterB]\ndomian = \"x.io\"\n";
        let err = Mesh::parse(text, Path::new("mesh.toml")).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("mesh.toml:3:1: "), "{message}");
        assert!(message.contains("unknown field `domian`"), "{message}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = Mesh::parse("keyType = \"rsa1024\"\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("m.toml:1:11"), "{err}");
        assert!(err.to_string().contains("rsa1024"), "{err}");
        let err = Mesh::parse("[root]\nvalidity = \"10y\"\n", Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("m.toml:2:"), "{err}");
        assert!(err.to_string().contains("invalid validity"), "{err}");
    }

    #[test]
    fn semantic_checks() {
        let mut mesh = Mesh::default();
        mesh.cluster_b.domain = "no_dots".into();
        assert!(mesh
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("clusterB.domain"));
        let mut mesh = Mesh::default();
        mesh.cluster_a.sans = vec!["spiffe://a/*".into()];
        assert!(mesh
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("clusterA.sans[0]"));
        let mut mesh = Mesh::default();
        mesh.plugin.fail_strategy = FailStrategy::FailOpen;
        assert!(mesh
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("allowFailOpen"));
        mesh.plugin.allow_fail_open = true;
        mesh.validate("f").unwrap();
        let mut mesh = Mesh::default();
        mesh.cluster_a.namespace = "Client".into();
        assert!(mesh
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("clusterA.namespace"));
    }

    #[test]
    fn display_names_are_the_file_names() {
        use KeyType::*;
        for k in [Rsa2048, Rsa3072, Rsa4096, EcdsaP256, EcdsaP384, Ed25519] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
        use FailStrategy::*;
        for f in [FailClose, FailReload, FailOpen] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }

    #[test]
    fn istio_versions() {
        assert_eq!(
            IstioVersion::parse("1.28"),
            Some(IstioVersion {
                minor: 28,
                patch: None
            })
        );
        assert_eq!(
            IstioVersion::parse("v1.28.2"),
            Some(IstioVersion {
                minor: 28,
                patch: Some(2)
            })
        );
        for bad in ["", "1", "1.", "2.0", "1.28.2.1", "1.x", "1.-3", "1.28-rc.1"] {
            assert_eq!(IstioVersion::parse(bad), None, "{bad}");
        }
        assert_eq!(IstioVersion::parse("1.29.6").unwrap().to_string(), "1.29.6");
        assert!(IstioVersion::newest().at_least(30));
        // Every gate's feature is refused before its release and accepted from it.
        for gate in &FEATURE_GATES {
            let mut mesh = Mesh::default();
            match gate.field {
                "plugin.layer" => mesh.plugin.layer = LayerChoice::Connection,
                "plugin.api" => mesh.plugin.api = PluginApi::TrafficExtension,
                "clusterB.gateway.existing" => {
                    mesh.cluster_b.gateway = Some(GatewaySection {
                        api: GatewayApi::Kubernetes,
                        existing: true,
                        name: Some("shared".into()),
                        listener_port: Some(8443),
                        ..GatewaySection::default()
                    });
                }
                "clusterB.gateway.api" => {
                    mesh.cluster_b.gateway = Some(GatewaySection {
                        api: GatewayApi::Kubernetes,
                        ..GatewaySection::default()
                    });
                }
                other => panic!("a gate this test does not know: {other}"),
            }
            mesh.istio_version = IstioVersion {
                minor: gate.since - 1,
                patch: Some(9),
            };
            let err = mesh.validate("f").unwrap_err().to_string();
            assert!(err.contains(gate.field), "{err}");
            assert!(
                err.contains(&format!("needs Istio 1.{}", gate.since)),
                "{err}"
            );
            mesh.istio_version = IstioVersion {
                minor: gate.since,
                patch: None,
            };
            mesh.validate("f").unwrap();
        }
    }

    #[test]
    fn gateways() {
        let own = Mesh::default().gateway().unwrap();
        assert_eq!(own.namespace(), DEFAULT_GATEWAY_NAMESPACE);
        assert_eq!(own.https_listener_port(), 443);
        assert_eq!(own.deployment_name().unwrap(), DEFAULT_GATEWAY_NAME);
        let mut kube = Mesh::default();
        kube.cluster_b.gateway = Some(GatewaySection {
            api: GatewayApi::Kubernetes,
            ..GatewaySection::default()
        });
        let kube = kube.gateway().unwrap();
        assert_eq!(kube.https_listener_port(), 443);
        assert_eq!(
            kube.deployment_name().unwrap(),
            format!("{DEFAULT_GATEWAY_NAME}-istio")
        );
        assert_eq!(
            kube.labels(),
            &BTreeMap::from([(
                GATEWAY_NAME_LABEL.to_owned(),
                DEFAULT_GATEWAY_NAME.to_owned()
            )])
        );
        let mut legacy = Mesh::default();
        legacy.cluster_b.plugin_listener_port = Some(8443);
        assert_eq!(
            legacy.gateway().unwrap(),
            Gateway::Existing {
                namespace: "istio-system".into(),
                labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
                listener_port: 8443,
            }
        );
        let text = "[clusterB.gateway]\nexisting = true\nnamespace = \"gw\"\nlabels = { app = \"edge\" }\nlistenerPort = 443\nreplicas = 2\n";
        let mesh = Mesh::parse(text, Path::new("m.toml")).unwrap();
        let (field, message) = mesh.gateway().unwrap_err();
        assert_eq!(field, "clusterB.gateway.replicas");
        assert!(
            message.contains("only for a gateway of its own"),
            "{message}"
        );
    }

    #[test]
    fn validity_parsing() {
        assert_eq!(Validity::parse("8760h").unwrap().hours(), 8760);
        assert_eq!(Validity::parse("365d").unwrap().hours(), 8760);
        for bad in ["", "h", "0h", "-1h", "1y", "1.5h"] {
            assert!(Validity::parse(bad).is_none(), "{bad}");
        }
    }
}
