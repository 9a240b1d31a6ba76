package core

import (
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
	h.cp.Tick(h.now)
	out := h.cp.TakeOutbox()
	if len(out) != 1 || out[0].Assign == nil {
		t.Fatalf("outbox %+v", out)
	}
	ag2, _ := newTestAgent(t, nil)
	first := ag2.Assign(h.now, *out[0].Assign)
	if err := h.cp.AssignAcked(h.now, first); err != nil {
		t.Fatal(err)
	}
	ag2.Finished(h.now, Result{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded})
	if err := h.cp.AssignAcked(h.now, ag2.Assign(h.now, *out[0].Assign)); err != nil {
		t.Fatal(err)
	}
	if tk := h.task(task.ID); tk.State != TaskRunning || tk.Attempt != 1 {
		t.Fatalf("after the duplicate's answer the task is %s attempt %d, want RUNNING attempt 1", tk.State, tk.Attempt)
	}
	hb, _ := ag2.Tick(h.now)
	hb.Seq = 10
	if _, err := h.cp.Heartbeat(h.now, hb); err != nil {
		t.Fatal(err)
	}
	if tk := h.task(task.ID); tk.State != TaskSucceeded {
		t.Fatalf("result not applied: %s (%s)", tk.State, tk.Reason)
	}
}
