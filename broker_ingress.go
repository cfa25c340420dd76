package flows

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// BrokerPath is the path at which a [BrokerIngress] serves a broker:
// "/<namespace>/<broker>", as Knative's broker ingress does.
func BrokerPath(namespace, broker string) string { return "/" + namespace + "/" + broker }

// A BrokerIngress is an [http.Handler] that serves the ingresses of several
// brokers at once, each at [BrokerPath], as Knative's shared broker ingress
// does. For one broker alone, [NewIngress] of the broker's [*Flow] is
// enough: the broker is a [Sender], and its ingress already answers as
// Knative's broker ingress does (an event whose TTL is exhausted is
// malformed: 400). A BrokerIngress adds the routing, in Knative's order:
//
//   - every answer carries Allow: POST, OPTIONS; OPTIONS gets 200 as for a
//     CloudEvents webhook, and any other method than POST 405;
//   - the path "/" gets 404; otherwise one trailing "/" is dropped, and a
//     path that is not "/<namespace>/<broker>" gets 400;
//   - a request for a broker it does not serve is admitted (credentials,
//     size, byte budget) and decoded as any other: a malformed event gets
//     400, a well-formed one 404;
//   - a request for a broker it serves is answered by that broker's
//     [Ingress], with every status of its contract: 202, 400, 413, 415,
//     and 503 with Retry-After when the byte budget is spent or the broker
//     stays full past [IngressMaxWait].
//
// The options apply to every broker's ingress, and all of them take their
// bytes from one [ByteBudget] (the one given with [IngressByteBudget], or
// one of [DefaultMaxBytesInFlight]), so that the whole server is bounded
// however many brokers it serves. Like [Ingress], it is asynchronous unless
// given [IngressSynchronous] (Knative's broker ingress is synchronous by
// default; a BrokerIngress keeps the default of this package's ingresses).
type BrokerIngress struct {
	opts    []IngressOption
	unknown *Ingress // admits and decodes requests for brokers not served

	mu      sync.RWMutex
	brokers map[string]*Ingress // by BrokerPath
}

// NewBrokerIngress returns a broker ingress that serves no broker yet; add
// them with [BrokerIngress.Add].
func NewBrokerIngress(opts ...IngressOption) *BrokerIngress {
	unknown := newIngress(opts)
	// Every broker's ingress shares the budget: the caller's, or this one.
	opts = append(opts[:len(opts):len(opts)], IngressByteBudget(unknown.budget))
	return &BrokerIngress{opts: opts, unknown: unknown, brokers: map[string]*Ingress{}}
}

// Add serves dst, usually a running [Broker]'s [*Flow], at
// BrokerPath(namespace, broker). It may be called while the ingress serves
// requests. Names must be non-empty, without "/", and not served already.
func (bi *BrokerIngress) Add(namespace, broker string, dst Sender) error {
	for _, n := range [...]struct{ what, name string }{{"namespace", namespace}, {"broker", broker}} {
		if n.name == "" || strings.Contains(n.name, "/") {
			return fmt.Errorf("%w: broker ingress: %s name %q must be non-empty and without '/'", ErrInvalid, n.what, n.name)
		}
	}
	if dst == nil {
		return fmt.Errorf("%w: broker ingress: broker %s/%s has no destination", ErrInvalid, namespace, broker)
	}
	path := BrokerPath(namespace, broker)
	bi.mu.Lock()
	defer bi.mu.Unlock()
	if _, dup := bi.brokers[path]; dup {
		return fmt.Errorf("%w: broker ingress: %s is served already", ErrInvalid, path)
	}
	bi.brokers[path] = NewIngress(dst, bi.opts...)
	return nil
}

// ServeHTTP implements [http.Handler].
func (bi *BrokerIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "POST, OPTIONS")
	if r.Method != http.MethodPost {
		bi.unknown.ServeHTTP(w, r) // OPTIONS and 405, as any ingress
		return
	}
	path := r.URL.Path
	if path == "/" || path == "" {
		bi.unknown.refuse(w, r, http.StatusNotFound, "no broker at /: POST to /<namespace>/<broker>")
		return
	}
	path = strings.TrimSuffix(path, "/")
	ns, name, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") || !strings.HasPrefix(path, "/") {
		bi.unknown.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("malformed path %q: want /<namespace>/<broker>", r.URL.Path))
		return
	}
	bi.mu.RLock()
	in := bi.brokers[path]
	bi.mu.RUnlock()
	if in != nil {
		in.ServeHTTP(w, r)
		return
	}
	// As Knative, the event is decoded before the broker is looked up: a
	// malformed event gets 400 wherever it is sent.
	var body sizedBody
	reserved, ok := bi.unknown.admit(w, r, &body)
	if !ok {
		return
	}
	defer bi.unknown.budget.release(reserved)
	if _, status, err := readEvent(r); err != nil {
		bi.unknown.refuse(w, r, status, err.Error())
		return
	}
	bi.unknown.refuse(w, r, http.StatusNotFound, fmt.Sprintf("no broker %s in namespace %s", name, ns))
}
