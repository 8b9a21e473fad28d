package oracle

import (
	"bufio"
	gotls "crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"golang.org/x/net/http2"
)

// RoutesMesh is the README's one-partner-per-path example: the generated client (partner A)
// may call /payments/ with GET and POST, partner B only GET /status.
const RoutesMesh = `
[clusterB]
allowedSans = ["spiffe://cluster-a/ns/client/sa/sleep", "spiffe://partner-b/*"]

[[clusterB.routes]]
pathPrefix = "/payments/"
methods = ["GET", "POST"]
allowedSans = ["spiffe://cluster-a/ns/client/sa/sleep"]

[[clusterB.routes]]
pathPrefix = "/status"
methods = ["GET"]
`

// partnerB is the SPIFFE ID of the second partner.
const partnerB = "spiffe://partner-b/ns/status/sa/poller"

// rawResult is what one request got: a status and the reason header, or an error.
type rawResult struct {
	Err    error
	Status int
	Reason string
}

func (r rawResult) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Status, r.Reason)
}

// rawRequest sends `method path` exactly as written to the gateway over mutual TLS, as
// HTTP/1.1 (the request line byte for byte) or HTTP/2 (:path as given), with extra headers.
func rawRequest(t testing.TB, addr, host, method, path string, client Keypair, root string, h2 bool, headers map[string]string) rawResult {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(root))
	pair, err := gotls.X509KeyPair([]byte(client.Cert), []byte(client.Key))
	if err != nil {
		t.Fatal(err)
	}
	config := &gotls.Config{ServerName: host, RootCAs: pool, Certificates: []gotls.Certificate{pair}, MinVersion: gotls.VersionTLS12}
	if h2 {
		config.NextProtos = []string{"h2"}
		transport := &http2.Transport{TLSClientConfig: config, DialTLS: func(network, _ string, c *gotls.Config) (net.Conn, error) {
			return gotls.Dial(network, addr, c)
		}}
		defer transport.CloseIdleConnections()
		request, err := http.NewRequest(method, "https://"+host+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		request.URL = &url.URL{Scheme: "https", Host: host, Opaque: path}
		for k, v := range headers {
			request.Header.Set(k, v)
		}
		response, err := transport.RoundTrip(request)
		if err != nil {
			return rawResult{Err: err}
		}
		defer response.Body.Close()
		_, _ = io.ReadAll(response.Body)
		return rawResult{Status: response.StatusCode, Reason: response.Header.Get("x-peergate-reason")}
	}
	conn, err := gotls.Dial("tcp", addr, config)
	if err != nil {
		return rawResult{Err: err}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var extra strings.Builder
	for k, v := range headers {
		fmt.Fprintf(&extra, "%s: %s\r\n", k, v)
	}
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nhost: %s\r\n%sconnection: close\r\n\r\n", method, path, host, extra.String())
	response, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return rawResult{Err: err}
	}
	defer response.Body.Close()
	_, _ = io.ReadAll(response.Body)
	return rawResult{Status: response.StatusCode, Reason: response.Header.Get("x-peergate-reason")}
}

// Routes and the forwarded identity through Istio's own gateway configuration on the pin's
// Envoy, over HTTP/1.1 and HTTP/2: each route admits its partner and method; every spelling
// of a path partner B may not call is refused (by Istio's normalisation and the filter) and
// never reaches the backend; a client-sent x-peergate-* header never does either.
func TestRoutesThroughIstiosGateway(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)
	out := GenWithConfig(t, RoutesMesh, "--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t))
	m := StartTwoMeshes(t, pin, out)
	root := m.Root(t)
	rootPEM := root.Cert
	a := m.ClientKeypair(t)
	b := Issue(t, &root, CertificateTemplate{URIs: []string{partnerB}, Usage: clientAuth})
	addr := m.Gateway.Address(m.GatewayPort)
	// The normalisation Istio configures on this gateway's HTTPS connection manager
	// (pilot/pkg/networking/core/listener_builder.go, pathNormalization DEFAULT = BASE): the
	// spelling table below is what it, Envoy and the filter make of each path.
	for chain := range ChainsServing(m.GatewayX, m.Domain) {
		for _, manager := range HCMs(t, &listener.Listener{FilterChains: []*listener.FilterChain{chain}}) {
			got := fmt.Sprintf("normalize_path=%v merge_slashes=%v path_with_escaped_slashes_action=%v",
				manager.GetNormalizePath().GetValue(), manager.GetMergeSlashes(), manager.GetPathWithEscapedSlashesAction())
			t.Logf("Istio %s gateway: %s", pin.Name, got)
			if got != "normalize_path=true merge_slashes=false path_with_escaped_slashes_action=KEEP_UNCHANGED" {
				t.Fatalf("Istio %s normalises otherwise (%s): review the spelling table", pin.Name, got)
			}
		}
	}
	for _, h2 := range []bool{false, true} {
		proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]
		get := func(client Keypair, method, path string, headers map[string]string) rawResult {
			return rawRequest(t, addr, m.Domain, method, path, client, rootPEM, h2, headers)
		}
		for _, c := range []struct {
			who          string
			client       Keypair
			method, path string
			want         string
		}{
			{"A", a, "POST", "/payments/charge", "200"},
			{"A", a, "GET", "/payments/charge?x=1", "200"},
			{"A", a, "DELETE", "/payments/charge", "route_not_allowed"},
			{"B", b, "GET", "/payments/charge", "route_not_allowed"},
			{"B", b, "GET", "/status", "200"},
			{"B", b, "POST", "/status", "route_not_allowed"},
			{"B", b, "GET", "/other", "200"},
		} {
			got := get(c.client, c.method, c.path, nil)
			ok := got.Err == nil && ((c.want == "200" && got.Status == 200) || (got.Status == 403 && got.Reason == c.want))
			if !ok {
				t.Errorf("%s %s %s %s: got %s, want %s\n%s", proto, c.who, c.method, c.path, got, c.want, m.Gateway.Log())
			}
		}
		// Partner B under every spelling of a /payments/ path: never the backend.
		before := len(m.Helloworld.Seen())
		// Envoy resolves dot-segments (also %2e), turns \ into / and decodes %61 before the
		// filter sees the path: those reach the route the backend would see. %2F, %5C and //
		// it leaves (KEEP_UNCHANGED, no merge_slashes): the filter refuses them.
		spellings := []struct{ path, want string }{
			{"/status/../payments/charge", "route_not_allowed"},
			{"/./payments/charge", "route_not_allowed"},
			{"/status/%2e%2e/payments/charge", "route_not_allowed"},
			{"/status/%2E%2E/payments/charge", "route_not_allowed"},
			{"/status/..\\payments/charge", "route_not_allowed"},
			{"/p%61yments/charge", "route_not_allowed"},
			{"/PAYMENTS/charge/../../payments/charge", "route_not_allowed"},
			{"/status%2F..%2Fpayments/charge", "unnormalized_path"},
			{"/payments%2Fcharge", "unnormalized_path"},
			{"/status/..%2Fpayments/charge", "unnormalized_path"},
			{"/status/..%5Cpayments/charge", "unnormalized_path"},
			{"/payments//charge", "unnormalized_path"},
		}
		if !h2 {
			spellings = append(spellings, struct{ path, want string }{"//payments/charge", "unnormalized_path"})
		}
		for _, c := range spellings {
			got := get(b, "GET", c.path, nil)
			if got.Err != nil || got.Status != http.StatusForbidden || got.Reason != c.want {
				t.Errorf("Istio %s, %s: partner B GET %s got %s, want 403 %s", pin.Name, proto, c.path, got, c.want)
			}
		}
		for _, seen := range m.Helloworld.Seen()[before:] {
			if strings.Contains(strings.ToLower(seen.URL.Path), "payments") {
				t.Errorf("%s: the backend saw %s from partner B", proto, seen.URL.Path)
			}
		}
		// Spoofed identity headers never reach the backend; the filter's do.
		before = len(m.Helloworld.Seen())
		got := get(b, "GET", "/status", map[string]string{"x-peergate-peer": "admin", "X-PeerGate-Sans": "\"URI:spiffe://admin\"", "x-peergate-audit": "allow"})
		if got.Status != 200 {
			t.Fatalf("%s: B GET /status with spoofed headers: %s", proto, got)
		}
		seen := m.Helloworld.Seen()[before:]
		if len(seen) != 1 {
			t.Fatalf("%s: the backend saw %d requests", proto, len(seen))
		}
		if peers := seen[0].Header.Values("X-Peergate-Peer"); len(peers) != 1 || peers[0] != partnerB {
			t.Errorf("%s: the backend got x-peergate-peer %q, want only %q", proto, peers, partnerB)
		}
		if v := seen[0].Header.Values("X-Peergate-Audit"); len(v) != 0 {
			t.Errorf("%s: the backend got x-peergate-audit %q", proto, v)
		}
		if sans := seen[0].Header.Get("X-Peergate-Sans"); strings.Contains(sans, "admin") {
			t.Errorf("%s: the backend got x-peergate-sans %q", proto, sans)
		}
	}
	// The generated client through its sidecar still gets helloworld on a path no route has.
	if status, body := m.Hello(t); status != http.StatusOK {
		t.Fatalf("the application got %d %q", status, body)
	}
}
