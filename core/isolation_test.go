package core

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of the rule that domain-level isolation never punishes a fleet for
// the fault of one node or one task: zone outages are zone-level events,
// the panic threshold, the relative failure rule and what counts as a probe.

func TestZoneOutageIsZoneLevel(t *testing.T) {
	cfg := DefaultDomainConfig() // all of them, or more than 2 and >= 55%
	for _, c := range []struct {
		known, disconnected int
		out                 bool
	}{
		{0, 0, false},
		{1, 0, false},
		{1, 1, true}, // a one-agent zone whose agent is gone
		{2, 1, false},
		{2, 2, true},
		{3, 2, false},
		{3, 3, true},
		{4, 3, true}, // 3 > 2 and 75%
		{5, 3, true}, // 60%
		{6, 3, false},
		{10, 5, false},
		{10, 6, true},
		{14, 7, false},
		{14, 8, true},
	} {
		if got := cfg.Outage(c.known, c.disconnected); got != c.out {
			t.Errorf("Outage(%d known, %d disconnected) = %v, want %v", c.known, c.disconnected, got, c.out)
		}
	}
}

// TestSmallZoneFlapperQuarantinedZoneStaysOpen is the real-process
// run in the core: zones of two agents, heartbeats every 300ms, timeout 1s;
// one agent of z0 is silent 1.6s and back 1.5s, five times, while work
// pinned to z0 flows. The flapper is quarantined with the runbook's line
// within 4 flaps, z0 is never isolated, and its healthy agent takes z0's
// work all along.
func TestSmallZoneFlapperQuarantinedZoneStaysOpen(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.HeartbeatInterval, c.HeartbeatTimeout = 300*time.Millisecond, time.Second
	})
	h.join("z0", 2, "a0", "a1")
	h.join("z1", 2, "b0", "b1")
	h.join("z2", 2, "c0", "c1")
	all := []AgentID{"a0", "a1", "b0", "b1", "c0", "c1"}
	h.advance(5*time.Second, all...)

	var pinned []TaskID
	ranOnHealthy := 0
	// feed finishes what a1 runs and submits fresh work pinned to z0.
	feed := func() {
		for _, l := range mustAgent(t, h.cp, "a1").Tasks {
			h.report(l.TaskID, OutcomeSucceeded)
			ranOnHealthy++
		}
		for range 2 {
			pinned = append(pinned, h.submit(TaskSpec{Kind: KindSleep, DurationMS: 500, Domain: "z0"}).ID)
		}
	}
	for range 5 {
		for range 2 { // 1.6s silent
			feed()
			h.advance(800*time.Millisecond, "a1", "b0", "b1", "c0", "c1")
		}
		for range 2 { // 1.5s back
			feed()
			h.advance(750*time.Millisecond, all...)
		}
	}
	q := h.events(EventAgentQuarantined)
	if len(q) == 0 {
		v := mustAgent(t, h.cp, "a0")
		t.Fatalf("a0 never quarantined: score %.2f, %d flaps", v.Health.Score, v.Health.FlapCount)
	}
	if q[0].AgentID != "a0" || !strings.Contains(q[0].Reason, "Node quarantined due to low health score") {
		t.Fatalf("first quarantine %s: %q", q[0].AgentID, q[0].Reason)
	}
	flaps := 0
	for _, e := range h.events(EventAgentDisconnected) {
		if e.AgentID == "a0" && e.Seq < q[0].Seq {
			flaps++
		}
	}
	if flaps > 4 {
		t.Errorf("a0 quarantined only after %d flaps, want within 4", flaps)
	}
	for _, e := range h.events(EventDomainIsolated) {
		t.Errorf("domain %s isolated: %s", e.Domain, e.Reason)
	}
	if ranOnHealthy < 20 {
		t.Errorf("the healthy agent of z0 finished %d tasks over 5 flaps, want the zone's work to keep flowing", ranOnHealthy)
	}
	for _, id := range pinned {
		if st := h.task(id).State; st != TaskQueued && st != TaskAssigned && st != TaskRunning && st != TaskSucceeded {
			t.Errorf("task %s %s: %s", id, st, h.task(id).Reason)
		}
	}
}

func mustAgent(t *testing.T, cp *ControlPlane, id AgentID) AgentView {
	t.Helper()
	v, ok := cp.Agent(id)
	if !ok {
		t.Fatalf("agent %s unknown", id)
	}
	return v
}

// TestPartialOutagePanicKeepsConnectedAgentsWorking: one zone of 14 agents,
// 8 of them gone. That is an outage, but isolating the only zone would
// leave nothing open: the panic holds it OPEN, the 6 connected agents keep
// working, the snapshot and the timeline say so, and the panic ends when
// the agents return.
func TestPartialOutagePanicKeepsConnectedAgentsWorking(t *testing.T) {
	h := newHarness(t, nil)
	var ids, up []AgentID
	for i := range 14 {
		id := AgentID("a" + string(rune('a'+i)))
		ids = append(ids, id)
		if i >= 8 {
			up = append(up, id)
		}
	}
	h.join("z1", 4, ids...)
	h.cp.cfg.MassDisconnectMinAgents = 100 // not the cp cut off: the zone's outage
	h.advance(20*time.Second, up...)
	if s := h.cp.DebugView(h.now); s.Agents.Connected != 6 {
		t.Fatalf("%d connected, want 6", s.Agents.Connected)
	}
	if n := len(h.events(EventDomainIsolated)); n != 0 {
		t.Fatalf("the only zone was isolated for a partial outage (%d)", n)
	}
	s := h.cp.DebugView(h.now)
	if !s.IsolationPanic.Active || !slices.Equal(s.IsolationPanic.Domains, []string{"z1"}) ||
		!strings.Contains(s.IsolationPanic.Reason, "outage: 8 of 14 agents disconnected") {
		t.Fatalf("isolation_panic %+v", s.IsolationPanic)
	}
	if p := h.events(EventDomainPanic); len(p) != 1 || p[0].To != "active" {
		t.Fatalf("domain.panic events %+v", p)
	}
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000})
	if got := h.task(task.ID); got.State != TaskAssigned || !slices.Contains(up, got.AgentID) {
		t.Fatalf("task %s on %q during the partial outage, want assigned to a connected agent", got.State, got.AgentID)
	}
	h.advance(10*time.Second, ids...)
	if s := h.cp.DebugView(h.now); s.IsolationPanic.Active || len(s.IsolationPanic.Domains) != 0 {
		t.Fatalf("panic still active after the agents returned: %+v", s.IsolationPanic)
	}
	if p := h.events(EventDomainPanic); len(p) != 2 || p[1].To != "inactive" {
		t.Fatalf("domain.panic events %+v", p)
	}
}

// failIn fails n fresh tasks pinned to domain d.
func (h *cpHarness) failIn(d string, n int) {
	h.t.Helper()
	for range n {
		task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 1, Domain: d})
		h.report(task.ID, OutcomeFailed)
	}
}

// succeedIn succeeds n fresh tasks pinned to domain d.
func (h *cpHarness) succeedIn(d string, n int) {
	h.t.Helper()
	for range n {
		task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 1, Domain: d})
		h.report(task.ID, OutcomeSucceeded)
	}
}

func TestFailureIsolationIsRelative(t *testing.T) {
	lowVolume := func(c *Config) { c.Domains.MinVolume = 4 }
	t.Run("the only domain is never isolated for failures", func(t *testing.T) {
		h := newHarness(t, lowVolume)
		h.join("z1", 4, "a1", "a2")
		h.failIn("z1", 10)
		h.advance(time.Second, "a1", "a2")
		if s := h.cp.DebugView(h.now).DomainFailures["z1"]; s.State != DomainOpen {
			t.Fatalf("z1 %s (%s)", s.State, s.Reason)
		}
	})
	t.Run("failures everywhere are the tasks' fault", func(t *testing.T) {
		h := newHarness(t, lowVolume)
		h.join("z1", 4, "a1")
		h.join("z2", 4, "b1")
		h.failIn("z1", 6)
		h.succeedIn("z1", 2)
		h.failIn("z2", 5)
		h.succeedIn("z2", 3)
		h.advance(time.Second, "a1", "b1")
		for _, d := range []string{"z1", "z2"} {
			if s := h.cp.DebugView(h.now).DomainFailures[d]; s.State != DomainOpen {
				t.Errorf("%s %s (%s) though both fail alike", d, s.State, s.Reason)
			}
		}
	})
	t.Run("a domain twice as bad as the rest is isolated", func(t *testing.T) {
		h := newHarness(t, lowVolume)
		h.join("z1", 4, "a1")
		h.join("z2", 4, "b1")
		h.failIn("z1", 8)
		h.failIn("z2", 1)
		h.succeedIn("z2", 7)
		h.advance(time.Second, "a1", "b1")
		s := h.cp.DebugView(h.now).DomainFailures
		if s["z1"].State != DomainIsolated || !strings.Contains(s["z1"].Reason, "rest of fleet 0.12") {
			t.Errorf("z1 %s (%s), want ISOLATED against the rest's 0.12", s["z1"].State, s["z1"].Reason)
		}
		if s["z2"].State != DomainOpen {
			t.Errorf("z2 %s", s["z2"].State)
		}
	})
	t.Run("panic throttles what it may not isolate", func(t *testing.T) {
		h := newHarness(t, lowVolume)
		h.join("z1", 4, "a1", "a2")
		h.join("z2", 4, "b1", "b2")
		h.advance(20*time.Second, "a1", "a2", "b1") // b2 gone: z2 has 4 of 12 usable slots
		h.failIn("z1", 8)
		h.advance(time.Second, "a1", "a2", "b1")
		s := h.cp.DebugView(h.now)
		if z1 := s.DomainFailures["z1"]; z1.State != DomainThrottled || !strings.HasPrefix(z1.Panic, "panic: isolating would leave 4 of 12 usable slots open") {
			t.Fatalf("z1 %s, panic %q", z1.State, z1.Panic)
		}
		if !s.IsolationPanic.Active || !slices.Equal(s.IsolationPanic.Domains, []string{"z1"}) {
			t.Fatalf("isolation_panic %+v", s.IsolationPanic)
		}
		h.advance(time.Second, "a1", "a2", "b1", "b2") // b2 back: the fleet can spare z1
		s = h.cp.DebugView(h.now)
		if z1 := s.DomainFailures["z1"]; z1.State != DomainIsolated || s.IsolationPanic.Active {
			t.Fatalf("after b2 returned: z1 %s, panic %+v", z1.State, s.IsolationPanic)
		}
	})
}

// isolateZ1 isolates z1 for failures in a two-zone fleet and waits out its
// cool-down so that it is PROBING.
func isolateAndProbeZ1(t *testing.T) (*cpHarness, []AgentID) {
	h := newHarness(t, func(c *Config) {
		c.Domains.MinVolume, c.Domains.ProbeTasks = 4, 2
		c.PoisonAgents = 3
	})
	h.join("z1", 4, "a1")
	h.join("z2", 4, "b1", "b2")
	beating := []AgentID{"a1", "b1", "b2"}
	h.failIn("z1", 5)
	h.advance(time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainIsolated {
		t.Fatalf("z1 %s, want ISOLATED", st)
	}
	return h, beating
}

// TestOnlyProbesDecideProbing: a task in flight on z1 from before its
// isolation fails while z1 is PROBING: that is no failed probe.
func TestOnlyProbesDecideProbing(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Domains.MinVolume, c.Domains.ProbeTasks = 4, 2 })
	h.join("z1", 4, "a1")
	h.join("z2", 4, "b1", "b2")
	beating := []AgentID{"a1", "b1", "b2"}
	old := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 600_000, MaxAttempts: 1, Domain: "z1"})
	h.failIn("z1", 5)
	h.advance(time.Second, beating...)
	h.advance(30*time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainProbing {
		t.Fatalf("z1 %s, want PROBING", st)
	}
	h.report(old.ID, OutcomeFailed)
	h.advance(time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainProbing {
		t.Fatalf("z1 %s after a pre-isolation task failed, want still PROBING", st)
	}
	for range 2 {
		p := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, Domain: "z1"})
		h.report(p.ID, OutcomeSucceeded)
	}
	h.advance(time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainOpen {
		t.Fatalf("z1 %s after 2 probes succeeded, want OPEN", st)
	}
}

// TestPoisonProbeIsNoFailedProbe: the probe that failed in z1 fails on two
// more agents and proves poison: z1's isolation for it is undone, its
// cool-down does not stay doubled, and z1 probes again at once.
func TestPoisonProbeIsNoFailedProbe(t *testing.T) {
	h, beating := isolateAndProbeZ1(t)
	h.advance(30*time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainProbing {
		t.Fatalf("z1 %s, want PROBING", st)
	}
	var fill []TaskID // z2 full, so unconstrained work can only probe z1
	for range 8 {
		fill = append(fill, h.submit(TaskSpec{Kind: KindSleep, DurationMS: 600_000, Domain: "z2"}).ID)
	}
	p := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 5})
	if got := h.task(p.ID); got.AgentID != "a1" {
		t.Fatalf("probe on %q (%s)", got.AgentID, got.State)
	}
	h.report(p.ID, OutcomeFailed)
	h.advance(time.Second, beating...)
	z1 := h.cp.DebugView(h.now).Domains[0]
	if z1.State != DomainIsolated || z1.CooldownSeconds != 60 {
		t.Fatalf("z1 %s cool-down %vs after a failed probe, want ISOLATED for 60s", z1.State, z1.CooldownSeconds)
	}
	// Free a slot on each of z2's agents: the task fails on both.
	finishOn := func(agent AgentID) {
		for _, id := range fill {
			if tk := h.task(id); tk.AgentID == agent && tk.State == TaskRunning {
				h.report(id, OutcomeSucceeded)
				return
			}
		}
		for _, id := range fill {
			tk := h.task(id)
			t.Logf("%s %s on %s: %s", id, tk.State, tk.AgentID, tk.Reason)
		}
		t.Fatalf("nothing running on %s", agent)
	}
	finishOn("b1")
	first := h.task(p.ID).AgentID
	if first != "b1" && first != "b2" {
		t.Fatalf("retry on %q: %s %+v", first, h.task(p.ID).State, h.task(p.ID).LastDecision)
	}
	other := map[AgentID]AgentID{"b1": "b2", "b2": "b1"}[first]
	finishOn(other)
	h.report(p.ID, OutcomeFailed)
	if got := h.task(p.ID); got.AgentID != other {
		t.Fatalf("retry on %q (%s), want %s", got.AgentID, got.State, other)
	}
	h.report(p.ID, OutcomeFailed)
	if got := h.task(p.ID); got.State != TaskDead || !strings.HasPrefix(got.Reason, "poison") {
		t.Fatalf("task %s (%s), want DEAD as poison", got.State, got.Reason)
	}
	h.advance(time.Second, beating...)
	z1 = h.cp.DebugView(h.now).Domains[0]
	if z1.State != DomainProbing {
		t.Fatalf("z1 %s (%s) after its failed probe proved poison, want PROBING again", z1.State, z1.Reason)
	}
	if got := h.cp.domains["z1"].health.isolations; got != 1 {
		t.Fatalf("%d consecutive isolations, want the poison probe's undone (1)", got)
	}
}

// TestProbesPreferCleanTasks: a PROBING z1 has a retried task and a fresh
// one queued for it; the fresh one is the probe.
func TestProbesPreferCleanTasks(t *testing.T) {
	h, beating := isolateAndProbeZ1(t)
	h.cp.domains["z1"].health.cfg.ProbeTasks = 1
	retried := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 5, Domain: "z1"})
	// Give it a failure history, as if it had failed before.
	rec := h.cp.tasks[retried.ID]
	h.cp.dequeue(rec)
	rec.Failures = 1
	h.cp.queue.PushReturning(&rec.queueItem, h.now)
	h.cp.enqueued(rec)
	fresh := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 5, Domain: "z1"})
	h.advance(30*time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainProbing {
		t.Fatalf("z1 %s", st)
	}
	if got := h.task(fresh.ID); got.State != TaskRunning && got.State != TaskAssigned {
		t.Fatalf("fresh task %s, want it dispatched as the probe", got.State)
	}
	if got := h.task(retried.ID); got.State != TaskQueued {
		t.Fatalf("retried task %s, want it queued behind the fresh probe", got.State)
	}
	// Once no clean task is left and the probe slot is free again, the
	// retried task may probe.
	h.report(fresh.ID, OutcomeSucceeded)
	h.advance(time.Second, beating...)
	if st := h.cp.DebugView(h.now).DomainFailures["z1"].State; st != DomainOpen {
		t.Fatalf("z1 %s after its probe succeeded", st)
	}
}
