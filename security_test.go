package flows_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

func TestIngressAuthentication(t *testing.T) {
	var reached atomic.Int32
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		reached.Add(1)
		return nil, nil
	})}}})
	secret, err := flows.BearerToken("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := flows.AuthenticatorFunc(func(r *http.Request) error {
		if tok, _ := flows.BearerTokenOf(r); tok == "reader" {
			return flows.ErrForbidden
		}
		return secret.Authenticate(r)
	})
	url := serveIngress(t, f, flows.IngressAuthenticator(forbidden))
	cases := []struct {
		auth   string
		status int
	}{
		{"", 401},
		{"Bearer wrong", 401},
		{"Basic czNjcmV0", 401},
		{"Bearer reader", 403},
		{"Bearer s3cret", 202},
		{"bearer s3cret", 202},
	}
	for _, tc := range cases {
		status, _, h := request(t, "POST", url, with(binaryHeaders, "Authorization", tc.auth), "{}")
		if status != tc.status {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, status, tc.status)
		}
		if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a WWW-Authenticate challenge")
		}
	}
	if _, err := f.Handle(context.Background(), newEvent("sync", nil)); err != nil {
		t.Fatal(err)
	}
	if n := reached.Load(); n != 3 {
		t.Errorf("the flow saw %d events, want 3: two authorised requests and one direct send", n)
	}
}

func TestDestinationPolicy(t *testing.T) {
	onlyLocal := flows.WithDestinationPolicy(func(u *url.URL) error {
		if u.Hostname() != "127.0.0.1" {
			return errors.New("only 127.0.0.1 is allowed")
		}
		return nil
	})
	seq := &flows.Sequence{Name: "s", Steps: []flows.Step{
		{Subscriber: flows.HTTP("http://127.0.0.1:9/ok")},
		{Subscriber: flows.HTTP("http://169.254.169.254/latest/meta-data"), Delivery: &flows.Delivery{DeadLetter: flows.HTTP("https://evil.example/")}},
	}}
	_, err := seq.Start(context.Background(), onlyLocal)
	if !errors.Is(err, flows.ErrInvalid) {
		t.Fatalf("Start = %v, want a definition error", err)
	}
	for _, want := range []string{
		"steps[1].subscriber: destination http://169.254.169.254/latest/meta-data refused by policy: only 127.0.0.1 is allowed",
		"steps[1].delivery.deadLetter: destination https://evil.example/ refused",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "steps[0]") {
		t.Errorf("allowed destination reported: %v", err)
	}
	_, err = (&flows.Parallel{Branches: []flows.Branch{{Filter: flows.HTTP("http://10.0.0.1/"), Subscriber: flows.Discard}}}).Start(context.Background(), onlyLocal)
	if err == nil || !strings.Contains(err.Error(), "branches[0].filter") {
		t.Errorf("Parallel Start = %v", err)
	}
	_, err = (&flows.Ping{Sink: flows.HTTP("http://10.0.0.1/")}).Start(context.Background(), onlyLocal)
	if err == nil || !strings.Contains(err.Error(), "sink: destination") {
		t.Errorf("Ping Start = %v", err)
	}
}

func TestDeadLetterSinkURLIsValidated(t *testing.T) {
	err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}, Delivery: &flows.Delivery{DeadLetter: flows.HTTP("ftp://x")}}).Validate()
	if err == nil || !strings.Contains(err.Error(), `delivery.deadLetter: invalid URL "ftp://x"`) {
		t.Errorf("Validate = %v", err)
	}
}
