// Command flows runs Knative Eventing manifests (Sequence, Parallel,
// PingSource, InMemoryChannel, Subscription, Broker, Trigger,
// RequestReply) in one process, without a cluster, draws them, and checks
// them.
//
//	flows run -f sequence.yaml -f pingsource.yaml \
//	    --bind Service/first=http://127.0.0.1:8081 ... --listen 127.0.0.1:8080
//	flows graph -f parallel.yaml [--format mermaid|dot]  # dot needs Graphviz to render
//	flows validate -f sequence.yaml --bind Service/first=http://127.0.0.1:8081 [--listen 127.0.0.1:8080]
//	flows send --to http://127.0.0.1:8080/default/sequence-kn-sequence-0 --from flows-undelivered-….jsonl
//	flows run -f sequence.yaml ... --durable ./data        # on an embedded NATS JetStream server
//	flows run -f sequence.yaml ... --nats nats://host:4222  # on an existing one, shared by several runs
//	flows status --nats nats://127.0.0.1:4222               # the backlog of each subscription
//	flows version
//
// The Knative Services the manifests refer to are bound with --bind to
// URLs that follow Knative's subscriber contract (a CloudEvent in, an
// optional CloudEvent out), or to "display" (print events to the standard
// output, as Knative's event_display does) or "discard".
//
// run serves each flow's ingress on --listen at /<namespace>/<channel>
// (the flow's first channel, as Knative names it) and each Broker's at
// /<namespace>/<broker>, as Knative's broker ingress does (and each
// RequestReply's at /<namespace>/<name>, answering with the reply), prints the flows with
// their URLs as `kubectl get` does, and logs every delivery to the
// standard error. Ctrl-C drains the flows and exits; a second Ctrl-C stops
// them at once. Events accepted and not delivered when the drain is cut
// short are written to a file (--undelivered), which send posts again.
//
// With --durable DIR or --nats URL, the channels are NATS JetStream
// streams instead (the flows with an InMemoryChannel template stay in
// memory unless --all-durable): events survive crashes, several processes
// with the same manifests share the work, and a drain cut short leaves the
// undelivered events in the streams for the next run.
//
// Install it with: go install github.com/eventflows/flows/cmd/flows@latest (from a
// checkout of the repository: go install ./cmd/flows)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

const usage = `Usage: flows <command> [flags]

Run Knative Eventing manifests in one process, draw them, check them.

Commands:
  run        run the manifests: serve their flows over HTTP, start their sources
  graph      print the flows as a Mermaid flowchart or a Graphviz DOT graph
             (rendering DOT needs Graphviz's dot command, installed separately)
  validate   check the manifests and bindings; exit 1 with every problem
  status     print the backlog of each subscription of flows on NATS JetStream
  send       post CloudEvents (from a file of undelivered events, or from flags) to a URL
  version    print the version of flows and of Go it was built with

Run "flows <command> -h" for the flags of a command.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, notify))
}

// notify delivers interrupts, as signal.Notify does; tests replace it.
func notify(c chan<- os.Signal) func() {
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	return func() { signal.Stop(c) }
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, notify func(chan<- os.Signal) func()) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr, notify)
	case "graph":
		return cmdGraph(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "send":
		return cmdSend(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return cmdVersion(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "flows: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// common holds the flags every command takes.
type common struct {
	fs    *flag.FlagSet
	files stringList
	binds bindings
}

func newCommon(name, synopsis string, stdout, stderr io.Writer) *common {
	c := &common{fs: flag.NewFlagSet("flows "+name, flag.ContinueOnError)}
	c.binds.out = stdout
	c.fs.SetOutput(stderr)
	c.fs.Var(&c.files, "f", "a manifest `file`, a directory of them, or - for the standard input (repeatable)")
	c.fs.Var(&c.binds, "bind", "bind a referenced object: `Kind/name=URL`, or =display to print its events, or =discard (repeatable)")
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flows %s -f FILE [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		c.fs.PrintDefaults()
	}
	return c
}

// parse parses args; it returns a exit code >= 0 when the command must stop.
func (c *common) parse(args []string) int {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.fs.Output(), "flows: unexpected argument %q (manifests are given with -f)\n", c.fs.Arg(0))
		return 2
	}
	if len(c.files) == 0 {
		fmt.Fprintln(c.fs.Output(), "flows: no manifests: give at least one -f FILE")
		return 2
	}
	return -1
}

// load reads the manifests and resolves them; it prints the problems.
func (c *common) load(opts ...manifest.Option) (*manifest.App, error) {
	// Build reports the problems of reading the files too, with the others.
	set, _ := manifest.ReadFiles(c.files...)
	return manifest.Build(set, &c.binds.reg, opts...)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, notify func(chan<- os.Signal) func()) int {
	c := newCommon("run", "Run the manifests: start their flows and sources, serve the flows' ingress on -listen,\n"+
		"print them as `kubectl get` does, and log deliveries. Ctrl-C drains and exits.", stdout, stderr)
	listen := c.fs.String("listen", "", "serve the flows' ingress on this `address`, such as 127.0.0.1:8080; a uri naming one of the flows' URLs there is that flow")
	schedule := c.fs.String("schedule", "", "replace the schedule of every PingSource, e.g. \"* * * * * *\" for every second")
	sync := c.fs.Bool("sync", false, "answer ingress requests once the flow is done with the event (Knative's default since v1.13)")
	drain := c.fs.Duration("drain", 30*time.Second, "how long to wait for the flows to drain on Ctrl-C")
	undelivered := c.fs.String("undelivered", "", "write the events accepted but not delivered when the drain is cut short to this `file`\n"+
		"(JSON lines, one structured CloudEvent each, appended); by default a new flows-undelivered-<UTC time>.jsonl\n"+
		"in the working directory. Send them again with flows send")
	level := c.fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	concurrency := c.fs.Int("concurrency", 1, "how many events each subscription delivers at once (`n`); above 1, events may be delivered out of order, unless a Trigger or Subscription orders them by key (README: Flow control)")
	var nf natsFlags
	nf.addRunFlags(c.fs)
	if code := c.parse(args); code >= 0 {
		return code
	}
	if err := nf.check(); err != nil {
		fmt.Fprintln(stderr, "flows:", err)
		return 2
	}
	if *concurrency < 1 {
		fmt.Fprintf(stderr, "flows: -concurrency %d: want at least 1\n", *concurrency)
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "flows: -log-level: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	durable := &durableChannels{n: &nf}
	opts := []manifest.Option{manifest.WithDeliveryLog(logger), manifest.WithServeAddress(*listen), manifest.WithFlowChannels(durable.choose)}
	if *schedule != "" {
		opts = append(opts, manifest.WithSchedule(*schedule))
	}
	app, err := c.load(opts...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	sigs := make(chan os.Signal, 2)
	defer notify(sigs)()

	var conn *natsConn
	if nf.enabled() {
		if conn, err = nf.connect(logger); err != nil {
			fmt.Fprintln(stderr, "flows:", err)
			return 1
		}
		defer conn.close()
		durable.js = conn.js
	}
	if err := app.Start(ctx, flows.WithConcurrency(*concurrency)); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var srv *flows.Server
	if *listen != "" {
		var iopts []flows.IngressOption
		if *sync {
			iopts = append(iopts, flows.IngressSynchronous())
		}
		srv, err = app.Serve(*listen, iopts...)
		if err != nil {
			fmt.Fprintln(stderr, err)
			app.Close()
			return 1
		}
	}
	st := app.Status()
	c.binds.printMu.Lock()
	manifest.WriteStatus(stdout, st, time.Now())
	c.binds.printMu.Unlock()
	logger.Info("flows: running; Ctrl-C to drain and exit")

	select {
	case <-sigs:
	case <-ctx.Done():
	}
	logger.Info("flows: draining", "timeout", *drain)
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			logger.Warn("flows: second interrupt: stopping at once")
			cancel()
		case <-dctx.Done():
		}
	}()
	code := 0
	if srv != nil {
		if err := srv.Shutdown(dctx); err != nil {
			logger.Error("flows: stopping the server", "error", err)
			code = 1
		}
	}
	if err := app.Shutdown(dctx); err != nil {
		if conn != nil && len(manifest.Undelivered(err)) == 0 {
			// Only flows on JetStream were cut short: what they had not
			// delivered is in the streams.
			logger.Warn("flows: stopped before the flows drained", "error", err)
		} else {
			logger.Error("flows: stopped with events not delivered", "error", err)
			saveUndelivered(err, *undelivered, time.Now(), logger, stderr)
			code = 1
		}
	} else {
		logger.Info("flows: drained")
	}
	if conn != nil {
		conn.reportLeft(nf.prefix, logger)
	}
	return code
}

func cmdGraph(args []string, stdout, stderr io.Writer) int {
	c := newCommon("graph", "Print the flows as Knative wires them (sources, channels, subscriptions, subscribers,\n"+
		"replies, dead-letter sinks). Services need no binding to be drawn.", stdout, stderr)
	format := c.fs.String("format", "mermaid", "output `format`: mermaid, or dot, which needs Graphviz to render")
	if code := c.parse(args); code >= 0 {
		return code
	}
	if *format != "mermaid" && *format != "dot" {
		fmt.Fprintf(stderr, "flows: -format %q: want mermaid or dot\n", *format)
		return 2
	}
	set, _ := manifest.ReadFiles(c.files...)
	g, err := manifest.NewGraph(set, &c.binds.reg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *format == "dot" {
		fmt.Fprint(stdout, g.DOT())
	} else {
		fmt.Fprint(stdout, g.Mermaid())
	}
	return 0
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	c := newCommon("validate", "Check the manifests (strictly: unknown kinds and fields are errors) and that every\n"+
		"reference is declared or bound. Prints every problem and exits 1 if there is one.", stdout, stderr)
	listen := c.fs.String("listen", "", "the `address` run will serve the flows on: a uri naming one of their URLs there is that flow, and a cycle is refused")
	if code := c.parse(args); code >= 0 {
		return code
	}
	// A NatsJetStreamChannel is valid here; run says what it needs.
	anyChannels := manifest.WithFlowChannels(func(manifest.FlowChannels) ([]flows.Option, error) { return nil, nil })
	app, err := c.load(manifest.WithServeAddress(*listen), anyChannels)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d objects\n", len(app.Status()))
	return 0
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// bindings parses -bind flags into a registry; "display" and "discard" are
// built-in handlers.
type bindings struct {
	reg     manifest.Registry
	out     io.Writer
	printMu sync.Mutex
}

func (b *bindings) String() string { return b.reg.String() }

func (b *bindings) Set(s string) error {
	ref, target, _ := strings.Cut(s, "=")
	switch target {
	case "display", "discard":
		kind, name, err := manifest.ParseRef(ref)
		if err != nil {
			return err
		}
		h := flows.Discard
		if target == "display" {
			h = b.display()
		}
		b.reg.Bind(kind, name, h)
		return nil
	}
	return b.reg.Set(s)
}

// display prints events as Knative's event_display does.
func (b *bindings) display() flows.Handler {
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		b.printMu.Lock()
		defer b.printMu.Unlock()
		fmt.Fprintf(b.out, "☁️  cloudevents.Event\n%s", e.String())
		return nil, nil
	})
}
