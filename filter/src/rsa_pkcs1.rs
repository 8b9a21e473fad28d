//! RSA PKCS#1 v1.5 signature verification, written for speed on the path that matters here:
//! a public exponent such as 65537 needs only 17 modular multiplications, and the modulus's
//! Montgomery constants are computed once, when the trusted issuer is configured.
//!
//! Verification handles only public values, so nothing here needs to be constant-time. The
//! check is the strict one RFC 8017 §8.2.2 recommends: re-encode the expected
//! `EMSA-PKCS1-v1_5` block and compare it byte for byte, so no parser of the decrypted block
//! can be fooled.
//!
//! The arithmetic exists for 64-bit limbs (where the machine multiplies 64×64→128 natively)
//! and 32-bit limbs (wasm32, where a 64-bit product is one instruction but a 128-bit one is a
//! library call); the target picks one, the tests check both.

/// Smallest and largest modulus accepted, in bits (the common limits of RSA libraries).
pub const MIN_BITS: usize = 1024;
/// Largest modulus accepted, in bits.
pub const MAX_BITS: usize = 8192;

/// Why an RSA public key is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsaKeyError {
    /// The modulus is outside 1024..=8192 bits.
    #[error("RSA modulus of {0} bits (accepted: 1024 to 8192)")]
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

/// Montgomery arithmetic modulo an odd n, for one limb size.
macro_rules! montgomery {
    ($name:ident, $limb:ty, $wide:ty) => {
        pub(crate) mod $name {
            type Limb = $limb;
            type Wide = $wide;
            const BITS: u32 = Limb::BITS;
            const BYTES: usize = (Limb::BITS / 8) as usize;

            /// An odd modulus with its Montgomery constants.
            #[derive(Clone)]
            pub(crate) struct Modulus {
                /// Little-endian limbs.
                n: Vec<Limb>,
                /// -n⁻¹ mod 2^BITS.
                n0_inv: Limb,
                /// R² mod n, R = 2^(BITS·limbs): into Montgomery form with one multiplication.
                r2: Vec<Limb>,
            }

            impl Modulus {
                /// From big-endian bytes without leading zeros; the caller checked it is odd
                /// and of a sane size.
                pub(crate) fn new(modulus: &[u8]) -> Self {
                    let n = from_be(modulus, modulus.len().div_ceil(BYTES));
                    let n0_inv = neg_inverse(n.first().copied().unwrap_or(1));
                    let r2 = r_squared(&n);
                    Modulus { n, n0_inv, r2 }
                }

                /// base^e mod n as big-endian bytes of length `len`, or `None` when the base
                /// (big-endian, `len` bytes) is not below n.
                pub(crate) fn pow(&self, base: &[u8], e: u64, len: usize) -> Option<Vec<u8>> {
                    let size = self.n.len();
                    let s = from_be(base, size);
                    if base.len() > size * BYTES || !less_than(&s, &self.n) {
                        return None;
                    }
                    let mut scratch = vec![0; 2 * size + 1];
                    let mut x = vec![0; size];
                    self.mul(&s, &self.r2, &mut x, &mut scratch);
                    let mut acc = x.clone();
                    let mut tmp = vec![0; size];
                    // Left to right, square and multiply; the top bit is `acc` itself.
                    let top_bit = 63 - e.leading_zeros();
                    for bit in (0..top_bit).rev() {
                        self.square(&acc, &mut tmp, &mut scratch);
                        std::mem::swap(&mut acc, &mut tmp);
                        if (e >> bit) & 1 == 1 {
                            self.mul(&acc, &x, &mut tmp, &mut scratch);
                            std::mem::swap(&mut acc, &mut tmp);
                        }
                    }
                    // Out of Montgomery form: multiply by 1.
                    x.fill(0);
                    if let Some(first) = x.first_mut() {
                        *first = 1;
                    }
                    self.mul(&acc, &x, &mut tmp, &mut scratch);
                    let mut out = vec![0u8; len];
                    to_be(&tmp, &mut out);
                    Some(out)
                }

                /// out = a·b·R⁻¹ mod n (CIOS), for a, b < n; `t` is scratch.
                // Every slice has the modulus's length (re-sliced on entry), so the indexing
                // is in bounds and the compiler drops the checks.
                #[allow(clippy::indexing_slicing)]
                fn mul(&self, a: &[Limb], b: &[Limb], out: &mut [Limb], t: &mut [Limb]) {
                    let size = self.n.len();
                    let (n, a, b, t) = (&self.n[..size], &a[..size], &b[..size], &mut t[..size]);
                    t.fill(0);
                    let mut t_hi: Wide = 0; // the two limbs above t, as one wide value
                    for &bi in b {
                        // t += a·bi
                        let mut carry: Wide = 0;
                        for j in 0..size {
                            let v = Wide::from(t[j]) + Wide::from(a[j]) * Wide::from(bi) + carry;
                            t[j] = v as Limb;
                            carry = v >> BITS;
                        }
                        t_hi += carry;
                        // t = (t + m·n) / 2^BITS, m chosen so that the low limb vanishes.
                        let m = t[0].wrapping_mul(self.n0_inv);
                        let mut carry =
                            (Wide::from(t[0]) + Wide::from(m) * Wide::from(n[0])) >> BITS;
                        for j in 1..size {
                            let v = Wide::from(t[j]) + Wide::from(m) * Wide::from(n[j]) + carry;
                            t[j - 1] = v as Limb;
                            carry = v >> BITS;
                        }
                        let v = t_hi + carry;
                        t[size - 1] = v as Limb;
                        t_hi = v >> BITS;
                    }
                    // t < 2n: subtract n once if t ≥ n.
                    if t_hi != 0 || !less_than(t, n) {
                        sub_in_place(t, n);
                    }
                    out[..size].copy_from_slice(t);
                }
            }

            impl Modulus {
                /// out = a²·R⁻¹ mod n, for a < n: the full square first, each cross product
                /// computed once and doubled, then one Montgomery reduction; about a quarter
                /// fewer multiplications than `mul(a, a)`. `t` holds 2·limbs + 1.
                // Indices stay below 2·size + 1 = t.len() (re-sliced on entry), so the
                // indexing is in bounds.
                #[allow(clippy::indexing_slicing)]
                fn square(&self, a: &[Limb], out: &mut [Limb], t: &mut [Limb]) {
                    let size = self.n.len();
                    let (n, a, t) = (&self.n[..size], &a[..size], &mut t[..2 * size + 1]);
                    t.fill(0);
                    // Cross products a[i]·a[j], i < j.
                    for i in 0..size {
                        let mut carry: Wide = 0;
                        for j in i + 1..size {
                            let v =
                                Wide::from(t[i + j]) + Wide::from(a[i]) * Wide::from(a[j]) + carry;
                            t[i + j] = v as Limb;
                            carry = v >> BITS;
                        }
                        t[i + size] = carry as Limb;
                    }
                    // Doubled, plus the squares a[i]².
                    let mut top = 0;
                    for limb in t[..2 * size].iter_mut() {
                        let next = *limb >> (BITS - 1);
                        *limb = (*limb << 1) | top;
                        top = next;
                    }
                    t[2 * size] = top;
                    let mut carry: Wide = 0;
                    for i in 0..size {
                        let v = Wide::from(t[2 * i]) + Wide::from(a[i]) * Wide::from(a[i]) + carry;
                        t[2 * i] = v as Limb;
                        let v = Wide::from(t[2 * i + 1]) + (v >> BITS);
                        t[2 * i + 1] = v as Limb;
                        carry = v >> BITS;
                    }
                    t[2 * size] = t[2 * size].wrapping_add(carry as Limb);
                    // Montgomery reduction of the 2·size-limb square.
                    for i in 0..size {
                        let m = t[i].wrapping_mul(self.n0_inv);
                        let mut carry: Wide = 0;
                        for j in 0..size {
                            let v = Wide::from(t[i + j]) + Wide::from(m) * Wide::from(n[j]) + carry;
                            t[i + j] = v as Limb;
                            carry = v >> BITS;
                        }
                        let mut k = i + size;
                        while carry != 0 && k <= 2 * size {
                            let v = Wide::from(t[k]) + carry;
                            t[k] = v as Limb;
                            carry = v >> BITS;
                            k += 1;
                        }
                    }
                    // The result, below 2n, is t[size..2·size] with t[2·size] above it.
                    let (_, high) = t.split_at_mut(size);
                    let (result, overflow) = high.split_at_mut(size);
                    if overflow[0] != 0 || !less_than(result, n) {
                        sub_in_place(result, n);
                    }
                    out[..size].copy_from_slice(result);
                }
            }

            /// Big-endian bytes into `size` little-endian limbs (bytes beyond them dropped).
            fn from_be(bytes: &[u8], size: usize) -> Vec<Limb> {
                let mut limbs = vec![0; size];
                for (i, &byte) in bytes.iter().rev().enumerate() {
                    if let Some(slot) = limbs.get_mut(i / BYTES) {
                        *slot |= Limb::from(byte) << ((i % BYTES) * 8);
                    }
                }
                limbs
            }

            /// Little-endian limbs into big-endian bytes filling `out`.
            fn to_be(limbs: &[Limb], out: &mut [u8]) {
                for (i, slot) in out.iter_mut().rev().enumerate() {
                    let limb = limbs.get(i / BYTES).copied().unwrap_or(0);
                    *slot = (limb >> ((i % BYTES) * 8)) as u8;
                }
            }

            fn less_than(a: &[Limb], b: &[Limb]) -> bool {
                for (x, y) in a.iter().rev().zip(b.iter().rev()) {
                    if x != y {
                        return x < y;
                    }
                }
                false
            }

            fn sub_in_place(a: &mut [Limb], b: &[Limb]) {
                let mut borrow = false;
                for (x, &y) in a.iter_mut().zip(b) {
                    let (d1, b1) = x.overflowing_sub(y);
                    let (d2, b2) = d1.overflowing_sub(Limb::from(borrow));
                    *x = d2;
                    borrow = b1 || b2;
                }
            }

            /// -x⁻¹ mod 2^BITS for odd x (each Newton step doubles the correct bits).
            pub(crate) fn neg_inverse(x: Limb) -> Limb {
                let mut inv: Limb = 1;
                for _ in 0..7 {
                    inv = inv.wrapping_mul((2 as Limb).wrapping_sub(x.wrapping_mul(inv)));
                }
                inv.wrapping_neg()
            }

            /// R² mod n by doubling 1 modulo n, 2·BITS·limbs times (once per trusted issuer).
            fn r_squared(n: &[Limb]) -> Vec<Limb> {
                let mut x = vec![0; n.len()];
                if let Some(first) = x.first_mut() {
                    *first = 1;
                }
                for _ in 0..2 * BITS as usize * n.len() {
                    let carry = x.last().is_some_and(|top| top >> (BITS - 1) == 1);
                    let mut prev = 0;
                    for limb in x.iter_mut() {
                        let next = *limb >> (BITS - 1);
                        *limb = (*limb << 1) | prev;
                        prev = next;
                    }
                    if carry || !less_than(&x, n) {
                        sub_in_place(&mut x, n);
                    }
                }
                x
            }
        }
    };
}

// The target's limb size, and both in tests.
#[cfg(any(test, target_pointer_width = "64"))]
montgomery!(limbs64, u64, u128);
#[cfg(any(test, not(target_pointer_width = "64")))]
montgomery!(limbs32, u32, u64);

#[cfg(not(target_pointer_width = "64"))]
use limbs32::Modulus;
#[cfg(target_pointer_width = "64")]
use limbs64::Modulus;

/// An RSA public key with its Montgomery constants.
#[derive(Clone)]
pub struct RsaPublicKey {
    modulus: Modulus,
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

/// The checked parts of a key: modulus without leading zeros, its bits, the exponent.
fn checked_parts<'a>(
    modulus: &'a [u8],
    exponent: &[u8],
) -> Result<(&'a [u8], usize, u64), RsaKeyError> {
    let modulus = strip_zeros(modulus);
    let bits = modulus.first().map_or(0, |top| {
        (modulus.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
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
        Ok(RsaPublicKey {
            modulus: Modulus::new(modulus),
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
                .modulus
                .pow(signature, self.e, self.len)
                .is_some_and(|block| block == expected_block(self.len, algorithm, digest))
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
    fn negative_inverses_are_exact() {
        for x in [1u64, 3, 0x1234_5679, u64::MAX] {
            assert_eq!(x.wrapping_mul(limbs64::neg_inverse(x)), u64::MAX, "{x}");
            let x = x as u32;
            assert_eq!(x.wrapping_mul(limbs32::neg_inverse(x)), u32::MAX, "{x}");
        }
    }

    #[test]
    fn keys_outside_the_limits_are_refused() {
        let mut n = vec![0xff; 128];
        assert!(RsaPublicKey::new(&n, &[1, 0, 1]).is_ok());
        assert_eq!(
            RsaPublicKey::new(&n[1..], &[1, 0, 1]).unwrap_err(),
            RsaKeyError::ModulusSize(1016)
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

    /// Both limb sizes compute s^e mod n as the `rsa` crate's key does (its public
    /// operation on a signature is the encoded block).
    #[test]
    fn both_limb_sizes_agree_with_the_rsa_crate() {
        for bits in [1024, 2048, 3072] {
            let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
            let n = private.n().to_be_bytes();
            let (modulus, _, e) = checked_parts(&n, &private.e().to_be_bytes()).unwrap();
            let wide = limbs64::Modulus::new(modulus);
            let narrow = limbs32::Modulus::new(modulus);
            for round in 0..8u8 {
                let digest = [round; 32];
                let signature = private
                    .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .unwrap();
                let block = expected_block(modulus.len(), DigestAlgorithm::Sha256, &digest);
                assert_eq!(wide.pow(&signature, e, modulus.len()), Some(block.clone()));
                assert_eq!(narrow.pow(&signature, e, modulus.len()), Some(block));
            }
            assert_eq!(narrow.pow(modulus, e, modulus.len()), None, "s = n");
            assert_eq!(wide.pow(modulus, e, modulus.len()), None, "s = n");
        }
    }
}
