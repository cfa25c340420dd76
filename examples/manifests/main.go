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
	flag.StringVar(&c.graph, "graph", "", "print the demos' graphs as mermaid or dot instead of running them")
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
	set, err := manifest.ReadFS(manifests, name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := c.events
	if events <= 0 {
		events = map[string]int{"sequence": 3, "parallel": 4}[name]
	}
	shown := 0
	display := demo.EventDisplay(out, func(event.Event) {
		// EventDisplay serializes its calls, so the count needs no lock.
		if shown++; shown == events {
			cancel()
		}
	})

	var reg manifest.Registry
	switch name {
	case "sequence":
		// The appenders' suffixes come from the Services' MESSAGE setting.
		for _, d := range set.Documents {
			if svc, ok := d.Object.(*manifest.Service); ok {
				h := demo.Appender(env(svc, "MESSAGE"), "")
				if d.Name() == "third" {
					h = logReply(h, display)
				}
				reg.Bind("Service", d.Name(), h)
			}
		}
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
	switch c.graph {
	case "":
	case "mermaid":
		fmt.Fprint(out, app.Graph().Mermaid())
		return nil
	case "dot":
		fmt.Fprint(out, app.Graph().DOT())
		return nil
	default:
		return fmt.Errorf("-graph %q: want mermaid or dot", c.graph)
	}
	if err := app.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
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

// env returns the value of an environment variable of a Knative Service's
// first container: spec.template.spec.containers[0].env.
func env(svc *manifest.Service, name string) string {
	template, _ := svc.Spec["template"].(map[string]any)
	spec, _ := template["spec"].(map[string]any)
	containers, _ := spec["containers"].([]any)
	if len(containers) == 0 {
		return ""
	}
	c, _ := containers[0].(map[string]any)
	vars, _ := c["env"].([]any)
	for _, v := range vars {
		if kv, _ := v.(map[string]any); kv["name"] == name {
			s, _ := kv["value"].(string)
			return s
		}
	}
	return ""
}
