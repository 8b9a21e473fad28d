package x509oracle

// The oracle's verdict: crypto/x509 builds and verifies the chain (signatures, validity of
// every link, basicConstraints, pathLen, extendedKeyUsage, DNS and IP name constraints), and
// the oracle adds what Go does not do or does differently: the rule that a trusted issuer
// signs the leaf directly, revocation, the allowedSans / allowedSubjects / scope rules, and the
// directoryName, email and URI name constraints.

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"sync"
	"time"
)

type verdict struct {
	admit bool
	why   string // the oracle's reason for a refusal
}

func refuse(format string, args ...any) verdict {
	return verdict{why: fmt.Sprintf(format, args...)}
}

// oracleInput is one case as the oracle sees it.
type oracleInput struct {
	config pluginConfig
	leaf   []byte // the real leaf, as peergate gets it
	goLeaf []byte // the leaf Go verifies: the real one or its twin (goview.go)
	now    int64
}

func judgeOracle(in oracleInput) verdict {
	cfg, err := compileConfig(in.config)
	if err != nil {
		return refuse("configuration: %v", err)
	}
	names, err := readLeafNames(in.leaf)
	if err != nil {
		return refuse("leaf: %v", err)
	}
	goLeaf, err := x509.ParseCertificate(in.goLeaf)
	if err != nil {
		return refuse("leaf (Go view): %v", err)
	}
	chains, err := goChains(cfg, goLeaf, in.now)
	if err != nil {
		return refuse("chain: %v", err)
	}
	var last verdict
	for _, chain := range chains {
		if last = judgeChain(cfg, chain, names); last.admit {
			return last
		}
	}
	return last
}

// readLeafNames reads the real leaf's subject and SANs with the oracle's own DER reader.
func readLeafNames(der []byte) (leafNames, error) {
	parts, err := parseCertParts(der)
	if err != nil {
		return leafNames{}, err
	}
	var names leafNames
	if names.subject, err = parseDN(parts.subject); err != nil {
		return leafNames{}, fmt.Errorf("subject: %w", err)
	}
	if ext, ok := findExtension(parts.extensions, oidSAN); ok {
		names.hasSANExt = true
		if names.sans, err = parseSANs(ext.value); err != nil {
			return leafNames{}, fmt.Errorf("subjectAltName: %w", err)
		}
	}
	return names, nil
}

// goChains: Go's chains whose second element is a trusted issuer (peergate wants the leaf
// signed directly by one). Roots are the anchors when there are any, else the trusted issuers.
func goChains(cfg compiled, leaf *x509.Certificate, now int64) ([][]*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	var issuers []*x509.Certificate
	for _, t := range cfg.trusted {
		issuers = append(issuers, t.cert)
	}
	for _, c := range append(slices.Clone(issuers), cfg.anchors...) {
		takeOverNameConstraints(c)
		inter.AddCert(c)
	}
	rootList := issuers
	if len(cfg.anchors) > 0 {
		rootList = cfg.anchors
	}
	for _, c := range rootList {
		roots.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: time.Unix(now, 0),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	var out [][]*x509.Certificate
	for _, chain := range chains {
		if len(chain) > 1 && slices.ContainsFunc(issuers, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, chain[1].Raw) }) {
			out = append(out, chain)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no chain has a trusted issuer as the leaf's signer (%d chains)", len(chains))
	}
	return out, nil
}

// judgeChain applies the oracle's own rules along one of Go's chains.
func judgeChain(cfg compiled, chain []*x509.Certificate, names leafNames) verdict {
	for _, ca := range chain[1:] {
		nc, ok, err := caNameConstraints(ca)
		if err != nil {
			return refuse("nameConstraints of %s: %v", ca.Subject, err)
		}
		if !ok {
			continue
		}
		if err := checkOwnConstraints(nc, names); err != nil {
			return refuse("name constraints of %s: %v", ca.Subject, err)
		}
	}
	if why := revokedBy(cfg, chain[0], chain[1]); why != "" {
		return refuse("%s", why)
	}
	return judgeNames(cfg, chain[1], names)
}

// takeOverNameConstraints: Go lists a critical nameConstraints extension as unhandled when it
// has a subtree form Go does not compare (directoryName; otherName, x400Address, ediPartyName,
// registeredID). The oracle enforces those forms itself (checkOwnConstraints), so it removes
// the extension from the list; Go still enforces the DNS and IP subtrees it parsed.
func takeOverNameConstraints(c *x509.Certificate) {
	if _, ok, err := caNameConstraints(c); !ok || err != nil {
		return
	}
	c.UnhandledCriticalExtensions = slices.DeleteFunc(c.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool {
		return o.Equal(oidNameConstraints)
	})
}

func caNameConstraints(ca *x509.Certificate) (nameConstraints, bool, error) {
	for _, e := range ca.Extensions {
		if e.Id.Equal(oidNameConstraints) {
			nc, err := parseNameConstraints(e.Value)
			return nc, true, err
		}
	}
	return nameConstraints{}, false, nil
}

// revokedBy walks up from the leaf (signed by issuer) through the configured certificates
// (trusted issuers and anchors): each certificate is revoked when a configured CRL of the CA
// that signed it (same name, verified signature) lists its serial. A CRL's dates do not matter
// (a stale CRL stays enforced).
func revokedBy(cfg compiled, leaf, issuer *x509.Certificate) string {
	configured := slices.Clone(cfg.anchors)
	for _, t := range cfg.trusted {
		configured = append(configured, t.cert)
	}
	x, parent := leaf, issuer
	for range 8 {
		if parent == nil {
			return ""
		}
		for _, crl := range cfg.crls {
			if !bytes.Equal(crl.RawIssuer, parent.RawSubject) || crl.CheckSignatureFrom(parent) != nil {
				continue
			}
			for _, entry := range crl.RevokedCertificateEntries {
				if entry.SerialNumber.Cmp(x.SerialNumber) == 0 {
					return fmt.Sprintf("revoked: serial %x of %s on the CRL of %s", x.SerialNumber, x.Subject, parent.Subject)
				}
			}
		}
		if bytes.Equal(parent.RawSubject, parent.RawIssuer) {
			return ""
		}
		x, parent = parent, signerAmong(configured, parent)
	}
	return ""
}

func signerAmong(configured []*x509.Certificate, x *x509.Certificate) *x509.Certificate {
	for _, c := range configured {
		if bytes.Equal(c.RawSubject, x.RawIssuer) && !bytes.Equal(c.Raw, x.Raw) && signedBy(x, c) {
			return c
		}
	}
	return nil
}

// signatures caches CA-on-CA signature checks (the same few CAs are asked about in every case
// of a world); keyed by both certificates' hashes.
var signatures sync.Map

func signedBy(child, parent *x509.Certificate) bool {
	k := sha256.Sum256(append(append([]byte{}, child.Raw...), parent.Raw...))
	if ok, found := signatures.Load(k); found {
		return ok.(bool)
	}
	ok := child.CheckSignatureFrom(parent) == nil
	signatures.Store(k, ok)
	return ok
}

// judgeNames: an unscoped issuer admits on a SAN matching allowedSans or a subject matching
// allowedSubjects; a scoped one only when every SAN is inside its scope and one of them
// matches allowedSans.
func judgeNames(cfg compiled, issuer *x509.Certificate, names leafNames) verdict {
	scoped, scope := true, []sanPattern(nil)
	for _, t := range cfg.trusted {
		if bytes.Equal(t.cert.Raw, issuer.Raw) {
			scoped = scoped && t.scoped
			scope = append(scope, t.scope...)
		}
	}
	if scoped {
		for _, g := range names.sans {
			if !anyPatternMatches(scope, g) {
				return refuse("SAN %s outside the issuer's scope", describeSAN(g))
			}
		}
	}
	for _, g := range names.sans {
		if anyPatternMatches(cfg.sans, g) {
			return verdict{admit: true}
		}
	}
	if !scoped {
		for _, p := range cfg.subjects {
			if p.matches(names.subject) {
				return verdict{admit: true}
			}
		}
	}
	return refuse("no SAN matches allowedSans (scoped=%v) and no subject matches", scoped)
}

func describeSAN(g generalName) string {
	switch g.kind {
	case gnDNS, gnEmail, gnURI:
		return fmt.Sprintf("[%d]%q", g.kind, g.value)
	}
	return fmt.Sprintf("[%d]%x", g.kind, g.value)
}
