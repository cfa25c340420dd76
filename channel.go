package flows

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A Channel carries events from publishers to its subscriptions, as a
// Knative channel does. It is transport only: retries, timeouts, replies and
// dead letters are applied by the flow that receives from it, so a channel
// implementation stays small. The in-memory channel ([NewInMemoryChannel]) is
// the default; durable implementations plug in with [WithChannels].
//
// Implementations must be safe for concurrent use.
type Channel interface {
	// Publish hands e to every subscription of the channel; each one gets
	// its own copy. It returns once the channel has accepted the event
	// (durably, for a durable channel) and takes ownership of e. It waits
	// for room while the channel is full and returns an error wrapping
	// [ErrFull] if ctx ends first, and [ErrClosed] after Close.
	Publish(ctx context.Context, e *event.Event) error

	// Subscribe adds a subscription and returns the receiver its workers
	// read from. Several receivers with the same name share the work (for
	// a durable channel, across processes too). Events published before a
	// subscription exists need not reach it.
	Subscribe(name string) (Receiver, error)

	// Close stops intake: Publish returns ErrClosed afterwards. Events
	// already accepted are still received; once each is acknowledged,
	// Receive returns ErrClosed. Close does not wait for that.
	Close() error
}

// A Receiver yields the messages of one subscription.
type Receiver interface {
	// Receive blocks until a message is available. It returns ErrClosed
	// once the channel is closed and every message of the subscription has
	// been acknowledged, and ctx.Err() when ctx ends first.
	Receive(ctx context.Context) (Message, error)
}

// A Message is one delivery of an event to a subscription. The receiver of a
// message must end it with exactly one call to Ack or Nack.
type Message interface {
	// Event is the event to deliver. The receiver owns it.
	Event() *event.Event
	// Attempt is the number of this delivery, starting at 1. A durable
	// channel takes it from the broker, so it survives restarts.
	Attempt() int
	// Ack ends the message: it was delivered, dead-lettered or given up.
	Ack() error
	// Nack asks for the message to be delivered again after delay, with
	// Attempt increased by one.
	Nack(delay time.Duration) error
}

// DefaultCapacity is the number of events an in-memory channel holds per
// subscription when no capacity is given.
const DefaultCapacity = 128

// InMemoryChannel is the default [Channel]: bounded queues in memory, one per
// subscription, as Knative's InMemoryChannel but without its HTTP hops.
//
// Each subscription may hold Capacity events that are accepted but not yet
// acknowledged (queued, being delivered, or waiting for a retry); Publish
// waits while any subscription is full, so a slow subscriber holds its
// producer back instead of growing memory. Events are received in the order
// they were published; an event that is retried goes back at the end.
// Nothing survives the process: use a durable channel for that.
type InMemoryChannel struct {
	capacity int

	mu     sync.RWMutex // held for reading while publishing, for writing to close
	subs   []*memQueue
	closed atomic.Bool
	abortC chan struct{} // closed by abort: unblocks waiting publishers
	abortO sync.Once
}

// NewInMemoryChannel returns an in-memory channel that holds up to capacity
// unacknowledged events per subscription; capacity <= 0 means DefaultCapacity.
func NewInMemoryChannel(capacity int) *InMemoryChannel {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &InMemoryChannel{capacity: capacity, abortC: make(chan struct{})}
}

// Publish implements [Channel]. A channel without subscriptions accepts and
// drops events, as a Knative channel does.
func (c *InMemoryChannel) Publish(ctx context.Context, e *event.Event) error {
	if e == nil {
		return fmt.Errorf("%w: publish of a nil event", ErrInvalidEvent)
	}
	return c.publish(ctx, e, envelopeFrom(ctx))
}

// publish is Publish with what travels beside the event, env, given
// directly rather than in ctx.
func (c *InMemoryChannel) publish(ctx context.Context, e *event.Event, env *envelope) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return ErrClosed
	}
	subs := c.subs
	if env != nil && env.reentry {
		// A broker's reply: its delivery holds a slot until it is in, so
		// waiting for room could deadlock the broker against itself.
		for _, q := range subs {
			q.used.Add(1)
		}
	} else {
		for i, q := range subs {
			if err := q.acquire(ctx, c.abortC); err != nil {
				for _, q := range subs[:i] {
					q.release()
				}
				return err
			}
		}
	}
	var cr carried
	if env != nil {
		cr = env.carried
		if cr.tr != nil {
			cr.tr.add(len(subs))
		}
	}
	var copies []ownedEvent
	if len(subs) > 2 {
		copies = copyEvents(*e, len(subs)-1)
	}
	for i, q := range subs {
		ev := e
		switch {
		case i == len(subs)-1:
		case copies != nil:
			ev = &copies[i].e
		default:
			ev = copyEvent(*e, true)
		}
		m := memMessages.Get().(*memMessage)
		*m = memMessage{e: ev, attempt: 1, q: q, carried: cr}
		if env != nil && env.reentry {
			q.push(m)
			continue
		}
		// Never blocks: the slot acquired above has room in the queue.
		q.arrive()
		q.queue() <- m
	}
	return nil
}

// Subscribe implements [Channel]. Receivers with the same name share one
// queue.
func (c *InMemoryChannel) Subscribe(name string) (Receiver, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	for _, q := range c.subs {
		if q.name == name {
			return q, nil
		}
	}
	q := &memQueue{
		ch:    c,
		name:  name,
		size:  int64(c.capacity),
		space: make(chan struct{}, c.capacity),
	}
	c.subs = append(c.subs, q)
	return q, nil
}

// Close implements [Channel]. It waits for publishers that are already
// inside Publish, so that no event is accepted after Close returns.
func (c *InMemoryChannel) Close() error {
	c.mu.Lock()
	if c.closed.Swap(true) {
		c.mu.Unlock()
		return nil
	}
	subs := c.subs
	c.mu.Unlock()
	for _, q := range subs {
		q.checkDrained()
	}
	return nil
}

// abort closes the channel at once for a hard stop: waiting publishers
// give up and later Nacks are kept aside as undelivered.
func (c *InMemoryChannel) abort() {
	c.abortO.Do(func() { close(c.abortC) })
	c.Close()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, q := range c.subs {
		q.abort()
	}
}

// undelivered removes and returns every event still held by the channel.
// It is called after a hard stop, once no worker runs any more.
func (c *InMemoryChannel) undelivered() []*memMessage {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*memMessage
	for _, q := range c.subs {
		out = append(out, q.takeAll()...)
	}
	return out
}

// memQueue is one subscription's queue. A slot is held by each event from
// Publish to Ack, so events waiting for a retry count against the capacity
// too and memory stays bounded however long the retries take.
//
// The slots are counted with atomics rather than a channel: taking and
// returning one is on every hop of every event, and a channel would add two
// locked operations there.
type memQueue struct {
	ch      *InMemoryChannel
	name    string
	size    int64         // the number of slots
	used    atomic.Int64  // slots held
	waiters atomic.Int64  // publishers waiting for a slot
	space   chan struct{} // tokens for waiting publishers: slots were returned
	// ready holds the messages to receive (made on first use, see queue).
	// It is closed once the channel is closed and no slot is held: nothing
	// can be sent to it any more, since every message holds a slot until
	// acknowledged. Receivers then learn that the subscription is drained
	// without watching another channel.
	ready   chan *memMessage
	readyO  sync.Once
	drainO  sync.Once
	drained atomic.Bool
	// dem, if set, runs the workers of a flow's subscription while the queue
	// has messages (see [demand]); nil for receivers that call Receive.
	dem atomic.Pointer[demand]

	mu        sync.Mutex // guards waiting, aborted, leftovers
	waiting   map[*memMessage]*time.Timer
	aborted   bool
	leftovers []*memMessage
}

func (q *memQueue) tryAcquire() bool {
	for {
		n := q.used.Load()
		if n >= q.size {
			return false
		}
		if q.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (q *memQueue) acquire(ctx context.Context, abort <-chan struct{}) error {
	if q.tryAcquire() {
		return nil
	}
	// Registered before trying again, so that a release in between sees
	// the waiter and leaves a token.
	q.waiters.Add(1)
	for {
		if q.tryAcquire() {
			q.waiters.Add(-1)
			return nil
		}
		select {
		case <-q.space:
			continue
		case <-abort:
			q.waiters.Add(-1)
			return ErrClosed
		case <-ctx.Done():
			q.waiters.Add(-1)
			if _, ok := ctx.(doneContext); ok {
				return fmt.Errorf("%w: subscription %q has no room", ErrFull, q.name)
			}
			return fmt.Errorf("%w: subscription %q: %w", ErrFull, q.name, context.Cause(ctx))
		}
	}
}

// signal leaves a token for a waiting publisher. The space channel has a
// buffer of one token per slot (free: its elements have no size), so a token
// is dropped only when there are already as many as slots.
func (q *memQueue) signal() {
	select {
	case q.space <- struct{}{}:
	default:
	}
}

func (q *memQueue) release() {
	if q.used.Add(-1); q.waiters.Load() > 0 {
		q.signal()
	}
	q.checkDrained()
}

func (q *memQueue) checkDrained() {
	if q.ch.closed.Load() && q.used.Load() == 0 {
		q.drainO.Do(func() {
			close(q.queue())
			q.drained.Store(true)
			if d := q.dem.Load(); d != nil {
				d.stop()
			}
		})
	}
}

// queue returns the ready channel, made on first use: a subscription that
// never gets an event then costs no buffer (one slot per event of capacity).
func (q *memQueue) queue() chan *memMessage {
	q.readyO.Do(func() { q.ready = make(chan *memMessage, q.size) })
	return q.ready
}

// arrive tells the queue's workers, if started on demand, that a message
// is about to be queued. It is called before the message is sent, while
// the message holds its slot, so that the queue cannot be found drained in
// between.
func (q *memQueue) arrive() {
	if d := q.dem.Load(); d != nil {
		d.arrive()
	}
}

// poll takes a message without waiting; empty reports that there was none,
// ok false that the queue is drained.
func (q *memQueue) poll() (m *memMessage, ok, empty bool) {
	select {
	case m, ok = <-q.queue():
		if ok {
			q.taken()
		}
		return m, ok, false
	default:
		return nil, false, true
	}
}

func (q *memQueue) taken() {
	if d := q.dem.Load(); d != nil {
		d.pending.Add(-1)
	}
}

// Receive implements [Receiver].
func (q *memQueue) Receive(ctx context.Context) (Message, error) {
	var m *memMessage
	var ok bool
	ready := q.queue()
	select {
	case m, ok = <-ready:
	default:
		select {
		case m, ok = <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, ErrClosed
	}
	q.taken()
	return m, nil
}

func (q *memQueue) redeliver(m *memMessage, delay time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.aborted {
		q.leftovers = append(q.leftovers, m)
		return
	}
	if delay <= 0 {
		q.push(m)
		return
	}
	if q.waiting == nil {
		q.waiting = make(map[*memMessage]*time.Timer)
	}
	q.waiting[m] = time.AfterFunc(delay, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if _, ok := q.waiting[m]; ok {
			delete(q.waiting, m)
			q.push(m)
		}
	})
}

// push queues m, which holds a slot. There is room in q.ready unless a
// broker's replies took slots beyond the capacity (see [Broker]): then a
// goroutine waits for room, since waiting here could deadlock the
// receivers that would make it.
func (q *memQueue) push(m *memMessage) {
	q.arrive()
	ready := q.queue()
	select {
	case ready <- m:
	default:
		go func() {
			select {
			case ready <- m:
			case <-q.ch.abortC:
				q.mu.Lock()
				q.leftovers = append(q.leftovers, m)
				q.mu.Unlock()
			}
		}()
	}
}

func (q *memQueue) abort() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.aborted = true
	for m, t := range q.waiting {
		t.Stop()
		q.leftovers = append(q.leftovers, m)
	}
	q.waiting = nil
}

func (q *memQueue) takeAll() []*memMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.leftovers
	q.leftovers = nil
	for {
		select {
		case m, ok := <-q.queue():
			if !ok {
				return out
			}
			out = append(out, m)
		default:
			return out
		}
	}
}

type memMessage struct {
	e       *event.Event
	attempt int
	q       *memQueue
	carried
	done bool
}

// memMessages recycles the messages that a flow's own subscriptions are
// done with (see [memMessage.recycle]); a message received by anyone else
// is never reused, so a stray second Ack cannot reach another message.
var memMessages = sync.Pool{New: func() any { return new(memMessage) }}

// recycle is called by a flow's subscription once it is done with m. Once
// m has been acknowledged or nacked, nothing else refers to it: a nacked
// event travels on in a new message.
func (m *memMessage) recycle() {
	if m.done {
		*m = memMessage{}
		memMessages.Put(m)
	}
}

func (m *memMessage) Event() *event.Event { return m.e }
func (m *memMessage) Attempt() int        { return m.attempt }
func (m *memMessage) envelope() envelope  { return envelope{carried: m.carried} }

func (m *memMessage) Ack() error {
	if m.done {
		return errors.New("flows: message acknowledged twice")
	}
	m.done = true
	// Release first, so that a Handle that returns sees the queue empty.
	m.q.release()
	if m.tr != nil {
		m.tr.finish()
	}
	return nil
}

func (m *memMessage) Nack(delay time.Duration) error {
	if m.done {
		return errors.New("flows: message acknowledged twice")
	}
	m.done = true
	// The next delivery is a new message, so that m stays its receiver's
	// until recycled, whoever receives the event next.
	next := &memMessage{e: m.e, attempt: m.attempt + 1, q: m.q, carried: m.carried}
	m.q.redeliver(next, delay)
	return nil
}

// tracker follows one event through a flow for [Flow.Handle]: it counts the
// messages the event has become in in-memory channels, and is done when the
// last one is acknowledged.
type tracker struct {
	pending atomic.Int64
	done    chan struct{}
	mu      sync.Mutex
	err     error
	out     *outputs // set for a Flow.Request: where the event's ends go
}

func (t *tracker) init() {
	t.done = make(chan struct{})
	t.pending.Store(1) // the sender's own reference, dropped after Publish
}

func (t *tracker) add(n int) { t.pending.Add(int64(n)) }

func (t *tracker) finish() {
	if t.pending.Add(-1) == 0 {
		close(t.done)
	}
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.err = errors.Join(t.err, err)
}

func (t *tracker) result() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// envelope is what travels beside an event inside the process: the tracker
// of a synchronous sender, and the pass-through headers of the HTTP request
// that brought it (see [PassThroughHeaders]). Channels that cannot carry
// it (a durable one) drop it: the sender then does not wait and headers
// stop at the channel.
type envelope struct {
	carried
	// replyHeader is filled by an HTTP subscriber with the pass-through
	// headers of its response, for the reply hop, when wantReplyHeader is
	// set: only for the subscriber's own call, since handlers may pass
	// their context to several HTTP targets at once.
	replyHeader     http.Header
	wantReplyHeader bool
	// reentry marks a broker's reply, published into the channel it came
	// from: it does not wait for room (see [Broker]).
	reentry bool
	// out hands a Flow.Request's outputs to a nested flow (see follow).
	out *outputs
}

// carried is what an event carries from hop to hop inside the process,
// kept by its in-memory messages and copied whole from one hop's envelope
// to the next, so that a field added here reaches every hop.
type carried struct {
	tr     *tracker    // the synchronous sender's, if any
	header http.Header // pass-through headers of the HTTP request that brought it
	// ttl is the broker TTL of an event a Trigger handed to a flow, which
	// the flow's events carry on (0: none), so that a reply entering a
	// broker from that flow counts down from it rather than starting again
	// (see [Broker]).
	ttl int32
}

// zero reports whether c carries nothing.
func (c *carried) zero() bool { return c.tr == nil && c.header == nil && c.ttl == 0 }

type envelopeKey struct{}

func withEnvelope(ctx context.Context, env *envelope) context.Context {
	return context.WithValue(ctx, envelopeKey{}, env)
}

func envelopeFrom(ctx context.Context) *envelope {
	env, _ := ctx.Value(envelopeKey{}).(*envelope)
	return env
}

// envelopeOf returns what a message carries beside its event, if its
// channel keeps anything.
func envelopeOf(m Message) envelope {
	if mm, ok := m.(*memMessage); ok {
		return mm.envelope()
	}
	if em, ok := m.(interface{ envelope() envelope }); ok {
		return em.envelope()
	}
	return envelope{}
}

// channelSink is the Handler that publishes to a channel: the reply
// destination of a step that feeds another channel.
type channelSink struct {
	ch   Channel
	name string
	mem  *InMemoryChannel // ch, if it is one: the reply hop publishes to it directly
}

func newChannelSink(ch Channel, name string) channelSink {
	mem, _ := ch.(*InMemoryChannel)
	return channelSink{ch: ch, name: name, mem: mem}
}

func (s channelSink) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	if err := s.ch.Publish(ctx, &e); err != nil {
		return nil, Permanent(err)
	}
	return nil, nil
}
