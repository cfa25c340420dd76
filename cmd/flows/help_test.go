package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// DOT output is of use only with Graphviz, which Go does not bring: the
// help of the command and of graph says so where it offers dot.
func TestHelpSaysDOTNeedsGraphviz(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"graph", "-h"}} {
		var stdout, stderr bytes.Buffer
		run(context.Background(), args, &stdout, &stderr, notify)
		if help := stdout.String() + stderr.String(); !strings.Contains(help, "needs Graphviz") {
			t.Errorf("flows %s does not say that DOT needs Graphviz:\n%s", strings.Join(args, " "), help)
		}
	}
}
