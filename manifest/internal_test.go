package manifest

import (
	"slices"
	"testing"
	"time"

	"github.com/eventflows/flows"
)

// Knative's DeliverySpec maps onto flows.Delivery field by field, except
// that Knative computes no backoff unless both policy and delay are given.
func TestDeliveryMapping(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want flows.Delivery
	}{
		{`{retry: 3, backoffPolicy: exponential, backoffDelay: PT0.2S}`,
			flows.Delivery{Retry: 3, BackoffPolicy: flows.BackoffExponential, BackoffDelay: 200 * time.Millisecond}},
		{`{retry: 3, backoffPolicy: linear, backoffDelay: PT1S}`,
			flows.Delivery{Retry: 3, BackoffPolicy: flows.BackoffLinear, BackoffDelay: time.Second}},
		{`{retry: 3, backoffDelay: PT1S}`, flows.Delivery{Retry: 3}},
		{`{retry: 3, backoffPolicy: linear}`, flows.Delivery{Retry: 3}},
		{`{timeout: PT5S, retryAfterMax: PT30S}`, flows.Delivery{Timeout: 5 * time.Second, RetryAfterMax: 30 * time.Second}},
		{`{retryAfterMax: PT0S}`, flows.Delivery{}},
		{`{}`, flows.Delivery{}},
	} {
		set, err := Parse("d.yaml", []byte(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - uri: http://127.0.0.1:9
    delivery: `+tt.yaml+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		app, err := Build(set, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := app.flows[0].steps[0].delivery.build(); *got != tt.want {
			t.Errorf("delivery %s = %+v; want %+v", tt.yaml, *got, tt.want)
		}
	}
}

func TestJSONDataAsKnativeConvertsIt(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"message": "hello, world!"}`, `{"message":"hello, world!"}`},
		{`{"b": 1, "a": [1, 2]}`, `{"a":[1,2],"b":1}`},
		{`hello`, `{"body":"hello"}`},
		{`[1, 2]`, `{"body":"[1, 2]"}`},
	} {
		if got := jsonDataMessage(tt.in); got != tt.want {
			t.Errorf("jsonData %s sends %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestSplitDocuments(t *testing.T) {
	for _, tt := range []struct {
		in    string
		want  []string
		lines []int // where each document starts in the file
	}{
		{"a: 1\n", []string{"a: 1\n"}, []int{1}},
		{"---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n", []string{"a: 1\n", "b: 2\n"}, []int{2, 6}},
		{"\xef\xbb\xbfa: 1\r\n--- # c\r\nb: 2", []string{"a: 1\r\n", "b: 2"}, []int{1, 3}},
		{"--- {a: 1}\n---\n\n", []string{"{a: 1}\n"}, []int{1}},
		{"a: |\n  ---x\n----\n", []string{"a: |\n  ---x\n----\n"}, []int{1}},
		{"a: 1\n--- {b: 2}\n", []string{"a: 1\n", "{b: 2}\n"}, []int{1, 2}},
	} {
		var got []string
		var lines []int
		for _, d := range splitDocuments([]byte(tt.in)) {
			got = append(got, string(d.text))
			lines = append(lines, d.line)
		}
		if !slices.Equal(got, tt.want) || !slices.Equal(lines, tt.lines) {
			t.Errorf("split %q = %q at lines %v; want %q at lines %v", tt.in, got, lines, tt.want, tt.lines)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {5 * time.Second, "5s"}, {119 * time.Second, "119s"}, {200 * time.Second, "3m20s"},
		{5 * time.Minute, "5m"}, {59 * time.Minute, "59m"}, {3*time.Hour + 48*time.Minute, "3h48m"},
		{20 * time.Hour, "20h"}, {50 * time.Hour, "2d2h"}, {30 * 24 * time.Hour, "30d"},
	} {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%s) = %s; want %s", tt.d, got, tt.want)
		}
	}
}
