package flows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
)

// The CloudEvents HTTP binding in binary mode for CloudEvents 1.0 events,
// written for the hot path: it produces and accepts what the SDK's
// cehttp.WriteRequest, WriteResponseWriter and binding.ToEvent do, with a
// fraction of their allocations (the SDK goes through generic message
// readers and writers, boxing every attribute). Anything else (structured
// mode, other spec versions, unusual headers) is left to the SDK: each
// function reports whether it handled the message. decodeMessage is the one
// entry for incoming messages, on both paths.

// Header names of the attributes, in the SDK's order.
const (
	hID          = "Ce-Id"
	hSource      = "Ce-Source"
	hSpecVersion = "Ce-Specversion"
	hType        = "Ce-Type"
	hContentType = "Content-Type"
	hDataSchema  = "Ce-Dataschema"
	hSubject     = "Ce-Subject"
	hTime        = "Ce-Time"
)

// binaryHeader writes the attributes of e to h as binary-mode headers,
// and the header extra (a name and its value) if it is set; sources (which
// may be nil) formats the source attribute. The header values are kept in
// buf's backing array when they fit there (buf may be nil), else in one of
// their own. It reports false, having written nothing, if e is not a
// CloudEvents 1.0 event whose extension names the fast path knows how to
// write, and writes nothing either if an extension cannot be formatted.
func binaryHeader(h http.Header, e *event.Event, extra [2]string, sources *sourceCache, buf []string) (bool, error) {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return false, nil
	}
	// One backing array for all the header values (8 attributes at most,
	// the extra header, the extensions); extensions first, so that a bad
	// one leaves h untouched.
	vals := buf[:0]
	if n := 9 + len(ec.Extensions); cap(vals) < n {
		vals = make([]string, 0, n)
	}
	var names []string
	if len(ec.Extensions) > 0 {
		names = make([]string, 0, len(ec.Extensions))
	}
	for name, v := range ec.Extensions {
		if name == "" || !isLowerAlnum(name[0]) {
			return false, nil
		}
		s, err := types.Format(v)
		if err != nil {
			return true, fmt.Errorf("extension %q: %w", name, err)
		}
		names, vals = append(names, name), append(vals, s)
	}
	for i, name := range names {
		h[extensionHeader(name)] = vals[i : i+1 : i+1]
	}
	set := func(k, v string) {
		if v != "" {
			vals = append(vals, v)
			h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	set(hID, ec.ID)
	set(hSource, sources.format(&ec.Source.URL))
	set(hSpecVersion, event.CloudEventsVersionV1)
	set(hType, ec.Type)
	if ec.DataContentType != nil {
		set(hContentType, *ec.DataContentType)
	}
	if ec.DataSchema != nil {
		set(hDataSchema, ec.DataSchema.String())
	}
	if ec.Subject != nil {
		set(hSubject, *ec.Subject)
	}
	if ec.Time != nil && !ec.Time.IsZero() {
		set(hTime, types.FormatTime(ec.Time.Time))
	}
	if extra[0] != "" {
		set(extra[0], extra[1])
	}
	return true, nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// extensionHeader is the header of an extension as the SDK names it: "Ce-"
// and the name with its first letter in upper case.
func extensionHeader(name string) string {
	if c := name[0]; 'a' <= c && c <= 'z' {
		return "Ce-" + string(rune(c-'a'+'A')) + name[1:]
	}
	return "Ce-" + name
}

// outgoing is what one request of an [HTTPTarget] has of its own besides
// the request and its header map, in one allocation: the URL, and in
// binary mode the body's reader and the header values (unless there are
// too many).
type outgoing struct {
	url  url.URL
	body bytes.Reader
	vals [9]string // the most binaryHeader needs without extensions
}

// binary makes req the POST of e in binary mode, with "Prefer: reply" if
// preferReply, keeping the parts of the request in out; it reports false,
// having changed nothing, if e is not for the fast path.
func (out *outgoing) binary(req *http.Request, e *event.Event, preferReply bool, sources *sourceCache) (bool, error) {
	var extra [2]string
	if preferReply {
		extra = [2]string{"Prefer", "reply"}
	}
	ok, err := binaryHeader(req.Header, e, extra, sources, out.vals[:0])
	if !ok || err != nil {
		return ok, err
	}
	if data := e.Data(); len(data) > 0 {
		// A *bytes.Reader in io.NopCloser, not a type of our own: net/http
		// writes the headers and the body of a body it knows to be in
		// memory in one write, others in two.
		out.body.Reset(data)
		req.Body = io.NopCloser(&out.body)
		req.ContentLength = int64(len(data))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	return true, nil
}

// writeBinaryResponse writes e as a binary-mode response with status; it
// reports false, having written nothing, if e is not for the fast path.
func writeBinaryResponse(w http.ResponseWriter, e *event.Event, status int) (bool, error) {
	return writeBinaryResponseWith(w, e, status, nil)
}

// writeBinaryResponseWith is writeBinaryResponse with a cache of sources.
func writeBinaryResponseWith(w http.ResponseWriter, e *event.Event, status int, sources *sourceCache) (bool, error) {
	h := w.Header()
	data := e.Data()
	var extra [2]string
	if len(data) > 0 {
		extra = [2]string{"Content-Length", strconv.Itoa(len(data))}
	}
	ok, err := binaryHeader(h, e, extra, sources, nil)
	if !ok || err != nil {
		return ok, err
	}
	w.WriteHeader(status)
	if len(data) > 0 {
		_, err = w.Write(data)
	}
	return true, err
}

// errNotBinary says that a message is not for readBinary.
var errNotBinary = errors.New("not a binary-mode CloudEvents 1.0 message")

// A decodeError is why decodeMessage returned no event; its kind tells the
// ingress which status to answer, and a subscription whether to retry.
type decodeError struct {
	kind decodeKind
	err  error
}

type decodeKind int

const (
	notAnEvent  decodeKind = iota // neither a ce-specversion header nor a CloudEvents content type
	unsupported                   // a CloudEvents format or a batch that is not supported
	malformed                     // a CloudEvent that cannot be decoded
	invalid                       // decoded, but not a valid CloudEvent
	tooLarge                      // the body is over the limit (wraps ErrTooLarge)
	bodyFailed                    // the body could not be read: a transport error
)

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func decodeErr(kind decodeKind, err error) error { return &decodeError{kind, err} }

// errNoEvent says why a message is not a CloudEvent at all.
var errNoEvent = decodeErr(notAnEvent, errors.New("not a CloudEvent: no ce-specversion header and no CloudEvents content type"))

// errBatch is a message in batched mode, which flows does not take.
var errBatch = decodeErr(unsupported, errors.New("batches of events are not supported"))

// decodeMessage decodes the CloudEvent of an HTTP message (a request to an
// ingress, a subscriber's response) and checks that it is valid. size is
// the body's declared length (-1 if unknown), limit the most of it that is
// read (<= 0: no limit of its own). Its errors are *decodeError values.
//
// Binary mode of CloudEvents 1.0 takes the fast path. The rest goes to the
// SDK, which only ever sees headers it can handle and a body already read
// whole (so that a read error is never taken for a malformed event). A
// panic in either is the last line of defence: it is recovered as a
// malformed message.
func decodeMessage(ctx context.Context, h http.Header, body io.Reader, size, limit int64) (e *event.Event, err error) {
	return decodeMessageWith(ctx, h, body, size, limit, nil)
}

// decodeMessageWith is decodeMessage with a cache of sources (nil: none).
func decodeMessageWith(ctx context.Context, h http.Header, body io.Reader, size, limit int64, sources *sourceCache) (e *event.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, decodeErr(malformed, fmt.Errorf("cannot be decoded: %v", r))
		}
	}()
	e, err = readBinaryWith(h, body, size, limit, sources)
	if errors.Is(err, errNotBinary) {
		e, err = readSDK(ctx, h, body, size, limit)
	}
	if err != nil {
		return nil, err
	}
	if err := checkEvent(e); err != nil {
		return nil, decodeErr(invalid, err)
	}
	return e, nil
}

// readSDK decodes what the fast path does not take with the SDK.
func readSDK(ctx context.Context, h http.Header, body io.Reader, size, limit int64) (*event.Event, error) {
	h, err := sdkHeader(h)
	if err != nil {
		return nil, decodeErr(malformed, err)
	}
	msg := cehttp.NewMessage(h, nil)
	switch msg.ReadEncoding() {
	case binding.EncodingBatch:
		return nil, errBatch
	case binding.EncodingUnknown:
		ct := h.Get(hContentType)
		switch sv := h.Get(hSpecVersion); {
		case hasPrefixFold(ct, "application/cloudevents"):
			return nil, decodeErr(unsupported, fmt.Errorf("unsupported CloudEvents format %q", ct))
		case sv != "":
			return nil, decodeErr(malformed, fmt.Errorf("unsupported specversion %q", sv))
		}
		return nil, errNoEvent
	}
	data, err := readBody(body, size, limit)
	if err != nil {
		return nil, err
	}
	msg.BodyReader = io.NopCloser(bytes.NewReader(data))
	e, err := binding.ToEvent(ctx, msg)
	if err != nil {
		return nil, decodeErr(malformed, err)
	}
	return e, nil
}

// sdkHeader returns the headers of h that the SDK's decoders read, without
// those that make them fail: the SDK takes the first value of each header
// without checking that there is one, and the name of an extension from
// after "Ce-" without checking that there is one.
func sdkHeader(h http.Header) (http.Header, error) {
	out := make(http.Header, len(h))
	for k, v := range h {
		if len(v) == 0 || !hasPrefixFold(k, "Ce-") && !strings.EqualFold(k, hContentType) {
			continue
		}
		if len(k) == len("Ce-") {
			return nil, fmt.Errorf("header %q has no extension name", k)
		}
		out[k] = v
	}
	return out, nil
}

// readBinary decodes a binary-mode CloudEvents 1.0 message from its header
// and body (see decodeMessage), setting each attribute with the SDK's own
// setters. It returns errNotBinary, having read nothing, for any other
// message, including one in structured mode or with a header name that is
// not canonical.
func readBinary(h http.Header, body io.Reader, size, limit int64) (*event.Event, error) {
	return readBinaryWith(h, body, size, limit, nil)
}

// readBinaryWith is readBinary, parsing the source attribute through
// sources (nil: none).
func readBinaryWith(h http.Header, body io.Reader, size, limit int64, sources *sourceCache) (*event.Event, error) {
	if sv := h[hSpecVersion]; len(sv) == 0 || sv[0] != event.CloudEventsVersionV1 {
		return nil, errNotBinary
	}
	if ct := h[hContentType]; len(ct) > 0 && format.Lookup(ct[0]) != nil {
		return nil, errNotBinary // structured or batched
	}
	o := new(decodedEvent)
	ec := &o.ec
	var malformedErr error // reported once the whole header is known to be for the fast path
	for k, v := range h {
		if len(k) >= 3 && strings.EqualFold(k[:3], "ce-") && k[:3] != "Ce-" ||
			k != hContentType && strings.EqualFold(k, hContentType) {
			return nil, errNotBinary
		}
		if len(v) == 0 || malformedErr != nil {
			continue
		}
		var err error
		switch k {
		case hSpecVersion:
		case hID:
			err = ec.SetID(v[0])
		case hSource:
			err = sources.parse(ec, v[0])
		case hType:
			err = ec.SetType(v[0])
		case hContentType:
			// As ec.SetDataContentType does, but in o's allocation.
			if o.contentType = strings.TrimSpace(v[0]); o.contentType != "" {
				ec.DataContentType = &o.contentType
			}
		case hDataSchema:
			err = ec.SetDataSchema(v[0])
		case hSubject:
			err = ec.SetSubject(v[0])
		case hTime:
			var t time.Time
			if t, err = types.ToTime(v[0]); err == nil {
				err = ec.SetTime(t)
			}
		default:
			if !strings.HasPrefix(k, "Ce-") {
				continue
			}
			if len(k) == 3 {
				err = fmt.Errorf("header %q has no extension name", k)
				break
			}
			err = ec.SetExtension(string(lower(k[3]))+k[4:], v[0])
		}
		if err != nil {
			malformedErr = decodeErr(malformed, fmt.Errorf("header %s: %w", k, err))
		}
	}
	if malformedErr != nil {
		return nil, malformedErr
	}
	o.e.Context = ec
	data, err := readBody(body, size, limit)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 {
		o.e.DataEncoded = data
	}
	return &o.e, nil
}

// decodedEvent is an event that readBinary decodes, in one allocation with
// its attributes and its content type.
type decodedEvent struct {
	ownedEvent
	contentType string
}

// readBody reads a body to its end, in one allocation when its size is
// declared. Past limit (if > 0) it stops reading and fails with
// ErrTooLarge, at once if the declared size is over it; without a limit,
// a declared size is trusted only up to DefaultMaxBodyBytes. Its errors are
// *decodeError values.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if r == nil || r == http.NoBody {
		return nil, nil
	}
	if limit > 0 && size > limit {
		return nil, errTooLarge(limit)
	}
	var buf []byte
	if size > 0 && (limit > 0 || size <= DefaultMaxBodyBytes) {
		buf = make([]byte, 0, size+1) // +1: room to read the end of the body
	}
	for {
		if len(buf) == cap(buf) {
			n := int64(max(cap(buf), 512))
			if limit > 0 {
				n = min(n, limit+1-int64(len(buf))) // never more room than the limit needs
			}
			buf = slices.Grow(buf, int(n))
		}
		end := cap(buf)
		if limit > 0 && int64(end) > limit+1 {
			end = int(limit + 1)
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if limit > 0 && int64(len(buf)) > limit {
			return nil, errTooLarge(limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, decodeErr(bodyFailed, err)
		}
	}
}

func errTooLarge(limit int64) error {
	return decodeErr(tooLarge, fmt.Errorf("%w: the body exceeds the limit of %d bytes", ErrTooLarge, limit))
}

// A sourceCache keeps one source attribute both parsed and formatted, so
// that the events of one producer, whose source stays the same, are not
// parsed (url.Parse) and formatted (URL.String) again at every hop. It
// keeps the first source it parses that formats back to the same text:
// a producer whose sources vary pays what it would without it, and no more. The zero value is ready; a nil one
// caches nothing. It is safe for concurrent use.
type sourceCache struct{ p atomic.Pointer[parsedURL] }

// parsedURL is a URL as written and as parsed, for the caches of parsed
// URLs ([sourceCache], [urlCache]).
type parsedURL struct {
	s string  // as written
	u url.URL // as parsed from s
}

// parse sets the source of ec from s, as ec.SetSource(s) does.
func (c *sourceCache) parse(ec *event.EventContextV1, s string) error {
	if c == nil {
		return ec.SetSource(s)
	}
	if p := c.p.Load(); p != nil {
		if p.s == s {
			ec.Source = types.URIRef{URL: p.u}
			return nil
		}
		return ec.SetSource(s)
	}
	if err := ec.SetSource(s); err != nil {
		return err
	}
	// Only a source that formats back as it was written, so that both
	// ways give what the SDK would. (A copy of s: it is part of a header,
	// which the cache must not keep.)
	if ec.Source.String() == s {
		c.p.CompareAndSwap(nil, &parsedURL{s: strings.Clone(s), u: ec.Source.URL})
	}
	return nil
}

// format returns u.String().
func (c *sourceCache) format(u *url.URL) string {
	if c == nil {
		return u.String()
	}
	if p := c.p.Load(); p != nil && p.u == *u {
		return p.s
	}
	return u.String()
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
