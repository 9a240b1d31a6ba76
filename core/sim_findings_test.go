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
	if _, err := cp.Apply(t0, hb); err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{Kind: KindSleep, DurationMS: 1000}
	first, _, err := doSubmit(cp, t0, SubmitInput{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := cp.Apply(t0, SubmitInput{Spec: spec}); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	if got, _ := cp.Task(first.ID); got.State != TaskAssigned {
		t.Fatalf("first task %s, want ASSIGNED", got.State)
	}
	cp.TakeOutbox() // the assignment is lost on the way
	if _, err := cp.Apply(t0, SubmitInput{Spec: spec}); !errorsIs(err, ErrQueueFull) {
		t.Fatalf("submit into a full queue: %v, want ErrQueueFull", err)
	}
	// The agent's next heartbeat, after AssignTimeout, does not run it.
	t1 := t0.Add(cfg.AssignTimeout)
	hb.Seq = 2
	if _, err := cp.Apply(t1, hb); err != nil {
		t.Fatal(err)
	}
	got, _ := cp.Task(first.ID)
	if got.State.Terminal() {
		t.Fatalf("accepted task ended %s (%s) because the queue was full", got.State, got.Reason)
	}
	if got.Attempt != 1 || !(got.State == TaskQueued || got.State == TaskAssigned) {
		t.Fatalf("task %s attempt %d, want requeued after attempt 1", got.State, got.Attempt)
	}
	if _, err := cp.Apply(t1, SubmitInput{Spec: spec}); !errorsIs(err, ErrQueueFull) {
		t.Fatalf("submit while requeued work overflows: %v, want ErrQueueFull", err)
	}
}

// mass-disconnect: when a partition between the cp and most of the fleet
// heals, the agents reconnect over one heartbeat interval. Rescheduling
// resumed as soon as fewer than half were disconnected, and the stragglers,
// disconnected for longer than LostAfter, were declared lost at once: their
// tasks ran twice. The loss grace must restart when rescheduling resumes.
func TestResumeAfterMassDisconnectGivesStragglersTheirGrace(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	ids := []AgentID{"a1", "a2", "a3", "a4", "a5", "a6"}
	seq := map[AgentID]uint64{}
	beat := func(now time.Time, id AgentID, running []Lease) {
		t.Helper()
		seq[id]++
		if _, err := cp.Apply(now, HeartbeatInput{AgentID: id, Domain: "z1", Slots: 1, Incarnation: 1, Seq: seq[id], Running: running}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		beat(t0, id, nil)
	}
	task, _, err := doSubmit(cp, t0, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 600_000, TimeoutSeconds: 3600}})
	if err != nil {
		t.Fatal(err)
	}
	cp.TakeOutbox()
	got, _ := cp.Task(task.ID)
	holder := got.AgentID
	lease := []Lease{{TaskID: task.ID, Attempt: 1}}
	beat(t0, holder, lease) // confirmed: RUNNING
	// Everyone goes silent for two minutes: the cp presumes itself cut off.
	for now := t0.Add(time.Second); now.Before(t0.Add(2 * time.Minute)); now = now.Add(time.Second) {
		cp.Apply(now, TickInput{})
	}
	if !cp.ReschedulingPaused() {
		t.Fatal("rescheduling not paused after a mass disconnect")
	}
	// The partition heals: all but the holder reconnect first.
	heal := t0.Add(2 * time.Minute)
	for _, id := range ids {
		if id != holder {
			beat(heal, id, nil)
		}
	}
	for now := heal; now.Before(heal.Add(5 * time.Second)); now = now.Add(time.Second) {
		cp.Apply(now, TickInput{})
	}
	if cp.ReschedulingPaused() {
		t.Fatal("rescheduling still paused with 5 of 6 agents back")
	}
	if got, _ := cp.Task(task.ID); got.State != TaskRunning || got.Attempt != 1 {
		t.Fatalf("task on the straggler is %s attempt %d (%s), want still RUNNING attempt 1", got.State, got.Attempt, got.Reason)
	}
	beat(heal.Add(5*time.Second), holder, lease)
	if got, _ := cp.Task(task.ID); got.State != TaskRunning || got.Attempt != 1 {
		t.Fatalf("after the straggler's heartbeat: %s attempt %d", got.State, got.Attempt)
	}
}

// mass-disconnect: a task finished on an agent during a partition, its
// result held up by the network. When the partition healed, the task's lease
// deadline had long passed and the cp requeued it as "stuck" (with a
// penalty) before the agent's next heartbeat brought the result: it ran
// twice. A disconnected agent cannot be judged stuck; the loss grace decides.
func TestOverdueLeaseOnSilentAgentIsNotStuck(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	ids := []AgentID{"a1", "a2", "a3", "a4", "a5", "a6"}
	seq := map[AgentID]uint64{}
	beat := func(now time.Time, id AgentID, running []Lease, results []Result) {
		t.Helper()
		seq[id]++
		if _, err := cp.Apply(now, HeartbeatInput{AgentID: id, Domain: "z1", Slots: 1, Incarnation: 1, Seq: seq[id], Running: running, Results: results}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		beat(t0, id, nil, nil)
	}
	task, _, err := doSubmit(cp, t0, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 5000, TimeoutSeconds: 10}})
	if err != nil {
		t.Fatal(err)
	}
	cp.TakeOutbox()
	got, _ := cp.Task(task.ID)
	holder := got.AgentID
	beat(t0, holder, []Lease{{TaskID: task.ID, Attempt: 1}}, nil)
	// Partition for two minutes: far past timeout 10s + LeaseGrace.
	for now := t0.Add(time.Second); now.Before(t0.Add(2 * time.Minute)); now = now.Add(time.Second) {
		cp.Apply(now, TickInput{})
	}
	heal := t0.Add(2 * time.Minute)
	for _, id := range ids {
		if id != holder {
			beat(heal, id, nil, nil)
		}
	}
	cp.Apply(heal, TickInput{})
	cp.Apply(heal.Add(time.Second), TickInput{})
	if got, _ := cp.Task(task.ID); got.State != TaskRunning || got.Attempt != 1 || got.Failures != 0 {
		t.Fatalf("task on the silent agent is %s attempt %d failures %d (%s), want RUNNING attempt 1", got.State, got.Attempt, got.Failures, got.Reason)
	}
	beat(heal.Add(2*time.Second), holder, nil, []Result{{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}})
	if got, _ := cp.Task(task.ID); got.State != TaskSucceeded {
		t.Fatalf("after the held result: %s (%s)", got.State, got.Reason)
	}
}
