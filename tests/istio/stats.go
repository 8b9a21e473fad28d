package oracle

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"istio.io/istio/pkg/bootstrap"
	"istio.io/istio/pkg/bootstrap/platform"
	"istio.io/istio/pkg/config/mesh"
)

// IstioStatsConfig is the stats_config pilot-agent writes into a gateway's bootstrap: Istio's
// own bootstrap code (pkg/bootstrap) rendering Istio's own template
// (tools/packaging/common/envoy_bootstrap.json) for a router node with the Pod's
// annotations (sidecar.istio.io/statsInclusionPrefixes and the like). Its stats_matcher decides
// which of Envoy's stats Prometheus can scrape at all.
func IstioStatsConfig(t testing.TB, annotations map[string]string) map[string]any {
	t.Helper()
	meta, err := json.Marshal(map[string]any{"ANNOTATIONS": annotations})
	if err != nil {
		t.Fatal(err)
	}
	node, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{
		ID:          "router~127.0.0.1~gateway.peergate-ingress~peergate-ingress.svc.cluster.local",
		Envs:        []string{"ISTIO_METAJSON_ANNOTATIONS=" + string(meta)},
		Platform:    &platform.Unknown{},
		InstanceIPs: []string{"127.0.0.1"},
		ProxyConfig: mesh.DefaultProxyConfig(),
	})
	if err != nil {
		t.Fatalf("Istio's node metadata: %v", err)
	}
	template := filepath.Join(IstioSourceDir(), "tools/packaging/common/envoy_bootstrap.json")
	var rendered bytes.Buffer
	if err := bootstrap.New(bootstrap.Config{Node: node}).WriteTo(template, &rendered); err != nil {
		t.Fatalf("Istio's bootstrap template: %v", err)
	}
	var whole map[string]any
	if err := json.Unmarshal(rendered.Bytes(), &whole); err != nil {
		t.Fatalf("Istio's bootstrap is not JSON: %v", err)
	}
	stats, ok := whole["stats_config"].(map[string]any)
	if !ok || stats["stats_matcher"] == nil {
		t.Fatalf("Istio's bootstrap has no stats_config.stats_matcher: %v", whole["stats_config"])
	}
	return stats
}
