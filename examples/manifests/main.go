// Command manifests runs the seed demo's own Knative YAML, kept verbatim in
// sequence/ and parallel/, in process: the Knative Services it refers to
// are bound to Go handlers (the appenders, filters, transformers and
// event-display of the other demos), and the output is theirs:
//
//	hello, world! - Handled by 0 - Handled by 1 - Handled by 2
//	this is even! / this is odd!
//
// The seed's Sequence has no reply: its result shows in the logs of the
// "third" service, so "third" here prints what it answers, as
// event-display does. The seed's PingSources fire every minute; -schedule
// replaces their schedule (every second by default) so that the demo
// finishes in seconds, and the filters test the event time against periods
// of -period (a second by default; the seed's filters use minutes).
package main

import (
	"context"
	"embed"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/examples/internal/demo"
	"github.com/eventflows/flows/manifest"
)

//go:embed sequence/*.yaml parallel/*.yaml
var manifests embed.FS

type config struct {
	demo     string        // "sequence", "parallel" or "both"
	schedule string        // replaces the PingSources' schedule; empty keeps it
	period   time.Duration // the filters' even and odd periods
	events   int           // events to show per demo; 0: 3 for the sequence, 4 for the parallel
	graph    string        // "mermaid" or "dot": print the graph instead of running
}

func main() {
	var c config
	flag.StringVar(&c.demo, "demo", "both", "which demo to run: sequence, parallel or both")
	flag.StringVar(&c.schedule, "schedule", "* * * * * *", `replace the PingSources' schedule ("" keeps the manifests' "* * * * *")`)
	flag.DurationVar(&c.period, "period", time.Second, "length of the even and odd periods the Parallel's filters test")
	flag.IntVar(&c.events, "events", 0, "exit after this many events per demo (default 3 for the sequence, 4 for the parallel)")
	flag.StringVar(&c.graph, "graph", "", "print the demos' graphs as mermaid or dot (render dot with Graphviz, installed separately) instead of running them")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, c); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, c config) error {
	demos := map[string][]string{"sequence": {"sequence"}, "parallel": {"parallel"}, "both": {"sequence", "parallel"}}[c.demo]
	if demos == nil {
		return fmt.Errorf("-demo %q: want sequence, parallel or both", c.demo)
	}
	for _, name := range demos {
		if err := runDemo(ctx, out, name, c); err != nil {
			return err
		}
	}
	return nil
}

func runDemo(ctx context.Context, out io.Writer, name string, c config) error {
	// The flows are defined by the seed's YAML, embedded from name/.
	set, err := manifest.ReadFS(manifests, name)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	events := c.events
	if events <= 0 {
		events = map[string]int{"sequence": 3, "parallel": 4}[name]
	}
	// event-display prints each event it gets (and stops the demo after
	// the last one).
	display := demo.EventDisplay(out, demo.StopAfter(events, stop))

	// The Knative Services the YAML refers to, bound to Go handlers by
	// kind and name.
	var reg manifest.Registry
	switch name {
	case "sequence": // the appenders' suffixes are the Services' MESSAGE settings
		reg.Bind("Service", "first", demo.Appender(" - Handled by 0", ""))
		reg.Bind("Service", "second", demo.Appender(" - Handled by 1", ""))
		reg.Bind("Service", "third", logReply(demo.Appender(" - Handled by 2", ""), display))
	case "parallel":
		reg.Bind("Service", "even-filter", demo.Filter(0, c.period))
		reg.Bind("Service", "odd-filter", demo.Filter(1, c.period))
		reg.Bind("Service", "even-transformer", demo.Transformer("this is even!"))
		reg.Bind("Service", "odd-transformer", demo.Transformer("this is odd!"))
		reg.Bind("Service", "event-display", display)
	}

	var opts []manifest.Option
	if c.schedule != "" {
		opts = append(opts, manifest.WithSchedule(c.schedule))
	}
	app, err := manifest.Build(set, &reg, opts...)
	if err != nil {
		return err
	}
	if c.graph != "" {
		return printGraph(out, app, c.graph)
	}

	// Start runs the flows, then the PingSources that feed them, until ctx
	// ends (Ctrl-C, or the last event displayed); then the sources stop
	// and the flows drain.
	if err := app.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return app.Shutdown(sctx)
}

// logReply calls h and shows its reply on display, as the seed's last
// appender shows its result in its log.
func logReply(h, display flows.Handler) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := h.Handle(ctx, e)
		if reply != nil {
			display.Handle(ctx, reply.Clone())
		}
		return reply, err
	})
}

// printGraph prints the app's graph in format, "mermaid" or "dot".
func printGraph(out io.Writer, app *manifest.App, format string) error {
	switch format {
	case "mermaid":
		fmt.Fprint(out, app.Graph().Mermaid())
	case "dot":
		fmt.Fprint(out, app.Graph().DOT())
	default:
		return fmt.Errorf("-graph %q: want mermaid or dot", format)
	}
	return nil
}
