package flows

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

func validEventForTest() event.Event {
	e := event.New()
	e.SetID("1")
	e.SetSource("/src")
	e.SetType("t")
	return e
}

// plainValid is a shortcut for the SDK's validation: it may only accept
// events that Validate accepts.
func TestPlainValidNeverAcceptsWhatValidateRefuses(t *testing.T) {
	str := func(s string) *string { return &s }
	v1 := func(e *event.Event) *event.EventContextV1 { return e.Context.(*event.EventContextV1) }
	cases := map[string]func(e *event.Event){
		"plain":              func(*event.Event) {},
		"json":               func(e *event.Event) { e.SetDataContentType(event.ApplicationJSON) },
		"charset":            func(e *event.Event) { e.SetDataContentType("application/json; charset=utf-8") },
		"protobuf":           func(e *event.Event) { e.SetDataContentType("application/x-protobuf") },
		"odd content type":   func(e *event.Event) { e.SetDataContentType("application/vnd.x+json;v=2") },
		"bad content type":   func(e *event.Event) { e.SetDataContentType("not a / media type") },
		"blank content type": func(e *event.Event) { v1(e).DataContentType = str(" ") },
		"blank id":           func(e *event.Event) { v1(e).ID = "  " },
		"blank type":         func(e *event.Event) { v1(e).Type = "" },
		"no source":          func(e *event.Event) { v1(e).Source = types.URIRef{} },
		"blank source":       func(e *event.Event) { v1(e).Source.URL.Opaque = " " },
		"absolute source":    func(e *event.Event) { e.SetSource("https://example.com/x?y=1") },
		"opaque source":      func(e *event.Event) { e.SetSource("urn:uuid:6e8bc430") },
		"blank subject":      func(e *event.Event) { v1(e).Subject = str(" ") },
		"subject":            func(e *event.Event) { e.SetSubject("s") },
		"time":               func(e *event.Event) { e.SetTime(time.Now()) },
		"schema":             func(e *event.Event) { e.SetDataSchema("https://example.com/schema") },
		"field error":        func(e *event.Event) { e.SetSource("%zz") },
		"extension":          func(e *event.Event) { e.SetExtension("knativeerrorcode", 500) },
		"v03":                func(e *event.Event) { e.SetSpecVersion(event.CloudEventsVersionV03) },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			e := validEventForTest()
			change(&e)
			if plainValid(e) {
				if err := e.Validate(); err != nil {
					t.Errorf("plainValid accepts an event Validate refuses: %v", err)
				}
			}
		})
	}
	if e := validEventForTest(); !plainValid(e) {
		t.Error("plainValid refuses a plain event: the shortcut is never taken")
	}
}

// ownEvent copies what EventContextV1.Clone copies, in one allocation.
func TestOwnEventCopiesAsTheSDKClones(t *testing.T) {
	e := validEventForTest()
	e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	e.SetDataSchema("https://example.com/schema")
	e.SetSubject("s")
	e.SetExtension("ext", "v")
	e.SetData(event.ApplicationJSON, map[string]int{"n": 1})
	own, err := ownEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(own.Context, e.Context.Clone()) || !reflect.DeepEqual(own.Data(), e.Data()) {
		t.Errorf("ownEvent = %s, want %s", own, e)
	}
	// Changes to the caller's event, through setters or in place, stay there.
	e.SetExtension("ext", "changed")
	e.Context.(*event.EventContextV1).Time.Time = time.Time{}
	e.Context.(*event.EventContextV1).DataSchema.Path = "/changed"
	e.SetID("2")
	if own.ID() != "1" || own.Extensions()["ext"] != "v" || own.Time().IsZero() || own.DataSchema() != "https://example.com/schema" {
		t.Errorf("the flow's copy changed with the caller's event: %s", own)
	}
	if _, err := ownEvent(event.Event{}); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("ownEvent(zero event) = %v, want ErrInvalidEvent", err)
	}
	v03 := validEventForTest()
	v03.SetSpecVersion(event.CloudEventsVersionV03)
	if own, err := ownEvent(v03); err != nil || own.SpecVersion() != event.CloudEventsVersionV03 || own.Context == v03.Context {
		t.Errorf("ownEvent(v0.3 event) = %v, %v; want a copy", own, err)
	}
}

// copyEvent with data is e.Clone.
func TestCopyEventIsClone(t *testing.T) {
	e := validEventForTest()
	e.SetTime(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	e.SetExtension("ext", 1)
	e.SetData(event.ApplicationJSON, map[string]int{"n": 1})
	e.SetSource("%zz") // a field error travels with the copy
	for _, in := range []event.Event{e, validEventForTest()} {
		got, want := copyEvent(in, true), in.Clone()
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("copyEvent = %#v\nwant %#v", *got, want)
		}
		if len(in.DataEncoded) > 0 {
			got.DataEncoded[0] = 'X'
			if in.DataEncoded[0] == 'X' {
				t.Error("the copy shares its data")
			}
		}
	}
}
