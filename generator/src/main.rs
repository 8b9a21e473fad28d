//! The `peergate` command line: argument types here, the work in the library.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use peergate::gen::CertStatus;
use peergate::mesh::{ClientCertMode, FailStrategy, KeyType};
use peergate::output::FileStatus;
use peergate::render::Style;
use peergate::{generate, GenOptions, Mesh};
use peergate_filter::decision_log::Verdict;
use peergate_filter::inspect::CertificateInfo;

#[derive(Parser)]
#[command(
    name = "peergate",
    version,
    about = "Mutual TLS between two Istio meshes, strict at the gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the root CA, the client and server certificates, and every object of both
    /// clusters.
    Gen(GenArgs),
    /// Would this peer get in, and why not? Runs the filter's policy on a certificate or an
    /// x-forwarded-client-cert value; or summarises the filter's decisions in gateway logs.
    /// Exit status: 0 allowed, 1 denied, 2 bad input.
    Audit(AuditArgs),
    /// Show what a certificate says: names, validity, key, fingerprints.
    Inspect(InspectArgs),
    /// Call the gateway as cluster A's sidecar does and say, step by step, what happened and
    /// what refused the request. Exit status: 0 answered, 1 refused, 2 bad input.
    Probe(ProbeArgs),
    /// Write the filter module as an OCI image layout Istio can pull (no Docker needed) and
    /// print its manifest digest, the WasmPlugin's sha256 for an oci:// url.
    Image(ImageArgs),
    /// Revoke a certificate: add it to the CRL of the CA that issued it (certs/<ca>-crl.pem)
    /// and write the CRLs into the WasmPlugin's crls and the gateway credential's ca.crl.
    Revoke(RevokeArgs),
    /// Rotate the root without downtime, one stage at a time (trust, reissue, retire), each a
    /// gen-style run that rewrites the output; a stage out of order is refused (exit 2).
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
struct RotateArgs {
    /// trust: a new root beside the old, trusted everywhere; reissue: the leaves under the new
    /// root; retire: the old root removed everywhere.
    #[arg(long, value_enum)]
    stage: peergate::gen::Stage,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["cert", "serial"])))]
struct RevokeArgs {
    /// The certificate to revoke (PEM); its issuer says whose CRL it goes on.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The serial number to revoke (hex, colons allowed), on the CRL of the CA that signs
    /// leaves (the issuing CA, else the root).
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
    /// Why (RFC 5280 reason code).
    #[arg(long, value_enum)]
    reason: Option<peergate::revocation::Reason>,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(clap::Args)]
struct ImageArgs {
    /// The module (cargo make build-filter writes it).
    #[arg(long, value_name = "FILE")]
    wasm: PathBuf,
    /// The OCI image layout directory to write (created or updated).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// compat: plugin.wasm in a tar+gzip layer (any registry, any Istio); wasm: the Wasm image
    /// variant (module as the content layer).
    #[arg(long, value_enum, default_value_t = peergate::image::Variant::Compat)]
    variant: peergate::image::Variant,
    /// The image's name inside the layout (skopeo: oci:DIR:TAG).
    #[arg(long, default_value = "latest")]
    tag: String,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["cert", "xfcc", "logs"])))]
struct AuditArgs {
    /// The policy: a WasmPlugin YAML file, a folder holding one (such as manifests/cluster-b),
    /// or a pluginConfig JSON file.
    #[arg(
        long,
        value_name = "POLICY",
        required_unless_present = "logs",
        conflicts_with = "logs"
    )]
    policy: Option<PathBuf>,
    /// The peer's certificate: a PEM file (a bundle audits each certificate) or DER; `-` reads
    /// standard input.
    #[arg(long, value_name = "PEM")]
    cert: Option<String>,
    /// An x-forwarded-client-cert header value: every Cert= in it is audited.
    #[arg(long, value_name = "VALUE")]
    xfcc: Option<String>,
    /// The request's :authority (selects a hosts rule).
    #[arg(long, value_name = "AUTHORITY", conflicts_with = "logs")]
    host: Option<String>,
    /// The request's :path (chooses a route, as the filter judges it: query and all).
    #[arg(long, value_name = "PATH", conflicts_with = "logs")]
    path: Option<String>,
    /// The request's :method (with --path; default GET).
    #[arg(
        long,
        value_name = "METHOD",
        requires = "path",
        conflicts_with = "logs"
    )]
    method: Option<String>,
    /// Audit as of this time: RFC 3339 (2027-01-31T12:00:00Z) or a date (2027-01-31, midnight
    /// UTC). Default: now.
    #[arg(long, value_name = "TIME", conflicts_with = "logs")]
    at: Option<String>,
    /// Summarise the filter's decision lines in a gateway log (as `kubectl logs` prints it);
    /// `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    logs: Option<String>,
    /// Print JSON (the format is documented in the README).
    #[arg(long)]
    json: bool,
    /// Exit 1 also when an audited certificate is inside the policy's `expiryWarningDays`
    /// (for a job that checks partners' certificates).
    #[arg(long, conflicts_with = "logs")]
    fail_expiring: bool,
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// The URL to request (https://HOST[:PORT]/PATH, or http:// to test a plain port).
    /// Default with --from: the generated host, port and /hello.
    #[arg(value_name = "URL", required_unless_present = "from")]
    url: Option<String>,
    /// The client certificate (PEM, leaf first; a chain may follow).
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// The agreed root (PEM): the server's chain must verify to it.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The TLS server name to send and to check in the server's certificate (default: the
    /// URL's host).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// The HTTP Host header (default: the URL's host).
    #[arg(long, value_name = "AUTHORITY")]
    host: Option<String>,
    /// Dial this address instead of the URL's (as curl's --connect-to), e.g. the gateway's
    /// load balancer: HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// Play cluster A's sidecar from a generated output folder: its client certificate,
    /// agreed root, server name, host and port (flags override each).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// A PEM file (every certificate in it) or a DER certificate; `-` reads standard input.
    #[arg(value_name = "PEM")]
    file: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parses a flag value by its `mesh.toml` spelling, so flags and file take the same values
/// and the names are defined once (by the types' serde attributes).
fn mesh_value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::IntoDeserializer;
    let de: StrDeserializer<'_, Error> = text.into_deserializer();
    T::deserialize(de).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct GenArgs {
    /// The mesh description; without it, ./mesh.toml if present, else the reference scenario.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output folder.
    #[arg(long, value_name = "DIR", default_value = "manifests")]
    out: PathBuf,
    /// Replace existing certificates and keys (all are issued anew). With `revoke`: allow
    /// revoking a certificate of the current output (it is reissued).
    #[arg(long)]
    force: bool,
    /// The root's private key, kept outside the output (read to sign; a new one is written
    /// there; never copied into certs/).
    #[arg(long, value_name = "PATH")]
    root_key: Option<PathBuf>,
    /// An issuing CA under the root signs the leaves ([intermediate] name).
    #[arg(long, value_name = "NAME")]
    intermediate: Option<String>,
    /// Issue this certificate anew under its current CA (a leaf, or the issuing CA with the
    /// leaves it signs); repeatable. The root is renewed by `peergate rotate`.
    #[arg(long, value_name = "NAME")]
    renew: Vec<String>,
    /// The server's domain (clusterB.domain).
    #[arg(long)]
    domain: Option<String>,
    /// Key type of every key (keyType): rsa2048, rsa3072, rsa4096, ecdsa-p256, ecdsa-p384,
    /// ed25519.
    #[arg(long, value_parser = mesh_value::<KeyType>)]
    key_type: Option<KeyType>,
    /// The client's SANs, repeatable (clusterA.sans).
    #[arg(long = "client-san", value_name = "SAN")]
    client_sans: Vec<String>,
    /// SAN patterns the gateway admits, repeatable (clusterB.allowedSans).
    #[arg(long = "allowed-san", value_name = "PATTERN")]
    allowed_sans: Vec<String>,
    /// How the client sidecar gets its certificate (clusterA.clientCertMode): mounted,
    /// credentialName.
    #[arg(long, value_parser = mesh_value::<ClientCertMode>)]
    client_cert_mode: Option<ClientCertMode>,
    /// Who issues the leaves (certificates): static (gen, keys in the Secrets), cert-manager
    /// (Certificate resources; cert-manager issues and renews them).
    #[arg(long, value_parser = mesh_value::<peergate::mesh::Certificates>)]
    certificates: Option<peergate::mesh::Certificates>,
    /// The filter's mode (plugin.mode): enforce, audit.
    #[arg(long, value_parser = mesh_value::<peergate_filter::Mode>)]
    mode: Option<peergate_filter::Mode>,
    /// Where the filter decides (plugin.layer): auto (the default: connection where that
    /// decides what request would, else request), request (HTTP filter, a 403 per refused
    /// request) or connection (network filter, once per TLS connection, refused connections
    /// are closed).
    #[arg(long, value_parser = mesh_value::<peergate::mesh::LayerChoice>)]
    layer: Option<peergate::mesh::LayerChoice>,
    /// Where the gateway fetches the module (plugin.url).
    #[arg(long, conflicts_with_all = ["wasm_image", "wasm_url"])]
    plugin_url: Option<String>,
    /// The module as an OCI image, REF[@sha256:DIGEST] (plugin.wasmImage): url oci://REF,
    /// sha256 = the manifest digest (`peergate image` / `cargo make oci` print it).
    #[arg(long, value_name = "REF[@DIGEST]", conflicts_with = "wasm_url")]
    wasm_image: Option<String>,
    /// The module over https://, http:// (sha256 = the module's SHA-256, of --wasm) or file://
    /// (no sha256) (plugin.wasmUrl).
    #[arg(long, value_name = "URL")]
    wasm_url: Option<String>,
    /// The built module, hashed for --wasm-url https://… [default: the release build of
    /// `cargo make build-filter`, under $CARGO_TARGET_DIR or target/]
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// Which Istio API installs the filter (plugin.api): wasmplugin, trafficextension
    /// (Istio >= 1.30).
    #[arg(long, value_parser = mesh_value::<peergate::mesh::PluginApi>)]
    api: Option<peergate::mesh::PluginApi>,
    /// Which API declares cluster B's gateway (clusterB.gateway.api): istio (Istio's
    /// Gateway on a gateway Deployment peergate writes), kubernetes (a Gateway API Gateway of
    /// class istio, which Istio deploys; Istio >= 1.28).
    #[arg(long, value_parser = mesh_value::<peergate::mesh::GatewayApi>)]
    gateway_api: Option<peergate::mesh::GatewayApi>,
    /// SHA-256 of the module (plugin.sha256).
    #[arg(long)]
    plugin_sha256: Option<String>,
    /// The WasmPlugin's failStrategy (plugin.failStrategy): FAIL_CLOSE, FAIL_RELOAD,
    /// FAIL_OPEN.
    #[arg(long, value_parser = mesh_value::<FailStrategy>)]
    fail_strategy: Option<FailStrategy>,
    /// Allow FAIL_OPEN (plugin.allowFailOpen).
    #[arg(long)]
    allow_fail_open: bool,
    /// The Istio release of the clusters, 1.MINOR[.PATCH] (istioVersion): features it lacks
    /// are refused [default: the newest release peergate is tested with]
    #[arg(long, value_name = "VERSION", value_parser = mesh_value::<peergate::mesh::IstioVersion>)]
    istio_version: Option<peergate::mesh::IstioVersion>,
    /// A revision-based Istio install's revision (istioRevision): namespaces get
    /// istio.io/rev=REV instead of istio-injection=enabled.
    #[arg(long, value_name = "REV")]
    istio_revision: Option<String>,
    /// A Secret with the registry's credentials, in the plugin's namespace
    /// (plugin.imagePullSecret).
    #[arg(long, value_name = "SECRET")]
    image_pull_secret: Option<String>,
    /// When the gateway pulls the module image (plugin.imagePullPolicy): IfNotPresent, Always.
    #[arg(long, value_parser = mesh_value::<peergate::mesh::ImagePullPolicy>)]
    image_pull_policy: Option<peergate::mesh::ImagePullPolicy>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Gen(args) => gen(args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit(args),
        Command::Inspect(args) => inspect(args),
        Command::Probe(args) => probe(args),
        Command::Image(args) => image(args).map(|()| ExitCode::SUCCESS),
        Command::Revoke(args) => revoke(args).map(|()| ExitCode::SUCCESS),
        Command::Rotate(args) => rotate(args).map(|()| ExitCode::SUCCESS),
    }
}

fn style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("{path}: cannot read"))
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("formatting JSON")?;
    println!("{text}");
    Ok(())
}

/// `--at`: RFC 3339, or a date meaning midnight UTC.
fn parse_at(text: &str) -> anyhow::Result<SystemTime> {
    use time::format_description::well_known::Rfc3339;
    let instant = time::OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map(|d| d.midnight().assume_utc())
    });
    let instant = instant.map_err(|_| {
        anyhow::anyhow!(
            "--at: {text:?} is neither an RFC 3339 time (2027-01-31T12:00:00Z) nor a date (2027-01-31)"
        )
    })?;
    Ok(SystemTime::from(instant))
}

fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    if let Some(logs) = &args.logs {
        let summary = if logs == "-" {
            peergate::logs::summarize(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(logs).with_context(|| format!("{logs}: cannot read"))?;
            peergate::logs::summarize(std::io::BufReader::new(file))
        }
        .with_context(|| format!("{logs}: reading the log"))?;
        if args.json {
            print_json(&summary)?;
        } else {
            let label = if logs == "-" { "standard input" } else { logs };
            print!("{}", peergate::render::logs_text(label, &summary, style()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(policy_path) = &args.policy else {
        anyhow::bail!("--policy is required with --cert or --xfcc");
    };
    let loaded = peergate::audit::load_policy(policy_path)?;
    let subjects = match (&args.cert, &args.xfcc) {
        (Some(path), _) => {
            let label = if path == "-" { "standard input" } else { path };
            peergate::audit::certificates_from_file(label, &read_input(path)?)?
        }
        (None, Some(value)) => peergate::audit::certificates_from_xfcc(value)?,
        (None, None) => anyhow::bail!("give --cert, --xfcc or --logs"),
    };
    let at = match &args.at {
        Some(text) => parse_at(text)?,
        None => SystemTime::now(),
    };
    let request = args
        .path
        .as_deref()
        .map(|path| peergate::audit::RequestLine {
            path,
            method: args.method.as_deref().unwrap_or("GET"),
        });
    let run = peergate::audit::audit(
        &loaded,
        &subjects,
        args.host.as_deref().unwrap_or(""),
        request,
        at,
    );
    if args.json {
        print_json(&run)?;
    } else {
        print!("{}", peergate::render::audit_text(&run, style()));
    }
    let expiring = run
        .certificates
        .iter()
        .any(|c| c.report.peer.as_ref().is_some_and(|peer| peer.expiring));
    Ok(match run.verdict {
        Verdict::Deny => ExitCode::from(1),
        Verdict::Allow if args.fail_expiring && expiring => ExitCode::from(1),
        Verdict::Allow => ExitCode::SUCCESS,
    })
}

fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    use peergate::probe::{self, kit, Target};
    let sidecar = args.from.as_deref().map(kit::from_output).transpose()?;
    let target = match (&args.url, &sidecar) {
        (Some(url), _) => Target::parse(url)?,
        (None, Some(kit)) => Target::parse(&format!("https://{}:{}/hello", kit.host, kit.port))?,
        (None, None) => anyhow::bail!("give a URL, or --from DIR"),
    };
    if let Some(connect) = &args.connect {
        probe::target::check_connect(connect)?;
    }
    let (roots, roots_source) = match (&args.ca, &sidecar) {
        (Some(ca), _) => (kit::read_roots(ca)?, ca.display().to_string()),
        (None, Some(kit)) => (kit.roots.clone(), kit.roots_source.clone()),
        (None, None) if target.scheme == probe::Scheme::Http => (Vec::new(), String::new()),
        (None, None) => {
            anyhow::bail!("--ca (the agreed root, PEM) is required for https:// without --from")
        }
    };
    let client = match (&args.cert, &args.key, sidecar) {
        (Some(cert), Some(key), _) => Some(kit::read_client(cert, key)?),
        (_, _, Some(kit)) => Some(kit.client),
        _ => None,
    };
    let default_host = if target.port == 443 || target.port == 80 {
        target.host.clone()
    } else {
        target.authority_for_dialling()
    };
    let request = probe::ProbeRequest {
        sni: args.sni.clone().unwrap_or_else(|| target.host.clone()),
        host: args.host.clone().unwrap_or(default_host),
        connect: args.connect.clone(),
        client,
        roots,
        roots_source,
        target,
    };
    let report = probe::run(&request)?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", peergate::render::probe_text(&report, style()));
    }
    Ok(match report.verdict {
        probe::Verdict::Ok => ExitCode::SUCCESS,
        probe::Verdict::Refused => ExitCode::from(1),
    })
}

/// One inspected certificate, as `--json` prints it.
#[derive(serde::Serialize)]
struct Inspected<'a> {
    source: &'a str,
    #[serde(flatten)]
    info: &'a CertificateInfo,
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let label = if args.file == "-" {
        "standard input"
    } else {
        &args.file
    };
    let subjects = peergate::audit::certificates_from_file(label, &read_input(&args.file)?)?;
    let now = SystemTime::now();
    let mut infos = Vec::new();
    for subject in subjects {
        let info = peergate_filter::inspect::inspect(&subject.der, now)
            .with_context(|| format!("{}: cannot inspect", subject.source))?;
        infos.push((subject.source, info));
    }
    if args.json {
        let list: Vec<Inspected<'_>> = infos
            .iter()
            .map(|(source, info)| Inspected { source, info })
            .collect();
        print_json(&serde_json::json!({ "certificates": list }))?;
    } else {
        print!("{}", peergate::render::inspect_text(&infos, style()));
    }
    Ok(ExitCode::SUCCESS)
}

/// A run's mesh: `mesh.toml` (or the defaults), the flags over it, and what the output
/// records of how it was made where neither asked; with where it came from, and the root key's
/// place.
struct Loaded {
    mesh: Mesh,
    source: String,
    root_key: Option<PathBuf>,
}

fn load_mesh(args: &GenArgs) -> anyhow::Result<Loaded> {
    let (mut mesh, source, explicit) = mesh_from_file_and_flags(args)?;
    let mut root_key = args.root_key.clone();
    let mut source = source;
    if let Some(recorded) = peergate::settings::Settings::read(&args.out)? {
        let used = peergate::settings::complete_from(
            &recorded,
            &explicit,
            args.force,
            &mut mesh,
            &mut root_key,
            &args.out,
        )?;
        if !used.is_empty() {
            source = format!(
                "{source}, and {} from {}",
                used.join(", "),
                peergate::layout::settings_path(&args.out).display()
            );
        }
    }
    mesh.validate(&source)?;
    Ok(Loaded {
        mesh,
        source,
        root_key,
    })
}

/// `mesh.toml` (or the defaults) with the flags over it, and which of the recorded settings
/// were asked for explicitly, and where.
fn mesh_from_file_and_flags(
    args: &GenArgs,
) -> anyhow::Result<(Mesh, String, peergate::settings::Explicit)> {
    let default = PathBuf::from("mesh.toml");
    let path = match &args.config {
        Some(path) => Some(path.clone()),
        None if default.exists() => Some(default),
        None => None,
    };
    let (mut mesh, source) = match &path {
        Some(path) => (Mesh::load(path)?, path.display().to_string()),
        None => (Mesh::default(), "defaults".to_owned()),
    };
    let from_file = mesh.clone();
    apply_flags(args, &mut mesh);
    let overridden = mesh != from_file;
    let in_file = match &path {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| peergate::settings::set_in_mesh_file(&text))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let explicit = explicit_settings(args, &from_file, &source, &in_file);
    let source = if overridden {
        format!("{source} with command-line flags")
    } else {
        source
    };
    Ok((mesh, source, explicit))
}

/// The flags over `mesh.toml`'s values.
fn apply_flags(args: &GenArgs, mesh: &mut Mesh) {
    if let Some(domain) = &args.domain {
        mesh.cluster_b.domain.clone_from(domain);
    }
    if let Some(key_type) = args.key_type {
        mesh.key_type = key_type;
    }
    if !args.client_sans.is_empty() {
        mesh.cluster_a.sans.clone_from(&args.client_sans);
    }
    if !args.allowed_sans.is_empty() {
        mesh.cluster_b.allowed_sans = Some(args.allowed_sans.clone());
    }
    if let Some(mode) = args.client_cert_mode {
        mesh.cluster_a.client_cert_mode = mode;
    }
    if let Some(layer) = args.layer {
        mesh.plugin.layer = layer;
    }
    if let Some(mode) = args.mode {
        mesh.plugin.mode = mode;
    }
    if let Some(url) = &args.plugin_url {
        mesh.plugin.url.clone_from(url);
    }
    if let Some(image) = &args.wasm_image {
        mesh.plugin.wasm_image = Some(image.clone());
        mesh.plugin.wasm_url = None;
    }
    if let Some(url) = &args.wasm_url {
        mesh.plugin.wasm_url = Some(url.clone());
        mesh.plugin.wasm_image = None;
    }
    if let Some(api) = args.api {
        mesh.plugin.api = api;
    }
    if let Some(api) = args.gateway_api {
        let unchanged =
            api == peergate::mesh::GatewayApi::Istio && mesh.cluster_b.gateway.is_none();
        if !unchanged {
            mesh.cluster_b
                .gateway
                .get_or_insert_with(Default::default)
                .api = api;
        }
    }
    if let Some(sha) = &args.plugin_sha256 {
        mesh.plugin.sha256 = Some(sha.clone());
    }
    if let Some(strategy) = args.fail_strategy {
        mesh.plugin.fail_strategy = strategy;
    }
    mesh.plugin.allow_fail_open |= args.allow_fail_open;
    if let Some(version) = args.istio_version {
        mesh.istio_version = version;
    }
    if let Some(revision) = &args.istio_revision {
        mesh.istio_revision = Some(revision.clone());
    }
    if let Some(secret) = &args.image_pull_secret {
        mesh.plugin.image_pull_secret = Some(secret.clone());
    }
    if let Some(policy) = args.image_pull_policy {
        mesh.plugin.image_pull_policy = Some(policy);
    }
    if let Some(certificates) = args.certificates {
        mesh.certificates = certificates;
    }
    if let Some(name) = &args.intermediate {
        mesh.intermediate
            .get_or_insert_with(Default::default)
            .name
            .clone_from(name);
    }
}

/// The recorded settings a flag or `mesh.toml` (whose keys are `in_file`) asks for, each named
/// as the user wrote it.
fn explicit_settings(
    args: &GenArgs,
    from_file: &Mesh,
    file: &str,
    in_file: &[&str],
) -> peergate::settings::Explicit {
    let flag_or_file = |flag: Option<String>, key: &str, shown: &str, value: String| {
        flag.or_else(|| {
            in_file
                .contains(&key)
                .then(|| format!("{file}'s {shown} = {value:?}"))
        })
    };
    let intermediate = from_file.intermediate.as_ref().map(|i| i.name.clone());
    peergate::settings::Explicit {
        key_type: flag_or_file(
            args.key_type.map(|k| format!("--key-type {k}")),
            "keyType",
            "keyType",
            from_file.key_type.to_string(),
        ),
        certificates: flag_or_file(
            args.certificates
                .map(|c| format!("--certificates {}", c.word())),
            "certificates",
            "certificates",
            from_file.certificates.word().to_owned(),
        ),
        istio_version: flag_or_file(
            args.istio_version.map(|v| format!("--istio-version {v}")),
            "istioVersion",
            "istioVersion",
            from_file.istio_version.to_string(),
        ),
        intermediate: flag_or_file(
            args.intermediate
                .as_ref()
                .map(|n| format!("--intermediate {n:?}")),
            "intermediate",
            "[intermediate] name",
            intermediate.unwrap_or_default(),
        ),
        root_key: args
            .root_key
            .as_ref()
            .map(|p| format!("--root-key {}", p.display())),
    }
}

/// Where `cargo make build-filter` puts the module: cargo's target directory
/// (`CARGO_TARGET_DIR`, else `target/`).
fn built_module() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("wasm32-wasip1/release/peergate_filter.wasm")
}

fn gen(args: GenArgs) -> anyhow::Result<()> {
    let options = GenOptions {
        root_key: args.root_key.clone(),
        renew: args.renew.clone(),
        ..GenOptions::new(args.out.clone(), args.force, SystemTime::now())
    };
    run_gen(&args, options, "gen")
}

/// The output's CAs with their PEMs, the ones that sign leaves first: the issuing CA, else the
/// root; and during a rotation the next ones (those sign leaves from stage reissue on).
fn output_cas(out: &Path, mesh: &Mesh) -> anyhow::Result<Vec<(String, String)>> {
    use peergate::layout::{cert_paths, rotation_path};
    let reissued = std::fs::read_to_string(rotation_path(out)).is_ok_and(|s| s.trim() == "reissue");
    let mut cas: Vec<String> = Vec::new();
    for suffix in if reissued {
        ["-next", ""]
    } else {
        ["", "-next"]
    } {
        if let Some(section) = &mesh.intermediate {
            cas.push(format!("{}{suffix}", section.name));
        }
        cas.push(format!("root{suffix}"));
    }
    let cas: Vec<(String, String)> = cas
        .into_iter()
        .filter_map(|name| {
            let pem = std::fs::read_to_string(cert_paths(out, &name).0).ok()?;
            Some((name, pem))
        })
        .collect();
    if cas.is_empty() {
        anyhow::bail!(
            "{}: no root certificate: run peergate gen first",
            cert_paths(out, "root").0.display()
        );
    }
    Ok(cas)
}

/// Whose CRL and which serial: the CA of the output that issued `--cert` (its signature
/// verifies), or for `--serial` the CA that signs leaves now.
fn revocation_target(
    args: &RevokeArgs,
    out: &Path,
    cas: &[(String, String)],
) -> anyhow::Result<(String, Vec<u8>)> {
    use peergate::gen::serial_of;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
    };
    Ok(match (&args.cert, &args.serial) {
        (Some(path), _) => {
            let pem = read(path)?;
            let serial = serial_of(&pem)
                .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            let issued_by = |ca: &str| {
                peergate_filter::compile(&peergate_filter::PluginConfig {
                    trusted_issuers: vec![ca.to_owned().into()],
                    allowed_sans: Some(vec!["spiffe://unused/*".into()]),
                    client_profile: false,
                    ..Default::default()
                })
                .ok()
                .zip(peergate_filter::xfcc::certificate_der_from_pem(
                    pem.as_bytes(),
                ))
                .is_some_and(|(policy, der)| {
                    !matches!(
                        policy.decide(Some(&der), "", SystemTime::now()).reason,
                        peergate_filter::Reason::UntrustedIssuer
                            | peergate_filter::Reason::IssuerKeyIdMismatch
                            | peergate_filter::Reason::BadSignature
                            | peergate_filter::Reason::UnsupportedSignatureAlgorithm
                            | peergate_filter::Reason::UnparsableCertificate
                    )
                })
            };
            let Some((ca, _)) = cas.iter().find(|(_, pem)| issued_by(pem)) else {
                anyhow::bail!(
                    "{}: not issued by the root or the issuing CA in {}",
                    path.display(),
                    peergate::layout::certs_dir(out).display()
                );
            };
            (ca.clone(), serial)
        }
        (None, Some(hex)) => {
            let serial = peergate_filter::peer::parse_hex(hex.trim())
                .map(|s| peergate_filter::peer::normalize_serial(&s))
                .filter(|s| !s.is_empty())
                .with_context(|| format!("--serial: {hex:?} is not a hex serial number"))?;
            // The CA that signs leaves now.
            (
                cas.first()
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default(),
                serial,
            )
        }
        (None, None) => anyhow::bail!("give --cert FILE or --serial HEX"),
    })
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    use peergate::gen::{serial_of, RevokeRequest};
    use peergate::layout::cert_paths;
    let Loaded { mesh, .. } = load_mesh(&args.gen)?;
    let out = &args.gen.out;
    let cas = output_cas(out, &mesh)?;
    let (ca, serial) = revocation_target(&args, out, &cas)?;
    // Revoking the output's own certificates cuts the mesh off until it is reissued.
    let mut own = vec![
        ("cluster A's client", mesh.cluster_a.client_name.clone()),
        ("the gateway's", mesh.cluster_b.server_name.clone()),
    ];
    if let Some(section) = &mesh.intermediate {
        own.push(("the issuing CA's", section.name.clone()));
    }
    for (what, name) in &own {
        let path = cert_paths(out, name).0;
        let Ok(pem) = std::fs::read_to_string(&path) else {
            continue;
        };
        if serial_of(&pem).as_deref() == Some(serial.as_slice()) && !args.gen.force {
            anyhow::bail!(
                "{}: serial {} is {what} certificate in this output: revoking it cuts the two meshes off until it is reissued and applied; rerun with --force to revoke it and issue a new one",
                path.display(),
                peergate_filter::peer::hex(&serial)
            );
        }
    }
    let options = GenOptions {
        root_key: args.gen.root_key.clone(),
        revoke: Some(RevokeRequest {
            ca: ca.clone(),
            serial: serial.clone(),
            reason: args.reason,
        }),
        replace_revoked: args.gen.force,
        ..GenOptions::new(out.clone(), false, SystemTime::now())
    };
    let whose = if ca.starts_with("root") {
        format!("root's ({ca})")
    } else {
        format!("issuing CA's ({ca})")
    };
    println!(
        "revoking serial {} on the {whose} CRL",
        peergate_filter::peer::hex(&serial)
    );
    run_gen(&args.gen, options, "revoke")
}

fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let options = GenOptions {
        root_key: args.gen.root_key.clone(),
        rotate: Some(args.stage),
        ..GenOptions::new(args.gen.out.clone(), args.gen.force, SystemTime::now())
    };
    run_gen(
        &args.gen,
        options,
        &format!("rotate --stage {}", args.stage.word()),
    )
}

fn run_gen(args: &GenArgs, options: GenOptions, command: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let Loaded {
        mut mesh,
        source,
        root_key,
    } = load_mesh(args)?;
    let options = GenOptions {
        root_key,
        ..options
    };
    let module = args.wasm.clone().unwrap_or_else(built_module);
    for warning in peergate::gen::resolve_module_source(&mut mesh, &module)? {
        eprintln!("warning: {warning}");
    }
    if mesh.plugin.fail_strategy == FailStrategy::FailOpen {
        eprintln!(
            "warning: failStrategy FAIL_OPEN: if the filter traps, the gateway skips it and the peer policy is not applied"
        );
    }
    let report = generate(&mesh, &options)
        .with_context(|| format!("generating into {}", args.out.display()))?;
    println!(
        "peergate {command} ({source}, {} keys, Istio {}) -> {}",
        mesh.key_type,
        mesh.istio_version,
        args.out.display()
    );
    for (name, status) in &report.certs {
        let word = match status {
            CertStatus::Reused => "reused",
            CertStatus::Issued => "issued",
        };
        let left = report
            .expiry
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, days, not_after)| format!(", {days} days left (until {not_after})"))
            .unwrap_or_default();
        println!("  certificate {name}: {word}{left}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    let changed: Vec<_> = report
        .files
        .iter()
        .filter(|(_, s)| *s != FileStatus::Unchanged)
        .collect();
    for (path, status) in &changed {
        println!("  {:<9} {}", status.word(), path.display());
    }
    println!(
        "  {} files, {} changed, in {:.2?}",
        report.files.len(),
        changed.len(),
        started.elapsed()
    );
    println!("  {}", peergate::gen::Stage::describe(report.stage));
    if let Some(chosen) = report.layer {
        println!("  layer {}: {}", chosen.layer.as_str(), chosen.why);
    }
    for note in &report.notes {
        println!("next: {note}");
    }
    Ok(())
}

fn image(args: ImageArgs) -> anyhow::Result<()> {
    use peergate::image::{read_module, write_layout, Variant};
    let module = read_module(&args.wasm)?;
    let image = write_layout(&module, args.variant, &args.out, &args.tag)
        .with_context(|| format!("writing the image layout {}", args.out.display()))?;
    let variant = match args.variant {
        Variant::Compat => "compat: plugin.wasm in a tar+gzip layer",
        Variant::Wasm => "wasm: the module as the content layer",
    };
    let changed = image
        .files
        .iter()
        .filter(|(_, s)| *s != FileStatus::Unchanged)
        .count();
    eprintln!(
        "peergate image ({variant}) {} -> oci:{}:{} ({} files, {changed} changed)",
        args.wasm.display(),
        args.out.display(),
        args.tag,
        image.files.len()
    );
    eprintln!("  module sha256 {}", image.module_sha256);
    eprintln!(
        "  push: skopeo copy oci:{}:{} docker://REGISTRY/REPOSITORY:{}",
        args.out.display(),
        args.tag,
        args.tag
    );
    eprintln!(
        "  then: peergate gen --wasm-image REGISTRY/REPOSITORY:{}@{}",
        args.tag, image.manifest_digest
    );
    // The one line on standard output: the manifest digest, for scripts.
    println!("{}", image.manifest_digest);
    Ok(())
}
