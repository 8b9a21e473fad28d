package x509oracle

// Cases: a configuration, a leaf and a time, drawn against a world, each built to exercise one
// class of feature, in both directions (the class's feature present or absent, matching or a
// near miss), so that about half the cases are admissions.

import (
	"crypto/x509"
	"math/big"
	"math/rand/v2"
	"slices"
	"time"
)

// classes and their weights.
var classes = []struct {
	name   string
	weight int
}{
	{"names-dns", 10}, {"names-uri", 10}, {"names-email-ip", 6}, {"subject", 10}, {"dirstring", 7},
	{"validity", 10}, {"crl", 9}, {"name-constraints", 12}, {"client-profile", 7}, {"chain", 9},
	{"scope", 9}, {"ca-profile", 5},
}

func pickClass(r *rand.Rand) string {
	total := 0
	for _, c := range classes {
		total += c.weight
	}
	n := r.IntN(total)
	for _, c := range classes {
		if n < c.weight {
			return c.name
		}
		n -= c.weight
	}
	panic("unreachable")
}

type oracleCase struct {
	id       uint64
	class    string
	world    int
	config   pluginConfig
	leaf     []byte
	goLeaf   []byte
	now      int64
	spec     *leafSpec
	features []string // how the case was built (printed with a failure)
}

func (c *oracleCase) note(f string) { c.features = append(c.features, f) }

// caseBuilder holds what one case draws before the leaf is signed.
type caseBuilder struct {
	r       *rand.Rand
	w       *world
	keys    keyPool
	c       *oracleCase
	issuer  *caNode   // the trusted issuer the case is about
	trusted []*caNode // trustedIssuers, in order (duplicates possible)
	scopes  map[int][]string
	anchors []*caNode
	crls    [][]byte
}

func newCase(id uint64, r *rand.Rand, w *world, keys keyPool) *oracleCase {
	b := &caseBuilder{r: r, w: w, keys: keys, scopes: map[int][]string{}}
	b.c = &oracleCase{id: id, class: pickClass(r), world: w.id}
	b.pickIssuer()
	b.trust()
	b.leafSpec()
	b.names()
	b.revocation()
	b.when()
	b.finish()
	return b.c
}

func (b *caseBuilder) pickIssuer() {
	r, w := b.r, b.w
	candidates := slices.DeleteFunc(slices.Clone(w.cas), func(ca *caNode) bool { return !ordinaryCA(ca) })
	// Outside the name-constraints class, mostly an issuer without constraints above it.
	if b.c.class != "name-constraints" && r.IntN(100) < 75 {
		plain := slices.DeleteFunc(slices.Clone(candidates), func(ca *caNode) bool { return lineHas(ca, "name-constraints") })
		if len(plain) > 0 {
			candidates = plain
		}
	}
	switch b.c.class {
	case "ca-profile", "chain":
		candidates = w.cas
	case "name-constraints":
		constrained := slices.DeleteFunc(slices.Clone(w.cas), func(ca *caNode) bool { return !lineHas(ca, "name-constraints") })
		if len(constrained) > 0 {
			candidates = constrained
		}
	}
	if len(candidates) == 0 {
		candidates = w.cas
	}
	b.issuer = pickOne(r, candidates)
}

// ordinaryCA: nothing about the CA makes peergate refuse a configuration holding it.
func ordinaryCA(ca *caNode) bool {
	return !ca.has("ku-no-certsign") && !ca.has("eku-server-only") && !ca.has("crit-policy")
}

// lineHas: ca or one of its ancestors has the feature.
func lineHas(ca *caNode, feature string) bool {
	for ; ca != nil; ca = ca.parent {
		if ca.has(feature) {
			return true
		}
	}
	return false
}

// trust: trustedIssuers and trustAnchors. With anchors the line from the issuer up to its root
// is listed (sometimes with a gap, or the wrong root, in the chain class).
func (b *caseBuilder) trust() {
	r := b.r
	b.trusted = []*caNode{b.issuer}
	anchors := r.IntN(100) < 25 || b.c.class == "chain" && r.IntN(2) == 0
	if !anchors {
		for _, other := range b.w.cas {
			if other != b.issuer && r.IntN(100) < 15 && (ordinaryCA(other) || b.c.class == "ca-profile") {
				b.trusted = append(b.trusted, other)
				b.c.note("also-trusts:" + other.name)
			}
		}
		return
	}
	root := b.issuer
	var line []*caNode
	for root.parent != nil {
		root = root.parent
		if root.parent != nil {
			line = append(line, root)
		}
	}
	b.anchors = []*caNode{root}
	b.c.note("anchors")
	for _, ca := range line {
		if b.c.class == "chain" && r.IntN(100) < 15 {
			b.c.note("anchor-gap:" + ca.name)
			continue
		}
		b.trusted = append(b.trusted, ca)
	}
	if b.issuer != root && r.IntN(100) < 30 {
		b.trusted = append(b.trusted, root)
	}
	if b.c.class == "chain" && r.IntN(100) < 15 {
		for _, ca := range b.w.cas {
			if ca.parent == nil && ca != root {
				b.anchors = []*caNode{ca}
				b.c.note("wrong-anchor")
			}
		}
	}
}

// leafSpec: an ordinary client leaf, then the class's variation.
func (b *caseBuilder) leafSpec() {
	r, w := b.r, b.w
	day := 24 * time.Hour
	s := &leafSpec{
		signer:    b.issuer,
		key:       b.keys.pick(r),
		serial:    big.NewInt(int64(r.Uint64()>>3) + 1<<48),
		notBefore: w.t0.Add(-time.Duration(1+r.IntN(300)) * day),
		notAfter:  w.t0.Add(time.Duration(1+r.IntN(300)) * day),
		sanExt:    true,
	}
	s.alg = pickAlg(r, b.issuer.key.kind)
	if r.IntN(100) < 3 {
		s.notAfter = time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC) // GeneralizedTime
	}
	s.attrs = randomSubject(r, b.c.class)
	s.sans = randomSANs(r, b.c.class)
	switch {
	case len(s.attrs) == 0:
		s.sanCritical = true
	case r.IntN(100) < 5:
		s.sanExt, s.sans = false, nil
		b.c.note("no-san")
	case r.IntN(100) < 10:
		s.sanCritical = true
	}
	b.clientProfile(s)
	switch n := r.IntN(100); {
	case n < 6:
		s.akid = "omit"
	case n < 9 && b.c.class == "chain":
		s.akid = "wrong"
	}
	b.c.spec = s
	if b.c.class == "chain" {
		b.chainVariant(s)
	}
}

// clientProfile: basicConstraints, keyUsage, extendedKeyUsage, critical extensions; ordinary
// outside the client-profile class, uniform over the variants inside it.
func (b *caseBuilder) clientProfile(s *leafSpec) {
	r := b.r
	odd := b.c.class == "client-profile"
	pct := func(p int) bool { return r.IntN(100) < p }
	s.bc = pickOne(r, []string{"", "false"})
	if odd && pct(30) || pct(1) {
		s.bc = "true"
	}
	kus := []x509.KeyUsage{x509.KeyUsageDigitalSignature, 0, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	s.ku = pickOne(r, kus)
	if odd && pct(25) || pct(1) {
		s.ku = pickOne(r, []x509.KeyUsage{x509.KeyUsageKeyEncipherment, x509.KeyUsageKeyAgreement, x509.KeyUsageCertSign})
	}
	ekus := [][]x509.ExtKeyUsage{{x509.ExtKeyUsageClientAuth}, nil, {x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	s.eku = pickOne(r, ekus)
	if odd && pct(35) || pct(1) {
		switch r.IntN(4) {
		case 0:
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		case 1:
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		case 2:
			s.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
		case 3:
			s.eku, s.ekuUnknown = nil, true
		}
	}
	if odd && pct(20) || pct(1) {
		s.critExt = pickOne(r, []string{"policies", "unknown"})
	}
}

// chainVariant: a leaf signed by something other than the trusted issuer it names.
func (b *caseBuilder) chainVariant(s *leafSpec) {
	r, w := b.r, b.w
	switch r.IntN(8) {
	case 0: // a look-alike of a trusted CA
		b.issuer = w.lookOf
		b.trusted[0] = w.lookOf
		s.signer = w.lookalike
		b.c.note("signed-by-lookalike")
	case 1:
		s.signer = w.stranger
		b.c.note("signed-by-stranger")
	case 2: // a child CA of the issuer that is not listed
		for _, ca := range w.cas {
			if ca.parent == b.issuer && !slices.Contains(b.trusted, ca) {
				s.signer = ca
				b.c.note("signed-by-unlisted-child")
			}
		}
	case 3: // the same CA listed twice (with different scopes)
		b.trusted = append(b.trusted, b.issuer)
		b.scopes[len(b.trusted)-1] = []string{"*.a.example"}
		b.c.note("duplicate-issuer")
	}
	if s.signer != b.issuer {
		s.alg = pickAlg(r, s.signer.key.kind)
	}
}

// names: allowedSans, allowedSubjects and scopes, derived from the leaf's names.
func (b *caseBuilder) names() {
	r, s := b.r, b.c.spec
	var allowed []string
	if len(s.sans) > 0 && r.IntN(100) < 90 {
		candidates := patternsFor(r, pickOne(r, s.sans))
		if r.IntN(100) < 75 {
			candidates = candidates[:1] // the one meant to admit
		}
		allowed = append(allowed, pickOne(r, candidates))
	}
	if b.c.class == "names-dns" || b.c.class == "names-uri" || b.c.class == "names-email-ip" {
		for range r.IntN(2) {
			if len(s.sans) > 0 {
				allowed = append(allowed, pickOne(r, patternsFor(r, pickOne(r, s.sans))))
			}
		}
		if r.IntN(100) < 3 {
			allowed = append(allowed, pickOne(r, invalidPatterns))
			b.c.note("invalid-pattern")
		}
	}
	allowed = append(allowed, pickOne(r, decoyPatterns))
	r.Shuffle(len(allowed), func(i, j int) { allowed[i], allowed[j] = allowed[j], allowed[i] })
	b.c.config.AllowedSans = allowed
	subjectP := 25
	if b.c.class == "subject" || b.c.class == "dirstring" {
		subjectP = 85
	}
	if r.IntN(100) < subjectP {
		b.c.config.AllowedSubjects = []string{pickOne(r, subjectPatternsFor(r, s.attrs))}
		if b.c.class == "subject" || b.c.class == "dirstring" {
			b.c.config.AllowedSans = []string{pickOne(r, decoyPatterns)}
		}
	}
	if b.c.class == "scope" || r.IntN(100) < 5 {
		b.scopes[0] = b.scopeFor(s)
	}
}

// scopeFor: patterns covering all of the leaf's SANs, some of them, or none.
func (b *caseBuilder) scopeFor(s *leafSpec) []string {
	r := b.r
	var scope []string
	all := r.IntN(100) < 70
	for _, g := range s.sans {
		if all || r.IntN(2) == 0 {
			scope = append(scope, patternsFor(r, g)[0])
		}
	}
	if len(scope) == 0 || r.IntN(100) < 20 {
		scope = append(scope, pickOne(r, decoyPatterns))
	}
	b.c.note("scoped")
	return scope
}

// revocation: CRLs of the issuer, of its parent (revoking the issuer), stale ones, and CRLs
// no configured CA signed.
func (b *caseBuilder) revocation() {
	r, w, s := b.r, b.w, b.c.spec
	if b.c.class != "crl" {
		if r.IntN(100) >= 10 {
			return
		}
		if crl := b.issuer.crl("other"); crl != nil {
			b.crls = append(b.crls, crl)
		}
		return
	}
	add := func(ca *caNode, kind string) {
		if crl := ca.crl(kind); crl != nil {
			b.crls = append(b.crls, crl)
			b.c.note("crl:" + kind + ":" + ca.name)
		}
	}
	switch r.IntN(8) {
	case 0, 1:
		s.serial = b.issuer.revokedLeaf
		add(b.issuer, pickOne(r, []string{"leaf", "stale"}))
	case 2:
		add(b.issuer, "other")
		add(b.issuer, "leaf")
	case 3, 4: // the issuer revoked by its parent, listed as a trusted issuer or an anchor
		if p := b.issuer.parent; p != nil {
			if !slices.Contains(b.trusted, p) && !slices.Contains(b.anchors, p) {
				b.trusted = append(b.trusted, p)
			}
			add(p, "children")
		}
	case 5:
		b.crls = append(b.crls, w.wrongCRL())
		b.c.note("crl:wrong-signer")
		if w.lookOf == b.issuer {
			s.serial = b.issuer.revokedLeaf
		}
	case 6:
		add(w.stranger, "leaf")
	case 7:
		s.serial = b.issuer.revokedLeaf
		b.c.note("revoked-serial-no-crl")
	}
}

// when: near the epoch, or (validity class) one second before, at or after a bound of the
// leaf or of a CA above it.
func (b *caseBuilder) when() {
	r, s := b.r, b.c.spec
	b.c.now = b.w.t0.Unix() + int64(r.IntN(7200)) - 3600
	if b.c.class != "validity" {
		return
	}
	var bounds []time.Time
	bounds = append(bounds, s.notBefore, s.notAfter)
	for ca := b.issuer; ca != nil; ca = ca.parent {
		bounds = append(bounds, ca.cert.NotBefore, ca.cert.NotAfter)
	}
	bound := pickOne(r, bounds)
	b.c.now = bound.Unix() + int64(r.IntN(3)) - 1
}

// finish writes the configuration and signs the leaf (and its Go view).
func (b *caseBuilder) finish() {
	cfg := &b.c.config
	for i, ca := range b.trusted {
		e := issuerEntry{Certificate: ca.pem()}
		if scope, ok := b.scopes[i]; ok {
			e.Scope = scope
		}
		cfg.TrustedIssuers = append(cfg.TrustedIssuers, e)
	}
	for _, ca := range b.anchors {
		cfg.TrustAnchors = append(cfg.TrustAnchors, ca.pem())
	}
	for _, crl := range b.crls {
		cfg.CRLs = append(cfg.CRLs, crlPEM(crl))
	}
	constrained := false
	for _, ca := range append(slices.Clone(b.trusted), b.anchors...) {
		constrained = constrained || ca.nc != nil
	}
	leaf, goLeaf, twin, err := b.c.spec.buildWithView(constrained)
	if err != nil {
		panic(err)
	}
	if twin {
		b.c.note("go-view-twin")
	}
	b.c.leaf, b.c.goLeaf = leaf, goLeaf
}
