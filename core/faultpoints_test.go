package core

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// firePoints fires the listed points every time and counts every occasion.
type firePoints struct {
	on    map[FaultPoint]bool
	asked map[FaultPoint]int
}

func newFirePoints(on ...FaultPoint) *firePoints {
	f := &firePoints{on: map[FaultPoint]bool{}, asked: map[FaultPoint]int{}}
	for _, p := range on {
		f.on[p] = true
	}
	return f
}

func (f *firePoints) Fire(p FaultPoint, agent AgentID, task TaskID, attempt int) bool {
	f.asked[p]++
	return f.on[p]
}

// TestFaultPointsOffChangeNothing: a FaultPoints that never fires leaves the
// agent exactly as without one (timeouts enforced, results sent and dropped
// once acknowledged), while being asked at each point.
func TestFaultPointsOffChangeNothing(t *testing.T) {
	fp := newFirePoints()
	ag, fx := newTestAgent(t, func(c *AgentConfig) { c.FaultPoints = fp })
	now := testEpoch
	ag.Assign(now, assignOf("t1", 1, TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 10}))
	if next := ag.NextWake(now); !next.Equal(now) && next.After(now.Add(10*time.Second)) {
		t.Fatalf("next wake %v after the deadline", next)
	}
	now = now.Add(10 * time.Second)
	hb, ok := ag.Tick(now)
	if !ok || len(hb.Results) != 1 || hb.Results[0].Outcome != OutcomeTimeout || len(fx.stopped) != 1 {
		t.Fatalf("timeout not enforced: %v %+v stopped %v", ok, hb.Results, fx.stopped)
	}
	ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{Acked: []Lease{{"t1", 1}}})
	if ag.PendingResults() != 0 {
		t.Fatal("acked result still pending")
	}
	for _, p := range []FaultPoint{FaultAgentWedged, FaultAgentResultHeld, FaultAgentResultResent} {
		if fp.asked[p] == 0 {
			t.Errorf("fault point %s never consulted", p)
		}
	}
}

// TestFaultAgentWedged: a wedged agent does not time its execution out and
// does not wake for its deadline; the cp's lease expiry (timeout +
// LeaseGrace, a failure) then cancels it, and the agent obeys the cancel.
func TestFaultAgentWedged(t *testing.T) {
	h := newHarness(t, nil)
	fx := &fakeExec{}
	ag, err := NewAgent(AgentConfig{ID: "a1", Domain: "z1", Slots: 1, HeartbeatInterval: 5 * time.Second, ResultsMax: 8, Incarnation: 1,
		FaultPoints: newFirePoints(FaultAgentWedged)}, fx)
	if err != nil {
		t.Fatal(err)
	}
	beat := func() {
		t.Helper()
		if hb, ok := ag.Tick(h.now); ok {
			rep, err := doHeartbeat(h.cp, h.now, hb)
			if err != nil {
				t.Fatal(err)
			}
			ag.HeartbeatReplied(h.now, hb.Seq, rep)
		}
		for _, o := range h.cp.TakeOutbox() {
			switch {
			case o.Assign != nil:
				if ack := ag.Assign(h.now, *o.Assign); !ack.Accepted {
					t.Fatalf("assignment rejected: %s", ack.Reason)
				} else if _, err := h.cp.Apply(h.now, ack); err != nil {
					t.Fatal(err)
				}
			case o.Cancel != nil:
				ag.Cancel(h.now, *o.Cancel)
			}
		}
	}
	beat()
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 600_000, TimeoutSeconds: 10, MaxAttempts: 2})
	h.cp.Apply(h.now, TickInput{})
	beat()
	if len(fx.started) != 1 {
		t.Fatalf("started %d executions", len(fx.started))
	}
	if next := ag.NextWake(h.now); next.Before(h.now.Add(5 * time.Second)) {
		t.Fatalf("wedged agent wakes at %v for its deadline", next.Sub(h.now))
	}
	deadline := h.now.Add(10*time.Second + h.cp.Config().LeaseGrace)
	for h.now.Before(deadline.Add(-time.Second)) {
		h.now = h.now.Add(time.Second)
		beat()
		h.cp.Apply(h.now, TickInput{})
	}
	if len(fx.stopped) != 0 || ag.Stats().TimedOut != 0 || h.task(task.ID).Attempt != 1 {
		t.Fatalf("timed out before the lease expired: stopped %v, attempt %d", fx.stopped, h.task(task.ID).Attempt)
	}
	for range 3 {
		h.now = h.now.Add(time.Second)
		h.cp.Apply(h.now, TickInput{})
		beat()
	}
	if h.cp.Stats().StuckLeases != 1 {
		t.Fatalf("stuck leases %d, want 1", h.cp.Stats().StuckLeases)
	}
	if tk := h.task(task.ID); tk.Failures != 1 || tk.Attempt < 2 && tk.State != TaskQueued {
		t.Fatalf("after lease expiry: %+v", tk)
	}
	if !slices.Contains(fx.stopped, Lease{task.ID, 1}) {
		t.Fatalf("agent did not stop attempt 1 on the cp's cancel: %v", fx.stopped)
	}
}

// TestFaultAgentResultResent: an acknowledged result stays pending and is
// reported again; the cp ignores it as stale and acks it again.
func TestFaultAgentResultResent(t *testing.T) {
	ag, _ := newTestAgent(t, func(c *AgentConfig) { c.FaultPoints = newFirePoints(FaultAgentResultResent) })
	now := testEpoch
	ag.Assign(now, assignOf("t1", 1, TaskSpec{Kind: KindSleep}))
	ag.Finished(now, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	for i := range 2 {
		hb, ok := ag.Tick(now)
		if !ok || len(hb.Results) != 1 {
			t.Fatalf("heartbeat %d: %v %+v", i, ok, hb.Results)
		}
		ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{Acked: []Lease{{"t1", 1}}})
		if ag.PendingResults() != 1 {
			t.Fatalf("heartbeat %d: acked result was not kept for a resend", i)
		}
	}

	h := newHarness(t, nil)
	h.join("z1", 1, "a1")
	task := h.submit(sleepSpec())
	h.cp.Apply(h.now, TickInput{})
	r := Result{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running, hb.Results = nil, []Result{r} })
	rep := h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Results = []Result{r} })
	if h.task(task.ID).State != TaskSucceeded || h.cp.Stats().StaleIgnored != 1 || !slices.Equal(rep.Acked, []Lease{{task.ID, 1}}) {
		t.Fatalf("duplicate result: %s, stale %d, acked %v", h.task(task.ID).State, h.cp.Stats().StaleIgnored, rep.Acked)
	}
}

// TestFaultAgentResultHeld: a held result is left out of the heartbeat while
// the attempt is no longer reported running, so the cp moves the lease; the
// result that arrives afterwards is stale and changes nothing.
func TestFaultAgentResultHeld(t *testing.T) {
	fp := newFirePoints(FaultAgentResultHeld)
	ag, _ := newTestAgent(t, func(c *AgentConfig) { c.FaultPoints = fp })
	now := testEpoch
	ag.Assign(now, assignOf("t1", 1, TaskSpec{Kind: KindSleep}))
	ag.Finished(now, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	hb, ok := ag.Tick(now)
	if !ok || len(hb.Results) != 0 || len(hb.Running) != 0 || ag.PendingResults() != 1 {
		t.Fatalf("held result: %v results %+v running %v pending %d", ok, hb.Results, hb.Running, ag.PendingResults())
	}
	delete(fp.on, FaultAgentResultHeld)
	ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{})
	if hb, _ := ag.Tick(now); len(hb.Results) != 1 {
		t.Fatalf("result not sent once released: %+v", hb.Results)
	}

	h := newHarness(t, nil)
	h.join("z1", 1, "a1", "a2")
	task := h.submit(sleepSpec())
	h.cp.Apply(h.now, TickInput{})
	first := h.task(task.ID)
	h.heartbeat(first.AgentID, nil) // running
	h.heartbeat(first.AgentID, func(hb *HeartbeatInput) { hb.Running = nil })
	if moved := h.task(task.ID); moved.Attempt != 2 || moved.AgentID == first.AgentID {
		t.Fatalf("lease not moved when the attempt vanished: %+v", moved)
	}
	h.heartbeat(first.AgentID, func(hb *HeartbeatInput) {
		hb.Running, hb.Results = nil, []Result{{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}}
	})
	late := h.task(task.ID)
	if late.Attempt != 2 || late.State.Terminal() || len(h.events(EventTaskStaleIgnored)) != 1 {
		t.Fatalf("late result changed the task: %+v, stale events %d", late, len(h.events(EventTaskStaleIgnored)))
	}
}

// TestFaultCPAckDropped: the cp applies the result but does not acknowledge
// it; the agent keeps it and reports it again, which the cp ignores.
func TestFaultCPAckDropped(t *testing.T) {
	fp := newFirePoints(FaultCPAckDropped)
	h := newHarness(t, func(c *Config) { c.FaultPoints = fp })
	h.join("z1", 1, "a1")
	task := h.submit(sleepSpec())
	h.cp.Apply(h.now, TickInput{})
	r := Result{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}
	rep := h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running, hb.Results = nil, []Result{r} })
	if len(rep.Acked) != 0 || h.task(task.ID).State != TaskSucceeded || fp.asked[FaultCPAckDropped] != 1 {
		t.Fatalf("acked %v, state %s", rep.Acked, h.task(task.ID).State)
	}
	delete(fp.on, FaultCPAckDropped)
	rep = h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Results = []Result{r} })
	if !slices.Equal(rep.Acked, []Lease{{task.ID, 1}}) || h.task(task.ID).State != TaskSucceeded {
		t.Fatalf("resent result: acked %v, state %s", rep.Acked, h.task(task.ID).State)
	}
	if evs := h.events(EventTaskStaleIgnored); len(evs) != 1 || !strings.Contains(evs[0].Reason, "ignored") {
		t.Fatalf("stale events %+v", evs)
	}
}
