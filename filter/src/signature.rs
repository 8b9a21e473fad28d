//! Signature verification of a leaf under a trusted issuer's key, in pure Rust (it must build
//! for wasm32-wasip1, where `ring` would need a C toolchain).

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::rsa_pkcs1::{DigestAlgorithm, RsaKeyError, RsaPublicKey};

/// A trusted issuer's public key, decoded once at configuration time, with the DER
/// SubjectPublicKeyInfo it came from (what a host verifier is handed).
#[derive(Clone)]
pub struct IssuerKey {
    algorithm: KeyAlgorithm,
    spki: Box<[u8]>,
}

/// The decoded key, by algorithm.
#[derive(Clone)]
enum KeyAlgorithm {
    /// RSA, verified with PKCS#1 v1.5.
    Rsa(Box<RsaPublicKey>),
    /// ECDSA on NIST P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on NIST P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.algorithm_name())
    }
}

/// The named curve of an EC public key; `None` for explicit or missing parameters.
pub(crate) fn named_curve<'a>(spki: &'a SubjectPublicKeyInfo<'a>) -> Option<Oid<'a>> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
}

/// Why a key or a signature cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The issuer's key algorithm or curve is not one the filter verifies.
    #[error("unsupported public key algorithm {0} (supported: RSA, ECDSA P-256/P-384, Ed25519)")]
    Unsupported(String),
    /// The key's bytes do not decode.
    #[error("malformed {0} public key")]
    Malformed(&'static str),
    /// An RSA key outside the accepted sizes or exponents.
    #[error(transparent)]
    Rsa(#[from] RsaKeyError),
}

impl IssuerKey {
    /// Decodes the subject public key of a (CA) certificate.
    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        Ok(IssuerKey {
            algorithm: KeyAlgorithm::from_spki(spki)?,
            spki: spki.raw.into(),
        })
    }

    /// The DER SubjectPublicKeyInfo the key was decoded from.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// A short name for logs.
    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            KeyAlgorithm::Rsa(_) => "RSA",
            KeyAlgorithm::P256(_) => "ECDSA P-256",
            KeyAlgorithm::P384(_) => "ECDSA P-384",
            KeyAlgorithm::Ed25519(_) => "Ed25519",
        }
    }

    /// Whether `scheme` is a signature this key makes: PKCS#1 v1.5 for RSA, ECDSA for the
    /// curves, Ed25519 for Ed25519.
    pub fn fits(&self, scheme: Scheme) -> bool {
        matches!(
            (scheme, &self.algorithm),
            (Scheme::RsaPkcs1(_), KeyAlgorithm::Rsa(_))
                | (
                    Scheme::Ecdsa(_),
                    KeyAlgorithm::P256(_) | KeyAlgorithm::P384(_)
                )
                | (Scheme::Ed25519, KeyAlgorithm::Ed25519(_))
        )
    }
}

impl KeyAlgorithm {
    fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let alg = &spki.algorithm.algorithm;
        let bits = spki.subject_public_key.data.as_ref();
        if *alg == OID_PKCS1_RSAENCRYPTION {
            let parsed = match RSAPublicKey::from_der(bits) {
                Ok(([], parsed)) => parsed,
                _ => return Err(KeyError::Malformed("RSA")),
            };
            let key = RsaPublicKey::new(parsed.modulus, parsed.exponent)?;
            return Ok(KeyAlgorithm::Rsa(Box::new(key)));
        }
        if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
            return match named_curve(spki) {
                Some(c) if c == OID_EC_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                    .map(KeyAlgorithm::P256)
                    .map_err(|_| KeyError::Malformed("ECDSA P-256")),
                Some(c) if c == OID_NIST_EC_P384 => {
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(KeyAlgorithm::P384)
                        .map_err(|_| KeyError::Malformed("ECDSA P-384"))
                }
                Some(c) => Err(KeyError::Unsupported(format!("ECDSA on curve {c}"))),
                None => Err(KeyError::Unsupported(
                    "ECDSA with explicit or missing curve parameters".into(),
                )),
            };
        }
        if *alg == OID_SIG_ED25519 {
            let bytes: [u8; 32] = bits
                .try_into()
                .map_err(|_| KeyError::Malformed("Ed25519"))?;
            return ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(KeyAlgorithm::Ed25519)
                .map_err(|_| KeyError::Malformed("Ed25519"));
        }
        Err(KeyError::Unsupported(alg.to_id_string()))
    }
}

/// How the leaf's signature failed to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFailure {
    /// The outer signature algorithm differs from the one inside the signed part.
    AlgorithmMismatch,
    /// The algorithm is not one the filter verifies, or does not fit the issuer's key.
    UnsupportedAlgorithm,
    /// The signature does not verify.
    Invalid,
}

/// The hash a signature scheme uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// A signature scheme the filter verifies, as a certificate's signatureAlgorithm names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5 (`sha256WithRSAEncryption`, ...).
    RsaPkcs1(Hash),
    /// ECDSA with a DER `Ecdsa-Sig-Value` (`ecdsa-with-SHA256`, ...), on the key's curve.
    Ecdsa(Hash),
    /// Ed25519 (RFC 8410), verified strictly (no small-order points, canonical S).
    Ed25519,
}

/// The scheme a signatureAlgorithm names; `None` for any other algorithm, or parameters that
/// do not belong to it.
pub fn scheme_of(alg: &AlgorithmIdentifier<'_>) -> Option<Scheme> {
    let oid: &Oid<'_> = &alg.algorithm;
    let scheme = if *oid == OID_PKCS1_SHA256WITHRSA {
        Scheme::RsaPkcs1(Hash::Sha256)
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        Scheme::RsaPkcs1(Hash::Sha384)
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        Scheme::RsaPkcs1(Hash::Sha512)
    } else if *oid == OID_SIG_ECDSA_WITH_SHA256 {
        Scheme::Ecdsa(Hash::Sha256)
    } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
        Scheme::Ecdsa(Hash::Sha384)
    } else if *oid == OID_SIG_ECDSA_WITH_SHA512 {
        Scheme::Ecdsa(Hash::Sha512)
    } else if *oid == OID_SIG_ED25519 {
        Scheme::Ed25519
    } else {
        return None;
    };
    Some(scheme)
}

fn prehash(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha384 => Sha384::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

fn verify_rsa(key: &RsaPublicKey, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
    let algorithm = match hash {
        Hash::Sha256 => DigestAlgorithm::Sha256,
        Hash::Sha384 => DigestAlgorithm::Sha384,
        Hash::Sha512 => DigestAlgorithm::Sha512,
    };
    key.verify(algorithm, &prehash(hash, msg), sig)
}

/// Verifies `signature` over `message` under `key` with `scheme`: the one function every
/// signature the filter accepts goes through (the Wycheproof vectors test it directly).
pub fn verify(
    key: &IssuerKey,
    scheme: Scheme,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureFailure> {
    let verified = match (scheme, &key.algorithm) {
        (Scheme::RsaPkcs1(hash), KeyAlgorithm::Rsa(k)) => verify_rsa(k, hash, message, signature),
        (Scheme::Ecdsa(hash), KeyAlgorithm::P256(k)) => p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| k.verify_prehash(&prehash(hash, message), &s).is_ok()),
        (Scheme::Ecdsa(hash), KeyAlgorithm::P384(k)) => p384::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| k.verify_prehash(&prehash(hash, message), &s).is_ok()),
        (Scheme::Ed25519, KeyAlgorithm::Ed25519(k)) => {
            ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(message, &s).is_ok())
        }
        _ => return Err(SignatureFailure::UnsupportedAlgorithm),
    };
    if verified {
        Ok(())
    } else {
        Err(SignatureFailure::Invalid)
    }
}

/// What a leaf's signature check needs: the scheme its signatureAlgorithm names, the signed
/// bytes (the TBSCertificate) and the signature value; the failure if the outer and inner
/// algorithms differ or name no scheme the filter verifies.
pub fn leaf_signature_parts<'a>(
    leaf: &'a X509Certificate<'_>,
) -> Result<(Scheme, &'a [u8], &'a [u8]), SignatureFailure> {
    if leaf.signature_algorithm != leaf.tbs_certificate.signature {
        return Err(SignatureFailure::AlgorithmMismatch);
    }
    let scheme =
        scheme_of(&leaf.signature_algorithm).ok_or(SignatureFailure::UnsupportedAlgorithm)?;
    Ok((
        scheme,
        leaf.tbs_certificate.as_ref(),
        leaf.signature_value.data.as_ref(),
    ))
}

/// The other valid encoding of an ECDSA signature under `key`: (r, n − s) for (r, s). Both
/// verify (ECDSA does not bind the sign of s), so a certificate has exactly two signature
/// values that a verifier accepts; `None` for RSA and Ed25519, whose valid signature over a
/// message is unique here (PKCS#1 v1.5 is deterministic and s < n is required; Ed25519 is
/// verified strictly, which requires a canonical S below the group order), and for a value
/// that is not a DER ECDSA signature.
pub fn ecdsa_twin(key: &IssuerKey, signature: &[u8]) -> Option<Vec<u8>> {
    match key.algorithm {
        KeyAlgorithm::P256(_) => {
            let sig = p256::ecdsa::Signature::from_der(signature).ok()?;
            let twin = p256::ecdsa::Signature::from_scalars(sig.r(), -sig.s()).ok()?;
            Some(twin.to_der().as_bytes().to_vec())
        }
        KeyAlgorithm::P384(_) => {
            let sig = p384::ecdsa::Signature::from_der(signature).ok()?;
            let twin = p384::ecdsa::Signature::from_scalars(sig.r(), -sig.s()).ok()?;
            Some(twin.to_der().as_bytes().to_vec())
        }
        KeyAlgorithm::Rsa(_) | KeyAlgorithm::Ed25519(_) => None,
    }
}
