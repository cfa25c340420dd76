package flows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A TypedOption changes the reply a [Typed] handler builds.
type TypedOption func(*typedConfig)

type typedConfig struct {
	replyType   string
	replySource string
}

// TypedReplyType sets the type attribute of the replies, as the TYPE setting
// of Knative's appender does. By default the incoming event's type is kept.
func TypedReplyType(t string) TypedOption { return func(c *typedConfig) { c.replyType = t } }

// TypedReplySource sets the source attribute of the replies. By default the
// incoming event's source is kept.
func TypedReplySource(s string) TypedOption { return func(c *typedConfig) { c.replySource = s } }

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
	// Values that are not interfaces or byte slices are encoded with
	// encoding/json directly; the others keep the SDK codec's special cases
	// (nil, raw JSON bytes).
	t := reflect.TypeFor[Out]()
	plainOut := t.Kind() != reflect.Interface && (t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.Uint8)
	return HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		var in In
		if len(e.Data()) > 0 {
			if err := decodeData(e, &in); err != nil {
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
		if err := setJSONData(&e, out, plainOut); err != nil {
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

// decodeData is e.DataAs(v), without the codec registry for JSON data.
func decodeData(e event.Event, v any) error {
	if e.SpecVersion() == event.CloudEventsVersionV1 {
		switch e.DataMediaType() {
		case "", event.ApplicationJSON:
			return json.Unmarshal(e.Data(), v)
		}
	}
	return e.DataAs(v)
}

// setJSONData is e.SetData(event.ApplicationJSON, v) without its
// allocations when v is a plain value of a CloudEvents 1.0 event.
func setJSONData(e *event.Event, v any, plain bool) error {
	if !plain || e.SpecVersion() != event.CloudEventsVersionV1 {
		return e.SetData(event.ApplicationJSON, v)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if e.DataContentType() != event.ApplicationJSON {
		e.SetDataContentType(event.ApplicationJSON)
	}
	e.DataEncoded, e.DataBase64 = data, false
	return nil
}
