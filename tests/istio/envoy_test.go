package oracle

import (
	"crypto/x509"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Part 3: the generated manifests, through istiod's config generation and istio-agent's
// Wasm fetch, on the pinned real Envoy: the two-mesh path and its refusals.

// serveModule serves the built module over HTTP on loopback, as a registry or web server
// would; `gen --wasm-url` writes its URL and the module's SHA-256, which the agent checks.
func serveModule(t *testing.T) string {
	t.Helper()
	module := FilterWasm(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(module)))}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(func() { _ = server.Close() })
	return "http://" + l.Addr().String() + "/" + filepath.Base(module)
}

// genServed generates for the pinned release with the module served from url.
func genServed(t *testing.T, pin Pin, url string, flags ...string) Output {
	t.Helper()
	return genForPin(t, pin, append([]string{"--wasm-url", url, "--wasm", FilterWasm(t)}, flags...)...)
}

func TestTwoMeshesOnRealEnvoy(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)
	for _, mode := range []string{"mounted", "credentialName"} {
		t.Run("generated client, "+mode, func(t *testing.T) {
			m := StartTwoMeshes(t, pin, genServed(t, pin, url, "--client-cert-mode", mode))
			status, body := m.Hello(t)
			if status != http.StatusOK || !strings.HasPrefix(body, "Hello version: v1") {
				t.Fatalf("the application got %d %q\ngateway log:\n%s\nsidecar log:\n%s", status, body, m.Gateway.Log(), m.Sidecar.Log())
			}
			m.Gateway.WaitCounter("wasmcustom.peergate.allowed", 1)
			seen := m.Helloworld.Seen()
			if len(seen) != 1 {
				t.Fatalf("helloworld saw %d requests", len(seen))
			}
			if xfcc := seen[0].Header.Get("X-Forwarded-Client-Cert"); !strings.Contains(xfcc, "URI=spiffe://cluster-a/ns/client/sa/sleep") {
				t.Errorf("helloworld got XFCC %q", xfcc)
			}
			if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
				t.Errorf("denied = %d", got)
			}
		})
	}

	t.Run("refusals, exact allow-list", func(t *testing.T) {
		m := StartTwoMeshes(t, pin, genServed(t, pin, url))
		root := m.Root(t)
		// Istio's own checks come first: its handshake requires a client certificate from
		// the credential's cacert with the Gateway's subjectAltNames.
		cases := []struct {
			name   string
			client *Keypair
			stat   string
		}{
			{"no client certificate", nil, ".ssl.fail_verify_no_cert"},
			{"a same-named root of its own", ptr(Issue(t, ptr(LookAlikeCA(t, root)), CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/client/sa/sleep"}, Usage: clientAuth})), ".ssl.fail_verify_error"},
			{"a stranger of the same root", ptr(Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})), ".ssl.fail_verify_san"},
		}
		for _, c := range cases {
			before := m.Gateway.Counter(c.stat)
			result := m.GatewayTLS(t, c.client)
			if result.Err == nil {
				t.Errorf("%s: got %s, want the handshake refused", c.name, result)
				continue
			}
			m.Gateway.WaitCounter(c.stat, before+1)
		}
		if n := len(m.Helloworld.Seen()); n != 0 {
			t.Errorf("helloworld saw %d requests", n)
		}
		if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
			t.Errorf("the filter decided refused handshakes: denied = %d", got)
		}
		// The generated client still gets through.
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client got %d %q", status, body)
		}
	})

	// The request layer's refusals (a 403 with the reason); the connection layer's, which
	// `auto` picks from Istio 1.30 on a gateway of its own, are in "connection layer" below.
	t.Run("refusals by the filter, pattern allow-list", func(t *testing.T) {
		m := StartTwoMeshes(t, pin, genServed(t, pin, url, "--layer", "request", "--allowed-san", "spiffe://cluster-a/ns/client/*"))
		root := m.Root(t)
		// With a pattern the Gateway lists no subjectAltNames: Istio's handshake admits any
		// certificate of the root, and only the filter can refuse the stranger.
		stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
		result := m.GatewayTLS(t, &stranger)
		if result.Err != nil || result.Status != http.StatusForbidden || strings.TrimSpace(result.Body) != "san_not_allowed" || result.Headers.Get("x-peergate-reason") != "san_not_allowed" {
			t.Fatalf("the stranger got %s, want 403 san_not_allowed\n%s", result, m.Gateway.Log())
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.denied.san_not_allowed", 1)
		line := waitLog(t, m.Gateway, `"decision":"deny"`, "spiffe://cluster-a/ns/other/sa/x")
		t.Logf("the decision line reaches the log at Envoy's level %q: %s", "warning", line)
		client := m.ClientKeypair(t)
		if result := m.GatewayTLS(t, &client); result.Status != http.StatusOK {
			t.Fatalf("the generated client, straight to the gateway: %s", result)
		}
		if status, _ := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client through its sidecar got %d", status)
		}
		if n := len(m.Helloworld.Seen()); n != 2 {
			t.Errorf("helloworld saw %d requests, want the generated client's 2", n)
		}
	})

	t.Run("another team's host on the shared gateway", func(t *testing.T) {
		m := StartTwoMeshes(t, pin, genServed(t, pin, url))
		result := m.Unrelated(t)
		if result.Err != nil || result.Status != http.StatusOK || result.Body != "other team\n" {
			t.Fatalf("%s got %s, want 200 from its own backend", UnrelatedHostName, result)
		}
	})

	t.Run("an existing gateway shared with another team", func(t *testing.T) {
		out := GenWithConfig(t, ExistingGateway, "--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t), "--allowed-san", "spiffe://cluster-a/ns/client/*")
		m := StartTwoMeshes(t, pin, out)
		if m.Shared != nil {
			t.Fatal("the plugin should be on istio-ingressgateway itself")
		}
		// The other team's host shares our listener and so carries the plugin: its server
		// name is not protected, so it passes untouched, counted.
		result := m.Unrelated(t)
		if result.Err != nil || result.Status != http.StatusOK || result.Body != "other team\n" {
			t.Fatalf("%s got %s, want 200 from its own backend\n%s", UnrelatedHostName, result, m.Gateway.Log())
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.unprotected", 1)
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client got %d %q", status, body)
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.allowed", 1)
		// What gen prints for this mode: the gateway's own log level hides the decision
		// lines until `istioctl proxy-config log POD --level wasm:info`.
		m.Gateway.SetLogLevel("wasm", "info")
		root := m.Root(t)
		stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
		if result := m.GatewayTLS(t, &stranger); result.Status != http.StatusForbidden {
			t.Fatalf("the stranger on our host got %s, want 403", result)
		}
		waitLog(t, m.Gateway, `"decision":"deny"`, "spiffe://cluster-a/ns/other/sa/x")
		m.Gateway.WaitCounter("wasmcustom.peergate.unprotected", 1)
	})

	// Root → issuing CA → leaves, as `gen --intermediate` makes them: each side sends its
	// leaf with the issuing CA and trusts the root; the WasmPlugin trusts the issuing CA,
	// scoped to the client's name, with the root as its anchor. A revocation reaches both
	// the filter and Envoy's handshake (the credential's ca.crl, through Istio's SDS).
	t.Run("an issuing CA, its scope, and a revoked client", func(t *testing.T) {
		flags := []string{"--layer", "request", "--intermediate", "partner-issuing", "--allowed-san", "spiffe://cluster-a/ns/client/*"}
		out := genServed(t, pin, url, flags...)
		m := StartTwoMeshes(t, pin, out)
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client (leaf + issuing CA) got %d %q\n%s", status, body, m.Gateway.Log())
		}
		issuing := LoadKeypair(t, out.Dir+"/certs/partner-issuing-cert.pem", out.Dir+"/certs/partner-issuing-key.pem")
		under := func(ca Keypair, uri string) Keypair {
			leaf := Issue(t, &ca, CertificateTemplate{URIs: []string{uri}, Usage: clientAuth})
			leaf.Cert += ca.Cert
			return leaf
		}
		const sleep = "spiffe://cluster-a/ns/client/sa/sleep"
		// The allow-list is a pattern, so the Gateway lists no subjectAltNames: Istio's
		// handshake admits the issuing CA's leaves, and the scope is the filter's to enforce.
		outside := under(issuing, "spiffe://cluster-a/ns/client/sa/other")
		if result := m.GatewayTLS(t, &outside); result.Err != nil || result.Status != http.StatusForbidden || strings.TrimSpace(result.Body) != "outside_issuer_scope" {
			t.Fatalf("a name the allow-list admits but the issuing CA's scope does not: got %s, want 403 outside_issuer_scope\n%s", result, m.Gateway.Log())
		}
		m.Gateway.WaitCounter("wasmcustom.peergate.denied.outside_issuer_scope", 1)
		// Another issuing CA of the root, not listed: with the CRLs in the credential, Envoy
		// checks every CA of the chain against one and this one has none, so the handshake
		// refuses it before the filter would (its own untrusted_issuer is shown in
		// tests/real_pki.rs).
		root := m.Root(t)
		unlisted := Issue(t, &root, CertificateTemplate{CommonName: "another-issuing-ca", CA: true})
		stranger := under(unlisted, sleep)
		refusedBefore := m.Gateway.Counter(".ssl.fail_verify_error")
		if result := m.GatewayTLS(t, &stranger); result.Err == nil {
			t.Fatalf("a leaf of an issuing CA that is not listed got %s, want its handshake refused", result)
		}
		m.Gateway.WaitCounter(".ssl.fail_verify_error", refusedBefore+1)
		// A second client with the generated client's identity, from the issuing CA: admitted
		// until `peergate revoke` puts it on the issuing CA's CRL.
		stolen := under(issuing, sleep)
		if result := m.GatewayTLS(t, &stolen); result.Status != http.StatusOK {
			t.Fatalf("a second client of the issuing CA before revocation: %s", result)
		}
		revokeServed(t, pin, out, url, stolen.Cert, flags...)
		if !strings.Contains(out.File(t, "cluster-b/secret-cluster-b-server-cert.yaml"), "ca.crl") {
			t.Fatal("the credential has no ca.crl after revoke")
		}
		m = StartTwoMeshes(t, pin, out)
		before := m.Gateway.Counter(".ssl.fail_verify_error")
		if result := m.GatewayTLS(t, &stolen); result.Err == nil {
			t.Fatalf("the revoked client got %s, want its handshake refused through ca.crl", result)
		}
		m.Gateway.WaitCounter(".ssl.fail_verify_error", before+1)
		if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
			t.Errorf("the filter saw a handshake Envoy refused: denied = %d", got)
		}
		if status, body := m.Hello(t); status != http.StatusOK {
			t.Fatalf("the generated client after the revocation got %d %q\n%s", status, body, m.Gateway.Log())
		}
	})

	// Istio waits for the plugin's ECDS before the listener serves; when the very first
	// pluginConfig is refused there is no earlier policy to keep, and Envoy's stand-in for a
	// missing filter configuration fails closed: the request layer answers every request on
	// the host 500 (NFCF), the connection layer closes every connection (the sidecar's 503).
	layers := []string{"request"}
	if pin.AtLeast(30) {
		layers = append(layers, "connection")
	}
	for _, layer := range layers {
		t.Run("a first configuration the filter refuses, "+layer+" layer", func(t *testing.T) {
			out := genServed(t, pin, url, "--layer", layer)
			m := StartTwoMeshes(t, pin, out, AllowingWarmListeners(), ChangingClusterB(func(objects []*unstructured.Unstructured) {
				plugin := Find(t, objects, "WasmPlugin", "peergate")
				spec(plugin.Object)["pluginConfig"].(map[string]any)["allowedSanz"] = []any{"spiffe://cluster-a/*"}
			}))
			// Through the sidecar: the gateway's 500, or the sidecar's 503 for a closed
			// connection. Straight to the gateway: the 500, or the connection closed.
			want, refused := http.StatusInternalServerError, func(r TLSResult) bool { return r.Status == http.StatusInternalServerError }
			if layer == "connection" {
				want, refused = http.StatusServiceUnavailable, func(r TLSResult) bool { return r.Err != nil }
			}
			if status, _ := m.Hello(t); status != want {
				t.Fatalf("the generated client got %d, want %d", status, want)
			}
			client := m.ClientKeypair(t)
			if result := m.GatewayTLS(t, &client); !refused(result) {
				t.Fatalf("straight to the gateway: %s, refused by neither a 500 nor a close", result)
			}
			m.Gateway.WaitCounter(".update_rejected", 1)
			waitLog(t, m.Gateway, "peergate: rejecting configuration: pluginConfig field `allowedSanz`")
			if n := len(m.Helloworld.Seen()); n != 0 {
				t.Errorf("helloworld saw %d requests", n)
			}
		})
	}

	if !pin.AtLeast(30) {
		// What the gate of plugin.layer keeps users from: this release's Envoy has no
		// connection.peer_certificate, so a network filter sees no certificate at all.
		t.Run("connection layer, refused by the gate", func(t *testing.T) {
			m := StartTwoMeshes(t, pin, Gen(t, "--wasm-url", url, "--wasm", FilterWasm(t), "--layer", "connection"))
			if status, _ := m.Hello(t); status != http.StatusServiceUnavailable {
				t.Fatalf("the generated client got %d, want its sidecar's 503: the gateway closes every connection", status)
			}
			m.Gateway.WaitCounter("wasmcustom.peergate.denied.proxy_error", 1)
		})
	}

	if pin.AtLeast(30) {
		// What `auto` (the default) picks on this release for a gateway of its own.
		t.Run("connection layer", func(t *testing.T) {
			out := genServed(t, pin, url, "--allowed-san", "spiffe://cluster-a/ns/client/*")
			if plugin := Find(t, out.Objects(t, "cluster-b"), "WasmPlugin", "peergate"); spec(plugin.Object)["type"] != "NETWORK" {
				t.Fatalf("the default layer on Istio %s: WasmPlugin type %v, want NETWORK", pin.Name, spec(plugin.Object)["type"])
			}
			m := StartTwoMeshes(t, pin, out)
			if status, body := m.Hello(t); status != http.StatusOK {
				t.Fatalf("the generated client got %d %q\n%s", status, body, m.Gateway.Log())
			}
			root := m.Root(t)
			stranger := Issue(t, &root, CertificateTemplate{URIs: []string{"spiffe://cluster-a/ns/other/sa/x"}, Usage: clientAuth})
			started := time.Now()
			result := m.GatewayTLS(t, &stranger)
			if result.Err == nil {
				t.Fatalf("the stranger got %s, want its connection closed", result)
			}
			t.Logf("the stranger's connection ended after %v: %v", time.Since(started), result.Err)
			m.Gateway.WaitCounter("wasmcustom.peergate.denied.san_not_allowed", 1)
			if n := len(m.Helloworld.Seen()); n != 1 {
				t.Errorf("helloworld saw %d requests, want the generated client's 1", n)
			}
		})
	}
}

var clientAuth = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

func ptr[T any](v T) *T { return &v }

func waitLog(t *testing.T, e *Envoy, needles ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(e.Log(), "\n") {
			all := true
			for _, n := range needles {
				all = all && strings.Contains(line, n)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", needles, e.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// revokeServed runs `peergate revoke --reason keyCompromise` on the certificate, for an
// output genServed made with these flags.
func revokeServed(t *testing.T, pin Pin, out Output, url, cert string, flags ...string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "revoked.pem")
	if err := os.WriteFile(file, []byte(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	revoke := exec.Command(PeergateBin(t), append([]string{"revoke", "--config", filepath.Join(filepath.Dir(out.Dir), "mesh.toml"), "--out", out.Dir, "--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t), "--cert", file, "--reason", "keyCompromise"}, flags...)...)
	if output, err := revoke.CombinedOutput(); err != nil {
		t.Fatalf("peergate revoke: %v\n%s", err, output)
	}
}
