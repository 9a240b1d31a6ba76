package core

import (
	"fmt"
	"testing"
	"time"
)

func newTestCP(t *testing.T, mutate func(*Config)) (*ControlPlane, time.Time) {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	return cp, t0
}

func mustRegister(t *testing.T, cp *ControlPlane, now time.Time, id AgentID, domain string, slots int, exec bool) {
	t.Helper()
	if _, err := cp.Apply(now, HeartbeatInput{AgentID: id, Domain: domain, Slots: slots, Incarnation: 1, Seq: 1, AllowsExec: exec}); err != nil {
		t.Fatal(err)
	}
}

// Regression: an exec task that no agent may run sat at the head of the
// unconstrained queue and blocked every task behind it.
func TestScheduleUnrunnableHeadDoesNotBlockQueue(t *testing.T) {
	cp, now := newTestCP(t, nil)
	mustRegister(t, cp, now, "a1", "z1", 4, false)
	// Fill the agent so the exec task queues first.
	ex, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: []string{"/bin/true"}, Priority: PriorityHigh}})
	if err != nil {
		t.Fatal(err)
	}
	sl, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep, Priority: PriorityLow}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(sl.ID); got.State != TaskAssigned {
		t.Fatalf("sleep task behind an unrunnable exec task: state %v, want ASSIGNED", got.State)
	}
	got, _ := cp.Task(ex.ID)
	if got.State != TaskQueued || got.LastDecision == nil || got.LastDecision.Outcome != DecisionNoCapacity {
		t.Fatalf("exec task: %v %+v", got.State, got.LastDecision)
	}
	if want := "allow-exec"; !contains(got.LastDecision.Reason, want) {
		t.Fatalf("reason %q does not mention %q", got.LastDecision.Reason, want)
	}
}

// Regression: a task that failed on the only agent of its domain was never
// placed again (the agent was excluded), blocking the domain's queue.
func TestScheduleRetriesOnSameAgentWhenNoOther(t *testing.T) {
	cp, now := newTestCP(t, nil)
	mustRegister(t, cp, now, "a1", "z1", 1, false)
	task, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: "z1", MaxAttempts: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 3; attempt++ {
		got, _ := cp.Task(task.ID)
		if got.State != TaskAssigned || got.Attempt != attempt {
			t.Fatalf("attempt %d: state %v attempt %d", attempt, got.State, got.Attempt)
		}
		_, err := cp.Apply(now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: uint64(attempt + 1),
			Results: []Result{{TaskID: task.ID, Attempt: attempt, Outcome: OutcomeFailed, ExitCode: 1}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := cp.Task(task.ID); got.State != TaskDead {
		t.Fatalf("after 3 failures: %v, want DEAD", got.State)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// Regression: an agent that refused an assignment because it was busy was
// excluded for that task for good, so a task constrained to a one-agent
// domain stayed QUEUED forever.
func TestScheduleBusyRefusalIsNotPermanent(t *testing.T) {
	cp, now := newTestCP(t, nil)
	mustRegister(t, cp, now, "a1", "z1", 1, false)
	task, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: "z1"}})
	if err != nil {
		t.Fatal(err)
	}
	cp.TakeOutbox()
	if _, err := cp.Apply(now, AssignAck{AgentID: "a1", TaskID: task.ID, Attempt: 1, Reason: "all 1 slots busy", Retryable: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(task.ID); got.State != TaskQueued {
		t.Fatalf("after a busy refusal: %v, want QUEUED (held until the next heartbeat)", got.State)
	}
	if len(cp.TakeOutbox()) != 0 {
		t.Fatal("reassigned to the agent that just said it is busy")
	}
	if _, err := cp.Apply(now.Add(time.Second), HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(task.ID); got.State != TaskAssigned || got.Attempt != 2 || got.AgentID != "a1" {
		t.Fatalf("after the agent's heartbeat: %v attempt %d on %q, want ASSIGNED attempt 2 on a1", got.State, got.Attempt, got.AgentID)
	}
}

// A stuck lease counts against the domain only on the task's first failure,
// as failed results do: a hanging task retried in the same domain is
// evidence about the task, not the zone.
func TestStuckRetryCountsAgainstDomainOnce(t *testing.T) {
	cp, now := newTestCP(t, func(c *Config) { c.LeaseGrace = time.Second })
	mustRegister(t, cp, now, "a1", "z1", 1, false)
	mustRegister(t, cp, now, "a2", "z1", 1, false)
	task, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: "z1", TimeoutSeconds: 5, MaxAttempts: 3}})
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(1)
	for attempt := 1; attempt <= 2; attempt++ {
		got, _ := cp.Task(task.ID)
		if got.Attempt != attempt {
			t.Fatalf("attempt %d: task at attempt %d (%v)", attempt, got.Attempt, got.State)
		}
		// Both agents keep heartbeating and report the attempt running, so
		// only the lease deadline (timeout + grace) ends it.
		for step := 0; step < 7; step++ {
			now = now.Add(time.Second)
			seq++
			for _, id := range []AgentID{"a1", "a2"} {
				var running []Lease
				if cur, _ := cp.Task(task.ID); cur.AgentID == id && cur.Attempt == attempt {
					running = []Lease{{TaskID: task.ID, Attempt: attempt}}
				}
				if _, err := cp.Apply(now, HeartbeatInput{AgentID: id, Domain: "z1", Slots: 1, Incarnation: 1, Seq: seq, Running: running}); err != nil {
					t.Fatal(err)
				}
			}
			cp.Apply(now, TickInput{})
		}
	}
	got, _ := cp.Task(task.ID)
	if got.Failures != 2 {
		t.Fatalf("failures = %d, want 2 stuck attempts", got.Failures)
	}
	if _, volume := cp.domains["z1"].health.FailureRate(now); volume != 1 {
		t.Fatalf("domain z1 counted %d failures of one task, want 1", volume)
	}
}

// Invariant 5 must survive the registry shrinking: forgetting a long-gone
// agent would lower its domain's health-quarantine cap below the number of
// agents quarantined, so the agent is kept until the quarantines lift.
func TestForgetAgentKeepsQuarantineCap(t *testing.T) {
	cp, now := newTestCP(t, func(c *Config) {
		c.ForgetAgentAfter = time.Minute
		c.Health.QuarantineBase, c.Health.QuarantineMax = 10*time.Minute, 10*time.Minute // quarantines outlast the test
	})
	for i := range 10 {
		mustRegister(t, cp, now, AgentID(fmt.Sprintf("a%d", i)), "z1", 1, false)
	}
	d := cp.domains["z1"]
	for _, id := range []AgentID{"a0", "a1"} {
		cp.maybeQuarantine(now, cp.agents[id])
	}
	if d.quarantined != 2 || cp.quarantineCap(d) != 2 {
		t.Fatalf("setup: %d quarantined, cap %d", d.quarantined, cp.quarantineCap(d))
	}
	// a9 goes silent for good; the others (quarantined ones included) keep
	// heartbeating.
	for step := uint64(2); step < 40; step++ {
		now = now.Add(5 * time.Second)
		for i := range 9 {
			if _, err := cp.Apply(now, HeartbeatInput{AgentID: AgentID(fmt.Sprintf("a%d", i)), Domain: "z1", Slots: 1, Incarnation: 1, Seq: step}); err != nil {
				t.Fatal(err)
			}
		}
		cp.Apply(now, TickInput{})
		if d.quarantined > cp.quarantineCap(d) {
			t.Fatalf("at %v: %d health quarantines over the cap %d (%d agents known)", now, d.quarantined, cp.quarantineCap(d), d.agents)
		}
	}
	if _, ok := cp.agents["a9"]; !ok && d.quarantined > 1 {
		t.Fatal("a9 forgotten while the domain needed it for its quarantine cap")
	}
}
