//! A trusted issuer's nameConstraints (RFC 5280 §4.2.1.10), applied to the leaves it signs.
//! A CA constrained to `.partner-a.example` must not vouch for `bank.example` just because
//! the gateway lists it; ignoring the extension would make a constrained CA unconstrained.
//!
//! Names checked: the leaf's SANs (DNS, email, URI host, IP, directoryName), its subject as a
//! directoryName, and the subject's emailAddress attributes as emails (RFC 5280 says so when
//! there is no email SAN; here always, which is stricter). A constraint of a form the filter
//! cannot compare (otherName, x400Address, ediPartyName, registeredID) refuses every leaf that
//! carries a name of that form. minimum and maximum are not supported: RFC 5280 requires
//! them absent, and x509-parser does not read them.

use std::fmt;
use std::net::IpAddr;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, GeneralSubtree};
use x509_parser::oid_registry::OID_PKCS9_EMAIL_ADDRESS;
use x509_parser::x509::X509Name;

use crate::directory_string::AttributeValue;

/// One subtree of a nameConstraints extension, in owned, compared form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtree {
    /// A DNS domain, lower-case; a leading `.` means strict subdomains only.
    Dns(String),
    /// A mailbox (`a@b`), a host (`b`), or a domain (`.b`).
    Email(String),
    /// A host for URIs, same forms as emails' hosts.
    Uri(String),
    /// An address and its mask, both 4 or both 16 bytes.
    Ip(Vec<u8>, Vec<u8>),
    /// A distinguished name prefix.
    Directory(Vec<Rdn>),
    /// A form the filter cannot compare.
    Unsupported(&'static str),
}

/// One RDN: its attributes, each `(type OID, normalised value)`, sorted; `None` for a value
/// that does not decode (no DirectoryString type, or bytes its type does not allow).
type Rdn = Vec<(String, Option<String>)>;

impl fmt::Display for Subtree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subtree::Dns(d) => write!(f, "DNS:{d}"),
            Subtree::Email(e) => write!(f, "email:{e}"),
            Subtree::Uri(u) => write!(f, "URI:{u}"),
            Subtree::Ip(addr, mask) => match (ip(addr), ip(mask)) {
                (Some(a), Some(m)) => write!(f, "IP:{a}/{m}"),
                _ => f.write_str("IP:?"),
            },
            Subtree::Directory(rdns) => {
                let parts: Vec<String> = rdns
                    .iter()
                    .map(|rdn| {
                        let avas: Vec<String> = rdn
                            .iter()
                            .map(|(t, v)| format!("{t}={}", v.as_deref().unwrap_or("#?")))
                            .collect();
                        avas.join("+")
                    })
                    .collect();
                write!(f, "dirName:{}", parts.join(","))
            }
            Subtree::Unsupported(form) => f.write_str(form),
        }
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// The name forms, for grouping subtrees with the names they constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Dns,
    Email,
    Uri,
    Ip,
    Directory,
    Other(&'static str),
}

impl Subtree {
    fn form(&self) -> Form {
        match self {
            Subtree::Dns(_) => Form::Dns,
            Subtree::Email(_) => Form::Email,
            Subtree::Uri(_) => Form::Uri,
            Subtree::Ip(..) => Form::Ip,
            Subtree::Directory(_) => Form::Directory,
            Subtree::Unsupported(form) => Form::Other(form),
        }
    }
}

/// A leaf name, in the form constraints compare.
#[derive(Debug, Clone)]
enum Name {
    Dns(String),
    Email(String),
    /// The URI as written and its host, if it has one.
    Uri(String, Option<String>),
    Ip(Vec<u8>),
    Directory(Vec<Rdn>),
    /// A subject emailAddress that does not decode: an email no email rule can clear.
    UndecodableEmail,
    Other(&'static str),
}

impl Name {
    fn form(&self) -> Form {
        match self {
            Name::Dns(_) => Form::Dns,
            Name::Email(_) | Name::UndecodableEmail => Form::Email,
            Name::Uri(..) => Form::Uri,
            Name::Ip(_) => Form::Ip,
            Name::Directory(_) => Form::Directory,
            Name::Other(form) => Form::Other(form),
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Dns(d) => write!(f, "DNS:{d}"),
            Name::Email(e) => write!(f, "email:{e}"),
            Name::Uri(u, _) => write!(f, "URI:{u}"),
            Name::Ip(bytes) => match ip(bytes) {
                Some(a) => write!(f, "IP:{a}"),
                None => f.write_str("IP:?"),
            },
            Name::Directory(rdns) => write!(f, "{}", Subtree::Directory(rdns.clone())),
            Name::UndecodableEmail => f.write_str("subject emailAddress"),
            Name::Other(form) => f.write_str(form),
        }
    }
}

/// A trusted issuer's nameConstraints, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConstraints {
    permitted: Vec<Subtree>,
    excluded: Vec<Subtree>,
}

/// Why a leaf is outside its issuer's name constraints; `Display` is the audit's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintViolation(String);

impl fmt::Display for ConstraintViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NameConstraints {
    /// The issuer's constraints; `Ok(None)` without the extension, `Err` with what is wrong
    /// when it cannot be used (the configuration is then refused).
    pub fn of_issuer(cert: &X509Certificate<'_>) -> Result<Option<Self>, String> {
        let extension = cert
            .name_constraints()
            .map_err(|e| format!("nameConstraints does not parse: {e}"))?;
        let Some(extension) = extension else {
            return Ok(None);
        };
        let compile = |subtrees: &Option<Vec<GeneralSubtree<'_>>>| {
            subtrees
                .iter()
                .flatten()
                .map(|s| subtree(&s.base))
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Some(NameConstraints {
            permitted: compile(&extension.value.permitted_subtrees)?,
            excluded: compile(&extension.value.excluded_subtrees)?,
        }))
    }

    /// Whether the leaf's names are all inside the constraints.
    pub fn check(&self, leaf: &X509Certificate<'_>) -> Result<(), ConstraintViolation> {
        for name in names(leaf) {
            self.check_name(&name)?;
        }
        Ok(())
    }

    fn check_name(&self, name: &Name) -> Result<(), ConstraintViolation> {
        let form = name.form();
        let of_form = |list: &[Subtree]| -> Vec<Subtree> {
            list.iter().filter(|s| s.form() == form).cloned().collect()
        };
        let permitted = of_form(&self.permitted);
        let excluded = of_form(&self.excluded);
        if permitted.is_empty() && excluded.is_empty() {
            return Ok(());
        }
        let unchecked = match name {
            Name::Other(what) => Some(format!(
                "the issuer constrains {what} names, which the filter cannot check"
            )),
            Name::Uri(_, None) => {
                Some("the issuer constrains URIs by host and this one has none".to_owned())
            }
            // A consumer may read such a name only up to a NUL (a C string), where it can name
            // a host outside the subtree it seems to be in.
            Name::Dns(host) if host.bytes().any(|b| b < 0x20 || b == 0x7f) => Some(
                "the issuer constrains DNS names and this one has a control character (a NUL cuts it short for some readers)".to_owned(),
            ),
            Name::UndecodableEmail => Some(
                "the issuer constrains emails and this one does not decode as text".to_owned(),
            ),
            Name::Directory(rdns) if !decodes(rdns) => Some(
                "the issuer constrains directory names and a value of this one does not decode as a DirectoryString".to_owned(),
            ),
            _ => None,
        };
        if let Some(why) = unchecked {
            return Err(ConstraintViolation(format!("{name}: {why}")));
        }
        if let Some(subtree) = excluded.iter().find(|s| within(name, s)) {
            return Err(ConstraintViolation(format!(
                "{name} is in the issuer's excluded subtree {subtree}"
            )));
        }
        if !permitted.is_empty() && !permitted.iter().any(|s| within(name, s)) {
            let shown: Vec<String> = permitted.iter().map(ToString::to_string).collect();
            return Err(ConstraintViolation(format!(
                "{name} is outside the issuer's permitted subtrees [{}]",
                shown.join(", ")
            )));
        }
        Ok(())
    }

    /// The constraints for people.
    pub fn describe(&self) -> String {
        let list = |subtrees: &[Subtree]| {
            let shown: Vec<String> = subtrees.iter().map(ToString::to_string).collect();
            shown.join(", ")
        };
        match (self.permitted.is_empty(), self.excluded.is_empty()) {
            (false, true) => format!("permitted [{}]", list(&self.permitted)),
            (true, false) => format!("excluded [{}]", list(&self.excluded)),
            _ => format!(
                "permitted [{}], excluded [{}]",
                list(&self.permitted),
                list(&self.excluded)
            ),
        }
    }
}

fn subtree(base: &GeneralName<'_>) -> Result<Subtree, String> {
    Ok(match base {
        GeneralName::DNSName(d) => Subtree::Dns(d.to_ascii_lowercase()),
        GeneralName::RFC822Name(e) => Subtree::Email(lower_host_of_mailbox(e)),
        GeneralName::URI(u) => Subtree::Uri(u.to_ascii_lowercase()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            8 | 32 => {
                let (addr, mask) = bytes.split_at(bytes.len() / 2);
                Subtree::Ip(addr.to_vec(), mask.to_vec())
            }
            n => {
                return Err(format!(
                    "nameConstraints: an iPAddress subtree of {n} bytes (8 or 32 expected)"
                ))
            }
        },
        GeneralName::DirectoryName(name) => {
            let rdns = rdns(name);
            if !decodes(&rdns) {
                return Err(
                    "nameConstraints: a directoryName subtree with a value that does not decode as a DirectoryString"
                        .into(),
                );
            }
            Subtree::Directory(rdns)
        }
        GeneralName::OtherName(..) => Subtree::Unsupported("otherName"),
        GeneralName::X400Address(_) => Subtree::Unsupported("x400Address"),
        GeneralName::EDIPartyName(_) => Subtree::Unsupported("ediPartyName"),
        GeneralName::RegisteredID(_) => Subtree::Unsupported("registeredID"),
        GeneralName::Invalid(..) => {
            return Err("nameConstraints: a subtree that is not a valid GeneralName".into())
        }
    })
}

/// Every name of the leaf that constraints apply to.
fn names(leaf: &X509Certificate<'_>) -> Vec<Name> {
    let mut names = Vec::new();
    if leaf.subject().iter_rdn().next().is_some() {
        names.push(Name::Directory(rdns(leaf.subject())));
    }
    for attribute in leaf.subject().iter_by_oid(&OID_PKCS9_EMAIL_ADDRESS) {
        match AttributeValue::of(attribute).text {
            Some(email) => names.push(Name::Email(lower_host_of_mailbox(&email))),
            None => names.push(Name::UndecodableEmail),
        }
    }
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for general_name in &san.value.general_names {
            names.push(match general_name {
                GeneralName::DNSName(d) => Name::Dns(d.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::RFC822Name(e) => Name::Email(lower_host_of_mailbox(e)),
                GeneralName::URI(u) => Name::Uri((*u).to_owned(), uri_host(u)),
                GeneralName::IPAddress(bytes) => Name::Ip(bytes.to_vec()),
                GeneralName::DirectoryName(name) => Name::Directory(rdns(name)),
                GeneralName::OtherName(..) => Name::Other("otherName"),
                GeneralName::X400Address(_) => Name::Other("x400Address"),
                GeneralName::EDIPartyName(_) => Name::Other("ediPartyName"),
                GeneralName::RegisteredID(_) => Name::Other("registeredID"),
                GeneralName::Invalid(..) => Name::Other("an invalid GeneralName"),
            });
        }
    }
    names
}

/// A mailbox with its host lower-cased (the local part is case-sensitive), or a bare host or
/// domain lower-cased.
fn lower_host_of_mailbox(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((local, host)) => format!("{local}@{}", host.to_ascii_lowercase()),
        None => text.to_ascii_lowercase(),
    }
}

/// The host of `scheme://[userinfo@]host[:port]/...`, lower-cased; `None` without an
/// authority or with an empty host.
fn uri_host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

/// A DN as RDNs of sorted `(type, value)` pairs: each value decoded from whichever
/// DirectoryString type it is written in, trimmed, inner whitespace collapsed and lower-cased
/// (close to RFC 4518's caseIgnoreMatch); `None` where it does not decode.
fn rdns(name: &X509Name<'_>) -> Vec<Rdn> {
    name.iter_rdn()
        .map(|rdn| {
            let mut avas: Rdn = rdn
                .iter()
                .map(|ava| {
                    let value = AttributeValue::of(ava).text.map(|text| {
                        text.split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase()
                    });
                    (ava.attr_type().to_id_string(), value)
                })
                .collect();
            avas.sort();
            avas
        })
        .collect()
}

/// Whether every value of a directory name decoded.
fn decodes(rdns: &[Rdn]) -> bool {
    rdns.iter().flatten().all(|(_, value)| value.is_some())
}

/// Whether `host` is `base` or below it: `base` itself and its subdomains, or with a leading
/// `.` only its subdomains; an empty base holds every host.
fn host_within(host: &str, base: &str) -> bool {
    if base.is_empty() {
        return true;
    }
    match base.strip_prefix('.') {
        Some(_) => host.len() > base.len() && host.ends_with(base),
        None => {
            host == base
                || (host.len() > base.len()
                    && host.ends_with(base)
                    && host.as_bytes().get(host.len() - base.len() - 1) == Some(&b'.'))
        }
    }
}

fn within(name: &Name, subtree: &Subtree) -> bool {
    match (name, subtree) {
        (Name::Dns(host), Subtree::Dns(base)) => host_within(host, base),
        (Name::Email(mailbox), Subtree::Email(base)) => {
            if base.contains('@') {
                mailbox == base
            } else {
                let host = mailbox.rsplit_once('@').map_or("", |(_, h)| h);
                match base.strip_prefix('.') {
                    Some(_) => host.len() > base.len() && host.ends_with(base.as_str()),
                    None => host == base,
                }
            }
        }
        (Name::Uri(_, Some(host)), Subtree::Uri(base)) => match base.strip_prefix('.') {
            Some(_) => host.len() > base.len() && host.ends_with(base.as_str()),
            None => host == base,
        },
        (Name::Ip(address), Subtree::Ip(base, mask)) => {
            address.len() == base.len()
                && address
                    .iter()
                    .zip(base)
                    .zip(mask)
                    .all(|((a, b), m)| a & m == b & m)
        }
        (Name::Directory(rdns), Subtree::Directory(base)) => rdns.starts_with(base),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_within_domains() {
        assert!(host_within("a.example", "a.example"));
        assert!(host_within("x.a.example", "a.example"));
        assert!(!host_within("xa.example", "a.example"));
        assert!(!host_within("a.example", ".a.example"));
        assert!(host_within("x.a.example", ".a.example"));
        assert!(host_within("anything", ""));
    }

    #[test]
    fn uri_hosts() {
        assert_eq!(
            uri_host("spiffe://Partner-A/ns/x").as_deref(),
            Some("partner-a")
        );
        assert_eq!(
            uri_host("https://u:p@h.example:8443/p?q").as_deref(),
            Some("h.example")
        );
        assert_eq!(uri_host("https://[::1]:80/").as_deref(), Some("::1"));
        assert_eq!(uri_host("urn:uuid:1234"), None);
        assert_eq!(uri_host("spiffe:///x"), None);
    }

    #[test]
    fn emails_and_addresses() {
        let mailbox = Name::Email(lower_host_of_mailbox("Ops@Partner.Example"));
        assert!(within(&mailbox, &Subtree::Email("partner.example".into())));
        assert!(within(
            &mailbox,
            &Subtree::Email("Ops@partner.example".into())
        ));
        assert!(!within(
            &mailbox,
            &Subtree::Email("ops@partner.example".into())
        ));
        assert!(!within(
            &mailbox,
            &Subtree::Email(".partner.example".into())
        ));
        let v4 = Name::Ip(vec![10, 1, 2, 3]);
        assert!(within(
            &v4,
            &Subtree::Ip(vec![10, 0, 0, 0], vec![255, 0, 0, 0])
        ));
        assert!(!within(
            &v4,
            &Subtree::Ip(vec![11, 0, 0, 0], vec![255, 0, 0, 0])
        ));
        assert!(!within(&v4, &Subtree::Ip(vec![0; 16], vec![0; 16])));
    }
}
