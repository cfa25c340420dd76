package manifest_test

import (
	"context"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

const sequenceYAML = `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: sequence
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  steps:
  - ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: first
  - ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: second
    delivery:
      retry: 3
      backoffPolicy: exponential
      backoffDelay: PT0.2S
  reply:
    ref:
      apiVersion: v1
      kind: Service
      name: event-display
`

func ExampleBuild() {
	set, err := manifest.Parse("sequence.yaml", []byte(sequenceYAML))
	if err != nil {
		fmt.Println(err)
		return
	}
	upper := func(suffix string) flows.Handler {
		return flows.Typed(func(_ context.Context, in map[string]string) (map[string]string, error) {
			in["message"] += suffix
			return in, nil
		})
	}
	var reg manifest.Registry
	reg.Bind("Service", "first", upper(" - Handled by 0"))
	reg.Bind("Service", "second", upper(" - Handled by 1"))
	reg.Bind("Service", "event-display", flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Println(string(e.Data()))
		return nil, nil
	}))

	app, err := manifest.Build(set, &reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer app.Shutdown(context.Background())

	e := event.New()
	e.SetID("1")
	e.SetSource("example")
	e.SetType("greeting")
	e.SetData(event.ApplicationJSON, map[string]string{"message": "hello, world!"})
	seq, err := app.Flow("Sequence", "sequence")
	if err != nil {
		fmt.Println(err)
		return
	}
	seq.Handle(context.Background(), e)
	// Output: {"message":"hello, world! - Handled by 0 - Handled by 1"}
}

func ExampleBuild_errors() {
	set, _ := manifest.Parse("sequence.yaml", []byte(sequenceYAML))
	var reg manifest.Registry
	reg.BindURL("Service", "first", "http://127.0.0.1:8081")
	_, err := manifest.Build(set, &reg)
	fmt.Println(err)
	// Output:
	// sequence.yaml: Sequence "sequence": spec.steps[1].ref: no binding for Service "second"
	// sequence.yaml: Sequence "sequence": spec.reply.ref: no binding for Service "event-display"
}

func ExampleNewGraph() {
	set, _ := manifest.Parse("sequence.yaml", []byte(sequenceYAML))
	g, _ := manifest.NewGraph(set, nil) // unbound services are drawn as such
	fmt.Print(g.Mermaid())
	// Output:
	// flowchart LR
	//   subgraph g1["Sequence sequence"]
	//     n1[("sequence-kn-sequence-0")]
	//     n2[("sequence-kn-sequence-1")]
	//     n3("sequence-kn-sequence-0")
	//     n5("sequence-kn-sequence-1<br/>retry 3, exponential 200ms")
	//   end
	//   n4["Service first<br/>no binding"]
	//   n6["Service second<br/>no binding"]
	//   n7["Service event-display<br/>no binding"]
	//   n1 --> n3
	//   n3 -->|"subscriber"| n4
	//   n3 -->|"reply"| n2
	//   n2 --> n5
	//   n5 -->|"subscriber"| n6
	//   n5 -->|"reply"| n7
	//   style n4 stroke-dasharray: 5 5
	//   style n6 stroke-dasharray: 5 5
	//   style n7 stroke-dasharray: 5 5
}
