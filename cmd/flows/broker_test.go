package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// retype is an appender that also sets the type, as the docs' third
// appender does with TYPE.
func retype(suffix, typ string) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := appender(suffix).Handle(ctx, e)
		if reply != nil {
			reply.SetType(typ)
		}
		return reply, err
	})
}

// Knative's "Sequence with Broker and Trigger", its YAML unchanged: the
// ping enters the broker, the sequence-trigger feeds the Sequence, whose
// reply re-enters the broker, where the display-trigger shows it.
func TestRunBrokerExample(t *testing.T) {
	p := start(t, "run", "-f", seed+"broker", "--schedule", "* * * * * *", "--listen", "127.0.0.1:0",
		"--bind", "Service/first="+serve(t, appender(" - Handled by 0")),
		"--bind", "Service/second="+serve(t, appender(" - Handled by 1")),
		"--bind", "Service/third="+serve(t, retype(" - Handled by 2", "samples.http.mod3")),
		"--bind", "Service/sequence-display=display")

	// The tables: Sequence, then Broker, then Trigger, as kubectl get shows them.
	p.line(t, "NAME ")
	p.line(t, "sequence ")
	if h := strings.Fields(p.line(t, "NAME ")); strings.Join(h, " ") != "NAME URL AGE READY REASON" {
		t.Errorf("broker table header %q", h)
	}
	row := strings.Fields(p.line(t, "default "))
	if len(row) != 4 || !strings.HasPrefix(row[1], "http://127.0.0.1:") || !strings.HasSuffix(row[1], "/default/default") || row[3] != "True" {
		t.Fatalf("broker row %q", row)
	}
	brokerURL := row[1]
	base := strings.TrimSuffix(brokerURL, "/default/default")
	if h := strings.Fields(p.line(t, "NAME ")); strings.Join(h, " ") != "NAME BROKER SUBSCRIBER_URI AGE READY REASON" {
		t.Errorf("trigger table header %q", h)
	}
	display := strings.Fields(p.line(t, "display-trigger "))
	seq := strings.Fields(p.line(t, "sequence-trigger "))
	if len(display) != 5 || display[1] != "default" || display[2] != "Service/sequence-display" || display[4] != "True" {
		t.Errorf("display-trigger row %q", display)
	}
	if len(seq) != 5 || seq[1] != "default" || seq[2] != base+"/default/sequence-kn-sequence-0" || seq[4] != "True" {
		t.Errorf("sequence-trigger row %q", seq)
	}

	// The event-display gets the docs' result, of the new type, and
	// nothing else: the reply matched only the display-trigger.
	for range 2 {
		if l := p.line(t, "  type: "); l != "  type: samples.http.mod3" {
			t.Errorf("displayed %q", l)
		}
		if l := p.line(t, `    "message": `); l != `    "message": "Hello world! - Handled by 0 - Handled by 1 - Handled by 2"` {
			t.Errorf("displayed %q", l)
		}
	}

	// The broker's ingress, as Knative's: POST only, 202.
	if code := postEvent(t, brokerURL, "cli-1", `{}`); code != http.StatusAccepted {
		t.Errorf("POST %s = %d; want 202", brokerURL, code)
	}
	resp, err := http.Get(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET %s = %d, Allow %q; want 405, POST, OPTIONS", brokerURL, resp.StatusCode, resp.Header.Get("Allow"))
	}
	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, p.stderr)
	}
}

// With --nats, each Trigger of a Broker has a JetStream stream (the Broker
// has no channelTemplate: the cluster's default channel), and the docs'
// example runs the same; the Sequence's InMemoryChannel template stays in
// memory.
func TestBrokerOnNATS(t *testing.T) {
	url := natsServer(t)
	p := start(t, "run", "-f", seed+"broker", "--schedule", "* * * * * *", "--nats", url, "--nats-prefix", "brk",
		"--bind", "Service/first="+serve(t, appender(" - Handled by 0")),
		"--bind", "Service/second="+serve(t, appender(" - Handled by 1")),
		"--bind", "Service/third="+serve(t, retype(" - Handled by 2", "samples.http.mod3")),
		"--bind", "Service/sequence-display=display")
	if l := p.line(t, `    "message": `); l != `    "message": "Hello world! - Handled by 0 - Handled by 1 - Handled by 2"` {
		t.Errorf("displayed %q", l)
	}
	out, err := status(t, "--nats", url, "--nats-prefix", "brk")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var streams []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		streams = append(streams, strings.Fields(l)[0])
	}
	if want := "brk_default_default-kne-trigger-display-trigger brk_default_default-kne-trigger-sequence-trigger"; strings.Join(streams, " ") != want {
		t.Errorf("streams %q, want %q:\n%s", streams, want, out)
	}
	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, p.stderr)
	}
}

// validate reports every filter problem with file, object and field, and
// a Trigger on a Broker that does not exist; graph draws brokers and
// triggers with their filters.
func TestValidateAndGraphBrokers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "t.yaml")
	os.WriteFile(file, []byte(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: orders}
spec:
  broker: default
  filters:
  - prefix: {type: com.example.}
  - cesql: "type = 'a' AND"
  - any: [{exact: {Type: x}}]
  subscriber: {uri: "http://127.0.0.1:1/"}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: lost}
spec:
  broker: other
  subscriber: {uri: "http://127.0.0.1:1/"}
`), 0o644)
	out, err := exec.Command(bin, "validate", "-f", file).CombinedOutput()
	for _, want := range []string{
		file + `: Trigger "orders": spec.filters[1].cesql: `,
		file + `: Trigger "orders": spec.filters[2].any[0].exact: attribute name "Type": must be lower-case letters and digits, starting with a letter`,
		file + `: Trigger "lost": spec.broker: Broker "other" is not declared in the manifests`,
	} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("validate: %v\n%s\nwant %q", err, out, want)
		}
	}
	out, err = exec.Command(bin, "graph", "-f", seed+"broker", "--format", "dot").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `label="Broker default", shape=box3d`) ||
		!strings.Contains(string(out), `[label="attributes(type=dev.knative.sources.ping)"]`) {
		t.Errorf("graph: %v\n%s", err, out)
	}
}
