package flows_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// delivered reports whether a broker with one Trigger filtered by filters
// delivers e.
func delivered(t *testing.T, tr flows.Trigger, e event.Event) bool {
	t.Helper()
	sub := flowstest.NewRecorder()
	tr.Subscriber = sub
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{tr}})
	if _, err := f.Handle(context.Background(), e); err != nil {
		t.Fatalf("Handle = %v", err)
	}
	return sub.Len() == 1
}

func TestFilterEvaluation(t *testing.T) {
	order := func(opts ...flowstest.EventOption) event.Event {
		return flowstest.NewEvent("1", "com.example.order.created", "/shop/eu", `{"n":1}`, opts...)
	}
	plain := order()
	typed := order(flowstest.WithExtension("num", 5), flowstest.WithExtension("vip", true))
	stringy := order(flowstest.WithExtension("num", "05"), flowstest.WithExtension("vip", "TRUE"))
	withExt := order(flowstest.WithExtension("myext", "x"), flowstest.WithExtension("region", "EU"))
	withSubject := order(flowstest.WithSubject("orders/1"), flowstest.WithTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	charset := flowstest.NewEvent("1", "t", "/s", nil, flowstest.WithData("application/json; charset=utf-8", []byte(`{}`)))
	for _, tc := range []struct {
		name    string
		filter  flows.Filter
		filters []flows.Filter
		e       event.Event
		want    bool
	}{
		// §7.1 lookup and comparison
		{"zero filter matches everything", flows.Filter{}, nil, plain, true},
		{"exact is case-sensitive", flows.Exact("type", "com.example.Order.Created"), nil, plain, false},
		{"exact", flows.Exact("type", "com.example.order.created"), nil, plain, true},
		{"prefix is case-sensitive", flows.Prefix("source", "/Shop/"), nil, plain, false},
		{"prefix", flows.Prefix("source", "/shop/"), nil, plain, true},
		{"suffix is case-sensitive", flows.Suffix("type", ".CREATED"), nil, plain, false},
		{"suffix", flows.Suffix("type", ".created"), nil, plain, true},
		{"prefix of an extension value", flows.Prefix("region", "e"), nil, withExt, false},
		{"integer extension in canonical form", flows.Exact("num", "5"), nil, typed, true},
		{"boolean extension in canonical form, legacy", flows.Attributes(map[string]string{"vip": "true"}), nil, typed, true},
		{"05 is not 5", flows.Exact("num", "5"), nil, stringy, false},
		{"TRUE is not true", flows.Attributes(map[string]string{"vip": "true"}), nil, stringy, false},
		{"missing extension: exact", flows.Exact("myext", "x"), nil, plain, false},
		{"missing extension: prefix", flows.Prefix("myext", "x"), nil, plain, false},
		{"missing extension: legacy", flows.Attributes(map[string]string{"myext": "x"}), nil, plain, false},
		{"unset time reads the zero time", flows.Exact("time", "0001-01-01T00:00:00Z"), nil, plain, true},
		{"time in RFC 3339", flows.Exact("time", "2026-01-02T03:04:05Z"), nil, withSubject, true},
		{"subject", flows.Exact("subject", "orders/1"), nil, withSubject, true},
		{"datamediatype drops parameters", flows.Exact("datamediatype", "application/json"), nil, charset, true},
		{"datacontenttype keeps them", flows.Exact("datacontenttype", "application/json"), nil, charset, false},
		{"specversion", flows.Exact("specversion", "1.0"), nil, plain, true},
		{"schemaurl is dataschema", flows.Attributes(map[string]string{"schemaurl": ""}), nil, plain, false},
		// §7.2 legacy attributes
		{"legacy: every key must match", flows.Attributes(map[string]string{"type": "com.example.order.created", "source": "/other"}), nil, plain, false},
		{"legacy: all keys match", flows.Attributes(map[string]string{"type": "com.example.order.created", "source": "/shop/eu"}), nil, plain, true},
		{"legacy: empty value on type matches every event", flows.Attributes(map[string]string{"type": "", "source": ""}), nil, plain, true},
		{"legacy: empty value needs the extension set", flows.Attributes(map[string]string{"myext": ""}), nil, plain, false},
		{"legacy: empty value on a set extension", flows.Attributes(map[string]string{"myext": ""}), nil, withExt, true},
		{"legacy: empty value on an unset subject", flows.Attributes(map[string]string{"subject": ""}), nil, plain, false},
		{"legacy: empty map", flows.Attributes(map[string]string{}), nil, plain, true},
		{"legacy: nil map", flows.Attributes(nil), nil, plain, true},
		// §7.3 dialects
		{"exact with several keys is ANDed", flows.FilterSpec{Exact: map[string]string{"type": "com.example.order.created", "myext": "y"}}.Filter(), nil, withExt, false},
		{"all", flows.All(flows.Prefix("type", "com.example."), flows.Exact("myext", "x")), nil, withExt, true},
		{"all fails on one", flows.All(flows.Prefix("type", "com.example."), flows.Exact("myext", "y")), nil, withExt, false},
		{"any", flows.Any(flows.Exact("myext", "y"), flows.Exact("region", "EU")), nil, withExt, true},
		{"any fails on all", flows.Any(flows.Exact("myext", "y"), flows.Exact("region", "eu")), nil, withExt, false},
		{"not", flows.Not(flows.Exact("myext", "x")), nil, withExt, false},
		{"not over a missing attribute matches", flows.Not(flows.Exact("myext", "x")), nil, plain, true},
		{"nesting", flows.All(flows.Any(flows.Exact("region", "US"), flows.Suffix("source", "/eu")), flows.Not(flows.Exact("myext", "y"))), nil, withExt, true},
		// Which filter applies
		{"filters are ANDed", flows.Filter{}, []flows.Filter{flows.Prefix("type", "com."), flows.Exact("myext", "z")}, withExt, false},
		{"filters replace filter", ofType("no.such.type"), []flows.Filter{flows.Prefix("type", "com.")}, plain, true},
		{"filters replace filter, not ANDed", ofType("com.example.order.created"), []flows.Filter{flows.Prefix("type", "org.")}, plain, false},
		// §8 CESQL
		{"cesql keywords and names in any case", flows.Filter{}, []flows.Filter{flows.CESQL("TYPE = 'com.example.order.created' and MyExt = 'x'")}, withExt, true},
		{"cesql string literals keep their case", flows.Filter{}, []flows.Filter{flows.CESQL(`type = "COM.example.order.created"`)}, withExt, false},
		{"cesql missing attribute is an error: no match", flows.Filter{}, []flows.Filter{flows.CESQL("type LIKE 'com.example.%' AND myext = 'x'")}, plain, false},
		{"cesql NOT of an error is an error", flows.Filter{}, []flows.Filter{flows.CESQL("NOT (myext = 'x')")}, plain, false},
		{"cesql <> of a missing attribute", flows.Filter{}, []flows.Filter{flows.CESQL("myext <> 'x'")}, plain, false},
		{"cesql LIKE of a missing attribute", flows.Filter{}, []flows.Filter{flows.CESQL("myext LIKE '%'")}, plain, false},
		{"cesql FALSE AND error is false, not an error", flows.Filter{}, []flows.Filter{flows.Not(flows.CESQL("FALSE AND myext = 'x'"))}, plain, true},
		{"cesql TRUE OR error", flows.Filter{}, []flows.Filter{flows.CESQL("TRUE OR myext = 'x'")}, plain, true},
		{"cesql error OR TRUE", flows.Filter{}, []flows.Filter{flows.CESQL("myext = 'x' OR TRUE")}, plain, false},
		{"cesql NOT EXISTS guard", flows.Filter{}, []flows.Filter{flows.CESQL("NOT EXISTS myext OR myext = 'y'")}, plain, true},
		{"cesql casts the left operand", flows.Filter{}, []flows.Filter{flows.CESQL("num = 5 AND vip = true")}, stringy, true},
		{"cesql sees typed extensions as strings", flows.Filter{}, []flows.Filter{flows.CESQL("num = '5' AND vip = 'true'")}, typed, true},
		{"cesql failed cast", flows.Filter{}, []flows.Filter{flows.CESQL("myext > 3")}, withExt, false},
		{"cesql division by zero", flows.Filter{}, []flows.Filter{flows.CESQL("LENGTH(type) / 0 = 1")}, plain, false},
		{"cesql LIKE with _", flows.Filter{}, []flows.Filter{flows.CESQL("source LIKE '/shop/e_'")}, plain, true},
		{"cesql LIKE is case-sensitive", flows.Filter{}, []flows.Filter{flows.CESQL("source LIKE '/SHOP/%'")}, plain, false},
		{"cesql IN", flows.Filter{}, []flows.Filter{flows.CESQL("region IN ('US', 'EU')")}, withExt, true},
		{"cesql functions", flows.Filter{}, []flows.Filter{flows.CESQL("LOWER(region) = 'eu' AND LENGTH(myext) = 1")}, withExt, true},
		{"cesql unset subject is missing", flows.Filter{}, []flows.Filter{flows.CESQL("subject = ''")}, plain, false},
		{"cesql EXISTS subject", flows.Filter{}, []flows.Filter{flows.CESQL("EXISTS subject")}, withSubject, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := delivered(t, flows.Trigger{Filter: tc.filter, Filters: tc.filters}, tc.e); got != tc.want {
				t.Errorf("filter %v, filters %v on %s: delivered = %v, want %v", tc.filter, tc.filters, flowstest.Summary(tc.e), got, tc.want)
			}
		})
	}
}

// A filter that cannot be built is a definition error naming its path,
// where Knative skips it and delivers everything.
func TestFilterDefinitionErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger flows.Trigger
		path    string // the DefinitionError's Path
		msg     string // in its message
	}{
		{"empty attribute name", flows.Trigger{Filter: flows.Exact("", "x")}, "triggers[0].filter.exact", "empty attribute name"},
		{"upper-case name", flows.Trigger{Filter: flows.Attributes(map[string]string{"Type": "x"})}, "triggers[0].filter.attributes", `"Type"`},
		{"dash in a name", flows.Trigger{Filter: flows.Prefix("my-ext", "x")}, "triggers[0].filter.prefix", `"my-ext"`},
		{"name starting with a digit", flows.Trigger{Filter: flows.Suffix("1ext", "x")}, "triggers[0].filter.suffix", `"1ext"`},
		{"empty exact value", flows.Trigger{Filter: flows.Exact("type", "")}, "triggers[0].filter.exact", "empty value"},
		{"empty prefix, nested", flows.Trigger{Filter: flows.All(flows.Exact("type", "a"), flows.Any(flows.Prefix("source", "")))}, "triggers[0].filter.all[1].any[0].prefix", "empty value"},
		{"empty all", flows.Trigger{Filter: flows.All()}, "triggers[0].filter.all", "at least one"},
		{"empty any", flows.Trigger{Filters: []flows.Filter{flows.Any()}}, "triggers[0].filters[0].any", "at least one"},
		{"zero filter in any", flows.Trigger{Filter: flows.Any(flows.Exact("type", "a"), flows.Filter{})}, "triggers[0].filter.any[1]", "empty filter"},
		{"not of nothing", flows.Trigger{Filter: flows.Not(flows.Filter{})}, "triggers[0].filter.not", "empty filter"},
		{"zero filter in filters", flows.Trigger{Filters: []flows.Filter{flows.Exact("type", "a"), {}}}, "triggers[0].filters[1]", "empty filter"},
		{"two dialects", flows.Trigger{Filters: []flows.Filter{flows.Exact("type", "a"), flows.FilterSpec{Exact: map[string]string{"type": "a"}, Prefix: map[string]string{"source": "/"}}.Filter()}}, "triggers[0].filters[1]", "exact, prefix are set"},
		{"empty expression", flows.Trigger{Filters: []flows.Filter{flows.FilterSpec{}.Filter()}}, "triggers[0].filters[0]", "empty expression"},
		{"nested spec problem", flows.Trigger{Filters: []flows.Filter{flows.FilterSpec{Not: &flows.FilterSpec{Any: []flows.FilterSpec{{CESQL: "type ="}}}}.Filter()}}, "triggers[0].filters[0].not.any[0].cesql", "does not parse"},
		{"cesql that does not parse", flows.Trigger{Filters: []flows.Filter{flows.CESQL("this is wrong")}}, "triggers[0].filters[0].cesql", "does not parse"},
		{"cesql the parser panics on", flows.Trigger{Filters: []flows.Filter{flows.CESQL("type = 'a' AND")}}, "triggers[0].filters[0].cesql", "does not parse"},
		{"empty cesql", flows.Trigger{Filter: flows.CESQL(" ")}, "triggers[0].filter.cesql", "empty expression"},
		{"cesql not Boolean: attribute", flows.Trigger{Filters: []flows.Filter{flows.CESQL("type")}}, "triggers[0].filters[0].cesql", "is String, not Boolean"},
		{"cesql not Boolean: arithmetic", flows.Trigger{Filters: []flows.Filter{flows.CESQL("1 + 1")}}, "triggers[0].filters[0].cesql", "is Integer, not Boolean"},
		{"cesql not Boolean: function", flows.Trigger{Filters: []flows.Filter{flows.CESQL("UPPER(type)")}}, "triggers[0].filters[0].cesql", "is String, not Boolean"},
		{"cesql unknown function", flows.Trigger{Filters: []flows.Filter{flows.CESQL("NOSUCH(type) = 'a'")}}, "triggers[0].filters[0].cesql", "unknown function NOSUCH"},
		{"invalid filter ignored by filters is still refused", flows.Trigger{Filter: flows.Exact("Type", "a"), Filters: []flows.Filter{flows.Exact("type", "a")}}, "triggers[0].filter.exact", `"Type"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.trigger.Subscriber = flows.Discard
			b := &flows.Broker{Triggers: []flows.Trigger{tc.trigger}}
			_, err := b.Start(context.Background())
			if !errors.Is(err, flows.ErrInvalid) {
				t.Fatalf("Start = %v, want a definition error", err)
			}
			var de *flows.DefinitionError
			if !errors.As(err, &de) || de.Path != tc.path || !strings.Contains(de.Error(), tc.msg) {
				t.Errorf("Start = %v\nwant a DefinitionError at %s saying %q", err, tc.path, tc.msg)
			}
		})
	}
}

func TestFilterProblemsAreReportedTogether(t *testing.T) {
	b := &flows.Broker{Triggers: []flows.Trigger{
		{Subscriber: flows.Discard, Filter: flows.Exact("type", "ok")},
		{Subscriber: flows.Discard, Filter: flows.Exact("Bad", "x")},
		{Subscriber: flows.Discard, Filter: flows.Any(flows.Exact("", "x")), Filters: []flows.Filter{flows.CESQL("type"), flows.All()}},
	}}
	err := b.Validate()
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *flows.DefinitionError
		if errors.As(e, &de) {
			paths = append(paths, de.Path)
		}
	}
	want := []string{"triggers[1].filter.exact", "triggers[2].filter.any[0].exact", "triggers[2].filters[0].cesql", "triggers[2].filters[1].all"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("problems at %v, want %v\n%v", paths, want, err)
	}
}

// Valid filters that Knative accepts are accepted: names of letters and
// digits, several keys in exact, an empty legacy value.
func TestValidFiltersAreAccepted(t *testing.T) {
	b := &flows.Broker{Triggers: []flows.Trigger{{Subscriber: flows.Discard,
		Filter: flows.Attributes(map[string]string{"type": "", "ext1": "x"}),
		Filters: []flows.Filter{
			flows.FilterSpec{Exact: map[string]string{"type": "a", "source": "b"}}.Filter(),
			flows.FilterSpec{All: []flows.FilterSpec{{Prefix: map[string]string{"type": "a"}}, {Not: &flows.FilterSpec{CESQL: "EXISTS x"}}}}.Filter(),
			flows.CESQL("IS_INT(num) AND num > 3"),
		}}}}
	if err := b.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
}

func TestFilterString(t *testing.T) {
	f := flows.All(flows.Exact("type", "a"), flows.Not(flows.CESQL("x = 'y'")), flows.Attributes(map[string]string{"b": "2", "a": "1"}))
	if got, want := f.String(), `all(exact(type=a), not(cesql("x = 'y'")), attributes(a=1, b=2))`; got != want {
		t.Errorf("String = %s, want %s", got, want)
	}
	if got := (flows.Filter{}).String(); got != "everything" {
		t.Errorf("zero Filter String = %s", got)
	}
}
