package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// mTask is the model's view of one task, built only from the control
// plane's timeline: it is what the cp said happened.
type mTask struct {
	rec     TaskRecord
	state   core.TaskState
	attempt int
	agent   core.AgentID
	dirty   bool // changed since the last full check
	lost    bool
}

// mAgent is the model's view of one agent.
type mAgent struct {
	domain      string
	connected   bool
	quarantined string // "" or the actor that quarantined it
}

// model replays the control plane's timeline into an independent picture of
// tasks, agents, domains and the mode, against which every event and the
// cp's own state are checked.
type model struct {
	s        *sim
	lastSeq  uint64
	lastTime time.Time
	tasks    map[core.TaskID]*mTask
	all      []*mTask // in acceptance order
	dirty    []*mTask
	queued   int
	inFlight int

	agents        map[core.AgentID]*mAgent
	domainAgents  map[string]int
	healthQ       map[string]int
	domainState   map[string]core.DomainState
	mode          core.Mode
	modeBy        string
	quarantineCap float64
}

func newModel(s *sim) *model {
	return &model{s: s, quarantineCap: s.o.Core.Health.DomainQuarantineFraction,
		tasks: map[core.TaskID]*mTask{}, agents: map[core.AgentID]*mAgent{}, domainAgents: map[string]int{},
		healthQ: map[string]int{}, domainState: map[string]core.DomainState{}}
}

func (m *model) task(id core.TaskID) *mTask { return m.tasks[id] }

func (s *sim) violate(inv, detail string) {
	if s.res.Violation != nil {
		return
	}
	s.res.Violation = &Violation{Name: s.o.Name, Seed: s.o.Seed, At: s.now, Invariant: inv, Detail: detail, LastEvents: s.tr.last()}
}

// onTimeline takes one control-plane timeline event: it traces it, keeps it
// in the result, and checks it against the model (invariants 1, 2, 5, 6, 7,
// 9) before applying it.
func (s *sim) onTimeline(gen int, e core.Event) {
	m := s.m
	t := s.tr
	t.begin(s.now, s.count, "timeline")
	t.int("seq", int64(e.Seq))
	t.str("type", string(e.Type))
	t.str("task", string(e.TaskID))
	t.str("agent", string(e.AgentID))
	t.str("domain", e.Domain)
	if e.Attempt != 0 {
		t.int("attempt", int64(e.Attempt))
	}
	t.str("actor", e.Actor)
	t.str("reason", e.Reason)
	t.end()
	if n := len(s.res.Events); n < s.o.EventsMax {
		if n == cap(s.res.Events) {
			// Double, up to the bound: append grows a slice this large by
			// a quarter at a time, copying its hundreds of bytes an event
			// over and over.
			s.res.Events = slices.Grow(s.res.Events, min(max(n, 256), s.o.EventsMax-n))
		}
		s.res.Events = append(s.res.Events, TimelineEvent{Gen: gen, Event: e})
	} else {
		s.res.EventsDropped++
	}
	if gen != s.cpGen {
		return // a dead process (never happens: it applies nothing)
	}
	if e.Seq != m.lastSeq+1 {
		s.violate(InvTimeline, fmt.Sprintf("event %s has seq %d after %d", e.Type, e.Seq, m.lastSeq))
		return
	}
	if e.Time.Before(m.lastTime) {
		s.violate(InvTimeline, fmt.Sprintf("event %d %s at %v goes back from %v", e.Seq, e.Type, e.Time, m.lastTime))
		return
	}
	m.lastSeq, m.lastTime = e.Seq, e.Time
	switch e.Kind {
	case core.EventTask:
		if e.To != "" {
			m.taskEvent(e)
		}
	case core.EventAgent:
		m.agentEvent(e)
	case core.EventDomain:
		if e.Type != core.EventDomainPanic { // fleet-wide, not a domain's state
			m.domainState[e.Domain] = core.DomainState(e.To)
		}
	case core.EventMode:
		if e.Type == core.EventModeChanged {
			if e.Actor == core.ActorSelfProtection && m.modeBy == core.ActorOperator && m.mode != core.ModeNormal {
				s.violate(InvOperatorMode, fmt.Sprintf("self-protection changed mode %s→%s set by an operator (%s)", m.mode, e.To, e.Reason))
				return
			}
			m.mode, m.modeBy = core.Mode(e.To), e.Actor
		}
	}
}

func parseState(s string) core.TaskState {
	st, err := core.ParseTaskState(s)
	if err != nil {
		return 255
	}
	return st
}

func (m *model) setCounts(st core.TaskState, d int) {
	switch st {
	case core.TaskQueued:
		m.queued += d
	case core.TaskAssigned, core.TaskRunning:
		m.inFlight += d
	}
}

func (m *model) taskEvent(e core.Event) {
	s := m.s
	to := parseState(e.To)
	mt := m.tasks[e.TaskID]
	if e.From == "" {
		if mt != nil || to != core.TaskQueued {
			s.violate(InvTimeline, fmt.Sprintf("task %s created twice or not as QUEUED (%s)", e.TaskID, e.Type))
			return
		}
		mt = &mTask{rec: TaskRecord{Gen: s.cpGen, ID: e.TaskID, Domain: e.Domain, Submitted: s.now}, state: core.TaskQueued}
		m.tasks[e.TaskID] = mt
		m.all = append(m.all, mt)
		m.queued++
		m.markDirty(mt)
		return
	}
	if mt == nil {
		s.violate(InvNoTaskLost, fmt.Sprintf("event %s for unknown task %s", e.Type, e.TaskID))
		return
	}
	from := parseState(e.From)
	if mt.state.Terminal() {
		s.violate(InvNoTaskLost, fmt.Sprintf("task %s left terminal state %s (%s→%s)", e.TaskID, mt.state, e.From, e.To))
		return
	}
	if from != mt.state {
		s.violate(InvTimeline, fmt.Sprintf("task %s: event says %s→%s but the last recorded state is %s", e.TaskID, e.From, e.To, mt.state))
		return
	}
	if to == core.TaskAssigned {
		if e.Attempt != mt.attempt+1 {
			s.violate(InvOneLease, fmt.Sprintf("task %s assigned attempt %d after attempt %d", e.TaskID, e.Attempt, mt.attempt))
			return
		}
		if !m.checkAssignable(e) {
			return
		}
		mt.attempt, mt.agent = e.Attempt, e.AgentID
		mt.rec.Agents = append(mt.rec.Agents, e.AgentID)
		s.lastDispatch = s.now
		if !mt.rec.Started {
			mt.rec.Started, mt.rec.StartedAt = true, s.now
		}
	} else if e.Attempt != mt.attempt {
		s.violate(InvOneLease, fmt.Sprintf("task %s: %s→%s by attempt %d, current attempt is %d", e.TaskID, e.From, e.To, e.Attempt, mt.attempt))
		return
	}
	if to == core.TaskQueued {
		mt.rec.Requeues++
	}
	if (from == core.TaskAssigned || from == core.TaskRunning) && (strings.Contains(e.Reason, "timed out") || strings.Contains(e.Reason, " timeout") || strings.Contains(e.Reason, "stuck")) {
		mt.rec.Timeouts++
	}
	m.setCounts(from, -1)
	m.setCounts(to, +1)
	mt.state = to
	if to.Terminal() {
		mt.rec.Ended, mt.rec.EndedAt, mt.rec.Reason = true, s.now, e.Reason
	}
	m.markDirty(mt)
}

func (m *model) markDirty(mt *mTask) {
	if !mt.dirty {
		mt.dirty = true
		m.dirty = append(m.dirty, mt)
	}
}

// checkAssignable is invariant 6: nothing is assigned to a disconnected or
// quarantined agent, into an isolated domain (PROBING takes probes), or
// while the mode forbids dispatch.
func (m *model) checkAssignable(e core.Event) bool {
	s := m.s
	a := m.agents[e.AgentID]
	switch {
	case a == nil:
		s.violate(InvNoBadAssign, fmt.Sprintf("task %s assigned to unknown agent %s", e.TaskID, e.AgentID))
	case !a.connected:
		s.violate(InvNoBadAssign, fmt.Sprintf("task %s assigned to disconnected agent %s", e.TaskID, e.AgentID))
	case a.quarantined != "":
		s.violate(InvNoBadAssign, fmt.Sprintf("task %s assigned to agent %s quarantined by %s", e.TaskID, e.AgentID, a.quarantined))
	case m.domainState[a.domain] == core.DomainIsolated:
		s.violate(InvNoBadAssign, fmt.Sprintf("task %s assigned into isolated domain %s", e.TaskID, a.domain))
	case m.mode == core.ModeReadOnly:
		s.violate(InvNoBadAssign, fmt.Sprintf("task %s assigned while READ_ONLY", e.TaskID))
	default:
		return true
	}
	return false
}

func (m *model) agentEvent(e core.Event) {
	s := m.s
	a := m.agents[e.AgentID]
	switch e.Type {
	case core.EventAgentRegistered:
		a = &mAgent{domain: e.Domain}
		m.agents[e.AgentID] = a
		m.domainAgents[e.Domain]++
		return
	case core.EventAgentForgotten:
		if a != nil {
			if a.quarantined == core.ActorReconcile {
				m.healthQ[a.domain]--
			}
			m.domainAgents[a.domain]--
			delete(m.agents, e.AgentID)
		}
		return
	}
	if a == nil {
		s.violate(InvTimeline, fmt.Sprintf("%s for unregistered agent %s", e.Type, e.AgentID))
		return
	}
	switch e.Type {
	case core.EventAgentConnected:
		a.connected = true
	case core.EventAgentDisconnected:
		a.connected = false
	case core.EventAgentQuarantined:
		if a.quarantined == core.ActorReconcile {
			m.healthQ[a.domain]--
		}
		a.quarantined = e.Actor
		if e.Actor == core.ActorReconcile {
			m.healthQ[a.domain]++
			if limit := max(1, int(m.quarantineCap*float64(m.domainAgents[a.domain]))); m.healthQ[a.domain] > limit {
				s.violate(InvQuarantineCap, fmt.Sprintf("domain %s holds %d health quarantines, cap %d (%d agents)",
					a.domain, m.healthQ[a.domain], limit, m.domainAgents[a.domain]))
			}
		}
	case core.EventAgentReleased:
		if a.quarantined == core.ActorReconcile {
			m.healthQ[a.domain]--
		}
		a.quarantined = ""
	}
}

// checkAssignMessage is invariant 2 on the wire: every assignment the cp
// sends names the task's current attempt, which the timeline says is
// ASSIGNED to that agent.
func (m *model) checkAssignMessage(o core.Outbound) {
	mt := m.tasks[o.Assign.TaskID]
	switch {
	case mt == nil:
		m.s.violate(InvOneLease, fmt.Sprintf("assignment of unknown task %s", o.Assign.TaskID))
	case mt.state != core.TaskAssigned || mt.attempt != o.Assign.Attempt || mt.agent != o.To:
		m.s.violate(InvOneLease, fmt.Sprintf("assignment of %s attempt %d to %s, but the task is %s attempt %d on %s",
			o.Assign.TaskID, o.Assign.Attempt, o.To, mt.state, mt.attempt, mt.agent))
	}
}

// checkCounts is invariant 1 and 3 after every cp call: the cp's queue and
// in-flight counts agree with the timeline, and the queue is within bounds.
func (m *model) checkCounts() {
	s := m.s
	q, f := s.cp.QueueDepth(), s.cp.InFlight()
	switch {
	case q > s.queueBound():
		s.violate(InvQueueBound, fmt.Sprintf("queue depth %d > capacity %d + slots %d", q, s.o.Core.QueueCapacity, s.queueBound()-s.o.Core.QueueCapacity))
	case q != m.queued || f != m.inFlight:
		s.violate(InvNoTaskLost, fmt.Sprintf("cp holds %d queued and %d in flight, its timeline says %d and %d", q, f, m.queued, m.inFlight))
	}
}

// queueBound is invariant 3's bound. Submissions are admitted only below
// QueueCapacity; accepted work coming back for another attempt may overflow
// it (it must not be dropped), by at most the tasks that were in flight,
// which the fleet's slots bound.
func (s *sim) queueBound() int {
	return s.o.Core.QueueCapacity + s.o.Agents*s.o.SlotsPerAgent
}

// checkCheap runs after every simulator event.
func (s *sim) checkCheap() {
	if q := s.cp.QueueDepth(); q > s.queueBound() {
		s.violate(InvQueueBound, fmt.Sprintf("queue depth %d > capacity %d + slots", q, s.o.Core.QueueCapacity))
	}
}

// fullCheck compares the cp's full state with the model: every task changed
// since the last check is in exactly the state and attempt the timeline says
// (invariants 1, 2, 9).
func (s *sim) fullCheck() {
	m := s.m
	for _, mt := range m.dirty {
		mt.dirty = false
		if s.res.Violation != nil {
			continue
		}
		t, ok := s.cp.Task(mt.rec.ID)
		switch {
		case !ok:
			mt.lost = true
			s.res.Lost++
			s.violate(InvNoTaskLost, fmt.Sprintf("accepted task %s (%s per timeline) is unknown to the cp", mt.rec.ID, mt.state))
		case t.State != mt.state || t.Attempt != mt.attempt:
			s.violate(InvTimeline, fmt.Sprintf("task %s is %s attempt %d in the cp, %s attempt %d per timeline",
				t.ID, t.State, t.Attempt, mt.state, mt.attempt))
		}
	}
	m.dirty = m.dirty[:0]
	s.res.Quarantines = int(s.cp.Stats().Quarantines)
}

// snapshotCheck cross-checks the cp's snapshot (O(agents), so it runs with
// the metric samples): the per-domain health quarantine cap (5), which the
// model also checks on every quarantine, and the queue bound (3).
func (s *sim) snapshotCheck(snap core.DebugView) {
	for _, d := range snap.Domains {
		if d.HealthQuarantined > d.HealthQuarantineCap {
			s.violate(InvQuarantineCap, fmt.Sprintf("domain %s: %d health quarantines, cap %d", d.Name, d.HealthQuarantined, d.HealthQuarantineCap))
		}
	}
	if snap.QueueDepth > s.queueBound() {
		s.violate(InvQueueBound, fmt.Sprintf("queue depth %d > capacity %d + slots", snap.QueueDepth, snap.QueueCapacity))
	}
}

// LivenessBound is how long after max(submission, last heal) a task may
// take to reach a terminal state: each attempt may use its timeout plus the
// lease grace, and a lost agent costs the heartbeat timeout plus the loss
// grace plus an unconfirmed assignment; a domain isolated by failures may
// hold work for up to its longest cool-down; plus slack for queueing.
func LivenessBound(cfg core.Config, spec core.TaskSpec, slack time.Duration) time.Duration {
	timeout := time.Duration(spec.TimeoutSeconds) * time.Second
	if timeout == 0 {
		timeout = cfg.TaskTimeoutDefault
	}
	attempts := spec.MaxAttempts
	if attempts == 0 {
		attempts = cfg.TaskMaxAttemptsDefault
	}
	per := timeout + cfg.LeaseGrace + cfg.HeartbeatTimeout + cfg.LostAfter + cfg.AssignTimeout
	return time.Duration(attempts)*per + cfg.Domains.CooldownMax + slack
}

// checkLiveness is invariant 8: once faults have healed, every task reaches
// a terminal state within LivenessBound.
func (s *sim) checkLiveness() {
	m := s.m
	spec := core.TaskSpec{}
	for _, w := range s.o.Workload {
		spec.TimeoutSeconds = max(spec.TimeoutSeconds, w.TimeoutSeconds)
		spec.MaxAttempts = max(spec.MaxAttempts, w.MaxAttempts)
	}
	bound := LivenessBound(s.o.Core, spec, 2*time.Minute)
	for _, mt := range m.all {
		start := max(mt.rec.Submitted, s.res.HealedAt)
		deadline := start + bound
		if deadline > s.now {
			continue
		}
		s.res.LivenessChecked = true
		if !mt.state.Terminal() && !mt.lost {
			s.violate(InvLiveness, fmt.Sprintf("task %s still %s (attempt %d) at %v, %v after faults healed at %v",
				mt.rec.ID, mt.state, mt.attempt, s.now, s.now-start, s.res.HealedAt))
			return
		}
	}
}

// DispatchIdleMax is how long, once faults have healed, a fleet with open
// capacity and queued work it could run may go without dispatching anything
// (invariant 8, for the fleet rather than for one task).
const DispatchIdleMax = 2 * time.Minute

// checkDispatch runs after every cp tick. It measures how long work has
// waited on open capacity with nothing dispatched: queued tasks, the mode
// permitting dispatch (not READ_ONLY), and some connected, unquarantined,
// not stopping agent with a free slot that one of the queued tasks may run
// on (its domain, exec permission and the agents that refused it allow).
// Isolated, throttled and probing domains count as open for work that may
// run anywhere: isolation must not idle the fleet. Work pinned to an
// ISOLATED domain is not counted: it waits for that domain's cool-down, and
// the per-task bound (LivenessBound) covers it. The longest such stretch goes into the Result; once
// every fault is over (and past Options.HealAt), one longer than
// DispatchIdleMax since the last heal is a liveness violation.
func (s *sim) checkDispatch() {
	m := s.m
	if m.queued == 0 || m.mode == core.ModeReadOnly || s.now-s.lastDispatch < s.o.TickInterval ||
		m.inFlight >= s.o.Agents*s.o.SlotsPerAgent {
		s.idleSince = -1
		return
	}
	free, fits := s.openCapacity()
	if !fits {
		s.idleSince = -1
		return
	}
	if s.idleSince < 0 {
		s.idleSince = s.now
	}
	idle := s.now - max(s.idleSince, s.lastDispatch)
	if idle > s.res.MaxDispatchIdle {
		s.res.MaxDispatchIdle, s.res.MaxDispatchIdleAt = idle, s.now
	}
	if s.faultsPending > 0 || s.now < s.o.HealAt {
		return
	}
	if idle = s.now - max(s.idleSince, s.lastDispatch, s.res.HealedAt); idle > DispatchIdleMax {
		s.violate(InvLiveness, fmt.Sprintf("no dispatch for %v after faults healed at %v with %d queued and %d free slots (%s)",
			idle, s.res.HealedAt, m.queued, free, s.domainStates()))
	}
}

// openCapacity returns the free slots of the agents that may take work
// (connected, unquarantined, not stopping) and whether one of them may run
// some queued task.
func (s *sim) openCapacity() (free int, fits bool) {
	var open []core.AgentView
	for _, v := range s.cp.Agents() {
		if v.Connected && !v.Quarantined && !v.Stopping && v.Running < v.Slots {
			open = append(open, v)
			free += v.Slots - v.Running
		}
	}
	if free == 0 {
		return 0, false
	}
	m := s.m
	for _, mt := range m.all {
		if mt.state != core.TaskQueued {
			continue
		}
		var t core.Task
		loaded := false
		for _, v := range open {
			if mt.rec.Domain != "" && (mt.rec.Domain != v.Domain || m.domainState[v.Domain] == core.DomainIsolated) {
				// Work pinned to an ISOLATED domain waits out its
				// cool-down, bounded by LivenessBound per task; the
				// fleet-wide bound is about isolation idling work that
				// could run elsewhere.
				continue
			}
			if !loaded {
				var ok bool
				if t, ok = s.cp.Task(mt.rec.ID); !ok {
					break
				}
				loaded = true
			}
			if mayRun(t, v) {
				return free, true
			}
		}
	}
	return free, false
}

// mayRun reports whether agent v may take task t: exec needs an agent that
// allows it, and an agent that refused the task never gets it again. A
// refusal as busy (retryable) only holds the agent until its next
// heartbeat, but the attempt record does not tell them apart: both count,
// which errs on the side of no false alarm.
func mayRun(t core.Task, v core.AgentView) bool {
	if t.Spec.Kind == core.KindExec && !v.AllowsExec {
		return false
	}
	for _, a := range t.Attempts {
		if a.AgentID == v.ID && (a.Outcome == core.OutcomeRejected || strings.HasPrefix(a.Error, "rejected by agent")) {
			return false
		}
	}
	return true
}

// domainStates lists the domains that are not OPEN, for a violation's
// detail.
func (s *sim) domainStates() string {
	names := make([]string, 0, len(s.m.domainState))
	for d, st := range s.m.domainState {
		if st != core.DomainOpen {
			names = append(names, d+" "+string(st))
		}
	}
	if len(names) == 0 {
		return "every domain OPEN"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
