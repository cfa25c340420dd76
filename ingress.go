package flows

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
	return sendAndWait(ctx, e, c.publish)
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

// An IngressOption configures an [Ingress].
type IngressOption func(*Ingress)

// Synchronous makes the ingress answer only once the flow has finished with
// the event: 202 if every delivery succeeded or was dead-lettered, 500 if
// one failed past its dead-letter sink. This is Knative's default since
// v1.13; a chain of synchronous hops holds each request open until the end.
func IngressSynchronous() IngressOption { return func(in *Ingress) { in.sync = true } }

// IngressMaxBodyBytes sets the largest request body accepted; larger requests get
// 413 without the body being read. n <= 0 means [DefaultMaxBodyBytes].
func IngressMaxBodyBytes(n int64) IngressOption {
	return func(in *Ingress) {
		if n > 0 {
			in.maxBody = n
		}
	}
}

// IngressAuthenticator makes the ingress check each request with a before
// reading its body; a refused request gets 401 or 403 and never reaches
// the flow.
func IngressAuthenticator(a Authenticator) IngressOption { return func(in *Ingress) { in.auth = a } }

// IngressLogger makes the ingress log refused requests through l, at Debug.
func IngressLogger(l *slog.Logger) IngressOption { return func(in *Ingress) { in.log = l } }

// An Ingress is an [http.Handler] that accepts CloudEvents into a flow or a
// channel, with the contract of Knative's channel ingress:
//
//   - only POST is accepted (405 otherwise); OPTIONS is answered as for a
//     CloudEvents webhook (Allow, WebHook-Allowed-Origin and -Rate);
//   - the body is a CloudEvent in binary or structured mode; anything else
//     gets 400 with a short reason (415 for an unsupported CloudEvents
//     format), and nothing reaches the flow;
//   - a body over the size limit gets 413;
//   - an accepted event gets 202 Accepted with no body;
//   - a flow that is shutting down answers 503, and a full flow answers 503
//     with Retry-After when the request's context ends before room is made.
//
// By default the ingress is asynchronous: 202 means the event is in the
// flow's first channel, which a graceful shutdown drains, so an accepted
// event is not lost (unlike Knative's asynchronous channels, which drop
// in-flight events when they stop). See [Synchronous] for the other mode.
// The pass-through headers of the request (see [PassThroughHeaders]) travel
// with the event to HTTP subscribers.
type Ingress struct {
	dst     Sender
	auth    Authenticator
	sync    bool
	maxBody int64
	log     *slog.Logger
	obs     *Observer
}

// NewIngress returns an ingress that delivers to dst.
func NewIngress(dst Sender, opts ...IngressOption) *Ingress {
	in := &Ingress{dst: dst, maxBody: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(in)
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	if f, ok := dst.(*Flow); ok && in.obs == nil && f != nil {
		in.obs = f.obs
	}
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
	if in.auth != nil {
		if err := in.auth.Authenticate(r); err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, ErrForbidden) {
				status = http.StatusForbidden
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="flows"`)
			}
			in.refuse(w, r, status, http.StatusText(status))
			return
		}
	}
	if r.ContentLength > in.maxBody {
		in.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, in.maxBody))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, in.maxBody)
	e, status, err := readEvent(r)
	if err != nil {
		in.refuse(w, r, status, err.Error())
		return
	}
	ctx := r.Context()
	if hdr := PassThroughHeaders(r.Header); hdr != nil {
		ctx = withEnvelope(ctx, &envelope{header: hdr})
	}
	if o := in.obs.active(ctx); o != nil && o.Ingress != nil {
		var done func(int)
		if ctx, done = o.Ingress(ctx, r, e); done != nil {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			w = sw
			defer func() { done(sw.status) }()
		}
	}
	if in.sync {
		_, err = in.dst.Handle(ctx, *e)
	} else {
		err = in.dst.Send(ctx, *e)
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, ErrInvalidEvent):
		in.refuse(w, r, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrClosed):
		in.refuse(w, r, http.StatusServiceUnavailable, "the flow is shutting down")
	case errors.Is(err, ErrFull):
		w.Header().Set("Retry-After", "1")
		in.refuse(w, r, http.StatusServiceUnavailable, "the flow is full")
	default:
		in.refuse(w, r, http.StatusInternalServerError, err.Error())
	}
}

func (in *Ingress) refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	in.log.LogAttrs(r.Context(), slog.LevelDebug, "flows: ingress refused a request",
		slog.String("method", r.Method), slog.Int("status", status), slog.String("reason", reason))
	http.Error(w, reason, status)
}

// readEvent decodes the request's CloudEvent, or says which status to
// answer: 400 for what is not a valid CloudEvent, 415 for a CloudEvents
// format or a batch that is not supported, 413 for a body over its limit.
func readEvent(r *http.Request) (*event.Event, int, error) {
	e, err := decodeMessage(r.Context(), r.Header, r.Body, r.ContentLength, 0)
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
