//! The outer framing of a certificate, checked byte for byte. x509-parser is lenient where
//! DER is not: it accepts an outer signatureAlgorithm under another tag, or a signature BIT
//! STRING with unused bits, as long as the content reads. Such a variant has the same signed
//! content and so passes the signature check, but it has another SHA-256: without this check a
//! certificate on `deniedFingerprints` could come back as a variant of itself. (Found by the
//! property test `an_admitted_certificate_changed_anywhere_is_refused`.)

/// One DER element: its tag, the whole element, and its content.
struct Element<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Reads one element at the start of `input` (low tag numbers, definite minimal lengths, as
/// DER requires); returns it and what follows.
fn element(input: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated: no tag")?;
    if tag & 0x1f == 0x1f {
        return Err(format!(
            "tag {tag:#04x}: high tag numbers are not used here"
        ));
    }
    let (&first, rest) = rest.split_first().ok_or("truncated: no length")?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(format!("length form {first:#04x} is not DER"));
        }
        let bytes = rest.get(..count).ok_or("truncated length")?;
        if bytes.first() == Some(&0) {
            return Err("length has a leading zero byte".into());
        }
        let length = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        if length < 0x80 {
            return Err("length in long form below 128".into());
        }
        (length, rest.get(count..).ok_or("truncated length")?)
    };
    let content = rest
        .get(..length)
        .ok_or("content shorter than its length")?;
    let header = input.len() - rest.len();
    let whole = input.get(..header + length).ok_or("truncated element")?;
    let after = rest.get(length..).ok_or("truncated element")?;
    Ok((
        Element {
            tag,
            whole,
            content,
        },
        after,
    ))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(Element<'a>, &'a [u8]), String> {
    let (e, rest) = element(input).map_err(|m| format!("{what}: {m}"))?;
    if e.tag != tag {
        return Err(format!("{what}: tag {:#04x}, expected {tag:#04x}", e.tag));
    }
    Ok((e, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const VERSION: u8 = 0xa0;

/// Checks `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`:
/// nothing before or after, the outer signatureAlgorithm byte-identical to the one inside
/// tbsCertificate (RFC 5280 4.1.1.2), and a signature BIT STRING without unused bits.
pub fn check_certificate_framing(der: &[u8]) -> Result<(), String> {
    let (certificate, after) = expect(der, SEQUENCE, "Certificate")?;
    if !after.is_empty() {
        return Err(format!("{} bytes follow the certificate", after.len()));
    }
    let (tbs, rest) = expect(certificate.content, SEQUENCE, "tbsCertificate")?;
    let (outer_algorithm, rest) = expect(rest, SEQUENCE, "signatureAlgorithm")?;
    let (signature, rest) = expect(rest, BIT_STRING, "signatureValue")?;
    if !rest.is_empty() {
        return Err("extra elements after signatureValue".into());
    }
    if signature.content.first() != Some(&0) {
        return Err("signatureValue has unused bits".into());
    }
    let mut fields = tbs.content;
    if fields.first() == Some(&VERSION) {
        fields = element(fields).map_err(|m| format!("version: {m}"))?.1;
    }
    let (_, fields) = expect(fields, INTEGER, "serialNumber")?;
    let (inner_algorithm, _) = expect(fields, SEQUENCE, "tbsCertificate.signature")?;
    if inner_algorithm.whole != outer_algorithm.whole {
        return Err("signatureAlgorithm differs from tbsCertificate.signature".into());
    }
    Ok(())
}

/// The same certificate with another signatureValue: tbsCertificate and signatureAlgorithm
/// byte for byte, a signature BIT STRING without unused bits holding `signature`, and DER
/// lengths. `None` when `der` is not a framed certificate (see
/// [`check_certificate_framing`]).
pub fn with_signature_value(der: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    check_certificate_framing(der).ok()?;
    let (certificate, _) = element(der).ok()?;
    let (tbs, rest) = element(certificate.content).ok()?;
    let (algorithm, _) = element(rest).ok()?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(signature);
    let mut content = Vec::with_capacity(tbs.whole.len() + algorithm.whole.len() + bits.len() + 6);
    content.extend_from_slice(tbs.whole);
    content.extend_from_slice(algorithm.whole);
    push_element(&mut content, BIT_STRING, &bits);
    let mut out = Vec::with_capacity(content.len() + 6);
    push_element(&mut out, SEQUENCE, &content);
    Some(out)
}

/// Appends a DER element: tag, minimal definite length, content.
fn push_element(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let bytes = content.len().to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let significant = bytes.get(first..).unwrap_or_default();
    match significant {
        [short] if *short < 0x80 => out.push(*short),
        // At most size_of::<usize>() bytes, so the count fits the low seven bits.
        _ => {
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A well-formed skeleton: SEQUENCE { SEQUENCE { [0]{INTEGER 2}, INTEGER 1, ALG },
    /// ALG, BIT STRING 00 aa }.
    fn skeleton(outer_alg: &[u8], bits: &[u8]) -> Vec<u8> {
        let alg = [0x30, 0x03, 0x06, 0x01, 0x2a];
        let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01];
        tbs.extend_from_slice(&alg);
        let mut content = vec![0x30, u8::try_from(tbs.len()).unwrap()];
        content.extend_from_slice(&tbs);
        content.extend_from_slice(outer_alg);
        content.push(0x03);
        content.push(u8::try_from(bits.len()).unwrap());
        content.extend_from_slice(bits);
        let mut der = vec![0x30, u8::try_from(content.len()).unwrap()];
        der.extend_from_slice(&content);
        der
    }

    #[test]
    fn framing() {
        let alg = [0x30, 0x03, 0x06, 0x01, 0x2a];
        assert_eq!(
            check_certificate_framing(&skeleton(&alg, &[0, 0xaa])),
            Ok(())
        );
        let other_tag = [0x30, 0x03, 0x07, 0x01, 0x2a];
        assert!(check_certificate_framing(&skeleton(&other_tag, &[0, 0xaa])).is_err());
        assert!(check_certificate_framing(&skeleton(&alg, &[1, 0xaa])).is_err());
        assert!(check_certificate_framing(&skeleton(&alg, &[])).is_err());
        let mut trailing = skeleton(&alg, &[0, 0xaa]);
        trailing.push(0);
        assert!(check_certificate_framing(&trailing).is_err());
        // Long-form length below 128 is BER, not DER.
        assert!(element(&[0x04, 0x81, 0x01, 0xff]).is_err());
        assert!(element(&[0x04, 0x82, 0x00, 0x80]).is_err());
        assert!(element(&[0x04, 0x80]).is_err());
        for n in 0..12 {
            let der = skeleton(&alg, &[0, 0xaa]);
            assert!(check_certificate_framing(&der[..n]).is_err());
        }
    }

    #[test]
    fn another_signature_value_is_framed_in_der() {
        let alg = [0x30, 0x03, 0x06, 0x01, 0x2a];
        let der = skeleton(&alg, &[0, 0xaa]);
        assert_eq!(with_signature_value(&der, &[0xaa]).unwrap(), der);
        assert_eq!(
            with_signature_value(&der, &[0xbb, 0xcc]).unwrap(),
            skeleton(&alg, &[0, 0xbb, 0xcc])
        );
        // Long enough for two-byte lengths on both the BIT STRING and the certificate.
        let long = vec![0x5a; 300];
        let reframed = with_signature_value(&der, &long).unwrap();
        assert_eq!(check_certificate_framing(&reframed), Ok(()));
        assert_eq!(&reframed[..4], &[0x30, 0x82, 0x01, 0x45]);
        assert_eq!(
            &reframed[reframed.len() - 305..][..4],
            &[0x03, 0x82, 0x01, 0x2d]
        );
        assert_eq!(with_signature_value(&der[1..], &[0xaa]), None);
    }
}
