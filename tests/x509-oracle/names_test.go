package x509oracle

// Known answers for the oracle's own rules, so that the oracle can be wrong only visibly.

import (
	"encoding/hex"
	"net/netip"
	"testing"
)

func TestSANPatterns(t *testing.T) {
	ip := func(s string) generalName { return generalName{gnIP, netip.MustParseAddr(s).AsSlice()} }
	cases := []struct {
		pattern string
		san     generalName
		want    bool
	}{
		{"svc.a.example", dnsName("svc.a.example"), true},
		{"svc.a.example", dnsName("SVC.A.EXAMPLE"), true},
		{"SVC.a.example", dnsName("svc.a.example"), true},
		{"svc.a.example", dnsName("svc.a.example."), false},
		{"svc.a.example", uriName("svc.a.example"), false},
		{"a.example", dnsName("a_b.a.example"), false},
		{"*.a.example", dnsName("svc.a.example"), true},
		{"*.a.example", dnsName("SVC.A.example"), true},
		{"*.a.example", dnsName("x.svc.a.example"), false},
		{"*.a.example", dnsName("a.example"), false},
		{"*.a.example", dnsName("*.a.example"), false},
		{"*.a.example", dnsName("a_b.a.example"), false},
		{"*.a.example", dnsName("bücher.a.example"), false},
		{"xn--bcher-kva.a.example", dnsName("XN--BCHER-KVA.a.example"), true},
		{"spiffe://a.example/ns/x", uriName("spiffe://a.example/ns/x"), true},
		{"spiffe://a.example/ns/x", uriName("SPIFFE://a.example/ns/x"), false},
		{"spiffe://a.example/ns/x", dnsName("spiffe://a.example/ns/x"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/ns/x"), true},
		{"spiffe://a.example/*", uriName("spiffe://a.example/"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/../b"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/ns/./b"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/%2e%2e/b"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/%2E/b"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/a%2Fb"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/a%5cb"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/a%zz"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/a%4"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/%41b"), true},
		{"spiffe://a.example/*", uriName("spiffe://a.example//b"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/x?y"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/x#z"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/x/"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example/ü"), false},
		{"spiffe://a.example/*", uriName("spiffe://a.example.evil/x"), false},
		{"spiffe://a.example/ns/*", uriName("spiffe://a.example/ns/x/sa/y"), true},
		{"spiffe://a.example/ns/*", uriName("spiffe://a.example/nsx/y"), false},
		{"svc@a.example", emailName("svc@a.example"), true},
		{"svc@a.example", emailName("Svc@a.example"), false},
		{"svc@a.example", dnsName("svc@a.example"), false},
		{"10.1.2.3", ip("10.1.2.3"), true},
		{"10.1.2.3", dnsName("10.1.2.3"), false},
		{"2001:db8::5", ip("2001:db8::5"), true},
		{"2001:0db8:0000:0000:0000:0000:0000:0005", ip("2001:db8::5"), true},
		{"2001:db8::5", ip("2001:db8::6"), false},
	}
	for _, c := range cases {
		p, err := parseSANPattern(c.pattern)
		if err != nil {
			t.Errorf("%q: %v", c.pattern, err)
			continue
		}
		if got := p.matches(c.san); got != c.want {
			t.Errorf("%q admits %s: %v, want %v", c.pattern, describeSAN(c.san), got, c.want)
		}
	}
}

func TestInvalidSANPatterns(t *testing.T) {
	for _, p := range []string{"a_b.a.example", "*.*.a.example", "svc*.a.example", "*", "svc.a.example.",
		"spiffe://a.example/x/../*", "spiffe://a.example//*", "spiffe://a.example/%2e/*", "spiffe:///*",
		"-svc.a.example", "svc .a.example", "bücher.a.example", ""} {
		if _, err := parseSANPattern(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestDirectoryStrings(t *testing.T) {
	cases := []struct {
		tag     byte
		content string // hex
		want    string
		bad     bool
	}{
		{tagUTF8, "c3bc", "ü", false},
		{tagUTF8, "ff", "", true},
		{tagPrintable, "4142", "AB", false},
		{tagPrintable, "41402a", "", true}, // '@' and '*' are not PrintableString
		{tagIA5, "612a40", "a*@", false},
		{tagIA5, "c3", "", true},
		{tagTeletex, "fc", "ü", false}, // read as Latin-1
		{tagBMP, "00fc0061", "üa", false},
		{tagBMP, "00fc00", "", true},
		{tagBMP, "d800", "", true},
		{tagUniversal, "000000fc0001f600", "ü😀", false},
		{tagUniversal, "0000d800", "", true},
		{tagUniversal, "00110000", "", true},
		{tagUniversal, "000000", "", true},
	}
	for _, c := range cases {
		b, _ := hex.DecodeString(c.content)
		got, err := decodeString(c.tag, b)
		if c.bad != (err != nil) || got != c.want {
			t.Errorf("tag %d %s: %q, %v; want %q (bad %v)", c.tag, c.content, got, err, c.want, c.bad)
		}
	}
	for _, tag := range []byte{tagUTF8, tagBMP, tagUniversal} {
		if got, _ := decodeString(tag, encodeString(tag, "Ünï 日本")); got != "Ünï 日本" {
			t.Errorf("tag %d round trip: %q", tag, got)
		}
	}
}

// subjectOf builds a DN from attrs and reads it back as the oracle reads a leaf's subject.
func subjectOf(t *testing.T, attrs ...attr) dn {
	t.Helper()
	el, _, err := readTLV(encodeDN(attrs))
	if err != nil {
		t.Fatal(err)
	}
	name, err := parseDN(el)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func TestSubjectPatterns(t *testing.T) {
	subject := subjectOf(t,
		attr{oid: oidC, tag: tagPrintable, text: "NL"},
		attr{oid: oidO, tag: tagBMP, text: "Partner A"},
		attr{oid: oidCN, tag: tagUniversal, text: "svc-pay,ments"},
	)
	utf8O := "#" + hex.EncodeToString(encodeTLV(tagUTF8, []byte("Partner A")))
	bmpO := "#" + hex.EncodeToString(encodeTLV(tagBMP, encodeString(tagBMP, "Partner A")))
	cases := []struct {
		pattern string
		want    bool
	}{
		{`CN=svc-pay\,ments,O=Partner A,C=NL`, true},
		{`cn=svc-pay\,ments,o=Partner A,c=NL`, true},
		{`2.5.4.3=svc-pay\2Cments,2.5.4.10=Partner A,2.5.4.6=NL`, true},
		{`CN=svc-*,O=Partner A,C=NL`, true},
		{`CN=*,O=Partner A,C=NL`, true},
		{`CN=svc-x*,O=Partner A,C=NL`, false},
		{`CN=svc-pay\,ments,O=partner a,C=NL`, false},
		{`CN=svc-pay\,ments,O=Partner A`, false},
		{`C=NL,O=Partner A,CN=svc-pay\,ments`, false},
		{`CN=svc-pay\,ments,O=` + bmpO + `,C=NL`, true},
		{`CN=svc-pay\,ments,O=` + utf8O + `,C=NL`, false},
		{`CN=svc-pay\,ments,O=Partner A,C=NL,DC=x`, false},
	}
	for _, c := range cases {
		p, err := parseSubjectPattern(c.pattern)
		if err != nil {
			t.Errorf("%q: %v", c.pattern, err)
			continue
		}
		if got := p.matches(subject); got != c.want {
			t.Errorf("%q: %v, want %v", c.pattern, got, c.want)
		}
	}
	literal := subjectOf(t, attr{oid: oidCN, tag: tagUTF8, text: "a*"})
	for pattern, want := range map[string]bool{`CN=a\*`: true, `CN=a\2A`: true, `CN=a*`: true, `CN=a\*x`: false} {
		p, err := parseSubjectPattern(pattern)
		if err != nil || p.matches(literal) != want {
			t.Errorf("%q on CN=a*: err %v, want %v", pattern, err, want)
		}
	}
	for _, bad := range []string{`O=a*`, `CN=a*b`, `CN=a,,O=b`, `XX=a`, `CN=a+O=b`, `CN=#zz`, `CN=a\`, `CN=a"b`} {
		if _, err := parseSubjectPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDirNameConstraints(t *testing.T) {
	base := subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"})
	cases := []struct {
		name dn
		want bool
	}{
		{subjectOf(t, attr{oid: oidC, tag: tagUTF8, text: "nl"}, attr{oid: oidO, tag: tagBMP, text: " partner   A "}, attr{oid: oidCN, tag: tagUTF8, text: "x"}), true},
		{subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUniversal, text: "PARTNER A"}), true},
		{subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}), false},
		{subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidOU, tag: tagUTF8, text: "Partner A"}), false},
		{subjectOf(t, attr{oid: oidO, tag: tagUTF8, text: "Partner A"}, attr{oid: oidC, tag: tagPrintable, text: "NL"}), false},
		{subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner AB"}), false},
	}
	for i, c := range cases {
		got, err := dnWithin(c.name, base)
		if err != nil || got != c.want {
			t.Errorf("case %d: %v, %v; want %v", i, got, err, c.want)
		}
	}
	broken := subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagBMP, raw: []byte{0x00}})
	if _, err := dnWithin(broken, base); err == nil {
		t.Error("an undecodable value compared")
	}
}

func TestOwnConstraints(t *testing.T) {
	nc := func(permitted, excluded []generalName) nameConstraints { return nameConstraints{permitted, excluded} }
	dir := dirBase(attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"})
	partnerA := subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"}, attr{oid: oidCN, tag: tagUTF8, text: "svc"})
	partnerB := subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner B"})
	emailAttr := subjectOf(t, attr{oid: oidCN, tag: tagUTF8, text: "svc"}, attr{oid: oidEmailAddress, tag: tagIA5, text: "x@b.example"})
	cases := []struct {
		name string
		nc   nameConstraints
		leaf leafNames
		ok   bool
	}{
		{"subject in permitted dirName", nc([]generalName{dir}, nil), leafNames{subject: partnerA}, true},
		{"subject outside permitted dirName", nc([]generalName{dir}, nil), leafNames{subject: partnerB}, false},
		{"subject in excluded dirName", nc(nil, []generalName{dir}), leafNames{subject: partnerA}, false},
		{"undecodable value outside the compared RDNs", nc([]generalName{dir}, nil), leafNames{subject: subjectOf(t, attr{oid: oidC, tag: tagPrintable, text: "NL"}, attr{oid: oidO, tag: tagUTF8, text: "Partner A"}, attr{oid: oidCN, tag: tagIA5, raw: []byte{0xff}})}, false},
		{"empty subject under dirName", nc([]generalName{dir}, nil), leafNames{}, true},
		{"dirName SAN outside", nc([]generalName{dir}, nil), leafNames{subject: partnerA, sans: []generalName{{gnDir, encodeDN([]attr{{oid: oidO, tag: tagUTF8, text: "X"}})}}}, false},
		{"email host", nc([]generalName{{gnEmail, []byte("a.example")}}, nil), leafNames{sans: []generalName{emailName("x@A.example")}}, true},
		{"email host is not its subdomains", nc([]generalName{{gnEmail, []byte("a.example")}}, nil), leafNames{sans: []generalName{emailName("x@mail.a.example")}}, false},
		{"email .domain", nc([]generalName{{gnEmail, []byte(".a.example")}}, nil), leafNames{sans: []generalName{emailName("x@mail.a.example")}}, true},
		{"email .domain is not the domain", nc([]generalName{{gnEmail, []byte(".a.example")}}, nil), leafNames{sans: []generalName{emailName("x@a.example")}}, false},
		{"email mailbox", nc([]generalName{{gnEmail, []byte("ops@b.example")}}, nil), leafNames{sans: []generalName{emailName("ops@B.example")}}, true},
		{"email mailbox local part exact", nc([]generalName{{gnEmail, []byte("ops@b.example")}}, nil), leafNames{sans: []generalName{emailName("Ops@b.example")}}, false},
		{"email excluded host, subdomain", nc(nil, []generalName{{gnEmail, []byte("a.example")}}), leafNames{sans: []generalName{emailName("x@mail.a.example")}}, true},
		{"not a mailbox, permitted", nc([]generalName{{gnEmail, []byte("a.example")}}, nil), leafNames{sans: []generalName{emailName("no-at-sign")}}, false},
		{"not a mailbox, excluded", nc(nil, []generalName{{gnEmail, []byte("a.example")}}), leafNames{sans: []generalName{emailName("no-at-sign")}}, true},
		{"subject email without SANs", nc([]generalName{{gnEmail, []byte("a.example")}}, nil), leafNames{subject: emailAttr}, false},
		{"subject email with SANs (RFC 5280)", nc([]generalName{{gnEmail, []byte("a.example")}}, nil), leafNames{subject: emailAttr, hasSANExt: true}, true},
		{"URI host", nc([]generalName{{gnURI, []byte("a.example")}}, nil), leafNames{sans: []generalName{uriName("spiffe://user@A.example:8443/x")}}, true},
		{"URI host is not its subdomains", nc([]generalName{{gnURI, []byte("a.example")}}, nil), leafNames{sans: []generalName{uriName("https://api.a.example/")}}, false},
		{"URI .domain", nc([]generalName{{gnURI, []byte(".a.example")}}, nil), leafNames{sans: []generalName{uriName("https://api.a.example/")}}, true},
		{"URI without host, excluded", nc(nil, []generalName{{gnURI, []byte(".b.example")}}), leafNames{sans: []generalName{uriName("urn:uuid:1")}}, true},
		{"URI without host, permitted", nc([]generalName{{gnURI, []byte(".a.example")}}, nil), leafNames{sans: []generalName{uriName("urn:uuid:1")}}, false},
		{"URI with IP host, permitted", nc([]generalName{{gnURI, []byte(".a.example")}}, nil), leafNames{sans: []generalName{uriName("https://10.1.2.3/")}}, false},
		{"URI with IP host, excluded", nc(nil, []generalName{{gnURI, []byte(".b.example")}}), leafNames{sans: []generalName{uriName("https://[2001:db8::1]/")}}, true},
		{"odd DNS, trailing dot inside", nc([]generalName{{gnDNS, []byte(".a.example")}}, nil), leafNames{sans: []generalName{dnsName("svc.a.example.")}}, true},
		{"odd DNS, NUL", nc([]generalName{{gnDNS, []byte(".a.example")}}, nil), leafNames{sans: []generalName{dnsName("evil.example\x00.a.example")}}, false},
		{"odd DNS, excluded", nc(nil, []generalName{{gnDNS, []byte("b.example")}}), leafNames{sans: []generalName{dnsName("X_Y.B.example.")}}, false},
		{"odd DNS, outside excluded", nc(nil, []generalName{{gnDNS, []byte("b.example")}}), leafNames{sans: []generalName{dnsName("a_b.a.example")}}, true},
		{"host DNS is Go's", nc([]generalName{{gnDNS, []byte("b.example")}}, nil), leafNames{sans: []generalName{dnsName("svc.a.example")}}, true},
		{"otherName under otherName constraints", nc([]generalName{{gnOther, []byte{}}}, nil), leafNames{sans: []generalName{{gnOther, []byte{}}}}, false},
	}
	for _, c := range cases {
		err := checkOwnConstraints(c.nc, c.leaf)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestGoDomainValid(t *testing.T) {
	for s, want := range map[string]bool{"a.example": true, "a_b.x": true, "a.example.": false, "a..b": false, "a b": false, "": true} {
		if goDomainValid(s) != want {
			t.Errorf("%q: want %v", s, want)
		}
	}
}
