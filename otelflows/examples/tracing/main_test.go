package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
)

// On the fake clock the handlers take no time and the retry exactly its
// backoff, so the tree is known to the character.
const wantTree = `
ping ping-source                                50ms  delivered
└─ ping-source sink #1                          50ms  sink → sequence
   └─ sequence steps[0] #1                        0s  delivered
      ├─ sequence steps[1] #1                     0s  retried  error: flaky: first attempt fails  retry in 50ms
      └─ sequence steps[1] #2                     0s  delivered
         └─ sequence steps[2] #1                  0s  delivered
            └─ sequence steps[2] reply #1         0s  reply → sequence/reply
`

func TestTracingDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		if err := run(context.Background(), &out, "* * * * * *", 2); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		traces := regexp.MustCompile(`(?m)^trace [0-9a-f]{32}$`).FindAllString(got, -1)
		if len(traces) != 2 || traces[0] == traces[1] {
			t.Errorf("want two traces with their own ids, got %q", traces)
		}
		if n := strings.Count(got, wantTree); n != 2 {
			t.Errorf("the output has the expected tree %d times, want 2:\n%s", n, got)
		}
		for _, line := range []string{
			`"message": "hello, world! - Handled by 0 - Handled by 1 - Handled by 2"`,
			"flows.deliveries{flow=sequence,outcome=retried,step=steps[1]} 2",
			"flows.event.duration{flow=sequence} count=2 sum=100ms",
		} {
			if !strings.Contains(got, line) {
				t.Errorf("output lacks %q:\n%s", line, got)
			}
		}
		// The retry's log record names the trace and span of the attempt.
		logLine := regexp.MustCompile(`msg="flows: attempt failed, will retry".* trace_id=([0-9a-f]{32}) span_id=[0-9a-f]{16}`)
		if m := logLine.FindAllStringSubmatch(got, -1); len(m) != 2 || !strings.Contains(got, "trace "+m[0][1]) {
			t.Errorf("log records %q do not name the traces", m)
		}
	})
}
