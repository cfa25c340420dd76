package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// maxLine bounds one line of a file of events: the ingress's default
// request limit of 4 MiB, base64-encoded, with room to spare.
const maxLine = 16 << 20

// sender posts events to one URL and reports each answer.
type sender struct {
	to         string
	structured bool
	retry      int
	backoff    time.Duration
	maxBackoff time.Duration
	client     *http.Client
	out        io.Writer

	sent, accepted, refused int
}

func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flows send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &sender{out: stdout}
	fs.StringVar(&s.to, "to", "", "post the events to this `URL`, such as a flow's ingress")
	from := fs.String("from", "", "send the events of this `file`: JSON lines, one structured CloudEvent each, as flows run writes\n"+
		"the undelivered ones; - for the standard input")
	fs.BoolVar(&s.structured, "structured", false, "send in structured mode (application/cloudevents+json) instead of binary mode")
	fs.IntVar(&s.retry, "retry", 5, "retry an event answered 503 or 429 up to this many `times`")
	fs.DurationVar(&s.backoff, "backoff", 200*time.Millisecond, "wait this long before the first retry, twice as long before each next one")
	fs.DurationVar(&s.maxBackoff, "max-backoff", 10*time.Second, "wait at most this long between retries, whatever Retry-After says")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on a request after this long")
	var ev eventFlags
	fs.StringVar(&ev.id, "id", "", "the event's id (default a new random one)")
	fs.StringVar(&ev.source, "source", "flows-send", "the event's source")
	fs.StringVar(&ev.typ, "type", "", "the event's type (required without -from)")
	fs.StringVar(&ev.subject, "subject", "", "the event's subject")
	fs.StringVar(&ev.time, "time", "now", "the event's time, RFC 3339, or now, or empty for none")
	fs.StringVar(&ev.data, "data", "", "the event's data")
	fs.StringVar(&ev.contentType, "content-type", event.ApplicationJSON, "the data's content type")
	fs.Var(&ev.ext, "ext", "an extension attribute: `name=value` (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: flows send --to URL (--from FILE | --type TYPE [--data DATA] ...) [flags]\n\n"+
			"Post CloudEvents to a URL, in binary mode unless -structured: those of a file, such as the undelivered\n"+
			"events flows run writes, or one made of the flags. Prints what the server answered to each, retries\n"+
			"503 and 429 with backoff, and exits 1 if any event was refused or could not be read.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "flows send: "+format+"\n", args...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q (the URL is given with --to)", fs.Arg(0))
	case s.to == "":
		return usage("no URL: give --to URL")
	case s.retry < 0 || s.backoff < 0 || s.maxBackoff < 0 || *timeout <= 0:
		return usage("--retry, --backoff and --max-backoff must not be negative, --timeout must be positive")
	}
	if u, err := url.Parse(s.to); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usage("--to %q: want an absolute http or https URL", s.to)
	}
	var eventFlagsSet []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "id", "source", "type", "subject", "time", "data", "content-type", "ext":
			eventFlagsSet = append(eventFlagsSet, "--"+f.Name)
		}
	})
	if *from != "" && len(eventFlagsSet) > 0 {
		return usage("%s: the event comes from --from; give either a file or the event's flags", strings.Join(eventFlagsSet, ", "))
	}
	if *from == "" && ev.typ == "" {
		return usage("nothing to send: give --from FILE, or the event with at least --type")
	}
	s.client = &http.Client{
		Timeout:       *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	code := 0
	if *from == "" {
		e, err := ev.event()
		if err != nil {
			fmt.Fprintf(stderr, "flows send: %v\n", err)
			return 2
		}
		s.send(ctx, "", e)
	} else if !s.sendFile(ctx, *from, stderr) {
		code = 1
	}
	fmt.Fprintf(stderr, "flows send: %d sent to %s: %d accepted, %d refused\n", s.sent, s.to, s.accepted, s.refused)
	if s.refused > 0 {
		code = 1
	}
	return code
}

// sendFile sends the events of a file of JSON lines; it reports whether
// every line was an event.
func (s *sender) sendFile(ctx context.Context, name string, stderr io.Writer) bool {
	var r io.Reader
	label := name
	if name == "-" {
		r, label = os.Stdin, "<stdin>"
	} else {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "flows send: %v\n", err)
			return false
		}
		defer f.Close()
		r = f
	}
	ok := true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		where := label + ":" + strconv.Itoa(n)
		var e event.Event
		err := json.Unmarshal(line, &e)
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: not a CloudEvent in JSON: %v\n", where, err)
			ok = false
			continue
		}
		if ctx.Err() != nil {
			break
		}
		s.send(ctx, where, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("longer than %d MiB", maxLine>>20)
		}
		fmt.Fprintf(stderr, "%s:%d: %v; the lines after it were not sent\n", label, n+1, err)
		ok = false
	}
	return ok
}

// send posts e, retrying 503 and 429, and prints the answer.
func (s *sender) send(ctx context.Context, where string, e event.Event) {
	s.sent++
	name := fmt.Sprintf("id %q source %q", e.ID(), e.Source())
	if where != "" {
		name = where + ": " + name
	}
	wait := s.backoff
	for attempt := 0; ; attempt++ {
		status, reason, retryAfter, err := s.post(ctx, e)
		retried := ""
		switch {
		case attempt == 1:
			retried = " (after 1 retry)"
		case attempt > 1:
			retried = fmt.Sprintf(" (after %d retries)", attempt)
		}
		switch {
		case err != nil:
			s.refused++
			fmt.Fprintf(s.out, "%s: not sent%s: %v\n", name, retried, err)
			return
		case status >= 200 && status < 300:
			s.accepted++
			fmt.Fprintf(s.out, "%s: %d %s%s\n", name, status, http.StatusText(status), retried)
			return
		case (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && attempt < s.retry:
			d := min(max(wait, retryAfter), s.maxBackoff)
			wait = min(2*wait, s.maxBackoff)
			t := time.NewTimer(d)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		s.refused++
		if reason != "" {
			reason = ": " + reason
		}
		fmt.Fprintf(s.out, "%s: %d %s%s%s\n", name, status, http.StatusText(status), reason, retried)
		return
	}
}

// post sends e once; it returns the status, the first line of the
// answer's body, and the wait Retry-After asks for.
func (s *sender) post(ctx context.Context, e event.Event) (int, string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.to, nil)
	if err != nil {
		return 0, "", 0, err
	}
	if s.structured {
		// As the file holds it: sdk-go's structured writer would compact
		// JSON data, and the data would no longer be the same bytes.
		b, err := encodeEvent(e)
		if err != nil {
			return 0, "", 0, fmt.Errorf("encoding the event: %w", err)
		}
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		req.Header.Set("Content-Type", event.ApplicationCloudEventsJSON)
	} else if err := cehttp.WriteRequest(binding.WithForceBinary(ctx), binding.ToMessage(&e), req); err != nil {
		return 0, "", 0, fmt.Errorf("encoding the event: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // so that the connection is reused
	return resp.StatusCode, firstLine(body), retryAfter(resp.Header.Get("Retry-After"), time.Now()), nil
}

// firstLine is the first line of an answer's body, shortened for a report.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	s := strings.TrimSpace(strings.ToValidUTF8(string(line), "?"))
	if len(s) > 200 {
		s = s[:200]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return s
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
		return time.Duration(min(n, 3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

// eventFlags are the flags an event is made of.
type eventFlags struct {
	id, source, typ, subject, time, data, contentType string
	ext                                               stringList
}

func (f *eventFlags) event() (event.Event, error) {
	e := event.New()
	e.SetID(f.id)
	if f.id == "" {
		e.SetID(strings.ToLower(rand.Text()))
	}
	e.SetSource(f.source)
	e.SetType(f.typ)
	if f.subject != "" {
		e.SetSubject(f.subject)
	}
	switch f.time {
	case "":
	case "now":
		e.SetTime(time.Now())
	default:
		t, err := time.Parse(time.RFC3339Nano, f.time)
		if err != nil {
			return e, fmt.Errorf("--time %q: want RFC 3339, such as 2024-05-01T12:00:00Z", f.time)
		}
		e.SetTime(t)
	}
	if f.data != "" {
		if err := e.SetData(f.contentType, []byte(f.data)); err != nil {
			return e, fmt.Errorf("--data: %w", err)
		}
		e.DataBase64 = false
	}
	for _, x := range f.ext {
		name, value, ok := strings.Cut(x, "=")
		if !ok {
			return e, fmt.Errorf("--ext %q: want name=value", x)
		}
		e.SetExtension(name, value)
	}
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("the event is not valid: %w", err)
	}
	return e, nil
}
