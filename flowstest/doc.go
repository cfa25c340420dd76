// Package flowstest helps unit-test code built with [flows]: compose real
// handlers into a Sequence or a Parallel, drive it with events, and assert
// on what comes out, with no cluster, no network unless you ask for it, and
// no sleeping.
//
// # Recording subscribers
//
// A [Recorder] is a [flows.Handler] that records every event it receives
// and answers as a script says: [Echo], [NoReply], [ReplyWith], [Fail],
// [Panic], [Block], [Delegate] to a real handler, each for one attempt or
// [Reply.Times] n. The script is read per event ID, so it describes
// attempts: "fail twice, then succeed" is
//
//	step := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
//
// A recorder tells what it saw ([Recorder.Events], [Recorder.Records] with
// attempt numbers and arrival times, [Recorder.Attempts]) and waits for it:
// [Recorder.Wait] with a context, or [Recorder.MustWait] in a test, which
// fails with the list of the events that did arrive.
//
// For a flow made of in-memory channels, [flows.Flow.Handle] returns once
// the flow is done with the event (delivered, retried, dead-lettered), so
// the recorders can be read right after it, with no waiting at all:
//
//	func TestOrders(t *testing.T) {
//		dead := flowstest.NewRecorder()
//		f, err := (&flows.Sequence{Name: "orders", Steps: []flows.Step{
//			{Subscriber: validate},
//			{Subscriber: flowstest.NewRecorder(flowstest.Fail(errBoom)),
//				Delivery: &flows.Delivery{Retry: 2, DeadLetter: dead}},
//		}}).Start(t.Context())
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer f.Close()
//
//		in := flowstest.NewEvent("1", "order.created", "/shop", `{"sku": "A1"}`)
//		if _, err := f.Handle(t.Context(), in); err != nil {
//			t.Fatal(err)
//		}
//		flowstest.AssertEvents(t, dead.Events(), []event.Event{
//			flowstest.NewEvent("1", "order.created", "/shop", `{"sku": "A1"}`,
//				flowstest.WithExtension(flows.ExtensionErrorDest, "orders/steps[1]"),
//				flowstest.WithExtension(flows.ExtensionErrorCode, 500),
//				flowstest.WithExtension(flows.ExtensionErrorData, "Ym9vbQ==")), // "boom"
//		})
//	}
//
// Use Recorder.MustWait when events come from elsewhere: [flows.Flow.Send],
// a [flows.Ping], an HTTP hop.
//
// # Building and comparing events
//
// [NewEvent] builds an event from an id, a type, a source and JSON data (a
// JSON text or any Go value), with options for extensions, time, subject
// and other data. [Diff] and [DiffEvents] compare events and say, one line
// per difference, what differs: attributes, extensions (by their string
// form, as they cross HTTP) and JSON data semantically, at its JSON path
// ("data.items[0].qty: got 2, want 3"). [IgnoreAttributes] leaves out what
// a test cannot predict, [AnyOrder] matches the replies of a Parallel's
// branches in any order. [AssertEvent] and [AssertEvents] report the diff on
// a testing.TB.
//
// # HTTP
//
// [NewServer] serves any handler, a Recorder or a running flow, on
// 127.0.0.1 with Knative's subscriber contract, as httptest.NewServer
// serves an http.Handler; [Server.Target] is the [flows.HTTPTarget] that
// reaches it. Use it to test a flow whose steps are HTTP services, or a
// flow's HTTP ingress.
//
// # Channel conformance
//
// [TestChannel] is the conformance suite that every [flows.Channel]
// implementation should pass, as the in-memory channel and the JetStream
// channel do; [ChannelFeatures] says what a channel promises beyond the
// contract (order, a bound, durability). Run it from a test of your own.
//
// # Time
//
// Schedules, backoff delays, attempt timeouts and shutdown deadlines all use
// the time package, so they run on testing/synctest's fake clock: inside
// synctest.Test, time moves forward only when every goroutine of the test
// is blocked, and jumps straight to the next timer. A Ping every hour, a
// one-minute backoff or a 30-second timeout then take microseconds, and the
// times a Recorder records are exact:
//
//	func TestRetries(t *testing.T) {
//		synctest.Test(t, func(t *testing.T) {
//			start := time.Now() // midnight UTC, 2000-01-01
//			step := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
//			f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: step,
//				Delivery: &flows.Delivery{Retry: 3, BackoffDelay: time.Minute}}}}).Start(t.Context())
//			if err != nil {
//				t.Fatal(err)
//			}
//			defer f.Close()
//			f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/test", nil))
//			for _, r := range step.Records() {
//				t.Log(r.Attempt, r.Time.Sub(start)) // 1 0s, 2 1m0s, 3 3m0s
//			}
//		})
//	}
//
//	func TestHourly(t *testing.T) {
//		synctest.Test(t, func(t *testing.T) {
//			sink := flowstest.NewRecorder()
//			src, err := (&flows.Ping{Schedule: "@hourly", Timezone: "UTC", Sink: sink}).Start(t.Context())
//			if err != nil {
//				t.Fatal(err)
//			}
//			defer src.Close()
//			got := sink.MustWaitFor(t, 3, 4*time.Hour) // 3 ticks, at 01:00, 02:00, 03:00
//			_ = got
//		})
//	}
//
// Rules of the bubble:
//
//   - Create everything inside it: flows, sources, recorders' waits. A flow
//     started outside the bubble runs on the real clock, and an event sent
//     to it from inside the bubble crashes the test binary ("close of
//     synctest channel from outside bubble").
//   - Stop every flow and source before the bubble's function returns
//     (defer Close, or t.Cleanup, which runs inside the bubble): synctest
//     reports goroutines left behind as a deadlock, a free leak check.
//   - A wait's timeout is fake time too: [Recorder.MustWait] gives up after
//     [WaitTimeout] of fake time, at once in real time. For a flow that needs
//     more fake time than that, say how much with [Recorder.MustWaitFor].
//   - synctest.Wait returns when everything is blocked; after it, a
//     recorder's Len is final for now: a good way to assert that nothing
//     more arrives.
//   - No real network I/O: a goroutine blocked on a socket is not "durably
//     blocked", so time stops. Test HTTP hops ([NewServer]) outside the
//     bubble, with short or zero backoffs.
//
// Tests of package flows itself must live in package flows_test to import
// this package, which imports flows.
package flowstest
