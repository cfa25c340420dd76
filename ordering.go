package flows

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// DeliveryOrder selects how a subscription orders its deliveries; its values
// are those of Knative's kafka.eventing.knative.dev/delivery.order annotation.
type DeliveryOrder string

const (
	// DeliveryUnordered delivers events as workers are free, up to the
	// subscription's concurrency; a retried event goes back to its channel
	// and falls behind the others. This is the zero value's meaning.
	DeliveryUnordered DeliveryOrder = "unordered"

	// DeliveryOrdered delivers the events of one key ([Delivery.OrderKey],
	// by default the partitionkey extension) one at a time, in the order the subscription
	// received them: a failed event is retried before the next event of its
	// key is delivered, and holds back only the events of its key. Events
	// of different keys run concurrently, up to the subscription's
	// concurrency ([Delivery.MaxInFlight] or [WithConcurrency]); events
	// without a key are delivered unordered.
	//
	// An event waiting behind its key keeps its place in the channel's
	// capacity, so memory stays bounded and senders are held back as
	// usual. The order holds within one process: on a durable channel
	// shared by several processes each process orders what it receives,
	// and a message the broker redelivers (after a crash, say) may come
	// after later events of its key. The retries of a keyed event are made
	// in the process, not through the channel, so a durable channel does
	// not keep their count across a crash.
	DeliveryOrdered DeliveryOrder = "ordered"
)

// ExtensionPartitionKey is the CloudEvents partitioning extension: the
// default key of [DeliveryOrdered].
const ExtensionPartitionKey = "partitionkey"

// PartitionKey returns the partitionkey extension of e in its string form,
// or "" if it has none: the default key of [DeliveryOrdered].
func PartitionKey(e event.Event) string {
	k, _ := lookupAttr(&e, ExtensionPartitionKey)
	return k
}

// An OrderKey says what key [DeliveryOrdered] orders an event by: an
// attribute ([OrderKeyAttribute]) or a function of the event
// ([OrderKeyFunc]). The zero OrderKey is the partitionkey extension. It is
// comparable, so that a [Delivery] stays comparable.
type OrderKey struct {
	attribute string
	fn        *func(event.Event) string
}

// OrderKeyAttribute keys events by a context attribute or extension
// (lower case, as Knative's filters name them: "subject", "tenant"), in
// its string form; an event without it has no key.
func OrderKeyAttribute(name string) OrderKey { return OrderKey{attribute: name} }

// OrderKeyFunc keys events by what f returns; "" means no key.
func OrderKeyFunc(f func(event.Event) string) OrderKey {
	if f == nil {
		return OrderKey{}
	}
	return OrderKey{fn: &f}
}

// Key returns the key of e; "" means that e has none.
func (k OrderKey) Key(e event.Event) string { return k.key(&e) }

func (k OrderKey) key(e *event.Event) string {
	if k.fn != nil {
		return (*k.fn)(*e)
	}
	name := k.attribute
	if name == "" {
		name = ExtensionPartitionKey
	}
	v, _ := lookupAttr(e, name)
	return v
}

func (d *Delivery) ordered() bool { return d != nil && d.Order == DeliveryOrdered }

func (d *Delivery) validateFlowControl(p *problems, path string) {
	switch d.Order {
	case "", DeliveryUnordered, DeliveryOrdered:
	default:
		p.add(path+".order", "must be %q or %q, got %q", DeliveryUnordered, DeliveryOrdered, d.Order)
	}
	if d.OrderKey != (OrderKey{}) && d.Order != DeliveryOrdered {
		p.add(path+".orderKey", "is set but order is not %q", DeliveryOrdered)
	}
	if a := d.OrderKey.attribute; a != "" && !validAttrName(a) {
		p.add(path+".orderKey", "attribute name %q must be lower-case letters and digits, starting with a letter", a)
	}
	if d.MaxInFlight < 0 {
		p.add(path+".maxInFlight", "must be >= 0, got %d", d.MaxInFlight)
	}
	if !(d.RateLimit >= 0) { // NaN included
		p.add(path+".rateLimit", "must be >= 0 events per second, got %v", d.RateLimit)
	}
	if d.RateBurst < 0 {
		p.add(path+".rateBurst", "must be >= 0, got %d", d.RateBurst)
	} else if d.RateBurst > 0 && !(d.RateLimit > 0) {
		p.add(path+".rateBurst", "is set but rateLimit is not")
	}
}

// keyed is the dispatcher of an ordered subscription. One goroutine
// receives; per key it lets one message through to the workers and keeps
// the later ones in a FIFO until it is done. A message that is retried
// keeps its key meanwhile and comes back to the workers after its wait.
type keyed struct {
	key  OrderKey
	work chan keyedItem // messages whose turn it is
	done chan struct{}  // closed once the receiver is drained and every message ended

	mu      sync.Mutex
	keys    map[string][]Message // keys in flight or retrying → the messages waiting behind
	open    int                  // messages received and not yet ended
	closing bool                 // the receiver is drained
}

type keyedItem struct {
	m       Message
	key     string
	attempt int
}

func (s *subscription) startOrdered(ctx context.Context, n int) {
	k := &keyed{key: s.orderKey, work: make(chan keyedItem), done: make(chan struct{}), keys: make(map[string][]Message)}
	s.wg.Add(n + 1)
	go s.dispatch(ctx, k)
	for range n {
		go s.workKeyed(ctx, k)
	}
}

// dispatch receives messages and hands each to the workers once its key is free.
func (s *subscription) dispatch(ctx context.Context, k *keyed) {
	defer s.wg.Done()
	for {
		m, err := s.receive(ctx)
		if errors.Is(err, ErrClosed) {
			k.mu.Lock()
			k.closing = true
			if k.open == 0 {
				close(k.done)
			}
			k.mu.Unlock()
			return
		}
		if err != nil {
			return
		}
		if ctx.Err() != nil {
			m.Nack(0)
			return
		}
		it := keyedItem{m: m, key: s.keyOf(ctx, k, m), attempt: m.Attempt()}
		k.mu.Lock()
		k.open++
		if it.key != "" {
			if waiting, busy := k.keys[it.key]; busy {
				k.keys[it.key] = append(waiting, m)
				k.mu.Unlock()
				continue
			}
			k.keys[it.key] = nil
		}
		k.mu.Unlock()
		select {
		case k.work <- it:
		case <-ctx.Done():
			s.stopKey(k, it)
			return
		}
	}
}

// keyOf returns the key of m. A key function that panics is the caller's
// bug, not a reason to stop the flow: the event is delivered unordered.
func (s *subscription) keyOf(ctx context.Context, k *keyed, m Message) (key string) {
	defer func() {
		if r := recover(); r != nil {
			key = ""
			s.log.LogAttrs(ctx, slog.LevelError, "flows: order key function panicked; event delivered unordered",
				slog.String("subscription", s.name), slog.String("id", m.Event().ID()), slog.Any("panic", r))
		}
	}()
	return k.key.key(m.Event())
}

func (s *subscription) workKeyed(ctx context.Context, k *keyed) {
	defer s.wg.Done()
	for {
		select {
		case it := <-k.work:
			s.runKey(ctx, k, it)
		case <-k.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// runKey delivers it, then the messages that waited behind it, until its
// key has none left or one of them is to be retried.
func (s *subscription) runKey(ctx context.Context, k *keyed, it keyedItem) {
	for {
		if it.key == "" {
			s.process(ctx, it.m, it.attempt)
			s.ended(k, it.m)
			return
		}
		r := s.attempt(ctx, it.m, it.attempt)
		switch r.outcome {
		case OutcomeRetried:
			// The key stays taken: its later events wait for this one.
			it.attempt++
			s.wg.Add(1)
			go s.retryLater(ctx, k, it, r.wait)
			return
		case OutcomeStopped:
			s.stopKey(k, it)
			return
		}
		s.end(it.m, r)
		s.ended(k, it.m)
		k.mu.Lock()
		waiting := k.keys[it.key]
		if len(waiting) == 0 {
			delete(k.keys, it.key)
			k.mu.Unlock()
			return
		}
		next := waiting[0]
		waiting[0] = nil
		k.keys[it.key] = waiting[1:]
		k.mu.Unlock()
		it = keyedItem{m: next, key: it.key, attempt: next.Attempt()}
		if ctx.Err() != nil {
			s.stopKey(k, it)
			return
		}
	}
}

// retryLater hands it back to the workers after wait, or to the channel
// at once on a hard stop. The goroutines waiting are bounded by the
// channel's capacity, as the retries are.
func (s *subscription) retryLater(ctx context.Context, k *keyed, it keyedItem, wait time.Duration) {
	defer s.wg.Done()
	if sleep(ctx, wait) {
		select {
		case k.work <- it:
			return
		case <-ctx.Done():
		}
	}
	s.stopKey(k, it)
}

// stopKey hands it and the messages waiting behind its key back to the
// channel undelivered, for a hard stop.
func (s *subscription) stopKey(k *keyed, it keyedItem) {
	var waiting []Message
	k.mu.Lock()
	if it.key != "" {
		waiting = k.keys[it.key]
		delete(k.keys, it.key)
	}
	k.mu.Unlock()
	for _, m := range append([]Message{it.m}, waiting...) {
		m.Nack(0)
		s.ended(k, m)
	}
}

// ended counts m as ended, once it has been acknowledged or nacked.
func (s *subscription) ended(k *keyed, m Message) {
	if mm, ok := m.(*memMessage); ok {
		mm.recycle()
	}
	k.mu.Lock()
	k.open--
	if k.open == 0 && k.closing {
		close(k.done)
	}
	k.mu.Unlock()
}

func (d *Delivery) orderKey() OrderKey {
	if d == nil {
		return OrderKey{}
	}
	return d.OrderKey
}
