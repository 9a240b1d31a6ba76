package cp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	"github.com/fluxforge/fluxforge/cp/timelinestore"
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
	// Core configures the deterministic control plane of a new data dir. On
	// a restart the persisted mode stands (InitialMode only sets the mode of
	// a new data dir; a differing one is logged as a warning), and a config
	// that differs from the persisted one is applied through the log as a
	// core.ConfigInput, recorded as a config.changed timeline event.
	Core core.Config
	// DataDir holds the cp's replicated log and its snapshots (see
	// cp/raftlog): every change to the core is made durable there before it
	// is acknowledged, and a cp started on the same dir again has the same
	// state. Empty: the log lives in memory, as with InMemory.
	DataDir string
	// InMemory runs the same log on in-memory stores: nothing survives the
	// process. Exclusive with DataDir.
	InMemory bool
	// TimelineRetention and TimelineEventsMax bound the timeline kept on
	// disk under DataDir/timeline (see cp/timelinestore), which /timeline
	// pages over beyond the core's in-memory ring: an event goes once it is
	// older than TimelineRetention or more than TimelineEventsMax newer ones
	// are held. Defaults 24h and 1,000,000. Unused in memory.
	TimelineRetention time.Duration
	TimelineEventsMax int
	// timelineSegmentBytes sizes the store's segments (tests make it small).
	timelineSegmentBytes int64
	// TaskIDPrefix, when set, is applied to the core as this start's
	// core.StartInput: task ids submitted from then on begin with it.
	// cmd/cp makes one per start, so a restarted cp's ids never repeat ids
	// agents may still run; as an input it is part of the core's state.
	TaskIDPrefix string

	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// on /admin/*, the queue purge and agent quarantine/release.
	AdminToken string
	// AgentToken, when set, is required on the agent protocol (heartbeats
	// and polls).
	AgentToken string
	// TokensFile names the named tokens (see ParseTokens), re-read by
	// ReloadTokens (SIGHUP). AdminToken and AgentToken are tokens named
	// "admin" and "agent" besides. When it names operators, submit and
	// cancel need a submit token too.
	TokensFile string
	// RequireReadToken closes the read routes (tasks, agents, the
	// snapshot, the timeline, /metrics) to requests without a read token.
	RequireReadToken bool
	// AgentCertRequired: the agent protocol needs a verified client
	// certificate naming the agent (CN or DNS SAN), as with -tls-client-ca.
	AgentCertRequired bool

	// ReconcileInterval is how often the reconcile loop applies core.TickInput.
	ReconcileInterval time.Duration
	// APIBodyBytesMax bounds a request body of the public API.
	APIBodyBytesMax int64
	// DeliveryQueuePerAgentMax bounds the messages held in one agent's
	// mailbox until its polls take them.
	DeliveryQueuePerAgentMax int
	// DeliveryQueueMax bounds messages held over all agents' mailboxes;
	// beyond it a message is dropped and counted (the core's AssignTimeout
	// and the agents' heartbeats recover from a lost message).
	DeliveryQueueMax int

	// Cluster makes this cp one member of a replicated cluster (see
	// cluster.go); the zero value is a single cp.
	Cluster ClusterOptions

	// SnapshotInterval and SnapshotThreshold tune the raft log's
	// snapshots (cp/raftlog; zero: its defaults, 2 minutes and 8,192
	// entries). Every SnapshotInterval (plus up to one interval of
	// jitter) raft snapshots the state if SnapshotThreshold entries came
	// since the last snapshot, and only a snapshot compacts the log: until
	// then every entry stays in the log store, in memory for an in-memory
	// cp. A busy cp with the default interval grows by the interval's
	// entries before its first snapshot (the soak's 1,000 agents: about
	// 150 MiB).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64

	// raft adjusts the log's options (tests inject store faults with it).
	raft func(*raftlog.Options)
}

// Defaults for Options.
const (
	DefaultReconcileInterval = time.Second
	DefaultAPIBodyBytesMax   = 1 << 20
	DefaultDeliveryQueueMax  = 10_000
	DefaultDeliveryPerAgent  = 1024
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
	if o.TimelineRetention == 0 {
		o.TimelineRetention = timelinestore.DefaultRetention
	}
	if o.TimelineEventsMax == 0 {
		o.TimelineEventsMax = timelinestore.DefaultEventsMax
	}
	if o.APIBodyBytesMax == 0 {
		o.APIBodyBytesMax = DefaultAPIBodyBytesMax
	}
	if o.DeliveryQueueMax == 0 {
		o.DeliveryQueueMax = DefaultDeliveryQueueMax
	}
	if o.DeliveryQueuePerAgentMax == 0 {
		o.DeliveryQueuePerAgentMax = min(DefaultDeliveryPerAgent, o.DeliveryQueueMax)
	}
	switch {
	case o.InMemory && o.DataDir != "":
		return fmt.Errorf("cp: in-memory and data dir %q are exclusive: give one (-in-memory or -data-dir)", o.DataDir)
	case o.TimelineRetention < 0:
		return fmt.Errorf("cp: TimelineRetention %v must be > 0", o.TimelineRetention)
	case o.TimelineEventsMax < 0:
		return fmt.Errorf("cp: TimelineEventsMax %d must be >= 1", o.TimelineEventsMax)
	case o.ReconcileInterval < time.Millisecond:
		return fmt.Errorf("cp: ReconcileInterval %v must be >= 1ms", o.ReconcileInterval)
	case o.APIBodyBytesMax < 1024:
		return fmt.Errorf("cp: APIBodyBytesMax %d must be >= 1024", o.APIBodyBytesMax)
	case o.DeliveryQueueMax < 1:
		return fmt.Errorf("cp: DeliveryQueueMax %d must be >= 1", o.DeliveryQueueMax)
	case o.DeliveryQueuePerAgentMax < 1 || o.DeliveryQueuePerAgentMax > o.DeliveryQueueMax:
		return fmt.Errorf("cp: DeliveryQueuePerAgentMax %d must be in [1,DeliveryQueueMax]", o.DeliveryQueuePerAgentMax)
	case o.Cluster.clustered() && o.DataDir == "":
		return errors.New("cp: a cluster member (-raft-addr) needs a data dir: -in-memory is for a single cp")
	}
	if o.Cluster.ForwardTimeout == 0 {
		o.Cluster.ForwardTimeout = 30 * time.Second
	}
	if o.Cluster.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		o.Cluster.HTTPClient = &http.Client{Transport: tr}
	}
	return o.Cluster.validate()
}

// Server is the control-plane daemon. Create it with New, serve Handler, and
// call Run for the background loops.
type Server struct {
	opts  Options
	clock clock.Clock
	log   *slog.Logger

	// fsm is the core as the state machine of the log node: every change
	// goes through propose, reads through fsm.read.
	fsm  *fsm
	node *raftlog.Node
	// notDurable is why the last proposal could not be made durable; nil
	// once one is again. /readyz reports it.
	notDurable atomic.Pointer[string]
	// batch groups the inputs proposed while an entry is in flight into
	// one entry (group commit).
	batch batcher

	mail    *mailboxes // the agents' mailboxes, taken by their polls
	metrics *metrics
	cluster cluster
	// tokens are the tokens in force (swapped whole by ReloadTokens).
	tokens  atomic.Pointer[tokenSet]
	handler http.Handler

	running  atomic.Bool // Run is active: /readyz says ready
	stopping atomic.Bool // shutdown began: /readyz says not ready
}

// New validates opts, opens the log (in opts.DataDir, or in memory) and
// returns a Server whose core is the log's state: on a new data dir a core
// made from opts.Core at the clock's now; on a restart the persisted state,
// config and mode included. Close the Server to release the data dir.
func New(opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	epoch, err := newEpoch()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:  opts,
		clock: opts.Clock,
		log:   opts.Logger,
		mail:  newMailboxes(epoch, opts.DeliveryQueuePerAgentMax, opts.DeliveryQueueMax),
	}
	s.batch.s = s
	s.batch.cond.L = &s.batch.mu
	ts, err := s.loadTokens()
	if err != nil {
		return nil, fmt.Errorf("cp: %w", err)
	}
	s.tokens.Store(ts)
	s.metrics, err = newMetrics(s, opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.fsm = newFSM(opts.Core.FaultPoints, s.metrics)
	if opts.DataDir != "" {
		// Created now, it touches no file before raftlog holds the dir's
		// lock: the entries raftlog replays feed it.
		s.fsm.store = timelinestore.New(timelinestore.Options{Dir: filepath.Join(opts.DataDir, "timeline"),
			Retention: opts.TimelineRetention, EventsMax: opts.TimelineEventsMax, SegmentBytes: opts.timelineSegmentBytes})
		s.fsm.storeWarn = func(err error) {
			s.log.Error("timeline store failed: /timeline serves the in-memory timeline only", "error", err.Error())
		}
	}
	ro := raftlog.Options{Dir: opts.DataDir, InMemory: opts.DataDir == "", Logger: opts.Logger, FSM: s.fsm, NodeID: opts.Cluster.NodeID,
		SnapshotInterval: opts.SnapshotInterval, SnapshotThreshold: opts.SnapshotThreshold}
	if c := opts.Cluster; c.clustered() {
		ro.Cluster = raftlog.ClusterOptions{BindAddr: c.RaftAddr, Advertise: c.RaftAdvertise, Peers: c.Peers,
			Recover: c.Recover, Timing: c.RaftTiming, TLS: c.RaftTLS}
	}
	if opts.raft != nil {
		opts.raft(&ro)
	}
	start := time.Now()
	s.node, err = raftlog.Open(ro)
	if err != nil {
		if s.fsm.store != nil {
			_ = s.fsm.store.Close()
		}
		return nil, fmt.Errorf("cp: %w", err)
	}
	s.metrics.restore.Set(time.Since(start).Seconds())
	if s.node.Clustered() {
		// A member catches up by replication and acts as leader only once
		// elected (runCluster); it checks what it replayed now.
		if err := s.fsm.err(); err != nil {
			_ = s.Close()
			return nil, err
		}
		s.fsm.syncIndex(s.node.AppliedIndex())
	} else if err := s.start(); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.handler = s.clusterHandler(s.routes())
	return s, nil
}

// start takes the replayed state: it checks it, becomes the leader's
// sink, writes the config of a new data dir to the log (or, on a restart,
// the flags' config where it differs) and applies this start's task id
// prefix.
func (s *Server) start() error {
	if err := s.fsm.err(); err != nil {
		return err
	}
	s.fsm.syncIndex(s.node.AppliedIndex())
	// A single node is always the leader once Open returns. In a cluster,
	// only the leader installs the sink (sends the outbox, logs events) and
	// runs the reconcile loop: see establishLeadership.
	s.fsm.setSink(s.leaderSink)
	return s.writeStartEntries(context.Background())
}

// writeStartEntries writes the config of a new log (or the flags' config
// where it differs from the persisted one) and this start's task id
// prefix: what a single cp does at start and a cluster's leader when
// elected.
func (s *Server) writeStartEntries(ctx context.Context) error {
	var persisted *core.Config
	s.fsm.read(func(c *core.ControlPlane) {
		if c != nil {
			cfg := c.Config()
			persisted = &cfg
		}
	})
	if persisted == nil {
		entry, err := encodeInit(s.clock.Now(), s.opts.Core)
		if err != nil {
			return fmt.Errorf("cp: encode the config: %w", err)
		}
		res, _, err := s.node.Propose(ctx, entry)
		if err != nil {
			return fmt.Errorf("cp: write the config to the log: %w", err)
		}
		if a := res.(applied); a.Err != nil {
			return a.Err
		}
	} else if err := s.applyFlagsConfig(ctx, *persisted); err != nil {
		return err
	}
	if s.opts.TaskIDPrefix != "" {
		a, err := s.propose(ctx, core.StartInput{TaskIDPrefix: s.opts.TaskIDPrefix})
		if err == nil {
			err = a.Err
		}
		if err != nil {
			return fmt.Errorf("cp: %w", err)
		}
	}
	return nil
}

// applyFlagsConfig makes the flags' config the replicated config of a
// restarted cp: when it differs from the persisted one, a core.ConfigInput
// goes through the log (a config.changed timeline event names the changes).
// The flags' mode never changes the persisted mode (an operator's READ_ONLY
// survives a restart): a differing one is logged as a warning. A config the
// core refuses leaves the persisted one standing, with a warning.
func (s *Server) applyFlagsConfig(ctx context.Context, persisted core.Config) error {
	var mode core.Mode
	s.fsm.read(func(c *core.ControlPlane) { mode, _, _ = c.Mode() })
	if want := s.opts.Core.InitialMode; want != "" && want != mode {
		s.log.Warn("scheduler mode flag ignored: the persisted mode stands", "flag_mode", string(want),
			"mode", string(mode), "data_dir", s.opts.DataDir)
	}
	diff := core.ConfigDiff(persisted, s.opts.Core)
	if len(diff) == 0 {
		return nil
	}
	a, err := s.propose(ctx, core.ConfigInput{Config: s.opts.Core})
	if err != nil {
		return fmt.Errorf("cp: write the changed config to the log: %w", err)
	}
	if a.Err != nil {
		s.log.Warn("config flags refused: the persisted config stands", "error", a.Err.Error(), "data_dir", s.opts.DataDir)
		return nil
	}
	fields := make([]string, len(diff))
	for i, d := range diff {
		fields[i] = d.Field
	}
	s.log.Info("config changed by the flags", "fields", fields, "data_dir", s.opts.DataDir)
	return nil
}

// leaderSink logs the events of an applied entry and puts its messages into
// the agents' mailboxes, in log order (called under the FSM's lock).
func (s *Server) leaderSink(c *core.ControlPlane, events []core.Event, outbox []core.Outbound) {
	for _, e := range events {
		s.logEvent(c, e)
		s.mailEvents(e)
	}
	for _, m := range outbox {
		s.enqueue(m)
	}
}

// Close stops the log node and releases the data dir. Call it after Run
// has returned; requests still in flight get 503.
func (s *Server) Close() error {
	err := s.node.Close()
	// Proposals still queued fail now that the log is closed: wait for the
	// batcher to hand them their errors, so no goroutine outlives Close.
	s.batch.wg.Wait()
	if s.fsm.store != nil {
		if serr := s.fsm.store.Close(); err == nil {
			err = serr
		}
	}
	return err
}

// propose writes in to the log, stamped with the leader's time (its clock,
// never before the last applied input's), and returns once it is durable
// and applied. The error is the log's (the entry is not acknowledged); the
// core's own answer is in the result.
func (s *Server) propose(ctx context.Context, in core.Input) (applied, error) {
	res, err := s.proposeAll(ctx, []core.Input{in})
	if err != nil {
		return applied{}, err
	}
	return res[0], nil
}

// proposeAll is propose for inputs that go to the log as one group: in
// one entry, in order, with no other input between them (a batch submit).
func (s *Server) proposeAll(ctx context.Context, ins []core.Input) ([]applied, error) {
	res, err := s.batch.proposeAll(ctx, ins)
	if err != nil {
		if errors.Is(err, raftlog.ErrNotDurable) {
			msg := err.Error()
			s.notDurable.Store(&msg)
			s.log.Error("log write failed: not acknowledged", "error", msg)
		}
		return nil, err
	}
	s.notDurable.Store(nil)
	return res, nil
}

// Mode is the scheduler's current mode (the persisted one after a restart).
func (s *Server) Mode() core.Mode {
	var m core.Mode
	s.read(func(c *core.ControlPlane) {
		if c != nil {
			m, _, _ = c.Mode()
		}
	})
	return m
}

// read runs fn on the applied state (never through the log).
func (s *Server) read(fn func(c *core.ControlPlane)) { s.fsm.read(fn) }

// Handler is the HTTP API, the agent protocol and /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Run starts the reconcile loop and blocks until ctx is done; then it
// answers the agents' held polls and returns. Messages still in the
// mailboxes are not sent: the core's timeouts and the agents' heartbeats
// recover from that.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("cp: Run called twice")
	}
	defer s.running.Store(false)
	if !s.stopping.Load() {
		s.mail.restart()
	}
	if s.node.Clustered() {
		clusterDone := make(chan struct{})
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			defer close(clusterDone)
			s.runCluster(cctx)
		}()
		defer func() {
			cancel()
			<-clusterDone
		}()
	}
	ticker := s.clock.Ticker(s.opts.ReconcileInterval)
	defer ticker.Stop()
	var queueCap int
	s.read(func(c *core.ControlPlane) {
		if c != nil {
			queueCap = c.Config().QueueCapacity
		}
	})
	s.log.Info("control plane running", "reconcile_interval", s.opts.ReconcileInterval.String(),
		"queue_capacity", queueCap, "mode", string(s.Mode()), "applied_index", s.node.AppliedIndex(),
		"node_id", s.opts.Cluster.nodeID(), "role", string(s.node.Role()))
	for {
		select {
		case <-ctx.Done():
			s.mail.stop()
			s.log.Info("control plane stopped")
			return nil
		case <-ticker.C:
			s.Reconcile()
		}
	}
}

// BeginShutdown makes /readyz report not ready, so load balancers stop
// sending traffic while in-flight requests finish, and answers the agents'
// held polls (empty) so they do not hold up the server's shutdown.
func (s *Server) BeginShutdown() {
	s.stopping.Store(true)
	s.mail.stop()
}

// Reconcile runs one reconcile pass now (the loop calls it every
// ReconcileInterval) through the log and records its wall-clock duration.
func (s *Server) Reconcile() {
	if !s.node.IsLeader() || s.node.Clustered() && !s.cluster.leading.Load() {
		return
	}
	start := time.Now()
	if _, err := s.propose(context.Background(), core.TickInput{}); err != nil {
		s.log.Warn("reconcile not applied", "error", err.Error())
	}
	s.metrics.reconcile.Observe(time.Since(start).Seconds())
}
