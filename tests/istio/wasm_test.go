package oracle

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/anypb"
)

// Part 4: istio-agent's Wasm fetcher pulls each `peergate image` variant from a loopback
// registry, by the sha256 `peergate gen --wasm-image` wrote, and hands Envoy exactly the
// module's bytes.
func TestIstioAgentPullsEachImageVariant(t *testing.T) {
	pin := CurrentPin(t)
	modulePath := FilterWasm(t)
	module, err := os.ReadFile(modulePath)
	if err != nil {
		t.Fatal(err)
	}
	registry := StartRegistry(t)
	digests := map[string]string{}
	for _, variant := range []string{"compat", "wasm"} {
		t.Run(variant, func(t *testing.T) {
			layout := filepath.Join(t.TempDir(), "layout")
			digest := strings.TrimSpace(Run(t, PeergateBin(t), "image", "--wasm", modulePath, "--out", layout, "--variant", variant, "--tag", "0.1.0"))
			digests[variant] = digest
			repository := registry.Host + "/peergate/filter-" + variant
			Run(t, "skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "oci:"+layout+":0.1.0", "docker://"+repository+":0.1.0")

			out := genForPin(t, pin, "--wasm-image", repository+":0.1.0@"+digest)
			resources := pluginExtensions(t, pin, out)
			AgentFetch(t, resources, registry.Host)
			for _, resource := range resources {
				local, err := LocalModule(t, resource)
				if err != nil {
					t.Fatalf("Istio %s's agent cannot use the %s image: %v", pin.Name, variant, err)
				}
				fetched, err := os.ReadFile(local)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(fetched, module) {
					t.Fatalf("the agent hands Envoy %d bytes, not the module's %d", len(fetched), len(module))
				}
			}
		})
	}
	// The check can fail: the compat image's reference with the wasm image's digest is
	// refused, and FAIL_CLOSE puts Istio's deny-all filter where the plugin was.
	t.Run("wrong digest", func(t *testing.T) {
		if digests["compat"] == "" || digests["wasm"] == "" {
			t.Fatal("the variants above did not run")
		}
		out := genForPin(t, pin, "--wasm-image", registry.Host+"/peergate/filter-compat:0.1.0@"+digests["wasm"])
		resources := pluginExtensions(t, pin, out)
		AgentFetch(t, resources, registry.Host)
		for _, resource := range resources {
			if _, err := LocalModule(t, resource); err == nil {
				t.Fatal("the agent loaded a module whose digest does not match")
			} else {
				t.Logf("as expected: %v", err)
			}
		}
	})
}

// pluginExtensions are the ECDS resources istiod generates for the generated plugin, for the
// gateway it selects.
func pluginExtensions(t *testing.T, pin Pin, out Output) []*anypb.Any {
	t.Helper()
	generated := out.Objects(t, "cluster-b")
	cl, world := clusterB(t, pin, out)
	plugin := ReadPlugin(t, generated)
	_, gateway := ourGateway(t, generated, world)
	x := cl.Generate(t, cl.Proxy(t, gateway.GetNamespace(), gateway.GetName(), true))
	loaded := x.wasmExtensions(t, plugin.ResourceName())
	var resources []*anypb.Any
	for i, ext := range x.Extensions {
		if _, ok := loaded[ext.GetName()]; ok {
			resources = append(resources, x.ExtensionsRaw[i])
		}
	}
	if len(resources) == 0 {
		t.Fatalf("istiod generated no ECDS resource for %s", plugin.ResourceName())
	}
	return resources
}
