package manifest

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/eventflows/flows"
)

// ErrNoBinding is wrapped by the error for a destination whose ref names
// an object that is neither declared in the manifests (as a Sequence,
// Parallel or channel) nor bound in the [Registry].
var ErrNoBinding = errors.New("manifest: no binding")

// Error reports one problem in a manifest: the file, the document (by the
// kind and name it declares, or by its position), the field path, and
// what is wrong, as in
//
//	sequence.yaml: Sequence "sequence": spec.steps[2].ref: no binding for Service "third"
//
// Functions of this package report all the problems they find at once, as
// *Error values joined with [errors.Join]; use [errors.As] on each, or
// errors.Is(err, flows.ErrInvalid), which holds for every *Error.
type Error struct {
	File     string // the file name as given
	Document int    // the document's position in the file, from 1
	Object   string // the kind and name, e.g. `Sequence "sequence"`; empty if unknown
	Path     string // the field path, e.g. "spec.steps[2].ref"; empty for the whole document
	Err      error  // what is wrong
}

// Error formats the problem as "file: Kind \"name\": path: cause".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Object != "":
		b.WriteString(": ")
		b.WriteString(e.Object)
	case e.Document > 0:
		b.WriteString(": document ")
		b.WriteString(strconv.Itoa(e.Document))
	}
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns [flows.ErrInvalid] and the cause.
func (e *Error) Unwrap() []error { return []error{flows.ErrInvalid, e.Err} }

// unboundError is the cause of a missing binding; near is a binding
// whose name is close, probably the one meant.
type unboundError struct{ ref, near string }

func (e *unboundError) Error() string {
	if e.near != "" {
		return "no binding for " + e.ref + "; did you mean the binding " + e.near + "?"
	}
	return "no binding for " + e.ref
}
func (e *unboundError) Unwrap() error { return ErrNoBinding }

// errorList collects Errors and sorts them by file, document and the order
// in which they were found.
type errorList struct {
	files map[string]int // file -> order of first appearance
	errs  []sortedError
}

type sortedError struct {
	file, doc, seq int
	err            error
}

func (l *errorList) fileOrder(file string) int {
	if l.files == nil {
		l.files = map[string]int{}
	}
	n, ok := l.files[file]
	if !ok {
		n = len(l.files)
		l.files[file] = n
	}
	return n
}

func (l *errorList) add(e *Error) {
	l.errs = append(l.errs, sortedError{l.fileOrder(e.File), e.Document, len(l.errs), e})
}

func (l *errorList) addAll(o *errorList) {
	for _, e := range o.errs {
		var me *Error
		if errors.As(e.err, &me) {
			l.add(me)
		}
	}
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	s := slices.Clone(l.errs)
	slices.SortStableFunc(s, func(a, b sortedError) int {
		return cmp.Or(cmp.Compare(a.file, b.file), cmp.Compare(a.doc, b.doc), cmp.Compare(a.seq, b.seq))
	})
	errs := make([]error, len(s))
	for i, e := range s {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}
