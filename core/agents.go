package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

const quarantineByHealth = "health"

func (cp *ControlPlane) domain(name string) *domainRecord {
	d, ok := cp.domains[name]
	if !ok {
		d = &domainRecord{health: NewDomainHealth(cp.cfg.Domains, name, cp.now)}
		cp.domains[name] = d
		i, _ := slices.BinarySearch(cp.domainNames, name)
		cp.domainNames = slices.Insert(cp.domainNames, i, name)
	}
	return d
}

// reindex puts a back in (or takes it out of) its domain's placement index
// after anything that changes its eligibility or free slots.
func (cp *ControlPlane) reindex(a *agentRecord) {
	d := a.dom
	d.index.remove(a)
	if a.eligible() {
		d.index.insert(a)
	}
}

// applyHeartbeat takes an agent's report: it registers unknown agents, reconnects
// disconnected ones, applies results (fenced by attempt), confirms running
// attempts and tells the agent which attempts to stop.
func (cp *ControlPlane) applyHeartbeat(now time.Time, hb HeartbeatInput) (HeartbeatReply, error) {
	now = cp.advance(now)
	if err := hb.validate(cp.cfg); err != nil {
		return HeartbeatReply{}, err
	}
	var reply HeartbeatReply
	if hb.HeartbeatIntervalMillis > 0 {
		reply.HeartbeatIntervalMillis = cp.cfg.HeartbeatInterval.Milliseconds()
	}
	if hb.SelfFencing {
		reply.LeaseMillis = cp.cfg.AgentLease().Milliseconds()
	}
	a, known, registered, err := cp.admitAgent(now, hb)
	if err != nil {
		return HeartbeatReply{}, err
	}
	if known && hb.SelfFencing && a.selfFencing && hb.Incarnation < a.incarnation && !cp.mayRestartBack(now, a) {
		// Incarnations of self-fencing agents are ordered (the agent
		// daemon's is its start time): a lower one is an older process
		// whose heartbeat the network delivered late. It says nothing of
		// the agent now; taken as a restart it would requeue the attempts
		// the current process runs, and a reply to it could renew the
		// current process's lease. (Older agents' incarnations are
		// random: any change is a restart, as before.)
		return HeartbeatReply{}, fmt.Errorf("%w: heartbeat of agent %s's older incarnation %d (now %d), delivered late",
			ErrConflict, a.id, hb.Incarnation, a.incarnation)
	}
	restarted, stale := detectRestart(a, known, hb)
	reply.Registered = registered || restarted
	cp.noteLiveness(now, a, hb, restarted)
	cp.noteReport(a, hb, restarted)
	reply.Acked = cp.applyResults(now, a, hb.Results)
	reported, cancel := cp.confirmRunning(a, hb.Running)
	reply.Cancel = cancel
	if !stale {
		cp.requeueUnreported(now, a, hb.Seq, reported, restarted)
	}
	cp.reindex(a)
	cp.schedule(now)
	return reply, nil
}

// admitAgent finds the heartbeating agent's record: it registers an unknown
// agent (when the registry has room) and re-registers one that moved to
// another domain with nothing in flight. known says whether the agent was
// in the registry, registered whether it has a new record.
func (cp *ControlPlane) admitAgent(now time.Time, hb HeartbeatInput) (a *agentRecord, known, registered bool, err error) {
	a, known = cp.agents[hb.AgentID]
	switch {
	case !known:
		if len(cp.agents) >= cp.cfg.AgentsMax {
			return nil, false, false, fmt.Errorf("%w: %d agents registered", ErrAgentsFull, len(cp.agents))
		}
		if _, ok := cp.domains[hb.Domain]; !ok && len(cp.domains) >= cp.cfg.Domains.DomainsMax {
			return nil, false, false, fmt.Errorf("%w: %d domains known", ErrAgentsFull, len(cp.domains))
		}
		return cp.register(now, hb), false, true, nil
	case a.domain != hb.Domain:
		if len(a.running) > 0 {
			return nil, true, false, fmt.Errorf("%w: agent %s moved from domain %s to %s with %d tasks in flight",
				ErrConflict, a.id, a.domain, hb.Domain, len(a.running))
		}
		cp.forgetAgent(a, "re-registered in domain "+hb.Domain)
		return cp.register(now, hb), true, true, nil
	}
	return a, true, false, nil
}

// mayRestartBack says whether a heartbeat of an incarnation lower than a's
// may be taken as a restart: a host whose clock went backwards starts a
// process with a lower incarnation, and it must not be locked out for good.
// That is safe once the current process has been silent for
// HeartbeatTimeout + LostAfter: by then its attempts go to others anyway
// and its lease (AgentLease) has run out.
func (cp *ControlPlane) mayRestartBack(now time.Time, a *agentRecord) bool {
	return !a.connected() && now.Sub(a.lastHeartbeat) >= cp.cfg.HeartbeatTimeout+cp.cfg.LostAfter
}

// detectRestart compares hb with what the cp knows of a: restarted when the
// agent's incarnation changed, stale when the heartbeat is older than one
// already taken (a reordered or duplicated report).
func detectRestart(a *agentRecord, known bool, hb HeartbeatInput) (restarted, stale bool) {
	restarted = known && hb.Incarnation != a.incarnation
	stale = !restarted && known && hb.Seq <= a.lastSeq && hb.Seq != 0
	return restarted, stale
}

// noteLiveness records that a was heard from: it lifts a hold, feeds its
// health and reconnects it if it was disconnected or lost.
func (cp *ControlPlane) noteLiveness(now time.Time, a *agentRecord, hb HeartbeatInput, restarted bool) {
	a.lastHeartbeat = now
	if a.state == agentHeld {
		a.state = agentConnected
	}
	a.health.Heartbeat(now, time.Duration(hb.RTTMillis)*time.Millisecond)
	cp.noteHeartbeatInterval(a, hb)
	if !a.connected() {
		cp.becomeConnected(a, restarted)
	}
}

// noteReport takes what the agent says of itself: a restart, its sequence,
// slots, address and whether it is shutting down.
func (cp *ControlPlane) noteReport(a *agentRecord, hb HeartbeatInput, restarted bool) {
	if restarted {
		cp.record(Event{Kind: EventAgent, Type: EventAgentRestarted, AgentID: a.id, Domain: a.domain, Actor: ActorAgent,
			Reason: fmt.Sprintf("incarnation %d → %d", a.incarnation, hb.Incarnation)})
		a.incarnation, a.lastSeq = hb.Incarnation, 0
	}
	if hb.Seq > a.lastSeq {
		a.lastSeq = hb.Seq
	}
	if a.slots != hb.Slots {
		a.dom.slots += hb.Slots - a.slots
		a.slots = hb.Slots
		cp.agentsChanged()
	}
	a.address, a.allowsExec, a.selfFencing = hb.Address, hb.AllowsExec, hb.SelfFencing
	if hb.Stopping && !a.stopping {
		cp.record(Event{Kind: EventAgent, Type: EventAgentStopping, AgentID: a.id, Domain: a.domain, Actor: ActorAgent, Reason: "agent shutting down"})
	}
	if a.stopping != hb.Stopping {
		cp.agentsChanged()
	}
	a.stopping = hb.Stopping
}

// applyResults applies a's reported results and returns the ones to ack.
func (cp *ControlPlane) applyResults(now time.Time, a *agentRecord, results []Result) []Lease {
	var acked []Lease
	for _, r := range results {
		cp.applyResult(now, a, r)
		if fires(cp.cfg.FaultPoints, FaultCPAckDropped, a.id, r.TaskID, r.Attempt) {
			continue // the agent reports it again
		}
		acked = append(acked, Lease{TaskID: r.TaskID, Attempt: r.Attempt})
	}
	return acked
}

// reportedTasks is the set of tasks a heartbeat lists as running. A
// heartbeat lists a few (an agent's slots), so a scan beats building a map
// on every heartbeat; a long list gets a map.
type reportedTasks struct {
	running []Lease
	set     map[TaskID]bool // nil for a short list
}

// reportedScanMax is the longest running list scanned rather than indexed.
const reportedScanMax = 16

func newReportedTasks(running []Lease) reportedTasks {
	r := reportedTasks{running: running}
	if len(running) > reportedScanMax {
		r.set = make(map[TaskID]bool, len(running))
		for _, l := range running {
			r.set[l.TaskID] = true
		}
	}
	return r
}

func (r reportedTasks) has(id TaskID) bool {
	if r.set != nil {
		return r.set[id]
	}
	for _, l := range r.running {
		if l.TaskID == id {
			return true
		}
	}
	return false
}

// confirmRunning confirms the attempts a reports running that the cp leased
// to it, and returns the tasks reported and the attempts a must stop.
func (cp *ControlPlane) confirmRunning(a *agentRecord, running []Lease) (reportedTasks, []Lease) {
	var cancel []Lease
	reported := newReportedTasks(running)
	for _, l := range running {
		t, ok := cp.tasks[l.TaskID]
		if !ok || t.State.Terminal() || t.AgentID != a.id || t.Attempt != l.Attempt || !(t.State == TaskAssigned || t.State == TaskRunning) {
			// The agent runs something the cp does not know or no longer
			// wants: stop it.
			cancel = append(cancel, l)
			cp.stats.UnknownCancelled++
			continue
		}
		if t.State == TaskAssigned {
			t.confirmed = true
			cp.setState(t, TaskRunning, ActorAgent, "")
		}
	}
	return reported, cancel
}

// requeueUnreported requeues the attempts leased to a that a fresh
// heartbeat (sequence seq) neither runs nor reports finished: they are
// lost, after a restart at once, otherwise once the agent had the time to
// hear of them.
func (cp *ControlPlane) requeueUnreported(now time.Time, a *agentRecord, seq uint64, reported reportedTasks, restarted bool) {
	var lost []*taskRecord
	for _, t := range a.running {
		if reported.has(t.ID) {
			continue
		}
		// A heartbeat the agent built before it accepted the attempt
		// (seq <= ackSeq) may arrive after the ack, however late: it says
		// nothing of the attempt, even once AssignTimeout has passed.
		builtBefore := t.State == TaskRunning && seq <= t.ackSeq
		// An unconfirmed attempt may still be on its way to the agent (a
		// poll reply in flight): a heartbeat below its seqLimit may have
		// been built before the agent took it; from seqLimit on the agent
		// refuses it, so the heartbeat's silence is proof.
		unsent := t.State == TaskAssigned && now.Sub(t.assignedAt) >= cp.cfg.AssignTimeout && seq >= t.seqLimit
		if restarted || !builtBefore && (t.State == TaskRunning || unsent) {
			lost = append(lost, t)
		}
	}
	sortTasks(lost)
	for _, t := range lost {
		cp.requeue(t, false, ActorReconcile, "agent no longer runs attempt "+fmt.Sprint(t.Attempt))
	}
}

func sortTasks(ts []*taskRecord) {
	slices.SortFunc(ts, func(a, b *taskRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// busyIndex finds id's position in a list of agents sorted by id.
func busyIndex(list []*agentRecord, id AgentID) (int, bool) {
	return slices.BinarySearchFunc(list, id, func(a *agentRecord, id AgentID) int {
		return strings.Compare(string(a.id), string(id))
	})
}

// agentIndex finds id's position in the sorted agent list.
func (cp *ControlPlane) agentIndex(id AgentID) (int, bool) {
	return slices.BinarySearchFunc(cp.agentList, id, func(a *agentRecord, id AgentID) int {
		return strings.Compare(string(a.id), string(id))
	})
}

func (cp *ControlPlane) register(now time.Time, hb HeartbeatInput) *agentRecord {
	a := &agentRecord{
		id: hb.AgentID, domain: hb.Domain, slots: hb.Slots, address: hb.Address, incarnation: hb.Incarnation, selfFencing: hb.SelfFencing,
		registeredAt: now, running: make(map[TaskID]*taskRecord), quarantine: quarantine{decayed: now},
		health: NewHealthWindow(cp.cfg.Health, cp.measuredInterval(hb), now),
	}
	a.score = HealthScore{Score: 1, Heartbeat: 1, Success: 1, Flaps: 1, Latency: 1}
	cp.agents[a.id] = a
	i, _ := cp.agentIndex(a.id)
	cp.agentList = slices.Insert(cp.agentList, i, a)
	cp.agentsChanged()
	d := cp.domain(a.domain)
	a.dom = d
	d.agents++
	d.disconnected++ // becomeConnected below counts it back
	d.slots += a.slots
	cp.record(Event{Kind: EventAgent, Type: EventAgentRegistered, AgentID: a.id, Domain: a.domain, Actor: ActorAgent,
		Reason: fmt.Sprintf("%d slots", a.slots)})
	return a
}

func (cp *ControlPlane) becomeConnected(a *agentRecord, restarted bool) {
	a.state, a.connectedSince = agentConnected, cp.now
	cp.agentsChanged()
	a.dom.disconnected--
	cp.stats.AgentConnects++
	reason := "heartbeat"
	if restarted {
		reason = "heartbeat after restart"
	}
	cp.record(Event{Kind: EventAgent, Type: EventAgentConnected, AgentID: a.id, Domain: a.domain, Actor: ActorAgent, Reason: reason})
}

func (cp *ControlPlane) becomeDisconnected(a *agentRecord, flap bool, reason string) {
	a.state, a.disconnectedAt = agentDisconnected, cp.now
	cp.agentsChanged()
	a.dom.disconnected++
	if flap {
		a.health.Flap(cp.now)
	}
	cp.stats.AgentDisconnects++
	cp.reindex(a)
	cp.record(Event{Kind: EventAgent, Type: EventAgentDisconnected, AgentID: a.id, Domain: a.domain, Actor: ActorReconcile, Reason: reason})
}

// forgetAgent drops an agent with no tasks from the registry.
func (cp *ControlPlane) forgetAgent(a *agentRecord, reason string) {
	if len(a.running) != 0 {
		failf("forget agent %s with %d tasks", a.id, len(a.running))
	}
	d := a.dom
	d.index.remove(a)
	d.agents--
	d.slots -= a.slots
	if !a.connected() {
		d.disconnected--
	}
	if a.healthQuarantined() {
		d.quarantined--
	}
	delete(cp.agents, a.id)
	i, ok := cp.agentIndex(a.id)
	if !ok {
		failf("agent %s not in sorted ids", a.id)
	}
	cp.agentList = slices.Delete(cp.agentList, i, i+1)
	cp.agentsChanged()
	cp.record(Event{Kind: EventAgent, Type: EventAgentForgotten, AgentID: a.id, Domain: a.domain, Actor: ActorReconcile, Reason: reason})
}

// applyAssignAck takes an agent's answer to an assignment.
func (cp *ControlPlane) applyAssignAck(now time.Time, ack AssignAck) error {
	now = cp.advance(now)
	t, ok := cp.tasks[ack.TaskID]
	if !ok {
		return fmt.Errorf("%w: task %q", ErrNotFound, ack.TaskID)
	}
	if t.AgentID != ack.AgentID || t.Attempt != ack.Attempt || !(t.State == TaskAssigned || t.State == TaskRunning) {
		cp.stats.StaleIgnored++
		cp.record(Event{Kind: EventTask, Type: EventTaskStaleIgnored, TaskID: t.ID, AgentID: ack.AgentID, Attempt: ack.Attempt,
			Actor: ActorAgent, Reason: fmt.Sprintf("assignment ack for attempt %d, current is %d", ack.Attempt, t.Attempt)})
		return nil
	}
	if !ack.Accepted && t.confirmed {
		// The agent said it runs this attempt (an ack or a heartbeat): a
		// refusal of it answers an earlier delivery of the assignment, its
		// ack overtaken (the agent takes a redelivery of what it runs).
		cp.stats.StaleIgnored++
		cp.record(Event{Kind: EventTask, Type: EventTaskStaleIgnored, TaskID: t.ID, AgentID: ack.AgentID, Attempt: ack.Attempt,
			Actor: ActorAgent, Reason: "refusal of attempt " + fmt.Sprint(ack.Attempt) + " after its acceptance: " + truncate(ack.Reason, 200)})
		return nil
	}
	if !ack.Accepted {
		if a := cp.agents[ack.AgentID]; ack.Retryable && a != nil {
			// The cp's view of the agent is off (it is full or stopping):
			// give it no more work until its next heartbeat corrects it.
			// (A disconnected agent takes none anyway, and its next
			// heartbeat would lift the hold before anything else.)
			if a.state == agentConnected {
				a.state = agentHeld
			}
			cp.reindex(a)
		} else {
			t.rejectedBy = append(t.rejectedBy, ack.AgentID)
		}
		cp.requeue(t, false, ActorAgent, "rejected by agent: "+truncate(ack.Reason, 200))
		cp.schedule(now)
		return nil
	}
	t.ackSeq = max(t.ackSeq, ack.HeartbeatSeq)
	if t.State == TaskAssigned {
		t.confirmed = true
		cp.setState(t, TaskRunning, ActorAgent, "")
	}
	return nil
}

// applyResult applies one result, fenced by attempt.
func (cp *ControlPlane) applyResult(now time.Time, a *agentRecord, r Result) {
	t, ok := cp.tasks[r.TaskID]
	if !ok || t.AgentID != a.id || t.Attempt != r.Attempt || !(t.State == TaskAssigned || t.State == TaskRunning) {
		cp.stats.StaleIgnored++
		cur := 0
		if ok {
			cur = t.Attempt
		}
		cp.record(Event{Kind: EventTask, Type: EventTaskStaleIgnored, TaskID: r.TaskID, AgentID: a.id, Attempt: r.Attempt,
			Actor: ActorAgent, Reason: fmt.Sprintf("result %s for attempt %d ignored (current attempt %d)", r.Outcome, r.Attempt, cur)})
		return
	}
	t.ExitCode = r.ExitCode
	t.Output = tail(r.Output, cp.cfg.OutputBytesMax)
	d := a.dom
	rec := &t.Attempts[len(t.Attempts)-1]
	rec.EndedAt, rec.Outcome, rec.Error = now, r.Outcome, truncate(r.Error, resultErrorMax)
	switch r.Outcome {
	case OutcomeSucceeded:
		a.health.Result(now, t.ID, true)
		d.health.Result(now, t.ID, true, t.probe)
		cp.releaseLease(t)
		cp.setState(t, TaskSucceeded, ActorAgent, "")
	case OutcomeFailed, OutcomeTimeout:
		cp.recordFailure(now, a, t)
		cp.fail(t, fmt.Sprintf("attempt %d %s on %s: %s", t.Attempt, r.Outcome, a.id, truncate(r.Error, 200)))
	case OutcomeRejected:
		t.rejectedBy = append(t.rejectedBy, a.id)
		cp.requeue(t, false, ActorAgent, "rejected by agent: "+truncate(r.Error, 200))
	case OutcomeCancelled:
		// The agent stopped it on its own (shutting down): not the task's fault.
		cp.requeue(t, false, ActorAgent, "stopped by agent: "+truncate(r.Error, 200))
	}
}

// recordFailure counts a failed (or stuck) attempt of t against agent a's
// health and, for the task's first failure only, against a's domain. A retry
// failing again says more about the task (poison, hanging) than the domain:
// counted, a queue with such a task at its head kept the domain isolated,
// its every probe failing.
func (cp *ControlPlane) recordFailure(now time.Time, a *agentRecord, t *taskRecord) {
	a.health.Result(now, t.ID, false)
	if t.Failures == 0 {
		a.dom.health.Result(now, t.ID, false, t.probe)
	}
}

// fail counts a failed attempt: retry elsewhere, or end the task.
func (cp *ControlPlane) fail(t *taskRecord, reason string) {
	t.Failures++
	if !slices.Contains(t.failedOn, t.AgentID) {
		t.failedOn = append(t.failedOn, t.AgentID)
	}
	switch {
	case len(t.failedOn) >= cp.cfg.PoisonAgents:
		cp.forgivePoison(t)
		cp.releaseLease(t)
		cp.setState(t, TaskDead, ActorScheduler, fmt.Sprintf("poison: failed on %d different agents; last: %s", len(t.failedOn), reason))
	case t.Failures >= t.Spec.MaxAttempts && t.Spec.MaxAttempts == 1:
		cp.releaseLease(t)
		cp.setState(t, TaskFailed, ActorScheduler, reason)
	case t.Failures >= t.Spec.MaxAttempts:
		cp.releaseLease(t)
		cp.setState(t, TaskDead, ActorScheduler, fmt.Sprintf("out of attempts (%d); last: %s", t.Failures, reason))
	default:
		cp.requeue(t, false, ActorScheduler, reason)
	}
}

// forgivePoison removes a poison task's failures from the health of the
// agents and domains it failed on.
func (cp *ControlPlane) forgivePoison(t *taskRecord) {
	cp.stats.PoisonTasks++
	seen := map[string]bool{}
	for _, id := range t.failedOn {
		if a, ok := cp.agents[id]; ok {
			a.health.Forgive(t.ID)
			if !seen[a.domain] {
				seen[a.domain] = true
				a.dom.health.Forgive(t.ID)
			}
		}
	}
}

// releaseLease detaches t's current attempt from its agent.
func (cp *ControlPlane) releaseLease(t *taskRecord) {
	a := cp.agents[t.AgentID]
	if !(a != nil && a.running[t.ID] == t) {
		failf("task %s: lease on %s not held", t.ID, t.AgentID)
	}
	delete(a.running, t.ID)
	if len(a.running) == 0 {
		i, ok := busyIndex(cp.busy, a.id)
		if !ok {
			failf("agent %s with a lease is not busy", a.id)
		}
		cp.busy = slices.Delete(cp.busy, i, i+1)
		if !a.connected() || a.stopping {
			cp.agentsChanged() // it may be disconnected or forgotten now
		}
	}
	d := a.dom
	d.inFlight--
	if t.probe {
		d.probes--
		t.probe = false
	}
	cp.inFlight--
	cp.reindex(a)
}

// requeue puts t back in the queue for another attempt, or ends it when it
// has used every attempt it may. penalty counts the attempt against
// max_attempts (stuck workers); agent losses and rejections do not, but every
// attempt counts against TaskAttemptsMax.
func (cp *ControlPlane) requeue(t *taskRecord, penalty bool, actor, reason string) {
	if t.State == TaskAssigned || t.State == TaskRunning {
		if rec := &t.Attempts[len(t.Attempts)-1]; rec.EndedAt.IsZero() {
			rec.EndedAt, rec.Error = cp.now, truncate(reason, resultErrorMax)
		}
		cp.releaseLease(t)
	}
	if penalty {
		t.Failures++
		if t.Failures >= t.Spec.MaxAttempts {
			cp.setState(t, TaskDead, actor, fmt.Sprintf("out of attempts (%d); last: %s", t.Failures, reason))
			return
		}
	}
	if t.Attempt >= cp.cfg.TaskAttemptsMax {
		cp.setState(t, TaskDead, actor, fmt.Sprintf("gave up after %d attempts; last: %s", t.Attempt, reason))
		return
	}
	t.confirmed = false
	// Requeued work is already accepted: it goes back even into a queue
	// that newer submissions filled (they are refused, it is not).
	cp.queue.PushReturning(&t.queueItem, cp.now)
	cp.enqueued(t)
	t.EnqueuedAt = cp.now
	cp.stats.Requeues++
	cp.setState(t, TaskQueued, actor, reason)
}

// QuarantineInput is an operator's request to quarantine or release an agent.
type QuarantineInput struct {
	AgentID AgentID `json:"agent_id"`
	Actor   string  `json:"actor,omitempty"`
	By      string  `json:"by,omitempty"` // the name of the token that asked
	Reason  string  `json:"reason,omitempty"`
}

// applyQuarantine takes an agent out of placement on an operator's word. Operator
// quarantines are not subject to the per-domain cap and last until released.
func (cp *ControlPlane) applyQuarantine(now time.Time, in QuarantineInput) error {
	now = cp.advance(now)
	a, ok := cp.agents[in.AgentID]
	if !ok {
		return fmt.Errorf("%w: agent %q", ErrNotFound, in.AgentID)
	}
	q := &a.quarantine
	if q.active && q.by == ActorOperator {
		return fmt.Errorf("%w: agent %s is already quarantined by an operator", ErrConflict, a.id)
	}
	if q.active {
		a.dom.quarantined--
	}
	q.active, q.by, q.at, q.till = true, ActorOperator, now, time.Time{}
	cp.agentsChanged()
	cp.reindex(a)
	cp.stats.Quarantines++
	cp.record(Event{Kind: EventAgent, Type: EventAgentQuarantined, AgentID: a.id, Domain: a.domain, Cause: CauseOperator,
		Actor: orDefault(in.Actor, ActorOperator), Reason: orDefault(in.Reason, "operator request")})
	return nil
}

// applyRelease returns a quarantined agent to placement on an operator's word.
func (cp *ControlPlane) applyRelease(now time.Time, in ReleaseInput) error {
	now = cp.advance(now)
	a, ok := cp.agents[in.AgentID]
	if !ok {
		return fmt.Errorf("%w: agent %q", ErrNotFound, in.AgentID)
	}
	if !a.quarantine.active {
		return fmt.Errorf("%w: agent %s is not quarantined", ErrConflict, a.id)
	}
	cp.release(a, orDefault(in.Actor, ActorOperator), orDefault(in.Reason, "operator request"))
	cp.schedule(now)
	return nil
}

func (cp *ControlPlane) release(a *agentRecord, actor, reason string) {
	q := &a.quarantine
	if q.by == quarantineByHealth {
		a.dom.quarantined--
	}
	q.active, q.by = false, ""
	cp.agentsChanged()
	q.decayed = cp.now
	cp.reindex(a)
	cp.record(Event{Kind: EventAgent, Type: EventAgentReleased, AgentID: a.id, Domain: a.domain, Actor: actor, Reason: reason})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// measuredInterval is the heartbeat interval an agent's reliability is
// measured against: the one it reports, at most the cp's HeartbeatTimeout
// (an agent cannot excuse more silence than disconnects it), or the cp's
// own interval for an agent too old to report one.
func (cp *ControlPlane) measuredInterval(hb HeartbeatInput) time.Duration {
	if hb.HeartbeatIntervalMillis <= 0 {
		return cp.cfg.HeartbeatInterval
	}
	return min(time.Duration(hb.HeartbeatIntervalMillis)*time.Millisecond, cp.cfg.HeartbeatTimeout)
}

// noteHeartbeatInterval keeps a's reported interval (it changes when the
// agent adopts the cp's after registering) and measures against it.
func (cp *ControlPlane) noteHeartbeatInterval(a *agentRecord, hb HeartbeatInput) {
	a.reportedInterval = time.Duration(hb.HeartbeatIntervalMillis) * time.Millisecond
	a.health.SetInterval(cp.measuredInterval(hb))
}
