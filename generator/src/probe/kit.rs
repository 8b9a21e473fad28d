//! The probe's inputs: PEM files, or a generated output folder read as cluster A's sidecar
//! sees it (its DestinationRule's `sni`, port and host, and the Secret it mounts).

use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_json::Value;

use super::{ClientIdentity, ProbeError};

fn read(path: &Path) -> Result<Vec<u8>, ProbeError> {
    std::fs::read(path).map_err(|source| ProbeError::Read {
        file: path.display().to_string(),
        source,
    })
}

/// Every certificate in PEM `bytes` read from `source`.
fn certificates(source: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let certificates = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProbeError::Pem {
            file: source.to_owned(),
            why: format!("not PEM certificates: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(ProbeError::Pem {
            file: source.to_owned(),
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certificates)
}

fn private_key(source: &str, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, ProbeError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| ProbeError::Pem {
        file: source.to_owned(),
        why: format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

/// The agreed root(s) from a PEM file.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    certificates(&path.display().to_string(), &read(path)?)
}

/// A client certificate chain and its key from PEM files.
pub fn read_client(cert: &Path, key: &Path) -> Result<ClientIdentity, ProbeError> {
    let source = cert.display().to_string();
    Ok(ClientIdentity {
        chain: certificates(&source, &read(cert)?)?,
        key: private_key(&key.display().to_string(), &read(key)?)?,
        source,
    })
}

/// What cluster A's sidecar uses to call the gateway, read from a generated folder.
#[derive(Debug)]
pub struct SidecarKit {
    /// The host the sidecar calls (the ServiceEntry's and DestinationRule's host).
    pub host: String,
    /// The port it originates mutual TLS to.
    pub port: u16,
    /// The server name it sends, and checks.
    pub sni: String,
    /// Its client certificate and key (the Secret's `tls.crt`, `tls.key`).
    pub client: ClientIdentity,
    /// The roots it verifies the gateway with (the Secret's `ca.crt`).
    pub roots: Vec<CertificateDer<'static>>,
    /// Where the roots came from.
    pub roots_source: String,
}

/// Reads `OUT/cluster-a/`: the DestinationRule that originates MUTUAL TLS and the Secret that
/// holds its certificate.
pub fn from_output(out: &Path) -> Result<SidecarKit, ProbeError> {
    let dir = out.join("cluster-a");
    let documents = documents(&dir)?;
    let (host, port, sni) = mutual_tls_origination(&dir, &documents)?;
    let (secret_file, data) = client_secret(&dir, &documents)?;
    let field = |key: &str| -> Result<Vec<u8>, ProbeError> {
        let text = data
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ProbeError::Kit {
                file: secret_file.display().to_string(),
                why: format!("the Secret has no data.{key}"),
            })?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| ProbeError::Kit {
                file: secret_file.display().to_string(),
                why: format!("data.{key} is not base64: {e}"),
            })
    };
    let label = |key: &str| format!("{} data.{key}", secret_file.display());
    Ok(SidecarKit {
        host,
        port,
        sni,
        client: ClientIdentity {
            chain: certificates(&label("tls.crt"), &field("tls.crt")?)?,
            key: private_key(&label("tls.key"), &field("tls.key")?)?,
            source: label("tls.crt"),
        },
        roots: certificates(&label("ca.crt"), &field("ca.crt")?)?,
        roots_source: label("ca.crt"),
    })
}

/// Every YAML document in `dir`, with its file.
fn documents(dir: &Path) -> Result<Vec<(PathBuf, Value)>, ProbeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ProbeError::Read {
        file: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = String::from_utf8_lossy(&read(&file)?).into_owned();
        for document in yaml_serde::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).map_err(|e| ProbeError::Kit {
                file: file.display().to_string(),
                why: format!("not YAML: {e}"),
            })?;
            out.push((file.clone(), value));
        }
    }
    Ok(out)
}

/// Host, port and `sni` of the DestinationRule whose port-level TLS is MUTUAL.
fn mutual_tls_origination(
    dir: &Path,
    documents: &[(PathBuf, Value)],
) -> Result<(String, u16, String), ProbeError> {
    for (_, doc) in documents
        .iter()
        .filter(|(_, d)| d.get("kind").is_some_and(|k| k == "DestinationRule"))
    {
        let host = at(doc, "/spec/host").as_str().unwrap_or_default();
        let policies = at(doc, "/spec/subsets")
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| at(s, "/trafficPolicy"))
            .chain(std::iter::once(at(doc, "/spec/trafficPolicy")));
        for policy in policies {
            let settings = at(policy, "/portLevelSettings");
            for setting in settings.as_array().into_iter().flatten() {
                if at(setting, "/tls/mode") != "MUTUAL" {
                    continue;
                }
                let port = at(setting, "/port/number")
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok());
                if let Some(port) = port {
                    let sni = at(setting, "/tls/sni").as_str().unwrap_or(host);
                    return Ok((host.to_owned(), port, sni.to_owned()));
                }
            }
        }
    }
    Err(ProbeError::Kit {
        file: dir.display().to_string(),
        why:
            "no DestinationRule with port-level tls.mode MUTUAL (is this a peergate output folder?)"
                .into(),
    })
}

/// The value at a JSON pointer, or null (a missing field reads as absent, not as an error).
fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    value.pointer(pointer).unwrap_or(&NULL)
}

/// The Secret holding `tls.crt`, `tls.key` and `ca.crt`.
fn client_secret(
    dir: &Path,
    documents: &[(PathBuf, Value)],
) -> Result<(PathBuf, Value), ProbeError> {
    documents
        .iter()
        .find(|(_, d)| d["kind"] == "Secret" && d["data"].get("tls.key").is_some())
        .map(|(file, d)| (file.clone(), d["data"].clone()))
        .ok_or_else(|| ProbeError::Kit {
            file: dir.display().to_string(),
            why: "no Secret with the client certificate (with certificates = \"cert-manager\" the cluster issues it: give --cert, --key and --ca)".into(),
        })
}
