package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// A Set holds the documents read from one or more manifest files. Its zero
// value is empty and ready to use; [Set.Add] appends files to it.
type Set struct {
	// Documents are the documents that were read, in file order. A
	// document that failed to decode is kept if its kind and name could be
	// read, so that references to it do not cause further errors.
	Documents []Document

	problems errorList
	files    []string // in the order they were given, to sort problems
}

func (s *Set) noteFile(name string) {
	if !slices.Contains(s.files, name) {
		s.files = append(s.files, name)
	}
}

// A Document is one object of a manifest file.
type Document struct {
	File  string // the file name, as given
	Index int    // the document's position in the file, from 1

	// Object is the decoded object: *Sequence, *Parallel, *PingSource,
	// *PingSourceV1Beta1, *Subscription, *InMemoryChannel, *Channel,
	// *NatsJetStreamChannel, *Service, *Broker, *Trigger or *RequestReply. It is nil if
	// the document did not decode. A document with unknown fields or
	// values of the wrong type (see [Set.Err]) holds the rest of its
	// fields.
	Object any

	kind, name, namespace string
	annotations           map[string]string
	hidden                []string // paths of problems that follow from the decoding ones
}

// Kind returns the document's kind, such as "Sequence".
func (d *Document) Kind() string { return d.kind }

// Name returns the document's metadata.name.
func (d *Document) Name() string { return d.name }

// Namespace returns the document's metadata.namespace, or "default".
func (d *Document) Namespace() string { return d.namespace }

// object names the document in errors: `Sequence "sequence"`, with the
// namespace if it is not the default one.
func (d *Document) object() string {
	if d.kind == "" || d.name == "" {
		return ""
	}
	return d.kind + " " + strconv.Quote(qualified(d.namespace, d.name))
}

func qualified(namespace, name string) string {
	if namespace == "" || namespace == DefaultNamespace {
		return name
	}
	return namespace + "/" + name
}

// DefaultNamespace is the namespace of objects whose metadata has none.
const DefaultNamespace = "default"

// Parse reads the documents of one manifest file: YAML (or JSON), with
// several documents separated by "---" lines. file names the file in
// errors. The error reports every problem found, as [*Error] values.
func Parse(file string, data []byte) (*Set, error) {
	s := new(Set)
	return s, s.Add(file, data)
}

// ReadFiles reads and parses manifest files. A directory stands for the
// .yaml, .yml and .json files it holds, in name order; "-" reads the
// standard input.
func ReadFiles(paths ...string) (*Set, error) {
	s := new(Set)
	var l errorList
	for _, p := range paths {
		if p == "-" {
			s.noteFile("<stdin>")
			data, err := readAll(os.Stdin)
			if err != nil {
				l.add(&Error{File: "<stdin>", Err: err})
				continue
			}
			s.Add("<stdin>", data)
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			names, err := manifestFiles(os.DirFS(p), ".")
			if err != nil {
				s.noteFile(p)
				l.add(&Error{File: p, Err: err})
				continue
			}
			for _, n := range names {
				readFile(s, &l, path.Join(p, n), func() ([]byte, error) { return os.ReadFile(path.Join(p, n)) })
			}
			continue
		}
		readFile(s, &l, p, func() ([]byte, error) { return os.ReadFile(p) })
	}
	s.problems.addAll(&l)
	return s, s.Err()
}

// ReadFS reads and parses manifest files of fsys, such as an embed.FS.
// A directory stands for the manifest files it holds, as in [ReadFiles].
func ReadFS(fsys fs.FS, names ...string) (*Set, error) {
	s := new(Set)
	var l errorList
	for _, n := range names {
		if fi, err := fs.Stat(fsys, n); err == nil && fi.IsDir() {
			files, err := manifestFiles(fsys, n)
			if err != nil {
				s.noteFile(n)
				l.add(&Error{File: n, Err: err})
				continue
			}
			for _, f := range files {
				full := path.Join(n, f)
				readFile(s, &l, full, func() ([]byte, error) { return fs.ReadFile(fsys, full) })
			}
			continue
		}
		readFile(s, &l, n, func() ([]byte, error) { return fs.ReadFile(fsys, n) })
	}
	s.problems.addAll(&l)
	return s, s.Err()
}

func readFile(s *Set, l *errorList, name string, read func() ([]byte, error)) {
	s.noteFile(name)
	data, err := read()
	if err != nil {
		l.add(&Error{File: name, Err: err})
		return
	}
	s.Add(name, data)
}

func readAll(f *os.File) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

func manifestFiles(fsys fs.FS, dir string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		switch path.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				names = append(names, e.Name())
			}
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .yaml, .yml or .json files in directory")
	}
	slices.Sort(names)
	return names, nil
}

// Err reports every problem found while reading the set's files, as
// [*Error] values joined with errors.Join, or nil.
func (s *Set) Err() error {
	var l errorList
	for _, f := range s.files {
		l.fileOrder(f)
	}
	l.addAll(&s.problems)
	return l.err()
}

// Add parses the documents of one manifest file and appends them to the
// set. The error reports this file's problems; [Set.Err] reports those of
// every file.
func (s *Set) Add(file string, data []byte) error {
	var l errorList
	s.noteFile(file)
	for i, chunk := range splitDocuments(data) {
		if d, ok := s.decode(&l, file, i+1, chunk.text, chunk.line); ok {
			s.Documents = append(s.Documents, d)
		}
	}
	s.problems.addAll(&l)
	return l.err()
}

// A chunk is one document of a YAML stream, and the line of the file it
// starts on, from 1.
type chunk struct {
	text []byte
	line int
}

// splitDocuments cuts a YAML stream at its "---" (and "...") lines and
// drops the documents that hold nothing but comments and blank lines.
func splitDocuments(data []byte) []chunk {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var docs []chunk
	var cur []byte
	empty, start, n := true, 1, 0
	flush := func(next int) {
		if !empty {
			docs = append(docs, chunk{cur, start})
		}
		cur, empty, start = nil, true, next
	}
	for line := range bytes.Lines(data) {
		n++
		trimmed := bytes.TrimRight(line, "\r\n")
		if isMarker(trimmed, "---") || isMarker(trimmed, "...") {
			flush(n + 1)
			if rest := bytes.TrimSpace(trimmed[3:]); len(rest) > 0 && rest[0] != '#' && trimmed[0] == '-' {
				// "--- value": the document starts on the marker line.
				cur, empty, start = append(cur, rest...), false, n
				cur = append(cur, '\n')
			}
			continue
		}
		cur = append(cur, line...)
		if t := bytes.TrimSpace(trimmed); len(t) > 0 && t[0] != '#' {
			empty = false
		}
	}
	flush(0)
	return docs
}

func isMarker(line []byte, m string) bool {
	return bytes.HasPrefix(line, []byte(m)) && (len(line) == len(m) || line[len(m)] == ' ' || line[len(m)] == '\t')
}

// kindInfo describes a supported apiVersion and kind.
type kindInfo struct {
	apiVersion, kind string
	new              func() any
}

var kindTable = []kindInfo{
	{FlowsV1, "Sequence", func() any { return new(Sequence) }},
	{FlowsV1, "Parallel", func() any { return new(Parallel) }},
	{SourcesV1, "PingSource", func() any { return new(PingSource) }},
	{SourcesV1Beta, "PingSource", func() any { return new(PingSourceV1Beta1) }},
	{MessagingV1, "Subscription", func() any { return new(Subscription) }},
	{MessagingV1, "InMemoryChannel", func() any { return new(InMemoryChannel) }},
	{MessagingV1, "Channel", func() any { return new(Channel) }},
	{MessagingV1Alpha1, "NatsJetStreamChannel", func() any { return new(NatsJetStreamChannel) }},
	{ServingV1, "Service", func() any { return new(Service) }},
	{EventingV1, "Broker", func() any { return new(Broker) }},
	{EventingV1, "Trigger", func() any { return new(Trigger) }},
	{EventingV1Alpha1, "RequestReply", func() any { return new(RequestReply) }},
}

const supportedKinds = "Sequence, Parallel (" + FlowsV1 + "); PingSource (" + SourcesV1 + ", " + SourcesV1Beta +
	"); Subscription, InMemoryChannel, Channel (" + MessagingV1 + "); NatsJetStreamChannel (" + MessagingV1Alpha1 + "); Service (" + ServingV1 + "); Broker, Trigger (" + EventingV1 + "); RequestReply (" + EventingV1Alpha1 + ")"

var yamlLine = regexp.MustCompile(`\bline [0-9]+\b`)

var nameRule = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// decode reads one document: YAML to JSON (strict: duplicate keys are
// errors), then a check of every field against the Go type with full
// paths, then the decoding proper.
func (s *Set) decode(l *errorList, file string, index int, chunk []byte, firstLine int) (Document, bool) {
	d := Document{File: file, Index: index}
	fail := func(path string, format string, args ...any) {
		l.add(&Error{File: file, Document: index, Object: d.object(), Path: path, Err: fmt.Errorf(format, args...)})
	}
	js, err := yaml.YAMLToJSONStrict(chunk)
	if err != nil {
		// yaml.v2 lists several problems on indented lines: keep one line.
		msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
		msg = strings.ReplaceAll(strings.ReplaceAll(msg, ":\n  ", ": "), "\n  ", "; ")
		// yaml.v2 counts lines from the document's start: count them from the file's.
		msg = yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
			return "line " + strconv.Itoa(n+firstLine-1)
		})
		fail("", "%s", msg)
		return d, false
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return d, false
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		fail("", "%v", err)
		return d, false
	}
	top, ok := generic.(map[string]any)
	if !ok {
		fail("", "want an object with apiVersion and kind, got %s", describe(generic))
		return d, false
	}
	apiVersion, _ := top["apiVersion"].(string)
	kind, _ := top["kind"].(string)
	meta, _ := top["metadata"].(map[string]any)
	d.name, _ = meta["name"].(string)
	d.namespace, _ = meta["namespace"].(string)
	if a, ok := meta["annotations"].(map[string]any); ok {
		d.annotations = make(map[string]string, len(a))
		for k, v := range a {
			if v, ok := v.(string); ok { // others fail to decode, and are reported there
				d.annotations[k] = v
			}
		}
	}
	explicitNamespace := d.namespace
	if d.namespace == "" {
		d.namespace = DefaultNamespace
	}
	if kind == "" {
		if apiVersion == "" {
			fail("apiVersion", "missing")
		}
		fail("kind", "missing")
		return d, false
	}
	var info *kindInfo
	otherVersions := []string{}
	for i := range kindTable {
		if kindTable[i].kind == kind {
			if kindTable[i].apiVersion == apiVersion {
				info = &kindTable[i]
			}
			otherVersions = append(otherVersions, kindTable[i].apiVersion)
		}
	}
	if len(otherVersions) == 0 {
		if apiVersion == "" {
			fail("apiVersion", "missing")
		}
		fail("kind", "%s (%s) is not supported; supported kinds: %s", kind, apiVersion, supportedKinds)
		return d, false
	}
	d.kind = kind
	if info == nil {
		// A known kind: report the version, then check the document as the
		// kind's first version, so that its other problems show too.
		if apiVersion == "" {
			fail("apiVersion", "missing; want %s", strings.Join(otherVersions, " or "))
		} else {
			fail("apiVersion", "%s %q is not supported; use %s", kind, apiVersion, strings.Join(otherVersions, " or "))
		}
		for i := range kindTable {
			if kindTable[i].kind == kind {
				info = &kindTable[i]
				break
			}
		}
	}

	obj := info.new()
	var c checker
	c.check("", generic, reflect.TypeOf(obj))
	switch {
	case d.name == "":
		c.add("metadata.name", "missing")
	case len(d.name) > 253 || !nameRule.MatchString(d.name):
		c.add("metadata.name", "%q is not a valid name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", d.name)
	}
	if explicitNamespace != "" && !nameRule.MatchString(explicitNamespace) {
		c.add("metadata.namespace", "%q is not a valid namespace", explicitNamespace)
	}
	for _, p := range c.problems {
		l.add(&Error{File: file, Document: index, Object: d.object(), Path: p.path, Err: p.err})
	}
	d.hidden = c.hidden
	// Decode what is left once the checker pruned the unknown fields and
	// the values of the wrong type, so that Build reports the problems of
	// the rest of the document too.
	if len(c.problems) > 0 {
		if js, err = json.Marshal(generic); err != nil {
			fail("", "%v", err)
			return d, true
		}
	}
	dec = json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		fail("", "%v", err)
		return d, true // kept, without Object, so that references to it resolve
	}
	d.Object = obj
	for _, prev := range s.Documents {
		if prev.kind == d.kind && prev.name == d.name && prev.namespace == d.namespace {
			fail("metadata.name", "%s is declared twice: first in %s (document %d)", d.object(), prev.File, prev.Index)
			d.Object = nil
			return d, false
		}
	}
	return d, true
}

// checker walks a decoded JSON value along a Go type and reports unknown
// fields (matched exactly, as Kubernetes does, not case-insensitively as
// encoding/json does) and values of the wrong type, with their paths. It
// removes what it reports from the value, so that the rest decodes, and
// notes in hidden the paths whose later problems would only repeat its own.
type checker struct {
	problems []struct {
		path string
		err  error
	}
	hidden []string
}

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, struct {
		path string
		err  error
	}{path, fmt.Errorf(format, args...)})
}

// wrong reports a value of the wrong type at path.
func (c *checker) wrong(path, format string, args ...any) bool {
	c.add(path, format, args...)
	c.hidden = append(c.hidden, path)
	return false
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// check reports whether v is of type t; when it is not, v is to be dropped.
func (c *checker) check(path string, v any, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return true // null: the zero value
	}
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return c.wrong(path, "want an object, got %s", describe(v))
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				if s := suggest(k, fields); s != "" {
					c.add(join(path, k), "unknown field; did you mean %q?", s)
					// What the typo leaves missing is the typo's problem:
					// the object it is in, and the field it was meant as.
					if _, given := m[s]; !given {
						c.hidden = append(c.hidden, join(path, s))
					}
					if path != "" {
						c.hidden = append(c.hidden, "="+path)
					}
				} else {
					c.add(join(path, k), "unknown field")
				}
				delete(m, k)
				continue
			}
			if !c.check(join(path, k), m[k], ft) {
				delete(m, k)
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return c.wrong(path, "want an object, got %s", describe(v))
		}
		for k, e := range m {
			if !c.check(join(path, k), e, t.Elem()) {
				delete(m, k)
			}
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return c.wrong(path, "want a list, got %s", describe(v))
		}
		for i, e := range a {
			if !c.check(fmt.Sprintf("%s[%d]", path, i), e, t.Elem()) {
				a[i] = nil
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			return c.wrong(path, "want a string, got %s", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return c.wrong(path, "want true or false, got %s", describe(v))
		}
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return c.wrong(path, "want an integer, got %s", describe(v))
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return c.wrong(path, "want an integer of %d bits, got %s", t.Bits(), n)
		}
	}
	return true
}

// hides reports whether a problem at path only repeats one of the checker's:
// it is at or under a hidden path, or exactly at a hidden "=path".
func hides(hidden []string, path string) bool {
	for _, h := range hidden {
		if exact, ok := strings.CutPrefix(h, "="); ok {
			if path == exact {
				return true
			}
			continue
		}
		if rest, ok := strings.CutPrefix(path, h); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			return true
		}
	}
	return false
}

// jsonFields maps the JSON names of t's fields to their types, inlining
// embedded structs as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// suggest returns the field that k was probably meant to be.
func suggest(k string, fields map[string]reflect.Type) string {
	best, bestDist := "", 3
	for f := range fields {
		if strings.EqualFold(f, k) {
			return f
		}
		if d := distance(strings.ToLower(f), strings.ToLower(k)); d < bestDist || (d == bestDist && f < best) {
			best, bestDist = f, d
		}
	}
	if bestDist > 2 {
		return ""
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "string " + strconv.Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
