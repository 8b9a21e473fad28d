//! Hex as people read and write it: fingerprints, serials, key identifiers, RFC 4514
//! `#hexstring` values. A floor every module may use.

use std::fmt;

/// Lower-case hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Lower-case hex with `:` between bytes (`ab:cd:ef`), as key identifiers are usually shown;
/// upper-cased, as openssl prints fingerprints.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        use fmt::Write;
        let separator = if i == 0 { "" } else { ":" };
        let _ = write!(out, "{separator}{b:02x}");
    }
    out
}

/// Decodes hex written by a person: either case, optional `:` separators.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_with_separators_and_case() {
        assert_eq!(parse_hex("0A:bc:FF"), Some(vec![0x0a, 0xbc, 0xff]));
        assert_eq!(hex(&[0x0a, 0xbc]), "0abc");
        assert_eq!(colon_hex(&[0x0a, 0xbc]), "0a:bc");
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex("é1"), None);
    }
}
