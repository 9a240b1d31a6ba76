package core

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Findings of the simulator's swarm (cmd/sim -swarm), each reduced to the
// state machines.

// TestAgentDuplicateAssignOfFinishedAttempt: a redelivered assignment of an
// attempt the agent already finished (its result not yet acknowledged) is
// the same assignment again, not a refusal. It used to be rejected as
// "stale: attempt 1 already finished" (not retryable): the cp took that for
// a refusal of the current attempt, requeued the task, threw away its
// success and never placed it on that agent again (swarm 1 run 502: a
// one-agent fleet left the task QUEUED for good).
func TestAgentDuplicateAssignOfFinishedAttempt(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	now := testEpoch
	as := assignOf("t1", 1, TaskSpec{Kind: KindSleep, DurationMS: 10})
	if ack := ag.Assign(now, as); !ack.Accepted {
		t.Fatal(ack.Reason)
	}
	ag.Finished(now.Add(10*time.Millisecond), Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	ack := ag.Assign(now.Add(20*time.Millisecond), as)
	if !ack.Accepted || ack.Reason != "" {
		t.Fatalf("duplicate of a finished attempt answered %+v, want accepted", ack)
	}
	if len(fx.started) != 1 || ag.PendingResults() != 1 {
		t.Fatalf("started %d executions, %d results pending; want 1 and 1", len(fx.started), ag.PendingResults())
	}
	// An older attempt than one finished is still stale.
	if ack := ag.Assign(now, assignOf("t1", 0, as.Spec)); ack.Accepted {
		t.Fatal("attempt 0 accepted")
	}

	// Through the cp: the duplicate's answer leaves the running attempt
	// alone and its success counts.
	h := newHarness(t, nil)
	h.join("z1", 1, "a1")
	task := h.submit(sleepSpec())
	h.cp.Apply(h.now, TickInput{})
	out := h.cp.TakeOutbox()
	if len(out) != 1 || out[0].Assign == nil {
		t.Fatalf("outbox %+v", out)
	}
	ag2, _ := newTestAgent(t, nil)
	first := ag2.Assign(h.now, *out[0].Assign)
	if _, err := h.cp.Apply(h.now, first); err != nil {
		t.Fatal(err)
	}
	ag2.Finished(h.now, Result{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded})
	if _, err := h.cp.Apply(h.now, ag2.Assign(h.now, *out[0].Assign)); err != nil {
		t.Fatal(err)
	}
	if tk := h.task(task.ID); tk.State != TaskRunning || tk.Attempt != 1 {
		t.Fatalf("after the duplicate's answer the task is %s attempt %d, want RUNNING attempt 1", tk.State, tk.Attempt)
	}
	hb, _ := ag2.Tick(h.now)
	hb.Seq = 10
	if _, err := h.cp.Apply(h.now, hb); err != nil {
		t.Fatal(err)
	}
	if tk := h.task(task.ID); tk.State != TaskSucceeded {
		t.Fatalf("result not applied: %s (%s)", tk.State, tk.Reason)
	}
}

// report finishes task id's current attempt on its agent with outcome.
func (h *cpHarness) report(id TaskID, outcome Outcome) {
	h.t.Helper()
	tk := h.task(id)
	if tk.State != TaskAssigned && tk.State != TaskRunning {
		h.t.Fatalf("task %s is %s, not in flight", id, tk.State)
	}
	h.heartbeat(tk.AgentID, func(hb *HeartbeatInput) {
		hb.Running = slices.DeleteFunc(hb.Running, func(l Lease) bool { return l.TaskID == id })
		hb.Results = []Result{{TaskID: id, Attempt: tk.Attempt, Outcome: outcome, ExitCode: 1}}
	})
}

// TestRetriedFailureDoesNotKeepDomainIsolated: a task that already failed
// once and fails again as a probe says nothing new about the domain. It
// used to count as a failed probe: a domain whose queue held a poison or
// hanging task was isolated again with a doubled cool-down at every probe,
// up to 10 minutes a cycle, and the good work behind it (and a DRAINING
// operator waiting for the queue to empty before a restart) waited far
// beyond the liveness bound (swarm 20261128 run 1419: a one-zone fleet never
// drained, the planned restart dropped the queue).
func TestRetriedFailureDoesNotKeepDomainIsolated(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Domains.MinVolume, c.Domains.ProbeTasks = 3, 1
	})
	h.join("z1", 1, "a1")
	h.join("z2", 1, "b1") // a healthy rest of the fleet, so z1 may be isolated
	inFlight := func(id TaskID) bool {
		st := h.task(id).State
		return st == TaskAssigned || st == TaskRunning
	}
	for range 2 {
		f := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 1, Domain: "z1"})
		h.cp.Apply(h.now, TickInput{})
		h.report(f.ID, OutcomeFailed)
	}
	poison := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 5, Domain: "z1"})
	h.cp.Apply(h.now, TickInput{})
	h.report(poison.ID, OutcomeFailed) // fresh: counts; the task is retried at once
	h.now = h.now.Add(time.Second)
	h.cp.Apply(h.now, TickInput{})
	if n := len(h.events(EventDomainIsolated)); n != 1 {
		t.Fatalf("domain isolated %d times after 3 of 3 failures, want 1", n)
	}
	if inFlight(poison.ID) {
		h.report(poison.ID, OutcomeFailed)
	}
	good := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, MaxAttempts: 1, Domain: "z1"})
	h.advance(31*time.Second, "a1", "b1")
	if n := len(h.events(EventDomainProbing)); n != 1 {
		t.Fatalf("domain not probing after its cool-down (%d probing events)", n)
	}
	for i := 0; i < 20 && !(h.task(good.ID).State.Terminal() && h.task(poison.ID).State.Terminal()); i++ {
		switch {
		case inFlight(poison.ID):
			h.report(poison.ID, OutcomeFailed) // the probe is the poison task again
		case inFlight(good.ID):
			h.report(good.ID, OutcomeSucceeded)
		}
		h.advance(time.Second, "a1", "b1")
	}
	if n := len(h.events(EventDomainIsolated)); n != 1 {
		t.Errorf("the poison task's retries isolated the domain again (%d isolations)", n)
	}
	if st := h.task(good.ID).State; st != TaskSucceeded {
		t.Errorf("good task %s, want SUCCEEDED within 20s of probing", st)
	}
	if st := h.task(poison.ID).State; st != TaskDead {
		t.Errorf("poison task %s, want DEAD (out of attempts)", st)
	}
	if opened := h.events(EventDomainOpen); len(opened) != 1 {
		t.Errorf("domain opened %d times, want once", len(opened))
	}
}

// TestLateHeartbeatOfOlderProcessNoLockOut: a heartbeat of an agent's
// process older than the previous one, delivered late, is refused like one
// of the previous process; the live process keeps its attempts and its
// heartbeats stay welcome. Swarm 20261130 run 8554: a heartbeat of
// incarnation 1 reached the cp after 2 and 3 registered; the cp took it for
// a restart 3 → 1, remembered 3 as the "previous" process and refused the
// live process 3 from then on.
func TestLateHeartbeatOfOlderProcessNoLockOut(t *testing.T) {
	h := newHarness(t, nil)
	h.selfFencing = true
	h.join("z1", 1, "a1")
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 600})
	h.heartbeat("a1", nil)
	for _, inc := range []uint64{2, 3} { // two restarts: the attempt is lost and placed again
		h.inc["a1"], h.seq["a1"] = inc, 0
		h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil })
		h.heartbeat("a1", nil)
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 3 {
		t.Fatalf("after the restarts: %v attempt %d, want RUNNING attempt 3", got.State, got.Attempt)
	}
	for _, inc := range []uint64{1, 2} {
		_, err := doHeartbeat(h.cp, h.now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: inc, Seq: 9,
			Running: []Lease{{task.ID, int(inc)}}, SelfFencing: true})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("late heartbeat of incarnation %d: %v, want a conflict", inc, err)
		}
	}
	for range 3 {
		if _, err := doHeartbeat(h.cp, h.now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 3, Seq: h.seq["a1"] + 1,
			Running: []Lease{{task.ID, 3}}, SelfFencing: true}); err != nil {
			t.Fatalf("the live process's heartbeat after the late ones: %v", err)
		}
		h.seq["a1"]++
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 3 {
		t.Fatalf("after the late heartbeats: %v attempt %d, want RUNNING attempt 3", got.State, got.Attempt)
	}
	if a := h.cp.agents["a1"]; a.incarnation != 3 {
		t.Fatalf("incarnation %d, want 3", a.incarnation)
	}
	if n := len(h.events(EventAgentRestarted)); n != 2 {
		t.Fatalf("%d restarts recorded, want 2", n)
	}
}

// TestLowerIncarnationAfterSilenceIsRestart: incarnations are ordered (the
// agent daemon's is its start time), but a host's clock can go backwards:
// a lower incarnation is refused only while the current process may still
// run its attempts. Once the current one has been silent for
// HeartbeatTimeout + LostAfter (its attempts are given to others by then
// anyway), the lower one is a restart, not locked out.
func TestLowerIncarnationAfterSilenceIsRestart(t *testing.T) {
	h := newHarness(t, nil)
	h.selfFencing = true
	cfg := h.cp.Config()
	h.inc["a1"], h.dom["a1"] = 1000, "z1"
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Slots = 1 })
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 600_000, TimeoutSeconds: 6000})
	h.heartbeat("a1", nil)
	if got := h.task(task.ID); got.State != TaskRunning {
		t.Fatalf("task %v, want RUNNING", got.State)
	}
	lower := func() error {
		_, err := doHeartbeat(h.cp, h.now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 10, Seq: 1, SelfFencing: true})
		return err
	}
	if err := lower(); !errors.Is(err, ErrConflict) {
		t.Fatalf("lower incarnation while the current is connected: %v, want a conflict", err)
	}
	// Silent for the heartbeat timeout: disconnected, but its attempt is
	// still its own (a cut-off process may run it for its lease).
	h.advance(cfg.HeartbeatTimeout + cfg.HeartbeatInterval)
	if v, _ := h.cp.Agent("a1"); v.Connected {
		t.Fatal("agent still connected after the heartbeat timeout")
	}
	if err := lower(); !errors.Is(err, ErrConflict) {
		t.Fatalf("lower incarnation while the current's attempts are still its own: %v, want a conflict", err)
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 1 {
		t.Fatalf("task %v attempt %d, want RUNNING attempt 1", got.State, got.Attempt)
	}
	h.advance(cfg.LostAfter)
	if err := lower(); err != nil {
		t.Fatalf("lower incarnation after the current was silent for HeartbeatTimeout+LostAfter: %v", err)
	}
	if a := h.cp.agents["a1"]; a.incarnation != 10 || !a.connected() {
		t.Fatalf("incarnation %d connected %v, want 10 and connected", a.incarnation, a.connected())
	}
	h.inc["a1"], h.seq["a1"] = 10, 1
	h.advance(time.Minute, "a1")
	if got := h.task(task.ID); got.AgentID != "a1" || got.Attempt != 2 {
		t.Fatalf("task %v on %s attempt %d (%s), want placed again on a1 (attempt 2)", got.State, got.AgentID, got.Attempt, got.Reason)
	}
}

// TestLateHeartbeatBuiltBeforeAckIsNoLoss: a heartbeat the agent built
// before it accepted an attempt (seq <= the ack's HeartbeatSeq) says
// nothing of that attempt, however late it arrives. Swarm 20261130 run
// 6830: heartbeat 2 of z1-a01, built just before the assignment reached the
// agent, was held up in the network for 27s; the ack (HeartbeatSeq 2) came
// first. Since the assignment was older than AssignTimeout when heartbeat 2
// arrived, the cp took its silence on the attempt for a loss, requeued it
// and ran it on another agent while z1-a01 still ran it (invariant 11).
func TestLateHeartbeatBuiltBeforeAckIsNoLoss(t *testing.T) {
	h := newHarness(t, nil)
	h.join("z1", 1, "a1") // heartbeat 1
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 120_000, TimeoutSeconds: 600})
	if got := h.task(task.ID); got.State != TaskAssigned || got.AgentID != "a1" {
		t.Fatalf("task %v on %s, want ASSIGNED on a1", got.State, got.AgentID)
	}
	// The agent built heartbeat 2 (without the attempt), then accepted.
	late := HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 2, Running: []Lease{}}
	if _, err := h.cp.Apply(h.now, AssignAck{AgentID: "a1", TaskID: task.ID, Attempt: 1, Accepted: true, HeartbeatSeq: 2}); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(2 * h.cp.Config().AssignTimeout)
	if _, err := doHeartbeat(h.cp, h.now, late); err != nil {
		t.Fatal(err)
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 1 {
		t.Fatalf("after the late heartbeat 2: %v attempt %d (%s), want RUNNING attempt 1", got.State, got.Attempt, got.Reason)
	}
	// Heartbeat 3, built after the acceptance, not listing it: lost.
	h.seq["a1"] = 2
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil })
	if got := h.task(task.ID); got.Attempt != 2 {
		t.Fatalf("after heartbeat 3 without the attempt: %v attempt %d, want it placed again (attempt 2)", got.State, got.Attempt)
	}
}

// TestRandomIncarnationsOfOlderAgents: an agent that does not report
// SelfFencing predates ordered incarnations (its are random), and so does
// the process an upgraded agent replaces: a lower incarnation from or after
// such a process is a restart at once, as before.
func TestRandomIncarnationsOfOlderAgents(t *testing.T) {
	for _, c := range []struct {
		name          string
		before, after bool // SelfFencing of the old and the new process
	}{
		{"old agent restarted", false, false},
		{"upgrade", false, true},
		{"downgrade", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.inc["a1"], h.dom["a1"], h.selfFencing = 1_000_000, "z1", c.before
			h.heartbeat("a1", nil)
			h.inc["a1"], h.seq["a1"], h.selfFencing = 7, 0, c.after
			h.heartbeat("a1", nil) // fails the test if refused
			if a := h.cp.agents["a1"]; a.incarnation != 7 {
				t.Fatalf("incarnation %d, want 7", a.incarnation)
			}
			if n := len(h.events(EventAgentRestarted)); n != 1 {
				t.Fatalf("%d restarts recorded, want 1", n)
			}
		})
	}
}

// TestUnconfirmedSeqLimit: an assignment to a self-fencing agent names a
// heartbeat limit a few heartbeats past the latest the cp has seen; a
// heartbeat below it that does not list the unconfirmed attempt is no proof
// of loss even past AssignTimeout (the agent may have built it before a
// poll reply in flight handed it the assignment), one from the limit on is.
// Swarm 1:1000 run 748 after agents dialled in: a poll reply holding the
// assignment was in flight while the agent built a heartbeat without it;
// the cp requeued the attempt on that heartbeat and ran it on another agent
// while the first, taking the reply, started it too (11-one-execution).
func TestUnconfirmedSeqLimit(t *testing.T) {
	h := newHarness(t, nil)
	h.selfFencing = true
	h.join("z1", 1, "a1") // heartbeat 1
	cfg := h.cp.Config()
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 600})
	var as *Assign
	for _, o := range h.cp.TakeOutbox() {
		if o.Assign != nil && o.Assign.TaskID == task.ID {
			as = o.Assign
		}
	}
	limit := 1 + uint64(cfg.AssignTimeout/cfg.HeartbeatInterval) + 2
	if as == nil || as.SeqLimit != limit {
		t.Fatalf("assignment %+v, want SeqLimit %d", as, limit)
	}
	h.now = h.now.Add(2 * cfg.AssignTimeout)
	for h.seq["a1"]+1 < limit {
		h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil })
		if got := h.task(task.ID); got.State != TaskAssigned || got.Attempt != 1 {
			t.Fatalf("after heartbeat %d (below the limit): %v attempt %d, want ASSIGNED attempt 1", h.seq["a1"], got.State, got.Attempt)
		}
	}
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil }) // heartbeat limit
	if got := h.task(task.ID); got.Attempt != 2 {
		t.Fatalf("after heartbeat %d (the limit) without it: %v attempt %d, want it placed again (attempt 2)", h.seq["a1"], got.State, got.Attempt)
	}
}

// TestAgentRefusesPastSeqLimit: an agent refuses (retryable) an assignment
// once it has sent heartbeat SeqLimit, which the cp takes as proof it does
// not run the attempt; below it, it takes it.
func TestAgentRefusesPastSeqLimit(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 600_000, TimeoutSeconds: 3600}
	now := testEpoch
	for range 3 { // heartbeats 1..3
		ag.lastSent = time.Time{}
		if _, ok := ag.Tick(now); !ok {
			t.Fatal("no heartbeat")
		}
	}
	as := assignOf("t1", 1, sleep)
	as.Incarnation, as.SeqLimit = 1, 3
	if ack := ag.Assign(now, as); ack.Accepted || !ack.Retryable || !strings.Contains(ack.Reason, "heartbeat 3 sent without it") {
		t.Fatalf("assignment past its limit: %+v", ack)
	}
	as = assignOf("t2", 1, sleep)
	as.Incarnation, as.SeqLimit = 1, 4
	if ack := ag.Assign(now, as); !ack.Accepted {
		t.Fatalf("assignment below its limit: %+v", ack)
	}
	if len(fx.started) != 1 || fx.started[0].TaskID != "t2" {
		t.Fatalf("started %v", fx.started)
	}
}
