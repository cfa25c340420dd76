package manifest

// The types below mirror the parts of Knative's API schema that flows
// implements, with the same JSON names, so that Knative manifests decode
// into them unchanged. They are written here rather than imported, because
// Knative's API packages pull in Kubernetes.

// API versions and kinds understood by [Parse].
const (
	FlowsV1       = "flows.knative.dev/v1"
	SourcesV1     = "sources.knative.dev/v1"
	SourcesV1Beta = "sources.knative.dev/v1beta1"
	MessagingV1   = "messaging.knative.dev/v1"
	ServingV1     = "serving.knative.dev/v1"
	// MessagingV1Alpha1 is the version of eventing-natss'
	// NatsJetStreamChannel.
	MessagingV1Alpha1 = "messaging.knative.dev/v1alpha1"
	// EventingV1 is the version of Broker and Trigger.
	EventingV1 = "eventing.knative.dev/v1"
)

// BrokerClassAnnotation names a Broker's implementation in Knative
// (MTChannelBasedBroker by default). It is accepted and ignored: every
// Broker runs as a [flows.Broker].
const BrokerClassAnnotation = "eventing.knative.dev/broker.class"

// TypeMeta is the apiVersion and kind every document starts with.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

func (t TypeMeta) apiVersion() string { return t.APIVersion }

// ObjectMeta is the part of Kubernetes' object metadata that flows uses.
// Other metadata fields (uid, resourceVersion, ...) are rejected as unknown:
// they belong to objects read back from a cluster, not to manifests.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// KReference refers to another object, as Knative's duck/v1 KReference.
type KReference struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	APIVersion string `json:"apiVersion,omitempty"`
	// Group may replace APIVersion: the API group without its version.
	Group string `json:"group,omitempty"`
	// Address selects one of several addresses; not supported here.
	Address *string `json:"address,omitempty"`
}

// Destination is where events go: a reference to an object, a URI, or a
// URI relative to the object's address, as Knative's duck/v1 Destination.
type Destination struct {
	Ref *KReference `json:"ref,omitempty"`
	URI string      `json:"uri,omitempty"`
	// CACerts are PEM certificates trusted for an https URI.
	CACerts *string `json:"CACerts,omitempty"`
	// Audience is for OIDC authentication; not supported here.
	Audience *string `json:"audience,omitempty"`
}

// DeliverySpec is Knative's delivery policy. Durations are ISO-8601
// strings such as "PT0.2S" (see [ParseDuration]).
type DeliverySpec struct {
	DeadLetterSink *Destination `json:"deadLetterSink,omitempty"`
	Retry          *int32       `json:"retry,omitempty"`
	BackoffPolicy  *string      `json:"backoffPolicy,omitempty"`
	BackoffDelay   *string      `json:"backoffDelay,omitempty"`
	Timeout        *string      `json:"timeout,omitempty"`
	RetryAfterMax  *string      `json:"retryAfterMax,omitempty"`
	// Format is "json" (structured mode) or "binary" for HTTP destinations.
	Format *string `json:"format,omitempty"`
}

// ChannelTemplateSpec says which kind of channel a Sequence, Parallel or
// Channel creates: InMemoryChannel, or NatsJetStreamChannel when the caller
// gives the channels of such flows (see [WithFlowChannels]).
type ChannelTemplateSpec struct {
	TypeMeta `json:",inline"`
	// Spec holds the fields of either kind's spec; a field of the other
	// kind is an error.
	Spec *NatsJetStreamChannelSpec `json:"spec,omitempty"`
}

// Sequence is flows.knative.dev/v1 Sequence.
type Sequence struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     SequenceSpec `json:"spec"`
}

// SequenceSpec is the spec of a [Sequence].
type SequenceSpec struct {
	Steps           []SequenceStep       `json:"steps"`
	ChannelTemplate *ChannelTemplateSpec `json:"channelTemplate,omitempty"`
	Reply           *Destination         `json:"reply,omitempty"`
}

// SequenceStep is a step of a [Sequence]: a destination and its delivery.
type SequenceStep struct {
	Destination `json:",inline"`
	Delivery    *DeliverySpec `json:"delivery,omitempty"`
}

// Parallel is flows.knative.dev/v1 Parallel.
type Parallel struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     ParallelSpec `json:"spec"`
}

// ParallelSpec is the spec of a [Parallel].
type ParallelSpec struct {
	Branches        []ParallelBranch     `json:"branches"`
	ChannelTemplate *ChannelTemplateSpec `json:"channelTemplate,omitempty"`
	Reply           *Destination         `json:"reply,omitempty"`
}

// ParallelBranch is a branch of a [Parallel].
type ParallelBranch struct {
	Filter     *Destination  `json:"filter,omitempty"`
	Subscriber Destination   `json:"subscriber"`
	Reply      *Destination  `json:"reply,omitempty"`
	Delivery   *DeliverySpec `json:"delivery,omitempty"`
}

// CloudEventOverrides adds extensions to the events a source sends.
type CloudEventOverrides struct {
	Extensions map[string]string `json:"extensions,omitempty"`
}

// SourceSpec is what every source has: a sink and overrides.
type SourceSpec struct {
	Sink                Destination          `json:"sink"`
	CloudEventOverrides *CloudEventOverrides `json:"ceOverrides,omitempty"`
}

// PingSource is sources.knative.dev/v1 PingSource.
type PingSource struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     PingSourceSpec `json:"spec"`
}

// PingSourceSpec is the spec of a v1 [PingSource].
type PingSourceSpec struct {
	SourceSpec  `json:",inline"`
	Schedule    string `json:"schedule,omitempty"`
	Timezone    string `json:"timezone,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	Data        string `json:"data,omitempty"`
	DataBase64  string `json:"dataBase64,omitempty"`
}

// PingSourceV1Beta1 is sources.knative.dev/v1beta1 PingSource, the version
// of Knative 0.17, whose data is given as jsonData.
type PingSourceV1Beta1 struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta            `json:"metadata"`
	Spec     PingSourceV1Beta1Spec `json:"spec"`
}

// PingSourceV1Beta1Spec is the spec of a [PingSourceV1Beta1].
type PingSourceV1Beta1Spec struct {
	SourceSpec `json:",inline"`
	Schedule   string `json:"schedule,omitempty"`
	Timezone   string `json:"timezone,omitempty"`
	// JSONData is sent with datacontenttype application/json. A JSON
	// object is sent as is (re-encoded); anything else is wrapped as
	// {"body": "<jsonData>"}, as Knative converts it.
	JSONData string `json:"jsonData,omitempty"`
}

// InMemoryChannel is messaging.knative.dev/v1 InMemoryChannel.
type InMemoryChannel struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta          `json:"metadata"`
	Spec     InMemoryChannelSpec `json:"spec,omitempty"`
}

// InMemoryChannelSpec is the spec of an [InMemoryChannel]: the default
// delivery of its subscriptions.
type InMemoryChannelSpec struct {
	Delivery *DeliverySpec `json:"delivery,omitempty"`
}

// NatsJetStreamChannel is messaging.knative.dev/v1alpha1
// NatsJetStreamChannel, Knative's channel on NATS JetStream
// (knative-extensions/eventing-natss). It runs only when the caller gives
// the channels of such flows (see [WithFlowChannels]); the flows command
// does with --durable or --nats.
type NatsJetStreamChannel struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta               `json:"metadata"`
	Spec     NatsJetStreamChannelSpec `json:"spec,omitempty"`
}

// NatsJetStreamChannelSpec is the spec of a [NatsJetStreamChannel], with
// eventing-natss' field names. Stream settings are handed to the caller's
// [WithFlowChannels] function; the consumer and deployment templates are
// accepted and ignored.
type NatsJetStreamChannelSpec struct {
	Delivery               *DeliverySpec  `json:"delivery,omitempty"`
	Stream                 *NatsStream    `json:"stream,omitempty"`
	ConsumerConfigTemplate map[string]any `json:"consumerConfigTemplate,omitempty"`
	DeploymentSpecTemplate map[string]any `json:"deploymentSpecTemplate,omitempty"`
}

// NatsStream is the stream part of a [NatsJetStreamChannelSpec].
type NatsStream struct {
	// OverrideName names eventing-natss' one stream per channel; a flow
	// has a stream per channel, so it is ignored.
	OverrideName string            `json:"overrideName,omitempty"`
	Config       *NatsStreamConfig `json:"config,omitempty"`
}

// NatsStreamConfig is eventing-natss' StreamConfig. Durations are Go
// durations ("1h30m"), as Kubernetes' metav1.Duration writes them.
type NatsStreamConfig struct {
	AdditionalSubjects []string       `json:"additionalSubjects,omitempty"`
	Retention          string         `json:"retention,omitempty"` // Limits, Interest or Work
	MaxConsumers       int            `json:"maxConsumers,omitempty"`
	MaxMsgs            int64          `json:"maxMsgs,omitempty"`
	MaxBytes           int64          `json:"maxBytes,omitempty"`
	Discard            string         `json:"discard,omitempty"` // Old or New
	MaxAge             string         `json:"maxAge,omitempty"`
	MaxMsgSize         int32          `json:"maxMsgSize,omitempty"`
	Storage            string         `json:"storage,omitempty"` // File or Memory
	Replicas           int            `json:"replicas,omitempty"`
	NoAck              bool           `json:"noAck,omitempty"`
	DuplicateWindow    string         `json:"duplicateWindow,omitempty"`
	Placement          map[string]any `json:"placement,omitempty"`
	Mirror             map[string]any `json:"mirror,omitempty"`
	Sources            []any          `json:"sources,omitempty"`
}

// Channel is messaging.knative.dev/v1 Channel: a channel of the kind its
// template names (InMemoryChannel here).
type Channel struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ChannelSpec `json:"spec,omitempty"`
}

// ChannelSpec is the spec of a [Channel].
type ChannelSpec struct {
	ChannelTemplate *ChannelTemplateSpec `json:"channelTemplate,omitempty"`
	Delivery        *DeliverySpec        `json:"delivery,omitempty"`
}

// Subscription is messaging.knative.dev/v1 Subscription: it delivers the
// events of a channel to a subscriber and the subscriber's replies to reply.
type Subscription struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     SubscriptionSpec `json:"spec"`
}

// SubscriptionSpec is the spec of a [Subscription].
type SubscriptionSpec struct {
	Channel    KReference    `json:"channel"`
	Subscriber *Destination  `json:"subscriber,omitempty"`
	Reply      *Destination  `json:"reply,omitempty"`
	Delivery   *DeliverySpec `json:"delivery,omitempty"`
}

// Service is serving.knative.dev/v1 Service. Its spec (containers, images,
// environment) is kept as it is and not run: a Service is bound to a Go
// handler or a URL through a [Registry].
type Service struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta     `json:"metadata"`
	Spec     map[string]any `json:"spec,omitempty"`
}

// Broker is eventing.knative.dev/v1 Broker: it routes the events it
// receives to its Triggers (see [flows.Broker]).
type Broker struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     BrokerSpec `json:"spec,omitempty"`
}

// BrokerSpec is the spec of a [Broker].
type BrokerSpec struct {
	// Config refers to the configuration of the broker's class (in
	// Knative, a ConfigMap saying which channel to use). It is accepted and
	// ignored: the broker's channels are those of its flow, in memory or
	// those of [WithFlowChannels].
	Config *KReference `json:"config,omitempty"`
	// Delivery is the delivery of the Triggers that have none of their own.
	Delivery *DeliverySpec `json:"delivery,omitempty"`
}

// Trigger is eventing.knative.dev/v1 Trigger: one route out of a [Broker].
type Trigger struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     TriggerSpec `json:"spec"`
}

// TriggerSpec is the spec of a [Trigger].
type TriggerSpec struct {
	// Broker names a Broker of the Trigger's namespace, declared in the
	// manifests.
	Broker string `json:"broker"`
	// Filter is the legacy exact-match filter; Filters, when not empty,
	// replaces it.
	Filter     *TriggerFilter           `json:"filter,omitempty"`
	Filters    []SubscriptionsAPIFilter `json:"filters,omitempty"`
	Subscriber Destination              `json:"subscriber"`
	Delivery   *DeliverySpec            `json:"delivery,omitempty"`
}

// TriggerFilter is a Trigger's spec.filter: every attribute must match
// exactly, an empty value meaning "present and not empty".
type TriggerFilter struct {
	Attributes map[string]string `json:"attributes,omitempty"`
}

// SubscriptionsAPIFilter is one expression of a Trigger's spec.filters,
// with exactly one dialect set (see [flows.FilterSpec]).
type SubscriptionsAPIFilter struct {
	All    []SubscriptionsAPIFilter `json:"all,omitempty"`
	Any    []SubscriptionsAPIFilter `json:"any,omitempty"`
	Not    *SubscriptionsAPIFilter  `json:"not,omitempty"`
	Exact  map[string]string        `json:"exact,omitempty"`
	Prefix map[string]string        `json:"prefix,omitempty"`
	Suffix map[string]string        `json:"suffix,omitempty"`
	CESQL  string                   `json:"cesql,omitempty"`
}
