package oidcauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/oidcauth"
)

func authenticate(a *oidcauth.Authenticator, token string) error {
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return a.Authenticate(r)
}

func TestForgedKeyIDsFetchTheKeySetAtMostOncePerInterval(t *testing.T) {
	is := newTestIssuer(t)
	k1 := is.addKey(t, "k1")
	clock := newFakeClock()
	a, err := oidcauth.New(context.Background(), is.URL, "aud", oidcauth.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	fetches := func() int { return int(is.jwksFetch.Load()) }
	if n := fetches(); n != 1 {
		t.Errorf("New fetched the key set %d times, want 1", n)
	}
	exp := time.Now().Add(time.Hour)
	good := sign(k1, "k1", claims(is.URL, "aud", "me", exp))
	forger := newKey(t)
	forge := func(n int) {
		t.Helper()
		for i := range n {
			kid := fmt.Sprint("forged-", i)
			if i == 0 {
				kid = "" // a token without a key id is tried with every key
			}
			if err := authenticate(a, sign(forger, kid, claims(is.URL, "aud", "me", exp))); !errors.Is(err, flows.ErrUnauthenticated) {
				t.Fatalf("forged token %q: %v, want ErrUnauthenticated", kid, err)
			}
		}
	}

	forge(200)
	if n := fetches(); n != 1 {
		t.Fatalf("200 forged tokens: %d key-set fetches in all, want 1 (the one of New)", n)
	}
	if err := authenticate(a, good); err != nil {
		t.Errorf("valid token after forged ones: %v", err)
	}

	// The issuer rotates to k2. Until the interval has passed, tokens signed
	// with it are refused from the cache, like forged ones.
	k2 := is.addKey(t, "k2")
	is.removeKey("k1")
	rotated := sign(k2, "k2", claims(is.URL, "aud", "me", exp))
	clock.Advance(oidcauth.DefaultKeyRefreshInterval - time.Second)
	if err := authenticate(a, rotated); !errors.Is(err, flows.ErrUnauthenticated) {
		t.Errorf("token with the new key within the interval: %v, want ErrUnauthenticated", err)
	}
	if n := fetches(); n != 1 {
		t.Errorf("within the interval: %d fetches, want 1", n)
	}

	clock.Advance(time.Second)
	if err := authenticate(a, rotated); err != nil {
		t.Errorf("token with the new key once the interval has passed: %v", err)
	}
	if n := fetches(); n != 2 {
		t.Errorf("after the interval: %d fetches, want 2", n)
	}
	if err := authenticate(a, good); !errors.Is(err, flows.ErrUnauthenticated) {
		t.Errorf("token with the withdrawn key k1: %v, want ErrUnauthenticated", err)
	}
	forge(200)
	if n := fetches(); n != 2 {
		t.Errorf("200 more forged tokens: %d fetches, want still 2", n)
	}
}

func TestKeyRefreshIntervalIsSettable(t *testing.T) {
	is := newTestIssuer(t)
	is.addKey(t, "k1")
	clock := newFakeClock()
	a, err := oidcauth.New(context.Background(), is.URL, "aud", oidcauth.WithClock(clock.Now), oidcauth.WithKeyRefreshInterval(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	k2 := is.addKey(t, "k2")
	rotated := sign(k2, "k2", claims(is.URL, "aud", "me", time.Now().Add(time.Hour)))
	clock.Advance(9 * time.Minute)
	if err := authenticate(a, rotated); err == nil {
		t.Error("new key accepted 9 minutes into a 10 minute interval")
	}
	clock.Advance(time.Minute)
	if err := authenticate(a, rotated); err != nil {
		t.Errorf("new key after 10 minutes: %v", err)
	}
	if n := is.jwksFetch.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestConcurrentUnknownKeyIDsShareOneFetch(t *testing.T) {
	is := newTestIssuer(t)
	is.addKey(t, "k1")
	clock := newFakeClock()
	a, err := oidcauth.New(context.Background(), is.URL, "aud", oidcauth.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	k2 := is.addKey(t, "k2")
	rotated := sign(k2, "k2", claims(is.URL, "aud", "me", exp))
	forged := sign(newKey(t), "forged", claims(is.URL, "aud", "me", exp))
	clock.Advance(oidcauth.DefaultKeyRefreshInterval)

	// The key-set request is held until the test lets it go, so that the
	// requests overlap it.
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	is.hold(arrived, release)
	var once sync.Once
	letGo := func() { once.Do(func() { close(release) }) }
	defer letGo()
	const n = 50
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		tok := rotated
		if i%2 == 1 {
			tok = forged
		}
		wg.Go(func() { errs[i] = authenticate(a, tok) })
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no key-set fetch for tokens with unknown key ids after the interval")
	}
	letGo()
	wg.Wait()
	if got := is.jwksFetch.Load(); got != 2 {
		t.Errorf("%d concurrent tokens with unknown key ids: %d fetches in all, want 2 (New's and one refresh)", 2*n, got)
	}
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("request %d with the new key: %v", i, err)
		}
		if i%2 == 1 && !errors.Is(err, flows.ErrUnauthenticated) {
			t.Errorf("request %d with a forged key: %v, want ErrUnauthenticated", i, err)
		}
	}
}

func TestKeySetOutageKeepsTheCachedKeys(t *testing.T) {
	is := newTestIssuer(t)
	k1 := is.addKey(t, "k1")
	clock := newFakeClock()
	a, err := oidcauth.New(context.Background(), is.URL, "aud", oidcauth.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	is.fail.Store(true)
	clock.Advance(oidcauth.DefaultKeyRefreshInterval)
	forged := sign(newKey(t), "forged", claims(is.URL, "aud", "me", exp))
	for range 20 {
		if err := authenticate(a, forged); !errors.Is(err, flows.ErrUnauthenticated) {
			t.Fatalf("forged token while the issuer is down: %v", err)
		}
	}
	if n := is.jwksFetch.Load(); n != 2 {
		t.Errorf("issuer down: %d fetches, want 2 (a failed fetch also waits an interval)", n)
	}
	if err := authenticate(a, sign(k1, "k1", claims(is.URL, "aud", "me", exp))); err != nil {
		t.Errorf("known key while the issuer is down: %v", err)
	}
}

// A start-up deadline on New's context bounds discovery only: once it has
// ended, a rotated key is still fetched and accepted after the interval.
func TestKeyRotationOutlivesNewsContext(t *testing.T) {
	is := newTestIssuer(t)
	is.addKey(t, "k1")
	clock := newFakeClock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	a, err := oidcauth.New(ctx, is.URL, "aud", oidcauth.WithClock(clock.Now))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	k2 := is.addKey(t, "k2")
	clock.Advance(oidcauth.DefaultKeyRefreshInterval)
	rotated := sign(k2, "k2", claims(is.URL, "aud", "me", time.Now().Add(time.Hour)))
	if err := authenticate(a, rotated); err != nil {
		t.Errorf("token with a key added after New's context ended: %v", err)
	}
	if n := is.jwksFetch.Load(); n != 2 {
		t.Errorf("%d key-set fetches, want 2 (New's and the refresh)", n)
	}
}
