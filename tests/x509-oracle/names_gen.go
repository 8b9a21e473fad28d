package x509oracle

// The names the generator puts in leaves (SANs of every form, subjects in every string type)
// and the patterns it derives from them, some that match and some near misses.

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"unicode/utf8"
)

var (
	plainDNS = []string{"svc.a.example", "api.a.example", "xn--bcher-kva.a.example", "a.example", "db.b.example",
		"x.mail.a.example", "bad.a.example", "h.corp.test", "svc.bad.a.example", "other.example"}
	oddDNS = []string{"SVC.A.Example", "svc.a.example.", "*.a.example", "a_b.a.example", "bücher.a.example",
		"svc\x00.a.example", "evil.example\x00.a.example", "svc .a.example", "-svc.a.example", "svc..a.example", "BAD.A.EXAMPLE"}
	plainURI = []string{"spiffe://a.example/ns/default/sa/svc", "spiffe://a.example/ns/prod/sa/api",
		"https://api.a.example/path/x", "spiffe://b.example/ns/x/sa/y", "https://svc.a.example:8443/p",
		"spiffe://bad.a.example/ns/x", "https://db.b.example/"}
	oddURI = []string{"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "https://10.1.2.3/x",
		"spiffe://a.example/ns/../admin", "spiffe://a.example/ns/%2e%2e/admin", "spiffe://a.example/ns//x",
		"spiffe://a.example/ns/x?y", "spiffe://a.example/ns/x#f", "spiffe://a.example/ns/x/",
		"spiffe://a.example/ns/%41b", "spiffe://a.example/ns/%zz", "spiffe://a.example/ns/%2Fx",
		"spiffe://a.example/ns/a%5cb", "spiffe://a.example/ns/ü", "SPIFFE://a.example/ns/x",
		"spiffe://user@a.example/ns/x", "spiffe://[2001:db8::1]/ns/x", "mailto:svc@a.example"}
	emails = []string{"svc@a.example", "ops@b.example", "x@mail.a.example", "Svc@A.Example", "evil@a.example",
		"y@deep.mail.a.example", "no-at-sign", "z@b.example", "ü@a.example"}
	ips = []string{"10.1.2.3", "10.66.1.1", "192.0.2.7", "198.51.100.1", "2001:db8::5", "2001:db8:bad::1", "2001:db9::1"}
)

func dnsName(s string) generalName   { return generalName{gnDNS, []byte(s)} }
func uriName(s string) generalName   { return generalName{gnURI, []byte(s)} }
func emailName(s string) generalName { return generalName{gnEmail, []byte(s)} }
func ipName(s string) generalName {
	a := netip.MustParseAddr(s)
	return generalName{gnIP, a.AsSlice()}
}

// otherNames: forms no pattern can admit.
func otherNames(r *rand.Rand) generalName {
	switch r.IntN(3) {
	case 0: // otherName: UPN
		upn := asnOID(1, 3, 6, 1, 4, 1, 311, 20, 2, 3)
		return generalName{gnOther, concat([][]byte{upn, encodeTLV(0xa0, encodeTLV(tagUTF8, []byte("svc@a.example")))})}
	case 1:
		return generalName{gnRegistered, asnOID(1, 3, 6, 1, 4, 1, 55555, 7)[2:]}
	}
	return generalName{gnDir, encodeDN([]attr{{oid: oidC, tag: tagPrintable, text: "NL"}, {oid: oidO, tag: tagUTF8, text: pickOne(r, []string{"Partner A", "Partner B"})}})}
}

func asnOID(arcs ...int) []byte { return mustOID(arcs) }

// randomSANs draws the leaf's SANs with an emphasis on the case's class.
func randomSANs(r *rand.Rand, class string) []generalName {
	n := 1 + r.IntN(3)
	var out []generalName
	for range n {
		out = append(out, randomSAN(r, class))
	}
	return out
}

func randomSAN(r *rand.Rand, class string) generalName {
	odd := r.IntN(100) < 25
	kind := r.IntN(100)
	switch class {
	case "names-dns":
		kind = 0
	case "names-uri":
		kind = 50
	case "names-email-ip":
		kind = 70 + r.IntN(30)
	}
	switch {
	case kind < 45:
		if odd {
			return dnsName(pickOne(r, oddDNS))
		}
		return dnsName(pickOne(r, plainDNS))
	case kind < 70:
		if odd {
			return uriName(pickOne(r, oddURI))
		}
		return uriName(pickOne(r, plainURI))
	case kind < 82:
		return emailName(pickOne(r, emails))
	case kind < 95:
		return ipName(pickOne(r, ips))
	}
	return otherNames(r)
}

// patternsFor: patterns derived from one SAN; the first admits it (when the SAN can be
// admitted at all), the others are near misses or admit it another way.
func patternsFor(r *rand.Rand, g generalName) []string {
	s := string(g.value)
	switch g.kind {
	case gnDNS:
		// Patterns are host names (a malformed one is a configuration error, drawn separately):
		// an odd SAN gets the host name it resembles, which must not admit it.
		s = asHostName(s)
		out := []string{flipCase(r, s)}
		if _, rest, ok := strings.Cut(s, "."); ok && strings.Contains(rest, ".") {
			out = append(out, "*."+rest, rest)
		}
		return append(out, "*."+s)
	case gnURI:
		if !hasURIScheme(s) {
			return []string{"spiffe://a.example/*"} // no pattern names a URI without "scheme://"
		}
		out := []string{s, s + "/"}
		if i := strings.Index(s, "://"); i > 0 {
			rest := s[i+3:]
			if slash := strings.IndexByte(rest, '/'); slash > 0 {
				segs := strings.Split(rest[slash+1:], "/")
				cut := r.IntN(len(segs))
				out = append(out, s[:i+3]+rest[:slash+1]+strings.Join(segs[:cut], "/")+trailingSlash(cut)+"*")
				out = append(out, s[:i+3]+rest[:slash+1]+"*")
			}
		}
		return out
	case gnEmail:
		return []string{s, strings.ToUpper(s)}
	case gnIP:
		a, _ := netip.AddrFromSlice(g.value)
		out := []string{a.String()}
		if a.Is6() {
			out = append(out, expandIPv6(a))
		}
		return out
	}
	return []string{"svc.a.example"}
}

// asHostName: the host name an odd dNSName resembles (lower-cased, a leading "*." or "-" and a
// trailing dot dropped, other characters outside letters, digits, '-' and '.' removed).
func asHostName(s string) string {
	s = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(s), "."), "*.")
	var b strings.Builder
	for _, c := range s {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' {
			b.WriteRune(c)
		}
	}
	out := strings.TrimPrefix(strings.ReplaceAll(b.String(), "..", "."), "-")
	if !isHostName(out) {
		return "svc.a.example"
	}
	return out
}

func trailingSlash(n int) string {
	if n == 0 {
		return ""
	}
	return "/"
}

func flipCase(r *rand.Rand, s string) string {
	if r.IntN(2) == 0 {
		return s
	}
	return strings.ToUpper(s)
}

func expandIPv6(a netip.Addr) string {
	b := a.As16()
	var parts []string
	for i := 0; i < 16; i += 2 {
		parts = append(parts, fmt.Sprintf("%04x", uint16(b[i])<<8|uint16(b[i+1])))
	}
	return strings.Join(parts, ":")
}

// decoyPatterns admit none of the generated names (or only by accident of the universe).
var decoyPatterns = []string{"nobody.example", "*.nowhere.example", "spiffe://c.example/*",
	"nobody@c.example", "203.0.113.9", "spiffe://a.example/other/*"}

// invalidPatterns are configuration errors by the spec.
var invalidPatterns = []string{"a_b.a.example", "*.*.a.example", "spiffe://a.example/x/../*", "svc.a.example.",
	"spiffe://a.example//*", "svc*.a.example", "*"}

// Subjects.

var cnValues = []string{"svc-payments", "svc-api", "web", "Ünïcødé svc", "a,b+c;d", `x=y"z`, "#hash",
	"svc-*lit", "日本語", "emoji 😀", "Svc-Payments", "svc-api  2"}

var oValues = []string{"Partner A", "Partner B", "partner  a", "PARTNER A", "Other Org"}

// randomSubject: most general first; sometimes empty.
func randomSubject(r *rand.Rand, class string) []attr {
	if r.IntN(100) < 4 {
		return nil
	}
	var attrs []attr
	add := func(p int, a attr) {
		if r.IntN(100) < p {
			attrs = append(attrs, a)
		}
	}
	add(80, attr{oid: oidC, tag: tagPrintable, text: pickOne(r, []string{"NL", "NL", "DE"})})
	add(15, attr{oid: oidDC, tag: tagIA5, text: "example"})
	add(85, attr{oid: oidO, text: pickOne(r, oValues)})
	add(30, attr{oid: oidOU, text: pickOne(r, []string{"Eng", "Blocked"})})
	add(10, attr{oid: oidL, text: "Amsterdam"})
	add(10, attr{oid: oidST, text: "Noord-Holland"})
	add(90, attr{oid: oidCN, text: pickOne(r, cnValues)})
	add(15, attr{oid: oidEmailAddress, tag: tagIA5, text: pickOne(r, []string{"svc@a.example", "x@b.example", "y@mail.a.example"})})
	add(8, attr{oid: oidUID, text: "u123"})
	add(8, attr{oid: oidSerialNumber, tag: tagPrintable, text: "42"})
	for i := range attrs {
		if attrs[i].tag == 0 {
			attrs[i].tag = pickStringTag(r, attrs[i].text, class == "dirstring")
		}
	}
	if class == "dirstring" && r.IntN(100) < 10 && len(attrs) > 0 {
		attrs[r.IntN(len(attrs))].raw = pickOne(r, [][]byte{{0x00}, {0xd8, 0x00}, {0xff, 0xfe, 0x41}})
	}
	return attrs
}

// pickStringTag draws a string type able to hold text (wide reaches for the rarer ones).
func pickStringTag(r *rand.Rand, text string, wide bool) byte {
	tags := []byte{tagUTF8, tagUTF8, tagUTF8, tagPrintable, tagBMP}
	if wide {
		tags = []byte{tagUTF8, tagPrintable, tagBMP, tagTeletex, tagUniversal, tagIA5}
	} else if r.IntN(100) < 8 {
		tags = []byte{tagTeletex, tagUniversal, tagIA5}
	}
	for {
		tag := tags[r.IntN(len(tags))]
		if canHold(tag, text) {
			return tag
		}
	}
}

func canHold(tag byte, text string) bool {
	for _, c := range text {
		switch {
		case tag == tagPrintable && (c > 127 || !isPrintableChar(byte(c))),
			tag == tagIA5 && c > 127,
			tag == tagTeletex && c > 255,
			tag == tagBMP && c > 0xffff:
			return false
		}
	}
	return true
}

// subjectPatternsFor renders the subject in RFC 4514, sometimes exactly, sometimes with a
// variation that still matches (type case, dotted OIDs, hex escapes, #hex, a CN prefix) or
// one that does not (a dropped or swapped RDN, another value's case, another encoding's #hex).
func subjectPatternsFor(r *rand.Rand, attrs []attr) []string {
	if len(attrs) == 0 {
		return []string{"CN=nobody"}
	}
	render := func(mod func(i int, a attr) string) string {
		var parts []string
		for i := len(attrs) - 1; i >= 0; i-- {
			parts = append(parts, mod(i, attrs[i]))
		}
		return strings.Join(parts, ",")
	}
	plain := func(i int, a attr) string { return typeName(r, a) + "=" + escapeValue(r, a.text) }
	out := []string{render(plain)}
	pick := r.IntN(len(attrs))
	switch r.IntN(6) {
	case 0: // #hex of the attribute as encoded: matches
		out = append(out, render(func(i int, a attr) string {
			if i == pick {
				return typeName(r, a) + "=#" + hex.EncodeToString(encodeTLV(a.tag, a.content()))
			}
			return plain(i, a)
		}))
	case 1: // #hex of another encoding of the same text: does not match
		out = append(out, render(func(i int, a attr) string {
			if i == pick {
				other := byte(tagUTF8)
				if a.tag == tagUTF8 {
					other = tagBMP
				}
				return typeName(r, a) + "=#" + hex.EncodeToString(encodeTLV(other, encodeString(other, a.text)))
			}
			return plain(i, a)
		}))
	case 2: // CN prefix
		out = append(out, render(func(i int, a attr) string {
			if a.oid.Equal(oidCN) && a.text != "" {
				return typeName(r, a) + "=" + escapeValue(r, a.text[:prefixCut(r, a.text)]) + "*"
			}
			return plain(i, a)
		}))
	case 3: // one RDN dropped
		if len(attrs) > 1 {
			var parts []string
			for i := len(attrs) - 2; i >= 0; i-- {
				parts = append(parts, plain(i, attrs[i]))
			}
			out = append(out, strings.Join(parts, ","))
		}
	case 4: // a value's case changed
		out = append(out, render(func(i int, a attr) string {
			if i == pick {
				return typeName(r, a) + "=" + escapeValue(r, strings.ToUpper(a.text))
			}
			return plain(i, a)
		}))
	case 5: // order reversed (RFC 4514 order is most specific first)
		var parts []string
		for _, a := range attrs {
			parts = append(parts, plain(0, a))
		}
		out = append(out, strings.Join(parts, ","))
	}
	return out
}

// prefixCut: a cut point on a rune boundary.
func prefixCut(r *rand.Rand, s string) int {
	n := r.IntN(len(s) + 1)
	for n > 0 && !utf8.RuneStart(s[n%len(s)]) && n < len(s) {
		n--
	}
	return n
}

func typeName(r *rand.Rand, a attr) string {
	if r.IntN(100) < 15 {
		return a.oid.String()
	}
	for name, oid := range attributeNames {
		if oid.Equal(a.oid) {
			canonical := map[string]string{"cn": "CN", "o": "O", "ou": "OU", "c": "C", "l": "L", "st": "ST", "dc": "DC",
				"uid": "UID", "emailaddress": "emailAddress", "serialnumber": "serialNumber"}[name]
			if r.IntN(100) < 15 {
				return strings.ToLower(canonical)
			}
			return canonical
		}
	}
	return a.oid.String()
}

// escapeValue: RFC 4514 escapes (the specials, a leading '#' or space, a trailing space), a
// literal '*' as "\*", and sometimes non-ASCII as \XX hex pairs.
func escapeValue(r *rand.Rand, s string) string {
	hexAll := r.IntN(100) < 20
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(`"+,;<>\*`, c) >= 0,
			c == '#' && i == 0, c == ' ' && (i == 0 || i == len(s)-1):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x80 && hexAll:
			fmt.Fprintf(&b, "\\%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
