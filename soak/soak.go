// Package soak runs a real control plane under load on loopback: a cp.Server
// on an ephemeral port, a fleet of light agents in this process heartbeating
// to it and taking its assignments over real HTTP, steady submissions near
// the fleet's capacity, and one zone cut off and restored in the middle.
//
// Each light agent is a core.Agent (the agent's real decision logic) with a
// sleep executor on timers, driven by one goroutine that ticks it and sends
// its heartbeats; all agents serve their assignments on one shared listener,
// multiplexed by path (the advertised address is http://127.0.0.1:P/a/<n>).
// A cut zone stops heartbeating and answers every assignment 503, as a
// network partition with a load balancer in front would; its running sleeps
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
// runs the full one (1,000 agents, 2 minutes).
package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Config sizes a soak run.
type Config struct {
	Agents int           // light agents, spread over Zones
	Zones  int           // failure domains; zone 0 is the one cut off
	Slots  int           // per agent
	Task   time.Duration // sleep duration of every task
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
}

// Full is the soak: 1,000 agents, 2 minutes, a third cut for 20s.
func Full() Config {
	return Config{Agents: 1000, Zones: 3, Slots: 1, Task: 4 * time.Second, Load: 0.8,
		Duration: 2 * time.Minute, CutAt: 50 * time.Second, CutFor: 20 * time.Second, Warmup: 20 * time.Second,
		DrainTimeout: 60 * time.Second, HeapSlackFrac: 0.5, HeapSlackBytes: 16 << 20, GoroutineSlackFrac: 0.2, GoroutineSlack: 200}
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
	fmt.Fprintf(&b, "executions=%d extra_executions=%d throughput=%.1f tasks/s elapsed=%v\n",
		r.Executions, r.ExtraExecutions, r.Throughput, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "reconcile p99=%v over %d passes; heartbeats ok=%d skipped_while_cut=%d; timeline dropped=%d\n",
		r.ReconcileP99, r.ReconcileCount, r.HeartbeatsOK, r.HeartbeatsSkipped, r.TimelineDropped)
	fmt.Fprintf(&b, "heap start=%.1f MiB end=%.1f MiB; goroutines start=%d end=%d; api errors=%v\n",
		float64(r.HeapStart)/(1<<20), float64(r.HeapEnd)/(1<<20), r.GoroutinesStart, r.GoroutinesEnd, r.APIErrors)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "FAIL: %s\n", f)
	}
	return b.String()
}

const agentToken = "soak-agent-token"

// execRecord is one attempt as the agent ran it.
type execRecord struct {
	agent      int
	start, end time.Time // end zero while running
	succeeded  bool
}

// recorder counts executions per (task, attempt), over all agents.
type recorder struct {
	mu    sync.Mutex
	execs map[core.Lease][]*execRecord
	total int
}

func (r *recorder) started(l core.Lease, agent int, at time.Time) *execRecord {
	rec := &execRecord{agent: agent, start: at}
	r.mu.Lock()
	r.execs[l] = append(r.execs[l], rec)
	r.total++
	r.mu.Unlock()
	return rec
}

func (r *recorder) ended(rec *execRecord, at time.Time, ok bool) {
	r.mu.Lock()
	rec.end, rec.succeeded = at, ok
	r.mu.Unlock()
}

// lightAgent is a core.Agent, a sleep executor and a heartbeat loop.
type lightAgent struct {
	n      int
	zone   int
	cut    *atomic.Bool
	rec    *recorder
	client *fnet.HTTPClient
	errs   *errorLog
	hbOK   *atomic.Uint64
	hbSkip *atomic.Uint64

	mu     sync.Mutex
	ag     *core.Agent
	timers map[core.Lease]*time.Timer
	recs   map[core.Lease]*execRecord
	kick   chan struct{}
}

// Start implements core.Executor; it runs under a.mu (inside Assign).
func (a *lightAgent) Start(e core.Execution) {
	l := core.Lease{TaskID: e.TaskID, Attempt: e.Attempt}
	a.recs[l] = a.rec.started(l, a.n, time.Now())
	a.timers[l] = time.AfterFunc(time.Duration(e.Spec.DurationMS)*time.Millisecond, func() {
		a.mu.Lock()
		rec, live := a.recs[l]
		delete(a.recs, l)
		delete(a.timers, l)
		if live {
			a.rec.ended(rec, time.Now(), true)
			a.ag.Finished(time.Now(), core.Result{TaskID: l.TaskID, Attempt: l.Attempt, Outcome: core.OutcomeSucceeded,
				DurationMS: e.Spec.DurationMS})
		}
		a.mu.Unlock()
		a.wake()
	})
}

// Stop implements core.Executor; it runs under a.mu.
func (a *lightAgent) Stop(task core.TaskID, attempt int) {
	l := core.Lease{TaskID: task, Attempt: attempt}
	if t, ok := a.timers[l]; ok {
		t.Stop()
		a.rec.ended(a.recs[l], time.Now(), false)
		delete(a.timers, l)
		delete(a.recs, l)
	}
}

func (a *lightAgent) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// run ticks the agent and sends its heartbeats, one at a time, until ctx
// ends.
func (a *lightAgent) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-timer.C:
		}
		now := time.Now()
		a.mu.Lock()
		hb, send := a.ag.Tick(now)
		a.mu.Unlock()
		if send {
			a.heartbeat(ctx, hb)
		}
		now = time.Now()
		a.mu.Lock()
		wait := a.ag.NextWake(now).Sub(now)
		a.mu.Unlock()
		timer.Reset(min(max(wait, time.Millisecond), 200*time.Millisecond))
	}
}

func (a *lightAgent) heartbeat(ctx context.Context, hb core.HeartbeatInput) {
	if a.cut.Load() {
		a.hbSkip.Add(1)
		a.mu.Lock()
		a.ag.HeartbeatFailed(time.Now(), hb.Seq)
		a.mu.Unlock()
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	reply, err := a.client.Do(hctx, fnet.Message{From: string(a.ag.ID()), To: fnet.CPNode, Kind: fnet.KindHeartbeat, Seq: hb.Seq, Heartbeat: &hb})
	cancel()
	a.mu.Lock()
	if err != nil {
		a.ag.HeartbeatFailed(time.Now(), hb.Seq)
	} else {
		a.ag.HeartbeatReplied(time.Now(), hb.Seq, *reply.HeartbeatReply)
	}
	a.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			a.errs.add(fmt.Sprintf("heartbeat of agent %d: %v", a.n, err))
		}
		return
	}
	a.hbOK.Add(1)
}

// serve answers the cp's assignments and cancels for this agent.
func (a *lightAgent) serve(w http.ResponseWriter, r *http.Request, path string) {
	if a.cut.Load() {
		fnet.WriteError(w, http.StatusServiceUnavailable, "cut_off", "this zone is cut off")
		return
	}
	if !fnet.CheckToken(r, agentToken) {
		a.errs.add("request without the agent token")
		fnet.WriteError(w, http.StatusUnauthorized, "unauthorized", "agent token")
		return
	}
	switch path {
	case fnet.PathAssign:
		var as core.Assign
		if err := fnet.Decode(r.Body, fnet.BodyMax, &as); err != nil {
			a.errs.add("bad assign: " + err.Error())
			fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		a.mu.Lock()
		ack := a.ag.Assign(time.Now(), as)
		a.mu.Unlock()
		a.wake()
		fnet.WriteJSON(w, http.StatusOK, ack)
	case fnet.PathCancel:
		var c core.CancelTask
		if err := fnet.Decode(r.Body, fnet.BodyMax, &c); err != nil {
			a.errs.add("bad cancel: " + err.Error())
			fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		a.mu.Lock()
		a.ag.Cancel(time.Now(), c)
		a.mu.Unlock()
		a.wake()
		w.WriteHeader(http.StatusNoContent)
	default:
		fnet.WriteError(w, http.StatusNotFound, "not_found", path)
	}
}

// errorLog keeps the first few unexpected errors and counts them all.
type errorLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorLog) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 10 {
		e.first = append(e.first, s)
	}
}

// timelineFollower polls GET /timeline and keeps every task event.
type timelineFollower struct {
	pollMu    sync.Mutex // one poll at a time: each reads and moves since
	mu        sync.Mutex
	since     uint64
	succeeded map[core.TaskID]int
	ended     map[core.TaskID]core.TaskState
	dropped   uint64
}

func (f *timelineFollower) poll(ctx context.Context, hc *http.Client, base string) error {
	f.pollMu.Lock()
	defer f.pollMu.Unlock()
	for {
		var page cp.TimelinePage
		if err := getJSON(ctx, hc, fmt.Sprintf("%s/timeline?since=%d&limit=10000", base, f.since), &page); err != nil {
			return err
		}
		f.mu.Lock()
		if len(page.Events) > 0 && page.Events[0].Seq > f.since+1 {
			f.dropped += page.Events[0].Seq - f.since - 1 // overwritten before this poll read them
		}
		for _, e := range page.Events {
			if e.Kind != core.EventTask {
				continue
			}
			st, err := core.ParseTaskState(e.To)
			if err != nil || !st.Terminal() {
				continue
			}
			f.ended[e.TaskID] = st
			if st == core.TaskSucceeded {
				f.succeeded[e.TaskID]++
			}
		}
		f.since = page.NextSince
		f.mu.Unlock()
		if len(page.Events) < 10000 {
			return nil
		}
	}
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// memSample is the process's heap after a GC and its goroutine count.
func memSample() (uint64, int) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

// Run performs one soak and returns its report; an error means the run
// could not be set up or was interrupted, not that a check failed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Agents < cfg.Zones || cfg.Zones < 2 || cfg.Slots < 1 || cfg.Task < time.Millisecond || cfg.Load <= 0 {
		return nil, errors.New("soak: need Agents >= Zones >= 2, Slots >= 1, Task >= 1ms and Load > 0")
	}
	began := time.Now()
	rep := &Report{Agents: cfg.Agents}
	capacity := float64(cfg.Agents*cfg.Slots) / cfg.Task.Seconds()
	rate := cfg.Load * capacity

	// The cp, with the short intervals of a soak.
	cc := core.DefaultConfig()
	cc.HeartbeatInterval = 500 * time.Millisecond
	cc.HeartbeatTimeout = 2 * time.Second
	cc.LostAfter = 3 * time.Second
	cc.AssignTimeout = 3 * time.Second
	cc.QueueCapacity = max(100, int(rate*2)) // two seconds of submissions
	cc.TasksMax = max(cc.QueueCapacity*2, int(rate*10))
	cc.AgentsMax = cfg.Agents * 2
	cc.AgentSlotsMax = max(cc.AgentSlotsMax, cfg.Slots)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 64 // all agents share one host:port here
	cpClient := &http.Client{Transport: tr}
	server, err := cp.New(cp.Options{Clock: clock.New(), Logger: logger, Core: cc, AgentToken: agentToken,
		ReconcileInterval: 100 * time.Millisecond, DeliveryTimeout: 2 * time.Second, HTTPClient: cpClient})
	if err != nil {
		return nil, err
	}
	cpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cpSrv := &http.Server{Handler: server.Handler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	cpURL := "http://" + cpLn.Addr().String()
	runCtx, stopCP := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); _ = server.Run(runCtx) }()
	go func() { defer bg.Done(); _ = cpSrv.Serve(cpLn) }()

	// The fleet.
	rec := &recorder{execs: map[core.Lease][]*execRecord{}}
	errs := &errorLog{}
	var hbOK, hbSkip atomic.Uint64
	cuts := make([]atomic.Bool, cfg.Zones)
	agLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopCP()
		bg.Wait()
		return nil, err
	}
	agBase := "http://" + agLn.Addr().String()
	agTr := http.DefaultTransport.(*http.Transport).Clone()
	agTr.MaxIdleConns, agTr.MaxIdleConnsPerHost = cfg.Agents+64, cfg.Agents+64
	agHTTP := &http.Client{Transport: agTr}
	agents := make([]*lightAgent, cfg.Agents)
	for i := range agents {
		zone := i % cfg.Zones
		a := &lightAgent{n: i, zone: zone, cut: &cuts[zone], rec: rec, errs: errs,
			hbOK: &hbOK, hbSkip: &hbSkip, timers: map[core.Lease]*time.Timer{}, recs: map[core.Lease]*execRecord{},
			kick:   make(chan struct{}, 1),
			client: &fnet.HTTPClient{HTTP: agHTTP, Token: agentToken, CPURL: cpURL}}
		a.ag, err = core.NewAgent(core.AgentConfig{ID: core.AgentID(fmt.Sprintf("soak-%04d", i)), Domain: fmt.Sprintf("zone-%d", zone),
			Slots: cfg.Slots, Address: fmt.Sprintf("%s/a/%d", agBase, i), HeartbeatInterval: cc.HeartbeatInterval,
			ResultsMax: 1024, Incarnation: uint64(i + 1)}, a)
		if err != nil {
			stopCP()
			bg.Wait()
			return nil, err
		}
		agents[i] = a
	}
	agSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rest, ok := strings.CutPrefix(r.URL.Path, "/a/")
			num, path, _ := strings.Cut(rest, "/")
			n, err := strconv.Atoi(num)
			if !ok || err != nil || n < 0 || n >= len(agents) {
				fnet.WriteError(w, http.StatusNotFound, "not_found", r.URL.Path)
				return
			}
			agents[n].serve(w, r, "/"+path)
		})}
	bg.Add(1)
	go func() { defer bg.Done(); _ = agSrv.Serve(agLn) }()
	fleetCtx, stopFleet := context.WithCancel(context.Background())
	var fleet sync.WaitGroup
	for _, a := range agents {
		fleet.Add(1)
		go func() { defer fleet.Done(); a.run(fleetCtx) }()
	}
	shutdown := func() {
		stopFleet()
		fleet.Wait()
		for _, a := range agents {
			a.mu.Lock()
			for _, t := range a.timers {
				t.Stop()
			}
			a.mu.Unlock()
		}
		shCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = agSrv.Shutdown(shCtx)
		_ = cpSrv.Shutdown(shCtx)
		cancel()
		stopCP()
		bg.Wait()
		agTr.CloseIdleConnections()
		tr.CloseIdleConnections()
	}
	defer shutdown()

	// Wait for the whole fleet to register.
	apiTr := http.DefaultTransport.(*http.Transport).Clone()
	apiTr.MaxIdleConnsPerHost = 64
	api := &http.Client{Transport: apiTr, Timeout: 30 * time.Second}
	defer apiTr.CloseIdleConnections()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var snap core.Snapshot
		if err := getJSON(ctx, api, cpURL+"/scheduler/debug/snapshot", &snap); err != nil {
			return nil, err
		}
		if snap.Agents.Connected == cfg.Agents {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("soak: only %d of %d agents connected after 30s", snap.Agents.Connected, cfg.Agents)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The timeline follower.
	tl := &timelineFollower{succeeded: map[core.TaskID]int{}, ended: map[core.TaskID]core.TaskState{}}
	tlCtx, stopTL := context.WithCancel(context.Background())
	tlDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := tl.poll(tlCtx, api, cpURL); err != nil && tlCtx.Err() == nil {
				tlDone <- err
				return
			}
			select {
			case <-tlCtx.Done():
				tlDone <- nil
				return
			case <-tick.C:
			}
		}
	}()
	defer stopTL()

	// Submitters: a paced stream spread over workers.
	var (
		subMu    sync.Mutex
		accepted []core.TaskID
	)
	var submitted, r429, r503 atomic.Int64
	jobs := make(chan struct{}, 1024)
	body := fmt.Sprintf(`{"kind":"sleep","duration_ms":%d}`, cfg.Task.Milliseconds())
	var workers sync.WaitGroup
	for range 16 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for range jobs {
				submitted.Add(1)
				req, _ := http.NewRequest(http.MethodPost, cpURL+"/v1/tasks", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := api.Do(req)
				if err != nil {
					errs.add("submit: " + err.Error())
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusCreated:
					var v cp.TaskView
					if err := json.Unmarshal(raw, &v); err != nil {
						errs.add("submit reply: " + err.Error())
						continue
					}
					subMu.Lock()
					accepted = append(accepted, v.ID)
					subMu.Unlock()
				case http.StatusTooManyRequests:
					r429.Add(1)
				case http.StatusServiceUnavailable:
					r503.Add(1)
				default:
					errs.add(fmt.Sprintf("submit answered %d: %s", resp.StatusCode, raw))
				}
			}
		}()
	}

	steadyStart := time.Now()
	warmupEnd := steadyStart.Add(cfg.Warmup)
	end := steadyStart.Add(cfg.Warmup + cfg.Duration)
	cutStart, cutEnd := warmupEnd.Add(cfg.CutAt), warmupEnd.Add(cfg.CutAt+cfg.CutFor)
	sampled, cutDone, restored := false, false, false
	const pace = 10 * time.Millisecond
	tick := time.NewTicker(pace)
	var owed float64
	for now := time.Now(); now.Before(end); now = time.Now() {
		select {
		case <-ctx.Done():
			close(jobs)
			workers.Wait()
			return nil, ctx.Err()
		case <-tick.C:
		}
		owed += rate * pace.Seconds()
		for ; owed >= 1; owed-- {
			select {
			case jobs <- struct{}{}:
			default: // the submitters fell behind: the cp is slower than the rate
			}
		}
		if !sampled && now.After(warmupEnd) {
			sampled = true
			rep.HeapStart, rep.GoroutinesStart = memSample()
		}
		if !cutDone && now.After(cutStart) {
			cutDone = true
			cuts[0].Store(true)
		}
		if cutDone && !restored && now.After(cutEnd) {
			restored = true
			cuts[0].Store(false)
			for _, a := range agents {
				if a.zone == 0 {
					a.wake()
				}
			}
		}
	}
	tick.Stop()
	// The end of the steady phase: sample while the load is still on.
	rep.HeapEnd, rep.GoroutinesEnd = memSample()
	close(jobs)
	workers.Wait()
	cuts[0].Store(false)
	steady := time.Since(steadyStart)

	// Drain: every accepted task must end.
	subMu.Lock()
	ids := slices.Clone(accepted)
	subMu.Unlock()
	for deadline := time.Now().Add(cfg.DrainTimeout); ; {
		if err := tl.poll(ctx, api, cpURL); err != nil {
			return nil, err
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
			break
		}
		if time.Now().After(deadline) {
			rep.failf("%d of %d accepted tasks not finished %v after the load stopped", open, len(ids), cfg.DrainTimeout)
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	stopTL()
	if err := <-tlDone; err != nil {
		rep.failf("timeline follower: %v", err)
	}

	// Metrics from the cp.
	metricsBody, err := getText(ctx, api, cpURL+"/metrics")
	if err != nil {
		return nil, err
	}
	rep.ReconcileP99, rep.ReconcileCount = histogramQuantile(metricsBody, "flux_reconcile_duration_seconds", 0.99)
	rep.APIErrors = counterByLabel(metricsBody, "flux_api_errors_total", "code")

	// The checks.
	rep.Submitted, rep.Accepted = int(submitted.Load()), len(ids)
	rep.Refused429, rep.Refused503 = int(r429.Load()), int(r503.Load())
	rep.HeartbeatsOK, rep.HeartbeatsSkipped = hbOK.Load(), hbSkip.Load()
	rep.Throughput = float64(len(ids)) / steady.Seconds()
	tl.mu.Lock()
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
	tl.mu.Unlock()
	if rep.TimelineDropped > 0 {
		rep.failf("the timeline follower missed events: %d dropped", rep.TimelineDropped)
	}
	checkExecutions(rep, rec, ids)
	if errs.n > 0 {
		rep.failf("%d unexpected errors, first: %q", errs.n, errs.first)
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
	rep.Elapsed = time.Since(began)
	return rep, nil
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
		for i := 1; i < len(rs); i++ {
			prevEnd := rs[i-1].end
			if prevEnd.IsZero() || rs[i].start.Before(prevEnd) {
				rep.failf("task %s ran twice at once: on agent %d from %v and on agent %d from %v",
					id, rs[i-1].agent, rs[i-1].start.Format(time.StampMilli), rs[i].agent, rs[i].start.Format(time.StampMilli))
				break
			}
		}
	}
}

func getText(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// histogramQuantile computes a quantile of a Prometheus histogram from its
// text exposition as histogram_quantile does (linear within a bucket), and
// returns it with the observation count.
func histogramQuantile(body, name string, q float64) (time.Duration, uint64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		leS, after, _ := strings.Cut(rest, `"}`)
		le, err1 := strconv.ParseFloat(leS, 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(after), 64)
		if err1 == nil && err2 == nil {
			bs = append(bs, bucket{le, n})
		}
	}
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0
	}
	total := bs[len(bs)-1].n
	rank := q * total
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(prevLe * float64(time.Second)), uint64(total)
			}
			frac := 0.0
			if b.n > prevN {
				frac = (rank - prevN) / (b.n - prevN)
			}
			return time.Duration((prevLe + frac*(b.le-prevLe)) * float64(time.Second)), uint64(total)
		}
		prevLe, prevN = b.le, b.n
	}
	return 0, uint64(total)
}

// counterByLabel sums a counter's samples by one label's value.
func counterByLabel(body, name, label string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(name+"{")) {
			continue
		}
		s := string(line)
		_, rest, _ := strings.Cut(s, label+`="`)
		val, _, _ := strings.Cut(rest, `"`)
		i := strings.LastIndexByte(s, ' ')
		n, err := strconv.ParseFloat(s[i+1:], 64)
		if err == nil {
			out[val] += n
		}
	}
	return out
}
