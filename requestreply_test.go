package flows_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// question is a request of the tests, with its text as data.
func question(id, text string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/asker")
	e.SetType("com.example.question")
	_ = e.SetData(event.ApplicationJSON, map[string]string{"q": text})
	return e
}

// answerer replies to a question as a service of a RequestReply does: with
// a new event whose replyid is the question's correlationid. gate, if set,
// is received from before each answer.
func answerer(gate <-chan struct{}) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		r := event.New()
		r.SetID("answer-" + e.ID())
		r.SetSource("/answerer")
		r.SetType("com.example.answer")
		r.SetExtension("replyid", e.Extensions()["correlationid"])
		_ = r.SetData(event.ApplicationJSON, map[string]string{"a": strings.ToUpper(string(e.Data()))})
		return &r, nil
	})
}

// qaBroker starts a broker whose "answer" Trigger answers questions
// through h, and whose "audit" Trigger sees the answers; it is shut down
// when the test ends.
func qaBroker(t *testing.T, h flows.Handler, audit flows.Handler) *flows.Flow {
	t.Helper()
	if audit == nil {
		audit = flows.Discard
	}
	return start(t, &flows.Broker{Name: "qa", Triggers: []flows.Trigger{
		{Name: "answer", Filter: flows.Attributes(map[string]string{"type": "com.example.question"}), Subscriber: h},
		{Name: "audit", Filter: flows.Attributes(map[string]string{"type": "com.example.answer"}), Subscriber: audit},
	}})
}

func startRR(t *testing.T, rr *flows.RequestReply) *flows.Requester {
	t.Helper()
	r, err := rr.Start(context.Background())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// The request gets its reply, with the reply's attributes and data; the
// reply still goes on to the Triggers that match it.
func TestRequestReplyAnswersWithTheReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		audited := make(chan event.Event, 1)
		audit := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			audited <- e
			return nil, nil
		})
		broker := qaBroker(t, answerer(nil), audit)
		r := startRR(t, &flows.RequestReply{Name: "ask", Broker: broker})
		q := question("q-1", "why?")
		reply, err := r.Request(context.Background(), q)
		if err != nil {
			t.Fatalf("Request: %v", err)
		}
		if reply.ID() != "answer-q-1" || reply.Type() != "com.example.answer" || reply.Source() != "/answerer" {
			t.Errorf("reply %s %s %s; want answer-q-1 com.example.answer /answerer", reply.ID(), reply.Type(), reply.Source())
		}
		if got := string(reply.Data()); got != `{"a":"{\"Q\":\"WHY?\"}"}` {
			t.Errorf("reply data %s", got)
		}
		v, _ := reply.Extensions()["replyid"].(string)
		if parts := strings.Split(v, ":"); len(parts) != 3 || parts[0] != "q-1" || len(parts[1]) != 22 || parts[2] != "0" {
			t.Errorf("replyid %q; want q-1:<22 base64url characters>:0", v)
		}
		if _, ok := q.Extensions()["correlationid"]; ok {
			t.Errorf("the caller's event was changed: %v", q.Extensions())
		}
		synctest.Wait()
		select {
		case e := <-audited:
			if e.ID() != "answer-q-1" {
				t.Errorf("audit got %s", e.ID())
			}
		default:
			t.Error("the reply did not go on to the audit Trigger")
		}
		if s := r.Stats(); s.Answered != 1 || s.Waiting != 0 || s.Dropped != 0 || s.TimedOut != 0 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

// Knative overwrites a correlation attribute the request already has; so
// does RequestReply, and the answer is the request's own.
func TestRequestReplyOverwritesTheCorrelationAttribute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRR(t, &flows.RequestReply{Broker: qaBroker(t, answerer(nil), nil)})
		q := question("q-1", "x")
		q.SetExtension("correlationid", "q-1:forged:0")
		reply, err := r.Request(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if v := reply.Extensions()["replyid"].(string); v == "q-1:forged:0" {
			t.Errorf("replyid %q: the request's own value was kept", v)
		}
	})
}

// The timeout is honoured, on the fake clock: ErrReplyTimeout, which is
// also a context.DeadlineExceeded, after Timeout exactly; over HTTP, 504.
func TestRequestReplyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		silent := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
		r := startRR(t, &flows.RequestReply{Broker: qaBroker(t, silent, nil), Timeout: 10 * time.Second})
		begin := time.Now()
		_, err := r.Request(context.Background(), question("q-1", "?"))
		if !errors.Is(err, flows.ErrReplyTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Request = %v; want ErrReplyTimeout and context.DeadlineExceeded", err)
		}
		if d := time.Since(begin); d != 10*time.Second {
			t.Errorf("timed out after %s; want 10s", d)
		}
		w := postQuestion(r.Handler(), "q-2", false)
		if w.Code != http.StatusGatewayTimeout {
			t.Errorf("POST = %d %q; want 504", w.Code, w.Body)
		}
		if s := r.Stats(); s.TimedOut != 2 || s.Waiting != 0 {
			t.Errorf("Stats = %+v; want 2 timed out, none waiting", s)
		}
	})
}

// Two requests with the same id, waiting at once, get each its own reply.
func TestRequestReplySameIDNeverCollides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		broker := start(t, &flows.Broker{Name: "qa", Triggers: []flows.Trigger{
			{Name: "answer", Filter: flows.Attributes(map[string]string{"type": "com.example.question"}), Subscriber: answerer(gate)},
		}}, flows.WithConcurrency(2))
		r := startRR(t, &flows.RequestReply{Broker: broker})
		var wg sync.WaitGroup
		replies := make([]string, 2)
		for i, text := range []string{"one", "two"} {
			wg.Go(func() {
				reply, err := r.Request(context.Background(), question("same", text))
				if err != nil {
					t.Errorf("Request %s: %v", text, err)
				}
				replies[i] = string(reply.Data())
			})
		}
		synctest.Wait() // both are delivered, and wait at the gate
		if s := r.Stats(); s.Waiting != 2 {
			t.Fatalf("Stats = %+v; want 2 waiting", s)
		}
		close(gate)
		wg.Wait()
		if replies[0] != `{"a":"{\"Q\":\"ONE\"}"}` || replies[1] != `{"a":"{\"Q\":\"TWO\"}"}` {
			t.Errorf("replies %q", replies)
		}
	})
}

// A reply whose value no waiting request has is dropped and counted: a
// forged token, an unknown id, and a second reply to a request already
// answered; the first reply wins.
func TestRequestReplyDropsUnknownReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var asked string
		record := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			mu.Lock()
			asked = e.Extensions()["correlationid"].(string)
			mu.Unlock()
			return nil, nil
		})
		broker := qaBroker(t, record, nil)
		r := startRR(t, &flows.RequestReply{Broker: broker})
		got := make(chan event.Event, 1)
		go func() {
			reply, err := r.Request(context.Background(), question("q-1", "?"))
			if err != nil {
				t.Errorf("Request: %v", err)
			}
			got <- reply
		}()
		synctest.Wait()
		mu.Lock()
		value := asked
		mu.Unlock()
		send := func(id, replyid string) {
			e := question(id, "")
			e.SetType("com.example.answer")
			e.SetExtension("replyid", replyid)
			if err := broker.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		send("forged", "q-1:AAAAAAAAAAAAAAAAAAAAAA:0")
		send("unknown", "q-2"+strings.TrimPrefix(value, "q-1"))
		synctest.Wait()
		select {
		case e := <-got:
			t.Fatalf("a forged reply answered the request: %s", e.ID())
		default:
		}
		send("first", value)
		send("second", value)
		if e := <-got; e.ID() != "first" {
			t.Errorf("answered with %s; want first", e.ID())
		}
		if s := r.Stats(); s.Dropped != 3 || s.Answered != 1 {
			t.Errorf("Stats = %+v; want 3 dropped, 1 answered", s)
		}
	})
}

// Past MaxWaiting a request is refused at once: ErrFull in Go, 503 with
// Retry-After over HTTP.
func TestRequestReplyMaxWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		r := startRR(t, &flows.RequestReply{Broker: qaBroker(t, answerer(gate), nil), MaxWaiting: 2})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				if _, err := r.Request(context.Background(), question(fmt.Sprint(i), "?")); err != nil {
					t.Errorf("Request %d: %v", i, err)
				}
			})
		}
		synctest.Wait()
		if _, err := r.Request(context.Background(), question("3", "?")); !errors.Is(err, flows.ErrFull) {
			t.Errorf("third Request = %v; want ErrFull", err)
		}
		w := postQuestion(r.Handler(), "4", false)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
			t.Errorf("POST = %d, Retry-After %q; want 503, 1", w.Code, w.Header().Get("Retry-After"))
		}
		gate <- struct{}{}
		gate <- struct{}{}
		wg.Wait()
	})
}

// Close answers the waiting requests with ErrClosed (503 over HTTP), and
// refuses new ones; Shutdown first lets the waiting ones get their reply.
func TestRequestReplyShutdownAnswersTheWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		broker := qaBroker(t, answerer(gate), nil)
		r := startRR(t, &flows.RequestReply{Broker: broker})
		h := r.Handler()
		codes := make(chan int, 1)
		go func() { codes <- postQuestion(h, "h-1", false).Code }()
		var replied error
		done := make(chan struct{})
		go func() {
			_, replied = r.Request(context.Background(), question("q-1", "?"))
			close(done)
		}()
		synctest.Wait()
		shut := make(chan error, 1)
		go func() { shut <- r.Shutdown(context.Background()) }()
		synctest.Wait()
		if _, err := r.Request(context.Background(), question("late", "?")); !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Request during Shutdown = %v; want ErrClosed", err)
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with requests waiting", err)
		default:
		}
		gate <- struct{}{} // one of the two is answered
		synctest.Wait()
		r.Close() // the other gets ErrClosed
		<-done
		code := <-codes
		if err := <-shut; err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		closed := errors.Is(replied, flows.ErrClosed)
		if (replied != nil && !closed) || (code != http.StatusOK && code != http.StatusServiceUnavailable) ||
			(replied == nil) == (code == http.StatusOK) {
			t.Errorf("Request = %v, POST = %d; want one answered and the other ErrClosed/503", replied, code)
		}
		if s := r.Stats(); s.Waiting != 0 {
			t.Errorf("Stats = %+v after Close", s)
		}
		if w := postQuestion(h, "after", false); w.Code != http.StatusServiceUnavailable {
			t.Errorf("POST after Close = %d; want 503", w.Code)
		}
		close(gate)
	})
}

// A request waiting when the broker stops gets ErrClosed.
func TestRequestReplyBrokerStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		silent := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
		broker, err := (&flows.Broker{Triggers: []flows.Trigger{{Subscriber: silent}}}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r := startRR(t, &flows.RequestReply{Broker: broker})
		errs := make(chan error, 1)
		go func() {
			_, err := r.Request(context.Background(), question("q-1", "?"))
			errs <- err
		}()
		synctest.Wait()
		if err := broker.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Request = %v; want ErrClosed", err)
		}
		if _, err := (&flows.RequestReply{Broker: broker}).Start(context.Background()); !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Start on a stopped broker = %v; want ErrClosed", err)
		}
	})
}

// postQuestion posts a question to h, in binary or structured mode.
func postQuestion(h http.Handler, id string, structured bool) *httptest.ResponseRecorder {
	var req *http.Request
	if structured {
		req = httptest.NewRequest(http.MethodPost, "/default/ask", strings.NewReader(
			`{"specversion":"1.0","id":"`+id+`","source":"/curl","type":"com.example.question","datacontenttype":"application/json","data":{"q":"how?"}}`))
		req.Header.Set("Content-Type", "application/cloudevents+json")
	} else {
		req = httptest.NewRequest(http.MethodPost, "/default/ask", strings.NewReader(`{"q":"how?"}`))
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", id)
		req.Header.Set("Ce-Source", "/curl")
		req.Header.Set("Ce-Type", "com.example.question")
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// The HTTP contract: 200 with the reply in the request's mode, OPTIONS,
// 405 with Allow, 400, 413, 401.
func TestRequestReplyHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := startRR(t, &flows.RequestReply{Name: "ask", Broker: qaBroker(t, answerer(nil), nil)})
		h := r.Handler(flows.IngressMaxBodyBytes(200))
		w := postQuestion(h, "b-1", false)
		if w.Code != http.StatusOK || w.Header().Get("Ce-Id") != "answer-b-1" || w.Header().Get("Ce-Type") != "com.example.answer" ||
			!strings.HasPrefix(w.Header().Get("Ce-Replyid"), "b-1:") || w.Body.String() != `{"a":"{\"Q\":\"HOW?\"}"}` {
			t.Errorf("binary: %d %v %q", w.Code, w.Header(), w.Body)
		}
		w = postQuestion(h, "s-1", true)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/cloudevents+json") ||
			!strings.Contains(w.Body.String(), `"id":"answer-s-1"`) {
			t.Errorf("structured: %d %v %q", w.Code, w.Header(), w.Body)
		}
		for _, c := range []struct {
			method, body string
			want         int
		}{
			{http.MethodGet, "", http.StatusMethodNotAllowed},
			{http.MethodOptions, "", http.StatusOK},
			{http.MethodPost, "not an event", http.StatusBadRequest},
			{http.MethodPost, strings.Repeat("x", 201), http.StatusRequestEntityTooLarge},
		} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(c.method, "/default/ask", strings.NewReader(c.body)))
			if w.Code != c.want || w.Header().Get("Allow") != "POST, OPTIONS" {
				t.Errorf("%s %q = %d, Allow %q; want %d, POST, OPTIONS", c.method, c.body, w.Code, w.Header().Get("Allow"), c.want)
			}
		}
		deny := flows.AuthenticatorFunc(func(*http.Request) error { return errors.New("no") })
		if w := postQuestion(r.Handler(flows.IngressAuthenticator(deny)), "a-1", false); w.Code != http.StatusUnauthorized {
			t.Errorf("refused credentials = %d; want 401", w.Code)
		}
		if r.Path() != "/default/ask" {
			t.Errorf("Path = %q", r.Path())
		}
	})
}

// failingChannel refuses every event.
type failingChannel struct{ flows.Channel }

func (failingChannel) Publish(context.Context, *event.Event) error { return errors.New("disk on fire") }

// A broker that refuses the request for its own reasons: 500, with a
// generic reason, and a request waiting no more.
func TestRequestReplyBrokerRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		broker := start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: flows.Discard}}},
			flows.WithChannels(func(context.Context, string) (flows.Channel, error) {
				return failingChannel{flows.NewInMemoryChannel(0)}, nil
			}))
		r := startRR(t, &flows.RequestReply{Broker: broker})
		w := postQuestion(r.Handler(), "q-1", false)
		if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "fire") {
			t.Errorf("POST = %d %q; want 500 without the details", w.Code, w.Body)
		}
		if s := r.Stats(); s.Waiting != 0 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestRequestReplyValidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seq := start(t, &flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flows.Discard}}})
		for _, c := range []struct {
			rr   flows.RequestReply
			want string
		}{
			{flows.RequestReply{}, `requestreply "default": broker: missing`},
			{flows.RequestReply{Broker: seq}, `broker: seq is not a Broker`},
			{flows.RequestReply{Broker: seq, CorrelationAttribute: "source"}, `correlationAttribute: "source" is a CloudEvents attribute`},
			{flows.RequestReply{Broker: seq, ReplyAttribute: "Reply-ID"}, `replyAttribute: "Reply-ID" is not an extension name`},
			{flows.RequestReply{Broker: seq, ReplyAttribute: "correlationid"}, `replyAttribute: "correlationid" is also the correlation attribute`},
			{flows.RequestReply{Broker: seq, Timeout: -time.Second}, `timeout: must be positive`},
		} {
			_, err := c.rr.Start(context.Background())
			if !errors.Is(err, flows.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Start(%+v) = %v; want %q", c.rr, err, c.want)
			}
		}
	})
}
