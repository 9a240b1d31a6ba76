package cp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Options configure a Server. The zero value of every field but Core has a
// production default; Core is usually core.DefaultConfig() with overrides.
type Options struct {
	// Clock drives the reconcile loop and stamps every core input:
	// clock.New() in the daemon, clock.NewMock() in tests.
	Clock clock.Clock
	// Logger receives timeline events and daemon messages; discard by default.
	Logger *slog.Logger
	// Registerer and Gatherer hold the metrics; a fresh registry (serving
	// both) by default. When only Registerer is set and it is also a
	// Gatherer (a *prometheus.Registry), /metrics serves it.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Core configures the deterministic control plane.
	Core core.Config
	// TaskIDPrefix, when set, is applied to the core as this start's
	// core.StartInput: task ids submitted from then on begin with it.
	// cmd/cp makes one per start, so a restarted cp's ids never repeat ids
	// agents may still run; as an input it is part of the core's state.
	TaskIDPrefix string

	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on /admin/*, the queue purge and agent quarantine/release.
	AdminToken string
	// AgentToken, when set, is required on the agent protocol and sent to
	// agents on every assignment and cancel.
	AgentToken string

	// ReconcileInterval is how often the reconcile loop applies core.TickInput.
	ReconcileInterval time.Duration
	// APIBodyBytesMax bounds a request body of the public API.
	APIBodyBytesMax int64
	// DeliveryWorkers bounds the concurrent sends to agents (each agent's
	// messages go one at a time, in order).
	DeliveryWorkers int
	// DeliveryQueuePerAgentMax bounds the messages waiting for one agent.
	DeliveryQueuePerAgentMax int
	// DeliveryQueueMax bounds messages waiting over all agents; beyond it a
	// message is dropped and counted (the core's AssignTimeout and the
	// agents' heartbeats recover from a lost message).
	DeliveryQueueMax int
	// DeliveryTimeout bounds one send to an agent.
	DeliveryTimeout time.Duration
	// HTTPClient sends to agents; a keep-alive client by default.
	HTTPClient *http.Client
}

// Defaults for Options.
const (
	DefaultReconcileInterval = time.Second
	DefaultAPIBodyBytesMax   = 1 << 20
	DefaultDeliveryWorkers   = 32
	DefaultDeliveryQueueMax  = 10_000
	DefaultDeliveryPerAgent  = 1024
	DefaultDeliveryTimeout   = 5 * time.Second
)

func (o *Options) setDefaults() error {
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Registerer == nil && o.Gatherer == nil {
		reg := prometheus.NewRegistry()
		o.Registerer, o.Gatherer = reg, reg
	}
	if o.Gatherer == nil {
		g, ok := o.Registerer.(prometheus.Gatherer)
		if !ok {
			return errors.New("cp: Options.Gatherer is required when Registerer is not a Gatherer")
		}
		o.Gatherer = g
	}
	if o.Registerer == nil {
		return errors.New("cp: Options.Registerer is required when Gatherer is set")
	}
	if o.ReconcileInterval == 0 {
		o.ReconcileInterval = DefaultReconcileInterval
	}
	if o.APIBodyBytesMax == 0 {
		o.APIBodyBytesMax = DefaultAPIBodyBytesMax
	}
	if o.DeliveryWorkers == 0 {
		o.DeliveryWorkers = DefaultDeliveryWorkers
	}
	if o.DeliveryQueueMax == 0 {
		o.DeliveryQueueMax = DefaultDeliveryQueueMax
	}
	if o.DeliveryQueuePerAgentMax == 0 {
		o.DeliveryQueuePerAgentMax = min(DefaultDeliveryPerAgent, o.DeliveryQueueMax)
	}
	if o.DeliveryTimeout == 0 {
		o.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if o.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 1024
		tr.MaxIdleConnsPerHost = 16
		tr.IdleConnTimeout = 90 * time.Second
		o.HTTPClient = &http.Client{Transport: tr}
	}
	switch {
	case o.ReconcileInterval < time.Millisecond:
		return fmt.Errorf("cp: ReconcileInterval %v must be >= 1ms", o.ReconcileInterval)
	case o.APIBodyBytesMax < 1024:
		return fmt.Errorf("cp: APIBodyBytesMax %d must be >= 1024", o.APIBodyBytesMax)
	case o.DeliveryWorkers < 1 || o.DeliveryWorkers > 4096:
		return fmt.Errorf("cp: DeliveryWorkers %d must be in [1,4096]", o.DeliveryWorkers)
	case o.DeliveryQueueMax < 1:
		return fmt.Errorf("cp: DeliveryQueueMax %d must be >= 1", o.DeliveryQueueMax)
	case o.DeliveryQueuePerAgentMax < 1 || o.DeliveryQueuePerAgentMax > o.DeliveryQueueMax:
		return fmt.Errorf("cp: DeliveryQueuePerAgentMax %d must be in [1,DeliveryQueueMax]", o.DeliveryQueuePerAgentMax)
	case o.DeliveryTimeout <= 0:
		return fmt.Errorf("cp: DeliveryTimeout %v must be > 0", o.DeliveryTimeout)
	}
	return nil
}

// Server is the control-plane daemon. Create it with New, serve Handler, and
// call Run for the background loops.
type Server struct {
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	client *fnet.HTTPClient

	// mu serializes every use of core, which is not safe for concurrent use.
	mu      sync.Mutex
	core    *core.ControlPlane
	pending []core.Event // events recorded during the current core call

	delivery *deliveryQueues
	metrics  *metrics
	handler  http.Handler

	running  atomic.Bool // Run is active: /readyz says ready
	stopping atomic.Bool // shutdown began: /readyz says not ready
}

// New validates opts and returns a Server whose core starts at the clock's
// current time in core's InitialMode.
func New(opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	c, err := core.NewControlPlane(opts.Core, opts.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("cp: %w", err)
	}
	if opts.TaskIDPrefix != "" {
		if _, err := c.Apply(opts.Clock.Now(), core.StartInput{TaskIDPrefix: opts.TaskIDPrefix}); err != nil {
			return nil, fmt.Errorf("cp: %w", err)
		}
	}
	s := &Server{
		opts:     opts,
		clock:    opts.Clock,
		log:      opts.Logger,
		client:   &fnet.HTTPClient{HTTP: opts.HTTPClient, Token: opts.AgentToken},
		core:     c,
		delivery: newDeliveryQueues(opts.DeliveryWorkers),
	}
	c.OnEvent(func(e core.Event) { s.pending = append(s.pending, e) })
	s.metrics, err = newMetrics(s, opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.handler = s.routes()
	s.mu.Lock()
	s.pending = append(s.pending, c.Timeline().Since(0, 0)...) // the initial mode, recorded before OnEvent
	s.flushLocked()
	s.mu.Unlock()
	return s, nil
}

// Handler is the HTTP API, the agent protocol and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Run starts the reconcile loop and the delivery of messages to agents and
// blocks until ctx is done; then it stops them and returns once every
// goroutine it started has exited. Messages still waiting are not sent: the
// core's timeouts and the agents' heartbeats recover from that.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("cp: Run called twice")
	}
	defer s.running.Store(false)
	s.startDelivery(ctx)
	ticker := s.clock.Ticker(s.opts.ReconcileInterval)
	defer ticker.Stop()
	s.log.Info("control plane running", "reconcile_interval", s.opts.ReconcileInterval.String(),
		"queue_capacity", s.opts.Core.QueueCapacity, "mode", string(s.opts.Core.InitialMode))
	for {
		select {
		case <-ctx.Done():
			s.stopDelivery()
			s.opts.HTTPClient.CloseIdleConnections()
			s.log.Info("control plane stopped")
			return nil
		case <-ticker.C:
			s.Reconcile()
		}
	}
}

// BeginShutdown makes /readyz report not ready, so load balancers stop
// sending traffic while in-flight requests finish.
func (s *Server) BeginShutdown() { s.stopping.Store(true) }

// Reconcile runs one reconcile pass now (the loop calls it every
// ReconcileInterval) and records its wall-clock duration.
func (s *Server) Reconcile() {
	start := time.Now()
	s.withCore(func(c *core.ControlPlane, now time.Time) { _, _ = c.Apply(now, core.TickInput{}) })
	s.metrics.reconcile.Observe(time.Since(start).Seconds())
}

// withCore runs fn with exclusive access to the core at the clock's now,
// logs the events it recorded, and hands the messages it produced to the
// delivery workers.
func (s *Server) withCore(fn func(c *core.ControlPlane, now time.Time)) {
	s.mu.Lock()
	fn(s.core, s.clock.Now())
	out := s.core.TakeOutbox()
	s.flushLocked()
	s.mu.Unlock()
	for _, m := range out {
		s.enqueue(m)
	}
}

// flushLocked logs the events recorded by the last core call, in order.
func (s *Server) flushLocked() {
	for _, e := range s.pending {
		s.logEvent(e)
	}
	clear(s.pending)
	s.pending = s.pending[:0]
}
