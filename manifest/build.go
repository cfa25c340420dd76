package manifest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// An Option changes how [Build] turns manifests into flows.
type Option func(*config)

type config struct {
	schedule  string
	serveAddr string
	logger    *slog.Logger
	client    *http.Client

	flowChannels func(FlowChannels) ([]flows.Option, error)
}

// WithSchedule replaces the schedule of every PingSource, for example with
// "* * * * * *" (every second) so that a demo written for a per-minute
// schedule shows its events within seconds.
func WithSchedule(schedule string) Option { return func(c *config) { c.schedule = schedule } }

// WithDeliveryLog logs every delivery to a bound handler or URL through l,
// at Info level: the destination, the event's id and type, and the outcome.
// The flows and the ingress of the [App] log through l too (see
// [flows.WithLogger] and [flows.IngressLogger]).
func WithDeliveryLog(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithHTTPClient sets the client of the HTTP destinations (bound URLs and
// uri destinations). Redirects are not followed, whatever its
// CheckRedirect says (see [flows.HTTPTarget]).
func WithHTTPClient(c *http.Client) Option { return func(cfg *config) { cfg.client = c } }

// An App is a set of manifests resolved into flows: every destination is
// bound, every field is valid, and the flows are ordered so that each one
// starts after the flows it sends to. Build it with [Build]; run it with
// Start and stop it with Shutdown or Close.
type App struct {
	cfg     config
	flows   []*flowNode // in start order: every flow after the flows it sends to
	decl    []*flowNode // in the order of the manifests
	sources []*sourceNode
	subs    []*subscriptionNode
	svcs    []*serviceNode
	trigs   []*triggerNode
	rrs     []*requestReplyNode
	byKey   map[string]*flowNode

	mu      sync.Mutex
	state   appState
	started time.Time
	baseURL string
}

type appState int

const (
	stateBuilt appState = iota
	stateRunning
	stateStopping
	stateStopped
	stateFailed
)

// A target is a resolved destination.
type target struct {
	flow    *flowNode     // a flow declared in the manifests, or
	handler flows.Handler // a bound Go handler, or nil for a URL
	url     string        // a bound URL or a uri
	client  *http.Client  // for a URL with CACerts
	ref     string        // `Kind "name"` of the ref, if any, for errors
	label   string        // "Kind name" of the ref, for pictures and status
	node    string        // graph identity of a leaf target
	unbound bool          // only in graphs: no binding
}

// deliveryDef is a resolved DeliverySpec.
type deliveryDef struct {
	d          flows.Delivery
	deadLetter *target
	structured bool
	orderKey   string // the attribute d.OrderKey orders by, for pictures
}

type stepDef struct {
	subscriber target
	delivery   *deliveryDef
}

type branchDef struct {
	filter     *target
	subscriber target
	reply      *target
	delivery   *deliveryDef
}

type flowNode struct {
	doc  *Document
	kind string // Sequence, Parallel, InMemoryChannel, Channel, NatsJetStreamChannel or Broker
	// channelKind is the kind of the flow's channels, and opts the options
	// WithFlowChannels gave for them.
	channelKind string
	opts        []flows.Option
	steps       []stepDef
	branches    []branchDef
	subs        []*subscriptionNode // for channels
	triggers    []*triggerNode      // for brokers
	reply       *target
	delivery    *deliveryDef // the channel's delivery: the default of its subscriptions
	deps        []dependency
	running     *flows.Flow
	// live is running, for the flows that start before it and send to it.
	live atomic.Pointer[flows.Flow]
	// sends are the Brokers it sends to, which are not dependencies.
	sends []*flowNode
}

type dependency struct {
	to   *flowNode
	path string
	url  string    // the URL that names the flow's own ingress, if that is how it is reached
	doc  *Document // where path is, if not in the flow's own document (a Trigger's)
	// late marks a dependency of a Broker on a flow that sends back into
	// it: the flow starts after the Broker (see lateLoops).
	late bool
}

type subscriptionNode struct {
	doc        *Document
	channel    *flowNode
	subscriber target
	reply      *target
	delivery   *deliveryDef
}

type sourceNode struct {
	doc     *Document
	ping    flows.Ping
	sink    target
	running *flows.Source
}

type serviceNode struct {
	doc *Document
	t   *target
}

// flowKinds are the kinds that run as a flows.Flow and can be referred to.
var flowKinds = map[string]bool{"Sequence": true, "Parallel": true, "InMemoryChannel": true, "Channel": true, "NatsJetStreamChannel": true, "Broker": true}

func objectKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// Build resolves the manifests of set against reg and checks them. It
// returns every problem at once, those of reading the set included, as
// [*Error] values; a reference with no binding wraps [ErrNoBinding].
//
// Destinations resolve as follows: a ref to a Sequence, Parallel,
// InMemoryChannel or Channel declared in set is that flow (so flows nest);
// any other ref (a Knative Service, say) is looked up in reg; a uri is an
// HTTP destination ([flows.HTTP]), resolved against the ref's URL when both
// are given. A declared Service that nothing refers to needs a binding too.
func Build(set *Set, reg *Registry, opts ...Option) (*App, error) {
	r := newResolver(set, reg, opts, false)
	r.resolve()
	if err := r.errs.err(); err != nil {
		return nil, err
	}
	return r.app, nil
}

// resolver turns documents into an App; in graph mode a missing binding
// is drawn instead of reported.
type resolver struct {
	set   *Set
	reg   *Registry
	app   *App
	errs  errorList
	graph bool
	// the document being resolved, for errors
	doc *Document
	// refs from documents to declared services
	referenced map[string]bool
	clients    map[string]*http.Client
	self       *selfAddress         // where the app will be served, if known
	byPath     map[string]*flowNode // flows by ingress path
	// trigger is the Trigger whose subscriber is being resolved: only
	// there is a Broker a dependency (see [resolver.depend]).
	trigger *Document
}

func newResolver(set *Set, reg *Registry, opts []Option, graph bool) *resolver {
	if set == nil {
		set = new(Set)
	}
	app := &App{byKey: map[string]*flowNode{}}
	for _, o := range opts {
		o(&app.cfg)
	}
	r := &resolver{set: set, reg: reg, app: app, graph: graph, referenced: map[string]bool{}, clients: map[string]*http.Client{},
		self: newSelfAddress(app.cfg.serveAddr), byPath: map[string]*flowNode{}}
	for _, f := range set.files {
		r.errs.fileOrder(f)
	}
	r.errs.addAll(&set.problems)
	return r
}

func (r *resolver) fail(path string, err error) {
	if hides(r.doc.hidden, path) {
		return
	}
	if r.graph {
		var ue *unboundError
		if errors.As(err, &ue) {
			return
		}
	}
	r.errs.add(&Error{File: r.doc.File, Document: r.doc.Index, Object: r.doc.object(), Path: path, Err: err})
}

func (r *resolver) failf(path, format string, args ...any) { r.fail(path, fmt.Errorf(format, args...)) }

func (r *resolver) resolve() {
	docs := r.set.Documents
	// Index the flows first, so that references resolve whatever the order.
	var flowsInOrder []*flowNode
	byPath := r.byPath
	for i := range docs {
		d := &docs[i]
		if flowKinds[d.kind] {
			n := &flowNode{doc: d, kind: d.kind}
			r.app.byKey[objectKey(d.kind, d.namespace, d.name)] = n
			flowsInOrder = append(flowsInOrder, n)
			// As in Knative, where both would own the same channel; here one
			// would hide the other at the ingress.
			if first := byPath[n.ingressPath()]; first != nil {
				r.doc = d
				what := fmt.Sprintf("channel %q is also the first channel of", path.Base(n.ingressPath()))
				if n.kind == "Broker" || first.kind == "Broker" {
					what = "the ingress of " + d.object() + " has the path of"
				}
				r.failf("metadata.name", "%s %s: both would be served at %s", what, first.doc.object(), n.ingressPath())
			} else {
				byPath[n.ingressPath()] = n
			}
		}
	}
	for _, n := range flowsInOrder {
		r.doc = n.doc
		switch o := n.doc.Object.(type) {
		case *Sequence:
			r.sequence(n, o)
		case *Parallel:
			r.parallel(n, o)
		case *InMemoryChannel:
			r.flowChannels(n, "kind", InMemoryChannelKind, false, nil)
			n.delivery = r.delivery("spec.delivery", o.Spec.Delivery, n)
		case *NatsJetStreamChannel:
			r.flowChannels(n, "kind", NatsJetStreamChannelKind, false, o.Spec.Stream)
			n.delivery = r.delivery("spec.delivery", o.Spec.Delivery, n)
		case *Channel:
			r.channelTemplate("spec.channelTemplate", o.Spec.ChannelTemplate, n)
			if o.Spec.Delivery != nil {
				n.delivery = r.delivery("spec.delivery", o.Spec.Delivery, n)
			}
		case *Broker:
			r.broker(n, o)
		}
	}
	for i := range docs {
		d := &docs[i]
		r.doc = d
		switch d.Object.(type) {
		case *Subscription, *Trigger:
		default:
			r.flowControl(d.annotations, false)
		}
		switch o := d.Object.(type) {
		case *Subscription:
			r.subscription(d, o)
		case *Trigger:
			r.triggerDoc(d, o)
		case *RequestReply:
			r.requestReply(d, o)
		case *PingSource:
			r.ping(d, o.Spec.SourceSpec, flows.Ping{
				Schedule: o.Spec.Schedule, Timezone: o.Spec.Timezone, ContentType: o.Spec.ContentType,
				Data: o.Spec.Data, DataBase64: o.Spec.DataBase64,
			}, "spec.data")
		case *PingSourceV1Beta1:
			p := flows.Ping{Schedule: o.Spec.Schedule, Timezone: o.Spec.Timezone}
			if o.Spec.JSONData != "" {
				p.ContentType = event.ApplicationJSON
				p.Data = jsonDataMessage(o.Spec.JSONData)
			}
			r.ping(d, o.Spec.SourceSpec, p, "spec.jsonData")
		}
	}
	for i := range docs {
		d := &docs[i]
		if _, ok := d.Object.(*Service); !ok {
			continue
		}
		r.doc = d
		t, err := r.lookup(d.kind, d.namespace, d.name)
		if err != nil && !r.referenced[objectKey(d.kind, d.namespace, d.name)] {
			// Unreferenced: report it here, since no reference will.
			r.fail("", err)
		}
		r.app.svcs = append(r.app.svcs, &serviceNode{doc: d, t: t})
	}
	r.app.decl = flowsInOrder
	lateLoops(flowsInOrder)
	r.order(flowsInOrder)
}

// jsonDataMessage converts v1beta1 jsonData as Knative does: a JSON object
// is re-encoded, anything else is wrapped as {"body": ...}.
func jsonDataMessage(s string) string {
	var obj map[string]*json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err == nil {
		b, _ := json.Marshal(obj)
		return string(b)
	}
	b, _ := json.Marshal(struct {
		Body string `json:"body"`
	}{s})
	return string(b)
}

func (r *resolver) sequence(n *flowNode, s *Sequence) {
	r.channelTemplate("spec.channelTemplate", s.Spec.ChannelTemplate, n)
	if len(s.Spec.Steps) == 0 {
		r.failf("spec.steps", "missing: a Sequence needs at least one step")
	}
	for i, st := range s.Spec.Steps {
		path := fmt.Sprintf("spec.steps[%d]", i)
		d := r.delivery(path+".delivery", st.Delivery, n)
		eff := cmpOr(d, n.delivery)
		t := r.destination(path, &st.Destination, eff.isStructured(), n)
		n.steps = append(n.steps, stepDef{subscriber: t, delivery: d})
	}
	if s.Spec.Reply != nil {
		var eff *deliveryDef
		if len(n.steps) > 0 {
			eff = cmpOr(n.steps[len(n.steps)-1].delivery, n.delivery)
		}
		t := r.destination("spec.reply", s.Spec.Reply, eff.isStructured(), n)
		n.reply = &t
	}
}

func (r *resolver) parallel(n *flowNode, p *Parallel) {
	r.channelTemplate("spec.channelTemplate", p.Spec.ChannelTemplate, n)
	if len(p.Spec.Branches) == 0 {
		r.failf("spec.branches", "missing: a Parallel needs at least one branch")
	}
	for i, br := range p.Spec.Branches {
		path := fmt.Sprintf("spec.branches[%d]", i)
		var b branchDef
		b.delivery = r.delivery(path+".delivery", br.Delivery, n)
		eff := cmpOr(b.delivery, n.delivery)
		if br.Filter != nil {
			t := r.destination(path+".filter", br.Filter, false, n)
			b.filter = &t
		}
		b.subscriber = r.destination(path+".subscriber", &br.Subscriber, eff.isStructured(), n)
		switch {
		case br.Reply != nil:
			t := r.destination(path+".reply", br.Reply, eff.isStructured(), n)
			b.reply = &t
		case p.Spec.Reply != nil:
			// The Parallel's reply, resolved for this branch's delivery format.
			t := r.destinationQuiet(p.Spec.Reply, eff.isStructured())
			b.reply = &t
		}
		n.branches = append(n.branches, b)
	}
	if p.Spec.Reply != nil {
		t := r.destination("spec.reply", p.Spec.Reply, false, n)
		n.reply = &t
	}
}

func cmpOr(a, b *deliveryDef) *deliveryDef {
	if a != nil {
		return a
	}
	return b
}

func (d *deliveryDef) isStructured() bool { return d != nil && d.structured }

func (r *resolver) channelTemplate(path string, ct *ChannelTemplateSpec, n *flowNode) {
	if ct == nil {
		// Knative defaults to the cluster's default channel: InMemoryChannel.
		r.flowChannels(n, path, InMemoryChannelKind, true, nil)
		return
	}
	var stream *NatsStream
	switch {
	case ct.Kind == InMemoryChannelKind && (ct.APIVersion == MessagingV1 || ct.APIVersion == "messaging.knative.dev/v1beta1"):
		r.templateFields(path, ct.Kind, ct.Spec)
		r.flowChannels(n, path, InMemoryChannelKind, false, nil)
	case ct.Kind == NatsJetStreamChannelKind && ct.APIVersion == MessagingV1Alpha1:
		if ct.Spec != nil {
			stream = ct.Spec.Stream
		}
		r.flowChannels(n, path, NatsJetStreamChannelKind, false, stream)
	default:
		r.failf(path, "%s (%s) is not supported: use %s InMemoryChannel, or %s NatsJetStreamChannel with durable channels; in Go, flows.WithChannels for other transports",
			ct.Kind, ct.APIVersion, MessagingV1, MessagingV1Alpha1)
	}
	if ct.Spec != nil && ct.Spec.Delivery != nil {
		n.delivery = r.delivery(path+".spec.delivery", ct.Spec.Delivery, n)
	}
}

func (r *resolver) subscription(d *Document, s *Subscription) {
	sn := &subscriptionNode{doc: d}
	ch := s.Spec.Channel
	switch {
	case ch.Name == "" || ch.Kind == "":
		r.failf("spec.channel", "missing name or kind: want the channel to subscribe to, such as an InMemoryChannel declared in the manifests")
	case ch.Kind != "InMemoryChannel" && ch.Kind != "Channel" && ch.Kind != "NatsJetStreamChannel":
		r.failf("spec.channel.kind", "%q is not supported: a Subscription's channel is an InMemoryChannel, NatsJetStreamChannel or Channel declared in the manifests", ch.Kind)
	default:
		ns := cmpString(ch.Namespace, d.namespace)
		n := r.app.byKey[objectKey(ch.Kind, ns, ch.Name)]
		if n == nil {
			r.failf("spec.channel", "%s %q is not declared in the manifests", ch.Kind, qualified(ns, ch.Name))
		} else {
			sn.channel = n
			n.subs = append(n.subs, sn)
		}
	}
	sn.delivery = r.delivery("spec.delivery", s.Spec.Delivery, sn.channel)
	var eff *deliveryDef
	if sn.channel != nil {
		eff = cmpOr(sn.delivery, sn.channel.delivery)
	}
	if fc := r.flowControl(d.annotations, true); sn.channel != nil {
		sn.delivery = fc.apply(sn.delivery, sn.channel.delivery)
	}
	if s.Spec.Subscriber == nil {
		r.failf("spec.subscriber", "missing: a Subscription needs a subscriber")
	} else {
		sn.subscriber = r.destination("spec.subscriber", s.Spec.Subscriber, eff.isStructured(), sn.channel)
	}
	if s.Spec.Reply != nil {
		t := r.destination("spec.reply", s.Spec.Reply, eff.isStructured(), sn.channel)
		sn.reply = &t
	}
	r.app.subs = append(r.app.subs, sn)
}

func cmpString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (r *resolver) ping(d *Document, src SourceSpec, p flows.Ping, dataField string) {
	sn := &sourceNode{doc: d}
	p.Name, p.Namespace = d.name, d.namespace
	if r.app.cfg.schedule != "" {
		p.Schedule = r.app.cfg.schedule
	}
	if src.CloudEventOverrides != nil {
		p.Extensions = src.CloudEventOverrides.Extensions
	}
	sn.sink = r.destination("spec.sink", &src.Sink, false, nil)
	// Check everything but the sink with flows' own rules, and report the
	// problems at the manifest's paths.
	check := p
	check.Sink = flows.Discard
	var de *flows.DefinitionError
	for _, err := range unjoin(check.Validate()) {
		if errors.As(err, &de) {
			path := de.Path
			switch {
			case path == "data":
				path = dataField
			case strings.HasPrefix(path, "extensions"):
				path = "spec.ceOverrides." + path
			default:
				path = "spec." + path
			}
			r.fail(path, de.Err)
		} else {
			r.fail("spec", err)
		}
	}
	sn.ping = p
	r.app.sources = append(r.app.sources, sn)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// delivery checks and converts a DeliverySpec. from is the flow that owns
// it, for dependencies on dead-letter sinks.
func (r *resolver) delivery(path string, ds *DeliverySpec, from *flowNode) *deliveryDef {
	if ds == nil {
		return nil
	}
	dd := &deliveryDef{}
	if ds.Retry != nil {
		if *ds.Retry < 0 {
			r.failf(path+".retry", "must be >= 0, got %d", *ds.Retry)
		}
		dd.d.Retry = int(*ds.Retry)
	}
	var policy flows.BackoffPolicy
	if ds.BackoffPolicy != nil {
		switch p := flows.BackoffPolicy(*ds.BackoffPolicy); p {
		case flows.BackoffExponential, flows.BackoffLinear:
			policy = p
		default:
			r.failf(path+".backoffPolicy", "%q is not a policy: want %q or %q", *ds.BackoffPolicy, flows.BackoffLinear, flows.BackoffExponential)
		}
	}
	duration := func(field string, v *string) (time.Duration, bool) {
		if v == nil {
			return 0, false
		}
		d, err := ParseDuration(*v)
		if err != nil {
			r.fail(path+"."+field, err)
			return 0, false
		}
		return d, true
	}
	delay, hasDelay := duration("backoffDelay", ds.BackoffDelay)
	// Knative computes a backoff only when both the policy and the delay
	// are given; with either one alone, retries happen at once. flows reads
	// a delay without a policy as exponential, so say it explicitly.
	if policy != "" && hasDelay {
		dd.d.BackoffPolicy, dd.d.BackoffDelay = policy, delay
	}
	if t, ok := duration("timeout", ds.Timeout); ok {
		if t <= 0 {
			r.failf(path+".timeout", "must be greater than zero, got %q", *ds.Timeout)
		}
		dd.d.Timeout = t
	}
	if t, ok := duration("retryAfterMax", ds.RetryAfterMax); ok {
		dd.d.RetryAfterMax = t
	}
	if ds.Format != nil {
		switch *ds.Format {
		case "json":
			dd.structured = true
		case "binary":
		default:
			r.failf(path+".format", "%q is not a format: want \"json\" or \"binary\"", *ds.Format)
		}
	}
	if ds.DeadLetterSink != nil {
		t := r.destination(path+".deadLetterSink", ds.DeadLetterSink, dd.structured, from)
		dd.deadLetter = &t
	}
	return dd
}

// destinationQuiet resolves a destination already reported on elsewhere.
func (r *resolver) destinationQuiet(d *Destination, structured bool) target {
	saved := len(r.errs.errs)
	t := r.destination("", d, structured, nil)
	r.errs.errs = r.errs.errs[:saved]
	return t
}

// destination resolves a Destination at path. from is the flow that sends
// to it, if any: a flow it resolves to becomes a dependency.
func (r *resolver) destination(path string, d *Destination, structured bool, from *flowNode) target {
	sub := func(field string) string { return join(path, field) }
	if d.Ref == nil && d.URI == "" {
		r.failf(path, "missing: want a ref or a uri")
		return target{node: "missing", unbound: true}
	}
	if d.Audience != nil {
		r.failf(sub("audience"), "not supported: OIDC authentication is not implemented")
	}
	var t target
	if d.Ref != nil {
		t = r.ref(sub("ref"), d.Ref, from)
	}
	if d.URI != "" {
		u, err := url.Parse(d.URI)
		switch {
		case err != nil:
			r.failf(sub("uri"), "%q is not a URL: %v", d.URI, err)
		case d.Ref == nil:
			if !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				r.failf(sub("uri"), "%q is not an absolute http or https URL", d.URI)
			}
			t = target{url: d.URI, node: "uri:" + d.URI}
		case u.IsAbs():
			r.failf(sub("uri"), "%q: an absolute URI is not allowed with a ref; a uri given with a ref is relative to the ref's address", d.URI)
		case t.url != "":
			base, _ := url.Parse(t.url)
			t.url = base.ResolveReference(u).String()
			t.node = "uri:" + t.url
		case !t.unbound:
			r.failf(sub("uri"), "%q is relative to the ref's address, but %s is not bound to a URL", d.URI, t.ref)
		}
	}
	if d.CACerts != nil {
		switch {
		case !strings.HasPrefix(t.url, "https://"):
			if !t.unbound {
				r.failf(sub("CACerts"), "only applies to https URLs")
			}
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(*d.CACerts)) {
				r.failf(sub("CACerts"), "no PEM certificate found")
			} else {
				t.client = r.tlsClient(*d.CACerts, pool)
			}
		}
	}
	if t.url != "" && t.handler == nil && t.flow == nil {
		field := sub("uri")
		if d.URI == "" {
			field = sub("ref")
		}
		if n, ok := r.ownIngress(field, t, from); ok {
			return target{flow: n, ref: cmpString(t.ref, n.doc.object()), url: t.url}
		}
		if err := checkURL(t.url); err != nil && d.URI == "" {
			r.fail(sub("ref"), fmt.Errorf("%s is bound to an invalid URL: %w", t.ref, err))
		}
		t.handler = r.httpTarget(t.url, t.client, structured)
	}
	return t
}

// ownIngress finds the flow whose ingress t's URL names, when the app is
// to be served on that URL's address; from depends on it. A URL of the
// app's address where no flow is served is reported at path.
func (r *resolver) ownIngress(path string, t target, from *flowNode) (*flowNode, bool) {
	u, err := url.Parse(t.url)
	if err != nil || !r.self.names(u) {
		return nil, false
	}
	n := r.byPath[u.Path]
	if n == nil && r.servesRequestReply(u.Path) {
		// Served over HTTP, and answered with the reply: a destination
		// like any URL (it waits for the reply, so it is not a flow).
		return nil, false
	}
	if n == nil {
		paths := make([]string, 0, len(r.byPath))
		for p := range r.byPath {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		there := "it serves no flow"
		if len(paths) > 0 {
			there = "its flows are at " + strings.Join(paths, ", ")
		}
		r.failf(path, "%s is this app's own address (%s), where no flow is served at %q; %s",
			t.url, r.app.cfg.serveAddr, u.Path, there)
		return nil, false
	}
	r.depend(from, n, path, t.url)
	return n, true
}

// servesRequestReply reports whether path is where one of the app's
// RequestReplies is served (with or without a final "/").
func (r *resolver) servesRequestReply(path string) bool {
	path = strings.TrimSuffix(path, "/")
	for i := range r.set.Documents {
		d := &r.set.Documents[i]
		if d.kind == "RequestReply" && flows.BrokerPath(d.namespace, d.name) == path {
			return true
		}
	}
	return false
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", s)
	}
	return nil
}

// ref resolves a KReference.
func (r *resolver) ref(path string, ref *KReference, from *flowNode) target {
	var missing []string
	if ref.Kind == "" {
		missing = append(missing, "kind")
	}
	if ref.Name == "" {
		missing = append(missing, "name")
	}
	if ref.APIVersion == "" && ref.Group == "" {
		missing = append(missing, "apiVersion")
	}
	if len(missing) > 0 {
		r.failf(path, "missing %s", strings.Join(missing, ", "))
		return target{node: "missing", unbound: true}
	}
	if ref.Address != nil {
		r.failf(path+".address", "not supported: a flow has a single address")
	}
	ns := cmpString(ref.Namespace, r.doc.namespace)
	name := ref.Kind + " " + strconv.Quote(qualified(ns, ref.Name))
	key := objectKey(ref.Kind, ns, ref.Name)
	if n := r.app.byKey[key]; n != nil {
		group := ref.Group
		if group == "" {
			group, _, _ = strings.Cut(ref.APIVersion, "/")
		}
		declared := group // for a broken document, already reported
		if o, ok := n.doc.Object.(interface{ apiVersion() string }); ok {
			declared, _, _ = strings.Cut(o.apiVersion(), "/")
		}
		if group != declared {
			r.failf(path+".apiVersion", "%s is declared with API group %s, not %s", name, declared, group)
		}
		if b, ok := r.reg.lookup(ref.Kind, ns, ref.Name); ok && (b.handler != nil || b.url != "") {
			r.failf(path, "%s is declared in the manifests and bound in the registry: remove one", name)
		}
		r.depend(from, n, path, "")
		return target{flow: n, ref: name}
	}
	for i := range r.set.Documents {
		d := &r.set.Documents[i]
		if d.kind == ref.Kind && d.namespace == ns && d.name == ref.Name {
			switch d.kind {
			case "PingSource", "Subscription", "Trigger":
				r.failf(path, "%s is not addressable: it cannot receive events", name)
				return target{node: key, ref: name, label: ref.Kind + " " + qualified(ns, ref.Name), unbound: true}
			case "RequestReply":
				// Knative's is addressable; here it answers HTTP clients
				// only, rather than being looked up in the registry.
				r.failf(path, "%s is not supported as a destination: it answers HTTP requests at /%s/%s; send to its Broker, or call it over HTTP with a uri", name, ns, ref.Name)
				return target{node: key, ref: name, label: ref.Kind + " " + qualified(ns, ref.Name), unbound: true}
			}
		}
	}
	r.referenced[key] = true
	t, err := r.lookup(ref.Kind, ns, ref.Name)
	if err != nil {
		r.fail(path, err)
	}
	return *t
}

// lookup finds the registry binding of an object.
func (r *resolver) lookup(kind, namespace, name string) (*target, error) {
	label := kind + " " + strconv.Quote(qualified(namespace, name))
	t := &target{ref: label, label: kind + " " + qualified(namespace, name), node: objectKey(kind, namespace, name)}
	b, ok := r.reg.lookup(kind, namespace, name)
	switch {
	case ok && b.handler != nil:
		t.handler = r.logHandler(kind+"/"+qualified(namespace, name), b.handler)
	case ok && b.url != "":
		t.url = b.url
	default:
		t.unbound = true
		return t, &unboundError{ref: label, near: r.reg.near(kind, namespace, name)}
	}
	return t, nil
}

func (r *resolver) tlsClient(pem string, pool *x509.CertPool) *http.Client {
	if c, ok := r.clients[pem]; ok {
		return c
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: pool}
	c := &http.Client{Transport: base}
	r.clients[pem] = c
	return c
}

func (r *resolver) httpTarget(u string, client *http.Client, structured bool) *flows.HTTPTarget {
	if client == nil {
		client = r.app.cfg.client
	}
	if l := r.app.cfg.logger; l != nil {
		c := http.Client{}
		if client != nil {
			c = *client
		}
		c.Transport = &loggingTransport{base: c.Transport, log: l}
		client = &c
	}
	return &flows.HTTPTarget{URL: u, Client: client, Structured: structured}
}

// logHandler logs each call of a bound Go handler when a logger is set.
func (r *resolver) logHandler(label string, h flows.Handler) flows.Handler {
	l := r.app.cfg.logger
	if l == nil {
		return h
	}
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		id, typ := e.ID(), e.Type()
		start := time.Now()
		reply, err := h.Handle(ctx, e)
		attrs := []slog.Attr{slog.String("to", label), slog.String("id", id), slog.String("type", typ), slog.Duration("took", time.Since(start))}
		switch {
		case err != nil:
			attrs = append(attrs, slog.Any("error", err))
		case reply != nil:
			attrs = append(attrs, slog.String("reply", reply.ID()))
		}
		l.LogAttrs(ctx, slog.LevelInfo, "delivery", attrs...)
		return reply, err
	})
}

// loggingTransport logs each HTTP delivery.
type loggingTransport struct {
	base http.RoundTripper
	log  *slog.Logger
}

func (t *loggingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = defaultTransport
	}
	id, typ := req.Header.Get("Ce-Id"), req.Header.Get("Ce-Type")
	if id == "" && req.Body != nil && strings.HasPrefix(req.Header.Get("Content-Type"), "application/cloudevents+json") {
		// Structured mode: the attributes are in the body.
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var attrs struct{ ID, Type string }
		json.Unmarshal(body, &attrs)
		id, typ = attrs.ID, attrs.Type
	}
	start := time.Now()
	resp, err := base.RoundTrip(req)
	attrs := []slog.Attr{slog.String("to", req.URL.String()), slog.String("id", id),
		slog.String("type", typ), slog.Duration("took", time.Since(start))}
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
	} else {
		attrs = append(attrs, slog.Int("status", resp.StatusCode))
	}
	t.log.LogAttrs(req.Context(), slog.LevelInfo, "delivery", attrs...)
	return resp, err
}

var defaultTransport = func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()

// order sorts the flows so that each comes after the flows it sends to,
// and reports cycles.
func (r *resolver) order(nodes []*flowNode) {
	const (
		white = iota
		grey
		black
	)
	color := map[*flowNode]int{}
	var stack []*flowNode
	var visit func(n *flowNode)
	visit = func(n *flowNode) {
		color[n] = grey
		stack = append(stack, n)
		for _, dep := range n.deps {
			if dep.late {
				continue
			}
			switch color[dep.to] {
			case white:
				visit(dep.to)
			case grey:
				var names []string
				start := 0
				for i, s := range stack {
					if s == dep.to {
						start = i
					}
				}
				for _, s := range stack[start:] {
					names = append(names, s.doc.object())
				}
				names = append(names, dep.to.doc.object())
				r.doc = n.doc
				if dep.doc != nil {
					r.doc = dep.doc
				}
				via := ""
				if dep.url != "" {
					via = fmt.Sprintf(" (%s is the ingress of %s)", dep.url, dep.to.doc.object())
				}
				rule := "flows must form a graph without cycles"
				if dep.to.kind == "Broker" {
					rule = "Triggers must not lead from a Broker back to it through Brokers alone, which would reset the TTL and loop for ever (a Sequence or Parallel may reply to a Broker)"
				}
				r.failf(dep.path, "cycle: %s%s; %s", strings.Join(names, " → "), via, rule)
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		r.app.flows = append(r.app.flows, n)
	}
	for _, n := range nodes {
		if color[n] == white {
			visit(n)
		}
	}
}
