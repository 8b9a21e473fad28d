//! Reading the peer certificate from what the proxy exposes: the `connection.peer_certificate`
//! property and, on older proxies, the `Cert=` of `x-forwarded-client-cert`.

/// Decodes `%XX` escapes. `None` on a malformed escape.
pub fn url_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// The DER of the first `CERTIFICATE` block of a PEM text, plain or URL-encoded (Envoy's docs
/// say the property is URL-encoded; Envoy 1.40 returns plain PEM; XFCC's `Cert=` is encoded).
pub fn certificate_der_from_pem(text: &[u8]) -> Option<Vec<u8>> {
    let trimmed = text.trim_ascii();
    let decoded;
    // Envoy's encoding leaves `-----BEGIN` as it is, so look for escapes, not the prefix:
    // plain PEM never contains `%`.
    let pem = if trimmed.contains(&b'%') {
        decoded = url_decode(std::str::from_utf8(trimmed).ok()?)?;
        &decoded
    } else {
        trimmed
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

/// The `Cert=` values of every element of an `x-forwarded-client-cert` header, in order.
///
/// Elements are separated by `,`, pairs by `;`, values may be double-quoted with `\"` escapes.
/// A malformed header yields what could be read before the fault; callers never trust these
/// values without comparing them to the connection's own digest.
pub fn xfcc_certs(header: &str) -> Vec<String> {
    let mut certs = Vec::new();
    for element in split_unquoted(header, ',') {
        for pair in split_unquoted(&element, ';') {
            if let Some((key, value)) = pair.split_once('=') {
                if key.trim().eq_ignore_ascii_case("cert") {
                    certs.push(unquote(value.trim()));
                }
            }
        }
    }
    certs
}

fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if c == '\\' && !escaped {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(c);
            }
            out
        }
        None => value.to_owned(),
    }
}

/// Decodes a lower- or upper-case hex digest of 32 bytes (64 digits, as Envoy's
/// `connection.sha256_peer_certificate_digest`). Read on every request: no allocation, and no
/// branch per digit (one table load each, a bad digit noticed once at the end).
pub fn parse_digest(text: &[u8]) -> Option<[u8; 32]> {
    let text: &[u8; 64] = text.trim_ascii().try_into().ok()?;
    let mut digest = [0u8; 32];
    let mut seen = 0u8;
    for (byte, &[high, low]) in digest.iter_mut().zip(text.as_chunks::<2>().0) {
        let (high, low) = (hex_value(high), hex_value(low));
        seen |= high | low;
        *byte = (high << 4) | low;
    }
    (seen & NOT_HEX == 0).then_some(digest)
}

/// A byte's value as a hex digit, or [`NOT_HEX`] (the table covers every byte: no check left).
fn hex_value(byte: u8) -> u8 {
    HEX_VALUE.get(usize::from(byte)).copied().unwrap_or(NOT_HEX)
}

/// What [`HEX_VALUE`] holds for a byte that is not a hex digit (every digit's value is below it).
const NOT_HEX: u8 = 0xF0;

/// Each byte's value as a hex digit, or [`NOT_HEX`].
// Built at compile time: an index out of bounds would fail the build, never a request.
#[allow(clippy::indexing_slicing)]
static HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        let value = digit as u8;
        let lower = if value < 10 {
            b'0' + value
        } else {
            b'a' + value - 10
        };
        table[lower as usize] = value;
        table[lower.to_ascii_uppercase() as usize] = value;
        digit += 1;
    }
    table
};

/// Among the XFCC `Cert=` values, the DER of the one whose SHA-256 is `connection_digest`.
///
/// Under APPEND_FORWARD the client's own (possibly forged) element comes first and the proxy's
/// last; under SANITIZE_SET only the proxy's is there. Matching on the digest the connection
/// itself reports makes the order irrelevant and a forged element harmless.
///
/// A client's own part can be malformed (an unterminated quote swallows everything after it,
/// the proxy's element included), so when no element matches, the last `Cert="…"` of the
/// header is tried on its own: that is where the proxy appends the connection's certificate,
/// URL-encoded, so without quotes inside. Only a certificate with the connection's digest is
/// ever returned, so trying more candidates cannot admit anything else.
pub fn xfcc_cert_matching(header: &str, connection_digest: &[u8; 32]) -> Option<Vec<u8>> {
    let matches = |der: &Vec<u8>| crate::peer::fingerprint(der) == *connection_digest;
    xfcc_certs(header)
        .iter()
        .filter_map(|value| certificate_der_from_pem(value.as_bytes()))
        .find(matches)
        .or_else(|| {
            last_quoted_cert(header)
                .and_then(|value| certificate_der_from_pem(value.as_bytes()))
                .filter(matches)
        })
}

/// The value of the last `Cert="…"` in the header, read up to the next quote.
fn last_quoted_cert(header: &str) -> Option<&str> {
    const KEY: &[u8] = b"cert=\"";
    let bytes = header.as_bytes();
    let start = bytes
        .windows(KEY.len())
        .rposition(|w| w.eq_ignore_ascii_case(KEY))?
        + KEY.len();
    let rest = header.get(start..)?;
    rest.find('"').and_then(|end| rest.get(..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_quoted_cert_survives_a_broken_prefix() {
        assert_eq!(
            last_quoted_cert(r#"Cert="AAAA,By=x;Hash=ab;Cert="pem";URI=x"#),
            Some("pem")
        );
        assert_eq!(last_quoted_cert(r#"CERT="a",cert="b""#), Some("b"));
        assert_eq!(last_quoted_cert(r#"Cert="unterminated"#), None);
        assert_eq!(last_quoted_cert("Cert=plain"), None);
        assert_eq!(last_quoted_cert(""), None);
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a%20b%2Fc").unwrap(), b"a b/c");
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%2"), None);
        assert_eq!(url_decode("%"), None);
        assert_eq!(url_decode("é%C3%A9").unwrap(), "éé".as_bytes());
    }

    #[test]
    fn xfcc_elements_and_quoted_values() {
        let header =
            r#"Hash=ab;Cert="a%2Cb";Subject="CN=x,O=\"q;r\"";URI=spiffe://a,By=b;Cert=second"#;
        assert_eq!(
            xfcc_certs(header),
            vec!["a%2Cb".to_owned(), "second".to_owned()]
        );
    }

    #[test]
    fn xfcc_without_cert() {
        assert!(xfcc_certs("Hash=ab;Subject=\"CN=x\"").is_empty());
        assert!(xfcc_certs("").is_empty());
        assert!(xfcc_certs("\"unterminated;Cert=x").is_empty());
    }

    #[test]
    fn digest_parsing() {
        let hex = "00".repeat(32);
        assert_eq!(parse_digest(hex.as_bytes()), Some([0; 32]));
        assert_eq!(parse_digest(b"00"), None);
        let mixed = format!("  {}Ff\n", "0a".repeat(31));
        let mut expected = [0x0a; 32];
        expected[31] = 0xff;
        assert_eq!(parse_digest(mixed.as_bytes()), Some(expected));
        assert_eq!(parse_digest("g".repeat(64).as_bytes()), None);
        assert_eq!(parse_digest("é".repeat(32).as_bytes()), None);
        assert_eq!(parse_digest(b""), None);
        // Every byte, in either digit of a byte, against the standard library's reading.
        for position in [0, 1, 62, 63] {
            for byte in 0..=u8::MAX {
                let mut text = *b"0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcdef0123";
                text[position] = byte;
                let expected = (byte as char).to_digit(16).map(|_| {
                    let mut digest = [0u8; 32];
                    for (i, out) in digest.iter_mut().enumerate() {
                        let pair = std::str::from_utf8(&text[2 * i..2 * i + 2]).unwrap();
                        *out = u8::from_str_radix(pair, 16).unwrap();
                    }
                    digest
                });
                assert_eq!(parse_digest(&text), expected, "{byte:#04x} at {position}");
            }
        }
    }

    #[test]
    fn envoy_style_encoded_pem_is_decoded() {
        // Envoy escapes spaces, newlines and `+`/`/`/`=` but leaves the dashes and letters.
        let pem = "-----BEGIN%20CERTIFICATE-----%0AMAMCAQE%3D%0A-----END%20CERTIFICATE-----%0A";
        assert_eq!(
            certificate_der_from_pem(pem.as_bytes()),
            Some(vec![0x30, 0x03, 0x02, 0x01, 0x01])
        );
        let plain = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            certificate_der_from_pem(plain.as_bytes()),
            Some(vec![0x30, 0x03, 0x02, 0x01, 0x01])
        );
    }

    #[test]
    fn non_certificate_pem_is_rejected() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(certificate_der_from_pem(pem.as_bytes()), None);
        assert_eq!(certificate_der_from_pem(b"garbage"), None);
        assert_eq!(certificate_der_from_pem(b""), None);
    }
}
