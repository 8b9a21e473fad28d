//go:build !istio_push_full

package oracle

import (
	"time"

	"istio.io/istio/pilot/pkg/model"
)

// fullPush is the request of a full push, as istiod makes for a newly connected proxy.
// (PushRequest lost its Full field after 1.30: every push request is full unless it lists
// what changed.)
func fullPush(push *model.PushContext) *model.PushRequest {
	return &model.PushRequest{Push: push, Start: time.Now(), Forced: true}
}
