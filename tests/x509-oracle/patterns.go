package x509oracle

// The allowedSans language (README, "The filter's configuration"), written from the spec:
// exact DNS (case-insensitive), `*.x` (one extra leftmost label), exact URI, URI prefix
// `scheme://authority/path/*` (plain path segments after it), exact email, IP address.

import (
	"errors"
	"net/netip"
	"strings"
)

type patternKind int

const (
	patDNS patternKind = iota
	patWildcard
	patURI
	patURIPrefix
	patEmail
	patIP
)

type sanPattern struct {
	kind patternKind
	text string // DNS: the name (wildcard: the part after "*."), URI: the URI or the prefix up to its final '/'
	ip   netip.Addr
}

// parseSANPattern classifies a pattern by its form and refuses the malformed ones.
func parseSANPattern(p string) (sanPattern, error) {
	switch {
	case hasURIScheme(p):
		if strings.HasSuffix(p, "/*") {
			prefix := p[:len(p)-1]
			if !validURIPrefix(prefix) {
				return sanPattern{}, errors.New("URI prefix with a path that is not plain segments")
			}
			return sanPattern{kind: patURIPrefix, text: prefix}, nil
		}
		return sanPattern{kind: patURI, text: p}, nil
	case strings.Contains(p, "@"):
		return sanPattern{kind: patEmail, text: p}, nil
	}
	if ip, err := netip.ParseAddr(p); err == nil && ip.Zone() == "" {
		return sanPattern{kind: patIP, ip: ip}, nil
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		if !isHostName(rest) {
			return sanPattern{}, errors.New("wildcard over a name that is not a host name")
		}
		return sanPattern{kind: patWildcard, text: rest}, nil
	}
	if !isHostName(p) {
		return sanPattern{}, errors.New("not a host name")
	}
	return sanPattern{kind: patDNS, text: p}, nil
}

// hasURIScheme: RFC 3986 scheme (ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )) then "://".
func hasURIScheme(p string) bool {
	i := strings.Index(p, "://")
	if i <= 0 {
		return false
	}
	for j, c := range p[:i] {
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// validURIPrefix: "scheme://authority/" followed by plain segments each ending in '/'.
func validURIPrefix(prefix string) bool {
	i := strings.Index(prefix, "://")
	rest := prefix[i+3:]
	slash := strings.IndexByte(rest, '/')
	if slash <= 0 {
		return false
	}
	path := rest[slash+1:]
	if path == "" {
		return true
	}
	return plainSegments(strings.TrimSuffix(path, "/"))
}

// isHostName: RFC 1123 labels of letters, digits and inner '-', 1 to 63 characters each, 253
// in all, no trailing dot.
func isHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// plainSegments: '/'-separated segments, none empty, "." or "..", only RFC 3986 pchars, every
// '%' a valid escape that is not an encoded '.', '/' or '\'.
func plainSegments(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c == '%' {
				if i+2 >= len(seg) {
					return false
				}
				h, ok := unhex(seg[i+1], seg[i+2])
				if !ok || h == '.' || h == '/' || h == '\\' {
					return false
				}
				i += 2
				continue
			}
			if !isPchar(c) {
				return false
			}
		}
	}
	return true
}

func unhex(a, b byte) (byte, bool) {
	x, ok1 := hexDigit(a)
	y, ok2 := hexDigit(b)
	return x<<4 | y, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isPchar: unreserved / sub-delims / ":" / "@" (pct-encoded handled by the caller).
func isPchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

// matches reports whether the SAN g is admitted by the pattern.
func (p sanPattern) matches(g generalName) bool {
	switch p.kind {
	case patDNS:
		return g.kind == gnDNS && isHostName(string(g.value)) && strings.EqualFold(string(g.value), p.text)
	case patWildcard:
		if g.kind != gnDNS || !isHostName(string(g.value)) {
			return false
		}
		_, rest, ok := strings.Cut(string(g.value), ".")
		return ok && strings.EqualFold(rest, p.text)
	case patURI:
		return g.kind == gnURI && string(g.value) == p.text
	case patURIPrefix:
		if g.kind != gnURI {
			return false
		}
		rest, ok := strings.CutPrefix(string(g.value), p.text)
		return ok && plainSegments(rest)
	case patEmail:
		return g.kind == gnEmail && string(g.value) == p.text
	case patIP:
		if g.kind != gnIP || (len(g.value) != 4 && len(g.value) != 16) {
			return false
		}
		ip, _ := netip.AddrFromSlice(g.value)
		return ip == p.ip
	}
	return false
}

func anyPatternMatches(patterns []sanPattern, g generalName) bool {
	for _, p := range patterns {
		if p.matches(g) {
			return true
		}
	}
	return false
}
