package flows

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// The CloudEvents HTTP binding in binary mode for CloudEvents 1.0 events,
// written for the hot path: it produces and accepts what the SDK's
// cehttp.WriteRequest, WriteResponseWriter and binding.ToEvent do, with a
// fraction of their allocations (the SDK goes through generic message
// readers and writers, boxing every attribute). Anything else (structured
// mode, other spec versions, unusual headers) is left to the SDK: each
// function reports whether it handled the message.

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

// binaryHeader writes the attributes of e to h as binary-mode headers. It
// reports false, having written nothing, if e is not a CloudEvents 1.0
// event whose extension names the fast path knows how to write, and writes
// nothing either if an extension cannot be formatted.
func binaryHeader(h http.Header, e *event.Event) (bool, error) {
	ec, ok := e.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return false, nil
	}
	// One backing array for all the header values; extensions first, so
	// that a bad one leaves h untouched.
	vals := make([]string, 0, 8+len(ec.Extensions))
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
	set(hSource, ec.Source.String())
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

// newBinaryRequest builds the POST of e to url in binary mode; it reports
// false if e is not for the fast path.
func newBinaryRequest(req *http.Request, e *event.Event) (bool, error) {
	ok, err := binaryHeader(req.Header, e)
	if !ok || err != nil {
		return ok, err
	}
	if data := e.Data(); len(data) > 0 {
		r := bytes.NewReader(data)
		req.Body = io.NopCloser(r)
		req.ContentLength = int64(len(data))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	}
	return true, nil
}

// writeBinaryResponse writes e as a binary-mode response with status; it
// reports false, having written nothing, if e is not for the fast path.
func writeBinaryResponse(w http.ResponseWriter, e *event.Event, status int) (bool, error) {
	h := w.Header()
	ok, err := binaryHeader(h, e)
	if !ok || err != nil {
		return ok, err
	}
	data := e.Data()
	if len(data) > 0 {
		h["Content-Length"] = []string{strconv.Itoa(len(data))}
	}
	w.WriteHeader(status)
	if len(data) > 0 {
		_, err = w.Write(data)
	}
	return true, err
}

// errNotBinary says that a message is not for readBinary.
var errNotBinary = errors.New("not a binary-mode CloudEvents 1.0 message")

// readBinary decodes a binary-mode CloudEvents 1.0 message from its header
// and body, setting each attribute with the SDK's own setters. It returns
// errNotBinary, having read nothing, for any other message, including one
// in structured mode or with a header name that is not canonical.
func readBinary(h http.Header, body io.Reader) (*event.Event, error) {
	if sv := h[hSpecVersion]; len(sv) == 0 || sv[0] != event.CloudEventsVersionV1 {
		return nil, errNotBinary
	}
	if ct := h[hContentType]; len(ct) > 0 && format.Lookup(ct[0]) != nil {
		return nil, errNotBinary // structured or batched
	}
	for k := range h {
		if len(k) >= 3 && strings.EqualFold(k[:3], "ce-") && k[:3] != "Ce-" ||
			k != hContentType && strings.EqualFold(k, hContentType) {
			return nil, errNotBinary
		}
	}
	o := new(ownedEvent)
	ec := &o.ec
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		var err error
		switch k {
		case hSpecVersion:
		case hID:
			err = ec.SetID(v[0])
		case hSource:
			err = ec.SetSource(v[0])
		case hType:
			err = ec.SetType(v[0])
		case hContentType:
			err = ec.SetDataContentType(v[0])
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
				err = errors.New("extension header without a name")
				break
			}
			err = ec.SetExtension(string(lower(k[3]))+k[4:], v[0])
		}
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
	}
	o.e.Context = ec
	if body != nil {
		data, err := readAll(body)
		if err != nil {
			return nil, err
		}
		if len(data) > 0 {
			o.e.DataEncoded = data
		}
	}
	return &o.e, nil
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
