package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

var bin string // the command, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flows-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "flows")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const seed = "../../examples/manifests/"

type message struct {
	ID      int    `json:"id"`
	Message string `json:"message"`
}

func appender(suffix string) flows.Handler {
	return flows.Typed(func(_ context.Context, in message) (message, error) {
		in.Message += suffix
		return in, nil
	})
}

// serve runs h as an HTTP subscriber on 127.0.0.1.
func serve(t *testing.T, h flows.Handler) string {
	t.Helper()
	srv := httptest.NewServer(flows.NewHTTPHandler(h))
	t.Cleanup(srv.Close)
	return srv.URL
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a running `flows` command.
type process struct {
	cmd    *exec.Cmd
	lines  chan string // its standard output, line by line
	stderr *syncBuffer
	done   chan error
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startIn(t, "", args...)
}

// startIn starts the command in the directory dir.
func startIn(t *testing.T, dir string, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, lines: make(chan string, 1000), stderr: new(syncBuffer), done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	return p
}

// line waits for a line of output that starts with prefix.
func (p *process) line(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("the command exited before printing %q; stderr:\n%s", prefix, p.stderr)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line %q within 20s; stderr:\n%s", prefix, p.stderr)
		}
	}
}

// interrupt sends Ctrl-C and waits for the exit.
func (p *process) interrupt(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range p.lines {
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("the command did not exit within 20s of Ctrl-C; stderr:\n%s", p.stderr)
		return nil
	}
}

func postEvent(t *testing.T, url, id, data string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(data))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "/cli-test")
	req.Header.Set("Ce-Type", "test.event")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The seed's sequence.yaml and services.yaml, run by the command against
// three appenders over HTTP; an event posted to the printed URL goes
// through the three of them.
func TestRunSequenceOverHTTP(t *testing.T) {
	final := make(chan event.Event, 1)
	first := serve(t, appender(" - Handled by 0"))
	second := serve(t, appender(" - Handled by 1"))
	third := serve(t, flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := appender(" - Handled by 2").Handle(ctx, e)
		if reply != nil {
			final <- reply.Clone()
		}
		return reply, err
	}))
	p := start(t, "run", "-f", seed+"sequence/services.yaml", "-f", seed+"sequence/sequence.yaml",
		"--bind", "Service/first="+first, "--bind", "Service/second="+second, "--bind", "Service/third="+third,
		"--listen", "127.0.0.1:0")

	header := p.line(t, "NAME")
	if f := strings.Fields(header); strings.Join(f, " ") != "NAME URL AGE READY REASON" {
		t.Errorf("table header %q", header)
	}
	row := strings.Fields(p.line(t, "sequence "))
	if len(row) != 4 || !strings.HasSuffix(row[1], "/default/sequence-kn-sequence-0") || row[3] != "True" {
		t.Fatalf("table row %q", row)
	}
	if code := postEvent(t, row[1], "cli-1", `{"message": "hello, world!"}`); code != http.StatusAccepted {
		t.Fatalf("POST %s = %d; want 202", row[1], code)
	}
	select {
	case e := <-final:
		if e.ID() != "cli-1" || string(e.Data()) != `{"id":0,"message":"hello, world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
			t.Errorf("third answered:\n%s", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the event did not reach the third step; stderr:\n%s", p.stderr)
	}

	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, p.stderr)
	}
	logs := p.stderr.String()
	for _, want := range []string{
		"msg=delivery to=" + first + " id=cli-1 type=test.event",
		"msg=delivery to=" + second + " id=cli-1 type=test.event",
		"msg=delivery to=" + third + " id=cli-1 type=test.event",
		"msg=\"flows: drained\"",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, logs)
		}
	}
}

// The seed's Parallel demo with its PingSource every second: filters and
// transformers over HTTP, event-display bound to the command's output.
func TestRunParallelWithPingAndDisplay(t *testing.T) {
	parity := func(p int) flows.Handler {
		return flows.Match(func(e event.Event) bool {
			return int(math.Floor(float64(e.Time().UnixMilli())/1000+0.5))%2 == p
		})
	}
	transformer := func(msg string) flows.Handler {
		return flows.Typed(func(context.Context, struct{}) (map[string]string, error) {
			return map[string]string{"message": msg}, nil
		})
	}
	p := start(t, "run", "-f", seed+"parallel", "--schedule", "* * * * * *",
		"--bind", "Service/even-filter="+serve(t, parity(0)),
		"--bind", "Service/odd-filter="+serve(t, parity(1)),
		"--bind", "Service/even-transformer="+serve(t, transformer("this is even!")),
		"--bind", "Service/odd-transformer="+serve(t, transformer("this is odd!")),
		"--bind", "Service/event-display=display")
	seen := map[string]bool{}
	for i := 0; len(seen) < 2 && i < 10; i++ { // consecutive seconds alternate
		seen[p.line(t, `    "message": `)] = true
	}
	if !seen[`    "message": "this is even!"`] || !seen[`    "message": "this is odd!"`] {
		t.Errorf("displayed %v", seen)
	}
	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, p.stderr)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"validate", "-f", seed + "sequence", "--bind", "Service/first=http://127.0.0.1:8081"}, 1, "",
			seed + `sequence/sequence.yaml: Sequence "sequence": spec.steps[1].ref: no binding for Service "second"` + "\n" +
				seed + `sequence/sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"` + "\n"},
		{[]string{"validate", "-f", seed + "sequence", "--bind", "Service/first=http://127.0.0.1:8081",
			"--bind", "Service/second=discard", "--bind", "Service/third=display"}, 0, "ok: 5 objects\n", ""},
		{[]string{"validate", "-f", seed + "sequence", "--bind", "Service/first=http://127.0.0.1:8081",
			"--bind", "Service/secnod=discard", "--bind", "Service/thrid=display"}, 1, "",
			seed + `sequence/sequence.yaml: Sequence "sequence": spec.steps[1].ref: no binding for Service "second"; did you mean the binding Service/secnod?` + "\n" +
				seed + `sequence/sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"; did you mean the binding Service/thrid?` + "\n"},
		{[]string{"validate"}, 2, "", "flows: no manifests: give at least one -f FILE\n"},
		{[]string{"validate", "-f", seed + "sequence", "--bind", "first=x"}, 2, "",
			`invalid value "first=x" for flag -bind: manifest: reference "first": want Kind/name or Kind/namespace/name, such as Service/first`},
		{[]string{"validate", "-f", "nonexistent.yaml"}, 1, "", "nonexistent.yaml: open nonexistent.yaml: no such file or directory\n"},
		{[]string{"frobnicate"}, 2, "", `flows: unknown command "frobnicate"`},
	} {
		cmd := exec.Command(bin, tt.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != tt.code || stdout.String() != tt.out || !strings.HasPrefix(stderr.String(), tt.err) {
			t.Errorf("flows %s: exit %d, stdout %q, stderr:\n%s\nwant exit %d, stdout %q, stderr starting with:\n%s",
				strings.Join(tt.args, " "), code, stdout.String(), stderr.String(), tt.code, tt.out, tt.err)
		}
	}
}

func TestGraph(t *testing.T) {
	for _, tt := range []struct{ format, first string }{{"mermaid", "flowchart LR"}, {"dot", "digraph flows {"}} {
		out, err := exec.Command(bin, "graph", "-f", seed+"parallel", "--format", tt.format).Output()
		if err != nil {
			t.Fatalf("graph --format %s: %v", tt.format, err)
		}
		if first, _, _ := strings.Cut(string(out), "\n"); first != tt.first || !strings.Contains(string(out), "event-display") {
			t.Errorf("graph --format %s:\n%s", tt.format, out)
		}
	}
}

// lineWriter hands each line written to it to lines.
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	all   bytes.Buffer
	lines chan string
}

func (w *lineWriter) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	w.all.Write(p)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default: // nobody waits for that many lines
		}
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) waitFor(t *testing.T, substr string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-w.lines:
			if strings.Contains(l, substr) {
				return
			}
		case <-timeout:
			t.Fatalf("no line with %q within 20s", substr)
		}
	}
}

// Ctrl-C drains; a second Ctrl-C cuts the drain short and the command
// exits 1, writing the events it could not deliver to the --undelivered
// file, from which flows send delivers them to a fresh ingress.
func TestSecondInterruptStopsAtOnce(t *testing.T) {
	entered := make(chan string, 16)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server sees the client go
		entered <- r.Header.Get("Ce-Id")
		<-r.Context().Done() // until the hard stop cancels the delivery
	}))
	defer func() {
		hang.CloseClientConnections() // unblocks the handler if the test failed
		hang.Close()
	}()

	file := filepath.Join(t.TempDir(), "lost.jsonl")
	sigs := make(chan chan<- os.Signal, 1)
	notify := func(c chan<- os.Signal) func() { sigs <- c; return func() {} }
	stderr := &lineWriter{lines: make(chan string, 100)}
	code := make(chan int, 1)
	go func() {
		code <- run(context.Background(), []string{"run", "-f", seed + "sequence", "--schedule", "* * * * * *", "--drain", "1h",
			"--bind", "Service/first=" + hang.URL, "--bind", "Service/second=discard", "--bind", "Service/third=discard",
			"--undelivered", file},
			io.Discard, stderr, notify)
	}()
	var c chan<- os.Signal
	select {
	case c = <-sigs:
	case got := <-code:
		t.Fatalf("exit code %d before running; stderr:\n%s", got, stderr.text())
	}
	hung := <-entered // a ping is being delivered to the first step, which hangs
	c <- os.Interrupt
	stderr.waitFor(t, "flows: draining")
	c <- os.Interrupt
	select {
	case got := <-code:
		if got != 1 {
			t.Errorf("exit code %d; want 1 (events not delivered)", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second interrupt did not stop the command")
	}
	lost := readEvents(t, file)
	if !slices.ContainsFunc(lost, func(e event.Event) bool { return e.ID() == hung }) {
		t.Errorf("the event hanging in the first step, %s, is not in %s: %v", hung, file, lost)
	}
	for _, e := range lost {
		if e.Source() != "/apis/v1/namespaces/default/pingsources/ping-source" {
			t.Errorf("undelivered event %s", e)
		}
	}
	sendBack(t, file, lost)
}

// --drain bounds the drain: the events the ingress accepted (202) and the
// flow could not deliver in time are written to a file in the working
// directory, whose path the logs print, and flows send delivers them to a
// fresh ingress, ids included.
func TestDrainTimeoutWritesUndelivered(t *testing.T) {
	entered := make(chan struct{}, 16)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	defer func() {
		hang.CloseClientConnections()
		hang.Close()
	}()
	dir := t.TempDir()
	seq, _ := filepath.Abs(seed + "sequence/sequence.yaml")
	p := startIn(t, dir, "run", "-f", seq, "--listen", "127.0.0.1:0", "--drain", "100ms",
		"--bind", "Service/first="+hang.URL, "--bind", "Service/second=discard", "--bind", "Service/third=discard")
	url := strings.Fields(p.line(t, "sequence "))[1]
	var sent []string
	for i := range 5 {
		id := fmt.Sprintf("drain-%d", i)
		if code := postEvent(t, url, id, fmt.Sprintf(`{"n": %d}`, i)); code != http.StatusAccepted {
			t.Fatalf("POST = %d; want 202", code)
		}
		sent = append(sent, id)
	}
	<-entered
	if err := p.interrupt(t); err == nil {
		t.Errorf("exit 0; want 1 (events not delivered)")
	}
	logs := p.stderr.String()
	files, _ := filepath.Glob(filepath.Join(dir, "flows-undelivered-*.jsonl"))
	if len(files) != 1 || !strings.Contains(logs, `msg="flows: undelivered events written" file=`+files[0]+" events=5") ||
		!strings.Contains(logs, "resend=\"flows send --to "+url+" --from "+files[0]+"\"") {
		t.Fatalf("files %v; stderr:\n%s", files, logs)
	}
	lost := readEvents(t, files[0])
	var ids []string
	for _, e := range lost {
		ids = append(ids, e.ID())
		if e.Source() != "/cli-test" || e.Type() != "test.event" || e.DataContentType() != "application/json" {
			t.Errorf("undelivered event %s", e)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, sent) {
		t.Errorf("undelivered %v; want %v", ids, sent)
	}
	sendBack(t, files[0], lost)
}

// readEvents reads a file of JSON lines, one CloudEvent each.
func readEvents(t *testing.T, file string) []event.Event {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for line := range strings.Lines(string(b)) {
		var e event.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		t.Fatalf("%s is empty", file)
	}
	return out
}

// sendBack runs flows send with file against a fresh flow's ingress and
// checks that the flow received want, attribute for attribute.
func sendBack(t *testing.T, file string, want []event.Event) {
	t.Helper()
	got := make(chan event.Event, len(want))
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		got <- e
		return nil, nil
	})}}}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Shutdown(context.Background())
	srv := httptest.NewServer(flows.NewIngress(f))
	defer srv.Close()
	out, err := exec.Command(bin, "send", "--to", srv.URL, "--from", file).CombinedOutput()
	if err != nil {
		t.Fatalf("flows send: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), ": 202 Accepted\n"); n != len(want) {
		t.Errorf("flows send reported %d accepted; want %d:\n%s", n, len(want), out)
	}
	for range want {
		select {
		case e := <-got:
			i := slices.IndexFunc(want, func(w event.Event) bool { return w.ID() == e.ID() })
			if i < 0 {
				t.Errorf("received %s, not in the file", e)
				continue
			}
			sameEvent(t, e, want[i])
		case <-time.After(20 * time.Second):
			t.Fatalf("the fresh ingress did not receive every event; flows send said:\n%s", out)
		}
	}
}

// sameEvent compares the attributes, extensions and data of two events.
func sameEvent(t *testing.T, got, want event.Event) {
	t.Helper()
	if got.SpecVersion() != want.SpecVersion() || got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) || got.DataContentType() != want.DataContentType() ||
		got.DataSchema() != want.DataSchema() || !bytes.Equal(got.Data(), want.Data()) ||
		fmt.Sprint(got.Extensions()) != fmt.Sprint(want.Extensions()) {
		t.Errorf("received\n%s\nwant\n%s\n(data %q, %q; extensions %#v, %#v)", got, want, got.Data(), want.Data(), got.Extensions(), want.Extensions())
	}
}

// With --sync the ingress answers once the flow is done with the event:
// 500 when the delivery failed, where the default answers 202 at once.
func TestSyncIngress(t *testing.T) {
	refuse := serve(t, flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, flows.Permanent(fmt.Errorf("refused"))
	}))
	for _, tt := range []struct {
		flags []string
		want  int
	}{{nil, http.StatusAccepted}, {[]string{"--sync"}, http.StatusInternalServerError}} {
		args := append([]string{"run", "-f", seed + "sequence/sequence.yaml", "--listen", "127.0.0.1:0",
			"--bind", "Service/first=" + refuse, "--bind", "Service/second=discard", "--bind", "Service/third=discard"}, tt.flags...)
		p := start(t, args...)
		url := strings.Fields(p.line(t, "sequence "))[1]
		if got := postEvent(t, url, "s-1", `{}`); got != tt.want {
			t.Errorf("%v: POST = %d; want %d", tt.flags, got, tt.want)
		}
		p.interrupt(t)
	}
}

// flows version prints the module version the build recorded (what `go
// install ...@v0.1.0` stamps, "(devel)" here) and the Go version, as
// `go version -m` reads them from the binary.
func TestVersion(t *testing.T) {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("flows version: %v", err)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var goVersion, modVersion string
	for i, l := range strings.Split(string(info), "\n") {
		f := strings.Fields(l)
		switch {
		case i == 0 && len(f) == 2:
			goVersion = f[1]
		case len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/eventflows/flows/cmd":
			modVersion = f[2]
		}
	}
	f := strings.Fields(string(out))
	if len(f) < 4 || f[0] != "flows" || f[1] != modVersion || f[2] != goVersion || f[3] != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("flows version = %q; want flows %s %s %s/%s", out, modVersion, goVersion, runtime.GOOS, runtime.GOARCH)
	}
}

// A reply to the flow's own ingress would send each event around forever:
// validate and run refuse it, given the address run listens on.
func TestOwnIngressIsACycle(t *testing.T) {
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop.yaml")
	os.WriteFile(loop, []byte(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: loop}
spec:
  steps:
  - uri: http://127.0.0.1:9
  reply:
    uri: http://localhost:18080/default/loop-kn-sequence-0
`), 0o644)
	want := loop + `: Sequence "loop": spec.reply.uri: cycle: Sequence "loop" → Sequence "loop" ` +
		`(http://localhost:18080/default/loop-kn-sequence-0 is the ingress of Sequence "loop"); flows must form a graph without cycles` + "\n"
	for _, args := range [][]string{
		{"validate", "-f", loop, "--listen", "127.0.0.1:18080"},
		{"run", "-f", loop, "--listen", ":18080"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // run would loop, not exit
		cmd := exec.CommandContext(ctx, bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 1 || stderr.String() != want {
			t.Errorf("flows %s: exit %d, stderr:\n%s\nwant exit 1, stderr:\n%s", strings.Join(args, " "), code, stderr.String(), want)
		}
	}
	// Served elsewhere, the reply is an HTTP destination like any other.
	if out, err := exec.Command(bin, "validate", "-f", loop, "--listen", "127.0.0.1:18081").CombinedOutput(); err != nil {
		t.Errorf("validate --listen 127.0.0.1:18081: %v\n%s", err, out)
	}
}

// validate reports typos and the other problems of the same document in
// one run: the unknown fields with their hints, an invalid duration, a
// missing apiVersion and a bad URI.
func TestValidateReportsEveryProblem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "typos.yaml")
	os.WriteFile(file, []byte(`kind: Sequence
metadata: {name: typos}
spec:
  steps:
  - uri: http://127.0.0.1:9
    delivery: {retyr: 3, backoffPolicy: linear, backoffDelay: 200ms}
  replly: {uri: http://127.0.0.1:9}
  reply: {uri: "ftp://example.com"}
`), 0o644)
	cmd := exec.Command(bin, "validate", "-f", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	p := file + `: Sequence "typos": `
	want := p + "apiVersion: missing; want flows.knative.dev/v1\n" +
		p + `spec.replly: unknown field; did you mean "reply"?` + "\n" +
		p + `spec.steps[0].delivery.retyr: unknown field; did you mean "retry"?` + "\n" +
		p + `spec.steps[0].delivery.backoffDelay: invalid duration "200ms": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"` + "\n" +
		p + `spec.reply.uri: "ftp://example.com" is not an absolute http or https URL` + "\n"
	if code := cmd.ProcessState.ExitCode(); code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1, stderr:\n%s", code, stderr.String(), want)
	}
}
