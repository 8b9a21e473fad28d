package x509oracle

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestReplay re-judges failure reports (files written to ORACLE_FAILURES_DIR, named in
// ORACLE_REPLAY, space-separated) with the oracle, and with peergate when PEERGATE_X509_JUDGE
// is set: a fix on either side can be checked against the cases that showed the problem.
func TestReplay(t *testing.T) {
	files := strings.Fields(os.Getenv("ORACLE_REPLAY"))
	if len(files) == 0 {
		t.Skip("ORACLE_REPLAY names no failure report")
	}
	for _, file := range files {
		c, err := readReport(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		v := judgeOracle(oracleInput{config: c.config, leaf: c.leaf, goLeaf: c.goLeaf, now: c.now})
		t.Logf("%s: oracle admit=%v why=%q", file, v.admit, v.why)
		if path := os.Getenv("PEERGATE_X509_JUDGE"); path != "" {
			in, out := make(chan judged, 1), make(chan judged, 1)
			in <- judged{c: c, oracle: v}
			close(in)
			if err := runJudge(path, in, out); err != nil {
				t.Fatal(err)
			}
			j := <-out
			t.Logf("%s: peergate reason=%q error=%q", file, j.answer.Reason, j.answer.Error)
		}
	}
}

var nowLine = regexp.MustCompile(`(?m)^now: (-?[0-9]+)$`)

// readReport reads back what describe wrote.
func readReport(file string) (*oracleCase, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	text := string(data)
	c := &oracleCase{}
	m := nowLine.FindStringSubmatch(text)
	if m == nil {
		return nil, os.ErrInvalid
	}
	if c.now, err = strconv.ParseInt(m[1], 10, 64); err != nil {
		return nil, err
	}
	start, end := strings.Index(text, "config:\n"), strings.Index(text, "\nleaf:\n")
	if start < 0 || end < 0 {
		return nil, os.ErrInvalid
	}
	var raw struct {
		TrustedIssuers    []json.RawMessage `json:"trustedIssuers"`
		TrustAnchors      []string          `json:"trustAnchors"`
		AllowedSans       []string          `json:"allowedSans"`
		AllowedSubjects   []string          `json:"allowedSubjects"`
		CRLs              []string          `json:"crls"`
		ExpiryWarningDays int               `json:"expiryWarningDays"`
	}
	if err := json.Unmarshal([]byte(text[start+len("config:\n"):end]), &raw); err != nil {
		return nil, err
	}
	for _, e := range raw.TrustedIssuers {
		var entry issuerEntry
		if err := json.Unmarshal(e, &entry.Certificate); err != nil {
			var obj struct {
				Certificate string   `json:"certificate"`
				Scope       []string `json:"scope"`
			}
			if err := json.Unmarshal(e, &obj); err != nil {
				return nil, err
			}
			entry = issuerEntry{Certificate: obj.Certificate, Scope: obj.Scope}
		}
		c.config.TrustedIssuers = append(c.config.TrustedIssuers, entry)
	}
	c.config.TrustAnchors, c.config.AllowedSans, c.config.AllowedSubjects = raw.TrustAnchors, raw.AllowedSans, raw.AllowedSubjects
	c.config.CRLs, c.config.ExpiryWarningDays = raw.CRLs, raw.ExpiryWarningDays
	rest := []byte(text[end:])
	var blocks [][]byte
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b.Bytes)
	}
	if len(blocks) == 0 {
		return nil, os.ErrInvalid
	}
	c.leaf, c.goLeaf = blocks[0], blocks[len(blocks)-1]
	return c, nil
}
