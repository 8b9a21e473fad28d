//go:build istio_push_full

package oracle

import (
	"time"

	"istio.io/istio/pilot/pkg/model"
)

// fullPush is the request of a full push, as istiod makes for a newly connected proxy.
func fullPush(push *model.PushContext) *model.PushRequest {
	return &model.PushRequest{Full: true, Push: push, Start: time.Now(), Forced: true}
}
