package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// applyTick advances time to now and reconciles: agents that went silent are
// disconnected, lost agents' tasks and stuck or unconfirmed attempts are
// requeued, health scores are updated and quarantines applied or lifted,
// domains move through their isolation states, self-protection adjusts the
// mode, expired idempotency keys go, and a placement pass runs.
func (cp *ControlPlane) applyTick(now time.Time) {
	now = cp.advance(now)
	cp.stats.Reconciles++
	cp.checkConnectivity(now)
	cp.checkMassDisconnect()
	cp.expireLeases(now)
	if now.Sub(cp.lastHealthEval) >= cp.cfg.HeartbeatInterval {
		cp.lastHealthEval = now
		cp.evaluateHealth(now)
	}
	cp.evaluateDomains(now)
	cp.selfProtect(now)
	cp.idem.Expire(now)
	cp.schedule(now)
}

// checkConnectivity disconnects agents gone silent or stopped and forgets
// those disconnected for ForgetAgentAfter. Most ticks find nothing to do:
// it scans only from connCheckAt on, the earliest connectivityDue of the
// agents at the last scan.
func (cp *ControlPlane) checkConnectivity(now time.Time) {
	if now.Before(cp.connCheckAt) {
		return
	}
	var forget []*agentRecord
	// now.Sub(t) >= d is !t.After(now - d): one time subtraction per tick
	// rather than one per agent.
	silentSince := now.Add(-cp.cfg.HeartbeatTimeout)
	next := never
	for _, a := range cp.agentList {
		switch {
		case a.connected() && a.stopping && len(a.running) == 0:
			cp.becomeDisconnected(a, false, "agent stopped")
		case a.connected() && !a.lastHeartbeat.After(silentSince):
			cp.becomeDisconnected(a, true, fmt.Sprintf("no heartbeat for %v", now.Sub(a.lastHeartbeat)))
		case !a.connected() && len(a.running) == 0 && now.Sub(a.disconnectedAt) >= cp.cfg.ForgetAgentAfter && cp.mayForget(a):
			forget = append(forget, a)
			continue
		}
		if due := cp.connectivityDue(a); due.Before(next) {
			next = due
		}
	}
	for _, a := range forget {
		cp.forgetAgent(a, fmt.Sprintf("disconnected for %v", now.Sub(a.disconnectedAt)))
	}
	// Disconnecting and forgetting called agentsChanged: set the bound
	// after them.
	cp.connCheckAt = next
}

// never is later than any time the cp sees.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// connectivityDue is the earliest time at which checkConnectivity may act
// on a as it is now (zero: at once; never: not until a changes): a
// connected agent when it has been silent for HeartbeatTimeout (or at
// once when it stops with nothing running), a disconnected one with
// nothing running when ForgetAgentAfter has passed. Only a change of a
// (agentsChanged) brings it earlier; a heartbeat only puts it later.
func (cp *ControlPlane) connectivityDue(a *agentRecord) time.Time {
	switch {
	case a.connected() && a.stopping && len(a.running) == 0:
		return time.Time{}
	case a.connected():
		return a.lastHeartbeat.Add(cp.cfg.HeartbeatTimeout)
	case len(a.running) == 0:
		return a.disconnectedAt.Add(cp.cfg.ForgetAgentAfter)
	}
	return never
}

// agentsChanged drops the reconcile pass's caches after a change that may
// bring an agent's connectivityDue earlier or change a domain's usable
// slots: an agent registered, connected, disconnected, forgotten, stopping,
// resized, quarantined or released, left with nothing running while
// disconnected or stopping, or a takeover or new config.
func (cp *ControlPlane) agentsChanged() {
	cp.connCheckAt = time.Time{}
	cp.usableValid = false
}

// checkCaches compares the reconcile pass's caches with a fresh
// computation (tests): connCheckAt may be early, never late, and valid
// usable slots must be exact.
func (cp *ControlPlane) checkCaches() error {
	for _, a := range cp.agentList {
		if due := cp.connectivityDue(a); due.Before(cp.connCheckAt) {
			return fmt.Errorf("agent %s: connectivity due at %v, before the cached bound %v", a.id, due, cp.connCheckAt)
		}
	}
	var busy []*agentRecord
	for _, a := range cp.agentList {
		if len(a.running) > 0 {
			busy = append(busy, a)
		}
	}
	if !slices.Equal(busy, cp.busy) {
		return fmt.Errorf("%d busy agents listed, %d have attempts", len(cp.busy), len(busy))
	}
	if !cp.usableValid {
		return nil
	}
	cached := map[string]int{}
	for _, name := range cp.domainNames {
		cached[name] = cp.domains[name].usable
	}
	cp.computeUsable()
	for _, name := range cp.domainNames {
		if got, want := cached[name], cp.domains[name].usable; got != want {
			return fmt.Errorf("domain %s: cached usable slots %d, fresh %d", name, got, want)
		}
	}
	return nil
}

// checkMassDisconnect pauses rescheduling when most of the fleet disconnects
// at once: then it is far likelier that the cp is cut off than that the
// agents died, and moving all their work would be a storm onto the few left.
func (cp *ControlPlane) checkMassDisconnect() {
	known, disconnected := 0, 0
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		known += d.agents
		disconnected += d.disconnected
	}
	mass := disconnected >= cp.cfg.MassDisconnectMinAgents &&
		float64(disconnected) >= cp.cfg.MassDisconnectFraction*float64(known)
	switch {
	case mass && !cp.paused:
		cp.paused = true
		cp.pausedReason = fmt.Sprintf("%d of %d agents disconnected at once: cp presumed cut off", disconnected, known)
		cp.stats.Pauses++
		cp.record(Event{Kind: EventMode, Type: EventSchedulerReschedulingPaused, Actor: ActorSelfProtection, Reason: cp.pausedReason})
	case !mass && cp.paused:
		cp.paused = false
		cp.record(Event{Kind: EventMode, Type: EventSchedulerReschedulingResumed, Actor: ActorSelfProtection,
			Reason: fmt.Sprintf("%d of %d agents disconnected", disconnected, known)})
		cp.pausedReason = ""
		// While paused the cp presumed itself cut off, so the loss grace of
		// agents still disconnected starts now: when a partition heals,
		// their next heartbeat is seconds away, and declaring them lost at
		// once would run their tasks twice.
		for _, a := range cp.agentList {
			if !a.connected() && a.disconnectedAt.Before(cp.now) {
				a.disconnectedAt = cp.now
			}
		}
	}
}

// expireLeases requeues attempts that will not finish: on agents lost for
// longer than LostAfter, never confirmed within AssignTimeout, or past their
// timeout plus LeaseGrace (stuck worker: counted as a failure).
func (cp *ControlPlane) expireLeases(now time.Time) {
	type expiry struct {
		t       *taskRecord
		penalty bool
		reason  string
	}
	var expired []expiry
	for _, a := range cp.busy { // the agents with attempts, in id order
		lost := !a.connected() && now.Sub(a.disconnectedAt) >= cp.cfg.LostAfter
		if !a.connected() && cp.paused {
			continue // hold: the agent may well be running them
		}
		if lost && a.state != agentLost {
			a.state = agentLost
			cp.record(Event{Kind: EventAgent, Type: EventAgentLost, AgentID: a.id, Domain: a.domain, Actor: ActorReconcile,
				Reason: fmt.Sprintf("disconnected for %v, rescheduling %d tasks", now.Sub(a.disconnectedAt), len(a.running))})
		}
		// Only attempts that may have expired are sorted (for a
		// deterministic order); most ticks find none.
		ts := cp.expiredScratch[:0]
		for _, t := range a.running {
			if lost || cp.unconfirmedExpired(now, a, t) || a.connected() && !now.Before(cp.leaseDeadline(t)) {
				ts = append(ts, t)
			}
		}
		sortTasks(ts)
		for _, t := range ts {
			switch {
			case lost:
				expired = append(expired, expiry{t, false, fmt.Sprintf("agent %s lost", a.id)})
			case cp.unconfirmedExpired(now, a, t):
				expired = append(expired, expiry{t, false, fmt.Sprintf("assignment to %s not confirmed within %v", a.id, cp.cfg.AssignTimeout)})
			case a.connected() && !now.Before(cp.leaseDeadline(t)):
				// Only a connected agent can be judged stuck: a silent one
				// may have finished long ago with its result held up by
				// the network; the loss grace above decides for it.
				expired = append(expired, expiry{t, true, fmt.Sprintf("stuck: attempt %d on %s exceeded timeout %ds + grace %v", t.Attempt, a.id, t.Spec.TimeoutSeconds, cp.cfg.LeaseGrace)})
			}
		}
		cp.expiredScratch = ts[:0]
	}
	for _, e := range expired {
		t := e.t
		if e.penalty {
			cp.stats.StuckLeases++
			a := cp.agents[t.AgentID]
			cp.recordFailure(now, a, t)
			cp.sendCancel(t, "lease expired")
			if !containsAgent(t.failedOn, a.id) {
				t.failedOn = append(t.failedOn, a.id)
			}
		} else {
			cp.stats.LostLeases++
		}
		cp.requeue(t, e.penalty, ActorReconcile, e.reason)
	}
}

// unconfirmedExpired reports whether t's unconfirmed assignment to a may be
// presumed lost on the cp's clock alone. The agent may have taken it with
// its ack lost: a heartbeat not listing it (requeueUnreported) proves it
// does not run it, and silence proves it only once the agent's lease (see
// Config.AgentLease) has surely run out, HeartbeatTimeout + LostAfter after
// the last heartbeat the cp heard.
func (cp *ControlPlane) unconfirmedExpired(now time.Time, a *agentRecord, t *taskRecord) bool {
	return !t.confirmed && now.Sub(t.assignedAt) >= cp.cfg.AssignTimeout &&
		now.Sub(a.lastHeartbeat) >= cp.cfg.HeartbeatTimeout+cp.cfg.LostAfter
}

func containsAgent(ids []AgentID, id AgentID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// evaluateHealth scores connected agents and applies or lifts quarantines.
func (cp *ControlPlane) evaluateHealth(now time.Time) {
	hc := cp.cfg.Health
	for _, a := range cp.agentList {
		if q := &a.quarantine; !q.active && q.n > 0 && now.Sub(q.decayed) >= hc.QuarantineDecay {
			q.n--
			q.decayed = now
		}
		a.score = a.health.Score(now)
		if a.quarantine.active {
			if a.quarantine.by == quarantineByHealth {
				cp.maybeRelease(now, a)
			}
			continue
		}
		if a.connected() && a.score.Score < hc.QuarantineThreshold {
			cp.maybeQuarantine(now, a)
		}
	}
}

// maybeQuarantine quarantines a for low health unless the problem looks like
// the domain's or the cp's rather than the node's, or the cap is reached.
func (cp *ControlPlane) maybeQuarantine(now time.Time, a *agentRecord) {
	d := a.dom
	// The zone's problem is its own (an outage) or the cp's (cut off):
	// then its nodes are not judged one by one.
	if cp.paused || cp.cfg.Domains.Outage(d.agents, d.disconnected) {
		return
	}
	if d.quarantined >= cp.quarantineCap(d) {
		cp.stats.QuarantinesCapped++
		return
	}
	healthy := d.agents - d.disconnected - cp.quarantinedIn(a.domain)
	if healthy <= 1 {
		return // never the last healthy agent of a domain
	}
	q := &a.quarantine
	q.n++
	q.decayed = now
	backoff := cp.cfg.Health.QuarantineBackoff(q.n)
	q.active, q.by, q.at, q.till = true, quarantineByHealth, now, now.Add(backoff)
	cp.agentsChanged()
	d.quarantined++
	cp.stats.Quarantines++
	s := a.score
	a.health.Reset(now)
	cp.reindex(a)
	cp.record(Event{Kind: EventAgent, Type: EventAgentQuarantined, AgentID: a.id, Domain: a.domain, Actor: ActorReconcile, Cause: CauseHealth,
		Reason: fmt.Sprintf(QuarantineLogLine+": %.2f < %.2f (heartbeat %.2f, success %.2f, flaps %d, latency %.2f); back-off %v",
			s.Score, cp.cfg.Health.QuarantineThreshold, s.Heartbeat, s.Success, s.FlapCount, s.Latency, backoff)})
}

// quarantineCap is the most health quarantines domain d may hold at once.
func (cp *ControlPlane) quarantineCap(d *domainRecord) int {
	return cp.quarantineCapFor(d.agents)
}

func (cp *ControlPlane) quarantineCapFor(agents int) int {
	return max(1, int(cp.cfg.Health.DomainQuarantineFraction*float64(agents)))
}

// mayForget reports whether forgetting a keeps its domain's health
// quarantines within the cap, which shrinks with the domain; otherwise a
// stays known (disconnected) until enough quarantines lift.
func (cp *ControlPlane) mayForget(a *agentRecord) bool {
	d := a.dom
	q := d.quarantined
	if a.healthQuarantined() {
		q--
	}
	return q <= cp.quarantineCapFor(d.agents-1)
}

func (cp *ControlPlane) quarantinedIn(domain string) int {
	n := 0
	for _, a := range cp.agentList {
		if a.domain == domain && a.quarantine.active && a.connected() {
			n++
		}
	}
	return n
}

// maybeRelease lifts a health quarantine once the back-off has passed, the
// agent has been stable (no flap) for as long, and its score has recovered
// past the release threshold (hysteresis).
func (cp *ControlPlane) maybeRelease(now time.Time, a *agentRecord) {
	backoff := cp.cfg.Health.QuarantineBackoff(a.quarantine.n)
	if now.Before(a.quarantine.till) || !a.connected() {
		return
	}
	if last, ok := a.health.LastFlap(); ok && now.Sub(last) < backoff {
		return
	}
	if now.Sub(a.lastConnectedSince()) < backoff {
		return
	}
	if a.score.Score < cp.cfg.Health.ReleaseThreshold {
		return
	}
	cp.release(a, ActorReconcile, fmt.Sprintf("health recovered: score %.2f, stable for %v", a.score.Score, backoff))
}

func (a *agentRecord) lastConnectedSince() time.Time {
	if a.connectedSince.IsZero() {
		return a.registeredAt
	}
	return a.connectedSince
}

// evaluateDomains moves every domain through its isolation machine, in name
// order, with the capacity the panic threshold protects kept current as
// each one changes; then it records the start or end of a panic.
func (cp *ControlPlane) evaluateDomains(now time.Time) {
	if !cp.usableValid {
		cp.computeUsable()
		cp.usableValid = true
	}
	total, open := 0, 0
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		total += d.usable
		if d.health.State.takesWork() {
			open += d.usable
		}
	}
	rates := cp.failureTotals(now)
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		sig := DomainSignals{Known: d.agents, Disconnected: d.disconnected,
			UsableSlots: d.usable, OpenElsewhere: open, TotalUsable: total}
		if d.health.State.takesWork() {
			sig.OpenElsewhere -= d.usable
		}
		if len(cp.domainNames) > 1 {
			ok, failed := rates.ok-d.windowOK, rates.failed-d.windowFailed
			sig.HasRest, sig.RestVolume = true, ok+failed
			if sig.RestVolume > 0 {
				sig.RestRate = float64(failed) / float64(sig.RestVolume)
			}
		}
		was := d.health.State.takesWork()
		tr, ok := d.health.Evaluate(now, sig)
		if !ok {
			continue
		}
		if now := d.health.State.takesWork(); now != was {
			if now {
				open += d.usable
			} else {
				open -= d.usable
			}
		}
		cp.stats.DomainTransitions++
		cp.record(Event{Kind: EventDomain, Type: DomainEventType(tr.To), Domain: name, From: string(tr.From), To: string(tr.To),
			Actor: ActorReconcile, Reason: tr.Reason})
	}
	cp.notePanic(open, total)
}

// computeUsable sets every domain's usable slots: those of its connected,
// unquarantined agents.
func (cp *ControlPlane) computeUsable() {
	for _, name := range cp.domainNames {
		cp.domains[name].usable = 0
	}
	for _, a := range cp.agentList {
		if a.connected() && !a.quarantine.active {
			a.dom.usable += a.slots
		}
	}
}

type failureTotals struct{ ok, failed int }

// failureTotals sums every domain's outcomes in the window and keeps each
// domain's own counts on its record, so each domain is compared with the
// rest of the fleet in one pass.
func (cp *ControlPlane) failureTotals(now time.Time) failureTotals {
	var t failureTotals
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		d.windowOK, d.windowFailed = d.health.Counts(now)
		t.ok += d.windowOK
		t.failed += d.windowFailed
	}
	return t
}

// notePanic records on the timeline when the panic threshold starts and
// stops holding domains out of isolation.
func (cp *ControlPlane) notePanic(open, total int) {
	p := cp.isolationPanic()
	switch {
	case p.Active && !cp.panicActive:
		cp.panicActive = true
		cp.stats.Panics++
		reason := fmt.Sprintf("isolation panic (minimum open capacity %.0f%%): %s", 100*cp.cfg.Domains.MinOpenCapacity, p.Reason)
		cp.record(Event{Kind: EventDomain, Type: EventDomainPanic, To: "active", Actor: ActorSelfProtection, Reason: reason, Count: len(p.Domains)})
	case !p.Active && cp.panicActive:
		cp.panicActive = false
		cp.record(Event{Kind: EventDomain, Type: EventDomainPanic, From: "active", To: "inactive", Actor: ActorSelfProtection,
			Reason: fmt.Sprintf("isolation panic over: %d of %d usable slots open", open, total)})
	}
}

// IsolationPanic is the snapshot's isolation_panic: whether the panic
// threshold is holding domains out of isolation, which, and why.
type IsolationPanic struct {
	Active  bool     `json:"active"`
	Domains []string `json:"domains"`
	Reason  string   `json:"reason,omitempty"`
}

func (cp *ControlPlane) isolationPanic() IsolationPanic {
	p := IsolationPanic{Domains: []string{}}
	var reasons []string
	for _, name := range cp.domainNames {
		if r := cp.domains[name].health.Panic; r != "" {
			p.Domains = append(p.Domains, name)
			reasons = append(reasons, name+": "+r)
		}
	}
	p.Active = len(p.Domains) > 0
	p.Reason = strings.Join(reasons, "; ")
	return p
}

// selfProtect enters DEGRADED when the queue stays near capacity and leaves
// it with hysteresis; it never overrides an operator's mode.
func (cp *ControlPlane) selfProtect(now time.Time) {
	depth, capacity := float64(cp.queue.Len()), float64(cp.queue.Cap())
	high := depth >= cp.cfg.DegradedEnterFraction*capacity
	low := depth < cp.cfg.DegradedExitFraction*capacity
	if high {
		if cp.queueHighSince.IsZero() {
			cp.queueHighSince = now
		}
	} else {
		cp.queueHighSince = time.Time{}
	}
	if low {
		if cp.queueLowSince.IsZero() {
			cp.queueLowSince = now
		}
	} else {
		cp.queueLowSince = time.Time{}
	}
	if !cp.selfProtectionMay() {
		return
	}
	switch cp.mode.Mode {
	case ModeNormal:
		if high && now.Sub(cp.queueHighSince) >= cp.cfg.DegradedEnterAfter {
			cp.setMode(ModeDegraded, ActorSelfProtection, fmt.Sprintf("queue depth %d >= %.0f%% of capacity %d for %v",
				cp.queue.Len(), 100*cp.cfg.DegradedEnterFraction, cp.queue.Cap(), cp.cfg.DegradedEnterAfter))
		}
	case ModeDegraded:
		if low && now.Sub(cp.queueLowSince) >= cp.cfg.DegradedExitAfter {
			cp.setMode(ModeNormal, ActorSelfProtection, fmt.Sprintf("queue depth %d < %.0f%% of capacity for %v",
				cp.queue.Len(), 100*cp.cfg.DegradedExitFraction, cp.cfg.DegradedExitAfter))
		}
	}
}
