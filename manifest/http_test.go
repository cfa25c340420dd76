package manifest_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// request is what an HTTP subscriber saw.
type request struct {
	path, contentType string
}

// subscriber serves h over HTTP on 127.0.0.1 and records the requests.
func subscriber(t *testing.T, h flows.Handler, tls bool) (*httptest.Server, <-chan request) {
	t.Helper()
	reqs := make(chan request, 16)
	inner := flows.NewHTTPHandler(h)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- request{r.URL.Path, r.Header.Get("Content-Type")}
		inner.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // a refused certificate is expected
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, reqs
}

func TestHTTPDestinations(t *testing.T) {
	first, firstReqs := subscriber(t, appender(" - Handled by 0"), false)
	second, secondReqs := subscriber(t, appender(" - Handled by 1"), false)
	display := newRecorder()
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - uri: `+first.URL+`/hook
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: second}
    uri: v2/hook
    delivery: {format: json}
  reply:
    ref: {apiVersion: v1, kind: Service, name: display}
`)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "time" || a.Key == "took" {
				return slog.Attr{}
			}
			return a
		},
	}))
	var reg manifest.Registry
	reg.BindURL("Service", "second", second.URL+"/base/")
	reg.Bind("Service", "display", display)
	app := start(t, set, &reg, manifest.WithDeliveryLog(logger))

	if _, err := flow(t, app, "Sequence", "s").Handle(context.Background(), newEvent("h1", time.Now(), `{"message":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if e := display.next(t); string(e.Data()) != `{"id":0,"message":"hi - Handled by 0 - Handled by 1"}` {
		t.Errorf("display got %s", e.Data())
	}
	if r := <-firstReqs; r.path != "/hook" || r.contentType != "application/json" {
		t.Errorf("first got %+v; want /hook in binary mode", r)
	}
	if r := <-secondReqs; r.path != "/base/v2/hook" || r.contentType != "application/cloudevents+json" {
		t.Errorf("second got %+v; want /base/v2/hook (relative to its binding) in structured mode (format: json)", r)
	}
	mu.Lock()
	got := logs.String()
	mu.Unlock()
	for _, want := range []string{
		`level=INFO msg=delivery to=` + first.URL + `/hook id=h1 type=dev.knative.sources.ping status=200`,
		`level=INFO msg=delivery to=` + second.URL + `/base/v2/hook id=h1 type=dev.knative.sources.ping status=200`,
		`level=INFO msg=delivery to=Service/display id=h1 type=dev.knative.sources.ping`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q:\n%s", want, got)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestCACerts(t *testing.T) {
	srv, _ := subscriber(t, appender("!"), true)
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	for _, tt := range []struct {
		name    string
		caCerts string
		wantErr string
	}{
		{"trusted", cert, ""},
		{"not trusted", "", "certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - uri: ` + srv.URL + "\n"
			if tt.caCerts != "" {
				doc += "    CACerts: |\n      " + strings.ReplaceAll(strings.TrimSpace(tt.caCerts), "\n", "\n      ") + "\n"
			}
			app := start(t, parse(t, doc), nil)
			_, err := flow(t, app, "Sequence", "s").Handle(context.Background(), newEvent("c", time.Now(), `{}`))
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Handle = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func post(t *testing.T, url, host, id string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"message":"hello, world!"}`))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "/test")
	req.Header.Set("Ce-Type", "test.event")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServe(t *testing.T) {
	display := newRecorder()
	var reg manifest.Registry
	reg.Bind("Service", "first", appender(" - Handled by 0"))
	reg.Bind("Service", "second", appender(" - Handled by 1"))
	reg.Bind("Service", "third", then(appender(" - Handled by 2"), display))
	app, err := manifest.Build(readSeed(t, "sequence/services.yaml", "sequence/sequence.yaml"), &reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Serve("127.0.0.1:0"); !errors.Is(err, manifest.ErrState) {
		t.Errorf("Serve before Start = %v; want ErrState", err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Shutdown(context.Background())
		app.Shutdown(context.Background())
	}()

	st := app.Status()
	want := srv.URL() + "/default/sequence-kn-sequence-0"
	if st[0].Kind != "Sequence" || st[0].URL != want {
		t.Fatalf("status %+v; want URL %s", st[0], want)
	}
	var b strings.Builder
	manifest.WriteStatus(&b, st[:1], st[0].Since)
	if lines := strings.Split(b.String(), "\n"); !strings.HasPrefix(lines[1], "sequence   "+want+"   0s    True") {
		t.Errorf("table:\n%s", b.String())
	}

	if code := post(t, want, "", "by-path"); code != http.StatusAccepted {
		t.Fatalf("POST %s = %d; want 202", want, code)
	}
	if e := display.next(t); e.ID() != "by-path" || string(e.Data()) != `{"id":0,"message":"hello, world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
		t.Errorf("display got:\n%s", e)
	}
	if code := post(t, srv.URL()+"/", "sequence-kn-sequence-0-kn-channel.default.svc.cluster.local", "by-host"); code != http.StatusAccepted {
		t.Fatalf("POST by Host = %d; want 202", code)
	}
	if e := display.next(t); e.ID() != "by-host" {
		t.Errorf("display got:\n%s", e)
	}
	if code := post(t, srv.URL()+"/default/nothing", "", "lost"); code != http.StatusNotFound {
		t.Errorf("POST to an unknown channel = %d; want 404", code)
	}
}

type headerTransport struct{}

func (headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("X-Test", "from WithHTTPClient")
	return http.DefaultTransport.RoundTrip(r)
}

func TestWithHTTPClient(t *testing.T) {
	seen := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Test")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - uri: `+srv.URL+"\n")
	app := start(t, set, nil, manifest.WithHTTPClient(&http.Client{Transport: headerTransport{}}))
	if _, err := flow(t, app, "Sequence", "s").Handle(context.Background(), newEvent("c", time.Now(), `{}`)); err != nil {
		t.Fatal(err)
	}
	if h := <-seen; h != "from WithHTTPClient" {
		t.Errorf("the subscriber saw X-Test %q; want the client's header", h)
	}
}
