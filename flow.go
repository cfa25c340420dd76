package flows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// An Option configures how a flow runs, as opposed to what it does (which
// its definition says).
type Option func(*options)

type options struct {
	newChannel      func(ctx context.Context, name string) (Channel, error)
	capacity        int
	concurrency     int
	logger          *slog.Logger
	shutdownTimeout time.Duration
	allowURL        func(*url.URL) error
	observer        *Observer
	maxReplyBytes   int64
}

func buildOptions(opts []Option) options {
	o := options{
		concurrency:     1,
		shutdownTimeout: 30 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.newChannel == nil {
		capacity := o.capacity
		o.newChannel = func(context.Context, string) (Channel, error) { return NewInMemoryChannel(capacity), nil }
	}
	return o
}

// WithChannels makes the flow create its channels with newChannel, which is
// given Knative's channel names (for example "orders-kn-sequence-1") and the
// context passed to Start. The default is [NewInMemoryChannel].
func WithChannels(newChannel func(ctx context.Context, name string) (Channel, error)) Option {
	return func(o *options) { o.newChannel = newChannel }
}

// WithCapacity sets the capacity of the flow's in-memory channels: how many
// events each subscription holds before senders wait. The default is
// [DefaultCapacity]. It has no effect with [WithChannels].
func WithCapacity(n int) Option {
	return func(o *options) { o.capacity = n }
}

// WithConcurrency sets how many events each subscription of the flow
// delivers at once (the number of its workers). The default, 1, delivers the
// events of a subscription one at a time, in order; raise it for slow or
// remote subscribers, at the cost of ordering.
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithLogger makes the flow log through l: retries at Debug, dead letters
// at Warn, undelivered events at Error. By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithMaxReplyBytes sets the largest reply body that the flow's
// [HTTPTarget] subscribers, replies and dead-letter sinks read, for those
// whose MaxReplyBytes is not set. n <= 0 means [DefaultMaxBodyBytes]. A
// larger reply fails its attempt with [ErrTooLarge].
func WithMaxReplyBytes(n int64) Option {
	return func(o *options) { o.maxReplyBytes = n }
}

// WithShutdownTimeout bounds the graceful shutdown that Run performs when
// its context ends. The default is 30 seconds.
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) { o.shutdownTimeout = d }
}

// A Flow is a running [Sequence], [Parallel] or [Broker]. Events enter it with Send,
// TrySend or Handle; Shutdown drains it and Close stops it.
//
// A Flow is a [Handler], so it can be a step, a branch, a reply or a
// dead-letter sink of another flow. As in Knative, where a flow is reached at
// its first channel's address, it answers with no event: its outputs go to
// its own replies.
type Flow struct {
	name   string
	input  Channel
	stages []*stage
	log    *slog.Logger
	obs    *Observer
	onStop func() // from the observer's Start hook
	// quiesce, if set, is called when the drain begins and returns once
	// the channels may be closed (a broker waits for its replies); halt is
	// closed by a hard stop.
	quiesce func(halt <-chan struct{})
	halt    <-chan struct{}
	// broker is set for a running [Broker]: its replies go back in, so it
	// has no ends for a Request.
	broker bool

	cancel   context.CancelFunc // cancels the workers' context: the hard stop
	stopping atomic.Bool
	stopOnce sync.Once
	drained  chan struct{} // closed when a graceful drain completed
	stopped  chan struct{} // closed when every worker has returned

	mu       sync.Mutex
	aborted  bool
	lostOnce sync.Once
	lost     []event.Event
}

// stage is a channel and the subscriptions that read from it. Stages are
// kept in topological order: a stage's channel is fed only by the flow's
// input or by earlier stages, so closing them in order drains the flow.
type stage struct {
	ch   Channel
	subs []*subscription
}

type builder struct {
	ctx  context.Context
	f    *Flow
	opts options
	err  error
}

func newBuilder(ctx context.Context, name string, opts []Option) *builder {
	o := buildOptions(opts)
	return &builder{
		ctx:  ctx,
		opts: o,
		f: &Flow{
			name:    name,
			log:     o.logger,
			obs:     o.observer,
			drained: make(chan struct{}),
			stopped: make(chan struct{}),
		},
	}
}

func (b *builder) channel(name string) Channel {
	if b.err != nil {
		return nil
	}
	ch, err := b.opts.newChannel(b.ctx, name)
	if err == nil && ch == nil {
		err = errors.New("channel constructor returned nil")
	}
	if err != nil {
		b.err = fmt.Errorf("flows: %s: creating channel %q: %w", b.f.name, name, err)
		return nil
	}
	b.f.stages = append(b.f.stages, &stage{ch: ch})
	return ch
}

func (b *builder) subscribe(ch Channel, s *subscription) {
	if b.err != nil {
		return
	}
	recv, err := ch.Subscribe(s.name)
	if err != nil {
		b.err = fmt.Errorf("flows: %s: subscribing %q: %w", b.f.name, s.name, err)
		return
	}
	s.recv = recv
	_, s.httpSubscriber = s.subscriber.(*HTTPTarget)
	s.workers = b.opts.concurrency
	s.log = b.opts.logger
	s.flow, s.obs = b.f.name, b.opts.observer
	for _, st := range b.f.stages {
		if st.ch == ch {
			st.subs = append(st.subs, s)
			return
		}
	}
}

// start launches every subscription; the flow accepts events once it returns.
func (b *builder) start(input Channel) (*Flow, error) {
	f := b.f
	if b.err != nil {
		for _, st := range f.stages {
			st.ch.Close()
		}
		return nil, b.err
	}
	f.input = input
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.halt = cancel, ctx.Done()
	ctx = withMaxReplyBytes(ctx, b.opts.maxReplyBytes)
	for _, st := range f.stages {
		for _, s := range st.subs {
			s.start(ctx)
		}
	}
	if f.obs != nil && f.obs.Start != nil {
		f.onStop = f.obs.Start(f)
	}
	return f, nil
}

// Name returns the name of the flow's definition.
func (f *Flow) Name() string { return f.name }

// Send hands e to the flow and returns once the flow's first channel has
// accepted it; delivery goes on in the background. The flow copies e's
// attributes, so e may be changed and sent again; its data bytes are shared
// and must not be modified in place afterwards.
//
// While the channel is full Send waits, until ctx ends: it then returns an
// error wrapping [ErrFull] and the event was not accepted. After Shutdown or
// Close began it returns [ErrClosed]. An event that fails CloudEvents
// validation is refused with an error wrapping [ErrInvalidEvent].
func (f *Flow) Send(ctx context.Context, e event.Event) error {
	return f.publish(ctx, e)
}

// TrySend is Send without waiting: it returns an error wrapping [ErrFull]
// at once if the flow's first channel has no room.
func (f *Flow) TrySend(e event.Event) error {
	return f.publish(doneContext{}, e)
}

// ErrInvalidEvent is wrapped by the error for an event that fails
// CloudEvents validation (a missing id, source, type or specversion, or an
// attribute that is not valid UTF-8), whether sent to a flow or returned
// by a handler as its reply.
var ErrInvalidEvent = errors.New("flows: invalid event")

func (f *Flow) publish(ctx context.Context, e event.Event) error {
	if f.stopping.Load() {
		return ErrClosed
	}
	p, err := ownEvent(e)
	if err != nil {
		return err
	}
	if o := f.obs.active(ctx); o != nil && o.Accept != nil {
		return f.observedPublish(ctx, o, p)
	}
	return f.input.Publish(ctx, p)
}

func (f *Flow) observedPublish(ctx context.Context, o *Observer, e *event.Event) error {
	a := &AcceptInfo{Flow: f.name, Event: e}
	if env := envelopeFrom(ctx); env != nil {
		a.Header = env.header
	}
	ctx, done := o.Accept(ctx, a)
	err := f.input.Publish(ctx, e)
	if done != nil {
		done(err)
	}
	return err
}

// Handle sends e to the flow and waits until the flow has finished with it:
// every delivery it caused was made or dead-lettered. This is Knative's
// synchronous channel mode. It returns no event, and an error (a
// [*DeliveryError], possibly several joined) if some delivery failed past its
// dead-letter sink. That error is [Permanent]: the flow as a step of another
// is not retried, since that would run it all again (Knative would, and
// duplicate what succeeded). If ctx ends first it returns ctx.Err() and the
// event goes on in the background.
//
// Completion is tracked through in-memory channels; with other channels
// Handle returns once the event was accepted. [Flow.Request] also returns
// the events that came out.
func (f *Flow) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	// As a step or a reply of a Flow.Request's flow, f's ends are the
	// request's (see follow); a broker has none.
	return f.handle(ctx, e, nil, !f.isBroker())
}

// handle is Handle, with the outputs of a Request collected into out, or
// into the calling request's if out is nil and inherit is set.
func (f *Flow) handle(ctx context.Context, e event.Event, out *outputs, inherit bool) (*event.Event, error) {
	reply, err := sendAndWait(ctx, e, f.publish, out, inherit)
	var de *DeliveryError
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidEvent) || errors.As(err, &de) {
		// Used as a step, a reply or a sink of another flow, a retry cannot
		// help, and after a failed delivery it would run the whole flow
		// again, duplicating what did succeed.
		err = Permanent(err)
	}
	return reply, err
}

// sendAndWait publishes e with a tracker and waits for it. The tracker
// collects the event's outputs into out if it is set, or else, if inherit,
// into those that ctx hands on (see follow).
func sendAndWait(ctx context.Context, e event.Event, publish func(context.Context, event.Event) error, out *outputs, inherit bool) (*event.Event, error) {
	// The envelope, its tracker and the context that carries them in one
	// allocation.
	w := &struct {
		env envelope
		tr  tracker
		ctx envelopeContext
	}{}
	w.tr.init()
	env := &w.env
	if outer := envelopeFrom(ctx); outer != nil {
		env.carried = outer.carried
		if out == nil && inherit {
			out = outer.out
		}
	}
	env.tr = &w.tr // this sender's, in place of an outer one
	w.tr.out = out
	w.ctx = envelopeContext{Context: ctx, env: env}
	if err := publish(&w.ctx, e); err != nil {
		return nil, err
	}
	env.tr.finish()
	if ctx.Done() == nil {
		// A context that never ends (Background): a plain receive.
		<-env.tr.done
		return nil, env.tr.result()
	}
	select {
	case <-env.tr.done:
		return nil, env.tr.result()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// envelopeContext is withEnvelope(Context, env) as a value, so that it can
// share an allocation with env.
type envelopeContext struct {
	context.Context
	env *envelope
}

func (c *envelopeContext) Value(key any) any {
	if key == (envelopeKey{}) {
		return c.env
	}
	return c.Context.Value(key)
}

// ownEvent checks an event from outside and returns the flow's own copy of
// it: its attributes live behind a pointer the caller keeps, so they are
// copied (in the same allocation as the event). Data is replaced, never
// written in place, by the SDK's setters, so sharing it is safe.
func ownEvent(e event.Event) (*event.Event, error) {
	if err := checkEvent(&e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	e.FieldErrors = nil
	return copyEvent(e, false), nil
}

// copyEvent returns a copy of e with attributes of its own, and data of its
// own if withData: what e.Clone gives, in fewer allocations. The
// attributes share their allocation with the event.
func copyEvent(e event.Event, withData bool) *event.Event {
	if withData && e.DataEncoded != nil {
		e.DataEncoded = bytes.Clone(e.DataEncoded)
	}
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return cloneEvent(e)
	}
	o := &ownedEvent{}
	o.own(e, ec)
	return &o.e
}

// copyEvents returns n copies of e, each with attributes and data of its
// own, as copyEvent(e, true) would, in two allocations rather than 2n: the
// copies a channel makes for its subscriptions. It returns nil if e's
// attributes are not a *EventContextV1.
func copyEvents(e event.Event, n int) []ownedEvent {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return nil
	}
	owned := make([]ownedEvent, n)
	size := len(e.DataEncoded)
	var data []byte
	if e.DataEncoded != nil {
		data = make([]byte, n*size)
	}
	for i := range owned {
		c := e
		if e.DataEncoded != nil {
			// A full slice expression: an append to one copy's data must
			// not write into the next one's.
			c.DataEncoded = data[i*size : (i+1)*size : (i+1)*size]
			copy(c.DataEncoded, e.DataEncoded)
		}
		owned[i].own(c, ec)
	}
	return owned
}

// cloneEvent copies e whose attributes are not a *EventContextV1.
func cloneEvent(e event.Event) *event.Event {
	if e.FieldErrors != nil {
		e.FieldErrors = maps.Clone(e.FieldErrors)
	}
	p := new(event.Event) // not &e: e would escape on every path
	*p = e
	p.Context = e.Context.Clone()
	return p
}

// own makes o the event e with a copy of its attributes ec.
func (o *ownedEvent) own(e event.Event, ec *event.EventContextV1) {
	if e.FieldErrors != nil {
		e.FieldErrors = maps.Clone(e.FieldErrors)
	}
	o.e, o.ec = e, *ec
	// As EventContextV1.Clone: the pointers the SDK's setters replace are
	// shared, the time and schema are copied, and so is the extensions map,
	// which SetExtension writes in place.
	if ec.Time != nil {
		t := *ec.Time
		o.ec.Time = &t
	}
	if ec.DataSchema != nil {
		u := *ec.DataSchema
		o.ec.DataSchema = &u
	}
	if ec.Extensions != nil {
		o.ec.Extensions = make(map[string]any, len(ec.Extensions))
		for k, v := range ec.Extensions {
			o.ec.Extensions[k] = types.Clone(v)
		}
	}
	o.e.Context = &o.ec
}

// ownedEvent is an event and its attributes in one allocation.
type ownedEvent struct {
	e  event.Event
	ec event.EventContextV1
}

// checkEvent reports why e is not a valid CloudEvent, or nil: the SDK's
// rules (e.Validate), and valid UTF-8 in every String attribute and
// extension, which CloudEvents requires and the SDK does not check. It is
// the one rule for events from outside (ingress, Send) and for replies
// (HTTP and Go handlers), and it does not allocate for a valid event.
func checkEvent(e *event.Event) error {
	if e.Context == nil {
		return errors.New("no attributes")
	}
	if !plainValid(*e) {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	return checkUTF8(e.Context)
}

// checkUTF8 reports the first attribute or extension of ec whose text is
// not valid UTF-8. Of a URI it checks what is written out as it was read
// (the opaque part and the query); the rest is written escaped.
func checkUTF8(ec event.EventContext) error {
	if c, ok := ec.(*event.EventContextV1); ok && c != nil {
		// The hot path: the fields themselves, no getter copies the context.
		switch {
		case !validText(c.ID):
			return notUTF8("id")
		case !validText(c.Type):
			return notUTF8("type")
		case c.Subject != nil && !validText(*c.Subject):
			return notUTF8("subject")
		case c.DataContentType != nil && !validText(*c.DataContentType):
			return notUTF8("datacontenttype")
		case !urlUTF8(&c.Source.URL):
			return notUTF8("source")
		case c.DataSchema != nil && !urlUTF8(&c.DataSchema.URL):
			return notUTF8("dataschema")
		}
		return extensionsUTF8(c.Extensions)
	}
	switch {
	case !utf8.ValidString(ec.GetID()):
		return notUTF8("id")
	case !utf8.ValidString(ec.GetType()):
		return notUTF8("type")
	case !utf8.ValidString(ec.GetSubject()):
		return notUTF8("subject")
	case !utf8.ValidString(ec.GetDataContentType()):
		return notUTF8("datacontenttype")
	case !utf8.ValidString(ec.GetSource()):
		return notUTF8("source")
	case !utf8.ValidString(ec.GetDataSchema()):
		return notUTF8("dataschema")
	}
	return extensionsUTF8(ec.GetExtensions())
}

func extensionsUTF8(exts map[string]any) error {
	if len(exts) == 0 {
		return nil
	}
	for name, v := range exts {
		var ok bool
		switch v := v.(type) {
		case string:
			ok = utf8.ValidString(v)
		case types.URI:
			ok = urlUTF8(&v.URL)
		case types.URIRef:
			ok = urlUTF8(&v.URL)
		default:
			ok = true
		}
		if !ok {
			return notUTF8("extension " + strconv.Quote(name))
		}
	}
	return nil
}

func urlUTF8(u *url.URL) bool { return validText(u.Opaque) && validText(u.RawQuery) }

// validText is utf8.ValidString, quicker for the short ASCII text of most
// attributes: it checks every event of every hop.
func validText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			// What precedes is ASCII, so s[i:] starts a rune.
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// blank is strings.TrimSpace(s) == "", quicker for the common text that
// starts with a printable ASCII character.
func blank(s string) bool {
	if len(s) > 0 && s[0] > ' ' && s[0] < utf8.RuneSelf {
		return false
	}
	return strings.TrimSpace(s) == ""
}

func notUTF8(attr string) error { return fmt.Errorf("%s is not valid UTF-8", attr) }

// plainValid reports, without allocating, that e is valid in the common
// case: a CloudEvents 1.0 event whose attributes are all present and whose
// datacontenttype is a well-known one. When it reports false, e.Validate
// has the last word; it never accepts an event that Validate refuses.
func plainValid(e event.Event) bool {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil || len(e.FieldErrors) > 0 || ec.DataSchema != nil {
		return false
	}
	if blank(ec.ID) || blank(ec.Type) {
		return false
	}
	// What URL.String writes for these cannot be blank: "scheme:", or an
	// escaped host or path (it escapes spaces). An opaque part is left to
	// Validate.
	switch src := &ec.Source.URL; {
	case src.Scheme != "":
	case src.Opaque != "":
		return false
	case src.Host == "" && src.Path == "":
		return false
	}
	if ec.Subject != nil && blank(*ec.Subject) {
		return false
	}
	if ec.DataContentType != nil {
		switch *ec.DataContentType {
		case event.ApplicationJSON, event.TextJSON, event.TextPlain, event.ApplicationXML, "text/xml",
			"application/octet-stream", "application/json; charset=utf-8", "text/plain; charset=utf-8",
			"application/protobuf", "application/x-protobuf":
		default:
			return false
		}
	}
	return true
}

// destination names the flow in knativeerrordest when it is a failed hop.
func (f *Flow) destination() string { return f.name }

// Shutdown stops the flow gracefully: new sends fail with [ErrClosed], then
// every event already accepted is delivered (with its retries) or
// dead-lettered, stage by stage, and the workers stop. It returns nil once
// the flow is drained.
//
// If ctx ends first, Shutdown stops the flow hard: running attempts are
// cancelled through their context and the events not yet delivered are
// returned in an [*UndeliveredError], which wraps ctx's error. Shutdown
// returns after every worker has returned, so handlers must honour their
// context. If [Flow.Close] stops the flow meanwhile, Shutdown returns what
// Close does.
func (f *Flow) Shutdown(ctx context.Context) error {
	f.begin()
	select {
	case <-f.drained:
		<-f.stopped
		return nil
	case <-f.stopped:
		// drained is closed before stopped, unless the flow was stopped hard.
		select {
		case <-f.drained:
			return nil
		default:
		}
		return f.closeErr()
	case <-ctx.Done():
	}
	select {
	case <-f.drained:
		// Drained just as the deadline passed: nothing was lost.
		<-f.stopped
		return nil
	default:
	}
	lost := f.abort()
	return &UndeliveredError{Events: lost, Err: ctx.Err()}
}

// Close stops the flow at once: running attempts are cancelled and events
// not yet delivered are dropped. It returns an [*UndeliveredError] listing
// them, if any. Close waits for running handlers to return.
func (f *Flow) Close() error {
	f.begin()
	return f.closeErr()
}

// closeErr stops the flow hard and reports what it dropped, as Close does.
func (f *Flow) closeErr() error {
	if lost := f.abort(); len(lost) > 0 {
		return &UndeliveredError{Events: lost, Err: ErrClosed}
	}
	return nil
}

// Done returns a channel that is closed once the flow has stopped, after
// Shutdown or Close.
func (f *Flow) Done() <-chan struct{} { return f.stopped }

// begin starts the graceful drain once.
func (f *Flow) begin() {
	f.stopOnce.Do(func() {
		f.stopping.Store(true)
		go f.drain()
	})
}

func (f *Flow) drain() {
	defer close(f.stopped)
	if f.quiesce != nil {
		f.quiesce(f.halt)
	}
	for _, st := range f.stages {
		st.ch.Close()
		for _, s := range st.subs {
			s.wg.Wait()
		}
	}
	f.mu.Lock()
	aborted := f.aborted
	f.mu.Unlock()
	if !aborted {
		close(f.drained)
	}
	f.cancel()
	if f.onStop != nil {
		f.onStop()
	}
}

// abort cancels the workers, waits for them, and collects what the
// in-memory channels still hold. It is idempotent.
func (f *Flow) abort() []event.Event {
	f.mu.Lock()
	f.aborted = true
	f.mu.Unlock()
	// Workers first: a worker that sees a hard stop (a publish to the next
	// channel refused, say) must find its context cancelled, or it takes
	// the event for failed and dead-letters or drops it. What cancelled
	// workers hand back goes to the channels, which keep it.
	f.cancel()
	for _, st := range f.stages {
		if mc, ok := st.ch.(*InMemoryChannel); ok {
			mc.abort()
		}
	}
	<-f.stopped
	f.lostOnce.Do(func() {
		for _, st := range f.stages {
			mc, ok := st.ch.(*InMemoryChannel)
			if !ok {
				continue
			}
			for _, m := range mc.undelivered() {
				f.lost = append(f.lost, *m.e)
				if m.tr != nil {
					m.tr.fail(fmt.Errorf("event %s not delivered: %w", m.e.ID(), ErrClosed))
					m.tr.finish()
				}
			}
		}
		if len(f.lost) > 0 {
			f.log.LogAttrs(context.Background(), slog.LevelError, "flows: stopped with undelivered events",
				slog.String("flow", f.name), slog.Int("events", len(f.lost)))
		}
	})
	return f.lost
}

// run is the body of the definitions' Run methods.
func (f *Flow) run(ctx context.Context, timeout time.Duration) error {
	select {
	case <-ctx.Done():
	case <-f.stopped:
		return nil
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f.Shutdown(sctx)
}

// doneContext is a context that is already done, for sends that must not wait.
type doneContext struct{}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (doneContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (doneContext) Done() <-chan struct{}       { return closedChan }
func (doneContext) Err() error                  { return context.Canceled }
func (doneContext) Value(any) any               { return nil }
