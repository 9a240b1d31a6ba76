package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// cpHarness drives a ControlPlane the way a daemon would, with explicit time.
type cpHarness struct {
	t   *testing.T
	cp  *ControlPlane
	now time.Time
	seq map[AgentID]uint64
	inc map[AgentID]uint64
	dom map[AgentID]string
	// selfFencing: the agents' heartbeats say SelfFencing (ordered
	// incarnations, leases).
	selfFencing bool
}

func newHarness(t *testing.T, mutate func(*Config)) *cpHarness {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	cp, err := NewControlPlane(cfg, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return &cpHarness{t: t, cp: cp, now: testEpoch, seq: map[AgentID]uint64{}, inc: map[AgentID]uint64{}, dom: map[AgentID]string{}}
}

// join registers agents, each with slots slots, in domain.
func (h *cpHarness) join(domain string, slots int, ids ...AgentID) {
	h.t.Helper()
	for _, id := range ids {
		h.dom[id], h.inc[id] = domain, 1
		h.heartbeat(id, func(hb *HeartbeatInput) { hb.Slots = slots })
	}
}

// heartbeat sends a heartbeat from id reporting what the cp leased to it
// (as a healthy agent would), adjusted by edit.
func (h *cpHarness) heartbeat(id AgentID, edit func(*HeartbeatInput)) HeartbeatReply {
	h.t.Helper()
	h.seq[id]++
	hb := HeartbeatInput{AgentID: id, Domain: h.dom[id], Slots: 4, Incarnation: h.inc[id], Seq: h.seq[id], AllowsExec: true,
		SelfFencing: h.selfFencing}
	if v, ok := h.cp.Agent(id); ok {
		hb.Slots = v.Slots
		hb.Running = v.Tasks
	}
	if edit != nil {
		edit(&hb)
	}
	rep, err := doHeartbeat(h.cp, h.now, hb)
	if err != nil {
		h.t.Fatalf("heartbeat %s: %v", id, err)
	}
	return rep
}

func (h *cpHarness) submit(spec TaskSpec) Task {
	h.t.Helper()
	task, _, err := doSubmit(h.cp, h.now, SubmitInput{Spec: spec})
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	return task
}

func (h *cpHarness) task(id TaskID) Task {
	h.t.Helper()
	task, ok := h.cp.Task(id)
	if !ok {
		h.t.Fatalf("task %s unknown", id)
	}
	return task
}

// advance moves time on by d in heartbeat-sized ticks; agents in beating
// heartbeat at every tick.
func (h *cpHarness) advance(d time.Duration, beating ...AgentID) {
	h.t.Helper()
	step := h.cp.Config().HeartbeatInterval
	end := h.now.Add(d)
	for h.now.Before(end) {
		h.now = h.now.Add(step)
		if h.now.After(end) {
			h.now = end
		}
		for _, id := range beating {
			h.heartbeat(id, nil)
		}
		h.cp.Apply(h.now, TickInput{})
	}
}

func (h *cpHarness) events(typ EventType) []Event {
	var out []Event
	for _, e := range h.cp.Timeline().Since(0, 0) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func sleepSpec() TaskSpec { return TaskSpec{Kind: KindSleep, DurationMS: 1000} }

func TestSubmitValidation(t *testing.T) {
	tests := []struct {
		name string
		in   SubmitInput
		want string // in the message
	}{
		{"kind missing", SubmitInput{Spec: TaskSpec{}}, "kind is required (exec or sleep)"},
		{"kind unknown", SubmitInput{Spec: TaskSpec{Kind: "shell"}}, `kind "shell" is not one of exec, sleep`},
		{"exec without argv", SubmitInput{Spec: TaskSpec{Kind: KindExec}}, "kind exec needs a non-empty argv"},
		{"exec with empty program", SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: []string{""}}}, "kind exec needs a non-empty argv"},
		{"exec with too many args", SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: make([]string, argvMax+1)}}, ""},
		{"exec argv too large", SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: []string{"x", strings.Repeat("a", argvBytesMax)}}}, "bytes, at most"},
		{"exec with duration", SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: []string{"true"}, DurationMS: 5}}, "duration_ms is only for kind sleep"},
		{"sleep with argv", SubmitInput{Spec: TaskSpec{Kind: KindSleep, Argv: []string{"x"}}}, "argv is only for kind exec"},
		{"sleep negative", SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: -1}}, "duration_ms must be between 0 and"},
		{"sleep too long", SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: sleepMSMax + 1}}, "duration_ms must be between 0 and"},
		{"domain with a slash", SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: "eu/west"}}, "may hold only letters, digits"},
		{"domain too long", SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: strings.Repeat("z", 64)}}, "domain must be 1 to 63 characters"},
		{"priority out of range", SubmitInput{Spec: TaskSpec{Kind: KindSleep, Priority: 7}}, "priority out of range"},
		{"timeout negative", SubmitInput{Spec: TaskSpec{Kind: KindSleep, TimeoutSeconds: -1}}, "timeout_seconds must be between 1 and"},
		{"timeout too long", SubmitInput{Spec: TaskSpec{Kind: KindSleep, TimeoutSeconds: timeoutSecondsMax + 1}}, "timeout_seconds must be between 1 and"},
		{"max attempts negative", SubmitInput{Spec: TaskSpec{Kind: KindSleep, MaxAttempts: -1}}, "max_attempts must be between 1 and 20"},
		{"max attempts too many", SubmitInput{Spec: TaskSpec{Kind: KindSleep, MaxAttempts: 21}}, "max_attempts must be between 1 and 20"},
		{"idempotency key too long", SubmitInput{Spec: sleepSpec(), IdempotencyKey: strings.Repeat("k", idempotencyKeyMax+1)}, "idempotency key longer than 255 bytes"},
	}
	// An argv of empty strings fails on its first element; give the long
	// one a real program so it fails on its length.
	tests[4].in.Spec.Argv[0] = "true"
	tests[4].want = fmt.Sprintf("argv has %d elements, at most %d allowed", argvMax+1, argvMax)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			seq := h.cp.Timeline().LastSeq()
			_, err := h.cp.Apply(h.now, tt.in)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("message %q does not say %q", err, tt.want)
			}
			if h.cp.QueueDepth() != 0 || len(h.cp.Tasks(TaskFilter{})) != 0 || h.cp.Timeline().LastSeq() != seq {
				t.Fatal("a refused submission left a trace")
			}
			if got := h.cp.Stats().SubmitRefused[RefusalInvalid]; got != 1 {
				t.Fatalf("refusals counted %d", got)
			}
		})
	}
}

func TestSubmitQueueFullAndIdempotency(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.QueueCapacity = 2; c.TasksMax = 2 })
	a := h.submit(sleepSpec())
	if _, err := h.cp.Apply(h.now, SubmitInput{Spec: sleepSpec(), IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	_, err := h.cp.Apply(h.now, SubmitInput{Spec: sleepSpec()})
	if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "2 of 2 queued") {
		t.Fatalf("full queue: %v", err)
	}
	// A replay is not a new task: it is answered even when the queue is full.
	again, replayed, err := doSubmit(h.cp, h.now, SubmitInput{Spec: sleepSpec(), IdempotencyKey: "k"})
	if err != nil || !replayed || again.ID == a.ID {
		t.Fatalf("replay (%v, %v, %v)", again.ID, replayed, err)
	}
	other := sleepSpec()
	other.DurationMS++
	if _, err := h.cp.Apply(h.now, SubmitInput{Spec: other, IdempotencyKey: "k"}); !errors.Is(err, ErrIdempotencyConflict) || !strings.Contains(err.Error(), string(again.ID)) {
		t.Fatalf("conflict: %v", err)
	}
}

func TestModes(t *testing.T) {
	type step func(h *cpHarness)
	setMode := func(m Mode) step {
		return func(h *cpHarness) {
			if _, err := h.cp.Apply(h.now, SetModeInput{Mode: m, Reason: "test"}); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h *cpHarness)
	}{
		{"READ_ONLY refuses submissions", func(t *testing.T, h *cpHarness) {
			setMode(ModeReadOnly)(h)
			_, err := h.cp.Apply(h.now, SubmitInput{Spec: sleepSpec()})
			if !errors.Is(err, ErrModeRefused) || !strings.Contains(err.Error(), "READ_ONLY") || !strings.Contains(err.Error(), "operator") {
				t.Fatalf("err %v", err)
			}
		}},
		{"READ_ONLY blocks dispatch and says why", func(t *testing.T, h *cpHarness) {
			task := h.submit(sleepSpec())
			setMode(ModeReadOnly)(h)
			h.join("z1", 2, "a1")
			h.advance(10*time.Second, "a1")
			got := h.task(task.ID)
			if got.State != TaskQueued || got.LastDecision == nil || got.LastDecision.Outcome != DecisionModeBlocked {
				t.Fatalf("task %v decision %+v", got.State, got.LastDecision)
			}
			setMode(ModeNormal)(h)
			if got := h.task(task.ID); got.State != TaskAssigned {
				t.Fatalf("after NORMAL: %v", got.State)
			}
		}},
		{"READ_ONLY accepts results of running tasks", func(t *testing.T, h *cpHarness) {
			h.join("z1", 2, "a1")
			task := h.submit(sleepSpec())
			setMode(ModeReadOnly)(h)
			rep := h.heartbeat("a1", func(hb *HeartbeatInput) {
				hb.Running = nil
				hb.Results = []Result{{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}}
			})
			if got := h.task(task.ID); got.State != TaskSucceeded || len(rep.Acked) != 1 {
				t.Fatalf("state %v acked %v", got.State, rep.Acked)
			}
		}},
		{"DRAINING refuses submissions, dispatches the queue, then is drained", func(t *testing.T, h *cpHarness) {
			a := h.submit(sleepSpec())
			b := h.submit(sleepSpec())
			setMode(ModeDraining)(h)
			if _, err := h.cp.Apply(h.now, SubmitInput{Spec: sleepSpec()}); !errors.Is(err, ErrModeRefused) {
				t.Fatalf("err %v", err)
			}
			if h.cp.DebugView(h.now).Drained {
				t.Fatal("drained with a queue")
			}
			h.join("z1", 4, "a1")
			if h.cp.QueueDepth() != 0 || h.cp.InFlight() != 2 {
				t.Fatalf("queue %d in flight %d", h.cp.QueueDepth(), h.cp.InFlight())
			}
			if h.cp.DebugView(h.now).Drained {
				t.Fatal("drained with tasks in flight")
			}
			h.heartbeat("a1", func(hb *HeartbeatInput) {
				hb.Running = nil
				hb.Results = []Result{{TaskID: a.ID, Attempt: 1, Outcome: OutcomeSucceeded}, {TaskID: b.ID, Attempt: 1, Outcome: OutcomeSucceeded}}
			})
			if s := h.cp.DebugView(h.now); !s.Drained || s.Mode != ModeDraining {
				t.Fatalf("snapshot %+v", s)
			}
		}},
		{"DEGRADED sheds low priority only", func(t *testing.T, h *cpHarness) {
			setMode(ModeDegraded)(h)
			low := sleepSpec()
			low.Priority = PriorityLow
			if _, err := h.cp.Apply(h.now, SubmitInput{Spec: low}); !errors.Is(err, ErrLowPriorityShed) {
				t.Fatalf("low: %v", err)
			}
			for _, p := range []Priority{PriorityNormal, PriorityHigh} {
				s := sleepSpec()
				s.Priority = p
				h.submit(s)
			}
			if got := h.cp.Stats().SubmitRefused[RefusalDegraded]; got != 1 {
				t.Fatalf("degraded refusals %d", got)
			}
		}},
		{"mode changes record who and why", func(t *testing.T, h *cpHarness) {
			if _, err := h.cp.Apply(h.now, SetModeInput{Mode: ModeDraining, Actor: "alice", Reason: "maintenance"}); err != nil {
				t.Fatal(err)
			}
			m, by, why := h.cp.Mode()
			ev := h.events(EventModeChanged)
			last := ev[len(ev)-1]
			if m != ModeDraining || by != "alice" || why != "maintenance" || last.Actor != "alice" || last.From != "NORMAL" || last.To != "DRAINING" {
				t.Fatalf("mode %s by %s (%s), event %+v", m, by, why, last)
			}
		}},
		{"unknown mode is refused", func(t *testing.T, h *cpHarness) {
			_, err := h.cp.Apply(h.now, SetModeInput{Mode: "draining"})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not one of NORMAL, DEGRADED, READ_ONLY, DRAINING") {
				t.Fatalf("err %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newHarness(t, nil)) })
	}
}

func TestSelfProtection(t *testing.T) {
	small := func(c *Config) { c.QueueCapacity = 10; c.TasksMax = 100 }
	fill := func(h *cpHarness, n int) []Task {
		var ts []Task
		for range n {
			ts = append(ts, h.submit(sleepSpec()))
		}
		h.cp.Apply(h.now, TickInput{}) // the driver ticks often; the 30s count from here
		return ts
	}
	mode := func(h *cpHarness) (Mode, string) { m, by, _ := h.cp.Mode(); return m, by }
	cancel := func(h *cpHarness, task Task) {
		if _, err := doCancel(h.cp, h.now, CancelInput{TaskID: task.ID}); err != nil {
			h.t.Fatal(err)
		}
		h.cp.Apply(h.now, TickInput{})
	}
	tests := []struct {
		name string
		run  func(t *testing.T, h *cpHarness)
	}{
		{"enters DEGRADED at 80% held for 30s", func(t *testing.T, h *cpHarness) {
			fill(h, 8)
			h.cp.Apply(h.now, TickInput{})
			h.advance(25 * time.Second)
			h.now = h.now.Add(4 * time.Second)
			h.cp.Apply(h.now, TickInput{}) // 29s
			if m, _ := mode(h); m != ModeNormal {
				t.Fatalf("mode %s after 29s", m)
			}
			h.now = h.now.Add(time.Second)
			h.cp.Apply(h.now, TickInput{})
			if m, by := mode(h); m != ModeDegraded || by != ActorSelfProtection {
				t.Fatalf("mode %s by %s after 30s", m, by)
			}
		}},
		{"below 80% never degrades", func(t *testing.T, h *cpHarness) {
			fill(h, 7)
			h.advance(5 * time.Minute)
			if m, _ := mode(h); m != ModeNormal {
				t.Fatalf("mode %s", m)
			}
		}},
		{"a dip below 80% restarts the 30s", func(t *testing.T, h *cpHarness) {
			ts := fill(h, 8)
			h.advance(20 * time.Second)
			cancel(h, ts[0])
			h.advance(5 * time.Second)
			fill(h, 1) // back at 80%
			h.advance(25 * time.Second)
			if m, _ := mode(h); m != ModeNormal {
				t.Fatalf("mode %s", m)
			}
			h.advance(5 * time.Second)
			if m, _ := mode(h); m != ModeDegraded {
				t.Fatalf("mode %s", m)
			}
		}},
		{"leaves below 60% after 2 minutes, not at 60-80%", func(t *testing.T, h *cpHarness) {
			ts := fill(h, 8)
			h.advance(30 * time.Second)
			cancel(h, ts[0]) // 70%: in the band
			h.advance(5 * time.Minute)
			if m, _ := mode(h); m != ModeDegraded {
				t.Fatalf("left DEGRADED at 70%%: %s", m)
			}
			cancel(h, ts[1]) // 60%: not below
			h.advance(5 * time.Minute)
			if m, _ := mode(h); m != ModeDegraded {
				t.Fatalf("left DEGRADED at 60%%: %s", m)
			}
			cancel(h, ts[2]) // 50%
			h.advance(115 * time.Second)
			if m, _ := mode(h); m != ModeDegraded {
				t.Fatalf("left DEGRADED after 1m55s below 60%%: %s", m)
			}
			h.advance(5 * time.Second)
			if m, by := mode(h); m != ModeNormal || by != ActorSelfProtection {
				t.Fatalf("mode %s by %s after 2m below 60%%", m, by)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newHarness(t, small)) })
	}

	// Self-protection never overrides an operator's mode, in either direction.
	for _, op := range []Mode{ModeReadOnly, ModeDraining, ModeDegraded} {
		t.Run("never overrides operator "+string(op)+" with a full queue", func(t *testing.T) {
			h := newHarness(t, small)
			fill(h, 10)
			if _, err := h.cp.Apply(h.now, SetModeInput{Mode: op}); err != nil {
				t.Fatal(err)
			}
			h.advance(10 * time.Minute)
			if m, by := mode(h); m != op || by != ActorOperator {
				t.Fatalf("mode %s by %s", m, by)
			}
			if _, err := h.cp.Apply(h.now, SetModeInput{Mode: ModeNormal}); err != nil {
				t.Fatal(err)
			}
			if n, err := doPurge(h.cp, h.now, PurgeInput{All: true}); err != nil || n != 10 {
				t.Fatalf("purge %d %v", n, err)
			}
			if _, err := h.cp.Apply(h.now, SetModeInput{Mode: op}); err != nil {
				t.Fatal(err)
			}
			h.advance(10 * time.Minute) // empty queue for long
			if m, by := mode(h); m != op || by != ActorOperator {
				t.Fatalf("empty queue: mode %s by %s", m, by)
			}
		})
	}
}

func TestPurge(t *testing.T) {
	type queued struct {
		domain string
		age    time.Duration
	}
	setup := []queued{{"", 3 * time.Minute}, {"z1", 2 * time.Minute}, {"z2", time.Minute}, {"z1", 0}}
	tests := []struct {
		name    string
		in      PurgeInput
		wantErr string
		purged  []int // indexes into setup
	}{
		{"all", PurgeInput{All: true}, "", []int{0, 1, 2, 3}},
		{"domain", PurgeInput{Domain: "z1"}, "", []int{1, 3}},
		{"older than is inclusive", PurgeInput{OlderThan: 2 * time.Minute}, "", []int{0, 1}},
		{"no filter", PurgeInput{}, "purge needs exactly one filter: all, domain or older_than_seconds", nil},
		{"two filters", PurgeInput{All: true, Domain: "z1"}, "purge needs exactly one filter", nil},
		{"three filters", PurgeInput{All: true, Domain: "z1", OlderThan: time.Second}, "purge needs exactly one filter", nil},
		{"negative age", PurgeInput{OlderThan: -time.Second}, "older_than must be positive", nil},
		{"bad domain", PurgeInput{Domain: "z 1"}, "may hold only letters", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			var ids []TaskID
			start := h.now
			for i := range setup {
				// Enqueue oldest first, so ages come out as listed.
				h.now = start.Add(3*time.Minute - setup[i].age)
				s := sleepSpec()
				s.Domain = setup[i].domain
				ids = append(ids, h.submit(s).ID)
			}
			h.now = start.Add(3 * time.Minute)
			seq := h.cp.Timeline().LastSeq()
			n, err := doPurge(h.cp, h.now, tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if h.cp.QueueDepth() != len(setup) || h.cp.Timeline().LastSeq() != seq {
					t.Fatal("a refused purge changed something")
				}
				return
			}
			if err != nil || n != len(tt.purged) {
				t.Fatalf("purged %d (%v), want %d", n, err, len(tt.purged))
			}
			for i, id := range ids {
				got := h.task(id)
				want := TaskQueued
				if slices.Contains(tt.purged, i) {
					want = TaskCancelled
				}
				if got.State != want {
					t.Errorf("task %d (%s) %v, want %v", i, setup[i].domain, got.State, want)
				}
			}
			if h.cp.QueueDepth() != len(setup)-n {
				t.Fatalf("depth %d", h.cp.QueueDepth())
			}
			var cancelled, purgeEvents int
			for _, e := range h.cp.Timeline().Since(seq, 0) {
				switch e.Type {
				case EventTaskCancelled:
					cancelled++
					if e.Actor != ActorOperator || e.From != "QUEUED" {
						t.Errorf("event %+v", e)
					}
				case EventQueuePurged:
					purgeEvents++
					if e.Count != n {
						t.Errorf("purge event count %d", e.Count)
					}
				}
			}
			if cancelled != n || purgeEvents != 1 {
				t.Fatalf("timeline: %d task.cancelled, %d queue.purged", cancelled, purgeEvents)
			}
		})
	}
}

func TestPurgeLeavesRunningTasks(t *testing.T) {
	h := newHarness(t, nil)
	h.join("z1", 1, "a1")
	running := h.submit(sleepSpec())
	queued := h.submit(sleepSpec())
	if n, err := doPurge(h.cp, h.now, PurgeInput{All: true}); err != nil || n != 1 {
		t.Fatalf("purged %d %v", n, err)
	}
	if h.task(running.ID).State != TaskAssigned || h.task(queued.ID).State != TaskCancelled {
		t.Fatalf("running %v queued %v", h.task(running.ID).State, h.task(queued.ID).State)
	}
}

func TestLeases(t *testing.T) {
	fast := func(c *Config) { c.LeaseGrace = 10 * time.Second }
	spec := TaskSpec{Kind: KindSleep, DurationMS: 1000, TimeoutSeconds: 3600}
	tests := []struct {
		name string
		run  func(t *testing.T, h *cpHarness)
	}{
		{"stale attempt result is ignored and acked", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1")
			task := h.submit(spec)
			// a1 restarts: attempt 1 is lost and requeued onto a2.
			h.inc["a1"] = 2
			h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil; hb.Stopping = true })
			h.join("z1", 1, "a2")
			if got := h.task(task.ID); got.Attempt != 2 || got.AgentID != "a2" {
				t.Fatalf("attempt %d on %s", got.Attempt, got.AgentID)
			}
			// The old attempt's result arrives late.
			rep := h.heartbeat("a1", func(hb *HeartbeatInput) {
				hb.Results = []Result{{TaskID: task.ID, Attempt: 1, Outcome: OutcomeSucceeded}}
			})
			if !slices.Contains(rep.Acked, Lease{TaskID: task.ID, Attempt: 1}) {
				t.Fatalf("stale result not acked: %+v", rep)
			}
			if got := h.task(task.ID); got.State != TaskAssigned || got.Attempt != 2 {
				t.Fatalf("stale result applied: %v attempt %d", got.State, got.Attempt)
			}
			if len(h.events(EventTaskStaleIgnored)) != 1 || h.cp.Stats().StaleIgnored != 1 {
				t.Fatal("stale result not recorded")
			}
		}},
		{"stale assignment ack is ignored", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1")
			task := h.submit(spec)
			if _, err := h.cp.Apply(h.now, AssignAck{AgentID: "a1", TaskID: task.ID, Attempt: 7, Accepted: false}); err != nil {
				t.Fatal(err)
			}
			if got := h.task(task.ID); got.State != TaskAssigned || got.Attempt != 1 {
				t.Fatalf("%v attempt %d", got.State, got.Attempt)
			}
		}},
		{"stuck worker: lease expiry requeues with attempt+1 and counts a failure", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1", "a2")
			s := spec
			s.TimeoutSeconds = 20
			task := h.submit(s)
			first := h.task(task.ID).AgentID
			h.cp.TakeOutbox()
			// The worker keeps reporting the attempt as running, forever.
			h.advance(29*time.Second, "a1", "a2")
			if got := h.task(task.ID); got.Attempt != 1 || got.State != TaskRunning {
				t.Fatalf("before timeout+grace: %v attempt %d", got.State, got.Attempt)
			}
			h.advance(time.Second, "a1", "a2")
			got := h.task(task.ID)
			if got.Attempt != 2 || got.Failures != 1 || got.AgentID == first {
				t.Fatalf("after timeout+grace: attempt %d failures %d on %s (first %s)", got.Attempt, got.Failures, got.AgentID, first)
			}
			cancelled := false
			for _, m := range h.cp.TakeOutbox() {
				if m.Cancel != nil && m.To == first && m.Cancel.TaskID == task.ID && m.Cancel.Attempt == 1 {
					cancelled = true
				}
			}
			if !cancelled || h.cp.Stats().StuckLeases != 1 {
				t.Fatal("stuck attempt not cancelled on its agent")
			}
		}},
		{"stuck on every attempt: DEAD when out of attempts", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1")
			s := spec
			s.MaxAttempts, s.TimeoutSeconds = 2, 20
			task := h.submit(s)
			h.advance(2*time.Minute, "a1")
			if got := h.task(task.ID); got.State != TaskDead || got.Failures != 2 {
				t.Fatalf("%v failures %d (%s)", got.State, got.Failures, got.Reason)
			}
		}},
		{"lost agent's tasks are requeued only after LostAfter", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1")
			task := h.submit(spec)
			h.heartbeat("a1", nil) // confirms the attempt: RUNNING
			// Enough agents that one silent agent is not a zone outage.
			h.join("z1", 1, "a2", "a3", "a4")
			// a1 goes silent at +0: disconnected at +15s, lost at +45s.
			h.advance(40*time.Second, "a2", "a3", "a4")
			if got := h.task(task.ID); got.AgentID != "a1" || got.Attempt != 1 {
				t.Fatalf("requeued before LostAfter: on %s attempt %d", got.AgentID, got.Attempt)
			}
			h.advance(5*time.Second, "a2", "a3", "a4")
			got := h.task(task.ID)
			if got.AgentID == "a1" || got.Attempt != 2 || got.Failures != 0 {
				t.Fatalf("after LostAfter: on %s attempt %d failures %d", got.AgentID, got.Attempt, got.Failures)
			}
			if len(h.events(EventAgentLost)) != 1 {
				t.Fatal("no agent.lost event")
			}
		}},
		{"a short disconnect is not a loss", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1", "a2")
			task := h.submit(spec)
			on := h.task(task.ID).AgentID
			other := AgentID("a1")
			if on == "a1" {
				other = "a2"
			}
			h.advance(10*time.Second, on, other)
			h.advance(25*time.Second, other) // disconnected at +25s, back at +35s
			if v, _ := h.cp.Agent(on); v.Connected {
				t.Fatal("silent agent still connected")
			}
			h.heartbeat(on, func(hb *HeartbeatInput) { hb.Running = []Lease{{task.ID, 1}} })
			if got := h.task(task.ID); got.AgentID != on || got.Attempt != 1 || got.State != TaskRunning {
				t.Fatalf("after reconnect: %v on %s attempt %d", got.State, got.AgentID, got.Attempt)
			}
			h.advance(time.Minute, "a1", "a2")
			if got := h.task(task.ID); got.Attempt != 1 {
				t.Fatalf("requeued after all: attempt %d", got.Attempt)
			}
		}},
		{"agent restart requeues what it no longer runs", func(t *testing.T, h *cpHarness) {
			h.join("z1", 2, "a1")
			kept := h.submit(spec)
			gone := h.submit(spec)
			h.inc["a1"]++
			rep := h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = []Lease{{kept.ID, 1}} })
			if !rep.Registered || len(h.events(EventAgentRestarted)) != 1 {
				t.Fatalf("restart not noticed: %+v", rep)
			}
			if got := h.task(kept.ID); got.Attempt != 1 || got.State != TaskRunning {
				t.Fatalf("kept: %v attempt %d", got.State, got.Attempt)
			}
			if got := h.task(gone.ID); got.Attempt != 2 || got.Failures != 0 {
				t.Fatalf("gone: %v attempt %d failures %d", got.State, got.Attempt, got.Failures)
			}
		}},
		{"unknown tasks reported running are cancelled", func(t *testing.T, h *cpHarness) {
			h.join("z1", 2, "a1")
			task := h.submit(spec)
			rep := h.heartbeat("a1", func(hb *HeartbeatInput) {
				hb.Running = append(hb.Running, Lease{"t-999999", 1}, Lease{task.ID, 5})
			})
			if !slices.Contains(rep.Cancel, Lease{"t-999999", 1}) || !slices.Contains(rep.Cancel, Lease{task.ID, 5}) || len(rep.Cancel) != 2 {
				t.Fatalf("cancel %+v", rep.Cancel)
			}
			if h.cp.Stats().UnknownCancelled != 2 {
				t.Fatalf("counted %d", h.cp.Stats().UnknownCancelled)
			}
		}},
		{"an unconfirmed assignment is requeued after AssignTimeout by a heartbeat without it", func(t *testing.T, h *cpHarness) {
			h.join("z1", 1, "a1")
			task := h.submit(spec)
			h.advance(h.cp.Config().AssignTimeout)
			if got := h.task(task.ID); got.State != TaskAssigned {
				t.Fatalf("silent agent: %v, want ASSIGNED until a heartbeat says or the lease runs out", got.State)
			}
			h.heartbeat("a1", func(hb *HeartbeatInput) { hb.Running = nil })
			if got := h.task(task.ID); got.State != TaskQueued && got.Attempt < 2 || got.Failures != 0 { // requeued (perhaps placed again)
				t.Fatalf("%v attempt %d failures %d", got.State, got.Attempt, got.Failures)
			}
		}},
		{"an unconfirmed assignment to a silent agent waits for the agent's lease", func(t *testing.T, h *cpHarness) {
			// The agent may have taken it with its ack lost: it may run it
			// until its lease runs out, so the cp waits past the lease.
			h.join("z1", 1, "a1")
			task := h.submit(spec)
			cfg := h.cp.Config()
			h.advance(cfg.AgentLease())
			if got := h.task(task.ID); got.State != TaskAssigned || got.Attempt != 1 {
				t.Fatalf("after the lease: %v attempt %d, want still ASSIGNED", got.State, got.Attempt)
			}
			h.advance(cfg.HeartbeatTimeout + cfg.LostAfter - cfg.AgentLease() + cfg.HeartbeatInterval)
			if got := h.task(task.ID); got.State != TaskQueued || got.Failures != 0 {
				t.Fatalf("%v failures %d", got.State, got.Failures)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newHarness(t, fast)) })
	}
}

func TestMassDisconnectPausesRescheduling(t *testing.T) {
	h := newHarness(t, nil)
	ids := []AgentID{"a1", "a2", "a3", "a4", "a5", "a6"}
	h.join("z1", 1, ids[:3]...)
	h.join("z2", 1, ids[3:]...)
	var tasks []Task
	for range 6 {
		tasks = append(tasks, h.submit(TaskSpec{Kind: KindSleep, DurationMS: 1000, TimeoutSeconds: 3600}))
	}
	// The cp is cut off from four of six agents for ten minutes.
	h.advance(10*time.Minute, "a1", "a4")
	if !h.cp.ReschedulingPaused() || !h.cp.DebugView(h.now).ReschedulingPaused || len(h.events(EventSchedulerReschedulingPaused)) != 1 {
		t.Fatal("rescheduling not paused")
	}
	for _, task := range tasks {
		if got := h.task(task.ID); got.Attempt != 1 {
			t.Fatalf("%s rescheduled during a mass disconnect: attempt %d on %s", task.ID, got.Attempt, got.AgentID)
		}
	}
	if h.cp.Stats().Quarantines != 0 {
		t.Fatal("agents quarantined during a mass disconnect")
	}
	h.advance(5*time.Second, ids...)
	if h.cp.ReschedulingPaused() || len(h.events(EventSchedulerReschedulingResumed)) != 1 {
		t.Fatal("rescheduling not resumed")
	}
	for _, task := range tasks {
		if got := h.task(task.ID); got.Attempt != 1 || got.State != TaskRunning {
			t.Fatalf("%s after reconnection: %v attempt %d", task.ID, got.State, got.Attempt)
		}
	}
}

func TestPoisonTaskDoesNotCountAgainstAgents(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Health.SuccessMinVolume = 1 })
	h.join("z1", 1, "a1", "a2", "a3", "a4")
	s := sleepSpec()
	s.MaxAttempts = 5
	task := h.submit(s)
	var failedOn []AgentID
	for range 3 {
		got := h.task(task.ID)
		failedOn = append(failedOn, got.AgentID)
		h.heartbeat(got.AgentID, func(hb *HeartbeatInput) {
			hb.Running = nil
			hb.Results = []Result{{TaskID: task.ID, Attempt: got.Attempt, Outcome: OutcomeFailed, ExitCode: 1}}
		})
	}
	got := h.task(task.ID)
	if got.State != TaskDead || !strings.Contains(got.Reason, "poison") {
		t.Fatalf("%v (%s)", got.State, got.Reason)
	}
	h.advance(10*time.Second, "a1", "a2", "a3", "a4")
	for _, id := range failedOn {
		v, _ := h.cp.Agent(id)
		if v.Health.Success != 1 || v.Quarantined {
			t.Fatalf("%s: success %.2f quarantined %v after a poison task", id, v.Health.Success, v.Quarantined)
		}
	}
	if f := h.cp.DebugView(h.now).DomainFailures["z1"]; f.Volume != 0 {
		t.Fatalf("domain still counts the poison task: %+v", f)
	}
}

func TestQuarantineCountDecaysWhileHealthy(t *testing.T) {
	h := newHarness(t, nil)
	ids := []AgentID{"a1", "a2", "a3", "a4", "a5"}
	h.join("z1", 1, ids...)
	// a1 flaps three times: quarantined.
	for range 3 {
		h.advance(20*time.Second, ids[1:]...)
		h.advance(5*time.Second, ids...)
	}
	v, _ := h.cp.Agent("a1")
	if !v.Quarantined || v.Quarantines != 1 {
		t.Fatalf("a1 quarantined %v n %d", v.Quarantined, v.Quarantines)
	}
	h.advance(2*time.Minute, ids...)
	if v, _ = h.cp.Agent("a1"); v.Quarantined {
		t.Fatalf("a1 not released after a stable back-off: %+v", v)
	}
	h.advance(h.cp.Config().Health.QuarantineDecay, ids...)
	if v, _ = h.cp.Agent("a1"); v.Quarantines != 0 {
		t.Fatalf("quarantine count %d after %v healthy", v.Quarantines, h.cp.Config().Health.QuarantineDecay)
	}
}

// allInputs holds one value of every Input kind.
func allInputs() []Input {
	return []Input{
		SubmitInput{Spec: TaskSpec{Kind: KindExec, Argv: []string{"echo", "hi"}, Domain: "z1", Priority: PriorityHigh, TimeoutSeconds: 9, MaxAttempts: 2}, IdempotencyKey: "k1"},
		HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 2, Address: "http://a1:9090", Incarnation: 3, Seq: 1,
			Running: []Lease{{"t-000001", 1}}, Results: []Result{{TaskID: "t-000009", Attempt: 2, Outcome: OutcomeFailed, ExitCode: 3, Error: "boom", Output: "out", DurationMS: 5}},
			RTTMillis: 12, AllowsExec: true},
		AssignAck{AgentID: "a1", TaskID: "t-000001", Attempt: 1, Accepted: true},
		CancelInput{TaskID: "t-000001", Actor: "bob", Reason: "not needed"},
		SetModeInput{Mode: ModeDraining, Actor: "alice", Reason: "upgrade"},
		PurgeInput{OlderThan: 90 * time.Second, Actor: "alice", Reason: "stale"},
		QuarantineInput{AgentID: "a1", Actor: "alice", Reason: "disk"},
		ReleaseInput{AgentID: "a1", Actor: "alice", Reason: "fixed"},
		TickInput{},
		TakeoverInput{Node: "cp2"},
		StartInput{TaskIDPrefix: "t-1a2b3c-"},
		ConfigInput{Config: DefaultConfig()},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, in := range allInputs() {
		t.Run(in.inputKind(), func(t *testing.T) {
			env := Wrap(testEpoch, in)
			b, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			var back Envelope
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			got, err := back.Unwrap()
			if err != nil {
				t.Fatal(err)
			}
			if !back.At.Equal(testEpoch) || back.Kind != in.inputKind() {
				t.Fatalf("envelope %+v", back)
			}
			if !reflect.DeepEqual(got, in) {
				t.Fatalf("round trip\n got %#v\nwant %#v", got, in)
			}
		})
	}
	for _, bad := range []Envelope{{Kind: "reboot", Body: json.RawMessage(`{}`)}, {Kind: "submit", Body: json.RawMessage(`{"spec":`)},
		{Kind: "submit", Body: json.RawMessage(`{"spec":{"priority":"urgent"}}`)}} {
		if _, err := bad.Unwrap(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Unwrap(%s %s) = %v, want ErrInvalid", bad.Kind, bad.Body, err)
		}
	}
}

// TestApplyReplaysExactly: a run logged as envelopes and replayed through
// Apply on a fresh control plane produces the same timeline and snapshot.
func TestApplyReplaysExactly(t *testing.T) {
	var log []Envelope
	at := testEpoch
	feed := func(cp *ControlPlane, in Input) {
		log = append(log, Wrap(at, in))
		if _, err := cp.Apply(at, in); err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("apply %s: %v", in.inputKind(), err)
		}
	}
	cp1, _ := NewControlPlane(DefaultConfig(), testEpoch)
	feed(cp1, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 2, Incarnation: 1, Seq: 1, AllowsExec: true})
	feed(cp1, HeartbeatInput{AgentID: "a2", Domain: "z2", Slots: 1, Incarnation: 1, Seq: 1})
	for i := range 4 {
		feed(cp1, SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: int64(i), Priority: Priority(i % 3)}})
	}
	at = at.Add(time.Second)
	feed(cp1, &AssignAck{AgentID: "a1", TaskID: "t-000001", Attempt: 1, Accepted: true})
	feed(cp1, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 2, Incarnation: 1, Seq: 2, AllowsExec: true,
		Running: []Lease{{"t-000002", 1}}, Results: []Result{{TaskID: "t-000001", Attempt: 1, Outcome: OutcomeSucceeded}}})
	feed(cp1, CancelInput{TaskID: "t-000004"})
	feed(cp1, QuarantineInput{AgentID: "a2"})
	feed(cp1, ReleaseInput{AgentID: "a2"})
	feed(cp1, PurgeInput{All: true})
	feed(cp1, SetModeInput{Mode: ModeReadOnly})
	for range 20 {
		at = at.Add(5 * time.Second)
		feed(cp1, TickInput{})
	}
	feed(cp1, &TickInput{})

	b, err := json.Marshal(log)
	if err != nil {
		t.Fatal(err)
	}
	var replay []Envelope
	if err := json.Unmarshal(b, &replay); err != nil {
		t.Fatal(err)
	}
	cp2, _ := NewControlPlane(DefaultConfig(), testEpoch)
	for _, env := range replay {
		in, err := env.Unwrap()
		if err != nil {
			t.Fatal(err)
		}
		cp2.Apply(env.At, in)
	}
	e1, _ := json.Marshal(cp1.Timeline().Since(0, 0))
	e2, _ := json.Marshal(cp2.Timeline().Since(0, 0))
	if string(e1) != string(e2) {
		t.Fatalf("replayed timeline differs:\n%s\n%s", e1, e2)
	}
	s1, _ := json.Marshal(cp1.DebugView(at))
	s2, _ := json.Marshal(cp2.DebugView(at))
	if string(s1) != string(s2) {
		t.Fatalf("replayed snapshot differs:\n%s\n%s", s1, s2)
	}
	if _, err := cp2.Apply(at, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Apply(nil) = %v", err)
	}
}

// TestIDHeapKeepsTheSmallest: offered distinct ids in any order, an idHeap
// of limit k keeps exactly the k smallest.
func TestIDHeapKeepsTheSmallest(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ids := rapid.SliceOfNDistinct(rapid.StringMatching(`t-[0-9]{1,4}`), 0, 200, rapid.ID[string]).Draw(t, "ids")
		k := rapid.IntRange(1, 50).Draw(t, "limit")
		var h idHeap
		for _, id := range ids {
			h.keep(TaskID(id), k)
		}
		got := slices.Clone(h.ids)
		slices.Sort(got)
		want := make([]TaskID, len(ids))
		for i, id := range ids {
			want[i] = TaskID(id)
		}
		slices.Sort(want)
		want = want[:min(k, len(want))]
		if !slices.Equal(got, want) {
			t.Fatalf("kept %v, want %v", got, want)
		}
	})
}
