//! `peergate gen`: certificates plus both clusters' objects, in one consistent run.
//!
//! Everything is computed and checked in memory first (certificates, objects, the filter's
//! compile of the pluginConfig, the client admitted by it); files are written only after that,
//! each atomically, so a failure leaves the previous output as it was.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::certs::{self, CertAndKey, CertError, Role};
use crate::layout::{cert_paths, crl_path, retired_dir, rotation_path, settings_path};
use crate::manifests::{self, Manifest, ManifestError, Pki};
use crate::mesh::{
    Certificates, ChosenLayer, Gateway, GatewayApi, IntermediateSection, KeyType, Mesh,
    DEFAULT_ISSUER, GATEWAY_NAME_LABEL,
};
use crate::output::{remove_stale, FileStatus, Staging, WriteError};
use crate::revocation::{self, Reason, Revocation};

/// Mode of private keys and of files holding them.
pub const KEY_MODE: u32 = 0o600;
/// Mode of everything else.
pub const PUBLIC_MODE: u32 = 0o644;

/// What happened to a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Existing, still matching the configuration and valid for 30 days or more.
    Reused,
    /// Newly issued.
    Issued,
}

/// What `generate` did.
#[derive(Debug, Default)]
pub struct Report {
    /// Certificates by name (`root`, the client's, the server's).
    pub certs: Vec<(String, CertStatus)>,
    /// Every certificate of the output with its whole days left and notAfter (RFC 3339).
    pub expiry: Vec<(String, i64, String)>,
    /// Where a root rotation stands after the run.
    pub stage: Option<Stage>,
    /// The layer the filter runs at, and why.
    pub layer: Option<ChosenLayer>,
    /// Every file written, left alone or removed.
    pub files: Vec<(PathBuf, FileStatus)>,
    /// Things the user should know (e.g. the client is not admitted by the gateway).
    pub warnings: Vec<String>,
    /// What to do next (commands to run), for people.
    pub notes: Vec<String>,
}

/// Why `generate` stopped. Nothing was written when it returns one of these: files are staged
/// in full before any is renamed into place (see [`crate::output`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// Existing material does not fit and `--force` was not given.
    #[error("{path}: {reason}; nothing was written (rerun with --force to replace it)")]
    WouldOverwrite {
        /// The file that would be replaced.
        path: PathBuf,
        /// Why it cannot be reused.
        reason: String,
    },
    /// An existing file cannot be read.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A rotation stage out of order.
    #[error("rotate --stage {}: out of order; the next stage is {} (peergate rotate --stage {}); nothing was written", .requested.word(), .next.word(), .next.word())]
    RotationOrder {
        /// The stage asked for.
        requested: Stage,
        /// The one that comes next.
        next: Stage,
    },
    /// `--renew` names something it cannot renew.
    #[error("--renew {name}: {why}")]
    Renew {
        /// The name given.
        name: String,
        /// Why not, and what would.
        why: String,
    },
    /// Something must be signed by the root, whose key is not at hand.
    #[error("{path}: the root's key is needed to sign {what} and is not there; nothing was written (pass --root-key PATH where it is kept)")]
    RootKeyNeeded {
        /// What needs signing.
        what: String,
        /// Where the key was looked for.
        path: PathBuf,
    },
    /// A new leaf would outlive the reused root.
    #[error("{path}: the root expires on {root_not_after}, before a new {leaf} certificate would ({leaf_not_after}); nothing was written (renew the root: rerun with --force)")]
    RootExpiresFirst {
        /// The root certificate.
        path: PathBuf,
        /// Its notAfter, RFC 3339.
        root_not_after: String,
        /// The leaf's name.
        leaf: String,
        /// The leaf's notAfter if it were issued now, RFC 3339.
        leaf_not_after: String,
    },
    /// The mesh description does not hold together (a caller that skipped `Mesh::validate`).
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// Making a certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// Serializing an object failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The filter refuses the pluginConfig: a generator bug, caught before writing.
    #[error("the filter rejects the generated pluginConfig: {0}")]
    Policy(#[from] peergate_filter::CompileError),
    /// The generated client certificate is unreadable: a generator bug.
    #[error("the generated client certificate is not PEM")]
    ClientUnreadable,
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// `plugin.wasmImage` / `plugin.wasmUrl` cannot be turned into `url` and `sha256`.
    #[error("{field}: {message}")]
    ModuleSource {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Where the module comes from, turned into the WasmPlugin's `url` and `sha256` the way Istio
/// checks them: for `oci://` the image's manifest digest, for `http(s)://` the module's own
/// SHA-256 (of `module`, the built filter), for `file://` nothing (Istio ignores it). Returns
/// warnings for the user.
pub fn resolve_module_source(mesh: &mut Mesh, module: &Path) -> Result<Vec<String>, GenError> {
    let mut warnings = Vec::new();
    let conflict = |field: &'static str, computed: &str, given: &str| GenError::ModuleSource {
        field,
        message: format!(
            "its digest {computed} differs from plugin.sha256 {given}; give one of them"
        ),
    };
    if let Some(image) = mesh.plugin.wasm_image.clone() {
        let (reference, digest) =
            crate::mesh::split_image_reference(&image).map_err(|message| {
                GenError::ModuleSource {
                    field: "plugin.wasmImage",
                    message,
                }
            })?;
        mesh.plugin.url = format!("oci://{reference}");
        match (digest, mesh.plugin.sha256.as_deref()) {
            (Some(d), Some(given)) if d != given => {
                return Err(conflict("plugin.wasmImage", d, given))
            }
            (Some(d), _) => mesh.plugin.sha256 = Some(d.to_owned()),
            (None, Some(_)) => {}
            (None, None) => warnings.push(format!(
                "plugin.wasmImage {image} has no @sha256:<manifest digest>: Istio will pull the tag without verifying it (cargo make oci prints the digest)"
            )),
        }
    }
    if let Some(url) = mesh.plugin.wasm_url.clone() {
        mesh.plugin.url.clone_from(&url);
        if url.starts_with("file://") {
            if mesh.plugin.sha256.take().is_some() {
                warnings
                    .push("plugin.sha256 dropped: Istio does not check it for file:// URLs".into());
            }
        } else {
            let bytes = std::fs::read(module).map_err(|e| GenError::ModuleSource {
                field: "plugin.wasmUrl",
                message: format!(
                    "the module's SHA-256 is needed for {url}, but {} cannot be read ({e}); run `cargo make build-filter` or pass --wasm FILE",
                    module.display()
                ),
            })?;
            let digest = crate::image::sha256_hex(&bytes);
            match mesh.plugin.sha256.as_deref() {
                Some(given) if given != digest => {
                    return Err(conflict("plugin.wasmUrl", &digest, given))
                }
                _ => mesh.plugin.sha256 = Some(digest),
            }
        }
    }
    Ok(warnings)
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Output folder.
    pub out: PathBuf,
    /// Replace existing certificates and keys.
    pub force: bool,
    /// The time certificates are issued and checked at.
    pub now: SystemTime,
    /// Where the root's key is kept, when not in `certs/` (`--root-key`): read to sign, a new
    /// one written there, never copied into the output.
    pub root_key: Option<PathBuf>,
    /// A revocation to add (`peergate revoke`).
    pub revoke: Option<RevokeRequest>,
    /// Reissue what is revoked instead of refusing to replace it (`peergate revoke --force` of
    /// a certificate of the current output).
    pub replace_revoked: bool,
    /// Certificates to issue anew under their current CA (`--renew NAME`): the leaves, or the
    /// issuing CA (and so the leaves it signs).
    pub renew: Vec<String>,
    /// A root rotation stage to take the output to (`peergate rotate --stage`).
    pub rotate: Option<Stage>,
}

impl GenOptions {
    /// A plain `gen` run into `out` at `now`.
    pub fn new(out: PathBuf, force: bool, now: SystemTime) -> Self {
        Self {
            out,
            force,
            now,
            root_key: None,
            revoke: None,
            replace_revoked: false,
            renew: Vec::new(),
            rotate: None,
        }
    }
}

/// A certificate to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// Whose CRL: the CA's name in `certs/` (`root`, the issuing CA's, or during a rotation
    /// `root-next` and the issuing CA's with `-next`).
    pub ca: String,
    /// The serial (big-endian).
    pub serial: Vec<u8>,
    /// Why.
    pub reason: Option<Reason>,
}

/// The stages of a root rotation (`peergate rotate --stage`), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// A new root (and issuing CA) beside the old, trusted everywhere; leaves unchanged.
    Trust,
    /// The leaves reissued under the new root; both roots still trusted.
    Reissue,
    /// The old root gone everywhere; the new one is `root-*`.
    Retire,
}

impl Stage {
    /// The stage as `certs/rotation` and the command line write it.
    pub fn word(self) -> &'static str {
        match self {
            Stage::Trust => "trust",
            Stage::Reissue => "reissue",
            Stage::Retire => "retire",
        }
    }

    /// What a user reads: the mesh's state after this stage, and what comes next.
    pub fn describe(stage: Option<Stage>) -> &'static str {
        match stage {
            None | Some(Stage::Retire) => "no root rotation under way (the next one starts with: peergate rotate --stage trust)",
            Some(Stage::Trust) => "rotation at stage trust: both roots trusted everywhere, leaves still from the old one (apply both clusters, wait for the gateways and sidecars to load them, then: peergate rotate --stage reissue)",
            Some(Stage::Reissue) => "rotation at stage reissue: leaves from the new root, both roots trusted (apply both clusters, let every connection made with an old certificate close, then: peergate rotate --stage retire)",
        }
    }
}

fn read_stage(out: &Path) -> Result<Option<Stage>, GenError> {
    let path = rotation_path(out);
    match read_optional(&path)?.as_deref().map(str::trim) {
        None => Ok(None),
        Some("trust") => Ok(Some(Stage::Trust)),
        Some("reissue") => Ok(Some(Stage::Reissue)),
        Some("retire") => Ok(Some(Stage::Retire)),
        Some(other) => Err(GenError::WouldOverwrite {
            path,
            reason: format!("says {other:?}, not a rotation stage (trust, reissue, retire)"),
        }),
    }
}

/// One CA of a generation, as the CRL and report code use it.
struct CaRef<'g> {
    /// Its name in `certs/` (`root`, `root-next`, the issuing CA's, with `-next`).
    name: String,
    cert: String,
    cert_ref: &'g str,
    revocations: Option<Vec<Revocation>>,
    signer: Option<CertAndKey>,
}

/// A root and, when configured, its issuing CA: the current ones, or during a rotation the
/// next ones (files `root-next-*`, `NAME-next-*`).
struct Generation {
    next: bool,
    root: Root,
    root_status: CertStatus,
    root_key_path: PathBuf,
    root_key_written: bool,
    /// Name in `certs/`, certificate and key, status.
    intermediate: Option<(String, CertAndKey, CertStatus)>,
    root_revocations: Option<Vec<Revocation>>,
    intermediate_revocations: Option<Vec<Revocation>>,
}

impl Generation {
    fn root_name(&self) -> &'static str {
        if self.next {
            "root-next"
        } else {
            "root"
        }
    }

    /// The name a CA of this generation is written under: the next ones become the current
    /// ones on retire.
    fn file_name(&self, name: &str, retiring: bool) -> String {
        match (self.next && retiring, name.strip_suffix("-next")) {
            (true, Some(current)) => current.to_owned(),
            _ => name.to_owned(),
        }
    }

    fn cas(&self) -> Vec<CaRef<'_>> {
        let mut cas = vec![CaRef {
            name: self.root_name().to_owned(),
            cert: self.root.cert.clone(),
            cert_ref: &self.root.cert,
            revocations: self.root_revocations.clone(),
            signer: self.root.key.as_ref().map(|key| CertAndKey {
                cert: self.root.cert.clone(),
                key: key.clone(),
            }),
        }];
        if let Some((name, pair, _)) = &self.intermediate {
            cas.push(CaRef {
                name: name.clone(),
                cert: pair.cert.clone(),
                cert_ref: &pair.cert,
                revocations: self.intermediate_revocations.clone(),
                signer: Some(pair.clone()),
            });
        }
        cas
    }

    fn has_revocations(&self) -> bool {
        self.root_revocations.is_some() || self.intermediate_revocations.is_some()
    }

    fn statuses(&self, retiring: bool) -> Vec<(String, CertStatus)> {
        let mut out = vec![(self.file_name(self.root_name(), retiring), self.root_status)];
        if let Some((name, _, status)) = &self.intermediate {
            out.push((self.file_name(name, retiring), *status));
        }
        out
    }

    /// The CA that signs leaves: the issuing CA, else the root.
    fn leaf_signer_cert(&self) -> &str {
        match &self.intermediate {
            Some((_, pair, _)) => &pair.cert,
            None => &self.root.cert,
        }
    }

    fn leaf_signer_name(&self) -> String {
        match &self.intermediate {
            Some((name, _, _)) => name.clone(),
            None => self.root_name().to_owned(),
        }
    }

    fn leaf_signer_status(&self) -> CertStatus {
        match &self.intermediate {
            Some((_, _, status)) => *status,
            None => self.root_status,
        }
    }

    /// The leaf signer with its key (`None`: the root's key is not at hand).
    fn leaf_signer(&self) -> Option<CertAndKey> {
        match &self.intermediate {
            Some((_, pair, _)) => Some(pair.clone()),
            None => self.root.key.as_ref().map(|key| CertAndKey {
                cert: self.root.cert.clone(),
                key: key.clone(),
            }),
        }
    }
}

/// What a leaf of `generation` is checked against.
fn leaf_trust<'a>(generation: &'a Generation, crls: &'a [String]) -> certs::LeafTrust<'a> {
    certs::LeafTrust {
        signer: generation.leaf_signer_cert(),
        anchor: generation
            .intermediate
            .as_ref()
            .map(|_| generation.root.cert.as_str()),
        crls,
    }
}

/// The root of a generation: reused while it fits, or issued (for a key kept elsewhere, a new
/// certificate for that key). Returns it, its status, and whether its key is new.
fn load_root(
    out: &Path,
    mesh: &Mesh,
    options: &GenOptions,
    root_name: &str,
    root_key_path: &Path,
    now: SystemTime,
) -> Result<(Root, CertStatus, bool), GenError> {
    let root_cert_path = cert_paths(out, root_name).0;
    let key_elsewhere = options.root_key.is_some();
    let existing_root_cert = read_optional(&root_cert_path)?;
    let existing_root_key = read_optional(root_key_path)?;
    let mut root_key_written = false;
    let (root, root_status) = match (existing_root_cert, existing_root_key) {
        (Some(cert), key) if !options.force => {
            match certs::check_root(&cert, key.as_deref(), mesh, now) {
                Ok(()) => (Root { cert, key }, CertStatus::Reused),
                Err(misfit) => {
                    return Err(GenError::WouldOverwrite {
                        path: if misfit.in_key {
                            root_key_path.to_owned()
                        } else {
                            root_cert_path.clone()
                        },
                        reason: format!("the root no longer fits: {}", misfit.reason),
                    })
                }
            }
        }
        (None, Some(_)) if !key_elsewhere && !options.force => {
            return Err(GenError::WouldOverwrite {
                path: root_key_path.to_owned(),
                reason: format!(
                    "exists without its certificate {}",
                    root_cert_path.display()
                ),
            })
        }
        // A key kept elsewhere is the root's, whatever happens here: a new certificate for it.
        (_, Some(key)) if key_elsewhere => (
            Root {
                cert: certs::issue_root_for_key(mesh, &key, now)?.cert,
                key: Some(key),
            },
            CertStatus::Issued,
        ),
        _ => {
            let pair = certs::issue_root(mesh, now)?;
            root_key_written = true;
            (
                Root {
                    cert: pair.cert,
                    key: Some(pair.key),
                },
                CertStatus::Issued,
            )
        }
    };
    Ok((root, root_status, root_key_written))
}

/// The issuing CA of a generation: reused while it fits and is not revoked by its root, or
/// issued by the root. `root` is the generation's root, its status and its revocations.
#[allow(clippy::too_many_arguments)]
fn load_intermediate(
    out: &Path,
    mesh: &Mesh,
    options: &GenOptions,
    section: &IntermediateSection,
    next: bool,
    root: (&Root, CertStatus, Option<&[Revocation]>),
    root_key_path: &Path,
    now: SystemTime,
) -> Result<(String, CertAndKey, CertStatus), GenError> {
    let name = if next {
        format!("{}-next", section.name)
    } else {
        section.name.clone()
    };
    let (root, root_status, root_revocations) = root;
    let revoked_by_root = |pair: &CertAndKey| {
        serial_of(&pair.cert).is_some_and(|serial| {
            root_revocations.is_some_and(|list| list.iter().any(|r| r.serial == serial))
        })
    };
    let existing = if options.renew.contains(&name) {
        None
    } else {
        existing_pair(out, &name)?
    };
    let root_signer = || match &root.key {
        Some(key) => Ok(CertAndKey {
            cert: root.cert.clone(),
            key: key.clone(),
        }),
        None => Err(GenError::RootKeyNeeded {
            what: format!("the issuing CA {name}"),
            path: root_key_path.to_owned(),
        }),
    };
    let (pair, status) = match existing {
        Some(_) if !options.force && root_status == CertStatus::Issued => {
            return Err(GenError::WouldOverwrite {
                path: cert_paths(out, &name).0,
                reason: "exists, but the root is new and did not issue it".into(),
            })
        }
        Some(pair)
            if !options.force && revoked_by_root(&pair) && !options.replace_revoked =>
        {
            return Err(GenError::WouldOverwrite {
                path: cert_paths(out, &name).0,
                reason: "is revoked on the root's CRL: a new issuing CA (and new leaves) would replace it".into(),
            })
        }
        Some(pair) if !options.force && !revoked_by_root(&pair) => {
            match certs::check_intermediate(&pair, &section.name, &root.cert, mesh, now) {
                Ok(()) => (pair, CertStatus::Reused),
                Err(misfit) => {
                    return Err(GenError::WouldOverwrite {
                        path: misfit.path(out, &name),
                        reason: format!("no longer fits: {}", misfit.reason),
                    })
                }
            }
        }
        _ => (
            certs::issue_intermediate(
                mesh,
                &section.name,
                section.validity.0,
                &root_signer()?,
                now,
            )?,
            CertStatus::Issued,
        ),
    };
    Ok((name, pair, status))
}

/// Loads (or issues) a generation's root and issuing CA, with their revocations.
fn load_generation(
    out: &Path,
    mesh: &Mesh,
    options: &GenOptions,
    next: bool,
    root_key_path: &Path,
    now: SystemTime,
    report: &mut Report,
) -> Result<Generation, GenError> {
    let root_name = if next { "root-next" } else { "root" };
    let (root, root_status, root_key_written) =
        load_root(out, mesh, options, root_name, root_key_path, now)?;
    let mut root_revocations = read_revocations(out, root_name, &root.cert, root_status, report)?;
    if let Some(request) = options.revoke.as_ref().filter(|r| r.ca == root_name) {
        add_revocation(&mut root_revocations, request, now, report);
    }

    let intermediate = match &mesh.intermediate {
        None => None,
        Some(section) => Some(load_intermediate(
            out,
            mesh,
            options,
            section,
            next,
            (&root, root_status, root_revocations.as_deref()),
            root_key_path,
            now,
        )?),
    };
    let mut intermediate_revocations = match &intermediate {
        Some((name, pair, status)) => read_revocations(out, name, &pair.cert, *status, report)?,
        None => None,
    };
    if let Some((name, _, _)) = &intermediate {
        if let Some(request) = options.revoke.as_ref().filter(|r| r.ca == *name) {
            add_revocation(&mut intermediate_revocations, request, now, report);
        }
    }
    Ok(Generation {
        next,
        root,
        root_status,
        root_key_path: root_key_path.to_owned(),
        root_key_written,
        intermediate,
        root_revocations,
        intermediate_revocations,
    })
}

/// The root: its certificate, and its key when available.
struct Root {
    cert: String,
    key: Option<String>,
}

fn read_optional(path: &Path) -> Result<Option<String>, GenError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(GenError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// The existing pair, if both files are there; one without the other is an error.
fn existing_pair(out: &Path, name: &str) -> Result<Option<CertAndKey>, GenError> {
    let (cert_path, key_path) = cert_paths(out, name);
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert), Some(key)) => Ok(Some(CertAndKey { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(GenError::WouldOverwrite {
            path: cert_path,
            reason: format!("exists without its key {}", key_path.display()),
        }),
        (None, Some(_)) => Err(GenError::WouldOverwrite {
            path: key_path,
            reason: format!("exists without its certificate {}", cert_path.display()),
        }),
    }
}

/// The revocations in a CA's existing CRL. A CRL its CA did not sign is an error when the CA
/// is reused (the file was damaged or swapped), and dropped with a warning when the CA is new
/// (its predecessor's revocations mean nothing under it).
fn read_revocations(
    out: &Path,
    name: &str,
    ca_cert: &str,
    ca_status: CertStatus,
    report: &mut Report,
) -> Result<Option<Vec<Revocation>>, GenError> {
    let path = crl_path(out, name);
    let Some(pem) = read_optional(&path)? else {
        return Ok(None);
    };
    match (revocation::read_crl(&pem, ca_cert), ca_status) {
        (Ok(list), _) => Ok(Some(list)),
        (Err(_), CertStatus::Issued) => {
            report.warnings.push(format!(
                "{}: the CRL of the {name} certificate this run replaces is dropped, and its revocations with it",
                path.display()
            ));
            Ok(None)
        }
        (Err(e), CertStatus::Reused) => Err(GenError::WouldOverwrite {
            path,
            reason: format!("{e}: its revocations cannot be kept"),
        }),
    }
}

/// Adds the requested revocation (once).
fn add_revocation(
    list: &mut Option<Vec<Revocation>>,
    request: &RevokeRequest,
    now: SystemTime,
    report: &mut Report,
) {
    let list = list.get_or_insert_with(Vec::new);
    let serial = peergate_filter::peer::normalize_serial(&request.serial);
    if list.iter().any(|r| r.serial == serial) {
        report.warnings.push(format!(
            "serial {} is already revoked",
            peergate_filter::peer::hex(&serial)
        ));
        return;
    }
    list.push(Revocation {
        serial,
        revoked_at: peergate_filter::policy::unix_seconds(now),
        reason: request.reason,
    });
}

/// The serial (without leading zero bytes) of a PEM certificate.
pub fn serial_of(pem: &str) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let der = peergate_filter::xfcc::certificate_der_from_pem(pem.as_bytes())?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    Some(peergate_filter::peer::normalize_serial(cert.raw_serial()))
}

/// Runs the whole generation.
pub fn generate(mesh: &Mesh, options: &GenOptions) -> Result<Report, GenError> {
    let gateway = validated_gateway(mesh)?;
    let out = &options.out;
    let now = options.now;
    let mut report = Report::default();
    let client_name = mesh.cluster_a.client_name.as_str();
    let server_name = mesh.cluster_b.server_name.as_str();

    check_renew(mesh, &options.renew)?;
    let (existing_client, existing_server) = existing_leaves(out, mesh, &options.renew)?;

    // Where a rotation of the root stands (`certs/rotation`), and where this run takes it.
    let current_stage = read_stage(out)?;
    let stage = next_stage(current_stage, options.rotate)?;
    let retiring = current_stage == Some(Stage::Reissue) && stage == Some(Stage::Retire);

    // The CAs: the current root (and issuing CA); during a rotation the next ones too. On
    // retire, the next become the current and the old are archived.
    let (current, next) = load_generations(out, mesh, options, current_stage, stage, &mut report)?;
    let Views {
        generations,
        archived,
        signing,
        other,
    } = views(&current, next.as_ref(), stage, retiring);
    let crl_files = crl_files(out, mesh, &generations, retiring, now)?;
    let crls: Vec<String> = crl_files.iter().map(|(_, pem, _)| pem.clone()).collect();
    let issuer = LeafIssuer {
        mesh,
        options,
        now,
        signing,
        signer: signing.leaf_signer(),
        signer_status: signing.leaf_signer_status(),
        other,
        generation_crls: crls_by_generation(&[Some(&current), next.as_ref()], &crl_files),
    };
    let leaves = issue_leaves(&issuer, existing_client, existing_server)?;
    report.certs = cert_statuses(mesh, &generations, retiring, &leaves);

    let leaf_pairs = leaves
        .as_ref()
        .map(|((client, _), (server, _))| [(client_name, client), (server_name, server)]);
    expiry_report(mesh, &generations, retiring, leaf_pairs, now, &mut report);
    report.stage = stage;

    let ca_issuer = default_ca_issuer(mesh, signing, issuer.signer.as_ref())?;
    let files = objects(
        mesh,
        &gateway,
        &MadePki {
            generations: &generations,
            signing,
            leaves: &leaves,
            crls: &crls,
            ca_issuer: ca_issuer.as_ref(),
        },
        now,
        &mut report,
    )?;
    let layer = mesh.layer(&gateway);
    report.layer = Some(layer);
    report.notes = notes(mesh, &gateway, out);
    if options.revoke.is_some() {
        report.notes.extend(open_connections_note(&gateway, layer));
    }
    report.files = write_output(&Written {
        out,
        mesh,
        options,
        generations: &generations,
        retiring,
        archived,
        crl_files: &crl_files,
        stage,
        leaves: leaf_pairs,
        files: &files,
    })?;
    Ok(report)
}

/// The current generation, and during a rotation (or on retire) the next one; a next root
/// is issued only by `rotate --stage trust`.
fn load_generations(
    out: &Path,
    mesh: &Mesh,
    options: &GenOptions,
    current_stage: Option<Stage>,
    stage: Option<Stage>,
    report: &mut Report,
) -> Result<(Generation, Option<Generation>), GenError> {
    let now = options.now;
    let key_path = |next: bool| root_key_path(out, options.root_key.as_deref(), next);
    check_root_key_place(out, options)?;
    let current = load_generation(out, mesh, options, false, &key_path(false), now, report)?;
    let retiring = current_stage == Some(Stage::Reissue) && stage == Some(Stage::Retire);
    let rotating = matches!(stage, Some(Stage::Trust | Stage::Reissue));
    let next = if rotating || retiring {
        let issue_allowed = current_stage.is_none()
            || current_stage == Some(Stage::Retire)
            || options.rotate == Some(Stage::Trust) && current_stage != Some(Stage::Trust);
        let generation = load_generation(out, mesh, options, true, &key_path(true), now, report)?;
        if generation.root_status == CertStatus::Issued && !issue_allowed && !options.force {
            return Err(GenError::WouldOverwrite {
                path: cert_paths(out, "root-next").0,
                reason: format!(
                    "is missing, and the rotation is at stage {}: the next root comes from `peergate rotate --stage trust` only",
                    current_stage.map_or("none", Stage::word)
                ),
            });
        }
        Some(generation)
    } else {
        None
    };
    Ok((current, next))
}

/// The leaves already in the output, except those `--renew` asks to reissue (a renewed
/// issuing CA renews the leaves it signs).
fn existing_leaves(
    out: &Path,
    mesh: &Mesh,
    renew: &[String],
) -> Result<(Option<CertAndKey>, Option<CertAndKey>), GenError> {
    let client_name = mesh.cluster_a.client_name.as_str();
    let server_name = mesh.cluster_b.server_name.as_str();
    let intermediate_name = mesh.intermediate.as_ref().map(|i| i.name.as_str());
    let renewing = |name: &str| renew.iter().any(|n| n == name);
    // A renewed issuing CA renews the leaves it signs.
    let renew_leaves = intermediate_name.is_some_and(renewing);
    let existing_client = if renewing(client_name) || renew_leaves {
        None
    } else {
        existing_pair(out, client_name)?
    };
    let existing_server = if renewing(server_name) || renew_leaves {
        None
    } else {
        existing_pair(out, server_name)?
    };

    Ok((existing_client, existing_server))
}

/// The client's and the server's leaf, issued or reused, with what happened to each; none with
/// cert-manager.
type Leaves = Option<((CertAndKey, CertStatus), (CertAndKey, CertStatus))>;

fn issue_leaves(
    issuer: &LeafIssuer<'_>,
    existing_client: Option<CertAndKey>,
    existing_server: Option<CertAndKey>,
) -> Result<Leaves, GenError> {
    let client_name = issuer.mesh.cluster_a.client_name.as_str();
    let server_name = issuer.mesh.cluster_b.server_name.as_str();
    // With cert-manager the leaves are its to issue: gen issues none and puts no leaf key in
    // any Secret (leaf files an earlier static run left in certs/ stay, unused).
    Ok(match issuer.mesh.certificates {
        Certificates::Static => {
            let (client, client_status) =
                issuer.leaf(existing_client, Role::Client, client_name)?;
            let (server, server_status) =
                issuer.leaf(existing_server, Role::Server, server_name)?;
            Some(((client, client_status), (server, server_status)))
        }
        Certificates::CertManager => None,
    })
}

/// A run's view of its generations.
struct Views<'g> {
    /// Those in the output after the run: after retire the next one alone.
    generations: Vec<&'g Generation>,
    /// The one a retire archives.
    archived: Option<&'g Generation>,
    /// What signs the leaves: the next generation from `reissue` on, else the current.
    signing: &'g Generation,
    /// At stage reissue, the generation whose leaves the stage replaces.
    other: Option<&'g Generation>,
}

fn views<'g>(
    current: &'g Generation,
    next: Option<&'g Generation>,
    stage: Option<Stage>,
    retiring: bool,
) -> Views<'g> {
    let (generations, archived) = match (next, retiring) {
        (Some(next), true) => (vec![next], Some(current)),
        (Some(next), false) => (vec![current, next], None),
        (None, _) => (vec![current], None),
    };
    let signing = match (next, stage) {
        (Some(next), Some(Stage::Reissue | Stage::Retire)) => next,
        _ => current,
    };
    let other = match (next, stage) {
        (Some(_), Some(Stage::Reissue)) => Some(current),
        _ => None,
    };
    Views {
        generations,
        archived,
        signing,
        other,
    }
}

/// Each generation's own CRLs: a leaf is checked against its own generation's, since the other
/// root has the same name and its CRLs are signed by a key that generation does not trust.
fn crls_by_generation<'g>(
    generations: &[Option<&'g Generation>],
    crl_files: &[(PathBuf, String, &str)],
) -> Vec<(&'g Generation, Vec<String>)> {
    generations
        .iter()
        .flatten()
        .map(|generation| {
            let own = crl_files
                .iter()
                .filter(|(_, _, root)| *root == generation.root.cert)
                .map(|(_, pem, _)| pem.clone())
                .collect();
            (*generation, own)
        })
        .collect()
}

/// What the objects embed of the PKI a run made.
struct MadePki<'a> {
    generations: &'a [&'a Generation],
    signing: &'a Generation,
    leaves: &'a Leaves,
    crls: &'a [String],
    ca_issuer: Option<&'a manifests::CaIssuerKey>,
}

/// Both clusters' objects from the mesh and the PKI, checked by the filter's own policy (the
/// generated client must pass it), with the run's warnings.
fn objects(
    mesh: &Mesh,
    gateway: &Gateway,
    made: &MadePki<'_>,
    now: SystemTime,
    report: &mut Report,
) -> Result<Vec<Manifest>, GenError> {
    let roots: Vec<&str> = made
        .generations
        .iter()
        .map(|g| g.root.cert.as_str())
        .collect();
    let issuers: Vec<&str> = made
        .generations
        .iter()
        .map(|g| g.leaf_signer_cert())
        .collect();
    let pki = Pki {
        roots: &roots,
        issuers: &issuers,
        anchored: mesh.intermediate.is_some(),
        intermediate: made
            .signing
            .intermediate
            .as_ref()
            .map(|(_, pair, _)| pair.cert.as_str()),
        client: made.leaves.as_ref().map(|((client, _), _)| client),
        server: made.leaves.as_ref().map(|(_, (server, _))| server),
        crls: made.crls,
        ca_issuer: made.ca_issuer,
    };
    let files = manifests::manifests(mesh, gateway, &pki)?;
    report
        .warnings
        .extend(run_warnings(mesh, made.ca_issuer.is_some()));
    if let Some(warning) = self_check(mesh, gateway, &pki, now)? {
        report.warnings.push(warning);
    }
    Ok(files)
}

/// The mesh checked again (a library caller may not have), and the gateway it targets.
fn validated_gateway(mesh: &Mesh) -> Result<Gateway, GenError> {
    mesh.validate("the mesh description")?;
    Ok(mesh
        .gateway()
        .map_err(|(field, message)| crate::mesh::MeshError::Invalid {
            source_name: "the mesh description".into(),
            field,
            message,
        })?)
}

/// What happened to each certificate of the output: the CAs of every generation, then the
/// leaves (none with cert-manager).
fn cert_statuses(
    mesh: &Mesh,
    generations: &[&Generation],
    retiring: bool,
    leaves: &Leaves,
) -> Vec<(String, CertStatus)> {
    let mut statuses: Vec<(String, CertStatus)> = generations
        .iter()
        .flat_map(|generation| generation.statuses(retiring))
        .collect();
    if let Some(((_, client), (_, server))) = leaves {
        statuses.push((mesh.cluster_a.client_name.clone(), *client));
        statuses.push((mesh.cluster_b.server_name.clone(), *server));
    }
    statuses
}

/// What issues or reuses the leaves: the generation that signs them, its signer, and the
/// CRLs each generation's leaves are checked against (a leaf is checked against its own
/// generation's CRLs: the other root has the same name, and its CRLs are signed by a key that
/// generation does not trust).
struct LeafIssuer<'a> {
    mesh: &'a Mesh,
    options: &'a GenOptions,
    now: SystemTime,
    signing: &'a Generation,
    signer: Option<CertAndKey>,
    signer_status: CertStatus,
    /// At stage reissue, the generation whose leaves the stage replaces.
    other: Option<&'a Generation>,
    generation_crls: Vec<(&'a Generation, Vec<String>)>,
}

impl LeafIssuer<'_> {
    /// A new leaf; under a reused signer it must not outlive it.
    fn issue(&self, role: Role, name: &str) -> Result<CertAndKey, GenError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| GenError::RootKeyNeeded {
                what: format!("the {name} certificate"),
                path: self.signing.root_key_path.clone(),
            })?;
        let leaf = certs::issue_leaf(self.mesh, role, signer, self.now)?;
        if self.signer_status == CertStatus::Reused {
            if let Some((ca_end, leaf_end)) = certs::outlives_root(&leaf.cert, &signer.cert) {
                return Err(GenError::RootExpiresFirst {
                    path: cert_paths(&self.options.out, &self.signing.leaf_signer_name()).0,
                    root_not_after: ca_end,
                    leaf: name.to_owned(),
                    leaf_not_after: leaf_end,
                });
            }
        }
        Ok(leaf)
    }

    fn own_trust<'g>(&'g self, generation: &'g Generation) -> certs::LeafTrust<'g> {
        let own = self
            .generation_crls
            .iter()
            .find(|(g, _)| std::ptr::eq(*g, generation))
            .map_or(&[][..], |(_, crls)| crls.as_slice());
        leaf_trust(generation, own)
    }

    /// A leaf is reused only under the reused signer, and only while it still fits; at stage
    /// reissue, a leaf of the current generation is what the stage replaces.
    fn leaf(
        &self,
        existing: Option<CertAndKey>,
        role: Role,
        name: &str,
    ) -> Result<(CertAndKey, CertStatus), GenError> {
        let (mesh, options, now) = (self.mesh, self.options, self.now);
        let issued = || {
            self.issue(role, name)
                .map(|leaf| (leaf, CertStatus::Issued))
        };
        match existing {
            Some(pair)
                if self.other.is_some_and(|old| {
                    certs::check_leaf(&pair, role, self.own_trust(old), mesh, now).is_ok()
                }) =>
            {
                issued()
            }
            Some(_) if !options.force && self.signer_status == CertStatus::Issued => {
                Err(GenError::WouldOverwrite {
                    path: cert_paths(&options.out, name).0,
                    reason: if mesh.intermediate.is_some() {
                        "exists, but its issuing CA is new and did not issue it".into()
                    } else {
                        "exists, but the root is missing and a new one would not have issued it"
                            .into()
                    },
                })
            }
            Some(pair) if !options.force => {
                match certs::check_leaf(&pair, role, self.own_trust(self.signing), mesh, now) {
                    Ok(()) => Ok((pair, CertStatus::Reused)),
                    Err(misfit) if misfit.revoked && options.replace_revoked => issued(),
                    Err(misfit) => Err(GenError::WouldOverwrite {
                        path: misfit.path(&options.out, name),
                        reason: format!("no longer fits: {}", misfit.reason),
                    }),
                }
            }
            _ => issued(),
        }
    }
}

/// cert-manager's default CA Issuer signs with what gen would sign leaves with: the issuing CA
/// (with the root, so cert-manager's ca.crt is the root), else the root.
fn default_ca_issuer(
    mesh: &Mesh,
    signing: &Generation,
    signer: Option<&CertAndKey>,
) -> Result<Option<manifests::CaIssuerKey>, GenError> {
    match (mesh.certificates, mesh.issuer_ref()) {
        (Certificates::CertManager, (_, true)) => {
            let pair = signer.ok_or_else(|| GenError::RootKeyNeeded {
                what: "cert-manager's default CA Issuer (it signs with the root's key; or point [certManager.issuerRef] at an issuer of your own)".into(),
                path: signing.root_key_path.clone(),
            })?;
            let chain = match &signing.intermediate {
                Some(_) => format!("{}{}", pair.cert, signing.root.cert),
                None => pair.cert.clone(),
            };
            Ok(Some(manifests::CaIssuerKey {
                cert_chain: chain,
                key: pair.key.clone(),
            }))
        }
        _ => Ok(None),
    }
}

/// `--renew NAME` names a leaf or the issuing CA of this output, one gen may issue (the root
/// is renewed by a rotation, cert-manager's leaves by cert-manager).
fn check_renew(mesh: &Mesh, renew: &[String]) -> Result<(), GenError> {
    let client_name = mesh.cluster_a.client_name.as_str();
    let server_name = mesh.cluster_b.server_name.as_str();
    let intermediate_name = mesh.intermediate.as_ref().map(|i| i.name.as_str());
    for name in renew {
        if name == "root" || name == &mesh.root.name {
            return Err(GenError::Renew {
                name: name.clone(),
                why: "the root is renewed by a staged rotation, so neither mesh loses the other: peergate rotate --stage trust".into(),
            });
        }
        if mesh.certificates == Certificates::CertManager
            && [client_name, server_name].contains(&name.as_str())
        {
            return Err(GenError::Renew {
                name: name.clone(),
                why: "cert-manager issues and renews it (certificates = \"cert-manager\"): cmctl renew, or kubectl cert-manager renew, on its Certificate".into(),
            });
        }
        if ![client_name, server_name].contains(&name.as_str())
            && intermediate_name != Some(name.as_str())
        {
            return Err(GenError::Renew {
                name: name.clone(),
                why: format!(
                    "not a certificate of this output (it has {client_name}, {server_name}{})",
                    intermediate_name
                        .map(|n| format!(", {n}"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    Ok(())
}

/// The rotation stage a run takes the output to, from where it stands: each stage may be run
/// again, and only the next one may follow it.
fn next_stage(
    current_stage: Option<Stage>,
    requested: Option<Stage>,
) -> Result<Option<Stage>, GenError> {
    Ok(match (current_stage, requested) {
        (stage, None) => stage,
        (None | Some(Stage::Retire), Some(Stage::Trust))
        | (Some(Stage::Trust), Some(Stage::Trust)) => Some(Stage::Trust),
        (Some(Stage::Trust | Stage::Reissue), Some(Stage::Reissue)) => Some(Stage::Reissue),
        (Some(Stage::Reissue | Stage::Retire), Some(Stage::Retire)) => Some(Stage::Retire),
        (current, Some(requested)) => {
            return Err(GenError::RotationOrder {
                requested,
                next: match current {
                    None | Some(Stage::Retire) => Stage::Trust,
                    Some(Stage::Trust) => Stage::Reissue,
                    Some(Stage::Reissue) => Stage::Retire,
                },
            })
        }
    })
}

/// With `--root-key` the root keys live there: one in `certs/` too is refused, not guessed.
fn check_root_key_place(out: &Path, options: &GenOptions) -> Result<(), GenError> {
    for next in [false, true] {
        let in_out = cert_paths(out, if next { "root-next" } else { "root" }).1;
        if options.root_key.is_some() && in_out.exists() {
            return Err(GenError::WouldOverwrite {
                path: in_out,
                reason: "holds a root key, and --root-key says the root keys are kept elsewhere: move it there, or leave --root-key out".into(),
            });
        }
    }
    Ok(())
}

/// Every CA's CRL once any CA has one (Envoy checks the whole chain: a CA without one fails
/// every handshake); under an issuing CA, always. Each with its path and the root of the
/// generation whose CA signed it.
fn crl_files<'g>(
    out: &Path,
    mesh: &Mesh,
    generations: &[&'g Generation],
    retiring: bool,
    now: SystemTime,
) -> Result<Vec<(PathBuf, String, &'g str)>, GenError> {
    let crls_needed =
        mesh.intermediate.is_some() || generations.iter().any(|g| g.has_revocations());
    // Each CRL with the root of the generation whose CA signed it.
    let mut crl_files: Vec<(PathBuf, String, &'g str)> = Vec::new();
    if crls_needed {
        for generation in generations {
            for ca in generation.cas() {
                let path = crl_path(out, &generation.file_name(&ca.name, retiring));
                let wanted = ca.revocations.clone().unwrap_or_default();
                // Kept byte for byte unless its revocations change (or it is missing).
                let existing = read_optional(&crl_path(out, &ca.name))?.filter(|pem| {
                    revocation::read_crl(pem, &ca.cert).is_ok_and(|listed| listed == wanted)
                });
                let pem = match (existing, &ca.signer) {
                    (Some(pem), _) => pem,
                    (None, Some(signer)) => revocation::sign_crl(signer, &wanted, now)?,
                    (None, None) => {
                        return Err(GenError::RootKeyNeeded {
                            what: format!("the CRL of {}", ca.name),
                            path: generation.root_key_path.clone(),
                        })
                    }
                };
                crl_files.push((path, pem, generation.root.cert.as_str()));
            }
        }
    }
    Ok(crl_files)
}

/// Days left for every certificate of the output, and a warning with the command that renews
/// each one inside `plugin.expiryWarningDays`.
fn expiry_report(
    mesh: &Mesh,
    generations: &[&Generation],
    retiring: bool,
    leaves: Option<[(&str, &CertAndKey); 2]>,
    now: SystemTime,
    report: &mut Report,
) {
    let mut named: Vec<(String, &str)> = Vec::new();
    for generation in generations {
        for ca in generation.cas() {
            named.push((generation.file_name(&ca.name, retiring), ca.cert_ref));
        }
    }
    for (name, pair) in leaves.into_iter().flatten() {
        named.push((name.to_owned(), pair.cert.as_str()));
    }
    for (name, pem) in &named {
        if let Some((days, not_after)) = certs::days_left(pem, now) {
            if days <= i64::from(mesh.plugin.expiry_warning_days) {
                let renew = if name.starts_with("root") {
                    "peergate rotate --stage trust (then reissue, then retire: see README)"
                        .to_owned()
                } else {
                    format!("peergate gen --renew {name}")
                };
                report.warnings.push(format!(
                    "certificate {name} expires in {days} days ({not_after}), inside plugin.expiryWarningDays ({}): renew it with {renew}",
                    mesh.plugin.expiry_warning_days
                ));
            }
            report.expiry.push((name.clone(), days, not_after));
        }
    }
}

/// The warnings a run gives whatever it writes: settings that work against the user (Ed25519
/// in TLS, cert-manager's default Issuer with a CA key in the clusters, the deprecated listener
/// port, an Istio newer than tested).
fn run_warnings(mesh: &Mesh, default_ca_issuer: bool) -> Vec<String> {
    let mut warnings = Vec::new();
    if mesh.key_type == KeyType::Ed25519 {
        warnings.push(
            "keyType ed25519: Envoy's TLS library (BoringSSL) leaves Ed25519 out of the signature \
             algorithms it offers by default, so Istio's sidecars and gateways do not complete \
             mutual TLS with these certificates (seen with Envoy 1.40: the client is asked for no \
             certificate it can use); prefer ecdsa-p256"
                .into(),
        );
    }
    if default_ca_issuer {
        warnings.push(format!(
            "certificates = \"cert-manager\" with the default Issuer: the key of {} is in Secret {DEFAULT_ISSUER} of both clusters, where anyone who can read Secrets there can sign peers the gateway admits; to keep it out, point [certManager.issuerRef] at an issuer of your own (see README)",
            if mesh.intermediate.is_some() { "the issuing CA" } else { "the agreed root" }
        ));
    }
    if let Some(port) = mesh.cluster_b.plugin_listener_port {
        warnings.push(format!(
            "clusterB.pluginListenerPort is deprecated: it means the shared istio-system gateway `istio: ingressgateway`, as before; say so with [clusterB.gateway] existing = true, namespace = \"istio-system\", labels = {{ istio = \"ingressgateway\" }}, listenerPort = {port}, or leave both out for a gateway of its own"
        ));
    }
    let gateway_api = mesh
        .cluster_b
        .gateway
        .as_ref()
        .is_some_and(|g| g.api == GatewayApi::Kubernetes);
    if gateway_api && !mesh.istio_version.at_least(30) {
        warnings.push(format!(
            "clusterB.gateway.api = \"kubernetes\" on Istio {}: the Gateway's spec.tls.frontend (client-certificate validation) is only in the experimental channel of Gateway API v1.4, the release Istio 1.28 supports (the standard channel has it from v1.5, Istio 1.30); with the standard channel's CRDs the API server refuses the Gateway (unknown field spec.tls). Install the experimental channel (see README)",
            mesh.istio_version
        ));
    }
    if mesh
        .istio_version
        .at_least(crate::mesh::NEWEST_ISTIO_MINOR + 1)
    {
        warnings.push(format!(
            "istioVersion {} is newer than Istio 1.{}, the newest peergate is tested with: the output assumes nothing changed since",
            mesh.istio_version,
            crate::mesh::NEWEST_ISTIO_MINOR
        ));
    }

    warnings
}

/// Where the root's key is read and written: `--root-key` (`PATH.next` for the next root of a
/// rotation), else `certs/`.
fn root_key_path(out: &Path, root_key: Option<&Path>, next: bool) -> PathBuf {
    match (root_key, next) {
        (Some(path), false) => path.to_owned(),
        (Some(path), true) => PathBuf::from(format!("{}.next", path.display())),
        (None, false) => cert_paths(out, "root").1,
        (None, true) => cert_paths(out, "root-next").1,
    }
}

/// What a run writes: its last stage's one input.
struct Written<'a> {
    out: &'a Path,
    mesh: &'a Mesh,
    options: &'a GenOptions,
    /// The generations in the output after the run (the next one alone after retire).
    generations: &'a [&'a Generation],
    retiring: bool,
    /// The generation a retire archives.
    archived: Option<&'a Generation>,
    /// Each CRL's path and PEM (and the root of its generation).
    crl_files: &'a [(PathBuf, String, &'a str)],
    stage: Option<Stage>,
    /// The client's and the server's name and pair (static certificates).
    leaves: Option<[(&'a str, &'a CertAndKey); 2]>,
    files: &'a [Manifest],
}

/// On retire: the old root (and issuing CA) archived in `certs/retired/`, named by serial (the
/// key beside `--root-key` when it is kept there). Returns the next generation's own files,
/// which go once their content is in place under the current names.
fn stage_archive(
    staging: &mut Staging,
    out: &Path,
    mesh: &Mesh,
    options: &GenOptions,
    old: &Generation,
) -> Result<Vec<PathBuf>, GenError> {
    let key_path = |next: bool| root_key_path(out, options.root_key.as_deref(), next);
    let mut stale = Vec::new();
    // The retired root (and issuing CA) are kept in certs/retired/, named by serial.
    let retired = retired_dir(out);
    let serial = |pem: &str| {
        serial_of(pem)
            .map(|s| peergate_filter::peer::hex(&s))
            .unwrap_or_default()
    };
    let root_serial = serial(&old.root.cert);
    staging.stage(
        &retired.join(format!("root-{root_serial}-cert.pem")),
        old.root.cert.as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Some(key) = &old.root.key {
        let target = match &options.root_key {
            Some(path) => PathBuf::from(format!("{}.retired-{root_serial}", path.display())),
            None => retired.join(format!("root-{root_serial}-key.pem")),
        };
        staging.stage(&target, key.as_bytes(), KEY_MODE)?;
    }
    if let Some((name, pair, _)) = &old.intermediate {
        let serial = serial(&pair.cert);
        staging.stage(
            &retired.join(format!("{name}-{serial}-cert.pem")),
            pair.cert.as_bytes(),
            PUBLIC_MODE,
        )?;
        staging.stage(
            &retired.join(format!("{name}-{serial}-key.pem")),
            pair.key.as_bytes(),
            KEY_MODE,
        )?;
    }
    // The next generation's own files go once their content is in place.
    let mut next_names = vec!["root-next".to_owned()];
    if let Some(section) = &mesh.intermediate {
        next_names.push(format!("{}-next", section.name));
    }
    for name in next_names {
        let (cert_path, key_path) = cert_paths(out, &name);
        stale.extend([cert_path, key_path, crl_path(out, &name)]);
    }
    if options.root_key.is_some() {
        stale.push(key_path(true));
    }
    Ok(stale)
}

/// A generation's CA files: the root's certificate and key (a root key stays where it was
/// found, certs/ or --root-key; a new one goes there too, and on retire the next one takes the
/// current one's place), and the issuing CA's certificate and key.
fn stage_generation(
    staging: &mut Staging,
    out: &Path,
    options: &GenOptions,
    generation: &Generation,
    retiring: bool,
) -> Result<(), GenError> {
    let key_path = |next: bool| root_key_path(out, options.root_key.as_deref(), next);
    let root_file = generation.file_name(generation.root_name(), retiring);
    staging.stage(
        &cert_paths(out, &root_file).0,
        generation.root.cert.as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Some(key) = &generation.root.key {
        let target = if generation.next && retiring {
            key_path(false)
        } else {
            generation.root_key_path.clone()
        };
        // A root key stays where it was found (certs/, or --root-key); a new one goes
        // there too, and on retire the next one takes the current one's place.
        if generation.root_key_written
            || options.root_key.is_none()
            || target != generation.root_key_path
        {
            staging.stage(&target, key.as_bytes(), KEY_MODE)?;
        }
    }
    if let Some((name, pair, _)) = &generation.intermediate {
        let (cert_path, key_path) = cert_paths(out, &generation.file_name(name, retiring));
        staging.stage(&key_path, pair.key.as_bytes(), KEY_MODE)?;
        staging.stage(&cert_path, pair.cert.as_bytes(), PUBLIC_MODE)?;
    }
    Ok(())
}

/// Everything is ready: stage every file, then put them all in place, then remove what the run
/// made stale. Returns each file and what happened to it.
fn write_output(w: &Written<'_>) -> Result<Vec<(PathBuf, FileStatus)>, GenError> {
    let Written {
        out,
        mesh,
        options,
        generations,
        retiring,
        archived,
        crl_files,
        stage,
        leaves,
        files,
    } = *w;
    let mut staging = Staging::new();
    let mut stale_after: Vec<PathBuf> = Vec::new();
    for generation in generations {
        stage_generation(&mut staging, out, options, generation, retiring)?;
    }
    if let Some(old) = archived {
        stale_after.extend(stage_archive(&mut staging, out, mesh, options, old)?);
    }
    for (path, pem, _) in crl_files {
        staging.stage(path, pem.as_bytes(), PUBLIC_MODE)?;
    }
    staging.stage(
        &settings_path(out),
        crate::settings::Settings::of(mesh, options.root_key.as_deref())
            .render()
            .as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Some(stage) = stage {
        staging.stage(
            &rotation_path(out),
            format!("{}\n", stage.word()).as_bytes(),
            PUBLIC_MODE,
        )?;
    }
    for (name, pair) in leaves.into_iter().flatten() {
        let (cert_path, key_path) = cert_paths(out, name);
        staging.stage(&key_path, pair.key.as_bytes(), KEY_MODE)?;
        staging.stage(&cert_path, pair.cert.as_bytes(), PUBLIC_MODE)?;
    }
    for Manifest {
        cluster,
        file,
        yaml,
        secret,
    } in files
    {
        let mode = if *secret { KEY_MODE } else { PUBLIC_MODE };
        staging.stage(&out.join(cluster.dir()).join(file), yaml.as_bytes(), mode)?;
    }
    let mut written = staging.commit()?;
    for path in stale_after {
        if let Some(status) = remove_stale(&path)? {
            written.push((path, status));
        }
    }
    // A file of another mode (the other plugin API, the RBAC of credentialName, a gateway of
    // its own) would be applied with the rest: it goes.
    for (cluster, file) in &manifests::optional_files(mesh) {
        if files
            .iter()
            .any(|m| m.cluster == *cluster && m.file == *file)
        {
            continue;
        }
        let path = out.join(cluster.dir()).join(file);
        if let Some(status) = remove_stale(&path)? {
            written.push((path, status));
        }
    }
    Ok(written)
}

/// What to do after a run: check the policy before applying it (the very first
/// configuration a gateway gets cannot fall back to an earlier one), and on an existing
/// gateway turn on the log level that shows the decision lines.
fn notes(mesh: &Mesh, gateway: &Gateway, out: &Path) -> Vec<String> {
    let cluster_b = out.join("cluster-b");
    // With cert-manager the client's certificate is in cluster A's Secret once issued.
    let client_cert = match mesh.certificates {
        Certificates::Static => cert_paths(out, &mesh.cluster_a.client_name)
            .0
            .display()
            .to_string(),
        Certificates::CertManager => format!(
            "<(kubectl -n {} get secret {} -o jsonpath='{{.data.tls\\.crt}}' | base64 -d)",
            mesh.cluster_a.namespace,
            mesh.client_secret_name()
        ),
    };
    let mut notes = vec![format!(
        "before `kubectl apply -k {}`, check the policy with the gateway's own engine: peergate audit --policy {} --cert {} --host {} (a pluginConfig the filter refuses leaves a new gateway answering 500 to every request on its host: Istio has no earlier configuration to keep)",
        cluster_b.display(),
        cluster_b.display(),
        client_cert,
        mesh.cluster_b.domain,
    )];
    notes.push(format!(
        "once both clusters are applied, call the gateway as cluster A's sidecar does and see what, if anything, refuses it: peergate probe --from {} --connect <the gateway's address>:{}",
        out.display(),
        gateway.public_https_port()
    ));
    if mesh.monitoring.as_ref().is_some_and(|m| m.alerts) {
        notes.push(format!(
            "{}/prometheusrule.yaml needs prometheus-operator's PrometheusRule CRD in cluster B (kube-prometheus-stack installs it): without it `kubectl apply -k` refuses the kind; set monitoring.alerts = false to leave it out",
            cluster_b.display()
        ));
    }
    if mesh.certificates == Certificates::CertManager {
        notes.push(format!(
            "cert-manager issues the leaves: Certificate {}/{} (Secret {}) in cluster A and {}/{} (Secret {}) in cluster B; kubectl get certificate -A shows them Ready",
            mesh.cluster_a.namespace,
            mesh.cluster_a.client_name,
            mesh.client_secret_name(),
            mesh.credential_namespace(gateway),
            mesh.cluster_b.server_name,
            mesh.server_secret_name(),
        ));
    }
    notes.extend(gateway_note(mesh, gateway, &cluster_b));
    notes
}

/// What the gateway's kind asks of the user: wait for Istio's deployment, the owner's steps
/// for a shared Gateway API gateway, or the log level an existing gateway needs.
fn gateway_note(mesh: &Mesh, gateway: &Gateway, cluster_b: &Path) -> Option<String> {
    if let Gateway::Own {
        api: GatewayApi::Kubernetes,
        name,
        namespace,
        ..
    } = gateway
    {
        return Some(format!(
            "Istio deploys the gateway for Gateway {namespace}/{name} (Deployment and Service {name}-istio); it is serving when its conditions say so: kubectl -n {namespace} wait --for=condition=Programmed gateway/{name}, and kubectl -n {namespace} get gateway {name} -o yaml shows Accepted, Programmed and each listener's ResolvedRefs"
        ));
    }
    if let Gateway::ListenerSet {
        gateway: owner_gateway,
        namespace,
        port,
        ..
    } = gateway
    {
        let b = cluster_b.display();
        return Some(format!(
            "for the owner of Gateway {namespace}/{owner_gateway}: merge {b}/{} into the Gateway (allowedListeners for namespace {ns}, and spec.tls.frontend.perPort for port {port}: keep your other entries, and no other listener may use port {port}, since that validation holds for every listener of the port), apply {b}/{} (the plugin, attached to the Gateway, scoped to port {port}), and run `istioctl proxy-config log <pod> -n {namespace} --level wasm:info` on each gateway Pod (kubectl -n {namespace} get pods -l {GATEWAY_NAME_LABEL}={owner_gateway}) for the decision lines; then the partner calls https://{domain}:{port}; kubectl -n {ns} get listenerset {ls} -o yaml shows Accepted and Programmed",
            manifests::OWNER_GATEWAY_FILE,
            mesh.plugin.api.file_name(),
            ns = mesh.cluster_b.namespace,
            domain = mesh.cluster_b.domain,
            ls = mesh.cluster_b.service,
        ));
    }
    if let Gateway::Existing {
        namespace, labels, ..
    } = gateway
    {
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Some(format!(
            "the decision lines are logged at info, and an existing gateway runs Envoy at warning: on each gateway Pod run `istioctl proxy-config log <pod> -n {namespace} --level wasm:info` (pods: kubectl -n {namespace} get pods -l {})",
            selector.join(",")
        ));
    }
    None
}

/// At the connection layer a revocation reaches new connections only (Envoy's handshake and
/// the filter both decide once per connection): how to cut the ones already open.
fn open_connections_note(gateway: &Gateway, layer: ChosenLayer) -> Option<String> {
    let deployment = gateway.deployment_name()?;
    let namespace = gateway.namespace();
    (layer.layer == peergate_filter::Layer::Connection).then(|| format!(
        "the filter decides once per connection (layer connection): connections opened before the revocation is applied stay open until they close; cut them with kubectl -n {namespace} rollout restart deployment {deployment}"
    ))
}

/// The generated pluginConfig must compile in the filter. Whether it admits the generated
/// client is reported: with an explicit `clusterB.allowedSans` excluding it may be the point.
fn self_check(
    mesh: &Mesh,
    gateway: &Gateway,
    pki: &Pki<'_>,
    now: SystemTime,
) -> Result<Option<String>, GenError> {
    let config = manifests::plugin_config(mesh, gateway, pki);
    let policy = peergate_filter::compile_json(config.to_json().as_bytes())?;
    // With cert-manager there is no client certificate yet to check.
    let Some(client) = pki.client else {
        return Ok(None);
    };
    let der = peergate_filter::xfcc::certificate_der_from_pem(client.cert.as_bytes())
        .ok_or(GenError::ClientUnreadable)?;
    let decision = policy.decide(Some(&der), &mesh.cluster_b.domain, now);
    Ok((!decision.is_allowed()).then(|| {
        format!(
            "the gateway's policy does not admit cluster A's client ({}): {}",
            decision.reason.code(),
            decision.reason.explain()
        )
    }))
}
