// Package bench measures flows against the limits of the machine (direct
// calls, Go channels, raw net/http) and against a peer library (Watermill),
// in one run, so that the figures can be read as ratios. It has no API: the
// benchmarks are in its test files, and cmd/benchtable turns their output
// into the table of README.md.
//
// It is its own module so that the peers' dependencies never reach the
// flows module.
package bench
