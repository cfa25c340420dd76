// Command requestreply answers requests through a Broker, as Knative's
// RequestReply does: each question is sent into the broker "default" with
// a correlationid; a Trigger on the question's type hands it to the
// answerer, whose reply carries that value back as replyid and re-enters
// the broker, where the RequestReply "ask" finds it and answers the
// question with it.
//
// By default it asks its questions in process and prints each answer. With
// -listen it serves the RequestReply over HTTP at /default/ask until
// interrupted, so that a POST of a CloudEvent is answered with the reply:
//
//	go run ./examples/requestreply -listen 127.0.0.1:8080
//	curl -i http://127.0.0.1:8080/default/ask -H 'Ce-Specversion: 1.0' -H 'Ce-Id: 1' \
//	  -H 'Ce-Source: /curl' -H 'Ce-Type: com.example.question' \
//	  -H 'Content-Type: application/json' -d '{"question": "why?"}'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

func main() {
	listen := flag.String("listen", "", "serve the RequestReply on this address, at /default/ask, until interrupted, e.g. 127.0.0.1:8080")
	flag.Parse()
	questions := flag.Args()
	if len(questions) == 0 {
		questions = []string{"Is it in process?", "Does it need a cluster?", "How long may an answer take?"}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	listening := func(url string) {
		fmt.Fprintf(os.Stderr, "requestreply: POST CloudEvents of type com.example.question to %s\n", url)
	}
	if err := run(ctx, os.Stdout, questions, *listen, listening); err != nil {
		fmt.Fprintln(os.Stderr, "requestreply:", err)
		os.Exit(1)
	}
}

// Question and Answer are the data of the events.
type (
	Question struct {
		Question string `json:"question"`
	}
	Answer struct {
		Question string `json:"question"`
		Answer   string `json:"answer"`
	}
)

func run(ctx context.Context, out io.Writer, questions []string, listen string, listening func(url string)) error {
	broker, err := (&flows.Broker{
		Name: "default",
		Triggers: []flows.Trigger{{
			Name:       "answer",
			Filter:     flows.Attributes(map[string]string{"type": "com.example.question"}),
			Subscriber: answerer(),
		}},
	}).Start(ctx)
	if err != nil {
		return err
	}
	ask, err := (&flows.RequestReply{
		Name:    "ask",
		Broker:  broker,
		Timeout: 10 * time.Second,
	}).Start(ctx)
	if err != nil {
		return errors.Join(err, broker.Close())
	}

	if listen != "" {
		err = serve(ctx, ask, listen, listening)
	} else {
		err = askAll(ctx, out, ask, questions)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The RequestReply first: its waiting requests need the broker.
	return errors.Join(err, ask.Shutdown(sctx), broker.Shutdown(sctx))
}

var faq = map[string]string{
	"Is it in process?":            "yes: a Broker, a Trigger and a RequestReply as Go values",
	"Does it need a cluster?":      "no",
	"How long may an answer take?": "10s, the RequestReply's timeout; then the request fails",
}

// answerer is the service behind the Trigger. It replies to a question with
// an answer, whose replyid is the question's correlationid: that is what
// makes it the reply. The answer's type is another, so that the Trigger
// does not match it when it re-enters the broker.
func answerer() flows.Handler {
	answer := flows.Typed(func(_ context.Context, q Question) (Answer, error) {
		a, ok := faq[q.Question]
		if !ok {
			a = "I do not know"
		}
		return Answer{Question: q.Question, Answer: a}, nil
	}, flows.TypedReplyType("com.example.answer"), flows.TypedReplySource("/answerer"))
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := answer.Handle(ctx, e)
		if err != nil || reply == nil {
			return reply, err
		}
		reply.SetExtension(flows.DefaultReplyAttribute, e.Extensions()[flows.DefaultCorrelationAttribute])
		return reply, nil
	})
}

// askAll asks each question in process and prints its answer.
func askAll(ctx context.Context, out io.Writer, ask *flows.Requester, questions []string) error {
	for i, q := range questions {
		e := event.New()
		e.SetID(strconv.Itoa(i + 1))
		e.SetSource("/examples/requestreply")
		e.SetType("com.example.question")
		if err := e.SetData(event.ApplicationJSON, Question{Question: q}); err != nil {
			return err
		}
		reply, err := ask.Request(ctx, e)
		if err != nil {
			return err
		}
		var a Answer
		if err := reply.DataAs(&a); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s → %s (%s from %s)\n", a.Question, a.Answer, reply.Type(), reply.Source())
	}
	return nil
}

// serve serves ask at its path on addr until ctx ends.
func serve(ctx context.Context, ask *flows.Requester, addr string, listening func(url string)) error {
	srv, err := flows.ListenAndServe(addr, ask.Handler())
	if err != nil {
		return err
	}
	if listening != nil {
		listening(strings.TrimSuffix(srv.URL(), "/") + ask.Path())
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
