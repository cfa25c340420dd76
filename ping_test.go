package flows_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/google/uuid"
)

func TestPingSendsKnativeEventsOnSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts at midnight UTC, 2000-01-01.
		out := flowstest.NewRecorder()
		src, err := (&flows.Ping{
			Name:        "ping-source",
			Namespace:   "demo",
			Schedule:    "*/2 * * * *",
			ContentType: "application/json",
			Data:        `{"message": "hello, world!"}`,
			Extensions:  map[string]string{"team": "core"},
			Sink:        out,
		}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(7 * time.Minute)
		src.Shutdown(context.Background())

		got := out.Events()
		if len(got) != 3 {
			t.Fatalf("got %d events in 7 minutes of */2, want 3", len(got))
		}
		seen := map[string]bool{}
		for i, e := range got {
			if e.Type() != "dev.knative.sources.ping" || e.Source() != "/apis/v1/namespaces/demo/pingsources/ping-source" ||
				e.SpecVersion() != "1.0" || e.DataContentType() != "application/json" || string(e.Data()) != `{"message": "hello, world!"}` ||
				e.Extensions()["team"] != "core" {
				t.Errorf("event %d = %s", i, e)
			}
			if _, err := uuid.Parse(e.ID()); err != nil || seen[e.ID()] {
				t.Errorf("id %q is not a fresh UUID", e.ID())
			}
			seen[e.ID()] = true
			if want := time.Date(2000, 1, 1, 0, 2*(i+1), 0, 0, time.UTC); !e.Time().Equal(want) {
				t.Errorf("event %d time = %v, want %v", i, e.Time(), want)
			}
		}
	})
}

func TestPingScheduleSyntax(t *testing.T) {
	cases := []struct {
		schedule, tz string
		in           time.Duration // wait in fake time
		want         int
	}{
		{"* * * * * *", "", 5*time.Second + time.Millisecond, 5}, // optional seconds field
		{"@hourly", "", 3*time.Hour + time.Second, 3},            // descriptor
		{"0 9 * * *", "Asia/Tokyo", 25 * time.Hour, 1},           // 9:00 in Tokyo is 0:00 UTC: the next is a day later
		{"", "", 3*time.Minute + time.Second, 3},                 // default: every minute
	}
	for _, tc := range cases {
		t.Run(tc.schedule+tc.tz, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				out := flowstest.NewRecorder()
				src, err := (&flows.Ping{Schedule: tc.schedule, Timezone: tc.tz, Sink: out}).Start(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.in)
				src.Close()
				if got := len(out.Events()); got != tc.want {
					t.Errorf("%d events, want %d", got, tc.want)
				}
			})
		})
	}
}

func TestPingDataBase64AndNoData(t *testing.T) {
	e, err := (&flows.Ping{DataBase64: "AAEC", ContentType: "application/octet-stream", Sink: flows.Discard}).Event(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Data()) != "\x00\x01\x02" || e.DataContentType() != "application/octet-stream" {
		t.Errorf("event = %s", e)
	}
	e, _ = (&flows.Ping{ContentType: "application/json", Sink: flows.Discard}).Event(time.Now())
	if e.Data() != nil || e.DataContentType() != "" {
		t.Errorf("without data, no datacontenttype either: %s", e)
	}
}

func TestPingValidation(t *testing.T) {
	cases := []struct {
		ping flows.Ping
		want string
	}{
		{flows.Ping{Schedule: "@every 1m", Sink: flows.Discard}, `schedule: "@every 1m": @every is not supported`},
		{flows.Ping{Schedule: "61 * * * *", Sink: flows.Discard}, `schedule: "61 * * * *"`},
		{flows.Ping{Schedule: "* * *", Sink: flows.Discard}, `schedule: "* * *"`},
		{flows.Ping{Timezone: "Mars/Olympus", Sink: flows.Discard}, `timezone: "Mars/Olympus"`},
		{flows.Ping{Data: "a", DataBase64: "YQ==", Sink: flows.Discard}, "data: data and dataBase64 are mutually exclusive"},
		{flows.Ping{DataBase64: "%%%", Sink: flows.Discard}, "dataBase64: not valid base64"},
		{flows.Ping{ContentType: "application/json", Data: "{not json", Sink: flows.Discard}, "data: contentType is application/json but the data is not a JSON object"},
		{flows.Ping{ContentType: "application/json", DataBase64: "WzFd", Sink: flows.Discard}, "dataBase64: contentType is application/json"},
		{flows.Ping{Extensions: map[string]string{"Bad-Name": "x"}, Sink: flows.Discard}, `extensions["Bad-Name"]`},
		{flows.Ping{Extensions: map[string]string{"id": "x"}, Sink: flows.Discard}, `extensions["id"]`},
		{flows.Ping{Name: "p"}, `flows: invalid ping "p": sink: missing`},
		{flows.Ping{Sink: flows.HandlerFunc(nil)}, `sink: missing`},
		{flows.Ping{Sink: flows.Discard, Delivery: &flows.Delivery{DeadLetter: (*flows.Flow)(nil)}}, "delivery.deadLetter: missing: a nil *flows.Flow"},
		{flows.Ping{Sink: flows.Discard, Delivery: &flows.Delivery{Retry: -1}}, "delivery.retry"},
	}
	for _, tc := range cases {
		err := tc.ping.Validate()
		if !errors.Is(err, flows.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate = %v, want it to mention %q", err, tc.want)
		}
		if _, err := tc.ping.Start(context.Background()); err == nil {
			t.Errorf("Start of an invalid ping succeeded: %q", tc.want)
		}
	}
}

func TestPingRetriesLikeKnativeAndShutdownWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sinkStep := failN(3, errors.New("not yet"))
		src, _ := (&flows.Ping{Schedule: "* * * * * *", Sink: sinkStep}).Start(context.Background())
		time.Sleep(1500 * time.Millisecond) // the first tick fires at 1s, then retries 100ms, 200ms, 400ms later
		src.Shutdown(context.Background())
		if got := gaps(attemptTimes(sinkStep)); !equalDurations(got, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}) {
			t.Errorf("retry delays = %v", got)
		}
	})
}

func TestPingIntoASequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := flowstest.NewRecorder()
		seq, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: appender(" - Handled by 0")}, {Subscriber: appender(" - Handled by 1")}}, Reply: out}).Start(context.Background())
		src, _ := (&flows.Ping{Schedule: "* * * * *", ContentType: "application/json", Data: `{"message": "hello, world!"}`, Sink: seq}).Start(context.Background())
		time.Sleep(time.Minute + time.Second)
		src.Shutdown(context.Background())
		seq.Shutdown(context.Background())
		got := out.Events()
		if len(got) != 1 || message(t, got[0]) != "hello, world! - Handled by 0 - Handled by 1" {
			t.Errorf("got %v", got)
		}
	})
}

var _ = event.New

func TestPingStartTakesACopyOfTheDefinition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// One definition value, reused to start two sources.
		a, b := flowstest.NewRecorder(), flowstest.NewRecorder()
		p := flows.Ping{Name: "a", Schedule: "* * * * *", Extensions: map[string]string{"team": "a"}, Sink: a}
		srcA, err := p.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p.Name, p.Extensions, p.Sink = "b", map[string]string{"team": "b"}, b
		srcB, err := p.Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute + time.Second)
		srcA.Shutdown(context.Background())
		srcB.Shutdown(context.Background())
		for name, r := range map[string]*flowstest.Recorder{"a": a, "b": b} {
			got := r.Events()
			if len(got) != 1 || got[0].Source() != "/apis/v1/namespaces/default/pingsources/"+name || got[0].Extensions()["team"] != name {
				t.Errorf("source %s sent %v", name, got)
			}
		}
	})
}
