package core

import (
	"fmt"
	"slices"
	"time"
)

// schedule runs one placement pass at now: it takes queued tasks in queue
// order and places each on the eligible agent with the most free slots in a
// domain that accepts work. A domain key whose head cannot be placed is
// skipped for the rest of the pass (everything behind it would fail the same
// way), so one blocked zone never holds up the others.
func (cp *ControlPlane) schedule(now time.Time) {
	if cp.queue.Len() == 0 {
		return
	}
	if cp.mode.Mode == ModeReadOnly {
		cp.blockAll(now, DecisionModeBlocked, "scheduler is READ_ONLY")
		return
	}
	if cp.freeSlots() == 0 {
		cp.blockAll(now, DecisionNoCapacity, "no connected agent has a free slot")
		return
	}
	cp.skipKeys = cp.skipKeys[:0]
	cp.pass++
	skip := func(key string) bool { return slices.Contains(cp.skipKeys, key) }
	skipItem := func(it *queueItem) bool { return it.owner != nil && it.owner.skipPass == cp.pass }
	for range cp.cfg.DecisionsPerPassMax {
		it := cp.queue.Next(now, skip, skipItem)
		if it == nil {
			return
		}
		t := it.owner
		a, outcome, reason, taskOnly := cp.place(now, t)
		cp.stats.Decisions[outcome]++
		dec := Decision{Outcome: outcome, Reason: reason, At: now}
		t.setDecision(dec)
		if taskOnly {
			t.skipPass = cp.pass
			continue
		}
		if a == nil {
			cp.blocked[it.domain] = dec
			cp.skipKeys = append(cp.skipKeys, it.domain)
			continue
		}
		delete(cp.blocked, it.domain)
		cp.dequeue(t)
		cp.queue.Advance(it.domain)
		cp.assign(now, t, a)
		if cp.freeSlots() == 0 {
			cp.blockAll(now, DecisionNoCapacity, "no connected agent has a free slot")
			return
		}
	}
}

// retried reports whether t has a failure history (failed or stuck).
func (t *taskRecord) retried() bool { return t.Failures > 0 || len(t.failedOn) > 0 }

// dequeue takes a queued task out of the queue.
func (cp *ControlPlane) dequeue(t *taskRecord) {
	if cp.queue.Remove(&t.queueItem) && t.retried() {
		cp.retriesQueued[t.domain]--
	}
}

// enqueued counts a task the queue just took.
func (cp *ControlPlane) enqueued(t *taskRecord) {
	if t.retried() {
		cp.retriesQueued[t.domain]++
	}
}

// probeWorthy reports whether t may be a probe into the PROBING domain d.
// Probes prefer tasks with no failure history: a poison or hanging task
// retried as a probe says nothing about the domain. A retried task may
// probe only when no clean task is queued that could go there, or when the
// domain has waited a base cool-down for a probe.
func (cp *ControlPlane) probeWorthy(now time.Time, t *taskRecord, d *domainRecord) bool {
	if !t.retried() {
		return true
	}
	clean := func(key string) int { return cp.queue.DomainLen(key) - cp.retriesQueued[key] }
	return clean(d.health.Name) == 0 && clean("") == 0 || now.Sub(d.health.Since) >= cp.cfg.Domains.CooldownBase
}

// blockAll records why every queued domain key waits, without a decision per
// task (nothing was tried).
func (cp *ControlPlane) blockAll(now time.Time, outcome, reason string) {
	for _, key := range cp.queue.DomainKeys() {
		cp.blocked[key] = Decision{Outcome: outcome, Reason: reason, At: now}
	}
}

func (cp *ControlPlane) freeSlots() int {
	n := 0
	for _, name := range cp.domainNames {
		n += cp.domains[name].index.freeTotal
	}
	return n
}

// place chooses an agent for t, or says why there is none. taskOnly is set
// when the refusal is particular to t (no eligible agent it may run on, such
// as exec on agents that do not allow it), so the rest of its domain's queue
// need not wait behind it.
func (cp *ControlPlane) place(now time.Time, t *taskRecord) (a *agentRecord, outcome, reason string, taskOnly bool) {
	// hard: agents t must never go to. soft: agents it already failed on,
	// avoided while others exist so that poison shows on different agents.
	hardRule := func(a *agentRecord) bool {
		return t.Spec.Kind == KindExec && !a.allowsExec || slices.Contains(t.rejectedBy, a.id)
	}
	var hard, soft func(*agentRecord) bool // nil: no exclusion, the common case pays nothing
	if t.Spec.Kind == KindExec || len(t.rejectedBy) > 0 {
		hard = hardRule
	}
	if hard != nil || len(t.failedOn) > 0 {
		soft = func(a *agentRecord) bool { return hardRule(a) || slices.Contains(t.failedOn, a.id) }
	}
	pick := func(d *domainRecord) *agentRecord {
		if a := d.index.best(soft); a != nil {
			return a
		}
		return d.index.best(hard)
	}
	if t.Spec.Domain != "" {
		d, ok := cp.domains[t.Spec.Domain]
		if !ok || d.agents == 0 {
			return nil, DecisionNoAgents, fmt.Sprintf("no agent in domain %s", t.Spec.Domain), false
		}
		if ok, outcome := d.health.Accepts(d.inFlight, d.probes, d.slots); !ok {
			return nil, outcome, fmt.Sprintf("domain %s is %s: %s", t.Spec.Domain, d.health.State, d.health.Reason), false
		}
		if d.health.State == DomainProbing && !cp.probeWorthy(now, t, d) {
			return nil, DecisionDomainIsolated, fmt.Sprintf("domain %s is PROBING and probes prefer tasks with no failure history", t.Spec.Domain), true
		}
		if d.index.freeTotal == 0 {
			return nil, DecisionNoCapacity, fmt.Sprintf("no eligible agent with a free slot in domain %s", t.Spec.Domain), false
		}
		if a := pick(d); a != nil {
			return a, DecisionAssigned, "", false
		}
		return nil, DecisionNoCapacity, fmt.Sprintf("no agent with a free slot in domain %s may run this task (%s)", t.Spec.Domain, cp.exclusionReason(t)), true
	}
	// Unconstrained: the accepting domain with the most free slots that has
	// an agent t may run on.
	var best *domainRecord
	var bestAgent *agentRecord
	refused, free, probeSkipped := "", false, false
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		if d.index.freeTotal == 0 {
			continue
		}
		if ok, outcome := d.health.Accepts(d.inFlight, d.probes, d.slots); !ok {
			refused = outcome
			continue
		}
		if d.health.State == DomainProbing && !cp.probeWorthy(now, t, d) {
			probeSkipped = true
			continue
		}
		free = true
		if best != nil && d.index.freeTotal <= best.index.freeTotal {
			continue
		}
		if a := pick(d); a != nil {
			best, bestAgent = d, a
		}
	}
	switch {
	case bestAgent != nil:
		return bestAgent, DecisionAssigned, "", false
	case free:
		return nil, DecisionNoCapacity, "no agent with a free slot may run this task (" + cp.exclusionReason(t) + ")", true
	case probeSkipped:
		// Clean tasks behind t may probe where t may not.
		return nil, DecisionDomainIsolated, "probing domains prefer tasks with no failure history", true
	case refused != "":
		return nil, refused, "every domain with free slots is isolated or throttled", false
	}
	return nil, DecisionNoCapacity, "no eligible agent with a free slot", false
}

func (cp *ControlPlane) exclusionReason(t *taskRecord) string {
	switch {
	case t.Spec.Kind == KindExec:
		return "kind exec needs an agent started with -allow-exec"
	case len(t.rejectedBy) > 0:
		return fmt.Sprintf("refused by %d agents", len(t.rejectedBy))
	}
	return "excluded agents"
}

// assign leases t's next attempt to a and sends the assignment.
func (cp *ControlPlane) assign(now time.Time, t *taskRecord, a *agentRecord) {
	d := a.dom
	t.Attempt++
	t.AgentID = a.id
	t.assignedAt, t.confirmed, t.ackSeq, t.seqLimit = now, false, 0, cp.seqLimit(a)
	if d.health.State == DomainProbing {
		t.probe = true
		d.probes++
	}
	if t.Attempts == nil {
		t.Attempts = t.firstAttempt[:0]
	}
	t.Attempts = append(t.Attempts, AttemptRecord{Attempt: t.Attempt, AgentID: a.id, Domain: a.domain, AssignedAt: now})
	if len(t.Attempts) > maxAttemptsMax+cp.cfg.TaskAttemptsMax {
		t.Attempts = slices.Delete(t.Attempts, 0, 1)
	}
	if len(a.running) == 0 {
		i, _ := busyIndex(cp.busy, a.id)
		cp.busy = slices.Insert(cp.busy, i, a)
	}
	a.running[t.ID] = t
	d.inFlight++
	cp.inFlight++
	cp.reindex(a)
	cp.setState(t, TaskAssigned, ActorScheduler, "")
	cp.outbox = append(cp.outbox, cp.assignMessage(a, t))
}

// assignMessage is the assignment of t's current attempt to a. It names
// a's incarnation when a fences itself (an older agent refuses unknown
// fields), so a restarted agent refuses one meant for its previous process.
func (cp *ControlPlane) assignMessage(a *agentRecord, t *taskRecord) Outbound {
	as := &Assign{TaskID: t.ID, Attempt: t.Attempt, Spec: t.Spec, Deadline: cp.leaseDeadline(t)}
	if a.selfFencing {
		as.Incarnation, as.SeqLimit = a.incarnation, t.seqLimit
	}
	return Outbound{To: a.id, Address: a.address, Assign: as}
}

// seqLimit is the Assign.SeqLimit of an assignment to a sent now (zero for
// an agent that does not fence itself): a few heartbeats beyond the latest
// the cp has seen, as many as the agent sends in AssignTimeout plus two for
// those in flight, so an assignment delivered in time is taken.
func (cp *ControlPlane) seqLimit(a *agentRecord) uint64 {
	if !a.selfFencing {
		return 0
	}
	return a.lastSeq + uint64(cp.cfg.AssignTimeout/max(cp.cfg.HeartbeatInterval, time.Millisecond)) + 2
}

// leaseDeadline is when the cp gives up on t's current attempt as stuck.
func (cp *ControlPlane) leaseDeadline(t *taskRecord) time.Time {
	return t.assignedAt.Add(t.Spec.Timeout() + cp.cfg.LeaseGrace)
}

// setDecision records the scheduler's latest decision on t, in storage the
// record owns (no allocation per decision).
func (t *taskRecord) setDecision(d Decision) {
	t.decision = d
	t.LastDecision = &t.decision
}
