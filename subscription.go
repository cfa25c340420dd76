package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
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
}

// start launches the workers; they stop when the receiver is drained or ctx ends.
func (s *subscription) start(ctx context.Context) {
	n := max(s.workers, 1)
	s.wg.Add(n)
	for range n {
		go s.work(ctx)
	}
}

func (s *subscription) work(ctx context.Context) {
	defer s.wg.Done()
	var receiveFailures int
	for {
		m, err := s.recv.Receive(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return
			}
			// A durable channel may fail transiently; back off and try again.
			receiveFailures++
			s.log.LogAttrs(ctx, slog.LevelWarn, "flows: receive failed", slog.String("subscription", s.name), slog.Any("error", err))
			if !sleep(ctx, min(time.Duration(receiveFailures)*100*time.Millisecond, 5*time.Second)) {
				return
			}
			continue
		}
		receiveFailures = 0
		if ctx.Err() != nil {
			// Stopped hard while a message was ready: leave it undelivered.
			m.Nack(0)
			return
		}
		s.process(ctx, m)
		if mm, ok := m.(*memMessage); ok {
			mm.recycle()
		}
	}
}

// process delivers one message and ends it with Ack or Nack.
func (s *subscription) process(ctx context.Context, m Message) {
	e := m.Event()
	attempt := m.Attempt()
	env := envelopeOf(m)
	tr := env.tr
	d := s.delivery
	if s.filterHop {
		d = nil
	}

	in := *e
	if d.attempts() > attempt || (d != nil && d.DeadLetter != nil) {
		// A retry or the dead-letter sink may need the event as it was.
		in = e.Clone()
	}
	hctx := ctx
	var henv *envelope
	if env.header != nil || s.httpSubscriber {
		// Only HTTP subscribers read and answer pass-through headers;
		// others get them for their own hops.
		henv = &envelope{header: env.header}
		hctx = withEnvelope(ctx, henv)
	}
	reply, err := call(hctx, s.subscriber, in, d)
	dest, attempts, replyFailed := s.subDest, attempt, false
	if err == nil && reply != nil && s.reply != nil {
		rctx, header := ctx, env.header
		if s.httpSubscriber {
			// As Knative: the reply hop carries the subscriber's response headers.
			header = henv.replyHeader
		}
		if tr != nil || header != nil {
			rctx = withEnvelope(ctx, &envelope{tr: tr, header: header})
		}
		attempts, err = deliver(rctx, s.reply, reply, d)
		dest, replyFailed = s.replyDest, err != nil
	}
	switch {
	case err == nil:
		m.Ack()
		return
	case ctx.Err() != nil:
		// A hard stop cancelled the attempt: the event is not delivered; the
		// channel keeps it (or reports it as undelivered).
		m.Nack(0)
		return
	case !replyFailed && retryable(err) && attempt < d.attempts():
		wait := d.wait(attempt, err)
		s.log.LogAttrs(ctx, slog.LevelDebug, "flows: attempt failed, will retry",
			slog.String("subscription", s.name), slog.String("id", e.ID()),
			slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.Any("error", err))
		m.Nack(wait)
		return
	}

	if d != nil && d.DeadLetter != nil {
		dl := deadLetterEvent(e, dest, err)
		_, dlErr := deliver(withEnvelope(ctx, &envelope{tr: tr, header: env.header}), d.DeadLetter, &dl, d)
		if dlErr == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "flows: event sent to the dead-letter sink",
				slog.String("subscription", s.name), slog.String("id", e.ID()),
				slog.String("destination", dest), slog.Int("attempts", attempts), slog.Any("error", err))
			m.Ack()
			return
		}
		if ctx.Err() != nil {
			m.Nack(0)
			return
		}
		err = fmt.Errorf("%w; dead-letter sink failed: %w", err, dlErr)
	}
	derr := &DeliveryError{Destination: dest, Attempts: attempts, Err: err}
	s.log.LogAttrs(ctx, slog.LevelError, "flows: event not delivered",
		slog.String("subscription", s.name), slog.String("id", e.ID()), slog.Any("error", derr))
	if tr != nil {
		tr.fail(derr)
	}
	m.Ack()
}

// deliver sends e to h, retrying inline under d. It is used for the hops
// that follow a successful delivery (the reply, the dead-letter sink), so
// the subscriber is never called twice for one event because of them.
func deliver(ctx context.Context, h Handler, e *event.Event, d *Delivery) (attempts int, err error) {
	if cs, ok := h.(channelSink); ok {
		// Publishing is not retried: it fails only on shutdown.
		return 1, cs.ch.Publish(ctx, e)
	}
	max := d.attempts()
	for n := 1; ; n++ {
		in := *e
		if n < max {
			in = e.Clone()
		}
		_, err = call(ctx, h, in, d)
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
		if d != nil && d.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Late success counts as a failure, as an HTTP client timeout would.
			reply, err = nil, fmt.Errorf("%w after %s: %w", ErrTimeout, d.Timeout, errors.Join(err, context.DeadlineExceeded))
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
