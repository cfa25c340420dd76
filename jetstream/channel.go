// Package jetstream runs flows on NATS JetStream: a durable [flows.Channel]
// whose events survive restarts of the process and of the broker, and whose
// subscriptions share their work among every process that runs the same
// flow.
//
// Each flow channel is a stream with one subject; each subscription is a
// durable pull consumer of that stream. Events are stored in the CloudEvents
// JSON format, with every attribute and extension. Delivery is at least
// once: a message is acknowledged only after its delivery, or its
// dead-letter delivery, succeeded; retries wait on the broker (a Nak with a
// delay), so they survive restarts too, and [flows.Message.Attempt] is the
// broker's delivery count.
//
// Each subscription reads [DefaultPrefetch] messages ahead of its workers,
// so that they do not wait for a round trip to the server between
// messages; [WithPrefetch] says what that changes and sets it.
//
// Plug it into a flow with [Channels]:
//
//	js, _ := natsjs.New(nc) // natsjs "github.com/nats-io/nats.go/jetstream"
//	flow, err := seq.Start(ctx, flows.WithChannels(jetstream.Channels(js)))
package jetstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Channel is a [flows.Channel] on a JetStream stream. Create it with [New],
// or let a flow create its channels with [Channels].
//
// Several Channel values, in one process or in several, may stand for the
// same stream: receivers of the same subscription name then share its
// messages, each message going to one of them.
//
// Close stops this handle only. Messages that it had not fetched stay in the
// stream for the next run, or for the other processes still running.
type Channel struct {
	js      natsjs.JetStream
	name    string
	stream  string
	subject string
	cfg     config

	// mu is held for reading while publishing and for writing by Close, so
	// that Close returns only once no Publish is under way.
	mu       sync.RWMutex
	closed   atomic.Bool
	closing  <-chan struct{} // closed by Close: stops retries and pulls
	stopping context.Context // done when closing is
	stop     context.CancelFunc

	subsMu sync.Mutex
	subs   map[string]*receiver

	// Requests under way when the connection is re-established were sent
	// to a server that may be gone: watch cancels them, and they are made
	// again at once instead of waiting for their timeout.
	reqMu      sync.Mutex
	requests   map[*context.CancelFunc]struct{}
	reconnects atomic.Int64
	// breaks counts the losses and recoveries of the connection: messages
	// fetched before one are not handed out (see receiver.forget).
	breaks    atomic.Int64
	watchDone chan struct{}
	// conn is done once the connection is re-established: publishes
	// derive their attempt's context from it, which costs less than
	// registering each one with requests.
	conn atomic.Pointer[connGen]

	// Header values shared by every publish; nats.go only reads them.
	expectStream []string
}

// connGen is one run of the connection, between two reconnections.
type connGen struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newConnGen() *connGen {
	ctx, cancel := context.WithCancel(context.Background())
	return &connGen{ctx, cancel}
}

var contentType = []string{"application/cloudevents+json"}

// Channels returns a channel constructor for [flows.WithChannels]: each
// channel of a flow gets its own stream on js, created or updated with the
// given options.
func Channels(js natsjs.JetStream, opts ...Option) func(ctx context.Context, name string) (flows.Channel, error) {
	return func(ctx context.Context, name string) (flows.Channel, error) {
		ch, err := New(ctx, js, name, opts...)
		if err != nil {
			return nil, err
		}
		return ch, nil
	}
}

// New returns the channel named name on js. It creates its stream, or
// updates it to the options given, with interest retention: a message is
// kept until every subscription has acknowledged it, and a message
// published while the channel has no subscription is dropped, as a Knative
// channel drops it. A stream of that name that exists for another subject
// (another prefix and channel name that make the same stream name) is
// refused.
func New(ctx context.Context, js natsjs.JetStream, name string, opts ...Option) (*Channel, error) {
	if js == nil {
		return nil, errors.New("flows/jetstream: nil JetStream")
	}
	if name == "" {
		return nil, errors.New("flows/jetstream: empty channel name")
	}
	cfg, err := buildConfig(opts)
	if err != nil {
		return nil, err
	}
	tok := token(name)
	c := &Channel{
		js:        js,
		name:      name,
		stream:    cfg.prefix + "_" + tok,
		subject:   cfg.prefix + "." + tok,
		cfg:       cfg,
		subs:      make(map[string]*receiver),
		requests:  make(map[*context.CancelFunc]struct{}),
		watchDone: make(chan struct{}),
	}
	c.expectStream = []string{c.stream}
	c.conn.Store(newConnGen())
	sc := natsjs.StreamConfig{
		Name:        c.stream,
		Description: "flows channel " + name,
		Subjects:    []string{c.subject},
		Retention:   natsjs.InterestPolicy,
		Storage:     natsjs.FileStorage,
		MaxMsgs:     -1,
	}
	if cfg.capacity > 0 {
		sc.MaxMsgs = int64(cfg.capacity)
		sc.Discard = natsjs.DiscardNew
	}
	if cfg.streamConfig != nil {
		cfg.streamConfig(&sc)
	}
	// '_' joins the prefix and the name, and may be in either: prefix
	// "a_b" with channel "c" and prefix "a" with channel "b_c" make the
	// same stream name. Updating the other's stream would re-point it to
	// this subject.
	if st, err := js.Stream(ctx, c.stream); err == nil {
		if subjects := st.CachedInfo().Config.Subjects; !slices.Contains(subjects, c.subject) {
			return nil, fmt.Errorf("flows/jetstream: channel %q: stream %q exists for the subjects %q, not %q: another prefix and channel name make the same stream name; use another prefix",
				name, c.stream, subjects, c.subject)
		}
	} else if !errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, fmt.Errorf("flows/jetstream: channel %q: looking up stream %q: %w", name, c.stream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return nil, fmt.Errorf("flows/jetstream: channel %q: creating stream %q: %w", name, c.stream, err)
	}
	c.stopping, c.stop = context.WithCancel(context.Background())
	c.closing = c.stopping.Done()
	go c.watch(js.Conn().StatusChanged(nats.CONNECTED, nats.RECONNECTING))
	return c, nil
}

// watch follows the connection until the channel is closed. When it is
// lost, the receivers drop what they read ahead (see receiver.forget); when
// it is re-established, the requests under way are cancelled, to be made
// again at once.
func (c *Channel) watch(status chan nats.Status) {
	defer close(c.watchDone)
	defer c.js.Conn().RemoveStatusListener(status)
	for {
		select {
		case s := <-status:
			c.breaks.Add(1)
			c.subsMu.Lock()
			for _, r := range c.subs {
				r.forget()
			}
			c.subsMu.Unlock()
			if s != nats.CONNECTED {
				continue
			}
			c.reconnects.Add(1)
			c.conn.Swap(newConnGen()).cancel()
			c.reqMu.Lock()
			for cancel := range c.requests {
				(*cancel)()
			}
			c.reqMu.Unlock()
		case <-c.closing:
			c.conn.Load().cancel()
			return
		}
	}
}

// request returns a context for one request to the server, to be ended with
// done. It reports whether the request was cut short by a reconnection, in
// which case it may be made again at once.
func (c *Channel) request(parent context.Context, timeout time.Duration) (ctx context.Context, done func() (reconnected bool)) {
	gen := c.reconnects.Load()
	ctx, cancel := context.WithTimeout(parent, timeout)
	c.reqMu.Lock()
	c.requests[&cancel] = struct{}{}
	c.reqMu.Unlock()
	return ctx, func() bool {
		c.reqMu.Lock()
		delete(c.requests, &cancel)
		c.reqMu.Unlock()
		cancel()
		return c.reconnects.Load() != gen
	}
}

// Name returns the flow channel's name.
func (c *Channel) Name() string { return c.name }

// Stream returns the name of the channel's stream.
func (c *Channel) Stream() string { return c.stream }

// Subject returns the subject the channel publishes to.
func (c *Channel) Subject() string { return c.subject }

// attemptTimeout bounds one request to the server: a publish attempt, the
// creation of a consumer, the flush before Receive reports the end.
const attemptTimeout = 5 * time.Second

// Publish implements [flows.Channel]. It returns once the stream has stored
// e. While the stream is full (see [WithMaxMessages]) or JetStream is not
// reachable, it tries again until ctx ends; it then returns an error that
// wraps the cause of ctx, and [flows.ErrFull] if the stream was full, in
// which case e was not stored.
//
// ctx bounds the waiting between attempts, not an attempt under way, so
// that its outcome is never in doubt: an attempt takes a round trip, or up
// to 5s while the server cannot be reached. Even with ctx already done,
// Publish makes one attempt, so that a flow's TrySend works. Attempts share
// a message ID: the stream stores e once even if an answer was lost and e
// was sent again (within the stream's duplicate window, 2 minutes by
// default).
func (c *Channel) Publish(ctx context.Context, e *event.Event) error {
	if e == nil {
		return errors.New("flows/jetstream: publish: nil event")
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return flows.ErrClosed
	}
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer putEncodeBuffer(buf)
	data, err := encode(e, buf)
	if err != nil {
		return fmt.Errorf("flows/jetstream: publish to %q: encoding event %q: %w", c.stream, e.ID(), err)
	}
	msg := &nats.Msg{
		Subject: c.subject,
		Data:    data,
		Header: nats.Header{
			"Content-Type":              contentType,
			natsjs.MsgIDHeader:          []string{nuid.Next()},
			natsjs.ExpectedStreamHeader: c.expectStream,
		},
	}
	wait := time.Millisecond
	for {
		gen := c.conn.Load()
		actx, cancel := context.WithTimeout(gen.ctx, attemptTimeout)
		_, err := c.js.PublishMsg(actx, msg)
		cancel()
		if err == nil {
			return nil
		} else if c.conn.Load() != gen && !c.closed.Load() {
			// Sent to a server that the client has since left: the
			// message ID makes it safe to send again at once.
			continue
		}
		retry, full := transient(err)
		if !retry {
			return fmt.Errorf("flows/jetstream: publish to %q: %w", c.stream, err)
		}
		if ctx.Err() == nil {
			select {
			case <-time.After(wait):
				wait = min(2*wait, 100*time.Millisecond)
				continue
			case <-c.closing:
				return fmt.Errorf("%w: publish to %q interrupted: %w", flows.ErrClosed, c.stream, err)
			case <-ctx.Done():
			}
		}
		if full {
			return fmt.Errorf("%w: stream %q: %w", flows.ErrFull, c.stream, context.Cause(ctx))
		}
		return fmt.Errorf("flows/jetstream: publish to %q: %w (last attempt: %w)", c.stream, context.Cause(ctx), err)
	}
}

// encode writes e in the CloudEvents JSON format to buf, which it resets,
// and returns its bytes. It writes what json.Marshal writes, without the
// copy that json.Marshal makes of it, and keeps its check, since a JSON
// event's data is written as it is.
func encode(e *event.Event, buf *bytes.Buffer) ([]byte, error) {
	buf.Reset()
	if err := event.WriteJson(e, buf); err != nil {
		return nil, err
	}
	if !json.Valid(buf.Bytes()) {
		return nil, errors.New("data is not valid JSON")
	}
	return buf.Bytes(), nil
}

// encodeBuffers holds the buffers that Publish encodes into: nats.go has
// copied the bytes once the publish returns.
var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putEncodeBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 64<<10 { // a rare large event does not stay pinned
		encodeBuffers.Put(buf)
	}
}

// decode reads a message written by encode, or any CloudEvent in the JSON
// format, as json.Unmarshal does, without its second pass over the input.
func decode(data []byte, e *event.Event) error {
	if !json.Valid(data) {
		// json.Unmarshal's error says where the input goes wrong.
		return json.Unmarshal(data, e)
	}
	return e.UnmarshalJSON(data)
}

// transient reports whether a publish that failed with err may succeed if
// tried again, and whether it failed because the stream was full.
func transient(err error) (retry, full bool) {
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		// 10077: the stream could not store the message; "exceeded" is a
		// DiscardNew limit, anything else a store that is not ready yet.
		if apiErr.ErrorCode == natsjs.ErrorCode(10077) {
			return true, strings.Contains(apiErr.Description, "exceeded")
		}
		return apiErr.Code == 503, false
	}
	switch {
	case errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, natsjs.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true, false
	}
	return false, false
}

// Subscribe implements [flows.Channel]. The subscription is a durable
// consumer named after name: it keeps its position while no process runs,
// and receivers of the same name, in any process, share its messages. A new
// subscription starts with the messages published after it was created.
func (c *Channel) Subscribe(name string) (flows.Receiver, error) {
	if name == "" {
		return nil, errors.New("flows/jetstream: subscribe: empty subscription name")
	}
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	if c.closed.Load() {
		return nil, flows.ErrClosed
	}
	if r, ok := c.subs[name]; ok {
		return r, nil
	}
	cc := natsjs.ConsumerConfig{
		Durable:       token(name),
		Description:   "flows subscription " + name,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       c.cfg.ackWait,
		DeliverPolicy: natsjs.DeliverNewPolicy,
		MaxDeliver:    -1,
	}
	if c.cfg.consumerConfig != nil {
		c.cfg.consumerConfig(&cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
	defer cancel()
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.stream, cc)
	if err != nil {
		return nil, fmt.Errorf("flows/jetstream: subscribing %q to stream %q: %w", name, c.stream, err)
	}
	r := newReceiver(c, name, cons)
	c.subs[name] = r
	go r.pump()
	return r, nil
}

// Close implements [flows.Channel]. It stops intake and fetching, and
// returns once no Publish is under way. Receive goes on handing out the
// messages this handle already fetched; once they are acknowledged it
// returns [flows.ErrClosed]. The messages still in the stream are delivered
// to the next run, or to the other processes of the flow.
func (c *Channel) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.stop()
	c.mu.Lock() // waits for the publishers under way
	defer c.mu.Unlock()
	c.subsMu.Lock()
	subs := make([]*receiver, 0, len(c.subs))
	for _, r := range c.subs {
		subs = append(subs, r)
	}
	c.subsMu.Unlock()
	for _, r := range subs {
		<-r.pumpDone
	}
	<-c.watchDone
	return nil
}

// token turns a flow name into a valid stream, consumer or subject token:
// names made of letters, digits, '-' and '_' are kept as they are; others
// have the rest replaced and a hash of the original appended, so that two
// names never share a token.
func token(s string) string {
	if validToken(s) && len(s) <= 200 {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if !tokenByte(ch) {
			b[i] = '_'
		}
	}
	if len(b) > 180 {
		b = b[:180]
	}
	sum := sha256.Sum256([]byte(s))
	return string(b) + "_" + hex.EncodeToString(sum[:4])
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

func tokenByte(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_'
}
