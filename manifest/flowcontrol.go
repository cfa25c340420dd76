package manifest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/eventflows/flows"
)

// Annotations of a Trigger or a Subscription that shape how it delivers
// (flows' [flows.Delivery] fields Order, OrderKey, MaxInFlight, RateLimit
// and RateBurst). The first is Knative's, read by its Kafka broker; the
// others are flows' own: Knative has no rate or in-flight limit.
const (
	// DeliveryOrderAnnotation is "ordered" to deliver the events of one
	// partition key one at a time, in order, or "unordered" (the default).
	DeliveryOrderAnnotation = "kafka.eventing.knative.dev/delivery.order"

	// DeliveryOrderKeyAnnotation names the attribute an ordered delivery
	// orders by, in place of the partitionkey extension.
	DeliveryOrderKeyAnnotation = "flows.eventflows.dev/delivery.order-key"

	// DeliveryMaxInFlightAnnotation is the number of deliveries made at
	// once, in place of the flows command's --concurrency.
	DeliveryMaxInFlightAnnotation = "flows.eventflows.dev/delivery.max-in-flight"

	// DeliveryRateLimitAnnotation caps the subscriber's attempts, retries
	// included, at this many per second, such as "100" or "0.5".
	DeliveryRateLimitAnnotation = "flows.eventflows.dev/delivery.rate-limit"

	// DeliveryRateBurstAnnotation is the number of attempts the rate limit
	// lets through at once after an idle spell (default 1).
	DeliveryRateBurstAnnotation = "flows.eventflows.dev/delivery.rate-burst"
)

// flowsAnnotationPrefix is the prefix of flows' own annotations: an
// unknown one under it is a mistake, reported rather than ignored.
const flowsAnnotationPrefix = "flows.eventflows.dev/"

var flowsAnnotations = []string{DeliveryOrderKeyAnnotation, DeliveryMaxInFlightAnnotation, DeliveryRateLimitAnnotation, DeliveryRateBurstAnnotation}

// flowControl is what a Trigger's or Subscription's annotations ask of its
// delivery.
type flowControl struct {
	set         bool
	order       flows.DeliveryOrder
	orderKey    string
	maxInFlight int
	rateLimit   float64
	rateBurst   int
}

func annotationPath(name string) string {
	return "metadata.annotations[" + strconv.Quote(name) + "]"
}

// flowControl reads the delivery annotations of the document being
// resolved, reporting each problem at its annotation. reads says whether
// the kind reads them; flows' own annotations on another kind are errors
// rather than silently ignored.
func (r *resolver) flowControl(a map[string]string, reads bool) flowControl {
	var fc flowControl
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys) // problems in a stable order
	for _, k := range keys {
		v := a[k]
		if !strings.HasPrefix(k, flowsAnnotationPrefix) && k != DeliveryOrderAnnotation {
			continue
		}
		path := annotationPath(k)
		if !reads {
			if k != DeliveryOrderAnnotation {
				r.failf(path, "only a Trigger or a Subscription reads this annotation")
			}
			continue
		}
		fc.set = true
		switch k {
		case DeliveryOrderAnnotation:
			switch flows.DeliveryOrder(v) {
			case flows.DeliveryOrdered, flows.DeliveryUnordered:
				fc.order = flows.DeliveryOrder(v)
			default:
				r.failf(path, "%q is not an order: want %q or %q", v, flows.DeliveryOrdered, flows.DeliveryUnordered)
			}
		case DeliveryOrderKeyAnnotation:
			fc.orderKey = v
		case DeliveryMaxInFlightAnnotation:
			fc.maxInFlight = r.atLeastOne(path, v, "deliveries")
		case DeliveryRateLimitAnnotation:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0) || math.IsInf(f, 0) {
				r.failf(path, "%q: want events per second, a number greater than 0", v)
			}
			fc.rateLimit = f
		case DeliveryRateBurstAnnotation:
			fc.rateBurst = r.atLeastOne(path, v, "attempts")
		default:
			hint := ""
			best := 4
			for _, known := range flowsAnnotations {
				if d := distance(k, known); d < best {
					hint, best = fmt.Sprintf("; did you mean %q?", known), d
				}
			}
			r.failf(path, "not an annotation flows knows%s", hint)
		}
	}
	if fc.orderKey != "" && fc.order != flows.DeliveryOrdered {
		r.failf(annotationPath(DeliveryOrderKeyAnnotation), "needs %s: %s", DeliveryOrderAnnotation, flows.DeliveryOrdered)
	}
	if fc.rateBurst != 0 && fc.rateLimit == 0 {
		r.failf(annotationPath(DeliveryRateBurstAnnotation), "needs %s", DeliveryRateLimitAnnotation)
	}
	if fc.orderKey != "" {
		// flows' own rule for the key's name, reported at the annotation.
		check := flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard, Delivery: &flows.Delivery{
			Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyAttribute(fc.orderKey),
		}}}}
		var de *flows.DefinitionError
		for _, err := range unjoin(check.Validate()) {
			if errors.As(err, &de) {
				err = de.Err
			}
			r.fail(annotationPath(DeliveryOrderKeyAnnotation), err)
		}
	}
	return fc
}

// atLeastOne reads a whole number of things, at least 1.
func (r *resolver) atLeastOne(path, v, things string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		r.failf(path, "%q: want a whole number of %s, at least 1", v, things)
	}
	return n
}

// apply returns the delivery a subscription runs with: its own,
// or else the one it inherits, with the annotations' fields set. The copy
// keeps the inherited policy whole, since a subscription's Delivery
// replaces its flow's rather than adding to it.
func (fc flowControl) apply(own, inherited *deliveryDef) *deliveryDef {
	if !fc.set {
		return own
	}
	d := &deliveryDef{}
	if base := cmpOr(own, inherited); base != nil {
		*d = *base
	}
	d.d.Order = fc.order
	if fc.orderKey != "" {
		d.d.OrderKey, d.orderKey = flows.OrderKeyAttribute(fc.orderKey), fc.orderKey
	}
	d.d.MaxInFlight = fc.maxInFlight
	d.d.RateLimit, d.d.RateBurst = fc.rateLimit, fc.rateBurst
	return d
}
