package flows

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A TypedOption changes the reply a [Typed] handler builds.
type TypedOption func(*typedConfig)

type typedConfig struct {
	replyType   string
	replySource string
}

// WithReplyType sets the type attribute of the replies, as the TYPE setting
// of Knative's appender does. By default the incoming event's type is kept.
func WithReplyType(t string) TypedOption { return func(c *typedConfig) { c.replyType = t } }

// WithReplySource sets the source attribute of the replies. By default the
// incoming event's source is kept.
func WithReplySource(s string) TypedOption { return func(c *typedConfig) { c.replySource = s } }

// Typed adapts a function over Go values to a [Handler], in the manner of
// Knative's sample services:
//
//   - the event's data is decoded into In according to its datacontenttype
//     (JSON when unset); empty data gives In's zero value; data that does not
//     decode is a [Permanent] failure, not retried;
//   - an error from fn is a failed attempt; [ErrNoReply] means "handled,
//     nothing follows";
//   - otherwise the reply is the incoming event, with the same id, source,
//     type, time and extensions unless options say otherwise, and with fn's
//     result encoded as JSON as its data.
func Typed[In, Out any](fn func(ctx context.Context, in In) (Out, error), opts ...TypedOption) Handler {
	var cfg typedConfig
	for _, o := range opts {
		o(&cfg)
	}
	return HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		var in In
		if len(e.Data()) > 0 {
			if err := e.DataAs(&in); err != nil {
				return nil, Permanent(fmt.Errorf("flows: decoding data of event %s into %T: %w", e.ID(), in, err))
			}
		}
		out, err := fn(ctx, in)
		if errors.Is(err, ErrNoReply) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		// The handler owns e, so the reply reuses it instead of a clone.
		if err := e.SetData(event.ApplicationJSON, out); err != nil {
			return nil, Permanent(fmt.Errorf("flows: encoding %T as the reply to event %s: %w", out, e.ID(), err))
		}
		if cfg.replyType != "" {
			e.SetType(cfg.replyType)
		}
		if cfg.replySource != "" {
			e.SetSource(cfg.replySource)
		}
		return &e, nil
	})
}
