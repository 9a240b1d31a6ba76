package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// Shorthands for tests that want one kind's result: each goes through Apply,
// the only way to change a ControlPlane, like every driver.

func doSubmit(cp *ControlPlane, now time.Time, in SubmitInput) (Task, bool, error) {
	r, err := cp.Apply(now, in)
	return r.Task, r.Replayed, err
}

func doHeartbeat(cp *ControlPlane, now time.Time, hb HeartbeatInput) (HeartbeatReply, error) {
	r, err := cp.Apply(now, hb)
	return r.Heartbeat, err
}

func doCancel(cp *ControlPlane, now time.Time, in CancelInput) (Task, error) {
	r, err := cp.Apply(now, in)
	return r.Task, err
}

func doPurge(cp *ControlPlane, now time.Time, in PurgeInput) (int, error) {
	r, err := cp.Apply(now, in)
	return r.Purged, err
}

// inputGens draws every kind of input, keyed by kind, over a small
// vocabulary of agents, domains and task ids so that inputs meet each other
// (a heartbeat reports a task a submit created, a cancel finds it).
func inputGens() map[string]*rapid.Generator[Input] {
	agent := rapid.SampledFrom([]AgentID{"a1", "a2", "a3"})
	domain := rapid.SampledFrom([]string{"", "z1", "z2"})
	taskID := rapid.Custom(func(t *rapid.T) TaskID {
		return TaskID(fmt.Sprintf("t-%06d", rapid.IntRange(1, 12).Draw(t, "task")))
	})
	text := rapid.OneOf(rapid.Just(""), rapid.StringN(0, 12, 40))
	actor := rapid.SampledFrom([]string{"", ActorOperator, "alice"})
	lease := rapid.Custom(func(t *rapid.T) Lease {
		return Lease{TaskID: taskID.Draw(t, "task"), Attempt: rapid.IntRange(0, 3).Draw(t, "attempt")}
	})
	// Empty omitempty slices are nil: JSON cannot tell nil from empty there.
	orNil := func(n int) bool { return n == 0 }
	gen := func(f func(t *rapid.T) Input) *rapid.Generator[Input] { return rapid.Custom(f) }
	return map[string]*rapid.Generator[Input]{
		"submit": gen(func(t *rapid.T) Input {
			spec := TaskSpec{Kind: rapid.SampledFrom([]string{KindSleep, KindSleep, KindSleep, KindExec, "nope"}).Draw(t, "kind"),
				DurationMS: rapid.Int64Range(0, 60_000).Draw(t, "ms"), Domain: domain.Draw(t, "domain"),
				Priority:       Priority(rapid.IntRange(0, numPriorities-1).Draw(t, "prio")),
				TimeoutSeconds: rapid.IntRange(0, 120).Draw(t, "timeout"), MaxAttempts: rapid.IntRange(0, 4).Draw(t, "attempts")}
			if argv := rapid.SliceOfN(rapid.StringN(1, 8, 20), 0, 3).Draw(t, "argv"); !orNil(len(argv)) {
				spec.Argv = argv
			}
			key := rapid.SampledFrom([]string{"", "k1", "k2"}).Draw(t, "key")
			if key != "" && rapid.Bool().Draw(t, "retry") {
				spec = TaskSpec{Kind: KindSleep, Domain: "z1"} // a client's retry: same key, same spec
			}
			return SubmitInput{Spec: spec, IdempotencyKey: key}
		}),
		"cancel": gen(func(t *rapid.T) Input {
			return CancelInput{TaskID: taskID.Draw(t, "task"), Actor: actor.Draw(t, "actor"), Reason: text.Draw(t, "reason")}
		}),
		"heartbeat": gen(func(t *rapid.T) Input {
			hb := HeartbeatInput{AgentID: agent.Draw(t, "agent"), Domain: rapid.SampledFrom([]string{"z1", "z2"}).Draw(t, "domain"),
				Slots: rapid.IntRange(0, 3).Draw(t, "slots"), Address: rapid.SampledFrom([]string{"", "http://a:9090"}).Draw(t, "addr"),
				Incarnation: rapid.Uint64Range(1, 2).Draw(t, "inc"), Seq: rapid.Uint64Range(0, 20).Draw(t, "seq"),
				Running:   rapid.SliceOfN(lease, -1, 3).Draw(t, "running"),
				RTTMillis: rapid.Int64Range(0, 500).Draw(t, "rtt"), Stopping: rapid.Bool().Draw(t, "stopping"),
				AllowsExec: rapid.Bool().Draw(t, "exec"), HeartbeatIntervalMillis: rapid.Int64Range(0, 10_000).Draw(t, "interval")}
			if rapid.Bool().Draw(t, "nil running") {
				hb.Running = nil // "running": null
			}
			results := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Result {
				l := lease.Draw(t, "lease")
				return Result{TaskID: l.TaskID, Attempt: l.Attempt,
					Outcome:  rapid.SampledFrom([]Outcome{OutcomeSucceeded, OutcomeFailed, OutcomeTimeout, OutcomeCancelled, OutcomeRejected, "bogus"}).Draw(t, "outcome"),
					ExitCode: rapid.IntRange(-1, 2).Draw(t, "exit"), Error: text.Draw(t, "error"), Output: text.Draw(t, "output"),
					DurationMS: rapid.Int64Range(0, 10_000).Draw(t, "ms")}
			}), 0, 2).Draw(t, "results")
			if !orNil(len(results)) {
				hb.Results = results
			}
			return hb
		}),
		"assign_ack": gen(func(t *rapid.T) Input {
			return AssignAck{AgentID: agent.Draw(t, "agent"), TaskID: taskID.Draw(t, "task"), Attempt: rapid.IntRange(0, 3).Draw(t, "attempt"),
				Accepted: rapid.Bool().Draw(t, "accepted"), Reason: text.Draw(t, "reason"), Retryable: rapid.Bool().Draw(t, "retryable")}
		}),
		"set_mode": gen(func(t *rapid.T) Input {
			return SetModeInput{Mode: rapid.SampledFrom([]Mode{ModeNormal, ModeDegraded, ModeDraining, ModeReadOnly, "draining"}).Draw(t, "mode"),
				Actor: rapid.SampledFrom([]string{"", ActorOperator, ActorSelfProtection}).Draw(t, "actor"), Reason: text.Draw(t, "reason")}
		}),
		"purge": gen(func(t *rapid.T) Input {
			return PurgeInput{All: rapid.Bool().Draw(t, "all"), Domain: domain.Draw(t, "domain"),
				OlderThan: time.Duration(rapid.Int64Range(-1, 3).Draw(t, "older")) * 10 * time.Second,
				Actor:     actor.Draw(t, "actor"), Reason: text.Draw(t, "reason")}
		}),
		"quarantine": gen(func(t *rapid.T) Input {
			return QuarantineInput{AgentID: agent.Draw(t, "agent"), Actor: actor.Draw(t, "actor"), Reason: text.Draw(t, "reason")}
		}),
		"release": gen(func(t *rapid.T) Input {
			return ReleaseInput{AgentID: agent.Draw(t, "agent"), Actor: actor.Draw(t, "actor"), Reason: text.Draw(t, "reason")}
		}),
		"tick": rapid.Just[Input](TickInput{}),
		"config": gen(func(t *rapid.T) Input {
			return ConfigInput{Config: drawConfig(t)}
		}),
		"takeover": gen(func(t *rapid.T) Input {
			return TakeoverInput{Node: rapid.SampledFrom([]string{"cp1", "cp2", "", "a b"}).Draw(t, "node")}
		}),
		"start": gen(func(t *rapid.T) Input {
			return StartInput{TaskIDPrefix: rapid.SampledFrom([]string{"t-", "r1-t-", "t-1a2b3c-", "", "t/"}).Draw(t, "prefix")}
		}),
	}
}

// TestApplyJSONRoundTripProperty: for every kind of input, Wrap, JSON and
// Unwrap give back an equal input, and applying the decoded input to a twin
// control plane gives the same result, error, outbox, timeline and state as
// applying the typed one. So the simulator may apply typed inputs while a
// log carries their JSON.
func TestApplyJSONRoundTripProperty(t *testing.T) {
	gens := inputGens()
	var kinds []string
	for _, in := range allInputs() {
		kinds = append(kinds, in.inputKind())
	}
	if got := slices.Sorted(maps.Keys(gens)); !slices.Equal(got, slices.Sorted(slices.Values(kinds))) {
		t.Fatalf("generators for %v, inputs are %v: every kind needs a generator", got, kinds)
	}
	// Every kind, with submissions, heartbeats and ticks drawn more often so
	// that tasks get placed, run and end.
	keys := slices.Sorted(maps.Keys(gens))
	keys = append(keys, "submit", "submit", "submit", "heartbeat", "heartbeat", "heartbeat", "tick", "tick")
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.QueueCapacity, cfg.TasksMax = 8, 10
		typed, _ := NewControlPlane(cfg, testEpoch)
		decoded, _ := NewControlPlane(cfg, testEpoch)
		at := testEpoch
		for range rapid.IntRange(20, 150).Draw(t, "inputs") {
			at = at.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "seconds")) * time.Second)
			kind := rapid.SampledFrom(keys).Draw(t, "kind")
			in := gens[kind].Draw(t, kind)
			b, err := json.Marshal(Wrap(at, in))
			if err != nil {
				t.Fatal(err)
			}
			var env Envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			back, err := env.Unwrap()
			if err != nil {
				t.Fatalf("unwrap %s: %v", b, err)
			}
			if !reflect.DeepEqual(back, in) || env.Kind != kind || !env.At.Equal(at) {
				t.Fatalf("round trip of %s\n got %#v at %v\nwant %#v at %v", b, back, env.At, in, at)
			}
			r1, err1 := typed.Apply(at, in)
			r2, err2 := decoded.Apply(env.At, back)
			if fmt.Sprint(err1) != fmt.Sprint(err2) || !sameJSON(r1, r2) {
				t.Fatalf("%s: typed gave %+v, %v; decoded gave %+v, %v", kind, r1, err1, r2, err2)
			}
			if o1, o2 := typed.TakeOutbox(), decoded.TakeOutbox(); !sameJSON(o1, o2) {
				t.Fatalf("%s: outboxes differ:\n%+v\n%+v", kind, o1, o2)
			}
		}
		if !sameJSON(typed.Timeline().Since(0, 0), decoded.Timeline().Since(0, 0)) {
			t.Fatal("timelines differ")
		}
		if !sameJSON(typed.DebugView(at), decoded.DebugView(at)) || !reflect.DeepEqual(typed.Stats(), decoded.Stats()) ||
			typed.Config() != decoded.Config() {
			t.Fatal("states differ")
		}
	})
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// TestStartInputPrefix: a start's task id prefix is an input. Ids submitted
// after it carry it (the counter goes on), a bad prefix is refused and
// changes nothing, and a replay of the inputs gives the same ids.
func TestStartInputPrefix(t *testing.T) {
	run := func(cp *ControlPlane, ins []Input) []TaskID {
		var ids []TaskID
		for _, in := range ins {
			r, err := cp.Apply(testEpoch, in)
			if s, ok := in.(StartInput); ok && s.TaskIDPrefix == "t/" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("StartInput %+v: %v, want ErrInvalid", in, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%+v: %v", in, err)
			}
			if r.Task.ID != "" {
				ids = append(ids, r.Task.ID)
			}
		}
		return ids
	}
	sub := SubmitInput{Spec: TaskSpec{Kind: KindSleep}}
	ins := []Input{sub, StartInput{TaskIDPrefix: "t-1a2b3c-"}, sub, StartInput{TaskIDPrefix: "t/"}, sub}
	cp, _ := NewControlPlane(DefaultConfig(), testEpoch)
	got := run(cp, ins)
	want := []TaskID{"t-000001", "t-1a2b3c-000002", "t-1a2b3c-000003"}
	if !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	if p := cp.Config().TaskIDPrefix; p != "t-1a2b3c-" {
		t.Fatalf("Config().TaskIDPrefix = %q after the starts", p)
	}
	var log []Envelope
	for _, in := range ins {
		log = append(log, Wrap(testEpoch, in))
	}
	var replay []Input
	for _, e := range log {
		in, err := e.Unwrap()
		if err != nil {
			t.Fatal(err)
		}
		replay = append(replay, in)
	}
	cp2, _ := NewControlPlane(DefaultConfig(), testEpoch)
	if again := run(cp2, replay); !slices.Equal(again, want) {
		t.Fatalf("replayed ids %v, want %v", again, want)
	}
}

// TestApplyResultKinds: each kind's result lands in its own field, and an
// input core does not know (nil, a nil pointer) is refused.
func TestApplyResultKinds(t *testing.T) {
	cp, _ := NewControlPlane(DefaultConfig(), testEpoch)
	r, err := cp.Apply(testEpoch, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1})
	if err != nil || !r.Heartbeat.Registered || r.Task.ID != "" {
		t.Fatalf("heartbeat: %+v, %v", r, err)
	}
	in := SubmitInput{Spec: TaskSpec{Kind: KindSleep}, IdempotencyKey: "k"}
	first, err := cp.Apply(testEpoch, in)
	if err != nil || first.Replayed || first.Task.ID != "t-000001" {
		t.Fatalf("submit: %+v, %v", first, err)
	}
	again, err := cp.Apply(testEpoch, &in) // a pointer is taken as its value
	if err != nil || !again.Replayed || again.Task.ID != first.Task.ID {
		t.Fatalf("idempotent resubmit: %+v, %v", again, err)
	}
	if r, err := cp.Apply(testEpoch, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); err != nil || r.Task.ID != "t-000002" {
		t.Fatalf("second submit: %+v, %v", r, err)
	}
	if r, err := cp.Apply(testEpoch, PurgeInput{All: true}); err != nil || r.Purged != 1 {
		t.Fatalf("purge: %+v, %v", r, err) // t-000001 runs on a1, t-000002 waits
	}
	if r, err := cp.Apply(testEpoch, CancelInput{TaskID: "t-000002"}); !errors.Is(err, ErrConflict) || r.Task.State != TaskCancelled {
		t.Fatalf("cancel of a purged task: %+v, %v", r, err)
	}
	if _, err := cp.Apply(testEpoch, SetModeInput{Mode: ModeDegraded, Actor: ActorSelfProtection}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetMode as self-protection: %v, want ErrInvalid", err)
	}
	for _, bad := range []Input{nil, (*TickInput)(nil), (*SubmitInput)(nil)} {
		if _, err := cp.Apply(testEpoch, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Apply(%#v) = %v, want ErrInvalid", bad, err)
		}
	}
}
