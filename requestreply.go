package flows

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Defaults of a [RequestReply], as Knative's.
const (
	// DefaultCorrelationAttribute is the extension a request gets its
	// correlation value in.
	DefaultCorrelationAttribute = "correlationid"
	// DefaultReplyAttribute is the extension a reply carries that value
	// back in.
	DefaultReplyAttribute = "replyid"
	// DefaultMaxWaiting is how many requests a [RequestReply] lets wait
	// for their replies at once unless told otherwise: each holds a
	// goroutine (an HTTP request's) and a few hundred bytes, so 10,000
	// stay within a few megabytes while covering 330 requests a second
	// answered within the default 30 s timeout.
	DefaultMaxWaiting = 10000
)

// ErrReplyTimeout is wrapped by the error of a request that got no reply
// within its [RequestReply]'s Timeout. The error wraps
// [context.DeadlineExceeded] too.
var ErrReplyTimeout = errors.New("flows: no reply within the RequestReply's timeout")

// errTooManyWaiting refuses a request past RequestReply.MaxWaiting; it
// wraps ErrFull, since trying again later may succeed.
var errTooManyWaiting = fmt.Errorf("too many requests waiting for their reply: %w", ErrFull)

// A RequestReply answers a request sent into a [Broker] with the event
// that replies to it, as Knative's RequestReply (eventing.knative.dev
// v1alpha1) does: each request gets the extension CorrelationAttribute set
// to "<id>:<token>:0" (its id, a token unique to the request, and the
// replica index, always 0 in one process) and is sent into the broker;
// any event that enters the broker afterwards with that value in its
// ReplyAttribute answers the request. Usually a Trigger's subscriber
// copies the attribute from the request onto its reply, and the reply
// re-enters the broker as every reply of a Trigger does; but the reply
// may come in any way (Send, an ingress, another flow). Every event goes
// on to the Triggers as usual, replies included: the RequestReply only
// looks at them, as the Trigger that Knative creates for it does.
//
// Start it on a running broker, then call [Requester.Request], or serve
// [Requester.Handler] over HTTP (the manifest runner serves it at
// /<namespace>/<name>, as Knative does).
//
// Differences from Knative, all on purpose: Timeout is honoured (Knative's
// data plane waits a minute whatever it says) and a request that times
// out gets an error ([ErrReplyTimeout]; over HTTP, 504), where Knative
// writes no answer; two requests with the same event id never get each
// other's reply (Knative files them by id, so the second replaces the
// first); a reply for no waiting request (late, unknown, forged, or a
// second reply to one already answered) is dropped and counted
// ([Requester.Stats]), never blocks the broker, and the first reply wins;
// the waiting requests are bounded by MaxWaiting; a request already
// carrying the correlation attribute has it overwritten, as in Knative.
// Instead of Knative's AES keys the token is 128 random bits (see
// [Requester.Request]). spec.delivery of a manifest is accepted and
// ignored: the request is handed to the broker in process, with no hop
// to retry.
type RequestReply struct {
	// Name and Namespace name it in errors and logs, and in the path the
	// manifest runner serves it at. The defaults are "default" and
	// "default".
	Name, Namespace string

	// Broker is the running [Broker] (its [*Flow]) that requests are sent
	// into and replies are looked for in. Required.
	Broker *Flow

	// CorrelationAttribute is the extension a request's correlation value
	// is set in; the default is [DefaultCorrelationAttribute].
	// ReplyAttribute is the extension a reply carries it back in; the
	// default is [DefaultReplyAttribute]. Each must be an extension name
	// (lower-case letters and digits, not a CloudEvents attribute such as
	// id, source, specversion or type), and they must differ, or every
	// request would answer itself.
	CorrelationAttribute, ReplyAttribute string

	// Timeout is how long a request waits for its reply once it is in the
	// broker; the default is [DefaultReplyTimeout] (30 s, Knative's
	// default). It must not be negative.
	Timeout time.Duration

	// MaxWaiting is how many requests may wait for their replies at once;
	// past it a request is refused at once with an error wrapping
	// [ErrFull] (over HTTP, 503 with Retry-After). The default is
	// [DefaultMaxWaiting]. It must not be negative.
	MaxWaiting int
}

func (rr *RequestReply) name() string      { return cmp.Or(rr.Name, "default") }
func (rr *RequestReply) namespace() string { return cmp.Or(rr.Namespace, "default") }

// Validate reports every problem of the definition at once, as
// [*DefinitionError] values joined with [errors.Join], or nil.
func (rr *RequestReply) Validate() error {
	p := &problems{flow: "requestreply " + strconv.Quote(rr.name())}
	switch {
	case rr.Broker == nil:
		p.add("broker", "missing: a RequestReply needs a running Broker")
	case !rr.Broker.isBroker():
		p.add("broker", "%s is not a Broker: only a broker's replies re-enter it, where a request's reply can be found", rr.Broker.Name())
	}
	corr := cmp.Or(rr.CorrelationAttribute, DefaultCorrelationAttribute)
	reply := cmp.Or(rr.ReplyAttribute, DefaultReplyAttribute)
	for _, a := range [...]struct{ field, name string }{{"correlationAttribute", corr}, {"replyAttribute", reply}} {
		if err := CheckReplyAttribute(a.name); err != nil {
			p.wrap(a.field, err)
		}
	}
	if corr == reply {
		p.add("replyAttribute", "%q is also the correlation attribute: every request would be its own reply", reply)
	}
	if rr.Timeout < 0 {
		p.add("timeout", "must be positive, got %s", rr.Timeout)
	}
	if rr.MaxWaiting < 0 {
		p.add("maxWaiting", "must not be negative, got %d", rr.MaxWaiting)
	}
	return p.err()
}

// CheckReplyAttribute reports why name cannot be a RequestReply's
// correlation or reply attribute, or nil: it must be a CloudEvents
// extension name, lower-case letters and digits, and not one of the
// attributes of the specification (id, source, specversion, type, and the
// optional ones). The manifest loader checks spec.correlationAttribute and
// spec.replyAttribute with it.
func CheckReplyAttribute(name string) error {
	switch {
	case name == "":
		return errors.New("an empty attribute name")
	case !extensionNameRule.MatchString(name):
		return fmt.Errorf("%q is not an extension name: use lower-case letters and digits", name)
	case reservedNames[name]:
		return fmt.Errorf("%q is a CloudEvents attribute (such as id, source, specversion or type), not an extension", name)
	}
	return nil
}

// Start checks the definition and starts looking for replies in the
// broker: requests may be made once it returns. Of the options,
// [WithLogger] applies: dropped replies are logged at Debug. ctx is not
// used afterwards. Stop it with [Requester.Shutdown] or
// [Requester.Close]; it stops by itself, answering its waiting requests
// with [ErrClosed], once the broker has stopped.
func (rr *RequestReply) Start(ctx context.Context, opts ...Option) (*Requester, error) {
	if err := rr.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in, ok := rr.Broker.input.(brokerInput)
	if !ok {
		return nil, fmt.Errorf("flows: requestreply %q: %w: broker %s has no input", rr.name(), ErrInvalid, rr.Broker.Name())
	}
	select {
	case <-rr.Broker.stopped:
		return nil, fmt.Errorf("flows: requestreply %q: broker %s: %w", rr.name(), rr.Broker.Name(), ErrClosed)
	default:
	}
	r := &Requester{
		name:      rr.name(),
		namespace: rr.namespace(),
		broker:    rr.Broker,
		corr:      cmp.Or(rr.CorrelationAttribute, DefaultCorrelationAttribute),
		reply:     cmp.Or(rr.ReplyAttribute, DefaultReplyAttribute),
		timeout:   cmp.Or(rr.Timeout, DefaultReplyTimeout),
		max:       cmp.Or(rr.MaxWaiting, DefaultMaxWaiting),
		log:       buildOptions(opts).logger,
		waiting:   map[string]*replyWaiter{},
		done:      make(chan struct{}),
		drained:   make(chan struct{}),
	}
	r.untap = in.br.tap(r)
	return r, nil
}

// A Requester is a started [RequestReply]. It is safe for concurrent use.
type Requester struct {
	name, namespace string
	broker          *Flow
	corr, reply     string
	timeout         time.Duration
	max             int
	log             *slog.Logger
	untap           func()

	mu       sync.Mutex
	waiting  map[string]*replyWaiter // by correlation value
	stopping bool                    // no new requests
	done     chan struct{}           // closed by Close: the waiting requests give up
	drained  chan struct{}           // closed once stopping and nothing waits
	doneOnce sync.Once

	answered, timedOut, dropped atomic.Uint64
}

// replyWaiter is a waiting request. Its reply is handed over once: the
// entry leaves the map when it is answered, so that a later reply with
// the same value finds nothing.
type replyWaiter struct{ reply chan *event.Event }

// RequestReplyStats counts what a [Requester] did since it started.
type RequestReplyStats struct {
	Waiting  int    // requests waiting for their reply now
	Answered uint64 // requests that got their reply
	TimedOut uint64 // requests that got none within the timeout
	// Dropped counts the events that entered the broker with a reply
	// attribute that no waiting request had: replies that came late, to
	// a request already answered (the first reply wins), or with an
	// unknown or forged value.
	Dropped uint64
}

// Stats returns the counts of r.
func (r *Requester) Stats() RequestReplyStats {
	r.mu.Lock()
	n := len(r.waiting)
	r.mu.Unlock()
	return RequestReplyStats{Waiting: n, Answered: r.answered.Load(), TimedOut: r.timedOut.Load(), Dropped: r.dropped.Load()}
}

// Path is where the manifest runner serves r's [Requester.Handler]:
// "/<namespace>/<name>", as Knative serves a RequestReply.
func (r *Requester) Path() string { return BrokerPath(r.namespace, r.name) }

// Request sends e into the broker with the correlation attribute set (e
// itself is not changed), and returns the first event that enters the
// broker with that value in the reply attribute, once it did: the event
// as the broker's Triggers see it.
//
// The value is "<id>:<token>:0", where token is 128 bits from
// crypto/rand (22 base64url characters), and the whole value is the key
// a reply is looked up by. So two requests with the same id never
// collide, and a reply cannot be forged by anyone who has not seen the
// request: a guess has one chance in 2^128. Knative gets the same
// assurance from AES-GCM encrypting the id under keys kept in a Secret,
// which lets its replicas check a value without sharing state; in one
// process the table of waiting requests is that state, so an unguessable
// token is enough, and there is no key to keep, rotate or leak.
//
// Errors: ErrInvalidEvent for an invalid event; what the broker's Send
// returns if it refuses e (ErrClosed, ErrFull when it stays full until ctx
// ends, ErrTTLExhausted); an error wrapping [ErrFull] at once when
// MaxWaiting requests are waiting already; [ErrReplyTimeout] (and
// context.DeadlineExceeded) when no reply came within the timeout;
// [ErrClosed] when r or the broker stopped first; ctx.Err() if ctx ends
// first. The request stays in the broker whatever happens to its wait.
func (r *Requester) Request(ctx context.Context, e event.Event) (event.Event, error) {
	reply, err := r.request(ctx, e, 0, nil)
	if err != nil {
		return event.Event{}, err
	}
	return *reply, nil
}

// request is Request; a wait > 0 bounds the wait for room in the broker
// as an ingress does, and sent, if set, is called once the broker took
// the event or refused it.
func (r *Requester) request(ctx context.Context, e event.Event, wait time.Duration, sent func()) (*event.Event, error) {
	if e.Context == nil {
		return nil, fmt.Errorf("%w: an event without attributes", ErrInvalidEvent)
	}
	req := copyEvent(e, false)
	value, w, err := r.register(req.ID())
	if err != nil {
		if sent != nil {
			sent()
		}
		return nil, err
	}
	if err := req.Context.SetExtension(r.corr, value); err != nil {
		r.remove(value)
		if sent != nil {
			sent()
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if wait > 0 {
		wc := &waitContext{Context: ctx, wait: wait}
		err = r.broker.Send(wc, *req)
		wc.stop()
	} else {
		err = r.broker.Send(ctx, *req)
	}
	if sent != nil {
		sent()
	}
	if err != nil {
		if !r.remove(value) {
			// Answered even so: the broker took it before refusing (a
			// Trigger's channel after another's).
			return r.answer(w), nil
		}
		return nil, err
	}
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case reply := <-w.reply:
		r.answered.Add(1)
		return reply, nil
	case <-t.C:
		err = fmt.Errorf("flows: requestreply %q: event %s: no reply within %s: %w (%w)", r.name, req.ID(), r.timeout, ErrReplyTimeout, context.DeadlineExceeded)
	case <-ctx.Done():
		err = ctx.Err()
	case <-r.done:
		err = fmt.Errorf("flows: requestreply %q: %w", r.name, ErrClosed)
	case <-r.broker.stopped:
		err = fmt.Errorf("flows: requestreply %q: broker %s stopped: %w", r.name, r.broker.Name(), ErrClosed)
	}
	if !r.remove(value) {
		// The reply was handed over meanwhile: it wins.
		return r.answer(w), nil
	}
	if errors.Is(err, ErrReplyTimeout) {
		r.timedOut.Add(1)
	}
	return nil, err
}

func (r *Requester) answer(w *replyWaiter) *event.Event {
	r.answered.Add(1)
	return <-w.reply
}

// register files a new request with the event id, under a value of its
// own.
func (r *Requester) register(id string) (string, *replyWaiter, error) {
	var token [16]byte
	rand.Read(token[:]) // never fails (crypto/rand.Read's contract)
	value := id + ":" + base64.RawURLEncoding.EncodeToString(token[:]) + ":0"
	w := &replyWaiter{reply: make(chan *event.Event, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopping:
		return "", nil, fmt.Errorf("flows: requestreply %q: %w", r.name, ErrClosed)
	case len(r.waiting) >= r.max:
		return "", nil, fmt.Errorf("flows: requestreply %q: %d requests are waiting: %w", r.name, len(r.waiting), errTooManyWaiting)
	}
	r.waiting[value] = w
	return value, w, nil
}

// remove takes the request filed under value out of the table, and
// reports whether it was still there (unanswered).
func (r *Requester) remove(value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.waiting[value]
	if ok {
		delete(r.waiting, value)
		r.checkDrained()
	}
	return ok
}

func (r *Requester) checkDrained() {
	if r.stopping && len(r.waiting) == 0 {
		select {
		case <-r.drained:
		default:
			close(r.drained)
		}
	}
}

// entered is called by the broker for each event that enters it.
func (r *Requester) entered(e *event.Event) {
	v, ok := extension(e, r.reply)
	if !ok {
		return
	}
	value, _ := v.(string)
	r.mu.Lock()
	w := r.waiting[value]
	if w != nil {
		delete(r.waiting, value)
		r.checkDrained()
	}
	r.mu.Unlock()
	if w == nil {
		r.dropped.Add(1)
		r.log.LogAttrs(context.Background(), slog.LevelDebug, "flows: requestreply dropped a reply that no request waits for",
			slog.String("requestreply", r.name), slog.String("id", e.ID()), slog.String("type", e.Type()),
			slog.String("reason", "late, unknown, forged, or a request already answered"))
		return
	}
	w.reply <- copyEvent(*e, false) // room for one, and only one sender: the one that took w out
}

// Shutdown stops taking requests (they get [ErrClosed]) and waits until
// every waiting request got its reply or timed out, or until ctx ends;
// then it stops as Close does, and returns ctx's error if it ended first.
// Call it before the broker's Shutdown, which the replies need.
func (r *Requester) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.stopping = true
	r.checkDrained()
	r.mu.Unlock()
	var err error
	select {
	case <-r.drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	r.Close()
	return err
}

// Close stops r at once: new requests get [ErrClosed], and so do the
// waiting ones, which return at once (a reply already handed over wins);
// later replies are no longer looked for. It returns nil.
func (r *Requester) Close() error {
	r.mu.Lock()
	r.stopping = true
	r.checkDrained()
	r.mu.Unlock()
	r.doneOnce.Do(func() {
		close(r.done)
		r.untap()
	})
	return nil
}

// Handler returns an [http.Handler] that answers each request with its
// reply, as Knative's RequestReply ingress does, with the limits of an
// [Ingress]:
//
//   - every answer carries Allow: POST, OPTIONS; OPTIONS gets 200 as for
//     a CloudEvents webhook, any other method than POST 405;
//   - the body is a CloudEvent in binary or structured mode: 400 if it is
//     not a valid one (415 for an unsupported format), 413 past
//     [IngressMaxBodyBytes], 503 with Retry-After when the
//     [IngressByteBudget] is spent, 401 or 403 from an
//     [IngressAuthenticator];
//   - 200 with the reply, in binary mode, or structured if the request
//     was structured;
//   - 504 when no reply came within the RequestReply's Timeout;
//   - 503 when r or the broker is shutting down, and 503 with Retry-After
//     when MaxWaiting requests are waiting already or the broker stayed
//     full past [IngressMaxWait];
//   - 400 when the broker refused the event as malformed (an exhausted
//     TTL), and 500 with a generic reason when it refused it otherwise
//     (the details go to the [IngressLogger]).
//
// The request's bytes are given back once its event is in the broker.
// [IngressSynchronous], [IngressReply] and [IngressReplyTimeout] have no
// effect: the RequestReply's Timeout bounds the wait. The handler answers
// at any path; the manifest runner mounts it at [Requester.Path].
func (r *Requester) Handler(opts ...IngressOption) http.Handler {
	// Before opts, so that theirs win.
	defaults := []IngressOption{IngressLogger(r.log), IngressObserver(r.broker.obs)}
	return &requestReplyHandler{r: r, in: newIngress(append(defaults, opts...))}
}

type requestReplyHandler struct {
	r  *Requester
	in *Ingress // its options, admission and answers
}

func (h *requestReplyHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	in := h.in
	w.Header().Set("Allow", "POST, OPTIONS")
	if req.Method != http.MethodPost {
		in.ServeHTTP(w, req) // OPTIONS and 405, as any ingress
		return
	}
	var body sizedBody
	reserved, ok := in.admit(w, req, &body)
	if !ok {
		return
	}
	release := func() { in.budget.release(reserved); reserved = 0 }
	defer release()
	ctx, e, w, finish, ok := in.accept(w, req)
	if !ok {
		return
	}
	defer finish()
	reply, err := h.r.request(ctx, *e, in.wait, release)
	switch {
	case err == nil:
		in.answer(w, req, []event.Event{*reply})
	case errors.Is(err, ErrReplyTimeout):
		in.fail(w, req, http.StatusGatewayTimeout, fmt.Sprintf("no reply within %s", h.r.timeout), err)
	case errors.Is(err, ErrInvalidEvent):
		in.refuse(w, req, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrClosed):
		in.refuse(w, req, http.StatusServiceUnavailable, "the request-reply is shutting down")
	case errors.Is(err, errTooManyWaiting):
		w.Header().Set("Retry-After", "1")
		in.refuse(w, req, http.StatusServiceUnavailable, "too many requests are waiting for their reply")
	case errors.Is(err, ErrFull):
		w.Header().Set("Retry-After", "1")
		in.refuse(w, req, http.StatusServiceUnavailable, "the broker is full")
	case ctx.Err() != nil:
		// The client is gone: nobody reads an answer.
		in.refuse(w, req, http.StatusServiceUnavailable, "the request was cancelled")
	default:
		in.fail(w, req, http.StatusInternalServerError, errNotDelivered, err)
	}
}
