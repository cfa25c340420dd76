// Package manifest runs Knative Eventing manifests (the YAML of Sequence,
// Parallel, PingSource, InMemoryChannel, Channel, Subscription, Broker and
// Trigger objects) as flows in the current process, without a cluster.
//
// [ReadFiles] (or [Parse], [ReadFS]) reads multi-document YAML strictly:
// unknown kinds and fields are errors. [Build] resolves every destination:
// a ref to a flow declared in the manifests is that flow, so flows nest; a
// ref to anything else, such as a Knative Service, is looked up in a
// [Registry] that binds it to a Go handler or a URL; a uri is an HTTP
// destination. Every problem is reported at once, naming the file, the
// object and the field:
//
//	sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"
//
// The resulting [App] starts the flows (each after the flows it sends to)
// and the ping sources, serves the flows' ingress over HTTP at Knative's
// channel paths ([App.Serve]), reports their status as `kubectl get` does
// ([App.Status], [WriteStatus]), draws them as Mermaid or Graphviz DOT
// ([App.Graph]), and drains them on Shutdown; [Undelivered] lists, flow by
// flow, the events a Shutdown cut short did not deliver.
//
// [WithServeAddress] tells Build where the app will be served: a uri that
// names one of the app's own ingress URLs is then that flow, so that a
// flow sending to itself over HTTP is refused as a cycle.
//
// A PingSource whose sink is a flow is done with each event once the flow
// has accepted it, as with a channel ingress that answers 202 at once.
//
// A Broker runs as a [flows.Broker] with its Triggers, in the order of the
// manifests, and is served at /<namespace>/<broker>. Its spec.config and
// the eventing.knative.dev/broker.class annotation are accepted and
// ignored. A Trigger's filter problems are reported at their fields, such
// as spec.filters[1].cesql; a Trigger whose spec.broker names no Broker of
// the manifests is an error (Knative accepts it, and it never delivers). A
// Trigger whose subscriber is a flow, and anything sending to a Broker, is
// done with an event once the flow or broker accepted it. Sending into a
// Broker is not counted by the cycle check, so that Knative's pattern (a
// Trigger to a Sequence whose reply is the Broker) runs; a Trigger whose
// subscriber is its own Broker, and a loop of Brokers through Triggers
// alone, which the broker's TTL cannot stop, are refused. In Knative's
// pattern the Broker starts before the Sequence and stops after it, so
// that Shutdown drains the Sequence while the Broker takes its replies.
//
// A Trigger or Subscription reads Knative's delivery-order annotation
// ([DeliveryOrderAnnotation]) and flows' own rate and in-flight limits
// ([DeliveryRateLimitAnnotation] and the others beside it), which add to
// the delivery it inherits; see [flows.Delivery].
//
// A RequestReply (eventing.knative.dev/v1alpha1) runs as a
// [flows.RequestReply] on its Broker, with Knative's defaults
// (correlationid, replyid, PT30S), and is served at /<namespace>/<name>:
// a POST is answered with its reply, or 504 past spec.timeout. It starts
// after the flows and stops before them, so that its waiting requests get
// their replies while the Brokers still run.
//
// Differences from Knative: channels are in memory, except the flows on
// NatsJetStreamChannel (eventing-natss' kind), which run on the channels the
// caller gives with [WithFlowChannels] (the flows command's --durable and
// --nats); other transports plug in with [flows.WithChannels]; a channel with its
// Subscriptions runs as a [flows.Parallel] without filters, whose internal
// names derive from the channel's; durations accept weeks, days, hours,
// minutes and seconds, not years or months; delivery timeouts need no
// feature flag; OIDC audiences and multiple addresses are not supported.
package manifest
