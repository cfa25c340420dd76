package flowstest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// An EventOption sets an attribute of an event built by [NewEvent].
type EventOption func(*event.Event)

// NewEvent returns a CloudEvents 1.0 event with the given id, type and
// source and with data as JSON (datacontenttype application/json):
//
//   - nil: no data and no datacontenttype;
//   - a string, []byte or [json.RawMessage]: JSON text, used as is;
//   - anything else: encoded with [encoding/json].
//
// So NewEvent("1", "order.created", "/shop", `{"id":1}`) and
// NewEvent("1", "order.created", "/shop", map[string]int{"id": 1}) build the
// same event. To send a JSON string, encode it first (`"\"hello\""`); for data
// that is not JSON, use [WithData].
//
// Like [net/http/httptest.NewRequest], NewEvent is for tests and panics
// on bad input (data that is not valid JSON, an invalid extension), with a
// message that says what is wrong.
func NewEvent(id, typ, source string, data any, opts ...EventOption) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	var text []byte
	switch d := data.(type) {
	case nil:
	case string:
		text = []byte(d)
	case []byte:
		text = d
	case json.RawMessage:
		text = d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			panic(fmt.Sprintf("flowstest: NewEvent %q: encoding data %T as JSON: %v", id, data, err))
		}
		text = b
	}
	if data != nil {
		if !json.Valid(text) {
			panic(fmt.Sprintf("flowstest: NewEvent %q: data %s is not valid JSON text (encode a JSON string first, or use WithData for other content types)", id, clip(string(text))))
		}
		e.SetDataContentType(event.ApplicationJSON)
		e.DataEncoded = text
	}
	for _, o := range opts {
		o(&e)
	}
	if len(e.FieldErrors) > 0 {
		panic(fmt.Sprintf("flowstest: NewEvent %q: %v", id, joinFieldErrors(e.FieldErrors)))
	}
	return e
}

// WithExtension sets the extension name to value (a string, bool, integer,
// []byte, URL or time.Time, as CloudEvents allows).
func WithExtension(name string, value any) EventOption {
	return func(e *event.Event) { e.SetExtension(name, value) }
}

// WithTime sets the time attribute.
func WithTime(t time.Time) EventOption {
	return func(e *event.Event) { e.SetTime(t) }
}

// WithSubject sets the subject attribute.
func WithSubject(s string) EventOption {
	return func(e *event.Event) { e.SetSubject(s) }
}

// WithData replaces the data and datacontenttype, for data that is not JSON.
func WithData(contentType string, data []byte) EventOption {
	return func(e *event.Event) {
		e.SetDataContentType(contentType)
		e.DataEncoded = data
		e.DataBase64 = false
	}
}

func joinFieldErrors(errs map[string]error) string {
	var parts []string
	for k, err := range errs {
		parts = append(parts, k+": "+err.Error())
	}
	return strings.Join(sorted(parts), "; ")
}

// Summary returns a one-line description of e for test messages: its id,
// type, source, subject, extensions and data (JSON data compacted, long data
// cut).
func Summary(e event.Event) string {
	if e.Context == nil {
		return "(event without attributes)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "id=%q type=%q source=%q", e.ID(), e.Type(), e.Source())
	if s := e.Subject(); s != "" {
		fmt.Fprintf(&b, " subject=%q", s)
	}
	exts := e.Extensions()
	for _, k := range sortedKeys(exts) {
		fmt.Fprintf(&b, " %s=%q", k, formatValue(exts[k]))
	}
	if len(e.Data()) > 0 {
		b.WriteString(" data=")
		b.WriteString(clip(compactData(e)))
	}
	return b.String()
}

// compactData renders e's data: compact JSON when it is JSON, else the
// quoted bytes.
func compactData(e event.Event) string {
	d := e.Data()
	if isJSONType(e.DataContentType()) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, d); err == nil {
			return buf.String()
		}
	}
	return fmt.Sprintf("%q", d)
}

const maxClip = 200

func clip(s string) string {
	if len(s) <= maxClip {
		return s
	}
	return s[:maxClip] + "..."
}

// IDs returns the ids of events, in order: a short way to assert which
// events reached a subscriber.
func IDs(events []event.Event) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID()
	}
	return ids
}

// ErrorData returns the decoded knativeerrordata extension of a dead
// letter ([flows.ExtensionErrorData]): the failed response's body or the
// error's text. It returns "" if e has none, or the raw value if it is not
// base64.
func ErrorData(e event.Event) string {
	v, ok := e.Extensions()[flows.ExtensionErrorData]
	if !ok {
		return ""
	}
	s := formatValue(v)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return s
	}
	return string(b)
}
