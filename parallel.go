package flows

import (
	"context"
	"fmt"
	"strconv"
)

// A Parallel delivers each event to all of its branches at once, as
// Knative's Parallel does. A branch's filter decides whether the event goes
// on to the branch's subscriber: it passes when it replies with an event, and
// that event (possibly changed) is what the subscriber receives. A branch
// without a filter takes every event. Each branch's reply goes to the
// branch's Reply, or else to the Parallel's Reply; N branches that pass an
// event produce N separate replies. There is no join.
//
// It is wired as Knative wires it: an ingress channel "<name>-kn-parallel",
// and for each branch a filter subscription on it that replies to the branch
// channel "<name>-kn-parallel-<i>", where the branch subscription reads. The
// filter hop has no retries and no dead-letter sink. (A branch without a
// filter subscribes to the ingress channel directly, which Knative achieves
// with a pass-through subscription.)
type Parallel struct {
	// Name names the flow and its channels. The default is "parallel".
	Name string

	// Branches are the alternatives. At least one is required.
	Branches []Branch

	// Reply receives the replies of branches that have no Reply of their
	// own; nil drops them.
	Reply Handler

	// Delivery is the policy of branch subscribers that have none of their
	// own, as the delivery of Knative's channel template is. It does not
	// apply to filters: in Knative, a channel template's delivery reaches
	// the filter subscriptions too, through the ingress channel; here a
	// filter is always called once.
	Delivery *Delivery
}

// A Branch is one alternative of a [Parallel].
type Branch struct {
	// Filter decides whether an event enters the branch and may change it.
	// Nil lets every event in. See [Match].
	Filter Handler

	// Subscriber handles the events that pass the filter. Required.
	Subscriber Handler

	// Reply receives the subscriber's replies; nil uses the Parallel's.
	Reply Handler

	// Delivery is the subscriber's delivery policy; nil uses the Parallel's.
	Delivery *Delivery
}

func (p *Parallel) name() string {
	if p.Name == "" {
		return "parallel"
	}
	return p.Name
}

// Validate reports every problem of the definition at once, as
// [*DefinitionError] values joined with [errors.Join], or nil.
func (p *Parallel) Validate() error {
	pr := &problems{flow: "parallel " + strconv.Quote(p.name())}
	if len(p.Branches) == 0 {
		pr.add("branches", "a parallel needs at least one branch")
	}
	for i, br := range p.Branches {
		path := fmt.Sprintf("branches[%d]", i)
		if br.Subscriber == nil {
			pr.add(path+".subscriber", "missing: every branch needs a subscriber")
		}
		br.Delivery.validate(pr, path+".delivery")
	}
	p.Delivery.validate(pr, "delivery")
	for _, h := range p.handlers() {
		validateHandler(pr, h.path, h.h)
	}
	return pr.err()
}

// handlers lists every handler of the definition with its field path.
func (p *Parallel) handlers() []pathHandler {
	var out []pathHandler
	for i, br := range p.Branches {
		path := fmt.Sprintf("branches[%d]", i)
		out = append(out, pathHandler{path + ".filter", br.Filter}, pathHandler{path + ".subscriber", br.Subscriber},
			pathHandler{path + ".reply", br.Reply})
		out = br.Delivery.appendHandlers(out, path+".delivery")
	}
	out = append(out, pathHandler{"reply", p.Reply})
	return p.Delivery.appendHandlers(out, "delivery")
}

// Start validates the definition, wires its channels and subscriptions and
// starts them. The flow accepts events once Start returns; stop it with
// [Flow.Shutdown] or [Flow.Close]. ctx is used while starting, not afterwards.
func (p *Parallel) Start(ctx context.Context, opts ...Option) (*Flow, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	name := p.name()
	b := newBuilder(ctx, name, opts)
	if err := b.opts.checkDestinations("parallel "+strconv.Quote(name), p.handlers()); err != nil {
		return nil, err
	}
	ingressName := name + "-kn-parallel"
	ingress := b.channel(ingressName)

	// Branch channels are created after the ingress, so that stages stay in
	// topological order for the drain.
	type wiring struct {
		ch   Channel
		name string
	}
	branchChans := make([]wiring, len(p.Branches))
	for i, br := range p.Branches {
		if br.Filter != nil {
			n := fmt.Sprintf("%s-kn-parallel-%d", name, i)
			branchChans[i] = wiring{b.channel(n), n}
		}
	}
	for i, br := range p.Branches {
		branchCh, branchSub := ingress, fmt.Sprintf("%s-kn-parallel-%d", name, i)
		if br.Filter != nil {
			// The filter keeps the branch's order by key, or the branch
			// would receive the events of a key reordered.
			d := br.Delivery
			if d == nil {
				d = p.Delivery
			}
			b.subscribe(ingress, &subscription{
				ordered:    d.ordered(),
				orderKey:   d.orderKey(),
				name:       fmt.Sprintf("%s-kn-parallel-filter-%d", name, i),
				step:       fmt.Sprintf("branches[%d].filter", i),
				subscriber: br.Filter,
				subDest:    destination(br.Filter, fmt.Sprintf("%s/branches[%d].filter", name, i)),
				reply:      newChannelSink(branchChans[i].ch, branchChans[i].name),
				replyDest:  branchChans[i].name,
				filterHop:  true,
			})
			branchCh = branchChans[i].ch
		}
		sub := &subscription{
			name:       branchSub,
			step:       fmt.Sprintf("branches[%d]", i),
			subscriber: br.Subscriber,
			subDest:    destination(br.Subscriber, fmt.Sprintf("%s/branches[%d]", name, i)),
			delivery:   br.Delivery.clone(),
		}
		if sub.delivery == nil {
			sub.delivery = p.Delivery.clone()
		}
		switch {
		case br.Reply != nil:
			sub.reply, sub.replyDest = br.Reply, destination(br.Reply, fmt.Sprintf("%s/branches[%d].reply", name, i))
		case p.Reply != nil:
			sub.reply, sub.replyDest = p.Reply, destination(p.Reply, name+"/reply")
		}
		b.subscribe(branchCh, sub)
	}
	return b.start(ingress)
}

// Run starts the flow, waits for ctx to end, then shuts it down gracefully
// within the shutdown timeout (see [WithShutdownTimeout]). It returns nil
// after a clean drain, so it drops into an errgroup.Group.
func (p *Parallel) Run(ctx context.Context, opts ...Option) error {
	f, err := p.Start(ctx, opts...)
	if err != nil {
		return err
	}
	return f.run(ctx, buildOptions(opts).shutdownTimeout)
}
