package flows

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// An Authenticator checks an HTTP request before an [Ingress] accepts its
// event. It returns nil to let the request in, an error wrapping
// [ErrForbidden] for a caller that is known but not allowed (403), and any
// other error for a caller it cannot authenticate (401). The reason is not
// sent to the client.
//
// [BearerToken] checks static tokens; the module
// github.com/eventflows/flows/oidcauth verifies OIDC tokens (JWTs) as
// Knative's OIDC support does.
type Authenticator interface {
	Authenticate(r *http.Request) error
}

// AuthenticatorFunc adapts a function to an [Authenticator].
type AuthenticatorFunc func(r *http.Request) error

// Authenticate calls f(r). A nil f lets nobody in.
func (f AuthenticatorFunc) Authenticate(r *http.Request) error {
	if f == nil {
		return fmt.Errorf("%w: nil AuthenticatorFunc", ErrUnauthenticated)
	}
	return f(r)
}

var (
	// ErrUnauthenticated is returned by authenticators for a request
	// without valid credentials.
	ErrUnauthenticated = errors.New("flows: unauthenticated")
	// ErrForbidden is returned by authenticators for a request whose
	// credentials are valid but not allowed.
	ErrForbidden = errors.New("flows: forbidden")
)

// ErrInvalidToken is wrapped by the error of [BearerToken] for a token that
// cannot be used: empty, blank, or not an RFC 6750 b64token.
var ErrInvalidToken = errors.New("flows: invalid bearer token")

// BearerToken returns an [Authenticator] that lets in requests with the
// header "Authorization: Bearer <token>" for one of tokens. Tokens are
// compared in constant time.
//
// Each token must be a non-empty RFC 6750 b64token (letters, digits and
// "-._~+/", optionally followed by "="). An empty token list or a token that
// is empty, blank (for example an unset environment variable) or holds other
// characters gives an error wrapping [ErrInvalidToken], which names the
// token by its position, never by its value. The Authenticator returned with
// such an error refuses every request, so that an ignored error still keeps
// callers out.
func BearerToken(tokens ...string) (Authenticator, error) {
	if len(tokens) == 0 {
		err := fmt.Errorf("%w: no tokens given", ErrInvalidToken)
		return refuseAll(err), err
	}
	var errs []error
	sums := make([][32]byte, len(tokens))
	for i, t := range tokens {
		if err := checkToken(t); err != nil {
			errs = append(errs, fmt.Errorf("%w: token %d of %d %w", ErrInvalidToken, i+1, len(tokens), err))
		}
		sums[i] = sha256.Sum256([]byte(t))
	}
	if err := errors.Join(errs...); err != nil {
		return refuseAll(err), err
	}
	return AuthenticatorFunc(func(r *http.Request) error {
		token, ok := BearerTokenOf(r)
		if !ok {
			return fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
		}
		// Hashing first makes the comparison independent of the lengths.
		sum := sha256.Sum256([]byte(token))
		match := 0
		for _, s := range sums {
			match |= subtle.ConstantTimeCompare(sum[:], s[:])
		}
		if match != 1 {
			return fmt.Errorf("%w: unknown bearer token", ErrUnauthenticated)
		}
		return nil
	}), nil
}

// refuseAll is the authenticator of a configuration that failed: it lets
// no request in and gives the configuration error as the reason.
func refuseAll(err error) Authenticator {
	return AuthenticatorFunc(func(*http.Request) error {
		return fmt.Errorf("%w: authenticator not configured: %w", ErrUnauthenticated, err)
	})
}

// trimBlank removes what checkToken calls blank, and what BearerTokenOf
// removes around the token of a header: Unicode white space.
func trimBlank(s string) string { return strings.TrimSpace(s) }

// checkToken reports why t is not an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// The message names a byte offset, never the token's characters.
func checkToken(t string) error {
	if trimBlank(t) == "" {
		return errors.New("is empty or blank (an unset environment variable?)")
	}
	end := len(strings.TrimRight(t, "="))
	if end == 0 {
		return errors.New(`is only "=" characters`)
	}
	for i := 0; i < end; i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		case c == ' ', c == '\t', c == '\r', c == '\n':
			return fmt.Errorf("has white space at byte %d", i)
		case c == '=':
			return fmt.Errorf(`has "=" at byte %d, before the end`, i)
		default:
			return fmt.Errorf("has a character at byte %d that is not allowed (RFC 6750 allows letters, digits, \"-._~+/\" and a trailing \"=\")", i)
		}
	}
	return nil
}

// BearerTokenOf returns the token of an "Authorization: Bearer" header,
// without the white space around it, and false if there is none or it is
// blank.
func BearerTokenOf(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = trimBlank(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// WithDestinationPolicy makes Start check the URL of every [HTTPTarget] of
// the flow (subscribers, filters, replies, dead-letter sinks) with allow,
// for example against an allow-list of hosts, so that a definition loaded
// from outside cannot make the process call arbitrary addresses. A refused
// URL fails Start with a [*DefinitionError] naming the field.
func WithDestinationPolicy(allow func(u *url.URL) error) Option {
	return func(o *options) { o.allowURL = allow }
}

// pathHandler is a handler of a definition and the path of its field.
type pathHandler struct {
	path string
	h    Handler
}

func (d *Delivery) appendHandlers(out []pathHandler, path string) []pathHandler {
	if d == nil {
		return out
	}
	return append(out, pathHandler{path + ".deadLetter", d.DeadLetter})
}

// checkDestinations applies the destination policy to the HTTP targets of a definition.
func (o *options) checkDestinations(flow string, hs []pathHandler) error {
	if o.allowURL == nil {
		return nil
	}
	p := &problems{flow: flow}
	for _, ph := range hs {
		t, ok := ph.h.(*HTTPTarget)
		if !ok || t == nil {
			continue
		}
		u, err := url.Parse(t.URL)
		if err != nil {
			continue // reported by validation
		}
		if err := o.allowURL(u); err != nil {
			p.add(ph.path, "destination %s refused by policy: %v", t.URL, err)
		}
	}
	return p.err()
}
