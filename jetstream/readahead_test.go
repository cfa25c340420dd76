package jetstream_test

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventflows/flows/jetstream"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// deliveryCounts polls the consumer of sub until its counts of messages
// not yet delivered and delivered but not acknowledged are want, or 5s
// have passed, and returns the last counts seen.
func deliveryCounts(ctx context.Context, t *testing.T, js natsjs.JetStream, ch *jetstream.Channel, sub string, want [2]uint64) [2]uint64 {
	t.Helper()
	cons, err := js.Consumer(ctx, ch.Stream(), sub)
	if err != nil {
		t.Fatal(err)
	}
	var got [2]uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got = [2]uint64{info.NumPending, uint64(info.NumAckPending)}; got == want {
			break
		}
	}
	return got
}

// By default a subscription reads ahead of its workers: while one message
// is being handled, the next ones are already fetched (delivered, in the
// server's counts), so a worker finds its next message without a round
// trip. WithPrefetch(0) fetches only for a worker that waits.
func TestReadsAheadByDefault(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []jetstream.Option
		want [2]uint64 // not yet delivered, delivered and not acknowledged
	}{
		{"default", nil, [2]uint64{0, 10}},
		{"WithPrefetch(0)", []jetstream.Option{jetstream.WithPrefetch(0)}, [2]uint64{9, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			s := startServer(t)
			_, js := s.connect(t)
			ch, err := jetstream.New(ctx, js, "readahead", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			r, err := ch.Subscribe("readahead")
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				e := newEvent(i)
				if err := ch.Publish(ctx, &e); err != nil {
					t.Fatal(err)
				}
			}
			m, err := r.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := deliveryCounts(ctx, t, js, ch, "readahead", tc.want); got != tc.want {
				t.Errorf("while the first message is being handled, the consumer has %d messages not yet delivered and %d delivered; want %d and %d",
					got[0], got[1], tc.want[0], tc.want[1])
			}
			m.Ack()
			for range 9 {
				m, err := r.Receive(ctx)
				if err != nil {
					t.Fatal(err)
				}
				m.Ack()
			}
		})
	}
}

// Reading ahead refills in batches: a subscription that takes 300 messages
// one by one asks the server for them in a few pull requests, not one per
// message.
func TestReadAheadPullsInBatches(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	nc, js := s.connect(t)
	ch, err := jetstream.New(ctx, js, "batches")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	r, err := ch.Subscribe("batches")
	if err != nil {
		t.Fatal(err)
	}
	// Pull requests are messages on the consumer's API subject: a plain
	// subscription sees them too.
	var pulls atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+ch.Stream()+".batches", func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const events = 300
	for i := range events {
		e := newEvent(i)
		if err := ch.Publish(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	for range events {
		m, err := r.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.Ack()
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// 300 messages in refills of half the read-ahead make about ten
	// requests; one per message would make 300.
	if n := pulls.Load(); n > 30 {
		t.Errorf("%d pull requests for %d messages; want at most 30", n, events)
	}
}

// Messages read ahead are not handled twice when the connection breaks:
// while this handle is cut off, the server delivers them again to another
// process once their ack wait has passed, so the copies this handle had
// read ahead are dropped, not handed out when it is back.
func TestReadAheadIsDroppedWhenTheConnectionBreaks(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	p := startProxy(t, s.srv.Addr().String())
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect("nats://"+p.addr(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0), nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, direct := s.connect(t)
	opts := []jetstream.Option{jetstream.WithAckWait(200 * time.Millisecond)}
	ch, err := jetstream.New(ctx, js, "cut", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	r, err := ch.Subscribe("cut")
	if err != nil {
		t.Fatal(err)
	}
	const events = 10
	for i := range events {
		e := newEvent(i)
		if err := ch.Publish(ctx, &e); err != nil {
			t.Fatal(err)
		}
	}
	first, err := r.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := deliveryCounts(ctx, t, direct, ch, "cut", [2]uint64{0, events}); got[1] != events {
		t.Fatalf("%d messages delivered; want all %d, read ahead", got[1], events)
	}

	// Cut off, this handle cannot keep its messages alive: another process
	// gets them once the ack wait has passed.
	p.cut()
	other, err := jetstream.New(ctx, direct, "cut", append(opts, jetstream.WithPrefetch(0))...)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	r2, err := other.Subscribe("cut")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < events; {
		m, err := r2.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Event().ID() == newEvent(i).ID() {
			i++
		}
		m.Ack()
	}
	p.restore()
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("the handle did not reconnect")
	}
	first.Ack() // under way when the connection broke: it may come twice
	quiet, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	for {
		m, err := r.Receive(quiet)
		if err != nil {
			break
		}
		if m.Event().ID() != first.Event().ID() {
			t.Errorf("the handle that was cut off handed out %s, already handled by the other process", m.Event().ID())
		}
		m.Ack()
	}
}

// proxy forwards TCP connections to a server until cut, and refuses them
// until restored.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

// cut closes the connections under way and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
