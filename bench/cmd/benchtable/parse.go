package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// results are the samples of a benchmark run, by benchmark and unit.
type results struct {
	meta    map[string]string // goos, goarch, pkg, cpu
	order   []string          // benchmark names in order of appearance
	samples map[string]map[string][]float64
}

// parse reads `go test -bench` output. Benchmark names lose their
// -GOMAXPROCS suffix, so that runs on machines alike group together.
func parse(r io.Reader) (*results, error) {
	res := &results{meta: map[string]string{}, samples: map[string]map[string][]float64{}}
	err := readLines(r, func(line string) error {
		for _, key := range []string{"goos", "goarch", "pkg", "cpu"} {
			if v, ok := strings.CutPrefix(line, key+": "); ok {
				res.meta[key] = strings.TrimSpace(v)
				return nil
			}
		}
		if !strings.HasPrefix(line, "Benchmark") {
			return nil
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			return nil // a benchmark's log line, or a name without results yet
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			return nil
		}
		name := trimProcs(f[0])
		m := res.samples[name]
		if m == nil {
			m = map[string][]float64{}
			res.samples[name] = m
			res.order = append(res.order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("%s: value %q: %w", f[0], f[i], err)
			}
			m[f[i+1]] = append(m[f[i+1]], v)
		}
		return nil
	})
	return res, err
}

// trimProcs removes the -N that go test appends to names when GOMAXPROCS > 1.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// median returns the median sample of name in unit, and whether there is one.
func (r *results) median(name, unit string) (float64, bool) {
	s := r.samples[name][unit]
	if len(s) == 0 {
		return 0, false
	}
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// count is the number of runs of name.
func (r *results) count(name string) int {
	n := 0
	for _, s := range r.samples[name] {
		n = max(n, len(s))
	}
	return n
}
