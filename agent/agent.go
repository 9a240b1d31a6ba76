package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Defaults for Options fields left zero.
const (
	HeartbeatIntervalDefault = 5 * time.Second
	ShutdownGraceDefault     = 30 * time.Second
	ResultsMaxDefault        = 1024
	TickMaxDefault           = 100 * time.Millisecond
	ResultsLogMaxDefault     = 10_000
	PollWaitDefault          = 25 * time.Second
	// pollBackoffMin is the first pause after a failed poll; it doubles up
	// to the heartbeat interval.
	pollBackoffMin = 100 * time.Millisecond
	// pollSlack bounds a poll's round trip beyond the wait it asks for.
	pollSlack = 10 * time.Second
)

// Options configure a Daemon. ID, Domain, Slots and CPURL are required;
// every other field has a default.
type Options struct {
	ID     core.AgentID
	Domain string
	Slots  int
	// CPURL is the base URL of the control plane, e.g.
	// http://127.0.0.1:8080, or of every cp of a cluster, comma-separated:
	// the agent talks to the leader, learning where it is from the
	// followers' answers, and moves to the next cp when one is unreachable
	// (net.CPTargets).
	CPURL string
	// Token is the shared agent token: presented on heartbeats and polls,
	// and required on the agent's own /v1/status. Empty disables both (with
	// a warning at start).
	Token string
	// CPHTTP1 makes the agent talk HTTP/1.1 to the cp (two connections: the
	// long poll and the heartbeats) instead of HTTP/2 over one. The agent
	// command sets it by default (-cp-http1): HTTP/1.1 costs the cp about a
	// tenth less CPU and the agent a fifth less per message; HTTP/2 halves
	// the cp's connections.
	CPHTTP1 bool
	// PollWait is how long the cp may hold a poll when nothing waits for
	// the agent (PollWaitDefault; at most net.PollWaitMax).
	PollWait time.Duration
	// HeartbeatInterval between heartbeats; results go out at once. Zero:
	// the agent heartbeats at the interval the cp names in its replies (the
	// cp is the source of truth), HeartbeatIntervalDefault until told.
	HeartbeatInterval time.Duration
	// AllowExec lets the agent run kind exec.
	AllowExec bool
	// ResultsMax bounds finished results awaiting the cp's acknowledgement.
	ResultsMax int
	// ShutdownGrace is how long running attempts may go on after a stop
	// request before they are cancelled.
	ShutdownGrace time.Duration
	// DrainTimeout bounds how long a stopping agent, after the grace, keeps
	// trying to get its last results acknowledged. Default: three heartbeat
	// intervals, at least 5s.
	DrainTimeout time.Duration
	// TickMax is the longest the loop sleeps between ticks.
	TickMax time.Duration
	// Incarnation identifies this start of the process; when 0, the start
	// time in Unix nanoseconds (incarnations grow across restarts, see
	// core.AgentConfig.Incarnation).
	Incarnation uint64
	// ResultsLogMax bounds the log of reported results kept for /v1/status.
	ResultsLogMax int
	// ExecPath is the PATH exec tasks see (DefaultExecPath when empty);
	// ExecDir their working directory; OutputTailBytes their kept output.
	ExecPath        string
	ExecDir         string
	OutputTailBytes int

	Clock  clock.Clock  // clock.New() when nil
	Logger *slog.Logger // discards when nil
	// Registerer receives the agent's metrics and Gatherer serves them on
	// /metrics. When both are nil the agent uses a registry of its own with
	// the Go and process collectors.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// HTTPClient carries heartbeats and polls; net.NewCPClient(CPURL,
	// CPHTTP1) when nil.
	HTTPClient *http.Client
}

// setDefaults fills zero fields; it reports whether the heartbeat interval
// is the cp's to set (none was given).
func (o *Options) setDefaults() (intervalFromCP bool, err error) {
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = HeartbeatIntervalDefault
		intervalFromCP = true
	}
	if o.ResultsMax == 0 {
		o.ResultsMax = ResultsMaxDefault
	}
	if o.ShutdownGrace == 0 {
		o.ShutdownGrace = ShutdownGraceDefault
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = max(3*o.HeartbeatInterval, 5*time.Second)
	}
	if o.TickMax == 0 {
		o.TickMax = TickMaxDefault
	}
	if o.ResultsLogMax == 0 {
		o.ResultsLogMax = ResultsLogMaxDefault
	}
	if o.PollWait == 0 {
		o.PollWait = PollWaitDefault
	}
	if o.Clock == nil {
		o.Clock = clock.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Incarnation == 0 {
		o.Incarnation = nextIncarnation(time.Now())
	}
	switch {
	case o.HeartbeatInterval < time.Millisecond:
		return false, fmt.Errorf("agent: heartbeat interval %v is below 1ms", o.HeartbeatInterval)
	case o.ShutdownGrace < 0 || o.DrainTimeout < 0:
		return false, errors.New("agent: shutdown grace and drain timeout must be >= 0")
	case o.TickMax < time.Millisecond:
		return false, fmt.Errorf("agent: tick max %v is below 1ms", o.TickMax)
	case o.ResultsLogMax < 1 || o.OutputTailBytes < 0:
		return false, errors.New("agent: ResultsLogMax must be >= 1 and OutputTailBytes >= 0")
	case o.PollWait < time.Millisecond || o.PollWait > fnet.PollWaitMax*time.Millisecond:
		return false, fmt.Errorf("agent: poll wait %v must be in [1ms,%v]", o.PollWait, fnet.PollWaitMax*time.Millisecond)
	}
	for _, u := range cpURLs(o.CPURL) {
		if err := checkURL("cp URL", u); err != nil {
			return false, err
		}
	}
	return intervalFromCP, nil
}

// cpURLs splits a comma-separated -cp list (at least one entry: an empty
// list is one empty URL, which checkURL refuses).
func cpURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

func checkURL(what, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("agent: %s %q must be an http(s) URL with a host", what, s)
	}
	return nil
}

// ResultRecord is one result the agent reported to the cp.
type ResultRecord struct {
	TaskID     core.TaskID  `json:"task_id"`
	Attempt    int          `json:"attempt"`
	Outcome    core.Outcome `json:"outcome"`
	ExitCode   int          `json:"exit_code"`
	Error      string       `json:"error,omitempty"`
	DurationMS int64        `json:"duration_ms"`
	ReportedAt time.Time    `json:"reported_at"`
}

// Daemon is the agent daemon. See the package doc.
type Daemon struct {
	opts  Options
	clock clock.Clock
	log   *slog.Logger
	cp    *fnet.HTTPClient
	sleep *SleepExecutor
	exec  *ExecExecutor

	mu          sync.Mutex
	core        *core.Agent
	connected   bool // the last heartbeat got a reply
	registered  bool // some heartbeat got a reply since start
	lastErr     string
	stopping    bool                // Run began the shutdown
	reported    map[core.Lease]bool // pending results already logged
	resultsLog  []ResultRecord      // ring of ResultsLogMax, oldest at resultsOff
	resultsOff  int
	heartbeatWG sync.WaitGroup

	hbBusy bool                 // a heartbeat is in flight (guarded by mu)
	hbNext *core.HeartbeatInput // built while one was in flight; sent next (guarded by mu)

	pollFailing bool // the last poll failed (poll loop only)

	kick chan struct{} // wakes the loop early

	metrics  *metrics
	gatherer prometheus.Gatherer
}

// New validates opts and returns a daemon ready to Run and serve Handler.
func New(opts Options) (*Daemon, error) {
	intervalFromCP, err := opts.setDefaults()
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		opts: opts, clock: opts.Clock,
		log:      opts.Logger.With("agent_id", string(opts.ID), "domain", opts.Domain),
		reported: map[core.Lease]bool{},
		kick:     make(chan struct{}, 1),
	}
	urls := cpURLs(opts.CPURL)
	d.cp = &fnet.HTTPClient{HTTP: opts.HTTPClient, Token: opts.Token, CPURL: urls[0], CPs: fnet.NewCPTargets(urls)}
	if d.cp.HTTP == nil {
		d.cp.HTTP = fnet.NewCPClient(urls[0], opts.CPHTTP1)
	}
	d.sleep = NewSleepExecutor(opts.Clock, d.finished)
	execs := &Executors{Sleep: d.sleep}
	if opts.AllowExec {
		d.exec = NewExecExecutor(d.finished)
		d.exec.Path, d.exec.Dir, d.exec.OutputTailBytes = opts.ExecPath, opts.ExecDir, opts.OutputTailBytes
		execs.Exec = d.exec
	}
	ag, err := core.NewAgent(core.AgentConfig{
		ID: opts.ID, Domain: opts.Domain, Slots: opts.Slots, AllowExec: opts.AllowExec,
		HeartbeatInterval: opts.HeartbeatInterval, HeartbeatIntervalFromCP: intervalFromCP,
		ResultsMax: opts.ResultsMax, Incarnation: opts.Incarnation,
	}, execs)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	d.core = ag

	reg, gat := opts.Registerer, opts.Gatherer
	if reg == nil && gat == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, gat = r, r
	}
	if gat == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("agent: Options.Gatherer is required with a Registerer that is not a Gatherer")
		}
		gat = g
	}
	if reg == nil {
		return nil, errors.New("agent: Options.Registerer is required with a Gatherer")
	}
	d.gatherer = gat
	d.metrics = newMetrics(d)
	if err := d.metrics.register(reg); err != nil {
		return nil, fmt.Errorf("agent: metrics: %w", err)
	}
	return d, nil
}

// ID is the agent's id.
func (d *Daemon) ID() core.AgentID { return d.opts.ID }

// lastIncarnation is the last incarnation nextIncarnation gave, so daemons
// started in one process (tests) never share one.
var lastIncarnation atomic.Uint64

// nextIncarnation is the incarnation of a daemon started at now: its Unix
// nanoseconds (the wall clock, not Options.Clock: it orders real starts of
// a host's processes), above any given before in this process.
func nextIncarnation(now time.Time) uint64 {
	inc := uint64(max(now.UnixNano(), 1))
	for {
		last := lastIncarnation.Load()
		if inc <= last {
			inc = last + 1
		}
		if lastIncarnation.CompareAndSwap(last, inc) {
			return inc
		}
	}
}

// Incarnation is this start's incarnation.
func (d *Daemon) Incarnation() uint64 { return d.opts.Incarnation }

// finished is the executors' report.
func (d *Daemon) finished(r core.Result) {
	now := d.clock.Now()
	d.mu.Lock()
	d.core.Finished(now, r)
	d.mu.Unlock()
	d.wake()
}

func (d *Daemon) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run drives the agent until ctx ends, then shuts it down gracefully (see
// the package doc) and returns once it is drained or gave up.
func (d *Daemon) Run(ctx context.Context) error {
	if d.opts.Token == "" {
		d.log.Warn("no agent token configured: the cp cannot tell this agent from an impostor and /v1/status is open; set -agent-token")
	}
	d.log.Info("agent started", "cp", d.opts.CPURL, "slots", d.opts.Slots,
		"allow_exec", d.opts.AllowExec, "incarnation", d.opts.Incarnation, "cp_http1", d.opts.CPHTTP1)
	// The poll loop runs until the drain is over: a stopping agent still
	// takes the cp's cancels (and declines its assignments).
	pollCtx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		d.pollLoop(pollCtx)
	}()
	defer func() {
		stopPoll()
		<-pollDone
		d.cp.HTTP.CloseIdleConnections()
	}()
	d.loop(ctx, func(time.Time) bool { return false })

	now := d.clock.Now()
	d.mu.Lock()
	d.core.Stop(now)
	d.stopping = true
	running := len(d.core.Running())
	d.mu.Unlock()
	d.log.Info("agent stopping: no new work", "running", running, "grace", d.opts.ShutdownGrace)
	graceEnd := now.Add(d.opts.ShutdownGrace)
	drainEnd := graceEnd.Add(d.opts.DrainTimeout)
	cancelled := false
	d.loop(context.Background(), func(now time.Time) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		if n := len(d.core.Running()); n > 0 && !cancelled && !now.Before(graceEnd) {
			cancelled = true
			d.log.Warn("shutdown grace over: cancelling running tasks", "running", n)
			d.core.CancelAll(now, "agent shutting down: grace period over")
			d.wake()
		}
		if d.core.Drained() {
			d.log.Info("agent drained: every result acknowledged")
			return true
		}
		if !now.Before(drainEnd) {
			d.log.Warn("agent stopped without every result acknowledged", "pending_results", d.core.PendingResults(),
				"running", len(d.core.Running()))
			return true
		}
		return false
	})
	d.heartbeatWG.Wait()
	if d.exec != nil {
		d.exec.Wait()
	}
	return nil
}

// loop ticks the agent at its next wake-up (at least every TickMax) and on
// kicks, sending heartbeats, until ctx ends or done says so.
func (d *Daemon) loop(ctx context.Context, done func(now time.Time) bool) {
	for {
		now := d.clock.Now()
		d.mu.Lock()
		hb, send := d.core.Tick(now)
		wake := d.core.NextWake(now)
		if send {
			d.noteResults(now, hb.Results)
		}
		d.mu.Unlock()
		if send {
			d.sendHeartbeat(now, hb)
		}
		if done(now) {
			return
		}
		wait := min(wake.Sub(now), d.opts.TickMax)
		wait = max(wait, time.Millisecond)
		timer := d.clock.Timer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-d.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// noteResults logs results on their first report. Caller holds d.mu.
func (d *Daemon) noteResults(now time.Time, results []core.Result) {
	pending := make(map[core.Lease]bool, len(results))
	for _, r := range results {
		l := core.Lease{TaskID: r.TaskID, Attempt: r.Attempt}
		pending[l] = true
		if d.reported[l] {
			continue
		}
		rec := ResultRecord{TaskID: r.TaskID, Attempt: r.Attempt, Outcome: r.Outcome, ExitCode: r.ExitCode,
			Error: r.Error, DurationMS: r.DurationMS, ReportedAt: now}
		if len(d.resultsLog) < d.opts.ResultsLogMax {
			d.resultsLog = append(d.resultsLog, rec)
		} else {
			d.resultsLog[d.resultsOff] = rec
			d.resultsOff = (d.resultsOff + 1) % len(d.resultsLog)
		}
		d.log.Debug("task finished", "task_id", string(r.TaskID), "attempt", r.Attempt, "outcome", string(r.Outcome),
			"exit_code", r.ExitCode, "duration_ms", r.DurationMS)
	}
	d.reported = pending
}

// heartbeatTimeout bounds one heartbeat exchange. Caller holds d.mu.
func (d *Daemon) heartbeatTimeout() time.Duration {
	return min(max(2*d.core.HeartbeatInterval(), 2*time.Second), 10*time.Second)
}

// sendHeartbeat sends hb on the heartbeat goroutine, starting it when
// none runs: one heartbeat is in flight at a time. A heartbeat built while
// one is in flight waits its turn; a newer one replaces it (its content is
// newer) and the replaced one counts as failed.
func (d *Daemon) sendHeartbeat(now time.Time, hb core.HeartbeatInput) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hbBusy {
		if d.hbNext != nil {
			d.core.HeartbeatFailed(now, d.hbNext.Seq)
			d.metrics.heartbeats.WithLabelValues("replaced").Inc()
		}
		d.hbNext = &hb
		return
	}
	d.hbBusy = true
	d.heartbeatWG.Add(1)
	go d.heartbeats(hb)
}

// heartbeats sends hb, then any heartbeat queued meanwhile, feeding each
// reply (or failure) to the core.
func (d *Daemon) heartbeats(hb core.HeartbeatInput) {
	defer d.heartbeatWG.Done()
	for {
		d.exchange(hb)
		d.mu.Lock()
		next := d.hbNext
		d.hbNext = nil
		d.hbBusy = next != nil
		d.mu.Unlock()
		d.wake() // the reply may have made more work or results due
		if next == nil {
			return
		}
		hb = *next
	}
}

func (d *Daemon) exchange(hb core.HeartbeatInput) {
	d.mu.Lock()
	timeout := d.heartbeatTimeout()
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	reply, err := d.cp.Do(ctx, fnet.Message{From: string(d.opts.ID), To: fnet.CPNode, Kind: fnet.KindHeartbeat, Seq: hb.Seq, Heartbeat: &hb})
	rtt := time.Since(start)
	now := d.clock.Now()
	d.mu.Lock()
	wasConnected := d.connected
	interval := d.core.HeartbeatInterval()
	if err != nil {
		d.core.HeartbeatFailed(now, hb.Seq)
		d.connected, d.lastErr = false, err.Error()
	} else {
		d.core.HeartbeatReplied(now, hb.Seq, *reply.HeartbeatReply)
		d.connected, d.registered, d.lastErr = true, true, ""
	}
	adopted := d.core.HeartbeatInterval()
	d.mu.Unlock()
	if err != nil {
		d.metrics.heartbeats.WithLabelValues("error").Inc()
		var se *fnet.StatusError
		switch {
		case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
			d.log.Error("cp refused the agent token", "error", err)
		case wasConnected:
			d.log.Warn("heartbeat failed: cp unreachable", "error", err)
		default:
			d.log.Debug("heartbeat failed", "error", err)
		}
		return
	}
	d.metrics.heartbeats.WithLabelValues("ok").Inc()
	d.metrics.rtt.Observe(rtt.Seconds())
	if reply.HeartbeatReply.Registered {
		d.log.Info("registered with cp", "cp", d.cp.CPs.Current(), "running", len(hb.Running), "results", len(hb.Results))
	} else if !wasConnected {
		d.log.Info("cp reachable again", "cp", d.cp.CPs.Current())
	}
	if adopted != interval {
		d.log.Info("heartbeat interval set by cp", "heartbeat_interval", adopted.String(), "was", interval.String())
	}
	if n := len(reply.HeartbeatReply.Cancel); n > 0 {
		d.log.Info("cp cancelled attempts it does not know", "count", n)
	}
}

// Status is the agent's view of itself, served on GET /v1/status.
type Status struct {
	AgentID        core.AgentID    `json:"agent_id"`
	Domain         string          `json:"domain"`
	Slots          int             `json:"slots"`
	Incarnation    uint64          `json:"incarnation"`
	CPConnected    bool            `json:"cp_connected"`
	LastError      string          `json:"last_error,omitempty"`
	Stopping       bool            `json:"stopping"`
	Running        []core.Lease    `json:"running"`
	PendingResults int             `json:"pending_results"`
	Stats          core.AgentStats `json:"stats"`
	// Results are the most recent results the agent reported, oldest first.
	Results []ResultRecord `json:"results"`
	// HeartbeatIntervalMillis is the interval the agent heartbeats at now:
	// its own -heartbeat-interval, else the cp's once registered.
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms"`
}

// Status returns the agent's status.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{
		AgentID: d.opts.ID, Domain: d.opts.Domain, Slots: d.opts.Slots,
		Incarnation: d.opts.Incarnation, CPConnected: d.connected, LastError: d.lastErr,
		Stopping: d.stopping, Running: d.core.Running(),
		PendingResults: d.core.PendingResults(), Stats: d.core.Stats(),
		HeartbeatIntervalMillis: d.core.HeartbeatInterval().Milliseconds(),
	}
	s.Results = make([]ResultRecord, 0, len(d.resultsLog))
	s.Results = append(s.Results, d.resultsLog[d.resultsOff:]...)
	s.Results = append(s.Results, d.resultsLog[:d.resultsOff]...)
	return s
}
