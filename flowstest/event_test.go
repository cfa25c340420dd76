package flowstest_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/eventflows/flows/flowstest"
)

func TestNewEvent(t *testing.T) {
	want := `{"id":1,"tags":["a"]}`
	for name, data := range map[string]any{
		"string":          want,
		"bytes":           []byte(want),
		"json.RawMessage": json.RawMessage(want),
		"value": struct {
			ID   int      `json:"id"`
			Tags []string `json:"tags"`
		}{1, []string{"a"}},
	} {
		e := flowstest.NewEvent("1", "order", "/shop", data)
		if err := e.Validate(); err != nil {
			t.Errorf("%s: invalid event: %v", name, err)
		}
		if string(e.Data()) != want || e.DataContentType() != "application/json" || e.DataBase64 {
			t.Errorf("%s: data %s (%s, base64 %v), want %s as application/json", name, e.Data(), e.DataContentType(), e.DataBase64, want)
		}
	}

	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	e := flowstest.NewEvent("1", "order", "/shop", nil,
		flowstest.WithTime(at), flowstest.WithSubject("s1"), flowstest.WithExtension("tenant", "acme"))
	if e.Data() != nil || e.DataContentType() != "" || !e.Time().Equal(at) || e.Subject() != "s1" || e.Extensions()["tenant"] != "acme" {
		t.Errorf("options not applied: %s", e)
	}
	e = flowstest.NewEvent("1", "order", "/shop", `{"a":1}`, flowstest.WithData("text/plain", []byte("hi")))
	if string(e.Data()) != "hi" || e.DataContentType() != "text/plain" {
		t.Errorf("WithData: data %q (%s), want hi as text/plain", e.Data(), e.DataContentType())
	}
}

func TestNewEventPanicsOnBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		call func()
		msg  string
	}{
		{"not JSON", func() { flowstest.NewEvent("1", "t", "/s", "hello") }, `flowstest: NewEvent "1": data hello is not valid JSON text`},
		{"not encodable", func() { flowstest.NewEvent("1", "t", "/s", func() {}) }, `flowstest: NewEvent "1": encoding data func() as JSON`},
		{"bad extension", func() { flowstest.NewEvent("1", "t", "/s", nil, flowstest.WithExtension("Bad-Name!", 1)) }, `flowstest: NewEvent "1": extension:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, tc.msg) {
					t.Errorf("panic %v, want a message starting with %q", r, tc.msg)
				}
			}()
			tc.call()
		})
	}
}

func TestSummary(t *testing.T) {
	e := flowstest.NewEvent("1", "t", "/s", map[string]string{"text": strings.Repeat("x", 300)}, flowstest.WithExtension("b", 2), flowstest.WithExtension("a", "x"))
	s := flowstest.Summary(e)
	if !strings.HasPrefix(s, `id="1" type="t" source="/s" a="x" b="2" data={"text":"xxx`) || !strings.HasSuffix(s, "x...") {
		t.Errorf("Summary = %s", s)
	}
	e = flowstest.NewEvent("1", "t", "/s", nil, flowstest.WithData("application/octet-stream", []byte{0, 1}))
	if s := flowstest.Summary(e); s != `id="1" type="t" source="/s" data="\x00\x01"` {
		t.Errorf("Summary of binary data = %s", s)
	}
}
