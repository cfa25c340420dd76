package manifest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/eventflows/flows"
)

// EventingV1Alpha1 is the version of RequestReply.
const EventingV1Alpha1 = "eventing.knative.dev/v1alpha1"

// RequestReply is eventing.knative.dev/v1alpha1 RequestReply: a request
// posted to it is sent into its Broker with a correlation attribute, and
// answered with the event that enters the Broker carrying that value in
// its reply attribute (see [flows.RequestReply]). It is served at
// /<namespace>/<name>.
type RequestReply struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     RequestReplySpec `json:"spec"`
}

// RequestReplySpec is the spec of a [RequestReply].
type RequestReplySpec struct {
	// BrokerRef names a Broker of the RequestReply's namespace, declared
	// in the manifests: kind Broker, apiVersion eventing.knative.dev/v1,
	// and no namespace.
	BrokerRef KReference `json:"brokerRef"`
	// CorrelationAttribute is the extension set on each request:
	// "correlationid" unless given.
	CorrelationAttribute string `json:"correlationAttribute,omitempty"`
	// ReplyAttribute is the extension a reply carries the value back in:
	// "replyid" unless given.
	ReplyAttribute string `json:"replyAttribute,omitempty"`
	// Timeout is how long a request waits for its reply, an ISO-8601
	// duration ("PT30S" unless given, Knative's default).
	Timeout *string `json:"timeout,omitempty"`
	// Delivery is checked and ignored: the request is handed to the
	// Broker in process, with no hop to retry (Knative's data plane does
	// not use it either).
	Delivery *DeliverySpec `json:"delivery,omitempty"`
}

// DefaultRequestReplyTimeout is a RequestReply's spec.timeout unless
// given, as Knative defaults it.
const DefaultRequestReplyTimeout = "PT30S"

// requestReplyNode is a resolved RequestReply.
type requestReplyNode struct {
	doc     *Document
	broker  *flowNode
	def     flows.RequestReply // but its Broker, set at Start
	timeout string
	running *flows.Requester
}

func (q *requestReplyNode) path() string { return flows.BrokerPath(q.doc.namespace, q.doc.name) }

// requestReply checks and resolves a RequestReply, with Knative's
// defaults and rules (and its "source" rule spelled right).
func (r *resolver) requestReply(d *Document, rr *RequestReply) {
	q := &requestReplyNode{doc: d}
	s := &rr.Spec
	ref := s.BrokerRef
	switch {
	case ref.Kind == "" && ref.Name == "":
		r.failf("spec.brokerRef", "missing: refer to the Broker the requests are sent into (kind: Broker, apiVersion: %s, name)", EventingV1)
	default:
		if !strings.EqualFold(ref.Kind, "Broker") {
			r.failf("spec.brokerRef.kind", "%q: a RequestReply's brokerRef must be a Broker", ref.Kind)
		}
		if ref.Namespace != "" {
			r.failf("spec.brokerRef.namespace", "not allowed: the Broker is in the RequestReply's own namespace")
		}
		group := ref.Group
		if ref.APIVersion != "" {
			group, _, _ = strings.Cut(ref.APIVersion, "/")
		}
		switch {
		case group == "":
			r.failf("spec.brokerRef.apiVersion", "missing; want %s", EventingV1)
		case group != "eventing.knative.dev":
			r.failf("spec.brokerRef.apiVersion", "%q: a Broker is %s", cmpString(ref.APIVersion, ref.Group), EventingV1)
		}
		if ref.Address != nil {
			r.failf("spec.brokerRef.address", "not supported: a Broker has a single address")
		}
		if ref.Name == "" {
			r.failf("spec.brokerRef.name", "missing: name the Broker the requests are sent into")
		} else {
			// Not a dependency: a Broker is entered as an ingress is, and
			// the RequestReply starts after every flow.
			q.broker = r.brokerNamed("spec.brokerRef.name", d.namespace, ref.Name)
		}
	}
	corr := cmpString(s.CorrelationAttribute, flows.DefaultCorrelationAttribute)
	reply := cmpString(s.ReplyAttribute, flows.DefaultReplyAttribute)
	if err := flows.CheckReplyAttribute(corr); err != nil {
		r.fail("spec.correlationAttribute", err)
	}
	if err := flows.CheckReplyAttribute(reply); err != nil {
		r.fail("spec.replyAttribute", err)
	}
	if corr == reply {
		r.failf("spec.replyAttribute", "%q is also the correlationAttribute: every request would be its own reply", reply)
	}
	q.timeout = DefaultRequestReplyTimeout
	if s.Timeout != nil {
		q.timeout = *s.Timeout
	}
	timeout, err := ParseDuration(q.timeout)
	switch {
	case err != nil:
		r.fail("spec.timeout", err)
	case timeout <= 0:
		r.failf("spec.timeout", "%q: must be a positive duration", q.timeout)
	}
	r.delivery("spec.delivery", s.Delivery, nil)
	if n := r.byPath[q.path()]; n != nil {
		r.failf("metadata.name", "the ingress of %s has the path of %s: both would be served at %s", d.object(), n.doc.object(), q.path())
	}
	q.def = flows.RequestReply{Name: d.name, Namespace: d.namespace, CorrelationAttribute: corr, ReplyAttribute: reply, Timeout: timeout}
	r.app.rrs = append(r.app.rrs, q)
}

// brokerNamed finds the Broker name of namespace declared in the
// manifests, or reports at path that there is none, with the nearest
// name if one is close.
func (r *resolver) brokerNamed(path, namespace, name string) *flowNode {
	if n := r.app.byKey[objectKey("Broker", namespace, name)]; n != nil {
		return n
	}
	var near string
	best := 3
	for _, o := range r.set.Documents {
		if o.kind == "Broker" && o.namespace == namespace {
			if dist := distance(o.name, name); dist < best {
				near, best = o.name, dist
			}
		}
	}
	hint := ""
	if near != "" {
		hint = fmt.Sprintf("; did you mean %q?", near)
	}
	r.failf(path, "Broker %q is not declared in the manifests%s", qualified(namespace, name), hint)
	return nil
}

// RequestReply returns the running RequestReply of that name ("name" in
// the default namespace, or "namespace/name"). The error wraps
// [ErrNoFlow] if the app has none of that name, and [ErrState] if it is
// not running.
func (a *App) RequestReply(name string) (*flows.Requester, error) {
	ns, n, ok := strings.Cut(name, "/")
	if !ok {
		ns, n = DefaultNamespace, name
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, q := range a.rrs {
		if q.doc.namespace == ns && q.doc.name == n {
			if q.running == nil || a.state != stateRunning {
				return nil, fmt.Errorf("%w: %s is not running", ErrState, q.doc.object())
			}
			return q.running, nil
		}
	}
	var have []string
	for _, q := range a.rrs {
		have = append(have, strconv.Quote(qualified(q.doc.namespace, q.doc.name)))
	}
	there := "the app has none"
	if len(have) > 0 {
		there = "the app has " + strings.Join(have, ", ")
	}
	return nil, fmt.Errorf("%w: RequestReply %q; %s", ErrNoFlow, qualified(ns, n), there)
}

// rrAddress is the URL of q's ingress once the app is served.
func (a *App) rrAddress(q *requestReplyNode) string {
	if a.baseURL == "" || a.state != stateRunning {
		return ""
	}
	return strings.TrimSuffix(a.baseURL, "/") + q.path()
}

// requestReplies draws each RequestReply with an edge to its Broker, the
// requests, and one back, the replies it looks for.
func (g *Graph) requestReplies(a *App) {
	for _, q := range a.rrs {
		label := "RequestReply " + qualified(q.doc.namespace, q.doc.name) + "\ntimeout " + q.def.Timeout.String()
		n := g.node("rr:"+q.doc.namespace+"/"+q.doc.name, nil, shapeRequestReply, label)
		if q.broker == nil {
			continue
		}
		b := g.ingress(q.broker)
		g.edge(n, b, "request ("+q.def.CorrelationAttribute+")", false)
		g.edge(b, n, "reply ("+q.def.ReplyAttribute+")", true)
	}
}
