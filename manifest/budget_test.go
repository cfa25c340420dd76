package manifest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// heldBody announces a body it never sends until the test lets it go, so
// that a request holds its share of the budget.
type heldBody struct {
	reading chan struct{}
	letGo   chan struct{}
}

func (b heldBody) Read([]byte) (int, error) {
	close(b.reading)
	<-b.letGo
	return 0, io.EOF
}

func (heldBody) Close() error { return nil }

func ingressRequest(path string, body io.ReadCloser, length int64) *http.Request {
	r := httptest.NewRequest("POST", path, body)
	r.ContentLength = length
	for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/test", "Ce-Type": "test.event"} {
		r.Header.Set(k, v)
	}
	return r
}

// TestAppHandlerSharesOneByteBudget fills the budget of the app's handler
// with requests to one flow: a request to another flow of the app is then
// refused with 503, since the handler's memory is bounded as a whole.
func TestAppHandlerSharesOneByteBudget(t *testing.T) {
	set := parse(t, `apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: one}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: other}
`)
	app := start(t, set, &manifest.Registry{})
	h := app.Handler()

	release := fillBudget(h, "/default/one")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, ingressRequest("/default/other", io.NopCloser(strings.NewReader("{}")), 2))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("another flow of the app with the budget used up: %d %q, want 503 with Retry-After", w.Code, w.Body)
	}
	release()
	w = httptest.NewRecorder()
	h.ServeHTTP(w, ingressRequest("/default/other", io.NopCloser(strings.NewReader("{}")), 2))
	if w.Code != http.StatusAccepted {
		t.Errorf("once the requests are done: %d %q, want 202", w.Code, w.Body)
	}
}

// fillBudget uses up the default byte budget of h with requests to path
// whose bodies are held half-read; release lets them finish and waits for
// their answers.
func fillBudget(h http.Handler, path string) (release func()) {
	letGo := make(chan struct{})
	var done []chan int
	for range flows.DefaultMaxBytesInFlight / flows.DefaultMaxBodyBytes {
		body := heldBody{reading: make(chan struct{}), letGo: letGo}
		d := make(chan int, 1)
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, ingressRequest(path, body, flows.DefaultMaxBodyBytes))
			d <- w.Code
		}()
		<-body.reading
		done = append(done, d)
	}
	return func() {
		close(letGo)
		for _, d := range done {
			<-d
		}
	}
}
