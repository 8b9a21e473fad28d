package x509oracle

// A PKI "world": two roots, each with a line of 0 to 3 intermediates, CAs with random
// pathLenConstraint, keyUsage, extendedKeyUsage, nameConstraints and the odd critical extension,
// a look-alike of one CA (same name, another key) and CRLs. Many leaf cases are then drawn
// against one world, so the CAs (and their signatures) are made once for ~30 cases.

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"slices"
	"time"

	"crypto/x509/pkix"
)

type caNode struct {
	name     string
	attrs    []attr
	cert     *x509.Certificate
	der      []byte
	key      key
	parent   *caNode
	depth    int
	nc       *nameConstraints
	features []string // what is unusual about it: ku-no-certsign, eku-server-only, crit-policy...
	// revokedLeaf is the serial this CA's CRL lists for leaves; a leaf built to be revoked uses it.
	revokedLeaf *big.Int
	// crls by kind, made on first use (crl): "leaf" lists revokedLeaf, "stale" the same past
	// its nextUpdate, "children" lists the serials of the CAs it signed, "other" an unrelated
	// serial.
	crls     map[string][]byte
	children []*big.Int
	t0       time.Time
	stale    bool // whether "children" is stale
	other    *big.Int
}

func (c *caNode) has(feature string) bool {
	for _, f := range c.features {
		if f == feature {
			return true
		}
	}
	return false
}

func (c *caNode) pem() string { return certPEM(c.der) }

type world struct {
	id        int
	t0        time.Time
	cas       []*caNode // roots first, then intermediates
	lookalike *caNode   // the name of lookalikeOf with another key; never configured
	lookOf    *caNode
	stranger  *caNode // a root nobody configures
	wrong     []byte  // wrongCRL, once made
}

// worldEpoch is the time every world is centred on (2026-01-01); cases' "now" are near it or
// at the validity bounds.
var worldEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newWorld(id int, r *rand.Rand, keys keyPool) *world {
	w := &world{id: id, t0: worldEpoch.Add(time.Duration(r.IntN(86400*30)) * time.Second)}
	for ri := range 2 {
		root := w.newCA(r, keys, nil, fmt.Sprintf("W%d Root %d", id, ri))
		parent := root
		for ii := range r.IntN(4) {
			parent = w.newCA(r, keys, parent, fmt.Sprintf("W%d Root %d Inter %d", id, ri, ii))
		}
	}
	w.stranger = w.newCA(r, keys, nil, fmt.Sprintf("W%d Stranger", id))
	w.cas = w.cas[:len(w.cas)-1]
	w.lookOf = w.cas[r.IntN(len(w.cas))]
	w.lookalike = w.makeLookalike(r, keys, w.lookOf)
	for _, ca := range append(slices.Clone(w.cas), w.stranger) {
		w.planCRLs(r, ca)
	}
	w.lookalike.t0 = w.t0
	return w
}

// wrongCRL: a CRL in lookOf's name signed by the look-alike's key.
func (w *world) wrongCRL() []byte {
	if w.wrong == nil {
		w.wrong = makeCRL(w.lookalike, w.t0, []*big.Int{w.lookOf.revokedLeaf}, false)
	}
	return w.wrong
}

// caAttrs: a Go-parsable CA name (Go must build chains through it).
func caAttrs(r *rand.Rand, cn string) []attr {
	tags := []byte{tagUTF8, tagPrintable, tagBMP}
	return []attr{
		{oid: oidC, tag: tagPrintable, text: "NL"},
		{oid: oidO, tag: tags[r.IntN(len(tags))], text: "Peergate Oracle"},
		{oid: oidCN, tag: tags[r.IntN(len(tags))], text: cn},
	}
}

func (w *world) newCA(r *rand.Rand, keys keyPool, parent *caNode, cn string) *caNode {
	ca := &caNode{name: cn, attrs: caAttrs(r, cn), key: keys.pick(r), parent: parent, crls: map[string][]byte{}}
	ca.revokedLeaf = big.NewInt(int64(r.Uint32()) + 1)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(r.Uint64() >> 2)),
		RawSubject:            encodeDN(ca.attrs),
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	w.caValidity(r, tmpl, parent)
	if parent != nil {
		ca.depth = parent.depth + 1
	}
	w.caProfile(r, ca, tmpl)
	if r.IntN(100) < 35 {
		nc := randomConstraints(r)
		ca.nc = &nc
		critical := r.IntN(100) < 70
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidNameConstraints, Critical: critical, Value: nc.encode()})
		ca.features = append(ca.features, "name-constraints")
	}
	signer, issuerCert := ca, tmpl
	if parent != nil {
		signer, issuerCert = parent, parent.cert
	}
	tmpl.SignatureAlgorithm = pickAlg(r, signer.key.kind)
	der, err := x509.CreateCertificate(nil, tmpl, issuerCert, ca.key.signer.Public(), signer.key.signer)
	if err != nil {
		panic(fmt.Sprintf("CA %s: %v", cn, err))
	}
	ca.der = der
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		panic(fmt.Sprintf("CA %s: Go cannot parse it: %v", cn, err))
	}
	w.cas = append(w.cas, ca)
	return ca
}

// caValidity: roots long-lived; intermediates mostly nested in their parent, sometimes with a
// bound close to the epoch so that cases' "now" can sit at it.
func (w *world) caValidity(r *rand.Rand, tmpl *x509.Certificate, parent *caNode) {
	day := 24 * time.Hour
	tmpl.NotBefore = w.t0.Add(-time.Duration(1000+r.IntN(1000)) * day)
	tmpl.NotAfter = w.t0.Add(time.Duration(1000+r.IntN(3000)) * day)
	if parent != nil && r.IntN(100) < 80 {
		tmpl.NotBefore = parent.cert.NotBefore.Add(time.Duration(r.IntN(100)) * day)
		tmpl.NotAfter = parent.cert.NotAfter.Add(-time.Duration(r.IntN(100)) * day)
	}
	switch r.IntN(10) {
	case 0:
		tmpl.NotAfter = w.t0.Add(time.Duration(1+r.IntN(200)) * day)
	case 1:
		tmpl.NotBefore = w.t0.Add(-time.Duration(1+r.IntN(200)) * day)
	}
}

// caProfile: keyUsage, extendedKeyUsage, pathLenConstraint and critical extensions, mostly
// ordinary, sometimes not.
func (w *world) caProfile(r *rand.Rand, ca *caNode, tmpl *x509.Certificate) {
	switch n := r.IntN(100); {
	case n < 8:
		tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	case n < 13:
		tmpl.KeyUsage = 0
		ca.features = append(ca.features, "no-key-usage")
	case n < 14:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign
		ca.features = append(ca.features, "ku-no-certsign")
	}
	switch n := r.IntN(100); {
	case n < 5:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case n < 7:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		ca.features = append(ca.features, "eku-server-only")
	case n < 10:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	if r.IntN(100) < 15 {
		tmpl.MaxPathLen = r.IntN(3)
		tmpl.MaxPathLenZero = tmpl.MaxPathLen == 0
		ca.features = append(ca.features, "path-len")
	}
	if r.IntN(100) < 3 {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, criticalPolicyExtension(r))
		ca.features = append(ca.features, "crit-policy")
	}
}

// criticalPolicyExtension: a critical policy extension that does not make Go's policy
// validation fail for leaves without policies (no requireExplicitPolicy).
func criticalPolicyExtension(r *rand.Rand) pkix.Extension {
	anyPolicy := asn1.ObjectIdentifier{2, 5, 29, 32, 0}
	switch r.IntN(3) {
	case 0:
		return pkix.Extension{Id: oidCertPolicies, Critical: true, Value: seq(seq(mustOID(anyPolicy)))}
	case 1:
		return pkix.Extension{Id: oidInhibitAnyPolicy, Critical: true, Value: encodeTLV(tagInteger, []byte{5})}
	}
	// policyConstraints { inhibitPolicyMapping [1] 0 }
	return pkix.Extension{Id: oidPolicyConstr, Critical: true, Value: seq(encodeTLV(0x81, []byte{0}))}
}

func pickAlg(r *rand.Rand, kind keyKind) x509.SignatureAlgorithm {
	algs := signatureAlgorithms(kind)
	if r.IntN(4) != 0 {
		return algs[0] // the usual one
	}
	return algs[r.IntN(len(algs))]
}

// makeLookalike: same subject (and, half the time, the same subjectKeyIdentifier) as target,
// another key, self-signed.
func (w *world) makeLookalike(r *rand.Rand, keys keyPool, target *caNode) *caNode {
	ca := &caNode{name: target.name + " (look-alike)", attrs: target.attrs, key: keys.pickOther(r, target.key), crls: map[string][]byte{}}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(r.Uint64() >> 2)), RawSubject: encodeDN(ca.attrs),
		NotBefore: target.cert.NotBefore, NotAfter: target.cert.NotAfter,
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if r.IntN(2) == 0 {
		tmpl.SubjectKeyId = target.cert.SubjectKeyId
		ca.features = append(ca.features, "same-skid")
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, ca.key.signer.Public(), ca.key.signer)
	if err != nil {
		panic(err)
	}
	ca.der = der
	ca.cert, _ = x509.ParseCertificate(der)
	ca.revokedLeaf = target.revokedLeaf
	return ca
}

// planCRLs draws what a CA's CRLs will hold; they are signed on first use (RSA signatures
// are the generator's main cost).
func (w *world) planCRLs(r *rand.Rand, ca *caNode) {
	ca.t0 = w.t0
	for _, c := range w.cas {
		if c.parent == ca {
			ca.children = append(ca.children, c.cert.SerialNumber)
		}
	}
	ca.stale = r.IntN(4) == 0
	ca.other = big.NewInt(int64(r.Uint32()) + 1<<40)
}

// crl returns the CA's CRL of a kind, or nil when it has none: no children, or a keyUsage
// without cRLSign (Go will not sign one).
func (ca *caNode) crl(kind string) []byte {
	if ca.cert.KeyUsage != 0 && ca.cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil
	}
	if der, ok := ca.crls[kind]; ok {
		return der
	}
	var der []byte
	switch kind {
	case "leaf":
		der = makeCRL(ca, ca.t0, []*big.Int{ca.revokedLeaf}, false)
	case "stale":
		der = makeCRL(ca, ca.t0, []*big.Int{ca.revokedLeaf}, true)
	case "other":
		der = makeCRL(ca, ca.t0, []*big.Int{ca.other}, false)
	case "children":
		if len(ca.children) > 0 {
			der = makeCRL(ca, ca.t0, ca.children, ca.stale)
		}
	}
	ca.crls[kind] = der
	return der
}

// makeCRL: thisUpdate long before any case's "now"; nextUpdate far after it, or (stale) long
// before it.
func makeCRL(ca *caNode, t0 time.Time, serials []*big.Int, stale bool) []byte {
	day := 24 * time.Hour
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: t0.Add(-5000 * day),
		NextUpdate: t0.Add(5000 * day),
	}
	if stale {
		tmpl.NextUpdate = t0.Add(-4000 * day)
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: t0.Add(-4500 * day)})
	}
	issuer := *ca.cert
	issuer.KeyUsage |= x509.KeyUsageCRLSign // Go wants the bit; a CA without keyUsage may sign CRLs
	der, err := x509.CreateRevocationList(nil, tmpl, &issuer, ca.key.signer)
	if err != nil {
		panic(fmt.Sprintf("CRL of %s: %v", ca.name, err))
	}
	return der
}

// randomConstraints draws one CA's nameConstraints from the names the leaves use.
func randomConstraints(r *rand.Rand) nameConstraints {
	var nc nameConstraints
	forms := r.IntN(3) + 1
	for range forms {
		if r.IntN(100) < 65 {
			nc.permitted = append(nc.permitted, pickOne(r, permittedBases()))
		} else {
			nc.excluded = append(nc.excluded, pickOne(r, excludedBases()))
		}
	}
	return nc
}

func ipNet(cidr string) generalName {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	ip := n.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return generalName{kind: gnIP, value: append(append([]byte{}, ip...), n.Mask...)}
}

func dirBase(attrs ...attr) generalName {
	return generalName{kind: gnDir, value: encodeDN(attrs)}
}

func permittedBases() []generalName {
	return []generalName{
		{gnDNS, []byte("a.example")}, {gnDNS, []byte(".a.example")}, {gnDNS, []byte("corp.test")},
		{gnEmail, []byte("a.example")}, {gnEmail, []byte(".a.example")}, {gnEmail, []byte("ops@b.example")},
		{gnURI, []byte("a.example")}, {gnURI, []byte(".a.example")},
		ipNet("10.0.0.0/8"), ipNet("192.0.2.0/24"), ipNet("2001:db8::/32"),
		dirBase(attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"}),
		dirBase(attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagBMP, text: "partner  a"}),
		dirBase(attr{oid: oidC, tag: tagUTF8, text: "NL"}),
	}
}

func excludedBases() []generalName {
	return []generalName{
		{gnDNS, []byte("bad.a.example")}, {gnDNS, []byte("b.example")},
		{gnEmail, []byte("mail.a.example")}, {gnEmail, []byte("evil@a.example")}, {gnEmail, []byte(".b.example")},
		{gnURI, []byte("bad.a.example")}, {gnURI, []byte(".b.example")},
		ipNet("10.66.0.0/16"), ipNet("2001:db8:bad::/48"),
		dirBase(attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"}, attr{oid: oidOU, tag: tagUTF8, text: "Blocked"}),
		dirBase(attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagPrintable, text: "Partner B"}),
	}
}

func pickOne[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }
