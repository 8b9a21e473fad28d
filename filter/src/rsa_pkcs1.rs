//! RSA PKCS#1 v1.5 signature verification. The arithmetic is crypto-bigint's (Montgomery
//! multiplication and squaring on `BoxedUint`, with the modulus's Montgomery parameters
//! computed once, when the trusted issuer is configured); this module only drives them with
//! the public exponent and checks the result.
//!
//! Verification handles only public values, so the exponent loop need not be constant-time
//! (a public exponent such as 65537 costs 16 squarings and 1 multiplication). The check is
//! the strict one RFC 8017 §8.2.2 recommends: re-encode the expected `EMSA-PKCS1-v1_5` block
//! and compare it byte for byte, so no parser of the decrypted block can be fooled.

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};

/// Smallest modulus accepted, in bits: below 2048 an RSA key is not a safe trust anchor.
pub const MIN_BITS: usize = 2048;
/// Largest modulus accepted, in bits.
pub const MAX_BITS: usize = 8192;

/// Why an RSA public key is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// The modulus is outside 2048..=8192 bits.
    #[error("RSA modulus of {0} bits (accepted: 2048 to 8192)")]
    ModulusSize(usize),
    /// An even modulus is not an RSA modulus.
    #[error("RSA modulus is even")]
    EvenModulus,
    /// The exponent is even, below 3 or above 2^33 - 1.
    #[error("RSA public exponent is not an odd number from 3 to 2^33-1")]
    Exponent,
}

/// The hash inside a PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// The DER of `DigestInfo` up to the digest itself (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            DigestAlgorithm::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            DigestAlgorithm::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            DigestAlgorithm::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// An RSA public key with its Montgomery parameters.
#[derive(Clone)]
pub struct RsaPublicKey {
    modulus: BoxedUint,
    params: BoxedMontyParams,
    /// Modulus length in bytes (the signature length).
    len: usize,
    bits: usize,
    e: u64,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e={})", self.bits, self.e)
    }
}

/// The size in bits of a big-endian unsigned integer (leading zero bytes allowed).
pub fn modulus_bits(modulus: &[u8]) -> usize {
    let modulus = strip_zeros(modulus);
    modulus.first().map_or(0, |top| {
        (modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    })
}

/// The checked parts of a key: modulus without leading zeros, its bits, the exponent.
fn checked_parts<'a>(
    modulus: &'a [u8],
    exponent: &[u8],
) -> Result<(&'a [u8], usize, u64), RsaKeyError> {
    let modulus = strip_zeros(modulus);
    let bits = modulus_bits(modulus);
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(RsaKeyError::ModulusSize(bits));
    }
    if modulus.last().is_some_and(|low| low & 1 == 0) {
        return Err(RsaKeyError::EvenModulus);
    }
    let exponent = strip_zeros(exponent);
    if exponent.len() > 8 {
        return Err(RsaKeyError::Exponent);
    }
    let e = exponent
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e < 3 || e % 2 == 0 || e > (1 << 33) - 1 {
        return Err(RsaKeyError::Exponent);
    }
    Ok((modulus, bits, e))
}

impl RsaPublicKey {
    /// A key from the big-endian modulus and exponent (leading zero bytes allowed, as in DER
    /// INTEGERs).
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Result<Self, RsaKeyError> {
        let (modulus, bits, e) = checked_parts(modulus, exponent)?;
        let n = BoxedUint::from_be_slice_vartime(modulus);
        let odd = Odd::new(n.clone())
            .into_option()
            .ok_or(RsaKeyError::EvenModulus)?;
        Ok(RsaPublicKey {
            // The modulus is public: the variable-time setup is fine.
            params: BoxedMontyParams::new_vartime(odd),
            modulus: n,
            len: modulus.len(),
            bits,
            e,
        })
    }

    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Verifies a PKCS#1 v1.5 signature over a message whose `digest` (computed with
    /// `algorithm`) is given.
    pub fn verify(&self, algorithm: DigestAlgorithm, digest: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.len
            && self
                .public_operation(signature)
                .is_some_and(|block| block == expected_block(self.len, algorithm, digest))
    }

    /// s^e mod n as `len` big-endian bytes; `None` unless 0 ≤ s < n (RFC 8017 §5.2.2).
    fn public_operation(&self, signature: &[u8]) -> Option<Vec<u8>> {
        let precision = self.modulus.bits_precision();
        let s = BoxedUint::from_be_slice(signature, precision).ok()?;
        if s.cmp_vartime(&self.modulus) != std::cmp::Ordering::Less {
            return None;
        }
        let base = BoxedMontyForm::new(s, &self.params);
        // Left to right over the exponent's bits, from below its top bit.
        let mut acc = base.clone();
        for bit in (0..63 - self.e.leading_zeros()).rev() {
            acc = acc.square();
            if (self.e >> bit) & 1 == 1 {
                acc = acc.mul(&base);
            }
        }
        let bytes = acc.retrieve().to_be_bytes();
        let (high, block) = bytes.split_at(bytes.len().checked_sub(self.len)?);
        high.iter().all(|b| *b == 0).then(|| block.to_vec())
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// EMSA-PKCS1-v1_5: `00 01 FF…FF 00 DigestInfo`.
fn expected_block(len: usize, algorithm: DigestAlgorithm, digest: &[u8]) -> Vec<u8> {
    let prefix = algorithm.digest_info_prefix();
    let t_len = prefix.len() + digest.len();
    let mut block = Vec::with_capacity(len);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(len.saturating_sub(t_len + 1), 0xff);
    block.push(0x00);
    block.extend_from_slice(prefix);
    block.extend_from_slice(digest);
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn keys_outside_the_limits_are_refused() {
        let mut n = vec![0xff; 256];
        assert!(RsaPublicKey::new(&n, &[1, 0, 1]).is_ok());
        assert_eq!(
            RsaPublicKey::new(&n[1..], &[1, 0, 1]).unwrap_err(),
            RsaKeyError::ModulusSize(2040)
        );
        assert_eq!(
            RsaPublicKey::new(&[0xff; 128], &[1, 0, 1]).unwrap_err(),
            RsaKeyError::ModulusSize(1024),
            "a 1024-bit key is weak"
        );
        for e in [
            &[2][..],
            &[1],
            &[2, 0, 0, 0, 1],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert_eq!(RsaPublicKey::new(&n, e).unwrap_err(), RsaKeyError::Exponent);
        }
        if let Some(last) = n.last_mut() {
            *last = 0xfe;
        }
        assert_eq!(
            RsaPublicKey::new(&n, &[1, 0, 1]).unwrap_err(),
            RsaKeyError::EvenModulus
        );
    }

    /// s^e mod n is the `rsa` crate's public operation on a signature: the encoded block; and
    /// s = n, s > n are refused.
    #[test]
    fn the_public_operation_is_the_encoded_block() {
        for bits in [2048, 3072] {
            let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
            let n = private.n().to_be_bytes();
            let key = RsaPublicKey::new(&n, &private.e().to_be_bytes()).unwrap();
            for round in 0..4u8 {
                let digest = [round; 32];
                let signature = private
                    .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .unwrap();
                let block = expected_block(key.len, DigestAlgorithm::Sha256, &digest);
                assert_eq!(key.public_operation(&signature), Some(block));
            }
            let n = strip_zeros(&n).to_vec();
            assert_eq!(key.public_operation(&n), None, "s = n");
            assert_eq!(key.public_operation(&[0xff; 384][..key.len]), None, "s > n");
        }
    }
}
