//go:build istio_gateway_pkg

package oracle

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"istio.io/istio/pilot/pkg/config/kube/gateway"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/revisions"

	"istio.io/istio/pilot/pkg/model"
)

// newDeploymentController is Istio's Gateway API deployment controller (in 1.28 in
// pilot/pkg/config/kube/gateway).
func newDeploymentController(client kube.Client, env *model.Environment, webhook func() inject.WebhookConfig, tags revisions.TagWatcher) deploymentController {
	return gateway.NewDeploymentController(client, cluster.ID("Kubernetes"), env, webhook, func(func()) {}, tags, "", "istio-system")
}

// createGateway creates gw through the typed client of the Gateway version this release's
// deployment controller watches.
func createGateway(t testing.TB, client kube.Client, gw *unstructured.Unstructured) {
	t.Helper()
	createTyped[*gatewayv1beta1.Gateway](t, client, &gatewayv1beta1.Gateway{}, gw)
}

// gatewayAPIExtras: nothing on 1.28 (peergate generates no ListenerSet for it).
func gatewayAPIExtras(testing.TB, kube.Client) {}

// createListenerSets: none on 1.28 (its XListenerSet is alpha, and gen refuses it there).
func createListenerSets(testing.TB, kube.Client, []*unstructured.Unstructured) {}
