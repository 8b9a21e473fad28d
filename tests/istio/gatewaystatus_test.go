package oracle

import (
	"encoding/base64"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// gatewayAPIStatus is what Istio's Gateway API controller reports for cluster B's objects,
// and the gateway's HTTPS filter chain for the domain it programs from them (nil: none).
type gatewayAPIStatus struct {
	gateway   map[string]Condition
	listeners map[string]map[string]Condition
	attached  map[string]int64
	routes    map[string]map[string]Condition
	// requireClientCertificate of the chain serving the domain on 443, and whether one does.
	serving, requireClientCertificate bool
}

func statusOf(t *testing.T, pin Pin, objects []*unstructured.Unstructured) gatewayAPIStatus {
	t.Helper()
	cluster := NewWorld(objects).AddManagedGateways(t).Start(t, pin)
	statuses := cluster.WatchStatus(t)
	gw := KubernetesGateways(objects)[0]
	raw := statuses.Of(t, "Gateway", gw.GetNamespace(), gw.GetName())
	s := gatewayAPIStatus{gateway: Conditions(raw), listeners: map[string]map[string]Condition{}, attached: map[string]int64{}, routes: map[string]map[string]Condition{}}
	listeners, _ := raw["listeners"].([]any)
	for _, l := range listeners {
		listener := l.(map[string]any)
		name, _ := listener["name"].(string)
		s.listeners[name] = Conditions(listener)
		s.attached[name], _ = toInt64(listener["attachedRoutes"])
	}
	for _, route := range OfKind(objects, "HTTPRoute") {
		parents, _ := statuses.Of(t, "HTTPRoute", route.GetNamespace(), route.GetName())["parents"].([]any)
		if len(parents) != 1 {
			t.Fatalf("HTTPRoute %s: %d parents in its status", route.GetName(), len(parents))
		}
		s.routes[route.GetName()] = Conditions(parents[0].(map[string]any))
	}
	_, ours := ourGateway(t, objects, NewWorld(objects).AddManagedGateways(t).Objects())
	x := cluster.Generate(t, cluster.Proxy(t, ours.GetNamespace(), ours.GetName(), true))
	for chain, l := range ChainsServing(x, gatewayHosts(t, gw)[0]) {
		if ListenerPort(l) == 443 {
			s.serving = true
			s.requireClientCertificate = DownstreamTLS(t, chain).GetRequireClientCertificate().GetValue()
		}
	}
	return s
}

func (s gatewayAPIStatus) expect(t *testing.T, what string, conditions map[string]Condition, kind, status, reason string) {
	t.Helper()
	c, ok := conditions[kind]
	switch {
	case !ok:
		t.Errorf("%s has no %s condition: %v", what, kind, conditions)
	case c.Status != status || (reason != "" && c.Reason != reason):
		t.Errorf("%s: %s is %s (%s: %s), want %s %s", what, kind, c.Status, c.Reason, c.Message, status, reason)
	}
}

// secretCAServedSince is the first pinned release whose SDS serves a caCertificateRefs
// Secret to the gateway.
const secretCAServedSince = 31

func perPortValidation(gw *unstructured.Unstructured) map[string]any {
	perPort := spec(gw.Object)["tls"].(map[string]any)["frontend"].(map[string]any)["perPort"].([]any)
	return perPort[0].(map[string]any)["tls"].(map[string]any)["validation"].(map[string]any)
}

// The conditions the README tells a user to read, as Istio's controller computes them for
// the generated objects, and for known-bad edits of them, on the pinned release.
func TestGatewayAPIStatusConditions(t *testing.T) {
	pin := CurrentPin(t)
	out := genForPin(t, pin, "--gateway-api", "kubernetes")

	t.Run("the generated objects", func(t *testing.T) {
		s := statusOf(t, pin, out.Objects(t, "cluster-b"))
		s.expect(t, "the Gateway", s.gateway, "Accepted", "True", "Accepted")
		s.expect(t, "the Gateway", s.gateway, "Programmed", "True", "Programmed")
		if pin.AtLeast(31) {
			s.expect(t, "the Gateway", s.gateway, "ResolvedRefs", "True", "ResolvedRefs")
		}
		if c, ok := s.gateway["InsecureFrontendValidationMode"]; ok {
			t.Errorf("the Gateway reports %v", c)
		}
		for _, listener := range []string{"http", "https"} {
			for _, kind := range []string{"Accepted", "Programmed", "ResolvedRefs"} {
				s.expect(t, "listener "+listener, s.listeners[listener], kind, "True", "")
			}
			if s.attached[listener] != 1 {
				t.Errorf("listener %s has %d routes attached, want 1", listener, s.attached[listener])
			}
		}
		for name, route := range s.routes {
			s.expect(t, "HTTPRoute "+name, route, "Accepted", "True", "Accepted")
			s.expect(t, "HTTPRoute "+name, route, "ResolvedRefs", "True", "ResolvedRefs")
		}
		if !s.serving || !s.requireClientCertificate {
			t.Errorf("the HTTPS chain: serving %v, requires a client certificate %v", s.serving, s.requireClientCertificate)
		}
	})

	t.Run("caCertificateRefs of a kind Istio does not read", func(t *testing.T) {
		objects := out.Objects(t, "cluster-b")
		perPortValidation(KubernetesGateways(objects)[0])["caCertificateRefs"].([]any)[0].(map[string]any)["kind"] = "Service"
		s := statusOf(t, pin, objects)
		reason := "InvalidCACertificateKind"
		if !pin.AtLeast(30) {
			reason = "InvalidCertificateRef"
		}
		s.expect(t, "listener https", s.listeners["https"], "ResolvedRefs", "False", reason)
		s.expect(t, "listener https", s.listeners["https"], "Programmed", "False", "Invalid")
		if pin.AtLeast(30) {
			s.expect(t, "listener https", s.listeners["https"], "Accepted", "False", "NoValidCACertificate")
		}
		// Fail closed: no chain serves the domain without its client validation.
		if s.serving {
			t.Errorf("Istio %s serves the domain on 443 without its CA (requires a client certificate: %v)", pin.Name, s.requireClientCertificate)
		}
	})

	// Why the CA is a ConfigMap: with the same roots in a Secret, Istio 1.28 and 1.30 report
	// every condition True and their SDS serves no validation secret for it (the gateway's
	// HTTPS listener waits for it forever); 1.31 serves it; a ConfigMap works on every pin.
	t.Run("caCertificateRefs to a Secret", func(t *testing.T) {
		objects := out.Objects(t, "cluster-b")
		gw := KubernetesGateways(objects)[0]
		ref := perPortValidation(gw)["caCertificateRefs"].([]any)[0].(map[string]any)
		for _, obj := range objects {
			if obj.GetKind() == "ConfigMap" && obj.GetName() == ref["name"] {
				data, _, _ := unstructured.NestedStringMap(obj.Object, "data")
				encoded := map[string]any{}
				for key, value := range data {
					encoded[key] = base64.StdEncoding.EncodeToString([]byte(value))
				}
				obj.SetKind("Secret")
				obj.Object["type"] = "Opaque"
				obj.Object["data"] = encoded
			}
		}
		ref["kind"] = "Secret"
		s := statusOf(t, pin, objects)
		s.expect(t, "listener https", s.listeners["https"], "ResolvedRefs", "True", "")
		cluster := NewWorld(objects).AddManagedGateways(t).Start(t, pin)
		x := cluster.Generate(t, cluster.Proxy(t, gw.GetNamespace(), gw.GetName()+"-istio", true))
		served := false
		for _, secret := range x.Secrets {
			served = served || (strings.HasSuffix(secret.GetName(), "-cacert") && secret.GetValidationContext() != nil)
		}
		if served != pin.AtLeast(secretCAServedSince) {
			t.Errorf("Istio %s serves the Secret's CA over SDS: %v (want %v)", pin.Name, served, pin.AtLeast(secretCAServedSince))
		}
	})

	t.Run("the backend's ReferenceGrant missing", func(t *testing.T) {
		var objects []*unstructured.Unstructured
		for _, obj := range out.Objects(t, "cluster-b") {
			if obj.GetKind() != "ReferenceGrant" {
				objects = append(objects, obj)
			}
		}
		s := statusOf(t, pin, objects)
		s.expect(t, "HTTPRoute helloworld", s.routes["helloworld"], "ResolvedRefs", "False", "RefNotPermitted")
	})

	// peergate writes AllowValidOnly; a user who edits it to AllowInsecureFallback gets, from
	// Istio 1.31, a listener that admits clients without a certificate, and the condition
	// that says so. Before 1.31 Istio ignores the mode: the client certificate stays required.
	t.Run("mode AllowInsecureFallback", func(t *testing.T) {
		objects := out.Objects(t, "cluster-b")
		perPortValidation(KubernetesGateways(objects)[0])["mode"] = "AllowInsecureFallback"
		s := statusOf(t, pin, objects)
		if !s.serving {
			t.Fatal("no chain serves the domain on 443")
		}
		if pin.AtLeast(31) {
			s.expect(t, "the Gateway", s.gateway, "InsecureFrontendValidationMode", "True", "ConfigurationChanged")
			if s.requireClientCertificate {
				t.Error("Istio 1.31 should make the client certificate optional under AllowInsecureFallback")
			}
			return
		}
		if c, ok := s.gateway["InsecureFrontendValidationMode"]; ok {
			t.Errorf("Istio %s reports %v", pin.Name, c)
		}
		if !s.requireClientCertificate {
			t.Errorf("Istio %s made the client certificate optional", pin.Name)
		}
	})
}
