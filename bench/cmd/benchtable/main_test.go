package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/eventflows/flows/bench
cpu: AMD EPYC
BenchmarkSequence3Steps-2   	  100	  5000 ns/op	 4000 cpu-ns/event	 200000 events/s	 4000 p50-ns	 30000 p99-ns	 2000 B/op	 34 allocs/op
BenchmarkSequence3Steps-2   	  100	  5000 ns/op	 4000 cpu-ns/event	 100000 events/s	 4000 p50-ns	 20000 p99-ns	 2000 B/op	 34 allocs/op
BenchmarkSequence3Steps-2   	  100	  5000 ns/op	 4000 cpu-ns/event	 300000 events/s	 4000 p50-ns	 10000 p99-ns	 2000 B/op	 34 allocs/op
BenchmarkLimitGoChannels-2  	  100	  3000 ns/op	 3000 cpu-ns/event	 250000 events/s	 3000 p50-ns	 10000 p99-ns	 1600 B/op	 31 allocs/op
BenchmarkLimitDirectCalls-2 	  100	  3000 ns/op	 3000 cpu-ns/event	 300000 events/s	 2000 p50-ns	  9000 p99-ns	 1600 B/op	 30 allocs/op
BenchmarkScaleSequence/steps=4-2 	 100	 8000 ns/op	 2000 ns/step	 8000 cpu-ns/event	 125000 events/s	 90 allocs/op
BenchmarkBroker/triggers=10-2 	 100	 2000 ns/op	 3000 cpu-ns/event	 500000 events/s	 200.0 ns/trigger	 1400 B/op	 17 allocs/op
BenchmarkLimitBrokerLoop/triggers=10-2 	 100	 1000 ns/op	 1500 cpu-ns/event	 1000000 events/s	 760 B/op	 12 allocs/op
BenchmarkParallelHandle/branches=2-2 	 100	 4000 ns/op	 6000 cpu-ns/event	 240000 events/s	 5000 p50-ns	 30000 p99-ns	 2500 B/op	 36 allocs/op
BenchmarkLimitBranchesSequentiallyHandle/branches=2-2 	 100	 1300 ns/op	 2400 cpu-ns/event	 800000 events/s	 1500 p50-ns	 20000 p99-ns	 1136 B/op	 21 allocs/op
BenchmarkFilter/baseline-2 	 100	 700 ns/op	 800 cpu-ns/event	 1400000 events/s	 672 B/op	 5 allocs/op
BenchmarkHTTPServe/clients=1-2 	 100	 30000 ns/op	 30000 cpu-ns/event	 33000 events/s	 9600 B/op	 115 allocs/op
BenchmarkLimitHTTPServe/clients=1-2 	 100	 30000 ns/op	 31000 cpu-ns/event	 34000 events/s	 9500 B/op	 115 allocs/op
BenchmarkFilter/cesql-2 	 100	 50700 ns/op	 60000 cpu-ns/event	 20000 events/s	 40000 B/op	 505 allocs/op
BenchmarkStartSequence3Steps-2 	 1000	 8000 ns/op	 7.5 µs/start	 9.0 shutdown-µs	 109 allocs/op
BenchmarkStartManifest/sequence-2 	 1000	 30000 ns/op	 27.0 µs/start	 12.0 shutdown-µs	 400 allocs/op
some log line from a benchmark
PASS
`

func TestMediansAndTargets(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := res.median("BenchmarkSequence3Steps", "events/s"); got != 200000 {
		t.Errorf("median events/s = %v, want 200000", got)
	}
	if res.count("BenchmarkSequence3Steps") != 3 || res.meta["cpu"] != "AMD EPYC" {
		t.Errorf("count %d, meta %v", res.count("BenchmarkSequence3Steps"), res.meta)
	}
	var b strings.Builder
	render(&b, res, header{Date: "2026-11-26", Machine: "test machine", Command: "go test"})
	out := b.String()
	for _, want := range []string{
		"Measured on 2026-11-26: test machine.",
		"medians of 3 runs",
		// 200000 / 250000 events/s, and 3000 / 4000 CPU per event.
		"| 200,000 | 250,000 | 0.80 | 0.75 | ≥ 0.85× | **no** |",
		// 34 - 30 allocations.
		"| 34 | 30 | +4 | – | ≤ +6 | yes |",
		// p99 20000 / 10000.
		"| 20,000 | 10,000 | 2.00 | – | ≤ 2× | yes |",
		"(`Sequence3Steps` / `PeerWatermill`) | – | – | – | – | ≥ 8× | not measured |",
		"| Sequence | 4 | 8,000 | 2,000 | 8,000 | 90 |",
		// 500000 / 1000000 events/s, 1500 / 3000 CPU per event.
		"(`Broker/triggers=10` / `LimitBrokerLoop/triggers=10`) | 500,000 | 1,000,000 | 0.50 | 0.50 | ≥ 0.8× | **no** |",
		"| 10 | 2,000 | 200 | 3,000 | 17 |",
		// Handle from 16 callers: 240000 / 800000 events/s, 2400 / 6000 CPU per event.
		"(`ParallelHandle/branches=2` / `LimitBranchesSequentiallyHandle/branches=2`) | 240,000 | 800,000 | 0.30 | 0.40 | ≥ 0.8× | **no** |",
		"(`ParallelHandle/branches=10` / `LimitBranchesSequentiallyHandle/branches=10`) | – | – | – | – | ≥ 0.8× | not measured |",
		// (50700 - 700) / 100 ns, (60000 - 800) / 100 CPU, (505 - 5) / 100 allocations.
		"| cesql | 50,700 | 500 | 592 | 5 |",
		"Startup: `Start` of a 3-step Sequence takes 7.5 µs (Shutdown 9 µs); `manifest.Build` + `App.Start` of the seed's Sequence takes 27 µs (Shutdown 12 µs).",
		// 33000 / 34000 events/s, 31000 / 30000 CPU per event, against the goal of 0.95.
		"(`HTTPServe/clients=1` / `LimitHTTPServe/clients=1`) | 33,000 | 34,000 | 0.97 | 1.03 | ≥ 0.95× | yes |",
		"(`IngressServe/clients=1` / `LimitIngressServe/clients=1`) | – | – | – | – | ≥ 0.95× | not measured |",
		"(`HTTPHop/clients=1` / `LimitHTTPHop/clients=1`) | – | – | – | – | ≥ 0.95× | not measured |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tables lack %q:\n%s", want, out)
		}
	}
}

func TestReplaceBetweenMarkers(t *testing.T) {
	readme := "# Title\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\nAfter.\n"
	got, err := replaceBetweenMarkers([]byte(readme), "new table\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Title\n\n" + beginMarker + "\nnew table\n" + endMarker + "\n\nAfter.\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := replaceBetweenMarkers([]byte("no markers"), "x"); err == nil {
		t.Error("no error without markers")
	}
}

func TestTrimProcsAndNumbers(t *testing.T) {
	for in, want := range map[string]string{
		"BenchmarkX-2":            "BenchmarkX",
		"BenchmarkX/clients=32-8": "BenchmarkX/clients=32",
		"BenchmarkX/a-b":          "BenchmarkX/a-b",
		"BenchmarkX":              "BenchmarkX",
	} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
	for v, want := range map[float64]string{0: "0", 34: "34", 93.69: "93.7", 0.025: "0.025", 1234567: "1,235,000", 12345: "12,345", 2.5: "2.5"} {
		if got := num(v); got != want {
			t.Errorf("num(%v) = %q, want %q", v, got, want)
		}
	}
}
