package oracle

import (
	gotls "crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Backend is a plain-HTTP workload standing in for a Pod behind the gateway (its own sidecar
// is not modelled: the gateway's automatic mTLS picks plain text for a Pod without one).
type Backend struct {
	Addr string
	mu   sync.Mutex
	seen []*http.Request
}

// StartBackend answers every request with 200 and body.
func StartBackend(t testing.TB, body string) *Backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Addr: l.Addr().String()}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, r)
		b.mu.Unlock()
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = server.Serve(l) }()
	t.Cleanup(func() { _ = server.Close() })
	return b
}

// Seen are the requests that reached the backend.
func (b *Backend) Seen() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request{}, b.seen...)
}

// HelloBody is what the helloworld stand-in answers.
const HelloBody = "Hello version: v1, instance: helloworld-oracle\n"

// TwoMeshes is the whole path on real Envoys configured by istiod from the generated
// objects: cluster A's sidecar, cluster B's gateway (and the shared istio-ingressgateway
// with another team's host), helloworld behind it.
type TwoMeshes struct {
	Out     Output
	Domain  string
	Plugin  Plugin
	Gateway *Envoy
	// PublicPort is the Service port the partner calls our host on (443, or a ListenerSet's).
	PublicPort int
	// GatewayPort is the listener port of our gateway for Service port PublicPort.
	GatewayPort int
	// GatewayHTTPPort is its listener port for Service port 80 (0: no such port).
	GatewayHTTPPort int
	// Shared is istio-ingressgateway when it is not our gateway.
	Shared *Envoy
	// UnrelatedAddr is where the other team's host is served (istio-ingressgateway's
	// listener for Service port 443).
	UnrelatedAddr string
	Sidecar       *Envoy
	Helloworld    *Backend
	Other         *Backend
	GatewayX      *XDS
	// OtherCert is the unrelated host's server certificate.
	OtherCert Keypair

	pin            Pin
	clusterBChange func([]*unstructured.Unstructured)
	addObjects     func([]*unstructured.Unstructured) []*unstructured.Unstructured
	ours           *unstructured.Unstructured
	allowWarming   bool
	istioStats     bool
	shiftPorts     bool
	// onlyOurs launches our gateway and the sidecar, not a shared gateway beside ours.
	onlyOurs bool
	meshB    Keypair
	// launch starts (or only prepares) a proxy's Envoy; name says which proxy.
	launch func(name string, x *XDS, opts EnvoyOptions) *Envoy
	// fetchWasm is istio-agent's Wasm step on the gateway's extension configs.
	fetchWasm func(t testing.TB, resources []*anypb.Any)
}

// MeshOption changes how StartTwoMeshes builds the clusters.
type MeshOption func(*meshOptions)

type meshOptions struct {
	clusterB     func([]*unstructured.Unstructured)
	allowWarming bool
	istioStats   bool
	addObjects   func([]*unstructured.Unstructured) []*unstructured.Unstructured
}

// WithObjects adds objects to each cluster as applied, on start and on every Apply (what a
// controller in the cluster writes: cert-manager's Secrets).
func WithObjects(add func([]*unstructured.Unstructured) []*unstructured.Unstructured) MeshOption {
	return func(o *meshOptions) { o.addObjects = add }
}

// ChangingClusterB changes cluster B's applied objects first (a user's edit).
func ChangingClusterB(change func([]*unstructured.Unstructured)) MeshOption {
	return func(o *meshOptions) { o.clusterB = change }
}

// WithIstioStats gives the gateway's Envoy the stats_config Istio's bootstrap writes for the
// gateway Pod (IstioStatsConfig): only what Istio's stats matcher admits is scraped.
func WithIstioStats() MeshOption {
	return func(o *meshOptions) { o.istioStats = true }
}

// AllowingWarmListeners starts the gateway even when some listeners never become active.
func AllowingWarmListeners() MeshOption {
	return func(o *meshOptions) { o.allowWarming = true }
}

// StartTwoMeshes builds both clusters from the output and starts their proxies with the
// pinned Envoy.
func StartTwoMeshes(t *testing.T, pin Pin, out Output, options ...MeshOption) *TwoMeshes {
	t.Helper()
	binary := EnvoyBin(t)
	m := newTwoMeshes(pin, out, options)
	m.launch = func(_ string, x *XDS, opts EnvoyOptions) *Envoy { return StartEnvoy(t, binary, x, opts) }
	m.Helloworld = StartBackend(t, HelloBody)
	m.Other = StartBackend(t, "other team\n")
	m.build(t, m.Helloworld.Addr, m.Other.Addr)
	return m
}

func newTwoMeshes(pin Pin, out Output, options []MeshOption) *TwoMeshes {
	var opts meshOptions
	for _, o := range options {
		o(&opts)
	}
	return &TwoMeshes{Out: out, pin: pin, clusterBChange: opts.clusterB, addObjects: opts.addObjects,
		allowWarming: opts.allowWarming, istioStats: opts.istioStats, fetchWasm: func(t testing.TB, resources []*anypb.Any) { AgentFetch(t, resources) }}
}

// build makes both clusters from the output and launches their proxies, with helloworld's
// Pods served at helloworld and the other team's at other.
func (m *TwoMeshes) build(t *testing.T, helloworld, other string) {
	t.Helper()
	m.OtherCert = Issue(t, nil, CertificateTemplate{CommonName: UnrelatedHostName, DNSNames: []string{UnrelatedHostName}})
	objectsB, world, clB := m.clusterB(t, m.Out)
	m.Plugin = ReadPlugin(t, objectsB)
	gatewayObject, ours := ourGateway(t, objectsB, world.Objects())
	m.Domain, m.PublicPort = gatewayHosts(t, gatewayObject)[0], 443
	// On another owner's Gateway API gateway our host is the ListenerSet's, on its port.
	if domain, port, ok := listenerSetHost(objectsB); ok {
		m.Domain, m.PublicPort = domain, port
	}
	m.ours = ours
	upstreams := podUpstreams(t, world, clB, helloworld, other)
	m.meshB = NewCA(t, "cluster-b-mesh-ca")
	oursGenerated := slices.ContainsFunc(objectsB, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "Deployment" && o.GetName() == ours.GetName() && o.GetNamespace() == ours.GetNamespace()
	})
	m.Gateway, m.GatewayX = m.launchGateway(t, "gateway", clB, ours, oursGenerated, upstreams)
	m.GatewayPort = targetPort(t, world.Objects(), ours, int64(m.PublicPort))
	m.GatewayHTTPPort, _ = servicePort(world.Objects(), ours, 80)
	shared := Find(t, world.Objects(), "Deployment", "istio-ingressgateway")
	m.UnrelatedAddr = m.Gateway.Address(targetPort(t, world.Objects(), shared, 443))
	if shared != ours && !m.onlyOurs {
		m.Shared, _ = m.launchGateway(t, "shared-gateway", clB, shared, false, upstreams)
		m.UnrelatedAddr = m.Shared.Address(targetPort(t, world.Objects(), shared, 443))
	}
	m.Sidecar = m.StartSidecar(t, m.ClusterAObjects(t))
}

// podUpstreams maps every container port of cluster B's Pods to where it is served here:
// the other team's at other, every other at helloworld.
func podUpstreams(t *testing.T, world *World, clB *Cluster, helloworld, other string) map[string]string {
	t.Helper()
	upstreams := map[string]string{}
	for _, dep := range OfKind(world.Objects(), "Deployment") {
		pod := clB.Pod(t, dep.GetNamespace(), dep.GetName())
		ip, _, _ := unstructured.NestedString(pod.Object, "status", "podIP")
		containers, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers")
		for _, c := range containers {
			ports, _, _ := unstructured.NestedSlice(c.(map[string]any), "ports")
			for _, p := range ports {
				number, _ := toInt64(p.(map[string]any)["containerPort"])
				target := helloworld
				if dep.GetNamespace() == "other-team" {
					target = other
				}
				upstreams[net.JoinHostPort(ip, strconv.FormatInt(number, 10))] = target
			}
		}
	}
	return upstreams
}

// launchGateway launches the gateway Pod of dep (name says which gateway it is here): istiod's config for it after the agent's
// Wasm step, with the log levels pilot-agent would pass (from the injected arguments when
// generated is true: the Deployment is ours).
func (m *TwoMeshes) launchGateway(t *testing.T, name string, clB *Cluster, dep *unstructured.Unstructured, generated bool, upstreams map[string]string) (*Envoy, *XDS) {
	t.Helper()
	proxy := clB.Proxy(t, dep.GetNamespace(), dep.GetName(), true)
	x := clB.Generate(t, proxy)
	m.fetchWasm(t, x.ExtensionsRaw)
	envoyOpts := EnvoyOptions{
		Upstreams:            upstreams,
		Node:                 dep.GetName() + "." + dep.GetNamespace(),
		AgentSecrets:         WorkloadSecrets(t, m.meshB, dep.GetNamespace(), proxy.VerifiedIdentity.ServiceAccount),
		AllowWarming:         m.allowWarming,
		ShiftPrivilegedPorts: m.shiftPorts,
	}
	if m.istioStats {
		annotations, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "annotations")
		envoyOpts.StatsConfig = IstioStatsConfig(t, annotations)
	}
	var args []string
	switch {
	case renderedProxy(dep) != nil:
		// Istio rendered the Deployment itself (a Gateway API gateway): its istio-proxy
		// container is final.
		args = renderedProxy(dep)
	case generated:
		args = ProxyArgs(Inject(t, dep))
		if !slices.Contains(args, "router") {
			t.Fatalf("Istio's injector did not make %s a gateway (istio-proxy args %v)", dep.GetName(), args)
		}
	}
	envoyOpts.LogLevel, envoyOpts.ComponentLogLevel = agentLogLevels(args)
	return m.launch(name, x, envoyOpts), x
}

// clusterB is cluster B as applied from the output: its objects (after a ChangingClusterB
// edit), the world with the shared gateway and the other team's host, and istiod's view.
func (m *TwoMeshes) clusterB(t *testing.T, out Output) ([]*unstructured.Unstructured, *World, *Cluster) {
	t.Helper()
	objectsB := out.Objects(t, "cluster-b")
	if m.clusterBChange != nil {
		m.clusterBChange(objectsB)
	}
	if m.addObjects != nil {
		objectsB = m.addObjects(objectsB)
	}
	world := NewWorld(objectsB)
	world.AddManagedGateways(t)
	if !hasDeployment(objectsB, "istio-system", "istio-ingressgateway") {
		world.Add(t, SharedIngressGateway)
	}
	world.Add(t, UnrelatedHost(m.OtherCert.Cert, m.OtherCert.Key))
	return objectsB, world, world.Start(t, m.pin)
}

// sidecarConfig is what cluster A's sleep Pod gets from these objects: istiod's config and
// the SDS secrets istio-agent serves from the mounted files.
func (m *TwoMeshes) sidecarConfig(t *testing.T, objectsA []*unstructured.Unstructured) (*XDS, []*tls.Secret, *unstructured.Unstructured) {
	t.Helper()
	clA := NewWorld(objectsA).Start(t, m.pin)
	sleep := OfKind(objectsA, "Deployment")[0]
	xA := clA.Generate(t, clA.Proxy(t, sleep.GetNamespace(), sleep.GetName(), false))
	injected := Inject(t, sleep)
	files := ProxyFiles(t, injected, sleep.GetNamespace(), objectsA)
	return xA, AgentFileSecrets(t, xA.SecretNames, files), sleep
}

// StartSidecar starts a cluster A sidecar (the sleep Pod's) from these objects: the
// generated ones, or a user's edit of them.
func (m *TwoMeshes) StartSidecar(t *testing.T, objectsA []*unstructured.Unstructured) *Envoy {
	t.Helper()
	xA, fileSecrets, sleep := m.sidecarConfig(t, objectsA)
	injected := Inject(t, sleep)
	serviceAccount, _, _ := unstructured.NestedString(sleep.Object, "spec", "template", "spec", "serviceAccountName")
	agentSecrets := append(fileSecrets,
		WorkloadSecrets(t, NewCA(t, "cluster-a-mesh-ca"), sleep.GetNamespace(), serviceAccount)...)
	logLevel, componentLogLevel := agentLogLevels(ProxyArgs(injected))
	return m.launch("sidecar", xA, EnvoyOptions{
		// DNS for the domain leads to our gateway's load balancer, which forwards Service
		// port 443 to the gateway Pod's listener port.
		Upstreams:            map[string]string{net.JoinHostPort(m.Domain, strconv.Itoa(m.PublicPort)): m.Gateway.Address(m.GatewayPort)},
		AgentSecrets:         agentSecrets,
		LogLevel:             logLevel,
		ComponentLogLevel:    componentLogLevel,
		Node:                 sleep.GetName() + "." + sleep.GetNamespace(),
		ShiftPrivilegedPorts: m.shiftPorts,
	})
}

// ApplyClusterB is `kubectl apply -k cluster-b` of a new output on the running gateway:
// istiod's new config for it, delivered as istiod and the agent deliver a change (SDS for
// the credential, ECDS for the plugin), returned once Envoy has taken it.
func (m *TwoMeshes) ApplyClusterB(t *testing.T, out Output) (changedSecrets, changedExtensions int) {
	t.Helper()
	_, _, clB := m.clusterB(t, out)
	x := clB.Generate(t, clB.Proxy(t, m.ours.GetNamespace(), m.ours.GetName(), true))
	m.fetchWasm(t, x.ExtensionsRaw)
	return m.Gateway.Update(x, nil)
}

// ApplyClusterA is the same for cluster A on a running sidecar: the mounted client
// certificate files change, and istio-agent serves them anew over SDS.
func (m *TwoMeshes) ApplyClusterA(t *testing.T, sidecar *Envoy, objectsA []*unstructured.Unstructured) (changedSecrets, changedExtensions int) {
	t.Helper()
	xA, fileSecrets, _ := m.sidecarConfig(t, objectsA)
	return sidecar.Update(xA, fileSecrets)
}

// ClusterAObjects is cluster A as applied from the output, with what WithObjects adds.
func (m *TwoMeshes) ClusterAObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objects := m.Out.Objects(t, "cluster-a")
	if m.addObjects != nil {
		objects = m.addObjects(objects)
	}
	return objects
}

// agentLogLevels are the Envoy log levels pilot-agent passes for its arguments
// (--proxyLogLevel, default warning; --proxyComponentLogLevel, default misc:error).
func agentLogLevels(args []string) (string, string) {
	level, component := "warning", "misc:error"
	for i, arg := range args {
		value := ""
		if v, ok := strings.CutPrefix(arg, "--proxyLogLevel="); ok {
			level = v
			continue
		}
		if v, ok := strings.CutPrefix(arg, "--proxyComponentLogLevel="); ok {
			component = v
			continue
		}
		if i+1 < len(args) {
			value = args[i+1]
		}
		switch arg {
		case "--proxyLogLevel":
			level = value
		case "--proxyComponentLogLevel":
			component = value
		}
	}
	return level, component
}

// targetPort is the container port a gateway Deployment's Service maps port to.
func targetPort(t testing.TB, objects []*unstructured.Unstructured, deployment *unstructured.Unstructured, port int64) int {
	t.Helper()
	target, ok := servicePort(objects, deployment, port)
	if !ok {
		t.Fatalf("no Service selects %s/%s with port %d", deployment.GetNamespace(), deployment.GetName(), port)
	}
	return target
}

// servicePort is targetPort, or false when no Service of the Deployment has that port.
func servicePort(objects []*unstructured.Unstructured, deployment *unstructured.Unstructured, port int64) (int, bool) {
	labels, _, _ := unstructured.NestedStringMap(deployment.Object, "spec", "template", "metadata", "labels")
	for _, svc := range OfKind(objects, "Service") {
		selector, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
		if svc.GetNamespace() != deployment.GetNamespace() || len(selector) == 0 || !labelsMatch(selector, labels) {
			continue
		}
		ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
		for _, p := range ports {
			entry := p.(map[string]any)
			if n, _ := toInt64(entry["port"]); n == port {
				target, ok := toInt64(entry["targetPort"])
				if !ok {
					target = port
				}
				return int(target), true
			}
		}
	}
	return 0, false
}

// Hello is what the application in cluster A does: plain HTTP to the domain, which its
// sidecar turns into mutual TLS.
func (m *TwoMeshes) Hello(t testing.TB) (int, string) {
	t.Helper()
	return PlainGet(t, m.Sidecar.Address(80), m.Domain, "/hello")
}

// PlainGet sends GET path with Host host to addr, without keep-alive.
func PlainGet(t testing.TB, addr, host, path string) (int, string) {
	t.Helper()
	request, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	request.Host = host
	request.Close = true
	client := http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	response, err := client.Do(request)
	if err != nil {
		t.Fatalf("GET %s%s (Host %s): %v", addr, path, host, err)
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	return response.StatusCode, string(body)
}

// TLSResult is what a direct mutual-TLS request to a gateway got.
type TLSResult struct {
	// Err is set when the handshake or the exchange failed (refused, closed).
	Err     error
	Status  int
	Body    string
	Headers http.Header
}

// TLSGet connects to addr with SNI host, presenting client (none when nil) and trusting
// roots, and sends GET path.
func TLSGet(t testing.TB, addr, host, path string, client *Keypair, roots ...string) TLSResult {
	t.Helper()
	pool := x509.NewCertPool()
	for _, root := range roots {
		if !pool.AppendCertsFromPEM([]byte(root)) {
			t.Fatal("bad root PEM")
		}
	}
	config := &gotls.Config{ServerName: host, RootCAs: pool, MinVersion: gotls.VersionTLS12}
	if client != nil {
		pair, err := gotls.X509KeyPair([]byte(client.Cert), []byte(client.Key))
		if err != nil {
			t.Fatal(err)
		}
		// Sent whatever CAs the server names, as an impostor would.
		config.GetClientCertificate = func(*gotls.CertificateRequestInfo) (*gotls.Certificate, error) { return &pair, nil }
	}
	transport := &http.Transport{TLSClientConfig: config, DisableKeepAlives: true, ForceAttemptHTTP2: false}
	defer transport.CloseIdleConnections()
	httpClient := http.Client{Transport: transport, Timeout: 20 * time.Second}
	request, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	request.Host = host
	started := time.Now()
	response, err := httpClient.Do(request)
	if err != nil {
		if time.Since(started) > 15*time.Second {
			t.Fatalf("GET https://%s%s took %v: a hang is not a refusal: %v", addr, path, time.Since(started), err)
		}
		return TLSResult{Err: err}
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	return TLSResult{Status: response.StatusCode, Body: string(body), Headers: response.Header}
}

// ClientKeypair is the generated client's certificate and key.
func (m *TwoMeshes) ClientKeypair(t testing.TB) Keypair {
	t.Helper()
	return LoadKeypair(t, m.Out.Dir+"/certs/cluster-a-client-cert.pem", m.Out.Dir+"/certs/cluster-a-client-key.pem")
}

// Root is the generated root.
func (m *TwoMeshes) Root(t testing.TB) Keypair {
	t.Helper()
	return LoadKeypair(t, m.Out.Dir+"/certs/root-cert.pem", m.Out.Dir+"/certs/root-key.pem")
}

// GatewayTLS sends a request straight to our gateway with a client certificate.
func (m *TwoMeshes) GatewayTLS(t testing.TB, client *Keypair) TLSResult {
	t.Helper()
	root, err := os.ReadFile(m.Out.Dir + "/certs/root-cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	return TLSGet(t, m.Gateway.Address(m.GatewayPort), m.Domain, "/hello", client, string(root))
}

// Unrelated sends a request to the other team's host on the shared gateway (or on ours when
// the two are one).
func (m *TwoMeshes) Unrelated(t testing.TB) TLSResult {
	t.Helper()
	return TLSGet(t, m.UnrelatedAddr, UnrelatedHostName, "/", nil, m.OtherCert.Cert)
}

func (r TLSResult) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %q", r.Status, r.Body)
}
