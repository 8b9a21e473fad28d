//! What the policy reads from a peer certificate, and how it is described in logs.

use std::fmt;
use std::net::IpAddr;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

pub use crate::hex::{colon_hex, hex, parse_hex};
use crate::subject::{rfc4514, subject_rdns, SubjectRdns};

/// A subject alternative name, in the forms the allow-list can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// uniformResourceIdentifier (SPIFFE IDs among them).
    Uri(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name.
    Email(String),
    /// Any other kind (directoryName, otherName, ...): shown, never matched.
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(v) => write!(f, "DNS:{v}"),
            San::Uri(v) => write!(f, "URI:{v}"),
            San::Ip(v) => write!(f, "IP:{v}"),
            San::Email(v) => write!(f, "email:{v}"),
            San::Other(v) => write!(f, "other:{v}"),
        }
    }
}

impl Serialize for San {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl San {
    /// Reads a SAN back from its display form (`DNS:…`, `URI:…`, `IP:…`, `email:…`); text
    /// in no known form is kept as [`San::Other`].
    pub fn from_display(text: &str) -> Self {
        let (kind, value) = text.split_once(':').unwrap_or(("", text));
        match kind {
            "DNS" => San::Dns(value.to_owned()),
            "URI" => San::Uri(value.to_owned()),
            "email" => San::Email(value.to_owned()),
            "IP" => match value.parse() {
                Ok(ip) => San::Ip(ip),
                Err(_) => San::Other(text.to_owned()),
            },
            "other" => San::Other(value.to_owned()),
            _ => San::Other(text.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for San {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Ok(San::from_display(&text))
    }
}

impl San {
    fn from_general_name(name: &GeneralName<'_>) -> Self {
        match name {
            GeneralName::DNSName(v) => San::Dns((*v).to_owned()),
            GeneralName::URI(v) => San::Uri((*v).to_owned()),
            GeneralName::RFC822Name(v) => San::Email((*v).to_owned()),
            GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                Some(ip) => San::Ip(ip),
                None => San::Other(format!("ip-bytes:{}", hex(bytes))),
            },
            GeneralName::DirectoryName(name) => San::Other(format!("dirName:{name}")),
            GeneralName::OtherName(oid, _) => San::Other(format!("otherName:{oid}")),
            GeneralName::RegisteredID(oid) => San::Other(format!("registeredID:{oid}")),
            GeneralName::X400Address(_) => San::Other("x400Address".into()),
            GeneralName::EDIPartyName(_) => San::Other("ediPartyName".into()),
            GeneralName::Invalid(tag, _) => San::Other(format!("invalid:{}", tag.0)),
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// The SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The peer as a human reads it in a decision log or an audit report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerSummary {
    /// Subject DN (RFC 4514 style).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Every SAN, as `DNS:`, `URI:`, `IP:`, `email:` or `other:`.
    pub sans: Vec<San>,
    /// Serial number, lower-case hex of its DER content.
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// notBefore, seconds since the Unix epoch.
    pub not_before: i64,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// The subject as `allowedSubjects` patterns compare it.
    #[serde(skip)]
    pub subject_rdns: SubjectRdns,
    /// The subject in RFC 4514 form, as `allowedSubjects` is written.
    #[serde(skip)]
    pub subject_rfc4514: String,
}

/// Why the SAN extension could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSanExtension;

impl PeerSummary {
    /// Reads the summary of a parsed certificate whose DER hashes to `fingerprint`.
    pub fn of(cert: &X509Certificate<'_>, fingerprint: &[u8; 32]) -> Result<Self, BadSanExtension> {
        let sans = match cert.subject_alternative_name() {
            Ok(Some(ext)) => ext
                .value
                .general_names
                .iter()
                .map(San::from_general_name)
                .collect(),
            Ok(None) => Vec::new(),
            Err(_) => return Err(BadSanExtension),
        };
        let validity = cert.validity();
        let subject_rdns = subject_rdns(cert.subject());
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            serial: hex(cert.raw_serial()),
            fingerprint: hex(fingerprint),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            subject_rfc4514: rfc4514(&subject_rdns),
            subject_rdns,
        })
    }
}

/// A serial number without leading zero bytes, so `00ab` (DER of a positive number with the
/// high bit set) and `ab` compare equal.
pub fn normalize_serial(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalization_drops_leading_zero_bytes() {
        assert_eq!(normalize_serial(&[0, 0, 0x80, 1]), vec![0x80, 1]);
        assert_eq!(normalize_serial(&[0]), Vec::<u8>::new());
    }

    #[test]
    fn sans_read_back_from_their_display_form() {
        for san in [
            San::Dns("a.example".into()),
            San::Uri("spiffe://a/b:c".into()),
            San::Email("a@b.c".into()),
            San::Ip("::1".parse().unwrap()),
            San::Ip("10.0.0.1".parse().unwrap()),
            San::Other("dirName:CN=x".into()),
        ] {
            assert_eq!(San::from_display(&san.to_string()), san);
        }
        assert_eq!(San::from_display("nonsense"), San::Other("nonsense".into()));
        assert_eq!(San::from_display("IP:x"), San::Other("IP:x".into()));
    }

    #[test]
    fn ip_sans_decode_both_families() {
        assert_eq!(
            ip_from_bytes(&[127, 0, 0, 1]),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ip_from_bytes(&[0; 16]), Some("::".parse().unwrap()));
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }
}
