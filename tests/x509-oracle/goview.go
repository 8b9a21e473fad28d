package x509oracle

// The "Go view" of a leaf: what crypto/x509 is given to build and verify the chain when the
// real leaf has something Go cannot parse (a UniversalString, a SAN that is not IA5) or names
// the oracle's constraint rules own (email and URI SANs, DNS names that are not host names,
// when any configured CA has nameConstraints). The view is a twin of the leaf (same fields,
// same issuer, signed by the same key) with only those parts changed; the oracle's own name
// rules always read the real leaf.

import (
	"net/url"
)

// goViewSubject re-encodes, as UTF8String, each attribute Go's parser refuses.
func goViewSubject(attrs []attr) ([]attr, bool) {
	out := make([]attr, len(attrs))
	changed := false
	for i, a := range attrs {
		out[i] = a
		if goParsesString(a.tag, a.content()) {
			continue
		}
		text, err := decodeString(a.tag, a.content())
		if err != nil {
			text = "undecodable"
		}
		out[i] = attr{oid: a.oid, tag: tagUTF8, text: text}
		changed = true
	}
	return out, changed
}

// goParsesString mirrors crypto/x509's parseASN1String for the tags the generator writes.
func goParsesString(tag byte, b []byte) bool {
	switch tag {
	case tagUniversal:
		return false
	case tagBMP:
		if len(b)%2 != 0 {
			return false
		}
		for i := 0; i < len(b); i += 2 {
			u := uint16(b[i])<<8 | uint16(b[i+1])
			if u == 0xfffe || u == 0xffff || u >= 0xfdd0 && u <= 0xfdef || u >= 0xd800 && u <= 0xdfff {
				return false
			}
		}
		return true
	}
	_, err := decodeString(tag, b)
	return err == nil
}

// goViewSANs keeps the SANs Go can parse and whose constraints Go gets right; constrained says
// whether any configured CA has nameConstraints.
func goViewSANs(sans []generalName, constrained bool) ([]generalName, bool) {
	var out []generalName
	for _, g := range sans {
		if goKeeps(g, constrained) {
			out = append(out, g)
		}
	}
	return out, len(out) != len(sans)
}

func goKeeps(g generalName, constrained bool) bool {
	s := string(g.value)
	switch g.kind {
	case gnDNS:
		return isIA5(s) && (!constrained || isHostName(s))
	case gnEmail:
		return isIA5(s) && !constrained
	case gnURI:
		if !isIA5(s) || constrained {
			return false
		}
		u, err := url.Parse(s)
		return err == nil && (u.Host == "" || goDomainValid(u.Host))
	case gnIP:
		return len(g.value) == 4 || len(g.value) == 16
	}
	return true
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// goDomainValid mirrors crypto/x509's domainNameValid(s, false) (Go 1.26): no trailing dot,
// characters 33 to 126, no empty label.
func goDomainValid(s string) bool {
	if s == "" {
		return true
	}
	if s[len(s)-1] == '.' {
		return false
	}
	label := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && (s[i] < 33 || s[i] > 126) {
			return false
		}
		if i == len(s) || s[i] == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		label++
	}
	return true
}
