package oracle

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"istio.io/istio/pilot/pkg/config/kube/gateway"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/status"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/test"
)

// statusStore is where Istio's status manager writes the status its controllers compute:
// what istiod would write to the API server. The manager reads an object (Get) before it
// writes its status (UpdateStatus); nothing else of the store is used.
type statusStore struct {
	model.ConfigStore
	mu      sync.Mutex
	written map[string]any
}

func statusKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// Get is the object as stored: the generation Istio computed the status for (0: objects the
// fake server holds have no generation).
func (s *statusStore) Get(typ config.GroupVersionKind, name, namespace string) *config.Config {
	return &config.Config{Meta: config.Meta{GroupVersionKind: typ, Name: name, Namespace: namespace}}
}

// UpdateStatus keeps the status written.
func (s *statusStore) UpdateStatus(c config.Config) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written[statusKey(c.GroupVersionKind.Kind, c.Namespace, c.Name)] = c.Status
	return "", nil
}

// Statuses are the status conditions Istio's Gateway API controller computes for a cluster's
// objects, as istiod writes them.
type Statuses struct {
	store *statusStore
}

// WatchStatus turns on the status writes of the cluster's Gateway API controller (off in
// Istio's fake server, on in istiod).
func (c *Cluster) WatchStatus(t testing.TB) *Statuses {
	t.Helper()
	controller, ok := c.Fake.Env().GatewayAPIController.(*gateway.Controller)
	if !ok {
		t.Fatalf("the fake server's Gateway API controller is a %T", c.Fake.Env().GatewayAPIController)
	}
	store := &statusStore{written: map[string]any{}}
	manager := status.NewManager(store)
	controller.SetStatusWrite(true, manager)
	manager.Start(test.NewStop(t))
	return &Statuses{store: store}
}

// Of waits for the status of an object (kind Gateway, HTTPRoute, …) and returns it as JSON
// (conditions, and a Gateway's listeners).
func (s *Statuses) Of(t testing.TB, kind, namespace, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.store.mu.Lock()
		written, ok := s.store.written[statusKey(kind, namespace, name)]
		s.store.mu.Unlock()
		if ok {
			data, err := json.Marshal(written)
			if err != nil {
				t.Fatal(err)
			}
			var out map[string]any
			if err := json.Unmarshal(data, &out); err != nil {
				t.Fatal(err)
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("Istio wrote no status for %s %s/%s", kind, namespace, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Condition is one condition of a status.
type Condition struct {
	Type, Status, Reason, Message string
}

// Conditions reads the conditions of a status (or of one of a Gateway's listeners, or of
// a route's parent).
func Conditions(status map[string]any) map[string]Condition {
	out := map[string]Condition{}
	list, _ := status["conditions"].([]any)
	for _, c := range list {
		m, _ := c.(map[string]any)
		cond := Condition{}
		cond.Type, _ = m["type"].(string)
		cond.Status, _ = m["status"].(string)
		cond.Reason, _ = m["reason"].(string)
		cond.Message, _ = m["message"].(string)
		out[cond.Type] = cond
	}
	return out
}
