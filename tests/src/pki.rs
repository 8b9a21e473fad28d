//! Certificates made at test time: CAs (including a look-alike of another CA), clients and
//! servers, in every key type the policy supports.

use base64::Engine;
pub use rcgen::string::{BmpString, PrintableString, TeletexString, UniversalString};
pub use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyUsagePurpose, NameConstraints,
};
use rcgen::{
    CidrSubnet, Issuer, KeyIdMethod, KeyPair, SanType, SerialNumber, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use rsa::pkcs8::EncodePrivateKey;
use time::{Duration, OffsetDateTime};

/// Key types used in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, signing with SHA-256.
    Rsa2048,
    /// RSA 1024, for leaves only (weak: refused by the policy; ring will not sign with it,
    /// so [`Ca::new`] cannot make a CA of it: see [`weak_rsa_ca`]).
    Rsa1024,
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
        KeyKind::Rsa1024 => panic!("ring refuses 1024-bit RSA keys: use weak_rsa_key"),
    };
    made.expect("key generation")
}

/// A 1024-bit RSA key: its PKCS#8 PEM and its SubjectPublicKeyInfo for rcgen (which can
/// certify it but, through ring, not sign with it).
pub fn weak_rsa_key() -> (String, SubjectPublicKeyInfo) {
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).expect("RSA key generation");
    let pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding")
        .to_string();
    let spki = private
        .to_public_key()
        .to_public_key_der()
        .expect("SPKI encoding");
    (
        pem,
        SubjectPublicKeyInfo::from_der(spki.as_bytes()).expect("SPKI for rcgen"),
    )
}

/// A CA certificate whose key is RSA-1024, signed by a throwaway RSA-2048 key (ring will not
/// sign with a 1024-bit key, and the policy does not check a trusted issuer's own signature).
pub fn weak_rsa_ca(common_name: &str) -> Issued {
    let (key_pem, spki) = weak_rsa_key();
    let signer = Ca::new("throwaway-signer", KeyKind::Rsa2048);
    let params = ca_params(common_name);
    let issuer = Issuer::from_params(&signer.params, &signer.key);
    let cert = params.signed_by(&spki, &issuer).expect("weak CA");
    Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem,
    }
}

/// A DER element header for `len` content bytes.
fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(u8::try_from(len).expect("short length"));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).expect("length of length"));
        out.extend(bytes);
    }
    out
}

/// The certificate with (r, n − s) for its signature (r, s), re-framed, with the same key:
/// what an attacker holding a denied certificate can make without the CA. It still verifies
/// (ECDSA does not bind the sign of s) and has another SHA-256.
pub fn ecdsa_twin(issued: &Issued, kind: KeyKind) -> Issued {
    use x509_parser::prelude::FromDer;
    let der = issued.cert_der.as_slice();
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).expect("a certificate");
    let signature = cert.signature_value.data.as_ref();
    let twin_signature = match kind {
        KeyKind::P256 => {
            let sig = p256::ecdsa::Signature::from_der(signature).expect("an ECDSA signature");
            let twin = p256::ecdsa::Signature::from_scalars(sig.r(), -sig.s()).expect("n - s");
            twin.to_der().as_bytes().to_vec()
        }
        KeyKind::P384 => {
            let sig = p384::ecdsa::Signature::from_der(signature).expect("an ECDSA signature");
            let twin = p384::ecdsa::Signature::from_scalars(sig.r(), -sig.s()).expect("n - s");
            twin.to_der().as_bytes().to_vec()
        }
        other => panic!("{other:?} has no twin"),
    };
    let tbs = cert.tbs_certificate.as_ref();
    // The outer signatureAlgorithm: the bytes between tbsCertificate and the signature.
    let outer_header = if der[1] < 0x80 {
        2
    } else {
        2 + usize::from(der[1] & 0x7f)
    };
    let after_tbs = outer_header + tbs.len();
    let algorithm_len = usize::from(der[after_tbs + 1]) + 2;
    let algorithm = &der[after_tbs..after_tbs + algorithm_len];
    let mut bits = vec![0u8];
    bits.extend_from_slice(&twin_signature);
    let mut content = tbs.to_vec();
    content.extend_from_slice(algorithm);
    content.extend(header(0x03, bits.len()));
    content.extend(bits);
    let mut out = header(0x30, content.len());
    out.extend(content);
    let body = base64::engine::general_purpose::STANDARD.encode(&out);
    let mut cert_pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        cert_pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        cert_pem.push('\n');
    }
    cert_pem.push_str("-----END CERTIFICATE-----\n");
    Issued {
        cert_pem,
        cert_der: out,
        key_pem: issued.key_pem.clone(),
    }
}

/// The serial number (DER content bytes) of a certificate.
pub fn serial_of(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("certificate");
    cert.raw_serial().to_vec()
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

    /// A self-signed root CA, its parameters changed by `change` first.
    pub fn with_params(
        common_name: &str,
        kind: KeyKind,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let mut params = ca_params(common_name);
        change(&mut params);
        Self::from_params(params, kind)
    }

    /// A self-signed root CA valid from `not_before` to `not_after`.
    pub fn with_validity(
        common_name: &str,
        kind: KeyKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Self {
        let mut params = ca_params(common_name);
        params.not_before = not_before;
        params.not_after = not_after;
        Self::from_params(params, kind)
    }

    /// A self-signed root CA with nameConstraints: DNS names, URI hosts, emails (`email:`
    /// prefix) and IP subnets (`IP:` prefix, CIDR) it may (`permitted`) or may not
    /// (`excluded`) vouch for.
    pub fn constrained(
        common_name: &str,
        kind: KeyKind,
        permitted: &[&str],
        excluded: &[&str],
    ) -> Self {
        let subtrees = |names: &[&str]| {
            names
                .iter()
                .map(|name| {
                    if let Some(email) = name.strip_prefix("email:") {
                        GeneralSubtree::Rfc822Name(email.into())
                    } else if let Some(cidr) = name.strip_prefix("IP:") {
                        let (address, prefix) = cidr.split_once('/').expect("CIDR");
                        let address: std::net::IpAddr = address.parse().expect("IP");
                        GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                            address,
                            prefix.parse().expect("prefix length"),
                        ))
                    } else {
                        GeneralSubtree::DnsName((*name).into())
                    }
                })
                .collect()
        };
        let mut params = ca_params(common_name);
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: subtrees(permitted),
            excluded_subtrees: subtrees(excluded),
        });
        Self::from_params(params, kind)
    }

    /// An issuing (intermediate) CA signed by this one, with `path_len` as its
    /// pathLenConstraint (`None`: unconstrained).
    pub fn intermediate(&self, common_name: &str, kind: KeyKind, path_len: Option<u8>) -> Ca {
        self.intermediate_with(common_name, kind, |params| {
            if let Some(n) = path_len {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(n));
            }
        })
    }

    /// An intermediate CA signed by this one, its parameters changed by `change` first.
    pub fn intermediate_with(
        &self,
        common_name: &str,
        kind: KeyKind,
        change: impl FnOnce(&mut CertificateParams),
    ) -> Ca {
        let mut params = ca_params(common_name);
        change(&mut params);
        let key = key(kind);
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .expect("intermediate CA");
        Self::assembled(&cert, params, key)
    }

    /// A CRL (PEM) signed by this CA, listing `revoked`, valid until `next_update`.
    pub fn crl(&self, revoked: &[&Issued], next_update: OffsetDateTime) -> String {
        let now = OffsetDateTime::now_utc();
        let this_update = if next_update > now {
            now - Duration::minutes(1)
        } else {
            next_update - Duration::days(1)
        };
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|issued| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_of(&issued.cert_der)),
                    revocation_time: this_update,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.params.key_identifier_method.clone(),
        };
        params
            .signed_by(&Issuer::from_params(&self.params, &self.key))
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }

    fn from_params(params: CertificateParams, kind: KeyKind) -> Self {
        let key = key(kind);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self::assembled(&cert, params, key)
    }

    /// A CA from its signed certificate, the parameters it was made from and its key.
    fn assembled(cert: &rcgen::Certificate, params: CertificateParams, key: KeyPair) -> Self {
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
        if leaf.kind == KeyKind::Rsa1024 {
            let (key_pem, spki) = weak_rsa_key();
            let cert = self
                .leaf_params(leaf)
                .signed_by(&spki, &Issuer::from_params(&self.params, &self.key))
                .expect("leaf issuance");
            return Issued {
                cert_pem: cert.pem(),
                cert_der: cert.der().to_vec(),
                key_pem,
            };
        }
        self.issue_for(leaf, &key(leaf.kind))
    }

    /// Issues a leaf as described for an existing key (of `leaf.kind`): many certificates
    /// for one key cost no key generation.
    pub fn issue_for(&self, leaf: &Leaf, key: &KeyPair) -> Issued {
        let params = self.leaf_params(leaf);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(key, &issuer).expect("leaf issuance");
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    fn leaf_params(&self, leaf: &Leaf) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = leaf
            .subject
            .clone()
            .unwrap_or_else(|| dn(&leaf.common_name));
        params.subject_alt_names = leaf.sans.iter().map(|s| san(s)).collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if matches!(leaf.kind, KeyKind::Rsa2048 | KeyKind::Rsa1024) {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![if leaf.server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        if let Some(usages) = &leaf.key_usages {
            params.key_usages.clone_from(usages);
        }
        if let Some(purposes) = &leaf.extended_key_usages {
            params.extended_key_usages.clone_from(purposes);
        }
        if leaf.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params.custom_extensions = leaf
            .critical_extensions
            .iter()
            .map(|oid| {
                // An empty SEQUENCE as the value: what it means does not matter, only that it
                // is critical and unknown.
                let mut ext = CustomExtension::from_oid_content(oid, vec![0x30, 0x00]);
                ext.set_criticality(true);
                ext
            })
            .collect();
        params.use_authority_key_identifier_extension = leaf.authority_key_id;
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        params.serial_number = Some(match &leaf.serial {
            Some(serial) => SerialNumber::from_slice(serial),
            None => random_serial(),
        });
        params
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
    /// basicConstraints CA:true (a CA certificate used as a leaf).
    pub ca: bool,
    /// keyUsage instead of the default (digitalSignature, and keyEncipherment for RSA).
    pub key_usages: Option<Vec<KeyUsagePurpose>>,
    /// extendedKeyUsage instead of the default (clientAuth, or serverAuth for a server);
    /// empty leaves the extension out.
    pub extended_key_usages: Option<Vec<ExtendedKeyUsagePurpose>>,
    /// OIDs of extensions to add, critical, that no one understands.
    pub critical_extensions: Vec<Vec<u64>>,
    /// The subject instead of `O=peergate tests, CN=<common_name>` (string types of one's
    /// choosing).
    pub subject: Option<DistinguishedName>,
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
            ca: false,
            key_usages: None,
            extended_key_usages: None,
            critical_extensions: Vec::new(),
            subject: None,
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
