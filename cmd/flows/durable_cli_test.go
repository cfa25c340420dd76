package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// status runs flows status and returns its output.
func status(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"status"}, args...)...).CombinedOutput()
	return string(out), err
}

// With --durable, a drain cut short leaves the undelivered events in the
// streams (no file), says so, and the next run on the same DIR delivers
// them; flows status shows them meanwhile.
func TestDurableDrainLeavesEventsInStreams(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	s := newSteps(t)
	// The first step goes through a gate: it hangs until the run stops,
	// then passes requests on to the real step.
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			io.Copy(io.Discard, r.Body) // so that the server sees the client go
			<-r.Context().Done()
			return
		}
		req, _ := http.NewRequest(http.MethodPost, s.url+"/first", r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(func() { gate.CloseClientConnections(); gate.Close() }) // after the runs stop
	file := s.manifest(t)
	os.WriteFile(file, []byte(strings.Replace(mustRead(t, file), s.url+"/first", gate.URL+"/first", 1)), 0o600)

	dir, work := filepath.Join(t.TempDir(), "store"), t.TempDir()
	port := strconv.Itoa(freePort(t))
	args := []string{"run", "-f", file, "--listen", "127.0.0.1:0", "--durable", dir, "--nats-port", port, "--drain", "200ms", "--ack-wait", "1s"}
	p := startIn(t, work, args...)
	url := strings.Fields(p.line(t, "crash "))[1]
	var ids []string
	for i := range 3 {
		id := "left-" + strconv.Itoa(i)
		if code := postEvent(t, url, id, `{}`); code != http.StatusAccepted {
			t.Fatalf("POST = %d; want 202", code)
		}
		ids = append(ids, id)
	}
	// One event being delivered and, read ahead by the run, the two others.
	const backlog = "flows_default_crash-kn-sequence-0   crash-kn-sequence-0   0         3"
	var out string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if out, err = status(t, "--nats", "nats://127.0.0.1:"+port); err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		if strings.Contains(out, backlog) {
			break
		}
	}
	if !strings.HasPrefix(out, "STREAM") || !strings.Contains(out, backlog) {
		t.Errorf("status: want none pending and 3 being delivered or read ahead on the first step:\n%s", out)
	}
	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; want 0: nothing is lost", err)
	}
	logs := p.stderr.String()
	for _, want := range []string{
		`msg="flows: events left in the stream" stream=flows_default_crash-kn-sequence-0 subscription=crash-kn-sequence-0 events=3`,
		`msg="flows: undelivered events stay in JetStream, for the next run or the other processes of these flows" events=3`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, logs)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(work, "flows-undelivered-*")); len(files) > 0 {
		t.Errorf("undelivered file %v written; the events are in the stream", files)
	}

	hang.Store(false)
	_ = startIn(t, work, args...)
	if missing := s.waitAll(ids, 20*time.Second); len(missing) > 0 {
		t.Errorf("the next run did not deliver %q", missing)
	}
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func channelsManifest(t *testing.T, stepURL string) string {
	seq := func(name, template string) string {
		return "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: " + name + "}\nspec:\n" + template +
			"  steps:\n    - uri: " + stepURL + "\n---\n"
	}
	return writeFile(t, "channels.yaml", seq("jet", `  channelTemplate:
    apiVersion: messaging.knative.dev/v1alpha1
    kind: NatsJetStreamChannel
    spec:
      stream:
        config: {maxAge: 1h, retention: Interest}
`)+seq("mem", `  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
`)+seq("plain", ""))
}

// A NatsJetStreamChannel needs --durable or --nats: run says so, naming the
// file, the object and the field; validate accepts it.
func TestNatsJetStreamChannelNeedsDurable(t *testing.T) {
	file := channelsManifest(t, "http://127.0.0.1:1/")
	out, err := exec.Command(bin, "run", "-f", file).CombinedOutput()
	want := file + `: Sequence "jet": spec.channelTemplate: no durable channels: NatsJetStreamChannel needs JetStream: run with -durable DIR (an embedded server) or -nats URL`
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("run: %v\n%s\nwant %q", err, out, want)
	}
	if out, err := exec.Command(bin, "validate", "-f", file).CombinedOutput(); err != nil {
		t.Errorf("validate: %v\n%s", err, out)
	}
}

// With --nats, flows on NatsJetStreamChannel and flows with no template go
// on JetStream, with the template's stream settings; an InMemoryChannel
// template stays in memory unless --all-durable.
func TestChannelTemplatesOnNATS(t *testing.T) {
	url := natsServer(t)
	s := newSteps(t)
	file := channelsManifest(t, s.url+"/first")
	for _, tt := range []struct {
		prefix string
		extra  []string
		want   []string
	}{
		{"flows", nil, []string{"flows_default_jet-kn-sequence-0", "flows_default_plain-kn-sequence-0"}},
		{"all", []string{"--all-durable"}, []string{"all_default_jet-kn-sequence-0", "all_default_mem-kn-sequence-0", "all_default_plain-kn-sequence-0"}},
	} {
		p := start(t, append([]string{"run", "-f", file, "--nats", url, "--nats-prefix", tt.prefix, "--max-age", "2h"}, tt.extra...)...)
		p.line(t, "NAME")
		out, err := status(t, "--nats", url, "--nats-prefix", tt.prefix)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		var streams []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			streams = append(streams, strings.Fields(l)[0])
		}
		if strings.Join(streams, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%v: streams %q, want %q:\n%s", tt.extra, streams, tt.want, out)
		}
		if err := p.interrupt(t); err != nil {
			t.Errorf("exit: %v\n%s", err, p.stderr)
		}
	}
	// The template's maxAge wins over --max-age; --max-age applies elsewhere.
	for stream, want := range map[string]time.Duration{"flows_default_jet-kn-sequence-0": time.Hour, "flows_default_plain-kn-sequence-0": 2 * time.Hour} {
		if got := streamMaxAge(t, url, stream); got != want {
			t.Errorf("stream %s: max age %v, want %v", stream, got, want)
		}
	}
}

// A nats command line context gives the URL and the credentials (here a
// token); the settings it has that are not supported are named.
func TestNATSContext(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true, Authorization: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	url := srv.ClientURL()
	ctxFile := writeFile(t, "ci.json", `{"description": "ci", "url": "`+url+`", "token": "s3cret", "inbox_prefix": "_X"}`)
	out, err := status(t, "--nats-context", ctxFile)
	if err != nil || !strings.Contains(out, "flows: no subscriptions on streams flows_* at "+url) ||
		!strings.Contains(out, `msg="flows: settings of the NATS context not supported, ignored" context=`+ctxFile+" settings=inbox_prefix") {
		t.Errorf("status with the context: %v\n%s", err, out)
	}
	// By name, under $XDG_CONFIG_HOME/nats/context.
	cfg := t.TempDir()
	os.MkdirAll(filepath.Join(cfg, "nats", "context"), 0o700)
	os.WriteFile(filepath.Join(cfg, "nats", "context", "ci.json"), []byte(`{"url": "`+url+`", "token": "s3cret"}`), 0o600)
	cmd := exec.Command(bin, "status", "--nats-context", "ci")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("status --nats-context ci: %v\n%s", err, out)
	}
	if out, err := status(t, "--nats", url); err == nil || !strings.Contains(strings.ToLower(out), "authorization violation") {
		t.Errorf("status without the token: %v\n%s", err, out)
	}
}

func streamMaxAge(t *testing.T, url, stream string) time.Duration {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	return st.CachedInfo().Config.MaxAge
}

// Flags that cannot work together, or values out of range, are refused
// before anything starts, naming the flag.
func TestDurableFlagErrors(t *testing.T) {
	file := channelsManifest(t, "http://127.0.0.1:1/")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--durable", t.TempDir(), "--nats", "nats://127.0.0.1:1"}, "-durable and -nats/-nats-context exclude each other"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--storage", "disk"}, `-storage "disk": want file or memory`},
		{[]string{"--nats", "nats://127.0.0.1:1", "--replicas", "9"}, "-replicas 9: want 1 to 5"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--nats-tls-cert", "c.pem"}, "-nats-tls-cert and -nats-tls-key go together"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--concurrency", "0"}, "-concurrency 0: want at least 1"},
		{[]string{"--nats-context", filepath.Join(t.TempDir(), "none.json")}, "none.json: no such file or directory"},
	} {
		var out strings.Builder
		code := run(context.Background(), append([]string{"run", "-f", file}, tt.args...), &out, &out, notify)
		if code == 0 || !strings.Contains(out.String(), tt.want) {
			t.Errorf("%v: exit %d\n%s\nwant %q", tt.args, code, out.String(), tt.want)
		}
	}
	// Nothing listens there: the error names the server.
	var out strings.Builder
	if code := run(context.Background(), []string{"run", "-f", file, "--nats", "nats://127.0.0.1:" + strconv.Itoa(freePort(t))}, &out, &out, notify); code != 1 ||
		!strings.Contains(out.String(), "connecting to NATS at nats://127.0.0.1:") {
		t.Errorf("unreachable server: exit %d\n%s", code, out.String())
	}
}

// Two embedded servers never share a -durable DIR: the second run is
// refused, told where the first one's server is; once the first is killed,
// the DIR is free again.
func TestDurableDirLocked(t *testing.T) {
	s := newSteps(t)
	file, dir := s.manifest(t), filepath.Join(t.TempDir(), "store")
	args := []string{"run", "-f", file, "--listen", "127.0.0.1:0", "--durable", dir, "--nats-port", "0"}
	a := startRunner(t, "A", args...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	want := "flows: -durable: " + dir + " is in use by flows run (pid " + strconv.Itoa(a.cmd.Process.Pid) + "), its NATS server at nats://127.0.0.1:"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("second run on the DIR: %v\n%s\nwant %q", err, out, want)
	}
	a.kill()
	a.start()
}
