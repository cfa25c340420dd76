package manifest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/eventflows/flows"
)

// A Registry binds the objects that destinations refer to by ref, and that
// the manifests do not declare as flows, to Go handlers or to URLs:
// typically the Knative Services that do the work. The zero value is empty
// and ready to use. A Registry must not be changed while [Build] reads it.
//
// A binding is found by kind and name, such as "Service" and "first". It
// matches references from every namespace, unless its name is qualified
// as "namespace/name". The apiVersion is not part of the key, so a binding
// for Service "event-display" serves both serving.knative.dev/v1 and v1
// Services of that name.
type Registry struct {
	m map[string]binding
}

type binding struct {
	handler flows.Handler
	url     string
}

func registryKey(kind, name string) string { return kind + "/" + name }

// Bind binds the object kind/name to the Go handler h.
func (r *Registry) Bind(kind, name string, h flows.Handler) {
	r.put(kind, name, binding{handler: h})
}

// BindURL binds the object kind/name to an HTTP endpoint that follows
// Knative's subscriber contract (see [flows.HTTPTarget]). The URL is
// checked when a manifest uses the binding.
func (r *Registry) BindURL(kind, name, url string) {
	r.put(kind, name, binding{url: url})
}

func (r *Registry) put(kind, name string, b binding) {
	if r.m == nil {
		r.m = map[string]binding{}
	}
	r.m[registryKey(kind, name)] = b
}

// Set parses a binding of the form "Kind/name=URL" or
// "Kind/namespace/name=URL", such as "Service/first=http://127.0.0.1:8081",
// and adds it. With String it makes a *Registry a [flag.Value], so that a
// command line can take repeated -bind flags.
func (r *Registry) Set(s string) error {
	ref, url, ok := strings.Cut(s, "=")
	if !ok || url == "" {
		return fmt.Errorf("manifest: binding %q: want Kind/name=URL, such as Service/first=http://127.0.0.1:8081", s)
	}
	kind, name, err := ParseRef(ref)
	if err != nil {
		return err
	}
	if err := checkURL(url); err != nil {
		return fmt.Errorf("manifest: binding %q: %w", s, err)
	}
	r.BindURL(kind, name, url)
	return nil
}

// ParseRef splits "Kind/name" or "Kind/namespace/name" into a kind and a
// name ("name" or "namespace/name"), as [Registry.Bind] takes them.
func ParseRef(ref string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(ref, "/")
	if !ok || kind == "" || name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Count(name, "/") > 1 {
		return "", "", fmt.Errorf("manifest: reference %q: want Kind/name or Kind/namespace/name, such as Service/first", ref)
	}
	return kind, name, nil
}

// String lists the bindings, for [flag.Value].
func (r *Registry) String() string {
	if r == nil || len(r.m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(r.m))
	for k := range r.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if u := r.m[k].url; u != "" {
			keys[i] = k + "=" + u
		}
	}
	return strings.Join(keys, ",")
}

// lookup finds the binding of kind namespace/name: a namespaced binding
// first, then one for every namespace.
func (r *Registry) lookup(kind, namespace, name string) (binding, bool) {
	if r == nil {
		return binding{}, false
	}
	if b, ok := r.m[registryKey(kind, namespace+"/"+name)]; ok {
		return b, true
	}
	b, ok := r.m[registryKey(kind, name)]
	return b, ok
}

// near returns the binding of that kind whose name is closest to name (or
// namespace/name), if one is close enough to be a typo of it: the binding
// a missing one was probably meant as.
func (r *Registry) near(kind, namespace, name string) string {
	if r == nil {
		return ""
	}
	// Short names are close to many others: allow fewer edits.
	allowed := 0
	switch {
	case len(name) >= 5:
		allowed = 2
	case len(name) >= 3:
		allowed = 1
	}
	best, bestDist := "", allowed+1
	for k := range r.m {
		bk, bn, _ := strings.Cut(k, "/")
		if bk != kind {
			continue
		}
		want := name
		if strings.Contains(bn, "/") {
			want = namespace + "/" + name
		}
		if d := distance(bn, want); d > 0 && (d < bestDist || (d == bestDist && k < best)) {
			best, bestDist = k, d
		}
	}
	return best
}
