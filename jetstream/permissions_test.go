package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The permissions that README.md ("Pointing it at a real cluster") says a
// flow needs are enough to run one: a user with those and no more starts a
// Sequence, sends an event through it, and shuts it down.
func TestDocumentedPermissionsAreEnough(t *testing.T) {
	publish := []string{
		"$JS.API.STREAM.INFO.*", "$JS.API.STREAM.CREATE.*", "$JS.API.STREAM.UPDATE.*",
		"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.MSG.NEXT.>",
		"flows.>", "$JS.ACK.>",
	}
	subscribe := []string{"_INBOX.>"}

	ctx := testContext(t)
	s := &natsServer{t: t, opts: &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "flows", Password: "secret", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: publish},
			Subscribe: &server.SubjectPermission{Allow: subscribe},
		}}},
	}}
	s.start()
	t.Cleanup(s.stop)
	nc, err := nats.Connect(s.URL(), nats.UserInfo("flows", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 1)
	seq := &flows.Sequence{
		Name:  "perms",
		Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) { return &e, nil })}},
		Reply: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			got <- e.ID()
			return nil, nil
		}),
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	flow, err := seq.Start(sctx, flows.WithChannels(jetstream.Channels(js)))
	if err != nil {
		t.Fatalf("Start with the documented permissions = %v", err)
	}
	defer flow.Close()
	e := newEvent(1)
	if err := flow.Send(sctx, e); err != nil {
		t.Fatalf("Send with the documented permissions = %v", err)
	}
	select {
	case id := <-got:
		if id != e.ID() {
			t.Errorf("reply %s; want %s", id, e.ID())
		}
	case <-sctx.Done():
		t.Fatal("the event never reached the reply with the documented permissions")
	}
	if err := flow.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}
