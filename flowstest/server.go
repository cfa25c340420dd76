package flowstest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/eventflows/flows"
)

// A Server serves a [flows.Handler] over HTTP on 127.0.0.1 with Knative's
// subscriber contract ([flows.NewHTTPHandler]), as [httptest.NewServer]
// serves an http.Handler. Use it to test a flow whose hops are HTTP
// subscribers, or the HTTP ingress of a flow (serve the [flows.Flow]).
type Server struct {
	// URL is the server's base URL, "http://127.0.0.1:<port>".
	URL string

	hs *httptest.Server
}

// NewServer starts a server for h on a free port of 127.0.0.1. Stop it with
// Close. Like httptest.NewServer, it panics if it cannot listen.
func NewServer(h flows.Handler) *Server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("flowstest: NewServer: listening on 127.0.0.1: %v", err))
	}
	hs := &httptest.Server{Listener: l, Config: &http.Server{Handler: flows.NewHTTPHandler(h)}}
	hs.Start()
	return &Server{URL: hs.URL, hs: hs}
}

// Target returns a [flows.HTTPTarget] that delivers to the server, with a
// client whose idle connections Close releases.
func (s *Server) Target() *flows.HTTPTarget {
	return &flows.HTTPTarget{URL: s.URL, Client: s.hs.Client()}
}

// Close shuts the server down, waiting for the requests in progress to
// finish, and closes the idle connections of the targets' client.
func (s *Server) Close() {
	s.hs.Close()
}
