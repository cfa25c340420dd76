package flows_test

// Interoperability with clients that no one here wrote: curl, and the
// official CloudEvents JavaScript SDK (testdata/interop/js) as a sender to
// our ingress and as an HTTP subscriber our flows dispatch to.
//
// The tests skip when curl, node or the SDK's node_modules are missing,
// unless FLOWS_INTEROP=require (as .ci/run sets it), which turns every such
// skip into a failure: where the clients are installed, CI runs these tests.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

const jsDir = "testdata/interop/js"

// interopSkip skips the test, or fails it when FLOWS_INTEROP=require.
func interopSkip(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("FLOWS_INTEROP") == "require" {
		t.Fatalf("%s (FLOWS_INTEROP=require)", msg)
	}
	t.Skip(msg)
}

func needCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		interopSkip(t, "curl not found on PATH: skipping the curl interop tests")
	}
	return path
}

// needJS returns the path of node, once the SDK is installed in jsDir.
func needJS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		interopSkip(t, "node not found on PATH: skipping the CloudEvents JavaScript SDK interop tests (they need Node.js >= 20)")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "cloudevents", "package.json")); err != nil {
		interopSkip(t, "%s/node_modules has no cloudevents package: run `npm ci` in %s (or `npm ci --prefix %s`) to run the JavaScript SDK interop tests", jsDir, jsDir, jsDir)
	}
	return node
}

// interopCommand runs name with a bounded lifetime; a test that hangs kills it.
func interopCommand(t *testing.T, timeout time.Duration, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// curlStatus POSTs (or whatever args say) to url with curl and returns the
// HTTP status it got.
func curlStatus(t *testing.T, curl, url string, args ...string) int {
	t.Helper()
	full := append([]string{"-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--noproxy", "*"}, args...)
	cmd := interopCommand(t, 10*time.Second, curl, append(full, url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl printed %q, not a status code", out)
	}
	return status
}

func TestInteropCurl(t *testing.T) {
	curl := needCurl(t)
	got := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Name: "curl", Steps: []flows.Step{{Subscriber: got}}})
	// Synchronous, so that a 202 means the event is already in the sink and
	// the count at the end is exact.
	url := serveIngress(t, f, flows.IngressSynchronous(), flows.IngressMaxBodyBytes(1024))

	big := filepath.Join(t.TempDir(), "big.json")
	bigEvent := `{"specversion":"1.0","id":"big","source":"/curl","type":"greeting","data":"` + strings.Repeat("x", 2048) + `"}`
	if err := os.WriteFile(big, []byte(bigEvent), 0o600); err != nil {
		t.Fatal(err)
	}
	binary := []string{"-H", "ce-specversion: 1.0", "-H", "ce-id: curl-binary", "-H", "ce-source: /curl",
		"-H", "ce-type: greeting", "-H", "ce-subject: hello", "-H", "ce-time: 2024-05-06T07:08:09Z",
		"-H", "ce-myext: my value", "-H", "Content-Type: application/json"}
	structured := []string{"-H", "Content-Type: application/cloudevents+json; charset=utf-8"}
	cases := []struct {
		name   string
		args   []string
		status int
	}{
		{"binary", append(binary, "--data-binary", `{"message":"binary"}`), 202},
		{"structured", append(structured, "--data-binary",
			`{"specversion":"1.0","id":"curl-structured","source":"/curl","type":"greeting","subject":"hello",`+
				`"time":"2024-05-06T07:08:09Z","myext":"my value","datacontenttype":"application/json","data":{"message":"structured"}}`), 202},
		{"not a CloudEvent", []string{"-H", "Content-Type: application/json", "--data-binary", `{"message":"plain JSON"}`}, 400},
		{"binary without ce-source", append(curlWithoutHeader(binary, "ce-source"), "--data-binary", `{}`), 400},
		{"structured without id", append(structured, "--data-binary", `{"specversion":"1.0","source":"/curl","type":"greeting"}`), 400},
		{"structured malformed JSON", append(structured, "--data-binary", `{"specversion":"1.0","id":`), 400},
		{"GET", []string{"-X", "GET"}, 405},
		{"over the limit", append(structured, "--data-binary", "@"+big), 413},
		{"over the limit, chunked", append(structured, "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+big), 413},
		{"XML format", []string{"-H", "Content-Type: application/cloudevents+xml", "--data-binary", `<event/>`}, 415},
		{"Protobuf format", []string{"-H", "Content-Type: application/cloudevents+protobuf", "--data-binary", "\x0a\x01x"}, 415},
	}
	for _, tc := range cases {
		if status := curlStatus(t, curl, url, tc.args...); status != tc.status {
			t.Errorf("%s: curl got %d, want %d", tc.name, status, tc.status)
		}
	}

	events := got.Events()
	if len(events) != 2 {
		t.Fatalf("the flow got %d events %v, want the 2 valid ones", len(events), ids(events))
	}
	for i, mode := range []string{"binary", "structured"} {
		e := events[i]
		want := fmt.Sprintf("id=curl-%s source=/curl type=greeting subject=hello time=2024-05-06T07:08:09Z myext=my value data=%s",
			mode, mode)
		if g := interopDescribe(t, e); g != want {
			t.Errorf("%s event:\n got  %s\n want %s", mode, g, want)
		}
	}
}

// curlWithoutHeader drops the -H pair for header name from curl args.
func curlWithoutHeader(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-H" && strings.HasPrefix(strings.ToLower(args[i+1]), name+":") {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// interopDescribe prints the attributes the curl test checks, and the message.
func interopDescribe(t *testing.T, e event.Event) string {
	t.Helper()
	ext, _ := types.ToString(e.Extensions()["myext"])
	return fmt.Sprintf("id=%s source=%s type=%s subject=%s time=%s myext=%s data=%s",
		e.ID(), e.Source(), e.Type(), e.Subject(), e.Time().UTC().Format(time.RFC3339), ext, message(t, e))
}

// TestInteropJSSender posts events with the JavaScript SDK's emitter to our
// ingress, in both modes and with JSON, text and binary data.
func TestInteropJSSender(t *testing.T) {
	node := needJS(t)
	got := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Name: "js-sender", Steps: []flows.Step{{Subscriber: got}}})
	url := serveIngress(t, f)

	raw := make([]byte, 256)
	for i := range raw {
		raw[i] = byte(i)
	}
	datas := []struct {
		name        string
		contentType string
		data        any // as the SDK's CloudEvent constructor takes it
		wantData    []byte
	}{
		{"JSON", "application/json", map[string]any{"message": "héllo from js", "n": 42}, []byte(`{"message":"héllo from js","n":42}`)},
		{"text", "text/plain", "plain text, not JSON", []byte("plain text, not JSON")},
		{"binary", "application/octet-stream", nil, raw},
	}
	n := 0
	for _, mode := range []string{"binary", "structured"} {
		for _, d := range datas {
			id := fmt.Sprintf("js-%s-%s", mode, d.name)
			attrs := map[string]any{
				"specversion":     "1.0",
				"id":              id,
				"source":          "/interop/js-sender",
				"type":            "dev.flows.interop.request",
				"subject":         "subject-" + mode,
				"time":            "2024-05-06T07:08:09.123Z",
				"dataschema":      "https://example.com/schema.json",
				"datacontenttype": d.contentType,
				"jsext":           "value with spaces & symbols",
				"traceid":         "abc123",
			}
			if d.data != nil {
				attrs["data"] = d.data
			} else {
				attrs["data_base64"] = base64.StdEncoding.EncodeToString(d.wantData)
			}
			ev, err := json.Marshal(attrs)
			if err != nil {
				t.Fatal(err)
			}
			if status := runJSSender(t, node, url, mode, string(ev)); status != "202" {
				t.Fatalf("%s: the JS sender got status %s, want 202", id, status)
			}
			n++
			e := got.MustWait(t, n)[n-1]

			want := map[string]string{
				"id": id, "source": "/interop/js-sender", "type": "dev.flows.interop.request", "specversion": "1.0",
				"subject": "subject-" + mode, "time": "2024-05-06T07:08:09.123Z", "dataschema": "https://example.com/schema.json",
				"datacontenttype": d.contentType, "jsext": "value with spaces & symbols", "traceid": "abc123",
			}
			if g := interopAttrs(e); !maps.Equal(g, want) {
				t.Errorf("%s: the flow got attributes\n %v\nwant\n %v", id, g, want)
			}
			if d.contentType == "application/json" {
				if !interopJSONEqual(e.Data(), d.wantData) {
					t.Errorf("%s: data %s, want %s", id, e.Data(), d.wantData)
				}
			} else if !bytes.Equal(e.Data(), d.wantData) {
				t.Errorf("%s: data %q, want %q", id, e.Data(), d.wantData)
			}
		}
	}
}

func runJSSender(t *testing.T, node, url, mode, eventJSON string) string {
	t.Helper()
	cmd := interopCommand(t, 20*time.Second, node, filepath.Join(jsDir, "sender.js"), url, mode, eventJSON)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sender.js %s: %v: %s", mode, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// interopAttrs flattens an event's context attributes and extensions to strings.
func interopAttrs(e event.Event) map[string]string {
	out := map[string]string{
		"id": e.ID(), "source": e.Source(), "type": e.Type(), "specversion": e.SpecVersion(),
		"subject": e.Subject(), "datacontenttype": e.DataContentType(), "dataschema": e.DataSchema(),
	}
	if !e.Time().IsZero() {
		out["time"] = e.Time().UTC().Format("2006-01-02T15:04:05.000Z")
	}
	for k, v := range e.Extensions() {
		out[k], _ = types.ToString(v)
	}
	for k, v := range out {
		if v == "" {
			delete(out, k)
		}
	}
	return out
}

func interopJSONEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// interopLineWriter takes the receiver's stdout and reports its first line.
type interopLineWriter struct {
	mu    sync.Mutex
	buf   []byte
	first chan string
	sent  bool
}

func (w *interopLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if !w.sent {
		if line, _, ok := bytes.Cut(w.buf, []byte("\n")); ok {
			w.sent = true
			w.first <- string(line)
		}
	}
	return len(p), nil
}

// startJSReceiver starts receiver.js and returns its base URL. The process
// is stopped when the test ends, and in any case within a minute.
func startJSReceiver(t *testing.T, node string) string {
	t.Helper()
	cmd := interopCommand(t, time.Minute, node, filepath.Join(jsDir, "receiver.js"), "--max-seconds", "60")
	// Stopping it gently lets it close its connections; it exits when its
	// stdin closes too, should this process die without cleaning up.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := &interopLineWriter{first: make(chan string, 1)}
	var stderr interopBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		if err := <-exited; err != nil {
			t.Errorf("receiver.js: %v: %s", err, stderr.String())
		}
	})
	select {
	case line := <-stdout.first:
		port, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("receiver.js printed %q, not a port", line)
		}
		return fmt.Sprintf("http://127.0.0.1:%d", port)
	case err := <-exited:
		exited <- err
		t.Fatalf("receiver.js exited before listening: %v: %s", err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("receiver.js did not print its port within 20s: %s", stderr.String())
	}
	return ""
}

type interopBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *interopBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *interopBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// jsReply is the data of receiver.js's replies.
type jsReply struct {
	Message  string         `json:"message"`
	Received map[string]any `json:"received"`
}

// TestInteropJSReceiver has a flow dispatch to an HTTP subscriber written
// with the JavaScript SDK, in binary and structured mode, and forward the
// SDK's reply, sent in either mode, to the flow's reply.
func TestInteropJSReceiver(t *testing.T) {
	node := needJS(t)
	base := startJSReceiver(t, node)
	for _, tc := range []struct{ request, reply string }{
		{"binary", "binary"},
		{"binary", "structured"},
		{"structured", "binary"},
		{"structured", "structured"},
	} {
		t.Run(tc.request+" request, "+tc.reply+" reply", func(t *testing.T) {
			out := flowstest.NewRecorder()
			target := &flows.HTTPTarget{URL: base + "/?reply=" + tc.reply, Structured: tc.request == "structured"}
			f := start(t, &flows.Sequence{Name: "to-js", Steps: []flows.Step{{Subscriber: target}}, Reply: out})

			in := newEvent("go-"+tc.request+"-"+tc.reply, msg{ID: 7, Message: "from go"})
			in.SetType("dev.flows.interop.request")
			in.SetSubject("subject-" + tc.request)
			in.SetTime(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
			in.SetExtension("goext", "value with spaces & symbols")
			if err := f.Send(context.Background(), in); err != nil {
				t.Fatal(err)
			}
			reply := out.MustWait(t, 1)[0]

			want := map[string]string{
				"id": "reply-" + in.ID(), "source": "/interop/js-receiver", "type": "dev.flows.interop.reply",
				"specversion": "1.0", "subject": in.Subject(), "datacontenttype": "application/json",
				"jsreceiver": "cloudevents-sdk-javascript", "receivedmode": tc.request, "inreplyto": in.ID(),
			}
			g := interopAttrs(reply)
			delete(g, "time") // set by the SDK when it builds the reply
			if !maps.Equal(g, want) {
				t.Errorf("reply attributes\n %v\nwant\n %v", g, want)
			}
			var data jsReply
			if err := json.Unmarshal(reply.Data(), &data); err != nil {
				t.Fatalf("reply data %q: %v", reply.Data(), err)
			}
			if data.Message != "from go - handled by js" {
				t.Errorf("reply message %q", data.Message)
			}
			// What the SDK read from our request.
			wantSeen := map[string]any{
				"id": in.ID(), "source": "/test", "type": "dev.flows.interop.request", "specversion": "1.0",
				"subject": in.Subject(), "time": "2024-05-06T07:08:09.000Z", "datacontenttype": "application/json",
				"goext": "value with spaces & symbols",
			}
			if fmt.Sprint(data.Received) != fmt.Sprint(wantSeen) {
				t.Errorf("the JS SDK read\n %v\nwant\n %v", data.Received, wantSeen)
			}
		})
	}
}

// TestInteropJSReceiverRefusal checks that a refusal by the JS subscriber
// reaches the dead-letter sink with its status (400) and reason.
func TestInteropJSReceiverRefusal(t *testing.T) {
	node := needJS(t)
	base := startJSReceiver(t, node)
	dead, out := flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Sequence{
		Name:  "to-js",
		Steps: []flows.Step{{Subscriber: flows.HTTP(base)}},
		Reply: out,
		Delivery: &flows.Delivery{Retry: 3, BackoffPolicy: flows.BackoffLinear, BackoffDelay: time.Millisecond,
			DeadLetter: dead},
	})
	in := newEvent("wrong-type", msg{Message: "x"})
	in.SetType("not.for.js")
	if err := f.Send(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	dl := dead.MustWait(t, 1)[0]
	code, _ := types.ToInteger(dl.Extensions()[flows.ExtensionErrorCode])
	b64, _ := types.ToString(dl.Extensions()[flows.ExtensionErrorData])
	reason, _ := base64.StdEncoding.DecodeString(b64)
	if dl.ID() != in.ID() || code != 400 || !strings.Contains(string(reason), `unexpected type "not.for.js"`) {
		t.Errorf("dead letter %s with code %d and data %q, want %s with 400 and the JS reason", dl.ID(), code, reason, in.ID())
	}
	if len(out.Events()) != 0 {
		t.Errorf("a refused event produced a reply")
	}
}
