package oidcauth_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/oidcauth"
)

func TestNewRefusesConfigurationsThatFailOpenOrCannotWork(t *testing.T) {
	is := newTestIssuer(t)
	is.addKey(t, "k1")
	t.Setenv("OIDCAUTH_TEST_UNSET", "placeholder")
	os.Unsetenv("OIDCAUTH_TEST_UNSET")
	unset := os.Getenv("OIDCAUTH_TEST_UNSET")
	cases := []struct {
		name, issuer, audience string
		opts                   []oidcauth.Option
		want                   string
	}{
		{"empty issuer", "", "aud", nil, "an issuer is required"},
		{"blank issuer", " \u00a0", "aud", nil, "an issuer is required"},
		{"empty audience", is.URL, "", nil, "an audience is required"},
		{"blank audience", is.URL, "\u3000", nil, "an audience is required"},
		{"no subjects", is.URL, "aud", []oidcauth.Option{oidcauth.WithAllowedSubjects()}, "needs at least one subject"},
		{"empty subject", is.URL, "aud", []oidcauth.Option{oidcauth.WithAllowedSubjects("")}, "subject 1 of 1 is empty or blank"},
		{"unset env var as subject", is.URL, "aud", []oidcauth.Option{oidcauth.WithAllowedSubjects("ping", unset)}, "subject 2 of 2 is empty or blank"},
		{"zero refresh interval", is.URL, "aud", []oidcauth.Option{oidcauth.WithKeyRefreshInterval(0)}, "key refresh interval 0s is not positive"},
		{"negative refresh interval", is.URL, "aud", []oidcauth.Option{oidcauth.WithKeyRefreshInterval(-time.Second)}, "key refresh interval -1s is not positive"},
	}
	for _, tc := range cases {
		a, err := oidcauth.New(context.Background(), tc.issuer, tc.audience, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, %v; want an error saying %q", tc.name, a, err, tc.want)
		}
	}
	if n := is.jwksFetch.Load(); n != 0 {
		t.Errorf("refused configurations fetched the key set %d times", n)
	}
}

func TestNewWithVerifierRefusesBadConfiguration(t *testing.T) {
	if _, err := oidcauth.NewWithVerifier(nil); err == nil || !strings.Contains(err.Error(), "a verifier is required") {
		t.Errorf("NewWithVerifier(nil) = %v", err)
	}
	v := oidc.NewVerifier("https://issuer.example", &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{newKey(t).Public()}}, &oidc.Config{ClientID: "aud"})
	if _, err := oidcauth.NewWithVerifier(v, oidcauth.WithAllowedSubjects()); err == nil {
		t.Error("NewWithVerifier with an empty subject list succeeded")
	}
}

func TestUnconfiguredAuthenticatorLetsNobodyIn(t *testing.T) {
	for name, a := range map[string]*oidcauth.Authenticator{"zero": {}, "nil": nil} {
		if err := authenticate(a, "x.y.z"); !errors.Is(err, flows.ErrUnauthenticated) {
			t.Errorf("%s Authenticator: %v, want ErrUnauthenticated", name, err)
		}
	}
}

func TestAllowedSubjectsRefuseTokensWithoutSubject(t *testing.T) {
	is := newTestIssuer(t)
	k := is.addKey(t, "k1")
	a, err := oidcauth.New(context.Background(), is.URL, "aud", oidcauth.WithAllowedSubjects("ping"))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	noSub := sign(k, "k1", fmt.Sprintf(`{"iss":%q,"aud":"aud","exp":%d}`, is.URL, exp))
	if err := authenticate(a, noSub); !errors.Is(err, flows.ErrForbidden) {
		t.Errorf("token without sub: %v, want ErrForbidden", err)
	}
	if err := authenticate(a, sign(k, "k1", claims(is.URL, "aud", "ping", time.Unix(exp, 0)))); err != nil {
		t.Errorf("allowed subject: %v", err)
	}
}

func TestNewNeedsTheKeySet(t *testing.T) {
	is := newTestIssuer(t)
	is.fail.Store(true)
	if _, err := oidcauth.New(context.Background(), is.URL, "aud"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("New with the key set answering 503 = %v", err)
	}

	mux := http.NewServeMux()
	var url string
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, url, url+"/keys")
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[`))
		w.Write(bytes.Repeat([]byte(" "), 2<<20))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	url = srv.URL
	if _, err := oidcauth.New(context.Background(), srv.URL, "aud"); err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Errorf("New with a 2 MiB key set = %v", err)
	}
}
