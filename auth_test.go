package flows_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// unicodeBlanks are white space that HTTP does not trim from header values
// but strings.TrimSpace does.
var unicodeBlanks = map[string]string{"U+00A0": "\u00a0", "U+0085": "\u0085", "U+3000": "\u3000"}

func authorize(a flows.Authenticator, header string) error {
	return a.Authenticate(httptestRequest(header))
}

// An unset environment variable is the usual way to end up with BearerToken("").
func unsetEnv(t *testing.T, name string) string {
	t.Setenv(name, "placeholder") // restores the variable after the test
	os.Unsetenv(name)
	if v, ok := os.LookupEnv(name); ok {
		t.Fatalf("%s is still set to %q", name, v)
	}
	return os.Getenv(name)
}

func TestBearerTokenRefusesBlankTokensAtConstruction(t *testing.T) {
	cases := map[string][]string{
		"no tokens":       nil,
		"empty":           {""},
		"unset env var":   {unsetEnv(t, "FLOWS_TEST_UNSET_TOKEN")},
		"spaces and tabs": {" \t "},
		"one of two":      {"s3cret", ""},
	}
	for name, sp := range unicodeBlanks {
		cases[name] = []string{sp}
		cases[name+" twice"] = []string{sp + sp}
	}
	for name, tokens := range cases {
		t.Run(name, func(t *testing.T) {
			a, err := flows.BearerToken(tokens...)
			if !errors.Is(err, flows.ErrInvalidToken) {
				t.Fatalf("BearerToken(%q) error = %v, want ErrInvalidToken", tokens, err)
			}
			if a == nil {
				t.Fatal("BearerToken returned a nil Authenticator with its error; a caller ignoring the error would run without authentication")
			}
			// Whatever a caller does with the error, nobody gets in.
			headers := []string{"Bearer s3cret", "Bearer ", "Bearer \u00a0", "Bearer \u0085", "Bearer \u3000", "Bearer " + strings.Join(tokens, "")}
			for _, h := range headers {
				if err := authorize(a, h); !errors.Is(err, flows.ErrUnauthenticated) {
					t.Errorf("Authorization %q = %v, want ErrUnauthenticated", h, err)
				}
			}
		})
	}
}

func TestBearerTokenErrorNamesTheProblemNotTheToken(t *testing.T) {
	cases := []struct {
		tokens []string
		want   string
	}{
		{nil, "no tokens given"},
		{[]string{"good-token", ""}, "token 2 of 2 is empty or blank"},
		{[]string{"s3cret\n"}, "token 1 of 1 has white space at byte 6"},
		{[]string{"s3cr\u00e9t"}, "token 1 of 1 has a character at byte 4 that is not allowed"},
		{[]string{"s3c\"ret"}, "token 1 of 1 has a character at byte 3 that is not allowed"},
		{[]string{"s3=cret"}, `token 1 of 1 has "=" at byte 2, before the end`},
		{[]string{"=="}, `token 1 of 1 is only "=" characters`},
	}
	for _, tc := range cases {
		_, err := flows.BearerToken(tc.tokens...)
		if !errors.Is(err, flows.ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("BearerToken(%q) = %v, want an ErrInvalidToken saying %q", tc.tokens, err, tc.want)
			continue
		}
		for _, tok := range tc.tokens {
			if tok := strings.TrimSpace(tok); len(tok) > 2 && strings.Contains(err.Error(), tok) {
				t.Errorf("error %q shows the token", err)
			}
		}
	}
	for _, ok := range [][]string{{"s3cret"}, {"abc-._~+/XYZ09=="}, {"a", "b"}} {
		if _, err := flows.BearerToken(ok...); err != nil {
			t.Errorf("BearerToken(%q) = %v, want nil", ok, err)
		}
	}
}

func TestBearerTokenTrimsTheHeaderAsItChecksTokens(t *testing.T) {
	a, err := flows.BearerToken("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for name, sp := range unicodeBlanks {
		// A blank token is no token, whatever the white space.
		if tok, ok := flows.BearerTokenOf(httptestRequest("Bearer " + sp)); ok {
			t.Errorf("%s: BearerTokenOf = %q, true; want no token", name, tok)
		}
		if err := authorize(a, "Bearer "+sp); !errors.Is(err, flows.ErrUnauthenticated) {
			t.Errorf("%s: blank token = %v, want ErrUnauthenticated", name, err)
		}
		// The same white space around a good token is trimmed, as it is
		// when tokens are checked.
		if err := authorize(a, "Bearer "+sp+"s3cret"+sp); err != nil {
			t.Errorf("%s around the token = %v, want nil", name, err)
		}
		if err := authorize(a, "Bearer s3"+sp+"cret"); err == nil {
			t.Errorf("%s inside the token was let in", name)
		}
	}
	for _, h := range []string{"Bearer s3cret", "bearer s3cret", "Bearer   s3cret"} {
		if err := authorize(a, h); err != nil {
			t.Errorf("Authorization %q = %v, want nil", h, err)
		}
	}
	for _, h := range []string{"", "Bearer", "Bearer s3cre", "Bearer s3crett", "Basic s3cret", "Bearer\u00a0s3cret"} {
		if err := authorize(a, h); !errors.Is(err, flows.ErrUnauthenticated) {
			t.Errorf("Authorization %q = %v, want ErrUnauthenticated", h, err)
		}
	}
}

func httptestRequest(authorization string) *http.Request {
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Authorization", authorization)
	return r
}

func TestNilAuthenticatorFuncLetsNobodyIn(t *testing.T) {
	var f flows.AuthenticatorFunc
	if err := authorize(f, "Bearer s3cret"); !errors.Is(err, flows.ErrUnauthenticated) {
		t.Errorf("nil AuthenticatorFunc = %v, want ErrUnauthenticated", err)
	}
}

// What issue 12 found: BearerToken(os.Getenv(unset)) at an ingress let in
// "Bearer " followed by a Unicode space. Even with the error ignored, the
// ingress now answers 401 to every request.
func TestIngressWithUnsetTokenVariableLetsNobodyIn(t *testing.T) {
	var reached atomic.Int32
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		reached.Add(1)
		return nil, nil
	})}}})
	a, err := flows.BearerToken(unsetEnv(t, "FLOWS_TEST_INGRESS_TOKEN"))
	if err == nil {
		t.Error("BearerToken of an unset variable gave no error")
	}
	url := serveIngress(t, f, flows.IngressAuthenticator(a))
	for name, sp := range unicodeBlanks {
		if status, _, _ := request(t, "POST", url, with(binaryHeaders, "Authorization", "Bearer "+sp), "{}"); status != 401 {
			t.Errorf("Bearer %s: %d, want 401", name, status)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("%d events reached the flow", n)
	}
}
