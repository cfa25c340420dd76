package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows/manifest"
)

// defaultUndelivered is the file undelivered events go to when
// --undelivered is not given: in the working directory, named after the
// time of the stop, so that runs never overwrite each other's.
func defaultUndelivered(now time.Time) string {
	return "flows-undelivered-" + now.UTC().Format("20060102T150405Z") + ".jsonl"
}

// encodeEvent returns e as one line of structured-mode JSON. Data that
// would not fit on one line as JSON (pretty-printed, or not JSON at all) is
// written as data_base64, which keeps its bytes exactly.
func encodeEvent(e event.Event) ([]byte, error) {
	b, err := e.MarshalJSON()
	if err == nil && json.Valid(b) && !bytes.ContainsAny(b, "\r\n") {
		return b, nil
	}
	e.DataBase64 = true
	return e.MarshalJSON()
}

// saveUndelivered writes the events err reports as not delivered to the
// file at path (or the default one when path is empty), and logs where
// they are and how to send them again. If the file cannot be written, the
// events go to fallback, so that they are not lost.
func saveUndelivered(err error, path string, now time.Time, logger *slog.Logger, fallback io.Writer) {
	lost := manifest.Undelivered(err)
	var lines [][]byte
	type span struct {
		l          manifest.Lost
		first, end int
	}
	var spans []span
	seen := map[string]bool{} // a flow nested in another may list the same event
	for _, l := range lost {
		sp := span{l: l, first: len(lines) + 1}
		for _, e := range l.Events {
			b, err := encodeEvent(e)
			if err != nil {
				logger.Error("flows: an undelivered event cannot be encoded", "id", e.ID(), "source", e.Source(), "error", err)
				continue
			}
			if seen[string(b)] {
				continue
			}
			seen[string(b)] = true
			lines = append(lines, b)
		}
		sp.end = len(lines)
		spans = append(spans, sp)
	}
	if len(lines) == 0 {
		return
	}
	name, werr := writeLines(path, now, lines)
	if werr != nil {
		logger.Error("flows: the undelivered events cannot be written to a file; they follow on the standard error, one per line",
			"error", werr, "events", len(lines))
		for _, b := range lines {
			fallback.Write(append(b, '\n'))
		}
		return
	}
	logger.Error("flows: undelivered events written", "file", name, "events", len(lines))
	for _, sp := range spans {
		if sp.end < sp.first {
			continue
		}
		attrs := []any{"flow", sp.l.Kind + "/" + qualifiedName(sp.l.Namespace, sp.l.Name), "lines", lineRange(sp.first, sp.end)}
		if sp.l.URL != "" {
			resend := "flows send --to " + sp.l.URL + " --from " + name
			if len(spans) > 1 {
				resend = "sed -n " + strconv.Itoa(sp.first) + "," + strconv.Itoa(sp.end) + "p " + name + " | flows send --to " + sp.l.URL + " --from -"
			}
			attrs = append(attrs, "url", sp.l.URL, "resend", resend)
		}
		logger.Error("flows: undelivered events of a flow", attrs...)
	}
}

func qualifiedName(ns, name string) string {
	if ns == "" || ns == manifest.DefaultNamespace {
		return name
	}
	return ns + "/" + name
}

func lineRange(first, end int) string {
	if first == end {
		return strconv.Itoa(first)
	}
	return strconv.Itoa(first) + "-" + strconv.Itoa(end)
}

// writeLines writes lines to path, appending if it exists; with no path,
// to a new file with the default name. It returns the file's absolute name.
func writeLines(path string, now time.Time, lines [][]byte) (string, error) {
	var f *os.File
	var err error
	if path != "" {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	} else {
		base := defaultUndelivered(now)
		for i := 1; ; i++ {
			path = base
			if i > 1 {
				path = strings.TrimSuffix(base, ".jsonl") + "-" + strconv.Itoa(i) + ".jsonl"
			}
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if !errors.Is(err, fs.ErrExist) || i == 100 {
				break
			}
		}
	}
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	for _, b := range lines {
		buf.Write(b)
		buf.WriteByte('\n')
	}
	_, err = f.Write(buf.Bytes())
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}
