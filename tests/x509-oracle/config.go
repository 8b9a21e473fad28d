package x509oracle

// The pluginConfig the oracle sends peergate (the fields it uses), and the oracle's reading of
// it: the same JSON object, interpreted from the README.

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

type pluginConfig struct {
	TrustedIssuers    []issuerEntry `json:"trustedIssuers"`
	TrustAnchors      []string      `json:"trustAnchors,omitempty"`
	AllowedSans       []string      `json:"allowedSans"`
	AllowedSubjects   []string      `json:"allowedSubjects,omitempty"`
	CRLs              []string      `json:"crls,omitempty"`
	ExpiryWarningDays int           `json:"expiryWarningDays"`
}

// issuerEntry is a PEM string, or {certificate, scope} when Scope is set.
type issuerEntry struct {
	Certificate string
	Scope       []string
}

func (e issuerEntry) MarshalJSON() ([]byte, error) {
	if e.Scope == nil {
		return json.Marshal(e.Certificate)
	}
	return json.Marshal(struct {
		Certificate string   `json:"certificate"`
		Scope       []string `json:"scope"`
	}{e.Certificate, e.Scope})
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func crlPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// compiled is the oracle's reading of a configuration.
type compiled struct {
	trusted  []trustedCA
	anchors  []*x509.Certificate
	crls     []*x509.RevocationList
	sans     []sanPattern
	subjects []subjectPattern
}

type trustedCA struct {
	cert   *x509.Certificate
	scope  []sanPattern
	scoped bool
}

// compileConfig parses what the oracle needs. Errors are configurations the spec says are
// invalid (a malformed pattern, an empty scope, an empty allowedSans).
func compileConfig(cfg pluginConfig) (compiled, error) {
	var c compiled
	for i, e := range cfg.TrustedIssuers {
		cert, err := parseOnePEM(e.Certificate, "CERTIFICATE")
		if err != nil {
			return c, fmt.Errorf("trustedIssuers[%d]: %w", i, err)
		}
		t := trustedCA{cert: cert, scoped: e.Scope != nil}
		if t.scoped && len(e.Scope) == 0 {
			return c, fmt.Errorf("trustedIssuers[%d]: empty scope", i)
		}
		if t.scope, err = parsePatterns(e.Scope); err != nil {
			return c, fmt.Errorf("trustedIssuers[%d].scope: %w", i, err)
		}
		c.trusted = append(c.trusted, t)
	}
	for i, p := range cfg.TrustAnchors {
		cert, err := parseOnePEM(p, "CERTIFICATE")
		if err != nil {
			return c, fmt.Errorf("trustAnchors[%d]: %w", i, err)
		}
		c.anchors = append(c.anchors, cert)
	}
	for i, p := range cfg.CRLs {
		block, _ := pem.Decode([]byte(p))
		if block == nil || block.Type != "X509 CRL" {
			return c, fmt.Errorf("crls[%d]: not a PEM CRL", i)
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return c, fmt.Errorf("crls[%d]: %w", i, err)
		}
		c.crls = append(c.crls, crl)
	}
	if len(cfg.AllowedSans) == 0 {
		return c, errors.New("allowedSans: empty")
	}
	var err error
	if c.sans, err = parsePatterns(cfg.AllowedSans); err != nil {
		return c, fmt.Errorf("allowedSans: %w", err)
	}
	for i, s := range cfg.AllowedSubjects {
		p, err := parseSubjectPattern(s)
		if err != nil {
			return c, fmt.Errorf("allowedSubjects[%d]: %w", i, err)
		}
		c.subjects = append(c.subjects, p)
	}
	return c, nil
}

func parseOnePEM(text, kind string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != kind || len(rest) != 0 {
		return nil, errors.New("not one PEM " + kind)
	}
	return x509.ParseCertificate(block.Bytes)
}

func parsePatterns(list []string) ([]sanPattern, error) {
	var out []sanPattern
	for _, s := range list {
		p, err := parseSANPattern(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}
