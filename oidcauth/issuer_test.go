package oidcauth_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is an identity provider on 127.0.0.1 that serves discovery and
// a key set it can rotate, and counts the key-set requests.
type testIssuer struct {
	URL       string
	jwksFetch atomic.Int32
	fail      atomic.Bool   // answer key-set requests with 503
	arrived   chan struct{} // if not nil, gets a value when a key-set request arrives
	release   chan struct{} // if not nil, key-set requests wait for it to close

	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // by key id
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	is := &testIssuer{keys: map[string]*rsa.PrivateKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksFetch.Add(1)
		is.mu.Lock()
		arrived, release := is.arrived, is.release
		is.mu.Unlock()
		if arrived != nil {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
		if release != nil {
			<-release
		}
		if is.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: oidc.RS256, Use: "sig"})
		}
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.URL = srv.URL
	return is
}

// hold makes key-set requests signal arrived and wait until release is closed.
func (is *testIssuer) hold(arrived, release chan struct{}) {
	is.mu.Lock()
	is.arrived, is.release = arrived, release
	is.mu.Unlock()
}

// removeKey stops publishing kid.
func (is *testIssuer) removeKey(kid string) {
	is.mu.Lock()
	delete(is.keys, kid)
	is.mu.Unlock()
}

// addKey makes the issuer publish a new signing key under kid.
func (is *testIssuer) addKey(t *testing.T, kid string) *rsa.PrivateKey {
	t.Helper()
	k := newKey(t)
	is.mu.Lock()
	is.keys[kid] = k
	is.mu.Unlock()
	return k
}

func newKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(key crypto.PrivateKey, kid, claims string) string {
	return oidctest.SignIDToken(key, kid, oidc.RS256, claims)
}

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
