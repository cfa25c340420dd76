package oidcauth_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/coreos/go-oidc/v3/oidc/oidctest"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/oidcauth"
)

func claims(iss, aud, sub string, exp time.Time) string {
	return fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":%q,"exp":%d,"iat":%d}`, iss, aud, sub, exp.Unix(), time.Now().Unix())
}

func TestAuthenticatorChecksIssuerAudienceExpiryAndSignature(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	issuer := &oidctest.Server{PublicKeys: []oidctest.PublicKey{{PublicKey: key.Public(), KeyID: "k1", Algorithm: oidc.RS256}}}
	srv := httptest.NewServer(issuer)
	defer srv.Close()
	issuer.SetIssuer(srv.URL)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	auth, err := oidcauth.New(ctx, srv.URL, "flows-ingress", oidcauth.WithAllowedSubjects("system:serviceaccount:default:ping"))
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().Add(time.Hour)
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"valid", oidctest.SignIDToken(key, "k1", oidc.RS256, claims(srv.URL, "flows-ingress", "system:serviceaccount:default:ping", hour)), nil},
		{"other subject", oidctest.SignIDToken(key, "k1", oidc.RS256, claims(srv.URL, "flows-ingress", "someone-else", hour)), flows.ErrForbidden},
		{"wrong audience", oidctest.SignIDToken(key, "k1", oidc.RS256, claims(srv.URL, "another-service", "system:serviceaccount:default:ping", hour)), flows.ErrUnauthenticated},
		{"wrong issuer", oidctest.SignIDToken(key, "k1", oidc.RS256, claims("https://evil.example", "flows-ingress", "system:serviceaccount:default:ping", hour)), flows.ErrUnauthenticated},
		{"expired", oidctest.SignIDToken(key, "k1", oidc.RS256, claims(srv.URL, "flows-ingress", "system:serviceaccount:default:ping", time.Now().Add(-time.Hour))), flows.ErrUnauthenticated},
		{"bad signature", oidctest.SignIDToken(other, "k1", oidc.RS256, claims(srv.URL, "flows-ingress", "system:serviceaccount:default:ping", hour)), flows.ErrUnauthenticated},
		{"not a JWT", "hello", flows.ErrUnauthenticated},
		{"no token", "", flows.ErrUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			err := auth.Authenticate(r)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Authenticate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestIngressWithOIDC(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	v := oidc.NewVerifier("https://issuer.example", &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Public()}}, &oidc.Config{ClientID: "flows"})
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Shutdown(context.Background())
	auth, err := oidcauth.NewWithVerifier(v)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(flows.NewIngress(f, flows.IngressAuthenticator(auth)))
	defer srv.Close()
	post := func(token string) int {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader("{}"))
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/t", "Ce-Type": "t", "Authorization": "Bearer " + token} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := oidctest.SignIDToken(key, "", oidc.RS256, claims("https://issuer.example", "flows", "me", time.Now().Add(time.Minute)))
	if s := post(good); s != 202 {
		t.Errorf("valid token: %d", s)
	}
	if s := post("x.y.z"); s != 401 {
		t.Errorf("garbage token: %d", s)
	}
}

func TestNewNeedsAnAudienceAndAReachableIssuer(t *testing.T) {
	if _, err := oidcauth.New(context.Background(), "https://issuer.example", ""); err == nil {
		t.Error("New without audience succeeded")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := oidcauth.New(context.Background(), srv.URL, "a"); err == nil || !strings.Contains(err.Error(), "discovering issuer") {
		t.Errorf("New with no discovery document = %v", err)
	}
}
