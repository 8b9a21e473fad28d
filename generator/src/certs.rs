//! The root CA and the two leaves: issued with explicit profiles (rcgen's defaults are for
//! tests), or reused while they still fit the configuration.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::mesh::{KeyType, Mesh};

/// A certificate with less left than this is not reused: it would expire before the
/// clusters have it (`gen` warns well before, from `plugin.expiryWarningDays`).
pub const MIN_REMAINING: Duration = Duration::from_secs(24 * 3600);

/// Backdating of notBefore, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

/// Which leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Cluster A's client certificate.
    Client,
    /// Cluster B's gateway certificate.
    Server,
}

/// Why certificates could not be made or reused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Key generation or signing failed.
    #[error("{what}: {message}")]
    Crypto {
        /// Which certificate.
        what: String,
        /// The library's message.
        message: String,
    },
    /// A SAN cannot be put in a certificate.
    #[error("{san:?} cannot be a certificate SAN: {message}")]
    BadSan {
        /// The SAN.
        san: String,
        /// Why.
        message: String,
    },
}

fn crypto(what: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |e| CertError::Crypto {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// A fresh key of the type.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, CertError> {
    let rsa = |bits: usize| -> Result<KeyPair, CertError> {
        let failed = |message: String| CertError::Crypto {
            what: format!("RSA {bits} key"),
            message,
        };
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
            .map_err(|e| failed(e.to_string()))?;
        let der = private.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
        KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
            .map_err(|e| failed(e.to_string()))
    };
    match key_type {
        KeyType::Rsa2048 => rsa(2048),
        KeyType::Rsa3072 => rsa(3072),
        KeyType::Rsa4096 => rsa(4096),
        KeyType::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto("key")),
        KeyType::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(crypto("key")),
        KeyType::Ed25519 => ed25519_key(),
    }
}

/// The fixed start of an Ed25519 key in PKCS#8 v1 (RFC 8410): version 0, algorithm id, and the
/// 32-byte seed that follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 key written as PKCS#8 v1. ring makes v2 documents (the public key appended),
/// which BoringSSL, and so Envoy and Istio's gateways, refuse with SEQUENCE_LENGTH_MISMATCH.
fn ed25519_key() -> Result<KeyPair, CertError> {
    let failed = |message: String| CertError::Crypto {
        what: "Ed25519 key".into(),
        message,
    };
    let v2 = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| failed(e.to_string()))?;
    let seed = ed25519_seed(v2.serialized_der())
        .ok_or_else(|| failed("unexpected PKCS#8 layout from the key generator".into()))?;
    let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&v1.as_slice().into(), &PKCS_ED25519)
        .map_err(|e| failed(e.to_string()))
}

/// The seed of an Ed25519 PKCS#8 document (v1 or v2): the OCTET STRING of 32 bytes after the
/// algorithm identifier.
fn ed25519_seed(der: &[u8]) -> Option<&[u8]> {
    // Both versions: SEQUENCE { INTEGER version, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
    // OCTET STRING (32) } ... }; only the version byte and the outer length differ.
    let body = der.get(2..)?;
    let (version, rest) = (body.get(2)?, body.get(3..)?);
    let after_version = ED25519_PKCS8_V1_PREFIX.get(5..)?;
    (*version <= 1 && rest.starts_with(after_version))
        .then(|| rest.get(after_version.len()..after_version.len() + 32))
        .flatten()
}

/// Whether a PKCS#8 Ed25519 key is in the v2 form Envoy cannot load.
pub fn is_ed25519_pkcs8_v2(der: &[u8]) -> bool {
    ed25519_seed(der).is_some() && der.get(4) == Some(&1)
}

fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CertError::Crypto {
        what: "serial number".into(),
        message: e.to_string(),
    })?;
    // 127 random bits, positive, with no leading zero byte: always 16 bytes of DER content.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn window(now: SystemTime, validity: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let start = OffsetDateTime::from(now - BACKDATE)
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::from(now));
    (start, start + validity + BACKDATE)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Issues the self-signed root, with a new key.
pub fn issue_root(mesh: &Mesh, now: SystemTime) -> Result<CertAndKey, CertError> {
    let key = generate_key(mesh.key_type)?;
    root_with_key(mesh, key, now)
}

/// Issues the self-signed root for an existing key (PEM), one kept outside the output.
pub fn issue_root_for_key(
    mesh: &Mesh,
    key_pem: &str,
    now: SystemTime,
) -> Result<CertAndKey, CertError> {
    let key = KeyPair::from_pem(key_pem).map_err(crypto("root key"))?;
    root_with_key(mesh, key, now)
}

fn root_with_key(mesh: &Mesh, key: KeyPair, now: SystemTime) -> Result<CertAndKey, CertError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&mesh.root.name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.not_before, params.not_after) = window(now, mesh.root.validity.0);
    params.serial_number = Some(random_serial()?);
    let cert = params
        .self_signed(&key)
        .map_err(crypto("root certificate"))?;
    Ok(CertAndKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A SAN as written in `mesh.toml` (its form says its kind, as in the filter's patterns).
pub fn san_type(san: &str) -> Result<SanType, CertError> {
    use peergate_filter::pattern::SanPattern;
    let bad = |message: String| CertError::BadSan {
        san: san.to_owned(),
        message,
    };
    let ia5 = |s: &str| rcgen::string::Ia5String::try_from(s).map_err(|e| bad(e.to_string()));
    match SanPattern::parse(san).map_err(|e| bad(e.to_string()))? {
        SanPattern::Uri(u) => Ok(SanType::URI(ia5(&u)?)),
        SanPattern::Email(e) => Ok(SanType::Rfc822Name(ia5(&e)?)),
        SanPattern::Ip(ip) => Ok(SanType::IpAddress(ip)),
        SanPattern::Dns(d) => Ok(SanType::DnsName(ia5(&d)?)),
        SanPattern::DnsWildcard(_) | SanPattern::UriPrefix(_) => {
            Err(bad("a pattern is not a SAN".into()))
        }
    }
}

/// The SANs a leaf carries.
pub fn leaf_sans(mesh: &Mesh, role: Role) -> Vec<String> {
    match role {
        Role::Client => mesh.cluster_a.sans.clone(),
        Role::Server => vec![mesh.cluster_b.domain.clone()],
    }
}

fn leaf_name(mesh: &Mesh, role: Role) -> &str {
    match role {
        Role::Client => &mesh.cluster_a.client_name,
        Role::Server => &mesh.cluster_b.server_name,
    }
}

/// Issues the issuing CA `name` under the root: basicConstraints CA:true with pathLen 0 (it
/// signs leaves only), keyCertSign and cRLSign, an authority key identifier.
pub fn issue_intermediate(
    mesh: &Mesh,
    name: &str,
    validity: Duration,
    root: &CertAndKey,
    now: SystemTime,
) -> Result<CertAndKey, CertError> {
    let root_key = KeyPair::from_pem(&root.key).map_err(crypto("root key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&root.cert, root_key).map_err(crypto("root certificate"))?;
    let key = generate_key(mesh.key_type)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = self::name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = window(now, validity);
    params.serial_number = Some(random_serial()?);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(crypto("issuing CA certificate"))?;
    Ok(CertAndKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a leaf under `signer` (the root, or the issuing CA).
pub fn issue_leaf(
    mesh: &Mesh,
    role: Role,
    signer: &CertAndKey,
    now: SystemTime,
) -> Result<CertAndKey, CertError> {
    let what = format!("{} certificate", leaf_name(mesh, role));
    let signer_key = KeyPair::from_pem(&signer.key).map_err(crypto("issuing key"))?;
    let issuer = Issuer::from_ca_cert_pem(&signer.cert, signer_key)
        .map_err(crypto("issuing certificate"))?;
    let key = generate_key(mesh.key_type)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(leaf_name(mesh, role));
    params.subject_alt_names = leaf_sans(mesh, role)
        .iter()
        .map(|s| san_type(s))
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if mesh.key_type.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![match role {
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    let validity = match role {
        Role::Client => mesh.cluster_a.validity.0,
        Role::Server => mesh.cluster_b.validity.0,
    };
    (params.not_before, params.not_after) = window(now, validity);
    params.serial_number = Some(random_serial()?);
    let cert = params.signed_by(&key, &issuer).map_err(crypto(&what))?;
    Ok(CertAndKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The key type of a certificate's public key, if it is one the generator makes.
pub fn key_type_of(cert: &X509Certificate<'_>) -> Option<KeyType> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384, OID_SIG_ED25519};
    let spki = cert.public_key();
    if spki.algorithm.algorithm == OID_SIG_ED25519 {
        return Some(KeyType::Ed25519);
    }
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => match rsa.key_size() {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        },
        PublicKey::EC(_) => {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 {
                Some(KeyType::EcdsaP256)
            } else if curve == OID_NIST_EC_P384 {
                Some(KeyType::EcdsaP384)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn parse_pem(pem: &str) -> Result<Vec<u8>, String> {
    peergate_filter::xfcc::certificate_der_from_pem(pem.as_bytes())
        .ok_or_else(|| "not a PEM certificate".to_owned())
}

fn common_checks(
    cert: &X509Certificate<'_>,
    key: Option<&str>,
    expected_cn: &str,
    mesh: &Mesh,
    now: SystemTime,
) -> Result<(), Misfit> {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    if cn != expected_cn {
        return Err(Misfit::cert(format!(
            "its common name is {cn:?}, the configuration says {expected_cn:?}"
        )));
    }
    let actual = key_type_of(cert);
    if actual != Some(mesh.key_type) {
        return Err(Misfit::cert(format!(
            "its key is {}, the configuration says {}",
            actual.map_or("of another type".to_owned(), |k| k.to_string()),
            mesh.key_type
        )));
    }
    if let Some(key) = key {
        let key = KeyPair::from_pem(key)
            .map_err(|e| Misfit::key(format!("the key does not load: {e}")))?;
        if is_ed25519_pkcs8_v2(key.serialized_der()) {
            return Err(Misfit::key(
                "the key is a PKCS#8 v2 document, which Envoy (BoringSSL) cannot load",
            ));
        }
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(Misfit::key(
                "the private key does not belong to the certificate",
            ));
        }
    }
    let not_after = cert.validity().not_after.timestamp();
    let deadline = peergate_filter::policy::unix_seconds(now + MIN_REMAINING);
    if not_after < deadline {
        return Err(Misfit::cert(format!(
            "it expires within a day (renew it: peergate gen --renew {expected_cn}, or for the root peergate rotate --stage trust)"
        )));
    }
    Ok(())
}

/// Why an existing certificate and key cannot be reused, and which of the two files says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// The key file is the problem (it does not load, or is another key's).
    pub in_key: bool,
    /// It is revoked: replacing it loses nothing (`peergate revoke` cut it off).
    pub revoked: bool,
    /// What is wrong.
    pub reason: String,
}

impl Misfit {
    fn cert(reason: impl Into<String>) -> Self {
        Self {
            in_key: false,
            revoked: false,
            reason: reason.into(),
        }
    }

    fn key(reason: impl Into<String>) -> Self {
        Self {
            in_key: true,
            revoked: false,
            reason: reason.into(),
        }
    }

    /// The file to name in an error: `DIR/certs/NAME-cert.pem` or `-key.pem`.
    pub fn path(&self, out: &std::path::Path, name: &str) -> std::path::PathBuf {
        let (cert, key) = crate::layout::cert_paths(out, name);
        if self.in_key {
            key
        } else {
            cert
        }
    }
}

/// Whether an existing root still fits: `Err` says why not. `key` is `None` when the root's
/// key is kept elsewhere and was not given: then only the certificate is checked.
pub fn check_root(
    cert_pem: &str,
    key: Option<&str>,
    mesh: &Mesh,
    now: SystemTime,
) -> Result<(), Misfit> {
    let der = parse_pem(cert_pem).map_err(Misfit::cert)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| Misfit::cert(e.to_string()))?;
    if !cert.is_ca() {
        return Err(Misfit::cert("it is not a CA certificate"));
    }
    common_checks(&cert, key, &mesh.root.name, mesh, now)
}

/// Whether an existing issuing CA still fits and was issued by `root`: `Err` says why not.
pub fn check_intermediate(
    pair: &CertAndKey,
    name: &str,
    root_cert: &str,
    mesh: &Mesh,
    now: SystemTime,
) -> Result<(), Misfit> {
    let der = parse_pem(&pair.cert).map_err(Misfit::cert)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| Misfit::cert(e.to_string()))?;
    common_checks(&cert, Some(&pair.key), name, mesh, now)?;
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca && bc.value.path_len_constraint == Some(0) => {}
        _ => {
            return Err(Misfit::cert(
                "it is not an issuing CA with pathLenConstraint 0",
            ))
        }
    }
    // The filter's own chain check: the configuration the WasmPlugin gets must compile.
    peergate_filter::compile(&peergate_filter::PluginConfig {
        trusted_issuers: vec![pair.cert.clone().into()],
        trust_anchors: vec![root_cert.to_owned()],
        allowed_sans: Some(vec!["spiffe://unused/*".into()]),
        ..Default::default()
    })
    .map_err(|e| Misfit::cert(format!("the current root does not vouch for it: {e}")))?;
    Ok(())
}

/// When a newly issued leaf (certificate PEM) would outlive the CA that signed it (PEM): both
/// notAfter times, RFC 3339.
pub fn outlives_root(leaf: &str, root: &str) -> Option<(String, String)> {
    let not_after = |pem: &str| -> Option<x509_parser::time::ASN1Time> {
        let der = parse_pem(pem).ok()?;
        let (_, cert) = X509Certificate::from_der(&der).ok()?;
        Some(cert.validity().not_after)
    };
    let (root_end, leaf_end) = (not_after(root)?, not_after(leaf)?);
    (leaf_end > root_end).then(|| {
        let show = |t: x509_parser::time::ASN1Time| {
            t.to_datetime()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        (show(root_end), show(leaf_end))
    })
}

/// Whole days from `now` to a certificate's notAfter (negative once expired), and that
/// notAfter in RFC 3339.
pub fn days_left(pem: &str, now: SystemTime) -> Option<(i64, String)> {
    let der = parse_pem(pem).ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let not_after = cert.validity().not_after;
    let left = not_after.timestamp() - peergate_filter::policy::unix_seconds(now);
    Some((
        left.div_euclid(86_400),
        peergate_filter::clock::rfc3339_seconds(not_after.timestamp()),
    ))
}

/// What a leaf is checked against: the CA that signs leaves, the root above it when that is an
/// issuing CA, and the CRLs.
#[derive(Debug, Clone, Copy)]
pub struct LeafTrust<'a> {
    /// The certificate of the CA that signs leaves (the root, or the issuing CA).
    pub signer: &'a str,
    /// The root, when `signer` is an issuing CA under it.
    pub anchor: Option<&'a str>,
    /// The CRLs in force (PEM).
    pub crls: &'a [String],
}

/// Whether an existing leaf still fits and was issued by the signer: `Err` says why not.
pub fn check_leaf(
    pair: &CertAndKey,
    role: Role,
    trust: LeafTrust<'_>,
    mesh: &Mesh,
    now: SystemTime,
) -> Result<(), Misfit> {
    let der = parse_pem(&pair.cert).map_err(Misfit::cert)?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| Misfit::cert(e.to_string()))?;
    common_checks(&cert, Some(&pair.key), leaf_name(mesh, role), mesh, now)?;
    // The filter's own check decides whether the signer issued it, whether it is revoked and
    // whether its SANs are the configured ones, so "reusable" and "admitted by the gateway"
    // cannot disagree.
    let sans = leaf_sans(mesh, role);
    let policy = peergate_filter::compile(&peergate_filter::PluginConfig {
        trusted_issuers: vec![trust.signer.to_owned().into()],
        trust_anchors: trust.anchor.map(str::to_owned).into_iter().collect(),
        allowed_sans: Some(sans.clone()),
        crls: trust.crls.to_vec(),
        // The gateway's certificate is a server's: the client profile is for the peer.
        client_profile: role == Role::Client,
        ..Default::default()
    })
    .map_err(|e| Misfit::cert(format!("cannot check it against the root: {e}")))?;
    let decision = policy.decide(Some(&der), "", now);
    match decision.reason {
        peergate_filter::Reason::Allowed => {}
        peergate_filter::Reason::SanNotAllowed => {
            return Err(Misfit::cert("its SANs differ from the configuration"))
        }
        peergate_filter::Reason::Revoked => {
            return Err(Misfit {
                revoked: true,
                ..Misfit::cert("it is revoked (on a CRL in certs/)")
            })
        }
        other => {
            return Err(Misfit::cert(format!(
                "the current root does not admit it: {}",
                other.explain()
            )))
        }
    }
    let mut actual: Vec<String> = decision
        .peer()
        .map(|p| p.sans.iter().map(san_text).collect())
        .unwrap_or_default();
    let mut wanted = sans;
    actual.sort();
    wanted.sort();
    if actual != wanted {
        return Err(Misfit::cert(format!(
            "its SANs are {actual:?}, the configuration says {wanted:?}"
        )));
    }
    Ok(())
}

fn san_text(san: &peergate_filter::peer::San) -> String {
    use peergate_filter::peer::San;
    match san {
        San::Dns(v) | San::Uri(v) | San::Email(v) | San::Other(v) => v.clone(),
        San::Ip(ip) => ip.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_are_pkcs8_v1() {
        let key = generate_key(KeyType::Ed25519).unwrap();
        let der = key.serialized_der();
        assert_eq!(der.len(), 48, "v1 is 48 bytes: {der:02x?}");
        assert!(der.starts_with(&ED25519_PKCS8_V1_PREFIX));
        assert!(!is_ed25519_pkcs8_v2(der));
        // ring's own v2 document is recognised, and carries the same kind of seed.
        let v2 = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        assert!(is_ed25519_pkcs8_v2(v2.serialized_der()));
        assert_eq!(ed25519_seed(v2.serialized_der()).map(<[u8]>::len), Some(32));
        // The re-encoded key signs: a root made with it verifies its own signature.
        let mesh = Mesh {
            key_type: KeyType::Ed25519,
            ..Mesh::default()
        };
        let root = issue_root(&mesh, SystemTime::now()).unwrap();
        assert!(check_root(&root.cert, Some(&root.key), &mesh, SystemTime::now()).is_ok());
        assert!(ed25519_seed(b"\x30\x05\x02\x01\x00").is_none());
    }
}
