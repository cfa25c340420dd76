package manifest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

const natsManifests = `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: durable, namespace: shop}
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1alpha1
    kind: NatsJetStreamChannel
    spec:
      stream:
        config: {replicas: 3, retention: Limits, maxAge: 1h, storage: File}
      consumerConfigTemplate: {deliverPolicy: All}
  steps:
    - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: first, namespace: shop}
  reply:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: sink, namespace: shop}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: plain}
spec:
  steps:
    - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: sink}
---
apiVersion: messaging.knative.dev/v1alpha1
kind: NatsJetStreamChannel
metadata: {name: orders}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: bill}
spec:
  channel: {apiVersion: messaging.knative.dev/v1alpha1, kind: NatsJetStreamChannel, name: orders}
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: sink}
`

// Without a WithFlowChannels function, a flow on NatsJetStreamChannel is
// refused with the file, object and field that ask for it.
func TestNatsJetStreamChannelNeedsDurableChannels(t *testing.T) {
	set := parse(t, natsManifests)
	var reg manifest.Registry
	reg.Bind("Service", "shop/first", flows.Discard)
	reg.Bind("Service", "shop/sink", flows.Discard)
	reg.Bind("Service", "sink", flows.Discard)
	_, err := manifest.Build(set, &reg)
	if !errors.Is(err, manifest.ErrNoChannels) {
		t.Fatalf("Build: %v, want ErrNoChannels", err)
	}
	for _, want := range []string{
		`test.yaml: Sequence "shop/durable": spec.channelTemplate: no durable channels: NatsJetStreamChannel (messaging.knative.dev/v1alpha1) needs JetStream`,
		`test.yaml: NatsJetStreamChannel "orders": kind: no durable channels`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Build error:\n%v\nwant a line with %q", err, want)
		}
	}
	if strings.Contains(err.Error(), `"plain"`) {
		t.Errorf("Build error names the in-memory Sequence: %v", err)
	}
}

// WithFlowChannels is asked about every flow, with its template's kind and
// stream settings, and the options it gives run that flow.
func TestWithFlowChannelsChoosesChannelsPerFlow(t *testing.T) {
	set := parse(t, natsManifests)
	var mu sync.Mutex
	var asked []manifest.FlowChannels
	var created []string
	opt := manifest.WithFlowChannels(func(fc manifest.FlowChannels) ([]flows.Option, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, fc)
		if fc.ChannelKind != manifest.NatsJetStreamChannelKind {
			return nil, nil
		}
		return []flows.Option{flows.WithChannels(func(_ context.Context, name string) (flows.Channel, error) {
			mu.Lock()
			defer mu.Unlock()
			created = append(created, fc.Namespace+"/"+name)
			return flows.NewInMemoryChannel(8), nil
		})}, nil
	})
	sink := newRecorder()
	var reg manifest.Registry
	reg.Bind("Service", "shop/first", appender(" first"))
	reg.Bind("Service", "shop/sink", sink)
	reg.Bind("Service", "sink", flows.Discard)
	app := start(t, set, &reg, opt)

	if len(asked) != 3 {
		t.Fatalf("asked about %d flows, want 3: %+v", len(asked), asked)
	}
	d := asked[slices.IndexFunc(asked, func(fc manifest.FlowChannels) bool { return fc.Name == "durable" })]
	if d.Kind != "Sequence" || d.Namespace != "shop" || d.ChannelKind != "NatsJetStreamChannel" || d.Default || d.Stream == nil ||
		d.Stream.Replicas != 3 || d.Stream.Retention != "Limits" || d.Stream.MaxAge != "1h" {
		t.Errorf("durable Sequence: %+v (stream %+v)", d, d.Stream)
	}
	p := asked[slices.IndexFunc(asked, func(fc manifest.FlowChannels) bool { return fc.Name == "plain" })]
	if p.ChannelKind != "InMemoryChannel" || !p.Default {
		t.Errorf("plain Sequence: %+v, want the default InMemoryChannel", p)
	}
	if _, err := flow(t, app, "Sequence", "shop/durable").Handle(context.Background(), newEvent("e1", time.Now(), `{"message":"m"}`)); err != nil {
		t.Fatal(err)
	}
	if e := sink.next(t); !strings.Contains(string(e.Data()), "m first") {
		t.Errorf("reply: %s", e.Data())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"shop/durable-kn-sequence-0", "default/orders-kn-parallel"}
	for _, w := range want {
		if !slices.Contains(created, w) {
			t.Errorf("channels created by the option: %q, want %q among them", created, w)
		}
	}
	if len(created) != 2 {
		t.Errorf("channels created by the option: %q, want only %q", created, want)
	}
}

// Stream settings are checked, and NatsJetStreamChannel's fields are not
// taken in an InMemoryChannel template.
func TestChannelTemplateFieldsChecked(t *testing.T) {
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1alpha1
    kind: NatsJetStreamChannel
    spec:
      stream:
        config: {retention: Forever, maxAge: 1y, storage: Disk, replicas: 7}
  steps:
    - uri: http://127.0.0.1:1/
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: m}
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
    spec:
      stream: {overrideName: x}
  steps:
    - uri: http://127.0.0.1:1/
`)
	_, err := manifest.Build(set, nil, manifest.WithFlowChannels(func(manifest.FlowChannels) ([]flows.Option, error) { return nil, nil }))
	if err == nil {
		t.Fatal("Build accepted bad stream settings")
	}
	for _, want := range []string{
		`Sequence "s": spec.channelTemplate.spec.stream.config.retention: "Forever": want one of ["Limits" "Interest" "Work"]`,
		`Sequence "s": spec.channelTemplate.spec.stream.config.maxAge: "1y" is not a duration`,
		`Sequence "s": spec.channelTemplate.spec.stream.config.storage: "Disk"`,
		`Sequence "s": spec.channelTemplate.spec.stream.config.replicas: 7: want 1 to 5`,
		`Sequence "m": spec.channelTemplate.spec.stream: a field of NatsJetStreamChannel, not of InMemoryChannel`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Build error:\n%v\nwant a line with %q", err, want)
		}
	}
	// The function's own error is a problem of the flow's template.
	_, err = manifest.Build(parse(t, natsManifests), nil, manifest.WithFlowChannels(func(fc manifest.FlowChannels) ([]flows.Option, error) {
		if fc.ChannelKind == manifest.NatsJetStreamChannelKind {
			return nil, errors.New("no server")
		}
		return nil, nil
	}))
	if err == nil || !strings.Contains(err.Error(), `Sequence "shop/durable": spec.channelTemplate: no server`) {
		t.Errorf("Build error: %v, want the function's error at the template", err)
	}
}
