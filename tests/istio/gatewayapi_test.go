package oracle

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The Gateway API output on the pinned Istio: its deployment controller deploys the
// gateway, its Gateway API controller programs it, and the pinned Envoy serves the two-mesh
// path with the frontend client-certificate validation and the filter attached by targetRefs.
func TestGatewayAPIOnRealEnvoy(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)

	t.Run("the two-mesh path, refusals and the redirect", func(t *testing.T) {
		m := StartTwoMeshes(t, pin, genServed(t, pin, url, "--gateway-api", "kubernetes", "--layer", "request", "--allowed-san", "spiffe://cluster-a/ns/client/*"))
		if status, body := m.Hello(t); status != http.StatusOK || !strings.HasPrefix(body, "Hello version: v1") {
			t.Fatalf("the application got %d %q\ngateway listeners: %s\ngateway log:\n%s\nsidecar log:\n%s", status, body, m.Gateway.Listeners(), m.Gateway.Log(), m.Sidecar.Log())
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.allowed", 1)
		checkDeployed(t, m)
		if xfcc := m.Helloworld.Seen()[0].Header.Get("X-Forwarded-Client-Cert"); !strings.Contains(xfcc, "URI=spiffe://cluster-a/ns/client/sa/sleep") {
			t.Errorf("helloworld got XFCC %q", xfcc)
		}

		// Istio's frontend validation refuses the handshake of a client without a
		// certificate, and of one from another CA.
		root := expectHandshakeRefusals(t, m)
		// The Gateway API has no subject matching: the filter alone refuses a stranger of
		// the agreed root.
		stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
		result := m.GatewayTLS(t, &stranger)
		if result.Err != nil || result.Status != http.StatusForbidden || strings.TrimSpace(result.Body) != "san_not_allowed" {
			t.Fatalf("the stranger got %s, want 403 san_not_allowed\n%s", result, m.Gateway.Log())
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.denied.san_not_allowed", 1)
		// The decision lines reach the log at the level the Gateway's annotation asks for.
		waitLog(t, m.Gateway, `"decision":"deny"`, "spiffe://cluster-a/ns/other/sa/x")
		if n := len(m.Helloworld.Seen()); n != 1 {
			t.Errorf("helloworld saw %d requests, want the generated client's 1", n)
		}

		// Port 80 redirects to HTTPS, untouched by the filter.
		if m.GatewayHTTPPort == 0 {
			t.Fatal("Istio's Service for the Gateway has no port 80")
		}
		denied := m.Gateway.Counter("wasmcustom.peergate.denied")
		status, _ := PlainGet(t, m.Gateway.Address(m.GatewayHTTPPort), m.Domain, "/hello")
		if status != http.StatusMovedPermanently {
			t.Fatalf("port 80 answered %d, want 301 to https", status)
		}
		if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != denied {
			t.Errorf("the filter decided a port-80 request: denied %d -> %d", denied, got)
		}
	})

	// The layer `auto` picks on a gateway of its own from Istio 1.30: a network filter on the
	// HTTPS listener of the Pods Istio deployed, closing a refused peer's connection.
	if pin.AtLeast(30) {
		t.Run("the connection layer", func(t *testing.T) {
			m := StartTwoMeshes(t, pin, genServed(t, pin, url, "--gateway-api", "kubernetes", "--allowed-san", "spiffe://cluster-a/ns/client/*"))
			if m.Plugin.Type != "NETWORK" {
				t.Fatalf("auto picked plugin type %q on Istio %s", m.Plugin.Type, pin.Name)
			}
			if status, body := m.Hello(t); status != http.StatusOK {
				t.Fatalf("the application got %d %q\n%s", status, body, m.Gateway.Log())
			}
			root := m.Root(t)
			stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
			if result := m.GatewayTLS(t, &stranger); result.Err == nil {
				t.Fatalf("the stranger got %s, want its connection closed", result)
			}
			m.Gateway.WaitCounter("wasmcustom.peergate.denied.san_not_allowed", 1)
			if n := len(m.Helloworld.Seen()); n != 1 {
				t.Errorf("helloworld saw %d requests, want the generated client's 1", n)
			}
		})
	}

	// The CA ConfigMap's ca.crl reaches Envoy's handshake: Istio builds the frontend
	// validation's SDS secret from caCertificateRefs with it (and the filter's crls refuse
	// the same certificate again, behind it).
	t.Run("an issuing CA and a revoked client", func(t *testing.T) {
		flags := []string{"--gateway-api", "kubernetes", "--layer", "request", "--intermediate", "partner-issuing", "--allowed-san", "spiffe://cluster-a/ns/client/*"}
		out := genServed(t, pin, url, flags...)
		m := StartTwoMeshes(t, pin, out)
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client (leaf + issuing CA) got %d %q\n%s", status, body, m.Gateway.Log())
		}
		issuing := LoadKeypair(t, out.Dir+"/certs/partner-issuing-cert.pem", out.Dir+"/certs/partner-issuing-key.pem")
		stolen := Issue(t, &issuing, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/client/sa/sleep"}, Usage: clientAuth})
		stolen.Cert += issuing.Cert
		if result := m.GatewayTLS(t, &stolen); result.Status != http.StatusOK {
			t.Fatalf("a second client of the issuing CA before revocation: %s", result)
		}
		revokeServed(t, pin, out, url, stolen.Cert, flags...)
		if !strings.Contains(out.File(t, "cluster-b/configmap-cluster-b-server-cert-ca.yaml"), "ca.crl") {
			t.Fatal("the CA ConfigMap has no ca.crl after revoke")
		}
		m = StartTwoMeshes(t, pin, out)
		if crl := crlOf(t, m); !strings.Contains(crl, "BEGIN X509 CRL") {
			t.Fatalf("Istio %s built the frontend validation without the ConfigMap's ca.crl", pin.Name)
		}
		before := m.Gateway.Counter(".ssl.fail_verify_error")
		if result := m.GatewayTLS(t, &stolen); result.Err == nil || !strings.Contains(result.Err.Error(), "revoked certificate") {
			t.Fatalf("the revoked client got %s, want its handshake refused as revoked", result)
		}
		m.Gateway.WaitCounter(".ssl.fail_verify_error", before+1)
		if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
			t.Errorf("the filter saw a handshake Envoy refused: denied = %d", got)
		}
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client after the revocation got %d %q\n%s", status, body, m.Gateway.Log())
		}
	})
}

// checkDeployed checks what Istio deployed for the Gateway against what the Gateway asks for:
// the replicas of its parametersRef, the XFCC setting on the Pods, the decision lines' level.
func checkDeployed(t *testing.T, m *TwoMeshes) {
	t.Helper()
	deployment := m.ours
	replicas, _, _ := unstructured.NestedFieldNoCopy(deployment.Object, "spec", "replicas")
	if n, _ := toInt64(replicas); n != 2 {
		t.Errorf("Istio deployed %s with replicas %v, want the parametersRef's 2", deployment.GetName(), replicas)
	}
	annotations, _, _ := unstructured.NestedStringMap(deployment.Object, "spec", "template", "metadata", "annotations")
	if got := annotations["proxy.istio.io/config"]; !strings.Contains(got, `"forwardClientCertDetails":"SANITIZE_SET"`) {
		t.Errorf("the gateway Pods' proxy.istio.io/config is %q", got)
	}
	args := renderedProxy(deployment)
	at := slices.Index(args, "--proxyComponentLogLevel")
	if at < 0 || at+1 >= len(args) || !strings.Contains(args[at+1], "wasm:info") {
		t.Errorf("the gateway's istio-proxy args %v do not log wasm at info", args)
	}
}

// crlOf is the CRL of the SDS validation context the gateway's HTTPS listener verifies
// clients with (empty: none).
func crlOf(t *testing.T, m *TwoMeshes) string {
	t.Helper()
	for _, secret := range m.GatewayX.Secrets {
		if v := secret.GetValidationContext(); v != nil && v.GetCrl() != nil {
			return string(v.GetCrl().GetInlineBytes()) + v.GetCrl().GetFilename()
		}
	}
	return ""
}

// The gateway istiod configures for the Gateway API output: the chain serving the domain on
// 443 requires a client certificate from the CA ConfigMap (the generated root, its CRLs),
// presents the credential, and carries the plugin once, with the generated pluginConfig; the
// plugin, attached to our Gateway by targetRefs, is on no other gateway (the shared
// istio-ingressgateway with another team's host) and not on port 80.
func TestGatewayAPIOnIstiodsConfig(t *testing.T) {
	pin := CurrentPin(t)
	flags := [][]string{{"--gateway-api", "kubernetes"}, {"--gateway-api", "kubernetes", "--layer", "request"}}
	if pin.AtLeast(30) {
		flags = append(flags, []string{"--gateway-api", "kubernetes", "--api", "trafficextension"})
	}
	for _, f := range flags {
		t.Run(strings.Join(f, " "), func(t *testing.T) {
			out := genForPin(t, pin, f...)
			generated := out.Objects(t, "cluster-b")
			cl, world := clusterB(t, pin, out)
			plugin := ReadPlugin(t, generated)
			gateway, ours := ourGateway(t, generated, world)
			domain := gatewayHosts(t, gateway)[0]
			x := cl.Generate(t, cl.Proxy(t, ours.GetNamespace(), ours.GetName(), true))
			chains := ChainsServing(x, domain)
			if len(chains) != 1 {
				t.Fatalf("%d chains serve %s over TLS, want 1", len(chains), domain)
			}
			for chain, l := range chains {
				if ListenerPort(l) != 443 {
					t.Errorf("%s is served on listener port %d", domain, ListenerPort(l))
				}
				downstream := DownstreamTLS(t, chain)
				if !downstream.GetRequireClientCertificate().GetValue() {
					t.Error("the chain does not require a client certificate")
				}
				common := downstream.GetCommonTlsContext()
				if names := sdsNames(common.GetTlsCertificateSdsSecretConfigs()); !slices.Equal(names, []string{"kubernetes-gateway://peergate-ingress/cluster-b-server-cert"}) {
					t.Errorf("server certificate from %v", names)
				}
				caName := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
				if caName != "configmap://peergate-ingress/cluster-b-server-cert-ca-cacert" {
					t.Errorf("client CA from %q, want the CA ConfigMap", caName)
				}
				ca := x.Secret(t, caName).GetValidationContext().GetTrustedCa().GetInlineBytes()
				if !sameCertificates(t, string(ca), out.File(t, "certs/root-cert.pem")) {
					t.Errorf("the gateway trusts %q, not the generated root", ca)
				}
				// The Gateway API has no subject matching: the filter is the only check of who.
				if sans := SubjectAltNames(common.GetCombinedValidationContext().GetDefaultValidationContext()); len(sans) != 0 {
					t.Errorf("the handshake checks SANs %v", sans)
				}
				names := x.PluginFilterNames(t, plugin, chain)
				if len(names) != 1 {
					t.Fatalf("the chain loads the plugin %d times (%v)", len(names), names)
				}
				loaded := x.Loaded(t, plugin, names[0])
				if got := loaded.Configuration(t); !SameJSON(t, got, plugin.Config) {
					t.Errorf("the module is handed\n%v\nnot the generated pluginConfig\n%v", got, plugin.Config)
				}
				if wantNetwork := plugin.Type == "NETWORK"; loaded.Network != wantNetwork {
					t.Errorf("the plugin is a network filter: %v, want %v", loaded.Network, wantNetwork)
				}
				checkAuthnPosition(t, FiltersOf(t, chain), names[0], loaded.Network, "our gateway")
			}
			for _, l := range x.Listeners {
				if ListenerPort(l) == 443 {
					continue
				}
				for _, chain := range Chains(l) {
					if names := x.PluginFilterNames(t, plugin, chain); len(names) > 0 {
						t.Errorf("listener %s (port %d) loads the plugin", l.GetName(), ListenerPort(l))
					}
				}
			}
			shared := Find(t, world, "Deployment", "istio-ingressgateway")
			xShared := cl.Generate(t, cl.Proxy(t, shared.GetNamespace(), shared.GetName(), true))
			checkNoPlugin(t, xShared, plugin, "the shared istio-ingressgateway")
			if len(ChainsServing(xShared, UnrelatedHostName)) == 0 {
				t.Error("the other team's host is not served on the shared gateway")
			}
		})
	}
}

// expectHandshakeRefusals checks that our gateway's handshake refuses a client without a
// certificate and one from a look-alike root (a CA of the agreed root's name with a key of
// its own), counting each; it returns the agreed root.
func expectHandshakeRefusals(t *testing.T, m *TwoMeshes) Keypair {
	t.Helper()
	root := m.Root(t)
	for _, c := range []struct {
		name   string
		client *Keypair
		stat   string
	}{
		{"no client certificate", nil, ".ssl.fail_verify_no_cert"},
		{"a same-named root of its own", ptr(Issue(t, ptr(LookAlikeCA(t, root)), CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/client/sa/sleep"}, Usage: clientAuth})), ".ssl.fail_verify_error"},
	} {
		before := m.Gateway.Counter(c.stat)
		if result := m.GatewayTLS(t, c.client); result.Err == nil {
			t.Errorf("%s: got %s, want the handshake refused", c.name, result)
			continue
		}
		m.Gateway.WaitCounter(c.stat, before+1)
	}
	return root
}
