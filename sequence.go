package flows

import (
	"context"
	"fmt"
	"strconv"
)

// A Sequence delivers an event through its steps in order: each step's reply
// is the next step's input, and the last step's reply goes to Reply, as in
// Knative's Sequence. A step that replies with no event ends the event's
// journey there, silently.
//
// It is wired as Knative wires it: one channel and one subscription per
// step, named "<name>-kn-sequence-<i>"; step i's subscription replies to
// channel i+1 and the last one to Reply. The Sequence's input is channel 0.
//
// With the default in-memory channels and concurrency 1, the events that
// succeed on their first attempt leave each step in the order they entered
// it; an event that is retried falls behind. [DeliveryOrdered] keeps the
// order of the events of each key at any concurrency, retries included.
type Sequence struct {
	// Name names the flow and its channels. The default is "sequence".
	Name string

	// Steps are the subscribers, in order. At least one is required.
	Steps []Step

	// Reply receives the last step's replies; nil drops them.
	Reply Handler

	// Delivery is the policy of steps that have none of their own, as the
	// delivery of Knative's channel template is.
	Delivery *Delivery
}

// A Step is one stage of a [Sequence].
type Step struct {
	// Subscriber handles the events that reach the step. Required.
	Subscriber Handler

	// Delivery is the step's delivery policy; nil uses the Sequence's.
	Delivery *Delivery
}

func (s *Sequence) name() string {
	if s.Name == "" {
		return "sequence"
	}
	return s.Name
}

// Validate reports every problem of the definition at once, as
// [*DefinitionError] values joined with [errors.Join], or nil.
func (s *Sequence) Validate() error {
	p := &problems{flow: "sequence " + strconv.Quote(s.name())}
	if len(s.Steps) == 0 {
		p.add("steps", "a sequence needs at least one step")
	}
	for i, st := range s.Steps {
		path := fmt.Sprintf("steps[%d]", i)
		if st.Subscriber == nil {
			p.add(path+".subscriber", "missing: every step needs a subscriber")
		}
		st.Delivery.validate(p, path+".delivery")
	}
	s.Delivery.validate(p, "delivery")
	for _, h := range s.handlers() {
		validateHandler(p, h.path, h.h)
	}
	return p.err()
}

// handlers lists every handler of the definition with its field path.
func (s *Sequence) handlers() []pathHandler {
	var out []pathHandler
	for i, st := range s.Steps {
		path := fmt.Sprintf("steps[%d]", i)
		out = append(out, pathHandler{path + ".subscriber", st.Subscriber})
		out = st.Delivery.appendHandlers(out, path+".delivery")
	}
	out = append(out, pathHandler{"reply", s.Reply})
	return s.Delivery.appendHandlers(out, "delivery")
}

// Start validates the definition, wires its channels and subscriptions and
// starts them. The flow accepts events once Start returns; stop it with
// [Flow.Shutdown] or [Flow.Close]. ctx is used while starting (a durable
// channel may need it), not afterwards.
func (s *Sequence) Start(ctx context.Context, opts ...Option) (*Flow, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	name := s.name()
	b := newBuilder(ctx, name, opts)
	if err := b.opts.checkDestinations("sequence "+strconv.Quote(name), s.handlers()); err != nil {
		return nil, err
	}
	chans := make([]Channel, len(s.Steps))
	names := make([]string, len(s.Steps))
	for i := range s.Steps {
		names[i] = fmt.Sprintf("%s-kn-sequence-%d", name, i)
		chans[i] = b.channel(names[i])
	}
	for i, st := range s.Steps {
		sub := &subscription{
			name:       names[i],
			step:       fmt.Sprintf("steps[%d]", i),
			subscriber: st.Subscriber,
			subDest:    destination(st.Subscriber, fmt.Sprintf("%s/steps[%d]", name, i)),
			delivery:   st.Delivery.clone(),
		}
		if sub.delivery == nil {
			sub.delivery = s.Delivery.clone()
		}
		if i+1 < len(s.Steps) {
			sub.reply = newChannelSink(chans[i+1], names[i+1])
			sub.replyDest = names[i+1]
		} else if s.Reply != nil {
			sub.reply = s.Reply
			sub.replyDest = destination(s.Reply, name+"/reply")
		}
		b.subscribe(chans[i], sub)
	}
	return b.start(chans[0])
}

// Run starts the flow, waits for ctx to end, then shuts it down gracefully
// within the shutdown timeout (see [WithShutdownTimeout]). It returns nil
// after a clean drain, so it drops into an errgroup.Group.
func (s *Sequence) Run(ctx context.Context, opts ...Option) error {
	f, err := s.Start(ctx, opts...)
	if err != nil {
		return err
	}
	return f.run(ctx, buildOptions(opts).shutdownTimeout)
}
