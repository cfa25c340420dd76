package manifest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// replier answers each event with one of type com.example.answer whose
// replyid is the event's correlationid, as the example's answerer does.
func replier() flows.Handler {
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := event.New()
		r.SetID("answer-" + e.ID())
		r.SetSource("/answerer")
		r.SetType("com.example.answer")
		r.SetExtension("replyid", e.Extensions()["correlationid"])
		_ = r.SetData(event.ApplicationJSON, map[string]string{"answer": "because"})
		return &r, nil
	})
}

// The example's RequestReply, served by the app's handler at
// /default/ask beside the Broker: a POST gets the answerer's reply.
func TestRequestReplyExampleYAML(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := new(manifest.Registry)
		reg.Bind("Service", "answerer", replier())
		app := start(t, readSeed(t, "requestreply"), reg)
		req := httptest.NewRequest(http.MethodPost, "/default/ask", strings.NewReader(`{"question":"why?"}`))
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", "q-1")
		req.Header.Set("Ce-Source", "/curl")
		req.Header.Set("Ce-Type", "com.example.question")
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		app.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusOK || w.Header().Get("Ce-Id") != "answer-q-1" || !strings.HasPrefix(w.Header().Get("Ce-Replyid"), "q-1:") ||
			w.Body.String() != `{"answer":"because"}` {
			t.Errorf("POST /default/ask = %d %v %q", w.Code, w.Header(), w.Body)
		}
		rr, err := app.RequestReply("ask")
		if err != nil {
			t.Fatal(err)
		}
		if s := rr.Stats(); s.Answered != 1 {
			t.Errorf("Stats = %+v", s)
		}
		if _, err := app.RequestReply("asq"); !errors.Is(err, manifest.ErrNoFlow) || !strings.Contains(err.Error(), `the app has "ask"`) {
			t.Errorf("RequestReply(asq) = %v", err)
		}
	})
}

// spec.timeout is honoured: PT10S waits 10 s of fake time, then 504.
func TestRequestReplyTimeoutFromTheManifest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := new(manifest.Registry)
		reg.Bind("Service", "answerer", flows.Discard)
		app := start(t, readSeed(t, "requestreply"), reg)
		rr, err := app.RequestReply("ask")
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		e := newEvent("q-1", begin, `{}`)
		e.SetType("com.example.question")
		if _, err := rr.Request(context.Background(), e); !errors.Is(err, flows.ErrReplyTimeout) {
			t.Fatalf("Request = %v; want ErrReplyTimeout", err)
		}
		if d := time.Since(begin); d != 10*time.Second {
			t.Errorf("timed out after %s; want 10s (spec.timeout PT10S)", d)
		}
	})
}

const rrBroker = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n"

func rrDoc(name, spec string) string {
	return "---\napiVersion: eventing.knative.dev/v1alpha1\nkind: RequestReply\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

const brokerRef = "  brokerRef: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n"

// Knative's defaults: correlationid, replyid, PT30S.
func TestRequestReplyDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := start(t, parse(t, rrBroker+rrDoc("ask", brokerRef)), nil)
		broker := flow(t, app, "Broker", "default")
		rr, err := app.RequestReply("ask")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		begin := time.Now()
		go func() {
			_, err := rr.Request(context.Background(), newEvent("q-1", begin, `{}`))
			got <- err
		}()
		synctest.Wait()
		// No Trigger: the reply comes from elsewhere, with a forged value
		// first, which is dropped.
		forged := newEvent("a-0", begin, `{}`)
		forged.SetExtension("replyid", "q-1:x:0")
		broker.Send(context.Background(), forged)
		synctest.Wait()
		select {
		case err := <-got:
			t.Fatalf("a forged reply answered: %v", err)
		default:
		}
		time.Sleep(30 * time.Second) // fake time
		if err := <-got; !errors.Is(err, flows.ErrReplyTimeout) || time.Since(begin) != 30*time.Second {
			t.Errorf("Request = %v after %s; want ErrReplyTimeout after 30s", err, time.Since(begin))
		}
		if s := rr.Stats(); s.Dropped != 1 {
			t.Errorf("Stats = %+v; want 1 dropped", s)
		}
	})
}

// Every problem of a RequestReply, with file, object and field.
func TestRequestReplyProblemsNameFileObjectField(t *testing.T) {
	_, err := build(t, []file{{"rr.yaml", rrBroker +
		rrDoc("nobroker", "  brokerRef: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: defualt}\n") +
		rrDoc("kind", "  brokerRef: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: default, namespace: other}\n") +
		rrDoc("noversion", "  brokerRef: {kind: Broker, name: default}\n") +
		rrDoc("missing", "  timeout: PT1S\n") +
		rrDoc("attrs", brokerRef+"  correlationAttribute: source\n  replyAttribute: Reply-Id\n") +
		rrDoc("same", brokerRef+"  replyAttribute: correlationid\n") +
		rrDoc("timeout", brokerRef+"  timeout: 10s\n") +
		rrDoc("zero", brokerRef+"  timeout: PT0S\n") +
		rrDoc("typo", brokerRef+"  timout: PT10S\n  delivery: {retry: -1}\n") +
		"---\napiVersion: eventing.knative.dev/v1alpha1\nkind: RequestReply\nmetadata: {name: default}\nspec:\n" + brokerRef,
	}}, nil)
	want := []string{
		`rr.yaml: RequestReply "nobroker": spec.brokerRef.name: Broker "defualt" is not declared in the manifests; did you mean "default"?`,
		`rr.yaml: RequestReply "kind": spec.brokerRef.kind: "InMemoryChannel": a RequestReply's brokerRef must be a Broker`,
		`rr.yaml: RequestReply "kind": spec.brokerRef.namespace: not allowed`,
		`rr.yaml: RequestReply "kind": spec.brokerRef.apiVersion: "messaging.knative.dev/v1": a Broker is eventing.knative.dev/v1`,
		`rr.yaml: RequestReply "noversion": spec.brokerRef.apiVersion: missing; want eventing.knative.dev/v1`,
		`rr.yaml: RequestReply "missing": spec.brokerRef: missing`,
		`rr.yaml: RequestReply "attrs": spec.correlationAttribute: "source" is a CloudEvents attribute`,
		`rr.yaml: RequestReply "attrs": spec.replyAttribute: "Reply-Id" is not an extension name`,
		`rr.yaml: RequestReply "same": spec.replyAttribute: "correlationid" is also the correlationAttribute`,
		`rr.yaml: RequestReply "timeout": spec.timeout: invalid duration "10s": does not start with "P"`,
		`rr.yaml: RequestReply "zero": spec.timeout: "PT0S": must be a positive duration`,
		`rr.yaml: RequestReply "typo": spec.timout: unknown field; did you mean "timeout"?`,
		`rr.yaml: RequestReply "typo": spec.delivery.retry: must be >= 0, got -1`,
		`rr.yaml: RequestReply "default": metadata.name: the ingress of RequestReply "default" has the path of Broker "default": both would be served at /default/default`,
	}
	wantProblems(t, err, want)
}

// Status has a row per RequestReply with its URL, as `kubectl get
// requestreply`; the graph draws it with an edge to its Broker.
func TestRequestReplyStatusAndGraph(t *testing.T) {
	reg := new(manifest.Registry)
	reg.Bind("Service", "answerer", replier())
	app := start(t, readSeed(t, "requestreply"), reg)
	srv, err := app.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	var row *manifest.Status
	for _, s := range app.Status() {
		if s.Kind == "RequestReply" {
			row = &s
		}
	}
	if row == nil || row.Name != "ask" || row.URL != srv.URL()+"/default/ask" || row.Ready != "True" {
		t.Fatalf("status row %+v", row)
	}
	var out bytes.Buffer
	manifest.WriteStatus(&out, app.Status(), time.Now())
	if !strings.Contains(out.String(), "NAME   URL                                  AGE   READY   REASON\nask    "+srv.URL()+"/default/ask") {
		t.Errorf("WriteStatus:\n%s", out.String())
	}
	g := app.Graph()
	for _, want := range []string{
		`>"RequestReply ask<br/>timeout 10s"]`, `-->|"request (correlationid)"|`, `-.->|"reply (replyid)"|`,
	} {
		if !strings.Contains(g.Mermaid(), want) {
			t.Errorf("Mermaid lacks %q:\n%s", want, g.Mermaid())
		}
	}
	if !strings.Contains(g.DOT(), `[label="RequestReply ask\ntimeout 10s", shape=cds]`) {
		t.Errorf("DOT:\n%s", g.DOT())
	}
}

// A ref to a RequestReply is refused with the reason, rather than looked up
// in the registry as an undeclared object would be.
func TestRequestReplyIsNotADestination(t *testing.T) {
	set := parse(t, brokerDoc+requestReplyDoc("quotes")+`---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: RequestReply, name: quotes}
`)
	_, err := manifest.Build(set, new(manifest.Registry))
	want := `Sequence "s": spec.steps[0].ref: RequestReply "quotes" is not supported as a destination: it answers HTTP requests at /default/quotes`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Build = %v\nwant %s", err, want)
	}
}

// A uri naming the app's own address at a RequestReply's path is that
// RequestReply, served over HTTP: not "no flow is served there".
func TestOwnRequestReplyURLIsADestination(t *testing.T) {
	set := parse(t, brokerDoc+requestReplyDoc("ask")+`---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - uri: http://127.0.0.1:8080/default/ask
  - uri: http://127.0.0.1:8080/default/nothing
`)
	_, err := manifest.Build(set, new(manifest.Registry), manifest.WithServeAddress("127.0.0.1:8080"))
	if err == nil || strings.Contains(err.Error(), "steps[0]") || !strings.Contains(err.Error(), `spec.steps[1].uri: http://127.0.0.1:8080/default/nothing is this app's own address`) {
		t.Errorf("Build = %v\nwant only steps[1] refused", err)
	}
}

// requestReplyDoc is a RequestReply of that name on the Broker of brokerDoc.
func requestReplyDoc(name string) string {
	return "---\napiVersion: eventing.knative.dev/v1alpha1\nkind: RequestReply\nmetadata: {name: " + name +
		"}\nspec:\n  brokerRef: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n"
}
