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
	skip := func(key string) bool { return slices.Contains(cp.skipKeys, key) }
	for range cp.cfg.DecisionsPerPassMax {
		it := cp.queue.Next(now, skip)
		if it == nil {
			return
		}
		t := it.owner
		a, outcome, reason := cp.place(t)
		cp.stats.Decisions[outcome]++
		dec := Decision{Outcome: outcome, Reason: reason, At: now}
		t.setDecision(dec)
		if a == nil {
			cp.blocked[it.domain] = dec
			cp.skipKeys = append(cp.skipKeys, it.domain)
			continue
		}
		delete(cp.blocked, it.domain)
		cp.queue.Remove(it)
		cp.queue.Advance(it.domain)
		cp.assign(now, t, a)
		if cp.freeSlots() == 0 {
			cp.blockAll(now, DecisionNoCapacity, "no connected agent has a free slot")
			return
		}
	}
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

// place chooses an agent for t, or says why there is none.
func (cp *ControlPlane) place(t *taskRecord) (*agentRecord, string, string) {
	exclude := func(a *agentRecord) bool {
		return slices.Contains(t.failedOn, a.id) || slices.Contains(t.rejectedBy, a.id) ||
			t.Spec.Kind == KindExec && !a.allowsExec
	}
	if t.Spec.Kind == KindSleep && len(t.failedOn) == 0 && len(t.rejectedBy) == 0 {
		exclude = nil // the common case pays nothing
	}
	if t.Spec.Domain != "" {
		d, ok := cp.domains[t.Spec.Domain]
		if !ok || d.agents == 0 {
			return nil, DecisionNoAgents, fmt.Sprintf("no agent in domain %s", t.Spec.Domain)
		}
		if ok, outcome := d.health.Accepts(d.inFlight, d.slots); !ok {
			return nil, outcome, fmt.Sprintf("domain %s is %s: %s", t.Spec.Domain, d.health.State, d.health.Reason)
		}
		if a := d.index.best(exclude); a != nil {
			return a, DecisionAssigned, ""
		}
		return nil, DecisionNoCapacity, fmt.Sprintf("no eligible agent with a free slot in domain %s", t.Spec.Domain)
	}
	// Unconstrained: the accepting domain with the most free slots.
	var best *domainRecord
	refused := ""
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		if d.index.freeTotal == 0 {
			continue
		}
		if ok, outcome := d.health.Accepts(d.inFlight, d.slots); !ok {
			refused = outcome
			continue
		}
		if best == nil || d.index.freeTotal > best.index.freeTotal {
			if exclude == nil || d.index.best(exclude) != nil {
				best = d
			}
		}
	}
	if best == nil {
		if refused != "" {
			return nil, refused, "every domain with free slots is isolated or throttled"
		}
		return nil, DecisionNoCapacity, "no eligible agent with a free slot"
	}
	return best.index.best(exclude), DecisionAssigned, ""
}

// assign leases t's next attempt to a and sends the assignment.
func (cp *ControlPlane) assign(now time.Time, t *taskRecord, a *agentRecord) {
	d := a.dom
	t.Attempt++
	t.AgentID = a.id
	t.assignedAt, t.confirmed = now, false
	t.probe = d.health.State == DomainProbing
	t.Attempts = append(t.Attempts, AttemptRecord{Attempt: t.Attempt, AgentID: a.id, Domain: a.domain, AssignedAt: now})
	if len(t.Attempts) > maxAttemptsMax+cp.cfg.TaskAttemptsMax {
		t.Attempts = slices.Delete(t.Attempts, 0, 1)
	}
	a.running[t.ID] = t
	d.inFlight++
	cp.inFlight++
	cp.reindex(a)
	cp.setState(t, TaskAssigned, ActorScheduler, "")
	cp.outbox = append(cp.outbox, Outbound{To: a.id, Address: a.address, Assign: &Assign{
		TaskID: t.ID, Attempt: t.Attempt, Spec: t.Spec, Deadline: cp.leaseDeadline(t),
	}})
}

// leaseDeadline is when the cp gives up on t's current attempt as stuck.
func (cp *ControlPlane) leaseDeadline(t *taskRecord) time.Time {
	return t.assignedAt.Add(t.Spec.Timeout() + cp.cfg.LeaseGrace)
}

// setDecision records the scheduler's latest decision on t, reusing the
// allocation of the previous one.
func (t *taskRecord) setDecision(d Decision) {
	if t.LastDecision == nil {
		t.LastDecision = new(Decision)
	}
	*t.LastDecision = d
}
