package oracle

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/constants"
	kubelib "istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/spiffe"
)

// World is what a cluster holds: the objects `kubectl apply -k` created, plus what a cluster
// would have beside them (namespaces, the Pods its Deployments run, their EndpointSlices, a
// shared ingress gateway, other tenants' hosts), as istiod would see it.
type World struct {
	objects []*unstructured.Unstructured
}

// NewWorld starts from the applied objects.
func NewWorld(objects []*unstructured.Unstructured) *World {
	w := &World{}
	for _, obj := range objects {
		w.objects = append(w.objects, obj.DeepCopy())
	}
	return w
}

// Add adds objects written as YAML.
func (w *World) Add(t testing.TB, stream string) *World {
	t.Helper()
	objects, err := ParseObjects(stream)
	if err != nil {
		t.Fatal(err)
	}
	w.objects = append(w.objects, objects...)
	return w
}

// AddObjects adds objects.
func (w *World) AddObjects(objects []*unstructured.Unstructured) *World {
	for _, obj := range objects {
		w.objects = append(w.objects, obj.DeepCopy())
	}
	return w
}

// Objects is everything in the world so far.
func (w *World) Objects() []*unstructured.Unstructured { return w.objects }

// SharedIngressGateway is Istio's default `istio-ingressgateway` as `istioctl install` creates
// it: Service ports 80 and 443 on container ports 8080 and 8443 (a non-root proxy cannot bind
// below 1024), and the Role that lets its ServiceAccount read the credentials of its
// namespace (manifests/charts/gateway/templates/role.yaml).
const SharedIngressGateway = `
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: istio-ingressgateway-service-account
  namespace: istio-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: istio-ingressgateway-sds
  namespace: istio-system
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, watch, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: istio-ingressgateway-sds
  namespace: istio-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: istio-ingressgateway-sds}
subjects:
- {kind: ServiceAccount, name: istio-ingressgateway-service-account}
---
apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  type: LoadBalancer
  selector: {app: istio-ingressgateway, istio: ingressgateway}
  ports:
  - {name: status-port, port: 15021, targetPort: 15021, protocol: TCP}
  - {name: http2, port: 80, targetPort: 8080, protocol: TCP}
  - {name: https, port: 443, targetPort: 8443, protocol: TCP}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  selector:
    matchLabels: {app: istio-ingressgateway, istio: ingressgateway}
  template:
    metadata:
      labels: {app: istio-ingressgateway, istio: ingressgateway}
    spec:
      serviceAccountName: istio-ingressgateway-service-account
      containers:
      - name: istio-proxy
        image: auto
        ports:
        - {containerPort: 8080}
        - {containerPort: 8443}
`

// UnrelatedHost is another team's host on the shared ingress gateway: SIMPLE TLS on port
// 443 for other.example.com, routed to a service of its own. peergate must leave it alone.
func UnrelatedHost(cert, key string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata:
  name: other-team
---
apiVersion: v1
kind: Secret
metadata:
  name: other-example-com-cert
  namespace: istio-system
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
---
apiVersion: v1
kind: Service
metadata:
  name: other
  namespace: other-team
  labels: {app: other}
spec:
  selector: {app: other}
  ports:
  - {name: http, port: 8000, targetPort: 8000}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: other
  namespace: other-team
spec:
  selector:
    matchLabels: {app: other}
  template:
    metadata:
      labels: {app: other}
    spec:
      containers:
      - name: other
        image: example/other
        ports:
        - {containerPort: 8000}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: other-gateway
  namespace: other-team
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-other, protocol: HTTPS}
    hosts: [other.example.com]
    tls: {mode: SIMPLE, credentialName: other-example-com-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: other
  namespace: other-team
spec:
  hosts: [other.example.com]
  gateways: [other-gateway]
  http:
  - route:
    - destination: {host: other.other-team.svc.cluster.local, port: {number: 8000}}
`, base64.StdEncoding.EncodeToString([]byte(cert)), base64.StdEncoding.EncodeToString([]byte(key)))
}

// UnrelatedHostName is the host of UnrelatedHost.
const UnrelatedHostName = "other.example.com"

// Cluster is istiod's view of a World: Istio's fake discovery server (pilot/test/xds, as
// Istio's own config-generation tests use it) holding its objects.
type Cluster struct {
	Fake *xds.FakeDiscoveryServer
	Pin  Pin
	// Pods are the Pods the cluster runs, by namespace/deployment.
	Pods map[string]*unstructured.Unstructured
}

// Start completes the world (Pods for Deployments, EndpointSlices for Services, missing
// Namespaces) and builds istiod's view of it.
func (w *World) Start(t testing.TB, pin Pin) *Cluster {
	t.Helper()
	pods := map[string]*unstructured.Unstructured{}
	var kube, config []*unstructured.Unstructured
	namespaces := map[string]bool{}
	used := map[string]bool{}
	next := 1
	for _, obj := range w.objects {
		// cert-manager's objects are cert-manager's to act on (the Secrets it writes are
		// added by the test playing it); istiod never reads them.
		if obj.GroupVersionKind().Group == "cert-manager.io" {
			continue
		}
		if obj.GetKind() == "Namespace" {
			namespaces[obj.GetName()] = true
			obj = withNameLabel(obj)
		}
		if obj.GetNamespace() != "" {
			used[obj.GetNamespace()] = true
		}
		if IsIstioConfig(obj) {
			config = append(config, obj)
			continue
		}
		kube = append(kube, AsIstioReads(t, obj))
		if obj.GetKind() == "Deployment" {
			pod := podFor(t, obj, fmt.Sprintf("10.10.0.%d", next))
			next++
			pods[obj.GetNamespace()+"/"+obj.GetName()] = pod
			kube = append(kube, pod)
		}
	}
	var missing []string
	for ns := range used {
		if !namespaces[ns] {
			missing = append(missing, ns)
		}
	}
	sort.Strings(missing)
	for _, ns := range missing {
		kube = append(kube, withNameLabel(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns},
		}}))
	}
	for _, obj := range w.objects {
		if obj.GetKind() == "Service" {
			if slice := endpointSliceFor(t, obj, pods); slice != nil {
				kube = append(kube, slice)
			}
		}
	}
	authorizer, err := newRBACAuthorizer(kube)
	if err != nil {
		t.Fatal(err)
	}
	fake := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		ConfigString:      ToYAML(t, config),
		KubernetesObjects: kubeObjects(t, kube),
		KubeClientModifier: func(c kubelib.Client) {
			authorizer.install(c)
			gatewayAPIExtras(t, c)
		},
	})
	return &Cluster{Fake: fake, Pin: pin, Pods: pods}
}

// withNameLabel is a Namespace as the API server stores it: labelled with its own name
// (kubernetes.io/metadata.name), which namespace selectors such as a Gateway's
// allowedListeners match.
func withNameLabel(namespace *unstructured.Unstructured) *unstructured.Unstructured {
	namespace = namespace.DeepCopy()
	labels := namespace.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels["kubernetes.io/metadata.name"] = namespace.GetName()
	namespace.SetLabels(labels)
	return namespace
}

// kubeObjects are the objects as the API server's typed clients hold them, decoded with
// Istio's codec (as FakeOptions.KubernetesObjectString would be, without its split on every
// "---", which a PEM block in a ConfigMap contains).
func kubeObjects(t testing.TB, objects []*unstructured.Unstructured) []runtime.Object {
	t.Helper()
	decode := kubelib.IstioCodec.UniversalDeserializer().Decode
	var out []runtime.Object
	for _, obj := range objects {
		data, err := json.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		typed, _, err := decode(data, nil, nil)
		if err != nil {
			t.Fatalf("%s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		out = append(out, typed)
	}
	return out
}

// podFor is the Pod the Deployment's ReplicaSet would create, running at ip. (No sidecar
// is injected into the object: istiod does not read the containers; the injector is checked
// on its own.)
func podFor(t testing.TB, deployment *unstructured.Unstructured, ip string) *unstructured.Unstructured {
	t.Helper()
	template, found, err := unstructured.NestedMap(deployment.Object, "spec", "template")
	if err != nil || !found {
		t.Fatalf("Deployment %s has no pod template", deployment.GetName())
	}
	metadata, _ := template["metadata"].(map[string]any)
	if metadata == nil {
		metadata = map[string]any{}
	}
	metadata["name"] = deployment.GetName() + "-0"
	metadata["namespace"] = deployment.GetNamespace()
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   metadata,
		"spec":       template["spec"],
		"status": map[string]any{
			"phase":  "Running",
			"podIP":  ip,
			"podIPs": []any{map[string]any{"ip": ip}},
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "True"},
			},
		},
	}}
}

// endpointSliceFor is what the endpoint-slice controller would write for a Service: its
// ready Pods, with the target ports.
func endpointSliceFor(t testing.TB, service *unstructured.Unstructured, pods map[string]*unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	selector, _, _ := unstructured.NestedStringMap(service.Object, "spec", "selector")
	if len(selector) == 0 {
		return nil
	}
	var endpoints []any
	var names []string
	for key := range pods {
		names = append(names, key)
	}
	sort.Strings(names)
	for _, key := range names {
		pod := pods[key]
		if pod.GetNamespace() != service.GetNamespace() || !labelsMatch(selector, pod.GetLabels()) {
			continue
		}
		ip, _, _ := unstructured.NestedString(pod.Object, "status", "podIP")
		endpoints = append(endpoints, map[string]any{
			"addresses":  []any{ip},
			"conditions": map[string]any{"ready": true},
			"targetRef":  map[string]any{"kind": "Pod", "name": pod.GetName(), "namespace": pod.GetNamespace()},
		})
	}
	servicePorts, _, _ := unstructured.NestedSlice(service.Object, "spec", "ports")
	var ports []any
	for _, p := range servicePorts {
		port := p.(map[string]any)
		target := port["targetPort"]
		if target == nil {
			target = port["port"]
		}
		number, ok := toInt64(target)
		if !ok {
			t.Fatalf("Service %s: named targetPort %v is not modelled", service.GetName(), target)
		}
		entry := map[string]any{"port": number, "protocol": "TCP"}
		if name, ok := port["name"].(string); ok {
			entry["name"] = name
		}
		ports = append(ports, entry)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "discovery.k8s.io/v1",
		"kind":       "EndpointSlice",
		"metadata": map[string]any{
			"name":      service.GetName() + "-slice",
			"namespace": service.GetNamespace(),
			"labels":    map[string]any{"kubernetes.io/service-name": service.GetName()},
		},
		"addressType": "IPv4",
		"endpoints":   endpoints,
		"ports":       ports,
	}}
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Pod returns the Pod of a Deployment.
func (c *Cluster) Pod(t testing.TB, namespace, deployment string) *unstructured.Unstructured {
	t.Helper()
	pod, ok := c.Pods[namespace+"/"+deployment]
	if !ok {
		var names []string
		for key := range c.Pods {
			names = append(names, key)
		}
		t.Fatalf("no Deployment %s/%s in the cluster (%s)", namespace, deployment, strings.Join(names, ", "))
	}
	return pod
}

// Proxy is the Envoy of a Deployment's Pod as istiod sees it when that Envoy connects: a
// gateway ("router") or a sidecar, with the Pod's labels, namespace, IP and the identity of
// its ServiceAccount (what istiod's authentication would have verified).
func (c *Cluster) Proxy(t testing.TB, namespace, deployment string, gateway bool) *model.Proxy {
	t.Helper()
	pod := c.Pod(t, namespace, deployment)
	ip, _, _ := unstructured.NestedString(pod.Object, "status", "podIP")
	serviceAccount, _, _ := unstructured.NestedString(pod.Object, "spec", "serviceAccountName")
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	kind := model.SidecarProxy
	if gateway {
		kind = model.Router
	}
	return c.Fake.SetupProxy(&model.Proxy{
		Type:            kind,
		ID:              pod.GetName() + "." + namespace,
		IPAddresses:     []string{ip},
		ConfigNamespace: namespace,
		Labels:          pod.GetLabels(),
		Metadata: &model.NodeMetadata{
			Namespace:      namespace,
			Labels:         pod.GetLabels(),
			ClusterID:      constants.DefaultClusterName,
			IstioVersion:   c.Pin.ProxyVersion(),
			ServiceAccount: serviceAccount,
		},
		VerifiedIdentity: &spiffe.Identity{
			TrustDomain:    "cluster.local",
			Namespace:      namespace,
			ServiceAccount: serviceAccount,
		},
	})
}
