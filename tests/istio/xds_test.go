package oracle

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Part 2: istiod's own config generation for what `peergate gen` writes, and what it means
// for the gateway (cluster B) and the client's sidecar (cluster A).

// clusterB is cluster B as a real one would be: the generated objects, Istio's shared
// istio-ingressgateway, and another team's SIMPLE-TLS host on that gateway's port 443.
func clusterB(t *testing.T, pin Pin, out Output) (*Cluster, []*unstructured.Unstructured) {
	t.Helper()
	objects := out.Objects(t, "cluster-b")
	other := Issue(t, nil, CertificateTemplate{CommonName: UnrelatedHostName, DNSNames: []string{UnrelatedHostName}})
	world := NewWorld(objects).AddManagedGateways(t)
	if !hasDeployment(objects, "istio-system", "istio-ingressgateway") {
		world.Add(t, SharedIngressGateway)
	}
	world.Add(t, UnrelatedHost(other.Cert, other.Key))
	return world.Start(t, pin), world.Objects()
}

func hasDeployment(objects []*unstructured.Unstructured, namespace, name string) bool {
	for _, obj := range objects {
		if obj.GetKind() == "Deployment" && obj.GetNamespace() == namespace && obj.GetName() == name {
			return true
		}
	}
	return false
}

// gatewayDeployments are the Deployments whose Pods a Gateway's selector picks (Istio
// selects gateway Pods by labels, in any namespace).
func gatewayDeployments(objects []*unstructured.Unstructured, selector map[string]string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, dep := range OfKind(objects, "Deployment") {
		labels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
		if labelsMatch(selector, labels) {
			out = append(out, dep)
		}
	}
	return out
}

// ourGateway is the generated Gateway object and the one Deployment it runs on: the
// Deployment its selector picks, or for a Gateway API Gateway the one Istio deployed for it
// (its Pods carry the Gateway's name in gateway.networking.k8s.io/gateway-name).
func ourGateway(t *testing.T, generated, world []*unstructured.Unstructured) (*unstructured.Unstructured, *unstructured.Unstructured) {
	t.Helper()
	gateways := OfKind(generated, "Gateway")
	if len(gateways) != 1 {
		t.Fatalf("expected one generated Gateway, got %s", Names(gateways))
	}
	selector, _, _ := unstructured.NestedStringMap(gateways[0].Object, "spec", "selector")
	if gateways[0].GroupVersionKind().Group == gatewayAPIGroup {
		selector = map[string]string{gatewayNameLabel: gateways[0].GetName()}
	}
	deployments := gatewayDeployments(world, selector)
	if len(deployments) != 1 {
		t.Fatalf("the Gateway's selector %v picks %d Deployments: %s", selector, len(deployments), Names(deployments))
	}
	return gateways[0], deployments[0]
}

type gatewayCase struct {
	name   string
	config string
	flags  []string
	since  int
}

func gatewayCases() []gatewayCase {
	return []gatewayCase{
		{name: "default"},
		{name: "existing gateway", config: ExistingGateway},
		{name: "pattern allow-list", flags: []string{"--allowed-san", "spiffe://cluster-a/ns/client/*"}},
		{name: "request layer", flags: []string{"--layer", "request"}},
		{name: "connection layer", flags: []string{"--layer", "connection"}, since: 30},
		{name: "trafficextension", flags: []string{"--api", "trafficextension"}, since: 30},
	}
}

// The gateway istiod configures from the generated objects: the plugin is on the chain that
// serves our host, behind the MUTUAL termination, in the AUTHN position, with our
// pluginConfig; on no chain of another Gateway server or another gateway; the handshake
// requires a client certificate from our root with the Gateway's subjectAltNames.
func TestGatewayOnIstiodsConfig(t *testing.T) {
	pin := CurrentPin(t)
	for _, c := range gatewayCases() {
		if !pin.AtLeast(c.since) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			// For this release: `auto` picks the layer by it.
			out := GenWithConfig(t, c.config, append([]string{"--istio-version", pin.Name}, c.flags...)...)
			generated := out.Objects(t, "cluster-b")
			cl, world := clusterB(t, pin, out)
			plugin := ReadPlugin(t, generated)
			gateway, ours := ourGateway(t, generated, world)
			domain := gatewayHosts(t, gateway)[0]

			for _, dep := range gatewaysOf(world) {
				labels, _, _ := unstructured.NestedStringMap(dep.Object, "spec", "template", "metadata", "labels")
				x := cl.Generate(t, cl.Proxy(t, dep.GetNamespace(), dep.GetName(), true))
				selected := labelsMatch(plugin.Selector, labels)
				where := fmt.Sprintf("gateway %s/%s", dep.GetNamespace(), dep.GetName())
				if dep.GetName() == ours.GetName() && dep.GetNamespace() == ours.GetNamespace() {
					checkOurHost(t, x, out, plugin, gateway, domain, where)
				}
				checkUnrelatedHost(t, x, plugin, where)
				if !selected {
					checkNoPlugin(t, x, plugin, where)
				}
			}
		})
	}
}

// gatewaysOf are the Deployments some Gateway object runs on, in a stable order.
func gatewaysOf(world []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, g := range OfKind(world, "Gateway") {
		selector, _, _ := unstructured.NestedStringMap(g.Object, "spec", "selector")
		for _, dep := range gatewayDeployments(world, selector) {
			if !slices.Contains(out, dep) {
				out = append(out, dep)
			}
		}
	}
	return out
}

func gatewayHosts(t *testing.T, gateway *unstructured.Unstructured) []string {
	t.Helper()
	var hosts []string
	add := func(host string) {
		if host != "" && !slices.Contains(hosts, host) {
			hosts = append(hosts, host)
		}
	}
	servers, _, _ := unstructured.NestedSlice(gateway.Object, "spec", "servers")
	for _, s := range servers {
		h, _, _ := unstructured.NestedStringSlice(s.(map[string]any), "hosts")
		for _, host := range h {
			add(host)
		}
	}
	listeners, _, _ := unstructured.NestedSlice(gateway.Object, "spec", "listeners")
	for _, l := range listeners {
		host, _, _ := unstructured.NestedString(l.(map[string]any), "hostname")
		add(host)
	}
	if len(hosts) == 0 {
		t.Fatalf("the Gateway serves no host")
	}
	return hosts
}

// gatewayServer is the server of the generated Gateway on that port.
func gatewayServer(t *testing.T, gateway *unstructured.Unstructured, port int64) map[string]any {
	t.Helper()
	servers, _, _ := unstructured.NestedSlice(gateway.Object, "spec", "servers")
	for _, s := range servers {
		number, _ := toInt64(s.(map[string]any)["port"].(map[string]any)["number"])
		if number == port {
			return s.(map[string]any)
		}
	}
	t.Fatalf("the Gateway has no server on port %d", port)
	return nil
}

func checkOurHost(t *testing.T, x *XDS, out Output, plugin Plugin, gateway *unstructured.Unstructured, domain, where string) {
	t.Helper()
	chains := ChainsServing(x, domain)
	if len(chains) != 1 {
		t.Fatalf("%s: %d filter chains serve %s over TLS, want 1", where, len(chains), domain)
	}
	for chain, l := range chains {
		// After the MUTUAL termination: the chain's TLS, as the Gateway server asks.
		server := gatewayServer(t, gateway, 443)
		serverTLS := server["tls"].(map[string]any)
		downstream := DownstreamTLS(t, chain)
		if !downstream.GetRequireClientCertificate().GetValue() {
			t.Errorf("%s: the chain for %s does not require a client certificate", where, domain)
		}
		credential := serverTLS["credentialName"].(string)
		common := downstream.GetCommonTlsContext()
		certNames := sdsNames(common.GetTlsCertificateSdsSecretConfigs())
		if !slices.Equal(certNames, []string{"kubernetes://" + credential}) {
			t.Errorf("%s: server certificate from %v, want the credential %s", where, certNames, credential)
		}
		combined := common.GetCombinedValidationContext()
		caName := combined.GetValidationContextSdsSecretConfig().GetName()
		if caName != "kubernetes://"+credential+"-cacert" {
			t.Errorf("%s: client CA from %q, want the credential's cacert", where, caName)
		}
		wantSANs := stringList(serverTLS["subjectAltNames"])
		slices.Sort(wantSANs)
		if got := SubjectAltNames(combined.GetDefaultValidationContext()); !slices.Equal(got, wantSANs) {
			t.Errorf("%s: the handshake checks client SANs %v, the Gateway says %v", where, got, wantSANs)
		}
		root := out.File(t, "certs/root-cert.pem")
		ca := x.Secret(t, caName).GetValidationContext().GetTrustedCa().GetInlineBytes()
		if !sameCertificates(t, string(ca), root) {
			t.Errorf("%s: the gateway trusts %q, not the generated root", where, ca)
		}
		serverCert := x.Secret(t, "kubernetes://"+credential).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		if !sameCertificates(t, string(serverCert), out.File(t, "certs/cluster-b-server-cert.pem")) {
			t.Errorf("%s: the gateway presents another certificate than the generated server's", where)
		}

		// The plugin: on this chain, once, with our configuration, in the AUTHN position.
		names := x.PluginFilterNames(t, plugin, chain)
		if len(names) != 1 {
			t.Fatalf("%s: the chain for %s loads the plugin %d times (%v); filters %+v", where, domain, len(names), names, FiltersOf(t, chain))
		}
		loaded := x.Loaded(t, plugin, names[0])
		if wantNetwork := plugin.Type == "NETWORK"; loaded.Network != wantNetwork {
			t.Errorf("%s: the plugin is a network filter: %v, want %v", where, loaded.Network, wantNetwork)
		}
		if got := loaded.Configuration(t); !SameJSON(t, got, plugin.Config) {
			t.Errorf("%s: the module is handed\n%v\nnot the generated pluginConfig\n%v", where, got, plugin.Config)
		}
		if uri, _ := RemoteCode(loaded.Config); uri != plugin.URL && !strings.HasSuffix(plugin.URL, strings.TrimPrefix(uri, "oci://")) {
			t.Errorf("%s: the module comes from %q, the plugin says %q", where, uri, plugin.URL)
		}
		if loaded.Config.GetFailOpen() { //nolint:staticcheck // the field every pinned release sets
			t.Errorf("%s: the plugin fails open", where)
		}
		filters := FiltersOf(t, chain)
		checkAuthnPosition(t, filters, names[0], loaded.Network, where)
		if len(plugin.Ports) > 0 && !slices.Contains(plugin.Ports, ListenerPort(l)) {
			t.Errorf("%s: our host is served on listener port %d, the plugin's match names %v", where, ListenerPort(l), plugin.Ports)
		}
	}
	// The port-80 server (the HTTPS redirect) must not carry the plugin: a plain-HTTP
	// request has no certificate, and the redirect must still answer.
	for _, l := range x.Listeners {
		for _, chain := range Chains(l) {
			if chain.GetTransportSocket() != nil {
				continue
			}
			for _, m := range HCMs(t, &listener.Listener{FilterChains: []*listener.FilterChain{chain}}) {
				if m.GetRds().GetRouteConfigName() == "" || !strings.HasPrefix(m.GetRds().GetRouteConfigName(), "http.") {
					continue
				}
				if names := x.PluginFilterNames(t, plugin, chain); len(names) > 0 {
					t.Errorf("%s: the plain-HTTP listener %s (route %s) carries the plugin: the HTTPS redirect becomes 403 no_peer_certificate", where, l.GetName(), m.GetRds().GetRouteConfigName())
				}
			}
		}
	}
}

// checkAuthnPosition: an HTTP plugin comes before Istio's own authentication and
// authorization filters and the stats filter, and before the router; a network plugin
// before the connection manager.
func checkAuthnPosition(t *testing.T, filters ChainFilters, name string, network bool, where string) {
	t.Helper()
	list := filters.HTTP
	later := []string{"envoy.filters.http.jwt_authn", "istio_authn", "envoy.filters.http.rbac", "istio.stats", "envoy.filters.http.router"}
	if network {
		list = filters.Network
		later = []string{"envoy.filters.network.rbac", "istio.stats", "envoy.filters.network.http_connection_manager", "envoy.filters.network.tcp_proxy"}
	}
	at := slices.Index(list, name)
	for _, other := range later {
		if i := slices.Index(list, other); i >= 0 && i < at {
			t.Errorf("%s: the plugin (%d) runs after %s (%d): %v", where, at, other, i, list)
		}
	}
	last := list[len(list)-1]
	if !network && last != "envoy.filters.http.router" {
		t.Errorf("%s: the HTTP filters end with %s: %v", where, last, list)
	}
}

// checkUnrelatedHost: another team's server on the same gateway and port never gets the
// plugin, unless the plugin is told which server names it protects (then it passes that
// host untouched; the real-Envoy run shows it).
func checkUnrelatedHost(t *testing.T, x *XDS, plugin Plugin, where string) {
	t.Helper()
	for chain := range ChainsServing(x, UnrelatedHostName) {
		names := x.PluginFilterNames(t, plugin, chain)
		if len(names) == 0 {
			continue
		}
		protected := stringList(plugin.Config["protectedServerNames"])
		if len(protected) > 0 && !slices.Contains(protected, UnrelatedHostName) {
			continue
		}
		t.Errorf("%s: the plugin is on the chain of %s, another team's host: every request there gets 403 no_peer_certificate (filters %+v)", where, UnrelatedHostName, FiltersOf(t, chain))
	}
}

func checkNoPlugin(t *testing.T, x *XDS, plugin Plugin, where string) {
	t.Helper()
	for _, l := range x.Listeners {
		for _, chain := range Chains(l) {
			if names := x.PluginFilterNames(t, plugin, chain); len(names) > 0 {
				t.Errorf("%s is not selected by the plugin, but %s %s loads it", where, l.GetName(), Describe(chain))
			}
		}
	}
}

func sdsNames(configs []*tls.SdsSecretConfig) []string {
	var names []string
	for _, c := range configs {
		names = append(names, c.GetName())
	}
	return names
}

func stringList(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, item := range list {
		if s, ok := item.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func sameCertificates(t *testing.T, a, b string) bool {
	t.Helper()
	parse := func(text string) [][]byte {
		var ders [][]byte
		rest := []byte(text)
		for {
			block, r := pem.Decode(rest)
			if block == nil {
				return ders
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				t.Fatalf("not a certificate: %v", err)
			}
			ders = append(ders, block.Bytes)
			rest = r
		}
	}
	da, db := parse(a), parse(b)
	if len(da) == 0 || len(da) != len(db) {
		return false
	}
	for i := range da {
		if string(da[i]) != string(db[i]) {
			return false
		}
	}
	return true
}

// The client's sidecar istiod configures from cluster A's objects: plain HTTP for the
// domain goes to the tls-origination subset, which originates mutual TLS with the client
// certificate, the DestinationRule's SNI and the server SANs it names.
func TestSidecarOnIstiodsConfig(t *testing.T) {
	pin := CurrentPin(t)
	for _, mode := range []string{"mounted", "credentialName"} {
		t.Run(mode, func(t *testing.T) {
			out := genForPin(t, pin, "--client-cert-mode", mode)
			objects := out.Objects(t, "cluster-a")
			cl := NewWorld(objects).Start(t, pin)
			rule := OfKind(objects, "DestinationRule")[0]
			domain, _, _ := unstructured.NestedString(rule.Object, "spec", "host")
			deployment := OfKind(objects, "Deployment")[0]
			x := cl.Generate(t, cl.Proxy(t, deployment.GetNamespace(), deployment.GetName(), false))

			subsets, _, _ := unstructured.NestedSlice(rule.Object, "spec", "subsets")
			subset := subsets[0].(map[string]any)
			settings := subset["trafficPolicy"].(map[string]any)["portLevelSettings"].([]any)[0].(map[string]any)
			drTLS := settings["tls"].(map[string]any)
			name := fmt.Sprintf("outbound|443|%s|%s", subset["name"], domain)
			c := x.Cluster(t, name)
			upstream := upstreamTLS(t, c)
			if upstream == nil {
				t.Fatalf("cluster %s originates no TLS", name)
			}
			if upstream.GetSni() != drTLS["sni"] {
				t.Errorf("SNI %q, the DestinationRule says %q", upstream.GetSni(), drTLS["sni"])
			}
			common := upstream.GetCommonTlsContext()
			wantSANs := stringList(drTLS["subjectAltNames"])
			slices.Sort(wantSANs)
			validation := common.GetCombinedValidationContext()
			if got := SubjectAltNames(validation.GetDefaultValidationContext()); !slices.Equal(got, wantSANs) {
				t.Errorf("the sidecar checks server SANs %v, the DestinationRule says %v", got, wantSANs)
			}
			certs := sdsNames(common.GetTlsCertificateSdsSecretConfigs())
			caName := validation.GetValidationContextSdsSecretConfig().GetName()
			switch mode {
			case "mounted":
				want := fmt.Sprintf("file-cert:%s~%s", drTLS["clientCertificate"], drTLS["privateKey"])
				if !slices.Equal(certs, []string{want}) {
					t.Errorf("client certificate from %v, want %s", certs, want)
				}
				if want := fmt.Sprintf("file-root:%s", drTLS["caCertificates"]); caName != want {
					t.Errorf("server CA from %q, want %s", caName, want)
				}
			case "credentialName":
				credential := drTLS["credentialName"].(string)
				if !slices.Equal(certs, []string{"kubernetes://" + credential}) {
					t.Errorf("client certificate from %v, want the credential %s", certs, credential)
				}
				chain := x.Secret(t, "kubernetes://"+credential).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
				if !sameCertificates(t, string(chain), out.File(t, "certs/cluster-a-client-cert.pem")) {
					t.Errorf("istiod serves another client certificate than the generated one")
				}
				ca := x.Secret(t, caName).GetValidationContext().GetTrustedCa().GetInlineBytes()
				if !sameCertificates(t, string(ca), out.File(t, "certs/root-cert.pem")) {
					t.Errorf("the sidecar trusts %q, not the generated root", ca)
				}
			}
			// Plain HTTP on port 80 for the domain is routed to that cluster.
			routed := false
			for _, r := range x.Routes {
				for _, vh := range r.GetVirtualHosts() {
					if !slices.Contains(vh.GetDomains(), domain) {
						continue
					}
					for _, rt := range vh.GetRoutes() {
						if rt.GetRoute().GetCluster() == name {
							routed = r.GetName() == "80"
						}
					}
				}
			}
			if !routed {
				t.Errorf("no route on port 80 for %s leads to %s", domain, name)
			}
		})
	}
}

func upstreamTLS(t *testing.T, c *cluster.Cluster) *tls.UpstreamTlsContext {
	t.Helper()
	var found *tls.UpstreamTlsContext
	if err := Visit(c, func(m proto.Message) error {
		if u, ok := m.(*tls.UpstreamTlsContext); ok && found == nil {
			found = u
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}
