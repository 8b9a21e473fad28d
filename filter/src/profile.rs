//! The client profile: what a leaf must be to authenticate a TLS client, beyond a trusted
//! signature. Without it a server certificate from the same CA (the gateway's own, which
//! `peergate gen` issues from the agreed root), a CA certificate, or a leaf carrying a
//! restriction the filter does not understand would pass as a client.
//!
//! Each check is its own function so the decision (first failure only) and the audit (every
//! check, with its detail) run the same code.

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    Oid, OID_PKCS1_RSAENCRYPTION, OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;

use crate::reason::Reason;
use crate::rsa_pkcs1::{modulus_bits, MIN_BITS};

/// The extensions the policy reads, and so may be critical: basicConstraints, keyUsage,
/// extendedKeyUsage, subjectAltName, subjectKeyIdentifier, authorityKeyIdentifier.
fn is_processed(oid: &Oid<'_>) -> bool {
    [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .contains(oid)
}

/// How a leaf fails the profile; `Display` is the audit's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileViolation {
    /// basicConstraints says CA:true.
    LeafIsCa,
    /// extendedKeyUsage is present without clientAuth or anyExtendedKeyUsage.
    NotClientAuth(Vec<String>),
    /// keyUsage is present without digitalSignature: the key cannot sign a TLS handshake.
    NoDigitalSignature,
    /// An extension the filter does not read is marked critical.
    UnknownCriticalExtension(String),
    /// An RSA key below 2048 bits.
    WeakRsaKey(usize),
    /// An RSA key that does not decode.
    MalformedRsaKey,
    /// An extension the profile reads does not parse.
    Unreadable(&'static str),
}

impl ProfileViolation {
    /// The reason a decision gives for it.
    pub fn reason(&self) -> Reason {
        match self {
            ProfileViolation::LeafIsCa => Reason::LeafIsCa,
            ProfileViolation::NotClientAuth(_) | ProfileViolation::NoDigitalSignature => {
                Reason::NotClientAuth
            }
            ProfileViolation::UnknownCriticalExtension(_) => Reason::UnknownCriticalExtension,
            ProfileViolation::WeakRsaKey(_) | ProfileViolation::MalformedRsaKey => Reason::WeakKey,
            ProfileViolation::Unreadable(_) => Reason::UnparsableCertificate,
        }
    }
}

impl fmt::Display for ProfileViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileViolation::LeafIsCa => f.write_str(
                "basicConstraints CA:true: a CA certificate is not a client certificate",
            ),
            ProfileViolation::NotClientAuth(purposes) => write!(
                f,
                "extendedKeyUsage [{}] has neither clientAuth nor anyExtendedKeyUsage",
                purposes.join(", ")
            ),
            ProfileViolation::NoDigitalSignature => f.write_str(
                "keyUsage lacks digitalSignature: the key may not sign the TLS handshake",
            ),
            ProfileViolation::UnknownCriticalExtension(oid) => write!(
                f,
                "critical extension {oid} is not one the filter reads (basicConstraints, keyUsage, extendedKeyUsage, subjectAltName, key identifiers)"
            ),
            ProfileViolation::WeakRsaKey(bits) => {
                write!(f, "RSA key of {bits} bits (at least {MIN_BITS} required)")
            }
            ProfileViolation::MalformedRsaKey => f.write_str("the RSA public key does not decode"),
            ProfileViolation::Unreadable(what) => write!(f, "the {what} extension does not parse"),
        }
    }
}

/// basicConstraints must not say CA:true.
pub fn check_basic_constraints(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Err(ProfileViolation::LeafIsCa),
        Ok(_) => Ok(()),
        Err(_) => Err(ProfileViolation::Unreadable("basicConstraints")),
    }
}

/// extendedKeyUsage, when present, must allow clientAuth; keyUsage, when present, must allow
/// digitalSignature.
pub fn check_key_usage(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    match cert.extended_key_usage() {
        Ok(Some(eku)) if !eku.value.client_auth && !eku.value.any => {
            let eku = eku.value;
            let mut purposes: Vec<String> = [
                (eku.server_auth, "serverAuth"),
                (eku.code_signing, "codeSigning"),
                (eku.email_protection, "emailProtection"),
                (eku.time_stamping, "timeStamping"),
                (eku.ocsp_signing, "OCSPSigning"),
            ]
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| (*name).to_owned())
            .collect();
            purposes.extend(eku.other.iter().map(Oid::to_id_string));
            return Err(ProfileViolation::NotClientAuth(purposes));
        }
        Ok(_) => {}
        Err(_) => return Err(ProfileViolation::Unreadable("extendedKeyUsage")),
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => Err(ProfileViolation::NoDigitalSignature),
        Ok(_) => Ok(()),
        Err(_) => Err(ProfileViolation::Unreadable("keyUsage")),
    }
}

/// Every critical extension must be one the filter reads.
pub fn check_critical_extensions(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    match cert
        .extensions()
        .iter()
        .find(|ext| ext.critical && !is_processed(&ext.oid))
    {
        Some(ext) => Err(ProfileViolation::UnknownCriticalExtension(
            ext.oid.to_id_string(),
        )),
        None => Ok(()),
    }
}

/// An RSA key must have at least 2048 bits (other key types are fixed-size curves the TLS
/// handshake already checked).
pub fn check_key_size(cert: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Ok(());
    }
    let key = match RSAPublicKey::from_der(&spki.subject_public_key.data) {
        Ok(([], key)) => key,
        _ => return Err(ProfileViolation::MalformedRsaKey),
    };
    match modulus_bits(key.modulus) {
        bits if bits < MIN_BITS => Err(ProfileViolation::WeakRsaKey(bits)),
        _ => Ok(()),
    }
}

/// What the key size check passes with, for audits.
pub fn key_description(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION {
        if let Ok((_, key)) = RSAPublicKey::from_der(&spki.subject_public_key.data) {
            return format!("RSA key of {} bits", modulus_bits(key.modulus));
        }
    }
    "not an RSA key (curve keys have a fixed size)".to_owned()
}
