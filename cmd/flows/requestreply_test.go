package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// answerer replies to a question with its correlationid as replyid, as
// the example's Service does.
func answerer() flows.Handler {
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := event.New()
		r.SetID("answer-" + e.ID())
		r.SetSource("/answerer")
		r.SetType("com.example.answer")
		r.SetExtension("replyid", e.Extensions()["correlationid"])
		_ = r.SetData(event.ApplicationJSON, map[string]string{"answer": "because " + string(e.Data())})
		return &r, nil
	})
}

// examples/manifests/requestreply run by the command: the RequestReply's
// row shows its URL on the brokers' listener, and a POST there is
// answered with the reply of the Service, over HTTP.
func TestRunRequestReplyExample(t *testing.T) {
	p := start(t, "run", "-f", seed+"requestreply", "--listen", "127.0.0.1:0",
		"--bind", "Service/answerer="+serve(t, answerer()))
	p.line(t, "NAME ") // the Broker's table
	broker := strings.Fields(p.line(t, "default "))
	p.line(t, "NAME ") // the Trigger's
	p.line(t, "answer ")
	if h := strings.Fields(p.line(t, "NAME ")); strings.Join(h, " ") != "NAME URL AGE READY REASON" {
		t.Errorf("requestreply table header %q", h)
	}
	row := strings.Fields(p.line(t, "ask "))
	if len(row) != 4 || len(broker) != 4 || row[1] != strings.TrimSuffix(broker[1], "/default/default")+"/default/ask" || row[3] != "True" {
		t.Fatalf("requestreply row %q (broker %q)", row, broker)
	}
	req, _ := http.NewRequest(http.MethodPost, row[1], strings.NewReader(`"why?"`))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "q-1")
	req.Header.Set("Ce-Source", "/cli-test")
	req.Header.Set("Ce-Type", "com.example.question")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Ce-Id") != "answer-q-1" ||
		!strings.HasPrefix(resp.Header.Get("Ce-Replyid"), "q-1:") || string(body) != `{"answer":"because \"why?\""}` {
		t.Errorf("POST %s = %d %v %s", row[1], resp.StatusCode, resp.Header, body)
	}
	if err := p.interrupt(t); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, p.stderr)
	}
}

// validate names the field of a bad RequestReply; graph draws the example
// with its edge to the Broker.
func TestValidateAndGraphRequestReply(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rr.yaml")
	os.WriteFile(file, []byte(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: RequestReply
metadata: {name: ask}
spec:
  brokerRef: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: defaults}
  timeout: 10s
`), 0o644)
	out, err := exec.Command(bin, "validate", "-f", file).CombinedOutput()
	for _, want := range []string{
		file + `: RequestReply "ask": spec.brokerRef.name: Broker "defaults" is not declared in the manifests; did you mean "default"?`,
		file + `: RequestReply "ask": spec.timeout: invalid duration "10s"`,
	} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("validate: %v\n%s\nwant %q", err, out, want)
		}
	}
	out, err = exec.Command(bin, "validate", "-f", seed+"requestreply", "--bind", "Service/answerer=discard").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: 4 objects") {
		t.Errorf("validate the example: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "graph", "-f", seed+"requestreply", "--format", "dot").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `[label="RequestReply ask\ntimeout 10s", shape=cds]`) ||
		!strings.Contains(string(out), `[label="request (correlationid)"]`) {
		t.Errorf("graph: %v\n%s", err, out)
	}
}
