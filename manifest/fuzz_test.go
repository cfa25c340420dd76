package manifest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// Fuzz targets for the YAML loader and the ISO-8601 durations of delivery
// specs. Run one for longer with, e.g.,
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 10m ./manifest

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"../examples/manifests/sequence", "../examples/manifests/parallel", "../examples/manifests/broker"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps:\n  - uri: http://127.0.0.1:1\n    delivery: {retry: 2, backoffDelay: PT0.2S}\n"))
	f.Add([]byte("---\n---\nkind: [\n"))
	f.Add([]byte("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: b\n  filters: [{any: [{not: {cesql: \"type = 'a'\"}}, {exact: {type: x}, prefix: {a: b}}]}]\n  subscriber: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}\n"))
	f.Add([]byte("kind: Sequence\nmetadata: {name: s}\nspec:\n  stpes: 1\n  steps: [x, {uri: 'http://localhost:8080/default/s-kn-sequence-0', delivery: {retyr: 1, timeout: 5s}}]\n  reply: {uri: 'http://[::1]:8080/x'}\n"))
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := manifest.Parse("fuzz.yaml", data)
		if err != nil {
			var me *manifest.Error
			if !errors.As(err, &me) || !errors.Is(err, flows.ErrInvalid) {
				t.Fatalf("Parse error is not a *manifest.Error wrapping ErrInvalid: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
		// Whatever parsed, with problems or not, must build or fail with
		// an error, never panic: documents with unknown fields are built
		// too, so that their other problems show. Unbound references are
		// the common outcome.
		app, err := manifest.Build(set, &manifest.Registry{}, manifest.WithServeAddress(":8080"))
		if err == nil && app != nil {
			app.Close()
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"PT0.2S", "PT1S", "P1D", "PT1H30M", "P1W", "PT0S", "P1Y", "-PT1S", "PT", "P", "PT1.5H", "pt1s", "PT9999999999999999999S", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := manifest.ParseDuration(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, d)
		}
		// ISO 8601 allows an explicit plus sign; a minus sign is refused.
		if !strings.HasPrefix(strings.TrimPrefix(s, "+"), "P") {
			t.Fatalf("ParseDuration(%q) accepted a value without the P designator", s)
		}
		_ = time.Duration(d)
	})
}
