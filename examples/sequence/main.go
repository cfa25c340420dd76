// Command sequence reproduces Knative's Sequence demo in process: a ping
// source sends {"message": "hello, world!"} to a Sequence of three appender
// steps, whose reply is an event-display that prints
// "hello, world! - Handled by 0 - Handled by 1 - Handled by 2".
//
// With -http the four services run as real HTTP servers on 127.0.0.1 and
// the steps call them over HTTP, with the same output.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

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
	display, ctx, cancel := demo.DisplayUntil(ctx, out, events)
	defer cancel()
	services := demo.SequenceServices(display)
	var servers demo.Servers
	defer servers.Shutdown(context.Background())
	if err := servers.ServeAll(useHTTP, services); err != nil {
		return err
	}
	seq, err := demo.SeedSequence(services).Start(ctx)
	if err != nil {
		return err
	}
	if listen != "" {
		srv, err := flows.ListenAndServe(listen, flows.NewIngress(seq))
		if err != nil {
			seq.Close()
			return err
		}
		defer srv.Close()
		fmt.Fprintf(os.Stderr, "sequence: ingress listening on %s\n", srv.URL())
	}
	return demo.PingUntilDone(ctx, seq, schedule, `{"message": "hello, world!"}`)
}
