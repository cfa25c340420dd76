package manifest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eventflows/flows"
)

// A Graph is the picture of resolved manifests as Knative wires them:
// sources, channels, subscriptions, and the subscribers, replies and
// dead-letter sinks they send to. Each Sequence, Parallel and channel is
// drawn as a group of its channels and subscriptions; a destination that is
// another flow points at that flow's first channel.
type Graph struct {
	groups []*graphGroup
	nodes  []*graphNode
	byKey  map[string]*graphNode
	edges  []graphEdge
}

type graphGroup struct {
	label string
	nodes []*graphNode
}

type nodeShape int

const (
	shapeSource nodeShape = iota
	shapeChannel
	shapeSubscription
	shapeService
	shapeURL
	shapeUnbound
	shapeBroker
	shapeRequestReply
)

type graphNode struct {
	id    string
	label string
	shape nodeShape
}

type graphEdge struct {
	from, to *graphNode
	label    string
	dashed   bool
}

// NewGraph resolves set against reg as [Build] does and returns its graph.
// A reference without a binding is drawn as such instead of being an
// error, so that manifests can be drawn before they are bound; any other
// problem is returned.
func NewGraph(set *Set, reg *Registry) (*Graph, error) {
	r := newResolver(set, reg, nil, true)
	r.resolve()
	if err := r.errs.err(); err != nil {
		return nil, err
	}
	return r.app.Graph(), nil
}

// Graph returns the picture of the app.
func (a *App) Graph() *Graph {
	g := &Graph{byKey: map[string]*graphNode{}}
	for _, n := range a.flows {
		g.flow(n)
	}
	for _, s := range a.sources {
		src := g.node("src:"+s.doc.namespace+"/"+s.doc.name, nil, shapeSource,
			"PingSource "+qualified(s.doc.namespace, s.doc.name)+"\n"+cmpString(s.ping.Schedule, "* * * * *"))
		g.edge(src, g.target(&s.sink), "sink", false)
	}
	g.requestReplies(a)
	return g
}

func (g *Graph) node(key string, grp *graphGroup, shape nodeShape, label string) *graphNode {
	if n, ok := g.byKey[key]; ok {
		return n
	}
	n := &graphNode{id: "n" + strconv.Itoa(len(g.nodes)+1), label: label, shape: shape}
	g.byKey[key] = n
	g.nodes = append(g.nodes, n)
	if grp != nil {
		grp.nodes = append(grp.nodes, n)
	}
	return n
}

func (g *Graph) edge(from, to *graphNode, label string, dashed bool) {
	g.edges = append(g.edges, graphEdge{from, to, label, dashed})
}

// channel returns the node of a flow's channel.
func (g *Graph) channel(ns, name string, grp *graphGroup) *graphNode {
	return g.node("ch:"+ns+"/"+name, grp, shapeChannel, name)
}

// ingress is the node a destination that is a flow points at.
func (g *Graph) ingress(n *flowNode) *graphNode {
	if n.kind == "Broker" {
		return g.node("broker:"+n.doc.namespace+"/"+n.doc.name, nil, shapeBroker, "Broker "+qualified(n.doc.namespace, n.doc.name))
	}
	return g.channel(n.doc.namespace, strings.TrimPrefix(n.ingressPath(), "/"+n.doc.namespace+"/"), nil)
}

// target returns the node of a destination.
func (g *Graph) target(t *target) *graphNode {
	switch {
	case t.flow != nil:
		return g.ingress(t.flow)
	case t.unbound:
		return g.node(t.node, nil, shapeUnbound, cmpString(t.label, t.node)+"\nno binding")
	case t.label != "" && t.url != "":
		return g.node(t.node, nil, shapeService, t.label+"\n"+t.url)
	case t.label != "":
		return g.node(t.node, nil, shapeService, t.label+"\nGo handler")
	default:
		return g.node(t.node, nil, shapeURL, t.url)
	}
}

// subscription draws a subscription: from its channel, to its subscriber,
// its reply and its dead-letter sink.
func (g *Graph) subscription(grp *graphGroup, ns, name string, from *graphNode, subscriber *target, reply func() *graphNode, d *deliveryDef) {
	label := name
	if s := d.summary(); s != "" {
		label += "\n" + s
	}
	sub := g.node("sub:"+ns+"/"+name, grp, shapeSubscription, label)
	g.edge(from, sub, "", false)
	if subscriber != nil {
		g.edge(sub, g.target(subscriber), "subscriber", false)
	}
	if r := reply(); r != nil {
		g.edge(sub, r, "reply", false)
	}
	if d != nil && d.deadLetter != nil {
		g.edge(sub, g.target(d.deadLetter), "dead letter", true)
	}
}

// optTarget returns the node of an optional destination, when asked, so
// that nodes are numbered in the order they are drawn.
func (g *Graph) optTarget(t *target) func() *graphNode {
	return func() *graphNode {
		if t == nil {
			return nil
		}
		return g.target(t)
	}
}

func node(n *graphNode) func() *graphNode { return func() *graphNode { return n } }

func (g *Graph) flow(n *flowNode) {
	ns, name := n.doc.namespace, n.doc.name
	grp := &graphGroup{label: n.kind + " " + qualified(ns, name)}
	g.groups = append(g.groups, grp)
	switch n.kind {
	case "Broker":
		// The broker, and a node per Trigger with its filter: from the
		// broker (the edge says what passes), to its subscriber, its
		// dead-letter sink, and its reply back into the broker.
		b := g.ingress(n)
		grp.nodes = append(grp.nodes, b)
		for _, t := range n.triggers {
			f := flows.Filter{}
			switch {
			case len(t.filters) == 1:
				f = t.filters[0]
			case len(t.filters) > 1:
				f = flows.All(t.filters...)
			default:
				f = t.filter
			}
			label := "Trigger " + t.doc.name
			if s := cmpOr(t.delivery, n.delivery).summary(); s != "" {
				label += "\n" + s
			}
			tr := g.node("trigger:"+t.doc.namespace+"/"+t.doc.name, grp, shapeSubscription, label)
			g.edge(b, tr, f.String(), false)
			g.edge(tr, g.target(&t.subscriber), "subscriber", false)
			g.edge(tr, b, "reply", true)
			if d := cmpOr(t.delivery, n.delivery); d != nil && d.deadLetter != nil {
				g.edge(tr, g.target(d.deadLetter), "dead letter", true)
			}
		}
	case "Sequence":
		chans := make([]*graphNode, len(n.steps))
		for i := range n.steps {
			chans[i] = g.channel(ns, fmt.Sprintf("%s-kn-sequence-%d", name, i), grp)
		}
		for i, st := range n.steps {
			var reply func() *graphNode
			if i+1 < len(chans) {
				reply = node(chans[i+1])
			} else {
				reply = g.optTarget(n.reply)
			}
			g.subscription(grp, ns, fmt.Sprintf("%s-kn-sequence-%d", name, i), chans[i], &st.subscriber, reply, cmpOr(st.delivery, n.delivery))
		}
	case "Parallel":
		ingress := g.channel(ns, name+"-kn-parallel", grp)
		for i, br := range n.branches {
			from := ingress
			if br.filter != nil {
				ch := g.channel(ns, fmt.Sprintf("%s-kn-parallel-%d", name, i), grp)
				g.subscription(grp, ns, fmt.Sprintf("%s-kn-parallel-filter-%d", name, i), ingress, br.filter, node(ch), nil)
				from = ch
			}
			g.subscription(grp, ns, fmt.Sprintf("%s-kn-parallel-%d", name, i), from, &br.subscriber, g.optTarget(br.reply), cmpOr(br.delivery, n.delivery))
		}
	default:
		ch := g.channel(ns, name, grp)
		for _, s := range n.subs {
			var subscriber *target
			if s.subscriber.node != "" || s.subscriber.flow != nil {
				subscriber = &s.subscriber
			}
			g.subscription(grp, s.doc.namespace, s.doc.name, ch, subscriber, g.optTarget(s.reply), cmpOr(s.delivery, n.delivery))
		}
	}
}

// summary describes a delivery policy in a few words.
func (d *deliveryDef) summary() string {
	if d == nil {
		return ""
	}
	var parts []string
	if d.d.Retry > 0 {
		p := "retry " + strconv.Itoa(d.d.Retry)
		if d.d.BackoffDelay > 0 {
			p += ", " + string(d.d.BackoffPolicy) + " " + d.d.BackoffDelay.String()
		}
		parts = append(parts, p)
	}
	if d.d.Timeout > 0 {
		parts = append(parts, "timeout "+d.d.Timeout.String())
	}
	if d.d.RetryAfterMax > 0 {
		parts = append(parts, "retryAfterMax "+d.d.RetryAfterMax.Round(time.Millisecond).String())
	}
	if d.d.Order == flows.DeliveryOrdered {
		parts = append(parts, "ordered by "+cmpString(d.orderKey, flows.ExtensionPartitionKey))
	}
	if d.d.MaxInFlight > 0 {
		parts = append(parts, "max in flight "+strconv.Itoa(d.d.MaxInFlight))
	}
	if d.d.RateLimit > 0 {
		parts = append(parts, "rate "+strconv.FormatFloat(d.d.RateLimit, 'g', -1, 64)+"/s, burst "+strconv.Itoa(max(d.d.RateBurst, 1)))
	}
	return strings.Join(parts, "; ")
}

// walk visits the groups (numbered from 1) with their nodes, then the
// nodes outside any group, with the indentation of each.
func (g *Graph) walk(open func(i int, label string), node func(n *graphNode, indent string), close func()) {
	grouped := map[*graphNode]bool{}
	for i, grp := range g.groups {
		open(i+1, grp.label)
		for _, n := range grp.nodes {
			grouped[n] = true
			node(n, "    ")
		}
		close()
	}
	for _, n := range g.nodes {
		if !grouped[n] {
			node(n, "  ")
		}
	}
}

// Mermaid returns the graph as a Mermaid flowchart, to paste into
// Markdown between ```mermaid fences.
func (g *Graph) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	g.walk(func(i int, label string) {
		fmt.Fprintf(&b, "  subgraph g%d[%s]\n", i, mermaidText(label))
	}, func(n *graphNode, indent string) {
		fmt.Fprintf(&b, "%s%s\n", indent, mermaidNode(n))
	}, func() { b.WriteString("  end\n") })
	for _, e := range g.edges {
		arrow := "-->"
		if e.dashed {
			arrow = "-.->"
		}
		if e.label != "" {
			fmt.Fprintf(&b, "  %s %s|%s| %s\n", e.from.id, arrow, mermaidText(e.label), e.to.id)
		} else {
			fmt.Fprintf(&b, "  %s %s %s\n", e.from.id, arrow, e.to.id)
		}
	}
	for _, n := range g.nodes {
		if n.shape == shapeUnbound {
			fmt.Fprintf(&b, "  style %s stroke-dasharray: 5 5\n", n.id)
		}
	}
	return b.String()
}

func mermaidText(s string) string {
	s = strings.ReplaceAll(s, `"`, "#quot;")
	return `"` + strings.ReplaceAll(s, "\n", "<br/>") + `"`
}

func mermaidNode(n *graphNode) string {
	t := mermaidText(n.label)
	switch n.shape {
	case shapeSource:
		return n.id + "{{" + t + "}}"
	case shapeChannel:
		return n.id + "[(" + t + ")]"
	case shapeSubscription:
		return n.id + "(" + t + ")"
	case shapeURL:
		return n.id + "[/" + t + "/]"
	case shapeBroker:
		return n.id + "[[" + t + "]]"
	case shapeRequestReply:
		return n.id + ">" + t + "]"
	}
	return n.id + "[" + t + "]"
}

// DOT returns the graph in Graphviz's DOT language. Rendering it needs
// Graphviz's dot command, which is installed apart from Go: for example
// `dot -Tsvg graph.dot > graph.svg`.
func (g *Graph) DOT() string {
	var b strings.Builder
	b.WriteString("digraph flows {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n")
	g.walk(func(i int, label string) {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n", i, dotText(label))
	}, func(n *graphNode, indent string) {
		fmt.Fprintf(&b, "%s%s;\n", indent, dotNode(n))
	}, func() { b.WriteString("  }\n") })
	for _, e := range g.edges {
		var attrs []string
		if e.label != "" {
			attrs = append(attrs, "label="+dotText(e.label))
		}
		if e.dashed {
			attrs = append(attrs, "style=dashed")
		}
		if len(attrs) > 0 {
			fmt.Fprintf(&b, "  %s -> %s [%s];\n", e.from.id, e.to.id, strings.Join(attrs, ", "))
		} else {
			fmt.Fprintf(&b, "  %s -> %s;\n", e.from.id, e.to.id)
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func dotText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}

func dotNode(n *graphNode) string {
	shape := map[nodeShape]string{
		shapeSource: "hexagon", shapeChannel: "cylinder", shapeSubscription: "box, style=rounded",
		shapeService: "box", shapeURL: "parallelogram", shapeUnbound: "box, style=dashed", shapeBroker: "box3d", shapeRequestReply: "cds",
	}[n.shape]
	return fmt.Sprintf("%s [label=%s, shape=%s]", n.id, dotText(n.label), shape)
}
