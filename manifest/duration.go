package manifest

import (
	"fmt"
	"math/big"
	"strings"
	"time"
)

// ParseDuration parses the ISO-8601 durations that Knative's delivery
// fields take, such as "PT0.2S", "PT1M30S", "P1D" or "P1W":
//
//	P[nW][nD][T[nH][nM][nS]]
//
// Each n is a decimal number and may have a fraction ("PT0.5S", "PT1,5M").
// Components come in that order, at most once each, and at least one is
// present. A leading "+" is allowed. Years and months are rejected, because
// their length varies (Knative approximates them); so are negative
// durations, which no delivery field accepts. Precision is a nanosecond.
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %s", s, err)
	}
	return d, nil
}

var (
	unitNames = map[byte]string{'W': "weeks", 'D': "days", 'H': "hours", 'M': "minutes", 'S': "seconds"}
	unitSize  = map[byte]time.Duration{'W': 7 * 24 * time.Hour, 'D': 24 * time.Hour, 'H': time.Hour, 'M': time.Minute, 'S': time.Second}
)

func parseDuration(s string) (time.Duration, error) {
	const want = `want an ISO-8601 duration such as "PT0.2S" or "PT1M30S"`
	switch {
	case s == "":
		return 0, fmt.Errorf("empty; %s", want)
	case s[0] == '-':
		return 0, fmt.Errorf("must not be negative")
	case s[0] == '+':
		s = s[1:]
	}
	if s == "" || s[0] != 'P' {
		return 0, fmt.Errorf(`does not start with "P"; %s`, want)
	}
	rest := s[1:]
	if rest == "0" {
		return 0, nil // Knative's parser accepts "P0" as zero.
	}
	datePart, timePart, hasT := strings.Cut(rest, "T")
	if hasT && timePart == "" {
		return 0, fmt.Errorf(`nothing after "T"; %s`, want)
	}
	total := new(big.Int)
	n := 0
	for _, part := range []struct {
		s     string
		units string
	}{{datePart, "WD"}, {timePart, "HMS"}} {
		units := part.units
		p := part.s
		for p != "" {
			i := 0
			for i < len(p) && (p[i] >= '0' && p[i] <= '9' || p[i] == '.' || p[i] == ',') {
				i++
			}
			num := p[:i]
			if i == len(p) {
				return 0, fmt.Errorf("%q has no unit letter after it; %s", num, want)
			}
			unit := p[i]
			if num == "" {
				return 0, fmt.Errorf("no number before %q; %s", string(unit), want)
			}
			if part.units == "WD" && (unit == 'Y' || unit == 'M') {
				return 0, fmt.Errorf("years and months have no fixed length; use weeks (W), days (D), or a time part such as T1H")
			}
			k := strings.IndexByte(units, unit)
			if k < 0 {
				if strings.IndexByte(part.units, unit) >= 0 {
					return 0, fmt.Errorf("%s (%c) given twice or out of order; %s", unitNames[unit], unit, want)
				}
				if part.units == "WD" && strings.IndexByte("HS", unit) >= 0 {
					return 0, fmt.Errorf(`%s (%c) must follow "T", as in "PT5%c"`, unitNames[unit], unit, unit)
				}
				return 0, fmt.Errorf("unexpected %q; %s", string(unit), want)
			}
			units = units[k+1:]
			v, err := componentValue(num, unitSize[unit])
			if err != nil {
				return 0, err
			}
			total.Add(total, v)
			n++
			p = p[i+1:]
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("no components; %s", want)
	}
	if !total.IsInt64() {
		return 0, fmt.Errorf("too long")
	}
	return time.Duration(total.Int64()), nil
}

// componentValue returns num (digits with an optional fraction) times unit,
// in nanoseconds, truncated.
func componentValue(num string, unit time.Duration) (*big.Int, error) {
	intPart, frac, hasFrac := strings.Cut(strings.Replace(num, ",", ".", 1), ".")
	if strings.ContainsAny(frac, ".,") || intPart == "" || (hasFrac && frac == "") {
		return nil, fmt.Errorf("%q is not a decimal number", num)
	}
	digits, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return nil, fmt.Errorf("%q is not a decimal number", num)
	}
	v := digits.Mul(digits, big.NewInt(int64(unit)))
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	return v.Quo(v, scale), nil
}
