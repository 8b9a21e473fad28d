//go:build !istio_gateway_pkg

package oracle

import (
	"istio.io/istio/pkg/config/schema/gvr"
	"istio.io/istio/pkg/kube/kclient/clienttest"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"istio.io/istio/pilot/pkg/config/kube/gatewaycommon"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/revisions"

	"istio.io/istio/pilot/pkg/model"
)

// newDeploymentController is Istio's Gateway API deployment controller (after 1.28 in
// pilot/pkg/config/kube/gatewaycommon).
func newDeploymentController(client kube.Client, env *model.Environment, webhook func() inject.WebhookConfig, tags revisions.TagWatcher) deploymentController {
	return gatewaycommon.NewDeploymentController(client, cluster.ID("Kubernetes"), env, webhook, func(func()) {}, tags, "", "istio-system")
}

// createGateway creates gw through the typed client of the Gateway version this release's
// deployment controller watches.
func createGateway(t testing.TB, client kube.Client, gw *unstructured.Unstructured) {
	t.Helper()
	createTyped[*gatewayv1.Gateway](t, client, &gatewayv1.Gateway{}, gw)
}

// gatewayAPIExtras registers the CRDs of Gateway API kinds Istio's fake server leaves out
// (ListenerSet).
func gatewayAPIExtras(t testing.TB, client kube.Client) {
	t.Helper()
	clienttest.MakeCRD(t, client, gvr.ListenerSet)
}

// createListenerSets creates the ListenerSets among objects through the typed client (they
// add ports to what the deployment controller renders).
func createListenerSets(t testing.TB, client kube.Client, objects []*unstructured.Unstructured) {
	t.Helper()
	for _, obj := range objects {
		if obj.GetKind() == "ListenerSet" {
			createTyped[*gatewayv1.ListenerSet](t, client, &gatewayv1.ListenerSet{}, obj)
		}
	}
}
