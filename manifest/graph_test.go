package manifest_test

import (
	"strings"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

func TestGraphMermaidOfSeedParallel(t *testing.T) {
	var reg manifest.Registry
	reg.Bind("Service", "even-filter", flows.Discard)
	reg.Bind("Service", "odd-filter", flows.Discard)
	reg.BindURL("Service", "even-transformer", "http://127.0.0.1:8082")
	reg.BindURL("Service", "odd-transformer", "http://127.0.0.1:8083")
	// event-display is left unbound: NewGraph draws it as such.
	g, err := manifest.NewGraph(readSeed(t, "parallel"), &reg)
	if err != nil {
		t.Fatal(err)
	}
	want := `flowchart LR
  subgraph g1["Parallel odd-even-parallel"]
    n1[("odd-even-parallel-kn-parallel")]
    n2[("odd-even-parallel-kn-parallel-0")]
    n3("odd-even-parallel-kn-parallel-filter-0")
    n5("odd-even-parallel-kn-parallel-0")
    n8[("odd-even-parallel-kn-parallel-1")]
    n9("odd-even-parallel-kn-parallel-filter-1")
    n11("odd-even-parallel-kn-parallel-1")
  end
  n4["Service even-filter<br/>Go handler"]
  n6["Service even-transformer<br/>http://127.0.0.1:8082"]
  n7["Service event-display<br/>no binding"]
  n10["Service odd-filter<br/>Go handler"]
  n12["Service odd-transformer<br/>http://127.0.0.1:8083"]
  n13{{"PingSource ping-source<br/>* * * * *"}}
  n1 --> n3
  n3 -->|"subscriber"| n4
  n3 -->|"reply"| n2
  n2 --> n5
  n5 -->|"subscriber"| n6
  n5 -->|"reply"| n7
  n1 --> n9
  n9 -->|"subscriber"| n10
  n9 -->|"reply"| n8
  n8 --> n11
  n11 -->|"subscriber"| n12
  n11 -->|"reply"| n7
  n13 -->|"sink"| n1
  style n7 stroke-dasharray: 5 5
`
	if got := g.Mermaid(); got != want {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, want)
	}
	if _, err := manifest.Build(readSeed(t, "parallel"), &reg); err == nil {
		t.Error("Build accepted the unbound event-display")
	}
}

func TestGraphDOTOfNestedFlowsWithDeadLetters(t *testing.T) {
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: orders}
spec:
  steps:
  - ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: checks}
  - uri: http://127.0.0.1:8085/ship
    delivery:
      retry: 3
      backoffPolicy: exponential
      backoffDelay: PT0.2S
      timeout: PT1S
      deadLetterSink:
        ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: "dead-letters"}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: checks}
spec:
  branches:
  - subscriber: {uri: "http://127.0.0.1:8084/fraud"}
`)
	var reg manifest.Registry
	reg.Bind("Service", "dead-letters", flows.Discard)
	app, err := manifest.Build(set, &reg)
	if err != nil {
		t.Fatal(err)
	}
	want := `digraph flows {
  rankdir=LR;
  node [fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=9];
  subgraph cluster_1 {
    label="Parallel checks";
    n1 [label="checks-kn-parallel", shape=cylinder];
    n2 [label="checks-kn-parallel-0", shape=box, style=rounded];
  }
  subgraph cluster_2 {
    label="Sequence orders";
    n4 [label="orders-kn-sequence-0", shape=cylinder];
    n5 [label="orders-kn-sequence-1", shape=cylinder];
    n6 [label="orders-kn-sequence-0", shape=box, style=rounded];
    n7 [label="orders-kn-sequence-1\nretry 3, exponential 200ms; timeout 1s", shape=box, style=rounded];
  }
  n3 [label="http://127.0.0.1:8084/fraud", shape=parallelogram];
  n8 [label="http://127.0.0.1:8085/ship", shape=parallelogram];
  n9 [label="Service dead-letters\nGo handler", shape=box];
  n1 -> n2;
  n2 -> n3 [label="subscriber"];
  n4 -> n6;
  n6 -> n1 [label="subscriber"];
  n6 -> n5 [label="reply"];
  n5 -> n7;
  n7 -> n8 [label="subscriber"];
  n7 -> n9 [label="dead letter", style=dashed];
}
`
	if got := app.Graph().DOT(); got != want {
		t.Errorf("DOT:\n%s\nwant:\n%s", got, want)
	}
	if m := app.Graph().Mermaid(); !strings.Contains(m, "n7 -.->|\"dead letter\"| n9\n") {
		t.Errorf("Mermaid draws no dashed dead-letter edge:\n%s", m)
	}
}
