package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Extensions a [Broker] sets, as Knative's broker names them.
const (
	// ExtensionBrokerTTL counts how many more times an event may re-enter
	// a broker as a reply (see [Broker]).
	ExtensionBrokerTTL = "knativebrokerttl"
	// ExtensionArrivalTime is the time an event entered the broker, in
	// RFC 3339 form (a string, as Knative's subscribers receive it).
	ExtensionArrivalTime = "knativearrivaltime"
)

// DefaultBrokerTTL is the TTL an event gets when it enters a broker without
// one: Knative's MAX_TTL.
const DefaultBrokerTTL = 255

// ErrTTLExhausted is wrapped by the error of an event refused by a
// [Broker] because its TTL ran out: a reply loop reached its end, or a
// sender's event came with knativebrokerttl 1 or less.
var ErrTTLExhausted = errors.New("flows: broker TTL exhausted")

// A Broker routes each event it receives to its Triggers, as Knative's
// Broker does: every Trigger whose filter matches the event delivers it to
// its subscriber, under its delivery policy, and a subscriber's reply
// enters the broker again, where every Trigger (the replying one included)
// sees it. Two Triggers that match deliver twice, even to the same
// subscriber. Nothing is promised about order, across Triggers or events.
//
// It is wired much as Knative's channel-based broker, with one subscription
// per Trigger, "<name>-<trigger>", that delivers, sends the reply back into
// the broker, retries and dead-letters; but each Trigger has a channel of
// its own, "<name>-kne-trigger-<trigger>", and the filters are evaluated
// once when an event enters the broker, which publishes it to the channels
// of the Triggers that match. (Knative has one channel and filters in each
// Trigger's delivery; in process that would cost every Trigger a hop per
// event, and make a synchronous sender inside a Trigger's delivery wait for
// Triggers it does not concern.) The running broker is a [*Flow]: Send,
// TrySend and Handle publish into it (Handle waits for every delivery the
// event caused, replies and their deliveries included, as Knative's
// synchronous ingress does), and it can be the step, reply or dead-letter
// sink of another flow.
//
// The TTL. Every entry (Send, TrySend, Handle, a reply) sets
// knativearrivaltime and the TTL extension knativebrokerttl: a missing TTL,
// or one that is not an integer, becomes [DefaultBrokerTTL]; otherwise it
// goes down by one, and an event whose TTL reaches 0 is refused: Send and
// Handle return an error wrapping [ErrTTLExhausted] and [ErrInvalidEvent]
// (Knative's ingress answers 400). Subscribers never see the TTL (the
// broker removes it before the filter and the subscriber), and a reply gets
// the TTL of the event it answers, whatever the subscriber set. So a
// subscriber that always replies with an event its own Trigger matches is
// called exactly 255 times; the 255th reply is refused. As in Knative, the
// refused reply is a failed reply hop: the Trigger's dead-letter sink gets
// the event that was delivered, with knativeerrordest naming the broker and
// knativeerrorcode 400, or, without one, the delivery fails (logged, and
// returned by Handle). A loop never runs forever and is always reported: to
// the logger, and to the observer as the reply hop's error. A Trigger
// whose subscriber is a flow in process (a Sequence replying to the
// broker, or another broker) hands the TTL to the flow's events out of
// sight of its steps, and an event entering a broker from them counts down
// from it: such a loop also ends after 255 rounds, where Knative, which
// loses the TTL in the flow, starts again at 255 each time round and never
// ends. The TTL cannot travel through an HTTP subscriber, nor through a
// durable channel: there a loop starts again, as in Knative.
//
// Capacity. External sends wait for room in the Triggers' channels, as for
// any flow; replies do not (on in-memory channels), since the delivery
// that produces a reply holds a place in a channel until its reply is in:
// waiting there could deadlock the broker against itself. A fan-out of
// replies can therefore grow the channel past its capacity, by at most one
// event per delivery in progress at a time, and no further than the TTL
// allows.
//
// Shutdown waits, on in-memory channels, until no event is in the broker
// any more, replies included, before it closes the channels. On others it
// closes them at once, one after the other: a reply of an event still being delivered
// is then refused, and that event is handed back to the channel
// undelivered (a durable channel delivers it again on the next start, so
// its subscriber may see it twice: at least once).
//
// Differences from Knative: a Trigger whose filter cannot be built is a
// definition error (Knative skips the filter and delivers everything); a
// CESQL expression with a non-Boolean result or an unknown function is
// refused at Start (Knative accepts it, then panics or never matches); the
// broker's ingress address is its name in knativeerrordest; events are
// handed over in process, without the HTTP hops between ingress, channel
// and filter; the dead letter of an [*HTTPTarget] subscriber that answered
// 2xx with a body that is not a CloudEvent (Knative's filter answers 502)
// has knativeerrordest (the subscriber's URL), knativeerrorcode 502 and
// knativeerrordata (the body), where Knative's has none of them.
type Broker struct {
	// Name names the flow, its channels and its subscriptions. The
	// default is "default", the name of Knative's default broker.
	Name string

	// Namespace is the namespace of the broker and its Triggers, as
	// Knative's metadata.namespace. Knative sends it to a Trigger's
	// subscriber as the header Kn-Namespace, and so does the broker to an
	// [*HTTPTarget] subscriber of a Trigger (not to reply destinations,
	// dead-letter sinks, or the steps of a flow the Trigger feeds). The
	// default is "default", as the manifest runner's default namespace.
	Namespace string

	// Triggers are the routes out of the broker. A broker without any
	// accepts events and drops them.
	Triggers []Trigger

	// Delivery is the delivery policy of the Triggers that have none of
	// their own.
	Delivery *Delivery
}

// A Trigger is one route of a [Broker], as Knative's Trigger.
type Trigger struct {
	// Name names the Trigger's subscription, "<broker>-<name>", and its
	// channel, "<broker>-kne-trigger-<name>". The default is
	// "trigger-<i>", i being its index. Names must be unique
	// within the broker; give them when the Triggers of a durable channel
	// may be reordered between runs.
	Name string

	// Filter selects the events the Trigger delivers, as Knative's
	// spec.filter (usually an [Attributes] filter, but any Filter will
	// do). The zero Filter delivers every event.
	Filter Filter

	// Filters, when not empty, replaces Filter entirely, as Knative's
	// spec.filters does: the event must match every one of them (an
	// implicit [All]), and Filter is ignored, even when set.
	Filters []Filter

	// Subscriber receives the events that match. Required. Its reply, if
	// any, enters the broker again.
	Subscriber Handler

	// Delivery is the Trigger's delivery policy: retries, backoff,
	// timeout, Retry-After and dead-letter sink, applied to its subscriber
	// and to the reply hop into the broker. Nil takes the Broker's
	// Delivery, whole: nothing is merged field by field, so a Trigger with
	// a Delivery of its own has no dead-letter sink unless it sets one.
	Delivery *Delivery
}

func (b *Broker) name() string {
	if b.Name == "" {
		return "default"
	}
	return b.Name
}

func (b *Broker) namespace() string {
	if b.Namespace == "" {
		return "default"
	}
	return b.Namespace
}

func (t *Trigger) name(i int) string {
	if t.Name == "" {
		return "trigger-" + strconv.Itoa(i)
	}
	return t.Name
}

// filter is the filter the Trigger applies.
func (t *Trigger) filter() Filter {
	switch len(t.Filters) {
	case 0:
		return t.Filter
	case 1:
		return t.Filters[0]
	}
	return All(t.Filters...)
}

// Validate reports every problem of the definition at once, as
// [*DefinitionError] values joined with [errors.Join], or nil. Filters are
// checked through and through, each problem at its path, such as
// triggers[2].filter.any[0].exact or triggers[0].filters[1].cesql.
func (b *Broker) Validate() error {
	p := &problems{flow: "broker " + strconv.Quote(b.name())}
	names := map[string]int{}
	for i := range b.Triggers {
		t := &b.Triggers[i]
		path := fmt.Sprintf("triggers[%d]", i)
		name := t.name(i)
		if j, dup := names[name]; dup {
			p.add(path+".name", "%q is also the name of triggers[%d]", name, j)
		} else {
			names[name] = i
		}
		if t.Subscriber == nil {
			p.add(path+".subscriber", "missing: every trigger needs a subscriber")
		}
		t.Filter.validate(p, path+".filter", true)
		for j, f := range t.Filters {
			f.validate(p, fmt.Sprintf("%s.filters[%d]", path, j), false)
		}
		t.Delivery.validate(p, path+".delivery")
	}
	b.Delivery.validate(p, "delivery")
	for _, h := range b.handlers() {
		validateHandler(p, h.path, h.h)
	}
	return p.err()
}

// handlers lists every handler of the definition with its field path.
func (b *Broker) handlers() []pathHandler {
	var out []pathHandler
	for i, t := range b.Triggers {
		path := fmt.Sprintf("triggers[%d]", i)
		out = append(out, pathHandler{path + ".subscriber", t.Subscriber})
		out = t.Delivery.appendHandlers(out, path+".delivery")
	}
	return b.Delivery.appendHandlers(out, "delivery")
}

// Start validates the definition, creates its Triggers' channels and
// subscriptions and starts them. The broker accepts events once
// Start returns; stop it with [Flow.Shutdown] or [Flow.Close]. ctx is used
// while starting, not afterwards.
func (b *Broker) Start(ctx context.Context, opts ...Option) (*Flow, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	name := b.name()
	bld := newBuilder(ctx, name, opts)
	if err := bld.opts.checkDestinations("broker "+strconv.Quote(name), b.handlers()); err != nil {
		return nil, err
	}
	br := &brokerRun{name: name, log: bld.opts.logger, quiet: make(chan struct{}), mem: true}
	for i := range b.Triggers {
		t := &b.Triggers[i]
		step := fmt.Sprintf("triggers[%d]", i)
		ch := bld.channel(name + "-kne-trigger-" + t.name(i))
		if bld.err != nil {
			break
		}
		sub := &subscription{
			name:       name + "-" + t.name(i),
			step:       step,
			subscriber: newTriggerHandler(subscriberOf(t.Subscriber, b.namespace())),
			subDest:    destination(t.Subscriber, name+"/"+step),
			reply:      &brokerReentry{br: br, trigger: t.name(i)},
			replyDest:  name,
			delivery:   t.Delivery.clone(),
			reentry:    true,
		}
		if sub.delivery == nil {
			sub.delivery = b.Delivery.clone()
		}
		bld.subscribe(ch, sub)
		if bld.err != nil {
			break
		}
		br.triggers = append(br.triggers, brokerTrigger{filter: t.filter(), ch: ch})
		// The subscriber is wrapped; what it exchanges over HTTP is its own.
		_, sub.httpSubscriber = t.Subscriber.(*HTTPTarget)
		if q, ok := sub.recv.(*memQueue); ok {
			br.queues = append(br.queues, q)
			sub.acked = br.check
		} else {
			br.mem = false
		}
	}
	br.index()
	f, err := bld.start(brokerInput{br})
	if err != nil {
		return nil, err
	}
	f.quiesce, f.broker = br.quiesce, true
	return f, nil
}

// Run starts the broker, waits for ctx to end, then shuts it down
// gracefully within the shutdown timeout (see [WithShutdownTimeout]). It
// returns nil after a clean drain, so it drops into an errgroup.Group.
func (b *Broker) Run(ctx context.Context, opts ...Option) error {
	f, err := b.Start(ctx, opts...)
	if err != nil {
		return err
	}
	return f.run(ctx, buildOptions(opts).shutdownTimeout)
}

// brokerRun is the state of a running broker.
type brokerRun struct {
	name     string
	triggers []brokerTrigger
	log      *slog.Logger

	// byType lists, by event type, the Triggers whose filter requires
	// that type (see [Filter.typeKey]), and unindexed the others, each in
	// Trigger order: an entry evaluates only the filters that may match.
	byType    map[string][]int
	unindexed []int

	// On in-memory channels (mem), the drain waits until the broker is
	// empty: no sender inside Publish, no event held by a subscription.
	mem        bool
	queues     []*memQueue
	draining   atomic.Bool
	publishing atomic.Int64
	quiet      chan struct{}
	quietOnce  sync.Once

	// taps see every event that enters, once the ingress rules are
	// applied and before the filters: a started [RequestReply] finds its
	// replies there, whichever way they come in (Send, Handle, an ingress,
	// a Trigger's reply). Copied on write under tapMu, so that an entry
	// costs one atomic load while there is none.
	taps  atomic.Pointer[[]entryTap]
	tapMu sync.Mutex
}

// An entryTap is told of each event entering a broker. It must not block
// nor change e, and copies what it keeps: e goes on to the Triggers.
type entryTap interface{ entered(e *event.Event) }

// tap adds t to the taps of the broker and returns the function that
// removes it.
func (br *brokerRun) tap(t entryTap) (remove func()) {
	br.tapMu.Lock()
	defer br.tapMu.Unlock()
	var taps []entryTap
	if old := br.taps.Load(); old != nil {
		taps = append(taps, *old...)
	}
	taps = append(taps, t)
	br.taps.Store(&taps)
	return func() {
		br.tapMu.Lock()
		defer br.tapMu.Unlock()
		var kept []entryTap
		for _, o := range *br.taps.Load() {
			if o != t {
				kept = append(kept, o)
			}
		}
		br.taps.Store(&kept)
	}
}

// index fills byType and unindexed, if some Trigger's filter requires a
// type.
func (br *brokerRun) index() {
	byType := map[string][]int{}
	var unindexed []int
	for i := range br.triggers {
		if typ, ok := br.triggers[i].filter.typeKey(); ok {
			byType[typ] = append(byType[typ], i)
		} else {
			unindexed = append(unindexed, i)
		}
	}
	if len(byType) > 0 {
		br.byType, br.unindexed = byType, unindexed
	}
}

// match appends to matched the index of every Trigger whose filter matches
// fe's event, in Trigger order.
func (br *brokerRun) match(fe *filterEvent, matched []int) []int {
	if br.byType == nil {
		for i := range br.triggers {
			if br.triggers[i].filter.matches(fe) {
				matched = append(matched, i)
			}
		}
		return matched
	}
	// The Triggers of the event's type and the unindexed ones, merged.
	typed, rest := br.byType[fe.e.Type()], br.unindexed
	for len(typed) > 0 || len(rest) > 0 {
		var i int
		if len(rest) == 0 || len(typed) > 0 && typed[0] < rest[0] {
			i, typed = typed[0], typed[1:]
		} else {
			i, rest = rest[0], rest[1:]
		}
		if br.triggers[i].filter.matches(fe) {
			matched = append(matched, i)
		}
	}
	return matched
}

// brokerTrigger is a Trigger's filter and the channel of its subscription.
type brokerTrigger struct {
	filter Filter
	ch     Channel
}

// enter applies the rules of Knative's broker ingress to an event that
// enters the broker (the arrival time, and the TTL, defaulted or counted
// down with Knative's conversions: an Integer, or a string holding one),
// evaluates every Trigger's filter on it once, and publishes it to the
// channel of each Trigger that matches. Filters are evaluated here, in the
// sender's goroutine, rather than by each Trigger's workers: an event
// costs nothing to the Triggers it does not match, and a synchronous
// sender (a Sequence replying to the broker from inside one of its
// Triggers' deliveries) never waits for a Trigger it does not concern.
//
// The event is published to the matching channels one after the other: if
// one refuses it, the earlier ones have it already, and a sender that
// tries again may deliver it twice to them (at least once).
func (br *brokerRun) enter(ctx context.Context, e *event.Event) error {
	ttl := int32(DefaultBrokerTTL)
	v, held := extension(e, ExtensionBrokerTTL)
	if held {
		if n, err := types.ToInteger(v); err == nil {
			ttl = max(n, 1) - 1 // no overflow below the minimum
		}
	} else if env := envelopeFrom(ctx); env != nil && env.ttl > 0 {
		// From a flow a Trigger fed: the TTL it carried on.
		ttl = env.ttl - 1
	}
	if ttl <= 0 {
		return &ttlError{broker: br.name, id: e.ID()}
	}
	if err := setExtension(e, ExtensionArrivalTime, arrivalTime(time.Now())); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if held {
		// The taps and the filters see the event without its TTL.
		if err := setExtension(e, ExtensionBrokerTTL, nil); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
		}
	}
	if taps := br.taps.Load(); taps != nil {
		for _, t := range *taps {
			t.entered(e)
		}
	}
	var buf [16]int
	fe := filterEvent{e: e}
	matched := br.match(&fe, buf[:0])
	if len(matched) == 0 {
		return nil // as a Knative broker without a matching Trigger: accepted, and dropped
	}
	if err := setExtension(e, ExtensionBrokerTTL, ttl); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	for k, i := range matched {
		t := &br.triggers[i]
		ev := e
		if k < len(matched)-1 {
			ev = copyEvent(*e, true) // each channel owns what it is given
		}
		if err := t.ch.Publish(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// ttlError refuses an event whose TTL ran out. It reads as the 400 that
// Knative's ingress answers, so that a dead letter of a refused reply gets
// knativeerrorcode 400.
type ttlError struct {
	broker, id string
}

func (e *ttlError) Error() string {
	return fmt.Sprintf("flows: broker %q refused event %s: its TTL (%s) is exhausted", e.broker, e.id, ExtensionBrokerTTL)
}

func (e *ttlError) Unwrap() []error { return []error{ErrTTLExhausted, ErrInvalidEvent} }

// As makes the error an *HTTPError with status 400 for errors.As, as
// Knative's broker ingress answers.
func (e *ttlError) As(target any) bool {
	if p, ok := target.(**HTTPError); ok {
		*p = &HTTPError{URL: e.broker, StatusCode: 400}
		return true
	}
	return false
}

// quiesce returns once the broker holds no event (on the in-memory
// channel), or at once (on another), or when halt is closed.
func (br *brokerRun) quiesce(halt <-chan struct{}) {
	br.draining.Store(true)
	if !br.mem || br.idle() {
		return
	}
	select {
	case <-br.quiet:
	case <-halt:
	}
}

// check is called after each acknowledgement and publish.
func (br *brokerRun) check() {
	if br.draining.Load() && br.idle() {
		br.quietOnce.Do(func() { close(br.quiet) })
	}
}

func (br *brokerRun) idle() bool {
	if br.publishing.Load() > 0 {
		return false
	}
	for _, q := range br.queues {
		if q.used.Load() > 0 {
			return false
		}
	}
	return true
}

// brokerInput is the broker's channel as the flow's senders see it: each
// event enters through the ingress rules.
type brokerInput struct{ br *brokerRun }

func (in brokerInput) Publish(ctx context.Context, e *event.Event) error {
	br := in.br
	// Counted before draining is read, so that the drain either sees this
	// sender or this sender sees the drain.
	br.publishing.Add(1)
	defer func() {
		br.publishing.Add(-1)
		br.check()
	}()
	if br.draining.Load() {
		return ErrClosed
	}
	return br.enter(ctx, e)
}

// Subscribe is not for the broker's input: its subscriptions are the
// Triggers'.
func (in brokerInput) Subscribe(string) (Receiver, error) {
	return nil, errors.New("flows: a broker's input has no subscriptions of its own")
}

// Close is done by the flow's drain, channel by channel.
func (in brokerInput) Close() error { return nil }

// triggerHandler calls a Trigger's subscriber as Knative's broker filter
// does: without the TTL, and with the TTL of the event on the reply.
type triggerHandler struct {
	sub  Handler
	http bool // sub is an HTTP target, which cannot carry the TTL on
}

func (t triggerHandler) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	ttl, held := extension(&e, ExtensionBrokerTTL)
	if held {
		// e is the subscription's to change: it copied the broker's event
		// if a retry or a dead letter may need it.
		setExtension(&e, ExtensionBrokerTTL, nil)
		if n, ok := ttl.(int32); ok && n > 0 && !t.http {
			// A flow in process carries the TTL on through its events, so
			// that its replies into a broker count down (Knative loses it,
			// and such a loop never ends). An HTTP subscriber cannot.
			// The envelope and the context that carries it in one
			// allocation.
			w := &struct {
				env envelope
				ctx envelopeContext
			}{}
			if env := envelopeFrom(ctx); env != nil {
				w.env = *env
			}
			w.env.ttl = n
			w.ctx = envelopeContext{Context: ctx, env: &w.env}
			ctx = &w.ctx
		}
	}
	reply, err := t.sub.Handle(ctx, e)
	if err != nil || reply == nil {
		return reply, err
	}
	if reply.Context == nil {
		return nil, fmt.Errorf("%w: a reply without attributes", ErrInvalidEvent)
	}
	if n, ok := ttl.(int32); held && ok {
		err = setExtension(reply, ExtensionBrokerTTL, n) // the broker's own, valid as it is
	} else if held {
		err = reply.Context.SetExtension(ExtensionBrokerTTL, ttl)
	} else {
		err = reply.Context.SetExtension(ExtensionBrokerTTL, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return reply, nil
}

func newTriggerHandler(sub Handler) triggerHandler {
	_, isHTTP := sub.(triggerTarget)
	return triggerHandler{sub: sub, http: isHTTP}
}

// subscriberOf is what a Trigger calls for sub: an [*HTTPTarget] is called
// as Knative's broker filter calls a subscriber (see [triggerTarget]).
func subscriberOf(sub Handler, namespace string) Handler {
	if t, ok := sub.(*HTTPTarget); ok && t != nil {
		return triggerTarget{t: t, namespace: namespace}
	}
	return sub
}

// triggerTarget is an HTTPTarget called as a Trigger's subscriber: with
// Kn-Namespace, and a 2xx answer with a body that is not a CloudEvent is a
// 502, as Knative's broker filter answers. The role is the call's: the
// same target may be a Sequence's step elsewhere.
type triggerTarget struct {
	t         *HTTPTarget
	namespace string
}

func (tt triggerTarget) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return tt.t.post(ctx, e, true, tt.namespace)
}

// extension reads one extension of e without copying them all, as
// [event.Event.Extensions] does: the broker reads one or two per event and
// per filter.
func extension(e *event.Event, name string) (any, bool) {
	if c, ok := e.Context.(*event.EventContextV1); ok {
		v, ok := c.Extensions[name]
		return v, ok
	}
	v, ok := e.Extensions()[name]
	return v, ok
}

// setExtension sets one of the broker's own extensions on e (nil removes
// it). Their names are lower-case and their values a string or an int32,
// valid as they are: on a 1.0 event it writes the map directly, which
// saves SetExtension's checks and lower-casing on every event.
func setExtension(e *event.Event, name string, v any) error {
	c, ok := e.Context.(*event.EventContextV1)
	if !ok || c == nil {
		return e.Context.SetExtension(name, v)
	}
	if v == nil {
		delete(c.Extensions, name)
		return nil
	}
	if c.Extensions == nil {
		c.Extensions = make(map[string]any, 2)
	}
	c.Extensions[name] = v
	return nil
}

// brokerReentry is the reply destination of every Trigger: the broker
// itself.
type brokerReentry struct {
	br      *brokerRun
	trigger string
}

func (r *brokerReentry) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	br := r.br
	if e.Context == nil {
		return nil, Permanent(fmt.Errorf("%w: a reply without attributes", ErrInvalidEvent))
	}
	// The envelope and the context that carries it in one allocation.
	w := &struct {
		env envelope
		ctx envelopeContext
	}{env: envelope{reentry: true}}
	if env := envelopeFrom(ctx); env != nil {
		w.env.carried = env.carried
	}
	w.ctx = envelopeContext{Context: ctx, env: &w.env}
	if err := br.enter(&w.ctx, &e); err != nil {
		if errors.Is(err, ErrTTLExhausted) {
			br.log.LogAttrs(ctx, slog.LevelWarn, "flows: broker TTL exhausted, reply refused",
				slog.String("broker", br.name), slog.String("trigger", r.trigger),
				slog.String("id", e.ID()), slog.String("type", e.Type()))
		}
		return nil, Permanent(err)
	}
	return nil, nil
}

// destination names the broker in knativeerrordest, for a failed reply hop.
func (r *brokerReentry) destination() string { return r.br.name }

// arrivalSecond is the text of one second of UTC time, up to the seconds:
// "2006-01-02T15:04:05".
type arrivalSecond struct {
	unix int64
	text [len("2006-01-02T15:04:05")]byte
}

// lastArrivalSecond is the second of the latest arrival time, so that the
// events of one second share the formatting of the date and the time of
// day.
var lastArrivalSecond atomic.Pointer[arrivalSecond]

// arrivalTime is t.UTC().Format(time.RFC3339Nano), the text of
// knativearrivaltime, at a fraction of its cost: the seconds are formatted
// once per second, and the nanoseconds (without their trailing zeros, and
// without the point if they are all zero, as RFC3339Nano writes them) are
// appended.
func arrivalTime(t time.Time) string {
	t = t.UTC()
	sec := t.Unix()
	s := lastArrivalSecond.Load()
	if s == nil || s.unix != sec {
		if y := t.Year(); y < 0 || y > 9999 {
			// Not four digits: Format's own rules.
			return t.Format(time.RFC3339Nano)
		}
		s = &arrivalSecond{unix: sec}
		t.AppendFormat(s.text[:0], "2006-01-02T15:04:05")
		lastArrivalSecond.Store(s)
	}
	var buf [len("2006-01-02T15:04:05.999999999Z")]byte
	n := copy(buf[:], s.text[:])
	if ns := t.Nanosecond(); ns != 0 {
		buf[n] = '.'
		for i := n + 9; i > n; i-- {
			buf[i] = byte('0' + ns%10)
			ns /= 10
		}
		n += 10
		for buf[n-1] == '0' {
			n--
		}
	}
	buf[n] = 'Z'
	return string(buf[:n+1])
}
