package oidcauth

import "time"

// WithClock replaces time.Now for the key refresh interval.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}
