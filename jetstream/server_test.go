package jetstream_test

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// natsServer is a NATS server with JetStream running in the test process,
// on a free port of 127.0.0.1, storing in a temporary directory.
type natsServer struct {
	t    *testing.T
	opts *server.Options
	srv  *server.Server
}

func startServer(t *testing.T) *natsServer {
	t.Helper()
	s := &natsServer{t: t, opts: &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}}
	s.start()
	// Keep the port across restarts, so that clients reconnect to it.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) start() {
	s.t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		s.t.Fatalf("starting the NATS server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatal("the NATS server did not start within 10s")
	}
	s.srv = srv
}

func (s *natsServer) stop() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// restart stops the server and starts it again on the same port and
// storage directory.
func (s *natsServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func (s *natsServer) URL() string { return s.srv.ClientURL() }

// connect opens a client connection that reconnects for ever, quickly, and
// closes it at the end of the test.
func (s *natsServer) connect(t *testing.T) (*nats.Conn, natsjs.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectJitter(0, 0),
	)
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	return nc, js
}
