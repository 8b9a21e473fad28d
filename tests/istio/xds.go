package oracle

import (
	"fmt"
	"sort"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/pilot/pkg/model"
	v3 "istio.io/istio/pilot/pkg/xds/v3"
	"istio.io/istio/pkg/util/sets"
)

// XDS is everything istiod sends one proxy, as that proxy would ask for it: listeners and
// clusters, then the routes, endpoints, secrets and extension configs (ECDS) they name.
type XDS struct {
	Listeners  []*listener.Listener
	Clusters   []*cluster.Cluster
	Routes     []*route.RouteConfiguration
	Endpoints  []*endpoint.ClusterLoadAssignment
	Secrets    []*tls.Secret
	Extensions []*core.TypedExtensionConfig
	// ExtensionsRaw is ECDS as sent (what istio-agent's Wasm conversion rewrites).
	ExtensionsRaw []*anypb.Any
	// SecretNames are every SDS name the config refers to, served by istiod or not (the
	// workload's own certificate and mounted files are served by istio-agent).
	SecretNames []string
}

// Generate runs istiod's generators for the proxy, the way its xDS server does for a
// connected Envoy (the generator for each type URL, a full push).
func (c *Cluster) Generate(t testing.TB, proxy *model.Proxy) *XDS {
	t.Helper()
	x := &XDS{}
	generate(t, c, proxy, v3.ListenerType, nil, func(a *anypb.Any) {
		x.Listeners = append(x.Listeners, unpack[*listener.Listener](t, a))
	})
	generate(t, c, proxy, v3.ClusterType, nil, func(a *anypb.Any) {
		x.Clusters = append(x.Clusters, unpack[*cluster.Cluster](t, a))
	})
	generate(t, c, proxy, v3.RouteType, x.routeNames(t), func(a *anypb.Any) {
		x.Routes = append(x.Routes, unpack[*route.RouteConfiguration](t, a))
	})
	generate(t, c, proxy, v3.EndpointType, x.edsNames(), func(a *anypb.Any) {
		x.Endpoints = append(x.Endpoints, unpack[*endpoint.ClusterLoadAssignment](t, a))
	})
	x.SecretNames = x.sdsNames(t)
	generate(t, c, proxy, v3.SecretType, x.SecretNames, func(a *anypb.Any) {
		x.Secrets = append(x.Secrets, unpack[*tls.Secret](t, a))
	})
	generate(t, c, proxy, v3.ExtensionConfigurationType, x.ecdsNames(t), func(a *anypb.Any) {
		x.ExtensionsRaw = append(x.ExtensionsRaw, a)
		x.Extensions = append(x.Extensions, unpack[*core.TypedExtensionConfig](t, a))
	})
	return x
}

func generate(t testing.TB, c *Cluster, proxy *model.Proxy, typeURL string, names []string, each func(*anypb.Any)) {
	t.Helper()
	gen, ok := c.Fake.Discovery.Generators[typeURL]
	if !ok {
		t.Fatalf("istiod has no generator for %s", typeURL)
	}
	watched := &model.WatchedResource{TypeUrl: typeURL, ResourceNames: sets.New(names...)}
	resources, _, err := gen.Generate(proxy, watched, fullPush(c.Fake.PushContext()))
	if err != nil {
		t.Fatalf("generating %s: %v", typeURL, err)
	}
	for _, r := range resources {
		each(r.Resource)
	}
}

func unpack[T proto.Message](t testing.TB, a *anypb.Any) T {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("%s: %v", a.TypeUrl, err)
	}
	typed, ok := m.(T)
	if !ok {
		t.Fatalf("%s is a %T", a.TypeUrl, m)
	}
	return typed
}

const hcmTypeURL = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// HCMs are the HTTP connection managers of a listener's filter chains.
func HCMs(t testing.TB, l *listener.Listener) map[*listener.FilterChain]*hcm.HttpConnectionManager {
	t.Helper()
	out := map[*listener.FilterChain]*hcm.HttpConnectionManager{}
	for _, chain := range Chains(l) {
		for _, f := range chain.GetFilters() {
			if f.GetTypedConfig().GetTypeUrl() == hcmTypeURL {
				out[chain] = unpack[*hcm.HttpConnectionManager](t, f.GetTypedConfig())
			}
		}
	}
	return out
}

// Chains are a listener's filter chains, its default chain last.
func Chains(l *listener.Listener) []*listener.FilterChain {
	chains := append([]*listener.FilterChain{}, l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	return chains
}

func (x *XDS) routeNames(t testing.TB) []string {
	names := sets.New[string]()
	for _, l := range x.Listeners {
		for _, m := range HCMs(t, l) {
			if rds := m.GetRds(); rds != nil {
				names.Insert(rds.GetRouteConfigName())
			}
		}
	}
	return sets.SortedList(names)
}

func (x *XDS) edsNames() []string {
	var names []string
	for _, c := range x.Clusters {
		if c.GetType() == cluster.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// sdsNames are the names of every SdsSecretConfig in listeners and clusters.
func (x *XDS) sdsNames(t testing.TB) []string {
	names := sets.New[string]()
	collect := func(m proto.Message) {
		if err := Visit(m, func(msg proto.Message) error {
			if sds, ok := msg.(*tls.SdsSecretConfig); ok {
				names.Insert(sds.GetName())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range x.Listeners {
		collect(l)
	}
	for _, c := range x.Clusters {
		collect(c)
	}
	return sets.SortedList(names)
}

// ecdsNames are the names of the filters the listeners load through extension config
// discovery.
func (x *XDS) ecdsNames(t testing.TB) []string {
	names := sets.New[string]()
	for _, l := range x.Listeners {
		if err := Visit(l, func(msg proto.Message) error {
			switch f := msg.(type) {
			case *hcm.HttpFilter:
				if f.GetConfigDiscovery() != nil {
					names.Insert(f.GetName())
				}
			case *listener.Filter:
				if f.GetConfigDiscovery() != nil {
					names.Insert(f.GetName())
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return sets.SortedList(names)
}

// Listener returns the listener of that name.
func (x *XDS) Listener(t testing.TB, name string) *listener.Listener {
	t.Helper()
	var names []string
	for _, l := range x.Listeners {
		if l.GetName() == name {
			return l
		}
		names = append(names, l.GetName())
	}
	t.Fatalf("no listener %s among %v", name, names)
	return nil
}

// Cluster returns the cluster of that name.
func (x *XDS) Cluster(t testing.TB, name string) *cluster.Cluster {
	t.Helper()
	var names []string
	for _, c := range x.Clusters {
		if c.GetName() == name {
			return c
		}
		names = append(names, c.GetName())
	}
	t.Fatalf("no cluster %s among %v", name, names)
	return nil
}

// Secret returns the secret of that name.
func (x *XDS) Secret(t testing.TB, name string) *tls.Secret {
	t.Helper()
	var names []string
	for _, s := range x.Secrets {
		if s.GetName() == name {
			return s
		}
		names = append(names, s.GetName())
	}
	t.Fatalf("istiod sent no secret %s (it sent %v)", name, names)
	return nil
}

// Extension returns the ECDS resource of that name.
func (x *XDS) Extension(t testing.TB, name string) *core.TypedExtensionConfig {
	t.Helper()
	var names []string
	for _, e := range x.Extensions {
		if e.GetName() == name {
			return e
		}
		names = append(names, e.GetName())
	}
	t.Fatalf("istiod sent no extension config %s (it sent %v)", name, names)
	return nil
}

// Describe names what a filter chain serves, for messages.
func Describe(chain *listener.FilterChain) string {
	m := chain.GetFilterChainMatch()
	return fmt.Sprintf("%s (server names %v, transport %q)", chain.GetName(), m.GetServerNames(), m.GetTransportProtocol())
}
