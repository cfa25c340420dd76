package jetstream

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eventflows/flows"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The keep-alive of a message is driven by timers: these tests run it on
// the fake clock of testing/synctest, with a message and a consumer that
// record what would go to the server.

// fakeMsg is a fetched message whose progress reports are counted; the
// first failProgress reports fail, as a publish does while the client
// cannot buffer it.
type fakeMsg struct {
	natsjs.Msg
	mu           sync.Mutex
	progress     int
	failProgress int
}

func (m *fakeMsg) Data() []byte {
	return []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`)
}

func (m *fakeMsg) Metadata() (*natsjs.MsgMetadata, error) {
	return &natsjs.MsgMetadata{NumDelivered: 1}, nil
}

func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.progress++
	if m.progress <= m.failProgress {
		return nats.ErrReconnectBufExceeded
	}
	return nil
}

func (m *fakeMsg) Ack() error { return nil }

func (m *fakeMsg) reports() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.progress
}

func flowsMessage(m *message) flows.Message { return m }

// fakeConsumer is a durable consumer as the server created it.
type fakeConsumer struct {
	natsjs.Consumer
	info natsjs.ConsumerInfo
}

func (c *fakeConsumer) CachedInfo() *natsjs.ConsumerInfo { return &c.info }

// testReceiver returns a receiver of a channel with the given ack wait, on
// a consumer whose ack wait is consumerAckWait; no pump runs.
func testReceiver(ackWait, consumerAckWait time.Duration) *receiver {
	c := &Channel{stream: "flows_test", cfg: config{ackWait: ackWait}}
	cons := &fakeConsumer{info: natsjs.ConsumerInfo{Config: natsjs.ConsumerConfig{AckWait: consumerAckWait}}}
	return newReceiver(c, "test", cons)
}

// A progress report that fails (the connection is down and cannot buffer
// it) does not end the keep-alive: the next one is sent on time, so that
// the broker does not deliver the message again while its handler runs.
func TestKeepAliveSurvivesAFailedProgressReport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := testReceiver(30*time.Second, 30*time.Second)
		msg := &fakeMsg{failProgress: 1}
		m, err := r.wrap(msg)
		if err != nil {
			t.Fatal(err)
		}
		m.handed.Store(true)
		time.Sleep(25 * time.Second) // two thirds of the ack wait, and a bit more
		if n := msg.reports(); n != 2 {
			t.Errorf("%d progress reports in 25s with a 30s ack wait, the first failing; want 2", n)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	})
}

// A message read ahead that is handed out after Close (a graceful drain
// delivers what the channel had fetched) is kept alive while its handler
// runs, even though its keep-alive paused while nobody held it.
func TestKeepAliveOfAMessageHandedOutAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := testReceiver(30*time.Second, 30*time.Second)
		msg := &fakeMsg{}
		m, err := r.wrap(msg)
		if err != nil {
			t.Fatal(err)
		}
		r.ready = append(r.ready, m)
		r.c.closed.Store(true)
		r.stopped = true
		time.Sleep(15 * time.Second) // read ahead, nobody took it: paused
		if n := msg.reports(); n != 0 {
			t.Errorf("%d progress reports for a message nobody took after Close; want 0", n)
		}

		got, err := r.Receive(t.Context())
		if err != nil || got != flowsMessage(m) {
			t.Fatalf("Receive = %v, %v; want the message read ahead", got, err)
		}
		time.Sleep(25 * time.Second) // the handler runs
		if n := msg.reports(); n != 2 {
			t.Errorf("%d progress reports in the 25s its handler ran; want 2", n)
		}
		if err := got.Ack(); err != nil {
			t.Fatal(err)
		}
	})
}

// The keep-alive follows the ack wait of the consumer as the server
// created it, which WithConsumerConfig may have set (AckWait, or BackOff,
// whose first value the server makes the ack wait), not the channel's
// default.
func TestKeepAliveFollowsTheConsumersAckWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := testReceiver(DefaultAckWait, 3*time.Second)
		msg := &fakeMsg{}
		m, err := r.wrap(msg)
		if err != nil {
			t.Fatal(err)
		}
		m.handed.Store(true)
		time.Sleep(2500 * time.Millisecond)
		if n := msg.reports(); n != 2 {
			t.Errorf("%d progress reports in 2.5s on a consumer with a 3s ack wait; want 2", n)
		}
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	})
}
