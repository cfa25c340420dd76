package flows_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
	f.Fuzz(func(t *testing.T, method, contentType, specversion, id, source, typ, hk, hv string, body []byte) {
		ch := flows.NewInMemoryChannel(4)
		recv, _ := ch.Subscribe("s")
		in := flows.NewIngress(flows.ChannelSender(ch), flows.IngressMaxBodyBytes(1024))
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Method = method
		set := func(k, v string) {
			if v != "" && validHeader(k) && validHeader(v) {
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
			if verr := m.Event().Validate(); verr != nil {
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
	f.Add(200, "application/json", "1.0", "r1", "/srv", "reply", []byte(`{"ok":true}`))
	f.Add(200, "application/cloudevents+json", "", "", "", "", []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`))
	f.Add(200, "application/cloudevents+json", "", "", "", "", []byte(`{"specversion":"1.0"`))
	f.Add(202, "", "", "", "", "", []byte(nil))
	f.Add(503, "text/plain", "", "", "", "", []byte("busy"))
	f.Add(302, "", "", "", "", "", []byte(nil))
	f.Fuzz(func(t *testing.T, status int, contentType, specversion, id, source, typ string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		h := http.Header{}
		for k, v := range map[string]string{"Content-Type": contentType, "Ce-Specversion": specversion, "Ce-Id": id, "Ce-Source": source, "Ce-Type": typ} {
			if v != "" {
				h.Set(k, v)
			}
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
			if verr := reply.Validate(); verr != nil {
				t.Fatalf("invalid reply returned: %v", verr)
			}
		case err == nil && (status < 200 || status > 299):
			t.Fatalf("status %d is not a failure", status)
		}
	})
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
