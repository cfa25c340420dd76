package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"net/http"
	"net/http/httptest"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// receiver answers events by id: "busy" is 503 twice, "slow" 429 once,
// "down" always 503, "bad" 400; others 202. It keeps what it received.
type receiver struct {
	mu       sync.Mutex
	attempts map[string]int
	events   []event.Event
	headers  []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.attempts[e.ID()]++
	n := rc.attempts[e.ID()]
	rc.mu.Unlock()
	switch {
	case e.ID() == "busy" && n <= 2, e.ID() == "down":
		w.Header().Set("Retry-After", "0")
		http.Error(w, "full", http.StatusServiceUnavailable)
		return
	case e.ID() == "slow" && n == 1:
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case e.ID() == "bad":
		http.Error(w, "bad request reason\nmore", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.events = append(rc.events, *e)
	rc.headers = append(rc.headers, r.Header.Clone())
	rc.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func sendCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"send"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Run()
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// flows send posts each event of a file, prints what the server answered,
// retries 503 and 429 a bounded number of times, and exits 1 if any event
// was refused or a line was not an event.
func TestSendFile(t *testing.T) {
	rc := &receiver{attempts: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "events.jsonl")
	line := func(id string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"/s","type":"t","datacontenttype":"application/json","data":{"id":"` + id + `"}}` + "\n"
	}
	os.WriteFile(file, []byte(line("ok")+line("busy")+"\n"+line("bad")+line("slow")+"not json\n"+line("down")), 0o644)
	code, stdout, stderr := sendCmd(t, "--to", srv.URL, "--from", file, "--backoff", "1ms", "--retry", "3")
	want := file + `:1: id "ok" source "/s": 202 Accepted` + "\n" +
		file + `:2: id "busy" source "/s": 202 Accepted (after 2 retries)` + "\n" +
		file + `:4: id "bad" source "/s": 400 Bad Request: bad request reason` + "\n" +
		file + `:5: id "slow" source "/s": 202 Accepted (after 1 retry)` + "\n" +
		file + `:7: id "down" source "/s": 503 Service Unavailable: full (after 3 retries)` + "\n"
	if code != 1 || stdout != want {
		t.Errorf("exit %d, stdout:\n%s\nwant exit 1, stdout:\n%s", code, stdout, want)
	}
	if !strings.Contains(stderr, file+":6: not a CloudEvent in JSON: ") ||
		!strings.HasSuffix(stderr, "flows send: 5 sent to "+srv.URL+": 3 accepted, 2 refused\n") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if rc.attempts["down"] != 4 {
		t.Errorf("%d attempts for an event always answered 503; want 4 (--retry 3)", rc.attempts["down"])
	}
	for i, h := range rc.headers {
		if h.Get("Ce-Id") == "" || h.Get("Content-Type") != "application/json" {
			t.Errorf("event %d not sent in binary mode: %v", i, h)
		}
	}
}

// An event made of flags, in binary mode by default and structured on
// request, arrives as the flags describe it.
func TestSendFlags(t *testing.T) {
	rc := &receiver{attempts: map[string]int{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	args := []string{"--to", srv.URL, "--id", "f-1", "--source", "/here", "--type", "demo", "--subject", "sub",
		"--time", "2024-05-01T12:00:00Z", "--data", `{"message": "hi"}`, "--ext", "myext=v", "--ext", "other=w"}
	for _, mode := range []string{"binary", "structured"} {
		a := args
		if mode == "structured" {
			a = append(a, "--structured")
		}
		code, stdout, stderr := sendCmd(t, a...)
		if code != 0 || stdout != `id "f-1" source "/here": 202 Accepted`+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", mode, code, stdout, stderr)
		}
	}
	if len(rc.events) != 2 {
		t.Fatalf("received %d events", len(rc.events))
	}
	want := event.New()
	want.SetID("f-1")
	want.SetSource("/here")
	want.SetType("demo")
	want.SetSubject("sub")
	want.SetTime(must(t, "2024-05-01T12:00:00Z"))
	want.SetData(event.ApplicationJSON, []byte(`{"message": "hi"}`))
	want.SetExtension("myext", "v")
	want.SetExtension("other", "w")
	for i, e := range rc.events {
		sameEvent(t, e, want)
		if ct := rc.headers[i].Get("Content-Type"); (i == 0) != (ct == "application/json") || (i == 1) != (ct == "application/cloudevents+json") {
			t.Errorf("event %d sent with Content-Type %s", i, ct)
		}
	}

	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"--to", srv.URL}, "flows send: nothing to send: give --from FILE, or the event with at least --type\n"},
		{[]string{"--to", srv.URL, "--from", "x", "--type", "t"}, "flows send: --type: the event comes from --from; give either a file or the event's flags\n"},
		{[]string{"--type", "t"}, "flows send: no URL: give --to URL\n"},
		{[]string{"--to", "localhost:80", "--type", "t"}, "flows send: --to \"localhost:80\": want an absolute http or https URL\n"},
		{[]string{"--to", srv.URL, "--type", "t", "--time", "yesterday"}, "flows send: --time \"yesterday\": want RFC 3339, such as 2024-05-01T12:00:00Z\n"},
	} {
		if code, _, stderr := sendCmd(t, tt.args...); code != 2 || stderr != tt.err {
			t.Errorf("flows send %s: exit %d, stderr %q; want 2, %q", strings.Join(tt.args, " "), code, stderr, tt.err)
		}
	}
}

func must(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
