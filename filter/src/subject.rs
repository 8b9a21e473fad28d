//! `allowedSubjects`: subject distinguished names in RFC 4514 form (`CN=svc,O=Partner A`,
//! most specific RDN first, as `openssl x509 -nameopt RFC2253` prints them). A pattern names
//! the whole subject: the same RDNs in the same order, attribute types compared
//! case-insensitively (and as names or dotted OIDs alike), values exactly after decoding any
//! DirectoryString type (a BMPString "a" is the UTF8String "a"). A trailing `*` in a CN value
//! matches any CN that starts with what comes before it (`CN=svc-*,O=Partner A`). A value
//! written `#hexstring` (RFC 4514 §2.4) is the whole BER encoding of the value and matches that
//! encoding and no other: the form [`rfc4514`] prints a value that does not decode in.

use std::fmt;

use x509_parser::x509::X509Name;

use crate::directory_string::AttributeValue;

/// Attribute type names RFC 4514 (and common use) gives, with their OIDs.
const NAMES: &[(&str, &str)] = &[
    ("cn", "2.5.4.3"),
    ("commonname", "2.5.4.3"),
    ("serialnumber", "2.5.4.5"),
    ("c", "2.5.4.6"),
    ("countryname", "2.5.4.6"),
    ("l", "2.5.4.7"),
    ("localityname", "2.5.4.7"),
    ("st", "2.5.4.8"),
    ("stateorprovincename", "2.5.4.8"),
    ("street", "2.5.4.9"),
    ("o", "2.5.4.10"),
    ("organizationname", "2.5.4.10"),
    ("ou", "2.5.4.11"),
    ("organizationalunitname", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("dc", "0.9.2342.19200300.100.1.25"),
    ("domaincomponent", "0.9.2342.19200300.100.1.25"),
    ("uid", "0.9.2342.19200300.100.1.1"),
    ("userid", "0.9.2342.19200300.100.1.1"),
    ("emailaddress", "1.2.840.113549.1.9.1"),
    ("e", "1.2.840.113549.1.9.1"),
];

const COMMON_NAME: &str = "2.5.4.3";

/// The names `rfc4514()` writes (RFC 4514 §3, and the usual ones for the rest).
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("2.5.4.5", "serialNumber"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// Why a subject pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectPatternError {
    /// Nothing, or an empty RDN (`CN=a,,O=b`).
    #[error("subject pattern {0:?} has an empty RDN")]
    Empty(String),
    /// An attribute without `=`, or a type that is neither a known name nor a dotted OID.
    #[error("subject pattern {0:?}: {1}")]
    Attribute(String, String),
    /// A `*` other than at the end of a CN value.
    #[error("subject pattern {0:?}: `*` is allowed only at the end of a CN value")]
    MisplacedWildcard(String),
    /// A broken escape.
    #[error("subject pattern {0:?}: a bad escape (RFC 4514: `\\` then a special character or two hex digits)")]
    Escape(String),
    /// A `#` value that is not an even number of hex digits.
    #[error("subject pattern {0:?}: a `#` value must be the value's BER encoding in hex (RFC 4514 §2.4)")]
    HexString(String),
}

/// What a pattern's attribute value matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    /// The decoded text, exactly.
    Text(String),
    /// Decoded text starting with this (a CN's trailing `*`).
    Prefix(String),
    /// This BER encoding, byte for byte (`#hexstring`).
    Ber(Vec<u8>),
}

impl Value {
    fn matches(&self, value: &AttributeValue) -> bool {
        match self {
            Value::Text(text) => value.text.as_deref() == Some(text.as_str()),
            Value::Prefix(prefix) => value
                .text
                .as_deref()
                .is_some_and(|text| text.starts_with(prefix.as_str())),
            Value::Ber(ber) => value.ber == *ber,
        }
    }
}

/// One attribute of a pattern: its type OID and value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attribute {
    oid: String,
    value: Value,
}

/// A compiled `allowedSubjects` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPattern {
    /// The pattern as written.
    text: String,
    /// The RDNs in the certificate's (DER) order, each's attributes sorted.
    rdns: Vec<Vec<Attribute>>,
}

impl fmt::Display for SubjectPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits on `separator` outside escapes; keeps escapes in the parts.
fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(text.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// RFC 4514 value unescaping: `\` before a special character, or two hex digits (UTF-8 bytes).
/// Returns the value and whether it ended in an unescaped `*`.
fn unescape(raw: &str) -> Option<(String, bool, bool)> {
    let mut bytes = Vec::new();
    let mut chars = raw.chars().peekable();
    let mut star_at_end = false;
    let mut star_inside = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next()?;
            if next.is_ascii_hexdigit() {
                let low = chars.next()?;
                let byte = u8::from_str_radix(&format!("{next}{low}"), 16).ok()?;
                bytes.push(byte);
            } else if " \"#+,;<=>\\*".contains(next) {
                // RFC 4514's special characters, and `*` for a literal star.
                bytes.push(next as u8);
            } else {
                return None;
            }
        } else if c == '*' {
            if chars.peek().is_none() {
                star_at_end = true;
            } else {
                star_inside = true;
                bytes.push(b'*');
            }
        } else {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    Some((value, star_at_end, star_inside))
}

/// The OID for an attribute type, by name (any case) or dotted form.
fn attribute_oid(name: &str) -> Option<String> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some((_, oid)) = NAMES.iter().find(|(n, _)| *n == lower) {
        return Some((*oid).to_owned());
    }
    let dotted = lower.strip_prefix("oid.").unwrap_or(&lower);
    let arcs: Vec<&str> = dotted.split('.').collect();
    (arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit())))
    .then(|| dotted.to_owned())
}

/// An attribute value as written in a pattern: `#hexstring`, or text with escapes and a CN's
/// trailing `*`.
fn pattern_value(raw: &str, oid: &str, pattern: &str) -> Result<Value, SubjectPatternError> {
    if let Some(hex) = raw.strip_prefix('#') {
        return crate::hex::parse_hex(hex)
            .filter(|_| !hex.contains(':'))
            .map(Value::Ber)
            .ok_or_else(|| SubjectPatternError::HexString(pattern.to_owned()));
    }
    let (value, prefix, star_inside) =
        unescape(raw).ok_or_else(|| SubjectPatternError::Escape(pattern.to_owned()))?;
    if star_inside || (prefix && oid != COMMON_NAME) {
        return Err(SubjectPatternError::MisplacedWildcard(pattern.to_owned()));
    }
    Ok(if prefix {
        Value::Prefix(value)
    } else {
        Value::Text(value)
    })
}

impl SubjectPattern {
    /// Compiles one pattern as written in `allowedSubjects`.
    pub fn parse(text: &str) -> Result<Self, SubjectPatternError> {
        let owned = || text.to_owned();
        if text.trim().is_empty() {
            return Err(SubjectPatternError::Empty(owned()));
        }
        let mut rdns = Vec::new();
        for rdn in split_unescaped(text, ',') {
            if rdn.trim().is_empty() {
                return Err(SubjectPatternError::Empty(owned()));
            }
            let mut attributes = Vec::new();
            for ava in split_unescaped(rdn, '+') {
                let (name, raw) = ava.split_once('=').ok_or_else(|| {
                    SubjectPatternError::Attribute(owned(), format!("{ava:?} has no `=`"))
                })?;
                let oid = attribute_oid(name).ok_or_else(|| {
                    SubjectPatternError::Attribute(
                        owned(),
                        format!("{:?} is not an attribute type (CN, O, OU, C, L, ST, DC, UID, emailAddress, serialNumber, or a dotted OID)", name.trim()),
                    )
                })?;
                let value = pattern_value(raw.trim_start(), &oid, text)?;
                attributes.push(Attribute { oid, value });
            }
            attributes.sort_by(|a, b| (&a.oid, &a.value).cmp(&(&b.oid, &b.value)));
            rdns.push(attributes);
        }
        // RFC 4514 writes the last RDN of the sequence first.
        rdns.reverse();
        Ok(SubjectPattern {
            text: text.to_owned(),
            rdns,
        })
    }

    /// Whether the subject (as [`subject_rdns`] reads it) is this pattern's DN.
    pub fn matches(&self, subject: &SubjectRdns) -> bool {
        subject.len() == self.rdns.len()
            && subject.iter().zip(&self.rdns).all(|(rdn, pattern)| {
                rdn.len() == pattern.len()
                    && pattern.iter().all(|attribute| {
                        rdn.iter().any(|(oid, value)| {
                            *oid == attribute.oid && attribute.value.matches(value)
                        })
                    })
            })
    }
}

/// A subject as patterns compare it: RDNs in the certificate's order, each attribute's type
/// OID and its value.
pub type SubjectRdns = Vec<Vec<(String, AttributeValue)>>;

/// Reads a subject for [`SubjectPattern::matches`].
pub fn subject_rdns(name: &X509Name<'_>) -> SubjectRdns {
    name.iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|ava| (ava.attr_type().to_id_string(), AttributeValue::of(ava)))
                .collect()
        })
        .collect()
}

/// A compiled `allowedSubjects` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAllowList {
    patterns: Vec<SubjectPattern>,
}

impl SubjectAllowList {
    /// Compiles a list; an error carries the index of the bad entry.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, SubjectPatternError)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| SubjectPattern::parse(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// The first pattern that matches the subject, with its index.
    pub fn first_match(&self, subject: &SubjectRdns) -> Option<(usize, &SubjectPattern)> {
        self.patterns
            .iter()
            .enumerate()
            .find(|(_, p)| p.matches(subject))
    }

    /// The compiled patterns.
    pub fn patterns(&self) -> &[SubjectPattern] {
        &self.patterns
    }
}

/// A subject (as [`subject_rdns`] read it, so each value is decoded once) in RFC 4514 form
/// (most specific RDN first), for people and for copying into `allowedSubjects`.
pub fn rfc4514(subject: &SubjectRdns) -> String {
    let mut rdns: Vec<String> = subject
        .iter()
        .map(|rdn| {
            let avas: Vec<String> = rdn
                .iter()
                .map(|(oid, value)| {
                    let name = SHORT_NAMES
                        .iter()
                        .find(|(o, _)| o == oid)
                        .map_or(oid.as_str(), |(_, n)| n);
                    let value = match &value.text {
                        Some(text) => escape(text),
                        None => format!("#{}", crate::hex::hex(&value.ber)),
                    };
                    format!("{name}={value}")
                })
                .collect();
            avas.join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(",")
}

/// RFC 4514 §2.4 escaping of a value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '*')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_in_rfc_4514_order() {
        let p = SubjectPattern::parse("CN=svc-*,O=Partner A").unwrap();
        assert_eq!(p.rdns.len(), 2);
        assert_eq!(p.rdns[0][0].oid, "2.5.4.10");
        assert_eq!(p.rdns[1][0].oid, COMMON_NAME);
        assert_eq!(p.rdns[1][0].value, Value::Prefix("svc-".into()));
        let same = SubjectPattern::parse("cn=svc-*, o=Partner A").unwrap();
        assert_eq!(same.rdns, p.rdns);
        let oid = SubjectPattern::parse("2.5.4.3=svc-*,OID.2.5.4.10=Partner A").unwrap();
        assert_eq!(oid.rdns, p.rdns);
        let escaped = SubjectPattern::parse(r"CN=a\,b\2Bc,O=x").unwrap();
        assert_eq!(escaped.rdns[1][0].value, Value::Text("a,b+c".into()));
        let literal_star = SubjectPattern::parse(r"CN=a\*,O=x").unwrap();
        assert_eq!(literal_star.rdns[1][0].value, Value::Text("a*".into()));
        let ber = SubjectPattern::parse("CN=#1e020041,O=x").unwrap();
        assert_eq!(ber.rdns[1][0].value, Value::Ber(vec![0x1e, 2, 0, 0x41]));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "CN=a,,O=b",
            "CN",
            "XX=a",
            "CN=a*b",
            "O=a*",
            r"CN=a\",
            r"CN=a\zz",
            "CN=#0c0",
            "CN=#zz",
            "CN=#",
        ] {
            assert!(SubjectPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_escape_as_rfc_4514_says() {
        assert_eq!(escape("a,b"), r"a\,b");
        assert_eq!(escape(" a "), r"\ a\ ");
        assert_eq!(escape("#x"), r"\#x");
        assert_eq!(escape("svc*"), r"svc\*");
    }
}
