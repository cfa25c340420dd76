package flows

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// A Filter decides which events a [Trigger] delivers, with the evaluation
// rules of Knative's Trigger filters. The zero Filter matches every event.
// Build one with [Attributes] (Knative's legacy spec.filter.attributes),
// [Exact], [Prefix], [Suffix], [All], [Any], [Not] and [CESQL] (the dialects
// of spec.filters), or from a manifest's spec.filters with [FilterSpec].
// Filters compose, are immutable and safe for concurrent use.
//
// Filter is an opaque value rather than an interface on purpose: a filter
// that cannot be built (an attribute name that is not lower-case letters and
// digits, an empty value, CESQL that does not parse or cannot be Boolean,
// an empty [All]) is not an error at the call that builds it, which would
// break composition, but a problem it carries; [Broker.Validate] (and so
// Start) reports every one of them at once, each with its path, such as
// triggers[2].filter.any[0].exact. Knative instead skips such a filter at
// run time and delivers everything (it fails open); an interface that
// anyone may implement could not be checked that way.
//
// Matching compares attributes as strings, byte for byte, in their
// CloudEvents canonical form (the form of a binary-mode HTTP header, which
// is what Knative's filter sees): an Integer extension 5 is "5", a Boolean
// true is "true". The context attributes specversion, type, source, id,
// subject, time, dataschema (and its 0.3 name schemaurl), datacontenttype,
// datamediatype and datacontentencoding are always present (an unset one
// reads ""; an unset time reads "0001-01-01T00:00:00Z"); an extension is
// present only when the event has it. knativebrokerttl is never visible to
// a filter.
type Filter struct {
	n *filterNode
}

type filterKind uint8

const (
	kindAttributes filterKind = iota + 1
	kindExact
	kindPrefix
	kindSuffix
	kindAll
	kindAny
	kindNot
	kindCESQL
	kindInvalid // a FilterSpec that is not one expression
)

// filterNode is a built filter. It is never changed once built.
type filterNode struct {
	kind  filterKind
	attrs []attrValue // attributes, exact, prefix, suffix: sorted by name
	sub   []Filter    // all, any; not has one
	sql   *cesqlFilter
	err   string // kindInvalid: what is wrong
}

type attrValue struct {
	name, value string
	read        attrRead
}

// attrRead is how a filter reads an attribute.
type attrRead uint8

const (
	readAny  attrRead = iota // lookupAttr
	readType                 // the type, the one most filters test
	readOnce                 // text that costs an allocation (source, dataschema, time): read once per entry (see filterEvent)
)

func newAttrValue(name, value string) attrValue {
	switch name {
	case "type":
		return attrValue{name, value, readType}
	case "source", "time", "dataschema", "schemaurl":
		return attrValue{name, value, readOnce}
	}
	return attrValue{name, value, readAny}
}

// field is how a filter's kind is named in paths and messages.
func (k filterKind) field() string {
	switch k {
	case kindAttributes:
		return "attributes"
	case kindExact:
		return "exact"
	case kindPrefix:
		return "prefix"
	case kindSuffix:
		return "suffix"
	case kindAll:
		return "all"
	case kindAny:
		return "any"
	case kindNot:
		return "not"
	case kindCESQL:
		return "cesql"
	}
	return ""
}

// Attributes is Knative's legacy filter, spec.filter.attributes: an event
// matches when every listed attribute is present and equal to its value.
// An empty value means "present and not empty" (Knative's TriggerAnyFilter):
// {"type": ""} matches every event, {"myext": ""} the events whose myext is
// set to a non-empty value. An empty or nil map matches every event.
func Attributes(attrs map[string]string) Filter {
	return Filter{&filterNode{kind: kindAttributes, attrs: sortedAttrs(attrs)}}
}

// Exact matches the events whose attribute attr is present and equal to
// value. The value must not be empty (Knative skips such a filter and
// delivers everything; here it is a definition error).
func Exact(attr, value string) Filter {
	return Filter{&filterNode{kind: kindExact, attrs: []attrValue{newAttrValue(attr, value)}}}
}

// Prefix matches the events whose attribute attr is present and starts
// with prefix, which must not be empty.
func Prefix(attr, prefix string) Filter {
	return Filter{&filterNode{kind: kindPrefix, attrs: []attrValue{newAttrValue(attr, prefix)}}}
}

// Suffix matches the events whose attribute attr is present and ends with
// suffix, which must not be empty.
func Suffix(attr, suffix string) Filter {
	return Filter{&filterNode{kind: kindSuffix, attrs: []attrValue{newAttrValue(attr, suffix)}}}
}

// All matches the events that every one of filters matches, evaluated left
// to right and stopping at the first that does not. It needs at least one
// filter, and none may be the zero Filter (Knative lets an empty all match
// everything).
func All(filters ...Filter) Filter {
	return Filter{&filterNode{kind: kindAll, sub: slices.Clone(filters)}}
}

// Any matches the events that at least one of filters matches, evaluated
// left to right and stopping at the first that does. It needs at least
// one filter, and none may be the zero Filter.
func Any(filters ...Filter) Filter {
	return Filter{&filterNode{kind: kindAny, sub: slices.Clone(filters)}}
}

// Not matches the events that f does not match; so Not(Exact("myext", "x"))
// matches the events without myext. f must not be the zero Filter (Knative
// lets "not" of nothing match everything).
func Not(f Filter) Filter {
	return Filter{&filterNode{kind: kindNot, sub: []Filter{f}}}
}

// IsZero reports whether f is the zero Filter, which matches every event.
func (f Filter) IsZero() bool { return f.n == nil }

// String describes the filter in the terms of Knative's spec.filters, for
// logs and graphs: exact(type=com.example.created), all(…), cesql("…").
func (f Filter) String() string {
	var b strings.Builder
	f.write(&b)
	return b.String()
}

func (f Filter) write(b *strings.Builder) {
	n := f.n
	if n == nil {
		b.WriteString("everything")
		return
	}
	switch n.kind {
	case kindInvalid:
		b.WriteString("invalid(")
		b.WriteString(n.err)
		b.WriteString(")")
		return
	case kindCESQL:
		fmt.Fprintf(b, "cesql(%q)", n.sql.expr)
		return
	}
	b.WriteString(n.kind.field())
	b.WriteByte('(')
	for i, a := range n.attrs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.name)
		b.WriteByte('=')
		b.WriteString(a.value)
	}
	for i, s := range n.sub {
		if i > 0 {
			b.WriteString(", ")
		}
		s.write(b)
	}
	b.WriteByte(')')
}

func sortedAttrs(m map[string]string) []attrValue {
	out := make([]attrValue, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, newAttrValue(k, m[k]))
	}
	return out
}

// FilterSpec is one expression of a Trigger's spec.filters as Knative
// writes it (its SubscriptionsAPIFilter), for code that reads manifests:
// exactly one of its fields must be set. Exact, Prefix and Suffix may hold
// several attributes, all of which must match.
type FilterSpec struct {
	Exact  map[string]string
	Prefix map[string]string
	Suffix map[string]string
	All    []FilterSpec
	Any    []FilterSpec
	Not    *FilterSpec
	CESQL  string
}

// Filter builds the expression. An expression with no dialect or with
// several (which Knative's webhook refuses, and its filter would resolve by
// taking the first in the order exact, prefix, suffix, all, any, not,
// cesql) gives a filter that [Broker.Validate] reports, at the expression's
// own path; so do the problems of its nested expressions, at theirs.
func (s FilterSpec) Filter() Filter {
	var set []string
	var f Filter
	if len(s.Exact) > 0 {
		set, f = append(set, "exact"), Filter{&filterNode{kind: kindExact, attrs: sortedAttrs(s.Exact)}}
	}
	if len(s.Prefix) > 0 {
		set, f = append(set, "prefix"), Filter{&filterNode{kind: kindPrefix, attrs: sortedAttrs(s.Prefix)}}
	}
	if len(s.Suffix) > 0 {
		set, f = append(set, "suffix"), Filter{&filterNode{kind: kindSuffix, attrs: sortedAttrs(s.Suffix)}}
	}
	if s.All != nil {
		set, f = append(set, "all"), Filter{&filterNode{kind: kindAll, sub: specFilters(s.All)}}
	}
	if s.Any != nil {
		set, f = append(set, "any"), Filter{&filterNode{kind: kindAny, sub: specFilters(s.Any)}}
	}
	if s.Not != nil {
		set, f = append(set, "not"), Not(s.Not.Filter())
	}
	if s.CESQL != "" {
		set, f = append(set, "cesql"), CESQL(s.CESQL)
	}
	switch len(set) {
	case 1:
		return f
	case 0:
		return Filter{&filterNode{kind: kindInvalid, err: "an empty expression: set one of exact, prefix, suffix, all, any, not or cesql"}}
	}
	return Filter{&filterNode{kind: kindInvalid,
		err: fmt.Sprintf("%s are set: an expression has exactly one dialect", strings.Join(set, ", "))}}
}

func specFilters(specs []FilterSpec) []Filter {
	out := make([]Filter, len(specs))
	for i, s := range specs {
		out[i] = s.Filter()
	}
	return out
}

// validAttrName is Knative's rule for attribute names in filters:
// ^[a-z][a-z0-9]*$.
func validAttrName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validate reports the problems of f at path. top is true for a Trigger's
// Filter, where the zero Filter means "everything"; nested in all, any or
// not, or in Trigger.Filters, it is a mistake.
func (f Filter) validate(p *problems, path string, top bool) {
	n := f.n
	if n == nil {
		if !top {
			p.add(path, "an empty filter (the zero Filter): every nested filter needs a dialect")
		}
		return
	}
	if n.kind == kindInvalid {
		p.add(path, "%s", n.err)
		return
	}
	path += "." + n.kind.field()
	switch n.kind {
	case kindAttributes, kindExact, kindPrefix, kindSuffix:
		for _, a := range n.attrs {
			switch {
			case a.name == "":
				p.add(path, "an empty attribute name")
			case !validAttrName(a.name):
				p.add(path, "attribute name %q: must be lower-case letters and digits, starting with a letter", a.name)
			case a.value == "" && n.kind != kindAttributes:
				p.add(path, "attribute %q: an empty value (Knative would skip this filter and deliver every event)", a.name)
			}
		}
	case kindAll, kindAny:
		if len(n.sub) == 0 {
			p.add(path, "needs at least one filter")
		}
		for i, s := range n.sub {
			s.validate(p, fmt.Sprintf("%s[%d]", path, i), false)
		}
	case kindNot:
		n.sub[0].validate(p, path, false)
	case kindCESQL:
		if n.sql.err != nil {
			p.wrap(path, n.sql.err)
		}
	}
}

// typeKey returns the event type that f requires, if it requires one: an
// event of another type never matches f, so that a broker needs to
// evaluate f only on the events of that type.
func (f Filter) typeKey() (string, bool) {
	n := f.n
	if n == nil {
		return "", false
	}
	switch n.kind {
	case kindAttributes, kindExact:
		for _, a := range n.attrs {
			if a.name == "type" && a.value != "" {
				return a.value, true
			}
		}
	case kindAll:
		for _, s := range n.sub {
			if typ, ok := s.typeKey(); ok {
				return typ, true
			}
		}
	}
	return "", false
}

// A filterEvent is an event as the filters of one entry read it: the text
// of the attributes that cost an allocation to read (the source, the
// schema and the time, which the SDK formats on every read) is read once
// for all of them, and so is the view of the event a CESQL expression
// evaluates.
type filterEvent struct {
	e      *event.Event
	done   uint8 // which of source, schema and time are read
	source string
	schema string
	time   string
	timeOK bool
	sql    *event.Event // the CESQL view, once made (see cesqlView)
}

const (
	readSource uint8 = 1 << iota
	readSchema
	readTime
)

// lookupOnce is lookupAttr(v.e, name) for the attributes read once per
// entry.
func (v *filterEvent) lookupOnce(name string) (string, bool) {
	switch name {
	case "source":
		if v.done&readSource == 0 {
			v.source, v.done = v.e.Source(), v.done|readSource
		}
		return v.source, true
	case "time":
		if v.done&readTime == 0 {
			v.time, v.timeOK = lookupAttr(v.e, "time")
			v.done |= readTime
		}
		return v.time, v.timeOK
	}
	if v.done&readSchema == 0 {
		v.schema, v.done = v.e.DataSchema(), v.done|readSchema
	}
	return v.schema, true
}

// matches reports whether f matches v. v.e is the event as the broker
// holds it; the filter sees it without knativebrokerttl.
func (f Filter) matches(v *filterEvent) bool {
	n := f.n
	if n == nil {
		return true
	}
	switch n.kind {
	case kindAttributes, kindExact, kindPrefix, kindSuffix:
		for i := range n.attrs {
			a := &n.attrs[i]
			var s string
			var ok bool
			switch a.read {
			case readType:
				s, ok = v.e.Type(), true
			case readOnce:
				s, ok = v.lookupOnce(a.name)
			default:
				s, ok = lookupAttr(v.e, a.name)
			}
			if !ok {
				return false
			}
			switch n.kind {
			case kindAttributes:
				// An empty value: present and not empty.
				ok = s != "" && (a.value == "" || s == a.value)
			case kindExact:
				ok = s == a.value
			case kindPrefix:
				ok = strings.HasPrefix(s, a.value)
			default:
				ok = strings.HasSuffix(s, a.value)
			}
			if !ok {
				return false
			}
		}
		return true
	case kindAll:
		for _, s := range n.sub {
			if !s.matches(v) {
				return false
			}
		}
		return true
	case kindAny:
		for _, s := range n.sub {
			if s.matches(v) {
				return true
			}
		}
		return false
	case kindNot:
		return !n.sub[0].matches(v)
	case kindCESQL:
		return n.sql.matches(v)
	}
	return false // invalid: refused at Start, never evaluated
}

// lookupAttr reads an attribute as Knative's filter does (its
// LookupAttribute), in canonical string form.
func lookupAttr(e *event.Event, name string) (string, bool) {
	switch name {
	case "specversion":
		return e.SpecVersion(), true
	case "type":
		return e.Type(), true
	case "source":
		return e.Source(), true
	case "subject":
		return e.Subject(), true
	case "id":
		return e.ID(), true
	case "time":
		b, err := e.Time().MarshalText()
		if err != nil {
			return "", false
		}
		return string(b), true
	case "dataschema", "schemaurl":
		return e.DataSchema(), true
	case "datacontenttype":
		return e.DataContentType(), true
	case "datamediatype":
		return e.DataMediaType(), true
	case "datacontentencoding":
		return e.DeprecatedDataContentEncoding(), true
	case ExtensionBrokerTTL:
		return "", false
	}
	v, ok := extension(e, name)
	if !ok {
		return "", false
	}
	if s, ok := v.(string); ok {
		return s, true
	}
	s, err := types.Format(v)
	if err != nil {
		return "", false
	}
	return s, true
}
