package flowstest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows/flowstest"
)

func TestDiff(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	base := func(data any, opts ...flowstest.EventOption) event.Event {
		return flowstest.NewEvent("1", "order", "/shop", data, opts...)
	}
	for _, tc := range []struct {
		name      string
		got, want event.Event
		opts      []flowstest.CompareOption
		diff      string
	}{
		{name: "equal", got: base(`{"a":1}`), want: base(map[string]int{"a": 1})},
		{name: "no data", got: base(nil), want: base(nil)},
		{
			name: "JSON compared semantically",
			got:  base(`{ "b": [1, 2.0, {"c": null}], "a": "x", "n": 1e2 }`),
			want: base(`{"a":"x","b":[1,2,{"c":null}],"n":100}`),
		},
		{
			name: "attributes",
			got:  base(nil, flowstest.WithSubject("s"), flowstest.WithTime(at)),
			want: flowstest.NewEvent("2", "order.paid", "/shop", nil, flowstest.WithTime(at.Add(time.Second))),
			diff: `id: got "1", want "2"
type: got "order", want "order.paid"
subject: got "s", want (unset)
time: got 2024-05-01T12:00:00Z, want 2024-05-01T12:00:01Z`,
		},
		{
			name: "time in another zone is equal",
			got:  base(nil, flowstest.WithTime(at.In(time.FixedZone("X", 3600)))),
			want: base(nil, flowstest.WithTime(at)),
		},
		{
			name: "extensions by canonical value",
			got:  base(nil, flowstest.WithExtension("code", "500"), flowstest.WithExtension("extra", true)),
			want: base(nil, flowstest.WithExtension("code", 500), flowstest.WithExtension("tenant", "acme")),
			diff: `extension extra: unexpected "true"
extension tenant: missing, want "acme"`,
		},
		{
			name: "JSON paths",
			got:  base(`{"items":[{"sku":"A","qty":1},{"sku":"B"}],"note":"x","odd key":1,"t":true}`),
			want: base(`{"items":[{"sku":"A","qty":2}],"total":3,"odd key":2,"t":"true"}`),
			diff: `data.items[0].qty: got 1, want 2
data.items[1]: unexpected {"sku":"B"}
data.note: unexpected "x"
data["odd key"]: got 1, want 2
data.t: got true, want "true"
data.total: missing, want 3`,
		},
		{
			name: "JSON of another shape",
			got:  base(`[1]`),
			want: base(`{"a":1}`),
			diff: `data: got [1], want {"a":1}`,
		},
		{
			name: "missing and unexpected data",
			got:  base(nil),
			want: base(`{"a":1}`),
			diff: `datacontenttype: got (unset), want "application/json"
data: missing, want {"a":1}`,
		},
		{
			name: "text data byte by byte",
			got:  base(nil, flowstest.WithData("text/plain", []byte("hello"))),
			want: base(nil, flowstest.WithData("text/plain", []byte("hello!"))),
			diff: `data: got "hello", want "hello!"`,
		},
		{
			name: "ignored attributes",
			got:  flowstest.NewEvent("x", "order", "/shop", `{"a":1}`, flowstest.WithTime(at), flowstest.WithExtension("trace", "t1")),
			want: flowstest.NewEvent("y", "order", "/shop", `{"a":2}`, flowstest.WithExtension("trace", "t2")),
			opts: []flowstest.CompareOption{flowstest.IgnoreAttributes("ID", "time", "trace", "data")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flowstest.Diff(tc.got, tc.want, tc.opts...); got != tc.diff {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tc.diff)
			}
			if eq := flowstest.Equal(tc.got, tc.want, tc.opts...); eq != (tc.diff == "") {
				t.Errorf("Equal = %v, want %v", eq, tc.diff == "")
			}
		})
	}
}

func TestDiffIsBounded(t *testing.T) {
	got, want := map[string]int{}, map[string]int{}
	for i := range 100 {
		got[strings.Repeat("k", i+1)] = i
	}
	d := flowstest.Diff(flowstest.NewEvent("1", "t", "/s", got), flowstest.NewEvent("1", "t", "/s", want))
	lines := strings.Split(d, "\n")
	if len(lines) != 41 || lines[40] != "... and 60 more differences" {
		t.Errorf("Diff has %d lines ending with %q, want 40 and a count of the rest", len(lines), lines[len(lines)-1])
	}
}

func TestDiffEvents(t *testing.T) {
	ev := func(id string, data any) event.Event { return flowstest.NewEvent(id, "t", "/s", data) }
	for _, tc := range []struct {
		name      string
		got, want []event.Event
		opts      []flowstest.CompareOption
		diff      string
	}{
		{name: "equal", got: []event.Event{ev("1", nil), ev("2", nil)}, want: []event.Event{ev("1", nil), ev("2", nil)}},
		{
			name: "in order",
			got:  []event.Event{ev("2", nil), ev("1", nil)},
			want: []event.Event{ev("1", nil), ev("2", nil)},
			diff: `event 1 (id "1"):
	id: got "2", want "1"
event 2 (id "2"):
	id: got "1", want "2"`,
		},
		{
			name: "any order",
			got:  []event.Event{ev("2", nil), ev("1", nil)},
			want: []event.Event{ev("1", nil), ev("2", nil)},
			opts: []flowstest.CompareOption{flowstest.AnyOrder()},
		},
		{
			name: "missing and unexpected",
			got:  []event.Event{ev("1", nil)},
			want: []event.Event{ev("1", nil), ev("2", `{"a":1}`)},
			diff: `got 1 event(s), want 2
event 2: missing, want id="2" type="t" source="/s" data={"a":1}`,
		},
		{
			name: "any order pairs by id",
			got:  []event.Event{ev("3", nil), ev("2", `{"a":2}`), ev("1", nil)},
			want: []event.Event{ev("1", nil), ev("2", `{"a":1}`), ev("4", nil)},
			opts: []flowstest.CompareOption{flowstest.AnyOrder()},
			diff: `wanted event 2, closest got event 2 (id "2"):
	data.a: got 2, want 1
wanted event 3: missing, want id="4" type="t" source="/s"
got event 1: unexpected id="3" type="t" source="/s"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flowstest.DiffEvents(tc.got, tc.want, tc.opts...); got != tc.diff {
				t.Errorf("DiffEvents:\n%s\nwant:\n%s", got, tc.diff)
			}
		})
	}
}

func TestAssertReportsTheDiff(t *testing.T) {
	tb := &fatalTB{}
	ok := flowstest.AssertEvent(tb, flowstest.NewEvent("1", "a", "/s", nil), flowstest.NewEvent("1", "b", "/s", nil))
	if ok || len(tb.errors) != 1 || tb.errors[0] != "event \"1\" differs (got, want):\n\ttype: got \"a\", want \"b\"" {
		t.Errorf("AssertEvent = %v, reported %q", ok, tb.errors)
	}
	tb = &fatalTB{}
	ok = flowstest.AssertEvents(tb, nil, []event.Event{flowstest.NewEvent("1", "a", "/s", nil)})
	if ok || len(tb.errors) != 1 || !strings.Contains(tb.errors[0], "got 0 event(s), want 1\n\tevent 1: missing") {
		t.Errorf("AssertEvents = %v, reported %q", ok, tb.errors)
	}
	tb = &fatalTB{}
	if !flowstest.AssertEvent(tb, flowstest.NewEvent("1", "a", "/s", nil), flowstest.NewEvent("1", "a", "/s", nil)) || len(tb.errors) != 0 {
		t.Errorf("AssertEvent of equal events reported %q", tb.errors)
	}
}
