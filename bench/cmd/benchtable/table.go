package main

import (
	"fmt"
	"math"
	"strings"
)

type header struct {
	Date, Machine, Command string
}

// A target compares a metric of ours with the same metric of a reference
// benchmark, measured in the same run.
type target struct {
	what      string
	ours, ref string
	unit      string
	kind      kind
	goal      float64
}

type kind int

const (
	atLeast    kind = iota // ours/ref >= goal (higher is better)
	atMost                 // ours/ref <= goal (lower is better)
	plusAtMost             // ours - ref <= goal
	belowAbs               // ours < goal, no reference
	reused                 // ours <= goal: new connections per event
)

// The targets of the performance issue.
var targets = []target{
	{"3-step Sequence vs Go-channel pipeline, events/s", "BenchmarkSequence3Steps", "BenchmarkLimitGoChannels", "events/s", atLeast, 0.85},
	{"3-step Sequence vs Watermill, events/s", "BenchmarkSequence3Steps", "BenchmarkPeerWatermill", "events/s", atLeast, 8},
	{"3-step Sequence allocs/event over direct calls", "BenchmarkSequence3Steps", "BenchmarkLimitDirectCalls", "allocs/op", plusAtMost, 6},
	{"2-branch Parallel vs branches called in turn, events/s", "BenchmarkParallel/branches=2", "BenchmarkLimitBranchesSequentially/branches=2", "events/s", atLeast, 0.8},
	{"10-branch Parallel vs branches called in turn, events/s", "BenchmarkParallel/branches=10", "BenchmarkLimitBranchesSequentially/branches=10", "events/s", atLeast, 0.8},
	{"2-branch Parallel, Handle from 16 callers, vs 16 callers calling the branches in turn, events/s", "BenchmarkParallelHandle/branches=2", "BenchmarkLimitBranchesSequentiallyHandle/branches=2", "events/s", atLeast, 0.8},
	{"10-branch Parallel, Handle from 16 callers, vs 16 callers calling the branches in turn, events/s", "BenchmarkParallelHandle/branches=10", "BenchmarkLimitBranchesSequentiallyHandle/branches=10", "events/s", atLeast, 0.8},
	{"one HTTP hop vs raw net/http, 1 client", "BenchmarkHTTPHop/clients=1", "BenchmarkLimitHTTPHop/clients=1", "events/s", atLeast, 0.95},
	{"one HTTP hop vs raw net/http, 32 clients", "BenchmarkHTTPHop/clients=32", "BenchmarkLimitHTTPHop/clients=32", "events/s", atLeast, 0.95},
	{"3-step HTTP Sequence vs raw chain, 1 client", "BenchmarkHTTPSequence3Steps/clients=1", "BenchmarkLimitHTTPChain3/clients=1", "events/s", atLeast, 0.9},
	{"3-step HTTP Sequence vs raw chain, 32 clients", "BenchmarkHTTPSequence3Steps/clients=32", "BenchmarkLimitHTTPChain3/clients=32", "events/s", atLeast, 0.9},
	{"serving with NewHTTPHandler vs a raw server doing the same work, 1 client", "BenchmarkHTTPServe/clients=1", "BenchmarkLimitHTTPServe/clients=1", "events/s", atLeast, 0.95},
	{"serving with NewHTTPHandler vs a raw server doing the same work, 32 clients", "BenchmarkHTTPServe/clients=32", "BenchmarkLimitHTTPServe/clients=32", "events/s", atLeast, 0.95},
	{"a synchronous Ingress before a one-step Sequence vs a raw server doing the same work, 1 client", "BenchmarkIngressServe/clients=1", "BenchmarkLimitIngressServe/clients=1", "events/s", atLeast, 0.95},
	{"a synchronous Ingress before a one-step Sequence vs a raw server doing the same work, 32 clients", "BenchmarkIngressServe/clients=32", "BenchmarkLimitIngressServe/clients=32", "events/s", atLeast, 0.95},
	{"new connections per event, HTTP hop, 1 client", "BenchmarkHTTPHop/clients=1", "BenchmarkLimitHTTPHop/clients=1", "conns/event", reused, 0},
	{"new connections per event, HTTP hop, 32 clients", "BenchmarkHTTPHop/clients=32", "BenchmarkLimitHTTPHop/clients=32", "conns/event", reused, 0.01},
	{"new connections per event, HTTP Sequence, 1 client", "BenchmarkHTTPSequence3Steps/clients=1", "BenchmarkLimitHTTPChain3/clients=1", "conns/event", reused, 0},
	{"new connections per event, HTTP Sequence, 32 clients", "BenchmarkHTTPSequence3Steps/clients=32", "BenchmarkLimitHTTPChain3/clients=32", "conns/event", reused, 0.01},
	{"p99 latency, one event in flight, vs Go channels", "BenchmarkSequence3Steps", "BenchmarkLimitGoChannels", "p99-ns", atMost, 2},
	{"3-step Sequence on JetStream vs raw nats.go, events/s", "BenchmarkJetStreamSequence3Steps/default", "BenchmarkLimitJetStream", "events/s", atLeast, 0.8},
	{"broker, 10 Triggers of which 1 matches, vs a hand-written loop over the same filters, events/s", "BenchmarkBroker/triggers=10", "BenchmarkLimitBrokerLoop/triggers=10", "events/s", atLeast, 0.8},
	{"10,000 idle 3-step Sequences: heap and goroutine stacks, MiB", "BenchmarkIdleSequences", "", "mem-MiB", belowAbs, 64},
	{"10,000 idle 3-step Sequences: CPU while idle, % of a core", "BenchmarkIdleSequences", "", "idle-cpu-%", belowAbs, 0.1},
}

// Other comparisons worth reading, without a target.
var comparisons = []target{
	{"2-branch Parallel, Handle from 16 callers, vs one caller calling the branches in turn, events/s", "BenchmarkParallelHandle/branches=2", "BenchmarkLimitBranchesSequentially/branches=2", "events/s", atLeast, 0},
	{"10-branch Parallel, Handle from 16 callers, vs one caller calling the branches in turn, events/s", "BenchmarkParallelHandle/branches=10", "BenchmarkLimitBranchesSequentially/branches=10", "events/s", atLeast, 0},
	{"3-step Sequence vs direct calls, events/s", "BenchmarkSequence3Steps", "BenchmarkLimitDirectCalls", "events/s", atLeast, 0},
	{"p50 latency vs Go channels", "BenchmarkSequence3Steps", "BenchmarkLimitGoChannels", "p50-ns", atMost, 0},
	{"HTTP hop p99 vs raw, 1 client", "BenchmarkHTTPHop/clients=1", "BenchmarkLimitHTTPHop/clients=1", "p99-ns", atMost, 0},
	{"serving with NewHTTPHandler vs the raw appender, which copies the Ce- headers without decoding the event, 1 client", "BenchmarkHTTPServe/clients=1", "BenchmarkLimitHTTPHop/clients=1", "events/s", atLeast, 0},
	{"serving with NewHTTPHandler vs the raw appender, 32 clients", "BenchmarkHTTPServe/clients=32", "BenchmarkLimitHTTPHop/clients=32", "events/s", atLeast, 0},
	{"the HTTP hop's HTTPTarget called without a flow vs raw net/http, 1 client", "BenchmarkHTTPTarget/clients=1", "BenchmarkLimitHTTPHop/clients=1", "events/s", atLeast, 0},
	{"the HTTP hop's HTTPTarget called without a flow vs raw net/http, 32 clients", "BenchmarkHTTPTarget/clients=32", "BenchmarkLimitHTTPHop/clients=32", "events/s", atLeast, 0},
	{"JetStream Sequence with prefetch 16, concurrency 4, vs raw nats.go", "BenchmarkJetStreamSequence3Steps/prefetch=16,concurrency=4", "BenchmarkLimitJetStream", "events/s", atLeast, 0},
	{"broker, 10 Triggers, vs a one-step Sequence of the same subscriber, events/s", "BenchmarkBroker/triggers=10", "BenchmarkBrokerRefSequence1Step", "events/s", atLeast, 0},
	{"broker, 1,000 Triggers, vs 10, events/s", "BenchmarkBroker/triggers=1000", "BenchmarkBroker/triggers=10", "events/s", atLeast, 0},
	{"HTTP hop vs the SDK's Request, 1 client", "BenchmarkHTTPHop/clients=1", "BenchmarkLimitSDKRequest/clients=1", "events/s", atLeast, 0},
	{"HTTP hop vs the SDK's Request, 32 clients", "BenchmarkHTTPHop/clients=32", "BenchmarkLimitSDKRequest/clients=32", "events/s", atLeast, 0},
}

func render(b *strings.Builder, res *results, h header) {
	runs := 0
	for _, name := range res.order {
		runs = max(runs, res.count(name))
	}
	fmt.Fprintf(b, "Measured on %s: %s.\n", h.Date, h.Machine)
	fmt.Fprintf(b, "Command: `%s`; medians of %d runs. ", h.Command, runs)
	b.WriteString("\"CPU ratio\" compares CPU time per event (process user+system time), which other processes on a shared machine disturb less than elapsed time.\n\n")

	b.WriteString("#### Targets\n\n")
	b.WriteString("| target | ours | reference | ratio | CPU ratio | goal | met |\n|---|---:|---:|---:|---:|---|---|\n")
	for _, t := range targets {
		row(b, res, t, true)
	}
	b.WriteString("\n#### Other comparisons\n\n")
	b.WriteString("| comparison | ours | reference | ratio | CPU ratio |\n|---|---:|---:|---:|---:|\n")
	for _, t := range comparisons {
		row(b, res, t, false)
	}

	b.WriteString("\n#### Scale: cost per event as flows grow\n\n")
	b.WriteString("| flow | size | ns/event | ns per step or branch | cpu-ns/event | allocs/event |\n|---|---:|---:|---:|---:|---:|\n")
	for _, name := range res.order {
		kind, size, ok := strings.Cut(strings.TrimPrefix(name, "BenchmarkScale"), "/")
		if !ok || !strings.HasPrefix(name, "BenchmarkScale") {
			continue
		}
		per := "ns/step"
		if kind == "Parallel" {
			per = "ns/branch"
		}
		_, n, _ := strings.Cut(size, "=")
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", kind, n,
			cell(res, name, "ns/op"), cell(res, name, per), cell(res, name, "cpu-ns/event"), cell(res, name, "allocs/op"))
	}

	renderBroker(b, res)

	b.WriteString("\n#### Every benchmark (medians)\n\n")
	b.WriteString("| benchmark | events/s | cpu-ns/event | allocs/event | B/event | p50 ns | p99 ns | conns/event |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range res.order {
		if strings.HasPrefix(name, "BenchmarkScale") || strings.HasPrefix(name, "BenchmarkIdleSequences") {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", strings.TrimPrefix(name, "Benchmark"),
			cell(res, name, "events/s"), cell(res, name, "cpu-ns/event"), cell(res, name, "allocs/op"), cell(res, name, "B/op"),
			cell(res, name, "p50-ns"), cell(res, name, "p99-ns"), cell(res, name, "conns/event"))
	}
	if _, ok := res.samples["BenchmarkIdleSequences"]; ok {
		n := "BenchmarkIdleSequences"
		fmt.Fprintf(b, "\nIdle: 10,000 three-step Sequences hold %s MiB of heap and %s MiB of goroutine stacks in %s goroutines, and use %s%% of a core while idle.\n",
			cell(res, n, "heap-MiB"), cell(res, n, "stack-MiB"), cell(res, n, "goroutines"), cell(res, n, "idle-cpu-%"))
	}
	if _, ok := res.samples["BenchmarkIdleSequences100k"]; ok {
		n := "BenchmarkIdleSequences100k"
		fmt.Fprintf(b, "100,000 of them hold %s MiB of heap and %s MiB of stacks in %s goroutines, and use %s%% of a core while idle.\n",
			cell(res, n, "heap-MiB"), cell(res, n, "stack-MiB"), cell(res, n, "goroutines"), cell(res, n, "idle-cpu-%"))
	}
	if _, ok := res.samples["BenchmarkStartSequence3Steps"]; ok {
		b.WriteString("\nStartup: ")
		var parts []string
		for _, st := range []struct{ what, name string }{
			{"`Start` of a 3-step Sequence", "BenchmarkStartSequence3Steps"},
			{"`manifest.Build` + `App.Start` of the seed's Sequence", "BenchmarkStartManifest/sequence"},
			{"`manifest.Build` + `App.Start` of the seed's Parallel", "BenchmarkStartManifest/parallel"},
		} {
			if _, ok := res.samples[st.name]; ok {
				parts = append(parts, fmt.Sprintf("%s takes %s µs (Shutdown %s µs)", st.what, cell(res, st.name, "µs/start"), cell(res, st.name, "shutdown-µs")))
			}
		}
		b.WriteString(strings.Join(parts, "; ") + ".\n")
	}
}

// filterTriggers is how many Triggers of one kind BenchmarkFilter gives a
// broker (bench/broker_test.go).
const filterTriggers = 100

// renderBroker writes how a broker's cost grows with its Triggers, and
// what one filter of each kind costs: (kind - baseline) / 100, the
// baseline being the same broker without Triggers.
func renderBroker(b *strings.Builder, res *results) {
	var sizes []string
	for _, name := range res.order {
		if n, ok := strings.CutPrefix(name, "BenchmarkBroker/triggers="); ok {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) > 0 {
		b.WriteString("\n#### Broker: cost per event as Triggers grow (one matches)\n\n")
		b.WriteString("| Triggers | ns/event | ns per Trigger | cpu-ns/event | allocs/event |\n|---:|---:|---:|---:|---:|\n")
		for _, n := range sizes {
			name := "BenchmarkBroker/triggers=" + n
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", n,
				cell(res, name, "ns/op"), cell(res, name, "ns/trigger"), cell(res, name, "cpu-ns/event"), cell(res, name, "allocs/op"))
		}
	}
	base, ok := res.median("BenchmarkFilter/baseline", "ns/op")
	if !ok {
		return
	}
	baseAllocs, _ := res.median("BenchmarkFilter/baseline", "allocs/op")
	baseCPU, _ := res.median("BenchmarkFilter/baseline", "cpu-ns/event")
	fmt.Fprintf(b, "\n#### Filters: cost of one filter on one event (%d Triggers of a kind, none matching, less a broker without Triggers at %s ns/event)\n\n", filterTriggers, num(base))
	b.WriteString("| filter | ns/event | ns per filter | cpu-ns per filter | allocs per filter |\n|---|---:|---:|---:|---:|\n")
	for _, name := range res.order {
		kind, ok := strings.CutPrefix(name, "BenchmarkFilter/")
		if !ok || kind == "baseline" {
			continue
		}
		ns, _ := res.median(name, "ns/op")
		allocs, _ := res.median(name, "allocs/op")
		cpu, _ := res.median(name, "cpu-ns/event")
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", kind, num(ns), num((ns-base)/filterTriggers),
			num((cpu-baseCPU)/filterTriggers), num((allocs-baseAllocs)/filterTriggers))
	}
}

// row writes one comparison; with goal it also says whether it is met.
func row(b *strings.Builder, res *results, t target, withGoal bool) {
	ours, okOurs := res.median(t.ours, t.unit)
	ref, okRef := res.median(t.ref, t.unit)
	what := fmt.Sprintf("%s (`%s`", t.what, short(t.ours))
	if t.ref != "" {
		what += " / `" + short(t.ref) + "`"
	}
	what += ")"
	if !okOurs || (!okRef && t.kind != belowAbs) {
		if withGoal {
			fmt.Fprintf(b, "| %s | – | – | – | – | %s | not measured |\n", what, goal(t))
		} else {
			fmt.Fprintf(b, "| %s | – | – | – | – |\n", what)
		}
		return
	}
	ratio, cpuRatio, met := "–", "–", false
	switch t.kind {
	case atLeast, atMost:
		r := ours / ref
		ratio = fmt.Sprintf("%.2f", r)
		met = t.kind == atLeast && r >= t.goal || t.kind == atMost && r <= t.goal
		if t.unit == "events/s" {
			// CPU per event is lower for the faster one: invert.
			if co, ok := res.median(t.ours, "cpu-ns/event"); ok {
				if cr, ok := res.median(t.ref, "cpu-ns/event"); ok && co > 0 {
					cpuRatio = fmt.Sprintf("%.2f", cr/co)
				}
			}
		}
	case plusAtMost:
		ratio = fmt.Sprintf("+%s", num(ours-ref))
		met = ours-ref <= t.goal
	case belowAbs:
		met = ours < t.goal
	case reused:
		met = ours <= t.goal
	}
	refCell := "–"
	if t.ref != "" {
		refCell = num(ref)
	}
	if !withGoal {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", what, num(ours), refCell, ratio, cpuRatio)
		return
	}
	verdict := "**no**"
	if met {
		verdict = "yes"
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", what, num(ours), refCell, ratio, cpuRatio, goal(t), verdict)
}

func goal(t target) string {
	switch t.kind {
	case atLeast:
		return fmt.Sprintf("≥ %g×", t.goal)
	case atMost:
		return fmt.Sprintf("≤ %g×", t.goal)
	case plusAtMost:
		return fmt.Sprintf("≤ +%g", t.goal)
	case belowAbs:
		return fmt.Sprintf("< %g", t.goal)
	default:
		if t.goal == 0 {
			return "0"
		}
		// With many clients a connection is opened now and then when all
		// are busy; reuse must stay the rule.
		return fmt.Sprintf("≤ %g (reused for > %g%% of events)", t.goal, 100*(1-t.goal))
	}
}

func short(name string) string { return strings.TrimPrefix(name, "Benchmark") }

func cell(res *results, name, unit string) string {
	v, ok := res.median(name, unit)
	if !ok {
		return "–"
	}
	return num(v)
}

// num prints v with three significant digits, grouping thousands.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1e6:
		return group(fmt.Sprintf("%.0f", math.Round(v/1e3)*1e3))
	case a >= 1000:
		return group(fmt.Sprintf("%.0f", v))
	case a >= 10 && v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3g", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

func group(digits string) string {
	neg := strings.HasPrefix(digits, "-")
	digits = strings.TrimPrefix(digits, "-")
	var out []byte
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
