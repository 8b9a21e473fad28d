//! SAN allow-list patterns: exact names, DNS wildcards and URI prefixes.

use std::fmt;
use std::net::IpAddr;

use crate::peer::San;

/// One compiled `allowedSans` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanPattern {
    /// Matches a DNS SAN equal to it, ASCII case-insensitively.
    Dns(String),
    /// `scheme://...`: matches a URI SAN equal to it byte for byte.
    Uri(String),
    /// `local@domain`: matches an email SAN equal to it byte for byte.
    Email(String),
    /// Matches an IP SAN with this address, whatever notation the pattern used.
    Ip(IpAddr),
    /// `*.example.com`: a DNS SAN with exactly one non-empty label before `.example.com`.
    /// Holds the lower-cased suffix including its leading dot.
    DnsWildcard(String),
    /// `spiffe://cluster-a/*`: a URI SAN starting with everything before the `*`.
    UriPrefix(String),
}

/// Why a pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("empty pattern")]
    Empty,
    /// The pattern has whitespace or control characters, which no SAN carries.
    #[error("pattern {0:?} contains whitespace or control characters")]
    BadCharacter(String),
    /// A `*` somewhere other than a whole leftmost DNS label or a trailing `/*` of a URI.
    #[error(
        "pattern {0:?} has a misplaced `*`: use `*.domain` (one leftmost DNS label) or `scheme://.../*` (URI prefix)"
    )]
    MisplacedWildcard(String),
    /// `*.` must be followed by a domain name.
    #[error("pattern {0:?}: the wildcard must be followed by a domain name of non-empty labels")]
    BadWildcardDomain(String),
    /// A DNS name with characters or labels a host name cannot have.
    #[error("pattern {0:?} is not a DNS host name (labels of letters, digits and inner '-', at most 63 characters each, 253 in all)")]
    BadDnsName(String),
    /// A URI prefix whose path is not plain segments.
    #[error("pattern {0:?}: a URI prefix must be plain path segments (no query, fragment, empty, '.' or '..' segment, or percent-encoded '.' or '/')")]
    BadUriPrefix(String),
}

impl SanPattern {
    /// Compiles one pattern as written in `allowedSans`.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PatternError::BadCharacter(pattern.to_owned()));
        }
        let stars = pattern.matches('*').count();
        if stars == 0 {
            // The pattern's form says which kind of SAN it names, so a DNS SAN can never pass
            // for a URI (or the reverse) just by carrying the same text.
            let owned = pattern.to_owned();
            return Ok(if has_uri_scheme(pattern) {
                SanPattern::Uri(owned)
            } else if pattern.contains('@') {
                SanPattern::Email(owned)
            } else if let Ok(ip) = pattern.parse::<IpAddr>() {
                SanPattern::Ip(ip)
            } else if is_dns_name(pattern) {
                SanPattern::Dns(owned)
            } else {
                return Err(PatternError::BadDnsName(owned));
            });
        }
        if stars > 1 {
            return Err(PatternError::MisplacedWildcard(pattern.to_owned()));
        }
        if let Some(domain) = pattern.strip_prefix("*.") {
            if domain.contains("://") || domain.contains('/') {
                return Err(PatternError::MisplacedWildcard(pattern.to_owned()));
            }
            if domain.split('.').any(str::is_empty) {
                return Err(PatternError::BadWildcardDomain(pattern.to_owned()));
            }
            if !is_dns_name(domain) {
                return Err(PatternError::BadDnsName(pattern.to_owned()));
            }
            return Ok(SanPattern::DnsWildcard(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if let Some(prefix) = pattern.strip_suffix("/*") {
            // Only URIs are prefix-matched: a scheme is required so `foo/*` is not taken for a
            // DNS pattern by mistake.
            if has_uri_scheme(prefix) {
                let (_, after_scheme) = prefix.split_once("://").unwrap_or_default();
                // The prefix's own path, when it has one, is plain segments: `a//*` (an empty
                // segment right after the authority) is as refused as `a/b//*`.
                let path = after_scheme.split_once('/').map(|(_, path)| path);
                if after_scheme.contains(['?', '#']) || path.is_some_and(|p| !is_plain_path(p)) {
                    return Err(PatternError::BadUriPrefix(pattern.to_owned()));
                }
                return Ok(SanPattern::UriPrefix(format!("{prefix}/")));
            }
        }
        Err(PatternError::MisplacedWildcard(pattern.to_owned()))
    }

    /// Whether this matches many names (`*.domain`, `scheme://…/*`) rather than naming one.
    pub fn is_pattern(&self) -> bool {
        matches!(self, SanPattern::DnsWildcard(_) | SanPattern::UriPrefix(_))
    }

    /// Whether this pattern admits the SAN.
    pub fn matches(&self, san: &San) -> bool {
        match (self, san) {
            (SanPattern::Dns(p), San::Dns(d)) => p.eq_ignore_ascii_case(d) && is_dns_name(d),
            (SanPattern::Uri(p), San::Uri(u)) => p == u,
            (SanPattern::Email(p), San::Email(e)) => p == e,
            (SanPattern::Ip(p), San::Ip(ip)) => p == ip,
            (SanPattern::DnsWildcard(suffix), San::Dns(d)) => {
                d.len() > suffix.len()
                    && d.is_char_boundary(d.len() - suffix.len())
                    && d[d.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && is_plain_label(&d[..d.len() - suffix.len()])
                    && is_dns_name(d)
            }
            (SanPattern::UriPrefix(prefix), San::Uri(u)) => {
                u.strip_prefix(prefix.as_str()).is_some_and(is_plain_path)
            }
            _ => false,
        }
    }
}

impl fmt::Display for SanPattern {
    /// The pattern as a user writes it (DNS names and wildcards lower-cased by compilation).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanPattern::Dns(v) | SanPattern::Uri(v) | SanPattern::Email(v) => f.write_str(v),
            SanPattern::Ip(ip) => write!(f, "{ip}"),
            SanPattern::DnsWildcard(suffix) => write!(f, "*{suffix}"),
            SanPattern::UriPrefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// A label a wildcard may stand for: non-empty, no dot, and not itself a wildcard.
fn is_plain_label(label: &str) -> bool {
    !label.is_empty() && !label.contains('.') && !label.contains('*')
}

/// A host name in RFC 1123 form: labels of ASCII letters, digits and `-` (not first or last),
/// 1 to 63 characters each, 253 in all, no trailing dot. Anything else in a DNS SAN (an
/// underscore, a NUL, a slash, non-ASCII text) is not a host a pattern names.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A URI path below a prefix: one or more `/`-separated segments, none empty, `.` or `..`,
/// of RFC 3986 `pchar`s, with no percent-encoded `.` or `/` (which a consumer might decode
/// into a segment the prefix did not mean), no query and no fragment.
pub fn is_plain_path(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty() && segment != "." && segment != ".." && is_plain_segment(segment)
    })
}

fn is_plain_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            // Two hex digits exactly (from_str_radix alone would take "+1").
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b'.' | b'/' | b'\\') | None => return false,
                Some(_) => i += 3,
            }
            continue;
        }
        let pchar = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if !pchar {
            return false;
        }
        i += 1;
    }
    true
}

fn has_uri_scheme(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// A compiled allow-list: the peer passes when any of its SANs matches any pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanAllowList {
    patterns: Vec<SanPattern>,
}

impl SanAllowList {
    /// Compiles a list; an error carries the index of the bad entry.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, PatternError)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| SanPattern::parse(p).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether any SAN matches any pattern.
    pub fn admits(&self, sans: &[San]) -> bool {
        self.first_match(sans).is_some()
    }

    /// The first pattern (by position) that admits one of the SANs, with that SAN: what an
    /// audit reports as the reason a peer passed.
    pub fn first_match<'s>(&self, sans: &'s [San]) -> Option<(usize, &SanPattern, &'s San)> {
        self.patterns
            .iter()
            .enumerate()
            .find_map(|(index, pattern)| {
                sans.iter()
                    .find(|san| pattern.matches(san))
                    .map(|san| (index, pattern, san))
            })
    }

    /// The compiled patterns.
    pub fn patterns(&self) -> &[SanPattern] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(s: &str) -> San {
        San::Dns(s.into())
    }
    fn uri(s: &str) -> San {
        San::Uri(s.into())
    }

    #[test]
    fn exact_dns_is_case_insensitive_uri_is_not() {
        let p = SanPattern::parse("Client.Example.com").unwrap();
        assert!(p.matches(&dns("client.example.COM")));
        let p = SanPattern::parse("spiffe://cluster-a/ns/client/sa/sleep").unwrap();
        assert!(p.matches(&uri("spiffe://cluster-a/ns/client/sa/sleep")));
        assert!(!p.matches(&uri("spiffe://cluster-a/ns/client/sa/Sleep")));
        assert!(!p.matches(&dns("spiffe://cluster-a/ns/client/sa/sleep")));
    }

    #[test]
    fn ip_patterns_compare_addresses() {
        let p = SanPattern::parse("0:0::1").unwrap();
        assert!(p.matches(&San::Ip("::1".parse().unwrap())));
        assert!(!p.matches(&San::Ip("127.0.0.1".parse().unwrap())));
        assert!(!p.matches(&dns("::1")));
    }

    #[test]
    fn wildcard_matches_exactly_one_leftmost_label() {
        let p = SanPattern::parse("*.cluster-a.example.com").unwrap();
        assert!(p.matches(&dns("svc.cluster-a.example.com")));
        assert!(p.matches(&dns("SVC.Cluster-A.example.com")));
        assert!(!p.matches(&dns("a.b.cluster-a.example.com")));
        assert!(!p.matches(&dns("cluster-a.example.com")));
        assert!(!p.matches(&dns(".cluster-a.example.com")));
        assert!(!p.matches(&dns("*.cluster-a.example.com")));
        assert!(!p.matches(&dns("evilcluster-a.example.com")));
        assert!(!p.matches(&uri("spiffe://svc.cluster-a.example.com")));
    }

    #[test]
    fn single_label_wildcard_does_not_match_two_labels() {
        let p = SanPattern::parse("*.x").unwrap();
        assert!(p.matches(&dns("a.x")));
        assert!(!p.matches(&dns("a.b.x")));
    }

    #[test]
    fn uri_prefix_matches_below_the_slash_only() {
        let p = SanPattern::parse("spiffe://cluster-a/*").unwrap();
        assert!(p.matches(&uri("spiffe://cluster-a/ns/client/sa/sleep")));
        assert!(!p.matches(&uri("spiffe://cluster-a/")));
        assert!(!p.matches(&uri("spiffe://cluster-a")));
        assert!(!p.matches(&uri("spiffe://cluster-ab/ns/x")));
        assert!(!p.matches(&dns("spiffe://cluster-a/x")));
    }

    #[test]
    fn only_wildcards_and_prefixes_are_patterns() {
        for (text, pattern) in [
            ("*.x", true),
            ("spiffe://a/*", true),
            ("a.x", false),
            ("spiffe://a/b", false),
            ("10.0.0.1", false),
            ("a@b.c", false),
        ] {
            assert_eq!(
                SanPattern::parse(text).unwrap().is_pattern(),
                pattern,
                "{text}"
            );
        }
    }

    #[test]
    fn patterns_display_as_written() {
        for text in [
            "a.example",
            "*.cluster-a.example.com",
            "spiffe://cluster-a/*",
            "spiffe://cluster-a/ns/x",
            "a@b.c",
            "10.0.0.1",
        ] {
            assert_eq!(SanPattern::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn first_match_names_the_earliest_pattern_and_its_san() {
        let list = SanAllowList::parse(&["x.example".into(), "spiffe://a/*".into()]).unwrap();
        let sans = [dns("other"), uri("spiffe://a/b"), dns("x.example")];
        let (index, pattern, san) = list.first_match(&sans).unwrap();
        assert_eq!(
            (index, pattern.to_string(), san),
            (0, "x.example".into(), &sans[2])
        );
        assert!(list.first_match(&[dns("other")]).is_none());
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "",
            " a",
            "a\n",
            "*",
            "*.",
            "*.a..b",
            "a.*.b",
            "foo*.bar",
            "*.*.x",
            "spiffe://a/*/b",
            "spiffe://a*",
            "a/*",
            "://x/*",
            "*.a/b",
        ] {
            assert!(SanPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn allow_list_reports_the_bad_index() {
        let err = SanAllowList::parse(&["a".into(), "b*".into()]).unwrap_err();
        assert_eq!(err.0, 1);
    }

    #[test]
    fn allow_list_admits_when_any_san_matches_any_pattern() {
        let list = SanAllowList::parse(&["x.example".into(), "spiffe://a/*".into()]).unwrap();
        assert!(list.admits(&[dns("other"), uri("spiffe://a/b")]));
        assert!(!list.admits(&[dns("other"), uri("spiffe://b/a")]));
        assert!(!list.admits(&[]));
    }
}
