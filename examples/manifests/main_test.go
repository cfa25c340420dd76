package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eventflows/flows/manifest"
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

// The example is documentation: main.go binds each Knative Service of the
// YAML by its name, as a reader would in their own program.
func TestMainBindsEveryServiceByName(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Bind" {
			return true
		}
		if kind, name := stringLit(call.Args[0]), stringLit(call.Args[1]); kind != "" && name != "" {
			bound[kind+"/"+name] = true
		}
		return true
	})
	for _, dir := range []string{"sequence", "parallel"} {
		set, err := manifest.ReadFS(manifests, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range set.Documents {
			for _, ref := range serviceRefs(d.Object) {
				if !bound["Service/"+ref] {
					t.Errorf("main.go has no reg.Bind(\"Service\", %q, ...), which %s/ refers to", ref, dir)
				}
			}
		}
	}
}

func stringLit(e ast.Expr) string {
	if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
		s, _ := strconv.Unquote(lit.Value)
		return s
	}
	return ""
}

// serviceRefs returns the names of the Services a Sequence or a Parallel
// sends to.
func serviceRefs(obj any) []string {
	var dests []*manifest.Destination
	switch o := obj.(type) {
	case *manifest.Sequence:
		for i := range o.Spec.Steps {
			dests = append(dests, &o.Spec.Steps[i].Destination)
		}
		dests = append(dests, o.Spec.Reply)
	case *manifest.Parallel:
		for i, b := range o.Spec.Branches {
			dests = append(dests, b.Filter, &o.Spec.Branches[i].Subscriber, b.Reply)
		}
		dests = append(dests, o.Spec.Reply)
	}
	var names []string
	for _, d := range dests {
		if d != nil && d.Ref != nil && d.Ref.Kind == "Service" {
			names = append(names, d.Ref.Name)
		}
	}
	return names
}
