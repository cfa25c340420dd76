package manifest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// triggerNode is a resolved Trigger.
type triggerNode struct {
	doc        *Document
	broker     *flowNode
	filter     flows.Filter
	filters    []flows.Filter
	subscriber target
	delivery   *deliveryDef
}

// broker resolves a Broker. Its spec.config and its class annotation are
// accepted and ignored.
func (r *resolver) broker(n *flowNode, b *Broker) {
	// A Broker has no channelTemplate: its channels are the cluster's
	// default, which the caller of WithFlowChannels may choose.
	r.flowChannels(n, "spec", InMemoryChannelKind, true, nil)
	n.delivery = r.delivery("spec.delivery", b.Spec.Delivery, n)
}

// depend records that from sends to n, reached at path (in r.doc). A
// flow is started after the flows it sends to, and a cycle is refused.
// A Broker is entered like an ingress: anything may send to it, and it is
// reached once it runs, so only a Trigger's subscriber makes it a
// dependency. That leaves Knative's pattern, a Trigger to a Sequence whose
// reply is the Broker, a legal cycle (bounded as in Knative: the last step
// changes the type), and refuses a loop of Brokers through Triggers alone,
// which the TTL would not bound since a subscriber never sees it.
func (r *resolver) depend(from, n *flowNode, path, url string) {
	if from == nil {
		return
	}
	if n.kind == "Broker" && r.trigger == nil {
		from.sends = append(from.sends, n)
		return
	}
	dep := dependency{to: n, path: path, url: url}
	if r.doc != from.doc {
		dep.doc = r.doc // a Trigger's or a Subscription's field
	}
	from.deps = append(from.deps, dep)
}

// lateLoops orders the loops of Knative's pattern, a Broker whose Trigger
// (or dead-letter sink) feeds a flow that sends back into the Broker: the
// Broker starts first, and so stops last. Shutdown then drains the flow
// while the Broker still takes its replies, and nothing in flight is lost
// (only an event the Broker would hand the stopped flow afterwards, and the
// sources stop first). A dependency on another Broker is never late, so
// that a loop of Brokers alone is still a cycle.
func lateLoops(nodes []*flowNode) {
	for _, b := range nodes {
		if b.kind != "Broker" {
			continue
		}
		for i := range b.deps {
			if d := &b.deps[i]; d.to.kind != "Broker" && reaches(d.to, b) {
				d.late = true
			}
		}
	}
}

// reaches reports whether from sends to to, directly or through other flows.
func reaches(from, to *flowNode) bool {
	seen := map[*flowNode]bool{}
	var walk func(n *flowNode) bool
	walk = func(n *flowNode) bool {
		if n == to {
			return true
		}
		if seen[n] {
			return false
		}
		seen[n] = true
		for _, d := range n.deps {
			if walk(d.to) {
				return true
			}
		}
		for _, s := range n.sends {
			if walk(s) {
				return true
			}
		}
		return false
	}
	return walk(from)
}

func (r *resolver) triggerDoc(d *Document, t *Trigger) {
	tn := &triggerNode{doc: d}
	switch name := t.Spec.Broker; {
	case name == "":
		r.failf("spec.broker", "missing: name the Broker the Trigger routes from")
	default:
		n := r.app.byKey[objectKey("Broker", d.namespace, name)]
		if n == nil {
			var near string
			best := 3
			for _, o := range r.set.Documents {
				if o.kind == "Broker" && o.namespace == d.namespace {
					if dist := distance(o.name, name); dist < best {
						near, best = o.name, dist
					}
				}
			}
			hint := ""
			if near != "" {
				hint = fmt.Sprintf("; did you mean %q?", near)
			}
			r.failf("spec.broker", "Broker %q is not declared in the manifests%s", qualified(d.namespace, name), hint)
		} else {
			tn.broker = n
			n.triggers = append(n.triggers, tn)
		}
	}
	// The filters, checked by flows' own rules, reported at their paths.
	if t.Spec.Filter != nil {
		tn.filter = flows.Attributes(t.Spec.Filter.Attributes)
	}
	for _, f := range t.Spec.Filters {
		tn.filters = append(tn.filters, filterSpec(f).Filter())
	}
	check := flows.Broker{Triggers: []flows.Trigger{{Filter: tn.filter, Filters: tn.filters, Subscriber: flows.Discard}}}
	var de *flows.DefinitionError
	for _, err := range unjoin(check.Validate()) {
		if errors.As(err, &de) && strings.HasPrefix(de.Path, "triggers[0].") {
			r.fail("spec."+strings.TrimPrefix(de.Path, "triggers[0]."), de.Err)
		} else {
			r.fail("spec", err)
		}
	}
	tn.delivery = r.delivery("spec.delivery", t.Spec.Delivery, tn.broker)
	var eff *deliveryDef
	if tn.broker != nil {
		eff = cmpOr(tn.delivery, tn.broker.delivery)
	}
	if fc := r.flowControl(d.annotations, true); tn.broker != nil {
		tn.delivery = fc.apply(tn.delivery, tn.broker.delivery)
	}
	r.trigger = d
	tn.subscriber = r.destination("spec.subscriber", &t.Spec.Subscriber, eff.isStructured(), tn.broker)
	r.trigger = nil
	if f := tn.subscriber.flow; f != nil && f == tn.broker {
		// Refused here rather than as a cycle, with the reason.
		tn.broker.deps = tn.broker.deps[:len(tn.broker.deps)-1]
		r.failf("spec.subscriber", "the subscriber is the Trigger's own %s: every event it matches would enter the broker again, without a TTL, for ever",
			f.doc.object())
	}
	r.app.trigs = append(r.app.trigs, tn)
}

func filterSpec(f SubscriptionsAPIFilter) flows.FilterSpec {
	s := flows.FilterSpec{Exact: f.Exact, Prefix: f.Prefix, Suffix: f.Suffix, CESQL: f.CESQL}
	if f.All != nil {
		s.All = make([]flows.FilterSpec, len(f.All))
		for i, c := range f.All {
			s.All[i] = filterSpec(c)
		}
	}
	if f.Any != nil {
		s.Any = make([]flows.FilterSpec, len(f.Any))
		for i, c := range f.Any {
			s.Any[i] = filterSpec(c)
		}
	}
	if f.Not != nil {
		n := filterSpec(*f.Not)
		s.Not = &n
	}
	return s
}

// startBroker starts a Broker with its Triggers, in the order of the
// manifests.
func (n *flowNode) startBroker(ctx context.Context, opts []flows.Option) (*flows.Flow, error) {
	b := &flows.Broker{Name: n.doc.name, Namespace: n.doc.namespace, Delivery: n.delivery.build()}
	for _, t := range n.triggers {
		sub := t.subscriber.resolve()
		if f := t.subscriber.flow; f != nil && f.kind != "Broker" {
			// As a Trigger posting to a flow's channel ingress: done once
			// the flow accepted the event (Knative's 202, with no reply).
			// The flow may start after the broker (see lateLoops).
			sub = flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
				r := f.live.Load()
				if r == nil {
					return nil, fmt.Errorf("%w: %s is not running", flows.ErrClosed, f.doc.object())
				}
				return nil, r.Send(ctx, e)
			})
		}
		b.Triggers = append(b.Triggers, flows.Trigger{
			Name: t.doc.name, Filter: t.filter, Filters: t.filters, Subscriber: sub, Delivery: t.delivery.build(),
		})
	}
	return b.Start(ctx, opts...)
}

// brokerHandler sends to the broker of n, once it runs, and returns once
// the broker accepted the event, as a sender to Knative's broker ingress
// answered 202. A flow that replies to a broker may start before it.
func brokerHandler(n *flowNode) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		f := n.live.Load()
		if f == nil {
			return nil, fmt.Errorf("%w: %s is not running", flows.ErrClosed, n.doc.object())
		}
		return nil, f.Send(ctx, e)
	})
}

// subscriberURI is what a Trigger's SUBSCRIBER_URI shows.
func (a *App) subscriberURI(t *target) string {
	if f := t.flow; f != nil {
		return cmpString(a.address(f), f.kind+"/"+qualified(f.doc.namespace, f.doc.name))
	}
	if t.url != "" {
		return t.url
	}
	// A Go handler: its kind and name.
	return strings.Replace(t.label, " ", "/", 1)
}
