package oracle

import (
	"os"
	"testing"

	"istio.io/istio/pkg/log"
)

// TestMain sends Istio's own logging (istiod's, the agent's) to standard error, apart from
// the test results on standard output: `cargo make istio` keeps it in a file per pin.
func TestMain(m *testing.M) {
	options := log.DefaultOptions()
	options.OutputPaths = []string{"stderr"}
	options.ErrorOutputPaths = []string{"stderr"}
	if err := log.Configure(options); err != nil {
		panic(err)
	}
	code := m.Run()
	if agentCache != "" {
		_ = os.RemoveAll(agentCache)
	}
	os.Exit(code)
}
