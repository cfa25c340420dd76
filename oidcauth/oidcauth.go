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

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/eventflows/flows"
)

// Authenticator is a [flows.Authenticator] that verifies OIDC tokens.
type Authenticator struct {
	verifier *oidc.IDTokenVerifier
	subjects []string
}

// An Option configures an [Authenticator].
type Option func(*Authenticator)

// AllowSubjects lets in only tokens whose "sub" claim is one of subjects;
// other valid tokens get 403. By default every valid token is let in.
func AllowSubjects(subjects ...string) Option {
	return func(a *Authenticator) { a.subjects = append(a.subjects, subjects...) }
}

// New discovers the issuer's configuration and keys (at
// issuer + "/.well-known/openid-configuration") and returns an
// authenticator for tokens issued by issuer for audience. ctx bounds the
// discovery and is used to fetch keys later, so it should outlive the
// authenticator (for example context.Background()).
func New(ctx context.Context, issuer, audience string, opts ...Option) (*Authenticator, error) {
	if audience == "" {
		return nil, errors.New("oidcauth: an audience is required")
	}
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("oidcauth: discovering issuer %s: %w", issuer, err)
	}
	return NewWithVerifier(p.VerifierContext(ctx, &oidc.Config{ClientID: audience}), opts...), nil
}

// NewWithVerifier returns an authenticator that checks tokens with v, for
// example one built with oidc.NewVerifier and a static key set.
func NewWithVerifier(v *oidc.IDTokenVerifier, opts ...Option) *Authenticator {
	a := &Authenticator{verifier: v}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Authenticate implements [flows.Authenticator].
func (a *Authenticator) Authenticate(r *http.Request) error {
	raw, ok := flows.BearerTokenOf(r)
	if !ok {
		return fmt.Errorf("%w: no bearer token", flows.ErrUnauthenticated)
	}
	tok, err := a.verifier.Verify(r.Context(), raw)
	if err != nil {
		return fmt.Errorf("%w: %w", flows.ErrUnauthenticated, err)
	}
	if len(a.subjects) > 0 && !slices.Contains(a.subjects, tok.Subject) {
		return fmt.Errorf("%w: subject %q is not allowed", flows.ErrForbidden, tok.Subject)
	}
	return nil
}
