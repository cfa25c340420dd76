package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
	"github.com/eventflows/flows/manifest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// DefaultNATSPort is the port of the embedded NATS server of --durable when
// --nats-port is not given: NATS' own, so that other processes reach it with
// --nats nats://127.0.0.1:4222 whatever restarts it went through.
const DefaultNATSPort = 4222

// natsFlags are the flags that put flows on NATS JetStream.
type natsFlags struct {
	durable    string
	port       int
	url        string
	creds      string
	context    string
	tlsCert    string
	tlsKey     string
	tlsCA      string
	prefix     string
	replicas   int
	storage    string
	maxAge     time.Duration
	ackWait    time.Duration
	allDurable bool
}

// addConnFlags adds the flags that say how to reach a server.
func (n *natsFlags) addConnFlags(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats", "", "run the channels on the NATS JetStream server or cluster at this `URL` (comma-separated for several)")
	fs.StringVar(&n.creds, "nats-creds", "", "NATS user credentials `file` (JWT and NKey seed), as the nats command line takes it")
	fs.StringVar(&n.context, "nats-context", "", "a `context` of the nats command line: a name in ~/.config/nats/context/NAME.json, or a file path;\n"+
		"its url, creds, nkey, user, password, token, tls_cert, tls_key, tls_ca and jetstream_domain are used, other flags win")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "TLS client certificate `file` for NATS")
	fs.StringVar(&n.tlsKey, "nats-tls-key", "", "TLS client key `file` for NATS")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "TLS CA certificate `file` to trust for NATS")
	fs.StringVar(&n.prefix, "nats-prefix", jetstream.DefaultPrefix, "`prefix` of the streams (<prefix>_<namespace>_<channel>): runners that share it share the flows' events")
}

func (n *natsFlags) addRunFlags(fs *flag.FlagSet) {
	n.addConnFlags(fs)
	fs.StringVar(&n.durable, "durable", "", "run the channels on a NATS server with JetStream embedded in this process, on 127.0.0.1, storing in `DIR`;\n"+
		"restarted on the same DIR, the flows go on with every event accepted before")
	fs.IntVar(&n.port, "nats-port", DefaultNATSPort, "`port` of the embedded NATS server of -durable (0: a random one); it is logged at start")
	fs.IntVar(&n.replicas, "replicas", 0, "stream replicas on a cluster (`n`, 1 to 5; 0: the server's default, 1); a NatsJetStreamChannel template's wins")
	fs.StringVar(&n.storage, "storage", "file", "stream storage: file or memory (memory loses events when the server stops); a template's wins")
	fs.DurationVar(&n.maxAge, "max-age", 0, "drop events older than this `duration` from the streams, delivered or not (0: never); a template's wins")
	fs.DurationVar(&n.ackWait, "ack-wait", jetstream.DefaultAckWait, "how long after a crash the events it was delivering are delivered again")
	fs.BoolVar(&n.allDurable, "all-durable", false, "with -durable or -nats, run InMemoryChannel flows (and templates) on JetStream too")
}

func (n *natsFlags) enabled() bool { return n.durable != "" || n.url != "" || n.context != "" }

// check reports a flag problem, or nil.
func (n *natsFlags) check() error {
	if n.durable != "" && (n.url != "" || n.context != "") {
		return errors.New("-durable and -nats/-nats-context exclude each other: -durable runs its own server")
	}
	if n.storage != "file" && n.storage != "memory" {
		return fmt.Errorf("-storage %q: want file or memory", n.storage)
	}
	if n.replicas < 0 || n.replicas > 5 {
		return fmt.Errorf("-replicas %d: want 1 to 5, or 0 for the server's default", n.replicas)
	}
	if n.port < 0 || n.port > 65535 {
		return fmt.Errorf("-nats-port %d: want 0 to 65535", n.port)
	}
	if n.ackWait < time.Millisecond {
		return fmt.Errorf("-ack-wait %v: want at least 1ms", n.ackWait)
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return errors.New("-nats-tls-cert and -nats-tls-key go together")
	}
	if n.maxAge < 0 {
		return fmt.Errorf("-max-age %v: want a positive duration", n.maxAge)
	}
	return nil
}

// durableChannels chooses the channels of each flow for manifest.Build. js
// is filled in before the app starts.
type durableChannels struct {
	n  *natsFlags
	js natsjs.JetStream
}

func (d *durableChannels) choose(fc manifest.FlowChannels) ([]flows.Option, error) {
	if !d.n.enabled() {
		if fc.ChannelKind == manifest.NatsJetStreamChannelKind {
			return nil, fmt.Errorf("%w: %s needs JetStream: run with -durable DIR (an embedded server) or -nats URL", manifest.ErrNoChannels, fc.ChannelKind)
		}
		return nil, nil
	}
	if fc.ChannelKind == manifest.InMemoryChannelKind && !fc.Default && !d.n.allDurable {
		return nil, nil // as the manifest says; -all-durable moves it
	}
	sc := fc.Stream
	opts := []jetstream.Option{
		jetstream.WithPrefix(d.n.prefix),
		jetstream.WithAckWait(d.n.ackWait),
		jetstream.WithStreamConfig(func(c *natsjs.StreamConfig) { d.streamConfig(c, sc) }),
	}
	ns := fc.Namespace
	return []flows.Option{flows.WithChannels(func(ctx context.Context, name string) (flows.Channel, error) {
		if d.js == nil {
			return nil, errors.New("not connected to NATS")
		}
		// Namespace and channel name: what every process of the same
		// manifests derives, so that they share the streams and consumers.
		// Kubernetes names have no '_', so the two never mix.
		return jetstream.New(ctx, d.js, ns+"_"+name, opts...)
	})}, nil
}

// streamConfig applies the flags, then the template's settings.
func (d *durableChannels) streamConfig(c *natsjs.StreamConfig, t *manifest.NatsStreamConfig) {
	if d.n.replicas > 0 {
		c.Replicas = d.n.replicas
	}
	if d.n.storage == "memory" {
		c.Storage = natsjs.MemoryStorage
	}
	if d.n.maxAge > 0 {
		c.MaxAge = d.n.maxAge
	}
	if t == nil {
		return
	}
	if t.Replicas > 0 {
		c.Replicas = t.Replicas
	}
	switch t.Storage {
	case "File":
		c.Storage = natsjs.FileStorage
	case "Memory":
		c.Storage = natsjs.MemoryStorage
	}
	switch t.Retention {
	case "Limits":
		c.Retention = natsjs.LimitsPolicy
	case "Interest":
		c.Retention = natsjs.InterestPolicy
	case "Work":
		c.Retention = natsjs.WorkQueuePolicy
	}
	switch t.Discard {
	case "Old":
		c.Discard = natsjs.DiscardOld
	case "New":
		c.Discard = natsjs.DiscardNew
	}
	// Checked by manifest.Build.
	if v, err := time.ParseDuration(t.MaxAge); err == nil && v > 0 {
		c.MaxAge = v
	}
	if v, err := time.ParseDuration(t.DuplicateWindow); err == nil && v > 0 {
		c.Duplicates = v
	}
	if t.MaxMsgs > 0 {
		c.MaxMsgs = t.MaxMsgs
	}
	if t.MaxBytes > 0 {
		c.MaxBytes = t.MaxBytes
	}
	if t.MaxMsgSize > 0 {
		c.MaxMsgSize = t.MaxMsgSize
	}
	if t.MaxConsumers > 0 {
		c.MaxConsumers = t.MaxConsumers
	}
}

// natsConn is a connection to JetStream, and the embedded server if any.
type natsConn struct {
	nc  *nats.Conn
	js  natsjs.JetStream
	srv *server.Server
	url string
	// unlock notes who holds the -durable DIR, or releases it with "".
	unlock func(note string)
}

// connect starts the embedded server of -durable, or connects to -nats.
func (n *natsFlags) connect(logger *slog.Logger) (*natsConn, error) {
	c := &natsConn{}
	opts := []nats.Option{nats.Name("flows"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("flows: disconnected from NATS; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("flows: reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	}
	domain := ""
	if n.durable != "" {
		if err := os.MkdirAll(n.durable, 0o700); err != nil {
			return nil, fmt.Errorf("-durable: %w", err)
		}
		release, err := lockDir(n.durable)
		if err != nil {
			return nil, fmt.Errorf("-durable: %w", err)
		}
		c.unlock = release
		srv, err := server.NewServer(&server.Options{
			ServerName: "flows",
			Host:       "127.0.0.1",
			Port:       cmpPort(n.port),
			JetStream:  true,
			StoreDir:   n.durable,
			NoSigs:     true,
			NoLog:      true,
		})
		if err != nil {
			c.close()
			return nil, fmt.Errorf("-durable: starting the NATS server: %w", err)
		}
		srv.Start()
		if !srv.ReadyForConnections(30 * time.Second) {
			srv.Shutdown()
			c.close()
			return nil, fmt.Errorf("-durable: the NATS server on 127.0.0.1:%d did not start (is the port taken? -nats-port 0 picks a free one)", n.port)
		}
		c.srv = srv
		c.url = srv.ClientURL()
		c.unlock(fmt.Sprintf("flows run (pid %d), its NATS server at %s", os.Getpid(), c.url))
		logger.Info("flows: embedded NATS server with JetStream", "url", c.url, "store", n.durable)
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		var err error
		c.url, domain, opts, err = n.clientOptions(opts, logger)
		if err != nil {
			return nil, err
		}
	}
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("connecting to NATS at %s: %w", c.url, err)
	}
	c.nc = nc
	if domain != "" {
		c.js, err = natsjs.NewWithDomain(nc, domain)
	} else {
		c.js, err = natsjs.New(nc)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("JetStream at %s: %w", c.url, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.js.AccountInfo(ctx); err != nil {
		c.close()
		return nil, fmt.Errorf("JetStream at %s: %w (is JetStream enabled on the server, for this account?)", c.url, err)
	}
	return c, nil
}

func cmpPort(p int) int {
	if p == 0 {
		return server.RANDOM_PORT
	}
	return p
}

func (c *natsConn) close() {
	if c.nc != nil {
		c.nc.Close()
	}
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
	if c.unlock != nil {
		c.unlock("")
	}
}

// natsContext is the part of a nats command line context that is used.
type natsContext struct {
	URL      string `json:"url"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	TLSCert  string `json:"tls_cert"`
	TLSKey   string `json:"tls_key"`
	TLSCA    string `json:"tls_ca"`
	Domain   string `json:"jetstream_domain"`
}

// contextPath finds a context by name, as the nats command line does.
func contextPath(name string) (string, error) {
	if strings.ContainsRune(name, os.PathSeparator) || strings.HasSuffix(name, ".json") {
		return name, nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "nats", "context", name+".json"), nil
}

// readContext reads a context file; it warns of the settings it does not use.
func readContext(name string, logger *slog.Logger) (natsContext, error) {
	var ctx natsContext
	path, err := contextPath(name)
	if err != nil {
		return ctx, fmt.Errorf("-nats-context %s: %w", name, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ctx, fmt.Errorf("-nats-context %s: %w", name, err)
	}
	if err := json.Unmarshal(b, &ctx); err != nil {
		return ctx, fmt.Errorf("-nats-context %s: %s: %w", name, path, err)
	}
	var all map[string]any
	json.Unmarshal(b, &all)
	used := map[string]bool{"url": true, "creds": true, "nkey": true, "user": true, "password": true, "token": true,
		"tls_cert": true, "tls_key": true, "tls_ca": true, "jetstream_domain": true, "description": true, "color_scheme": true}
	var ignored []string
	for k, v := range all {
		if !used[k] && v != nil && v != "" && v != false && v != float64(0) {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		logger.Warn("flows: settings of the NATS context not supported, ignored", "context", path, "settings", strings.Join(ignored, ","))
	}
	return ctx, nil
}

// clientOptions returns the URL, JetStream domain and connection options of
// -nats and the flags that go with it.
func (n *natsFlags) clientOptions(opts []nats.Option, logger *slog.Logger) (string, string, []nats.Option, error) {
	var cx natsContext
	if n.context != "" {
		var err error
		if cx, err = readContext(n.context, logger); err != nil {
			return "", "", nil, err
		}
	}
	or := func(flag, ctx string) string {
		if flag != "" {
			return flag
		}
		return ctx
	}
	url := or(n.url, cx.URL)
	if url == "" {
		return "", "", nil, fmt.Errorf("-nats-context %s has no url: give -nats URL", n.context)
	}
	if creds := or(n.creds, cx.Creds); creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	} else if cx.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(cx.NKey)
		if err != nil {
			return "", "", nil, fmt.Errorf("-nats-context %s: nkey: %w", n.context, err)
		}
		opts = append(opts, o)
	}
	if cx.User != "" {
		opts = append(opts, nats.UserInfo(cx.User, cx.Password))
	}
	if cx.Token != "" {
		opts = append(opts, nats.Token(cx.Token))
	}
	cert, key, ca := or(n.tlsCert, cx.TLSCert), or(n.tlsKey, cx.TLSKey), or(n.tlsCA, cx.TLSCA)
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return "", "", nil, errors.New("a TLS client certificate needs its key, and the other way round")
		}
		opts = append(opts, nats.ClientCert(cert, key))
	}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if cert != "" || ca != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return url, cx.Domain, opts, nil
}

// backlog is one subscription's state on the server.
type backlog struct {
	Stream, Subscription    string
	Pending                 uint64 // not yet delivered
	AckPending, Redelivered int    // being delivered; of which delivered more than once
	Delivered, Acknowledged uint64 // deliveries made; deliveries acknowledged (the ack floor)
}

// backlogs reads the consumers of the streams of prefix.
func backlogs(ctx context.Context, js natsjs.JetStream, prefix string) ([]backlog, error) {
	var out []backlog
	names := js.StreamNames(ctx, natsjs.WithStreamListSubject(prefix+".>"))
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return out, fmt.Errorf("stream %s: %w", name, err)
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			sub := strings.TrimPrefix(ci.Config.Description, "flows subscription ")
			if sub == "" {
				sub = ci.Name
			}
			out = append(out, backlog{Stream: name, Subscription: sub, Pending: ci.NumPending,
				AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
				Delivered: ci.Delivered.Consumer, Acknowledged: ci.AckFloor.Consumer})
		}
		if err := cl.Err(); err != nil {
			return out, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if err := names.Err(); err != nil {
		return out, err
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Stream < out[j].Stream || out[i].Stream == out[j].Stream && out[i].Subscription < out[j].Subscription
	})
	return out, nil
}

func writeBacklogs(w io.Writer, bl []backlog) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tSUBSCRIPTION\tPENDING\tACK PENDING\tREDELIVERED\tDELIVERED\tACKNOWLEDGED")
	for _, b := range bl {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", b.Stream, b.Subscription, b.Pending, b.AckPending, b.Redelivered, b.Delivered, b.Acknowledged)
	}
	tw.Flush()
}

// reportLeft logs what the streams still hold when the command stops: it is
// delivered by the next run, or by the other processes of the flows.
func (c *natsConn) reportLeft(prefix string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bl, err := backlogs(ctx, c.js, prefix)
	if err != nil {
		logger.Warn("flows: cannot read what the streams hold", "error", err)
		return
	}
	var total uint64
	for _, b := range bl {
		if left := b.Pending + uint64(b.AckPending); left > 0 {
			total += left
			logger.Info("flows: events left in the stream", "stream", b.Stream, "subscription", b.Subscription, "events", left)
		}
	}
	if total > 0 {
		logger.Warn("flows: undelivered events stay in JetStream, for the next run or the other processes of these flows",
			"events", total, "nats", c.url)
	} else {
		logger.Info("flows: the streams hold nothing undelivered")
	}
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flows status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var n natsFlags
	n.addConnFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flows status -nats URL [flags]\n\n"+
			"Print, per subscription of the flows on JetStream, the events pending, being delivered (ack pending),\n"+
			"redelivered, delivered and acknowledged, as the server counts them. For a -durable run, give the URL\n"+
			"its embedded server logs (nats://127.0.0.1:4222 by default).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if n.url == "" && n.context == "" {
		fmt.Fprintln(stderr, "flows: status needs -nats URL or -nats-context NAME")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	url, domain, opts, err := n.clientOptions([]nats.Option{nats.Name("flows status"), nats.Timeout(5 * time.Second)}, logger)
	if err != nil {
		fmt.Fprintln(stderr, "flows:", err)
		return 1
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "flows: connecting to NATS at %s: %v\n", url, err)
		return 1
	}
	defer nc.Close()
	var js natsjs.JetStream
	if domain != "" {
		js, err = natsjs.NewWithDomain(nc, domain)
	} else {
		js, err = natsjs.New(nc)
	}
	if err != nil {
		fmt.Fprintln(stderr, "flows:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bl, err := backlogs(ctx, js, n.prefix)
	if err != nil {
		fmt.Fprintf(stderr, "flows: reading the streams of %s: %v\n", url, err)
		return 1
	}
	if len(bl) == 0 {
		fmt.Fprintf(stderr, "flows: no subscriptions on streams %s_* at %s\n", n.prefix, url)
		return 0
	}
	writeBacklogs(stdout, bl)
	return 0
}
