package oracle

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	networkwasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pkg/util/sets"
	"istio.io/istio/pkg/wasm"
)

// AgentFetch does to ECDS resources what istio-agent does before Envoy sees them
// (pkg/wasm, MaybeConvertWasmExtensionConfig, called by the agent's xDS proxy): every Wasm
// module with a remote URL is downloaded into the agent's cache, its checksum checked, and
// the resource rewritten to load the local file; a module that cannot be fetched becomes
// Istio's deny-all (FAIL_CLOSE) or allow-all (FAIL_OPEN) RBAC filter in its place. The
// resources are changed in place. insecure lists registries reached over plain HTTP.
func AgentFetch(t testing.TB, resources []*anypb.Any, insecure ...string) {
	t.Helper()
	// One cache folder for the whole run, as one agent keeps one: a module fetched again for
	// a later push lands at the same path (pkg/wasm/cache.go, getModulePath), so a push that
	// changes nothing else leaves the ECDS resource unchanged.
	cache := wasm.NewLocalFileCache(agentCacheDir(t), wasm.Options{
		PurgeInterval:         time.Hour,
		ModuleExpiry:          time.Hour,
		InsecureRegistries:    sets.New(insecure...),
		HTTPRequestTimeout:    15 * time.Second,
		HTTPRequestMaxRetries: 2,
	})
	t.Cleanup(cache.Cleanup)
	if err := wasm.MaybeConvertWasmExtensionConfig(resources, cache); err != nil {
		t.Fatalf("istio-agent's Wasm conversion: %v", err)
	}
}

var (
	agentCacheOnce sync.Once
	agentCache     string
	agentCacheErr  error
)

func agentCacheDir(t testing.TB) string {
	t.Helper()
	agentCacheOnce.Do(func() { agentCache, agentCacheErr = os.MkdirTemp("", "peergate-oracle-wasm-") })
	if agentCacheErr != nil {
		t.Fatal(agentCacheErr)
	}
	return agentCache
}

// LocalModule is the file a converted ECDS resource makes Envoy load, or why there is none
// (the agent put an RBAC filter in the plugin's place).
func LocalModule(t testing.TB, resource *anypb.Any) (string, error) {
	t.Helper()
	ext := unpack[*core.TypedExtensionConfig](t, resource)
	var config *wasmv3.PluginConfig
	switch ext.GetTypedConfig().GetTypeUrl() {
	case "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm":
		config = unpack[*httpwasm.Wasm](t, ext.GetTypedConfig()).GetConfig()
	case "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm":
		config = unpack[*networkwasm.Wasm](t, ext.GetTypedConfig()).GetConfig()
	default:
		return "", fmt.Errorf("the agent replaced the plugin %s with %s (its fallback for a module it could not fetch)", ext.GetName(), ext.GetTypedConfig().GetTypeUrl())
	}
	local := config.GetVmConfig().GetCode().GetLocal().GetFilename()
	if local == "" {
		return "", fmt.Errorf("the plugin %s still loads %v", ext.GetName(), config.GetVmConfig().GetCode())
	}
	return local, nil
}

// Registry is a CNCF distribution registry (Debian's docker-registry) on a free loopback
// port, as tests/oci_registry.rs runs it.
type Registry struct {
	// Host is host:port.
	Host string
}

// StartRegistry starts it for the test's duration.
func StartRegistry(t testing.TB) Registry {
	t.Helper()
	dir := t.TempDir()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := listener.Addr().String()
	listener.Close()
	config := filepath.Join(dir, "config.yml")
	text := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), host)
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", config)
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start docker-registry (%v): install it with `cargo make install-oci-tools`", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		response, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return Registry{Host: host}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry did not answer on %s", host)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Run runs a tool and returns its standard output, failing the test (never skipping) when
// it is missing or fails.
func Run(t testing.TB, program string, args ...string) string {
	t.Helper()
	cmd := exec.Command(program, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", program, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}
