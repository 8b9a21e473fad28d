package oracle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"istio.io/istio/pkg/config/crd"
	"istio.io/istio/pkg/config/schema/collections"
	kubelib "istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/webhooks/validation/server"
)

// Validator checks objects the way a cluster running the pinned Istio would on
// `kubectl apply`: Istio's kinds against that release's CRD schemas (structural schema,
// unknown fields, CEL rules: what the API server enforces) and through istiod's validating
// webhook (pkg/webhooks/validation/server, the code istiod serves on /validate); Kubernetes
// kinds by a strict decode into their Go types (unknown fields and wrong types are errors)
// and DNS-1123 names.
type Validator struct {
	crds    *crd.Validator
	webhook http.Handler
	// gatewayAPI validates Gateway API kinds against the CRDs of the gateway-api release the
	// pinned Istio vendors, in the channel peergate's output needs there (GatewayAPIChannel).
	gatewayAPI *crd.Validator
	// certManager validates cert-manager's kinds against the pinned cert-manager release's
	// CRDs (CERT_MANAGER_CRDS), with the same structural-schema and CEL code.
	certManager *crd.Validator
	// monitoring validates prometheus-operator's PrometheusRule against the pinned
	// prometheus-operator release's CRD (PROMETHEUS_OPERATOR_CRDS).
	monitoring *crd.Validator
}

var (
	validatorOnce sync.Once
	validator     *Validator
	validatorErr  error
)

// IstioValidator is the pinned release's validator (built once per test binary).
func IstioValidator(t testing.TB) *Validator {
	t.Helper()
	validatorOnce.Do(func() {
		crdFile := filepath.Join(IstioSourceDir(), "manifests/charts/base/files/crd-all.gen.yaml")
		crds, err := crd.NewValidatorFromFiles(crdFile)
		if err != nil {
			validatorErr = fmt.Errorf("%s: %v", crdFile, err)
			return
		}
		mux := http.NewServeMux()
		// The schemas and domain istiod itself passes (pilot/pkg/bootstrap/validation.go).
		if _, err := server.New(server.Options{
			Schemas:      collections.PilotGatewayAPI(),
			DomainSuffix: "cluster.local",
			Mux:          mux,
		}); err != nil {
			validatorErr = err
			return
		}
		dir := os.Getenv("CERT_MANAGER_CRDS")
		if dir == "" {
			validatorErr = fmt.Errorf("CERT_MANAGER_CRDS is not set: `cargo make istio` downloads the pinned cert-manager module and sets it to its deploy/crds")
			return
		}
		files, err := filepath.Glob(filepath.Join(dir, "cert-manager.io_*.yaml"))
		if err != nil || len(files) == 0 {
			validatorErr = fmt.Errorf("CERT_MANAGER_CRDS=%s: no cert-manager.io CRDs there (%v)", dir, err)
			return
		}
		certManager, err := crd.NewValidatorFromFiles(files...)
		if err != nil {
			validatorErr = fmt.Errorf("%s: %v", dir, err)
			return
		}
		gatewayAPI, err := GatewayAPIValidator(GatewayAPIChannel())
		if err != nil {
			validatorErr = err
			return
		}
		monitoring, err := prometheusOperatorValidator()
		if err != nil {
			validatorErr = err
			return
		}
		validator = &Validator{crds: crds, webhook: mux, certManager: certManager, gatewayAPI: gatewayAPI, monitoring: monitoring}
	})
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

// Validate returns why the cluster would refuse the object, or nil.
func (v *Validator) Validate(obj *unstructured.Unstructured) error {
	if IsIstioConfig(obj) {
		if err := v.crds.ValidateCustomResource(obj.DeepCopy()); err != nil {
			return fmt.Errorf("CRD schema: %v", err)
		}
		if err := v.admit(obj); err != nil {
			return fmt.Errorf("validating webhook: %v", err)
		}
		return nil
	}
	if obj.GroupVersionKind().Group == gatewayAPIGroup {
		if err := v.gatewayAPI.ValidateCustomResource(obj.DeepCopy()); err != nil {
			return fmt.Errorf("Gateway API %s CRD schema: %v", GatewayAPIChannel(), err)
		}
		return validateNames(obj)
	}
	if obj.GroupVersionKind().Group == "monitoring.coreos.com" {
		if err := v.monitoring.ValidateCustomResource(obj.DeepCopy()); err != nil {
			return fmt.Errorf("prometheus-operator CRD schema: %v", err)
		}
		return validateNames(obj)
	}
	if obj.GroupVersionKind().Group == "cert-manager.io" {
		if err := v.certManager.ValidateCustomResource(obj.DeepCopy()); err != nil {
			return fmt.Errorf("cert-manager CRD schema: %v", err)
		}
		return validateNames(obj)
	}
	return validateKubernetes(obj)
}

// prometheusOperatorValidator reads the PrometheusRule CRD of the pinned prometheus-operator
// release (its Go module's example/prometheus-operator-crd, PROMETHEUS_OPERATOR_CRDS).
func prometheusOperatorValidator() (*crd.Validator, error) {
	dir := os.Getenv("PROMETHEUS_OPERATOR_CRDS")
	if dir == "" {
		return nil, fmt.Errorf("PROMETHEUS_OPERATOR_CRDS is not set: `cargo make istio` downloads the pinned prometheus-operator module and sets it to its example/prometheus-operator-crd")
	}
	file := filepath.Join(dir, "monitoring.coreos.com_prometheusrules.yaml")
	monitoring, err := crd.NewValidatorFromFiles(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return monitoring, nil
}

// GatewayAPISourceDir is the sigs.k8s.io/gateway-api module this binary links (the version
// the pinned Istio requires): its config/crd holds that release's CRDs.
func GatewayAPISourceDir() string {
	file, _ := goruntime.FuncForPC(reflect.ValueOf(gatewayv1.Resource).Pointer()).FileLine(0)
	return strings.TrimSuffix(filepath.ToSlash(filepath.Dir(file)), "/apis/v1")
}

// GatewayAPIChannel is the channel of Gateway API CRDs peergate's Gateway API output needs
// on the pinned release: "standard" when that channel has the Gateway's spec.tls.frontend
// (gateway-api v1.5 and later, Istio 1.30 and later), else "experimental".
func GatewayAPIChannel() string {
	data, err := os.ReadFile(filepath.Join(GatewayAPISourceDir(), "config/crd/standard/gateway.networking.k8s.io_gateways.yaml"))
	if err == nil && bytes.Contains(data, []byte("frontend:")) {
		return "standard"
	}
	return "experimental"
}

// GatewayAPIValidator checks objects against one channel of the linked gateway-api release's
// CRDs with Istio's CRD validator (structural schema, unknown fields, CEL rules).
func GatewayAPIValidator(channel string) (*crd.Validator, error) {
	dir := filepath.Join(GatewayAPISourceDir(), "config/crd", channel)
	files, err := filepath.Glob(filepath.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("%s: no Gateway API CRDs there (%v)", dir, err)
	}
	v, err := crd.NewValidatorFromFiles(files...)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", dir, err)
	}
	return v, nil
}

// admit sends the object to the webhook as the API server would (an AdmissionReview for a
// CREATE) and reads its answer.
func (v *Validator) admit(obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	raw, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       "peergate-oracle",
			"kind":      map[string]string{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind},
			"resource":  map[string]string{"group": gvk.Group, "version": gvk.Version, "resource": strings.ToLower(gvk.Kind) + "s"},
			"operation": "CREATE",
			"namespace": obj.GetNamespace(),
			"name":      obj.GetName(),
			"object":    json.RawMessage(raw),
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return err
	}
	request := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	request.Header.Set("Content-Type", "application/json")
	recorder := httptest.NewRecorder()
	v.webhook.ServeHTTP(recorder, request)
	if recorder.Code != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", recorder.Code, recorder.Body.String())
	}
	var answer struct {
		Response struct {
			Allowed bool      `json:"allowed"`
			Result  *struct { // admission.k8s.io/v1 names it "status"
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(recorder.Body.Bytes(), &answer); err != nil {
		return fmt.Errorf("unreadable AdmissionReview: %v: %s", err, recorder.Body.String())
	}
	if !answer.Response.Allowed {
		message := "refused"
		if answer.Response.Result != nil {
			message = answer.Response.Result.Message
		}
		return fmt.Errorf("%s", message)
	}
	return nil
}

// validateKubernetes decodes a Kubernetes object strictly into its Go type (what the API
// server's strict field validation does with unknown fields) and checks the names the API
// server checks everywhere. It is not the API server's full validation (k8s.io/kubernetes'
// validation packages are not importable); the object-specific rules peergate relies on are
// asserted where they matter (Istio's injector, istiod's use of the objects).
func validateKubernetes(obj *unstructured.Unstructured) error {
	typed, err := kubelib.IstioScheme.New(obj.GroupVersionKind())
	if err != nil {
		return fmt.Errorf("%s: not a known Kubernetes kind: %v", obj.GroupVersionKind(), err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, typed, true); err != nil {
		return fmt.Errorf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	return validateNames(obj)
}

// validateNames checks the names the API server checks on every object.
func validateNames(obj *unstructured.Unstructured) error {
	for _, msg := range k8svalidation.IsDNS1123Subdomain(obj.GetName()) {
		return fmt.Errorf("%s %s: metadata.name: %s", obj.GetKind(), obj.GetName(), msg)
	}
	if ns := obj.GetNamespace(); ns != "" {
		for _, msg := range k8svalidation.IsDNS1123Label(ns) {
			return fmt.Errorf("%s %s: metadata.namespace: %s", obj.GetKind(), obj.GetName(), msg)
		}
	}
	for key, value := range obj.GetLabels() {
		for _, msg := range k8svalidation.IsQualifiedName(key) {
			return fmt.Errorf("%s %s: label %q: %s", obj.GetKind(), obj.GetName(), key, msg)
		}
		for _, msg := range k8svalidation.IsValidLabelValue(value) {
			return fmt.Errorf("%s %s: label %q: %s", obj.GetKind(), obj.GetName(), key, msg)
		}
	}
	return nil
}
