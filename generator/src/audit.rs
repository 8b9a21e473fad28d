//! `peergate audit` and `peergate inspect`: the filter's policy core run natively on a
//! policy file and certificates. Loading and reporting live here; the decisions are the core's.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use peergate_filter::document::{find_plugin_configs, DocumentError};
use peergate_filter::inspect::{certificates_from_bytes, CertificateInputError};
use peergate_filter::policy::rejection_log_line;
use peergate_filter::{compile, Policy};

/// Why an audit could not be run: bad input, never a verdict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A file or folder cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A policy file is neither YAML nor JSON, or holds no peergate configuration.
    #[error("{path}: {source}")]
    Document {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: DocumentError,
    },
    /// A folder holds no peergate WasmPlugin.
    #[error("{dir}: no peergate WasmPlugin or TrafficExtension in its {files} YAML/JSON files")]
    NoPolicyInFolder {
        /// The folder.
        dir: PathBuf,
        /// How many files were read.
        files: usize,
    },
    /// More than one peergate configuration was found.
    #[error("{}: more than one peergate configuration ({}); point --policy at one file", .path.display(), .found.join("; "))]
    Ambiguous {
        /// The file or folder given.
        path: PathBuf,
        /// Where each was found.
        found: Vec<String>,
    },
    /// The filter would refuse the configuration (and so the gateway would not start it).
    #[error("{path} ({origin}): the filter would refuse this configuration and log: {log_line}")]
    Rejected {
        /// The file.
        path: PathBuf,
        /// Which object held it.
        origin: String,
        /// The filter's own log line.
        log_line: String,
    },
    /// A certificate file cannot be used.
    #[error("{path}: {source}")]
    Certificates {
        /// The file (`-` for standard input).
        path: String,
        /// What is wrong with it.
        source: CertificateInputError,
    },
    /// An `x-forwarded-client-cert` value carries no usable certificate.
    #[error("--xfcc: {0}")]
    Xfcc(String),
}

/// A compiled policy and where it came from.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The file it was read from.
    pub file: PathBuf,
    /// What held it (`WasmPlugin istio-system/peergate` or `pluginConfig`).
    pub origin: String,
    /// The compiled policy.
    pub policy: Policy,
}

/// Reads the policy from a WasmPlugin manifest, a `pluginConfig` JSON file, or a folder
/// holding exactly one peergate WasmPlugin (such as `manifests/cluster-b`).
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, AuditError> {
    let read_error = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    let mut found = Vec::new();
    if metadata.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_error)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        for file in &files {
            let text = read_text(file)?;
            match find_plugin_configs(&text) {
                Ok(configs) => found.extend(configs.into_iter().map(|c| (file.clone(), c))),
                // Other objects (Gateways, Secrets, kustomizations) are expected in a folder.
                Err(DocumentError::NotFound { .. }) => {}
                Err(source) => {
                    return Err(AuditError::Document {
                        path: file.clone(),
                        source,
                    })
                }
            }
        }
        if found.is_empty() {
            return Err(AuditError::NoPolicyInFolder {
                dir: path.to_owned(),
                files: files.len(),
            });
        }
    } else {
        let text = read_text(path)?;
        let configs = find_plugin_configs(&text).map_err(|source| AuditError::Document {
            path: path.to_owned(),
            source,
        })?;
        found.extend(configs.into_iter().map(|c| (path.to_owned(), c)));
    }
    if found.len() > 1 {
        return Err(AuditError::Ambiguous {
            path: path.to_owned(),
            found: found
                .iter()
                .map(|(file, c)| format!("{} in {}", c.origin, file.display()))
                .collect(),
        });
    }
    let Some((file, found)) = found.pop() else {
        return Err(AuditError::NoPolicyInFolder {
            dir: path.to_owned(),
            files: 0,
        });
    };
    let rejected = |log_line| AuditError::Rejected {
        path: file.clone(),
        origin: found.origin.clone(),
        log_line,
    };
    let config = found
        .config
        .map_err(|e| rejected(rejection_log_line(&e.into())))?;
    let policy = compile(&config).map_err(|e| rejected(rejection_log_line(&e)))?;
    Ok(LoadedPolicy {
        file,
        origin: found.origin,
        policy,
    })
}

fn read_text(path: &Path) -> Result<String, AuditError> {
    std::fs::read_to_string(path).map_err(|source| AuditError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A certificate to audit and where it came from.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `client.pem[0]`, `xfcc[1]`: for people.
    pub source: String,
    /// The DER.
    pub der: Vec<u8>,
}

/// Every certificate in a PEM bundle or DER file; `label` names it in messages (`-` for
/// standard input).
pub fn certificates_from_file(label: &str, bytes: &[u8]) -> Result<Vec<Subject>, AuditError> {
    let ders = certificates_from_bytes(bytes).map_err(|source| AuditError::Certificates {
        path: label.to_owned(),
        source,
    })?;
    let single = ders.len() == 1;
    Ok(ders
        .into_iter()
        .enumerate()
        .map(|(i, der)| Subject {
            source: if single {
                label.to_owned()
            } else {
                format!("{label}[{i}]")
            },
            der,
        })
        .collect())
}

/// Every `Cert=` of an `x-forwarded-client-cert` value.
pub fn certificates_from_xfcc(value: &str) -> Result<Vec<Subject>, AuditError> {
    let values = peergate_filter::xfcc::xfcc_certs(value);
    if values.is_empty() {
        return Err(AuditError::Xfcc(
            "no Cert= field (the gateway adds it with forward_client_cert_details and set_current_client_cert_details.cert)".into(),
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, text)| {
            peergate_filter::xfcc::certificate_der_from_pem(text.as_bytes())
                .map(|der| Subject {
                    source: format!("xfcc[{i}]"),
                    der,
                })
                .ok_or_else(|| {
                    AuditError::Xfcc(format!(
                        "element {i}: Cert= is not a (URL-encoded) PEM certificate"
                    ))
                })
        })
        .collect()
}

pub use peergate_filter::audit::{AuditRun, AuditedCertificate, PolicyInfo};
pub use peergate_filter::routes::RequestLine;

/// Audits each certificate for a request to `authority` (with its method and path when
/// routes are to be judged) at `at`, in the policy core.
pub fn audit(
    loaded: &LoadedPolicy,
    subjects: &[Subject],
    authority: &str,
    request: Option<RequestLine<'_>>,
    at: SystemTime,
) -> AuditRun {
    loaded.policy.audit_run(
        &loaded.file.display().to_string(),
        &loaded.origin,
        subjects
            .iter()
            .map(|s| (s.source.as_str(), s.der.as_slice())),
        authority,
        request,
        at,
    )
}
