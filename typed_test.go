package flows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// Typed encodes its reply as e.SetData(application/json, out) does.
func TestTypedEncodesAsTheSDK(t *testing.T) {
	type point struct{ X, Y int }
	check := func(name string, h flows.Handler, out any, contentType string) {
		t.Helper()
		in := newEvent("1", map[string]int{"n": 1})
		if contentType != "" {
			in.SetDataContentType(contentType)
		}
		got, err := h.Handle(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := in.Clone()
		if err := want.SetData(event.ApplicationJSON, out); err != nil {
			t.Fatal(err)
		}
		if string(got.Data()) != string(want.Data()) || got.DataContentType() != want.DataContentType() || got.DataBase64 != want.DataBase64 {
			t.Errorf("%s: reply data %q (%s, base64 %v), want %q (%s, base64 %v)", name,
				got.Data(), got.DataContentType(), got.DataBase64, want.Data(), want.DataContentType(), want.DataBase64)
		}
	}
	check("struct", flows.Typed(func(context.Context, any) (point, error) { return point{1, 2}, nil }), point{1, 2}, "")
	check("charset", flows.Typed(func(context.Context, any) (point, error) { return point{1, 2}, nil }), point{1, 2}, "application/json; charset=utf-8")
	check("pointer", flows.Typed(func(context.Context, any) (*point, error) { return nil, nil }), (*point)(nil), "")
	check("nil any", flows.Typed(func(context.Context, any) (any, error) { return nil, nil }), nil, "")
	check("raw JSON", flows.Typed(func(context.Context, any) (json.RawMessage, error) { return json.RawMessage(`{"a":1}`), nil }), json.RawMessage(`{"a":1}`), "")
	check("bytes", flows.Typed(func(context.Context, any) ([]byte, error) { return []byte("plain"), nil }), []byte("plain"), "")
	check("string", flows.Typed(func(context.Context, any) (string, error) { return "s", nil }), "s", "")
	check("map", flows.Typed(func(context.Context, any) (map[string]int, error) { return map[string]int{"b": 2, "a": 1}, nil }), map[string]int{"a": 1, "b": 2}, "")
}

// Typed decodes every JSON media type, and reports bad data permanently.
func TestTypedDecodesEveryJSONMediaType(t *testing.T) {
	var seen []int
	h := flows.Typed(func(_ context.Context, in struct{ N int }) (struct{}, error) {
		seen = append(seen, in.N)
		return struct{}{}, nil
	})
	for i, ct := range []string{"", event.ApplicationJSON, "application/json; charset=utf-8", event.TextJSON, "application/vnd.x+json"} {
		e := newEvent(strconv.Itoa(i), nil)
		e.SetData(event.ApplicationJSON, []byte(fmt.Sprintf(`{"N":%d}`, i)))
		e.SetDataContentType(ct)
		if _, err := h.Handle(context.Background(), e); err != nil {
			t.Errorf("content type %q: %v", ct, err)
		}
	}
	if !slices.Equal(seen, []int{0, 1, 2, 3, 4}) {
		t.Errorf("decoded %v", seen)
	}
	bad := newEvent("x", nil)
	bad.SetData(event.ApplicationJSON, []byte(`{"N":`))
	if _, err := h.Handle(context.Background(), bad); !flows.IsPermanent(err) {
		t.Errorf("bad data: %v, want a permanent error", err)
	}
}
