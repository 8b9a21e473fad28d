//! Our RSA PKCS#1 v1.5 verification against an independent implementation (the `rsa` crate):
//! everything it signs verifies, and any change to signature, digest, hash or key fails.
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
    for bits in [1024, 2048, 3072] {
        let private = PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
        check_key(&private, 30);
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
