package manifest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// ErrState is returned when an App is started twice, or served before it
// was started.
var ErrState = errors.New("manifest: app not in the right state")

// Start starts the flows, each after the flows it sends to, then the ping
// sources. The flows accept events once it returns. opts apply to every
// flow and source (see [flows.Option]); ctx is used while starting only.
// If a flow fails to start, the ones already started are closed.
func (a *App) Start(ctx context.Context, opts ...flows.Option) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != stateBuilt {
		return fmt.Errorf("%w: Start called twice", ErrState)
	}
	if a.cfg.logger != nil {
		opts = append([]flows.Option{flows.WithLogger(a.cfg.logger)}, opts...)
	}
	fail := func(what string, err error) error {
		a.closeLocked()
		a.state = stateFailed
		return fmt.Errorf("manifest: starting %s: %w", what, err)
	}
	for _, n := range a.flows {
		f, err := n.start(ctx, append(slices.Clip(opts), n.opts...))
		if err != nil {
			return fail(n.doc.object(), err)
		}
		n.running = f
		n.live.Store(f)
	}
	for _, q := range a.rrs {
		def := q.def
		def.Broker = q.broker.running
		rr, err := def.Start(ctx, opts...)
		if err != nil {
			return fail(q.doc.object(), err)
		}
		q.running = rr
	}
	for _, s := range a.sources {
		p := s.ping
		p.Sink = s.sink.resolve()
		if f := s.sink.flow; f != nil {
			// As a PingSource posting to a channel's ingress: the send is
			// done once the flow accepted the event. Waiting for the whole
			// flow would make the source's retries run it again.
			p.Sink = accept(f.running)
		}
		src, err := p.Start(ctx, opts...)
		if err != nil {
			return fail(s.doc.object(), err)
		}
		s.running = src
	}
	a.state = stateRunning
	a.started = time.Now()
	return nil
}

// accept hands events to f and returns once f accepted them.
func accept(f *flows.Flow) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		return nil, f.Send(ctx, e)
	})
}

// resolve returns the handler a target stands for, once its flow runs.
func (t *target) resolve() flows.Handler {
	if t.flow != nil && t.flow.kind == "Broker" {
		return brokerHandler(t.flow)
	}
	if f := t.flow; f != nil && f.running == nil {
		// A flow that starts after its sender: a Broker's (see lateLoops).
		return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			r := f.live.Load()
			if r == nil {
				return nil, fmt.Errorf("%w: %s is not running", flows.ErrClosed, f.doc.object())
			}
			return r.Handle(ctx, e)
		})
	}
	if t.flow != nil {
		return t.flow.running
	}
	return t.handler
}

func (t *target) resolvePtr() flows.Handler {
	if t == nil {
		return nil
	}
	return t.resolve()
}

func (d *deliveryDef) build() *flows.Delivery {
	if d == nil {
		return nil
	}
	fd := d.d
	fd.DeadLetter = d.deadLetter.resolvePtr()
	return &fd
}

func (n *flowNode) start(ctx context.Context, opts []flows.Option) (*flows.Flow, error) {
	name := n.doc.name
	switch n.kind {
	case "Sequence":
		s := &flows.Sequence{Name: name, Reply: n.reply.resolvePtr(), Delivery: n.delivery.build()}
		for _, st := range n.steps {
			s.Steps = append(s.Steps, flows.Step{Subscriber: st.subscriber.resolve(), Delivery: st.delivery.build()})
		}
		return s.Start(ctx, opts...)
	case "Parallel":
		p := &flows.Parallel{Name: name, Delivery: n.delivery.build()}
		for _, br := range n.branches {
			// Each branch carries its reply (the Parallel's one resolved for
			// the branch's delivery format), so Parallel.Reply stays nil.
			p.Branches = append(p.Branches, flows.Branch{
				Filter:     br.filter.resolvePtr(),
				Subscriber: br.subscriber.resolve(),
				Reply:      br.reply.resolvePtr(),
				Delivery:   br.delivery.build(),
			})
		}
		return p.Start(ctx, opts...)
	case "Broker":
		return n.startBroker(ctx, opts)
	default:
		// A channel and its subscriptions are a Parallel without filters:
		// one channel, each subscription with its subscriber, reply and
		// delivery. A channel nobody subscribes to accepts and drops events.
		p := &flows.Parallel{Name: name, Delivery: n.delivery.build()}
		for _, s := range n.subs {
			p.Branches = append(p.Branches, flows.Branch{
				Subscriber: s.subscriber.resolve(),
				Reply:      s.reply.resolvePtr(),
				Delivery:   s.delivery.build(),
			})
		}
		if len(p.Branches) == 0 {
			p.Branches = []flows.Branch{{Subscriber: flows.Discard}}
		}
		return p.Start(ctx, opts...)
	}
}

// ErrNoFlow is wrapped by the error of [App.Flow] for a flow the app does
// not have.
var ErrNoFlow = errors.New("manifest: no such flow")

// Flow returns the running flow of the Sequence, Parallel, InMemoryChannel,
// NatsJetStreamChannel, Channel or Broker of that kind and name ("name" in the default namespace, or
// "namespace/name"). The error wraps [ErrNoFlow], naming the flows there
// are, if the app has no such flow, and [ErrState] if it is not running.
func (a *App) Flow(kind, name string) (*flows.Flow, error) {
	ns, n, ok := strings.Cut(name, "/")
	if !ok {
		ns, n = DefaultNamespace, name
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	node := a.byKey[objectKey(kind, ns, n)]
	if node == nil {
		var have []string
		for _, f := range a.decl {
			have = append(have, f.doc.object())
		}
		there := "the app has none"
		if len(have) > 0 {
			there = "the app has " + strings.Join(have, ", ")
		}
		return nil, fmt.Errorf("%w: %s %q; %s", ErrNoFlow, kind, qualified(ns, n), there)
	}
	if node.running == nil || a.state != stateRunning {
		return nil, fmt.Errorf("%w: %s is not running", ErrState, node.doc.object())
	}
	return node.running, nil
}

// Shutdown stops the app gracefully: the ping sources first, then each
// flow before the flows it sends to, so that every event already accepted
// is delivered downstream. ctx bounds the whole drain; when it ends, the
// flows still draining stop hard (see [flows.Flow.Shutdown]) and their
// undelivered events are reported in the error. A Shutdown called during
// another one joins it, and returns when the drain is over or its own ctx
// ends.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.state != stateRunning && a.state != stateStopping {
		a.mu.Unlock()
		return nil
	}
	a.state = stateStopping
	base := a.baseURL
	a.mu.Unlock()
	// The lock is not held while draining, so that Status still answers.
	var errs []error
	for _, s := range a.sources {
		if err := s.running.Shutdown(ctx); err != nil {
			errs = append(errs, stopError("stopping", s.doc, base, "", err))
		}
	}
	// The waiting requests get their replies while the Brokers still run.
	for _, q := range a.rrs {
		if err := q.running.Shutdown(ctx); err != nil {
			errs = append(errs, stopError("stopping", q.doc, base, "", err))
		}
	}
	for _, n := range slices.Backward(a.flows) {
		if err := n.running.Shutdown(ctx); err != nil {
			errs = append(errs, stopError("stopping", n.doc, base, n.ingressPath(), err))
		}
	}
	a.mu.Lock()
	a.state = stateStopped
	a.mu.Unlock()
	return errors.Join(errs...)
}

// A StopError is the error of one flow or source when [App.Shutdown] or
// [App.Close] stops it, such as a [*flows.UndeliveredError] listing the
// events a flow accepted and did not deliver. Those errors are joined: to
// find every flow's, walk them with errors.As on each, or use
// [Undelivered].
type StopError struct {
	Kind, Namespace, Name string
	// URL is the flow's ingress URL when the app was served over HTTP
	// (see [App.Serve]): where its undelivered events can be sent again.
	URL string
	Op  string // "stopping" or "closing"
	Err error
}

// Error reads "manifest: stopping Sequence "sequence": ...".
func (e *StopError) Error() string {
	d := Document{kind: e.Kind, namespace: e.Namespace, name: e.Name}
	return "manifest: " + e.Op + " " + d.object() + ": " + e.Err.Error()
}

// Unwrap returns the flow's or source's error.
func (e *StopError) Unwrap() error { return e.Err }

// stopError wraps the error of stopping d; base is the app's server URL.
func stopError(op string, d *Document, base, path string, err error) error {
	e := &StopError{Kind: d.kind, Namespace: d.namespace, Name: d.name, Op: op, Err: err}
	if base != "" && path != "" {
		e.URL = strings.TrimSuffix(base, "/") + path
	}
	return e
}

// Lost is the events one flow of an App did not deliver.
type Lost struct {
	Kind, Namespace, Name string
	URL                   string // the flow's ingress URL, if the app was served
	Events                []event.Event
}

// Undelivered gathers the events that err, as [App.Shutdown] or
// [App.Close] returns it, reports as not delivered, flow by flow in the
// order they stopped. A flow used as a step, reply or sink of another
// holds its own copy of what the other is waiting for, so an event may be
// listed under both.
func Undelivered(err error) []Lost {
	var out []Lost
	var walk func(err error, stop *StopError)
	walk = func(err error, stop *StopError) {
		switch e := err.(type) {
		case nil:
			return
		case *StopError:
			stop = e
		case *flows.UndeliveredError:
			if len(e.Events) == 0 {
				return
			}
			l := Lost{Events: e.Events}
			if stop != nil {
				l.Kind, l.Namespace, l.Name, l.URL = stop.Kind, stop.Namespace, stop.Name, stop.URL
			}
			out = append(out, l)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, stop)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), stop)
		}
	}
	walk(err, nil)
	return out
}

// Close stops the app at once: sources stop, and flows drop the events
// they hold, which the error lists (see [flows.Flow.Close]). To cut a
// Shutdown short, end its context instead.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != stateRunning {
		return nil
	}
	a.state = stateStopped
	return a.closeLocked()
}

func (a *App) closeLocked() error {
	var errs []error
	for _, s := range a.sources {
		if s.running != nil {
			s.running.Close()
		}
	}
	for _, q := range a.rrs {
		if q.running != nil {
			q.running.Close()
		}
	}
	for _, n := range slices.Backward(a.flows) {
		if n.running != nil {
			if err := n.running.Close(); err != nil {
				errs = append(errs, stopError("closing", n.doc, a.baseURL, n.ingressPath(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// Status is the state of one object, as `kubectl get` shows it.
type Status struct {
	Kind      string
	Namespace string
	Name      string

	// URL is the address of a Sequence, Parallel, channel, Broker or RequestReply: the URL of
	// its ingress when the app is served over HTTP (see [App.Serve]), else
	// empty, since it is reached in process. For a Service, it is the URL
	// it is bound to, if any.
	URL string

	// Sink is where a PingSource sends its events: a URL, or the kind and
	// name of a flow reached in process.
	Sink string

	// Broker is a Trigger's broker, and SubscriberURI its subscriber: a
	// URL, or the kind and name of a flow or Go handler reached in process.
	Broker, SubscriberURI string

	Ready  string // "True", "False" or "Unknown"
	Reason string // why it is not ready
	Since  time.Time
}

// Status reports the state of every object, in the order of the manifests:
// a flow, source or subscription is Ready once the app has started, and no
// longer Ready once it is stopped.
func (a *App) Status() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	ready, reason := "Unknown", "NotStarted"
	switch a.state {
	case stateRunning:
		ready, reason = "True", ""
	case stateStopping:
		ready, reason = "False", "Draining"
	case stateStopped:
		ready, reason = "False", "Stopped"
	case stateFailed:
		ready, reason = "False", "StartFailed"
	}
	var out []Status
	add := func(d *Document, url, sink string) {
		out = append(out, Status{Kind: d.kind, Namespace: d.namespace, Name: d.name, URL: url, Sink: sink,
			Ready: ready, Reason: reason, Since: a.started})
	}
	for _, n := range a.decl {
		add(n.doc, a.address(n), "")
	}
	for _, s := range a.subs {
		add(s.doc, "", "")
	}
	for _, t := range a.trigs {
		add(t.doc, "", "")
		out[len(out)-1].Broker = t.doc.Object.(*Trigger).Spec.Broker
		out[len(out)-1].SubscriberURI = a.subscriberURI(&t.subscriber)
	}
	for _, q := range a.rrs {
		add(q.doc, a.rrAddress(q), "")
	}
	for _, s := range a.sources {
		sink := s.sink.url
		if f := s.sink.flow; f != nil {
			sink = cmp.Or(a.address(f), f.kind+"/"+qualified(f.doc.namespace, f.doc.name))
		}
		add(s.doc, "", sink)
	}
	for _, s := range a.svcs {
		add(s.doc, s.t.url, "")
		out[len(out)-1].Ready, out[len(out)-1].Reason = "True", ""
		if s.t.handler == nil && s.t.url == "" {
			out[len(out)-1].Ready, out[len(out)-1].Reason = "False", "NoBinding"
		}
	}
	order := map[string]int{"Sequence": 0, "Parallel": 1, "InMemoryChannel": 2, "NatsJetStreamChannel": 3, "Channel": 4,
		"Broker": 5, "Trigger": 6, "RequestReply": 7, "Subscription": 8, "PingSource": 9, "Service": 10}
	slices.SortStableFunc(out, func(x, y Status) int { return cmp.Compare(order[x.Kind], order[y.Kind]) })
	return out
}

// ingressPath is where a flow's ingress is served: /<namespace>/<channel>,
// the path form of Knative's InMemoryChannel dispatcher, with the name of
// the flow's first channel; a Broker's is /<namespace>/<broker>, as
// Knative's broker ingress serves it.
func (n *flowNode) ingressPath() string {
	ch := n.doc.name
	switch n.kind {
	case "Broker":
		return flows.BrokerPath(n.doc.namespace, n.doc.name)
	case "Sequence":
		ch += "-kn-sequence-0"
	case "Parallel":
		ch += "-kn-parallel"
	}
	return "/" + n.doc.namespace + "/" + ch
}

func (a *App) address(n *flowNode) string {
	if a.baseURL == "" || a.state != stateRunning {
		return ""
	}
	return strings.TrimSuffix(a.baseURL, "/") + n.ingressPath()
}

// WriteStatus writes statuses as `kubectl get` does, one table per kind:
//
//	NAME       URL                                             AGE   READY   REASON
//	sequence   http://127.0.0.1:8080/default/sequence-kn-sequence-0   5s    True
//
// PingSources show SINK instead of URL, Triggers BROKER and SUBSCRIBER_URI
// (as `kubectl get trigger`), and Subscriptions neither. A
// NAMESPACE column is added when some object is outside the default
// namespace. Ages are counted up to now.
func WriteStatus(w io.Writer, statuses []Status, now time.Time) error {
	namespaces := false
	for _, s := range statuses {
		if s.Namespace != DefaultNamespace && s.Namespace != "" {
			namespaces = true
		}
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 3, ' ', 0)
	for i := 0; i < len(statuses); {
		j := i
		for j < len(statuses) && statuses[j].Kind == statuses[i].Kind {
			j++
		}
		if i > 0 {
			fmt.Fprintln(tw)
		}
		group := statuses[i:j]
		kind := group[0].Kind
		var cols []string
		if namespaces {
			cols = append(cols, "NAMESPACE")
		}
		cols = append(cols, "NAME")
		switch kind {
		case "PingSource":
			cols = append(cols, "SINK")
		case "Trigger":
			cols = append(cols, "BROKER", "SUBSCRIBER_URI")
		case "Subscription":
		default:
			cols = append(cols, "URL")
		}
		cols = append(cols, "AGE", "READY", "REASON")
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
		for _, s := range group {
			var row []string
			if namespaces {
				row = append(row, s.Namespace)
			}
			row = append(row, s.Name)
			switch kind {
			case "PingSource":
				row = append(row, s.Sink)
			case "Trigger":
				row = append(row, s.Broker, s.SubscriberURI)
			case "Subscription":
			default:
				row = append(row, s.URL)
			}
			age := "<none>"
			if !s.Since.IsZero() {
				age = humanDuration(now.Sub(s.Since))
			}
			row = append(row, age, s.Ready, s.Reason)
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		i = j
	}
	tw.Flush()
	for line := range bytes.Lines(buf.Bytes()) {
		if _, err := fmt.Fprintln(w, strings.TrimRight(string(line), " \n")); err != nil {
			return err
		}
	}
	return nil
}

// humanDuration formats an age as kubectl does: 45s, 3m20s, 59m, 3h48m, 2d.
func humanDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s < 0 {
		s = 0
	}
	m, h, days := s/60, s/3600, s/86400
	switch {
	case s < 120:
		return fmt.Sprintf("%ds", s)
	case m < 10:
		if s%60 == 0 {
			return fmt.Sprintf("%dm", m)
		}
		return fmt.Sprintf("%dm%ds", m, s%60)
	case h < 3:
		return fmt.Sprintf("%dm", m)
	case h < 8:
		if m%60 == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m%60)
	case h < 48:
		return fmt.Sprintf("%dh", h)
	case days < 8:
		if h%24 == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h%24)
	}
	return fmt.Sprintf("%dd", days)
}
