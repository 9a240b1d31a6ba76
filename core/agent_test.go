package core

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestAgent(t *testing.T, edit func(*AgentConfig)) (*Agent, *fakeExec) {
	t.Helper()
	cfg := AgentConfig{ID: "a1", Domain: "z1", Slots: 2, HeartbeatInterval: 5 * time.Second, ResultsMax: 4, Incarnation: 1}
	if edit != nil {
		edit(&cfg)
	}
	fx := &fakeExec{}
	ag, err := NewAgent(cfg, fx)
	if err != nil {
		t.Fatal(err)
	}
	return ag, fx
}

func assignOf(id TaskID, attempt int, spec TaskSpec) Assign {
	return Assign{TaskID: id, Attempt: attempt, Spec: spec}
}

func TestAgentAssign(t *testing.T) {
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 10}
	exec := TaskSpec{Kind: KindExec, Argv: []string{"true"}}
	tests := []struct {
		name       string
		allowExec  bool
		before     []Assign // accepted first
		assign     Assign
		accepted   bool
		reason     string // in the rejection
		wantStarts int
	}{
		{"accepts within its slots", false, []Assign{assignOf("t1", 1, sleep)}, assignOf("t2", 1, sleep), true, "", 2},
		{"rejects beyond its slots", false, []Assign{assignOf("t1", 1, sleep), assignOf("t2", 1, sleep)}, assignOf("t3", 1, sleep), false, "all 2 slots busy", 2},
		{"rejects exec unless allowed", false, nil, assignOf("t1", 1, exec), false, "kind exec is not allowed", 0},
		{"accepts exec when allowed", true, nil, assignOf("t1", 1, exec), true, "", 1},
		{"duplicate assignment is idempotent", false, []Assign{assignOf("t1", 1, sleep)}, assignOf("t1", 1, sleep), true, "", 1},
		{"older attempt is rejected", false, []Assign{assignOf("t1", 2, sleep)}, assignOf("t1", 1, sleep), false, "stale: running attempt 2", 1},
		{"invalid spec is rejected", false, nil, assignOf("t1", 1, TaskSpec{Kind: "shell"}), false, "not one of exec, sleep", 0},
		{"attempt 0 is rejected", false, nil, assignOf("t1", 0, sleep), false, "attempt must be >= 1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ag, fx := newTestAgent(t, func(c *AgentConfig) { c.AllowExec = tt.allowExec })
			for _, as := range tt.before {
				if ack := ag.Assign(testEpoch, as); !ack.Accepted {
					t.Fatalf("setup assign %+v rejected: %s", as, ack.Reason)
				}
			}
			ack := ag.Assign(testEpoch, tt.assign)
			if ack.Accepted != tt.accepted || !strings.Contains(ack.Reason, tt.reason) {
				t.Fatalf("ack %+v, want accepted=%v reason %q", ack, tt.accepted, tt.reason)
			}
			if ack.AgentID != "a1" || ack.TaskID != tt.assign.TaskID || ack.Attempt != tt.assign.Attempt {
				t.Fatalf("ack names the wrong lease: %+v", ack)
			}
			if len(fx.started) != tt.wantStarts {
				t.Fatalf("executor started %d, want %d", len(fx.started), tt.wantStarts)
			}
			if len(ag.Running()) > ag.Config().Slots {
				t.Fatalf("running %d beyond %d slots", len(ag.Running()), ag.Config().Slots)
			}
		})
	}
}

func TestAgentNewerAttemptSupersedes(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 10}
	ag.Assign(testEpoch, assignOf("t1", 1, sleep))
	if ack := ag.Assign(testEpoch, assignOf("t1", 2, sleep)); !ack.Accepted {
		t.Fatalf("newer attempt rejected: %s", ack.Reason)
	}
	if !slices.Equal(fx.stopped, []Lease{{"t1", 1}}) || !slices.Equal(ag.Running(), []Lease{{"t1", 2}}) {
		t.Fatalf("stopped %v running %v", fx.stopped, ag.Running())
	}
	// The old attempt's late completion is ignored; a finished attempt
	// is not started again.
	ag.Finished(testEpoch, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	ag.Finished(testEpoch, Result{TaskID: "t1", Attempt: 2, Outcome: OutcomeSucceeded})
	// A redelivery of the finished attempt is answered as the same
	// assignment (see TestAgentDuplicateAssignOfFinishedAttempt); an older
	// one is stale.
	if ack := ag.Assign(testEpoch, assignOf("t1", 2, sleep)); !ack.Accepted || len(fx.started) != 2 {
		t.Fatalf("re-assign of a finished attempt: %+v, %d started", ack, len(fx.started))
	}
	if ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep)); ack.Accepted || !strings.Contains(ack.Reason, "already finished") {
		t.Fatalf("assign of an attempt older than a finished one: %+v", ack)
	}
}

func TestAgentTimeoutViaTick(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	ag.Assign(testEpoch, assignOf("t1", 1, TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 10}))
	if next := ag.NextWake(testEpoch.Add(time.Second)); next.After(testEpoch.Add(10 * time.Second)) {
		t.Fatalf("next wake %v is after the deadline", next)
	}
	first, _ := ag.Tick(testEpoch.Add(10*time.Second - 1))
	ag.HeartbeatReplied(testEpoch.Add(10*time.Second-1), first.Seq, HeartbeatReply{})
	if len(fx.stopped) != 0 {
		t.Fatal("stopped before its deadline")
	}
	hb, ok := ag.Tick(testEpoch.Add(10 * time.Second))
	if !slices.Equal(fx.stopped, []Lease{{"t1", 1}}) || len(ag.Running()) != 0 {
		t.Fatalf("not stopped at its deadline: stopped %v", fx.stopped)
	}
	if !ok || len(hb.Results) != 1 || hb.Results[0].Outcome != OutcomeTimeout || ag.Stats().TimedOut != 1 {
		t.Fatalf("heartbeat %v %+v", ok, hb.Results)
	}
}

func TestAgentResultsResentUntilAcked(t *testing.T) {
	ag, _ := newTestAgent(t, nil)
	now := testEpoch
	hb, _ := ag.Tick(now)
	ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{Registered: true})
	ag.Assign(now, assignOf("t1", 1, TaskSpec{Kind: KindSleep}))
	now = now.Add(time.Second)
	ag.Finished(now, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	for i := range 3 {
		hb, ok := ag.Tick(now)
		if !ok || len(hb.Results) != 1 || hb.Results[0].TaskID != "t1" {
			t.Fatalf("heartbeat %d: %v %+v", i, ok, hb.Results)
		}
		if i < 2 {
			// Lost on the way (no reply), then a reply without the ack.
			if i == 0 {
				ag.HeartbeatFailed(now, hb.Seq)
			} else {
				ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{})
			}
			now = now.Add(ag.Config().HeartbeatInterval)
			continue
		}
		ag.HeartbeatReplied(now, hb.Seq, HeartbeatReply{Acked: []Lease{{"t1", 1}}})
	}
	if ag.PendingResults() != 0 {
		t.Fatal("acked result still pending")
	}
	now = now.Add(ag.Config().HeartbeatInterval)
	if hb, _ := ag.Tick(now); len(hb.Results) != 0 {
		t.Fatalf("acked result sent again: %+v", hb.Results)
	}
}

func TestAgentEarlyHeartbeatAfterResult(t *testing.T) {
	ag, _ := newTestAgent(t, nil)
	hb, ok := ag.Tick(testEpoch)
	if !ok {
		t.Fatal("no first heartbeat")
	}
	ag.HeartbeatReplied(testEpoch, hb.Seq, HeartbeatReply{})
	ag.Assign(testEpoch, assignOf("t1", 1, TaskSpec{Kind: KindSleep}))
	if _, ok := ag.Tick(testEpoch.Add(time.Second)); ok {
		t.Fatal("heartbeat before the interval with nothing to report")
	}
	at := testEpoch.Add(2 * time.Second)
	ag.Finished(at, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeFailed, ExitCode: 2})
	if next := ag.NextWake(at); !next.Equal(at) {
		t.Fatalf("next wake %v, want now", next)
	}
	hb, ok = ag.Tick(at)
	if !ok || len(hb.Results) != 1 {
		t.Fatalf("no early heartbeat after a result: %v", ok)
	}
	// While that heartbeat is in flight, no second early one.
	ag.Finished(at, Result{TaskID: "t2", Attempt: 1, Outcome: OutcomeFailed})
	if _, ok := ag.Tick(at.Add(time.Second)); ok {
		t.Fatal("early heartbeat while one is in flight")
	}
}

func TestAgentCancelAndStop(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	sleep := TaskSpec{Kind: KindSleep}
	ag.Assign(testEpoch, assignOf("t1", 2, sleep))
	ag.Assign(testEpoch, assignOf("t2", 1, sleep))
	ag.Cancel(testEpoch, CancelTask{TaskID: "t1", Attempt: 1}) // older attempt: not ours
	if len(fx.stopped) != 0 {
		t.Fatal("cancel of an older attempt stopped the current one")
	}
	ag.HeartbeatReplied(testEpoch, 99, HeartbeatReply{Cancel: []Lease{{"t1", 2}}})
	if !slices.Equal(fx.stopped, []Lease{{"t1", 2}}) {
		t.Fatalf("stopped %v", fx.stopped)
	}
	ag.Stop(testEpoch)
	if ack := ag.Assign(testEpoch, assignOf("t3", 1, sleep)); ack.Accepted || !strings.Contains(ack.Reason, "stopping") {
		t.Fatalf("stopping agent accepted work: %+v", ack)
	}
	hb, _ := ag.Tick(testEpoch)
	if !hb.Stopping || ag.Drained() {
		t.Fatalf("stopping %v drained %v", hb.Stopping, ag.Drained())
	}
	ag.CancelAll(testEpoch, "grace over")
	hb, _ = ag.Tick(testEpoch.Add(5 * time.Second))
	ag.HeartbeatReplied(testEpoch, hb.Seq, HeartbeatReply{Acked: []Lease{{"t1", 2}, {"t2", 1}}})
	if !ag.Drained() {
		t.Fatalf("not drained: running %v pending %d", ag.Running(), ag.PendingResults())
	}
}

func TestAgentResultsBounded(t *testing.T) {
	ag, _ := newTestAgent(t, func(c *AgentConfig) { c.Slots = 8 })
	for i := range 6 {
		id := TaskID(string(rune('a' + i)))
		ag.Assign(testEpoch, assignOf(id, 1, TaskSpec{Kind: KindSleep}))
		ag.Finished(testEpoch, Result{TaskID: id, Attempt: 1, Outcome: OutcomeSucceeded})
	}
	if ag.PendingResults() != 4 || ag.Stats().ResultsDropped != 2 {
		t.Fatalf("pending %d dropped %d", ag.PendingResults(), ag.Stats().ResultsDropped)
	}
}

func TestAgentConfigValidation(t *testing.T) {
	good := AgentConfig{ID: "a1", Domain: "z1", Slots: 1, HeartbeatInterval: time.Second, ResultsMax: 1}
	tests := []struct {
		name string
		edit func(*AgentConfig)
		want string
	}{
		{"bad id", func(c *AgentConfig) { c.ID = "a 1" }, "agent id"},
		{"no domain", func(c *AgentConfig) { c.Domain = "" }, "domain must be"},
		{"no slots", func(c *AgentConfig) { c.Slots = 0 }, "slots must be in"},
		{"no interval", func(c *AgentConfig) { c.HeartbeatInterval = 0 }, "heartbeat interval"},
		{"no results bound", func(c *AgentConfig) { c.ResultsMax = 0 }, "ResultsMax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if _, err := NewAgent(c, &fakeExec{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAgentLeaseFences: an agent cut off from the cp stops its attempts
// once the lease the cp named has run out since the sending of the last
// heartbeat the cp replied to, and takes no assignment until a reply
// renews it; before the first lease it fences nothing.
func TestAgentLeaseFences(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 600_000, TimeoutSeconds: 3600}
	hb, _ := ag.Tick(testEpoch)
	if !hb.SelfFencing {
		t.Fatal("heartbeat does not say the agent fences itself")
	}
	if ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep)); !ack.Accepted {
		t.Fatalf("no lease yet: %s", ack.Reason)
	}
	lease := 40 * time.Second
	sent := testEpoch.Add(time.Second)
	ag.lastSent = time.Time{}
	hb, _ = ag.Tick(sent)
	ag.HeartbeatReplied(sent.Add(3*time.Second), hb.Seq, HeartbeatReply{LeaseMillis: lease.Milliseconds()})
	if got := ag.NextWake(sent.Add(4 * time.Second)); got.After(sent.Add(lease)) {
		t.Fatalf("next wake %v is after the lease's end %v", got, sent.Add(lease))
	}
	// Cut off: heartbeats fail from here on.
	for now := sent.Add(5 * time.Second); now.Before(sent.Add(lease)); now = now.Add(5 * time.Second) {
		if hb, ok := ag.Tick(now); ok {
			ag.HeartbeatFailed(now, hb.Seq)
		}
	}
	if len(fx.stopped) != 0 || len(ag.Running()) != 1 {
		t.Fatalf("stopped %v before the lease ran out", fx.stopped)
	}
	end := sent.Add(lease) // counted from the sending, not the reply
	hb, _ = ag.Tick(end)
	if !slices.Equal(fx.stopped, []Lease{{"t1", 1}}) || len(ag.Running()) != 0 || ag.Stats().Fenced != 1 {
		t.Fatalf("at the lease's end: stopped %v running %v", fx.stopped, ag.Running())
	}
	if len(hb.Results) != 1 || hb.Results[0].Outcome != OutcomeCancelled || !strings.Contains(hb.Results[0].Error, "lease expired") {
		t.Fatalf("result %+v, want cancelled: lease expired", hb.Results)
	}
	ack := ag.Assign(end, assignOf("t2", 1, sleep))
	if ack.Accepted || !ack.Retryable || !strings.Contains(ack.Reason, "lease expired") {
		t.Fatalf("assignment past the lease: %+v", ack)
	}
	ag.HeartbeatReplied(end.Add(time.Second), hb.Seq, HeartbeatReply{LeaseMillis: lease.Milliseconds()})
	// The cp requeued t2 on the refusal: its next attempt is taken.
	if ack := ag.Assign(end.Add(time.Second), assignOf("t2", 2, sleep)); !ack.Accepted {
		t.Fatalf("renewed lease: %s", ack.Reason)
	}
}

// TestAgentRefusesOtherIncarnation: an assignment the cp meant for an
// earlier process of the agent (in flight across a restart, requeued by the
// heartbeat that revealed the restart) is refused as stale and retryable;
// one naming this process or none is taken.
func TestAgentRefusesOtherIncarnation(t *testing.T) {
	ag, fx := newTestAgent(t, func(c *AgentConfig) { c.Incarnation = 2 })
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 10}
	as := assignOf("t1", 2, sleep)
	as.Incarnation = 1
	if ack := ag.Assign(testEpoch, as); ack.Accepted || !ack.Retryable || !strings.Contains(ack.Reason, "incarnation 1") {
		t.Fatalf("assignment for incarnation 1 reaching incarnation 2: %+v", ack)
	}
	if len(fx.started) != 0 {
		t.Fatalf("started %v", fx.started)
	}
	for _, inc := range []uint64{2, 0} {
		as := assignOf(TaskID(fmt.Sprint("t-inc", inc)), 1, sleep)
		as.Incarnation = inc
		if ack := ag.Assign(testEpoch, as); !ack.Accepted {
			t.Fatalf("incarnation %d: %+v", inc, ack)
		}
	}
}

// TestAssignNamesIncarnation: the cp names the agent process it means in
// an assignment to an agent that fences itself, and nothing to an older
// agent (which refuses unknown fields).
func TestAssignNamesIncarnation(t *testing.T) {
	h := newHarness(t, nil)
	h.dom["a1"], h.inc["a1"] = "z1", 7
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.SelfFencing = true })
	h.dom["a2"], h.inc["a2"] = "z2", 9
	h.heartbeat("a2", nil)
	h.cp.TakeOutbox()
	spec := TaskSpec{Kind: KindSleep, DurationMS: 10}
	want := map[AgentID]uint64{"a1": 7, "a2": 0}
	for _, d := range []string{"z1", "z2"} {
		s := spec
		s.Domain = d
		h.submit(s)
	}
	got := map[AgentID]uint64{}
	for _, o := range h.cp.TakeOutbox() {
		if o.Assign != nil {
			got[o.To] = o.Assign.Incarnation
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("assignments name incarnations %v, want %v", got, want)
	}
}

// TestLateHeartbeatOfPreviousProcess: a heartbeat of the agent's previous
// process delivered late (after the current one registered) is no restart:
// the attempts leased to the current process stay, and its own heartbeats
// are not taken as stale afterwards.
func TestLateHeartbeatOfPreviousProcess(t *testing.T) {
	h := newHarness(t, nil)
	h.selfFencing = true
	h.join("z1", 1, "a1")
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 600})
	for range 5 {
		h.heartbeat("a1", nil)
	}
	h.inc["a1"], h.seq["a1"] = 2, 0 // restarted: the attempt is lost and placed again
	h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil })
	h.heartbeat("a1", nil)
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 2 {
		t.Fatalf("after the restart: %v attempt %d, want RUNNING attempt 2", got.State, got.Attempt)
	}
	_, err := doHeartbeat(h.cp, h.now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 9, SelfFencing: true,
		Running: []Lease{{task.ID, 1}}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "older incarnation 1") {
		t.Fatalf("late heartbeat of incarnation 1: %v, want a conflict", err)
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 2 {
		t.Fatalf("after a late heartbeat of incarnation 1: %v attempt %d, want RUNNING attempt 2", got.State, got.Attempt)
	}
	h.heartbeat("a1", nil)
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 2 {
		t.Fatalf("the current process's next heartbeat: %v attempt %d", got.State, got.Attempt)
	}
	if n := len(h.events(EventAgentRestarted)); n != 1 {
		t.Fatalf("%d restarts recorded, want 1", n)
	}
	if a := h.cp.agents["a1"]; a.incarnation != 2 {
		t.Fatalf("incarnation %d, want 2", a.incarnation)
	}
}

// TestRefusalAfterAcceptanceIsStale: an assignment delivered twice, first
// refused (lease expired) then accepted once a reply renewed the lease,
// whose acks arrive in the other order: the refusal is a stale answer to
// the earlier delivery and must not requeue the attempt the agent runs.
func TestRefusalAfterAcceptanceIsStale(t *testing.T) {
	h := newHarness(t, nil)
	h.join("z1", 1, "a1")
	task := h.submit(TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 600})
	if _, err := h.cp.Apply(h.now, AssignAck{AgentID: "a1", TaskID: task.ID, Attempt: 1, Accepted: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.cp.Apply(h.now, AssignAck{AgentID: "a1", TaskID: task.ID, Attempt: 1, Retryable: true,
		Reason: "lease expired: no reply from the cp for 1m"}); err != nil {
		t.Fatal(err)
	}
	if got := h.task(task.ID); got.State != TaskRunning || got.Attempt != 1 || got.AgentID != "a1" {
		t.Fatalf("after a late refusal: %v attempt %d on %s, want RUNNING attempt 1 on a1", got.State, got.Attempt, got.AgentID)
	}
	if v, _ := h.cp.Agent("a1"); v.Held {
		t.Fatal("a stale refusal held the agent")
	}
}

// TestAgentRefusesRedeliveryOfRefused: an assignment the agent refused
// (the cp requeues the attempt on the refusal) is refused again when a
// duplicate of it arrives later, even if the agent could take it now.
func TestAgentRefusesRedeliveryOfRefused(t *testing.T) {
	ag, fx := newTestAgent(t, func(c *AgentConfig) { c.Slots = 1 })
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 60_000, TimeoutSeconds: 600}
	if ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep)); !ack.Accepted {
		t.Fatal(ack.Reason)
	}
	if ack := ag.Assign(testEpoch, assignOf("t2", 1, sleep)); ack.Accepted || !ack.Retryable {
		t.Fatalf("slots busy: %+v", ack)
	}
	ag.Cancel(testEpoch, CancelTask{TaskID: "t1", Attempt: 1})
	ack := ag.Assign(testEpoch.Add(time.Second), assignOf("t2", 1, sleep))
	if ack.Accepted || !ack.Retryable || !strings.Contains(ack.Reason, "refused") {
		t.Fatalf("redelivery of a refused assignment: %+v", ack)
	}
	if ack := ag.Assign(testEpoch.Add(time.Second), assignOf("t2", 2, sleep)); !ack.Accepted {
		t.Fatalf("the next attempt: %+v", ack)
	}
	if len(fx.started) != 2 {
		t.Fatalf("started %v", fx.started)
	}
}

// TestAgentRefusesRedeliveryOfFinished: a duplicate of an assignment whose
// attempt finished here and whose result the cp acknowledged is refused
// (the cp has moved on; it may run the next attempt elsewhere), not run
// again.
func TestAgentRefusesRedeliveryOfFinished(t *testing.T) {
	ag, fx := newTestAgent(t, nil)
	sleep := TaskSpec{Kind: KindSleep, DurationMS: 10}
	if ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep)); !ack.Accepted {
		t.Fatal(ack.Reason)
	}
	ag.Finished(testEpoch, Result{TaskID: "t1", Attempt: 1, Outcome: OutcomeSucceeded})
	if ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep)); !ack.Accepted || len(fx.started) != 1 {
		t.Fatalf("redelivery with the result pending: %+v, started %v", ack, fx.started)
	}
	hb, _ := ag.Tick(testEpoch)
	ag.HeartbeatReplied(testEpoch, hb.Seq, HeartbeatReply{Acked: []Lease{{"t1", 1}}})
	if ag.PendingResults() != 0 {
		t.Fatal("result not forgotten on its ack")
	}
	ack := ag.Assign(testEpoch, assignOf("t1", 1, sleep))
	if ack.Accepted || !ack.Retryable || !strings.Contains(ack.Reason, "finished") || len(fx.started) != 1 {
		t.Fatalf("redelivery after the ack: %+v, started %v", ack, fx.started)
	}
}
