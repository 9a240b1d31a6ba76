package core

import (
	"testing"
	"time"
)

type fakeExec struct {
	started []Execution
	stopped []Lease
}

func (f *fakeExec) Start(e Execution)           { f.started = append(f.started, e) }
func (f *fakeExec) Stop(id TaskID, attempt int) { f.stopped = append(f.stopped, Lease{id, attempt}) }

func TestSmokeSubmitRunSucceed(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cp, err := NewControlPlane(DefaultConfig(), t0)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fakeExec{}
	ag, err := NewAgent(AgentConfig{ID: "a1", Domain: "z1", Slots: 2, HeartbeatInterval: 5 * time.Second, ResultsMax: 16, Incarnation: 1}, fx)
	if err != nil {
		t.Fatal(err)
	}
	hb, ok := ag.Tick(t0)
	if !ok {
		t.Fatal("no first heartbeat")
	}
	rep, err := doHeartbeat(cp, t0, hb)
	if err != nil || !rep.Registered {
		t.Fatalf("register: %v %+v", err, rep)
	}
	ag.HeartbeatReplied(t0, hb.Seq, rep)
	task, replayed, err := doSubmit(cp, t0, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 10}, IdempotencyKey: "k"})
	if err != nil || replayed {
		t.Fatal(err, replayed)
	}
	out := cp.TakeOutbox()
	if len(out) != 1 || out[0].Assign == nil || out[0].To != "a1" {
		t.Fatalf("outbox %+v", out)
	}
	ack := ag.Assign(t0, *out[0].Assign)
	if !ack.Accepted {
		t.Fatalf("ack %+v", ack)
	}
	if _, err := cp.Apply(t0, ack); err != nil {
		t.Fatal(err)
	}
	if got, _ := cp.Task(task.ID); got.State != TaskRunning {
		t.Fatalf("state %v", got.State)
	}
	t1 := t0.Add(10 * time.Millisecond)
	ag.Finished(t1, Result{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded})
	hb, ok = ag.Tick(t1)
	if !ok || len(hb.Results) != 1 {
		t.Fatalf("heartbeat %v %+v", ok, hb)
	}
	rep, err = doHeartbeat(cp, t1, hb)
	if err != nil || len(rep.Acked) != 1 {
		t.Fatal(err, rep)
	}
	ag.HeartbeatReplied(t1, hb.Seq, rep)
	if ag.PendingResults() != 0 {
		t.Fatal("result not acked")
	}
	if got, _ := cp.Task(task.ID); got.State != TaskSucceeded {
		t.Fatalf("state %v", got.State)
	}
	again, replayed, err := doSubmit(cp, t1, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 10}, IdempotencyKey: "k"})
	if err != nil || !replayed || again.ID != task.ID {
		t.Fatal(err, replayed, again.ID)
	}
	if _, err := cp.Apply(t1, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 11}, IdempotencyKey: "k"}); err == nil {
		t.Fatal("conflict not detected")
	}
	snap := cp.DebugView(t1)
	if snap.Mode != ModeNormal || snap.DomainActive["z1"] != 0 || snap.Agents.Connected != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, e := range cp.Timeline().Since(0, 0) {
		t.Logf("%d %s %s %s %s→%s %s", e.Seq, e.Type, e.TaskID, e.AgentID, e.From, e.To, e.Reason)
	}
}
