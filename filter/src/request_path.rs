//! The request path as routes judge it: `:path` without its query and fragment, refused
//! when it is not in the one canonical spelling a route could be written in. A path that
//! still holds a dot-segment, an encoded slash or backslash, any percent-encoding of a
//! character that needs none, a double slash, a backslash or a byte outside RFC 3986 has
//! other spellings the backend may read differently; the filter refuses it
//! (`unnormalized_path`) rather than guess which one the backend will see.

/// Why a path is not canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Empty, or not starting with `/` (`*`, an absolute URI).
    NotAbsolute,
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// An empty segment (`//`).
    EmptySegment,
    /// `%2F` or `%5C`: a slash or backslash hidden from the segment structure.
    EncodedSeparator,
    /// A percent-encoding of a character that needs none, or a malformed one.
    NeedlessEncoding,
    /// A backslash, a control or non-ASCII byte, or another byte RFC 3986 keeps out of paths.
    ForbiddenByte,
}

/// The path part of a `:path` value: up to the first `?` or `#`.
pub fn path_part(request_path: &str) -> &str {
    let end = request_path.find(['?', '#']).unwrap_or(request_path.len());
    request_path.get(..end).unwrap_or(request_path)
}

/// Checks that `path` (without query) is canonical; returns it when it is.
pub fn canonical(path: &str) -> Result<&str, PathProblem> {
    if !path.starts_with('/') {
        return Err(PathProblem::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or(PathProblem::NeedlessEncoding)?;
                match decoded {
                    b'/' | b'\\' => return Err(PathProblem::EncodedSeparator),
                    b'.' => return Err(PathProblem::DotSegment),
                    d if is_unreserved(d) => return Err(PathProblem::NeedlessEncoding),
                    _ => i += 3,
                }
            }
            b if is_path_byte(b) => i += 1,
            _ => return Err(PathProblem::ForbiddenByte),
        }
    }
    // The first "segment" is the empty one before the leading slash.
    for segment in path.split('/').skip(1) {
        if segment == "." || segment == ".." {
            return Err(PathProblem::DotSegment);
        }
    }
    if path.contains("//") {
        return Err(PathProblem::EmptySegment);
    }
    Ok(path)
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A byte a path may hold as it is: `pchar` without `%` (checked apart), and `/`.
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling the routes must not be fooled by, with what the filter makes of it.
    #[test]
    fn path_spellings() {
        use PathProblem::*;
        let table: &[(&str, Result<&str, PathProblem>)] = &[
            ("/payments/charge", Ok("/payments/charge")),
            ("/payments/charge?x=/../admin", Ok("/payments/charge")),
            ("/payments/charge#frag", Ok("/payments/charge")),
            ("/payments/", Ok("/payments/")),
            ("/", Ok("/")),
            ("/a%20b", Ok("/a%20b")),
            (
                "/a:b@c;d=e,f+g!h$i&j'k(l)m*n~o",
                Ok("/a:b@c;d=e,f+g!h$i&j'k(l)m*n~o"),
            ),
            ("/status/../payments/x", Err(DotSegment)),
            ("/payments/./x", Err(DotSegment)),
            ("/payments/..", Err(DotSegment)),
            ("/payments/.", Err(DotSegment)),
            ("/payments/%2e%2e/admin", Err(DotSegment)),
            ("/payments/%2E/x", Err(DotSegment)),
            ("/payments/.%2e/x", Err(DotSegment)),
            ("/payments%2Fadmin", Err(EncodedSeparator)),
            ("/payments%2fadmin", Err(EncodedSeparator)),
            ("/payments%5Cadmin", Err(EncodedSeparator)),
            ("/payments\\admin", Err(ForbiddenByte)),
            ("//payments/x", Err(EmptySegment)),
            ("/payments//x", Err(EmptySegment)),
            ("/p%61yments/x", Err(NeedlessEncoding)),
            ("/payments/%zz", Err(NeedlessEncoding)),
            ("/payments/%4", Err(NeedlessEncoding)),
            ("/pay ments", Err(ForbiddenByte)),
            ("/pay\u{e9}ments", Err(ForbiddenByte)),
            ("/payments/\u{0}", Err(ForbiddenByte)),
            ("/payments/\t", Err(ForbiddenByte)),
            ("/payments/<x>", Err(ForbiddenByte)),
            ("/a|b", Err(ForbiddenByte)),
            ("*", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
            ("https://host/payments/x", Err(NotAbsolute)),
            ("/..a/b...", Ok("/..a/b...")),
        ];
        assert!(table.len() >= 20);
        for (spelling, expected) in table {
            assert_eq!(canonical(path_part(spelling)), *expected, "{spelling:?}");
        }
    }
}
