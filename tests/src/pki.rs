//! Certificates made at test time: CAs (including a look-alike of another CA), clients and
//! servers, in every key type the policy supports.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use time::{Duration, OffsetDateTime};

/// Key types used in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, signing with SHA-256.
    Rsa2048,
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// A fresh key pair of the kind.
pub fn key(kind: KeyKind) -> KeyPair {
    let made = match kind {
        KeyKind::Rsa2048 => {
            let private =
                rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key generation");
            let der = private.to_pkcs8_der().expect("PKCS#8 encoding");
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &PKCS_RSA_SHA256)
        }
        KeyKind::P256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyKind::P384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyKind::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
    };
    made.expect("key generation")
}

/// A certificate and its key, both PEM.
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// A CA that can issue leaves.
pub struct Ca {
    /// The CA certificate.
    pub cert: Issued,
    params: CertificateParams,
    key: KeyPair,
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "peergate tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random serial");
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    params.serial_number = Some(random_serial());
    params
}

impl Ca {
    /// A self-signed root CA.
    pub fn new(common_name: &str, kind: KeyKind) -> Self {
        Self::from_params(ca_params(common_name), kind)
    }

    /// A different CA (its own key) whose subject DN and subject key identifier are
    /// byte-identical to `self`'s: only a signature check tells their leaves apart.
    pub fn look_alike(&self, kind: KeyKind) -> Self {
        let mut params = ca_params("unused");
        params.distinguished_name = self.params.distinguished_name.clone();
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(self.params.key_identifier(&self.key));
        Self::from_params(params, kind)
    }

    /// A different CA (its own key and key identifier) whose subject DN is byte-identical to
    /// `self`'s.
    pub fn same_name(&self, kind: KeyKind) -> Self {
        let mut params = ca_params("unused");
        params.distinguished_name = self.params.distinguished_name.clone();
        Self::from_params(params, kind)
    }

    fn from_params(params: CertificateParams, kind: KeyKind) -> Self {
        let key = key(kind);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            cert: Issued {
                cert_pem: cert.pem(),
                cert_der: cert.der().to_vec(),
                key_pem: key.serialize_pem(),
            },
            params,
            key,
        }
    }

    /// Issues a leaf as described, with a fresh key.
    pub fn issue(&self, leaf: &Leaf) -> Issued {
        self.issue_for(leaf, &key(leaf.kind))
    }

    /// Issues a leaf as described for an existing key (of `leaf.kind`): many certificates
    /// for one key cost no key generation.
    pub fn issue_for(&self, leaf: &Leaf, key: &KeyPair) -> Issued {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&leaf.common_name);
        params.subject_alt_names = leaf.sans.iter().map(|s| san(s)).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if leaf.kind == KeyKind::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![if leaf.server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = leaf.authority_key_id;
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        params.serial_number = Some(match &leaf.serial {
            Some(serial) => SerialNumber::from_slice(serial),
            None => random_serial(),
        });
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(key, &issuer).expect("leaf issuance");
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn san(text: &str) -> SanType {
    if let Some(uri) = text.strip_prefix("URI:") {
        SanType::URI(uri.try_into().expect("IA5 URI"))
    } else if let Some(ip) = text.strip_prefix("IP:") {
        SanType::IpAddress(ip.parse().expect("IP SAN"))
    } else if let Some(email) = text.strip_prefix("email:") {
        SanType::Rfc822Name(email.try_into().expect("IA5 email"))
    } else {
        let dns = text.strip_prefix("DNS:").unwrap_or(text);
        SanType::DnsName(dns.try_into().expect("IA5 DNS name"))
    }
}

/// What a leaf should look like.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject CN.
    pub common_name: String,
    /// SANs, written `DNS:x`, `URI:x`, `IP:x`, `email:x` (bare text is a DNS name).
    pub sans: Vec<String>,
    /// Key type.
    pub kind: KeyKind,
    /// serverAuth instead of clientAuth.
    pub server: bool,
    /// Whether to include the authority key identifier.
    pub authority_key_id: bool,
    /// Explicit serial (big-endian, positive).
    pub serial: Option<Vec<u8>>,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl Leaf {
    /// A client leaf valid from yesterday for a year.
    pub fn client(common_name: &str, sans: &[&str], kind: KeyKind) -> Self {
        Self {
            common_name: common_name.into(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            server: false,
            authority_key_id: true,
            serial: None,
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(365),
        }
    }

    /// A server leaf for `dns_name`.
    pub fn server(dns_name: &str, kind: KeyKind) -> Self {
        Self {
            server: true,
            ..Self::client(dns_name, &[dns_name], kind)
        }
    }
}
