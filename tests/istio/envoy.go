package oracle

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// IstioProxyOnly are the extensions istiod configures that only Istio's own Envoy build
// (istio-proxy) has. The stock Envoy from PyPI refuses a listener or cluster naming one, so
// they are removed before the configuration is served; none of them takes part in TLS, in
// routing or in the plugin (see the README). Any other extension stock Envoy lacks fails the
// run: a new one must be looked at before it is removed.
var IstioProxyOnly = map[string]string{
	"type.googleapis.com/stats.PluginConfig":                                        "istio.stats: Istio's standard metrics (istio_requests_total, ...), counted as requests finish",
	"type.googleapis.com/io.istio.http.peer_metadata.Config":                        "peer metadata (istio.metadata_exchange HTTP filter): exchanges workload labels in x-envoy-peer-metadata headers, for telemetry",
	"type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange":        "istio.metadata_exchange (network): exchanges workload labels with in-mesh peers that negotiate ALPN istio-peer-exchange, for telemetry",
	"type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig": "istio.alpn: sets the ALPN that tells an in-mesh upstream sidecar the protocol (istio-http/1.1, istio-h2); the TLS origination and termination peergate relies on set their own",
}

// EffectiveTypeURL is the type an Any configures: its own, or for a TypedStruct (istiod
// writes istio-proxy's extensions that way, as JSON) the type it names.
func EffectiveTypeURL(a *anypb.Any) string {
	switch a.GetTypeUrl() {
	case "type.googleapis.com/udpa.type.v1.TypedStruct":
		var ts udpatype.TypedStruct
		if a.UnmarshalTo(&ts) == nil {
			return ts.GetTypeUrl()
		}
	case "type.googleapis.com/xds.type.v3.TypedStruct":
		var ts xdstype.TypedStruct
		if a.UnmarshalTo(&ts) == nil {
			return ts.GetTypeUrl()
		}
	}
	return a.GetTypeUrl()
}

// stockEnvoyType says whether Envoy from PyPI knows a type: its Go type comes from Envoy's
// API (go-control-plane), the xDS API (cncf/xds) or protobuf's well-known types.
func stockEnvoyType(typeURL string) bool {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return false
	}
	path := reflect.TypeOf(mt.Zero().Interface()).Elem().PkgPath()
	for _, prefix := range []string{"github.com/envoyproxy/go-control-plane/envoy/", "github.com/cncf/xds/go/", "google.golang.org/protobuf/types/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// EnvoyOptions say how the proxy meets the world on this machine.
type EnvoyOptions struct {
	// Upstreams maps an address istiod's config sends traffic to ("10.10.0.3:5000", or
	// "helloworld.zufar.io:443" for a DNS cluster) to where that peer listens here.
	Upstreams map[string]string
	// AgentSecrets are the SDS secrets istio-agent serves from its own sources (the workload's
	// certificate "default", "ROOTCA", mounted files "file-cert:…", "file-root:…").
	AgentSecrets []*tls.Secret
	// LogLevel and ComponentLogLevel as pilot-agent passes them to Envoy.
	LogLevel, ComponentLogLevel string
	// Node is the proxy's id.
	Node string
	// AllowWarming: start even if some listeners stay warming (waiting for a resource
	// Envoy refused).
	AllowWarming bool
	// ShiftPrivilegedPorts binds a listener of a port below 1024 at that port + 10000, for
	// a user who cannot bind them (a sidecar's outbound port 80 is reached through iptables
	// in a Pod, never bound).
	ShiftPrivilegedPorts bool
	// StatsConfig is the bootstrap's stats_config (IstioStatsConfig); nil: Envoy's default,
	// every stat (what the counter checks of the other tests read).
	StatsConfig map[string]any
}

// BoundPort is where a listener istiod generated for port binds on this machine.
func (o EnvoyOptions) BoundPort(port uint32) uint32 {
	if o.ShiftPrivilegedPorts && port < 1024 {
		return port + 10000
	}
	return port
}

// Envoy is a real Envoy serving what istiod generated for one proxy: listeners and clusters
// through LDS and CDS, routes, endpoints, secrets and the plugin through RDS, EDS, SDS and
// ECDS, each from a file Envoy watches in place of istiod's ADS stream.
type Envoy struct {
	t   testing.TB
	cmd *exec.Cmd
	dir string
	// IP is the loopback address the proxy's listeners bind (its pod IP here).
	IP      string
	admin   string
	Removed []string
	files   map[string]string
	// x and opts are what it was started with (Update compares against x).
	x    *XDS
	opts EnvoyOptions
}

var loopbackCounter atomic.Int32

// nextLoopback is a fresh 127.x address per Envoy, so listeners keep Istio's ports.
func nextLoopback() string {
	n := loopbackCounter.Add(1)
	return fmt.Sprintf("127.%d.%d.%d", 80+os.Getpid()%100, n/250, 1+n%250)
}

// StartEnvoy serves x to a new Envoy (binary envoy) and waits until it is ready.
func StartEnvoy(t testing.TB, binary string, x *XDS, opts EnvoyOptions) *Envoy {
	t.Helper()
	e := PrepareEnvoy(t, t.TempDir(), x, opts)
	e.Start(binary)
	return e
}

// PrepareEnvoy writes what an Envoy serving x reads into dir: its bootstrap (bootstrap.json)
// and every resource as a file the bootstrap's config sources name. Nothing runs yet.
func PrepareEnvoy(t testing.TB, dir string, x *XDS, opts EnvoyOptions) *Envoy {
	t.Helper()
	e := &Envoy{t: t, dir: dir, IP: nextLoopback(), files: map[string]string{}, x: x, opts: opts}
	addresses := map[string]string{"0.0.0.0": e.IP}
	var listeners, clusters, routes, endpoints, secrets, extensions []proto.Message
	for _, l := range x.Listeners {
		l = proto.Clone(l).(*listener.Listener)
		e.rewrite(l, addresses, opts)
		listeners = append(listeners, l)
	}
	for _, c := range x.Clusters {
		c = proto.Clone(c).(*cluster.Cluster)
		e.rewrite(c, addresses, opts)
		clusters = append(clusters, c)
	}
	for _, r := range x.Routes {
		r = proto.Clone(r).(*route.RouteConfiguration)
		e.rewrite(r, addresses, opts)
		routes = append(routes, r)
	}
	for _, c := range x.Endpoints {
		c = proto.Clone(c).(*endpoint.ClusterLoadAssignment)
		e.rewrite(c, addresses, opts)
		endpoints = append(endpoints, c)
	}
	for _, s := range append(append([]*tls.Secret{}, x.Secrets...), opts.AgentSecrets...) {
		secrets = append(secrets, s)
	}
	for _, raw := range x.ExtensionsRaw {
		ext := unpack[*core.TypedExtensionConfig](t, proto.Clone(raw).(*anypb.Any))
		e.rewrite(ext, addresses, opts)
		extensions = append(extensions, ext)
	}
	for _, m := range append(append(append([]proto.Message{}, listeners...), clusters...), append(routes, extensions...)...) {
		for _, url := range TypeURLs(m) {
			if !stockEnvoyType(url) {
				t.Fatalf("istiod's config names %s, which stock Envoy does not have and IstioProxyOnly does not list: look at what it does before adding it", url)
			}
		}
	}
	e.write("lds.json", listeners...)
	e.write("cds.json", clusters...)
	for _, r := range routes {
		e.write(e.file("rds", r.(*route.RouteConfiguration).GetName()), r)
	}
	for _, c := range endpoints {
		e.write(e.file("eds", c.(*endpoint.ClusterLoadAssignment).GetClusterName()), c)
	}
	for _, s := range secrets {
		e.write(e.file("sds", s.(*tls.Secret).GetName()), s)
	}
	for _, ext := range extensions {
		e.write(e.file("ecds", ext.(*core.TypedExtensionConfig).GetName()), ext)
	}
	// Every resource the configuration refers to must exist, or Envoy would wait for it.
	for kind, names := range e.referenced(listeners, clusters) {
		for _, name := range names {
			if _, err := os.Stat(filepath.Join(e.dir, e.file(kind, name))); err != nil {
				t.Fatalf("the config needs %s resource %q, which neither istiod nor the agent provides", kind, name)
			}
		}
	}
	slices.Sort(e.Removed)
	e.Removed = slices.Compact(e.Removed)
	t.Logf("%s: removed istio-proxy-only extensions %v", opts.Node, e.Removed)
	e.writeBootstrap()
	return e
}

// Start runs the prepared Envoy (binary envoy) and waits until it is ready with every
// listener istiod generated (unless AllowWarming).
func (e *Envoy) Start(binary string) {
	e.t.Helper()
	var names []string
	for _, l := range e.x.Listeners {
		names = append(names, l.GetName())
	}
	if e.opts.AllowWarming {
		names = nil
	}
	e.start(binary, e.opts, names)
}

// Bootstrap is the prepared bootstrap file.
func (e *Envoy) Bootstrap() string { return filepath.Join(e.dir, "bootstrap.json") }

// Update serves a new push of istiod's config for this proxy, with agentSecrets the agent's
// own (mounted files) anew: the secrets over SDS and the extension configs over ECDS, the
// way a change of a Secret or a WasmPlugin reaches a running proxy. Listeners, clusters,
// routes and endpoints must be what they were (a certificate change that rewrote them would
// drain the proxy's connections): the test fails if not. It returns once Envoy has taken
// every changed resource (its SDS and ECDS update counters), with how many of each changed.
func (e *Envoy) Update(x *XDS, agentSecrets []*tls.Secret) (changedSecrets, changedExtensions int) {
	e.t.Helper()
	// istiod's order is not stable from one push to the next: compared by name.
	same := func(kind string, a, b map[string]proto.Message) {
		if len(a) != len(b) {
			e.t.Fatalf("the new push has %d %s, the running proxy %d", len(b), kind, len(a))
		}
		for name, running := range a {
			pushed, ok := b[name]
			if !ok {
				e.t.Fatalf("the new push has no %s %q", kind, name)
			}
			if !proto.Equal(running, pushed) {
				e.t.Fatalf("the new push changes %s %q: a certificate change should reach the proxy by SDS alone:\n%s", kind, name, firstDifference(running, pushed))
			}
		}
	}
	same("listeners", byName(e.x.Listeners, (*listener.Listener).GetName), byName(x.Listeners, (*listener.Listener).GetName))
	same("clusters", byName(e.x.Clusters, (*cluster.Cluster).GetName), byName(x.Clusters, (*cluster.Cluster).GetName))
	same("routes", byName(e.x.Routes, (*route.RouteConfiguration).GetName), byName(x.Routes, (*route.RouteConfiguration).GetName))
	same("endpoints", byName(e.x.Endpoints, (*endpoint.ClusterLoadAssignment).GetClusterName), byName(x.Endpoints, (*endpoint.ClusterLoadAssignment).GetClusterName))
	// Envoy names each subscription's stats after the resource, sanitized ("kubernetes://x"
	// becomes "sds.kubernetes_x."): counted, not named. Each changed secret and extension
	// config is its own subscription, so as many update counters must rise.
	counters := func(prefix, suffix string) map[string]uint64 {
		out := map[string]uint64{}
		for name, value := range e.Stats(strings.TrimSuffix(prefix, ".")) {
			if strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix) {
				out[name] = value
			}
		}
		return out
	}
	sdsBefore := counters("sds.", ".update_success")
	ecdsBefore := counters("extension_config_discovery.", ".config_reload")
	previous := map[string]proto.Message{}
	for _, s := range append(append([]*tls.Secret{}, e.x.Secrets...), e.opts.AgentSecrets...) {
		previous[s.GetName()] = s
	}
	for _, s := range append(append([]*tls.Secret{}, x.Secrets...), agentSecrets...) {
		if old, ok := previous[s.GetName()]; ok && proto.Equal(old, s) {
			continue
		}
		e.write(e.file("sds", s.GetName()), s)
		changedSecrets++
	}
	for i, raw := range x.ExtensionsRaw {
		ext := unpack[*core.TypedExtensionConfig](e.t, proto.Clone(raw).(*anypb.Any))
		e.rewrite(ext, map[string]string{"0.0.0.0": e.IP}, e.opts)
		if i < len(e.x.ExtensionsRaw) {
			old := unpack[*core.TypedExtensionConfig](e.t, proto.Clone(e.x.ExtensionsRaw[i]).(*anypb.Any))
			e.rewrite(old, map[string]string{"0.0.0.0": e.IP}, e.opts)
			if proto.Equal(old, ext) {
				continue
			}
		}
		e.write(e.file("ecds", ext.GetName()), ext)
		changedExtensions++
	}
	risen := func(before, now map[string]uint64) int {
		n := 0
		for name, value := range now {
			if value > before[name] {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		sds := risen(sdsBefore, counters("sds.", ".update_success"))
		ecds := risen(ecdsBefore, counters("extension_config_discovery.", ".config_reload"))
		if sds >= changedSecrets && ecds >= changedExtensions {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Envoy took %d of %d changed secrets and %d of %d changed extension configs in 15 s:\n%s", sds, changedSecrets, ecds, changedExtensions, e.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What it runs now, so the next Update compares against it.
	e.x = x
	agent := append([]*tls.Secret{}, agentSecrets...)
	for _, s := range e.opts.AgentSecrets {
		if !slices.ContainsFunc(agentSecrets, func(n *tls.Secret) bool { return n.GetName() == s.GetName() }) {
			agent = append(agent, s)
		}
	}
	e.opts.AgentSecrets = agent
	return changedSecrets, changedExtensions
}

// firstDifference shows where two resources' JSON first differ.
func firstDifference(a, b proto.Message) string {
	left, _ := protojson.MarshalOptions{Multiline: true}.Marshal(a)
	right, _ := protojson.MarshalOptions{Multiline: true}.Marshal(b)
	l, r := strings.Split(string(left), "\n"), strings.Split(string(right), "\n")
	for i := 0; i < len(l) && i < len(r); i++ {
		if l[i] != r[i] {
			from := max(0, i-8)
			return fmt.Sprintf("running:\n%s\nnew:\n%s", strings.Join(l[from:min(len(l), i+4)], "\n"), strings.Join(r[from:min(len(r), i+4)], "\n"))
		}
	}
	return fmt.Sprintf("%d lines against %d", len(l), len(r))
}

func byName[T proto.Message](items []T, name func(T) string) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, item := range items {
		out[name(item)] = item
	}
	return out
}

func (e *Envoy) file(kind, name string) string {
	sum := sha256.Sum256([]byte(name))
	path := kind + "/" + hex.EncodeToString(sum[:8]) + ".json"
	e.files[kind+"|"+name] = path
	return path
}

// write writes resources as a DiscoveryResponse, the form Envoy's file subscriptions read;
// renamed into place, so a watching Envoy sees the whole file.
func (e *Envoy) write(path string, resources ...proto.Message) {
	e.t.Helper()
	response := &discovery.DiscoveryResponse{VersionInfo: strconv.FormatInt(time.Now().UnixNano(), 10)}
	for _, r := range resources {
		a, err := anypb.New(r)
		if err != nil {
			e.t.Fatal(err)
		}
		response.Resources = append(response.Resources, a)
	}
	data, err := protojson.Marshal(response)
	if err != nil {
		e.t.Fatal(err)
	}
	full := filepath.Join(e.dir, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		e.t.Fatal(err)
	}
	tmp := full + ".tmp"
	// 0600: the secrets carry private keys.
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, full); err != nil {
		e.t.Fatal(err)
	}
}

func (e *Envoy) pathSource(kind, name string) *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion: core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_PathConfigSource{PathConfigSource: &core.PathConfigSource{
			Path: filepath.Join(e.dir, e.file(kind, name)),
		}},
	}
}

// rewrite adapts a resource to this machine: istio-proxy-only extensions out, ADS config
// sources to files, listeners onto this Envoy's loopback address (same ports), upstream
// addresses to their stand-ins.
func (e *Envoy) rewrite(m proto.Message, addresses map[string]string, opts EnvoyOptions) {
	e.t.Helper()
	keep := func(name string, typed *anypb.Any) bool {
		if typed == nil {
			return true
		}
		url := EffectiveTypeURL(typed)
		if _, ok := IstioProxyOnly[url]; ok {
			e.Removed = append(e.Removed, name+" ("+url+")")
			return false
		}
		return true
	}
	err := Visit(m, func(msg proto.Message) error {
		switch v := msg.(type) {
		case *hcm.HttpConnectionManager:
			v.HttpFilters = slices.DeleteFunc(v.HttpFilters, func(f *hcm.HttpFilter) bool { return !keep(f.GetName(), f.GetTypedConfig()) })
			if rds := v.GetRds(); rds != nil {
				rds.ConfigSource = e.pathSource("rds", rds.GetRouteConfigName())
			}
		case *hcm.HttpFilter:
			if cd := v.GetConfigDiscovery(); cd != nil {
				cd.ConfigSource = e.pathSource("ecds", v.GetName())
			}
		case *listener.Filter:
			if cd := v.GetConfigDiscovery(); cd != nil {
				cd.ConfigSource = e.pathSource("ecds", v.GetName())
			}
		case *listener.FilterChain:
			v.Filters = slices.DeleteFunc(v.Filters, func(f *listener.Filter) bool { return !keep(f.GetName(), f.GetTypedConfig()) })
		case *listener.Listener:
			v.ListenerFilters = slices.DeleteFunc(v.ListenerFilters, func(f *listener.ListenerFilter) bool { return !keep(f.GetName(), f.GetTypedConfig()) })
			if sa := v.GetAddress().GetSocketAddress(); sa != nil {
				ip, ok := addresses[sa.GetAddress()]
				if !ok {
					ip = nextLoopback()
					addresses[sa.GetAddress()] = ip
				}
				sa.Address = ip
				sa.PortSpecifier = &core.SocketAddress_PortValue{PortValue: opts.BoundPort(sa.GetPortValue())}
			}
			// No iptables here: the virtual listeners a sidecar reaches through its
			// redirect are bound themselves, and nothing is transparent.
			v.BindToPort = nil
			v.Transparent = nil
			v.AdditionalAddresses = nil
		case *cluster.Cluster:
			v.Filters = slices.DeleteFunc(v.Filters, func(f *cluster.Filter) bool { return !keep(f.GetName(), f.GetTypedConfig()) })
			if eds := v.GetEdsClusterConfig(); eds != nil {
				name := eds.GetServiceName()
				if name == "" {
					name = v.GetName()
				}
				eds.EdsConfig = e.pathSource("eds", name)
			}
		case *httpv3.HttpProtocolOptions:
			v.HttpFilters = slices.DeleteFunc(v.HttpFilters, func(f *hcm.HttpFilter) bool { return !keep(f.GetName(), f.GetTypedConfig()) })
		case *tls.SdsSecretConfig:
			if v.GetSdsConfig() != nil {
				v.SdsConfig = e.pathSource("sds", v.GetName())
			}
		case *endpoint.LbEndpoint:
			sa := v.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil
			}
			key := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			if target, ok := opts.Upstreams[key]; ok {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					return err
				}
				number, _ := strconv.Atoi(port)
				sa.Address = host
				sa.PortSpecifier = &core.SocketAddress_PortValue{PortValue: uint32(number)}
			}
		case *route.Route:
			for name := range v.GetTypedPerFilterConfig() {
				if !keep(name, v.GetTypedPerFilterConfig()[name]) {
					delete(v.TypedPerFilterConfig, name)
				}
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// referenced lists the RDS, EDS, SDS and ECDS names the listeners and clusters refer to.
func (e *Envoy) referenced(listeners, clusters []proto.Message) map[string][]string {
	out := map[string][]string{}
	for _, m := range append(append([]proto.Message{}, listeners...), clusters...) {
		_ = Visit(m, func(msg proto.Message) error {
			switch v := msg.(type) {
			case *hcm.HttpConnectionManager:
				if rds := v.GetRds(); rds != nil {
					out["rds"] = append(out["rds"], rds.GetRouteConfigName())
				}
			case *tls.SdsSecretConfig:
				if v.GetSdsConfig() != nil {
					out["sds"] = append(out["sds"], v.GetName())
				}
			case *hcm.HttpFilter:
				if v.GetConfigDiscovery() != nil {
					out["ecds"] = append(out["ecds"], v.GetName())
				}
			case *listener.Filter:
				if v.GetConfigDiscovery() != nil {
					out["ecds"] = append(out["ecds"], v.GetName())
				}
			}
			return nil
		})
	}
	return out
}

// checkAccepted fails the test unless Envoy took every listener and cluster: a refused
// resource only shows in the log and in the update_rejected counters.
func (e *Envoy) checkAccepted(listeners []string) {
	e.t.Helper()
	for _, stat := range []string{"listener_manager.lds.update_rejected", "cluster_manager.cds.update_rejected"} {
		if n := e.Counter(stat); n != 0 {
			e.t.Fatalf("Envoy rejected istiod's config (%s = %d):\n%s", stat, n, e.Log())
		}
	}
	_, bound := e.adminGet("/listeners")
	for _, name := range listeners {
		if !strings.Contains(bound, name+"::") {
			e.t.Fatalf("Envoy did not start listener %s (it has %s):\n%s", name, bound, e.Log())
		}
	}
}

// writeBootstrap writes bootstrap.json: the listeners and clusters from the files, as
// Istio's bootstrap takes them from istiod's ADS.
func (e *Envoy) writeBootstrap() {
	e.t.Helper()
	node := e.opts.Node
	if node == "" {
		node = "peergate-oracle"
	}
	bootstrap := map[string]any{
		"node": map[string]any{"id": node, "cluster": node},
		"admin": map[string]any{"address": map[string]any{
			"socket_address": map[string]any{"address": "127.0.0.1", "port_value": 0},
		}},
		"dynamic_resources": map[string]any{
			"lds_config": map[string]any{"resource_api_version": "V3", "path_config_source": map[string]any{"path": filepath.Join(e.dir, "lds.json")}},
			"cds_config": map[string]any{"resource_api_version": "V3", "path_config_source": map[string]any{"path": filepath.Join(e.dir, "cds.json")}},
		},
		// As Istio's bootstrap does: the internal listeners some generated clusters name.
		"bootstrap_extensions": []any{map[string]any{
			"name":         "envoy.bootstrap.internal_listener",
			"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"},
		}},
	}
	if e.opts.StatsConfig != nil {
		bootstrap["stats_config"] = e.opts.StatsConfig
	}
	data, err := json.MarshalIndent(bootstrap, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.Bootstrap(), data, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *Envoy) start(binary string, opts EnvoyOptions, want []string) {
	e.t.Helper()
	config := e.Bootstrap()
	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = "warning"
	}
	args := []string{
		"-c", config, "--use-dynamic-base-id", "--concurrency", "2",
		"--admin-address-path", filepath.Join(e.dir, "admin"),
		"--log-path", filepath.Join(e.dir, "envoy.log"),
		"--file-flush-interval-msec", "100",
		"--log-level", logLevel,
	}
	if opts.ComponentLogLevel != "" {
		args = append(args, "--component-log-level", opts.ComponentLogLevel)
	}
	e.cmd = exec.Command(binary, args...)
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("cannot start %s: %v", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- e.cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = e.cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			e.t.Fatalf("Envoy exited (%v):\n%s", err, e.Log())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("Envoy did not become ready in 60 s:\n%s", e.Log())
		}
		if e.admin == "" {
			if text, err := os.ReadFile(filepath.Join(e.dir, "admin")); err == nil {
				e.admin = strings.TrimSpace(string(text))
			}
		}
		if e.admin != "" {
			if status, _ := e.adminGet("/ready"); status == http.StatusOK {
				e.checkAccepted(want)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *Envoy) adminGet(path string) (int, string) {
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Get("http://" + e.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer response.Body.Close()
	body, _ := io.ReadAll(response.Body)
	return response.StatusCode, string(body)
}

// SetLogLevel changes a logger's level on the running Envoy, as `istioctl proxy-config log
// POD --level COMPONENT:LEVEL` does through the admin interface.
func (e *Envoy) SetLogLevel(component, level string) {
	e.t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	response, err := client.Post("http://"+e.admin+"/logging?"+component+"="+level, "text/plain", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusOK {
		e.t.Fatalf("POST /logging?%s=%s: %d", component, level, response.StatusCode)
	}
}

// Listeners is what the admin interface lists as active listeners.
func (e *Envoy) Listeners() string {
	_, body := e.adminGet("/listeners")
	return body
}

// Log is what Envoy logged so far.
func (e *Envoy) Log() string {
	data, _ := os.ReadFile(filepath.Join(e.dir, "envoy.log"))
	return string(data)
}

// Address is where a listener of istiod's config (by its port) is reached.
func (e *Envoy) Address(port int) string {
	return net.JoinHostPort(e.IP, strconv.Itoa(int(e.opts.BoundPort(uint32(port)))))
}

// Stats reads every counter and gauge whose name contains filter; a stat Envoy does not
// list is absent from the map (never 0).
func (e *Envoy) Stats(filter string) map[string]uint64 {
	e.t.Helper()
	status, body := e.adminGet("/stats?filter=" + filter)
	if status != http.StatusOK {
		e.t.Fatalf("admin /stats: %d %s", status, body)
	}
	out := map[string]uint64{}
	scanner := bufio.NewScanner(strings.NewReader(body))
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// Counter is the sum of the stats whose names end with suffix; the test fails when Envoy
// lists none (a missing stat is not 0).
func (e *Envoy) Counter(suffix string) uint64 {
	e.t.Helper()
	total, found := uint64(0), false
	for name, value := range e.Stats(strings.TrimPrefix(suffix, ".")) {
		if strings.HasSuffix(name, suffix) {
			total += value
			found = true
		}
	}
	if !found {
		e.t.Fatalf("Envoy has no stat ending in %s: a missing counter is not 0", suffix)
	}
	return total
}

// WaitCounter waits (at most 10 s) for the counter to reach want, then checks it stays
// there for a moment (no late double count).
func (e *Envoy) WaitCounter(suffix string, want uint64) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.Counter(suffix) < want {
		if time.Now().After(deadline) {
			e.t.Fatalf("counter %s is %d, want %d\n%s", suffix, e.Counter(suffix), want, e.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The filter flushes its allowed counter every 250 ms: wait past two flushes.
	time.Sleep(600 * time.Millisecond)
	if got := e.Counter(suffix); got != want {
		e.t.Fatalf("counter %s went on to %d, want exactly %d", suffix, got, want)
	}
}
