package x509oracle

// Distinguished names: read from DER, written by the generator, and matched against RFC 4514
// patterns (allowedSubjects) and directoryName constraints (RFC 5280 4.2.1.10, 7.1).

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// atv is one AttributeTypeAndValue; value is the whole value element (tag, length, content).
type atv struct {
	oid   asn1.ObjectIdentifier
	value tlv
}

// dn is an RDNSequence as encoded: most general RDN first.
type dn [][]atv

func parseDN(name tlv) (dn, error) {
	if name.tag != tagSequence {
		return nil, errDER
	}
	sets, err := readAll(name.content)
	if err != nil {
		return nil, err
	}
	out := make(dn, 0, len(sets))
	for _, set := range sets {
		if set.tag != tagSet {
			return nil, errDER
		}
		items, err := readAll(set.content)
		if err != nil || len(items) == 0 {
			return nil, errDER
		}
		var rdn []atv
		for _, item := range items {
			fields, err := readAll(item.content)
			if err != nil || item.tag != tagSequence || len(fields) != 2 {
				return nil, errDER
			}
			oid, err := parseOID(fields[0])
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, atv{oid: oid, value: fields[1]})
		}
		out = append(out, rdn)
	}
	return out, nil
}

// attr is one attribute the generator writes: a type, a string type and the text.
type attr struct {
	oid  asn1.ObjectIdentifier
	tag  byte
	text string
	raw  []byte // when set, the content octets as they are (an invalid encoding on purpose)
}

func (a attr) content() []byte {
	if a.raw != nil {
		return a.raw
	}
	return encodeString(a.tag, a.text)
}

// encodeDN writes single-valued RDNs, most general first.
func encodeDN(attrs []attr) []byte {
	var sets [][]byte
	for _, a := range attrs {
		ava := seq(mustOID(a.oid), encodeTLV(a.tag, a.content()))
		sets = append(sets, encodeTLV(tagSet, ava))
	}
	return seq(sets...)
}

var (
	oidCN           = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidC            = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidL            = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidST           = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidO            = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidOU           = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidDC           = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidUID          = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// attributeNames are the RFC 4514 type names the spec lists (matched case-insensitively).
var attributeNames = map[string]asn1.ObjectIdentifier{
	"cn": oidCN, "o": oidO, "ou": oidOU, "c": oidC, "l": oidL, "st": oidST,
	"dc": oidDC, "uid": oidUID, "emailaddress": oidEmailAddress, "serialnumber": oidSerialNumber,
}

// subjectPattern is one allowedSubjects entry, its RDNs in certificate order (most general
// first, the reverse of RFC 4514's).
type subjectPattern []avaPattern

type avaPattern struct {
	oid    asn1.ObjectIdentifier
	text   string // the unescaped value
	ber    []byte // for a #hexstring: the value's whole encoding
	prefix bool   // a CN value with a trailing unescaped *
}

// parseSubjectPattern reads an RFC 4514 string: RDNs separated by unescaped commas, one
// attribute each (the oracle does not write multi-valued RDNs, so it refuses '+').
func parseSubjectPattern(s string) (subjectPattern, error) {
	parts, err := splitUnescaped(s, ',')
	if err != nil {
		return nil, err
	}
	var out subjectPattern
	for _, part := range parts {
		p, err := parseAVAPattern(part)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		out = append(subjectPattern{p}, out...)
	}
	return out, nil
}

// splitUnescaped splits at sep where it is not escaped by a backslash.
func splitUnescaped(s string, sep byte) ([]string, error) {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	for _, p := range parts {
		if p == "" {
			return nil, errors.New("empty RDN")
		}
	}
	return parts, nil
}

func parseAVAPattern(s string) (avaPattern, error) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 {
		return avaPattern{}, errors.New("no attribute type")
	}
	oid, err := parseAttributeType(s[:eq])
	if err != nil {
		return avaPattern{}, err
	}
	p := avaPattern{oid: oid}
	value := s[eq+1:]
	if strings.HasPrefix(value, "#") {
		if p.ber, err = hex.DecodeString(value[1:]); err != nil || len(p.ber) == 0 {
			return avaPattern{}, errors.New("bad #hexstring")
		}
		if _, rest, err := readTLV(p.ber); err != nil || len(rest) != 0 {
			return avaPattern{}, errors.New("#hexstring is not one BER element")
		}
		return p, nil
	}
	text, star, err := unescapeValue(value)
	if err != nil {
		return avaPattern{}, err
	}
	if star && !oid.Equal(oidCN) {
		return avaPattern{}, errors.New("* outside a CN value")
	}
	p.text, p.prefix = text, star
	return p, nil
}

func parseAttributeType(s string) (asn1.ObjectIdentifier, error) {
	if oid, ok := attributeNames[strings.ToLower(s)]; ok {
		return oid, nil
	}
	var oid asn1.ObjectIdentifier
	for _, arc := range strings.Split(s, ".") {
		n := 0
		if arc == "" || len(arc) > 9 || (len(arc) > 1 && arc[0] == '0') {
			return nil, fmt.Errorf("unknown attribute type %q", s)
		}
		for _, c := range arc {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("unknown attribute type %q", s)
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return nil, fmt.Errorf("unknown attribute type %q", s)
	}
	return oid, nil
}

// unescapeValue applies RFC 4514 escapes (\special, \hexpair) and reports a trailing
// unescaped '*'; an unescaped '*' anywhere else, or a character RFC 4514 wants escaped, is an
// error.
func unescapeValue(s string) (string, bool, error) {
	var out []byte
	star := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if star {
			return "", false, errors.New("* not at the end")
		}
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return "", false, errors.New("dangling \\")
			}
			if b, err := hex.DecodeString(s[i+1 : min(i+3, len(s))]); err == nil && len(b) == 1 {
				out = append(out, b[0])
				i += 2
				continue
			}
			if !strings.ContainsRune(`"+,;<>\ #=*`, rune(s[i+1])) {
				return "", false, fmt.Errorf("bad escape \\%c", s[i+1])
			}
			out = append(out, s[i+1])
			i++
		case c == '*':
			star = true
		case strings.IndexByte("\"+;<>", c) >= 0 || c == 0:
			return "", false, fmt.Errorf("unescaped %q", c)
		default:
			out = append(out, c)
		}
	}
	if !utf8.Valid(out) {
		return "", false, errors.New("value is not UTF-8")
	}
	return string(out), star, nil
}

// matchSubject: the same RDNs in the same order, each one attribute of the same type, the
// value equal after decoding (or, for #hex, the same encoding).
func (p subjectPattern) matches(subject dn) bool {
	if len(p) != len(subject) {
		return false
	}
	for i, rdn := range subject {
		if len(rdn) != 1 || !p[i].matches(rdn[0]) {
			return false
		}
	}
	return true
}

func (p avaPattern) matches(a atv) bool {
	if !p.oid.Equal(a.oid) {
		return false
	}
	if p.ber != nil {
		return string(p.ber) == string(a.value.full)
	}
	if !isStringTag(a.value.tag) {
		return false
	}
	text, err := decodeString(a.value.tag, a.value.content)
	if err != nil {
		return false
	}
	if p.prefix {
		return strings.HasPrefix(text, p.text)
	}
	return text == p.text
}

// The directoryName constraint rules (RFC 5280 4.2.1.10 with 7.1's comparison, simplified as
// the spec says: decode any string type, compare case-insensitively with runs of spaces
// collapsed and the ends trimmed).

// dnWithin reports whether name is within the subtree base: base's RDNs are a prefix of
// name's. An undecodable value is an error.
func dnWithin(name, base dn) (bool, error) {
	if len(base) > len(name) {
		return false, nil
	}
	for i := range base {
		equal, err := rdnEqual(name[i], base[i])
		if err != nil || !equal {
			return false, err
		}
	}
	return true, nil
}

func rdnEqual(a, b []atv) (bool, error) {
	if len(a) != len(b) {
		return false, nil
	}
	for i := range a {
		if !a[i].oid.Equal(b[i].oid) {
			return false, nil
		}
		x, err := normalizedValue(a[i].value)
		if err != nil {
			return false, err
		}
		y, err := normalizedValue(b[i].value)
		if err != nil {
			return false, err
		}
		if x != y {
			return false, nil
		}
	}
	return true, nil
}

func normalizedValue(v tlv) (string, error) {
	if !isStringTag(v.tag) {
		return "", errUndecodable
	}
	s, err := decodeString(v.tag, v.content)
	if err != nil {
		return "", err
	}
	return strings.ToLower(collapseSpaces(s)), nil
}

// collapseSpaces trims the ends and turns every run of spaces into one.
func collapseSpaces(s string) string {
	var words []string
	for _, w := range strings.Split(s, " ") {
		if w != "" {
			words = append(words, w)
		}
	}
	return strings.Join(words, " ")
}
