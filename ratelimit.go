package flows

import (
	"context"

	"golang.org/x/time/rate"
)

// limiter returns the rate limiter of a policy, or nil if it has no limit.
func (d *Delivery) limiter() *rate.Limiter {
	if d == nil || d.RateLimit <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(d.RateLimit), max(d.RateBurst, 1))
}

// waitRate waits for the subscription's rate limit before an attempt; it
// reports false when ctx ended first (a hard stop).
func (s *subscription) waitRate(ctx context.Context) bool {
	if err := s.limiter.Wait(ctx); err != nil && ctx.Err() != nil {
		return false
	}
	return true
}
