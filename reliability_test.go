package flows_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// faultCount is how many events the fault-accounting tests drive: the full
// 100,000 without the race detector, fewer with it or under -short.
func faultCount() int {
	switch {
	case testing.Short():
		return 2_000
	case raceEnabled:
		return 10_000
	}
	return 100_000
}

type outcome int

const (
	ok outcome = iota
	transient
	permanent
	panics
	hangs
)

// fate decides, reproducibly, what the attempt of a handler does with an
// event: 20% transient errors, 1% permanent, 0.5% panics, 0.5% attempts that
// outlive their timeout.
func fate(id, where string, attempt int) outcome {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s/%d", id, where, attempt)
	switch r := h.Sum32() % 1000; {
	case r < 200:
		return transient
	case r < 210:
		return permanent
	case r < 215:
		return panics
	case r < 220:
		return hangs
	}
	return ok
}

// faulty is a handler that follows fate; it counts attempts per event.
type faulty struct {
	where    string
	mu       sync.Mutex
	attempts map[string]int
}

func newFaulty(where string) *faulty { return &faulty{where: where, attempts: map[string]int{}} }

func (f *faulty) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	f.mu.Lock()
	f.attempts[e.ID()]++
	n := f.attempts[e.ID()]
	f.mu.Unlock()
	switch fate(e.ID(), f.where, n) {
	case transient:
		return nil, errors.New("transient failure")
	case permanent:
		return nil, flows.Permanent(errors.New("permanent failure"))
	case panics:
		panic("handler bug")
	case hangs:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	e.SetExtension("path", fmt.Sprint(e.Extensions()["path"])+"/"+f.where)
	return &e, nil
}

// expect replays fate: where the event ends (the reply, or the dead-letter
// sink at step `at`) and the error data the dead letter must carry.
func expect(id string, steps []string, attempts int) (at int, errText string) {
	for i, s := range steps {
		for n := 1; n <= attempts; n++ {
			switch fate(id, s, n) {
			case ok:
				goto next
			case permanent:
				return i, "permanent failure"
			case transient:
				errText = "transient failure"
			case panics:
				errText = "flows: handler panicked: handler bug"
			case hangs:
				errText = "flows: attempt timed out"
			}
		}
		return i, errText
	next:
	}
	return -1, ""
}

func pathTo(steps []string) string {
	var b strings.Builder
	for _, s := range steps {
		b.WriteString("/" + s)
	}
	return b.String()
}

// ledger records final outcomes by event id.
type ledger struct {
	mu   sync.Mutex
	seen map[string][]event.Event
}

func newLedger() *ledger { return &ledger{seen: map[string][]event.Event{}} }

func (l *ledger) Handle(_ context.Context, e event.Event) (*event.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[e.ID()] = append(l.seen[e.ID()], e)
	return nil, nil
}

func TestAccountingUnderFaultsSequence(t *testing.T) {
	n := faultCount()
	steps := []string{"s0", "s1", "s2"}
	delivery := &flows.Delivery{Retry: 3, BackoffDelay: 100 * time.Microsecond, BackoffMax: time.Millisecond, Timeout: 20 * time.Millisecond}
	delivered, dead := newLedger(), newLedger()
	delivery.DeadLetter = dead
	seq := &flows.Sequence{Name: "acct", Reply: delivered, Delivery: delivery}
	for _, s := range steps {
		seq.Steps = append(seq.Steps, flows.Step{Subscriber: newFaulty(s)})
	}
	f := start(t, seq, flows.WithConcurrency(16))
	for i := range n {
		if err := f.Send(context.Background(), newEvent(strconv.Itoa(i), nil)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	var nDelivered, nDead int
	for i := range n {
		id := strconv.Itoa(i)
		at, errText := expect(id, steps, delivery.Retry+1)
		got, dl := delivered.seen[id], dead.seen[id]
		if len(got)+len(dl) != 1 {
			t.Fatalf("event %s: delivered %d times, dead-lettered %d times; want exactly one outcome", id, len(got), len(dl))
		}
		if at < 0 {
			nDelivered++
			if len(got) != 1 || got[0].Extensions()["path"] != "<nil>/s0/s1/s2" {
				t.Fatalf("event %s should have been delivered through every step: %v", id, got)
			}
			continue
		}
		nDead++
		if len(dl) != 1 {
			t.Fatalf("event %s should have been dead-lettered at step %d", id, at)
		}
		ext := dl[0].Extensions()
		if ext[flows.ExtensionErrorDest] != fmt.Sprintf("acct/steps[%d]", at) || ext[flows.ExtensionErrorCode] != int32(500) {
			t.Fatalf("event %s: dead letter extensions %v, want it to name step %d", id, ext, at)
		}
		data, _ := base64.StdEncoding.DecodeString(ext[flows.ExtensionErrorData].(string))
		if !strings.HasPrefix(string(data), errText) {
			t.Fatalf("event %s: error data %q, want %q", id, data, errText)
		}
		// The dead letter is the event as the failing step received it.
		if want := "<nil>" + pathTo(steps[:at]); at > 0 && ext["path"] != want || at == 0 && ext["path"] != nil {
			t.Fatalf("event %s: dead letter path %v, want the input of step %d", id, ext["path"], at)
		}
	}
	t.Logf("sequence: accepted %d, delivered %d, dead-lettered %d, lost 0, duplicates 0", n, nDelivered, nDead)
	if nDelivered == 0 || nDead == 0 {
		t.Errorf("the fault mix exercised only one outcome")
	}
}

func TestAccountingUnderFaultsParallel(t *testing.T) {
	n := faultCount()
	branches := []string{"b0", "b1", "b2"}
	delivery := &flows.Delivery{Retry: 2, Timeout: 20 * time.Millisecond}
	replies, dead := make([]*ledger, 3), newLedger()
	delivery.DeadLetter = dead
	par := &flows.Parallel{Name: "acct", Delivery: delivery}
	for i, b := range branches {
		replies[i] = newLedger()
		par.Branches = append(par.Branches, flows.Branch{
			Filter:     flows.Match(func(e event.Event) bool { id, _ := strconv.Atoi(e.ID()); return id%7 != i }),
			Subscriber: newFaulty(b), Reply: replies[i],
		})
	}
	f := start(t, par, flows.WithConcurrency(16))
	for i := range n {
		if err := f.Send(context.Background(), newEvent(strconv.Itoa(i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadAt := map[string]map[string]int{} // id -> failed branch destination -> count
	for id, dls := range dead.seen {
		deadAt[id] = map[string]int{}
		for _, d := range dls {
			deadAt[id][d.Extensions()[flows.ExtensionErrorDest].(string)]++
		}
	}
	var total, nDelivered, nDead, filtered int
	for i := range n {
		id := strconv.Itoa(i)
		for b, name := range branches {
			if i%7 == b {
				filtered++
				if len(replies[b].seen[id]) != 0 {
					t.Fatalf("event %s passed branch %d's filter", id, b)
				}
				continue
			}
			total++
			at, _ := expect(id, []string{name}, delivery.Retry+1)
			got, dl := len(replies[b].seen[id]), deadAt[id][fmt.Sprintf("acct/branches[%d]", b)]
			switch {
			case at < 0 && got == 1 && dl == 0:
				nDelivered++
			case at == 0 && got == 0 && dl == 1:
				nDead++
			default:
				t.Fatalf("event %s branch %d: delivered %d, dead-lettered %d (expected dead letter: %v)", id, b, got, dl, at == 0)
			}
		}
	}
	t.Logf("parallel: %d events x 3 branches: filtered out %d, accepted %d, delivered %d, dead-lettered %d, lost 0, duplicates 0",
		n, filtered, total, nDelivered, nDead)
}

func TestShutdownUnderLoad(t *testing.T) {
	out := newLedger()
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: appender("a")}, {Subscriber: appender("b")}}, Reply: out}).
		Start(context.Background(), flows.WithCapacity(64), flows.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		accepted []string
		refused  atomic.Int64
		wg       sync.WaitGroup
		started  = make(chan struct{})
		once     sync.Once
	)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := f.Send(ctx, newEvent(id, msg{}))
				cancel()
				if err != nil {
					if !errors.Is(err, flows.ErrClosed) {
						t.Errorf("Send after shutdown began = %v, want ErrClosed", err)
					}
					refused.Add(1)
					return
				}
				mu.Lock()
				accepted = append(accepted, id)
				if len(accepted) == 2000 {
					once.Do(func() { close(started) })
				}
				mu.Unlock()
			}
		}()
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	wg.Wait()
	for _, id := range accepted {
		if got := out.seen[id]; len(got) != 1 {
			t.Fatalf("event %s was accepted but delivered %d times", id, len(got))
		}
	}
	if len(out.seen) != len(accepted) {
		t.Errorf("delivered %d events, accepted %d", len(out.seen), len(accepted))
	}
	t.Logf("accepted %d events from 16 senders, all delivered; %d sends refused with ErrClosed", len(accepted), refused.Load())
}

func TestBackpressureBoundsMemory(t *testing.T) {
	const capacity, events = 32, 20_000
	var delivered atomic.Int64
	slow := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		time.Sleep(5 * time.Microsecond)
		delivered.Add(1)
		return nil, nil
	})
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Match(func(event.Event) bool { return true })}, {Subscriber: slow}}},
		flows.WithCapacity(capacity))
	payload := strings.Repeat("x", 16<<10) // 16 KiB per event: 320 MB if nothing held the producer back
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	for i := range events {
		e := newEvent(strconv.Itoa(i), nil)
		e.SetData("text/plain", payload)
		if err := f.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		// Two channels of `capacity`, plus the event each worker holds.
		if inFlight := int64(i+1) - delivered.Load(); inFlight > 2*capacity+2 {
			t.Fatalf("%d events in flight with capacity %d: the producer was not held back", inFlight, capacity)
		}
		if i%1000 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if delivered.Load() != events {
		t.Errorf("delivered %d of %d events", delivered.Load(), events)
	}
	if grown := int64(peak) - int64(base.HeapAlloc); grown > 64<<20 {
		t.Errorf("heap grew by %d MiB while producing %d MiB of events", grown>>20, events*16>>10)
	}
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd on this system")
	}
	return len(entries)
}

func TestConnectionsAndFilesAreReleased(t *testing.T) {
	before := openFDs(t)
	func() {
		step := httptest.NewServer(flows.NewHTTPHandler(appender(" http")))
		defer step.Close()
		out := flowstest.NewRecorder()
		f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(step.URL)}}, Reply: out}).Start(context.Background(), flows.WithConcurrency(8))
		srv, err := flows.ListenAndServe("127.0.0.1:0", flows.NewIngress(f))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			status, _, _ := request(t, "POST", srv.URL(), with(binaryHeaders, "Ce-Id", strconv.Itoa(i)), `{"message":"x"}`)
			if status != 202 {
				t.Fatal(status)
			}
		}
		out.MustWait(t, 50)
		srv.Shutdown(context.Background())
		f.Shutdown(context.Background())
	}()
	// Client ends of closed connections are released as their read loops see EOF.
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d file descriptors open after closing everything, %d before", after, before)
	}
}
