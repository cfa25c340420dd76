// Package oidcauth authenticates requests to a flows ingress with OIDC
// tokens (JWTs), as Knative's OIDC support does: the caller presents
// "Authorization: Bearer <token>"; the token's signature is checked against
// the issuer's published keys, and its issuer, audience and expiry must
// match. Optionally only some subjects are allowed, as Knative's
// EventPolicies do.
//
// It lives in its own module so that the flows core does not depend on an
// OIDC library.
package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/eventflows/flows"
	jose "github.com/go-jose/go-jose/v4"
)

// Authenticator is a [flows.Authenticator] that verifies OIDC tokens. Build
// it with [New] or [NewWithVerifier]; the zero value lets nobody in.
type Authenticator struct {
	verifier *oidc.IDTokenVerifier
	subjects []string // if not nil, the only subjects let in
}

// An Option configures an [Authenticator].
type Option func(*config)

type config struct {
	subjects        []string
	refreshInterval time.Duration
	now             func() time.Time
	errs            []error
}

// WithAllowedSubjects lets in only tokens whose "sub" claim is one of
// subjects; other valid tokens get 403. By default every valid token is let
// in. An empty list, or an empty or blank subject (which would let in tokens
// without a "sub" claim), fails [New] and [NewWithVerifier].
func WithAllowedSubjects(subjects ...string) Option {
	return func(c *config) {
		if len(subjects) == 0 {
			c.errs = append(c.errs, errors.New("oidcauth: WithAllowedSubjects needs at least one subject"))
		}
		for i, s := range subjects {
			if strings.TrimSpace(s) == "" {
				c.errs = append(c.errs, fmt.Errorf("oidcauth: WithAllowedSubjects: subject %d of %d is empty or blank", i+1, len(subjects)))
			}
		}
		c.subjects = append(c.subjects, subjects...)
	}
}

// WithKeyRefreshInterval sets the least time between two fetches of the
// issuer's key set by an authenticator from [New] (default
// [DefaultKeyRefreshInterval]). A token that the cached keys cannot verify,
// for example one with an unknown key id, makes the authenticator fetch the
// keys again only if the last fetch is at least d old; otherwise it is
// refused from the cache. Thus forged tokens cost the identity provider at
// most one request per d, and a key the issuer starts using is accepted at
// most d after it is published. d must be positive. It has no effect on
// [NewWithVerifier], whose verifier brings its own key set.
func WithKeyRefreshInterval(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, fmt.Errorf("oidcauth: key refresh interval %v is not positive", d))
		}
		c.refreshInterval = d
	}
}

func newConfig(opts []Option) (*config, error) {
	c := &config{refreshInterval: DefaultKeyRefreshInterval, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c, errors.Join(c.errs...)
}

// New discovers the issuer's configuration (at
// issuer + "/.well-known/openid-configuration"), fetches its keys and
// returns an authenticator for tokens issued by issuer for audience. Both
// must be given. ctx bounds the discovery and the first fetch of the keys;
// its values, but not its end, carry over to the later fetches (see
// [WithKeyRefreshInterval]; one fetch may take up to 30 seconds and a key
// set up to 1 MiB), so a start-up deadline does not stop key rotation. An
// HTTP client set on ctx with oidc.ClientContext is used for all of them.
func New(ctx context.Context, issuer, audience string, opts ...Option) (*Authenticator, error) {
	var errs []error
	if strings.TrimSpace(issuer) == "" {
		errs = append(errs, errors.New("oidcauth: an issuer is required"))
	}
	if strings.TrimSpace(audience) == "" {
		errs = append(errs, errors.New("oidcauth: an audience is required"))
	}
	c, err := newConfig(opts)
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, err
	}
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("oidcauth: discovering issuer %s: %w", issuer, err)
	}
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("oidcauth: discovering issuer %s: %w", issuer, err)
	}
	if meta.JWKSURL == "" {
		return nil, fmt.Errorf("oidcauth: discovering issuer %s: no jwks_uri", issuer)
	}
	keys := &keySet{url: meta.JWKSURL, ctx: context.WithoutCancel(ctx), interval: c.refreshInterval, now: c.now}
	if _, err := keys.refresh(ctx); err != nil {
		return nil, fmt.Errorf("oidcauth: issuer %s: %w", issuer, err)
	}
	// As go-oidc's Provider does, accept the algorithms the issuer
	// announces that go-oidc supports (RS256 if none).
	var algs []string
	for _, a := range meta.Algs {
		if slices.Contains(signingAlgs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, a)
		}
	}
	v := oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: audience, SupportedSigningAlgs: algs})
	return &Authenticator{verifier: v, subjects: c.subjects}, nil
}

// NewWithVerifier returns an authenticator that checks tokens with v, for
// example one built with oidc.NewVerifier and a static key set. (go-oidc's
// RemoteKeySet fetches the keys again for every token with an unknown key
// id; [New] does not.) v must not be nil.
func NewWithVerifier(v *oidc.IDTokenVerifier, opts ...Option) (*Authenticator, error) {
	c, err := newConfig(opts)
	if v == nil {
		err = errors.Join(errors.New("oidcauth: a verifier is required"), err)
	}
	if err != nil {
		return nil, err
	}
	return &Authenticator{verifier: v, subjects: c.subjects}, nil
}

// Authenticate implements [flows.Authenticator].
func (a *Authenticator) Authenticate(r *http.Request) error {
	if a == nil || a.verifier == nil {
		return fmt.Errorf("%w: oidcauth: authenticator not configured (use New)", flows.ErrUnauthenticated)
	}
	raw, ok := flows.BearerTokenOf(r)
	if !ok {
		return fmt.Errorf("%w: no bearer token", flows.ErrUnauthenticated)
	}
	tok, err := a.verifier.Verify(r.Context(), raw)
	if err != nil {
		return fmt.Errorf("%w: %w", flows.ErrUnauthenticated, err)
	}
	if a.subjects != nil && !slices.Contains(a.subjects, tok.Subject) {
		return fmt.Errorf("%w: subject %q is not allowed", flows.ErrForbidden, tok.Subject)
	}
	return nil
}
