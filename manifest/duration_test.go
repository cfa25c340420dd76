package manifest_test

import (
	"testing"
	"time"

	"github.com/eventflows/flows/manifest"
)

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"PT0.2S", 200 * time.Millisecond},
		{"PT1S", time.Second},
		{"PT0S", 0},
		{"P0", 0},
		{"PT1M30S", 90 * time.Second},
		{"PT1H", time.Hour},
		{"PT1,5M", 90 * time.Second},
		{"PT0.000000001S", time.Nanosecond},
		{"PT0.0000000019S", time.Nanosecond}, // truncated to the nanosecond
		{"P1D", 24 * time.Hour},
		{"P1W", 7 * 24 * time.Hour},
		{"P1DT2H3M4.5S", 26*time.Hour + 3*time.Minute + 4500*time.Millisecond},
		{"+PT2S", 2 * time.Second},
		{"PT1.5H", 90 * time.Minute},
	} {
		got, err := manifest.ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", `invalid duration "": empty; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"200ms", `invalid duration "200ms": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"-PT1S", `invalid duration "-PT1S": must not be negative`},
		{"P1Y", `invalid duration "P1Y": years and months have no fixed length; use weeks (W), days (D), or a time part such as T1H`},
		{"P1M", `invalid duration "P1M": years and months have no fixed length; use weeks (W), days (D), or a time part such as T1H`},
		{"P1S", `invalid duration "P1S": seconds (S) must follow "T", as in "PT5S"`},
		{"PT", `invalid duration "PT": nothing after "T"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"P", `invalid duration "P": no components; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1", `invalid duration "PT1": "1" has no unit letter after it; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PTS", `invalid duration "PTS": no number before "S"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1S2M", `invalid duration "PT1S2M": minutes (M) given twice or out of order; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1S1S", `invalid duration "PT1S1S": seconds (S) given twice or out of order; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1.2.3S", `invalid duration "PT1.2.3S": "1.2.3" is not a decimal number`},
		{"PT.5S", `invalid duration "PT.5S": ".5" is not a decimal number`},
		{"PT1.S", `invalid duration "PT1.S": "1." is not a decimal number`},
		{"pt1s", `invalid duration "pt1s": does not start with "P"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1s", `invalid duration "PT1s": unexpected "s"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT1X", `invalid duration "PT1X": unexpected "X"; want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`},
		{"PT9999999999H", `invalid duration "PT9999999999H": too long`},
	} {
		_, err := manifest.ParseDuration(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseDuration(%q) error = %v\nwant %s", tt.in, err, tt.want)
		}
	}
}
