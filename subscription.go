package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"golang.org/x/time/rate"
)

// subscription is Knative's Subscription: it takes events from a channel,
// delivers each to a subscriber under a delivery policy, forwards the
// subscriber's reply to a reply destination, and sends what cannot be
// delivered to the dead-letter sink. It is the one place where delivery
// policy is applied, whatever the channel.
type subscription struct {
	name       string // the channel-level subscription name
	recv       Receiver
	subscriber Handler
	subDest    string // what knativeerrordest names when the subscriber fails
	reply      Handler
	replyDest  string
	delivery   *Delivery
	filterHop  bool // a Parallel filter: no retries, no dead letter (as Knative)
	// httpSubscriber is set when the subscriber exchanges pass-through
	// headers (an HTTPTarget).
	httpSubscriber bool
	workers        int
	log            *slog.Logger
	wg             sync.WaitGroup
	// flow and step name the subscription to the observer, if any.
	flow, step string
	obs        *Observer
	// A broker's Trigger: reentry says that the reply goes back into the
	// broker; acked, if set, is called after each Ack.
	reentry bool
	acked   func()
	// Flow control, set from the policy at start (for a Parallel's filter,
	// from its branch's): ordered by key, and a rate limit.
	ordered  bool
	orderKey OrderKey
	limiter  *rate.Limiter
}

// start launches the workers; they stop when the receiver is drained or ctx ends.
func (s *subscription) start(ctx context.Context) {
	n := max(s.workers, 1)
	ctx = withObserver(ctx, s.obs)
	if d := s.policy(); d != nil {
		if d.MaxInFlight > 0 {
			n = d.MaxInFlight
		}
		s.limiter = d.limiter()
		if d.ordered() {
			s.ordered, s.orderKey = true, d.OrderKey
		}
	}
	if s.ordered {
		s.startOrdered(ctx, n)
		return
	}
	if q, ok := s.recv.(*memQueue); ok && s.startOnDemand(ctx, q, n) {
		return
	}
	s.wg.Add(n)
	for range n {
		go s.work(ctx)
	}
}

// receive takes the next message. A durable channel may fail transiently:
// receive logs, backs off and tries again, so it returns an error only once
// the receiver is closed (ErrClosed) or ctx has ended.
func (s *subscription) receive(ctx context.Context) (Message, error) {
	for failures := 1; ; failures++ {
		m, err := s.recv.Receive(ctx)
		if err == nil || errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return m, err
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "flows: receive failed", slog.String("subscription", s.name), slog.Any("error", err))
		if !sleep(ctx, min(time.Duration(failures)*100*time.Millisecond, 5*time.Second)) {
			return nil, ctx.Err()
		}
	}
}

func (s *subscription) work(ctx context.Context) {
	defer s.wg.Done()
	for {
		m, err := s.receive(ctx)
		if err != nil {
			return
		}
		if ctx.Err() != nil {
			// Stopped hard while a message was ready: leave it undelivered.
			m.Nack(0)
			return
		}
		s.process(ctx, m, m.Attempt())
		if mm, ok := m.(*memMessage); ok {
			mm.recycle()
		}
	}
}

// demand runs the workers of a subscription on an in-memory queue only
// while the queue has messages: a worker is started when a message arrives
// and fewer than max run, and retires once it finds the queue empty. An
// idle subscription then holds no goroutine (10,000 idle flows would
// otherwise park 30,000).
//
// A worker retires by decrementing running and then reading pending; a
// message arrives by incrementing pending and then reading running. So
// either the retiring worker sees the message and stays, or the arrival
// sees the worker gone and starts another: no message is left without one.
//
// The subscription's wg counts the workers, plus one for the subscription
// itself until the queue is drained or ctx ends (stop), so that a worker
// is never added to wg once Shutdown may have seen it reach zero.
//
// A waiting worker watches its queue and wake, nothing else: a timer of
// its own (or ctx.Done) in that select would cost timer and channel locks
// each time the queue empties, which a flow that keeps up with its input
// does once per message. Instead one timer per subscription ticks every
// linger while workers run; a tick that finds no message taken since the
// last one leaves a token in wake for each worker, and a worker that gets
// one while the queue is empty retires. A worker so retires after between
// one and two lingers without a message (a stale token may retire it
// sooner, which costs a goroutine start, never a message). A hard stop
// fills wake, so that every waiting worker sees it.
type demand struct {
	max     int32
	linger  time.Duration
	running atomic.Int32  // workers started and not retired
	pending atomic.Int64  // messages arrived and not yet taken
	taken   atomic.Uint64 // messages taken by the workers, for the ticks
	ctx     context.Context
	wg      *sync.WaitGroup
	run     func() // a worker's loop

	mu      sync.Mutex // guards what follows
	stopped bool
	ticking bool          // timer is set to tick
	seen    uint64        // taken at the last tick
	timer   *time.Timer   // made by the first worker
	wake    chan struct{} // made for the first worker
}

// startOnDemand starts s's workers on demand from q, unless q already
// serves another subscription (receivers with one name share a queue).
func (s *subscription) startOnDemand(ctx context.Context, q *memQueue, n int) bool {
	d := &demand{max: int32(n), linger: workerLinger, ctx: ctx, wg: &s.wg}
	d.run = func() { s.serve(ctx, q, d) }
	s.wg.Add(1) // the subscription's own count, see stop
	if !q.dem.CompareAndSwap(nil, d) {
		s.wg.Done()
		return false
	}
	context.AfterFunc(ctx, d.stop)
	if q.drained.Load() {
		d.stop()
	}
	return true
}

// arrive notes a message about to be queued and starts a worker if fewer
// than max run.
func (d *demand) arrive() {
	d.pending.Add(1)
	for {
		n := d.running.Load()
		if n >= d.max {
			return
		}
		if d.running.CompareAndSwap(n, n+1) {
			break
		}
	}
	d.mu.Lock()
	if d.stopped || d.ctx.Err() != nil {
		// Stopping: what is queued now stays for the drain's report.
		d.mu.Unlock()
		d.running.Add(-1)
		return
	}
	if d.wake == nil {
		// Before the first worker, so that a hard stop finds it.
		d.wake = make(chan struct{}, d.max)
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go d.run()
}

// retire ends a worker that found the queue empty, unless a message
// arrived meanwhile and no other worker can take it. After a hard stop no
// worker stays: what is queued is reported as undelivered.
func (d *demand) retire() bool {
	d.running.Add(-1)
	for d.pending.Load() > 0 && d.ctx.Err() == nil {
		n := d.running.Load()
		if n >= d.max {
			return true
		}
		if d.running.CompareAndSwap(n, n+1) {
			return false
		}
	}
	return true
}

// stop drops the subscription's own count in wg once: the queue is drained
// or the flow stops hard, so no worker is needed any more.
func (d *demand) stop() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped, d.ticking = true, false
	if d.timer != nil {
		d.timer.Stop()
	}
	if d.ctx.Err() != nil {
		// A hard stop: every waiting worker must see it. (Once drained,
		// the closed queue tells them.)
		signal(d.wake, int(d.max))
	}
	d.mu.Unlock()
	d.wg.Done()
}

// signal leaves up to n tokens in wake.
func signal(wake chan struct{}, n int) {
	for range n {
		select {
		case wake <- struct{}{}:
		default:
			return
		}
	}
}

// watch makes sure that the timer ticks while a worker runs: each worker
// calls it when it starts, or stays after all. It returns wake.
func (d *demand) watch() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ticking || d.stopped || d.linger <= 0 {
		return d.wake
	}
	d.ticking, d.seen = true, d.taken.Load()
	if d.timer == nil {
		d.timer = time.AfterFunc(d.linger, d.tick)
	} else {
		d.timer.Reset(d.linger)
	}
	return d.wake
}

// tick runs every linger while workers run: if none took a message since
// the last one, the waiting ones retire.
func (d *demand) tick() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ticking {
		return
	}
	n := d.running.Load()
	if n <= 0 {
		d.ticking = false
		return
	}
	if t := d.taken.Load(); t != d.seen {
		d.seen = t
	} else {
		signal(d.wake, int(n))
	}
	d.timer.Reset(d.linger)
}

// serve is a worker started on demand: it delivers messages until the
// queue is empty, drained, or ctx ends.
func (s *subscription) serve(ctx context.Context, q *memQueue, d *demand) {
	defer s.wg.Done()
	wake := d.watch()
	for {
		m, ok, empty := q.poll()
		if empty && d.linger > 0 {
			m, ok, empty = q.wait(wake)
		}
		if empty {
			if d.retire() {
				return
			}
			// A message is on its way (its publisher is between arrive
			// and the send): let it finish.
			d.watch()
			runtime.Gosched()
			continue
		}
		if !ok {
			d.running.Add(-1)
			return
		}
		d.taken.Add(1)
		if ctx.Err() != nil {
			// Stopped hard while a message was ready: leave it undelivered.
			m.Nack(0)
			d.running.Add(-1)
			return
		}
		s.process(ctx, m, m.attempt)
		m.recycle()
	}
}

// workerLinger is how long a worker started on demand waits for another
// message before it retires (see [demand]): long enough that a steady
// trickle of events (one in flight at a time, say) keeps its workers and
// their grown stacks, short enough that idle flows soon hold none. Zero
// retires a worker as soon as its queue is empty.
// A variable for the tests, read when a subscription starts.
var workerLinger = 100 * time.Millisecond

// wait waits for a message, as poll reports it, or a token in wake.
func (q *memQueue) wait(wake <-chan struct{}) (m *memMessage, ok, empty bool) {
	select {
	case m, ok = <-q.queue():
		if ok {
			q.taken()
		}
		return m, ok, false
	case <-wake:
		return nil, false, true
	}
}

// process delivers one message as the given attempt and ends it with Ack
// or Nack.
func (s *subscription) process(ctx context.Context, m Message, attempt int) {
	s.end(m, s.attempt(ctx, m, attempt))
}

// attempt makes attempt number n of m, after the rate limit if any.
func (s *subscription) attempt(ctx context.Context, m Message, n int) result {
	if s.limiter != nil && !s.waitRate(ctx) {
		return result{outcome: OutcomeStopped, err: ctx.Err()}
	}
	var di *DeliveryInfo
	var done func()
	// One decision for the delivery and the hops that follow it.
	o := s.obs.active(ctx)
	if o != nil && o.Deliver != nil {
		di = &DeliveryInfo{Flow: s.flow, Step: s.step, Subscription: s.name, Destination: s.subDest,
			Attempt: n, MaxAttempts: s.policy().attempts(), Event: m.Event()}
		ctx, done = o.Deliver(ctx, di)
	}
	r := s.deliverMessage(ctx, m, n, o)
	if done != nil {
		// Before the Ack, so that a Flow.Handle that returns finds it done.
		di.Outcome, di.Err, di.Wait, di.Forwarded = r.outcome, r.err, r.wait, r.forwarded
		done()
	}
	return r
}

// end ends m as r says: Nack for a retry or a hard stop, Ack otherwise.
func (s *subscription) end(m Message, r result) {
	switch r.outcome {
	case OutcomeRetried:
		m.Nack(r.wait)
	case OutcomeStopped:
		m.Nack(0)
	default:
		m.Ack()
		if s.acked != nil {
			s.acked()
		}
	}
}

// result is how deliverMessage ended, for process and the observer.
type result struct {
	outcome   Outcome
	err       error
	wait      time.Duration
	forwarded bool
}

func (s *subscription) policy() *Delivery {
	if s.filterHop {
		return nil
	}
	return s.delivery
}

// observe describes a handler call to o, or is nil when o is.
func (s *subscription) observe(o *Observer, role Role, dest string) *hop {
	if o == nil {
		return nil
	}
	if role == RoleDeadLetter {
		dest = destination(s.delivery.DeadLetter, s.flow+"/"+s.step+".delivery.deadLetter")
	}
	return &hop{o: o, a: AttemptInfo{Flow: s.flow, Step: s.step, Role: role, Destination: dest}}
}

// deliverMessage makes one attempt of m and the hop that follows it: the
// reply, or the dead-letter sink once the attempts are exhausted. o, if not
// nil, observes the calls.
func (s *subscription) deliverMessage(ctx context.Context, m Message, attempt int, o *Observer) result {
	e := m.Event()
	env := envelopeOf(m)
	tr := env.tr
	out := tr.outputs() // a Flow.Request's, or nil (see request.go)
	d := s.policy()

	in := *e
	if d.attempts() > attempt || (d != nil && d.DeadLetter != nil) {
		// A retry or the dead-letter sink may need the event as it was.
		in = *copyEvent(*e, true)
	}
	hctx := ctx
	var henv *envelope
	// The subscriber's own hops carry on what the event carries, but
	// the tracker: the flow waits for this call, not for what it sends on.
	inner := env.carried
	inner.tr = nil
	if !inner.zero() || s.httpSubscriber || out != nil {
		// Only HTTP subscribers read and answer pass-through headers;
		// others get them for their own hops.
		henv = &envelope{carried: inner, wantReplyHeader: s.httpSubscriber, out: s.follows(out)}
		hctx = withEnvelope(ctx, henv)
	}
	var reply *event.Event
	var err error
	if h := s.observe(o, RoleSubscriber, s.subDest); h != nil {
		h.a.Attempt, h.a.MaxAttempts = attempt, d.attempts()
		reply, err = observedCall(hctx, h.o, &h.a, s.subscriber, in, d)
	} else {
		reply, err = call(hctx, s.subscriber, in, d)
	}
	dest, attempts, replyFailed := s.subDest, attempt, false
	forwarded := false
	if err == nil && reply != nil && (s.reply != nil || out != nil) {
		// As at an ingress, before it goes anywhere: an invalid reply is
		// the subscriber's failure, and it would answer the same again.
		if verr := checkEvent(reply); verr != nil {
			err = Permanent(fmt.Errorf("%w: the reply of %s: %w", ErrInvalidEvent, s.subDest, verr))
		}
	}
	var end *event.Event // the reply, if it leaves the request's flows
	if out != nil && err == nil && reply != nil && s.leaves() {
		end = copyEvent(*reply, false)
	}
	if err == nil && reply != nil && s.reply != nil {
		rctx, c := ctx, env.carried
		if s.httpSubscriber {
			// As Knative: the reply hop carries the subscriber's response headers.
			c.header = henv.replyHeader
		}
		if cs, ok := s.reply.(channelSink); ok && cs.mem != nil {
			// The envelope straight to the channel: no context to carry it.
			attempts = 1
			hp := s.observe(o, RoleReply, s.replyDest)
			if hp != nil && hp.o.Publish != nil {
				hp.o.Publish(ctx, cs.name, reply)
			}
			err = cs.mem.publish(ctx, reply, &envelope{carried: c})
		} else {
			if !c.zero() {
				rctx = withEnvelope(ctx, &envelope{carried: c, out: follow(s.reply, out)})
			}
			attempts, err = deliver(rctx, hopTarget(s.reply), reply, d, s.observe(o, RoleReply, s.replyDest))
		}
		dest, replyFailed = s.replyDest, err != nil
		_, forwarded = s.reply.(channelSink)
		forwarded = forwarded || s.reentry
	}
	if end != nil && err == nil {
		out.add(end)
	}
	switch {
	case err == nil && reply == nil && s.filterHop:
		return result{outcome: OutcomeFiltered}
	case err == nil:
		return result{outcome: OutcomeDelivered, forwarded: forwarded}
	case ctx.Err() != nil, replyFailed && s.reentry && errors.Is(err, ErrClosed):
		// A hard stop cancelled the attempt (or, for a broker's Trigger, the
		// drain closed the channel its reply re-enters): the event is not
		// delivered; the channel keeps it (or reports it as undelivered).
		return result{outcome: OutcomeStopped, err: err}
	case !replyFailed && retryable(err) && attempt < d.attempts():
		wait := d.wait(attempt, err)
		s.log.LogAttrs(ctx, slog.LevelDebug, "flows: attempt failed, will retry",
			slog.String("subscription", s.name), slog.String("id", e.ID()),
			slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.Any("error", err))
		return result{outcome: OutcomeRetried, err: err, wait: wait}
	}

	if d != nil && d.DeadLetter != nil {
		dl := deadLetterEvent(e, dest, err)
		_, dlErr := deliver(withEnvelope(ctx, &envelope{carried: env.carried}), hopTarget(d.DeadLetter), &dl, d, s.observe(o, RoleDeadLetter, ""))
		if dlErr == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "flows: event sent to the dead-letter sink",
				slog.String("subscription", s.name), slog.String("id", e.ID()),
				slog.String("destination", dest), slog.Int("attempts", attempts), slog.Any("error", err))
			return result{outcome: OutcomeDeadLettered, err: err}
		}
		if ctx.Err() != nil {
			return result{outcome: OutcomeStopped, err: err}
		}
		err = fmt.Errorf("%w; dead-letter sink failed: %w", err, dlErr)
	}
	derr := &DeliveryError{Destination: dest, Attempts: attempts, Err: err}
	s.log.LogAttrs(ctx, slog.LevelError, "flows: event not delivered",
		slog.String("subscription", s.name), slog.String("id", e.ID()), slog.Any("error", derr))
	if tr != nil {
		tr.fail(derr)
	}
	return result{outcome: OutcomeFailed, err: derr}
}

// hop is what deliver tells the observer about the calls it makes.
type hop struct {
	o *Observer
	a AttemptInfo
}

// deliver sends e to h, retrying inline under d. It is used for the hops
// that follow a successful delivery (the reply, the dead-letter sink), so
// the subscriber is never called twice for one event because of them.
//
// hp, if not nil, reports each call to its observer.
func deliver(ctx context.Context, h Handler, e *event.Event, d *Delivery, hp *hop) (attempts int, err error) {
	if cs, ok := h.(channelSink); ok {
		if hp != nil && hp.o.Publish != nil {
			hp.o.Publish(ctx, cs.name, e)
		}
		// Publishing is not retried: it fails only on shutdown.
		return 1, cs.ch.Publish(ctx, e)
	}
	max := d.attempts()
	for n := 1; ; n++ {
		in := *e
		if n < max {
			in = *copyEvent(*e, true)
		}
		if hp != nil {
			hp.a.Attempt, hp.a.MaxAttempts = n, max
			_, err = observedCall(ctx, hp.o, &hp.a, h, in, d)
		} else {
			_, err = call(ctx, h, in, d)
		}
		if err == nil || ctx.Err() != nil || !retryable(err) || n >= max {
			return n, err
		}
		if !sleep(ctx, d.wait(n, err)) {
			return n, err
		}
	}
}

// call makes one attempt: it applies the attempt timeout and turns a panic
// into a PanicError, because a handler's panic must fail its delivery, not
// the process.
func call(ctx context.Context, h Handler, e event.Event, d *Delivery) (reply *event.Event, err error) {
	if d != nil && d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			reply, err = nil, &PanicError{Value: r, Stack: debug.Stack()}
		}
		if err != nil && d != nil && d.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) &&
			(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			// The handler stopped because of the timeout. (One that finished
			// its work late did it all the same: its success stands, so that
			// a known success is never delivered twice, and its own error is
			// reported as it is.)
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, d.Timeout, err)
		}
	}()
	return h.Handle(ctx, e)
}

// sleep waits for d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
