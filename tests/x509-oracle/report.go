package x509oracle

// Comparing the verdicts: agreement, unsafe admission (peergate admits what the oracle
// refuses: the test fails), or peergate stricter, which must be one of the deliberate
// strictnesses below (else the test fails too).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// strictness is a deliberate refusal of peergate's that the oracle admits: the reason code
// (or "config" for a configuration error) and the fact about the case that explains it.
type strictness struct {
	class  string
	reason string
	holds  func(facts) bool
}

var deliberate = []strictness{
	// README, client profile: a CA certificate is no client, whatever Go's chain says.
	{"leaf_is_ca", "leaf_is_ca", func(f facts) bool { return f.leafIsCA }},
	// README, client profile: a keyUsage without digitalSignature cannot sign the handshake (Go ignores leaf keyUsage).
	{"not_client_auth/key_usage", "not_client_auth", func(f facts) bool { return f.leafKUNoDigitalSig }},
	// README, client profile: a critical extension peergate does not read (Go handles certificatePolicies).
	{"unknown_critical_extension", "unknown_critical_extension", func(f facts) bool { return f.leafCritUnread }},
	// README: the authority key identifier must be the trusted issuer's (Go only uses it to order candidates).
	{"issuer_key_id_mismatch", "issuer_key_id_mismatch", func(f facts) bool { return f.leafAKIDMismatch }},
	// README: the subject's emailAddress is held to email constraints always (RFC 5280 only asks it without SANs).
	{"outside_name_constraints/subject_email", "outside_name_constraints", func(f facts) bool { return f.subjectEmailUnderNC }},
	// README: a URI SAN without a host is refused under any URI constraint (RFC 5280 leaves it undefined; the oracle reads it as within no subtree).
	{"outside_name_constraints/uri_without_host", "outside_name_constraints", func(f facts) bool { return f.uriNoHostUnderNC }},
	// README: a dNSName with a control character is outside every DNS subtree (a NUL cuts it short for C readers; the oracle reads it both ways and may find both inside).
	{"outside_name_constraints/dns_control_character", "outside_name_constraints", func(f facts) bool { return f.dnsControlUnderNC }},
	// README: a configured CA with a critical extension peergate does not process refuses the configuration.
	{"config/ca_critical_extension", "config", func(f facts) bool { return f.caCritUnprocessed }},
	// README: a trusted issuer listed twice (with different scopes) is ambiguous, refused.
	{"config/duplicate_issuer", "config", func(f facts) bool { return f.duplicateIssuer }},
	// README: each CRL must be signed by a trusted issuer or anchor of its name, else the configuration is refused.
	{"config/crl_unsigned", "config", func(f facts) bool { return f.crlUnsigned }},
	// README: every trusted issuer needs keyCertSign when keyUsage is present (Go ignores CA keyUsage).
	{"config/ca_without_keycertsign", "config", func(f facts) bool { return f.caKUNoCertSign }},
	// peergate (told by its engineer): a trusted issuer whose extendedKeyUsage excludes clientAuth can vouch for no client, so the configuration is refused (Go refuses only the leaves under it).
	{"config/ca_eku_without_clientauth", "config", func(f facts) bool { return f.caEKUNoClient }},
	// README: with trustAnchors, one trusted issuer that does not chain refuses the whole configuration.
	{"config/anchor_chain_broken", "config", func(f facts) bool { return f.anchorChainBroken }},
}

// explain finds the deliberate strictness behind a refusal the oracle does not share.
func explain(j judged) (string, bool) {
	reason := j.answer.Reason
	if j.answer.Error != "" {
		reason = "config"
	}
	f := caseFacts(j.c)
	for _, s := range deliberate {
		if s.reason == reason && s.holds(f) {
			return s.class, true
		}
	}
	return reason, false
}

// summary is what a run prints and writes to ORACLE_SUMMARY.
type summary struct {
	mu               sync.Mutex
	Seed             uint64         `json:"seed"`
	Cases            int            `json:"cases"`
	WallSeconds      float64        `json:"wallSeconds"`
	PerClass         map[string]int `json:"casesPerClass"`
	Agreements       int            `json:"agreements"`
	AgreedAdmissions int            `json:"agreedAdmissions"`
	AgreedRefusals   int            `json:"agreedRefusals"`
	UnsafeAdmissions int            `json:"unsafeAdmissions"`
	UnsafeByClass    map[string]int `json:"unsafeByClass"`
	Deliberate       map[string]int `json:"deliberateStrictness"`
	Unexplained      int            `json:"unexplainedStrictness"`
	UnexplainedByWhy map[string]int `json:"unexplainedByReason"`
	PeergateReasons  map[string]int `json:"peergateReasons"`
	ConfigErrors     int            `json:"configErrors"`
	ConfigErrorKinds map[string]int `json:"configErrorKinds"`
	// ConfigErrorExamples: the first full text of each kind.
	ConfigErrorExamples map[string]string `json:"configErrorExamples"`
	GoViewTwins         int               `json:"goViewTwins"`
	printed, written    int
}

func newSummary(seed uint64) *summary {
	return &summary{Seed: seed, PerClass: map[string]int{}, UnsafeByClass: map[string]int{}, Deliberate: map[string]int{},
		UnexplainedByWhy: map[string]int{}, PeergateReasons: map[string]int{}, ConfigErrorKinds: map[string]int{}, ConfigErrorExamples: map[string]string{}}
}

// record tallies one judged case and returns a report when it is a failure.
func (s *summary) record(j judged) (failure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Cases++
	s.PerClass[j.c.class]++
	if j.c.hasFeature("go-view-twin") {
		s.GoViewTwins++
	}
	reason := j.answer.Reason
	if j.answer.Error != "" {
		reason = "config error"
		s.ConfigErrors++
		kind := errorKind(j.answer.Error)
		if s.ConfigErrorKinds[kind] == 0 {
			s.ConfigErrorExamples[kind] = j.answer.Error
		}
		s.ConfigErrorKinds[kind]++
	}
	s.PeergateReasons[reason]++
	admits := j.answer.Error == "" && j.answer.Reason == "allowed"
	switch {
	case admits == j.oracle.admit:
		s.Agreements++
		if admits {
			s.AgreedAdmissions++
		} else {
			s.AgreedRefusals++
		}
		return ""
	case admits:
		s.UnsafeAdmissions++
		s.UnsafeByClass[j.c.class]++
		return describe("UNSAFE ADMISSION", j)
	}
	if class, ok := explain(j); ok {
		s.Deliberate[class]++
		return ""
	}
	key := reason
	if j.answer.Error != "" {
		key = "config: " + errorKind(j.answer.Error)
	}
	s.Unexplained++
	s.UnexplainedByWhy[key]++
	return describe("UNEXPLAINED STRICTNESS", j)
}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	digits = regexp.MustCompile(`[0-9]+`)
)

// errorKind: a configuration error's text without its quoted names and numbers.
func errorKind(text string) string {
	return firstWords(digits.ReplaceAllString(quoted.ReplaceAllString(text, `"…"`), "N"), 10)
}

func firstWords(s string, n int) string {
	words := strings.Fields(s)
	if len(words) > n {
		words = words[:n]
	}
	return strings.Join(words, " ")
}

func (c *oracleCase) hasFeature(f string) bool {
	for _, x := range c.features {
		if x == f {
			return true
		}
	}
	return false
}

// describe prints a case completely: enough to reproduce it without the generator.
func describe(kind string, j judged) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=== %s: case %d (class %s, world %d)\n", kind, j.c.id, j.c.class, j.c.world)
	fmt.Fprintf(&b, "peergate: reason=%q error=%q\n", j.answer.Reason, j.answer.Error)
	fmt.Fprintf(&b, "oracle:   admit=%v why=%q\n", j.oracle.admit, j.oracle.why)
	fmt.Fprintf(&b, "now: %d\nfeatures: %s\n", j.c.now, strings.Join(j.c.features, " "))
	cfg, _ := json.MarshalIndent(j.c.config, "", "  ")
	fmt.Fprintf(&b, "config:\n%s\nleaf:\n%s", cfg, certPEM(j.c.leaf))
	if j.c.hasFeature("go-view-twin") {
		fmt.Fprintf(&b, "leaf as Go verified it (twin):\n%s", certPEM(j.c.goLeaf))
	}
	return b.String()
}

// keep prints the first failures and writes every one to ORACLE_FAILURES_DIR.
func (s *summary) keep(logf func(string, ...any), dir string, id uint64, report string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.printed < 5 {
		logf("%s", report)
		s.printed++
	}
	if dir != "" && s.written < 1000 {
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("case-%07d.txt", id)), []byte(report), 0o644)
		s.written++
	}
}

func (s *summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "x509 oracle, seed %d: %d cases in %.1fs\n", s.Seed, s.Cases, s.WallSeconds)
	fmt.Fprintf(&b, "  agreements: %d (%d admitted, %d refused by both)\n", s.Agreements, s.AgreedAdmissions, s.AgreedRefusals)
	fmt.Fprintf(&b, "  unsafe admissions: %d %s\n", s.UnsafeAdmissions, sortedCounts(s.UnsafeByClass))
	fmt.Fprintf(&b, "  deliberate strictness: %s\n", sortedCounts(s.Deliberate))
	fmt.Fprintf(&b, "  unexplained strictness: %d %s\n", s.Unexplained, sortedCounts(s.UnexplainedByWhy))
	fmt.Fprintf(&b, "  cases per class: %s\n", sortedCounts(s.PerClass))
	fmt.Fprintf(&b, "  peergate's reasons: %s\n", sortedCounts(s.PeergateReasons))
	fmt.Fprintf(&b, "  configuration errors: %d %s\n", s.ConfigErrors, sortedCounts(s.ConfigErrorKinds))
	fmt.Fprintf(&b, "  Go-view twins: %d\n", s.GoViewTwins)
	return b.String()
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
