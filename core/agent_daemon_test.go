package core

import (
	"testing"
	"time"
)

// TestHeartbeatBuiltBeforeAssignDoesNotLoseIt: over real HTTP a heartbeat
// the agent built just before it accepted an assignment can reach the cp
// after the assignment's ack. It does not list the new attempt, yet the
// attempt is not lost: the cp must not requeue it (it would run twice, and
// the agent, still busy, would reject the next assignment).
func TestHeartbeatBuiltBeforeAssignDoesNotLoseIt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cp, err := NewControlPlane(DefaultConfig(), t0)
	if err != nil {
		t.Fatal(err)
	}
	ag, err := NewAgent(AgentConfig{ID: "a1", Domain: "z1", Slots: 1, HeartbeatInterval: 5 * time.Second, ResultsMax: 16, Incarnation: 1}, &fakeExec{})
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := ag.Tick(t0)
	rep, err := doHeartbeat(cp, t0, hb)
	if err != nil {
		t.Fatal(err)
	}
	ag.HeartbeatReplied(t0, hb.Seq, rep)

	t1 := t0.Add(5 * time.Second)
	early, ok := ag.Tick(t1) // built, still in flight
	if !ok {
		t.Fatal("no heartbeat due")
	}
	task, _, err := doSubmit(cp, t1, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 10_000}})
	if err != nil {
		t.Fatal(err)
	}
	out := cp.TakeOutbox()
	if len(out) != 1 || out[0].Assign == nil {
		t.Fatalf("outbox %+v", out)
	}
	ack := ag.Assign(t1, *out[0].Assign)
	if _, err := cp.Apply(t1, ack); err != nil || !ack.Accepted {
		t.Fatal(err, ack)
	}
	rep, err = doHeartbeat(cp, t1.Add(time.Millisecond), early) // arrives after the ack
	if err != nil {
		t.Fatal(err)
	}
	ag.HeartbeatReplied(t1.Add(time.Millisecond), early.Seq, rep)
	if got, _ := cp.Task(task.ID); got.State != TaskRunning || got.Attempt != 1 {
		t.Fatalf("task %s is %s attempt %d after a heartbeat that predates its assignment; want RUNNING attempt 1 (%s)",
			got.ID, got.State, got.Attempt, got.Reason)
	}
	// The next heartbeat lists it; one that still did not would lose it.
	next, _ := ag.Tick(t1.Add(5 * time.Second))
	if _, err := cp.Apply(t1.Add(5*time.Second), next); err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(task.ID); got.State != TaskRunning {
		t.Fatalf("task %s is %s after a heartbeat that lists it", got.ID, got.State)
	}
	stale := next
	stale.Seq++
	stale.Running = nil
	if _, err := cp.Apply(t1.Add(6*time.Second), stale); err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(task.ID); got.Attempt != 2 {
		t.Fatalf("task %s is %s attempt %d after a later heartbeat without it; want it lost and retried", got.ID, got.State, got.Attempt)
	}
}

// TestTaskIDPrefix: a restarted cp starts its counter again; with a prefix
// unique per start its ids never collide with tasks agents still run.
func TestTaskIDPrefix(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		prefix, want string
		ok           bool
	}{
		{"t-", "t-000001", true},
		{"t-1a2b3c-", "t-1a2b3c-000001", true},
		{"", "", false},
		{"t/", "", false},
		{"0123456789012345678901234567890123", "", false},
	} {
		cfg := DefaultConfig()
		cfg.TaskIDPrefix = tc.prefix
		cp, err := NewControlPlane(cfg, t0)
		if (err == nil) != tc.ok {
			t.Fatalf("prefix %q: err %v, want ok=%v", tc.prefix, err, tc.ok)
		}
		if err != nil {
			continue
		}
		task, _, err := doSubmit(cp, t0, SubmitInput{Spec: TaskSpec{Kind: KindSleep}})
		if err != nil || task.ID != TaskID(tc.want) {
			t.Errorf("prefix %q: id %q (%v), want %q", tc.prefix, task.ID, err, tc.want)
		}
	}
}
