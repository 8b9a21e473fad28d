package x509oracle

// Minimal DER reading and writing. The oracle reads the leaf's subject, subjectAltName and the
// CAs' nameConstraints itself instead of trusting crypto/x509's view of them: Go cannot parse
// some of the encodings the generator uses (UniversalString), and the name rules must see the
// bytes peergate sees.

import (
	"encoding/asn1"
	"errors"
)

// DER tags used here (universal class unless noted).
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagUTF8        = 0x0c
	tagPrintable   = 0x13
	tagTeletex     = 0x14
	tagIA5         = 0x16
	tagUniversal   = 0x1c
	tagBMP         = 0x1e
	tagSequence    = 0x30
	tagSet         = 0x31
)

// GeneralName choices (RFC 5280 4.2.1.6), by their context tag number.
const (
	gnOther      = 0
	gnEmail      = 1
	gnDNS        = 2
	gnX400       = 3
	gnDir        = 4
	gnEDI        = 5
	gnURI        = 6
	gnIP         = 7
	gnRegistered = 8
)

// tlv is one DER element: its tag byte, its content octets and the whole encoding.
type tlv struct {
	tag     byte
	content []byte
	full    []byte
}

var errDER = errors.New("malformed DER")

// readTLV reads one element with a single-byte tag and a definite length.
func readTLV(b []byte) (tlv, []byte, error) {
	if len(b) < 2 || b[0]&0x1f == 0x1f {
		return tlv{}, nil, errDER
	}
	n, head := int(b[1]), 2
	if n >= 0x80 {
		size := n & 0x7f
		if size == 0 || size > 3 || len(b) < 2+size {
			return tlv{}, nil, errDER
		}
		n = 0
		for _, c := range b[2 : 2+size] {
			n = n<<8 | int(c)
		}
		head += size
	}
	if len(b)-head < n {
		return tlv{}, nil, errDER
	}
	return tlv{tag: b[0], content: b[head : head+n], full: b[:head+n]}, b[head+n:], nil
}

// readAll splits a content into its elements.
func readAll(b []byte) ([]tlv, error) {
	var out []tlv
	for len(b) > 0 {
		t, rest, err := readTLV(b)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		b = rest
	}
	return out, nil
}

// encodeTLV writes one element with a definite DER length.
func encodeTLV(tag byte, content []byte) []byte {
	n := len(content)
	var out []byte
	switch {
	case n < 0x80:
		out = append(out, tag, byte(n))
	case n < 0x100:
		out = append(out, tag, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, tag, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, content...)
}

func seq(parts ...[]byte) []byte { return encodeTLV(tagSequence, concat(parts)) }

func concat(parts [][]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func mustOID(oid asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return b
}

func parseOID(t tlv) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	if t.tag != tagOID {
		return nil, errDER
	}
	if _, err := asn1.Unmarshal(t.full, &oid); err != nil {
		return nil, err
	}
	return oid, nil
}

// extension is one certificate extension as written in the certificate.
type extension struct {
	oid      asn1.ObjectIdentifier
	critical bool
	value    []byte
}

// certParts are the pieces of a certificate the oracle reads itself.
type certParts struct {
	subject    tlv // the Name element
	issuer     tlv
	extensions []extension
}

// parseCertParts walks Certificate → TBSCertificate far enough to find the subject, the issuer
// and the extensions.
func parseCertParts(der []byte) (certParts, error) {
	cert, _, err := readTLV(der)
	if err != nil || cert.tag != tagSequence {
		return certParts{}, errDER
	}
	tbs, _, err := readTLV(cert.content)
	if err != nil || tbs.tag != tagSequence {
		return certParts{}, errDER
	}
	fields, err := readAll(tbs.content)
	if err != nil {
		return certParts{}, err
	}
	if len(fields) > 0 && fields[0].tag == 0xa0 { // explicit version
		fields = fields[1:]
	}
	// serial, signature, issuer, validity, subject, spki, then optional [1] [2] [3].
	if len(fields) < 6 {
		return certParts{}, errDER
	}
	parts := certParts{issuer: fields[2], subject: fields[4]}
	for _, f := range fields[6:] {
		if f.tag != 0xa3 {
			continue
		}
		if parts.extensions, err = parseExtensions(f.content); err != nil {
			return certParts{}, err
		}
	}
	return parts, nil
}

func parseExtensions(explicit []byte) ([]extension, error) {
	list, _, err := readTLV(explicit)
	if err != nil || list.tag != tagSequence {
		return nil, errDER
	}
	items, err := readAll(list.content)
	if err != nil {
		return nil, err
	}
	var out []extension
	for _, item := range items {
		fields, err := readAll(item.content)
		if err != nil || len(fields) < 2 {
			return nil, errDER
		}
		oid, err := parseOID(fields[0])
		if err != nil {
			return nil, err
		}
		e := extension{oid: oid}
		if fields[1].tag == tagBoolean {
			e.critical = len(fields[1].content) == 1 && fields[1].content[0] != 0
			fields = fields[1:]
		}
		if len(fields) != 2 || fields[1].tag != tagOctetString {
			return nil, errDER
		}
		e.value = fields[1].content
		out = append(out, e)
	}
	return out, nil
}

func findExtension(exts []extension, oid asn1.ObjectIdentifier) (extension, bool) {
	for _, e := range exts {
		if e.oid.Equal(oid) {
			return e, true
		}
	}
	return extension{}, false
}

var (
	oidSAN              = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidNameConstraints  = asn1.ObjectIdentifier{2, 5, 29, 30}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidSKID             = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKID             = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCertPolicies     = asn1.ObjectIdentifier{2, 5, 29, 32}
	oidPolicyMappings   = asn1.ObjectIdentifier{2, 5, 29, 33}
	oidPolicyConstr     = asn1.ObjectIdentifier{2, 5, 29, 36}
	oidInhibitAnyPolicy = asn1.ObjectIdentifier{2, 5, 29, 54}
)

// generalName is one GeneralName: its context tag number and its content (for a
// directoryName, the content is the Name element).
type generalName struct {
	kind  int
	value []byte
}

// encode writes the GeneralName: [4] is explicit (constructed), [0] and [3]/[5] constructed
// too, the string and octet forms primitive.
func (g generalName) encode() []byte {
	switch g.kind {
	case gnOther, gnX400, gnDir, gnEDI:
		return encodeTLV(0xa0|byte(g.kind), g.value)
	}
	return encodeTLV(0x80|byte(g.kind), g.value)
}

func parseGeneralName(t tlv) (generalName, error) {
	if t.tag&0xc0 != 0x80 {
		return generalName{}, errDER
	}
	return generalName{kind: int(t.tag & 0x1f), value: t.content}, nil
}

// parseSANs reads a subjectAltName extension value.
func parseSANs(value []byte) ([]generalName, error) {
	list, rest, err := readTLV(value)
	if err != nil || list.tag != tagSequence || len(rest) != 0 {
		return nil, errDER
	}
	items, err := readAll(list.content)
	if err != nil {
		return nil, err
	}
	out := make([]generalName, 0, len(items))
	for _, item := range items {
		g, err := parseGeneralName(item)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func encodeSANs(names []generalName) []byte {
	parts := make([][]byte, len(names))
	for i, n := range names {
		parts[i] = n.encode()
	}
	return seq(parts...)
}

// nameConstraints are one CA's permitted and excluded subtrees (their bases only: RFC 5280
// requires minimum 0 and no maximum, and the generator writes neither).
type nameConstraints struct {
	permitted, excluded []generalName
}

func (nc nameConstraints) encode() []byte {
	var parts [][]byte
	for i, list := range [][]generalName{nc.permitted, nc.excluded} {
		if len(list) == 0 {
			continue
		}
		var subtrees [][]byte
		for _, g := range list {
			subtrees = append(subtrees, seq(g.encode()))
		}
		parts = append(parts, encodeTLV(0xa0|byte(i), concat(subtrees)))
	}
	return seq(parts...)
}

func parseNameConstraints(value []byte) (nameConstraints, error) {
	top, rest, err := readTLV(value)
	if err != nil || top.tag != tagSequence || len(rest) != 0 {
		return nameConstraints{}, errDER
	}
	fields, err := readAll(top.content)
	if err != nil {
		return nameConstraints{}, err
	}
	var nc nameConstraints
	for _, f := range fields {
		subtrees, err := readAll(f.content)
		if err != nil {
			return nameConstraints{}, err
		}
		for _, st := range subtrees {
			inner, err := readAll(st.content)
			if err != nil || len(inner) == 0 {
				return nameConstraints{}, errDER
			}
			g, err := parseGeneralName(inner[0])
			if err != nil {
				return nameConstraints{}, err
			}
			switch f.tag {
			case 0xa0:
				nc.permitted = append(nc.permitted, g)
			case 0xa1:
				nc.excluded = append(nc.excluded, g)
			default:
				return nameConstraints{}, errDER
			}
		}
	}
	return nc, nil
}
