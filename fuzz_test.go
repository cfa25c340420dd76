package flows_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/eventflows/flows"
)

// Fuzz targets for everything that decodes outside input. Their seed corpora
// (testdata/fuzz) run with the tests; run one for longer with, e.g.,
//
//	go test -run '^$' -fuzz FuzzIngress -fuzztime 10m .

func FuzzIngress(f *testing.F) {
	f.Add("POST", "application/json", "1.0", "1", "/src", "t", "x-extra", "v", []byte(`{"message":"hi"}`))
	f.Add("POST", "application/cloudevents+json", "", "", "", "", "", "",
		[]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`))
	f.Add("POST", "application/cloudevents+json", "", "", "", "", "", "", []byte(`{"specversion":"1.0","id":`))
	f.Add("POST", "application/cloudevents-batch+json", "", "", "", "", "", "", []byte(`[{}]`))
	f.Add("POST", "text/plain", "0.3", "1", "/s", "t", "ce-time", "not a time", []byte("hello"))
	f.Add("POST", "application/json", "1.0", "1", "/s", "t", "ce-dataschema", "::", []byte{0xff, 0x00})
	f.Add("GET", "", "", "", "", "", "", "", []byte(nil))
	// A header named "Ce-" made the SDK's 0.3 decoder panic (issue 12).
	f.Add("POST", "text/plain", "0.3", "1", "/s", "t", "Ce-", "x", []byte("hi"))
	f.Add("POST", "text/plain", "1.0", "1", "/s", "t", "Ce-", "x", []byte("hi"))
	// Text that is not UTF-8, in binary and structured mode.
	f.Add("POST", "application/json", "1.0", "\xff\xfe", "/s", "t", "Ce-Ext", "\xff", []byte("{}"))
	f.Add("POST", "application/json", "0.3", "1", "/s", "t\xc3(", "Ce-Subject", "\xc3", []byte("{}"))
	f.Add("POST", "application/cloudevents+json", "", "", "", "", "", "",
		[]byte("{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"/s?\xff\",\"type\":\"t\",\"ext\":\"\xfe\"}"))
	f.Add("POST", "", "9.9", "1", "/s", "t", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, contentType, specversion, id, source, typ, hk, hv string, body []byte) {
		ch := flows.NewInMemoryChannel(4)
		recv, _ := ch.Subscribe("s")
		in := flows.NewIngress(flows.ChannelSender(ch), flows.IngressMaxBodyBytes(1024))
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Method = method
		set := func(k, v string) {
			if v != "" && validHeader(k) && validValue(v) {
				req.Header.Set(k, v)
			}
		}
		set("Content-Type", contentType)
		set("Ce-Specversion", specversion)
		set("Ce-Id", id)
		set("Ce-Source", source)
		set("Ce-Type", typ)
		set(hk, hv)
		w := httptest.NewRecorder()
		in.ServeHTTP(w, req)

		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		m, err := recv.Receive(ctx)
		switch w.Code {
		case http.StatusAccepted:
			if err != nil {
				t.Fatalf("202 but nothing reached the channel: %v", err)
			}
			if verr := validEvent(*m.Event()); verr != nil {
				t.Fatalf("an invalid event was accepted: %v", verr)
			}
		case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if err == nil {
				t.Fatalf("status %d but the event reached the channel", w.Code)
			}
			if w.Code != http.StatusMethodNotAllowed && strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("status %d without a reason", w.Code)
			}
		default:
			if method == http.MethodOptions && w.Code == http.StatusOK {
				return
			}
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body.String())
		}
	})
}

func validHeader(s string) bool {
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return strings.TrimSpace(s) != "" && !strings.ContainsAny(s, ":\r\n")
}

// validValue reports whether net/http would take s as a header value: no
// control characters, any other byte (not necessarily UTF-8).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(s) != ""
}

// validEvent is what every event that flows accepts or returns must be:
// valid for the SDK, with all of its text in UTF-8.
func validEvent(e event.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	text := map[string]string{"id": e.ID(), "type": e.Type(), "source": e.Source(), "subject": e.Subject(),
		"datacontenttype": e.DataContentType(), "dataschema": e.DataSchema()}
	for k, v := range e.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			return fmt.Errorf("extension %s: %v", k, err)
		}
		text["extension "+k] = s
	}
	for name, s := range text {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s %q is not UTF-8", name, s)
		}
	}
	return nil
}

// replyTransport answers every request with a fixed response.
type replyTransport struct {
	status int
	header http.Header
	body   []byte
}

func (rt replyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	return &http.Response{StatusCode: rt.status, Header: rt.header, Body: io.NopCloser(bytes.NewReader(rt.body)), Request: r}, nil
}

func FuzzHTTPTargetReply(f *testing.F) {
	f.Add(200, "application/json", "1.0", "r1", "/srv", "reply", "", "", []byte(`{"ok":true}`))
	f.Add(200, "application/cloudevents+json", "", "", "", "", "", "", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`))
	f.Add(200, "application/cloudevents+json", "", "", "", "", "", "", []byte(`{"specversion":"1.0"`))
	f.Add(202, "", "", "", "", "", "", "", []byte(nil))
	f.Add(503, "text/plain", "", "", "", "", "", "", []byte("busy"))
	f.Add(302, "", "", "", "", "", "", "", []byte(nil))
	// Issue 12: the SDK's panic on a header named "Ce-", an unknown
	// specversion taken for no event, text that is not UTF-8.
	f.Add(200, "text/plain", "0.3", "1", "/s", "t", "Ce-", "x", []byte("hi"))
	f.Add(200, "", "9.9", "1", "/s", "t", "", "", []byte(nil))
	f.Add(200, "application/json", "1.0", "\xff\xfe", "/s", "t", "Ce-Ext", "\xff", []byte("{}"))
	f.Add(200, "application/cloudevents+json", "", "", "", "", "", "",
		[]byte("{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\xc3(\"}"))
	f.Fuzz(func(t *testing.T, status int, contentType, specversion, id, source, typ, hk, hv string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		h := http.Header{}
		for k, v := range map[string]string{"Content-Type": contentType, "Ce-Specversion": specversion, "Ce-Id": id, "Ce-Source": source, "Ce-Type": typ} {
			if v != "" {
				h.Set(k, v)
			}
		}
		if hk != "" {
			h[hk] = append(h[hk], hv) // as it is: a transport may give any name
		}
		target := &flows.HTTPTarget{URL: "http://127.0.0.1:1", Client: &http.Client{Transport: replyTransport{status, h, body}}}
		reply, err := target.Handle(context.Background(), newEvent("1", nil))
		switch {
		case err != nil && reply != nil:
			t.Fatal("both a reply and an error")
		case reply != nil:
			if status < 200 || status > 299 {
				t.Fatalf("a reply from status %d", status)
			}
			if verr := validEvent(*reply); verr != nil {
				t.Fatalf("invalid reply returned: %v", verr)
			}
		case err == nil && (status < 200 || status > 299):
			t.Fatalf("status %d is not a failure", status)
		}
	})
}

// The paths that flows leaves to the SDK's decoders (structured mode, and
// binary mode of CloudEvents 0.3), fuzzed against the SDK itself: flows
// never panics, what it accepts at an ingress or as a reply is a valid
// event, and it is the event the SDK decodes from the same message when
// the SDK decodes one.

func FuzzStructuredMode(f *testing.F) {
	f.Add("application/cloudevents+json", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`))
	f.Add("application/cloudevents+json; charset=utf-8", []byte(`{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontentencoding":"base64","data":"aGk="}`))
	f.Add("application/cloudevents+json", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}`))
	f.Add("application/cloudevents+json", []byte("{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"/s\",\"type\":\"t\"}"))
	f.Add("application/cloudevents+json", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":{"nested":[1,2,{"x":null}]}}`))
	f.Add("application/cloudevents+json", []byte(`{"specversion":"9.9","id":"1","source":"/s","type":"t"}`))
	f.Add("application/cloudevents-batch+json", []byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t"}]`))
	f.Add("application/cloudevents+xml", []byte(`<event/>`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		checkAgainstSDK(t, http.Header{"Content-Type": {contentType}}, body)
	})
}

func FuzzBinaryModeV03(f *testing.F) {
	f.Add("text/plain", "1", "/s", "t", "Ce-Ext", "v", []byte("hi"))
	f.Add("text/plain", "1", "/s", "t", "Ce-", "x", []byte("hi"))
	f.Add("application/json", "1", "/s", "t", "Ce-Datacontentencoding", "base64", []byte("aGk="))
	f.Add("", "1", "/s", "t", "Ce-Schemaurl", "::", []byte(nil))
	f.Add("text/plain", "\xff\xfe", "/s?\xff", "t\xc3(", "Ce-Time", "yesterday", []byte{0xff})
	f.Add("text/plain", "1", "/s", "t", "ce-lower", "x", []byte(nil))
	f.Fuzz(func(t *testing.T, contentType, id, source, typ, hk, hv string, body []byte) {
		h := http.Header{"Ce-Specversion": {"0.3"}}
		for k, v := range map[string]string{"Content-Type": contentType, "Ce-Id": id, "Ce-Source": source, "Ce-Type": typ} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		if hk != "" {
			h[hk] = append(h[hk], hv)
		}
		checkAgainstSDK(t, h, body)
	})
}

// checkAgainstSDK decodes the message h, body with the SDK (recovering its
// panics), at an ingress and as a reply, and compares.
func checkAgainstSDK(t *testing.T, h http.Header, body []byte) {
	t.Helper()
	sdk, sdkErr := func() (e *event.Event, err error) {
		defer func() {
			if r := recover(); r != nil {
				e, err = nil, fmt.Errorf("the SDK panicked: %v", r)
			}
		}()
		return binding.ToEvent(context.Background(), cehttp.NewMessage(h.Clone(), io.NopCloser(bytes.NewReader(body))))
	}()
	same := func(where string, got *event.Event) {
		t.Helper()
		if verr := validEvent(*got); verr != nil {
			t.Fatalf("%s: an invalid event was accepted: %v", where, verr)
		}
		if sdkErr != nil {
			// Accepted what the SDK refused: flows uses the SDK on these
			// paths, so the SDK failed on this message by chance (its
			// binary decoding depends on the order of the headers for
			// some inputs), or panicked on a header that flows leaves out.
			return
		}
		if got.SpecVersion() != sdk.SpecVersion() || got.ID() != sdk.ID() || got.Source() != sdk.Source() ||
			got.Type() != sdk.Type() || !bytes.Equal(got.Data(), sdk.Data()) {
			t.Fatalf("%s: decoded\n%s\nthe SDK decodes\n%s", where, got, sdk)
		}
	}

	ch := flows.NewInMemoryChannel(1)
	recv, _ := ch.Subscribe("s")
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header = h.Clone()
	w := httptest.NewRecorder()
	flows.NewIngress(flows.ChannelSender(ch)).ServeHTTP(w, req)
	switch w.Code {
	case http.StatusAccepted:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m, err := recv.Receive(ctx)
		if err != nil {
			t.Fatalf("202 but nothing reached the channel: %v", err)
		}
		same("ingress", m.Event())
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		if strings.TrimSpace(w.Body.String()) == "" {
			t.Fatalf("status %d without a reason", w.Code)
		}
	default:
		t.Fatalf("unexpected status %d: %s", w.Code, w.Body)
	}

	target := &flows.HTTPTarget{URL: "http://127.0.0.1:1", Client: &http.Client{Transport: replyTransport{200, h.Clone(), body}}}
	reply, err := target.Handle(context.Background(), newEvent("1", nil))
	switch {
	case err != nil && reply != nil:
		t.Fatal("both a reply and an error")
	case reply != nil:
		same("reply", reply)
	case err != nil && !flows.IsPermanent(err):
		t.Fatalf("a reply read whole failed with a retryable error: %v", err)
	}
}

func FuzzPingSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/2 * * * *", "0 9 * * 1-5", "@hourly", "@every 1m", "* * * * * *", "0 0 30 2 *", "61 * * * *", "CRON_TZ=UTC 0 * * * *", ""} {
		f.Add(s, "")
	}
	f.Add("0 9 * * *", "Asia/Tokyo")
	f.Add("0 9 * * *", "Mars/Olympus")
	f.Fuzz(func(t *testing.T, schedule, tz string) {
		p := &flows.Ping{Schedule: schedule, Timezone: tz, Sink: flows.Discard}
		if err := p.Validate(); err != nil {
			return
		}
		if strings.HasPrefix(strings.TrimSpace(schedule), "@every") {
			t.Fatalf("@every accepted: %q", schedule)
		}
		// A valid schedule starts and stops promptly, whatever it says.
		src, err := p.Start(context.Background())
		if err != nil {
			t.Fatalf("Validate accepted %q but Start failed: %v", schedule, err)
		}
		src.Close()
	})
}
