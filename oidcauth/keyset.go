package oidcauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// DefaultKeyRefreshInterval is the least time between two fetches of an
// issuer's key set by an [Authenticator] from [New]; see
// [WithKeyRefreshInterval].
const DefaultKeyRefreshInterval = time.Minute

const (
	// maxKeySetBytes bounds the key set document an issuer may send.
	maxKeySetBytes = 1 << 20
	// keyFetchTimeout bounds one fetch of the key set.
	keyFetchTimeout = 30 * time.Second
)

// signingAlgs are the signature algorithms go-oidc supports.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
}

// keySet is an [oidc.KeySet] of an issuer's published keys. Unlike
// go-oidc's RemoteKeySet, which fetches the keys again for every token
// they cannot verify, it fetches them at most once per interval, so that
// forged tokens cannot make the process flood the identity provider. Tokens
// signed with a key that appeared since the last fetch are refused until
// the interval has passed. Concurrent refreshes share one fetch.
type keySet struct {
	url      string
	ctx      context.Context // carries the HTTP client (oidc.ClientContext) and ends fetches
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetched  time.Time     // when the last fetch started; zero before the first
	inflight chan struct{} // closed when the running fetch ends; nil if none runs
	err      error         // of the last fetch
}

// VerifySignature implements [oidc.KeySet]. go-oidc's verifier has checked
// the token's form and algorithm; the signature is checked by go-oidc's
// StaticKeySet with the keys that have the token's key id, or all keys if
// it has none.
func (s *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a token needs exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	s.mu.Lock()
	keys := s.keys
	s.mu.Unlock()
	if payload, err := verifyWith(ctx, keys, kid, jwt); err == nil {
		return payload, nil
	}
	keys, err = s.refresh(ctx)
	if err != nil {
		return nil, err
	}
	return verifyWith(ctx, keys, kid, jwt)
}

func verifyWith(ctx context.Context, keys []jose.JSONWebKey, kid, jwt string) ([]byte, error) {
	var pubs []crypto.PublicKey
	for _, k := range keys {
		if kid == "" || k.KeyID == kid {
			pubs = append(pubs, k.Key)
		}
	}
	if len(pubs) == 0 {
		return nil, errors.New("no key of the issuer has the token's key id")
	}
	return (&oidc.StaticKeySet{PublicKeys: pubs}).VerifySignature(ctx, jwt)
}

// refresh fetches the key set unless that was done less than an interval
// ago, and returns the keys. A caller that finds a fetch running waits for
// it, or for the end of ctx.
func (s *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	done := s.inflight
	if done == nil {
		now := s.now()
		if since := now.Sub(s.fetched); !s.fetched.IsZero() && since < s.interval {
			s.mu.Unlock()
			return nil, fmt.Errorf("no cached key verifies the token, and the key set was fetched %v ago (refreshed at most every %v)", since.Round(time.Millisecond), s.interval)
		}
		s.fetched = now
		done = make(chan struct{})
		s.inflight = done
		s.mu.Unlock()

		keys, err := s.fetch()

		s.mu.Lock()
		defer s.mu.Unlock()
		if err == nil {
			s.keys = keys
		}
		s.err = err
		s.inflight = nil
		close(done)
		return s.keys, err
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the key set: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys, s.err
}

// fetch gets and parses the key set. It uses s.ctx, not a request's
// context, so that a client that goes away does not cancel a fetch others
// wait for.
func (s *keySet) fetch() ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(s.ctx, keyFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching the key set: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	client := http.DefaultClient
	if c, ok := s.ctx.Value(oauth2.HTTPClient).(*http.Client); ok && c != nil {
		client = c // set with oidc.ClientContext, as for discovery
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the key set: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching the key set from %s: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the key set from %s: %s", s.url, resp.Status)
	}
	if len(body) > maxKeySetBytes {
		return nil, fmt.Errorf("the key set at %s is larger than %d bytes", s.url, maxKeySetBytes)
	}
	keys, err := parseKeySet(body)
	if err != nil {
		return nil, fmt.Errorf("the key set at %s: %w", s.url, err)
	}
	return keys, nil
}

// parseKeySet returns the public signing keys of a JWK set. As RFC 7517
// asks, keys it does not understand are left out rather than failing the
// set; so are private or symmetric keys and keys meant for encryption.
func parseKeySet(body []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if !k.Valid() || !k.IsPublic() || k.Use == "enc" {
			continue
		}
		if k.Algorithm != "" && !slices.Contains(signingAlgs, jose.SignatureAlgorithm(k.Algorithm)) {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}
