package oracle

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/kube/inject"
)

// injection is Istio's sidecar injector as the pinned release installs it: the sidecar and
// gateway templates and the default values of its istio-discovery chart.
type injection struct {
	templates inject.Templates
	values    inject.ValuesConfig
}

var (
	injectionOnce sync.Once
	injectionSet  injection
	injectionErr  error
)

func loadInjection() (injection, error) {
	dir := filepath.Join(IstioSourceDir(), "manifests/charts/istio-control/istio-discovery")
	raw := inject.RawTemplates{}
	for name, file := range map[string]string{
		inject.SidecarTemplateName: "files/injection-template.yaml",
		"gateway":                  "files/gateway-injection-template.yaml",
		// What the Gateway API deployment controller renders a Gateway's objects from.
		"kube-gateway": "files/kube-gateway.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return injection{}, err
		}
		raw[name] = string(data)
	}
	templates, err := inject.ParseTemplates(raw)
	if err != nil {
		return injection{}, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return injection{}, err
	}
	var chart map[string]any
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return injection{}, err
	}
	// The chart nests its defaults under this key (a Helm workaround); the injector's
	// ConfigMap holds them un-nested.
	if defaults, ok := chart["_internal_defaults_do_not_set"].(map[string]any); ok {
		chart = defaults
	}
	valuesJSON, err := json.Marshal(chart)
	if err != nil {
		return injection{}, err
	}
	values, err := inject.NewValuesConfig(string(valuesJSON))
	if err != nil {
		return injection{}, err
	}
	return injection{templates: templates, values: values}, nil
}

// loadInjectionOnce loads the injection templates and values once per process.
func loadInjectionOnce() (injection, error) {
	injectionOnce.Do(func() { injectionSet, injectionErr = loadInjection() })
	return injectionSet, injectionErr
}

// Inject runs Istio's injector on a Deployment (what `istioctl kube-inject` does offline, and
// the webhook at admission) and returns the Pod template it produces.
func Inject(t testing.TB, deployment *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	if _, err := loadInjectionOnce(); err != nil {
		t.Fatalf("loading Istio's injection templates: %v", err)
	}
	typed := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(deployment.Object, typed); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	out, err := inject.IntoObject(nil, injectionSet.templates, injectionSet.values, "", mesh.DefaultMeshConfig(), typed, func(w string) {
		warnings = append(warnings, w)
	})
	if err != nil {
		t.Fatalf("Istio's injector refuses Deployment %s/%s: %v", deployment.GetNamespace(), deployment.GetName(), err)
	}
	injected, ok := out.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("the injector returned a %T", out)
	}
	pod := &corev1.Pod{ObjectMeta: injected.Spec.Template.ObjectMeta, Spec: injected.Spec.Template.Spec}
	if proxy(pod) == nil {
		t.Fatalf("Istio's injector added no istio-proxy to %s/%s: %v", deployment.GetNamespace(), deployment.GetName(), warnings)
	}
	return pod
}

func proxy(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "istio-proxy" {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == "istio-proxy" {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// ProxyArgs are the istio-proxy container's arguments (pilot-agent's flags).
func ProxyArgs(pod *corev1.Pod) []string {
	if c := proxy(pod); c != nil {
		return c.Args
	}
	return nil
}

// ProxyFiles are the files the istio-proxy container sees from Secret volumes, by path, as
// the kubelet would mount them from the cluster's Secrets.
func ProxyFiles(t testing.TB, pod *corev1.Pod, namespace string, objects []*unstructured.Unstructured) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, mount := range proxy(pod).VolumeMounts {
		volume, ok := volumes[mount.Name]
		if !ok {
			t.Fatalf("istio-proxy mounts volume %q, which the pod does not have (volumes: %v)", mount.Name, pod.Spec.Volumes)
		}
		if volume.Projected != nil {
			// A projected volume: the listed keys of each Secret source, at their paths.
			for _, source := range volume.Projected.Sources {
				if source.Secret == nil {
					continue
				}
				secret := secretData(t, objects, namespace, source.Secret.Name)
				if len(source.Secret.Items) == 0 {
					for key, value := range secret {
						files[filepath.Join(mount.MountPath, key)] = value
					}
				}
				for _, item := range source.Secret.Items {
					value, ok := secret[item.Key]
					if !ok {
						t.Fatalf("Secret %s/%s has no key %q for volume %s", namespace, source.Secret.Name, item.Key, mount.Name)
					}
					files[filepath.Join(mount.MountPath, item.Path)] = value
				}
			}
			continue
		}
		if volume.Secret == nil {
			continue
		}
		secret := secretData(t, objects, namespace, volume.Secret.SecretName)
		for key, value := range secret {
			files[filepath.Join(mount.MountPath, key)] = value
		}
	}
	return files
}

func secretData(t testing.TB, objects []*unstructured.Unstructured, namespace, name string) map[string][]byte {
	t.Helper()
	for _, obj := range objects {
		if obj.GetKind() != "Secret" || obj.GetNamespace() != namespace || obj.GetName() != name {
			continue
		}
		secret := &corev1.Secret{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, secret); err != nil {
			t.Fatal(err)
		}
		return secret.Data
	}
	t.Fatalf("no Secret %s/%s to mount", namespace, name)
	return nil
}

// AgentFileSecrets are what istio-agent serves for the `file-cert:` and `file-root:` SDS
// names istiod writes for a DestinationRule that names files (security/pkg/nodeagent/sds):
// the files' contents, read from the proxy container's filesystem.
func AgentFileSecrets(t testing.TB, names []string, files map[string][]byte) []*tls.Secret {
	t.Helper()
	var out []*tls.Secret
	read := func(name, path string) []byte {
		data, ok := files[path]
		if !ok {
			var paths []string
			for p := range files {
				paths = append(paths, p)
			}
			t.Fatalf("SDS %q: the istio-proxy container has no file %s (it has %v)", name, path, paths)
		}
		return data
	}
	for _, name := range names {
		if pair, ok := strings.CutPrefix(name, "file-cert:"); ok {
			certPath, keyPath, _ := strings.Cut(pair, "~")
			out = append(out, TLSSecret(name, read(name, certPath), read(name, keyPath)))
		} else if path, ok := strings.CutPrefix(name, "file-root:"); ok {
			out = append(out, CASecret(name, read(name, path)))
		}
	}
	return out
}

// TLSSecret is an SDS certificate and key.
func TLSSecret(name string, cert, key []byte) *tls.Secret {
	return &tls.Secret{Name: name, Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
		CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: cert}},
		PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}

// CASecret is an SDS validation context trusting ca.
func CASecret(name string, ca []byte) *tls.Secret {
	return &tls.Secret{Name: name, Type: &tls.Secret_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
		TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: ca}},
	}}}
}

// WorkloadSecrets stand in for the mesh's own CA (istiod's) as istio-agent serves it: the
// workload certificate "default" for the ServiceAccount's SPIFFE identity and the mesh root
// "ROOTCA". Istio's mTLS between its own workloads; peergate's path does not use them.
func WorkloadSecrets(t testing.TB, meshCA Keypair, namespace, serviceAccount string) []*tls.Secret {
	t.Helper()
	workload := Issue(t, &meshCA, CertificateTemplate{
		URIs:  []string{"spiffe://cluster.local/ns/" + namespace + "/sa/" + serviceAccount},
		Usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	})
	return []*tls.Secret{
		TLSSecret("default", []byte(workload.Cert), []byte(workload.Key)),
		CASecret("ROOTCA", []byte(meshCA.Cert)),
	}
}
