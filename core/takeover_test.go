package core

import (
	"testing"
	"time"
)

// TestTakeoverGracesAgentsAndResendsUnconfirmed: a new leader taking over
// a state where agents were last heard almost a heartbeat timeout ago and
// an assignment was never confirmed gives the agents a fresh timeout,
// resends the unconfirmed assignment under the same attempt and leaves the
// confirmed one alone.
func TestTakeoverGracesAgentsAndResendsUnconfirmed(t *testing.T) {
	cp, now := newTestCP(t, nil)
	mustRegister(t, cp, now, "a1", "z1", 1, false)
	mustRegister(t, cp, now, "a2", "z1", 1, false)
	t1, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}})
	if err != nil {
		t.Fatal(err)
	}
	t2, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}})
	if err != nil {
		t.Fatal(err)
	}
	cp.TakeOutbox()
	g1, _ := cp.Task(t1.ID)
	g2, _ := cp.Task(t2.ID)
	// The agent running t1 confirms it; t2's agent never heard of its own.
	if _, err := cp.Apply(now, HeartbeatInput{AgentID: g1.AgentID, Domain: "z1", Slots: 1, Incarnation: 1, Seq: 2,
		Running: []Lease{{t1.ID, 1}}}); err != nil {
		t.Fatal(err)
	}
	cp.TakeOutbox()

	// The old leader dies just before the agents' timeout; the new one
	// takes over.
	at := now.Add(cp.cfg.HeartbeatTimeout - time.Second)
	if _, err := cp.Apply(at, TakeoverInput{Node: "cp2"}); err != nil {
		t.Fatal(err)
	}
	out := cp.TakeOutbox()
	if len(out) != 1 || out[0].Assign == nil || out[0].To != g2.AgentID || out[0].Assign.TaskID != t2.ID || out[0].Assign.Attempt != 1 {
		t.Fatalf("outbox after takeover = %+v, want t2's attempt 1 resent to %s", out, g2.AgentID)
	}
	evs := cp.Timeline().Since(0, 0)
	last := evs[len(evs)-1]
	if last.Type != EventLeaderTakeover || last.Count != 1 || !contains(last.Reason, "cp2 took over: 2 agents given grace, 1 unconfirmed") {
		t.Fatalf("last event %+v", last)
	}
	// Past the old deadline both agents are still connected, and t2's
	// AssignTimeout counts from the takeover.
	if _, err := cp.Apply(now.Add(cp.cfg.HeartbeatTimeout+time.Second), TickInput{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []AgentID{"a1", "a2"} {
		if a := cp.agents[id]; !a.connected() {
			t.Fatalf("%s disconnected right after the takeover", id)
		}
	}
	if g, _ := cp.Task(t2.ID); g.State != TaskAssigned || g.Attempt != 1 {
		t.Fatalf("t2 %v attempt %d, want still ASSIGNED attempt 1", g.State, g.Attempt)
	}
	// Bad input changes nothing.
	before := cp.Timeline().Len()
	if _, err := cp.Apply(at, TakeoverInput{}); err == nil || cp.Timeline().Len() != before {
		t.Fatalf("takeover without node: %v", err)
	}
}

// TestTakeoverResendNamesIncarnation: an unconfirmed assignment a new
// leader resends to a self-fencing agent names the agent's incarnation,
// as the first sending did, so a restarted agent refuses it.
func TestTakeoverResendNamesIncarnation(t *testing.T) {
	cp, now := newTestCP(t, nil)
	if _, err := cp.Apply(now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 42, Seq: 1, SelfFencing: true}); err != nil {
		t.Fatal(err)
	}
	task, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}})
	if err != nil {
		t.Fatal(err)
	}
	for i, out := range [][]Outbound{cp.TakeOutbox(), nil} {
		if i == 1 {
			if _, err := cp.Apply(now.Add(time.Second), TakeoverInput{Node: "cp2"}); err != nil {
				t.Fatal(err)
			}
			out = cp.TakeOutbox()
		}
		var got []uint64
		for _, o := range out {
			if o.Assign != nil && o.Assign.TaskID == task.ID {
				got = append(got, o.Assign.Incarnation)
			}
		}
		if len(got) != 1 || got[0] != 42 {
			t.Fatalf("sending %d: assignments of %s name incarnations %v, want [42]", i, task.ID, got)
		}
	}
}
