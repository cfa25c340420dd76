package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/nats-io/nats-server/v2/server"
)

// crashEvents is how many events each crash test posts: 1,000 by default,
// FLOWS_CRASH_EVENTS=5000 for the full size.
func crashEvents(t *testing.T) int {
	if s := os.Getenv("FLOWS_CRASH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("FLOWS_CRASH_EVENTS=%q: want a number >= 10", s)
		}
		return n
	}
	if testing.Short() {
		return 200
	}
	return 1000
}

const crashConcurrency = 4

// natsServer starts a NATS server with JetStream on 127.0.0.1, as a
// cluster the commands are pointed at with --nats.
func natsServer(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// steps serves the three steps of the Sequence and its reply, and counts
// what reaches the reply.
type steps struct {
	url     string
	mu      sync.Mutex
	replies map[string]int
	at      map[string]time.Time // when each event first reached the reply
	total   int
	more    chan struct{}
}

func newSteps(t *testing.T) *steps {
	s := &steps{replies: map[string]int{}, at: map[string]time.Time{}, more: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	for _, name := range []string{"first", "second", "third"} {
		mux.Handle("/"+name, flows.NewHTTPHandler(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			out := e.Clone()
			out.SetExtension("via"+name, "yes")
			return &out, nil
		})))
	}
	mux.Handle("/reply", flows.NewHTTPHandler(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		if e.Extensions()["viathird"] == nil || e.Extensions()["viafirst"] == nil {
			return nil, flows.Permanent(fmt.Errorf("event %s skipped a step", e.ID()))
		}
		s.mu.Lock()
		if s.replies[e.ID()]++; s.replies[e.ID()] == 1 {
			s.at[e.ID()] = time.Now()
		}
		s.total++
		s.mu.Unlock()
		select {
		case s.more <- struct{}{}:
		default:
		}
		return nil, nil
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *steps) manifest(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "crash.yaml")
	m := fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: crash}
spec:
  steps:
    - uri: %[1]s/first
    - uri: %[1]s/second
    - uri: %[1]s/third
  reply:
    uri: %[1]s/reply
`, s.url)
	if err := os.WriteFile(file, []byte(m), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// waitAll waits until every accepted event reached the reply; it returns
// the events missing when the time is up.
func (s *steps) waitAll(accepted []string, d time.Duration) []string {
	deadline := time.After(d)
	for {
		s.mu.Lock()
		var missing []string
		for _, id := range accepted {
			if s.replies[id] == 0 {
				missing = append(missing, id)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-s.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return missing
		}
	}
}

// runner is one `flows run` process, restartable with the same arguments.
type runner struct {
	t    *testing.T
	name string
	args []string
	cmd  *exec.Cmd
	url  atomic.Pointer[string] // its ingress, nil while it is down
	logs []*syncBuffer          // the standard error of each of its runs
	done chan error
}

func startRunner(t *testing.T, name string, args ...string) *runner {
	r := &runner{t: t, name: name, args: args}
	r.start()
	t.Cleanup(func() {
		if r.cmd != nil {
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

func (r *runner) start() {
	t := r.t
	t.Helper()
	cmd := exec.Command(bin, r.args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.cmd, r.done = cmd, make(chan error, 1)
	r.logs = append(r.logs, stderr)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 1 && f[0] == "crash" {
				found <- f[1]
			}
		}
		r.done <- cmd.Wait()
	}()
	select {
	case u := <-found:
		r.url.Store(&u)
	case err := <-r.done:
		t.Fatalf("%s exited before serving: %v; stderr:\n%s", r.name, err, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its ingress within 30s; stderr:\n%s", r.name, stderr)
	}
}

// kill stops the process with SIGKILL and waits for it.
func (r *runner) kill() {
	r.url.Store(nil)
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// replies counts the deliveries to the reply that each run of r logged.
func (r *runner) replies(replyURL string) []int {
	var n []int
	for _, l := range r.logs {
		n = append(n, strings.Count(l.String(), "msg=delivery to="+replyURL+" "))
	}
	return n
}

// post posts n events, spread over the runners' ingresses, and calls
// crash once half of them were accepted. It returns the ids accepted (202).
func post(t *testing.T, n int, runners []*runner, crash func()) []string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var mu sync.Mutex
	var accepted []string
	var next atomic.Int64
	var crashOnce sync.Once
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id := fmt.Sprintf("e-%05d", i)
				for try := 0; time.Now().Before(deadline); try++ {
					u := runners[(i+try)%len(runners)].url.Load()
					if u == nil {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					code, err := postOnce(client, *u, id)
					if code == http.StatusAccepted {
						mu.Lock()
						accepted = append(accepted, id)
						half := len(accepted) == n/2
						mu.Unlock()
						if half {
							crashOnce.Do(crash)
						}
						break
					}
					if err == nil && code != http.StatusServiceUnavailable && code != http.StatusInternalServerError {
						t.Errorf("POST %s: %d", *u, code)
						return
					}
					time.Sleep(10 * time.Millisecond) // refused while a runner is down: try again, elsewhere
				}
			}
		})
	}
	wg.Wait()
	return accepted
}

func postOnce(c *http.Client, url, id string) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"id":"`+id+`"}`))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "/crash-test")
	req.Header.Set("Ce-Type", "test.crash")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// check asserts that every accepted event reached the reply, and reports
// the duplicates, which must stay below bound.
func check(t *testing.T, s *steps, n int, accepted []string, bound int, start time.Time) {
	t.Helper()
	if len(accepted) < n/2 {
		t.Fatalf("only %d of %d events accepted", len(accepted), n)
	}
	if missing := s.waitAll(accepted, 2*time.Minute); len(missing) > 0 {
		t.Fatalf("%d of %d accepted events never reached the reply, such as %q", len(missing), len(accepted), missing[:min(5, len(missing))])
	}
	took := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	dups := s.total - len(s.replies)
	t.Logf("%d events posted, %d accepted (202), %d replies, %d duplicates (bound %d), in %v", n, len(accepted), s.total, dups, bound, took.Round(time.Millisecond))
	if dups > bound {
		t.Errorf("%d duplicates; want at most %d", dups, bound)
	}
	if extra := len(s.replies) - len(accepted); extra > 0 {
		t.Logf("%d events reached the reply although their POST got no 202 (cut by the crash)", extra)
	}
}

// Two `flows run --nats` processes share a Sequence; one is killed with
// SIGKILL mid-stream and started again: every accepted event reaches the
// reply, at least once.
func TestCrashTwoRunnersOnNATS(t *testing.T) {
	n := crashEvents(t)
	url := natsServer(t)
	s := newSteps(t)
	args := []string{"run", "-f", s.manifest(t), "--listen", "127.0.0.1:0", "--nats", url, "--ack-wait", "1s",
		"--concurrency", strconv.Itoa(crashConcurrency)}
	a, b := startRunner(t, "A", args...), startRunner(t, "B", args...)
	start := time.Now()
	accepted := post(t, n, []*runner{a, b}, func() {
		a.kill()
		a.start()
	})
	// Each process holds at most crashConcurrency events per subscription
	// (3 of them) when it is killed, each delivered again once.
	check(t, s, n, accepted, 3*crashConcurrency*2, start)
	ra, rb := a.replies(s.url+"/reply"), b.replies(s.url+"/reply")
	t.Logf("split of the replies: A %d before the kill + %d after its restart, B %d", ra[0], ra[1], rb[0])
	if rb[0] == 0 || ra[0]+ra[1] == 0 {
		t.Errorf("the work was not shared: A %v, B %v", ra, rb)
	}
}

// `flows run --durable DIR` killed with SIGKILL mid-stream and started
// again on DIR goes on with every event it accepted.
func TestCrashDurableRestart(t *testing.T) {
	n := crashEvents(t)
	s := newSteps(t)
	dir := filepath.Join(t.TempDir(), "store")
	a := startRunner(t, "A", "run", "-f", s.manifest(t), "--listen", "127.0.0.1:0", "--durable", dir, "--nats-port", "0",
		"--ack-wait", "1s", "--concurrency", strconv.Itoa(crashConcurrency))
	start := time.Now()
	accepted := post(t, n, []*runner{a}, func() {
		a.kill()
		a.start()
	})
	check(t, s, n, accepted, 3*crashConcurrency*2, start)
	if !strings.Contains(a.logs[0].String(), `msg="flows: embedded NATS server with JetStream" url=nats://127.0.0.1:`) {
		t.Errorf("the embedded server's URL is not logged:\n%s", a.logs[0])
	}
	r := a.replies(s.url + "/reply")
	t.Logf("replies: %d before the kill, %d after the restart", r[0], r[1])
}

// The process that holds the embedded server is killed mid-stream, while
// another runs on that server with --nats, and started again on the same
// DIR and port: every accepted event reaches the reply.
func TestCrashEmbeddedServerRestart(t *testing.T) {
	n := crashEvents(t)
	s := newSteps(t)
	dir := filepath.Join(t.TempDir(), "store")
	port := strconv.Itoa(freePort(t))
	common := []string{"run", "-f", s.manifest(t), "--listen", "127.0.0.1:0", "--ack-wait", "1s", "--concurrency", strconv.Itoa(crashConcurrency)}
	a := startRunner(t, "A", append(common, "--durable", dir, "--nats-port", port)...)
	b := startRunner(t, "B", append(common, "--nats", "nats://127.0.0.1:"+port)...)
	start := time.Now()
	accepted := post(t, n, []*runner{a, b}, func() {
		a.kill()
		a.start()
	})
	// B's acknowledgements lost while the server was down count too.
	check(t, s, n, accepted, 3*crashConcurrency*2*2, start)
	ra, rb := a.replies(s.url+"/reply"), b.replies(s.url+"/reply")
	t.Logf("split of the replies: A %d before the kill + %d after its restart, B %d", ra[0], ra[1], rb[0])
	if !strings.Contains(b.logs[0].String(), "flows: reconnected to NATS") {
		t.Errorf("B did not log its reconnection:\n%s", b.logs[0])
	}
}
