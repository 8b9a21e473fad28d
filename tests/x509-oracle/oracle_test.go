package x509oracle

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/cryptotest"
	"time"
)

// casesPerWorld: leaves drawn against one PKI (its CAs and CRLs are signed once).
const casesPerWorld = 30

// TestOracle generates ORACLE_CASES cases (default 100 000) from ORACLE_SEED (default 1),
// judges each with peergate (PEERGATE_X509_JUDGE) and with the oracle, and fails on any
// unsafe admission or unexplained strictness.
func TestOracle(t *testing.T) {
	judgePath := os.Getenv("PEERGATE_X509_JUDGE")
	if judgePath == "" {
		t.Fatal("PEERGATE_X509_JUDGE is not set: build the judge (cargo build -p peergate-x509-judge) and point it at target/debug/peergate-x509-judge")
	}
	if _, err := os.Stat(judgePath); err != nil {
		t.Fatalf("PEERGATE_X509_JUDGE: %v", err)
	}
	seed := envUint(t, "ORACLE_SEED", 1)
	total := int(envUint(t, "ORACLE_CASES", 100000))
	workers := int(envUint(t, "ORACLE_WORKERS", 2))
	judges := int(envUint(t, "ORACLE_JUDGES", 2))
	cryptotest.SetGlobalRandom(t, seed)
	start := time.Now()
	keys := newKeyPool()
	t.Logf("key pool ready in %.1fs", time.Since(start).Seconds())

	sum := newSummary(seed)
	toJudge, results := make(chan judged, 512), make(chan judged, 512)
	generate(seed, total, workers, keys, toJudge)
	judgeErrs := make(chan error, judges)
	var jwg sync.WaitGroup
	for range judges {
		jwg.Add(1)
		go func() {
			defer jwg.Done()
			judgeErrs <- runJudge(judgePath, toJudge, results)
		}()
	}
	go func() { jwg.Wait(); close(results) }()
	dir := os.Getenv("ORACLE_FAILURES_DIR")
	for j := range results {
		if report := sum.record(j); report != "" {
			sum.keep(t.Logf, dir, j.c.id, report)
		}
	}
	close(judgeErrs)
	for err := range judgeErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sum.WallSeconds = time.Since(start).Seconds()
	t.Log("\n" + sum.String())
	if path := os.Getenv("ORACLE_SUMMARY"); path != "" {
		data, _ := json.MarshalIndent(sum, "", "  ")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Error(err)
		}
	}
	if sum.Cases != total {
		t.Errorf("judged %d cases of %d", sum.Cases, total)
	}
	if sum.UnsafeAdmissions > 0 || sum.Unexplained > 0 {
		t.Errorf("%d unsafe admissions, %d unexplained strictness (cases above; all in ORACLE_FAILURES_DIR when set)", sum.UnsafeAdmissions, sum.Unexplained)
	}
}

// generate starts the generator goroutines: each takes worlds by index (a world and its cases
// depend only on the seed and the index), judges its cases with the oracle, and sends them on.
func generate(seed uint64, total, workers int, keys keyPool, out chan<- judged) {
	worlds := make(chan int)
	go func() {
		for wi := 0; wi*casesPerWorld < total; wi++ {
			worlds <- wi
		}
		close(worlds)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wi := range worlds {
				r := rand.New(rand.NewPCG(seed, uint64(wi)))
				w := newWorld(wi, r, keys)
				for k := 0; k < casesPerWorld && wi*casesPerWorld+k < total; k++ {
					c := newCase(uint64(wi*casesPerWorld+k), r, w, keys)
					out <- judged{c: c, oracle: judgeOracle(oracleInput{config: c.config, leaf: c.leaf, goLeaf: c.goLeaf, now: c.now})}
				}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
}

func envUint(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}
