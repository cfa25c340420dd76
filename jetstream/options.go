package jetstream

import (
	"fmt"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// An Option configures the channels that [New] and [Channels] create.
type Option func(*config)

type config struct {
	prefix         string
	ackWait        time.Duration
	capacity       int
	prefetch       int
	streamConfig   func(*natsjs.StreamConfig)
	consumerConfig func(*natsjs.ConsumerConfig)
}

// DefaultPrefix is the prefix of stream names and subjects when
// [WithPrefix] is not given.
const DefaultPrefix = "flows"

// DefaultAckWait is how long the broker waits for a message to be
// acknowledged before it delivers it again, when [WithAckWait] is not given.
const DefaultAckWait = 30 * time.Second

// DefaultPrefetch is how many messages each subscription reads ahead of
// its workers when [WithPrefetch] is not given: enough that a worker never
// waits for a round trip to the server while the stream has messages, few
// enough that a process holds a small share of a backlog that other
// processes of the flow could take (64 decoded events per subscription, a
// few hundred KiB at most for small events).
const DefaultPrefetch = 64

func buildConfig(opts []Option) (config, error) {
	c := config{prefix: DefaultPrefix, ackWait: DefaultAckWait, prefetch: DefaultPrefetch}
	for _, opt := range opts {
		opt(&c)
	}
	if !validToken(c.prefix) {
		return c, fmt.Errorf("flows/jetstream: invalid prefix %q: use letters, digits, '-' and '_'", c.prefix)
	}
	if c.ackWait < time.Millisecond {
		return c, fmt.Errorf("flows/jetstream: invalid ack wait %v: must be at least 1ms", c.ackWait)
	}
	if c.prefetch < 0 {
		return c, fmt.Errorf("flows/jetstream: invalid prefetch %d: must be >= 0", c.prefetch)
	}
	if c.capacity < 0 {
		return c, fmt.Errorf("flows/jetstream: invalid capacity %d: must be >= 0", c.capacity)
	}
	return c, nil
}

// WithPrefix sets the prefix that keeps the streams of flows apart from
// other streams of the same account: the flow channel "orders-kn-sequence-0"
// becomes the stream "<prefix>_orders-kn-sequence-0" on the subject
// "<prefix>.orders-kn-sequence-0". The default is [DefaultPrefix]. Use one
// prefix per deployment of a flow: runners that share a prefix and a flow
// name share its events.
func WithPrefix(prefix string) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithAckWait sets how long the broker waits for a message to be
// acknowledged before it delivers it again, to this process or another
// one: after a crash, the messages that were being delivered are delivered
// again once it has passed. The channel keeps the messages it is delivering
// alive while their handlers run, however long they take, so a short wait
// costs a little traffic, not duplicates. It must be at least 1ms. The
// default is [DefaultAckWait].
func WithAckWait(d time.Duration) Option {
	return func(c *config) { c.ackWait = d }
}

// WithMaxMessages bounds each stream to n messages that are not yet
// acknowledged by all of its subscriptions (the stream's MaxMsgs, with
// DiscardNew); Publish waits while the stream is full, as the in-memory
// channel does, polling the server. Zero, the default, sets no bound beyond
// the server's own limits.
func WithMaxMessages(n int) Option {
	return func(c *config) { c.capacity = n }
}

// WithPrefetch sets how many messages each subscription fetches ahead of
// its workers, so that a worker that finishes a message finds the next one
// without waiting for a round trip to the server; it refills in batches,
// once half of them are taken. The default is [DefaultPrefetch].
//
// What reading ahead costs:
//   - Memory: up to n decoded events per subscription, each at most the
//     server's max_payload (1 MiB unless configured): 64 MiB at worst
//     with the default, far less for events of a few KiB.
//   - Sharing: the messages read ahead are reserved for this process, so
//     other processes of the same flow cannot take them meanwhile; the work
//     is shared in batches rather than message by message.
//   - Redelivery window: messages read ahead are delivered by this
//     process's workers, even after Close (so Flow.Shutdown drains them);
//     they are kept alive like the message being handled. Those on their
//     way when a handle is closed, and those this process still holds
//     after Flow.Close, a crash, or a loss of the connection (which drops
//     them, so that none is handled twice when the server gives them to
//     another process meanwhile), are delivered again once their ack wait
//     has passed (see [WithAckWait]), after later messages.
//
// WithPrefetch(0) fetches only for a worker that is waiting, one message at
// a time: the work is shared between processes message by message, and
// nothing waits for the ack wait but the messages being handled, at the
// cost of a round trip to the server before each message (about 0.6x the
// throughput of the default, on the benchmark in bench/).
func WithPrefetch(n int) Option {
	return func(c *config) { c.prefetch = n }
}

// WithStreamConfig lets f adjust the configuration of each stream before it
// is created or updated: replicas, storage, placement, limits. f must keep
// the name and subjects that the channel sets.
//
// The channel sets interest retention: a message stays until every
// subscription has acknowledged it, however long that takes. Limits
// retention with a MaxAge or MaxBytes is faster on a file store (the
// server does not delete each message as it is acknowledged), but drops
// messages past the limits whether delivered or not; [WithMaxMessages] needs
// interest retention.
func WithStreamConfig(f func(*natsjs.StreamConfig)) Option {
	return func(c *config) { c.streamConfig = f }
}

// WithConsumerConfig lets f adjust the configuration of each durable
// consumer before it is created or updated, for example MaxAckPending or
// the number of replicas. f must keep the durable name, the ack policy and
// the deliver policy that the channel sets. An AckWait set here (or a
// BackOff, whose first value the server makes the ack wait) replaces
// [WithAckWait]'s, and messages are kept alive accordingly.
func WithConsumerConfig(f func(*natsjs.ConsumerConfig)) Option {
	return func(c *config) { c.consumerConfig = f }
}
