package flows

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A Sender is where an [Ingress] delivers the events it accepts: a running
// [Flow], or a channel wrapped with [ChannelSender].
type Sender interface {
	// Send accepts e and returns; delivery goes on in the background.
	Send(ctx context.Context, e event.Event) error
	// Handle accepts e and returns once it has been fully handled.
	Handle(ctx context.Context, e event.Event) (*event.Event, error)
}

// ChannelSender makes a channel a [Sender], so that it can be served by an
// [Ingress]: Send publishes to it, and Handle also waits until every
// delivery the event caused is done (for in-memory channels).
func ChannelSender(ch Channel) Sender { return channelSender{ch} }

type channelSender struct{ ch Channel }

func (c channelSender) Send(ctx context.Context, e event.Event) error { return c.publish(ctx, e) }

func (c channelSender) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return sendAndWait(ctx, e, c.publish, nil, false)
}

func (c channelSender) publish(ctx context.Context, e event.Event) error {
	p, err := ownEvent(e)
	if err != nil {
		return err
	}
	return c.ch.Publish(ctx, p)
}

// DefaultMaxBodyBytes is the largest request body an [Ingress] reads unless
// told otherwise.
const DefaultMaxBodyBytes = 4 << 20

// DefaultMaxBytesInFlight is the size of a [ByteBudget] unless told
// otherwise: 16 request bodies of [DefaultMaxBodyBytes] at once, or some
// 64,000 events of a kilobyte, which keeps an ingress's heap within a
// small container's memory whatever the number of clients.
const DefaultMaxBytesInFlight = 64 << 20

// DefaultMaxWait is how long a request waits for room in a full flow
// before it gets 503 with Retry-After, unless told otherwise: long enough
// to ride out a burst, short enough to answer before clients' own
// timeouts.
const DefaultMaxWait = 5 * time.Second

// A ByteBudget bounds the request-body bytes that the ingresses sharing it
// hold at once, from the moment a request is admitted until its event has
// been handed to the flow (or refused). Give one budget to several
// ingresses with [IngressByteBudget] to bound a whole server; by default
// each ingress has a budget of its own. A ByteBudget is safe for concurrent
// use and costs two atomic operations per request.
type ByteBudget struct {
	limit int64
	used  atomic.Int64
}

// NewByteBudget returns a budget of n bytes; n <= 0 means
// [DefaultMaxBytesInFlight]. An ingress given a budget smaller than its
// largest body accepts bodies up to the budget only.
func NewByteBudget(n int64) *ByteBudget {
	if n <= 0 {
		n = DefaultMaxBytesInFlight
	}
	return &ByteBudget{limit: n}
}

// reserve takes n bytes from the budget, or reports that they are not
// there. It may refuse spuriously while others are being refused, but
// never lets the budget be exceeded.
func (b *ByteBudget) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *ByteBudget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
	}
}

// An IngressOption configures an [Ingress], or the handler [NewHTTPHandler]
// returns.
type IngressOption func(*Ingress)

// IngressSynchronous makes the ingress answer only once the flow has
// finished with the event: 202 if every delivery succeeded or was
// dead-lettered, 500 if one failed past its dead-letter sink. This is
// Knative's default since v1.13; a chain of synchronous hops holds each
// request open until the end.
func IngressSynchronous() IngressOption { return func(in *Ingress) { in.sync = true } }

// DefaultReplyTimeout is how long an ingress made with [IngressReply]
// waits for a flow's outputs unless told otherwise: Knative's default for
// a RequestReply.
const DefaultReplyTimeout = 30 * time.Second

// IngressReply makes the ingress answer each request with the events the
// flow emitted for it at its ends (see [Flow.Request]), once the flow has
// finished with it:
//
//   - 200 with the event, if there is one: in binary mode, or in
//     structured mode if the request was structured;
//   - 200 with a CloudEvents JSON batch (Content-Type
//     application/cloudevents-batch+json, an array of structured events),
//     in the order they left, if there are several: a Parallel's branches;
//   - 202 with no body if there is none, Knative's "no reply";
//   - 500 with a generic reason if a delivery failed past its dead-letter
//     sink, or the flow cannot answer requests (a [Broker], durable
//     channels): the details go to the [IngressLogger];
//   - 504 if the flow has not finished within [IngressReplyTimeout]; the
//     event goes on in the background.
//
// The byte budget and the wait for room apply as to any request; the
// request's bytes are given back once its event is in the flow. The option
// takes precedence over [IngressSynchronous], and makes an ingress whose
// [Sender] is not a [*Flow] synchronous, which has no outputs to answer
// with. [NewHTTPHandler] answers with its handler's reply anyway, and
// ignores it.
func IngressReply() IngressOption { return func(in *Ingress) { in.reply = true } }

// IngressReplyTimeout sets how long an ingress made with [IngressReply]
// waits, from the moment the event is in the flow, for the flow to finish
// with it before it answers 504; d <= 0 means [DefaultReplyTimeout].
func IngressReplyTimeout(d time.Duration) IngressOption {
	return func(in *Ingress) {
		if d > 0 {
			in.replyTimeout = d
		}
	}
}

// IngressMaxBodyBytes sets the largest request body accepted; larger requests get
// 413 without the body being read. n <= 0 means [DefaultMaxBodyBytes].
func IngressMaxBodyBytes(n int64) IngressOption {
	return func(in *Ingress) {
		if n > 0 {
			in.maxBody = n
		}
	}
}

// IngressByteBudget makes the ingress take its requests' bytes from b,
// which other ingresses may share, instead of a budget of its own of
// [DefaultMaxBytesInFlight]. A request is admitted if its Content-Length
// (or, for a body of unknown length, the largest body accepted) fits in
// what is left; otherwise it gets 503 with Retry-After at once, before its
// body is read. A nil b keeps the default.
func IngressByteBudget(b *ByteBudget) IngressOption {
	return func(in *Ingress) {
		if b != nil {
			in.budget = b
		}
	}
}

// IngressMaxWait sets how long a request waits for room in a full flow
// before it gets 503 with Retry-After; d <= 0 means [DefaultMaxWait]. The
// wait starts when the flow is found full, and does not bound the rest of a
// synchronous request: only the wait to get into the flow. (With a
// [Sender] of another package in synchronous mode, whose wait for room
// cannot be told apart from its work, it has no effect.)
func IngressMaxWait(d time.Duration) IngressOption {
	return func(in *Ingress) {
		if d > 0 {
			in.wait = d
		}
	}
}

// IngressAuthenticator makes the ingress check each request with a before
// reading its body; a refused request gets 401 or 403 and never reaches
// the flow.
func IngressAuthenticator(a Authenticator) IngressOption { return func(in *Ingress) { in.auth = a } }

// IngressLogger makes the ingress log through l: refused requests at Debug,
// and at Warn the failures whose details its answers leave out (a
// delivery that failed, a handler's error), since clients are told only
// that the event could not be delivered.
func IngressLogger(l *slog.Logger) IngressOption { return func(in *Ingress) { in.log = l } }

// An Ingress is an [http.Handler] that accepts CloudEvents into a flow or a
// channel, with the contract of Knative's channel ingress:
//
//   - only POST is accepted (405 otherwise); OPTIONS is answered as for a
//     CloudEvents webhook (Allow, WebHook-Allowed-Origin and -Rate);
//   - the body is a CloudEvent in binary or structured mode; anything else
//     gets 400 with a short reason (415 for an unsupported CloudEvents
//     format), and nothing reaches the flow;
//   - a body over the size limit gets 413 ([IngressMaxBodyBytes]);
//   - a request whose body does not fit in the bytes in flight left
//     ([IngressByteBudget]) gets 503 with Retry-After at once, unread;
//   - an accepted event gets 202 Accepted with no body;
//   - a flow that is shutting down answers 503, and a full flow answers 503
//     with Retry-After when no room was made within [IngressMaxWait];
//   - a synchronous ingress whose flow failed to deliver the event answers
//     500 with a generic reason: the details (URLs, errors) go to the
//     [IngressLogger] and the flow's observer, never to the client.
//
// By default the ingress is asynchronous: 202 means the event is in the
// flow's first channel, which a graceful shutdown drains, so an accepted
// event is not lost (unlike Knative's asynchronous channels, which drop
// in-flight events when they stop). See [IngressSynchronous] for the other
// mode, and [IngressReply] for one that answers with the flow's outputs.
// The pass-through headers of the request (see [PassThroughHeaders])
// travel with the event to HTTP subscribers.
type Ingress struct {
	dst  Sender
	pub  publisher // dst, when it is one of this package's
	auth Authenticator
	sync bool
	// reply answers with the flow's outputs (IngressReply); flow is dst
	// when it is a *Flow.
	reply        bool
	replyTimeout time.Duration
	flow         *Flow
	maxBody      int64
	budget       *ByteBudget
	wait         time.Duration
	log          *slog.Logger
	obs          *Observer
	sources      sourceCache // of the events it reads (and NewHTTPHandler's replies)
}

// publisher is what this package's senders ([Flow], [ChannelSender]) do
// inside Send and Handle: put the event in the first channel, waiting for
// room until ctx ends.
type publisher interface {
	publish(ctx context.Context, e event.Event) error
}

// NewIngress returns an ingress that delivers to dst.
func NewIngress(dst Sender, opts ...IngressOption) *Ingress {
	in := newIngress(opts)
	in.dst = dst
	switch d := dst.(type) {
	case *Flow:
		if d != nil {
			in.pub, in.flow = d, d
			if in.obs == nil {
				in.obs = d.obs
			}
		}
	case channelSender:
		in.pub = d
	}
	return in
}

// newIngress applies opts: the part of an ingress that [NewHTTPHandler]
// shares.
func newIngress(opts []IngressOption) *Ingress {
	in := &Ingress{maxBody: DefaultMaxBodyBytes, wait: DefaultMaxWait, replyTimeout: DefaultReplyTimeout}
	for _, o := range opts {
		o(in)
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	if in.budget == nil {
		in.budget = NewByteBudget(0)
	}
	// A body larger than the budget could never be admitted.
	in.maxBody = min(in.maxBody, in.budget.limit)
	return in
}

// ServeHTTP implements [http.Handler].
func (in *Ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		w.Header().Set("Allow", "POST, OPTIONS")
		w.Header().Set("WebHook-Allowed-Origin", "*")
		w.Header().Set("WebHook-Allowed-Rate", "*")
		w.WriteHeader(http.StatusOK)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		in.refuse(w, r, http.StatusMethodNotAllowed, "only POST is allowed")
		return
	}
	// What the request needs, in one allocation.
	st := new(requestState)
	reserved, ok := in.admit(w, r, &st.body)
	if !ok {
		return
	}
	// Given back once the event is in the flow, or refused.
	defer func() { in.budget.release(reserved) }()
	ctx, e, w, finish, ok := in.accept(w, r)
	if !ok {
		return
	}
	defer finish()
	var err error
	var outs *outputs
	switch {
	case in.reply && in.flow != nil:
		if err = in.flow.requestable(); err == nil {
			outs = new(outputs)
			err = in.handle(ctx, *e, st, &reserved, outs, in.replyTimeout)
		}
	case (in.sync || in.reply) && in.pub != nil:
		err = in.handle(ctx, *e, st, &reserved, nil, 0)
	case in.sync || in.reply:
		_, err = in.dst.Handle(ctx, *e)
	default:
		st.wc.Context, st.wc.wait = ctx, in.wait
		err = in.dst.Send(&st.wc, *e)
		st.wc.stop()
	}
	in.budget.release(reserved)
	reserved = 0
	switch {
	case err == nil && outs != nil:
		in.answer(w, r, outs.take())
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case err == errReplyTimeout:
		in.fail(w, r, http.StatusGatewayTimeout, fmt.Sprintf("the flow did not answer within %s", in.replyTimeout), err)
	case errors.Is(err, ErrInvalidEvent):
		in.refuse(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrClosed):
		in.refuse(w, r, http.StatusServiceUnavailable, "the flow is shutting down")
	case errors.Is(err, ErrFull):
		w.Header().Set("Retry-After", "1")
		in.refuse(w, r, http.StatusServiceUnavailable, "the flow is full")
	default:
		// The error names subscribers, paths and transport errors: internals
		// that are none of the client's business.
		in.fail(w, r, http.StatusInternalServerError, errNotDelivered, err)
	}
}

// errNotDelivered is what a synchronous ingress tells a client whose event
// failed in the flow.
const errNotDelivered = "the event could not be delivered"

// requestState is what an ingress needs for a request beyond net/http's:
// its body's limit, its wait for room and, if synchronous, the tracking of
// its event.
type requestState struct {
	body sizedBody
	wc   waitContext
	env  envelope
	tr   tracker
}

// accept reads the event of an admitted request and makes its context:
// the pass-through headers, and the observer's Ingress hook, whose end
// finish reports with the status written to the returned writer (call it
// once the request is answered). ok is false if the request was refused.
func (in *Ingress) accept(w http.ResponseWriter, r *http.Request) (ctx context.Context, e *event.Event, rw http.ResponseWriter, finish func(), ok bool) {
	e, status, err := readEventWith(r, &in.sources)
	if err != nil {
		in.refuse(w, r, status, err.Error())
		return nil, nil, w, nil, false
	}
	ctx = r.Context()
	if hdr := PassThroughHeaders(r.Header); hdr != nil {
		ctx = withEnvelope(ctx, &envelope{carried: carried{header: hdr}})
	}
	finish = func() {}
	if o := in.obs.active(ctx); o != nil && o.Ingress != nil {
		var done func(int)
		if ctx, done = o.Ingress(ctx, r, e); done != nil {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			w = sw
			finish = func() { done(sw.status) }
		}
	}
	return ctx, e, w, finish, true
}

// admit checks a POST's credentials and size and takes its bytes from the
// budget. If the request may not go on it answers it and reports false;
// otherwise the caller must release what it reserved, and reads the body
// through a limit (body, if its length is known).
func (in *Ingress) admit(w http.ResponseWriter, r *http.Request, body *sizedBody) (reserved int64, ok bool) {
	if in.auth != nil {
		if err := in.auth.Authenticate(r); err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, ErrForbidden) {
				status = http.StatusForbidden
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="flows"`)
			}
			in.refuse(w, r, status, http.StatusText(status))
			return 0, false
		}
	}
	if r.ContentLength > in.maxBody {
		in.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, in.maxBody))
		return 0, false
	}
	// A body of unknown length may be as large as the limit: reserving that
	// much up front keeps the promise that nothing is read without room,
	// at the cost of admitting fewer such requests at once.
	n := r.ContentLength
	if n < 0 {
		n = in.maxBody
	}
	if !in.budget.reserve(n) {
		w.Header().Set("Retry-After", "1")
		in.refuse(w, r, http.StatusServiceUnavailable, "too many requests in progress")
		return 0, false
	}
	if r.ContentLength > 0 {
		// Within the limit, checked above.
		body.ReadCloser, body.left = r.Body, r.ContentLength
		r.Body = body
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, in.maxBody)
	}
	return n, true
}

// sizedBody is a request body of a known length, which it reads no
// further than. readBody reads it into one buffer of that size: growing
// chunks and a final copy would hold twice the body for a moment, twice the
// bytes the budget counts.
type sizedBody struct {
	io.ReadCloser
	left int64
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// handle is [Flow.Handle] for a synchronous ingress: it waits for room at
// most in.wait, and gives the request's bytes back as soon as the event is
// in the flow rather than when the flow is done with it. (sendAndWait, with
// the tracker in the request's state.) If out is set, it collects the
// event's outputs and the flow has timeout to finish once it has the event.
func (in *Ingress) handle(ctx context.Context, e event.Event, w *requestState, reserved *int64, out *outputs, timeout time.Duration) error {
	w.tr.init()
	w.tr.out = out
	if outer := envelopeFrom(ctx); outer != nil {
		w.env.carried = outer.carried
	}
	w.env.tr = &w.tr // this request's, in place of an outer one
	w.wc.Context, w.wc.wait = withEnvelope(ctx, &w.env), in.wait
	err := in.pub.publish(&w.wc, e)
	w.wc.stop()
	in.budget.release(*reserved)
	*reserved = 0
	if err != nil {
		return err
	}
	w.tr.finish()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-w.tr.done:
		return w.tr.result()
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return errReplyTimeout
	}
}

func (in *Ingress) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	in.log.LogAttrs(r.Context(), slog.LevelDebug, "flows: ingress refused a request",
		slog.String("method", r.Method), slog.Int("status", status), slog.String("reason", reason))
	http.Error(w, reason, status)
}

// fail answers a request that failed for reasons of the server's own:
// the client gets reason, the logger the error.
func (in *Ingress) fail(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	in.log.LogAttrs(r.Context(), slog.LevelWarn, "flows: request failed",
		slog.String("method", r.Method), slog.Int("status", status), slog.Any("error", err))
	http.Error(w, reason, status)
}

// waitContext is a context that ends wait after someone first waits on it
// (calls Done), as well as when its parent ends. A publisher finds room
// without calling Done, so the common case starts no timer.
type waitContext struct {
	context.Context
	wait   time.Duration
	once   sync.Once
	armed  atomic.Bool // inner and cancel are set
	inner  context.Context
	cancel context.CancelFunc
}

// errWaitedForRoom is the cause of a waitContext's end.
var errWaitedForRoom = errors.New("no room was made within the ingress's wait")

func (c *waitContext) arm() {
	c.inner, c.cancel = context.WithTimeoutCause(c.Context, c.wait, errWaitedForRoom)
	c.armed.Store(true)
}

func (c *waitContext) Done() <-chan struct{} {
	c.once.Do(c.arm)
	return c.inner.Done()
}

func (c *waitContext) Err() error {
	if c.armed.Load() {
		return c.inner.Err()
	}
	return c.Context.Err()
}

func (c *waitContext) Deadline() (time.Time, bool) {
	if c.armed.Load() {
		return c.inner.Deadline()
	}
	return c.Context.Deadline()
}

// Value is the parent's, but for the inner context's own keys, so that
// context.Cause finds errWaitedForRoom.
func (c *waitContext) Value(key any) any {
	if c.armed.Load() {
		return c.inner.Value(key)
	}
	return c.Context.Value(key)
}

// stop releases the timer, once the wait is over.
func (c *waitContext) stop() {
	if c.armed.Load() {
		c.cancel()
	}
}

// readEvent decodes the request's CloudEvent, or says which status to
// answer: 400 for what is not a valid CloudEvent, 415 for a CloudEvents
// format or a batch that is not supported, 413 for a body over its limit.
func readEvent(r *http.Request) (*event.Event, int, error) { return readEventWith(r, nil) }

// readEventWith is readEvent with a cache of sources.
func readEventWith(r *http.Request, sources *sourceCache) (*event.Event, int, error) {
	e, err := decodeMessageWith(r.Context(), r.Header, r.Body, r.ContentLength, 0, sources)
	if err == nil {
		return e, 0, nil
	}
	var mbe *http.MaxBytesError
	var de *decodeError
	switch {
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds the limit of %d bytes", mbe.Limit)
	case !errors.As(err, &de):
		return nil, http.StatusBadRequest, fmt.Errorf("malformed CloudEvent: %v", err)
	}
	switch de.kind {
	case notAnEvent:
		return nil, http.StatusBadRequest, err
	case unsupported:
		return nil, http.StatusUnsupportedMediaType, err
	case invalid:
		return nil, http.StatusBadRequest, fmt.Errorf("invalid CloudEvent: %v", err)
	case tooLarge:
		return nil, http.StatusRequestEntityTooLarge, err
	case bodyFailed:
		return nil, http.StatusBadRequest, fmt.Errorf("reading the body: %v", err)
	}
	return nil, http.StatusBadRequest, fmt.Errorf("malformed CloudEvent: %v", err)
}

// A Server serves an [http.Handler] (typically an [Ingress]) on its own
// listener with timeouts fit for an ingress, so that slow clients cannot
// hold connections forever.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	url  string
	done chan struct{}
	err  error
}

// A ServerOption configures a [Server].
type ServerOption func(*http.Server)

// ServerTLS makes the server speak HTTPS with cfg, which must hold a
// certificate.
func ServerTLS(cfg *tls.Config) ServerOption {
	return func(s *http.Server) { s.TLSConfig = cfg }
}

// ListenAndServe listens on addr (for example "127.0.0.1:0" for a free port)
// and serves h in the background until Shutdown or Close. It returns once
// the listener is open, so the server is reachable at [Server.URL].
//
// The server's timeouts are: 10s to read headers, 1m to read a request,
// 15m to write the answer (a synchronous ingress answers when the flow is
// done), 2m for idle keep-alive connections.
func ListenAndServe(addr string, h http.Handler, opts ...ServerOption) (*Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      15 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	for _, o := range opts {
		o(srv)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("flows: listen on %s: %w", addr, err)
	}
	scheme := "http"
	if srv.TLSConfig != nil {
		scheme = "https"
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	s := &Server{srv: srv, ln: ln, url: scheme + "://" + ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// URL is the server's base URL, such as "http://127.0.0.1:41234".
func (s *Server) URL() string { return s.url }

// Shutdown stops accepting connections and waits for requests in progress,
// until ctx ends; see [http.Server.Shutdown].
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return errors.Join(err, s.err)
}

// Close stops the server at once.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return errors.Join(err, s.err)
}
