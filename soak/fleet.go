package soak

import (
	"context"
	"fmt"
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

// lightAgent is a core.Agent, a sleep executor, a heartbeat loop and a
// poll loop, with an HTTP/2 connection of its own to the cp.
type lightAgent struct {
	n        int
	zone     int
	cut      *atomic.Bool
	rec      *recorder
	client   *fnet.HTTPClient
	errs     *errorLog
	hbOK     *atomic.Uint64
	hbSkip   *atomic.Uint64
	pollOK   *atomic.Uint64
	pollSkip *atomic.Uint64

	pollMu     sync.Mutex
	pollCancel context.CancelFunc // of the poll in flight, cut by a zone cut

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

// pollLoop long-polls the cp for this agent's assignments and cancels and
// hands them to the core, acknowledging assignments on the next poll. A cut
// zone's polls fail (a poll in flight is cut with it); the loop retries
// every 50ms.
func (a *lightAgent) pollLoop(ctx context.Context) {
	var in fnet.Inbox
	var acks []core.AssignAck
	for ctx.Err() == nil {
		if a.cut.Load() {
			a.pollSkip.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		a.pollMu.Lock()
		a.pollCancel = cancel
		a.pollMu.Unlock()
		reply, err := a.client.Poll(pctx, fnet.PollRequest{AgentID: a.ag.ID(), Incarnation: uint64(a.n + 1),
			Epoch: in.Epoch, After: in.After, Acks: acks, WaitMillis: 10_000})
		cancel()
		if err != nil {
			if ctx.Err() == nil && !a.cut.Load() {
				a.errs.add(fmt.Sprintf("poll of agent %d: %v", a.n, err))
			}
			continue
		}
		a.pollOK.Add(1)
		acks = nil
		msgs := in.Accept(*reply)
		if len(msgs) == 0 {
			continue
		}
		now := time.Now()
		a.mu.Lock()
		for _, m := range msgs {
			if m.Assign != nil {
				acks = append(acks, a.ag.Assign(now, *m.Assign))
			} else {
				a.ag.Cancel(now, *m.Cancel)
			}
		}
		a.mu.Unlock()
		a.wake()
	}
}

// cutPoll breaks the poll in flight, as a partition would.
func (a *lightAgent) cutPoll() {
	a.pollMu.Lock()
	defer a.pollMu.Unlock()
	if a.pollCancel != nil {
		a.pollCancel()
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

// fleet is the light agents and their loops.
type fleet struct {
	agents   []*lightAgent
	rec      *recorder
	errs     *errorLog
	hbOK     atomic.Uint64
	hbSkip   atomic.Uint64
	pollOK   atomic.Uint64
	pollSkip atomic.Uint64
	cuts     []atomic.Bool // by zone

	stopRun context.CancelFunc
	loops   sync.WaitGroup // the agents' run and poll loops
}

// startFleet creates cfg.Agents light agents spread over cfg.Zones, each
// with its own connection to cpURL (HTTP/2; two HTTP/1.1 ones with
// cfg.HTTP1, as the agent command's default), and starts
// their heartbeat and poll loops.
func startFleet(cfg Config, cc core.Config, cpURL string) (*fleet, error) {
	f := &fleet{rec: &recorder{execs: map[core.Lease][]*execRecord{}}, errs: &errorLog{}, cuts: make([]atomic.Bool, cfg.Zones)}
	f.agents = make([]*lightAgent, cfg.Agents)
	for i := range f.agents {
		zone := i % cfg.Zones
		a := &lightAgent{n: i, zone: zone, cut: &f.cuts[zone], rec: f.rec, errs: f.errs,
			hbOK: &f.hbOK, hbSkip: &f.hbSkip, pollOK: &f.pollOK, pollSkip: &f.pollSkip,
			timers: map[core.Lease]*time.Timer{}, recs: map[core.Lease]*execRecord{},
			kick:   make(chan struct{}, 1),
			client: &fnet.HTTPClient{HTTP: fnet.NewCPClient(cpURL, cfg.HTTP1), Token: agentToken, CPURL: cpURL}}
		var err error
		a.ag, err = core.NewAgent(core.AgentConfig{ID: core.AgentID(fmt.Sprintf("soak-%04d", i)), Domain: fmt.Sprintf("zone-%d", zone),
			Slots: cfg.Slots, HeartbeatInterval: cc.HeartbeatInterval,
			ResultsMax: 1024, Incarnation: uint64(i + 1)}, a)
		if err != nil {
			return nil, err
		}
		f.agents[i] = a
	}
	ctx, stop := context.WithCancel(context.Background())
	f.stopRun = stop
	for _, a := range f.agents {
		f.loops.Add(2)
		go func() { defer f.loops.Done(); a.run(ctx) }()
		go func() { defer f.loops.Done(); a.pollLoop(ctx) }()
	}
	return f, nil
}

// cut cuts zone off: its agents' heartbeats and polls fail (a poll in
// flight is broken).
func (f *fleet) cut(zone int) {
	f.cuts[zone].Store(true)
	for _, a := range f.agents {
		if a.zone == zone {
			a.cutPoll()
		}
	}
}

// restore reconnects zone and wakes its agents so they heartbeat at once.
func (f *fleet) restore(zone int) {
	f.cuts[zone].Store(false)
	for _, a := range f.agents {
		if a.zone == zone {
			a.wake()
		}
	}
}

// stop ends the agents' loops and sleeps and closes their connections.
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
	for _, a := range f.agents {
		a.client.HTTP.CloseIdleConnections()
	}
}
