//! `peergate gen`: certificates plus both clusters' objects, in one consistent run.
//!
//! Everything is computed and checked in memory first (certificates, objects, the filter's
//! compile of the pluginConfig, the client admitted by it); files are written only after that,
//! each atomically, so a failure leaves the previous output as it was.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::certs::{self, CertAndKey, CertError, Role};
use crate::manifests::{self, Manifest, ManifestError, Pki};
use crate::mesh::{Gateway, KeyType, Mesh};
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
        }
    }
}

/// Which generated CA a revocation goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeCa {
    /// The root's CRL (a leaf it signed, or the issuing CA).
    Root,
    /// The issuing CA's CRL.
    Intermediate,
}

/// A certificate to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    /// Whose CRL.
    pub ca: RevokeCa,
    /// The serial (big-endian).
    pub serial: Vec<u8>,
    /// Why.
    pub reason: Option<Reason>,
}

/// A CA whose CRL a run writes: its name in `certs/`, its certificate, the revocations to list
/// (`None`: none yet), and its certificate and key when it can sign.
struct CaCrl<'a> {
    name: &'a str,
    cert: &'a str,
    revocations: Option<Vec<Revocation>>,
    signer: Option<CertAndKey>,
}

/// The root: its certificate, and its key when available.
struct Root {
    cert: String,
    key: Option<String>,
}

/// Paths of one certificate and its key under `DIR/certs/`.
pub fn cert_paths(out: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = out.join("certs");
    (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    )
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

/// Path of a CA's CRL under `DIR/certs/`.
pub fn crl_path(out: &Path, name: &str) -> PathBuf {
    out.join("certs").join(format!("{name}-crl.pem"))
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
    mesh.validate("the mesh description")?;
    let gateway = mesh
        .gateway()
        .map_err(|(field, message)| crate::mesh::MeshError::Invalid {
            source_name: "the mesh description".into(),
            field,
            message,
        })?;
    let out = &options.out;
    let now = options.now;
    let mut report = Report::default();
    let client_name = mesh.cluster_a.client_name.as_str();
    let server_name = mesh.cluster_b.server_name.as_str();

    let existing_client = existing_pair(out, client_name)?;
    let existing_server = existing_pair(out, server_name)?;

    // The root: its certificate in certs/, its key there or at --root-key (never copied).
    let (root_cert_path, root_key_in_out) = cert_paths(out, "root");
    let root_key_path = options
        .root_key
        .clone()
        .unwrap_or_else(|| root_key_in_out.clone());
    if options.root_key.is_some() && root_key_in_out.exists() {
        return Err(GenError::WouldOverwrite {
            path: root_key_in_out,
            reason: "holds the root key, and --root-key says it is kept elsewhere: move it there, or leave --root-key out".into(),
        });
    }
    let existing_root_cert = read_optional(&root_cert_path)?;
    let existing_root_key = read_optional(&root_key_path)?;
    let mut root_key_written = false;
    let (root, root_status) = match (existing_root_cert, existing_root_key) {
        (Some(cert), key) if !options.force => {
            match certs::check_root(&cert, key.as_deref(), mesh, now) {
                Ok(()) => (Root { cert, key }, CertStatus::Reused),
                Err(misfit) => {
                    return Err(GenError::WouldOverwrite {
                        path: if misfit.in_key {
                            root_key_path.clone()
                        } else {
                            root_cert_path.clone()
                        },
                        reason: format!("the root no longer fits: {}", misfit.reason),
                    })
                }
            }
        }
        (None, Some(_)) if options.root_key.is_none() && !options.force => {
            return Err(GenError::WouldOverwrite {
                path: root_key_path.clone(),
                reason: format!(
                    "exists without its certificate {}",
                    root_cert_path.display()
                ),
            })
        }
        // A key kept elsewhere is the root's, whatever happens here: a new certificate for it.
        (_, Some(key)) if options.root_key.is_some() => (
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
    report.certs.push(("root".into(), root_status));
    let root_signer = |what: &str| -> Result<CertAndKey, GenError> {
        match &root.key {
            Some(key) => Ok(CertAndKey {
                cert: root.cert.clone(),
                key: key.clone(),
            }),
            None => Err(GenError::RootKeyNeeded {
                what: what.to_owned(),
                path: root_key_path.clone(),
            }),
        }
    };

    // CRLs already issued: their revocations are kept. One that its CA did not sign (the CA
    // was replaced) is dropped, with a warning.
    let mut root_revocations = read_revocations(out, "root", &root.cert, root_status, &mut report)?;
    if let Some(request) = options.revoke.as_ref().filter(|r| r.ca == RevokeCa::Root) {
        add_revocation(&mut root_revocations, request, now, &mut report);
    }

    // The issuing CA, when there is one.
    let intermediate = match &mesh.intermediate {
        None => None,
        Some(section) => {
            let name = section.name.as_str();
            let revoked_by_root = |pair: &CertAndKey| {
                serial_of(&pair.cert).is_some_and(|serial| {
                    root_revocations
                        .as_ref()
                        .is_some_and(|list| list.iter().any(|r| r.serial == serial))
                })
            };
            let (pair, status) = match existing_pair(out, name)? {
                Some(_) if !options.force && root_status == CertStatus::Issued => {
                    return Err(GenError::WouldOverwrite {
                        path: cert_paths(out, name).0,
                        reason: "exists, but the root is new and did not issue it".into(),
                    })
                }
                Some(pair) if !options.force && revoked_by_root(&pair) && !options.replace_revoked => {
                    return Err(GenError::WouldOverwrite {
                        path: cert_paths(out, name).0,
                        reason: "is revoked on the root's CRL: a new issuing CA (and new leaves) would replace it".into(),
                    })
                }
                Some(pair) if !options.force && !revoked_by_root(&pair) => {
                    match certs::check_intermediate(&pair, name, &root.cert, mesh, now) {
                        Ok(()) => (pair, CertStatus::Reused),
                        Err(misfit) => {
                            return Err(GenError::WouldOverwrite {
                                path: misfit.path(out, name),
                                reason: format!("no longer fits: {}", misfit.reason),
                            })
                        }
                    }
                }
                _ => (
                    certs::issue_intermediate(
                        mesh,
                        name,
                        section.validity.0,
                        &root_signer("the issuing CA")?,
                        now,
                    )?,
                    CertStatus::Issued,
                ),
            };
            report.certs.push((name.to_owned(), status));
            Some((name, pair, status))
        }
    };
    let mut intermediate_revocations = match &intermediate {
        Some((name, pair, status)) => {
            read_revocations(out, name, &pair.cert, *status, &mut report)?
        }
        None => None,
    };
    if let Some(request) = options
        .revoke
        .as_ref()
        .filter(|r| r.ca == RevokeCa::Intermediate)
    {
        add_revocation(&mut intermediate_revocations, request, now, &mut report);
    }
    // What signs the leaves: the issuing CA, or the root (whose key may be elsewhere).
    let (signer_cert, signer_status) = match &intermediate {
        Some((_, pair, status)) => (pair.cert.clone(), *status),
        None => (root.cert.clone(), root_status),
    };
    let signer: Option<CertAndKey> = match &intermediate {
        Some((_, pair, _)) => Some(pair.clone()),
        None => root.key.as_ref().map(|key| CertAndKey {
            cert: root.cert.clone(),
            key: key.clone(),
        }),
    };

    // Every CA's CRL once any CA has one (Envoy checks the whole chain: a CA without one fails
    // every handshake); under an issuing CA, always.
    let crls_needed =
        intermediate.is_some() || root_revocations.is_some() || intermediate_revocations.is_some();
    let mut crl_files: Vec<(String, String)> = Vec::new();
    if crls_needed {
        let mut cas = vec![CaCrl {
            name: "root",
            cert: root.cert.as_str(),
            revocations: root_revocations.clone(),
            signer: root.key.as_ref().map(|key| CertAndKey {
                cert: root.cert.clone(),
                key: key.clone(),
            }),
        }];
        if let Some((name, pair, _)) = &intermediate {
            cas.push(CaCrl {
                name,
                cert: pair.cert.as_str(),
                revocations: intermediate_revocations.clone(),
                signer: Some(pair.clone()),
            });
        }
        for CaCrl {
            name,
            cert: ca_cert,
            revocations,
            signer: ca,
        } in cas
        {
            let path = crl_path(out, name);
            let wanted = revocations.unwrap_or_default();
            // Kept byte for byte unless its revocations change (or it is missing).
            let existing = read_optional(&path)?.filter(|pem| {
                revocation::read_crl(pem, ca_cert).is_ok_and(|listed| listed == wanted)
            });
            let pem = match (existing, &ca) {
                (Some(pem), _) => pem,
                (None, Some(ca)) => revocation::sign_crl(ca, &wanted, now)?,
                (None, None) => {
                    return Err(GenError::RootKeyNeeded {
                        what: "the root's CRL".into(),
                        path: root_key_path.clone(),
                    })
                }
            };
            crl_files.push((name.to_owned(), pem));
        }
    }
    let crls: Vec<String> = crl_files.iter().map(|(_, pem)| pem.clone()).collect();

    let issue = |role: Role, name: &str| -> Result<CertAndKey, GenError> {
        let signer = signer.as_ref().ok_or_else(|| GenError::RootKeyNeeded {
            what: format!("the {name} certificate"),
            path: root_key_path.clone(),
        })?;
        let leaf = certs::issue_leaf(mesh, role, signer, now)?;
        if signer_status == CertStatus::Reused {
            if let Some((ca_end, leaf_end)) = certs::outlives_root(&leaf.cert, &signer.cert) {
                let ca_name = intermediate.as_ref().map_or("root", |(name, _, _)| *name);
                return Err(GenError::RootExpiresFirst {
                    path: cert_paths(out, ca_name).0,
                    root_not_after: ca_end,
                    leaf: name.to_owned(),
                    leaf_not_after: leaf_end,
                });
            }
        }
        Ok(leaf)
    };
    // A leaf is reused only under the reused signer, and only while it still fits.
    let leaf = |existing: Option<CertAndKey>, role: Role, name: &str| match existing {
        Some(_) if !options.force && signer_status == CertStatus::Issued => {
            Err(GenError::WouldOverwrite {
                path: cert_paths(out, name).0,
                reason: if intermediate.is_some() {
                    "exists, but its issuing CA is new and did not issue it".into()
                } else {
                    "exists, but the root is missing and a new one would not have issued it".into()
                },
            })
        }
        Some(pair) if !options.force => {
            let trust = certs::LeafTrust {
                signer: &signer_cert,
                anchor: intermediate.as_ref().map(|_| root.cert.as_str()),
                crls: &crls,
            };
            match certs::check_leaf(&pair, role, trust, mesh, now) {
                Ok(()) => Ok((pair, CertStatus::Reused)),
                Err(misfit) if misfit.revoked && options.replace_revoked => {
                    issue(role, name).map(|leaf| (leaf, CertStatus::Issued))
                }
                Err(misfit) => Err(GenError::WouldOverwrite {
                    path: misfit.path(out, name),
                    reason: format!("no longer fits: {}", misfit.reason),
                }),
            }
        }
        _ => issue(role, name).map(|leaf| (leaf, CertStatus::Issued)),
    };
    let (client, client_status) = leaf(existing_client, Role::Client, client_name)?;
    let (server, server_status) = leaf(existing_server, Role::Server, server_name)?;
    report.certs.push((client_name.to_owned(), client_status));
    report.certs.push((server_name.to_owned(), server_status));

    let pki = Pki {
        root: &root.cert,
        intermediate: intermediate.as_ref().map(|(_, pair, _)| pair.cert.as_str()),
        client: &client,
        server: &server,
        crls: &crls,
    };
    let files = manifests::manifests(mesh, &gateway, &pki)?;
    if mesh.key_type == KeyType::Ed25519 {
        report.warnings.push(
            "keyType ed25519: Envoy's TLS library (BoringSSL) leaves Ed25519 out of the signature \
             algorithms it offers by default, so Istio's sidecars and gateways do not complete \
             mutual TLS with these certificates (seen with Envoy 1.40: the client is asked for no \
             certificate it can use); prefer ecdsa-p256"
                .into(),
        );
    }
    if let Some(warning) = self_check(mesh, &gateway, &pki, now)? {
        report.warnings.push(warning);
    }
    report.notes = notes(mesh, &gateway, out);
    if let Some(port) = mesh.cluster_b.plugin_listener_port {
        report.warnings.push(format!(
            "clusterB.pluginListenerPort is deprecated: it means the shared istio-system gateway `istio: ingressgateway`, as before; say so with [clusterB.gateway] existing = true, namespace = \"istio-system\", labels = {{ istio = \"ingressgateway\" }}, listenerPort = {port}, or leave both out for a gateway of its own"
        ));
    }
    if mesh
        .istio_version
        .at_least(crate::mesh::NEWEST_ISTIO_MINOR + 1)
    {
        report.warnings.push(format!(
            "istioVersion {} is newer than Istio 1.{}, the newest peergate is tested with: the output assumes nothing changed since",
            mesh.istio_version,
            crate::mesh::NEWEST_ISTIO_MINOR
        ));
    }

    // Everything is ready: stage every file, then put them all in place.
    let mut staging = Staging::new();
    staging.stage(&root_cert_path, root.cert.as_bytes(), PUBLIC_MODE)?;
    if let (Some(key), true) = (&root.key, root_key_written || options.root_key.is_none()) {
        // The root key stays where it was found (in certs/, or at --root-key); a new one goes
        // to --root-key when given.
        staging.stage(&root_key_path, key.as_bytes(), KEY_MODE)?;
    }
    let mut pairs = vec![(client_name, &client), (server_name, &server)];
    if let Some((name, pair, _)) = &intermediate {
        pairs.insert(0, (name, pair));
    }
    for (name, pair) in pairs {
        let (cert_path, key_path) = cert_paths(out, name);
        staging.stage(&key_path, pair.key.as_bytes(), KEY_MODE)?;
        staging.stage(&cert_path, pair.cert.as_bytes(), PUBLIC_MODE)?;
    }
    for (name, pem) in &crl_files {
        staging.stage(&crl_path(out, name), pem.as_bytes(), PUBLIC_MODE)?;
    }
    for Manifest {
        cluster,
        file,
        yaml,
        secret,
    } in &files
    {
        let mode = if *secret { KEY_MODE } else { PUBLIC_MODE };
        staging.stage(&out.join(cluster.dir()).join(file), yaml.as_bytes(), mode)?;
    }
    report.files = staging.commit()?;
    // A file of another mode (the other plugin API, the RBAC of credentialName, a gateway of
    // its own) would be applied with the rest: it goes.
    for (cluster, file) in manifests::OPTIONAL_FILES
        .iter()
        .chain(&[(manifests::Cluster::B, manifests::XFCC_PATCH_FILE)])
    {
        if files
            .iter()
            .any(|m| m.cluster == *cluster && m.file == *file)
        {
            continue;
        }
        let path = out.join(cluster.dir()).join(file);
        if let Some(status) = remove_stale(&path)? {
            report.files.push((path, status));
        }
    }
    Ok(report)
}

/// What to do after a run: check the policy before applying it (the very first
/// configuration a gateway gets cannot fall back to an earlier one), and on an existing
/// gateway turn on the log level that shows the decision lines.
fn notes(mesh: &Mesh, gateway: &Gateway, out: &Path) -> Vec<String> {
    let cluster_b = out.join("cluster-b");
    let mut notes = vec![format!(
        "before `kubectl apply -k {}`, check the policy with the gateway's own engine: peergate audit --policy {} --cert {} --host {} (a pluginConfig the filter refuses leaves a new gateway answering 500 to every request on its host: Istio has no earlier configuration to keep)",
        cluster_b.display(),
        cluster_b.display(),
        cert_paths(out, &mesh.cluster_a.client_name).0.display(),
        mesh.cluster_b.domain,
    )];
    if let Gateway::Existing {
        namespace, labels, ..
    } = gateway
    {
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        notes.push(format!(
            "the decision lines are logged at info, and an existing gateway runs Envoy at warning: on each gateway Pod run `istioctl proxy-config log <pod> -n {namespace} --level wasm:info` (pods: kubectl -n {namespace} get pods -l {})",
            selector.join(",")
        ));
    }
    notes
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
    let der = peergate_filter::xfcc::certificate_der_from_pem(pki.client.cert.as_bytes())
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
