package oracle

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Issue 19: a staged root rotation (`peergate rotate --stage trust|reissue|retire`) applied
// to both running clusters in the README's order, each stage delivered as Istio delivers it
// (the credential and the client's mounted files over SDS, the WasmPlugin over ECDS), under
// continuous traffic from the generated client: 0 failed requests, and after retire a
// client still holding an old-root certificate is refused.

// maxConnectionDuration is what the README tells users to set on the DestinationRule before
// reissue, so that no connection opened with an old-root certificate outlives the wait
// between reissue and retire (the filter checks the peer of every request, and after
// retire it no longer trusts the old root).
const maxConnectionDuration = "2s"

// withConnectionPool is a user's edit of cluster A: the DestinationRule's port-level
// settings for 443 (beside tls) given a connectionPool. Not the subset's trafficPolicy:
// when a port has port-level settings Istio applies those alone, and a connectionPool beside
// them is ignored (GetPortLevelTrafficPolicy, pilot/pkg/networking/util/util.go).
func withConnectionPool(t *testing.T, objects []*unstructured.Unstructured, pool map[string]any) []*unstructured.Unstructured {
	t.Helper()
	for _, o := range objects {
		if o.GetKind() != "DestinationRule" {
			continue
		}
		subsets, _, _ := unstructured.NestedSlice(o.Object, "spec", "subsets")
		if len(subsets) != 1 {
			t.Fatalf("the DestinationRule has %d subsets, want 1", len(subsets))
		}
		policy := subsets[0].(map[string]any)["trafficPolicy"].(map[string]any)
		ports := policy["portLevelSettings"].([]any)
		if len(ports) != 1 {
			t.Fatalf("the subset has %d port-level settings, want 1", len(ports))
		}
		ports[0].(map[string]any)["connectionPool"] = pool
		if err := unstructured.SetNestedSlice(o.Object, subsets, "spec", "subsets"); err != nil {
			t.Fatal(err)
		}
		return objects
	}
	t.Fatal("no DestinationRule in cluster A")
	return nil
}

// load sends requests to a sidecar until stopped, from one application connection (HTTP
// keep-alive to the sidecar), counting what came back.
type load struct {
	name     string
	ok       atomic.Int64
	mu       sync.Mutex
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func startLoad(name, addr, host string) *load {
	l := &load{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			request, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/hello", nil)
			request.Host = host
			response, err := client.Do(request)
			if err != nil {
				l.fail(err.Error())
				continue
			}
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			if response.StatusCode != http.StatusOK || string(body) != HelloBody {
				l.fail(fmt.Sprintf("%d %q", response.StatusCode, body))
				continue
			}
			l.ok.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return l
}

func (l *load) fail(why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+why)
}

// waitMore waits until n more requests succeeded.
func (l *load) waitMore(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for l.ok.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d successes in 30 s, want %d; failures: %v", l.name, l.ok.Load(), target, l.failed())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string{}, l.failures...)
}

func (l *load) finish() (int64, []string) {
	close(l.stop)
	<-l.done
	return l.ok.Load(), l.failed()
}

// finishLoads stops every load and fails the test for each failed request, saying during
// what, with the gateway's log.
func finishLoads(t *testing.T, loads []*load, during string, gateway *Envoy) {
	t.Helper()
	for _, l := range loads {
		ok, failures := l.finish()
		t.Logf("%s: %d requests succeeded, %d failed", l.name, ok, len(failures))
		if len(failures) != 0 {
			t.Errorf("%s: %d failed requests %s: %v\ngateway log:\n%s", l.name, len(failures), during, failures, gateway.Log())
		}
	}
}

func TestRootRotationWithoutDowntime(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)
	for _, flags := range [][]string{nil, {"--intermediate", "partner-issuing"}} {
		name := "root → leaves"
		if flags != nil {
			name = "root → issuing CA → leaves"
		}
		t.Run(name, func(t *testing.T) {
			out := genServed(t, pin, url, flags...)
			m := StartTwoMeshes(t, pin, out)
			// The client as it presents itself: under an issuing CA, with that CA's certificate.
			presented := func() Keypair {
				client := m.ClientKeypair(t)
				if flags != nil {
					client.Cert += out.File(t, "certs/partner-issuing-cert.pem")
				}
				return client
			}
			oldClient := presented()
			oldRoot := m.Root(t)
			objectsA := func(pool map[string]any) []*unstructured.Unstructured {
				return withConnectionPool(t, out.Objects(t, "cluster-a"), pool)
			}
			// Keep-alive: the sidecar pools its mutual-TLS connections to the gateway, each
			// ended after maxConnectionDuration. New connections: one per request.
			keepAlivePool := map[string]any{"tcp": map[string]any{"maxConnectionDuration": maxConnectionDuration}}
			freshPool := map[string]any{"http": map[string]any{"maxRequestsPerConnection": int64(1)}}
			keepAlive := m.StartSidecar(t, objectsA(keepAlivePool))
			fresh := m.StartSidecar(t, objectsA(freshPool))
			loads := []*load{
				startLoad("keep-alive", keepAlive.Address(80), m.Domain),
				startLoad("new connection per request", fresh.Address(80), m.Domain),
			}
			for _, l := range loads {
				l.waitMore(t, 20)
			}
			handshakes := m.Gateway.Counter(".ssl.handshake")

			rotate := func(stage string) {
				t.Helper()
				args := append([]string{"rotate", "--stage", stage, "--config", filepath.Join(filepath.Dir(out.Dir), "mesh.toml"), "--out", out.Dir,
					"--istio-version", pin.Name, "--wasm-url", url, "--wasm", FilterWasm(t)}, flags...)
				output, err := exec.Command(PeergateBin(t), args...).CombinedOutput()
				if err != nil {
					t.Fatalf("peergate rotate --stage %s: %v\n%s", stage, err, output)
				}
				t.Logf("peergate rotate --stage %s:\n%s", stage, output)
			}
			for _, stage := range []string{"trust", "reissue", "retire"} {
				rotate(stage)
				// The README's order: cluster B, then cluster A, each once its proxies have
				// the new certificates (istioctl proxy-config secret), then the next stage.
				started := time.Now()
				m.ApplyClusterB(t, out)
				m.ApplyClusterA(t, keepAlive, objectsA(keepAlivePool))
				m.ApplyClusterA(t, fresh, objectsA(freshPool))
				t.Logf("stage %s on both clusters in %v", stage, time.Since(started))
				if stage == "reissue" {
					// Before retire: every connection opened with an old-root certificate has
					// ended (maxConnectionDuration, twice over).
					d, _ := time.ParseDuration(maxConnectionDuration)
					time.Sleep(2 * d)
				}
				for _, l := range loads {
					l.waitMore(t, 50)
				}
			}
			finishLoads(t, loads, "during the rotation", m.Gateway)
			if n := m.Gateway.Counter(".ssl.handshake") - handshakes; n < 100 {
				t.Errorf("only %d handshakes at the gateway during the rotation: the new-connection traffic did not open connections", n)
			}
			if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
				t.Errorf("denied = %d", got)
			}
			if n := keepAlive.Counter("tls-origination|" + m.Domain + ";.upstream_cx_max_duration_reached"); n == 0 {
				t.Error("no keep-alive connection reached maxConnectionDuration: the DestinationRule edit did not take")
			}

			// After retire: the new root everywhere, the old client refused at the handshake
			// (the credential trusts the new root only), the new one admitted.
			newRoot := m.Root(t)
			if newRoot.Cert == oldRoot.Cert {
				t.Fatal("root-cert.pem is still the old root after retire")
			}
			before := m.Gateway.Counter(".ssl.fail_verify_error")
			if result := TLSGet(t, m.Gateway.Address(m.GatewayPort), m.Domain, "/hello", &oldClient, newRoot.Cert); result.Err == nil {
				t.Fatalf("a client with the old root's certificate got %s after retire, want its handshake refused", result)
			}
			m.Gateway.WaitCounter(".ssl.fail_verify_error", before+1)
			newClient := presented()
			if strings.Contains(newClient.Cert, oldClient.Cert) {
				t.Fatal("the client certificate was not reissued")
			}
			if result := m.GatewayTLS(t, &newClient); result.Status != http.StatusOK {
				t.Fatalf("the reissued client straight to the gateway: %s", result)
			}
		})
	}
}
