package core

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestStateV1LayoutFrozen: the frozen version 1 types still have the
// layout version 1 exports carry (the codec writes no type names, so the
// types are compared under their version 1 names).
func TestStateV1LayoutFrozen(t *testing.T) {
	l := stateLayout(reflect.TypeFor[stateV1]())
	l = strings.NewReplacer("timelineExportV1{", "timelineExport{", "eventV1{", "Event{", "modeStateV1{", "modeState{",
		"agentExportV1{", "agentExport{", "outboundV1{", "Outbound{", "assignV1{", "Assign{", "taskExportV1{", "taskExport{").Replace(l)
	sum := sha256.Sum256([]byte(l))
	if got := hex.EncodeToString(sum[:8]); got != stateV1Fingerprint {
		t.Fatalf("the frozen version 1 types have layout %s, version 1 exports %s: they must not change", got, stateV1Fingerprint)
	}
}

// TestRestoreV1Export: an export written by a version 1 core
// (testdata/state-v1.bin: an agent quarantined and the mode set to
// DRAINING by an operator) restores, with no token named, and exports
// again as version 2 that restores to the same state.
func TestRestoreV1Export(t *testing.T) {
	data, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if v, layout, err := ExportHeader(data); err != nil || v != 1 || !CanRestore(v, layout) {
		t.Fatalf("header: version %d layout %s err %v", v, layout, err)
	}
	cp, err := Restore(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	mode, by, reason := cp.Mode()
	if mode != ModeDraining || by != ActorOperator || reason != "maintenance" {
		t.Fatalf("mode %s set by %s: %s", mode, by, reason)
	}
	dv := cp.DebugView(time.Time{})
	if dv.ModeSetByName != "" || dv.InFlight != 2 || dv.Agents.Quarantined != 1 || dv.TimelineSeq != 9 {
		t.Fatalf("debug view: %+v", dv)
	}
	events := cp.Timeline().Since(0, 0)
	if len(events) == 0 || events[len(events)-1].Type != EventModeChanged {
		t.Fatalf("timeline: %+v", events)
	}
	for _, e := range events {
		if e.By != "" {
			t.Fatalf("a version 1 event names a token: %+v", e)
		}
	}
	v2, err := cp.Export()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Restore(v2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.StateHash() != cp.StateHash() {
		t.Fatal("the version 2 export of a restored version 1 state restores to another state")
	}
	if _, err := RestoreWithConfig(data, nil, func(*Config) error { return nil }); err != nil {
		t.Fatalf("RestoreWithConfig of a version 1 export: %v", err)
	}
}

// TestByNamesTheToken: an operator's or client's input with By records it
// on the events of its actor and, for a mode change, in the mode; other
// events (and inputs without By) name no token.
func TestByNamesTheToken(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cp, err := NewControlPlane(DefaultConfig(), now)
	if err != nil {
		t.Fatal(err)
	}
	apply := func(in Input) ApplyResult {
		t.Helper()
		now = now.Add(time.Second)
		r, err := cp.Apply(now, in)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	apply(HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: 1})
	seq := cp.Timeline().LastSeq()
	task := apply(SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 5}, By: "bob"}).Task
	apply(&CancelInput{TaskID: task.ID, By: "bob"})
	apply(QuarantineInput{AgentID: "a1", By: "alice"})
	apply(ReleaseInput{AgentID: "a1", By: "alice"})
	apply(PurgeInput{All: true, By: "alice"})
	apply(SetModeInput{Mode: ModeReadOnly, By: "alice", Reason: "upgrade"})
	want := map[EventType]string{EventTaskQueued: "bob", EventTaskCancelled: "bob", EventAgentQuarantined: "alice",
		EventAgentReleased: "alice", EventQueuePurged: "alice", EventModeChanged: "alice"}
	for _, e := range cp.Timeline().Since(seq, 0) {
		if e.By != want[e.Type] {
			t.Errorf("%s (actor %s) by %q, want %q", e.Type, e.Actor, e.By, want[e.Type])
		}
	}
	if dv := cp.DebugView(now); dv.ModeSetBy != ActorOperator || dv.ModeSetByName != "alice" {
		t.Fatalf("mode set by %s / %s", dv.ModeSetBy, dv.ModeSetByName)
	}
	seq = cp.Timeline().LastSeq()
	apply(SetModeInput{Mode: ModeNormal})
	apply(TickInput{})
	for _, e := range cp.Timeline().Since(seq, 0) {
		if e.By != "" {
			t.Errorf("%s names %q after the named input", e.Type, e.By)
		}
	}
	if dv := cp.DebugView(now); dv.ModeSetByName != "" {
		t.Fatalf("mode set without a token still names %q", dv.ModeSetByName)
	}
}
