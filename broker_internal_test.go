package flows

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestArrivalTimeIsRFC3339Nano checks that the broker's knativearrivaltime
// text is exactly time.Format's RFC3339Nano in UTC: at whole seconds (no
// fraction), at nanoseconds ending in zeros (trimmed), across second
// boundaries in both directions (the cached second must not be reused),
// in other zones, at the ends of the four-digit years and past them, and
// at many random instants.
func TestArrivalTimeIsRFC3339Nano(t *testing.T) {
	base := time.Date(2026, 12, 1, 14, 4, 20, 0, time.UTC)
	instants := []time.Time{
		base,
		base.Add(1),
		base.Add(10),
		base.Add(100 * time.Millisecond),
		base.Add(120 * time.Microsecond),
		base.Add(123456789),
		base.Add(999999999),
		base.Add(time.Second),
		base.Add(time.Second - 1),
		base, // back to an earlier second
		base.Add(-1),
		base.In(time.FixedZone("UTC+5:30", 5*3600+1800)).Add(500),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999990, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(-1, 6, 1, 0, 0, 0, 50, time.UTC),
		base, // the cache after a year it cannot hold
		time.Now(),
	}
	r := rand.New(rand.NewPCG(17, 1))
	for range 20000 {
		// From 1926 to 2326.
		at := time.Unix(r.Int64N(400*365*86400)-100*365*86400+base.Unix(), r.Int64N(1e9))
		switch r.IntN(4) {
		case 0: // nanoseconds ending in zeros
			at = at.Truncate(time.Duration([]int64{10, 1000, 1e6, 1e8, 1e9}[r.IntN(5)]))
		case 1: // the same second as the previous instant
			if len(instants) > 0 {
				prev := instants[len(instants)-1]
				at = prev.Truncate(time.Second).Add(time.Duration(r.Int64N(int64(time.Second))))
			}
		}
		instants = append(instants, at)
	}
	for _, at := range instants {
		if got, want := arrivalTime(at), at.UTC().Format(time.RFC3339Nano); got != want {
			t.Errorf("arrivalTime(%v) = %q, want %q", at, got, want)
		}
	}
}

func BenchmarkArrivalTime(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		arrivalTime(time.Now())
	}
}

func BenchmarkArrivalTimeFormat(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = time.Now().UTC().Format(time.RFC3339Nano)
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		_ = time.Now()
	}
}
