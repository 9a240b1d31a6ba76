package core

import (
	"testing"
	"time"
)

// Findings of the simulator (sim/, scenarios/), each reduced to a unit test.

// queue-saturation: an assignment lost on the network is requeued after
// AssignTimeout. When newer submissions had filled the queue meanwhile, the
// requeue used to be refused and the accepted task ended FAILED ("requeue
// refused, queue full") without ever running: a 429 dropped accepted work.
// Returning work must go back into the queue; new submissions stay refused.
func TestRequeueIntoFullQueueKeepsAcceptedWork(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.QueueCapacity = 2
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	hb := HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1}
	if _, err := cp.Heartbeat(t0, hb); err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{Kind: KindSleep, DurationMS: 1000}
	first, _, err := cp.Submit(t0, SubmitInput{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, _, err := cp.Submit(t0, SubmitInput{Spec: spec}); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if got, _ := cp.Task(first.ID); got.State != TaskAssigned {
		t.Fatalf("first task %s, want ASSIGNED", got.State)
	}
	cp.TakeOutbox() // the assignment is lost on the way
	if _, _, err := cp.Submit(t0, SubmitInput{Spec: spec}); !errorsIs(err, ErrQueueFull) {
		t.Fatalf("submit into a full queue: %v, want ErrQueueFull", err)
	}
	// The agent's next heartbeat, after AssignTimeout, does not run it.
	t1 := t0.Add(cfg.AssignTimeout)
	hb.Seq = 2
	if _, err := cp.Heartbeat(t1, hb); err != nil {
		t.Fatal(err)
	}
	got, _ := cp.Task(first.ID)
	if got.State.Terminal() {
		t.Fatalf("accepted task ended %s (%s) because the queue was full", got.State, got.Reason)
	}
	if got.Attempt != 1 || !(got.State == TaskQueued || got.State == TaskAssigned) {
		t.Fatalf("task %s attempt %d, want requeued after attempt 1", got.State, got.Attempt)
	}
	if _, _, err := cp.Submit(t1, SubmitInput{Spec: spec}); !errorsIs(err, ErrQueueFull) {
		t.Fatalf("submit while requeued work overflows: %v, want ErrQueueFull", err)
	}
}
