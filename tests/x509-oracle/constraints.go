package x509oracle

// The name-constraint forms the oracle enforces itself (RFC 5280 4.2.1.10): directoryName
// (Go does not), rfc822Name and URI (Go reads a host constraint "example.com" as also holding
// its subdomains, where RFC 5280 says it names that host only), DNS names that are not host
// names (Go refuses them under any constraint, of any form), and the forms nobody compares.
// Go keeps DNS and IP: the oracle hands Go a view of the leaf without the names it checks here
// (see goview.go).

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// leafNames are the names of the leaf that constraints bind.
type leafNames struct {
	subject   dn
	sans      []generalName
	hasSANExt bool
}

// checkOwnConstraints applies one CA's nameConstraints to the leaf's names, for the forms
// above.
func checkOwnConstraints(nc nameConstraints, leaf leafNames) error {
	if err := checkDirNames(nc, leaf); err != nil {
		return err
	}
	for _, g := range leaf.sans {
		if err := checkOwnSAN(nc, g); err != nil {
			return err
		}
	}
	// RFC 5280: with rfc822Name constraints and no subjectAltName, the subject's emailAddress
	// attributes are bound by them.
	if !leaf.hasSANExt {
		for _, rdn := range leaf.subject {
			for _, a := range rdn {
				if !a.oid.Equal(oidEmailAddress) {
					continue
				}
				text, err := decodeString(a.value.tag, a.value.content)
				if err != nil && hasForm(nc, gnEmail) {
					return errors.New("undecodable subject emailAddress under email constraints")
				}
				if err := checkForm(nc, gnEmail, func(c string) (bool, error) { return emailWithin(text, c) }); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkOwnSAN(nc nameConstraints, g generalName) error {
	name := string(g.value)
	switch g.kind {
	case gnEmail:
		return checkForm(nc, gnEmail, func(c string) (bool, error) { return emailWithin(name, c) })
	case gnURI:
		return checkForm(nc, gnURI, func(c string) (bool, error) { return uriWithin(name, c) })
	case gnDNS:
		if isHostName(name) {
			return nil // Go's part
		}
		return checkOddDNS(nc, name)
	case gnOther, gnX400, gnEDI, gnRegistered:
		if hasForm(nc, g.kind) {
			return fmt.Errorf("a SAN of form %d under constraints of that form", g.kind)
		}
	}
	return nil
}

// checkForm: within some permitted subtree of the form when there are any, within no excluded
// one. within's error (a name that cannot be compared) refuses.
func checkForm(nc nameConstraints, kind int, within func(string) (bool, error)) error {
	permitted, any := false, false
	for _, g := range nc.permitted {
		if g.kind != kind {
			continue
		}
		any = true
		ok, err := within(string(g.value))
		if err != nil {
			return err
		}
		permitted = permitted || ok
	}
	if any && !permitted {
		return fmt.Errorf("a name of form %d outside the permitted subtrees", kind)
	}
	for _, g := range nc.excluded {
		if g.kind != kind {
			continue
		}
		ok, err := within(string(g.value))
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("a name of form %d inside the excluded subtree %q", kind, g.value)
		}
	}
	return nil
}

func hasForm(nc nameConstraints, kind int) bool {
	for _, g := range append(append([]generalName(nil), nc.permitted...), nc.excluded...) {
		if g.kind == kind {
			return true
		}
	}
	return false
}

// checkOddDNS: a dNSName that is not a host name (trailing dot, '_', non-ASCII, a NUL...) is
// judged by every way a consumer may read it: lower-cased without a trailing dot, and cut at
// its first NUL (a C string). Inside a permitted subtree when every reading is inside one,
// excluded when any reading is inside an excluded one.
func checkOddDNS(nc nameConstraints, name string) error {
	readings := dnsReadings(name)
	for _, reading := range readings {
		permitted, any := false, false
		for _, g := range nc.permitted {
			if g.kind == gnDNS {
				any = true
				permitted = permitted || hostWithin(reading, string(g.value), true)
			}
		}
		if any && !permitted {
			return fmt.Errorf("dNSName %q (read as %q) outside the permitted DNS subtrees", name, reading)
		}
		for _, g := range nc.excluded {
			if g.kind == gnDNS && hostWithin(reading, string(g.value), true) {
				return fmt.Errorf("dNSName %q (read as %q) inside the excluded subtree %q", name, reading, g.value)
			}
		}
	}
	return nil
}

func dnsReadings(name string) []string {
	n := strings.ToLower(name)
	out := []string{strings.TrimSuffix(n, ".")}
	if i := strings.IndexByte(n, 0); i >= 0 {
		out = append(out, strings.TrimSuffix(n[:i], "."))
	}
	return out
}

// hostWithin: a constraint ".d" holds the hosts under d; "d" holds d and, when subdomains (the
// dNSName rule), the hosts under it too. Case-insensitive.
func hostWithin(host, constraint string, subdomains bool) bool {
	host, constraint = strings.ToLower(host), strings.ToLower(constraint)
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(host, constraint) && len(host) > len(constraint)
	}
	return host == constraint || subdomains && strings.HasSuffix(host, "."+constraint)
}

// emailWithin (RFC 5280): "local@host" that mailbox (local part exact, host case-insensitive),
// "host" any mailbox at that host, ".domain" any mailbox at a host under domain. A name that
// is not a mailbox is within no subtree (so a permitted email subtree refuses it, an excluded
// one does not).
func emailWithin(email, constraint string) (bool, error) {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return false, nil
	}
	local, host := email[:at], email[at+1:]
	if cat := strings.LastIndexByte(constraint, '@'); cat >= 0 {
		return local == constraint[:cat] && strings.EqualFold(host, constraint[cat+1:]), nil
	}
	return hostWithin(host, constraint, false), nil
}

// uriWithin (RFC 5280): the constraint binds the URI's host, "host" that host, ".domain" the
// hosts under domain. A URI without a host, or whose host is an IP address, is within no
// subtree (a permitted URI subtree refuses it, an excluded one does not).
func uriWithin(uri, constraint string) (bool, error) {
	host, err := uriHost(uri)
	if err != nil {
		return false, nil
	}
	return hostWithin(host, constraint, false), nil
}

var (
	errNoHost = errors.New("URI without a host")
	errIPHost = errors.New("URI with an IP address host")
)

// uriHost reads the host of scheme://[userinfo@]host[:port]/...
func uriHost(uri string) (string, error) {
	colon := strings.IndexByte(uri, ':')
	if colon <= 0 || !strings.HasPrefix(uri[colon+1:], "//") {
		return "", errNoHost
	}
	authority := uri[colon+3:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	if strings.HasPrefix(authority, "[") {
		return "", errIPHost
	}
	if c := strings.LastIndexByte(authority, ':'); c >= 0 {
		authority = authority[:c]
	}
	if authority == "" {
		return "", errNoHost
	}
	if _, err := netip.ParseAddr(authority); err == nil {
		return "", errIPHost
	}
	return authority, nil
}

// allDecodable: every value of the name decodes (a directoryName rule cannot be applied to a
// name with a value it cannot read, even one outside the RDNs it compares).
func allDecodable(name dn) error {
	for _, rdn := range name {
		for _, a := range rdn {
			if _, err := normalizedValue(a.value); err != nil {
				return fmt.Errorf("undecodable value of %v under directoryName constraints", a.oid)
			}
		}
	}
	return nil
}

// checkDirNames: the subject (when not empty) and every directoryName SAN against the
// directoryName subtrees.
func checkDirNames(nc nameConstraints, leaf leafNames) error {
	if !hasForm(nc, gnDir) {
		return nil
	}
	var names []dn
	if len(leaf.subject) > 0 {
		names = append(names, leaf.subject)
	}
	for _, g := range leaf.sans {
		if g.kind != gnDir {
			continue
		}
		t, _, err := readTLV(g.value)
		if err != nil {
			return err
		}
		name, err := parseDN(t)
		if err != nil {
			return err
		}
		names = append(names, name)
	}
	for _, name := range names {
		if err := allDecodable(name); err != nil {
			return err
		}
		err := checkForm(nc, gnDir, func(c string) (bool, error) {
			t, _, err := readTLV([]byte(c))
			if err != nil {
				return false, err
			}
			base, err := parseDN(t)
			if err != nil {
				return false, err
			}
			return dnWithin(name, base)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
