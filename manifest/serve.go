package manifest

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/eventflows/flows"
)

// Handler returns an http.Handler that accepts events into every
// Sequence, Parallel and channel of the app, with Knative's channel ingress
// contract (see [flows.Ingress]). As Knative's InMemoryChannel dispatcher
// does, it finds the flow's first channel by path, /<namespace>/<channel>
// (such as /default/sequence-kn-sequence-0), or for a request to "/" by
// Host, such as sequence-kn-sequence-0-kn-channel.default.svc.cluster.local.
// Other paths get 404.
//
// Each Broker is served at /<namespace>/<broker>, as Knative's broker
// ingress serves it, by a [flows.BrokerIngress]: POST only (405 otherwise,
// with Allow), one trailing "/" accepted, and the same limits. Each
// RequestReply is served at /<namespace>/<name> too, by its
// [flows.Requester.Handler]: a POST waits for its reply (200), or for the
// RequestReply's timeout (504).
//
// The ingresses of all the flows and brokers take their requests' bytes from one
// [flows.ByteBudget] of [flows.DefaultMaxBytesInFlight], so that the
// handler's memory is bounded as a whole; pass [flows.IngressByteBudget]
// to set another.
//
// Call it after Start: flows that are not running answer 503.
func (a *App) Handler(opts ...flows.IngressOption) http.Handler {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Before opts, so that theirs wins.
	defaults := []flows.IngressOption{flows.IngressByteBudget(flows.NewByteBudget(0))}
	if a.cfg.logger != nil {
		defaults = append(defaults, flows.IngressLogger(a.cfg.logger))
	}
	opts = append(defaults, opts...)
	routes := map[string]http.Handler{}
	brokers := flows.NewBrokerIngress(opts...)
	for _, n := range a.flows {
		if n.running == nil || a.state != stateRunning {
			routes[n.ingressPath()] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "the flow is not running", http.StatusServiceUnavailable)
			})
			continue
		}
		if n.kind == "Broker" {
			if err := brokers.Add(n.doc.namespace, n.doc.name, n.running); err != nil {
				// Names were checked by Parse; say so rather than hide it.
				routes[n.ingressPath()] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				})
				continue
			}
			routes[n.ingressPath()] = brokers
			routes[n.ingressPath()+"/"] = brokers
			continue
		}
		routes[n.ingressPath()] = flows.NewIngress(n.running, opts...)
	}
	for _, q := range a.rrs {
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the request-reply is not running", http.StatusServiceUnavailable)
		})
		if q.running != nil && a.state == stateRunning {
			h = q.running.Handler(opts...)
		}
		routes[q.path()], routes[q.path()+"/"] = h, h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path
		if key == "/" || key == "" {
			if ns, ch, ok := channelHost(r.Host); ok {
				key = "/" + ns + "/" + ch
			}
		}
		h := routes[key]
		if h == nil {
			http.Error(w, fmt.Sprintf("no channel at %s", key), http.StatusNotFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// channelHost reads Knative's channel host name, <channel>-kn-channel.<namespace>[.svc...].
func channelHost(host string) (namespace, channel string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return "", "", false
	}
	channel, ok = strings.CutSuffix(labels[0], "-kn-channel")
	return labels[1], channel, ok && channel != "" && labels[1] != ""
}

// Serve listens on addr (such as "127.0.0.1:8080", or port 0 for a free
// one) and serves [App.Handler] with [flows.ListenAndServe]. From then on
// [App.Status] reports each flow's URL under the server's. Stop the server
// with its Shutdown before the app's, so that requests in progress finish
// while the flows still accept events.
func (a *App) Serve(addr string, opts ...flows.IngressOption) (*flows.Server, error) {
	a.mu.Lock()
	running := a.state == stateRunning
	a.mu.Unlock()
	if !running {
		return nil, fmt.Errorf("%w: Serve needs a started app", ErrState)
	}
	srv, err := flows.ListenAndServe(addr, a.Handler(opts...))
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.baseURL = srv.URL()
	a.mu.Unlock()
	return srv, nil
}
