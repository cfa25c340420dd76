package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

const want = `"message": "Hello world! - Handled by 0 - Handled by 1 - Handled by 2"`

func TestBrokerDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		// Bounded on the fake clock: a demo that displays nothing fails.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := run(ctx, &out, "* * * * * *", 3, false, ""); err != nil {
			t.Fatal(err)
		}
		// Exactly one display per ping: the reply of the sequence, of the
		// new type, and never the ping itself.
		if n := strings.Count(out.String(), want); n != 3 {
			t.Errorf("output shows the final message %d times, want 3:\n%s", n, out.String())
		}
		if n := strings.Count(out.String(), "cloudevents.Event"); n != 3 {
			t.Errorf("event-display printed %d events, want 3:\n%s", n, out.String())
		}
		for _, attr := range []string{"type: samples.http.mod3", "source: /apis/v1/namespaces/default/pingsources/ping-source",
			`"id": 0`, "knativearrivaltime: "} {
			if !strings.Contains(out.String(), attr) {
				t.Errorf("output lacks %q", attr)
			}
		}
		for _, absent := range []string{"type: dev.knative.sources.ping", "knativebrokerttl"} {
			if strings.Contains(out.String(), absent) {
				t.Errorf("output shows %q:\n%s", absent, out.String())
			}
		}
	})
}

func TestBrokerDemoOverHTTP(t *testing.T) {
	// Real servers on 127.0.0.1 cannot run on the fake clock: one real tick.
	var out bytes.Buffer
	if err := run(context.Background(), &out, "* * * * * *", 1, true, "127.0.0.1:0"); err != nil {
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
