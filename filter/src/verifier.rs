//! Who checks a peer certificate's signature: the in-process verifiers (RustCrypto and
//! [`crate::rsa_pkcs1`]), or the host's when it offers one. Envoy's Wasm host has a foreign
//! function, `verify_signature`, that runs BoringSSL's `EVP_DigestVerify` over a DER public
//! key (`source/extensions/common/wasm/foreign.cc`, `source/common/crypto/utility_impl.cc`);
//! natively it checks an RSA-2048 signature several times faster than the same check in V8.
//!
//! The host's verdict stands only where it is a verdict: "verified", or "the signature does
//! not verify" for a scheme and key the host verifies. Everything else (no such function, a
//! key it cannot import, a scheme it does not offer, an answer that does not parse) goes to
//! the in-process verifiers, so a decision never depends on which one ran
//! (`tests/host_verifier.rs` checks that inside Envoy, over Project Wycheproof's vectors and
//! generated certificates).

use x509_parser::certificate::X509Certificate;

use crate::signature::{leaf_signature_parts, verify, Hash, IssuerKey, Scheme, SignatureFailure};

/// The host call: the serialized `VerifySignatureArguments` in, the serialized
/// `VerifySignatureResult` out; `None` when the host gave no result (no such function, or it
/// refused the arguments, e.g. a key BoringSSL does not import).
pub type HostCall = fn(&[u8]) -> Option<Vec<u8>>;

/// Who checks the signatures of peers' certificates.
#[derive(Debug, Clone, Copy, Default)]
pub enum Verifier {
    /// The verifiers compiled into this crate.
    #[default]
    InProcess,
    /// The host's, through `verify_signature`; the in-process verifiers where it gives no
    /// verdict.
    Host(HostCall),
}

impl Verifier {
    /// Verifies `signature` over `message` under `key` with `scheme`.
    pub fn verify(
        &self,
        key: &IssuerKey,
        scheme: Scheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureFailure> {
        let verdict = match self {
            Verifier::InProcess => HostVerdict::NotAsked,
            Verifier::Host(call) => host_verdict(*call, key, scheme, message, signature),
        };
        match verdict {
            HostVerdict::Verified => Ok(()),
            HostVerdict::Refused => Err(SignatureFailure::Invalid),
            _ => verify(key, scheme, message, signature),
        }
    }

    /// Verifies `leaf`'s signature under `key`.
    pub fn verify_leaf(
        &self,
        leaf: &X509Certificate<'_>,
        key: &IssuerKey,
    ) -> Result<(), SignatureFailure> {
        let (scheme, tbs, signature) = leaf_signature_parts(leaf)?;
        self.verify(key, scheme, tbs, signature)
    }

    /// For logs: `envoy` or `module`.
    pub fn name(&self) -> &'static str {
        match self {
            Verifier::InProcess => "module",
            Verifier::Host(_) => "envoy",
        }
    }
}

/// What the host said about one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostVerdict {
    /// The host verified it.
    Verified,
    /// The host ran the check and the signature does not verify.
    Refused,
    /// Not asked: no host verifier, or a scheme the host does not offer for this key.
    NotAsked,
    /// The call gave no result (see [`HostCall`]).
    NoResult,
    /// A result that is not a verdict: the error the host gave, or what did not parse.
    Other(String),
}

/// BoringSSL's failure of `EVP_DigestVerify` as Envoy reports it: the check ran and the
/// signature does not verify. Any other failure is not a verdict on the signature.
const DOES_NOT_VERIFY: &str = "Failed to verify digest.";

/// Asks the host about one signature.
pub fn host_verdict(
    call: HostCall,
    key: &IssuerKey,
    scheme: Scheme,
    message: &[u8],
    signature: &[u8],
) -> HostVerdict {
    let Some(hash) = host_hash(key, scheme) else {
        return HostVerdict::NotAsked;
    };
    let arguments = verify_signature_arguments(hash, key.spki_der(), signature, message);
    let Some(answer) = call(&arguments) else {
        return HostVerdict::NoResult;
    };
    match parse_verify_signature_result(&answer) {
        Some((true, _)) => HostVerdict::Verified,
        Some((false, error)) if error.starts_with(DOES_NOT_VERIFY) => HostVerdict::Refused,
        Some((false, error)) => HostVerdict::Other(error),
        None => HostVerdict::Other("unparsable result".into()),
    }
}

/// The digest Envoy is to use, for the schemes the host checks as the in-process verifiers
/// do: PKCS#1 v1.5 under an RSA key and ECDSA under a P-256 or P-384 key. Ed25519 is not
/// asked: Envoy always passes a digest, and BoringSSL's Ed25519 takes none.
fn host_hash(key: &IssuerKey, scheme: Scheme) -> Option<&'static str> {
    let hash = match scheme {
        Scheme::RsaPkcs1(hash) | Scheme::Ecdsa(hash) if key.fits(scheme) => hash,
        _ => return None,
    };
    Some(match hash {
        Hash::Sha256 => "sha256",
        Hash::Sha384 => "sha384",
        Hash::Sha512 => "sha512",
    })
}

/// Envoy's `VerifySignatureArguments` (`source/extensions/common/wasm/ext/verify_signature.proto`):
/// 1 `hash_function`, 2 `public_key` (DER), 3 `signature`, 4 `text`.
pub fn verify_signature_arguments(
    hash: &str,
    spki_der: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(hash.len() + spki_der.len() + signature.len() + text.len() + 24);
    for (field, bytes) in [
        (1u8, hash.as_bytes()),
        (2, spki_der),
        (3, signature),
        (4, text),
    ] {
        out.push(field << 3 | 2);
        push_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Envoy's `VerifySignatureResult`: 1 `result` (bool), 2 `error` (string). Unknown fields
/// are skipped; `None` for bytes that are not a well-formed message.
pub fn parse_verify_signature_result(bytes: &[u8]) -> Option<(bool, String)> {
    let mut reader = Reader(bytes);
    let (mut result, mut error) = (false, String::new());
    while !reader.0.is_empty() {
        let key = reader.varint()?;
        match (key >> 3, key & 7) {
            (1, 0) => result = reader.varint()? != 0,
            (2, 2) => error = String::from_utf8(reader.length_delimited()?.to_vec()).ok()?,
            (_, 0) => {
                reader.varint()?;
            }
            (_, 1) => reader.skip(8)?,
            (_, 2) => {
                reader.length_delimited()?;
            }
            (_, 5) => reader.skip(4)?,
            _ => return None,
        }
    }
    Some((result, error))
}

/// A cursor over protobuf wire bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }

    fn length_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.0.get(..len)?;
        self.0 = self.0.get(len..)?;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn arguments_are_the_four_fields_in_order() {
        let encoded = verify_signature_arguments("sha256", &[1, 2], &[3], &[0u8; 200]);
        assert_eq!(&encoded[..8], b"\x0a\x06sha256");
        assert_eq!(&encoded[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&encoded[12..15], &[0x1a, 1, 3]);
        // 200 is a two-byte varint.
        assert_eq!(&encoded[15..18], &[0x22, 0xc8, 0x01]);
        assert_eq!(encoded.len(), 18 + 200);
    }

    #[test]
    fn results_parse_with_defaults_and_unknown_fields() {
        assert_eq!(
            parse_verify_signature_result(&[8, 1]),
            Some((true, String::new()))
        );
        assert_eq!(
            parse_verify_signature_result(&[]),
            Some((false, String::new()))
        );
        let refused = [
            &[0x12, 5][..],
            b"nope!",
            &[0x18, 0x96, 0x01, 0x25, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(
            parse_verify_signature_result(&refused),
            Some((false, "nope!".into()))
        );
        for bad in [&[0x12, 9, b'x'][..], &[8], &[0x0b], &[0x80; 11]] {
            assert_eq!(parse_verify_signature_result(bad), None, "{bad:?}");
        }
    }
}
