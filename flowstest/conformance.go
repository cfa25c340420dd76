package flowstest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/eventflows/flows"
)

// ChannelFeatures tells [TestChannel] what a channel promises beyond the
// [flows.Channel] contract, which every channel must keep. The zero value
// asks for the contract alone.
type ChannelFeatures struct {
	// Ordered: a subscription read by a single receiver gets the events in
	// the order they were published, apart from those delivered again after
	// a Nack.
	Ordered bool

	// Capacity is the number of unacknowledged events a subscription holds
	// before Publish waits for room, for the channels that newChannel
	// returns; the suite needs at least 6. Zero means Publish never waits
	// for room, and the suite skips the tests of a full channel.
	Capacity int

	// Durable: the channel keeps what it accepted beyond its own life. Once
	// Close has returned, Receive hands out the events the channel had
	// already fetched from its storage, without waiting, and no other: those
	// stay in storage for the next handle on it. (A channel that is not
	// durable hands out every accepted event after Close.) Either way,
	// Receive returns ErrClosed once the events it handed out are
	// acknowledged.
	Durable bool

	// Reopen, if set, returns a new handle on the storage behind ch, as
	// another process, or the same one after a restart, would open it. The
	// suite then checks that subscriptions of the same name share the work
	// across handles (while one handle holds a message, the other receives
	// the next: leave Reopen unset for a channel that fetches ahead), and,
	// for a durable channel, that events left at Close are received through
	// the new handle. The suite closes the handle.
	Reopen func(t *testing.T, ch flows.Channel) flows.Channel
}

// TestChannel runs the conformance suite for a [flows.Channel]
// implementation as subtests of t. newChannel must return a new, empty
// channel on each call; the suite closes it. Run it from a test of your
// own:
//
//	func TestConformance(t *testing.T) {
//		flowstest.TestChannel(t, flowstest.ChannelFeatures{Ordered: true},
//			func(t *testing.T) flows.Channel { return mychannel.New() })
//	}
//
// The suite checks publishing and receiving with every attribute,
// extension and data intact, fan-out to several subscriptions with a copy
// each, receivers that share a subscription, redelivery after Nack (with
// Attempt counting up and the delay honoured), ordering if promised, Close
// and the drain that follows, and context cancellation of Receive and of a
// Publish waiting for room. It ends with a [flows.Sequence] running on the
// channel, with a step that is retried and an event that is dead-lettered,
// and with what a [flows.Broker] needs of its channels: a publish into the
// channel while one of its messages is held (a reply re-entering its
// Trigger), and a reply loop that ends on the broker's TTL, an Integer
// extension that the channel must keep.
//
// Each subtest bounds its waits, so that a channel that loses an event fails
// with a message saying what did arrive instead of hanging.
func TestChannel(t *testing.T, f ChannelFeatures, newChannel func(t *testing.T) flows.Channel) {
	t.Helper()
	if f.Capacity > 0 && f.Capacity < minCapacity {
		t.Fatalf("flowstest: ChannelFeatures.Capacity is %d: the suite needs channels that hold at least %d events, or no bound (0)", f.Capacity, minCapacity)
	}
	if f.Durable && f.Reopen == nil {
		t.Log("flowstest: ChannelFeatures.Durable without Reopen: the resumption of a closed channel is not tested")
	}
	s := &suite{f: f, newChannel: newChannel}
	t.Run("PublishReceive", s.publishReceive)
	t.Run("Order", s.order)
	t.Run("FanOut", s.fanOut)
	t.Run("SharedSubscription", s.sharedSubscription)
	t.Run("Concurrency", s.concurrency)
	t.Run("Nack", s.nack)
	t.Run("Close", s.close)
	t.Run("CloseWakesReceive", s.closeWakesReceive)
	t.Run("ReceiveContext", s.receiveContext)
	t.Run("FullChannel", s.fullChannel)
	t.Run("SharedAcrossHandles", s.sharedAcrossHandles)
	t.Run("Flow", s.flow)
	t.Run("Reentry", s.reentry)
	t.Run("Broker", s.broker)
}

// minCapacity is the most events a subtest publishes before it receives.
const minCapacity = 6

// timeout bounds every wait of the suite: long enough for a loaded CI
// machine, short enough to fail instead of hanging.
const timeout = 20 * time.Second

type suite struct {
	f          ChannelFeatures
	newChannel func(t *testing.T) flows.Channel
}

func (s *suite) channel(t *testing.T) flows.Channel {
	t.Helper()
	ch := s.newChannel(t)
	if ch == nil {
		t.Fatal("newChannel returned nil")
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func (s *suite) reopen(t *testing.T, ch flows.Channel) flows.Channel {
	t.Helper()
	ch2 := s.f.Reopen(t, ch)
	if ch2 == nil {
		t.Fatal("Reopen returned nil")
	}
	t.Cleanup(func() { ch2.Close() })
	return ch2
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t *testing.T, ch flows.Channel, name string) flows.Receiver {
	t.Helper()
	r, err := ch.Subscribe(name)
	if err != nil {
		t.Fatalf("Subscribe(%q) = %v", name, err)
	}
	if r == nil {
		t.Fatalf("Subscribe(%q) returned a nil receiver", name)
	}
	return r
}

// testEvent returns an event that uses every kind of attribute, so that a
// channel that drops or retypes one is caught.
func testEvent(tag string, i int) event.Event {
	e := event.New()
	e.SetID(fmt.Sprintf("%s-%d", tag, i))
	e.SetSource("/flowstest/conformance")
	e.SetType("dev.flows.conformance")
	e.SetSubject(tag)
	e.SetTime(time.Date(2025, 1, 2, 3, 4, 5, 6789, time.UTC).Add(time.Duration(i) * time.Second))
	e.SetDataSchema("https://example.com/schema.json")
	e.SetExtension("seq", i)
	e.SetExtension("flag", i%2 == 0)
	e.SetExtension("note", "ünïcode & spaces")
	if err := e.SetData(event.ApplicationJSON, map[string]any{"n": i, "tag": tag}); err != nil {
		panic(err) // a map of plain values always encodes
	}
	return e
}

func publish(ctx context.Context, t *testing.T, ch flows.Channel, e event.Event) {
	t.Helper()
	ec := e.Clone() // the channel takes ownership of what it is given
	if err := ch.Publish(ctx, &ec); err != nil {
		t.Fatalf("Publish(%s) = %v", e.ID(), err)
	}
}

func publishAll(ctx context.Context, t *testing.T, ch flows.Channel, events []event.Event) {
	t.Helper()
	for _, e := range events {
		publish(ctx, t, ch, e)
	}
}

func testEvents(tag string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = testEvent(tag, i)
	}
	return out
}

func receive(ctx context.Context, t *testing.T, r flows.Receiver) flows.Message {
	t.Helper()
	m, err := r.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive = %v; want a message", err)
	}
	if m == nil || m.Event() == nil {
		t.Fatal("Receive returned a nil message or event")
	}
	return m
}

// receiveN receives n messages and fails with the IDs that did arrive if
// they do not.
func receiveN(ctx context.Context, t *testing.T, r flows.Receiver, n int) []flows.Message {
	t.Helper()
	var got []flows.Message
	for len(got) < n {
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive = %v after %d of %d messages (%v)", err, len(got), n, ids(got))
		}
		got = append(got, m)
	}
	return got
}

// expectNothing checks that no message is ready within a short wait. It
// cannot fail for a correct channel, however slow the machine.
func expectNothing(ctx context.Context, t *testing.T, r flows.Receiver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	m, err := r.Receive(ctx)
	if err == nil {
		t.Fatalf("Receive returned unexpected message %s (attempt %d)", m.Event().ID(), m.Attempt())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v; want context.DeadlineExceeded", err)
	}
}

func ack(t *testing.T, ms ...flows.Message) {
	t.Helper()
	for _, m := range ms {
		if err := m.Ack(); err != nil {
			t.Fatalf("Ack(%s) = %v", m.Event().ID(), err)
		}
	}
}

func ids(ms []flows.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Event().ID()
	}
	return out
}

func eventIDs(es []event.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID()
	}
	return out
}

// checkSame fails unless got carries want with every attribute, extension
// and data byte intact. Extensions are compared in their canonical string
// form, which is what a channel that serializes events can keep.
func checkSame(t *testing.T, want event.Event, got *event.Event) {
	t.Helper()
	if d := diffEvents(want, *got); d != "" {
		t.Errorf("event %s changed in transit:\n%s", want.ID(), d)
	}
}

func diffEvents(want, got event.Event) string {
	var b strings.Builder
	field := func(name string, w, g any) {
		if w != g {
			fmt.Fprintf(&b, "  %s: got %v; want %v\n", name, g, w)
		}
	}
	field("specversion", want.SpecVersion(), got.SpecVersion())
	field("id", want.ID(), got.ID())
	field("source", want.Source(), got.Source())
	field("type", want.Type(), got.Type())
	field("subject", want.Subject(), got.Subject())
	field("datacontenttype", want.DataContentType(), got.DataContentType())
	field("dataschema", want.DataSchema(), got.DataSchema())
	if !want.Time().Equal(got.Time()) {
		fmt.Fprintf(&b, "  time: got %v; want %v\n", got.Time(), want.Time())
	}
	wx, gx := want.Extensions(), got.Extensions()
	for _, k := range slices.Sorted(maps.Keys(wx)) {
		gv, ok := gx[k]
		if !ok {
			fmt.Fprintf(&b, "  extension %s: missing; want %v\n", k, wx[k])
			continue
		}
		ws, _ := types.Format(wx[k])
		gs, _ := types.Format(gv)
		if ws != gs {
			fmt.Fprintf(&b, "  extension %s: got %q; want %q\n", k, gs, ws)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(gx)) {
		if _, ok := wx[k]; !ok {
			fmt.Fprintf(&b, "  extension %s: unexpected, %v\n", k, gx[k])
		}
	}
	if string(want.Data()) != string(got.Data()) {
		fmt.Fprintf(&b, "  data: got %q; want %q\n", got.Data(), want.Data())
	}
	return b.String()
}

// checkReceived checks that got holds exactly the events of want, in order
// if ordered, each one intact.
func checkReceived(t *testing.T, want []event.Event, got []flows.Message, ordered bool) {
	t.Helper()
	gotIDs, wantIDs := ids(got), eventIDs(want)
	if !ordered {
		gotIDs, wantIDs = slices.Sorted(slices.Values(gotIDs)), slices.Sorted(slices.Values(wantIDs))
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("received %v; want %v", ids(got), eventIDs(want))
	}
	byID := make(map[string]event.Event, len(want))
	for _, e := range want {
		byID[e.ID()] = e
	}
	for _, m := range got {
		checkSame(t, byID[m.Event().ID()], m.Event())
	}
}

func (s *suite) publishReceive(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	events := testEvents("pr", 3)
	publishAll(ctx, t, ch, events)

	got := receiveN(ctx, t, r, len(events))
	checkReceived(t, events, got, s.f.Ordered)
	for _, m := range got {
		if m.Attempt() != 1 {
			t.Errorf("Attempt() of %s = %d; want 1", m.Event().ID(), m.Attempt())
		}
	}
	ack(t, got...)
	expectNothing(ctx, t, r)

	if err := ch.Publish(ctx, nil); err == nil {
		t.Error("Publish(nil) = nil; want an error")
	}
}

func (s *suite) order(t *testing.T) {
	if !s.f.Ordered {
		t.Skip("the channel does not promise ordering")
	}
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	events := testEvents("order", 50)
	// Publish while receiving, so that a bounded channel never fills up.
	published := make(chan error, 1)
	go func() {
		for _, e := range events {
			ec := e.Clone()
			if err := ch.Publish(ctx, &ec); err != nil {
				published <- fmt.Errorf("Publish(%s) = %w", e.ID(), err)
				return
			}
		}
		published <- nil
	}()
	// Acknowledge each message before the next one, as a single worker does.
	var got []flows.Message
	for range events {
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive = %v after %v", err, ids(got))
		}
		got = append(got, m)
		ack(t, m)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	checkReceived(t, events, got, true)
}

func (s *suite) fanOut(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	names := []string{"a", "b", "c"}
	rs := make([]flows.Receiver, len(names))
	for i, n := range names {
		rs[i] = subscribe(t, ch, n)
	}
	events := testEvents("fan", 3)
	publishAll(ctx, t, ch, events)

	// The first subscription's receiver scribbles over its copies: the
	// others must not see it.
	first := receiveN(ctx, t, rs[0], len(events))
	for _, m := range first {
		e := m.Event()
		e.SetType("changed")
		e.SetExtension("note", "changed")
		e.SetExtension("added", "yes")
		if d := e.Data(); len(d) > 0 {
			d[0] = 'X' // in place, as careless code might
		}
	}
	checkAllReceived := func(name string, got []flows.Message) {
		t.Helper()
		if len(got) != len(events) {
			t.Fatalf("subscription %s received %v; want %v", name, ids(got), eventIDs(events))
		}
		checkReceived(t, events, got, s.f.Ordered)
	}
	for i, r := range rs[1:] {
		got := receiveN(ctx, t, r, len(events))
		checkAllReceived(names[i+1], got)
		ack(t, got...)
	}
	ack(t, first...)
	for _, r := range rs {
		expectNothing(ctx, t, r)
	}
}

func (s *suite) sharedSubscription(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r1 := subscribe(t, ch, "shared")
	r2 := subscribe(t, ch, "shared")
	events := testEvents("shared", 6)
	publishAll(ctx, t, ch, events)

	// While r1 holds a message unacknowledged, r2 gets another one.
	m1 := receive(ctx, t, r1)
	m2 := receive(ctx, t, r2)
	if m1.Event().ID() == m2.Event().ID() {
		t.Fatalf("both receivers of one subscription got %s", m1.Event().ID())
	}
	got := []flows.Message{m1, m2}
	for i := 2; i < len(events); i++ {
		r := r1
		if i%2 == 1 {
			r = r2
		}
		got = append(got, receive(ctx, t, r))
	}
	checkReceived(t, events, got, false)
	ack(t, got...)
	expectNothing(ctx, t, r1)
	expectNothing(ctx, t, r2)
}

// concurrency publishes from several goroutines to a subscription read by
// several receivers: every event is received exactly once.
func (s *suite) concurrency(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	const publishers, perPublisher, receivers = 4, 25, 3
	rs := make([]flows.Receiver, receivers)
	for i := range rs {
		rs[i] = subscribe(t, ch, "busy")
	}
	var want []event.Event
	for p := range publishers {
		want = append(want, testEvents(fmt.Sprintf("p%d", p), perPublisher)...)
	}

	var (
		mu   sync.Mutex
		got  []flows.Message
		wg   sync.WaitGroup
		errs = make(chan error, publishers+receivers)
	)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, r := range rs {
		wg.Go(func() {
			for {
				m, err := r.Receive(rctx)
				if err != nil {
					if rctx.Err() == nil {
						errs <- fmt.Errorf("Receive = %w", err)
					}
					return
				}
				if err := m.Ack(); err != nil {
					errs <- fmt.Errorf("Ack = %w", err)
					return
				}
				mu.Lock()
				got = append(got, m)
				if len(got) == len(want) {
					stop()
				}
				mu.Unlock()
			}
		})
	}
	var pwg sync.WaitGroup
	for p := range publishers {
		pwg.Go(func() {
			for _, e := range want[p*perPublisher : (p+1)*perPublisher] {
				ec := e.Clone()
				if err := ch.Publish(ctx, &ec); err != nil {
					errs <- fmt.Errorf("Publish(%s) = %w", e.ID(), err)
					return
				}
			}
		})
	}
	pwg.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	checkReceived(t, want, got, false)
}

func (s *suite) nack(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	e := testEvent("nack", 0)
	publish(ctx, t, ch, e)

	m := receive(ctx, t, r)
	if m.Attempt() != 1 {
		t.Fatalf("first Attempt() = %d; want 1", m.Attempt())
	}
	if err := m.Nack(0); err != nil {
		t.Fatalf("Nack(0) = %v", err)
	}
	m = receive(ctx, t, r)
	checkSame(t, e, m.Event())
	if m.Attempt() != 2 {
		t.Fatalf("Attempt() after one Nack = %d; want 2", m.Attempt())
	}

	const delay = 50 * time.Millisecond
	start := time.Now()
	if err := m.Nack(delay); err != nil {
		t.Fatalf("Nack(%v) = %v", delay, err)
	}
	m = receive(ctx, t, r)
	if waited := time.Since(start); waited < delay {
		t.Errorf("redelivered after %v; want at least the Nack delay %v", waited, delay)
	}
	checkSame(t, e, m.Event())
	if m.Attempt() != 3 {
		t.Errorf("Attempt() after two Nacks = %d; want 3", m.Attempt())
	}
	ack(t, m)
	if err := m.Ack(); err == nil {
		t.Error("second Ack of a message = nil; want an error")
	}
	expectNothing(ctx, t, r)
}

func (s *suite) close(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	events := testEvents("close", 3)
	publishAll(ctx, t, ch, events)
	held := receive(ctx, t, r)
	if s.f.Ordered && held.Event().ID() != events[0].ID() {
		t.Fatalf("first message = %s; want %s", held.Event().ID(), events[0].ID())
	}

	if err := ch.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := ch.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	late := testEvent("late", 0)
	if err := ch.Publish(ctx, &late); !errors.Is(err, flows.ErrClosed) {
		t.Errorf("Publish after Close = %v; want ErrClosed", err)
	}

	var rest []event.Event
	for _, e := range events {
		if e.ID() != held.Event().ID() {
			rest = append(rest, e)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	var after []flows.Message // received after Close
	if !s.f.Durable {
		// Everything accepted is still received after Close.
		after = receiveN(ctx, t, r, len(rest))
		checkReceived(t, rest, after, s.f.Ordered)
	} else {
		// A durable channel hands out what it had already fetched, at once,
		// and nothing more.
		for {
			m, err := r.Receive(done)
			if err != nil {
				break // checked below
			}
			after = append(after, m)
		}
		if !isSubset(ids(after), eventIDs(rest)) {
			t.Fatalf("received %v after Close; want some of %v, each once", ids(after), eventIDs(rest))
		}
	}
	ack(t, after...)

	// held is not acknowledged yet: Receive must not report ErrClosed.
	if m, err := r.Receive(done); err == nil {
		t.Fatalf("Receive after Close returned %s; want no more messages", m.Event().ID())
	} else if errors.Is(err, flows.ErrClosed) {
		t.Fatal("Receive = ErrClosed while a message is not acknowledged")
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a cancelled context = %v; want context.Canceled", err)
	}

	result := make(chan error, 1)
	go func() {
		m, err := r.Receive(ctx)
		if err == nil {
			err = fmt.Errorf("got message %s", m.Event().ID())
		}
		result <- err
	}()
	ack(t, held)
	if err := <-result; !errors.Is(err, flows.ErrClosed) {
		t.Fatalf("Receive after the last Ack = %v; want ErrClosed", err)
	}
	if _, err := r.Receive(ctx); !errors.Is(err, flows.ErrClosed) {
		t.Fatalf("Receive on a drained channel = %v; want ErrClosed", err)
	}

	if !s.f.Durable || s.f.Reopen == nil {
		return
	}
	// The events left in storage are received through a new handle, and
	// the acknowledged ones are not received again.
	var left []event.Event
	for _, e := range rest {
		if !slices.Contains(ids(after), e.ID()) {
			left = append(left, e)
		}
	}
	ch2 := s.reopen(t, ch)
	r2 := subscribe(t, ch2, "sub")
	got := receiveN(ctx, t, r2, len(left))
	checkReceived(t, left, got, s.f.Ordered)
	ack(t, got...)
	expectNothing(ctx, t, r2)
}

// isSubset reports whether every element of sub is in set, and sub has no
// duplicates.
func isSubset(sub, set []string) bool {
	seen := map[string]bool{}
	for _, s := range sub {
		if seen[s] || !slices.Contains(set, s) {
			return false
		}
		seen[s] = true
	}
	return true
}

func (s *suite) closeWakesReceive(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	result := make(chan error, 1)
	go func() {
		m, err := r.Receive(ctx)
		if err == nil {
			err = fmt.Errorf("got message %s", m.Event().ID())
		}
		result <- err
	}()
	if err := ch.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-result; !errors.Is(err, flows.ErrClosed) {
		t.Fatalf("Receive waiting on an empty channel at Close = %v; want ErrClosed", err)
	}
}

func (s *suite) receiveContext(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")

	rctx, cancel := context.WithCancel(ctx)
	result := make(chan error, 1)
	go func() {
		m, err := r.Receive(rctx)
		if err == nil {
			err = fmt.Errorf("got message %s", m.Event().ID())
		}
		result <- err
	}()
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a cancelled context = %v; want context.Canceled", err)
	}
	expectNothing(ctx, t, r)

	// The abandoned Receive calls must not have swallowed an event.
	e := testEvent("after-cancel", 0)
	publish(ctx, t, ch, e)
	m := receive(ctx, t, r)
	checkSame(t, e, m.Event())
	if m.Attempt() != 1 {
		t.Errorf("Attempt() = %d; want 1", m.Attempt())
	}
	ack(t, m)
}

func (s *suite) fullChannel(t *testing.T) {
	if s.f.Capacity <= 0 {
		t.Skip("the channel does not bound its subscriptions")
	}
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	events := testEvents("full", s.f.Capacity+1)
	publishAll(ctx, t, ch, events[:s.f.Capacity])

	// A Publish that gives up on a full channel reports ErrFull and the
	// cause, and the event is not accepted.
	rejected := testEvent("rejected", 0)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := ch.Publish(short, &rejected); !errors.Is(err, flows.ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a full channel with a deadline = %v; want ErrFull wrapping context.DeadlineExceeded", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	rejected2 := testEvent("rejected", 1)
	if err := ch.Publish(cctx, &rejected2); !errors.Is(err, flows.ErrFull) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish to a full channel with a cancelled context = %v; want ErrFull wrapping context.Canceled", err)
	}

	// A Publish waiting for room goes through once a message is acknowledged.
	result := make(chan error, 1)
	go func() {
		e := events[s.f.Capacity].Clone()
		result <- ch.Publish(ctx, &e)
	}()
	first := receive(ctx, t, r)
	ack(t, first)
	if err := <-result; err != nil {
		t.Fatalf("Publish waiting for room = %v", err)
	}
	got := append([]flows.Message{first}, receiveN(ctx, t, r, s.f.Capacity)...)
	checkReceived(t, events, got, false)
	ack(t, got[1:]...)
	expectNothing(ctx, t, r)
}

func (s *suite) sharedAcrossHandles(t *testing.T) {
	if s.f.Reopen == nil {
		t.Skip("no ChannelFeatures.Reopen")
	}
	ctx := testContext(t)
	ch := s.channel(t)
	r1 := subscribe(t, ch, "shared")
	ch2 := s.reopen(t, ch)
	r2 := subscribe(t, ch2, "shared")
	events := testEvents("handles", 4)
	publishAll(ctx, t, ch, events[:2])
	publishAll(ctx, t, ch2, events[2:])

	m1 := receive(ctx, t, r1)
	m2 := receive(ctx, t, r2)
	if m1.Event().ID() == m2.Event().ID() {
		t.Fatalf("both handles got %s", m1.Event().ID())
	}
	got := []flows.Message{m1, m2, receive(ctx, t, r1), receive(ctx, t, r2)}
	checkReceived(t, events, got, false)
	ack(t, got...)
	expectNothing(ctx, t, r1)
	expectNothing(ctx, t, r2)
}

// flow runs a two-step Sequence on the channel: the first step fails twice
// for one event (retried, then delivered) and always for another
// (dead-lettered after its retries).
func (s *suite) flow(t *testing.T) {
	ctx := testContext(t)
	const name = "conformance"
	var (
		mu       sync.Mutex
		attempts = map[string]int{}
	)
	step := func(mark string, fail func(id string, attempt int) bool) flows.Handler {
		return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			mu.Lock()
			attempts[mark+e.ID()]++
			n := attempts[mark+e.ID()]
			mu.Unlock()
			if fail(e.ID(), n) {
				return nil, fmt.Errorf("step %s refuses %s (attempt %d)", mark, e.ID(), n)
			}
			steps, _ := e.Extensions()["steps"].(string)
			e.SetExtension("steps", steps+mark)
			return &e, nil
		})
	}
	replies := make(chan event.Event, 16)
	deadLetters := make(chan event.Event, 16)
	collect := func(c chan<- event.Event) flows.Handler {
		return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			c <- e
			return nil, nil
		})
	}
	seq := &flows.Sequence{
		Name: name,
		Steps: []flows.Step{
			{
				Subscriber: step("0", func(id string, n int) bool { return id == "dead-0" || (id == "retry-0" && n <= 2) }),
				Delivery: &flows.Delivery{
					Retry:        2,
					BackoffDelay: time.Millisecond,
					DeadLetter:   collect(deadLetters),
				},
			},
			{Subscriber: step("1", func(string, int) bool { return false })},
		},
		Reply: collect(replies),
	}
	flow, err := seq.Start(ctx, flows.WithChannels(func(context.Context, string) (flows.Channel, error) {
		return s.channel(t), nil
	}))
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() { flow.Close() })

	ok := testEvents("ok", 3)
	retry, dead := testEvent("retry", 0), testEvent("dead", 0)
	for _, e := range append(slices.Clone(ok), retry, dead) {
		if err := flow.Send(ctx, e); err != nil {
			t.Fatalf("Send(%s) = %v", e.ID(), err)
		}
	}

	want := append(slices.Clone(ok), retry)
	got := make(map[string]event.Event)
	for len(got) < len(want) {
		select {
		case e := <-replies:
			if _, dup := got[e.ID()]; dup {
				t.Errorf("reply %s received twice", e.ID())
			}
			got[e.ID()] = e
		case <-ctx.Done():
			t.Fatalf("replies: got %v; want %v", slices.Sorted(maps.Keys(got)), eventIDs(want))
		}
	}
	for _, w := range want {
		w.SetExtension("steps", "01")
		e := got[w.ID()]
		checkSame(t, w, &e)
	}

	var dl event.Event
	select {
	case dl = <-deadLetters:
	case <-ctx.Done():
		t.Fatal("no event reached the dead-letter sink")
	}
	if dl.ID() != dead.ID() {
		t.Fatalf("dead letter = %s; want %s", dl.ID(), dead.ID())
	}
	ext := dl.Extensions()
	if d, _ := types.Format(ext[flows.ExtensionErrorDest]); d != name+"/steps[0]" {
		t.Errorf("%s = %q; want %q", flows.ExtensionErrorDest, d, name+"/steps[0]")
	}
	if c, _ := types.Format(ext[flows.ExtensionErrorCode]); c != "500" {
		t.Errorf("%s = %q; want 500", flows.ExtensionErrorCode, c)
	}
	data, _ := types.Format(ext[flows.ExtensionErrorData])
	if msg, _ := base64.StdEncoding.DecodeString(data); !strings.Contains(string(msg), "step 0 refuses dead-0 (attempt 3)") {
		t.Errorf("%s = %q; want the last error, base64", flows.ExtensionErrorData, msg)
	}

	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := flow.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	wantAttempts := map[string]int{"0retry-0": 3, "0dead-0": 3, "1retry-0": 1}
	for _, e := range ok {
		wantAttempts["0"+e.ID()], wantAttempts["1"+e.ID()] = 1, 1
	}
	if !maps.Equal(attempts, wantAttempts) {
		t.Errorf("calls per step and event = %v; want %v", attempts, wantAttempts)
	}
	select {
	case e := <-replies:
		t.Errorf("unexpected reply %s", e.ID())
	case e := <-deadLetters:
		t.Errorf("unexpected dead letter %s", e.ID())
	default:
	}
	if err := flow.Send(ctx, testEvent("after", 0)); !errors.Is(err, flows.ErrClosed) {
		t.Errorf("Send after Shutdown = %v; want ErrClosed", err)
	}
}

// reentry publishes into a channel while one of its messages is held, as a
// broker's Trigger does when its subscriber's reply matches it again.
func (s *suite) reentry(t *testing.T) {
	ctx := testContext(t)
	ch := s.channel(t)
	r := subscribe(t, ch, "sub")
	first, reply := testEvent("reentry", 0), testEvent("reentry", 1)
	publish(ctx, t, ch, first)
	held := receive(ctx, t, r)
	checkSame(t, first, held.Event())
	publish(ctx, t, ch, reply) // before the Ack, as a reply is
	ack(t, held)
	m := receive(ctx, t, r)
	checkSame(t, reply, m.Event())
	ack(t, m)
	expectNothing(ctx, t, r)
}

// broker runs a Broker whose Trigger answers every event with itself: the
// loop goes through the channel and ends on the TTL, which the channel
// carries as an extension.
func (s *suite) broker(t *testing.T) {
	ctx := testContext(t)
	var mu sync.Mutex
	calls := 0
	loop := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return &e, nil
	})
	deadLetters := make(chan event.Event, 1)
	b := &flows.Broker{Name: "conformance", Triggers: []flows.Trigger{{Name: "loop", Subscriber: loop}},
		Delivery: &flows.Delivery{DeadLetter: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			deadLetters <- e
			return nil, nil
		})}}
	f, err := b.Start(ctx, flows.WithChannels(func(context.Context, string) (flows.Channel, error) {
		return s.channel(t), nil
	}))
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() { f.Close() })
	e := testEvent("broker", 0)
	e.SetExtension(flows.ExtensionBrokerTTL, 6)
	if err := f.Send(ctx, e); err != nil {
		t.Fatalf("Send = %v", err)
	}
	select {
	case dl := <-deadLetters:
		mu.Lock()
		n := calls
		mu.Unlock()
		if n != 5 || dl.ID() != e.ID() {
			t.Errorf("a reply loop started with TTL 6 made %d deliveries and dead-lettered %s; want 5 deliveries and %s", n, dl.ID(), e.ID())
		}
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("a reply loop started with TTL 6 did not end on the TTL: %d deliveries, no dead letter", calls)
	}
}
