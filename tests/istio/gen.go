package oracle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Output is a folder `peergate gen` wrote.
type Output struct {
	// Dir is the --out folder (certs/, cluster-a/, cluster-b/).
	Dir string
	// Stdout is what gen printed.
	Stdout string
}

// Gen runs `peergate gen` with the given flags into a new folder (an empty mesh.toml, so
// only the reference scenario's defaults and the flags count) and fails the test when it
// does not succeed.
func Gen(t testing.TB, flags ...string) Output {
	t.Helper()
	return GenWithConfig(t, "", flags...)
}

// GenWithConfig is Gen with a mesh.toml of that text.
func GenWithConfig(t testing.TB, meshTOML string, flags ...string) Output {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mesh.toml"), []byte(meshTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code, stderr := RunGen(t, dir, flags...)
	if code != 0 {
		t.Fatalf("peergate gen %s: exit %d\n%s", strings.Join(flags, " "), code, stderr)
	}
	return out
}

// RunGen runs `peergate gen` into dir/out and returns its output, exit status and standard
// error.
func RunGen(t testing.TB, dir string, flags ...string) (Output, int, string) {
	t.Helper()
	config := filepath.Join(dir, "mesh.toml")
	if _, err := os.Stat(config); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(config, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	args := append([]string{"gen", "--config", config, "--out", out}, flags...)
	cmd := exec.Command(PeergateBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("cannot run peergate: %v", err)
	}
	return Output{Dir: out, Stdout: stdout.String()}, code, stderr.String()
}

// Objects is what `kubectl kustomize` builds from the output's cluster folder ("cluster-a"
// or "cluster-b"): exactly what `kubectl apply -k` would send to the API server.
func (o Output) Objects(t testing.TB, cluster string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command("kubectl", "kustomize", filepath.Join(o.Dir, cluster))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", cluster, err, stderr.String())
	}
	objects, err := ParseObjects(stdout.String())
	if err != nil {
		t.Fatalf("kustomize output of %s: %v", cluster, err)
	}
	return objects
}

// File is one file of the output, read.
func (o Output) File(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(o.Dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// ParseObjects splits a YAML stream into objects.
func ParseObjects(stream string) ([]*unstructured.Unstructured, error) {
	var objects []*unstructured.Unstructured
	for i, doc := range SplitYAML(stream) {
		data, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		if strings.TrimSpace(string(data)) == "null" {
			continue
		}
		// Decoded as the API server decodes JSON: integers as int64 (CEL rules compare
		// them as integers).
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("document %d: %v", i, err)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

// SplitYAML splits a stream at its `---` separators.
func SplitYAML(stream string) []string {
	var docs []string
	var current strings.Builder
	for _, line := range strings.SplitAfter(stream, "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			docs = append(docs, current.String())
			current.Reset()
			continue
		}
		current.WriteString(line)
	}
	docs = append(docs, current.String())
	out := docs[:0]
	for _, doc := range docs {
		if strings.TrimSpace(doc) != "" {
			out = append(out, doc)
		}
	}
	return out
}

// ToYAML joins objects into one stream.
func ToYAML(t testing.TB, objects []*unstructured.Unstructured) string {
	t.Helper()
	var b strings.Builder
	for _, obj := range objects {
		data, err := yaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.String()
}

// IsIstioConfig reports whether the object is Istio configuration (istiod reads it as
// config) rather than a Kubernetes object.
func IsIstioConfig(obj *unstructured.Unstructured) bool {
	group := obj.GroupVersionKind().Group
	return strings.HasSuffix(group, ".istio.io")
}

// Find returns the one object of that kind and name, failing the test if there is none.
func Find(t testing.TB, objects []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, obj := range objects {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	t.Fatalf("no %s %s among %s", kind, name, Names(objects))
	return nil
}

// OfKind returns every object of that kind.
func OfKind(objects []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, obj := range objects {
		if obj.GetKind() == kind {
			out = append(out, obj)
		}
	}
	return out
}

// Names lists objects as kind/namespace/name, for messages.
func Names(objects []*unstructured.Unstructured) string {
	var names []string
	for _, obj := range objects {
		names = append(names, obj.GetKind()+"/"+obj.GetNamespace()+"/"+obj.GetName())
	}
	return strings.Join(names, ", ")
}
