//! The `peergate` command line: argument types here, the work in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use clap::{Parser, Subcommand};
use peergate::gen::CertStatus;
use peergate::mesh::{ClientCertMode, FailStrategy, KeyType};
use peergate::output::FileStatus;
use peergate::{generate, GenOptions, Mesh};

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
    /// Replace existing certificates and keys (all are issued anew).
    #[arg(long)]
    force: bool,
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
    /// The filter's mode (plugin.mode): enforce, audit.
    #[arg(long, value_parser = mesh_value::<peergate_filter::Mode>)]
    mode: Option<peergate_filter::Mode>,
    /// Where the gateway fetches the module (plugin.url).
    #[arg(long)]
    plugin_url: Option<String>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(args) => gen(args),
    }
}

fn load_mesh(args: &GenArgs) -> anyhow::Result<(Mesh, String)> {
    let default = PathBuf::from("mesh.toml");
    let path = match &args.config {
        Some(path) => Some(path.clone()),
        None if default.exists() => Some(default),
        None => None,
    };
    let (mut mesh, source) = match path {
        Some(path) => (Mesh::load(&path)?, path.display().to_string()),
        None => (Mesh::default(), "defaults".to_owned()),
    };
    let from_file = mesh.clone();
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
    if let Some(mode) = args.mode {
        mesh.plugin.mode = mode;
    }
    if let Some(url) = &args.plugin_url {
        mesh.plugin.url.clone_from(url);
    }
    if let Some(sha) = &args.plugin_sha256 {
        mesh.plugin.sha256 = Some(sha.clone());
    }
    if let Some(strategy) = args.fail_strategy {
        mesh.plugin.fail_strategy = strategy;
    }
    mesh.plugin.allow_fail_open |= args.allow_fail_open;
    let overridden = mesh != from_file;
    let source = if overridden {
        format!("{source} with command-line flags")
    } else {
        source
    };
    mesh.validate(&source)?;
    Ok((mesh, source))
}

fn gen(args: GenArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mesh, source) = load_mesh(&args)?;
    if mesh.plugin.fail_strategy == FailStrategy::FailOpen {
        eprintln!(
            "warning: failStrategy FAIL_OPEN: if the filter traps, the gateway skips it and the peer policy is not applied"
        );
    }
    let options = GenOptions {
        out: args.out.clone(),
        force: args.force,
        now: SystemTime::now(),
    };
    let report = generate(&mesh, &options)
        .with_context(|| format!("generating into {}", args.out.display()))?;
    println!(
        "peergate gen ({source}, {} keys) -> {}",
        mesh.key_type,
        args.out.display()
    );
    for (name, status) in &report.certs {
        let word = match status {
            CertStatus::Reused => "reused",
            CertStatus::Issued => "issued",
        };
        println!("  certificate {name}: {word}");
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
    Ok(())
}
