package x509oracle

// Leaves: a spec the generator fills in, built into the real leaf and, when Go needs one, its
// twin (goview.go).

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"time"
)

type leafSpec struct {
	signer      *caNode // the CA whose key signs (and whose name is the issuer)
	key         key
	alg         x509.SignatureAlgorithm
	serial      *big.Int
	notBefore   time.Time
	notAfter    time.Time
	attrs       []attr
	sans        []generalName
	sanExt      bool
	sanCritical bool
	bc          string // "" absent, "false", "true"
	ku          x509.KeyUsage
	eku         []x509.ExtKeyUsage
	ekuUnknown  bool   // an EKU OID Go does not know, alone
	akid        string // "" the signer's SKID, "omit", "wrong"
	critExt     string // "" none, "policies" (critical certificatePolicies), "unknown" (a private OID)
}

var oidPrivate = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}

// build signs the leaf as specified, with attrs and sans as given.
func (s *leafSpec) build(attrs []attr, sans []generalName, sanCritical bool) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:       s.serial,
		RawSubject:         encodeDN(attrs),
		NotBefore:          s.notBefore,
		NotAfter:           s.notAfter,
		KeyUsage:           s.ku,
		ExtKeyUsage:        s.eku,
		SignatureAlgorithm: s.alg,
	}
	if s.ekuUnknown {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidPrivate}
	}
	switch s.bc {
	case "false":
		tmpl.BasicConstraintsValid = true
	case "true":
		tmpl.BasicConstraintsValid, tmpl.IsCA, tmpl.MaxPathLen = true, true, -1
	}
	if s.sanExt {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidSAN, Critical: sanCritical, Value: encodeSANs(sans)})
	}
	switch s.critExt {
	case "policies":
		anyPolicy := asn1.ObjectIdentifier{2, 5, 29, 32, 0}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidCertPolicies, Critical: true, Value: seq(seq(mustOID(anyPolicy)))})
	case "unknown":
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidPrivate, Critical: true, Value: encodeTLV(0x05, nil)})
	}
	parent := *s.signer.cert
	switch s.akid {
	case "omit":
		parent.SubjectKeyId = nil
	case "wrong":
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidAKID, Value: seq(encodeTLV(0x80, []byte("not the issuer's key id")))})
	}
	der, err := x509.CreateCertificate(nil, tmpl, &parent, s.key.signer.Public(), s.signer.key.signer)
	if err != nil {
		return nil, fmt.Errorf("leaf: %w", err)
	}
	return der, nil
}

// buildWithView builds the leaf and, when Go needs a different view (goview.go), its twin.
// constrained: some CA of the configuration has nameConstraints.
func (s *leafSpec) buildWithView(constrained bool) (leaf, goLeaf []byte, twin bool, err error) {
	if leaf, err = s.build(s.attrs, s.sans, s.sanCritical); err != nil {
		return nil, nil, false, err
	}
	attrs, subjectChanged := goViewSubject(s.attrs)
	sans, sansChanged := goViewSANs(s.sans, constrained)
	// Go counts a critical subjectAltName as unhandled when it holds no name Go parses (only
	// otherName, directoryName, registeredID...); peergate reads the extension, so Go's view
	// has it non-critical then.
	critical := s.sanCritical && slices.ContainsFunc(sans, func(g generalName) bool {
		return g.kind == gnDNS || g.kind == gnEmail || g.kind == gnURI || g.kind == gnIP
	})
	if !subjectChanged && !sansChanged && critical == s.sanCritical {
		return leaf, leaf, false, nil
	}
	goLeaf, err = s.build(attrs, sans, critical)
	return leaf, goLeaf, true, err
}
