package flows

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
)

// PingEventType is the type of the events a [Ping] sends.
const PingEventType = "dev.knative.sources.ping"

// Ping is a source that sends an event to Sink on a cron schedule, as
// Knative's PingSource does.
//
// Each tick sends a new event: id a fresh UUID, type [PingEventType], source
// "/apis/v1/namespaces/<Namespace>/pingsources/<Name>", time the moment it
// is sent, the data given, datacontenttype ContentType when there is data,
// and Extensions as extensions. Ticks that overlap run concurrently. Unlike
// Knative, ticks are not delayed by a random jitter of up to 500 ms: that
// spreads the load of many tenants in a cluster, which a process has not.
//
// The schedule uses the local time zone unless Timezone is set, so tests
// can drive it with testing/synctest's fake clock.
type Ping struct {
	// Name and Namespace make up the events' source. The defaults are
	// "ping" and "default".
	Name      string
	Namespace string

	// Schedule is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), optionally a leading seconds field, or a
	// descriptor such as "@hourly". "@every" is rejected, as Knative does.
	// The default is "* * * * *", every minute.
	Schedule string

	// Timezone is an IANA time zone name, such as "Europe/Paris", in which
	// the schedule is read. Empty means the local time zone.
	Timezone string

	// ContentType is the events' datacontenttype. If it is
	// "application/json", the data must be a JSON object.
	ContentType string

	// Data is the events' data. At most one of Data and DataBase64 is set.
	Data string

	// DataBase64 is the events' data, base64-encoded, for binary data.
	DataBase64 string

	// Extensions are added to every event (Knative's ceOverrides). Names
	// are lower-case letters and digits.
	Extensions map[string]string

	// Sink receives the events. Required.
	Sink Handler

	// Delivery governs each send. Nil uses what Knative's ping adapter
	// does: up to 5 retries, 100 ms doubling to 1.6 s, and no dead-letter
	// sink (the event is then dropped and logged). Which failures are
	// retried is [Delivery]'s rule, the same for every hop: the adapter's
	// SDK client differs slightly (it retries 413 and 425, not 500).
	Delivery *Delivery
}

var defaultPingDelivery = &Delivery{Retry: 5, BackoffPolicy: BackoffExponential, BackoffDelay: 100 * time.Millisecond}

var (
	pingParser        = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	extensionNameRule = regexp.MustCompile(`^[a-z0-9]+$`)
	reservedNames     = map[string]bool{"specversion": true, "id": true, "source": true, "type": true, "subject": true,
		"time": true, "dataschema": true, "datacontenttype": true, "data": true, "data_base64": true}
)

func (p *Ping) names() (name, namespace string) {
	name, namespace = p.Name, p.Namespace
	if name == "" {
		name = "ping"
	}
	if namespace == "" {
		namespace = "default"
	}
	return name, namespace
}

func (p *Ping) schedule() string {
	if p.Schedule == "" {
		return "* * * * *"
	}
	return p.Schedule
}

// parse checks the definition and returns its schedule and data.
func (p *Ping) parse() (cron.Schedule, []byte, error) {
	name, _ := p.names()
	pr := &problems{flow: "ping " + strconv.Quote(name)}
	spec := strings.TrimSpace(p.schedule())
	var sched cron.Schedule
	if strings.HasPrefix(spec, "@every") {
		pr.add("schedule", "%q: @every is not supported, use a cron expression", spec)
	} else {
		if p.Timezone != "" {
			if _, err := time.LoadLocation(p.Timezone); err != nil {
				pr.add("timezone", "%q: %v", p.Timezone, err)
			} else {
				spec = "CRON_TZ=" + p.Timezone + " " + spec
			}
		}
		s, err := pingParser.Parse(spec)
		if err != nil {
			pr.add("schedule", "%q: %v", p.schedule(), err)
		}
		sched = s
	}

	var data []byte
	switch {
	case p.Data != "" && p.DataBase64 != "":
		pr.add("data", "data and dataBase64 are mutually exclusive")
	case p.DataBase64 != "":
		d, err := base64.StdEncoding.DecodeString(p.DataBase64)
		if err != nil {
			pr.add("dataBase64", "not valid base64: %v", err)
		}
		data = d
	case p.Data != "":
		data = []byte(p.Data)
	}
	if ct, _, _ := strings.Cut(p.ContentType, ";"); strings.TrimSpace(ct) == event.ApplicationJSON && len(data) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			field := "data"
			if p.DataBase64 != "" {
				field = "dataBase64"
			}
			pr.add(field, "contentType is application/json but the data is not a JSON object: %v", err)
		}
	}
	for k := range p.Extensions {
		if !extensionNameRule.MatchString(k) || reservedNames[k] {
			pr.add("extensions["+strconv.Quote(k)+"]", "an extension name must be lower-case letters and digits, and not a CloudEvents attribute")
		}
	}
	if p.Sink == nil {
		pr.add("sink", "missing: a ping source needs a sink")
	}
	p.Delivery.validate(pr, "delivery")
	for _, h := range p.handlers() {
		validateHandler(pr, h.path, h.h)
	}
	return sched, data, pr.err()
}

func (p *Ping) handlers() []pathHandler {
	return p.Delivery.appendHandlers([]pathHandler{{"sink", p.Sink}}, "delivery")
}

// Validate reports every problem of the definition at once, as
// [*DefinitionError] values joined with [errors.Join], or nil.
func (p *Ping) Validate() error {
	_, _, err := p.parse()
	return err
}

// Event returns the event the source would send at time t.
func (p *Ping) Event(t time.Time) (event.Event, error) {
	_, data, err := p.parse()
	if err != nil {
		return event.Event{}, err
	}
	return p.newEvent(data, t), nil
}

func (p *Ping) newEvent(data []byte, t time.Time) event.Event {
	name, ns := p.names()
	e := event.New()
	e.SetID(uuid.NewString())
	e.SetType(PingEventType)
	e.SetSource("/apis/v1/namespaces/" + ns + "/pingsources/" + name)
	e.SetTime(t)
	if len(data) > 0 {
		if p.ContentType != "" {
			e.SetDataContentType(p.ContentType)
		}
		e.DataEncoded = data
	}
	for k, v := range p.Extensions {
		e.SetExtension(k, v)
	}
	return e
}

// A Source is a running [Ping]. Stop it with Shutdown or Close.
type Source struct {
	p        *Ping
	sched    cron.Schedule
	data     []byte
	delivery *Delivery
	dest     string
	log      *slog.Logger
	obs      *Observer

	cancelLoop  context.CancelFunc // stops scheduling
	cancelTicks context.CancelFunc // cancels running sends
	ticks       sync.WaitGroup
	stopOnce    sync.Once
	stopped     chan struct{}
}

// Start validates the source and starts its schedule. It returns at once;
// the first event is sent at the first time the schedule matches.
func (p *Ping) Start(ctx context.Context, opts ...Option) (*Source, error) {
	sched, data, err := p.parse()
	if err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	name, _ := p.names()
	if err := o.checkDestinations("ping "+strconv.Quote(name), p.handlers()); err != nil {
		return nil, err
	}
	// The source keeps its own copy: the definition may be changed and
	// started again.
	cp := *p
	cp.Extensions = maps.Clone(p.Extensions)
	s := &Source{
		p:        &cp,
		sched:    sched,
		data:     data,
		delivery: cp.Delivery.clone(),
		dest:     destination(cp.Sink, "ping/"+name+"/sink"),
		log:      o.logger,
		obs:      o.observer,
		stopped:  make(chan struct{}),
	}
	if s.delivery == nil {
		s.delivery = defaultPingDelivery
	}
	loopCtx, cancelLoop := context.WithCancel(context.Background())
	tickCtx, cancelTicks := context.WithCancel(withObserver(context.Background(), s.obs))
	s.cancelLoop, s.cancelTicks = cancelLoop, cancelTicks
	go s.loop(loopCtx, tickCtx)
	return s, nil
}

// Run starts the source and stops it when ctx ends, waiting for the sends
// in progress within the shutdown timeout (see [WithShutdownTimeout]).
func (p *Ping) Run(ctx context.Context, opts ...Option) error {
	s, err := p.Start(ctx, opts...)
	if err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), buildOptions(opts).shutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

func (s *Source) loop(loopCtx, tickCtx context.Context) {
	defer func() {
		s.ticks.Wait()
		close(s.stopped)
	}()
	for {
		now := time.Now()
		next := s.sched.Next(now)
		if next.IsZero() {
			// The schedule never matches (say, February 30th).
			<-loopCtx.Done()
			return
		}
		t := time.NewTimer(next.Sub(now))
		select {
		case <-loopCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.ticks.Add(1)
		go s.tick(tickCtx)
	}
}

func (s *Source) tick(ctx context.Context) {
	defer s.ticks.Done()
	e := s.p.newEvent(s.data, time.Now())
	o := s.obs.active(ctx)
	if o == nil || o.Tick == nil {
		s.send(ctx, &e, o)
		return
	}
	name, _ := s.p.names()
	t := &TickInfo{Source: name, Event: &e}
	ctx, done := o.Tick(ctx, t)
	t.Outcome, t.Attempts, t.Err = s.send(ctx, &e, o)
	if done != nil {
		done()
	}
}

// send delivers the event of a tick to the sink, or else to the dead-letter
// sink; o, if not nil, observes the calls.
func (s *Source) send(ctx context.Context, e *event.Event, o *Observer) (Outcome, int, error) {
	attempts, err := deliver(ctx, hopTarget(s.p.Sink), e, s.delivery, s.observe(o, RoleSink))
	if err == nil {
		return OutcomeDelivered, attempts, nil
	}
	if ctx.Err() == nil && s.delivery.DeadLetter != nil {
		dl := deadLetterEvent(e, s.dest, err)
		if _, dlErr := deliver(ctx, hopTarget(s.delivery.DeadLetter), &dl, s.delivery, s.observe(o, RoleDeadLetter)); dlErr == nil {
			return OutcomeDeadLettered, attempts, err
		} else {
			err = errors.Join(err, fmt.Errorf("dead-letter sink failed: %w", dlErr))
		}
	}
	s.log.LogAttrs(ctx, slog.LevelError, "flows: ping event not delivered",
		slog.String("id", e.ID()), slog.String("destination", s.dest), slog.Int("attempts", attempts), slog.Any("error", err))
	if ctx.Err() != nil {
		return OutcomeStopped, attempts, err
	}
	return OutcomeFailed, attempts, err
}

func (s *Source) observe(o *Observer, role Role) *hop {
	if o == nil {
		return nil
	}
	name, _ := s.p.names()
	dest := s.dest
	if role == RoleDeadLetter {
		dest = destination(s.delivery.DeadLetter, "ping/"+name+"/deadLetter")
	}
	return &hop{o: o, a: AttemptInfo{Flow: name, Step: "sink", Role: role, Destination: dest}}
}

// Shutdown stops the schedule and waits for the sends in progress (with
// their retries) to finish. If ctx ends first it cancels them, waits for
// them to return, and returns ctx.Err().
func (s *Source) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(s.cancelLoop)
	select {
	case <-s.stopped:
		s.cancelTicks()
		return nil
	case <-ctx.Done():
		s.cancelTicks()
		<-s.stopped
		return ctx.Err()
	}
}

// Close stops the schedule, cancels the sends in progress and waits for
// them to return.
func (s *Source) Close() error {
	s.stopOnce.Do(s.cancelLoop)
	s.cancelTicks()
	<-s.stopped
	return nil
}

// Done returns a channel that is closed once the source has stopped.
func (s *Source) Done() <-chan struct{} { return s.stopped }
