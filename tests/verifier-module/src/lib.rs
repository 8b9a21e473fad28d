//! A test module, never shipped: an HTTP filter that answers a POST of signature cases with
//! what each of the filter's verifiers makes of them, inside Envoy:
//! - `module`: [`Verifier::InProcess`], the verifiers compiled into the filter;
//! - `filter`: [`Verifier::Host`] over Envoy's `verify_signature`, as the filter runs it
//!   (Envoy's verdict where it gives one, the module's otherwise);
//! - `host`: what Envoy itself said ([`host_verdict`]), so the test knows Envoy decided.
//!
//! A case is either a raw signature (`spki`, `scheme`, `message`, `signature`; base64) or a
//! certificate and the certificate of its claimed issuer (`leaf`, `issuer`; base64 DER).
#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use peergate_filter::signature::{Hash, IssuerKey, Scheme, SignatureFailure};
use peergate_filter::verifier::{host_verdict, HostCall, HostVerdict, Verifier};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// One case of a request.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Case {
    /// A signature over a message, as a Wycheproof vector gives it.
    Raw {
        /// DER SubjectPublicKeyInfo.
        spki: String,
        /// `rsa-pkcs1-sha256` … `ecdsa-sha512`, `ed25519`.
        scheme: String,
        /// The signed bytes.
        message: String,
        /// The signature.
        signature: String,
    },
    /// A certificate and its claimed issuer's certificate.
    Certificate {
        /// DER of the certificate whose signature is checked.
        leaf: String,
        /// DER of the certificate whose key is to have signed it.
        issuer: String,
    },
}

/// What the verifiers made of one case.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The in-process verifiers' result.
    pub module: String,
    /// The filter's result with Envoy's verifier.
    pub filter: String,
    /// Envoy's own answer.
    pub host: String,
}

fn bytes(field: &str, b64: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(b64).map_err(|e| format!("{field}: {e}"))
}

fn scheme_named(name: &str) -> Option<Scheme> {
    let (family, hash) = name.rsplit_once('-').unwrap_or((name, ""));
    let hash = match hash {
        "sha256" => Hash::Sha256,
        "sha384" => Hash::Sha384,
        "sha512" => Hash::Sha512,
        _ if name == "ed25519" => return Some(Scheme::Ed25519),
        _ => return None,
    };
    match family {
        "rsa-pkcs1" => Some(Scheme::RsaPkcs1(hash)),
        "ecdsa" => Some(Scheme::Ecdsa(hash)),
        _ => None,
    }
}

fn result_name(result: Result<(), SignatureFailure>) -> String {
    match result {
        Ok(()) => "valid".into(),
        Err(SignatureFailure::Invalid) => "invalid".into(),
        Err(SignatureFailure::UnsupportedAlgorithm) => "unsupported".into(),
        Err(SignatureFailure::AlgorithmMismatch) => "algorithm-mismatch".into(),
    }
}

fn verdict_name(verdict: HostVerdict) -> String {
    match verdict {
        HostVerdict::Verified => "verified".into(),
        HostVerdict::Refused => "refused".into(),
        HostVerdict::NotAsked => "not-asked".into(),
        HostVerdict::NoResult => "no-result".into(),
        HostVerdict::Other(error) => format!("other: {error}"),
    }
}

fn key_of(spki_der: &[u8]) -> Result<IssuerKey, String> {
    match SubjectPublicKeyInfo::from_der(spki_der) {
        Ok(([], spki)) => IssuerKey::from_spki(&spki).map_err(|e| e.to_string()),
        _ => Err("spki: not one DER SubjectPublicKeyInfo".into()),
    }
}

/// Runs one case through both verifiers, with `call` as Envoy's `verify_signature`.
pub fn run(case: &Case, call: HostCall) -> Result<Outcome, String> {
    match case {
        Case::Raw {
            spki,
            scheme,
            message,
            signature,
        } => {
            let key = key_of(&bytes("spki", spki)?)?;
            let scheme = scheme_named(scheme).ok_or_else(|| format!("scheme {scheme:?}"))?;
            let (message, signature) = (bytes("message", message)?, bytes("signature", signature)?);
            Ok(Outcome {
                module: result_name(Verifier::InProcess.verify(&key, scheme, &message, &signature)),
                filter: result_name(
                    Verifier::Host(call).verify(&key, scheme, &message, &signature),
                ),
                host: verdict_name(host_verdict(call, &key, scheme, &message, &signature)),
            })
        }
        Case::Certificate { leaf, issuer } => {
            let (leaf_der, issuer_der) = (bytes("leaf", leaf)?, bytes("issuer", issuer)?);
            let leaf = certificate("leaf", &leaf_der)?;
            let issuer = certificate("issuer", &issuer_der)?;
            let key = IssuerKey::from_spki(issuer.public_key()).map_err(|e| e.to_string())?;
            let host = match peergate_filter::signature::leaf_signature_parts(&leaf) {
                Ok((scheme, tbs, signature)) => {
                    verdict_name(host_verdict(call, &key, scheme, tbs, signature))
                }
                Err(failure) => format!("not-asked: {}", result_name(Err(failure))),
            };
            Ok(Outcome {
                module: result_name(Verifier::InProcess.verify_leaf(&leaf, &key)),
                filter: result_name(Verifier::Host(call).verify_leaf(&leaf, &key)),
                host,
            })
        }
    }
}

fn certificate<'a>(field: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(format!("{field}: not one DER certificate")),
    }
}

#[cfg(target_arch = "wasm32")]
mod vm {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType};

    use super::{run, Case};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;
    impl Context for Root {}
    impl RootContext for Root {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
        fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Cases))
        }
    }

    struct Cases;
    impl Context for Cases {}
    impl HttpContext for Cases {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            // The buffer filter after this one holds the route back until the body is in
            // (pausing here would also hold the body back from this filter).
            Action::Continue
        }

        fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
            if !end_of_stream {
                return Action::Pause;
            }
            let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let (status, answer) = match answer(&body) {
                Ok(json) => (200, json),
                Err(error) => (400, error),
            };
            let _ = hostcalls::send_http_response(status, vec![], Some(answer.as_bytes()));
            Action::Pause
        }
    }

    fn answer(body: &[u8]) -> Result<String, String> {
        let cases: Vec<Case> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let outcomes = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                run(case, peergate_filter::envoy::verify_signature)
                    .map_err(|e| format!("case {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        serde_json::to_string(&outcomes).map_err(|e| e.to_string())
    }
}
