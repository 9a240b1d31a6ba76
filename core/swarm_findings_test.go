package core

import (
	"slices"
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
