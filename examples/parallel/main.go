// Command parallel reproduces Knative's Parallel demo in process: a ping
// source sends {"message": "Even or odd?"} to a Parallel with two branches.
// The even branch's filter passes events sent in an even period and its
// transformer answers "this is even!"; the odd branch does the same for odd
// periods. Both reply to an event-display. The demo uses periods of a
// second instead of Knative's minute, so both answers show within seconds.
//
// With -http the services run as real HTTP servers on 127.0.0.1 and the
// flow calls them over HTTP, with the same output.
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
	period := flag.Duration("period", time.Second, "length of the even and odd periods the filters test the event time against")
	events := flag.Int("events", 4, "exit after this many events were displayed (0: run until interrupted)")
	useHTTP := flag.Bool("http", false, "run the services as HTTP servers on 127.0.0.1")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *schedule, *period, *events, *useHTTP); err != nil {
		fmt.Fprintln(os.Stderr, "parallel:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, schedule string, period time.Duration, events int, useHTTP bool) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	// The demo's services: a filter and a transformer per branch, and an
	// event-display that prints each event it gets (and stops the demo
	// after the last one).
	evenFilter, evenTransformer := demo.Filter(0, period), demo.Transformer("this is even!")
	oddFilter, oddTransformer := demo.Filter(1, period), demo.Transformer("this is odd!")
	display := demo.EventDisplay(out, demo.StopAfter(events, stop))
	if useHTTP { // each becomes an HTTP server on 127.0.0.1, called over HTTP
		var servers demo.Servers
		defer servers.Shutdown(context.Background())
		if err := servers.ServeAll(&evenFilter, &evenTransformer, &oddFilter, &oddTransformer, &display); err != nil {
			return err
		}
	}

	par, err := (&flows.Parallel{
		Name: "odd-even-parallel",
		Branches: []flows.Branch{
			{Filter: evenFilter, Subscriber: evenTransformer},
			{Filter: oddFilter, Subscriber: oddTransformer},
		},
		Reply: display,
	}).Start(ctx)
	if err != nil {
		return err
	}

	// The ping source feeds the parallel until ctx ends (Ctrl-C, or the
	// last event displayed); then the parallel drains.
	err = (&flows.Ping{
		Name:        "ping-source",
		Schedule:    schedule,
		ContentType: "application/json",
		Data:        `{"message": "Even or odd?"}`,
		Sink:        par,
	}).Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, par.Shutdown(sctx))
}
