package oracle

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ListenerSetMesh is a mesh.toml for a ListenerSet on the shared Gateway API gateway of
// sharedGatewayAPI, on a port of its own.
const ListenerSetMesh = `
[clusterB.gateway]
api = "kubernetes"
existing = true
name = "shared"
namespace = "edge"
listenerPort = 8443
`

// sharedGatewayAPI is another owner's Gateway API gateway as a platform team runs it: the
// Gateway `shared` in `edge`, class istio, serving the other team's host over SIMPLE TLS on
// 443, with its route and the ReferenceGrant to that team's Service (UnrelatedHost).
func sharedGatewayAPI(other Keypair) string {
	encode := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata:
  name: edge
---
apiVersion: v1
kind: Secret
metadata:
  name: other-cert
  namespace: edge
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: shared
  namespace: edge
spec:
  gatewayClassName: istio
  listeners:
  - name: other
    hostname: %s
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - {kind: Secret, name: other-cert}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: other
  namespace: edge
spec:
  parentRefs:
  - {name: shared, sectionName: other}
  hostnames: [%s]
  rules:
  - backendRefs:
    - {name: other, namespace: other-team, port: 8000}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: other-from-edge
  namespace: other-team
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: edge}
  to:
  - {group: "", kind: Service, name: other}
`, encode(other.Cert), encode(other.Key), UnrelatedHostName, UnrelatedHostName)
}

// mergeOwnerFragment is what the owner does with owner-gateway-fragment.yaml: its
// allowedListeners, and its perPort entries added to the Gateway's own.
func mergeOwnerFragment(t testing.TB, gw, fragment *unstructured.Unstructured) {
	t.Helper()
	allowed, ok, _ := unstructured.NestedMap(fragment.Object, "spec", "allowedListeners")
	if !ok {
		t.Fatal("the owner's fragment has no allowedListeners")
	}
	if err := unstructured.SetNestedMap(gw.Object, allowed, "spec", "allowedListeners"); err != nil {
		t.Fatal(err)
	}
	perPort, _, _ := unstructured.NestedSlice(fragment.Object, "spec", "tls", "frontend", "perPort")
	existing, _, _ := unstructured.NestedSlice(gw.Object, "spec", "tls", "frontend", "perPort")
	if _, found, _ := unstructured.NestedMap(gw.Object, "spec", "tls", "frontend", "default"); !found {
		_ = unstructured.SetNestedMap(gw.Object, map[string]any{}, "spec", "tls", "frontend", "default")
	}
	if err := unstructured.SetNestedSlice(gw.Object, append(existing, perPort...), "spec", "tls", "frontend", "perPort"); err != nil {
		t.Fatal(err)
	}
}

// withOwner adds to cluster B what the owner runs and applies: its shared gateway with the
// fragment merged in (unless merge is false), and the plugin.
func withOwner(t *testing.T, out Output, other Keypair, merge bool) func([]*unstructured.Unstructured) []*unstructured.Unstructured {
	return func(objects []*unstructured.Unstructured) []*unstructured.Unstructured {
		if len(OfKind(objects, "ListenerSet")) == 0 {
			return objects // cluster A
		}
		owner, err := ParseObjects(sharedGatewayAPI(other))
		if err != nil {
			t.Fatal(err)
		}
		fragment, err := ParseObjects(out.File(t, "cluster-b/owner-gateway-fragment.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if merge {
			mergeOwnerFragment(t, KubernetesGateways(owner)[0], fragment[0])
		} else {
			// Only the ListenerSets accepted: no validation for their port.
			allowed, _, _ := unstructured.NestedMap(fragment[0].Object, "spec", "allowedListeners")
			_ = unstructured.SetNestedMap(KubernetesGateways(owner)[0].Object, allowed, "spec", "allowedListeners")
		}
		plugin, err := ParseObjects(out.File(t, "cluster-b/wasmplugin.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return append(append(objects, owner...), plugin...)
	}
}

// peergate's ListenerSet on another owner's Gateway API gateway, with the owner's part merged
// in, on the pinned Istio and its Envoy: the partner reaches helloworld on the ListenerSet's
// port through the shared gateway's Pods; a client without a certificate or from another CA
// fails that port's handshake, a stranger of the root gets the filter's 403; the other team's
// host on 443 of the same Pods keeps answering without a client certificate, untouched by the
// plugin.
func TestListenerSetOnASharedGatewayAPIGateway(t *testing.T) {
	pin := CurrentPin(t)
	if !pin.AtLeast(30) {
		// Istio 1.28's XListenerSet is alpha: gen refuses the mode for it.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mesh.toml"), []byte(ListenerSetMesh), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, code, stderr := RunGen(t, dir, "--istio-version", pin.Name); code != 2 || !strings.Contains(stderr, "needs Istio 1.30") {
			t.Fatalf("gen for Istio %s: exit %d, %s; want 2 and the 1.30 gate", pin.Name, code, stderr)
		}
		return
	}
	url := serveModule(t)
	other := Issue(t, nil, CertificateTemplate{CommonName: UnrelatedHostName, DNSNames: []string{UnrelatedHostName}})
	out := GenWithConfig(t, ListenerSetMesh, "--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t), "--allowed-san", "spiffe://cluster-a/ns/client/*")

	t.Run("the two-mesh path on the ListenerSet's port", func(t *testing.T) {
		m := StartTwoMeshes(t, pin, out, WithObjects(withOwner(t, out, other, true)))
		if m.PublicPort != 8443 || m.GatewayPort != 8443 {
			t.Fatalf("our host is on Service port %d, listener %d; want 8443", m.PublicPort, m.GatewayPort)
		}
		if status, body := m.Hello(t); status != http.StatusOK || !strings.HasPrefix(body, "Hello version: v1") {
			t.Fatalf("the application got %d %q\ngateway listeners: %s\ngateway log:\n%s", status, body, m.Gateway.Listeners(), m.Gateway.Log())
		}
		root := expectHandshakeRefusals(t, m)
		stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
		if result := m.GatewayTLS(t, &stranger); result.Err != nil || result.Status != http.StatusForbidden || strings.TrimSpace(result.Body) != "san_not_allowed" {
			t.Fatalf("the stranger got %s, want 403 san_not_allowed", result)
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.denied.san_not_allowed", 1)
		// The other team's host on 443 of the same Pods: no client certificate asked, no plugin.
		result := TLSGet(t, m.Gateway.Address(443), UnrelatedHostName, "/", nil, other.Cert)
		if result.Err != nil || result.Status != http.StatusOK || result.Body != "other team\n" {
			t.Fatalf("%s on the shared gateway got %s, want 200 from its own backend", UnrelatedHostName, result)
		}
		if n := m.Gateway.Counter("wasmcustom.peergate.unprotected"); n != 0 {
			t.Errorf("the plugin saw the other team's request (unprotected = %d)", n)
		}
		if n := len(m.Helloworld.Seen()); n != 1 {
			t.Errorf("helloworld saw %d requests, want the generated client's 1", n)
		}
	})

	t.Run("the conditions, and the owner's part left out", func(t *testing.T) {
		statusFor := func(merge bool) (map[string]Condition, bool) {
			objects := withOwner(t, out, other, merge)(out.Objects(t, "cluster-b"))
			cluster := NewWorld(objects).AddManagedGateways(t).Start(t, pin)
			statuses := cluster.WatchStatus(t)
			set := statuses.Of(t, "ListenerSet", "service", "helloworld")
			x := cluster.Generate(t, cluster.Proxy(t, "edge", "shared-istio", true))
			require := false
			for chain, l := range ChainsServing(x, "helloworld.zufar.io") {
				if ListenerPort(l) == 8443 {
					require = DownstreamTLS(t, chain).GetRequireClientCertificate().GetValue()
				}
			}
			return Conditions(set), require
		}
		conditions, require := statusFor(true)
		for _, kind := range []string{"Accepted", "Programmed"} {
			if c := conditions[kind]; c.Status != "True" {
				t.Errorf("the ListenerSet's %s is %v", kind, c)
			}
		}
		if !require {
			t.Error("with the owner's perPort entry, port 8443 does not require a client certificate")
		}
		// Without the perPort entry the ListenerSet is accepted and serves plain server TLS:
		// the owner's entry is what makes the port mutual (the README says so).
		if _, require := statusFor(false); require {
			t.Error("without the owner's perPort entry, port 8443 requires a client certificate")
		}
	})
}

// The ListenerSet output against the pin's Gateway API CRDs and Istio's validation: the
// ListenerSet, its route, the owner's Gateway with the fragment merged in and the owner's
// plugin are accepted; the fragment alone is refused (it is not meant to be applied as is).
func TestListenerSetObjectsPassValidation(t *testing.T) {
	pin := CurrentPin(t)
	if !pin.AtLeast(30) {
		return // gen refuses the mode (TestListenerSetOnASharedGatewayAPIGateway)
	}
	v := IstioValidator(t)
	out := GenWithConfig(t, ListenerSetMesh, "--istio-version", pin.Name)
	other := Issue(t, nil, CertificateTemplate{CommonName: UnrelatedHostName, DNSNames: []string{UnrelatedHostName}})
	objects := withOwner(t, out, other, true)(out.Objects(t, "cluster-b"))
	checked := map[string]bool{}
	for _, obj := range append(objects, out.Objects(t, "cluster-a")...) {
		if err := v.Validate(obj); err != nil {
			t.Errorf("Istio %s refuses %s %s/%s: %v", pin.Name, obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		checked[obj.GetKind()] = true
	}
	for _, kind := range []string{"ListenerSet", "HTTPRoute", "Gateway", "WasmPlugin", "ConfigMap"} {
		if !checked[kind] {
			t.Errorf("no %s was checked", kind)
		}
	}
	fragment, err := ParseObjects(out.File(t, "cluster-b/owner-gateway-fragment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(fragment[0]); err == nil {
		t.Error("the owner's fragment passes as a Gateway of its own")
	} else {
		t.Logf("the fragment alone is refused: %v", err)
	}
}

// Why gen refuses the classic output (api = "istio", existing = true) on the Pods Istio
// deploys for a Gateway API Gateway: written as peergate writes it (the classic Gateway in the
// gateway Pods' namespace) it is merged into them, but istiod refuses their ServiceAccount the
// credential's key (Istio's deployment controller applies no Role for it), so the HTTPS
// listener never gets its certificate; and from Istio 1.31 a classic Gateway of another
// namespace is not merged at all (PILOT_ENABLE_STRICT_GATEWAY_MERGING).
func TestClassicGatewayOnAGatewayAPIGateway(t *testing.T) {
	pin := CurrentPin(t)
	dir := t.TempDir()
	config := "[clusterB.gateway]\nexisting = true\nnamespace = \"edge\"\nlabels = { \"gateway.networking.k8s.io/gateway-name\" = \"shared\" }\nlistenerPort = 443\n"
	if err := os.WriteFile(filepath.Join(dir, "mesh.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, code, stderr := RunGen(t, dir, "--istio-version", pin.Name); code != 2 || !strings.Contains(stderr, "clusterB.gateway.labels") {
		t.Fatalf("gen: exit %d, %s; want 2 naming clusterB.gateway.labels", code, stderr)
	}
	// The same output, made with another label and pointed at the Gateway's Pods by hand.
	out := GenWithConfig(t, strings.ReplaceAll(config, `"gateway.networking.k8s.io/gateway-name" = "shared"`, `app = "shared"`), "--istio-version", pin.Name)
	other := Issue(t, nil, CertificateTemplate{CommonName: UnrelatedHostName, DNSNames: []string{UnrelatedHostName}})
	for _, elsewhere := range []bool{false, true} {
		objects := out.Objects(t, "cluster-b")
		for _, obj := range objects {
			switch {
			case obj.GetKind() == "Gateway":
				spec(obj.Object)["selector"] = map[string]any{gatewayNameLabel: "shared"}
				if elsewhere {
					obj.SetNamespace("service")
				}
			case obj.GetKind() == "VirtualService" && elsewhere:
				spec(obj.Object)["gateways"] = []any{"service/helloworld-gateway"}
			case obj.GetKind() == "WasmPlugin":
				spec(obj.Object)["selector"] = map[string]any{"matchLabels": map[string]any{gatewayNameLabel: "shared"}}
			}
		}
		owner, err := ParseObjects(sharedGatewayAPI(other))
		if err != nil {
			t.Fatal(err)
		}
		world := NewWorld(append(objects, owner...)).AddManagedGateways(t)
		world.Add(t, UnrelatedHost(other.Cert, other.Key))
		cluster := world.Start(t, pin)
		x := cluster.Generate(t, cluster.Proxy(t, "edge", "shared-istio", true))
		merged := len(ChainsServing(x, "helloworld.zufar.io")) > 0
		keyServed := false
		for _, secret := range x.Secrets {
			keyServed = keyServed || secret.GetName() == "kubernetes://cluster-b-server-cert"
		}
		wantMerged := !elsewhere || !pin.AtLeast(31)
		if merged != wantMerged {
			t.Errorf("the classic Gateway in namespace %s merged into the Gateway API gateway's Pods: %v, want %v", map[bool]string{false: "edge", true: "service"}[elsewhere], merged, wantMerged)
		}
		if keyServed {
			t.Error("istiod served the credential's key to the Gateway API gateway's ServiceAccount")
		}
	}
}
