package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

func lostEvent(id, data string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("t")
	e.SetData(event.ApplicationJSON, []byte(data))
	e.DataBase64 = false // as the ingress decodes it
	return e
}

func stopped(name string, events ...event.Event) error {
	return &manifest.StopError{Kind: "Sequence", Namespace: "default", Name: name, Op: "stopping",
		URL: "http://127.0.0.1:8080/default/" + name + "-kn-sequence-0",
		Err: &flows.UndeliveredError{Events: events, Err: context.DeadlineExceeded}}
}

// Each event is one line, whatever its data: JSON data that spans lines,
// or that is not JSON, is kept byte for byte as data_base64.
func TestEncodeEventOneLine(t *testing.T) {
	for _, data := range []string{`{"a":1}`, "{\n  \"a\": 1\n}", "not json", "<b>&</b>"} {
		b, err := encodeEvent(lostEvent("x", data))
		if err != nil || bytes.ContainsAny(b, "\r\n") {
			t.Fatalf("encodeEvent(%q) = %s, %v", data, b, err)
		}
		var back event.Event
		if err := back.UnmarshalJSON(b); err != nil || string(back.Data()) != data {
			t.Errorf("%s decodes to data %q, %v; want %q", b, back.Data(), err, data)
		}
	}
	if b, _ := encodeEvent(lostEvent("x", `{"a":1}`)); !bytes.Contains(b, []byte(`"data":{"a":1}`)) {
		t.Errorf("one-line JSON data is not inline: %s", b)
	}
}

// A named file is appended to; an event two flows both list is written
// once; each flow's lines and URL are logged.
func TestSaveUndeliveredAppends(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lost.jsonl")
	var logs, fallback bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a, b := lostEvent("a", `{}`), lostEvent("b", `{}`)
	saveUndelivered(errors.Join(stopped("outer", a, b), stopped("inner", b)), file, time.Now(), logger, &fallback)
	saveUndelivered(stopped("outer", a), file, time.Now(), logger, &fallback)
	got, _ := os.ReadFile(file)
	if n := strings.Count(string(got), "\n"); n != 3 || fallback.Len() > 0 {
		t.Errorf("file:\n%s\nwant 3 lines (a, b, then a again); fallback %q", got, fallback.String())
	}
	for _, want := range []string{
		`flow=Sequence/outer lines=1-2 url=http://127.0.0.1:8080/default/outer-kn-sequence-0 resend="sed -n 1,2p ` + file,
		`flow=Sequence/outer lines=1 url=http://127.0.0.1:8080/default/outer-kn-sequence-0 resend="flows send --to http://127.0.0.1:8080/default/outer-kn-sequence-0 --from ` + file + `"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

// When the file cannot be written, the events go to the fallback writer
// (the standard error) rather than nowhere.
func TestSaveUndeliveredFallsBack(t *testing.T) {
	var logs, fallback bytes.Buffer
	file := filepath.Join(t.TempDir(), "missing-dir", "lost.jsonl")
	saveUndelivered(stopped("s", lostEvent("a", `{}`)), file, time.Now(), slog.New(slog.NewTextHandler(&logs, nil)), &fallback)
	if !strings.HasPrefix(fallback.String(), `{"specversion":"1.0","id":"a"`) || !strings.Contains(logs.String(), "cannot be written") {
		t.Errorf("fallback %q; logs:\n%s", fallback.String(), logs.String())
	}
}
