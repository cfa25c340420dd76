package jetstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
)

func TestNewRejectsBadInput(t *testing.T) {
	s := startServer(t)
	_, js := s.connect(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name, channel string
		opts          []jetstream.Option
		want          string
	}{
		{"empty name", "", nil, "empty channel name"},
		{"prefix with a dot", "c", []jetstream.Option{jetstream.WithPrefix("a.b")}, `invalid prefix "a.b"`},
		{"empty prefix", "c", []jetstream.Option{jetstream.WithPrefix("")}, `invalid prefix ""`},
		{"zero ack wait", "c", []jetstream.Option{jetstream.WithAckWait(0)}, "invalid ack wait 0s"},
		// A count without its unit: 30ns, which would report progress in
		// a busy loop and have the broker redeliver at once.
		{"ack wait without a unit", "c", []jetstream.Option{jetstream.WithAckWait(30)}, "invalid ack wait 30ns"},
		{"negative capacity", "c", []jetstream.Option{jetstream.WithMaxMessages(-1)}, "invalid capacity -1"},
		{"negative prefetch", "c", []jetstream.Option{jetstream.WithPrefetch(-2)}, "invalid prefetch -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := jetstream.New(ctx, js, tc.channel, tc.opts...)
			if ch != nil {
				ch.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", ch, err, tc.want)
			}
		})
	}
	if _, err := jetstream.New(ctx, nil, "c"); err == nil {
		t.Error("New with a nil JetStream = nil error")
	}
}

func TestNamesAreSanitized(t *testing.T) {
	s := startServer(t)
	_, js := s.connect(t)
	ctx := t.Context()
	seen := map[string]string{}
	for _, name := range []string{"orders.v1-kn-sequence-0", "orders v1-kn-sequence-0", "orders*>", "plain-Name_0"} {
		ch, err := jetstream.New(ctx, js, name, jetstream.WithPrefix("app"))
		if err != nil {
			t.Fatalf("New(%q) = %v", name, err)
		}
		t.Cleanup(func() { ch.Close() })
		if prev, dup := seen[ch.Stream()]; dup {
			t.Errorf("%q and %q share the stream %s", prev, name, ch.Stream())
		}
		seen[ch.Stream()] = name
		if _, err := ch.Subscribe(name); err != nil {
			t.Errorf("Subscribe(%q) = %v", name, err)
		}
	}
	ch, _ := jetstream.New(ctx, js, "plain-Name_0", jetstream.WithPrefix("app"))
	defer ch.Close()
	if ch.Stream() != "app_plain-Name_0" || ch.Subject() != "app.plain-Name_0" {
		t.Errorf("stream, subject = %s, %s; want app_plain-Name_0, app.plain-Name_0", ch.Stream(), ch.Subject())
	}
}

// Prefixes and channel names may contain '_', which also joins them in a
// stream name: prefix "app_x" with channel "y" and prefix "app" with
// channel "x_y" both make the stream "app_x_y". The second one to start
// must be refused, not take the first one's stream over (re-pointing it to
// its own subject, so that the first one's events land nowhere and each
// reads the other's).
func TestStreamNameCollision(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)
	first, err := jetstream.New(ctx, js, "x_y", jetstream.WithPrefix("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	r, err := first.Subscribe("x_y")
	if err != nil {
		t.Fatal(err)
	}

	second, err := jetstream.New(ctx, js, "y", jetstream.WithPrefix("app_x"))
	if err == nil {
		second.Close()
		t.Errorf("New for stream %s, subject %s = nil error; want it refused: stream %s belongs to subject %s",
			second.Stream(), second.Subject(), first.Stream(), first.Subject())
	} else if !strings.Contains(err.Error(), first.Stream()) || !strings.Contains(err.Error(), first.Subject()) {
		t.Errorf("New = %v; want an error naming the stream %s and its subject %s", err, first.Stream(), first.Subject())
	}

	// The first channel works as before.
	e := newEvent(1)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := first.Publish(short, &e); err != nil {
		t.Fatalf("Publish on the first channel = %v", err)
	}
	m, err := r.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Event().ID() != e.ID() {
		t.Errorf("got %s; want %s", m.Event().ID(), e.ID())
	}
	m.Ack()
}

// A retry's backoff is kept by the broker: it survives a restart of the
// process, and of the server (which keeps it to the second), and the
// attempt number carries on.
func TestRetrySurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name          string
		restartServer bool
		backoff       time.Duration
		slack         time.Duration // the server stores times to the second
	}{
		{"process", false, 300 * time.Millisecond, 0},
		{"server", true, 2 * time.Second, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			s := startServer(t)
			nc, js := s.connect(t)
			ch, err := jetstream.New(ctx, js, "retry")
			if err != nil {
				t.Fatal(err)
			}
			r, err := ch.Subscribe("retry")
			if err != nil {
				t.Fatal(err)
			}
			e := newEvent(1)
			if err := ch.Publish(ctx, &e); err != nil {
				t.Fatal(err)
			}
			m, err := r.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := m.Nack(tc.backoff); err != nil {
				t.Fatal(err)
			}
			// The process goes away, as an orderly exit would: what it
			// sent reaches the server first.
			ch.Close()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			nc.Close()
			if tc.restartServer {
				s.restart()
			}

			_, js2 := s.connect(t)
			ch2, err := jetstream.New(ctx, js2, "retry")
			if err != nil {
				t.Fatal(err)
			}
			defer ch2.Close()
			r2, err := ch2.Subscribe("retry")
			if err != nil {
				t.Fatal(err)
			}
			m, err = r2.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if waited := time.Since(start); waited < tc.backoff-tc.slack {
				t.Errorf("redelivered after %v; want at least the backoff %v (less %v)", waited, tc.backoff, tc.slack)
			}
			if m.Attempt() != 2 || m.Event().ID() != e.ID() {
				t.Errorf("got %s attempt %d; want %s attempt 2", m.Event().ID(), m.Attempt(), e.ID())
			}
			m.Ack()
		})
	}
}

// A message on the subject that is not a CloudEvent is reported by
// Receive, terminated so that it does not come back, and does not hold up
// the events behind it.
func TestMalformedMessage(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)
	ch, err := jetstream.New(ctx, js, "malformed")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	r, err := ch.Subscribe("malformed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, ch.Subject(), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	e := newEvent(1)
	if err := ch.Publish(ctx, &e); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Receive(ctx); err == nil || !strings.Contains(err.Error(), "not a CloudEvent") {
		t.Fatalf("Receive = %v; want an error saying the message is not a CloudEvent", err)
	}
	m, err := r.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Event().ID() != e.ID() {
		t.Fatalf("got %s; want %s", m.Event().ID(), e.ID())
	}
	m.Ack()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if m, err := r.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, %v; want nothing more", m, err)
	}
	// Terminated, not merely left pending (it would come back after the
	// ack wait): the consumer holds nothing once the server has applied
	// the termination and the ack, which it does asynchronously.
	cons, err := js.Consumer(ctx, ch.Stream(), "malformed")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still wait for an acknowledgement; want the malformed one terminated", info.NumAckPending)
		}
	}
}

// After the connection is closed for good, Receive reports it instead of
// waiting, and Publish fails at once.
func TestClosedConnection(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	nc, js := s.connect(t)
	ch, err := jetstream.New(ctx, js, "closed")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	r, err := ch.Subscribe("closed")
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if _, err := r.Receive(ctx); err == nil || errors.Is(err, flows.ErrClosed) {
		t.Fatalf("Receive on a closed connection = %v; want the connection's error", err)
	}
	e := event.New()
	e.SetID("1")
	e.SetSource("/s")
	e.SetType("t")
	if err := ch.Publish(ctx, &e); err == nil {
		t.Fatal("Publish on a closed connection = nil; want an error")
	}
}

// An event whose JSON data is not JSON is refused by Publish, naming the
// event, rather than stored in a form that no receiver can read.
func TestPublishRefusesInvalidJSONData(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)
	ch, err := jetstream.New(ctx, js, "invalid-data")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.Subscribe("invalid-data"); err != nil {
		t.Fatal(err)
	}
	e := newEvent(1)
	e.DataEncoded = []byte(`{"message": `)
	err = ch.Publish(ctx, &e)
	if err == nil || !strings.Contains(err.Error(), `encoding event "event-001"`) {
		t.Fatalf("Publish = %v; want an error saying event-001 could not be encoded", err)
	}
	st, err := js.Stream(ctx, ch.Stream())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d messages stored; want none", n)
	}
}
