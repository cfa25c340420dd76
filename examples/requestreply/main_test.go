package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Each question gets its own answer, in order, from the answerer's reply.
func TestAsksInProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := run(ctx, &out, []string{"Does it need a cluster?", "What?"}, "", nil); err != nil {
			t.Fatal(err)
		}
		want := "Does it need a cluster? → no (com.example.answer from /answerer)\n" +
			"What? → I do not know (com.example.answer from /answerer)\n"
		if out.String() != want {
			t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
		}
	})
}

// Over HTTP, a POSTed question is answered 200 with the reply event, whose
// replyid is the correlation value the RequestReply gave the question.
func TestAnswersOverHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		status int
		reply  string
		typ    string
		err    error
	}
	got := make(chan answer, 1)
	listening := func(url string) {
		go func() {
			defer cancel() // stops the demo
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"question": "Is it in process?"}`))
			for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/test",
				"Ce-Type": "com.example.question", "Content-Type": event.ApplicationJSON} {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			buf.ReadFrom(resp.Body)
			got <- answer{status: resp.StatusCode, reply: resp.Header.Get("Ce-Replyid"), typ: resp.Header.Get("Ce-Type") + " " + buf.String()}
		}()
	}
	if err := run(ctx, &bytes.Buffer{}, nil, "127.0.0.1:0", listening); err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.status != http.StatusOK || !strings.HasPrefix(a.reply, "1:") || !strings.Contains(a.typ, "com.example.answer") ||
		!strings.Contains(a.typ, `"answer":"yes: a Broker`) {
		t.Errorf("answer: %d, replyid %q, %s", a.status, a.reply, a.typ)
	}
}
