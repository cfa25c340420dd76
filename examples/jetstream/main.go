// Command jetstream runs the seed's Sequence demo on NATS JetStream: a ping
// source sends {"message": "hello, world!"} every second to a Sequence of
// three appender steps whose channels are JetStream streams, and the
// event-display prints "hello, world! - Handled by 0 - Handled by 1 -
// Handled by 2".
//
// By default it starts a NATS server with JetStream inside the process, on a
// free port of 127.0.0.1, storing in a temporary directory that is removed
// on exit. With -nats-url it uses a running server or cluster instead:
//
//	go run ./examples/jetstream -nats-url nats://127.0.0.1:4222
//
// The streams and consumers then outlive the program: an event that an
// interrupted run left in a stream is displayed by the next run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/examples/internal/demo"
	"github.com/eventflows/flows/jetstream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

func main() {
	natsURL := flag.String("nats-url", "", "NATS server to use, e.g. nats://127.0.0.1:4222 (default: start one in process)")
	schedule := flag.String("schedule", "* * * * * *", "cron schedule of the ping source (with a seconds field: every second)")
	events := flag.Int("events", 3, "exit after this many events were displayed (0: run until interrupted)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *natsURL, *schedule, *events); err != nil {
		fmt.Fprintln(os.Stderr, "jetstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, natsURL, schedule string, events int) error {
	js, disconnect, err := connect(natsURL)
	if err != nil {
		return err
	}
	defer disconnect()

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	// The demo's services: three appenders, and an event-display that
	// prints each event it gets (and stops the demo after the last one).
	display := demo.EventDisplay(out, demo.StopAfter(events, stop))
	seq, err := (&flows.Sequence{
		Name: "sequence",
		Steps: []flows.Step{
			{Subscriber: demo.Appender(" - Handled by 0", "")},
			{Subscriber: demo.Appender(" - Handled by 1", "")},
			{Subscriber: demo.Appender(" - Handled by 2", "")},
		},
		Reply: display,
	}).Start(ctx, flows.WithChannels(jetstream.Channels(js))) // as in examples/sequence, on JetStream channels
	if err != nil {
		return err
	}

	// The ping source feeds the sequence until ctx ends (Ctrl-C, or the
	// last event displayed); then the sequence finishes the deliveries it
	// has started. Events still in the streams stay there for the next run
	// against the same server.
	err = (&flows.Ping{
		Name:        "ping-source",
		Schedule:    schedule,
		ContentType: "application/json",
		Data:        `{"message": "hello, world!"}`,
		Sink:        seq,
	}).Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, seq.Shutdown(sctx))
}

// connect connects to the NATS server at natsURL, or to one it starts in
// process if natsURL is empty, and returns its JetStream context and a
// function that disconnects (and stops the server it started).
func connect(natsURL string) (natsjs.JetStream, func(), error) {
	var srv *embedded
	if natsURL == "" {
		var err error
		if srv, err = startServer(); err != nil {
			return nil, nil, err
		}
		natsURL = srv.ClientURL()
	}
	stop := func() {
		if srv != nil {
			srv.stop()
		}
	}
	nc, err := nats.Connect(natsURL, nats.Name("flows jetstream example"), nats.MaxReconnects(-1))
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("connecting to %s: %w", natsURL, err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		nc.Close()
		stop()
		return nil, nil, err
	}
	return js, func() { nc.Close(); stop() }, nil
}

// embedded is a NATS server with JetStream running in this process.
type embedded struct {
	*server.Server
	dir string
}

func startServer() (*embedded, error) {
	dir, err := os.MkdirTemp("", "flows-jetstream-example-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the NATS server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, errors.New("the NATS server did not start within 10s")
	}
	return &embedded{Server: srv, dir: dir}, nil
}

func (e *embedded) stop() {
	e.Shutdown()
	e.WaitForShutdown()
	os.RemoveAll(e.dir)
}
