// Command broker reproduces Knative's "Sequence with Broker and Trigger"
// demo in process: a ping source sends {"message": "Hello world!"} to the
// broker "default"; a Trigger on the ping's type feeds a Sequence of three
// appenders, the last of which changes the type to samples.http.mod3; the
// Sequence replies to the broker, where a second Trigger, on the new type,
// feeds an event-display that prints
// "Hello world! - Handled by 0 - Handled by 1 - Handled by 2".
//
// The last appender must change the type: a reply that the first Trigger
// matched again would go round the Sequence until the broker's TTL runs out
// (255 times; in Knative, for ever).
//
// With -http the services run as HTTP servers on 127.0.0.1 and are called
// over HTTP, with the same output. With -listen the broker's ingress also
// takes CloudEvents POSTed to /default/default, as Knative's broker
// ingress does.
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

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/examples/internal/demo"
)

func main() {
	schedule := flag.String("schedule", "* * * * * *", "cron schedule of the ping source (with a seconds field: every second)")
	events := flag.Int("events", 3, "exit after this many events were displayed (0: run until interrupted)")
	useHTTP := flag.Bool("http", false, "run the services as HTTP servers on 127.0.0.1")
	listen := flag.String("listen", "", "also serve the broker's ingress on this address, at /default/default, e.g. 127.0.0.1:8080")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *schedule, *events, *useHTTP, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, schedule string, events int, useHTTP bool, listen string) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	// The demo's services: three appenders (the third sets the new type)
	// and an event-display that stops the demo after the last event.
	first := demo.Appender(" - Handled by 0", "")
	second := demo.Appender(" - Handled by 1", "")
	third := demo.Appender(" - Handled by 2", "samples.http.mod3")
	display := demo.EventDisplay(out, demo.StopAfter(events, stop))
	if useHTTP {
		var servers demo.Servers
		defer servers.Shutdown(context.Background())
		if err := servers.ServeAll(&first, &second, &third, &display); err != nil {
			return err
		}
	}

	// The sequence-trigger calls the sequence, started below: its reply is the broker.
	var seq *flows.Flow
	sequence := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) { return seq.Handle(ctx, e) })
	broker, err := (&flows.Broker{
		Name: "default",
		Triggers: []flows.Trigger{
			{Name: "sequence-trigger", Filter: flows.Attributes(map[string]string{"type": "dev.knative.sources.ping"}), Subscriber: sequence},
			{Name: "display-trigger", Filter: flows.Attributes(map[string]string{"type": "samples.http.mod3"}), Subscriber: display},
		},
	}).Start(ctx)
	if err != nil {
		return err
	}
	seq, err = (&flows.Sequence{
		Name:  "sequence",
		Steps: []flows.Step{{Subscriber: first}, {Subscriber: second}, {Subscriber: third}},
		Reply: broker,
	}).Start(ctx)
	if err != nil {
		broker.Close()
		return err
	}
	if listen != "" { // events POSTed to /default/default enter the broker too
		srv, err := serveIngress(listen, broker)
		if err != nil {
			return errors.Join(err, broker.Close(), seq.Close())
		}
		defer srv.Close()
	}

	// The ping feeds the broker until ctx ends (Ctrl-C, or the last event displayed).
	err = (&flows.Ping{
		Name:        "ping-source",
		Schedule:    schedule,
		ContentType: "application/json",
		Data:        `{"message": "Hello world!"}`,
		Sink:        broker,
	}).Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, broker.Shutdown(sctx), seq.Shutdown(sctx))
}

// serveIngress serves the broker's ingress on addr at /default/default, as
// Knative's broker ingress does.
func serveIngress(addr string, broker *flows.Flow) (*flows.Server, error) {
	ingress := flows.NewBrokerIngress()
	if err := ingress.Add("default", "default", broker); err != nil {
		return nil, err
	}
	srv, err := flows.ListenAndServe(addr, ingress)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "broker: ingress listening on %s%s\n", srv.URL(), flows.BrokerPath("default", "default"))
	return srv, nil
}
