package manifest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// loopYAML is a Sequence whose reply is the URL given, such as its own
// ingress over HTTP.
func loopYAML(reply string) string {
	return seqHead + stepFirst + "  reply:\n    uri: " + reply + "\n"
}

// A uri naming the app's own ingress is a reference to that flow: sending
// to itself is a cycle, refused with the file, object and field, for each
// way a client could spell the address it listens on.
func TestOwnIngressURLIsACycle(t *testing.T) {
	const path = "/default/s-kn-sequence-0"
	for _, tt := range []struct{ listen, uri string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080" + path},
		{"127.0.0.1:8080", "http://localhost:8080" + path},
		{"localhost:8080", "http://127.0.0.1:8080" + path + "?x=1"},
		{":8080", "http://localhost:8080" + path},
		{"0.0.0.0:8080", "http://[::1]:8080" + path},
		{"0.0.0.0:8080", "http://0.0.0.0:8080" + path},
		{"[::1]:80", "http://LOCALHOST." + path},
		{"[::]:http", "http://127.0.0.2" + path},
	} {
		_, err := build(t, []file{{"s.yaml", loopYAML(tt.uri)}}, bindAll("Service", "first"), manifest.WithServeAddress(tt.listen))
		want := `s.yaml: Sequence "s": spec.reply.uri: cycle: Sequence "s" → Sequence "s" (` + tt.uri +
			` is the ingress of Sequence "s"); flows must form a graph without cycles`
		if err == nil || err.Error() != want {
			t.Errorf("listening on %s, reply %s: Build error\n%v\nwant\n%s", tt.listen, tt.uri, err, want)
		}
	}

	// Bound to the ingress: the same.
	reg := bindAll("Service")
	reg.BindURL("Service", "first", "http://127.0.0.1:8080"+path)
	_, err := build(t, []file{{"s.yaml", seqHead + stepFirst}}, reg, manifest.WithServeAddress("127.0.0.1:8080"))
	if want := `s.yaml: Sequence "s": spec.steps[0].ref: cycle: Sequence "s" → Sequence "s"`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a step bound to its own ingress: Build error\n%v\nwant it to start with\n%s", err, want)
	}

	// Another address, or no address known: an ordinary HTTP destination.
	for _, opts := range [][]manifest.Option{{manifest.WithServeAddress("127.0.0.1:8081")}, {manifest.WithServeAddress("10.1.2.3:8080")},
		{manifest.WithServeAddress("127.0.0.1:0")}, nil} {
		if _, err := build(t, []file{{"s.yaml", loopYAML("http://127.0.0.1:8080" + path)}}, bindAll("Service", "first"), opts...); err != nil {
			t.Errorf("Build: %v", err)
		}
	}
}

// The app's own address with a path where no flow is served would answer
// 404 to every event: an error that names the paths there are.
func TestOwnAddressWithoutAFlow(t *testing.T) {
	_, err := build(t, []file{{"s.yaml", loopYAML("http://127.0.0.1:8080/default/nothing")}}, bindAll("Service", "first"),
		manifest.WithServeAddress("127.0.0.1:8080"))
	want := `s.yaml: Sequence "s": spec.reply.uri: http://127.0.0.1:8080/default/nothing is this app's own address (127.0.0.1:8080), ` +
		`where no flow is served at "/default/nothing"; its flows are at /default/s-kn-sequence-0`
	if err == nil || err.Error() != want {
		t.Errorf("Build error\n%v\nwant\n%s", err, want)
	}
}

// A uri naming another flow's ingress reaches that flow in process, which
// starts first and drains last.
func TestOwnIngressURLOfAnotherFlow(t *testing.T) {
	last := newRecorder()
	reg := new(manifest.Registry)
	reg.Bind("Service", "first", flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) { return &e, nil }))
	reg.Bind("Service", "last", last)
	set := parse(t, loopYAML("http://localhost:8080/default/b-kn-sequence-0")+`---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: b}
spec:
  steps:
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: last}
`)
	app := start(t, set, reg, manifest.WithServeAddress(":8080"))
	if err := flow(t, app, "Sequence", "s").Send(context.Background(), newEvent("x", time.Now(), `{}`)); err != nil {
		t.Fatal(err)
	}
	if e := last.next(t); e.ID() != "x" {
		t.Errorf("b's step got %s", e)
	}
}
