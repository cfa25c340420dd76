package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMeasureDurable measures the figures: the three-step Sequence
// of HTTP steps through `flows run` in memory and `flows run --durable`,
// in the same run, events/s and p99 latency (from the POST to the reply).
// It is a measurement, not a check: FLOWS_MEASURE=5000 runs it with that
// many events.
//
//	FLOWS_MEASURE=5000 go test -count=1 -run TestMeasureDurable -v ./cmd/flows
func TestMeasureDurable(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FLOWS_MEASURE"))
	if n <= 0 {
		t.Skip("a measurement: set FLOWS_MEASURE to a number of events")
	}
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"in memory", nil},
		{"--durable", []string{"--durable", filepath.Join(t.TempDir(), "store"), "--nats-port", "0"}},
	} {
		s := newSteps(t)
		r := startRunner(t, mode.name, append([]string{"run", "-f", s.manifest(t), "--listen", "127.0.0.1:0",
			"--log-level", "warn", "--concurrency", strconv.Itoa(crashConcurrency)}, mode.args...)...)
		url := *r.url.Load()
		client := &http.Client{Timeout: 10 * time.Second}
		var mu sync.Mutex
		sent := map[string]time.Time{}
		var ids []string
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 8 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					id := fmt.Sprintf("m-%06d", i)
					at := time.Now()
					if code, err := postOnce(client, url, id); code != http.StatusAccepted {
						t.Errorf("POST: %d %v", code, err)
						return
					}
					mu.Lock()
					sent[id] = at
					ids = append(ids, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if missing := s.waitAll(ids, 2*time.Minute); len(missing) > 0 {
			t.Fatalf("%s: %d events missing", mode.name, len(missing))
		}
		s.mu.Lock()
		var last time.Time
		var lat []time.Duration
		for _, id := range ids {
			at := s.at[id]
			lat = append(lat, at.Sub(sent[id]))
			if at.After(last) {
				last = at
			}
		}
		s.mu.Unlock()
		slices.Sort(lat)
		t.Logf("%-10s %d events: %.0f events/s, p50 %v, p99 %v", mode.name, n, float64(n)/last.Sub(start).Seconds(),
			lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	}
}
