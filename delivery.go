package flows

import (
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// BackoffPolicy selects how the delay between retries grows.
type BackoffPolicy string

const (
	// BackoffExponential waits BackoffDelay before the first retry, then
	// doubles it: d, 2d, 4d, ... This is the zero value's meaning.
	BackoffExponential BackoffPolicy = "exponential"
	// BackoffLinear waits 0 before the first retry, then d, 2d, 3d, ...
	// exactly as Knative computes it.
	BackoffLinear BackoffPolicy = "linear"
)

// Delivery is the delivery policy of a subscription, modelled on Knative's
// DeliverySpec. The zero value makes one attempt with no dead-letter sink.
//
// Attempts are Retry+1. A failed attempt is retried when its error is
// retryable: any Go error not marked [Permanent], a transport error, and
// HTTP answers 404, 408, 409, 429 and 5xx (see [HTTPError]). Other failures,
// and the last failed attempt, send the original event to DeadLetter with the
// extensions knativeerrordest, knativeerrorcode and knativeerrordata. An event
// the dead-letter sink accepted counts as handled.
type Delivery struct {
	// Retry is the number of retries after the first attempt. Must be >= 0.
	Retry int

	// BackoffPolicy is how the delay grows between retries. The zero value
	// is BackoffExponential. (Knative ignores BackoffDelay when no policy is
	// given; here a delay alone means an exponential backoff.)
	BackoffPolicy BackoffPolicy

	// BackoffDelay is the base delay between retries; zero retries at once.
	BackoffDelay time.Duration

	// BackoffMax caps the delay between retries; zero means no cap, as in
	// Knative. It does not cap a Retry-After wait.
	BackoffMax time.Duration

	// Timeout bounds each attempt; zero means no limit. When it passes, the
	// attempt's context is cancelled; the attempt then fails with
	// [ErrTimeout] and is retried. (A handler that ignores its context and
	// returns success late has done its work, so its success stands rather
	// than being delivered twice.)
	Timeout time.Duration

	// RetryAfterMax enables the Retry-After header of 429 and 503 answers
	// from HTTP subscribers: the wait before the retry is
	// max(min(Retry-After, RetryAfterMax), backoff). Zero ignores the
	// header, as Knative does when retryAfterMax is unset or PT0S.
	RetryAfterMax time.Duration

	// DeadLetter receives the original event, with error extensions, when
	// delivery fails for good. Its delivery uses the same retry settings.
	DeadLetter Handler

	// Order is DeliveryOrdered to deliver the events of one key one at a
	// time, in the order the subscription received them, retries included,
	// while events of different keys run concurrently (see [DeliveryOrder]).
	// The zero value is DeliveryUnordered.
	Order DeliveryOrder

	// OrderKey is what DeliveryOrdered orders by: the zero value is the
	// CloudEvents partitionkey extension; see [OrderKeyAttribute] and
	// [OrderKeyFunc]. An event without a key is delivered unordered. Set
	// only with DeliveryOrdered.
	OrderKey OrderKey

	// MaxInFlight is the number of deliveries the subscription makes at
	// once, in place of the flow's [WithConcurrency] (smaller or larger);
	// zero uses it. An event waiting for a retry is not in flight.
	MaxInFlight int

	// RateLimit caps the subscriber's attempts at this many per second
	// (retries included), with bursts of RateBurst; zero means no limit.
	// Events wait in the channel, holding its capacity, so a limited
	// subscription holds its senders back instead of queueing or dropping.
	// The reply and dead-letter hops are not limited.
	RateLimit float64

	// RateBurst is the number of attempts RateLimit lets through at once
	// after an idle spell; zero means 1. Set only with RateLimit.
	RateBurst int
}

// Extensions added to events sent to a dead-letter sink, as Knative names them.
const (
	ExtensionErrorDest = "knativeerrordest" // what failed: a URL or a flow path
	ExtensionErrorCode = "knativeerrorcode" // HTTP status; 500 for a Go error or transport error
	ExtensionErrorData = "knativeerrordata" // failed response body, "dispatch error: <error>" for a transport error, or a Go error's text; base64, at most 1024 characters
)

const maxErrorData = 1024

func (d *Delivery) validate(p *problems, path string) {
	if d == nil {
		return
	}
	if d.Retry < 0 {
		p.add(path+".retry", "must be >= 0, got %d", d.Retry)
	}
	switch d.BackoffPolicy {
	case "", BackoffExponential, BackoffLinear:
	default:
		p.add(path+".backoffPolicy", "must be %q or %q, got %q", BackoffExponential, BackoffLinear, d.BackoffPolicy)
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"backoffDelay", d.BackoffDelay}, {"backoffMax", d.BackoffMax}, {"timeout", d.Timeout}, {"retryAfterMax", d.RetryAfterMax}} {
		if f.v < 0 {
			p.add(path+"."+f.name, "must be >= 0, got %s", f.v)
		}
	}
	d.validateFlowControl(p, path)
}

// attempts is the number of attempts the policy allows; a nil policy allows one.
func (d *Delivery) attempts() int {
	if d == nil {
		return 1
	}
	return d.Retry + 1
}

// Backoff returns the delay before retry number n (n >= 1), following
// Knative's formulas and capped by BackoffMax.
func (d *Delivery) Backoff(n int) time.Duration {
	if d == nil || d.BackoffDelay <= 0 || n < 1 {
		return 0
	}
	var wait time.Duration
	if d.BackoffPolicy == BackoffLinear {
		if k := time.Duration(n - 1); k > 0 && d.BackoffDelay > math.MaxInt64/k {
			wait = math.MaxInt64
		} else {
			wait = d.BackoffDelay * k
		}
	} else {
		wait = d.BackoffDelay
		for i := 1; i < n; i++ {
			if wait > math.MaxInt64/2 {
				wait = math.MaxInt64
				break
			}
			wait *= 2
		}
	}
	if d.BackoffMax > 0 && wait > d.BackoffMax {
		wait = d.BackoffMax
	}
	return wait
}

// wait is the delay before retry n after err, taking Retry-After into account.
func (d *Delivery) wait(n int, err error) time.Duration {
	w := d.Backoff(n)
	if d == nil || d.RetryAfterMax <= 0 {
		return w
	}
	var he *HTTPError
	if errors.As(err, &he) && (he.StatusCode == http.StatusTooManyRequests || he.StatusCode == http.StatusServiceUnavailable) && he.RetryAfter > 0 {
		w = max(w, min(he.RetryAfter, d.RetryAfterMax))
	}
	return w
}

// retryable reports whether a failed attempt with err may be retried.
func retryable(err error) bool {
	if IsPermanent(err) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Retryable()
	}
	return true
}

// retryableStatus is Knative's SelectiveRetry rule.
func retryableStatus(code int) bool {
	switch {
	case code >= 500:
		return true
	case code == http.StatusNotFound, code == http.StatusRequestTimeout,
		code == http.StatusConflict, code == http.StatusTooManyRequests:
		return true
	}
	return false
}

// deadLetterEvent returns a copy of the original event with Knative's error
// extensions describing why dest failed.
func deadLetterEvent(orig *event.Event, dest string, err error) event.Event {
	e := *copyEvent(*orig, true)
	code := http.StatusInternalServerError
	var data []byte
	var he *HTTPError
	var te *transportError
	switch {
	case errors.As(err, &he):
		code = he.StatusCode
		data = he.Body
	case errors.As(err, &te):
		// No HTTP answer: Knative's text for it, with the client's error.
		data = []byte("dispatch error: " + te.err.Error())
	case err != nil:
		data = []byte(err.Error())
	}
	e.SetExtension(ExtensionErrorDest, dest)
	e.SetExtension(ExtensionErrorCode, code)
	if len(data) > 0 {
		// Encode first, then cut: cutting the input could still overflow the limit.
		s := base64.StdEncoding.EncodeToString(data)
		if len(s) > maxErrorData {
			s = s[:maxErrorData]
		}
		e.SetExtension(ExtensionErrorData, s)
	}
	return e
}

// clone copies a policy at Start, so that the caller may change its
// definition afterwards without racing the running flow.
func (d *Delivery) clone() *Delivery {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}
