package oracle

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// Part 7: the metrics `gen` with [monitoring] alerts on and charts are the ones a gateway exports,
// by Istio's own rules: the gateway's Envoy runs with the stats_config Istio's bootstrap code
// renders for its Pod, and every name in the PrometheusRule and the dashboard is read from its
// /stats/prometheus (pilot-agent's port 15020 passes those lines through unchanged:
// pilot/cmd/pilot-agent/status/server.go). istio-agent's own Wasm metrics are checked in this
// pin's source, where they are defined.

var metricName = regexp.MustCompile(`\b(peergate_[a-z_]+|istio_agent_[a-z_]+)`)

// namesIn lists the metric names a generated file names; a name ending in "_" is the prefix of
// a family the dashboard matches by regex (peergate_denied_<reason>).
func namesIn(t *testing.T, files ...string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range metricName.FindAllString(string(data), -1) {
			seen[name] = true
		}
	}
	var names []string
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestMonitoringMetricsOnIstiosStats(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)
	flags := []string{"--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t)}
	// The PrometheusRule and dashboard are prometheus-operator's and Grafana's, not Istio's:
	// the meshes run the same output without them.
	monitored := GenWithConfig(t, "[monitoring]\n", flags...)
	m := StartTwoMeshes(t, pin, GenWithConfig(t, "", flags...), WithIstioStats())
	if status, body := m.Hello(t); status != http.StatusOK {
		t.Fatalf("the application got %d %q\ngateway log:\n%s", status, body, m.Gateway.Log())
	}
	m.Gateway.WaitCounter("wasmcustom.peergate.allowed", 1)
	status, exported := m.Gateway.adminGet("/stats/prometheus")
	if status != http.StatusOK {
		t.Fatalf("/stats/prometheus: %d", status)
	}
	// Istio's matcher is in force: its admitted prefixes are there, Envoy's HTTP stats are not.
	if !strings.Contains(exported, "# TYPE envoy_server_live ") || strings.Contains(exported, "envoy_http_downstream_rq_total") {
		t.Fatalf("the gateway's stats are not filtered by Istio's stats_matcher")
	}
	names := namesIn(t,
		filepath.Join(monitored.Dir, "cluster-b", "prometheusrule.yaml"),
		filepath.Join(monitored.Dir, "cluster-b", "configmap-peergate-dashboard.yaml"))
	agentSource := readIstioSource(t, "pkg/wasm/monitoring.go")
	var checked []string
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, "istio_agent_"):
			// pkg/wasm/monitoring.go defines them without the prefix; istio-agent's
			// registry adds istio_agent_ (pkg/istio-agent/metrics, status server).
			if !strings.Contains(agentSource, `"`+strings.TrimPrefix(name, "istio_agent_")+`"`) {
				t.Errorf("%s: Istio %s defines no such Wasm metric", name, pin.Name)
			}
		case strings.HasSuffix(name, "_"):
			if !strings.Contains(exported, "# TYPE "+name) {
				t.Errorf("no metric of the family %s* in the gateway's /stats/prometheus", name)
			}
		default:
			if !strings.Contains(exported, "# TYPE "+name+" counter\n") {
				t.Errorf("%s is not a counter in the gateway's /stats/prometheus", name)
			}
		}
		checked = append(checked, name)
	}
	for _, value := range []string{`"success"`, `"no_remote_load"`, `"istio_agent_"`} {
		source := agentSource
		if value == `"istio_agent_"` {
			source = readIstioSource(t, "pilot/cmd/pilot-agent/status/server.go")
		}
		if !strings.Contains(source, value) {
			t.Errorf("Istio %s's source has no %s", pin.Name, value)
		}
	}
	if len(checked) < 10 {
		t.Fatalf("only %v named", checked)
	}
	t.Logf("checked on Istio %s's stats: %s", pin.Name, strings.Join(checked, ", "))
}

func readIstioSource(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(IstioSourceDir(), path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
