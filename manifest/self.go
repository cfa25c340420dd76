package manifest

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// WithServeAddress says that the app will be served on addr with
// [App.Serve] (such as "127.0.0.1:8080" or ":8080"). A destination whose
// URL names one of the app's own ingress URLs is then that flow, as if
// given by ref: it is reached in process, ordered with the flows it
// depends on, and counted by the cycle check, so that a flow sending to
// its own ingress over HTTP is refused instead of looping forever. A URL
// that names the address but a path where no flow is served is an error.
//
// The address's host is matched as a client would reach it: a loopback
// address or localhost matches 127.0.0.0/8, ::1 and localhost; an
// unspecified one (0.0.0.0, ::, or none) matches those, the machine's
// interface addresses and its host name. Port 0 matches nothing.
func WithServeAddress(addr string) Option { return func(c *config) { c.serveAddr = addr } }

// selfAddress matches URLs against the address the app is served on.
type selfAddress struct {
	port     string
	loopback bool            // any loopback host matches
	hosts    map[string]bool // other hosts that match
}

func newSelfAddress(addr string) *selfAddress {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || port == "" {
		return nil
	}
	if p, err := net.LookupPort("tcp", port); err == nil {
		port = strconv.Itoa(p)
	}
	s := &selfAddress{port: port, hosts: map[string]bool{}}
	host = normalHost(host)
	switch ip := net.ParseIP(host); {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		s.loopback = true
		if name, err := os.Hostname(); err == nil {
			s.hosts[normalHost(name)] = true
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					s.hosts[n.IP.String()] = true
				}
			}
		}
	case isLoopback(host):
		s.loopback = true
	case ip != nil:
		s.hosts[ip.String()] = true
	default:
		s.hosts[host] = true
	}
	return s
}

// normalHost lower-cases a host name and drops a final dot; an IP address
// is put in its canonical form.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// isLoopback reports whether a client reaching host reaches this machine
// over loopback; connecting to an unspecified address does too.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

// names reports whether u is a URL of the app's own server.
func (s *selfAddress) names(u *url.URL) bool {
	if s == nil || u.Scheme != "http" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if port != s.port {
		return false
	}
	h := normalHost(u.Hostname())
	return s.hosts[h] || (s.loopback && isLoopback(h))
}
