package soak

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

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

// fleet is the light agents, their shared listener and their loops.
type fleet struct {
	agents []*lightAgent
	rec    *recorder
	errs   *errorLog
	hbOK   atomic.Uint64
	hbSkip atomic.Uint64
	cuts   []atomic.Bool // by zone

	srv     *http.Server
	tr      *http.Transport
	stopRun context.CancelFunc
	loops   sync.WaitGroup // the agents' run loops
	serving sync.WaitGroup // the listener
}

// startFleet creates cfg.Agents light agents spread over cfg.Zones, serves
// their assignment endpoints on one loopback listener and starts their loops
// heartbeating to cpURL.
func startFleet(cfg Config, cc core.Config, cpURL string) (*fleet, error) {
	f := &fleet{rec: &recorder{execs: map[core.Lease][]*execRecord{}}, errs: &errorLog{}, cuts: make([]atomic.Bool, cfg.Zones)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	f.tr = http.DefaultTransport.(*http.Transport).Clone()
	f.tr.MaxIdleConns, f.tr.MaxIdleConnsPerHost = cfg.Agents+64, cfg.Agents+64
	hc := &http.Client{Transport: f.tr}
	f.agents = make([]*lightAgent, cfg.Agents)
	for i := range f.agents {
		zone := i % cfg.Zones
		a := &lightAgent{n: i, zone: zone, cut: &f.cuts[zone], rec: f.rec, errs: f.errs,
			hbOK: &f.hbOK, hbSkip: &f.hbSkip, timers: map[core.Lease]*time.Timer{}, recs: map[core.Lease]*execRecord{},
			kick:   make(chan struct{}, 1),
			client: &fnet.HTTPClient{HTTP: hc, Token: agentToken, CPURL: cpURL}}
		a.ag, err = core.NewAgent(core.AgentConfig{ID: core.AgentID(fmt.Sprintf("soak-%04d", i)), Domain: fmt.Sprintf("zone-%d", zone),
			Slots: cfg.Slots, Address: fmt.Sprintf("%s/a/%d", base, i), HeartbeatInterval: cc.HeartbeatInterval,
			ResultsMax: 1024, Incarnation: uint64(i + 1)}, a)
		if err != nil {
			ln.Close()
			return nil, err
		}
		f.agents[i] = a
	}
	f.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, Handler: http.HandlerFunc(f.route)}
	f.serving.Add(1)
	go func() { defer f.serving.Done(); _ = f.srv.Serve(ln) }()
	ctx, stop := context.WithCancel(context.Background())
	f.stopRun = stop
	for _, a := range f.agents {
		f.loops.Add(1)
		go func() { defer f.loops.Done(); a.run(ctx) }()
	}
	return f, nil
}

// route hands /a/<n>/<path> to agent n.
func (f *fleet) route(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/a/")
	num, path, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 0 || n >= len(f.agents) {
		fnet.WriteError(w, http.StatusNotFound, "not_found", r.URL.Path)
		return
	}
	f.agents[n].serve(w, r, "/"+path)
}

// cut cuts zone off: its agents stop heartbeating and answer the cp 503.
func (f *fleet) cut(zone int) { f.cuts[zone].Store(true) }

// restore reconnects zone and wakes its agents so they heartbeat at once.
func (f *fleet) restore(zone int) {
	f.cuts[zone].Store(false)
	for _, a := range f.agents {
		if a.zone == zone {
			a.wake()
		}
	}
}

// stop ends the agents' loops and sleeps and closes their listener.
func (f *fleet) stop() {
	f.stopRun()
	f.loops.Wait()
	for _, a := range f.agents {
		a.mu.Lock()
		for _, t := range a.timers {
			t.Stop()
		}
		a.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = f.srv.Shutdown(ctx)
	cancel()
	f.serving.Wait()
	f.tr.CloseIdleConnections()
}
