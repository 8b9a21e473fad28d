//! Attribute values of distinguished names, read by meaning: every DirectoryString type
//! (RFC 5280 §4.1.2.4) decoded to text, so a subject written as a BMPString compares equal to
//! the same text as a UTF8String, and a value that cannot be decoded is known as such instead of
//! being compared as bytes that happen to differ. Name constraints over directory names and
//! `allowedSubjects` both read values through here.

use x509_parser::der_parser::asn1_rs::{Tag, ToDer};
use x509_parser::x509::AttributeTypeAndValue;

/// An attribute value as a directory-name rule compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeValue {
    /// The decoded text; `None` when the value is no string type, or its bytes are not valid
    /// for the type it claims.
    pub text: Option<String>,
    /// The whole BER encoding of the value (tag, length, content), as RFC 4514 `#hexstring`
    /// writes it.
    pub ber: Vec<u8>,
}

impl AttributeValue {
    /// Reads one attribute's value.
    pub fn of(attribute: &AttributeTypeAndValue<'_>) -> Self {
        let value = attribute.attr_value();
        AttributeValue {
            text: decode(value.tag(), value.data),
            // Serializing a parsed value into a Vec cannot fail (no writer errors, definite
            // length); an empty encoding never equals a pattern's.
            ber: value.to_der_vec().unwrap_or_default(),
        }
    }
}

/// Decodes the content of a string-typed value. UTF8String, PrintableString, IA5String,
/// NumericString and VisibleString must hold what their type allows; TeletexString is read as
/// Latin-1 (as BoringSSL and Go read it); BMPString as UCS-2 and UniversalString as UCS-4, both
/// big-endian, without surrogates or non-characters.
pub fn decode(tag: Tag, content: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String => String::from_utf8(content.to_vec()).ok(),
        Tag::PrintableString => ascii_where(content, is_printable),
        Tag::Ia5String => ascii_where(content, |b| b.is_ascii()),
        Tag::NumericString => ascii_where(content, |b| b.is_ascii_digit() || b == b' '),
        Tag::VisibleString => ascii_where(content, |b| (0x20..0x7f).contains(&b)),
        Tag::T61String => Some(content.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => units(content, 2).and_then(|units| {
            units
                .into_iter()
                .map(|unit| code_point(unit).filter(|_| !(0xd800..0xe000).contains(&unit)))
                .collect()
        }),
        Tag::UniversalString => {
            units(content, 4).and_then(|units| units.into_iter().map(code_point).collect())
        }
        _ => None,
    }
}

/// PrintableString's alphabet (X.680 §41.4), and `*` and `&`, which CAs put there and Go and
/// BoringSSL accept (their meaning is not in doubt).
fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(&b)
}

fn ascii_where(content: &[u8], allowed: impl Fn(u8) -> bool) -> Option<String> {
    content
        .iter()
        .all(|&b| allowed(b))
        .then(|| content.iter().map(|&b| char::from(b)).collect())
}

/// Big-endian code units of `width` bytes; `None` when the length is not a multiple of it.
fn units(content: &[u8], width: usize) -> Option<Vec<u32>> {
    if !content.len().is_multiple_of(width) {
        return None;
    }
    Some(
        content
            .chunks(width)
            .map(|unit| unit.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
            .collect(),
    )
}

/// A Unicode scalar value that is not a non-character (U+FFFE, U+FFFF, U+FDD0..U+FDEF).
fn code_point(unit: u32) -> Option<char> {
    let non_character = (0xfdd0..=0xfdef).contains(&unit) || unit & 0xfffe == 0xfffe;
    char::from_u32(unit).filter(|_| !non_character)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_string_type_decodes_to_the_same_text() {
        let text = Some("Partner A".to_owned());
        assert_eq!(decode(Tag::Utf8String, b"Partner A"), text);
        assert_eq!(decode(Tag::PrintableString, b"Partner A"), text);
        assert_eq!(decode(Tag::Ia5String, b"Partner A"), text);
        assert_eq!(decode(Tag::T61String, b"Partner A"), text);
        let bmp: Vec<u8> = "Partner A"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(decode(Tag::BmpString, &bmp), text);
        let ucs4: Vec<u8> = "Partner A"
            .chars()
            .flat_map(|c| u32::from(c).to_be_bytes())
            .collect();
        assert_eq!(decode(Tag::UniversalString, &ucs4), text);
    }

    #[test]
    fn values_their_type_does_not_allow_do_not_decode() {
        assert_eq!(decode(Tag::PrintableString, b"a@b"), None);
        assert_eq!(decode(Tag::PrintableString, b"a_b"), None);
        assert_eq!(decode(Tag::Ia5String, &[0x80]), None);
        assert_eq!(decode(Tag::NumericString, b"12a"), None);
        assert_eq!(decode(Tag::Utf8String, &[0xff]), None);
        assert_eq!(decode(Tag::BmpString, &[0, 0x41, 0]), None);
        assert_eq!(decode(Tag::BmpString, &[0xd8, 0x00]), None);
        assert_eq!(decode(Tag::BmpString, &[0xff, 0xfe]), None);
        assert_eq!(decode(Tag::UniversalString, &[0, 0x11, 0, 0]), None);
        assert_eq!(decode(Tag::UniversalString, &[0, 0, 0x41]), None);
        assert_eq!(decode(Tag::OctetString, b"abc"), None);
        assert_eq!(decode(Tag::Integer, &[1]), None);
    }

    #[test]
    fn teletex_is_latin_1() {
        assert_eq!(decode(Tag::T61String, &[0x4d, 0xfc]), Some("Mü".to_owned()));
    }
}
