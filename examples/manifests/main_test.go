package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestSequenceFromTheSeedYAML(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), &out, config{demo: "sequence", schedule: "* * * * * *", period: time.Second}); err != nil {
			t.Fatal(err)
		}
		want := `"message": "hello, world! - Handled by 0 - Handled by 1 - Handled by 2"`
		if n := strings.Count(out.String(), want); n != 3 {
			t.Errorf("output shows the final message %d times, want 3:\n%s", n, out.String())
		}
		for _, attr := range []string{"type: dev.knative.sources.ping", "source: /apis/v1/namespaces/default/pingsources/ping-source", `"id": 0`} {
			if !strings.Contains(out.String(), attr) {
				t.Errorf("output lacks %q", attr)
			}
		}
	})
}

func TestParallelFromTheSeedYAML(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), &out, config{demo: "parallel", schedule: "* * * * * *", period: time.Second}); err != nil {
			t.Fatal(err)
		}
		even, odd := strings.Count(out.String(), `"message": "this is even!"`), strings.Count(out.String(), `"message": "this is odd!"`)
		if even != 2 || odd != 2 {
			t.Errorf("output shows %d even and %d odd events, want 2 and 2:\n%s", even, odd, out.String())
		}
	})
}

// With the manifests' own schedule, every minute, and the seed's minute
// periods, the fake clock runs the demo as the seed shows it.
func TestSeedSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		start := time.Now()
		if err := run(context.Background(), &out, config{demo: "parallel", period: time.Minute, events: 2}); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 2*time.Minute {
			t.Errorf("two events took %s, want 2m (one a minute)", d)
		}
		if !strings.Contains(out.String(), "this is even!") || !strings.Contains(out.String(), "this is odd!") {
			t.Errorf("output:\n%s", out.String())
		}
	})
}

func TestGraphFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, config{demo: "both", graph: "mermaid"}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "flowchart LR") != 2 || !strings.Contains(out.String(), "Service third<br/>Go handler") {
		t.Errorf("graph:\n%s", out.String())
	}
}
