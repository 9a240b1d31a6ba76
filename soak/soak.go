// Package soak runs a real control plane under load on loopback: a cp.Server
// on an ephemeral port, a fleet of light agents in this process heartbeating
// to it and long-polling it for their assignments over real HTTP/2, steady
// submissions near the fleet's capacity, and one zone cut off and restored
// in the middle.
//
// Each light agent is a core.Agent (the agent's real decision logic) with a
// sleep executor on timers, driven by one goroutine that ticks it and sends
// its heartbeats and one that polls; each agent has its own h2c connection
// to the cp, as real agents do. A cut zone's heartbeats and polls fail (a
// held poll is broken), as a network partition would; its running sleeps
// go on, and their results wait for the zone to come back.
//
// Run checks, at the end:
//
//   - no task lost: every submission the cp accepted (201) ends SUCCEEDED,
//     and exactly once on the cp's timeline, which is followed all along;
//   - no attempt run twice: each (task, attempt) starts at most once, and two
//     attempts of a task never run at the same time;
//   - no HTTP error but the deliberate ones: submissions answer 201, 429 or
//     503; heartbeats from a connected zone always succeed; the cp's
//     flux_api_errors_total holds only 429 and 503;
//   - memory and goroutines flat: heap (after GC) and goroutine count at the
//     end of the steady phase within a tolerance of their values at its
//     start.
//
// It reports throughput and the reconcile p99 from the cp's
// flux_reconcile_duration_seconds histogram on /metrics. The test in this
// package runs a short version in CI; go test ./soak/ -run TestSoak -soak
// runs the full one (1,000 agents, 2 minutes) and LongCut (a cut longer
// than the heartbeat timeout plus the loss grace).
//
// RunThroughput (throughput.go) measures the other way: how many short
// tasks a second the cp takes from batch submissions and runs on the
// fleet, and the cp's CPU per task, with the cp in a process of its own.
package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// Config sizes a soak run.
type Config struct {
	Agents int // light agents, spread over Zones
	Zones  int // failure domains; zone 0 is the one cut off
	Slots  int // per agent
	// HTTP1: the light agents talk HTTP/1.1 to the cp (two connections
	// each, as the agent command by default) instead of HTTP/2 over one
	// (half the file descriptors: the 5,000-agent soak needs that).
	HTTP1 bool
	// DataDir, when set, makes the cp durable there (its raft log and
	// timeline store fsynced on disk, as a production cp); empty runs it
	// in memory.
	DataDir string
	Task    time.Duration // sleep duration of every task
	// Load is the submission rate as a fraction of the fleet's capacity
	// (Agents*Slots/Task per second).
	Load     float64
	Duration time.Duration // of the steady submission phase
	// CutAt and CutFor place the zone cut inside the steady phase.
	CutAt, CutFor time.Duration
	// Warmup runs before the steady phase's first memory sample, so the
	// cp's bounded stores (tasks, timeline, idempotency) have filled.
	Warmup time.Duration
	// DrainTimeout bounds the wait for every accepted task to end.
	DrainTimeout time.Duration
	// HeapSlack and GoroutineSlack are the tolerances of the flatness
	// check: end <= start*(1+Frac) + Abs.
	HeapSlackFrac      float64
	HeapSlackBytes     uint64
	GoroutineSlackFrac float64
	GoroutineSlack     int
	Logger             *slog.Logger // the cp's; discard when nil
	// HeapProfiles, when set, is a directory where the two memory samples
	// also write heap profiles (start.pprof, end.pprof).
	HeapProfiles string
}

// Full is the soak: 1,000 agents, 2 minutes, a third cut for 20s.
func Full() Config {
	return Config{Agents: 1000, Zones: 3, Slots: 1, Task: 4 * time.Second, Load: 0.8,
		Duration: 2 * time.Minute, CutAt: 50 * time.Second, CutFor: 20 * time.Second, Warmup: 20 * time.Second,
		DrainTimeout: 60 * time.Second, HeapSlackFrac: 0.5, HeapSlackBytes: 16 << 20, GoroutineSlackFrac: 0.2, GoroutineSlack: 200}
}

// LongCut is Full's fleet with 8s tasks and a 15s cut: far longer than the
// soak's HeartbeatTimeout plus LostAfter (2s + 3s), so the cp declares the
// cut zone's agents lost and runs their attempts elsewhere while the agents,
// alive and unaware, still run them unless they fence themselves (their
// lease, core.Config.AgentLease). It found tasks running twice at once.
func LongCut() Config {
	c := Full()
	c.Task, c.Load = 8*time.Second, 0.5
	c.Duration, c.CutAt, c.CutFor, c.Warmup = 60*time.Second, 20*time.Second, 15*time.Second, 20*time.Second
	return c
}

// LongCut5k is LongCut with 5,000 agents: the fleet size. It needs
// about two file descriptors per agent (ulimit -n 12000 or more) and more
// than the 2 CPUs of a CI runner to keep the heartbeats in time: make
// soak-5k, not make test.
func LongCut5k() Config {
	c := LongCut()
	c.Agents = 5000
	return c
}

// Short is the CI version: 100 agents, 15 seconds, a third cut for 5s.
func Short() Config {
	return Config{Agents: 100, Zones: 3, Slots: 1, Task: 500 * time.Millisecond, Load: 0.7,
		Duration: 15 * time.Second, CutAt: 4 * time.Second, CutFor: 5 * time.Second, Warmup: 3 * time.Second,
		DrainTimeout: 30 * time.Second, HeapSlackFrac: 0.5, HeapSlackBytes: 16 << 20, GoroutineSlackFrac: 0.2, GoroutineSlack: 100}
}

// Report is what a run measured. Failures lists every violated check; a
// run passed when it is empty.
type Report struct {
	Agents            int
	Submitted         int // submissions attempted
	Accepted          int // 201
	Refused429        int
	Refused503        int
	Succeeded         int // accepted tasks the timeline shows SUCCEEDED
	Executions        int // attempts started on agents
	ExtraExecutions   int // executions beyond one per task (tasks caught by the cut)
	RanTwiceAtOnce    int // tasks with two executions at the same time
	Throughput        float64
	ReconcileP99      time.Duration
	ReconcileCount    uint64
	HeapStart         uint64
	HeapEnd           uint64
	GoroutinesStart   int
	GoroutinesEnd     int
	TimelineDropped   uint64
	HeartbeatsOK      uint64
	HeartbeatsSkipped uint64 // not sent while cut
	PollsOK           uint64
	PollsSkipped      uint64 // not sent while cut
	APIErrors         map[string]float64
	Elapsed           time.Duration
	Failures          []string
}

func (r *Report) failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// String is a human summary.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "agents=%d submitted=%d accepted=%d refused_429=%d refused_503=%d succeeded=%d\n",
		r.Agents, r.Submitted, r.Accepted, r.Refused429, r.Refused503, r.Succeeded)
	fmt.Fprintf(&b, "executions=%d extra_executions=%d ran_twice_at_once=%d throughput=%.1f tasks/s elapsed=%v\n",
		r.Executions, r.ExtraExecutions, r.RanTwiceAtOnce, r.Throughput, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "reconcile p99=%v over %d passes; heartbeats ok=%d skipped_while_cut=%d; polls ok=%d skipped_while_cut=%d; timeline dropped=%d\n",
		r.ReconcileP99, r.ReconcileCount, r.HeartbeatsOK, r.HeartbeatsSkipped, r.PollsOK, r.PollsSkipped, r.TimelineDropped)
	fmt.Fprintf(&b, "heap start=%.1f MiB end=%.1f MiB; goroutines start=%d end=%d; api errors=%v\n",
		float64(r.HeapStart)/(1<<20), float64(r.HeapEnd)/(1<<20), r.GoroutinesStart, r.GoroutinesEnd, r.APIErrors)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "FAIL: %s\n", f)
	}
	return b.String()
}

const agentToken = "soak-agent-token"

// Run performs one soak and returns its report; an error means the run
// could not be set up or was interrupted, not that a check failed.
//
// The phases, in order: start the cp; start the fleet and wait for all of it
// to register; follow the timeline; the steady load, with the zone cut and
// restored inside it; drain every accepted task; read the cp's metrics;
// tally and check.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Agents < cfg.Zones || cfg.Zones < 2 || cfg.Slots < 1 || cfg.Task < time.Millisecond || cfg.Load <= 0 {
		return nil, errors.New("soak: need Agents >= Zones >= 2, Slots >= 1, Task >= 1ms and Load > 0")
	}
	began := time.Now()
	rep := &Report{Agents: cfg.Agents}
	capacity := float64(cfg.Agents*cfg.Slots) / cfg.Task.Seconds()
	rate := cfg.Load * capacity

	cc := soakCoreConfig(cfg, rate)
	cpu, err := startCP(cfg, cc)
	if err != nil {
		return nil, err
	}
	fl, err := startFleet(cfg, cc, cpu.url)
	if err != nil {
		cpu.stop()
		return nil, err
	}
	defer func() { fl.stop(); cpu.stop() }()

	apiTr := http.DefaultTransport.(*http.Transport).Clone()
	apiTr.MaxIdleConnsPerHost = 64
	api := &http.Client{Transport: apiTr, Timeout: 30 * time.Second}
	defer apiTr.CloseIdleConnections()
	if err := waitRegistered(ctx, api, cpu.url, cfg.Agents); err != nil {
		return nil, err
	}

	tl := followTimeline(api, cpu.url)
	defer tl.stop()

	sub := startSubmitters(api, cpu.url, cfg.Task, fl.errs)
	steady, err := steadyLoad(ctx, cfg, rate, rep, sub, fl)
	if err != nil {
		return nil, err
	}
	ids := sub.acceptedIDs()

	if err := drain(ctx, cfg, rep, tl.f, api, cpu.url, ids); err != nil {
		return nil, err
	}
	if err := tl.finish(); err != nil {
		rep.failf("timeline follower: %v", err)
	}
	if err := readMetrics(ctx, rep, api, cpu.url); err != nil {
		return nil, err
	}

	tally(rep, sub, fl, ids, steady.elapsed)
	check(cfg, rep, tl.f, fl, ids, steady.sampled)
	rep.Elapsed = time.Since(began)
	return rep, nil
}

// soakCoreConfig is the cp's core config with the short intervals of a soak
// and bounds sized to the rate.
func soakCoreConfig(cfg Config, rate float64) core.Config {
	cc := core.DefaultConfig()
	cc.HeartbeatInterval = 500 * time.Millisecond
	cc.HeartbeatTimeout = 2 * time.Second
	cc.LostAfter = 3 * time.Second
	cc.AssignTimeout = 3 * time.Second
	cc.QueueCapacity = max(100, int(rate*2)) // two seconds of submissions
	cc.TasksMax = max(cc.QueueCapacity*2, int(rate*10))
	cc.AgentsMax = cfg.Agents * 2
	cc.AgentSlotsMax = max(cc.AgentSlotsMax, cfg.Slots)
	return cc
}

// cpUnderTest is a cp.Server with its loops running, served on loopback.
type cpUnderTest struct {
	url     string
	srv     *http.Server
	stopRun context.CancelFunc
	bg      sync.WaitGroup
	server  *cp.Server
}

// startCP starts the cp on an ephemeral loopback port.
func startCP(cfg Config, cc core.Config) (*cpUnderTest, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &cpUnderTest{}
	// The in-memory raft log keeps every entry until a snapshot compacts it
	// (then TrailingLogs of them); raft's default interval is 2 minutes
	// plus jitter, longer than the steady phase, so the heap check would
	// measure the log filling up, not a leak. A 5s interval brings the log
	// to its steady size within the warm-up, as a real cp's is over its
	// lifetime.
	server, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: cc, AgentToken: agentToken, DataDir: cfg.DataDir,
		ReconcileInterval: 100 * time.Millisecond, SnapshotInterval: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = server.Close()
		return nil, err
	}
	c.server = server
	c.srv = &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		Protocols: new(http.Protocols)}
	c.srv.Protocols.SetHTTP1(true)
	c.srv.Protocols.SetUnencryptedHTTP2(true) // the agents' one connection each
	c.url = "http://" + ln.Addr().String()
	runCtx, stopRun := context.WithCancel(context.Background())
	c.stopRun = stopRun
	c.bg.Add(2)
	go func() { defer c.bg.Done(); _ = server.Run(runCtx) }()
	go func() { defer c.bg.Done(); _ = c.srv.Serve(ln) }()
	return c, nil
}

// stop shuts the API down, stops the loops and waits for both.
func (c *cpUnderTest) stop() {
	c.server.BeginShutdown() // held polls answer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = c.srv.Shutdown(ctx)
	cancel()
	c.stopRun()
	c.bg.Wait()
	_ = c.server.Close()
}

// waitRegistered waits up to 30s (10ms an agent beyond 3,000) for all n
// agents to be connected.
func waitRegistered(ctx context.Context, api *http.Client, cpURL string, n int) error {
	wait := max(30*time.Second, time.Duration(n)*10*time.Millisecond)
	for deadline := time.Now().Add(wait); ; {
		var snap core.DebugView
		if err := getJSON(ctx, api, cpURL+"/scheduler/debug/snapshot", &snap); err != nil {
			return err
		}
		if snap.Agents.Connected == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: only %d of %d agents connected after %v", snap.Agents.Connected, n, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// submitters post sleep tasks, one per job, over 16 workers, and count the
// answers.
type submitters struct {
	jobs    chan struct{}
	workers sync.WaitGroup

	mu                    sync.Mutex
	accepted              []core.TaskID
	submitted, r429, r503 atomic.Int64
}

func startSubmitters(api *http.Client, cpURL string, task time.Duration, errs *errorLog) *submitters {
	s := &submitters{jobs: make(chan struct{}, 1024)}
	body := fmt.Sprintf(`{"kind":"sleep","duration_ms":%d}`, task.Milliseconds())
	for range 16 {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			for range s.jobs {
				s.submit(api, cpURL, body, errs)
			}
		}()
	}
	return s
}

func (s *submitters) submit(api *http.Client, cpURL, body string, errs *errorLog) {
	s.submitted.Add(1)
	req, _ := http.NewRequest(http.MethodPost, cpURL+"/v1/tasks", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := api.Do(req)
	if err != nil {
		errs.add("submit: " + err.Error())
		return
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		var v cp.TaskView
		if err := json.Unmarshal(raw, &v); err != nil {
			errs.add("submit reply: " + err.Error())
			return
		}
		s.mu.Lock()
		s.accepted = append(s.accepted, v.ID)
		s.mu.Unlock()
	case http.StatusTooManyRequests:
		s.r429.Add(1)
	case http.StatusServiceUnavailable:
		s.r503.Add(1)
	default:
		errs.add(fmt.Sprintf("submit answered %d: %s", resp.StatusCode, raw))
	}
}

// offer queues one submission unless the workers fell behind (the cp is
// slower than the rate).
func (s *submitters) offer() {
	select {
	case s.jobs <- struct{}{}:
	default:
	}
}

// stop lets the workers finish what is queued and waits for them.
func (s *submitters) stop() {
	close(s.jobs)
	s.workers.Wait()
}

func (s *submitters) acceptedIDs() []core.TaskID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// steadyResult is what the steady phase hands the checks.
type steadyResult struct {
	elapsed time.Duration // warm-up included
	sampled bool          // the start-of-phase memory sample was taken
}

// steadyLoad paces submissions at rate through the warm-up and cfg.Duration,
// samples memory when the warm-up ends and again at the end (load still on),
// and cuts zone 0 off at CutAt for CutFor. It stops the submitters and
// leaves zone 0 connected.
func steadyLoad(ctx context.Context, cfg Config, rate float64, rep *Report, sub *submitters, fl *fleet) (steadyResult, error) {
	start := time.Now()
	warmupEnd := start.Add(cfg.Warmup)
	end := start.Add(cfg.Warmup + cfg.Duration)
	cutStart, cutEnd := warmupEnd.Add(cfg.CutAt), warmupEnd.Add(cfg.CutAt+cfg.CutFor)
	sampled, cutDone, restored := false, false, false
	var err error
	const pace = 10 * time.Millisecond
	tick := time.NewTicker(pace)
	defer tick.Stop()
	var owed float64
	for now := time.Now(); now.Before(end); now = time.Now() {
		select {
		case <-ctx.Done():
			sub.stop()
			return steadyResult{}, ctx.Err()
		case <-tick.C:
		}
		owed += rate * pace.Seconds()
		for ; owed >= 1; owed-- {
			sub.offer()
		}
		if !sampled && now.After(warmupEnd) {
			sampled = true
			if rep.HeapStart, rep.GoroutinesStart, err = memSample(profilePath(cfg, "start")); err != nil {
				sub.stop()
				return steadyResult{}, err
			}
		}
		if !cutDone && now.After(cutStart) {
			cutDone = true
			fl.cut(0)
		}
		if cutDone && !restored && now.After(cutEnd) {
			restored = true
			fl.restore(0)
		}
	}
	tick.Stop()
	// The end of the steady phase: sample while the load is still on.
	rep.HeapEnd, rep.GoroutinesEnd, err = memSample(profilePath(cfg, "end"))
	sub.stop()
	if err != nil {
		return steadyResult{}, err
	}
	fl.cuts[0].Store(false)
	return steadyResult{elapsed: time.Since(start), sampled: sampled}, nil
}

// profilePath is where the memory sample name writes its heap profile
// ("" when cfg.HeapProfiles is unset).
func profilePath(cfg Config, name string) string {
	if cfg.HeapProfiles == "" {
		return ""
	}
	return filepath.Join(cfg.HeapProfiles, name+".pprof")
}

// drain waits up to cfg.DrainTimeout for every accepted task to end on the
// timeline; a task still open then is a failure, not an error.
func drain(ctx context.Context, cfg Config, rep *Report, tl *timelineFollower, api *http.Client, cpURL string, ids []core.TaskID) error {
	for deadline := time.Now().Add(cfg.DrainTimeout); ; {
		if err := tl.poll(ctx, api, cpURL); err != nil {
			return err
		}
		tl.mu.Lock()
		open := 0
		for _, id := range ids {
			if _, ok := tl.ended[id]; !ok {
				open++
			}
		}
		tl.mu.Unlock()
		if open == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			rep.failf("%d of %d accepted tasks not finished %v after the load stopped", open, len(ids), cfg.DrainTimeout)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readMetrics reads the reconcile p99 and the API errors from the cp's
// /metrics.
func readMetrics(ctx context.Context, rep *Report, api *http.Client, cpURL string) error {
	body, err := getText(ctx, api, cpURL+"/metrics")
	if err != nil {
		return err
	}
	rep.ReconcileP99, rep.ReconcileCount = histogramQuantile(body, "flux_reconcile_duration_seconds", 0.99)
	rep.APIErrors = counterByLabel(body, "flux_api_errors_total", "code")
	return nil
}

// tally copies the counters into the report.
func tally(rep *Report, sub *submitters, fl *fleet, ids []core.TaskID, steady time.Duration) {
	rep.Submitted, rep.Accepted = int(sub.submitted.Load()), len(ids)
	rep.Refused429, rep.Refused503 = int(sub.r429.Load()), int(sub.r503.Load())
	rep.HeartbeatsOK, rep.HeartbeatsSkipped = fl.hbOK.Load(), fl.hbSkip.Load()
	rep.PollsOK, rep.PollsSkipped = fl.pollOK.Load(), fl.pollSkip.Load()
	rep.Throughput = float64(len(ids)) / steady.Seconds()
}

// check records every violated check in rep.Failures (see the package
// comment for the list).
func check(cfg Config, rep *Report, tl *timelineFollower, fl *fleet, ids []core.TaskID, sampled bool) {
	checkTimeline(rep, tl, ids)
	checkExecutions(rep, fl.rec, ids)
	if fl.errs.n > 0 {
		rep.failf("%d unexpected errors, first: %q", fl.errs.n, fl.errs.first)
	}
	for code, n := range rep.APIErrors {
		if code != "429" && code != "503" && n > 0 {
			rep.failf("the cp counted %v API errors with status %s", n, code)
		}
	}
	if rep.Accepted == 0 {
		rep.failf("no task accepted")
	}
	if !sampled {
		rep.failf("the steady phase never began (warm-up longer than the run)")
	}
	if lim := uint64(float64(rep.HeapStart)*(1+cfg.HeapSlackFrac)) + cfg.HeapSlackBytes; rep.HeapEnd > lim {
		rep.failf("heap grew: %d bytes at the start of the steady phase, %d at its end (limit %d)", rep.HeapStart, rep.HeapEnd, lim)
	}
	if lim := int(float64(rep.GoroutinesStart)*(1+cfg.GoroutineSlackFrac)) + cfg.GoroutineSlack; rep.GoroutinesEnd > lim {
		rep.failf("goroutines grew: %d at the start of the steady phase, %d at its end (limit %d)", rep.GoroutinesStart, rep.GoroutinesEnd, lim)
	}
}

// checkTimeline checks the cp's side: every accepted task ended SUCCEEDED,
// exactly once, and the follower missed no event. A task not ended is
// drain's failure, not counted here.
func checkTimeline(rep *Report, tl *timelineFollower, ids []core.TaskID) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	rep.TimelineDropped = tl.dropped
	for _, id := range ids {
		switch st, ok := tl.ended[id]; {
		case !ok:
		case st != core.TaskSucceeded:
			rep.failf("task %s ended %s", id, st)
		case tl.succeeded[id] != 1:
			rep.failf("task %s succeeded %d times on the timeline", id, tl.succeeded[id])
		default:
			rep.Succeeded++
		}
	}
	if rep.TimelineDropped > 0 {
		rep.failf("the timeline follower missed events: %d dropped", rep.TimelineDropped)
	}
}

// checkExecutions checks the agents' side: each (task, attempt) started at
// most once, attempts of a task never overlapped, and every accepted task
// ran successfully at least once.
func checkExecutions(rep *Report, rec *recorder, ids []core.TaskID) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rep.Executions = rec.total
	byTask := map[core.TaskID][]*execRecord{}
	for l, rs := range rec.execs {
		if len(rs) > 1 {
			rep.failf("task %s attempt %d started %d times", l.TaskID, l.Attempt, len(rs))
		}
		byTask[l.TaskID] = append(byTask[l.TaskID], rs...)
	}
	for _, id := range ids {
		rs := byTask[id]
		ok := 0
		for _, r := range rs {
			if r.succeeded {
				ok++
			}
		}
		if ok == 0 {
			rep.failf("task %s never ran to success on an agent", id)
		}
		rep.ExtraExecutions += max(len(rs)-1, 0)
		slices.SortFunc(rs, func(a, b *execRecord) int { return a.start.Compare(b.start) })
		// An execution overlaps an earlier one if it starts before the
		// latest end so far (or while one never ended).
		var latest *execRecord
		for _, r := range rs {
			if latest != nil && (latest.end.IsZero() || r.start.Before(latest.end)) {
				rep.RanTwiceAtOnce++
				if rep.RanTwiceAtOnce <= ranTwiceListed {
					rep.failf("task %s ran twice at once: on agent %d from %v and on agent %d from %v",
						id, latest.agent, latest.start.Format(time.StampMilli), r.agent, r.start.Format(time.StampMilli))
				}
				break
			}
			if latest == nil || r.end.IsZero() || r.end.After(latest.end) {
				latest = r
			}
		}
	}
	if n := rep.RanTwiceAtOnce - ranTwiceListed; n > 0 {
		rep.failf("and %d more tasks ran twice at once", n)
	}
}

// ranTwiceListed is how many tasks that ran twice at once the failures
// name one by one.
const ranTwiceListed = 10
