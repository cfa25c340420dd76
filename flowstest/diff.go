package flowstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"mime"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// A CompareOption changes how [Diff] and [DiffEvents] compare events.
type CompareOption func(*compareConfig)

type compareConfig struct {
	ignore   map[string]bool
	anyOrder bool
}

func newCompareConfig(opts []CompareOption) *compareConfig {
	c := &compareConfig{ignore: map[string]bool{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// IgnoreAttributes leaves the named attributes out of the comparison:
// context attributes ("id", "time", ...), extensions (any other name) and
// "data". Use it for what a test cannot predict, such as the id and time
// of [flows.Ping] events.
func IgnoreAttributes(names ...string) CompareOption {
	return func(c *compareConfig) {
		for _, n := range names {
			c.ignore[strings.ToLower(n)] = true
		}
	}
}

// AnyOrder makes [DiffEvents] match events regardless of order, as the
// replies of a [flows.Parallel]'s branches arrive.
func AnyOrder() CompareOption {
	return func(c *compareConfig) { c.anyOrder = true }
}

// maxDiffLines bounds the lines of one event's diff.
const maxDiffLines = 40

// Diff compares got with want and returns the differences, one per line,
// or "" if they are equal. Attributes are compared by value (times with
// [time.Time.Equal]); extensions by their canonical string form, since that
// is what survives the HTTP binding; JSON data semantically: key order,
// white space and number spelling (1 and 1.0) do not matter, and a
// difference is reported at its JSON path, such as data.items[2].name.
// Other data is compared byte by byte.
func Diff(got, want event.Event, opts ...CompareOption) string {
	return strings.Join(diffEvent(got, want, newCompareConfig(opts)), "\n")
}

// Equal reports whether [Diff] finds no difference.
func Equal(got, want event.Event, opts ...CompareOption) bool {
	return len(diffEvent(got, want, newCompareConfig(opts))) == 0
}

func diffEvent(got, want event.Event, c *compareConfig) []string {
	d := &differ{}
	attrs := []struct {
		name      string
		got, want string
	}{
		{"specversion", got.SpecVersion(), want.SpecVersion()},
		{"id", got.ID(), want.ID()},
		{"source", got.Source(), want.Source()},
		{"type", got.Type(), want.Type()},
		{"subject", got.Subject(), want.Subject()},
		{"dataschema", got.DataSchema(), want.DataSchema()},
		{"datacontenttype", got.DataContentType(), want.DataContentType()},
	}
	for _, a := range attrs {
		if !c.ignore[a.name] && a.got != a.want {
			d.add("%s: got %s, want %s", a.name, quoteOrUnset(a.got), quoteOrUnset(a.want))
		}
	}
	if gt, wt := got.Time(), want.Time(); !c.ignore["time"] && !gt.Equal(wt) {
		d.add("time: got %s, want %s", formatTime(gt), formatTime(wt))
	}

	gx, wx := got.Extensions(), want.Extensions()
	names := sortedKeys(gx)
	for k := range wx {
		if _, ok := gx[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		if c.ignore[k] {
			continue
		}
		gv, gok := gx[k]
		wv, wok := wx[k]
		switch {
		case !gok:
			d.add("extension %s: missing, want %q", k, formatValue(wv))
		case !wok:
			d.add("extension %s: unexpected %q", k, formatValue(gv))
		case formatValue(gv) != formatValue(wv):
			d.add("extension %s: got %q, want %q", k, formatValue(gv), formatValue(wv))
		}
	}

	if !c.ignore["data"] {
		d.data(got, want)
	}
	if len(d.lines) > maxDiffLines {
		more := len(d.lines) - maxDiffLines
		d.lines = append(d.lines[:maxDiffLines], fmt.Sprintf("... and %d more differences", more))
	}
	return d.lines
}

type differ struct{ lines []string }

func (d *differ) add(format string, args ...any) {
	d.lines = append(d.lines, fmt.Sprintf(format, args...))
}

func (d *differ) data(got, want event.Event) {
	gd, wd := got.Data(), want.Data()
	if len(gd) == 0 && len(wd) == 0 {
		return
	}
	if len(gd) == 0 {
		d.add("data: missing, want %s", clip(compactData(want)))
		return
	}
	if len(wd) == 0 {
		d.add("data: unexpected %s", clip(compactData(got)))
		return
	}
	if isJSONType(got.DataContentType()) && isJSONType(want.DataContentType()) {
		gv, gerr := decodeJSON(gd)
		wv, werr := decodeJSON(wd)
		if gerr == nil && werr == nil {
			d.json("data", gv, wv)
			return
		}
	}
	if !bytes.Equal(gd, wd) {
		d.add("data: got %s, want %s", clip(compactData(got)), clip(compactData(want)))
	}
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

// json reports the differences between two decoded JSON values at path.
func (d *differ) json(path string, got, want any) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := sortedKeys(w)
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := path + jsonKey(k)
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				d.add("%s: missing, want %s", p, jsonText(wv))
			case !wok:
				d.add("%s: unexpected %s", p, jsonText(gv))
			default:
				d.json(p, gv, wv)
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		for i := range max(len(g), len(w)) {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(g):
				d.add("%s: missing, want %s", p, jsonText(w[i]))
			case i >= len(w):
				d.add("%s: unexpected %s", p, jsonText(g[i]))
			default:
				d.json(p, g[i], w[i])
			}
		}
		return
	case json.Number:
		if g, ok := got.(json.Number); ok && numbersEqual(g, w) {
			return
		}
	default: // string, bool, nil
		if got == want {
			return
		}
	}
	d.add("%s: got %s, want %s", path, jsonText(got), jsonText(want))
}

func numbersEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	x, _, errx := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
	y, _, erry := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
	return errx == nil && erry == nil && x.Cmp(y) == 0
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func jsonKey(k string) string {
	if identifier.MatchString(k) {
		return "." + k
	}
	return "[" + strconv.Quote(k) + "]"
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return clip(string(b))
}

// isJSONType reports whether a datacontenttype means JSON; an empty one
// does, as CloudEvents' JSON format assumes.
func isJSONType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func quoteOrUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return strconv.Quote(s)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(unset)"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func formatValue(v any) string {
	s, err := types.Format(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// DiffEvents compares two lists of events and returns their differences,
// or "" if they are equal: a count mismatch, then for each position the
// [Diff] of the two events, or the event that is missing or unexpected.
// With [AnyOrder] each wanted event is matched with an equal event in got
// wherever it is; a wanted event left without a match is compared with an
// unmatched event of the same id, if there is one.
func DiffEvents(got, want []event.Event, opts ...CompareOption) string {
	c := newCompareConfig(opts)
	var out []string
	if len(got) != len(want) {
		out = append(out, fmt.Sprintf("got %d event(s), want %d", len(got), len(want)))
	}
	diffAt := func(label string, g, w event.Event) {
		if lines := diffEvent(g, w, c); len(lines) > 0 {
			out = append(out, fmt.Sprintf("%s (id %q):", label, w.ID()))
			for _, l := range lines {
				out = append(out, "\t"+l)
			}
		}
	}
	if !c.anyOrder {
		for i := range max(len(got), len(want)) {
			label := fmt.Sprintf("event %d", i+1)
			switch {
			case i >= len(got):
				out = append(out, fmt.Sprintf("%s: missing, want %s", label, Summary(want[i])))
			case i >= len(want):
				out = append(out, fmt.Sprintf("%s: unexpected %s", label, Summary(got[i])))
			default:
				diffAt(label, got[i], want[i])
			}
		}
		return strings.Join(out, "\n")
	}

	used := make([]bool, len(got))
	var unmatched []int
	for wi, w := range want {
		found := false
		for gi, g := range got {
			if !used[gi] && len(diffEvent(g, w, c)) == 0 {
				used[gi], found = true, true
				break
			}
		}
		if !found {
			unmatched = append(unmatched, wi)
		}
	}
	for _, wi := range unmatched {
		w := want[wi]
		label := fmt.Sprintf("wanted event %d", wi+1)
		paired := false
		for gi, g := range got {
			if !used[gi] && g.ID() == w.ID() {
				used[gi], paired = true, true
				diffAt(fmt.Sprintf("%s, closest got event %d", label, gi+1), g, w)
				break
			}
		}
		if !paired {
			out = append(out, fmt.Sprintf("%s: missing, want %s", label, Summary(w)))
		}
	}
	for gi, g := range got {
		if !used[gi] {
			out = append(out, fmt.Sprintf("got event %d: unexpected %s", gi+1, Summary(g)))
		}
	}
	return strings.Join(out, "\n")
}

// AssertEvent reports an error on tb, with the [Diff], if got differs from
// want. It returns whether they are equal.
func AssertEvent(tb testing.TB, got, want event.Event, opts ...CompareOption) bool {
	tb.Helper()
	if d := Diff(got, want, opts...); d != "" {
		tb.Errorf("event %q differs (got, want):\n\t%s", want.ID(), strings.ReplaceAll(d, "\n", "\n\t"))
		return false
	}
	return true
}

// AssertEvents reports an error on tb, with the [DiffEvents], if got
// differs from want. It returns whether they are equal.
func AssertEvents(tb testing.TB, got, want []event.Event, opts ...CompareOption) bool {
	tb.Helper()
	if d := DiffEvents(got, want, opts...); d != "" {
		tb.Errorf("events differ (got, want):\n\t%s", strings.ReplaceAll(d, "\n", "\n\t"))
		return false
	}
	return true
}
