package oracle

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	networkwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Plugin is the peergate plugin object the generator wrote (a WasmPlugin or a
// TrafficExtension), read back.
type Plugin struct {
	Kind, Namespace, Name string
	Selector              map[string]string
	// Ports of its `match` (empty: every listener).
	Ports []int64
	URL   string
	// Config is its pluginConfig, as JSON.
	Config map[string]any
	Type   string
}

// ReadPlugin finds the plugin among cluster B's objects.
func ReadPlugin(t testing.TB, objects []*unstructured.Unstructured) Plugin {
	t.Helper()
	var found []Plugin
	for _, obj := range objects {
		var wasm map[string]any
		spec, _ := obj.Object["spec"].(map[string]any)
		switch obj.GetKind() {
		case "WasmPlugin":
			wasm = spec
		case "TrafficExtension":
			wasm, _ = spec["wasm"].(map[string]any)
		default:
			continue
		}
		p := Plugin{Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
		p.Selector, _, _ = unstructured.NestedStringMap(spec, "selector", "matchLabels")
		p.URL, _ = wasm["url"].(string)
		p.Type, _ = wasm["type"].(string)
		p.Config, _ = wasm["pluginConfig"].(map[string]any)
		matches, _, _ := unstructured.NestedSlice(spec, "match")
		for _, m := range matches {
			ports, _, _ := unstructured.NestedSlice(m.(map[string]any), "ports")
			for _, port := range ports {
				number, _ := toInt64(port.(map[string]any)["number"])
				p.Ports = append(p.Ports, number)
			}
		}
		found = append(found, p)
	}
	if len(found) != 1 {
		t.Fatalf("expected one plugin object, found %d among %s", len(found), Names(objects))
	}
	return found[0]
}

// ResourceName is how istiod names the plugin's Wasm configuration (`<namespace>.<name>`,
// pilot/pkg/model/extensions.go buildWasmConfig).
func (p Plugin) ResourceName() string { return p.Namespace + "." + p.Name }

// LoadedPlugin is the plugin as one ECDS resource delivers it.
type LoadedPlugin struct {
	// Filter is the filter name in the chain (the ECDS resource name).
	Filter string
	Config *wasmv3.PluginConfig
	// Network: a network filter (type NETWORK) rather than an HTTP filter.
	Network bool
}

// Configuration is the pluginConfig handed to the module, as JSON.
func (l LoadedPlugin) Configuration(t testing.TB) map[string]any {
	t.Helper()
	value := unpack[*wrapperspb.StringValue](t, l.Config.GetConfiguration())
	var out map[string]any
	if err := json.Unmarshal([]byte(value.GetValue()), &out); err != nil {
		t.Fatalf("the plugin's configuration is not JSON: %v: %s", err, value.GetValue())
	}
	return out
}

// wasmExtensions are the ECDS resources that load a Wasm plugin named resourceName.
func (x *XDS) wasmExtensions(t testing.TB, resourceName string) map[string]LoadedPlugin {
	t.Helper()
	out := map[string]LoadedPlugin{}
	for _, ext := range x.Extensions {
		var config *wasmv3.PluginConfig
		network := false
		switch ext.GetTypedConfig().GetTypeUrl() {
		case "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm":
			config = unpack[*httpwasm.Wasm](t, ext.GetTypedConfig()).GetConfig()
		case "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm":
			config = unpack[*networkwasm.Wasm](t, ext.GetTypedConfig()).GetConfig()
			network = true
		default:
			continue
		}
		// Istio >= 1.30 runs a WasmPlugin as a TrafficExtension named
		// `<namespace>.<name>~istio-translated-wasmplugin`.
		if config.GetName() == resourceName || strings.HasPrefix(config.GetName(), resourceName+"~") {
			out[ext.GetName()] = LoadedPlugin{Filter: ext.GetName(), Config: config, Network: network}
		}
	}
	return out
}

// ChainFilters are the filter names of a chain: its network filters and the HTTP filters
// of its connection manager.
type ChainFilters struct {
	// HTTP filter names of the chain's connection manager, in order.
	HTTP []string
	// Network filter names, in order.
	Network []string
}

// FiltersOf lists a chain's filters.
func FiltersOf(t testing.TB, chain *listener.FilterChain) ChainFilters {
	t.Helper()
	var out ChainFilters
	for _, f := range chain.GetFilters() {
		out.Network = append(out.Network, f.GetName())
		if f.GetTypedConfig().GetTypeUrl() == hcmTypeURL {
			for _, hf := range unpack[*hcm.HttpConnectionManager](t, f.GetTypedConfig()).GetHttpFilters() {
				out.HTTP = append(out.HTTP, hf.GetName())
			}
		}
	}
	return out
}

// PluginFilterNames are the names in the chain that load the plugin (through ECDS).
func (x *XDS) PluginFilterNames(t testing.TB, p Plugin, chain *listener.FilterChain) []string {
	t.Helper()
	loaded := x.wasmExtensions(t, p.ResourceName())
	filters := FiltersOf(t, chain)
	var names []string
	for _, name := range append(append([]string{}, filters.Network...), filters.HTTP...) {
		if _, ok := loaded[name]; ok {
			names = append(names, name)
		}
	}
	return names
}

// Loaded returns the ECDS resource of a filter name.
func (x *XDS) Loaded(t testing.TB, p Plugin, filter string) LoadedPlugin {
	t.Helper()
	loaded, ok := x.wasmExtensions(t, p.ResourceName())[filter]
	if !ok {
		t.Fatalf("no ECDS resource %s loads %s", filter, p.ResourceName())
	}
	return loaded
}

// ChainsServing returns the filter chains whose server names include host.
func ChainsServing(x *XDS, host string) map[*listener.FilterChain]*listener.Listener {
	out := map[*listener.FilterChain]*listener.Listener{}
	for _, l := range x.Listeners {
		for _, chain := range Chains(l) {
			for _, name := range chain.GetFilterChainMatch().GetServerNames() {
				if name == host {
					out[chain] = l
				}
			}
		}
	}
	return out
}

// ListenerPort is the port a listener binds.
func ListenerPort(l *listener.Listener) int64 {
	return int64(l.GetAddress().GetSocketAddress().GetPortValue())
}

// DownstreamTLS is the chain's TLS termination.
func DownstreamTLS(t testing.TB, chain *listener.FilterChain) *tls.DownstreamTlsContext {
	t.Helper()
	ts := chain.GetTransportSocket()
	if ts == nil {
		t.Fatalf("chain %s terminates no TLS", Describe(chain))
	}
	return unpack[*tls.DownstreamTlsContext](t, ts.GetTypedConfig())
}

// SubjectAltNames are the exact SAN matchers of a validation context (typed or not).
func SubjectAltNames(v *tls.CertificateValidationContext) []string {
	var out []string
	for _, m := range v.GetMatchTypedSubjectAltNames() {
		out = append(out, m.GetMatcher().GetExact())
	}
	for _, m := range v.GetMatchSubjectAltNames() { //nolint:staticcheck // older Istio sets this one
		out = append(out, m.GetExact())
	}
	sort.Strings(out)
	return out
}

// SameJSON compares two JSON values after a round trip (number types and key order aside).
func SameJSON(t testing.TB, a, b any) bool {
	t.Helper()
	norm := func(v any) any {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// RemoteCode is where the plugin's VM loads the module from, and the checksum.
func RemoteCode(config *wasmv3.PluginConfig) (uri, sha256 string) {
	code := config.GetVmConfig().GetCode()
	if remote := code.GetRemote(); remote != nil {
		return remote.GetHttpUri().GetUri(), remote.GetSha256()
	}
	if local := code.GetLocal(); local != nil {
		return "file://" + local.GetFilename(), ""
	}
	return "", ""
}
