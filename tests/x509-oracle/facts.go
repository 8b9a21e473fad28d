package x509oracle

// Facts about a case, read from its certificates and configuration (not from how the
// generator meant it), that explain a deliberate strictness of peergate.

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"slices"
)

type facts struct {
	leafIsCA            bool // basicConstraints CA:true
	leafKUNoDigitalSig  bool // keyUsage present, digitalSignature absent
	leafEKUNoClient     bool // extendedKeyUsage present, neither clientAuth nor anyExtendedKeyUsage
	leafCritUnread      bool // a critical extension outside what peergate reads
	leafAKIDMismatch    bool // an authorityKeyIdentifier that is not the issuer's subjectKeyIdentifier
	subjectEmailUnderNC bool // a subject emailAddress, a SAN extension, and email constraints on a configured CA
	dnsControlUnderNC   bool // a dNSName with a control character (a NUL among them) and DNS constraints on a configured CA
	uriNoHostUnderNC    bool // a URI SAN without a host, and URI constraints on a configured CA
	caCritUnprocessed   bool // a configured CA with a critical extension peergate does not process
	caKUNoCertSign      bool // a configured CA whose keyUsage lacks keyCertSign
	caEKUNoClient       bool // a configured CA whose extendedKeyUsage has neither clientAuth nor anyExtendedKeyUsage
	duplicateIssuer     bool // the same certificate twice in trustedIssuers
	crlUnsigned         bool // a CRL no configured CA (of its issuer's name) signed
	anchorChainBroken   bool // with anchors: a trusted issuer that does not chain to one through listed CAs
}

// peergateReads are the leaf extensions peergate reads (README, client profile).
var peergateReads = []asn1.ObjectIdentifier{oidBasicConstraints, oidKeyUsage, oidExtKeyUsage, oidSAN, oidSKID, oidAKID}

// peergateProcessesOnCAs: what a configured CA may carry critical (the above and nameConstraints).
var peergateProcessesOnCAs = append(slices.Clone(peergateReads), oidNameConstraints)

func caseFacts(c *oracleCase) facts {
	var f facts
	leaf, err := x509.ParseCertificate(c.goLeaf)
	if err != nil {
		return f
	}
	f.leafIsCA = leaf.BasicConstraintsValid && leaf.IsCA
	f.leafKUNoDigitalSig = leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0
	f.leafEKUNoClient = ekuWithoutClient(leaf)
	f.leafCritUnread = hasCriticalOutside(leaf.Extensions, peergateReads)
	var configured, trusted []*x509.Certificate
	for _, e := range c.config.TrustedIssuers {
		if cert := pemCert(e.Certificate); cert != nil {
			if slices.ContainsFunc(trusted, func(t *x509.Certificate) bool { return t.Equal(cert) }) {
				f.duplicateIssuer = true
			}
			trusted = append(trusted, cert)
		}
	}
	var anchors []*x509.Certificate
	for _, p := range c.config.TrustAnchors {
		if cert := pemCert(p); cert != nil {
			anchors = append(anchors, cert)
		}
	}
	configured = append(slices.Clone(trusted), anchors...)
	for _, ca := range configured {
		f.caCritUnprocessed = f.caCritUnprocessed || hasCriticalOutside(ca.Extensions, peergateProcessesOnCAs)
		f.caKUNoCertSign = f.caKUNoCertSign || ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0
		f.caEKUNoClient = f.caEKUNoClient || ekuWithoutClient(ca)
		if nc, ok, _ := caNameConstraints(ca); ok {
			f.subjectEmailUnderNC = f.subjectEmailUnderNC || hasForm(nc, gnEmail) && leafHasEmailAttr(c.leaf) && hasSANExtension(leaf)
			f.uriNoHostUnderNC = f.uriNoHostUnderNC || hasForm(nc, gnURI) && leafHasHostlessURI(c.leaf)
			f.dnsControlUnderNC = f.dnsControlUnderNC || hasForm(nc, gnDNS) && leafHasControlDNS(c.leaf)
		}
		if bytes.Equal(ca.RawSubject, leaf.RawIssuer) && len(leaf.AuthorityKeyId) > 0 && !bytes.Equal(ca.SubjectKeyId, leaf.AuthorityKeyId) {
			f.leafAKIDMismatch = true
		}
	}
	for _, p := range c.config.CRLs {
		f.crlUnsigned = f.crlUnsigned || !crlSignedByAny(p, configured)
	}
	if len(anchors) > 0 {
		for _, t := range trusted {
			f.anchorChainBroken = f.anchorChainBroken || !chainsTo(t, anchors, configured)
		}
	}
	return f
}

func ekuWithoutClient(c *x509.Certificate) bool {
	hasEKU := len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0
	return hasEKU && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func pemCert(text string) *x509.Certificate {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return cert
}

func hasCriticalOutside(exts []pkix.Extension, known []asn1.ObjectIdentifier) bool {
	for _, e := range exts {
		if e.Critical && !slices.ContainsFunc(known, e.Id.Equal) {
			return true
		}
	}
	return false
}

func hasSANExtension(c *x509.Certificate) bool {
	return slices.ContainsFunc(c.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidSAN) })
}

func leafHasEmailAttr(der []byte) bool {
	names, err := readLeafNames(der)
	if err != nil {
		return false
	}
	for _, rdn := range names.subject {
		for _, a := range rdn {
			if a.oid.Equal(oidEmailAddress) {
				return true
			}
		}
	}
	return false
}

func leafHasControlDNS(der []byte) bool {
	names, err := readLeafNames(der)
	if err != nil {
		return false
	}
	for _, g := range names.sans {
		if g.kind == gnDNS && slices.ContainsFunc(g.value, func(b byte) bool { return b < 0x20 || b == 0x7f }) {
			return true
		}
	}
	return false
}

func leafHasHostlessURI(der []byte) bool {
	names, err := readLeafNames(der)
	if err != nil {
		return false
	}
	for _, g := range names.sans {
		if _, err := uriHost(string(g.value)); g.kind == gnURI && errors.Is(err, errNoHost) {
			return true
		}
	}
	return false
}

func crlSignedByAny(text string, configured []*x509.Certificate) bool {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return false
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return false
	}
	for _, ca := range configured {
		if bytes.Equal(crl.RawIssuer, ca.RawSubject) && crl.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// chainsTo: cert reaches an anchor through configured certificates by name and signature
// (time aside: peergate checks the chain when it compiles the configuration).
func chainsTo(cert *x509.Certificate, anchors, configured []*x509.Certificate) bool {
	x := cert
	for range 8 {
		if slices.ContainsFunc(anchors, x.Equal) {
			return true
		}
		parent := signerAmong(configured, x)
		if parent == nil {
			return false
		}
		x = parent
	}
	return false
}
