package sim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Run executes one simulation. It returns the result and, when an invariant
// broke, a *Violation error (the result then holds what happened so far).
// Invalid options are an ErrOptions error.
func Run(opts Options) (Result, error) {
	s, err := newSim(opts)
	if err != nil {
		return Result{}, err
	}
	s.run()
	if s.res.Violation != nil {
		return s.res, s.res.Violation
	}
	return s.res, nil
}

// simAgent is one simulated agent process and its host.
type simAgent struct {
	idx  int
	id   string
	zone string
	// trace fields, built once: "agent": id, and per message kind and
	// direction "kind", "from" and "to" (see traceRoute)
	trAgent []byte
	trRoute [numTracedKinds][2][]byte
	rng     *rand.Rand // per-agent stream: network draws on its links
	ag      *core.Agent
	exec    *simExec
	inc     uint64 // incarnation; bumped by every crash
	up      bool

	wakeAt  time.Duration
	wakeSet bool

	cut       int // active partitions separating it from the cp
	stuck     int // active stuck-worker faults
	failing   int // active failing-zone faults
	slow      int
	latency   time.Duration // extra one-way latency while slow
	factor    float64       // work slowdown while slow
	pendingHB []uint64      // heartbeats sent and not yet answered or failed (a few)

	// The agent's side of the poll protocol (poll.go).
	inbox        fnet.Inbox       // cursor: the last message processed
	prev         fnet.Inbox       // the cursor before the last batch (FaultBatchDuplicated)
	poll         uint64           // the outstanding poll's number, 0: none
	pollN        uint64           // polls this incarnation sent
	pollDeadline time.Duration    // when the outstanding poll times out
	timeoutFor   uint64           // the poll a timeout event is pending for
	backoff      time.Duration    // before the next poll after a failed one
	acks         []core.AssignAck // answers no replied poll has carried yet
	carried      int              // how many of acks the outstanding poll carries
	ackDelay     time.Duration    // FaultAckDelayed: the next poll travels this late
	// The cp's side: its mailbox for the agent and the polls it holds.
	box    *fnet.Mailbox
	parked []parkedPoll
	woken  bool // in sim.woken
}

// pendingSubmit is a submission the workload will make (again).
type pendingSubmit struct {
	in       core.SubmitInput
	origID   core.TaskID // for resubmissions: the task the key created
	conflict bool        // the body differs: expect a refusal
	poison   bool
	hang     bool
	w        int // workload index
	// ambiguous: the submission was in flight when the cp crashed; its
	// retry with the same key finds origID (committed) or nothing (lost).
	ambiguous bool
}

type sim struct {
	o   Options
	rng *rand.Rand

	now   time.Duration
	t     time.Time
	q     eventQueue
	seq   uint64
	count uint64

	cp     *core.ControlPlane
	cpGen  int     // cp process generation: bumped by every restart and crash
	log    cpLog   // the cp's log, in runs that restart it
	down   *cpDown // the cp process is not running
	agents []*simAgent
	byID   map[string]*simAgent

	tr  *tracer
	m   *model
	res Result
	fp  *faultPoints // nil without Options.FaultPoints

	wires     []*wire       // free list
	arrival   time.Duration // when the last message send put on a link arrives
	woken     []*simAgent   // agents with parked polls and new messages
	parkSeq   uint64        // parked polls so far
	waits     []parkedWait  // the cp's parked polls by the end of their wait
	waitsHead int           // waits before it are done
	cpEpoch   uint64        // the cp process's mailbox epoch (empty replies)
	boxEpoch  uint64        // the next new mailbox's epoch
	// live is, per task, the attempt running on an agent (InvOneExecution).
	live        map[core.TaskID]liveExec
	wedged      map[core.Lease]bool // attempts FaultAgentWedged fired on
	workloadSeq []int               // per workload: tasks generated
	lastCheck   time.Duration

	// For the dispatch liveness check (checkDispatch): faults not over
	// yet, the last assignment, and since when work has been waiting on
	// open capacity (-1: it is not).
	faultsPending int
	lastDispatch  time.Duration
	idleSince     time.Duration
}

func newSim(opts Options) (*sim, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &sim{
		o:    o,
		rng:  rand.New(rand.NewPCG(o.Seed, 0)),
		t:    epoch,
		byID: make(map[string]*simAgent, o.Agents),
		live: map[core.TaskID]liveExec{}, wedged: map[core.Lease]bool{},
		tr: newTracer(o.Trace, o.LastEvents),
	}
	s.res = Result{Name: o.Name, Seed: o.Seed, Refused: map[core.RefusalKind]int{}}
	s.faultsPending, s.idleSince = len(o.Faults), -1
	if len(o.FaultPoints) > 0 {
		s.fp = newFaultPoints(s)
		s.res.FaultPointsFired = map[core.FaultPoint]int{}
		s.o.Core.FaultPoints = s.fp // restarted cps get it too
	}
	s.m = newModel(s)
	cp, err := core.NewControlPlane(s.o.Core, epoch)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOptions, err)
	}
	s.attachCP(cp, true)
	if o.usesLog() {
		s.startLog()
	}
	fleet, zones := o.layout()
	for i, id := range fleet {
		a := &simAgent{idx: i, id: id, zone: ZoneName(zones[i]),
			rng: agentRand(o.Seed, id), factor: 1, trAgent: appendField(nil, "agent", id)}
		s.agents = append(s.agents, a)
		s.byID[id] = a
	}
	s.openMailboxes()
	for _, a := range s.agents {
		s.startAgent(a)
	}
	s.push(event{at: o.TickInterval, kind: evCPTick})
	s.push(event{at: 0, kind: evSample})
	s.workloadSeq = make([]int, len(o.Workload))
	for i, w := range o.Workload {
		if w.Burst > 0 {
			s.push(event{at: w.Start, kind: evSubmit, node: i, num: 1})
		}
		if w.RatePerSecond > 0 {
			// Like every later arrival, the first one is within [Start, End).
			if first := w.Start + s.interarrival(w.RatePerSecond); first < w.End {
				s.push(event{at: first, kind: evSubmit, node: i})
			}
		}
	}
	for i, f := range o.Faults {
		s.push(event{at: f.At, kind: evFaultStart, node: i})
		if f.Until > 0 && f.Kind != FaultCPRestart && f.Kind != FaultCPCrash && f.Kind != FaultCPFailover {
			s.push(event{at: f.Until, kind: evFaultEnd, node: i})
		}
	}
	for i, op := range o.Ops {
		s.push(event{at: op.At, kind: evOperator, node: i})
	}
	if o.HealAt > 0 {
		s.push(event{at: o.HealAt, kind: evHeal})
	}
	return s, nil
}

// agentRand is agent id's own random stream: derived from the seed and a
// hash of the id only, so adding an agent does not reshuffle the others.
func agentRand(seed uint64, id string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(id))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// attachCP makes cp the running control plane process. A fresh one's
// timeline (the initial mode, recorded before the observer was set) is
// taken in; a recovered one's was seen before it died.
func (s *sim) attachCP(cp *core.ControlPlane, fresh bool) {
	s.cp = cp
	s.res.CPGenerations++
	gen := s.cpGen
	cp.OnEvent(func(e core.Event) {
		s.onTimeline(gen, e)
		s.mailEvent(e)
	})
	if fresh {
		for _, e := range cp.Timeline().Since(0, 0) {
			s.onTimeline(gen, e)
		}
	}
}

func (s *sim) push(e event) {
	s.seq++
	e.seq = s.seq
	s.q.push(e)
}

func (s *sim) interarrival(rate float64) time.Duration {
	return time.Duration(s.rng.ExpFloat64() / rate * float64(time.Second))
}

func (s *sim) run() {
	for s.q.len() > 0 && s.res.Violation == nil {
		if s.q.peek().at > s.o.Duration {
			break
		}
		e := s.q.pop()
		s.now, s.t = e.at, epoch.Add(e.at)
		s.count++
		if s.count > uint64(s.o.EventsLimit) {
			s.violate(InvSimLimit, fmt.Sprintf("more than %d simulator events", s.o.EventsLimit))
			break
		}
		s.handle(e)
		if s.res.Violation == nil {
			s.checkCheap()
		}
	}
	if s.res.Violation == nil {
		s.now, s.t = s.o.Duration, epoch.Add(s.o.Duration)
		s.fullCheck()
		s.snapshotCheck(s.cp.DebugView(s.t))
	}
	if s.res.Violation == nil {
		s.checkLiveness()
	}
	s.finish()
}

func (s *sim) handle(e event) {
	switch e.kind {
	case evCPTick:
		if s.down != nil {
			s.push(event{at: s.now + s.o.TickInterval, kind: evCPTick})
			return // no process, no timers
		}
		s.traceEv(e, "tick")
		s.tr.end()
		_, _ = s.apply(core.TickInput{})
		s.afterCP()
		s.checkDispatch()
		if s.now-s.lastCheck >= s.o.FullCheckInterval {
			s.lastCheck = s.now
			s.fullCheck()
		}
		s.push(event{at: s.now + s.o.TickInterval, kind: evCPTick})
	case evAgentWake:
		a := s.agents[e.node]
		if e.gen != a.inc || !a.up || !a.wakeSet || e.at != a.wakeAt {
			return
		}
		a.wakeSet = false
		s.wake(a)
	case evDeliver:
		s.deliver(e)
	case evHeartbeatFailed:
		a := s.agents[e.node]
		if e.gen != a.inc || !a.up {
			return
		}
		if !a.hbDone(e.num) {
			return // replied meanwhile
		}
		s.traceEv(e, "hb_failed")
		s.tr.raw(a.trAgent)
		s.tr.int("hb", int64(e.num))
		s.tr.end()
		a.ag.HeartbeatFailed(s.t, e.num)
		s.reschedule(a)
	case evExecDone:
		s.execDone(e)
	case evSubmit:
		s.workloadSubmit(e)
	case evResubmit:
		s.submit(e.sub)
	case evFaultStart:
		s.faultStart(e.node)
	case evFaultEnd:
		s.faultEnd(e.node)
	case evFlapDown:
		f := s.o.Faults[e.node]
		s.traceEv(e, "flap_down")
		s.tr.end()
		s.note(fmt.Sprintf("fault: flap: %v partitioned from cp for %v", f.Agents, f.Down))
		for _, id := range f.Agents {
			s.byID[id].cut++
		}
		s.push(event{at: s.now + f.Down, kind: evFlapUp, node: e.node})
	case evFlapUp:
		f := s.o.Faults[e.node]
		s.traceEv(e, "flap_up")
		s.tr.end()
		for _, id := range f.Agents {
			s.byID[id].cut--
		}
		s.healed()
		if s.now+f.Up+f.Down <= f.Until {
			s.push(event{at: s.now + f.Up, kind: evFlapDown, node: e.node})
		} else {
			s.note(fmt.Sprintf("heal: flap of %v over", f.Agents))
			s.faultsPending--
		}
	case evOperator:
		s.operator(e)
	case evSample:
		s.sample()
		s.push(event{at: s.now + s.o.SampleInterval, kind: evSample})
	case evRestartPoll:
		s.maybeRestart(e.node)
	case evHeal:
		s.heal()
	case evCPRecover:
		s.startCP()
	case evPoll:
		if a := s.agents[e.node]; e.gen == a.inc && a.up {
			s.sendPoll(a)
		}
	case evPollTimeout:
		if a := s.agents[e.node]; e.gen == a.inc && a.up && a.poll == e.num {
			s.pollFailed(a, e.num, "timeout")
		}
	case evPollWaitEnd:
		s.pollWaitEnd(e)
	}
}

func (s *sim) traceEv(e event, name string) {
	s.tr.begin(s.now, s.count, name)
}

func (s *sim) note(text string) {
	s.res.Notes = append(s.res.Notes, Note{At: s.now, Text: text})
	s.tr.begin(s.now, s.count, "note")
	s.tr.str("text", text)
	s.tr.end()
}

func (s *sim) healed() {
	if s.now > s.res.HealedAt {
		s.res.HealedAt = s.now
	}
}

// ---- agents ----

func (s *sim) startAgent(a *simAgent) {
	a.exec = &simExec{s: s, a: a, running: map[core.Lease]bool{}}
	cfg := core.AgentConfig{
		ID: core.AgentID(a.id), Domain: a.zone, Slots: s.o.SlotsPerAgent, Address: "sim://" + a.id,
		HeartbeatInterval: s.o.AgentHeartbeat, ResultsMax: 1024, Incarnation: a.inc + 1,
	}
	if s.fp != nil {
		cfg.FaultPoints = s.fp // never a nil pointer in the interface
	}
	ag, err := core.NewAgent(cfg, a.exec)
	if err != nil {
		panic(fmt.Sprintf("sim: agent %s: %v", a.id, err)) // ids and zones are ours: a programmer error
	}
	a.ag, a.up, a.wakeSet = ag, true, false
	a.pendingHB = a.pendingHB[:0]
	a.inbox, a.prev, a.poll, a.pollN, a.timeoutFor, a.backoff = fnet.Inbox{}, fnet.Inbox{}, 0, 0, 0, 0
	a.acks, a.carried, a.ackDelay = nil, 0, 0
	s.reschedule(a)
	s.sendPoll(a)
}

// hbDone forgets pending heartbeat seq and reports whether it was pending.
func (a *simAgent) hbDone(seq uint64) bool {
	for i, p := range a.pendingHB {
		if p == seq {
			a.pendingHB = append(a.pendingHB[:i], a.pendingHB[i+1:]...)
			return true
		}
	}
	return false
}

// reschedule makes sure the agent is woken by its NextWake.
func (s *sim) reschedule(a *simAgent) {
	if !a.up {
		return
	}
	next := a.ag.NextWake(s.t).Sub(epoch)
	if next < s.now {
		next = s.now
	}
	if a.wakeSet && a.wakeAt <= next {
		return
	}
	a.wakeAt, a.wakeSet = next, true
	s.push(event{at: next, kind: evAgentWake, node: a.idx, gen: a.inc})
}

func (s *sim) wake(a *simAgent) {
	hb, ok := a.ag.Tick(s.t)
	if ok {
		s.tr.begin(s.now, s.count, "hb_send")
		s.tr.raw(a.trAgent)
		s.tr.int("hb", int64(hb.Seq))
		s.tr.int("running", int64(len(hb.Running)))
		s.tr.int("results", int64(len(hb.Results)))
		s.tr.end()
		a.pendingHB = append(a.pendingHB, hb.Seq)
		w := s.newWire()
		w.hb = hb
		w.m = fnet.Message{From: a.id, To: fnet.CPNode, Kind: fnet.KindHeartbeat, Seq: hb.Seq, Heartbeat: &w.hb}
		if s.fire(FaultHeartbeatLate, a.id, "", 0) {
			// The request times out at the agent; the cp gets it later.
			w.late = true
			w.extra = s.o.RequestTimeout + s.lateDelay(s.o.Core.AssignTimeout+s.o.Core.HeartbeatTimeout)
			s.push(event{at: s.now + s.o.RequestTimeout, kind: evHeartbeatFailed, node: a.idx, gen: a.inc, num: hb.Seq})
			s.send(w, a, true)
		} else if !s.send(w, a, true) {
			s.push(event{at: s.now + s.o.RequestTimeout, kind: evHeartbeatFailed, node: a.idx, gen: a.inc, num: hb.Seq})
		}
	}
	s.reschedule(a)
}

func (s *sim) newWire() *wire {
	if n := len(s.wires); n > 0 {
		w := s.wires[n-1]
		s.wires = s.wires[:n-1]
		return w
	}
	return &wire{}
}

func (s *sim) freeWire(w *wire) {
	*w = wire{}
	s.wires = append(s.wires, w)
}

// send puts w on the link between the cp and agent a, and hands it over. It
// reports whether the message left (it may still be dropped at delivery if
// a partition starts meanwhile).
func (s *sim) send(w *wire, a *simAgent, toCP bool) bool {
	n := s.o.Network
	r := a.rng
	if a.cut > 0 || !a.up || toCP && s.down != nil {
		s.freeWire(w)
		return false
	}
	if n.LossProbability > 0 && r.Float64() < n.LossProbability {
		s.tr.begin(s.now, s.count, "lost")
		s.tr.str("kind", string(w.m.Kind))
		s.tr.str("from", w.m.From)
		s.tr.str("to", w.m.To)
		s.tr.end()
		s.freeWire(w)
		return false
	}
	gen := a.inc
	if toCP {
		gen = uint64(s.cpGen)
	}
	lat := s.latency(a) + w.extra
	if n.ReorderProbability > 0 && r.Float64() < n.ReorderProbability {
		lat += time.Duration(r.Int64N(int64(n.ReorderDelay) + 1))
	}
	if n.DuplicateProbability > 0 && r.Float64() < n.DuplicateProbability {
		dup := s.newWire()
		w.cloneInto(dup)
		s.push(event{at: s.now + s.latency(a), kind: evDeliver, node: a.idx, gen: gen, msg: dup, num: boolNum(toCP)})
	}
	s.arrival = s.now + lat
	s.push(event{at: s.arrival, kind: evDeliver, node: a.idx, gen: gen, msg: w, num: boolNum(toCP)})
	return true
}

// The message kinds whose kind, from and to fields agents keep built.
var tracedKinds = [...]fnet.Kind{fnet.KindHeartbeat, fnet.KindHeartbeatReply, kindPoll, kindPollReply}

const numTracedKinds = len(tracedKinds)

// traceRoute writes m's kind, from and to fields, as the three str calls
// would, from agent a's fields built at first use when m runs between a
// and the cp.
func (s *sim) traceRoute(a *simAgent, m *fnet.Message) {
	dir := -1
	switch {
	case m.From == a.id && m.To == fnet.CPNode:
		dir = 1
	case m.From == fnet.CPNode && m.To == a.id:
		dir = 0
	}
	k := slices.Index(tracedKinds[:], m.Kind)
	if dir < 0 || k < 0 {
		s.tr.str("kind", string(m.Kind))
		s.tr.str("from", m.From)
		s.tr.str("to", m.To)
		return
	}
	f := &a.trRoute[k][dir]
	if *f == nil {
		b := appendField(nil, "kind", string(m.Kind))
		b = appendField(b, "from", m.From)
		*f = appendField(b, "to", m.To)
	}
	s.tr.raw(*f)
}

func boolNum(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (s *sim) latency(a *simAgent) time.Duration {
	n := s.o.Network
	d := n.LatencyMin
	if n.LatencyMean > 0 {
		d += time.Duration(a.rng.ExpFloat64() * float64(n.LatencyMean))
	}
	d = min(d, n.LatencyMax)
	return d + a.latency
}

func (s *sim) deliver(e event) {
	if k := e.msg.m.Kind; k == kindPoll || k == kindPollReply {
		s.deliverPoll(e)
		return
	}
	defer s.freeWire(e.msg)
	s.deliverMsg(e, &e.msg.m, e.msg.late)
}

func (s *sim) deliverMsg(e event, m *fnet.Message, late bool) {
	a := s.agents[e.node]
	toCP := e.num == 1
	s.traceEv(e, "deliver")
	s.traceRoute(a, m)
	if m.Seq != 0 {
		s.tr.int("hb", int64(m.Seq))
	}
	// A partition or crash that began in flight drops the message; so does
	// a restart of the receiver (its connections are gone).
	if a.cut > 0 || !a.up || toCP && e.gen != uint64(s.cpGen) || !toCP && e.gen != a.inc {
		s.tr.str("dropped", "partition, crash or restart")
		s.tr.end()
		if m.Kind == fnet.KindHeartbeat && a.up && e.gen == uint64(s.cpGen) {
			s.push(event{at: s.now + s.o.RequestTimeout, kind: evHeartbeatFailed, node: a.idx, gen: a.inc, num: m.Seq})
		}
		return
	}
	s.tr.end()
	if toCP {
		switch m.Kind {
		case fnet.KindHeartbeat:
			res, err := s.apply(m.Heartbeat) // by pointer: no boxing copy
			s.afterCP()
			if err != nil {
				s.tr.begin(s.now, s.count, "hb_refused")
				s.tr.raw(a.trAgent)
				s.tr.str("error", err.Error())
				s.tr.end()
				s.push(event{at: s.now, kind: evHeartbeatFailed, node: a.idx, gen: a.inc, num: m.Seq})
				return
			}
			if late {
				return // the agent's request timed out: nobody reads the reply
			}
			w := s.newWire()
			w.reply = res.Heartbeat
			w.m = fnet.Message{From: fnet.CPNode, To: a.id, Kind: fnet.KindHeartbeatReply, Seq: m.Seq, HeartbeatReply: &w.reply}
			if !s.send(w, a, false) {
				s.push(event{at: s.now + s.o.RequestTimeout, kind: evHeartbeatFailed, node: a.idx, gen: a.inc, num: m.Seq})
			}
		}
		return
	}
	switch m.Kind {
	case fnet.KindHeartbeatReply:
		a.hbDone(m.Seq)
		a.ag.HeartbeatReplied(s.t, m.Seq, *m.HeartbeatReply)
	}
	s.reschedule(a)
}

// afterCP puts the control plane's outbox into the agents' mailboxes,
// answers the polls waiting for it, and checks what it produced.
func (s *sim) afterCP() {
	for _, o := range s.cp.TakeOutbox() {
		if o.Assign != nil {
			s.m.checkAssignMessage(o)
		}
		s.post(o)
	}
	s.wakePolls()
	if d := s.cp.QueueDepth(); d > s.res.MaxQueueDepth {
		s.res.MaxQueueDepth = d
	}
	s.m.checkCounts()
}

// ---- executor ----

// simExec is an agent's simulated executor: a sleep task finishes after its
// duration (times the slow factor); poison tasks and failing zones fail;
// hang tasks and stuck workers never finish.
type simExec struct {
	s       *sim
	a       *simAgent
	running map[core.Lease]bool
}

// liveExec is an attempt running on an agent process (incarnation inc).
type liveExec struct {
	agent   int
	inc     uint64
	attempt int
}

// running reports whether the agent process that started l still runs:
// a crash ends its executions (the agent is truly lost).
func (s *sim) running(l liveExec) bool {
	a := s.agents[l.agent]
	return a.up && a.inc == l.inc
}

func (x *simExec) Start(e core.Execution) {
	s, a := x.s, x.a
	l := core.Lease{TaskID: e.TaskID, Attempt: e.Attempt}
	if prev, ok := s.live[e.TaskID]; ok && s.running(prev) && !s.wedged[core.Lease{TaskID: e.TaskID, Attempt: prev.attempt}] {
		s.violate(InvOneExecution, fmt.Sprintf("task %s attempt %d starts on %s while attempt %d still runs on %s",
			e.TaskID, e.Attempt, a.id, prev.attempt, s.agents[prev.agent].id))
	}
	s.live[e.TaskID] = liveExec{agent: a.idx, inc: a.inc, attempt: e.Attempt}
	x.running[l] = true
	mt := s.m.task(e.TaskID)
	if mt != nil {
		mt.rec.Executions++
	}
	s.tr.begin(s.now, s.count, "exec_start")
	s.tr.raw(a.trAgent)
	s.tr.str("task", string(e.TaskID))
	s.tr.int("attempt", int64(e.Attempt))
	if a.stuck > 0 || mt != nil && mt.rec.Hang {
		s.tr.str("hang", "stuck worker")
		s.tr.end()
		return
	}
	s.tr.end()
	d := time.Duration(e.Spec.DurationMS) * time.Millisecond
	if e.Spec.Kind == core.KindExec {
		d = 100 * time.Millisecond
	}
	if a.slow > 0 && a.factor > 1 {
		d = time.Duration(float64(d) * a.factor)
	}
	out := core.OutcomeSucceeded
	if a.failing > 0 || mt != nil && mt.rec.Poison {
		out = core.OutcomeFailed
	}
	s.push(event{at: s.now + d, kind: evExecDone, node: a.idx, gen: a.inc, ex: &execEnd{task: e.TaskID, att: e.Attempt, out: out}})
}

func (x *simExec) Stop(task core.TaskID, attempt int) {
	delete(x.running, core.Lease{TaskID: task, Attempt: attempt})
	x.s.ended(x.a, task, attempt)
}

// ended forgets a's execution of the attempt in live.
func (s *sim) ended(a *simAgent, task core.TaskID, attempt int) {
	if l, ok := s.live[task]; ok && l.agent == a.idx && l.inc == a.inc && l.attempt == attempt {
		delete(s.live, task)
	}
}

func (s *sim) execDone(e event) {
	a, x := s.agents[e.node], e.ex
	if e.gen != a.inc || !a.up {
		return
	}
	l := core.Lease{TaskID: x.task, Attempt: x.att}
	if !a.exec.running[l] {
		return // stopped meanwhile
	}
	delete(a.exec.running, l)
	s.ended(a, x.task, x.att)
	s.traceEv(e, "exec_done")
	s.tr.raw(a.trAgent)
	s.tr.str("task", string(x.task))
	s.tr.int("attempt", int64(x.att))
	s.tr.str("outcome", string(x.out))
	s.tr.end()
	r := core.Result{TaskID: x.task, Attempt: x.att, Outcome: x.out}
	if x.out == core.OutcomeSucceeded {
		if mt := s.m.task(x.task); mt != nil {
			mt.rec.Successes++
		}
	} else {
		r.ExitCode, r.Error = 1, "simulated failure"
	}
	a.ag.Finished(s.t, r)
	s.reschedule(a)
}

// ---- workload ----

func (s *sim) workloadSubmit(e event) {
	w := s.o.Workload[e.node]
	n := 1
	if e.num == 1 {
		n = w.Burst // the burst at Start
	} else if next := s.now + s.interarrival(w.RatePerSecond); next < w.End {
		s.push(event{at: next, kind: evSubmit, node: e.node})
	}
	for range n {
		s.submit(s.generate(e.node))
	}
}

// generate draws one task from workload i with the run's random source.
func (s *sim) generate(i int) *pendingSubmit {
	w := s.o.Workload[i]
	r := s.rng
	s.workloadSeq[i]++
	spec := core.TaskSpec{Kind: core.KindSleep, TimeoutSeconds: w.TimeoutSeconds, MaxAttempts: w.MaxAttempts}
	total := w.PriorityWeights[0] + w.PriorityWeights[1] + w.PriorityWeights[2]
	spec.Priority = core.PriorityNormal
	if total > 0 {
		x := r.Float64() * total
		switch {
		case x < w.PriorityWeights[0]:
			spec.Priority = core.PriorityHigh
		case x < w.PriorityWeights[0]+w.PriorityWeights[1]:
			spec.Priority = core.PriorityNormal
		default:
			spec.Priority = core.PriorityLow
		}
	}
	if len(w.Domains) > 0 && r.Float64() < w.DomainFraction {
		spec.Domain = w.Domains[r.IntN(len(w.Domains))]
	}
	d := w.DurationMin
	if w.DurationMax > w.DurationMin {
		d += time.Duration(r.Int64N(int64(w.DurationMax - w.DurationMin)))
	}
	spec.DurationMS = d.Milliseconds()
	p := &pendingSubmit{in: core.SubmitInput{Spec: spec}, w: i}
	p.poison = w.PoisonFraction > 0 && r.Float64() < w.PoisonFraction
	p.hang = !p.poison && w.HangFraction > 0 && r.Float64() < w.HangFraction
	if w.IdempotentFraction > 0 && r.Float64() < w.IdempotentFraction {
		p.in.IdempotencyKey = fmt.Sprintf("%s-%d-%d", orName(w.Name, i), s.cpGen, s.workloadSeq[i])
	}
	return p
}

func orName(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("w%d", i)
	}
	return name
}

func (s *sim) submit(p *pendingSubmit) {
	if s.down != nil {
		// No process: the connection is refused. The client gives up on
		// this one; nothing was accepted.
		s.res.Unavailable++
		s.tr.begin(s.now, s.count, "submit")
		s.tr.str("key", p.in.IdempotencyKey)
		s.tr.str("refused", "cp-down")
		s.tr.end()
		return
	}
	before, depth := s.cp.Timeline().LastSeq(), s.cp.QueueDepth()
	res, err := s.apply(p.in)
	task, replayed := res.Task, res.Replayed
	s.tr.begin(s.now, s.count, "submit")
	s.tr.str("key", p.in.IdempotencyKey)
	s.tr.str("prio", p.in.Spec.Priority.String())
	s.tr.str("domain", p.in.Spec.Domain)
	if err != nil {
		kind := core.RefusalKindOf(err)
		s.res.Refused[kind]++
		s.tr.str("refused", string(kind))
		s.tr.end()
		if s.cp.Timeline().LastSeq() != before || s.cp.QueueDepth() != depth {
			s.violate(InvQueueBound, fmt.Sprintf("refused submission (%v) left a trace: timeline %d→%d, queue %d→%d",
				err, before, s.cp.Timeline().LastSeq(), depth, s.cp.QueueDepth()))
			return
		}
		if p.conflict && !errors.Is(err, core.ErrIdempotencyConflict) {
			s.violate(InvIdempotency, fmt.Sprintf("key %q reused with another body refused with %v, want a conflict", p.in.IdempotencyKey, err))
		}
		if p.origID != "" && !p.conflict && s.m.task(p.origID) != nil {
			s.violate(InvIdempotency, fmt.Sprintf("replay of key %q (task %s) refused: %v", p.in.IdempotencyKey, p.origID, err))
		}
		s.afterCP()
		return
	}
	if !replayed && depth >= s.o.Core.QueueCapacity {
		s.violate(InvQueueBound, fmt.Sprintf("submission %s admitted with %d queued, capacity %d", task.ID, depth, s.o.Core.QueueCapacity))
		return
	}
	s.tr.str("task", string(task.ID))
	if replayed {
		s.tr.str("replayed", "true")
	}
	s.tr.end()
	switch {
	case p.ambiguous && p.origID != "":
		// The retry of a submission committed in flight: the key answers
		// with the task the client never heard of, now acknowledged.
		if !replayed || task.ID != p.origID {
			s.violate(InvIdempotency, fmt.Sprintf("retry of key %q committed before the crash gave %s (replayed=%v), want %s", p.in.IdempotencyKey, task.ID, replayed, p.origID))
			return
		}
		s.res.Submitted++
	case p.conflict:
		s.violate(InvIdempotency, fmt.Sprintf("key %q reused with another body was accepted as %s (replayed=%v)", p.in.IdempotencyKey, task.ID, replayed))
		return
	case p.origID != "":
		if !replayed || task.ID != p.origID {
			s.violate(InvIdempotency, fmt.Sprintf("key %q with the same body gave %s (replayed=%v), want %s", p.in.IdempotencyKey, task.ID, replayed, p.origID))
			return
		}
		s.res.Replayed++
	case replayed:
		s.violate(InvIdempotency, fmt.Sprintf("fresh key %q (in flight and lost at a crash: %v) answered as a replay of %s", p.in.IdempotencyKey, p.ambiguous, task.ID))
		return
	default:
		mt := s.m.task(task.ID)
		if mt == nil {
			s.violate(InvTimeline, fmt.Sprintf("accepted task %s has no timeline record", task.ID))
			return
		}
		mt.rec.Poison, mt.rec.Hang = p.poison, p.hang
		mt.rec.Priority, mt.rec.Domain = task.Spec.Priority, task.Spec.Domain
		s.res.Submitted++
		if p.in.IdempotencyKey != "" {
			s.maybeResubmit(p, task.ID)
		}
	}
	s.afterCP()
}

// maybeResubmit schedules a replay (same key and body) or a conflicting
// reuse of the key shortly after an accepted idempotent submission.
func (s *sim) maybeResubmit(p *pendingSubmit, id core.TaskID) {
	w := s.o.Workload[p.w]
	r := s.rng
	x := r.Float64()
	switch {
	case x < w.ResubmitFraction:
		q := *p
		q.origID = id
		s.push(event{at: s.now + time.Duration(r.Int64N(int64(10*time.Second))), kind: evResubmit, sub: &q})
	case x < w.ResubmitFraction+w.ConflictFraction:
		q := *p
		q.origID, q.conflict = id, true
		q.in.Spec.DurationMS++
		s.push(event{at: s.now + time.Duration(r.Int64N(int64(10*time.Second))), kind: evResubmit, sub: &q})
	}
}
