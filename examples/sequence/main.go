// Command sequence reproduces Knative's Sequence demo in process: a ping
// source sends {"message": "hello, world!"} to a Sequence of three appender
// steps, whose reply is an event-display that prints
// "hello, world! - Handled by 0 - Handled by 1 - Handled by 2".
//
// With -http the four services run as real HTTP servers on 127.0.0.1 and
// the steps call them over HTTP, with the same output. With -listen the
// sequence's ingress also takes CloudEvents POSTed to it, as a Knative
// channel does.
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
)

func main() {
	schedule := flag.String("schedule", "* * * * * *", "cron schedule of the ping source (with a seconds field: every second)")
	events := flag.Int("events", 3, "exit after this many events were displayed (0: run until interrupted)")
	useHTTP := flag.Bool("http", false, "run the services as HTTP servers on 127.0.0.1")
	listen := flag.String("listen", "", "also serve the sequence's ingress on this address, e.g. 127.0.0.1:8080")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *schedule, *events, *useHTTP, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "sequence:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, schedule string, events int, useHTTP bool, listen string) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	// The demo's services: three appenders, and an event-display that
	// prints each event it gets (and stops the demo after the last one).
	first := demo.Appender(" - Handled by 0", "")
	second := demo.Appender(" - Handled by 1", "")
	third := demo.Appender(" - Handled by 2", "")
	display := demo.EventDisplay(out, demo.StopAfter(events, stop))
	if useHTTP { // each becomes an HTTP server on 127.0.0.1, called over HTTP
		var servers demo.Servers
		defer servers.Shutdown(context.Background())
		if err := servers.ServeAll(&first, &second, &third, &display); err != nil {
			return err
		}
	}

	seq, err := (&flows.Sequence{
		Name:  "sequence",
		Steps: []flows.Step{{Subscriber: first}, {Subscriber: second}, {Subscriber: third}},
		Reply: display,
	}).Start(ctx)
	if err != nil {
		return err
	}
	if listen != "" { // events POSTed here enter the sequence too
		srv, err := flows.ListenAndServe(listen, flows.NewIngress(seq))
		if err != nil {
			seq.Close()
			return err
		}
		defer srv.Close()
		fmt.Fprintf(os.Stderr, "sequence: ingress listening on %s\n", srv.URL())
	}

	// The ping source feeds the sequence until ctx ends (Ctrl-C, or the
	// last event displayed); then the sequence drains.
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
