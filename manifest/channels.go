package manifest

import (
	"errors"
	"fmt"
	"time"

	"github.com/eventflows/flows"
)

// Channel kinds a flow's channels can be of.
const (
	InMemoryChannelKind      = "InMemoryChannel"
	NatsJetStreamChannelKind = "NatsJetStreamChannel"
)

// FlowChannels is what a flow's manifest says about its channels: what the
// function given to [WithFlowChannels] decides on.
type FlowChannels struct {
	// Kind, Namespace and Name are the flow's: a Sequence, Parallel,
	// InMemoryChannel, Channel, NatsJetStreamChannel or Broker (whose
	// channels are one per Trigger, of the cluster's default kind).
	Kind, Namespace, Name string
	// ChannelKind is the kind of its channels: [InMemoryChannelKind] or
	// [NatsJetStreamChannelKind], a standalone channel's own kind or the
	// kind of the flow's channelTemplate.
	ChannelKind string
	// Default reports that no channelTemplate named the kind, so that
	// Knative's cluster default channel applies (InMemoryChannel, unless
	// the caller chooses another).
	Default bool
	// Stream is a NatsJetStreamChannel's spec.stream.config, checked: its
	// enumerations are valid and its durations parse ([NatsStreamConfig]).
	Stream *NatsStreamConfig
}

// ErrNoChannels is wrapped by the problem of a flow on NatsJetStreamChannel
// when the caller gave no [WithFlowChannels] function to run it.
var ErrNoChannels = errors.New("no durable channels")

// WithFlowChannels lets f choose the channels of each flow: [Build] calls it
// once per flow, and the options it returns are given to that flow when the
// App starts, after [App.Start]'s own (so that a [flows.WithChannels] there
// wins). An error from f is a problem of the flow's channelTemplate (or of
// the standalone channel's kind), reported by Build with the others.
//
// Without it, every flow runs on in-memory channels and a
// NatsJetStreamChannel is refused with [ErrNoChannels].
func WithFlowChannels(f func(FlowChannels) ([]flows.Option, error)) Option {
	return func(c *config) { c.flowChannels = f }
}

// flowChannels resolves the channels of n; path is where its kind is said.
func (r *resolver) flowChannels(n *flowNode, path, kind string, dflt bool, stream *NatsStream) {
	fc := FlowChannels{Kind: n.kind, Namespace: n.doc.namespace, Name: n.doc.name, ChannelKind: kind, Default: dflt}
	if stream != nil && stream.Config != nil {
		fc.Stream = stream.Config
		r.checkStream(path+".spec.stream.config", stream.Config)
	}
	n.channelKind = kind
	f := r.app.cfg.flowChannels
	if f == nil {
		if kind == NatsJetStreamChannelKind && !r.graph {
			r.fail(path, fmt.Errorf("%w: %s (%s) needs JetStream: run it with durable channels (flows run --durable DIR or --nats URL; in Go, manifest.WithFlowChannels)",
				ErrNoChannels, kind, MessagingV1Alpha1))
		}
		return
	}
	opts, err := f(fc)
	if err != nil {
		r.fail(path, err)
		return
	}
	n.opts = opts
}

// checkStream checks the fields of a stream config that the flows command
// maps (see [NatsStreamConfig]).
func (r *resolver) checkStream(path string, c *NatsStreamConfig) {
	enum := func(field, v string, allowed ...string) {
		if v == "" {
			return
		}
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		r.failf(path+"."+field, "%q: want one of %q", v, allowed)
	}
	enum("retention", c.Retention, "Limits", "Interest", "Work")
	enum("discard", c.Discard, "Old", "New")
	enum("storage", c.Storage, "File", "Memory")
	for field, v := range map[string]string{"maxAge": c.MaxAge, "duplicateWindow": c.DuplicateWindow} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			r.failf(path+"."+field, "%q is not a duration: want a Go duration such as 1h30m", v)
		}
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		r.failf(path+".replicas", "%d: want 1 to 5", c.Replicas)
	}
}

// templateFieldsOf reports a field of one channel kind's spec given in a
// template of the other kind.
func (r *resolver) templateFields(path, kind string, s *NatsJetStreamChannelSpec) {
	if s == nil || kind != InMemoryChannelKind {
		return
	}
	for field, set := range map[string]bool{"stream": s.Stream != nil, "consumerConfigTemplate": s.ConsumerConfigTemplate != nil,
		"deploymentSpecTemplate": s.DeploymentSpecTemplate != nil} {
		if set {
			r.failf(path+".spec."+field, "a field of NatsJetStreamChannel, not of InMemoryChannel")
		}
	}
}
