//! Our RSA PKCS#1 v1.5 verification against an independent implementation (the `rsa` crate):
//! everything it signs verifies, any change to signature, digest, hash or key fails, and on
//! arbitrary signatures (random, mutated, at and around n) and moduli of unusual sizes the two
//! agree on every verdict.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use peergate_filter::rsa_pkcs1::{DigestAlgorithm, RsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, Pkcs1v15Sign, PrivateKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn ours(private: &PrivateKey) -> RsaPublicKey {
    RsaPublicKey::new(&private.n().to_be_bytes(), &private.e().to_be_bytes()).unwrap()
}

fn sign(private: &PrivateKey, algorithm: DigestAlgorithm, digest: &[u8]) -> Vec<u8> {
    let scheme = match algorithm {
        DigestAlgorithm::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        DigestAlgorithm::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
        DigestAlgorithm::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
    };
    private.sign(scheme, digest).unwrap()
}

fn digest(algorithm: DigestAlgorithm, message: &[u8]) -> Vec<u8> {
    match algorithm {
        DigestAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
        DigestAlgorithm::Sha384 => Sha384::digest(message).to_vec(),
        DigestAlgorithm::Sha512 => Sha512::digest(message).to_vec(),
    }
}

fn check_key(private: &PrivateKey, rounds: usize) {
    let key = ours(private);
    assert_eq!(key.bits(), private.n().bit_width_vartime() as usize);
    let algorithms = [
        DigestAlgorithm::Sha256,
        DigestAlgorithm::Sha384,
        DigestAlgorithm::Sha512,
    ];
    for round in 0..rounds {
        let algorithm = algorithms[round % 3];
        let message = random_bytes(1 + round * 7);
        let d = digest(algorithm, &message);
        let signature = sign(private, algorithm, &d);
        assert!(key.verify(algorithm, &d, &signature), "round {round}");

        // Any flipped bit of the signature.
        let mut bad = signature.clone();
        let bit = usize::from(random_bytes(2)[0]) * 8 % (bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            !key.verify(algorithm, &d, &bad),
            "round {round}: flipped bit {bit}"
        );
        // Another digest, or the same digest under another hash's DigestInfo.
        let mut other = d.clone();
        other[0] ^= 1;
        assert!(!key.verify(algorithm, &other, &signature));
        let wrong = algorithms[(round + 1) % 3];
        assert!(!key.verify(wrong, &digest(wrong, &message), &signature));
        // Wrong lengths, and s ≥ n.
        assert!(!key.verify(algorithm, &d, &signature[1..]));
        let mut longer = vec![0];
        longer.extend_from_slice(&signature);
        assert!(!key.verify(algorithm, &d, &longer));
        assert!(!key.verify(algorithm, &d, &vec![0xff; signature.len()]));
        assert!(!key.verify(algorithm, &d, &private.n().to_be_bytes()));
    }
}

#[test]
fn agrees_with_the_rsa_crate_for_common_sizes() {
    for bits in [2048, 3072, 4096] {
        let private = PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
        check_key(&private, 30);
    }
}

#[test]
fn keys_under_2048_bits_are_refused() {
    let private = PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
    let err =
        RsaPublicKey::new(&private.n().to_be_bytes(), &private.e().to_be_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RSA modulus of 1024 bits (accepted: 2048 to 8192)"
    );
}

/// Keys for the differential test: common sizes and unusual ones (a modulus one bit over a
/// limb boundary, one bit under a round size).
fn differential_keys() -> &'static [(PrivateKey, RsaPublicKey)] {
    static KEYS: std::sync::OnceLock<Vec<(PrivateKey, RsaPublicKey)>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        [2048, 2049, 3072, 4095]
            .into_iter()
            .map(|bits| {
                let private = PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
                assert_eq!(private.n().bit_width_vartime() as usize, bits);
                let ours = ours(&private);
                (private, ours)
            })
            .collect()
    })
}

/// Verdicts of both implementations on one input.
fn both(
    private: &PrivateKey,
    key: &RsaPublicKey,
    algorithm: DigestAlgorithm,
    d: &[u8],
    sig: &[u8],
) -> (bool, bool) {
    let public = private.to_public_key();
    let scheme = match algorithm {
        DigestAlgorithm::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        DigestAlgorithm::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
        DigestAlgorithm::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
    };
    (
        key.verify(algorithm, d, sig),
        public.verify(scheme, d, sig).is_ok(),
    )
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Arbitrary signatures: random bytes of the right and wrong lengths, a valid signature
    /// with bytes changed, and values at and next to n: the same verdict as the `rsa` crate.
    #[test]
    fn the_same_verdict_as_the_rsa_crate_on_arbitrary_signatures(
        which in 0..4usize,
        algorithm in 0..3usize,
        message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        kind in 0..5u8,
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..600),
        position in proptest::prelude::any::<usize>(),
    ) {
        let (private, key) = &differential_keys()[which];
        let algorithm = [DigestAlgorithm::Sha256, DigestAlgorithm::Sha384, DigestAlgorithm::Sha512][algorithm];
        let d = digest(algorithm, &message);
        let k = private.n().to_be_bytes().len();
        let valid = sign(private, algorithm, &d);
        let signature: Vec<u8> = match kind {
            // Random bytes of the modulus's length.
            0 => noise.iter().cycle().take(k).copied().collect(),
            // Random bytes of any length.
            1 => noise.clone(),
            // The valid signature with one byte changed.
            2 => {
                let mut s = valid.clone();
                let i = position % s.len();
                s[i] ^= noise[0] | 1;
                s
            }
            // n plus or minus a little.
            3 => {
                let mut s = private.n().to_be_bytes().to_vec();
                let last = s.len() - 1;
                s[last] = s[last].wrapping_add(noise[0] % 3).wrapping_sub(1);
                s
            }
            // The valid one: both must accept it.
            _ => valid.clone(),
        };
        let (theirs, reference) = both(private, key, algorithm, &d, &signature);
        proptest::prop_assert_eq!(theirs, reference, "kind {}, {} bytes", kind, signature.len());
        if kind == 4 {
            proptest::prop_assert!(theirs);
        }
    }
}

#[test]
fn agrees_for_other_public_exponents() {
    for e in [3u64, 17, (1 << 33) - 1] {
        let private =
            PrivateKey::new_with_exp(&mut getrandom::SysRng, 2048, BoxedUint::from(e)).unwrap();
        check_key(&private, 6);
    }
}

#[test]
fn another_keys_signature_fails() {
    let a = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let b = PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let d = Sha256::digest(b"tbs").to_vec();
    let signature = sign(&a, DigestAlgorithm::Sha256, &d);
    assert!(ours(&a).verify(DigestAlgorithm::Sha256, &d, &signature));
    assert!(!ours(&b).verify(DigestAlgorithm::Sha256, &d, &signature));
}
