package manifest_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

type file struct{ name, text string }

// build parses the files and builds them against a registry binding each
// name in bound to a Go handler.
func build(t *testing.T, files []file, reg *manifest.Registry, opts ...manifest.Option) (*manifest.App, error) {
	t.Helper()
	set := new(manifest.Set)
	for _, f := range files {
		set.Add(f.name, []byte(f.text))
	}
	return manifest.Build(set, reg, opts...)
}

// wantProblems checks that err reports exactly the problems of want, one
// per line, each line starting with one of them, in any order.
func wantProblems(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("Build succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("no problem starting with %q in:\n%s", w, err)
		}
	}
}

func bindAll(kind string, names ...string) *manifest.Registry {
	reg := new(manifest.Registry)
	for _, n := range names {
		reg.Bind(kind, n, flows.Discard)
	}
	return reg
}

func seed(t *testing.T, name string) file {
	t.Helper()
	b, err := os.ReadFile("../examples/manifests/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return file{name[strings.LastIndex(name, "/")+1:], string(b)}
}

const seqHead = `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: s
spec:
  steps:
`

const stepFirst = `  - ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: first
`

func TestBrokenManifests(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []file
		reg   *manifest.Registry
		want  []string // the error's lines, exactly
	}{
		{
			name:  "seed sequence with a step not bound",
			files: []file{seed(t, "sequence/sequence.yaml")},
			reg:   bindAll("Service", "first", "second"),
			want:  []string{`sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"`},
		},
		{
			name:  "seed parallel: the reply is a v1 Service, not declared, not bound",
			files: []file{seed(t, "parallel/services.yaml"), seed(t, "parallel/parallel.yaml")},
			reg:   bindAll("Service", "even-filter", "odd-filter", "even-transformer", "odd-transformer"),
			want:  []string{`parallel.yaml: Parallel "odd-even-parallel": spec.reply.ref: no binding for Service "event-display"`},
		},
		{
			name:  "declared service that nothing uses needs a binding too",
			files: []file{seed(t, "sequence/services.yaml")},
			reg:   bindAll("Service", "first", "third"),
			want:  []string{`services.yaml: Service "second": no binding for Service "second"`},
		},
		{
			name: "problems of every file at once, in the order of the files",
			files: []file{
				seed(t, "sequence/sequence.yaml"),
				{"pingsource.yaml", strings.Replace(seed(t, "sequence/pingsource.yaml").text, "    ref:", "    reff:", 1)},
			},
			reg: bindAll("Service", "first", "second"),
			want: []string{
				`sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"`,
				`pingsource.yaml: PingSource "ping-source": spec.sink.reff: unknown field; did you mean "ref"?`,
			},
		},
		{
			name: "unknown fields, with suggestions, all at once",
			files: []file{{"s.yaml", `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: s
  uid: 1234
spec:
  Steps: []
  step:
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: first}
    deliver: {}
`}},
			want: []string{
				`s.yaml: Sequence "s": metadata.uid: unknown field`,
				`s.yaml: Sequence "s": spec.Steps: unknown field; did you mean "steps"?`,
				`s.yaml: Sequence "s": spec.step: unknown field; did you mean "steps"?`,
			},
		},
		{
			name: "wrong types",
			files: []file{{"s.yaml", seqHead + stepFirst + `    delivery:
      retry: "3"
      backoffDelay: 1
  reply: http://example.com
`}},
			want: []string{
				`s.yaml: Sequence "s": spec.reply: want an object, got string "http://example.com"`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.backoffDelay: want a string, got number 1`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.retry: want an integer, got string "3"`,
				`s.yaml: Sequence "s": spec.steps[0].ref: no binding for Service "first"`,
			},
		},
		{
			name: "delivery values",
			files: []file{{"s.yaml", seqHead + stepFirst + `    delivery:
      retry: -1
      backoffPolicy: random
      backoffDelay: 200ms
      timeout: PT0S
      retryAfterMax: P1M
      format: xml
      deadLetterSink:
        ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dls}
`}},
			reg: bindAll("Service", "first"),
			want: []string{
				`s.yaml: Sequence "s": spec.steps[0].delivery.retry: must be >= 0, got -1`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.backoffPolicy: "random" is not a policy: want "linear" or "exponential"`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.backoffDelay: invalid duration "200ms": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.timeout: must be greater than zero, got "PT0S"`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.retryAfterMax: invalid duration "P1M": years and months have no fixed length; use weeks (W), days (D), or a time part such as T1H`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.format: "xml" is not a format: want "json" or "binary"`,
				`s.yaml: Sequence "s": spec.steps[0].delivery.deadLetterSink.ref: no binding for Service "dls"`,
			},
		},
		{
			name: "unsupported kinds and versions",
			files: []file{{"k.yaml", `apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {name: default}
---
apiVersion: flows.knative.dev/v1beta1
kind: Sequence
metadata: {name: old}
---
kind: Sequence
metadata: {name: noversion}
---
- a list
`}},
			want: []string{
				`k.yaml: document 1: kind: ApiServerSource (sources.knative.dev/v1) is not supported; supported kinds: Sequence, Parallel (flows.knative.dev/v1); PingSource (sources.knative.dev/v1, sources.knative.dev/v1beta1); Subscription, InMemoryChannel, Channel (messaging.knative.dev/v1); NatsJetStreamChannel (messaging.knative.dev/v1alpha1); Service (serving.knative.dev/v1); Broker, Trigger (eventing.knative.dev/v1); RequestReply (eventing.knative.dev/v1alpha1)`,
				`k.yaml: Sequence "old": apiVersion: Sequence "flows.knative.dev/v1beta1" is not supported; use flows.knative.dev/v1`,
				`k.yaml: Sequence "old": spec.steps: missing: a Sequence needs at least one step`,
				`k.yaml: Sequence "noversion": apiVersion: missing; want flows.knative.dev/v1`,
				`k.yaml: Sequence "noversion": spec.steps: missing: a Sequence needs at least one step`,
				`k.yaml: document 4: want an object with apiVersion and kind, got a list`,
			},
		},
		{
			name: "names",
			files: []file{{"n.yaml", `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {}
spec: {steps: []}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: Bad_Name}
spec: {steps: []}
`}},
			want: []string{
				`n.yaml: document 1: metadata.name: missing`,
				`n.yaml: document 1: spec.steps: missing: a Sequence needs at least one step`,
				`n.yaml: Sequence "Bad_Name": metadata.name: "Bad_Name" is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit`,
				`n.yaml: Sequence "Bad_Name": spec.steps: missing: a Sequence needs at least one step`,
			},
		},
		{
			name:  "a typo in a binding's name: the error names the binding there is",
			files: []file{seed(t, "sequence/sequence.yaml")},
			reg:   bindAll("Service", "first", "secnod", "thrid", "thirdparty"),
			want: []string{
				`sequence.yaml: Sequence "sequence": spec.steps[1].ref: no binding for Service "second"; did you mean the binding Service/secnod?`,
				`sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"; did you mean the binding Service/thrid?`,
			},
		},
		{
			name: "declared twice",
			files: []file{
				{"a.yaml", seqHead + stepFirst},
				{"b.yaml", "# again\n---\n" + seqHead + stepFirst},
			},
			reg:  bindAll("Service", "first"),
			want: []string{`b.yaml: Sequence "s": metadata.name: Sequence "s" is declared twice: first in a.yaml (document 1)`},
		},
		{
			name: "empty flows and missing destinations",
			files: []file{{"f.yaml", seqHead + `  - {}
  - uri: /relative
  - uri: http://example.com
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: first}
  - ref: {kind: Service}
    audience: me
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: p}
spec:
  branches:
  - filter: {uri: "http://filter.example.com"}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: empty}
spec:
  branches: []
  channelTemplate: {apiVersion: messaging.knative.dev/v1alpha1, kind: KafkaChannel}
`}},
			reg: bindAll("Service", "first"),
			want: []string{
				`f.yaml: Sequence "s": spec.steps[0]: missing: want a ref or a uri`,
				`f.yaml: Sequence "s": spec.steps[1].uri: "/relative" is not an absolute http or https URL`,
				`f.yaml: Sequence "s": spec.steps[2].uri: "http://example.com": an absolute URI is not allowed with a ref; a uri given with a ref is relative to the ref's address`,
				`f.yaml: Sequence "s": spec.steps[3].audience: not supported: OIDC authentication is not implemented`,
				`f.yaml: Sequence "s": spec.steps[3].ref: missing name, apiVersion`,
				`f.yaml: Parallel "p": spec.branches[0].subscriber: missing: want a ref or a uri`,
				`f.yaml: Parallel "empty": spec.channelTemplate: KafkaChannel (messaging.knative.dev/v1alpha1) is not supported: use messaging.knative.dev/v1 InMemoryChannel, or messaging.knative.dev/v1alpha1 NatsJetStreamChannel with durable channels; in Go, flows.WithChannels for other transports`,
				`f.yaml: Parallel "empty": spec.branches: missing: a Parallel needs at least one branch`,
			},
		},
		{
			name: "relative uri needs a URL binding",
			files: []file{{"r.yaml", seqHead + stepFirst + `    uri: /path
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: second}
    uri: /path
`}},
			reg: func() *manifest.Registry {
				r := bindAll("Service", "first")
				r.BindURL("Service", "second", "http://127.0.0.1:9/base/")
				return r
			}(),
			want: []string{`r.yaml: Sequence "s": spec.steps[0].uri: "/path" is relative to the ref's address, but Service "first" is not bound to a URL`},
		},
		{
			name:  "bound to a bad URL",
			files: []file{{"u.yaml", seqHead + stepFirst}},
			reg: func() *manifest.Registry {
				r := new(manifest.Registry)
				r.BindURL("Service", "first", "ftp://example.com")
				return r
			}(),
			want: []string{`u.yaml: Sequence "s": spec.steps[0].ref: Service "first" is bound to an invalid URL: "ftp://example.com" is not an absolute http or https URL`},
		},
		{
			name: "cycle between flows",
			files: []file{{"c.yaml", `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: a}
spec:
  steps:
  - ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: b}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: b}
spec:
  branches:
  - subscriber: {uri: "http://127.0.0.1:9"}
  reply:
    ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: a}
`}},
			want: []string{`c.yaml: Parallel "b": spec.reply.ref: cycle: Sequence "a" → Parallel "b" → Sequence "a"; flows must form a graph without cycles`},
		},
		{
			name: "references to what cannot receive events, or with the wrong group",
			files: []file{{"x.yaml", `apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: ping}
spec:
  sink:
    ref: {apiVersion: sources.knative.dev/v1, kind: PingSource, name: ping}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - ref: {apiVersion: messaging.knative.dev/v1, kind: Sequence, name: s2}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s2}
spec:
  steps:
  - uri: http://127.0.0.1:9
`}},
			want: []string{
				`x.yaml: PingSource "ping": spec.sink.ref: PingSource "ping" is not addressable: it cannot receive events`,
				`x.yaml: Sequence "s": spec.steps[0].ref.apiVersion: Sequence "s2" is declared with API group flows.knative.dev, not messaging.knative.dev`,
			},
		},
		{
			name: "ping sources",
			files: []file{{"p.yaml", `apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p1}
spec:
  schedule: "@every 1m"
  data: x
  dataBase64: eA==
  sink: {uri: "http://127.0.0.1:9"}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p2}
spec:
  schedule: "61 * * * *"
  timezone: Mars/Olympus
  contentType: application/json
  data: "[1]"
  ceOverrides:
    extensions: {Bad-Name: x}
  sink: {}
---
apiVersion: sources.knative.dev/v1beta1
kind: PingSource
metadata: {name: p3}
spec:
  data: x
  sink: {uri: "http://127.0.0.1:9"}
`}},
			want: []string{
				`p.yaml: PingSource "p1": spec.schedule: "@every 1m": @every is not supported, use a cron expression`,
				`p.yaml: PingSource "p1": spec.data: data and dataBase64 are mutually exclusive`,
				`p.yaml: PingSource "p2": spec.sink: missing: want a ref or a uri`,
				`p.yaml: PingSource "p2": spec.timezone: "Mars/Olympus": unknown time zone Mars/Olympus`,
				`p.yaml: PingSource "p2": spec.schedule: "61 * * * *": end of range (61) above maximum (59): 61`,
				`p.yaml: PingSource "p2": spec.data: contentType is application/json but the data is not a JSON object: json: cannot unmarshal array into Go value of type map[string]interface {}`,
				`p.yaml: PingSource "p2": spec.ceOverrides.extensions["Bad-Name"]: an extension name must be lower-case letters and digits, and not a CloudEvents attribute`,
				`p.yaml: PingSource "p3": spec.data: unknown field`,
			},
		},
		{
			name: "subscriptions",
			files: []file{{"sub.yaml", `apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: s1}
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: nowhere}
  subscriber: {uri: "http://127.0.0.1:9"}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: s2}
spec:
  channel: {apiVersion: messaging.kafka.knative.dev/v1alpha1, kind: KafkaChannel, name: k}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: ch}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: s3}
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: ch}
`}},
			want: []string{
				`sub.yaml: Subscription "s1": spec.channel: InMemoryChannel "nowhere" is not declared in the manifests`,
				`sub.yaml: Subscription "s2": spec.channel.kind: "KafkaChannel" is not supported: a Subscription's channel is an InMemoryChannel, NatsJetStreamChannel or Channel declared in the manifests`,
				`sub.yaml: Subscription "s2": spec.subscriber: missing: a Subscription needs a subscriber`,
				`sub.yaml: Subscription "s3": spec.subscriber: missing: a Subscription needs a subscriber`,
			},
		},
		{
			name: "two flows with the same first channel, so the same address",
			files: []file{{"a.yaml", seqHead + stepFirst + `---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: s-kn-sequence-0}
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {name: c}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: c, namespace: other}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: c}
`}},
			reg: bindAll("Service", "first"),
			want: []string{
				`a.yaml: InMemoryChannel "s-kn-sequence-0": metadata.name: channel "s-kn-sequence-0" is also the first channel of Sequence "s": both would be served at /default/s-kn-sequence-0`,
				`a.yaml: InMemoryChannel "c": metadata.name: channel "c" is also the first channel of Channel "c": both would be served at /default/c`,
			},
		},
		{
			name: "a flow both declared and bound",
			files: []file{{"d.yaml", seqHead + stepFirst + `---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p}
spec:
  sink:
    ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: s}
`}},
			reg: func() *manifest.Registry {
				r := bindAll("Service", "first")
				r.BindURL("Sequence", "s", "http://127.0.0.1:9")
				return r
			}(),
			want: []string{`d.yaml: PingSource "p": spec.sink.ref: Sequence "s" is declared in the manifests and bound in the registry: remove one`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			app, err := build(t, tt.files, tt.reg)
			if err == nil {
				t.Fatalf("Build succeeded (%v); want errors:\n%s", app, strings.Join(tt.want, "\n"))
			}
			if got := err.Error(); got != strings.Join(tt.want, "\n") {
				t.Errorf("Build error:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
			if !errors.Is(err, flows.ErrInvalid) {
				t.Errorf("errors.Is(err, flows.ErrInvalid) = false")
			}
		})
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := build(t, []file{seed(t, "sequence/sequence.yaml")}, bindAll("Service", "first"))
	if !errors.Is(err, manifest.ErrNoBinding) {
		t.Errorf("errors.Is(%v, ErrNoBinding) = false", err)
	}
	var got []*manifest.Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var me *manifest.Error
		if !errors.As(e, &me) {
			t.Fatalf("%v is not a *manifest.Error", e)
		}
		got = append(got, me)
	}
	if len(got) != 2 || got[0].File != "sequence.yaml" || got[0].Document != 1 || got[0].Object != `Sequence "sequence"` ||
		got[0].Path != "spec.steps[1].ref" || got[1].Path != "spec.steps[2].ref" {
		t.Errorf("errors = %+v %+v", got[0], got[1])
	}
}

func TestYAMLSyntaxErrors(t *testing.T) {
	_, err := build(t, []file{{"y.yaml", "apiVersion: v1\n  kind: x\n"}, {"z.yaml", "a: 1\na: 2\n"}}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "y.yaml: document 1: yaml: line 2: ") ||
		lines[1] != `z.yaml: document 1: yaml: unmarshal errors: line 2: key "a" already set in map` {
		t.Errorf("error:\n%v", err)
	}
}

// The line of a YAML error is the file's line, not the document's.
func TestYAMLSyntaxErrorsNameTheLineOfTheFile(t *testing.T) {
	_, err := build(t, []file{{"y.yaml", `apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: a}
---
# the second document
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: b
   bad: indent
--- {a: 1, a: 2}
`}}, bindAll("Service", "a"))
	want := "y.yaml: document 2: yaml: line 10: mapping values are not allowed in this context\n" +
		`y.yaml: document 3: yaml: unmarshal errors: line 11: key "a" already set in map`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

// Unknown fields do not hide the other problems of their document: one run
// reports the typos with their hints, the invalid values beside them and a
// missing apiVersion, and nothing that follows from the typos themselves.
func TestUnknownFieldsDoNotHideOtherProblems(t *testing.T) {
	_, err := build(t, []file{{"s.yaml", seqHead + stepFirst + `    delivery:
      retyr: 3
      backoffPolicy: linear
      backoffDelay: 200ms
  replly:
    uri: http://127.0.0.1:9/reply
  reply:
    uri: "ftp://example.com/x"
---
kind: Sequence
metadata:
  name: t
spec:
  stpes:
  - uri: http://127.0.0.1:9
  steps:
  - uri: "not a url"
    delivery: {timeout: 5s, deadLeterSink: {uri: http://127.0.0.1:9}}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: p}
spec:
  schedule: "61 * * * *"
  sink:
    reff: {apiVersion: serving.knative.dev/v1, kind: Service, name: nowhere}
`}}, bindAll("Service", "first"))
	want := []string{
		`s.yaml: Sequence "s": spec.replly: unknown field; did you mean "reply"?`,
		`s.yaml: Sequence "s": spec.steps[0].delivery.retyr: unknown field; did you mean "retry"?`,
		`s.yaml: Sequence "s": spec.steps[0].delivery.backoffDelay: invalid duration "200ms": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`,
		`s.yaml: Sequence "s": spec.reply.uri: "ftp://example.com/x" is not an absolute http or https URL`,
		`s.yaml: Sequence "t": apiVersion: missing; want flows.knative.dev/v1`,
		`s.yaml: Sequence "t": spec.steps[0].delivery.deadLeterSink: unknown field; did you mean "deadLetterSink"?`,
		`s.yaml: Sequence "t": spec.stpes: unknown field; did you mean "steps"?`,
		`s.yaml: Sequence "t": spec.steps[0].delivery.timeout: invalid duration "5s": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`,
		`s.yaml: Sequence "t": spec.steps[0].uri: "not a url" is not an absolute http or https URL`,
		`s.yaml: PingSource "p": spec.sink.reff: unknown field; did you mean "ref"?`,
		`s.yaml: PingSource "p": spec.schedule: "61 * * * *": end of range (61) above maximum (59): 61`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("Build error:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
