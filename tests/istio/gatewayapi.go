package oracle

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kubeversion "k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/controllers"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/kclient"
	"istio.io/istio/pkg/revisions"
	"istio.io/istio/pkg/test"
)

// gatewayAPIGroup is the API group of the Kubernetes Gateway API.
const gatewayAPIGroup = "gateway.networking.k8s.io"

// gatewayNameLabel is the label of the Pods Istio deploys for a Gateway API Gateway: its name
// (the kube-gateway template's GatewayNameLabel).
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// deploymentController is what the oracle uses of Istio's Gateway API deployment controller.
type deploymentController interface {
	Run(stop <-chan struct{})
}

// KubernetesGateways are the Gateway API Gateways among objects.
func KubernetesGateways(objects []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GetKind() == "Gateway" && obj.GroupVersionKind().Group == gatewayAPIGroup {
			out = append(out, obj)
		}
	}
	return out
}

// ManagedGateway is what Istio's Gateway API deployment controller applies for gw (its
// Deployment, Service and ServiceAccount, from the pinned release's kube-gateway template
// and the objects gw refers to), as the API server would then hold them.
func ManagedGateway(t testing.TB, gw *unstructured.Unstructured, objects []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	client := kube.NewFakeClient()
	client.Kube().Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &kubeversion.Info{Major: "1", Minor: "33"}
	var mu sync.Mutex
	applied := map[string]*unstructured.Unstructured{}
	client.Dynamic().(*dynamicfake.FakeDynamicClient).PrependReactor("patch", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
		patch := action.(k8stesting.PatchAction)
		obj := &unstructured.Unstructured{}
		if err := json.Unmarshal(patch.GetPatch(), &obj.Object); err != nil {
			return true, nil, err
		}
		if obj.GetKind() != "" && obj.GetKind() != "Gateway" {
			mu.Lock()
			applied[obj.GetKind()] = obj
			mu.Unlock()
		}
		return true, nil, nil
	})
	gatewayAPIExtras(t, client)
	namespaces := map[string]bool{gw.GetNamespace(): true}
	var listenerSets []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GetKind() == "ConfigMap" && obj.GetNamespace() == gw.GetNamespace() {
			createTyped[*corev1.ConfigMap](t, client, &corev1.ConfigMap{}, obj)
		}
		parent, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "parentRef")
		if obj.GetKind() == "ListenerSet" && parent["name"] == gw.GetName() && parent["namespace"] == gw.GetNamespace() {
			listenerSets = append(listenerSets, obj)
			namespaces[obj.GetNamespace()] = true
		}
	}
	for ns := range namespaces {
		createTyped[*corev1.Namespace](t, client, &corev1.Namespace{}, withNameLabel(namespaceObject(ns)))
	}
	createListenerSets(t, client, listenerSets)
	createGateway(t, client, gw)

	webhook := gatewayInjection(t)
	env := model.NewEnvironment()
	env.Watcher = meshwatcher.NewTestWatcher(mesh.DefaultMeshConfig())
	env.PushContext().InitDone.Store(true)
	stop := test.NewStop(t)
	tags := revisions.NewTagWatcher(client, "", "istio-system")
	go tags.Run(stop)
	controller := newDeploymentController(client, env, webhook, tags)
	client.RunAndWait(stop)
	go controller.Run(stop)

	want := []string{"Deployment", "Service", "ServiceAccount"}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := len(applied) >= len(want)
		for _, kind := range want {
			done = done && applied[kind] != nil
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Istio's deployment controller applied %d of %v for Gateway %s/%s", len(applied), want, gw.GetNamespace(), gw.GetName())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for kind := range applied {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	var out []*unstructured.Unstructured
	for _, kind := range kinds {
		out = append(out, loadBalancerAssigned(apiServerDefaults(applied[kind])))
	}
	return out
}

// AddManagedGateways adds what Istio's deployment controller applies for each Gateway API
// Gateway of the world.
func (w *World) AddManagedGateways(t testing.TB) *World {
	t.Helper()
	for _, gw := range KubernetesGateways(w.objects) {
		w.AddObjects(ManagedGateway(t, gw, w.objects))
	}
	return w
}

// apiServerDefaults is what the API server fills in on what it stores: a Service port's
// targetPort is its port when not given.
func apiServerDefaults(obj *unstructured.Unstructured) *unstructured.Unstructured {
	obj = obj.DeepCopy()
	if obj.GetKind() != "Service" {
		return obj
	}
	ports, _, _ := unstructured.NestedSlice(obj.Object, "spec", "ports")
	for _, p := range ports {
		port := p.(map[string]any)
		if port["targetPort"] == nil {
			port["targetPort"] = port["port"]
		}
	}
	_ = unstructured.SetNestedSlice(obj.Object, ports, "spec", "ports")
	return obj
}

// loadBalancerAssigned is what a cloud's load-balancer controller writes on a LoadBalancer
// Service: its address (TEST-NET-1), which Istio reports as the Gateway's address.
func loadBalancerAssigned(obj *unstructured.Unstructured) *unstructured.Unstructured {
	if kind, _, _ := unstructured.NestedString(obj.Object, "spec", "type"); obj.GetKind() != "Service" || kind != "LoadBalancer" {
		return obj
	}
	_ = unstructured.SetNestedSlice(obj.Object, []any{map[string]any{"ip": "192.0.2.10"}}, "status", "loadBalancer", "ingress")
	return obj
}

func namespaceObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name},
	}}
}

// createTyped creates an object given as unstructured through Istio's typed client.
func createTyped[T controllers.ComparableObject](t testing.TB, client kube.Client, typed T, obj *unstructured.Unstructured) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, typed); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	if _, err := kclient.NewWriteClient[T](client).Create(typed); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

// gatewayInjection is the pinned release's injector configuration with its kube-gateway
// template: what the deployment controller renders a Gateway's objects from.
func gatewayInjection(t testing.TB) func() inject.WebhookConfig {
	t.Helper()
	set, err := loadInjectionOnce()
	if err != nil {
		t.Fatal(err)
	}
	return func() inject.WebhookConfig {
		return inject.WebhookConfig{Templates: set.templates, Values: set.values, MeshConfig: mesh.DefaultMeshConfig()}
	}
}

// renderedProxy is the arguments of the istio-proxy container of a Deployment Istio rendered
// whole (nil for one that injection completes, whose container is a placeholder).
func renderedProxy(deployment *unstructured.Unstructured) []string {
	containers, _, _ := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		container := c.(map[string]any)
		if container["name"] != "istio-proxy" {
			continue
		}
		args, _, _ := unstructured.NestedStringSlice(container, "args")
		return args
	}
	return nil
}

// AsIstioReads is a Gateway API object in the version the pinned Istio watches (1.28 watches
// v1beta1 Gateways and HTTPRoutes, later releases v1): what the API server serves it as. The
// versions' schemas are one (gateway-api's v1beta1 types are aliases of v1's).
func AsIstioReads(t testing.TB, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	written := obj.GroupVersionKind()
	if written.Group != gatewayAPIGroup {
		return obj
	}
	schema, ok := collections.All.FindByGroupKind(config.GroupVersionKind{Group: written.Group, Kind: written.Kind})
	if !ok {
		t.Fatalf("Istio %s knows no %s.%s", LinkedIstioVersion(), written.Kind, written.Group)
	}
	served := obj.DeepCopy()
	served.SetAPIVersion(written.Group + "/" + schema.GroupVersionKind().Version)
	return served
}

// listenerSetHost is the host and port of the HTTPS listener of a ListenerSet among objects.
func listenerSetHost(objects []*unstructured.Unstructured) (string, int, bool) {
	for _, obj := range OfKind(objects, "ListenerSet") {
		listeners, _, _ := unstructured.NestedSlice(obj.Object, "spec", "listeners")
		for _, l := range listeners {
			listener := l.(map[string]any)
			if listener["protocol"] != "HTTPS" {
				continue
			}
			port, _ := toInt64(listener["port"])
			host, _ := listener["hostname"].(string)
			return host, int(port), true
		}
	}
	return "", 0, false
}
