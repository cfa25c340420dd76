package flows

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// HTTPTarget is a [Handler] that delivers events to an HTTP endpoint with
// the CloudEvents HTTP binding, following Knative's data-plane contract:
//
//   - the event is POSTed in binary mode (structured if Structured is set),
//     with the header "Prefer: reply" when the target is a subscriber (not
//     when it is a reply destination or a dead-letter sink, as in Knative),
//     and "Kn-Namespace: <namespace>" when it is the subscriber of a
//     [Broker]'s Trigger (only there: a Sequence or Parallel has no
//     namespace);
//   - a 2xx answer carrying a CloudEvent is the reply; a 2xx answer without
//     one means "no event". For a Trigger's subscriber, where Knative's
//     broker answers 502, a 2xx answer with a body that is not a
//     CloudEvent, or with a CloudEvent that does not decode or is invalid,
//     is an [*HTTPError] with status 502 and that body (retried; its dead
//     letter names the target, code 502); only an empty body is "no event";
//   - any other answer is a failure, an [*HTTPError]; 404, 408, 409, 429 and
//     5xx are retried, other statuses (3xx included) are not. Transport
//     errors are retried too. Redirects are never followed.
//   - a reply is checked as an [Ingress] checks a request: a 2xx answer
//     whose CloudEvent is malformed or invalid (an unknown specversion,
//     a missing attribute, text that is not UTF-8, a batch) fails the
//     attempt for good (but for a Trigger's subscriber, see above), as does
//     a body over MaxReplyBytes ([ErrTooLarge]); such a reply would come
//     again.
//   - a reply whose body cannot be read to its end (the connection is cut,
//     the attempt times out) is a transport error and is retried, although
//     the subscriber has handled the event: a duplicate is better than a
//     loss.
//
// Bodies of short answers are read to the end so that connections are
// reused; a longer unread body, and one over the limit, close the
// connection instead. An HTTPTarget must not be copied after first use.
type HTTPTarget struct {
	// URL is the endpoint, an absolute http or https URL. Required.
	URL string

	// Client sends the requests. Nil uses a shared client whose transport
	// keeps enough idle connections per host for concurrent deliveries.
	// Its CheckRedirect is replaced so that redirects are not followed.
	Client *http.Client

	// Structured sends events in structured mode (application/cloudevents+json)
	// instead of binary mode.
	Structured bool

	// TLSConfig, if set, is used for https connections to this target, for
	// example to trust a private CA (RootCAs) or present a client
	// certificate. It is ignored when Client is set.
	TLSConfig *tls.Config

	// Header, if set, is called before each request to add headers, such as
	// an Authorization token. An error fails the attempt.
	Header func(ctx context.Context, h http.Header) error

	// MaxReplyBytes is the largest reply body read; a larger one fails the
	// attempt, unretried, with an error wrapping [ErrTooLarge], and is not
	// read further. Zero (or less) takes the flow's [WithMaxReplyBytes],
	// else [DefaultMaxBodyBytes]. A binary-mode reply of CloudEvents 1.0
	// takes this much memory at most when its length is declared, twice
	// that briefly when it is not; other replies go through the SDK,
	// which copies them once more.
	MaxReplyBytes int64

	once    sync.Once
	client  *http.Client
	urls    urlCache
	sources sourceCache
}

// HTTP returns an [HTTPTarget] for url with the default settings.
func HTTP(url string) *HTTPTarget { return &HTTPTarget{URL: url} }

// MaxErrorBody is how much of a failed response's body an [HTTPError] keeps.
const MaxErrorBody = 64 << 10

// ErrTooLarge is wrapped by the error of an attempt whose reply body is over
// its limit (see [HTTPTarget.MaxReplyBytes]). The attempt is not retried:
// the same reply would come again.
var ErrTooLarge = errors.New("flows: too large")

// maxDrain is how much of an unread body is read and dropped so that its
// connection can be reused; past it the connection is closed.
const maxDrain = 256 << 10

type maxReplyKey struct{}

// withMaxReplyBytes gives the HTTP targets that the flow's workers call
// the flow's reply limit, if it has one.
func withMaxReplyBytes(ctx context.Context, n int64) context.Context {
	if n <= 0 {
		return ctx
	}
	return context.WithValue(ctx, maxReplyKey{}, n)
}

// maxReplyBytes is the reply limit of t in ctx.
func (t *HTTPTarget) maxReplyBytes(ctx context.Context) int64 {
	if t.MaxReplyBytes > 0 {
		return t.MaxReplyBytes
	}
	if n, ok := ctx.Value(maxReplyKey{}).(int64); ok {
		return n
	}
	return DefaultMaxBodyBytes
}

var sharedClient = &http.Client{
	Transport: func() http.RoundTripper {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The default of 2 idle connections per host makes concurrent
		// deliveries open a new connection for most events.
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 256
		return t
	}(),
	CheckRedirect: noRedirects,
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (t *HTTPTarget) httpClient() *http.Client {
	t.once.Do(func() {
		if t.Client == nil && t.TLSConfig != nil {
			tr := sharedClient.Transport.(*http.Transport).Clone()
			tr.TLSClientConfig = t.TLSConfig.Clone()
			t.client = &http.Client{Transport: tr, CheckRedirect: noRedirects}
			return
		}
		if t.Client == nil {
			t.client = sharedClient
			return
		}
		c := *t.Client
		c.CheckRedirect = noRedirects
		t.client = &c
	})
	return t.client
}

func (t *HTTPTarget) validate() error {
	u, err := url.Parse(t.URL)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %w", t.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want an absolute http or https URL", t.URL)
	}
	return nil
}

func (t *HTTPTarget) destination() string { return t.URL }

// Handle implements [Handler].
func (t *HTTPTarget) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return t.post(ctx, e, true, "")
}

// post delivers e; preferReply says whether the request asks for a reply
// with "Prefer: reply", which Knative sends to subscribers only: a reply
// destination or a dead-letter sink is not asked (see [hopTarget]).
// namespace is set only for a call to a Trigger's subscriber (see
// [triggerTarget]): it is sent as Kn-Namespace, and the answer is read as
// Knative's broker filter reads it.
func (t *HTTPTarget) post(ctx context.Context, e event.Event, preferReply bool, namespace string) (*event.Event, error) {
	req, out, err := t.newRequest(ctx)
	if err != nil {
		return nil, Permanent(fmt.Errorf("flows: %w", err))
	}
	env := envelopeFrom(ctx)
	if env != nil {
		for k, v := range env.header {
			req.Header[k] = v
		}
	}
	if o := observerFrom(ctx).active(ctx); o != nil && o.Request != nil {
		// Before encoding: the hook may set extensions (trace context).
		// (Through a copy: &e itself would make e escape on every call.)
		p := new(event.Event)
		*p = e
		o.Request(ctx, p, req.Header)
		e = *p
	}
	var written bool
	if !t.Structured {
		written, err = out.binary(req, &e, preferReply, &t.sources)
		preferReply = preferReply && !written // set with the attributes
	}
	if !written && err == nil {
		wctx := binding.WithForceBinary(ctx)
		if t.Structured {
			wctx = binding.WithForceStructured(ctx)
		}
		ev := e // not &e: e would escape on the fast path too
		err = cehttp.WriteRequest(wctx, binding.ToMessage(&ev), req)
	}
	if err != nil {
		return nil, Permanent(fmt.Errorf("flows: encoding event %s for %s: %w", e.ID(), t.URL, err))
	}
	if preferReply {
		req.Header.Set("Prefer", "reply")
	}
	if namespace != "" {
		req.Header["Kn-Namespace"] = []string{namespace}
	}
	if t.Header != nil {
		if err := t.Header(ctx, req.Header); err != nil {
			return nil, fmt.Errorf("flows: preparing headers for %s: %w", t.URL, err)
		}
	}
	resp, err := t.httpClient().Do(req)
	if err != nil {
		return nil, &transportError{url: t.URL, err: err}
	}
	if env != nil && env.wantReplyHeader {
		env.replyHeader = PassThroughHeaders(resp.Header)
	}
	limit := t.maxReplyBytes(ctx)
	var reply *event.Event
	if namespace != "" {
		reply, err = readTriggerReply(ctx, t.URL, resp, limit, &t.sources)
	} else {
		reply, err = readReply(ctx, t.URL, resp, limit, &t.sources)
	}
	if reply == nil && !errors.Is(err, ErrTooLarge) {
		// A reply event was read to its end. Of any other answer a short
		// rest is read and dropped, so that the connection goes back to
		// the pool; a body over the limit is not read any further.
		io.Copy(io.Discard, &io.LimitedReader{R: resp.Body, N: maxDrain})
	}
	resp.Body.Close()
	return reply, err
}

// newRequest returns the POST to t.URL with ctx, as
// http.NewRequestWithContext makes it (and failing as it does), but for
// the URL, which is parsed once for as long as t.URL stays the same: the
// request gets a copy of it, in out, where the rest of the request's own
// parts go (see [outgoing]).
func (t *HTTPTarget) newRequest(ctx context.Context) (*http.Request, *outgoing, error) {
	u, err := t.urls.parse(t.URL)
	if err != nil || ctx == nil {
		// The error of http.NewRequestWithContext, whichever comes first.
		_, err = http.NewRequestWithContext(ctx, http.MethodPost, t.URL, nil)
		return nil, nil, err
	}
	out := &outgoing{url: *u}
	tmpl := http.Request{ // on the stack: WithContext copies it
		Method:     http.MethodPost,
		URL:        &out.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       out.url.Host,
	}
	return tmpl.WithContext(ctx), out, nil
}

// A urlCache keeps the URL of a target parsed, with the text it was parsed
// from: a target whose URL is changed between uses is parsed again. The
// zero value is ready; it is safe for concurrent use.
type urlCache struct{ p atomic.Pointer[parsedURL] }

// parse returns s parsed as the URL of a request, to be copied, not changed.
func (c *urlCache) parse(s string) (*url.URL, error) {
	if p := c.p.Load(); p != nil && p.s == s {
		return &p.u, nil
	}
	req, err := http.NewRequest(http.MethodPost, s, nil)
	if err != nil {
		return nil, err
	}
	p := &parsedURL{s: s, u: *req.URL}
	c.p.Store(p)
	return &p.u, nil
}

// readReply reads the answer of target: its event, no event, or why it failed.
func readReply(ctx context.Context, target string, resp *http.Response, limit int64, sources *sourceCache) (*event.Event, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
		return nil, &HTTPError{
			URL:        target,
			StatusCode: resp.StatusCode,
			Body:       body,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	}
	reply, err := decodeMessageWith(ctx, resp.Header, resp.Body, resp.ContentLength, limit, sources)
	if err == nil {
		return reply, nil
	}
	var de *decodeError
	errors.As(err, &de)
	switch {
	case de == nil:
		return nil, Permanent(fmt.Errorf("flows: %s replied with a malformed event: %w", target, err))
	case de.kind == notAnEvent:
		return nil, nil // as Knative: a 2xx answer without an event
	case err == errBatch:
		return nil, Permanent(fmt.Errorf("flows: %s replied with a batch of events, which is not supported", target))
	case de.kind == tooLarge:
		return nil, Permanent(fmt.Errorf("%w: %s replied with a body over the limit of %d bytes", ErrTooLarge, target, limit))
	case de.kind == bodyFailed:
		return nil, fmt.Errorf("flows: reading the reply of %s: %w", target, de.err)
	}
	return nil, Permanent(fmt.Errorf("flows: %s replied with a malformed event: %w", target, de.err))
}

// readTriggerReply reads the answer of a Trigger's subscriber as Knative's
// broker filter does, which answers 502 where a channel sees "no event" or
// a malformed reply: a 2xx answer with a body that is not a CloudEvent, or
// a CloudEvent that does not decode, is an [*HTTPError] with status 502
// and the body (its first [MaxErrorBody] bytes), which is retried and
// dead-lettered. An empty 2xx body is no event; a body over the limit and
// one that cannot be read fail as for any target.
func readTriggerReply(ctx context.Context, target string, resp *http.Response, limit int64, sources *sourceCache) (*event.Event, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readReply(ctx, target, resp, limit, sources)
	}
	rec := &headRecorder{r: resp.Body}
	reply, err := decodeMessageWith(ctx, resp.Header, rec, resp.ContentLength, limit, sources)
	if err == nil {
		return reply, nil
	}
	var de *decodeError
	errors.As(err, &de)
	switch {
	case de != nil && de.kind == tooLarge:
		return nil, Permanent(fmt.Errorf("%w: %s replied with a body over the limit of %d bytes", ErrTooLarge, target, limit))
	case de != nil && de.kind == bodyFailed:
		return nil, fmt.Errorf("flows: reading the reply of %s: %w", target, de.err)
	case de != nil && de.kind == notAnEvent:
		// Nothing of the body is read yet: an empty one is no event.
		rest, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
		if rerr != nil {
			return nil, fmt.Errorf("flows: reading the reply of %s: %w", target, rerr)
		}
		if len(rest) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("flows: trigger subscriber %s answered %d with a body that is not a CloudEvent: %w",
			target, resp.StatusCode, &HTTPError{URL: target, StatusCode: http.StatusBadGateway, Body: rest})
	}
	if de != nil {
		err = de.err
	}
	return nil, fmt.Errorf("flows: trigger subscriber %s answered %d with a malformed event (%v): %w",
		target, resp.StatusCode, err, &HTTPError{URL: target, StatusCode: http.StatusBadGateway, Body: rec.head})
}

// headRecorder keeps the first MaxErrorBody bytes read through it.
type headRecorder struct {
	r    io.Reader
	head []byte
}

func (h *headRecorder) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if room := MaxErrorBody - len(h.head); room > 0 && n > 0 {
		h.head = append(h.head, p[:min(n, room)]...)
	}
	return n, err
}

// transportError is a delivery that got no HTTP answer: the request could
// not be sent, or no response came back.
type transportError struct {
	url string
	err error // from the HTTP client
}

func (e *transportError) Error() string { return "flows: POST " + e.url + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// hopTarget returns the handler to call for a hop that is not a
// subscriber's (a reply destination, a dead-letter sink, a ping's sink):
// an [HTTPTarget] is called there without "Prefer: reply", as Knative does.
// The role is the call's, not the target's: the same target may be a
// subscriber elsewhere.
func hopTarget(h Handler) Handler {
	if t, ok := h.(*HTTPTarget); ok && t != nil {
		return noReplyWanted{t}
	}
	return h
}

// noReplyWanted is an HTTPTarget called for a hop that does not ask for a
// reply. (One pointer: converting it to a Handler does not allocate.)
type noReplyWanted struct{ t *HTTPTarget }

func (n noReplyWanted) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return n.t.post(ctx, e, false, "")
}

// PassThroughHeaders returns the headers of h that Knative carries from an
// incoming request to the subscriber, and from the subscriber's response to
// the reply: X-Request-Id, Retry-After, Knative-*, X-B3-*, and the W3C
// Traceparent and Tracestate. Ce-* headers are never copied raw: they are
// the event's attributes. It returns nil if there are none.
func PassThroughHeaders(h http.Header) http.Header {
	var out http.Header
	for k, v := range h {
		if !passThrough(k) {
			continue
		}
		if out == nil {
			out = make(http.Header)
		}
		out[http.CanonicalHeaderKey(k)] = append([]string(nil), v...)
	}
	return out
}

// passThrough reports whether the header named k passes through. It is
// called for every header of every request and response, so it does not
// allocate.
func passThrough(k string) bool {
	if k == "" {
		return false
	}
	switch k[0] | 0x20 { // lower case, for letters
	case 'x', 'r', 't', 'k':
	default:
		return false
	}
	switch {
	case strings.EqualFold(k, "X-Request-Id"), strings.EqualFold(k, "Retry-After"),
		strings.EqualFold(k, "Traceparent"), strings.EqualFold(k, "Tracestate"):
		return true
	}
	return hasPrefixFold(k, "Knative-") || hasPrefixFold(k, "X-B3-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// HTTPError is the failure of an HTTP delivery that got a non-2xx answer.
type HTTPError struct {
	URL        string        // the target's URL
	StatusCode int           // the status of the answer
	Body       []byte        // the start of the response body, at most MaxErrorBody bytes
	RetryAfter time.Duration // from the Retry-After header; 0 if absent or invalid
}

// Error names the URL and the status, with the start of the body.
func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("flows: POST %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if body := bytes.TrimSpace(e.Body); len(body) > 0 {
		if len(body) > 200 {
			body = append(body[:200:200], "..."...)
		}
		msg += ": " + string(body)
	}
	return msg
}

// Retryable reports whether Knative retries this status: 404, 408, 409,
// 429 and 5xx.
func (e *HTTPError) Retryable() bool { return retryableStatus(e.StatusCode) }

// parseRetryAfter reads delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

var sizedBodies = sync.Pool{New: func() any { return new(sizedBody) }}

// NewHTTPHandler serves h over HTTP with Knative's subscriber contract, so
// that a Go handler (or a running flow) can be called by Knative channels,
// brokers and [HTTPTarget]:
//
//   - only POST is accepted (405 otherwise);
//   - a request that is not a valid CloudEvent, binary or structured, gets 400
//     (415 for an unsupported CloudEvents format), as at an [Ingress];
//   - a body over the size limit gets 413, and a request whose body does not
//     fit in the bytes in flight left gets 503 with Retry-After at once, as
//     at an [Ingress];
//   - a reply is written in binary mode with status 200; no event gets 202
//     with an empty body;
//   - a failure gets 500, or 400 if it is [Permanent] (so that it is not
//     retried); an [*HTTPError] keeps its status code and Retry-After;
//     [ErrClosed] (a flow shutting down) gets 503, as from an [Ingress],
//     so that callers retry, maybe on the process that replaces this one.
//     The body of a failure's answer is a generic reason: the handler's
//     error, which may name URLs and internal errors, goes to the logger.
//
// Of the [IngressOption]s these apply, as they do to an [Ingress]:
// [IngressMaxBodyBytes] (default [DefaultMaxBodyBytes]), [IngressByteBudget]
// (default: a budget of its own of [DefaultMaxBytesInFlight], held until h
// returns), [IngressAuthenticator] and [IngressLogger]. [IngressSynchronous]
// and [IngressMaxWait] do not: h is always called with the request's
// context and answered when it returns.
func NewHTTPHandler(h Handler, opts ...IngressOption) http.Handler {
	in := newIngress(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			in.refuse(w, r, http.StatusMethodNotAllowed, "only POST is allowed")
			return
		}
		body := sizedBodies.Get().(*sizedBody)
		reserved, ok := in.admit(w, r, body)
		defer func() {
			in.budget.release(reserved)
			// Nothing keeps the body once the request is answered.
			*body = sizedBody{}
			sizedBodies.Put(body)
		}()
		if !ok {
			return
		}
		e, status, err := readEventWith(r, &in.sources)
		if err != nil {
			in.refuse(w, r, status, err.Error())
			return
		}
		ctx := r.Context()
		if hdr := PassThroughHeaders(r.Header); hdr != nil {
			ctx = withEnvelope(ctx, &envelope{carried: carried{header: hdr}})
		}
		reply, err := call(ctx, h, *e, nil)
		in.budget.release(reserved)
		reserved = 0
		if err != nil {
			status, reason := http.StatusInternalServerError, "the event could not be handled"
			var he *HTTPError
			switch {
			case errors.As(err, &he):
				status = he.StatusCode
				if he.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(he.RetryAfter.Round(time.Second)/time.Second)))
				}
			case errors.Is(err, ErrClosed) && !errors.As(err, new(*DeliveryError)):
				// The flow itself stopped (not one it delivers to).
				in.refuse(w, r, http.StatusServiceUnavailable, "the flow is shutting down")
				return
			case errors.Is(err, ErrFull) && !errors.As(err, new(*DeliveryError)):
				// The flow had no room before the request ended: come back later.
				w.Header().Set("Retry-After", "1")
				in.refuse(w, r, http.StatusServiceUnavailable, "the flow is full")
				return
			case IsPermanent(err):
				status, reason = http.StatusBadRequest, "the event could not be handled, and a retry would fail too"
			}
			// The error may name URLs, paths and internal errors: the client
			// gets a generic reason, the logger the details.
			in.fail(w, r, status, reason, err)
			return
		}
		if reply == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		written, err := writeBinaryResponseWith(w, reply, http.StatusOK, &in.sources)
		if !written && err == nil {
			err = cehttp.WriteResponseWriter(binding.WithForceBinary(r.Context()), binding.ToMessage(reply), http.StatusOK, w)
		}
		if err != nil {
			in.fail(w, r, http.StatusInternalServerError, "the reply could not be encoded", err)
		}
	})
}
