package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

const final = "hello, world! - Handled by 0 - Handled by 1 - Handled by 2"

func TestRun(t *testing.T) {
	t.Run("embedded server", func(t *testing.T) {
		checkRun(t, "")
	})
	t.Run("nats-url", func(t *testing.T) {
		srv, err := startServer()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.stop()
		checkRun(t, srv.ClientURL())
	})
}

func checkRun(t *testing.T, natsURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, natsURL, "* * * * * *", 2); err != nil {
		t.Fatalf("run = %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("run did not display 2 events within 30s; output:\n%s", out.String())
	}
	// An event in flight at the stop may be displayed too.
	if n := strings.Count(out.String(), final); n < 2 {
		t.Fatalf("output shows %q %d times; want 2. Output:\n%s", final, n, out.String())
	}
}
