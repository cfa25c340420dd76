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

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) error { return f(r) }

var (
	// ErrUnauthenticated is returned by authenticators for a request
	// without valid credentials.
	ErrUnauthenticated = errors.New("flows: unauthenticated")
	// ErrForbidden is returned by authenticators for a request whose
	// credentials are valid but not allowed.
	ErrForbidden = errors.New("flows: forbidden")
)

// BearerToken returns an [Authenticator] that lets in requests with the
// header "Authorization: Bearer <token>" for one of tokens. Tokens are
// compared in constant time.
func BearerToken(tokens ...string) Authenticator {
	sums := make([][32]byte, len(tokens))
	for i, t := range tokens {
		sums[i] = sha256.Sum256([]byte(t))
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
	})
}

// BearerTokenOf returns the token of an "Authorization: Bearer" header.
func BearerTokenOf(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
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
