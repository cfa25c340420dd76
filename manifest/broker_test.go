package manifest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// Knative's "Sequence with Broker and Trigger", its YAML as the docs give
// it, with the appenders and event-display bound to Go handlers: the
// display gets the ping's event, through the three steps, of the new type,
// once.
func TestBrokerExampleYAML(t *testing.T) {
	display := newRecorder()
	reg := new(manifest.Registry)
	reg.Bind("Service", "first", appender(" - Handled by 0"))
	reg.Bind("Service", "second", appender(" - Handled by 1"))
	reg.Bind("Service", "third", flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := appender(" - Handled by 2").Handle(ctx, e)
		if reply != nil {
			reply.SetType("samples.http.mod3")
		}
		return reply, err
	}))
	reg.Bind("Service", "sequence-display", display)
	set := readSeed(t, "broker")
	// Fire once, then not for a year: one event to follow.
	app := start(t, set, reg, manifest.WithSchedule("@yearly"))
	broker := flow(t, app, "Broker", "default")
	ping := newEvent("ping-1", time.Now(), `{"message": "Hello world!"}`)
	if err := broker.Send(context.Background(), ping); err != nil {
		t.Fatal(err)
	}
	got := display.next(t)
	if got.ID() != "ping-1" || got.Source() != ping.Source() || got.Type() != "samples.http.mod3" ||
		string(got.Data()) != `{"id":0,"message":"Hello world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
		t.Errorf("event-display got:\n%s", got)
	}
	if _, ok := got.Extensions()[flows.ExtensionBrokerTTL]; ok {
		t.Errorf("the subscriber sees %s:\n%s", flows.ExtensionBrokerTTL, got)
	}
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	display.empty(t)
}

const brokerDoc = `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations:
    eventing.knative.dev/broker.class: MTChannelBasedBroker
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: config-br-default-channel
    namespace: knative-eventing
`

func triggerDoc(name, filter, subscriber string) string {
	return "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: " + name + "}\nspec:\n  broker: default\n" +
		filter + "  subscriber:\n    " + subscriber + "\n"
}

func svc(name string) string {
	return "ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: " + name + "}"
}

// Each Trigger's filter, as Knative evaluates it: which subscriber gets
// which event. spec.config and the class annotation are accepted.
func TestTriggerFiltersRouteEvents(t *testing.T) {
	recs := map[string]*recorder{}
	reg := new(manifest.Registry)
	for _, n := range []string{"all", "legacy", "exact", "prefix", "nested", "cesql", "both"} {
		recs[n] = newRecorder()
		reg.Bind("Service", n, recs[n])
	}
	set := parse(t, brokerDoc+
		triggerDoc("all", "", svc("all"))+
		triggerDoc("legacy", "  filter:\n    attributes: {type: com.example.created, region: eu}\n", svc("legacy"))+
		triggerDoc("exact", "  filters:\n  - exact: {type: com.example.created}\n", svc("exact"))+
		triggerDoc("prefix", "  filters:\n  - prefix: {source: /shop/}\n  - suffix: {type: .refunded}\n", svc("prefix"))+
		triggerDoc("nested", "  filters:\n  - any:\n    - exact: {region: us}\n    - all:\n      - not: {exact: {type: com.example.created}}\n      - prefix: {source: /shop}\n", svc("nested"))+
		triggerDoc("cesql", "  filters:\n  - cesql: \"region = 'eu' AND type LIKE 'com.example.%'\"\n", svc("cesql"))+
		// filters replaces filter entirely.
		triggerDoc("both", "  filter:\n    attributes: {type: nothing.matches}\n  filters:\n  - exact: {type: com.example.created}\n", svc("both")))
	app := start(t, set, reg)
	broker := flow(t, app, "Broker", "default")
	send := func(id, typ, source, region string) {
		e := event.New()
		e.SetID(id)
		e.SetType(typ)
		e.SetSource(source)
		if region != "" {
			e.SetExtension("region", region)
		}
		if err := broker.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	send("1", "com.example.created", "/shop/eu", "eu")
	send("2", "com.example.refunded", "/shop/eu", "")
	send("3", "com.example.created", "/Shop/us", "us")
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"all": {"1", "2", "3"}, "legacy": {"1"}, "exact": {"1", "3"}, "prefix": {"2"},
		"nested": {"2", "3"}, "cesql": {"1"}, "both": {"1", "3"},
	}
	for n, r := range recs {
		var got []string
		for len(r.ch) > 0 {
			got = append(got, (<-r.ch).ID())
		}
		slices.Sort(got)
		if !slices.Equal(got, want[n]) {
			t.Errorf("trigger %s delivered %v; want %v", n, got, want[n])
		}
	}
}

// Trigger problems are reported all at once, each naming the file, the
// Trigger and the field.
func TestTriggerProblemsNameFileObjectField(t *testing.T) {
	_, err := build(t, []file{{"t.yaml", brokerDoc +
		triggerDoc("filters", "  filters:\n  - exact: {type: a}\n  - cesql: \"type = 'a' AND\"\n  - {exact: {type: a}, prefix: {type: b}}\n  - {}\n  - all: []\n  - not: {suffix: {type: \"\"}}\n", svc("s")) +
		triggerDoc("legacy", "  filter:\n    attributes: {Type: a, my-ext: b}\n", svc("s")) +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: nobroker}\nspec:\n  broker: defualt\n  subscriber:\n    " + svc("s") + "\n" +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: typo}\nspec:\n  broker: default\n  fitlers: []\n  subscriber:\n    " + svc("s") + "\n" +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: empty}\nspec: {}\n" +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: delivery}\nspec:\n  broker: default\n  delivery: {retry: -1, backoffDelay: soon}\n  subscriber:\n    " + svc("s") + "\n",
	}}, bindAll("Service", "s"))
	want := []string{
		`t.yaml: Trigger "filters": spec.filters[1].cesql: `,
		`t.yaml: Trigger "filters": spec.filters[2]: exact, prefix are set: an expression has exactly one dialect`,
		`t.yaml: Trigger "filters": spec.filters[3]: an empty expression: set one of exact, prefix, suffix, all, any, not or cesql`,
		`t.yaml: Trigger "filters": spec.filters[4].all: needs at least one filter`,
		`t.yaml: Trigger "filters": spec.filters[5].not.suffix: attribute "type": an empty value`,
		`t.yaml: Trigger "legacy": spec.filter.attributes: attribute name "Type": must be lower-case letters and digits`,
		`t.yaml: Trigger "legacy": spec.filter.attributes: attribute name "my-ext": must be lower-case letters and digits`,
		`t.yaml: Trigger "nobroker": spec.broker: Broker "defualt" is not declared in the manifests; did you mean "default"?`,
		`t.yaml: Trigger "typo": spec.fitlers: unknown field; did you mean "filters"?`,
		`t.yaml: Trigger "empty": spec.broker: missing`,
		`t.yaml: Trigger "empty": spec.subscriber: missing: want a ref or a uri`,
		`t.yaml: Trigger "delivery": spec.delivery.retry: must be >= 0, got -1`,
		`t.yaml: Trigger "delivery": spec.delivery.backoffDelay: `,
	}
	wantProblems(t, err, want)
	var me *manifest.Error
	if !errors.As(err, &me) || !errors.Is(err, flows.ErrInvalid) {
		t.Errorf("errors are not *manifest.Error wrapping flows.ErrInvalid: %v", err)
	}
}

// A Trigger whose subscriber is its own Broker is refused; so is a loop of
// Brokers through Triggers alone. A Sequence replying to the Broker that
// feeds it (Knative's pattern) is not a cycle.
func TestTriggerLoops(t *testing.T) {
	_, err := build(t, []file{{"own.yaml", brokerDoc +
		triggerDoc("self", "", "ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}")}}, nil)
	if want := `own.yaml: Trigger "self": spec.subscriber: the subscriber is the Trigger's own Broker "default": every event it matches would enter the broker again`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("own broker as subscriber: %v\nwant %s…", err, want)
	}
	_, err = build(t, []file{{"two.yaml", brokerDoc +
		triggerDoc("to-other", "", "ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: other}") +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: other}\n" +
		"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: back}\nspec:\n  broker: other\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n"}}, nil)
	if want := `two.yaml: Trigger "back": spec.subscriber.ref: cycle: Broker "default" → Broker "other" → Broker "default"; Triggers must not lead from a Broker back to it through Brokers alone`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("two brokers feeding each other: %v\nwant %s…", err, want)
	}
	// The same over HTTP: the uri is the broker's own ingress where the app is served.
	_, err = build(t, []file{{"uri.yaml", brokerDoc + triggerDoc("self", "", "uri: http://localhost:8080/default/default")}}, nil,
		manifest.WithServeAddress("127.0.0.1:8080"))
	if want := `uri.yaml: Trigger "self": spec.subscriber: the subscriber is the Trigger's own Broker "default"`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("own broker's URL as subscriber: %v\nwant %s…", err, want)
	}
	// The docs' pattern builds (TestBrokerExampleYAML runs it).
	if _, err := manifest.Build(readSeed(t, "broker"), bindAll("Service", "first", "second", "third", "sequence-display")); err != nil {
		t.Errorf("Knative's Sequence with Broker and Trigger: %v", err)
	}
}

// A Broker may be a PingSource's sink, a Parallel's reply and a dead-letter
// sink; a Trigger's subscriber may be a Parallel or a uri.
func TestBrokerAsDestination(t *testing.T) {
	dead, fromParallel, fromPing := newRecorder(), newRecorder(), newRecorder()
	var uriGot = make(chan event.Event, 4)
	srv := httptest.NewServer(flows.NewHTTPHandler(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		uriGot <- e
		return nil, nil
	})))
	defer srv.Close()
	reg := new(manifest.Registry)
	reg.Bind("Service", "dead", dead)
	reg.Bind("Service", "from-parallel", fromParallel)
	reg.Bind("Service", "from-ping", fromPing)
	reg.Bind("Service", "failing", flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, errors.New("boom")
	}))
	reg.Bind("Service", "retype", flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := e.Clone()
		r.SetType("from.parallel")
		return &r, nil
	}))
	set := parse(t, brokerDoc+`---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: dlq}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: dead}
spec:
  broker: dlq
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dead}}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: p}
spec:
  branches:
  - subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: retype}}
  reply: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: ping}
spec:
  schedule: "* * * * * *"
  sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
`+triggerDoc("to-parallel", "  filter: {attributes: {type: to.parallel}}\n", "ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: p}")+
		triggerDoc("from-parallel", "  filter: {attributes: {type: from.parallel}}\n", svc("from-parallel"))+
		triggerDoc("to-uri", "  filter: {attributes: {type: to.uri}}\n", "uri: "+srv.URL)+
		triggerDoc("failing", "  filter: {attributes: {type: to.failing}}\n  delivery:\n    deadLetterSink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: dlq}}\n", svc("failing"))+
		triggerDoc("from-ping", "  filter: {attributes: {type: "+flows.PingEventType+"}}\n", svc("from-ping")))
	app := start(t, set, reg)
	broker := flow(t, app, "Broker", "default")
	for _, typ := range []string{"to.parallel", "to.uri", "to.failing"} {
		e := event.New()
		e.SetID(typ)
		e.SetType(typ)
		e.SetSource("/test")
		if err := broker.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if e := fromParallel.next(t); e.ID() != "to.parallel" {
		t.Errorf("the Parallel's reply into the broker: %s", e)
	}
	if e := <-uriGot; e.ID() != "to.uri" {
		t.Errorf("the uri subscriber got %s", e)
	}
	d := dead.next(t)
	if d.ID() != "to.failing" || d.Extensions()["knativeerrordest"] == nil {
		t.Errorf("the dead letter through the dlq broker: %s", d)
	}
	if e := fromPing.next(t); e.Type() != flows.PingEventType {
		t.Errorf("the ping through the broker: %s", e)
	}
}

// The app's handler serves each Broker at /<namespace>/<broker> with
// Knative's broker ingress contract, next to the flows' ingresses and
// with their byte budget.
func TestAppHandlerServesBrokers(t *testing.T) {
	got := newRecorder()
	reg := new(manifest.Registry)
	reg.Bind("Service", "s", got)
	set := parse(t, brokerDoc+triggerDoc("t", "", svc("s"))+`---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: events, namespace: shop}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: one}
`)
	app := start(t, set, reg)
	h := app.Handler()
	post := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, ingressRequest(path, io.NopCloser(strings.NewReader("{}")), 2))
		return w
	}
	for path, want := range map[string]int{
		"/default/default": 202, "/default/default/": 202, "/shop/events": 202, "/default/one": 202, "/default/nothere": 404,
	} {
		if w := post(path); w.Code != want {
			t.Errorf("POST %s = %d %q; want %d", path, w.Code, w.Body, want)
		}
	}
	if e := got.next(t); e.ID() != "1" {
		t.Errorf("the trigger got %s", e)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/default/default", nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET = %d, Allow %q; want 405 with Allow: POST, OPTIONS", w.Code, w.Header().Get("Allow"))
	}

	// The budget is the app's: held by requests to a channel, a broker refuses.
	release := fillBudget(h, "/default/one")
	if w := post("/shop/events"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("a broker with the app's budget used up: %d %q, want 503 with Retry-After", w.Code, w.Body)
	}
	release()
}

// Status and WriteStatus show a row per Broker as `kubectl get broker`
// does and a row per Trigger as `kubectl get trigger` does.
func TestBrokerAndTriggerStatus(t *testing.T) {
	set := readSeed(t, "broker")
	app, err := manifest.Build(set, bindAll("Service", "first", "second", "third", "sequence-display"), manifest.WithSchedule("@yearly"))
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer app.Shutdown(context.Background())
	var b bytes.Buffer
	var rows []manifest.Status
	for _, s := range app.Status() {
		if s.Kind == "Broker" || s.Kind == "Trigger" {
			s.Since = time.Time{}
			rows = append(rows, s)
		}
	}
	manifest.WriteStatus(&b, rows, time.Now())
	want := `NAME      URL   AGE      READY   REASON
default         <none>   True

NAME               BROKER    SUBSCRIBER_URI             AGE      READY   REASON
display-trigger    default   Service/sequence-display   <none>   True
sequence-trigger   default   Sequence/sequence          <none>   True
`
	if b.String() != want {
		t.Errorf("status:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Graphs draw each Broker, its Triggers with their filters, subscribers
// and replies.
func TestGraphOfBroker(t *testing.T) {
	g, err := manifest.NewGraph(readSeed(t, "broker"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := g.Mermaid()
	for _, want := range []string{
		`  subgraph g1["Broker default"]`,
		`[["Broker default"]]`,
		`("Trigger sequence-trigger")`,
		`-->|"attributes(type=dev.knative.sources.ping)"|`,
		`-->|"attributes(type=samples.http.mod3)"|`,
		`-.->|"reply"|`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("mermaid lacks %q:\n%s", want, m)
		}
	}
	d := g.DOT()
	for _, want := range []string{`label="Broker default", shape=box3d`, `label="attributes(type=samples.http.mod3)"`} {
		if !strings.Contains(d, want) {
			t.Errorf("dot lacks %q:\n%s", want, d)
		}
	}
}

// WithFlowChannels is asked for the channels of each Broker too (kind
// Broker, the cluster's default channel), and the broker runs on them.
func TestWithFlowChannelsForBrokers(t *testing.T) {
	var asked []manifest.FlowChannels
	var mu sync.Mutex
	var made []string
	choose := func(fc manifest.FlowChannels) ([]flows.Option, error) {
		asked = append(asked, fc)
		return []flows.Option{flows.WithChannels(func(ctx context.Context, name string) (flows.Channel, error) {
			mu.Lock()
			defer mu.Unlock()
			made = append(made, fc.Kind+":"+name)
			return flows.NewInMemoryChannel(16), nil
		})}, nil
	}
	got := newRecorder()
	reg := new(manifest.Registry)
	reg.Bind("Service", "s", got)
	app := start(t, parse(t, brokerDoc+triggerDoc("t", "", svc("s"))), reg, manifest.WithFlowChannels(choose))
	if len(asked) != 1 || asked[0].Kind != "Broker" || asked[0].Name != "default" || asked[0].ChannelKind != manifest.InMemoryChannelKind || !asked[0].Default {
		t.Errorf("asked %+v", asked)
	}
	if !slices.Contains(made, "Broker:default-kne-trigger-t") {
		t.Errorf("channels made: %v", made)
	}
	e := newEvent("1", time.Now(), "{}")
	if err := flow(t, app, "Broker", "default").Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	got.next(t)
}

// Stopping Knative's pattern loses nothing in flight: the Sequence drains
// while the Broker still takes its replies, so an event inside a step when
// Shutdown begins still reaches the event-display.
func TestShutdownDrainsBrokerSequenceLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		display := newRecorder()
		entered, release := make(chan struct{}), make(chan struct{})
		reg := new(manifest.Registry)
		reg.Bind("Service", "first", flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			close(entered)
			<-release
			return appender(" - Handled by 0").Handle(ctx, e)
		}))
		reg.Bind("Service", "second", appender(" - Handled by 1"))
		reg.Bind("Service", "third", flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			reply, err := appender(" - Handled by 2").Handle(ctx, e)
			if reply != nil {
				reply.SetType("samples.http.mod3")
			}
			return reply, err
		}))
		reg.Bind("Service", "sequence-display", display)
		app, err := manifest.Build(readSeed(t, "broker"), reg, manifest.WithSchedule("@yearly"))
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := flow(t, app, "Broker", "default").Send(context.Background(), newEvent("p", time.Now(), `{"message": "Hello world!"}`)); err != nil {
			t.Fatal(err)
		}
		<-entered
		stopped := make(chan error, 1)
		go func() { stopped <- app.Shutdown(context.Background()) }()
		synctest.Wait() // the drain is under way, waiting for the step
		close(release)
		if err := <-stopped; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case e := <-display.ch:
			if string(e.Data()) != `{"id":0,"message":"Hello world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
				t.Errorf("displayed %s", e)
			}
		default:
			t.Error("the event in the Sequence when Shutdown began never reached the display")
		}
	})
}

// A Trigger without spec.delivery takes the Broker's, whole; one with its
// own takes nothing of the Broker's: no dead-letter sink unless it sets one.
func TestTriggerDeliveryDefaultsToTheBrokers(t *testing.T) {
	dead := newRecorder()
	var attempts sync.Map
	failing := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		n, _ := attempts.LoadOrStore(e.ID(), new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return nil, errors.New("boom")
	})
	reg := new(manifest.Registry)
	reg.Bind("Service", "dead", dead)
	reg.Bind("Service", "failing", failing)
	set := parse(t, `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
spec:
  delivery:
    retry: 2
    deadLetterSink: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dead}}
`+triggerDoc("inherits", "  filter: {attributes: {type: a}}\n", svc("failing"))+
		triggerDoc("own", "  filter: {attributes: {type: b}}\n  delivery: {retry: 1}\n", svc("failing")))
	app, err := manifest.Build(set, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	broker := flow(t, app, "Broker", "default")
	for _, typ := range []string{"a", "b"} {
		e := event.New()
		e.SetID(typ)
		e.SetType(typ)
		e.SetSource("/test")
		if err := broker.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	app.Shutdown(context.Background())
	count := func(id string) int32 {
		n, ok := attempts.Load(id)
		if !ok {
			return 0
		}
		return n.(*atomic.Int32).Load()
	}
	if a, b := count("a"), count("b"); a != 3 || b != 2 {
		t.Errorf("attempts: inherits %d (want 3: the broker's retry 2), own %d (want 2: its retry 1)", a, b)
	}
	d := dead.next(t)
	if d.ID() != "a" || d.Extensions()["knativeerrordest"] == nil {
		t.Errorf("dead letter %s", d)
	}
	dead.empty(t)
}
