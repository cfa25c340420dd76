package flows

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
)

// validText and blank are quick forms of utf8.ValidString and of
// strings.TrimSpace(s) == "": they must agree with them on every input,
// or events would be accepted or refused differently.
func TestValidTextAndBlankAgreeWithTheLibrary(t *testing.T) {
	cases := []string{"", " ", "\t\n", "a", " a", "a ", "1", "dev.knative.sources.ping", "\u00a0", "\u0085x", "\u3000",
		"é", "ok\xff", "\xff", "\xc3", "abc\xe2\x82", "\u2028", "x\u00a0", "\x00", "\x7f", "\x1f", "日本", string([]byte{0xed, 0xa0, 0x80})}
	for _, s := range cases {
		if got, want := validText(s), utf8.ValidString(s); got != want {
			t.Errorf("validText(%q) = %v, utf8.ValidString says %v", s, got, want)
		}
		if got, want := blank(s), strings.TrimSpace(s) == ""; got != want {
			t.Errorf("blank(%q) = %v, strings.TrimSpace says %v", s, got, want)
		}
	}
}

func FuzzValidTextAndBlank(f *testing.F) {
	f.Add("dev.knative.sources.ping")
	f.Add(" \u00a0")
	f.Add("ok\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if validText(s) != utf8.ValidString(s) {
			t.Errorf("validText(%q) disagrees with utf8.ValidString", s)
		}
		if blank(s) != (strings.TrimSpace(s) == "") {
			t.Errorf("blank(%q) disagrees with strings.TrimSpace", s)
		}
	})
}

// Each branch of a Parallel owns the event it is given, data and
// attributes: a branch that writes into its event's data in place, appends
// to it, or sets an extension changes nothing for the others, however many
// branches share the copies' allocations.
func TestParallelBranchesOwnTheirEvents(t *testing.T) {
	const branches = 4
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(branches)
	p := &Parallel{}
	for i := range branches {
		p.Branches = append(p.Branches, Branch{Subscriber: HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			defer wg.Done()
			mu.Lock()
			seen[fmt.Sprintf("%s %v", e.DataEncoded, e.Extensions()["mark"])]++
			mu.Unlock()
			e.DataEncoded[0] = byte('a' + i) // in place
			_ = append(e.DataEncoded, '!')   // into spare capacity, if any
			e.DataEncoded = append(e.DataEncoded[:3], "-mine"...)
			e.SetExtension("mark", "branch"+strconv.Itoa(i))
			return nil, nil
		})})
	}
	ctx := context.Background()
	f, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := validEventForTest()
	if err := e.SetData(event.TextPlain, "0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Handle(ctx, e); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "0123456789 <nil>"; seen[want] != branches {
		t.Errorf("the branches saw %v, want %d times %q", seen, branches, want)
	}
}

// copyEvents gives each copy data of its own, with no room to grow into
// the next copy's.
func TestCopyEventsAreIndependent(t *testing.T) {
	e := validEventForTest()
	e.DataEncoded = []byte("data")
	e.SetExtension("x", "1")
	copies := copyEvents(e, 3)
	copies[0].e.DataEncoded[0] = 'D'
	copies[0].e.DataEncoded = append(copies[0].e.DataEncoded, "more"...)
	copies[0].e.SetExtension("x", "2")
	copies[0].e.SetID("other")
	for i, c := range append([]*event.Event{&e}, &copies[1].e, &copies[2].e) {
		if string(c.DataEncoded) != "data" || c.Extensions()["x"] != "1" || c.ID() != "1" {
			t.Errorf("copy %d: data %q, x %v, id %q after the first copy changed, want \"data\", 1, \"1\"", i, c.DataEncoded, c.Extensions()["x"], c.ID())
		}
	}
}
