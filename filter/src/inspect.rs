//! What a certificate says, for people deciding whether to trust it: `peergate inspect`, the
//! audit report and the browser page all show this.

use std::time::SystemTime;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519, OID_SIG_ED448,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::clock::rfc3339_seconds;
use crate::peer::{colon_hex, fingerprint, PeerSummary, San};
use crate::policy::unix_seconds;

/// Why certificates could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateInputError {
    /// The text has PEM blocks but none is a certificate.
    #[error("no CERTIFICATE block (found {found})")]
    NoCertificateBlock {
        /// The labels that were found, e.g. `PRIVATE KEY`.
        found: String,
    },
    /// Neither PEM nor DER.
    #[error("neither PEM (no -----BEGIN CERTIFICATE----- line) nor DER")]
    NotPemOrDer,
    /// A PEM block is malformed (bad base64, missing END line).
    #[error("PEM block {index}: {detail}")]
    BadPem {
        /// Position of the block, from 0.
        index: usize,
        /// What the PEM reader said.
        detail: String,
    },
}

/// Every certificate of a PEM bundle (other blocks, such as a key, are ignored), or the one
/// certificate of a DER file. The DER is returned as is: whether it parses is for the policy
/// to judge.
pub fn certificates_from_bytes(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertificateInputError> {
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        // A DER certificate starts with a SEQUENCE tag.
        return match bytes.first() {
            Some(0x30) => Ok(vec![bytes.to_vec()]),
            _ => Err(CertificateInputError::NotPemOrDer),
        };
    }
    let mut certificates = Vec::new();
    let mut others = Vec::new();
    for (index, block) in Pem::iter_from_buffer(bytes).enumerate() {
        let block = block.map_err(|e| CertificateInputError::BadPem {
            index,
            detail: e.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            certificates.push(block.contents);
        } else {
            others.push(block.label);
        }
    }
    if certificates.is_empty() {
        return Err(CertificateInputError::NoCertificateBlock {
            found: if others.is_empty() {
                "no complete PEM block".to_owned()
            } else {
                others.join(", ")
            },
        });
    }
    Ok(certificates)
}

/// A public key, as people name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `RSA`, `ECDSA`, `Ed25519`, `Ed448`, or the algorithm's OID.
    pub algorithm: String,
    /// Size in bits (RSA modulus, curve order); absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u32>,
    /// The named curve of an ECDSA key (`P-256`, `P-384`, `P-521`, or its OID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
}

/// Everything `peergate inspect` prints about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days from the instant inspected to notAfter, rounded toward zero: negative once
    /// expired by a day or more.
    pub days_left: i64,
    /// notAfter is in the past.
    pub expired: bool,
    /// Every SAN.
    pub sans: Vec<San>,
    /// The subject public key.
    pub key: KeyInfo,
    /// The signature algorithm.
    pub signature_algorithm: String,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// SHA-256 of the DER, lower-case hex (as decision logs and `deniedFingerprints` write
    /// it).
    pub fingerprint: String,
    /// SHA-256 of the DER as `openssl x509 -fingerprint -sha256` prints it (`AB:CD:…`).
    pub fingerprint_openssl: String,
    /// Base64 of the SHA-256 of the SubjectPublicKeyInfo: what Istio's
    /// `verifyCertificateSpki` and Envoy's `verify_certificate_spki` expect.
    pub spki_sha256: String,
}

/// Why a certificate cannot be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Not parsable X.509 DER.
    #[error("not an X.509 certificate: {0}")]
    NotX509(String),
    /// The SAN extension is malformed.
    #[error("the subjectAltName extension is malformed")]
    BadSanExtension,
}

/// Reads a certificate (DER) as of `now` (for the days left).
pub fn inspect(der: &[u8], now: SystemTime) -> Result<CertificateInfo, InspectError> {
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok((rest, _)) => {
            return Err(InspectError::NotX509(format!(
                "{} bytes follow the certificate's DER",
                rest.len()
            )))
        }
        Err(e) => return Err(InspectError::NotX509(e.to_string())),
    };
    let digest = fingerprint(der);
    let peer = PeerSummary::of(&cert, &digest).map_err(|_| InspectError::BadSanExtension)?;
    let spki = Sha256::digest(cert.public_key().raw);
    Ok(CertificateInfo {
        days_left: (peer.not_after - unix_seconds(now)) / 86_400,
        expired: crate::policy::is_expired(&peer, now),
        not_before: rfc3339_seconds(peer.not_before),
        not_after: rfc3339_seconds(peer.not_after),
        subject: peer.subject,
        issuer: peer.issuer,
        serial: peer.serial,
        sans: peer.sans,
        key: key_info(&cert),
        signature_algorithm: signature_algorithm_name(&cert),
        is_ca: cert.is_ca(),
        fingerprint: peer.fingerprint,
        fingerprint_openssl: colon_hex(&digest).to_ascii_uppercase(),
        spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
    })
}

/// The signature algorithm's short name (`sha256WithRSAEncryption`), or its OID.
pub(crate) fn signature_algorithm_name(cert: &X509Certificate<'_>) -> String {
    let oid = &cert.signature_algorithm.algorithm;
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn key_info(cert: &X509Certificate<'_>) -> KeyInfo {
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    let named = |algorithm: &str, bits: Option<u32>, curve: Option<String>| KeyInfo {
        algorithm: algorithm.to_owned(),
        bits,
        curve,
    };
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => unsigned_bits(rsa.modulus),
            _ => None,
        };
        return named("RSA", bits, None);
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let (name, bits) = match crate::signature::named_curve(spki) {
            Some(c) if c == OID_EC_P256 => ("P-256".to_owned(), Some(256)),
            Some(c) if c == OID_NIST_EC_P384 => ("P-384".to_owned(), Some(384)),
            Some(c) if c == OID_NIST_EC_P521 => ("P-521".to_owned(), Some(521)),
            Some(c) => (c.to_id_string(), None),
            None => ("explicit parameters".to_owned(), None),
        };
        return named("ECDSA", bits, Some(name));
    }
    if *alg == OID_SIG_ED25519 {
        return named("Ed25519", Some(256), None);
    }
    if *alg == OID_SIG_ED448 {
        return named("Ed448", Some(456), None);
    }
    named(&alg.to_id_string(), None, None)
}

/// The bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn unsigned_bits(bytes: &[u8]) -> Option<u32> {
    let first = bytes.iter().position(|&b| b != 0)?;
    let significant = u32::try_from(bytes.len() - first).ok()?;
    let top = bytes.get(first)?;
    Some((significant - 1) * 8 + (8 - top.leading_zeros()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(unsigned_bits(&[0x00, 0x80, 0x00]), Some(16));
        assert_eq!(unsigned_bits(&[0x7f, 0xff]), Some(15));
        assert_eq!(unsigned_bits(&[0x00, 0x01]), Some(1));
        assert_eq!(unsigned_bits(&[0, 0]), None);
        assert_eq!(unsigned_bits(&[]), None);
    }

    #[test]
    fn not_pem_or_der_is_refused() {
        assert_eq!(
            certificates_from_bytes(b"hello"),
            Err(CertificateInputError::NotPemOrDer)
        );
        assert_eq!(
            certificates_from_bytes(b""),
            Err(CertificateInputError::NotPemOrDer)
        );
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            certificates_from_bytes(key_only),
            Err(CertificateInputError::NoCertificateBlock {
                found: "PRIVATE KEY".into()
            })
        );
        assert!(matches!(
            certificates_from_bytes(
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"
            ),
            Err(CertificateInputError::BadPem { index: 0, .. })
        ));
    }
}
