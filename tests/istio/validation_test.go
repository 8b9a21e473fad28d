package oracle

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Part 1: every object `peergate gen` writes passes the pinned Istio's own validation.

// outputVariant is one way of running gen, and the Istio release that introduced what it
// needs (0: every supported release).
type outputVariant struct {
	name   string
	config string
	flags  []string
	since  int
}

// An image digest in the form `peergate image` prints.
const someImageDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func outputVariants() []outputVariant {
	return []outputVariant{
		{name: "default"},
		{name: "existing gateway", config: ExistingGateway},
		{name: "revision-based install, private registry", flags: []string{"--istio-revision", "stable-1", "--image-pull-secret", "registry-credentials", "--image-pull-policy", "Always"}},
		{name: "credentialName", flags: []string{"--client-cert-mode", "credentialName"}},
		{name: "ecdsa", flags: []string{"--key-type", "ecdsa-p256"}},
		{name: "audit mode, pattern allow-list", flags: []string{"--mode", "audit", "--allowed-san", "spiffe://cluster-a/ns/client/*"}},
		{name: "wasmImage", flags: []string{"--wasm-image", "ghcr.io/acme/peergate-filter:0.1.0@" + someImageDigest}},
		{name: "cert-manager", flags: []string{"--certificates", "cert-manager"}},
		{name: "cert-manager, credentialName, issuing CA, ecdsa", flags: []string{"--certificates", "cert-manager", "--client-cert-mode", "credentialName", "--intermediate", "partner-issuing", "--key-type", "ecdsa-p384"}},
		{name: "cert-manager, an issuer of the user's", config: "certificates = \"cert-manager\"\n[certManager.issuerRef]\nname = \"vault-issuer\"\nkind = \"ClusterIssuer\"\n"},
		{name: "cert-manager, step-issuer, ed25519", config: "certificates = \"cert-manager\"\nkeyType = \"ed25519\"\n[certManager.issuerRef]\nname = \"step-issuer\"\nkind = \"StepIssuer\"\ngroup = \"certmanager.step.sm\"\n"},
		{name: "FAIL_RELOAD", flags: []string{"--fail-strategy", "FAIL_RELOAD"}},
		{name: "connection layer", flags: []string{"--layer", "connection"}, since: 30},
		{name: "trafficextension", flags: []string{"--api", "trafficextension"}, since: 30},
		{name: "trafficextension, connection layer, wasmImage", flags: []string{"--api", "trafficextension", "--layer", "connection", "--wasm-image", "ghcr.io/acme/peergate-filter:0.1.0@" + someImageDigest}, since: 30},
		{name: "gateway api", flags: []string{"--gateway-api", "kubernetes"}},
		{name: "gateway api, revision, cert-manager, issuing CA", flags: []string{"--gateway-api", "kubernetes", "--istio-revision", "stable-1", "--certificates", "cert-manager", "--intermediate", "partner-issuing"}},
		{name: "gateway api, trafficextension", flags: []string{"--gateway-api", "kubernetes", "--api", "trafficextension"}, since: 30},
		{name: "monitoring", config: "[monitoring]\nruleLabels = { release = \"kube-prometheus-stack\" }\n"},
		{name: "monitoring, existing gateway", config: ExistingGateway + "[monitoring]\nnamespace = \"monitoring\"\n"},
	}
}

// genForPin runs gen for the pinned release (--istio-version), so gen itself refuses what
// that release cannot run.
func genForPin(t *testing.T, pin Pin, flags ...string) Output {
	t.Helper()
	return Gen(t, append([]string{"--istio-version", pin.Name}, flags...)...)
}

// ExistingGateway is a mesh.toml that puts the plugin on Istio's shared istio-ingressgateway
// (istioctl's: Service port 443 on listener port 8443) instead of a gateway of its own.
const ExistingGateway = `
[clusterB.gateway]
existing = true
namespace = "istio-system"
labels = { istio = "ingressgateway" }
listenerPort = 8443
`

func allObjects(t *testing.T, out Output) []*unstructured.Unstructured {
	t.Helper()
	return append(out.Objects(t, "cluster-a"), out.Objects(t, "cluster-b")...)
}

func TestEveryGeneratedObjectPassesIstioValidation(t *testing.T) {
	pin := CurrentPin(t)
	v := IstioValidator(t)
	for _, variant := range outputVariants() {
		if !pin.AtLeast(variant.since) {
			continue
		}
		t.Run(variant.name, func(t *testing.T) {
			out := GenWithConfig(t, variant.config, append([]string{"--istio-version", pin.Name}, variant.flags...)...)
			objects := allObjects(t, out)
			istioKinds := 0
			for _, obj := range objects {
				if IsIstioConfig(obj) || obj.GroupVersionKind().Group == gatewayAPIGroup {
					istioKinds++
				}
				if err := v.Validate(obj); err != nil {
					t.Errorf("Istio %s refuses %s/%s/%s: %v", pin.Name, obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				}
			}
			// ServiceEntry, VirtualService, DestinationRule, Gateway, VirtualService, plugin; or
			// under the Gateway API the Gateway, two HTTPRoutes and a ReferenceGrant instead
			// of the Gateway and VirtualService.
			if istioKinds < 6 {
				t.Errorf("only %d Istio objects in %s", istioKinds, Names(objects))
			}
		})
	}
}

// The gates of `--istio-version`: a feature the pinned release lacks is refused by gen (exit 2,
// naming the key and the release that introduced it), and the same output generated for a
// release that has it is refused by the pinned Istio itself: the gate is not a guess.
func TestVersionGatesMatchThePinnedRelease(t *testing.T) {
	pin := CurrentPin(t)
	v := IstioValidator(t)
	gates := []struct {
		flags  []string
		key    string
		since  int
		refuse func(*testing.T, []*unstructured.Unstructured) error // how this Istio refuses it
	}{
		{[]string{"--api", "trafficextension"}, "plugin.api", 30, firstRefusal(v)},
		// The CRDs accept type NETWORK since 1.20; what is missing before 1.30 is the
		// connection.peer_certificate property in the Envoy those releases ship, shown in the
		// real-Envoy run (every connection refused).
		{[]string{"--layer", "connection"}, "plugin.layer", 30, nil},
		// Frontend validation is first in Istio 1.28, the oldest pin: every pin accepts it
		// (the oracle's Gateway API tests show it working on each).
		{[]string{"--gateway-api", "kubernetes"}, "clusterB.gateway.api", 28, nil},
	}
	for _, gate := range gates {
		t.Run(gate.key, func(t *testing.T) {
			dir := t.TempDir()
			_, code, stderr := RunGen(t, dir, append([]string{"--istio-version", pin.Name}, gate.flags...)...)
			if pin.AtLeast(gate.since) {
				if code != 0 {
					t.Fatalf("gen --istio-version %s %v: exit %d: %s", pin.Name, gate.flags, code, stderr)
				}
				return
			}
			since := "1." + strconv.Itoa(gate.since)
			if code != 2 || !strings.Contains(stderr, gate.key) || !strings.Contains(stderr, since) {
				t.Fatalf("gen --istio-version %s %v: want exit 2 naming %s and %s, got %d: %s", pin.Name, gate.flags, gate.key, since, code, stderr)
			}
			if gate.refuse == nil {
				return
			}
			out := Gen(t, gate.flags...)
			if err := gate.refuse(t, allObjects(t, out)); err == nil {
				t.Fatalf("Istio %s accepts %v: the gate at 1.%d is wrong", pin.Name, gate.flags, gate.since)
			} else {
				t.Logf("Istio %s refuses %v: %v", pin.Name, gate.flags, err)
			}
		})
	}
}

func firstRefusal(v *Validator) func(*testing.T, []*unstructured.Unstructured) error {
	return func(t *testing.T, objects []*unstructured.Unstructured) error {
		for _, obj := range objects {
			if err := v.Validate(obj); err != nil {
				return err
			}
		}
		return nil
	}
}

// Known-bad outputs, each one change to a real generated object: the pinned Istio must refuse
// every one (so the check above can fail), and accept the object unchanged.
func TestIstioValidationRefusesKnownBadOutput(t *testing.T) {
	pin := CurrentPin(t)
	v := IstioValidator(t)
	out := Gen(t)
	objects := out.Objects(t, "cluster-b")
	objectsA := out.Objects(t, "cluster-a")
	plugin := Find(t, objects, "WasmPlugin", "peergate")
	gateway := OfKind(objects, "Gateway")[0]
	rule := OfKind(objectsA, "DestinationRule")[0]
	certificate := OfKind(Gen(t, "--certificates", "cert-manager").Objects(t, "cluster-a"), "Certificate")[0]
	prometheusRule := OfKind(GenWithConfig(t, "[monitoring]\n").Objects(t, "cluster-b"), "PrometheusRule")[0]
	for _, obj := range []*unstructured.Unstructured{plugin, gateway, rule, certificate, prometheusRule} {
		if err := v.Validate(obj); err != nil {
			t.Fatalf("the unchanged %s is refused: %v", obj.GetKind(), err)
		}
	}
	cases := []struct {
		name    string
		object  *unstructured.Unstructured
		change  func(map[string]any)
		refused bool
	}{
		{"sha256 in upper case", plugin, func(o map[string]any) {
			spec(o)["sha256"] = strings.Repeat("ABCDEF0123456789", 4)
		}, true},
		{"sha256 too short", plugin, func(o map[string]any) { spec(o)["sha256"] = "abc123" }, true},
		{"FAIL_RELOAD", plugin, func(o map[string]any) { spec(o)["failStrategy"] = "FAIL_RELOAD" }, false},
		{"misspelled phase", plugin, func(o map[string]any) { spec(o)["phase"] = "AUTHNN" }, true},
		{"misspelled failStrategy", plugin, func(o map[string]any) { spec(o)["failStrategy"] = "FAIL_CLOSED" }, true},
		{"misspelled imagePullPolicy", plugin, func(o map[string]any) { spec(o)["imagePullPolicy"] = "Sometimes" }, true},
		{"unknown plugin field", plugin, func(o map[string]any) { spec(o)["pluginConfigs"] = map[string]any{} }, true},
		{"misspelled TLS mode", gateway, func(o map[string]any) {
			servers := spec(o)["servers"].([]any)
			servers[len(servers)-1].(map[string]any)["tls"].(map[string]any)["mode"] = "MUTAUL"
		}, true},
		{"MUTUAL without a credential", gateway, func(o map[string]any) {
			servers := spec(o)["servers"].([]any)
			delete(servers[len(servers)-1].(map[string]any)["tls"].(map[string]any), "credentialName")
		}, true},
		{"unknown client TLS field", rule, func(o map[string]any) {
			subsets := spec(o)["subsets"].([]any)
			settings := subsets[0].(map[string]any)["trafficPolicy"].(map[string]any)["portLevelSettings"].([]any)
			settings[0].(map[string]any)["tls"].(map[string]any)["sniHost"] = "x"
		}, true},
		// cert-manager's CRDs (CERT_MANAGER_CRDS) are checked as strictly.
		{"a usage cert-manager does not know", certificate, func(o map[string]any) {
			spec(o)["usages"] = []any{"digital signature", "clientAuth"}
		}, true},
		{"an unknown privateKey field", certificate, func(o map[string]any) {
			spec(o)["privateKey"].(map[string]any)["rotation"] = "Always"
		}, true},
		{"a misspelled key algorithm", certificate, func(o map[string]any) {
			spec(o)["privateKey"].(map[string]any)["algorithm"] = "rsa"
		}, true},
		{"no issuerRef", certificate, func(o map[string]any) { delete(spec(o), "issuerRef") }, true},
		// prometheus-operator's CRD (PROMETHEUS_OPERATOR_CRDS) too.
		{"a `for` that is not a duration", prometheusRule, func(o map[string]any) {
			rule := spec(o)["groups"].([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
			rule["for"] = "ten minutes"
		}, true},
		{"a rule group without a name", prometheusRule, func(o map[string]any) {
			delete(spec(o)["groups"].([]any)[0].(map[string]any), "name")
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			changed := c.object.DeepCopy()
			c.change(changed.Object)
			err := v.Validate(changed)
			switch {
			case c.refused && err == nil:
				t.Fatalf("Istio %s accepts the %s with %s", pin.Name, c.object.GetKind(), c.name)
			case !c.refused && err != nil:
				t.Fatalf("Istio %s refuses the %s with %s: %v", pin.Name, c.object.GetKind(), c.name, err)
			case err != nil:
				t.Logf("refused: %v", err)
			}
		})
	}
}

func spec(object map[string]any) map[string]any {
	return object["spec"].(map[string]any)
}

// The Gateway API output against both channels of the CRDs the pinned Istio vendors: the
// experimental channel accepts it on every pin; the standard channel only where it has
// spec.tls.frontend (gateway-api v1.5, Istio 1.30): on 1.28 it refuses the Gateway, so the
// README tells 1.28 users to install the experimental channel. And known-bad Gateways are
// refused by the channel peergate needs.
func TestGatewayAPIObjectsAgainstTheVendoredCRDs(t *testing.T) {
	pin := CurrentPin(t)
	out := genForPin(t, pin, "--gateway-api", "kubernetes")
	objects := out.Objects(t, "cluster-b")
	gateway := KubernetesGateways(objects)[0]
	var gatewayAPI []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GroupVersionKind().Group == gatewayAPIGroup {
			gatewayAPI = append(gatewayAPI, obj)
		}
	}
	if len(gatewayAPI) != 4 {
		t.Fatalf("want a Gateway, two HTTPRoutes and a ReferenceGrant, got %s", Names(gatewayAPI))
	}
	for _, channel := range []string{"experimental", "standard"} {
		v, err := GatewayAPIValidator(channel)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range gatewayAPI {
			err := v.ValidateCustomResource(obj.DeepCopy())
			needsExperimental := channel == "standard" && obj == gateway && GatewayAPIChannel() == "experimental"
			switch {
			case needsExperimental && err == nil:
				t.Errorf("gateway-api %s's standard channel accepts the Gateway: the README's channel for Istio %s is wrong", filepath.Base(GatewayAPISourceDir()), pin.Name)
			case needsExperimental:
				if !strings.Contains(err.Error(), "tls") {
					t.Errorf("the standard channel refuses the Gateway, but not for spec.tls: %v", err)
				}
				t.Logf("Istio %s (%s): the standard channel refuses the Gateway: %v", pin.Name, filepath.Base(GatewayAPISourceDir()), err)
			case err != nil:
				t.Errorf("gateway-api %s (%s channel) refuses %s %s: %v", filepath.Base(GatewayAPISourceDir()), channel, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	v := IstioValidator(t)
	validation := func(o map[string]any) map[string]any {
		perPort := spec(o)["tls"].(map[string]any)["frontend"].(map[string]any)["perPort"].([]any)
		return perPort[0].(map[string]any)["tls"].(map[string]any)["validation"].(map[string]any)
	}
	for _, c := range []struct {
		name   string
		change func(map[string]any)
	}{
		{"a validation mode that does not exist", func(o map[string]any) { validation(o)["mode"] = "AllowAnything" }},
		{"no caCertificateRefs", func(o map[string]any) { delete(validation(o), "caCertificateRefs") }},
		{"a listener without a port", func(o map[string]any) {
			delete(spec(o)["listeners"].([]any)[1].(map[string]any), "port")
		}},
		{"an unknown TLS field", func(o map[string]any) {
			spec(o)["listeners"].([]any)[1].(map[string]any)["tls"].(map[string]any)["caCertificateRefs"] = []any{}
		}},
	} {
		changed := gateway.DeepCopy()
		c.change(changed.Object)
		if err := v.Validate(changed); err == nil {
			t.Errorf("Istio %s's Gateway API CRDs accept a Gateway with %s", pin.Name, c.name)
		} else {
			t.Logf("%s: refused: %v", c.name, err)
		}
	}
}
