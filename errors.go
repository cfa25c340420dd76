package flows

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
)

var (
	// ErrClosed is returned by sends to a flow, source or channel that is
	// shutting down or closed.
	ErrClosed = errors.New("flows: closed")

	// ErrFull is returned when a channel has no room for an event and the
	// sender's context ended (or was already done, see [Flow.TrySend])
	// before room was made. The event was not accepted.
	ErrFull = errors.New("flows: channel full")

	// ErrInvalid is wrapped by every [DefinitionError].
	ErrInvalid = errors.New("flows: invalid definition")

	// ErrTimeout is wrapped by the error of an attempt that exceeded its
	// [Delivery.Timeout]. Such an attempt is retried.
	ErrTimeout = errors.New("flows: attempt timed out")

	// ErrNoReply can be returned by a [Typed] function to say that the event
	// was handled and nothing follows, like a nil event from a [Handler].
	ErrNoReply = errors.New("flows: no reply")
)

// DefinitionError reports one problem in a flow definition. Path names the
// field, for example "steps[1].subscriber". Validate methods return all the
// problems of a definition at once, joined with [errors.Join]; use
// [errors.As] to get at each one.
type DefinitionError struct {
	Flow string // the kind and name of the definition, e.g. `sequence "orders"`
	Path string // the field path, e.g. "steps[1].subscriber"
	Err  error  // what is wrong with it
}

// Error names the definition, the field path and the problem.
func (e *DefinitionError) Error() string {
	var b strings.Builder
	b.WriteString("flows: invalid ")
	b.WriteString(e.Flow)
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns both the cause and [ErrInvalid], so that
// errors.Is(err, flows.ErrInvalid) holds for any definition error.
func (e *DefinitionError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// problems collects DefinitionErrors for one definition.
type problems struct {
	flow string
	errs []error
}

func (p *problems) add(path string, format string, args ...any) {
	p.errs = append(p.errs, &DefinitionError{Flow: p.flow, Path: path, Err: fmt.Errorf(format, args...)})
}

func (p *problems) wrap(path string, err error) {
	p.errs = append(p.errs, &DefinitionError{Flow: p.flow, Path: path, Err: err})
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// permanentError marks an error as not worth retrying.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as a permanent failure: a delivery that fails with it
// is not retried and goes straight to the dead-letter sink, if any.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// [Permanent].
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// PanicError is the error of an attempt whose handler panicked. The panic is
// recovered at the delivery boundary and counts as one failed attempt, so a
// bad event cannot take the process down.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine's stack at the time of the panic
}

// Error reports the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("flows: handler panicked: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// DeliveryError reports an event that could not be delivered: every attempt
// failed and there was no dead-letter sink, or the dead-letter sink failed
// too. It is what [Flow.Handle] returns for such an event.
type DeliveryError struct {
	Destination string // what failed: a URL, or a path such as "orders/steps[1]"
	Attempts    int    // attempts made on Destination
	Err         error  // the last attempt's error
}

// Error names the destination, the attempts and the last error.
func (e *DeliveryError) Error() string {
	return fmt.Sprintf("flows: delivery to %s failed after %d attempt(s): %v", e.Destination, e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *DeliveryError) Unwrap() error { return e.Err }

// UndeliveredError is returned by Shutdown when its context ended before
// every accepted event was delivered. Events holds the events that were
// accepted but neither delivered nor dead-lettered; they are handed back
// so that the caller can store or resend them.
type UndeliveredError struct {
	Events []event.Event
	Err    error // the context's error
}

// Error counts the undelivered events.
func (e *UndeliveredError) Error() string {
	return fmt.Sprintf("flows: shutdown: %d event(s) not delivered: %v", len(e.Events), e.Err)
}

// Unwrap returns the context's error.
func (e *UndeliveredError) Unwrap() error { return e.Err }
