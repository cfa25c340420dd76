package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Pulls ask the consumer for as many messages as Receive calls are waiting,
// plus the prefetch (none by default): a message fetched is one this
// process must deliver or leave to expire, and other processes cannot have
// it meanwhile.
const (
	pullExpiry    = 5 * time.Second // how long one pull waits on the server
	pullHeartbeat = time.Second     // lets a pull notice a lost server in 2s
	maxPullBatch  = 256
)

// receiver is one subscription of one Channel handle. A single goroutine,
// pump, fetches messages from the durable consumer while Receive calls are
// waiting, so that a Receive that gives up never leaves a pull request
// behind that would take a message nobody reads.
type receiver struct {
	c    *Channel
	name string
	cons natsjs.Consumer
	// every is how often a message is reported in progress: a third of the
	// consumer's ack wait.
	every time.Duration

	wake     chan struct{} // cap 1: a Receive call is waiting
	pumpDone chan struct{} // closed when pump has returned

	mu      sync.Mutex
	waiters []chan result // Receive calls waiting, oldest first
	ready   []*message    // fetched, not handed out yet
	errs    []error       // malformed messages not yet reported, oldest first
	handed  int           // handed out, not yet acknowledged
	stopped bool          // pump has returned
	broken  error         // the connection is closed for good
	drained chan struct{} // closed once stopped with nothing in flight

	flushOnce sync.Once
}

type result struct {
	m   *message
	err error
}

func newReceiver(c *Channel, name string, cons natsjs.Consumer) *receiver {
	// The ack wait the server applies, which WithConsumerConfig may have
	// changed (directly, or through BackOff), not the channel's option.
	ackWait := c.cfg.ackWait
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait
	}
	return &receiver{
		c:        c,
		name:     name,
		cons:     cons,
		every:    ackWait / 3,
		wake:     make(chan struct{}, 1),
		pumpDone: make(chan struct{}),
		drained:  make(chan struct{}),
	}
}

// Receive implements [flows.Receiver].
func (r *receiver) Receive(ctx context.Context) (flows.Message, error) {
	r.mu.Lock()
	if len(r.errs) > 0 {
		err := r.errs[0]
		r.errs = r.errs[1:]
		r.mu.Unlock()
		return nil, err
	}
	if len(r.ready) > 0 {
		m := r.ready[0]
		r.ready = r.ready[1:]
		r.handed++
		m.handOut()
		r.mu.Unlock()
		if r.c.cfg.prefetch > 0 {
			r.wakePump()
		}
		return m, nil
	}
	if r.isDrained() {
		r.mu.Unlock()
		return nil, r.closedErr()
	}
	if r.broken != nil {
		r.mu.Unlock()
		return nil, r.broken
	}
	w := make(chan result, 1)
	r.waiters = append(r.waiters, w)
	drained := r.drained
	r.mu.Unlock()
	r.wakePump()

	select {
	case res := <-w:
		return r.deliver(res)
	case <-drained:
		r.mu.Lock()
		r.removeWaiter(w)
		r.mu.Unlock()
		return nil, r.closedErr()
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removeWaiter(w) {
		return nil, ctx.Err()
	}
	// The pump handed w a result just as ctx ended: give a message back
	// to the next caller, so that nothing is left unread.
	if res := <-w; res.m != nil {
		r.handed--
		res.m.handed.Store(false)
		r.ready = slices.Insert(r.ready, 0, res.m)
		r.dispatch()
	}
	return nil, ctx.Err()
}

func (r *receiver) wakePump() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *receiver) deliver(res result) (flows.Message, error) {
	if res.err != nil {
		return nil, res.err
	}
	return res.m, nil
}

// closedErr reports the end of the subscription, after making sure that
// the acknowledgements sent so far have reached the server.
func (r *receiver) closedErr() error {
	r.flushOnce.Do(func() {
		if nc := r.c.js.Conn(); nc != nil && !nc.IsClosed() {
			nc.FlushTimeout(attemptTimeout)
		}
	})
	return flows.ErrClosed
}

// removeWaiter removes w from the waiters and reports whether it was there.
func (r *receiver) removeWaiter(w chan result) bool {
	i := slices.Index(r.waiters, w)
	if i < 0 {
		return false
	}
	r.waiters = slices.Delete(r.waiters, i, i+1)
	return true
}

// dispatch hands ready messages to waiting Receive calls. r.mu is held.
func (r *receiver) dispatch() {
	for len(r.ready) > 0 && len(r.waiters) > 0 {
		w := r.waiters[0]
		r.waiters = r.waiters[1:]
		m := r.ready[0]
		m.handOut()
		w <- result{m: m}
		r.ready = r.ready[1:]
		r.handed++
	}
}

// isDrained reports whether the subscription is over for this handle: the
// channel is closed, the pump stopped, and no message is in flight. r.mu is
// held.
func (r *receiver) isDrained() bool {
	return r.stopped && len(r.ready) == 0 && r.handed == 0
}

func (r *receiver) checkDrained() {
	if r.isDrained() {
		select {
		case <-r.drained:
		default:
			close(r.drained)
		}
	}
}

// pump fetches messages while Receive calls wait for them, until the
// channel is closed.
func (r *receiver) pump() {
	defer close(r.pumpDone)
	defer func() {
		r.mu.Lock()
		r.stopped = true
		r.checkDrained()
		r.mu.Unlock()
	}()
	failures := 0
	for {
		r.mu.Lock()
		want := r.want()
		r.mu.Unlock()
		if r.c.closed.Load() {
			return
		}
		if want <= 0 {
			select {
			case <-r.wake:
				continue
			case <-r.c.closing:
				return
			}
		}
		err := r.pull(min(want, maxPullBatch))
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			// Nothing will bring this connection back: report it to
			// every caller from now on.
			r.fail(err)
			<-r.c.closing
			return
		}
		r.failOne(err)
		failures++
		select {
		case <-time.After(min(time.Duration(failures)*50*time.Millisecond, time.Second)):
		case <-r.c.closing:
			return
		}
	}
}

// want is how many messages the next pull asks for, or 0 while none is
// needed: enough for the waiting Receive calls and to refill the
// read-ahead, once it has fallen to half of the prefetch (pulling for each
// message taken would make a request per message). r.mu is held.
func (r *receiver) want() int {
	n := len(r.waiters) + r.c.cfg.prefetch - len(r.ready)
	if len(r.waiters) == 0 && 2*len(r.ready) > r.c.cfg.prefetch {
		return 0
	}
	return n
}

// pull makes one pull request for up to batch messages and hands out each
// message as it arrives.
func (r *receiver) pull(batch int) error {
	gen := r.c.breaks.Load()
	ctx, done := r.c.request(r.c.stopping, pullExpiry)
	defer done()
	b, err := r.cons.Fetch(batch, natsjs.FetchContext(ctx), natsjs.FetchHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("flows/jetstream: fetching from %q for %q: %w", r.c.stream, r.name, err)
	}
	for msg := range b.Messages() {
		m, err := r.wrap(msg)
		r.mu.Lock()
		if err != nil {
			r.report(err)
			r.mu.Unlock()
			continue
		}
		if r.c.breaks.Load() != gen {
			// Fetched before the connection was lost: see forget.
			r.mu.Unlock()
			m.drop()
			continue
		}
		r.ready = append(r.ready, m)
		r.dispatch()
		r.mu.Unlock()
	}
	if err := b.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("flows/jetstream: fetching from %q for %q: %w", r.c.stream, r.name, err)
	}
	return nil
}

// forget drops the messages read ahead that no Receive call has taken,
// when the connection is lost and again when it is re-established. Their
// keep-alive cannot reach the server meanwhile, and a server that restarts
// may not have kept it: the server may deliver them again, here or to
// another process, and handing them out from here too would handle them
// twice. They are left to the server, which delivers them again once their
// ack wait has passed. The channel's watch calls it after counting the
// break, so that pull drops what is still on its way.
func (r *receiver) forget() {
	r.mu.Lock()
	ready := r.ready
	r.ready = nil
	r.checkDrained()
	r.mu.Unlock()
	for _, m := range ready {
		m.drop()
	}
}

// maxUnreported bounds the errors about malformed messages kept for the
// next Receive calls; beyond it, the oldest are dropped.
const maxUnreported = 16

// report hands the error about a malformed message to the oldest waiting
// Receive call or, when the message was read ahead and nobody waits, to
// the next one: the flow logs it. r.mu is held.
func (r *receiver) report(err error) {
	if len(r.waiters) > 0 {
		w := r.waiters[0]
		r.waiters = r.waiters[1:]
		w <- result{err: err}
		return
	}
	if len(r.errs) == maxUnreported {
		r.errs = r.errs[1:]
	}
	r.errs = append(r.errs, err)
}

// failOne hands err to the oldest waiting Receive call, if any: the flow
// logs it and backs off.
func (r *receiver) failOne(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.waiters) > 0 {
		w := r.waiters[0]
		r.waiters = r.waiters[1:]
		w <- result{err: err}
	}
}

// fail hands err to every waiting Receive call, and to every later one.
func (r *receiver) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broken = err
	for _, w := range r.waiters {
		w <- result{err: err}
	}
	r.waiters = nil
}

// wrap decodes a fetched message. A message that is not a CloudEvent is
// terminated, so that it is not delivered again, and reported.
func (r *receiver) wrap(msg natsjs.Msg) (*message, error) {
	var e event.Event
	if err := decode(msg.Data(), &e); err != nil {
		msg.Term()
		seq := uint64(0)
		if md, mdErr := msg.Metadata(); mdErr == nil {
			seq = md.Sequence.Stream
		}
		return nil, fmt.Errorf("flows/jetstream: stream %q, message %d: not a CloudEvent, terminated: %w", r.c.stream, seq, err)
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 0 {
		attempt = int(md.NumDelivered)
	}
	m := &message{r: r, msg: msg, e: &e, attempt: attempt}
	m.keepAlive()
	return m, nil
}

// message is a [flows.Message] for a JetStream message.
type message struct {
	r       *receiver
	msg     natsjs.Msg
	e       *event.Event
	attempt int

	handed atomic.Bool // given to a Receive call
	done   atomic.Bool
	mu     sync.Mutex // guards timer against the keep-alive callback
	timer  *time.Timer
}

// handOut marks m as given to a Receive call. A message read ahead whose
// keep-alive paused at Close is kept alive again: its handler is running.
func (m *message) handOut() {
	m.handed.Store(true)
	if m.r.c.closed.Load() {
		m.mu.Lock()
		if !m.done.Load() {
			m.timer.Reset(m.r.every)
		}
		m.mu.Unlock()
	}
}

func (m *message) Event() *event.Event { return m.e }
func (m *message) Attempt() int        { return m.attempt }

// Ack implements [flows.Message]: the broker will not deliver the message
// again to this subscription.
func (m *message) Ack() error {
	return m.end("ack", m.msg.Ack)
}

// Nack implements [flows.Message]: the broker delivers the message again,
// to any receiver of the subscription, once delay has passed, even if this
// process is gone by then.
func (m *message) Nack(delay time.Duration) error {
	if delay <= 0 {
		return m.end("nak", m.msg.Nak)
	}
	return m.end("nak", func() error { return m.msg.NakWithDelay(delay) })
}

func (m *message) end(what string, send func() error) error {
	if !m.done.CompareAndSwap(false, true) {
		return errors.New("flows/jetstream: message acknowledged twice")
	}
	m.mu.Lock()
	m.timer.Stop()
	m.mu.Unlock()
	err := send()
	r := m.r
	r.mu.Lock()
	r.handed--
	r.checkDrained()
	r.mu.Unlock()
	if err != nil {
		// The broker will deliver the message again after the ack wait.
		return fmt.Errorf("flows/jetstream: %s of %s on %q: %w", what, m.e.ID(), r.c.stream, err)
	}
	return nil
}

// drop ends m without telling the server, which delivers it again once
// its ack wait has passed.
func (m *message) drop() {
	m.done.Store(true)
	m.mu.Lock()
	m.timer.Stop()
	m.mu.Unlock()
}

// keepAlive tells the broker, every third of the ack wait, that the
// message is still being worked on, until it is acknowledged. A report that
// fails (the connection is down) is not the end: the next one may get
// through in time. A message read ahead that no Receive call took by the
// time the channel is closed is left to expire, since nothing may ever take
// it, and the broker then delivers it elsewhere; if a Receive call takes it
// after all, handOut restarts its keep-alive.
func (m *message) keepAlive() {
	every := m.r.every
	m.mu.Lock()
	defer m.mu.Unlock()
	m.timer = time.AfterFunc(every, func() {
		if m.done.Load() || (!m.handed.Load() && m.r.c.closed.Load()) {
			return
		}
		m.msg.InProgress()
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.done.Load() {
			m.timer.Reset(every)
		}
	})
}
