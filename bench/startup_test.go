package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// Startup costs: what Start does for a flow (channels, subscriptions, their
// workers) and, for the seed's manifests, Build's resolution on top. Each op
// starts one flow (or App) and shuts it down; Shutdown is timed apart and
// reported as shutdown-µs, so that µs/start is Start (and Build) alone.

// BenchmarkStartSequence3Steps starts an in-memory 3-step Sequence.
func BenchmarkStartSequence3Steps(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	var stopping time.Duration
	for b.Loop() {
		s := sequence(appender(suffix(0)), appender(suffix(1)), appender(suffix(2)))
		s.Reply = flows.Discard
		f, err := s.Start(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		t := time.Now()
		if err := f.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		stopping += time.Since(t)
		b.StartTimer()
	}
	reportStartup(b, stopping)
}

// BenchmarkStartManifest builds and starts the seed's manifests (kept in
// examples/manifests): the 3-step Sequence and the 2-branch Parallel, each
// with the PingSource that feeds it. The YAML is parsed once, outside the
// loop: the op is manifest.Build + App.Start.
func BenchmarkStartManifest(b *testing.B) {
	for _, demo := range []struct {
		dir      string
		services []string
	}{
		{"sequence", []string{"first", "second", "third"}},
		{"parallel", []string{"even-filter", "odd-filter", "even-transformer", "odd-transformer", "event-display"}},
	} {
		b.Run(demo.dir, func(b *testing.B) {
			set, err := manifest.ReadFS(os.DirFS("../examples/manifests"), demo.dir)
			if err != nil {
				b.Fatal(err)
			}
			var reg manifest.Registry
			for i, name := range demo.services {
				reg.Bind("Service", name, appender(suffix(i%3)))
			}
			ctx := context.Background()
			b.ReportAllocs()
			var stopping time.Duration
			for b.Loop() {
				app, err := manifest.Build(set, &reg)
				if err != nil {
					b.Fatal(err)
				}
				if err := app.Start(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				t := time.Now()
				if err := app.Shutdown(ctx); err != nil {
					b.Fatal(err)
				}
				stopping += time.Since(t)
				b.StartTimer()
			}
			reportStartup(b, stopping)
		})
	}
}

func reportStartup(b *testing.B, stopping time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/start")
	b.ReportMetric(float64(stopping.Microseconds())/float64(b.N), "shutdown-µs")
}
