package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/synctest"
)

const want = `"message": "hello, world! - Handled by 0 - Handled by 1 - Handled by 2"`

func TestSequenceDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), &out, "* * * * * *", 3, false, ""); err != nil {
			t.Fatal(err)
		}
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

func TestSequenceDemoOverHTTP(t *testing.T) {
	// Real servers on 127.0.0.1 cannot run on the fake clock: one real tick.
	var out bytes.Buffer
	if err := run(context.Background(), &out, "* * * * * *", 1, true, ""); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), want); n != 1 {
		t.Errorf("output shows the final message %d times, want 1:\n%s", n, out.String())
	}
}

func TestBadScheduleIsReported(t *testing.T) {
	err := run(context.Background(), &bytes.Buffer{}, "every second", 1, false, "")
	if err == nil || !strings.Contains(err.Error(), `schedule: "every second"`) {
		t.Errorf("run = %v, want a schedule error", err)
	}
}
