package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestParallelDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), &out, "* * * * * *", time.Second, 4, false); err != nil {
			t.Fatal(err)
		}
		even, odd := strings.Count(out.String(), `"message": "this is even!"`), strings.Count(out.String(), `"message": "this is odd!"`)
		// Ticks alternate between even and odd seconds: two of each.
		if even != 2 || odd != 2 {
			t.Errorf("even %d, odd %d; want 2 and 2:\n%s", even, odd, out.String())
		}
	})
}

func TestParallelDemoOverHTTP(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, "* * * * * *", time.Second, 2, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "this is even!") || !strings.Contains(out.String(), "this is odd!") {
		t.Errorf("want both answers:\n%s", out.String())
	}
}
