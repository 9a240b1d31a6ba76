package core

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestReconcileCaches drives two control planes with the same random
// heartbeats (stopping, resized, silent), submissions, operator
// quarantines, config changes, takeovers and ticks: one keeps the
// reconcile pass's caches (connCheckAt, usable slots), the other drops them
// before every tick and so scans as the pass did without them. Their
// exported states and timelines must stay identical, and the caches sound
// (checkCaches) after every step.
func TestReconcileCaches(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.ForgetAgentAfter = time.Duration(rapid.IntRange(20, 120).Draw(t, "forgetSeconds")) * time.Second
		cached, err := NewControlPlane(cfg, testEpoch)
		if err != nil {
			t.Fatal(err)
		}
		scan, _ := NewControlPlane(cfg, testEpoch)
		now := testEpoch
		apply := func(in Input) {
			if _, ok := in.(TickInput); ok {
				scan.agentsChanged()
			}
			_, err1 := cached.Apply(now, in)
			_, err2 := scan.Apply(now, in)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("%T: errors differ: %v, %v", in, err1, err2)
			}
			cached.TakeOutbox()
			scan.TakeOutbox()
		}
		seq := map[AgentID]uint64{}
		ids := []AgentID{"a0", "a1", "a2", "a3"}
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0, 1, 2:
				id := rapid.SampledFrom(ids).Draw(t, "agent")
				seq[id]++
				apply(HeartbeatInput{AgentID: id, Domain: fmt.Sprintf("z%d", id[1]%2), Slots: rapid.IntRange(1, 3).Draw(t, "slots"),
					Incarnation: 1, Seq: seq[id], Stopping: rapid.IntRange(0, 4).Draw(t, "stopping") == 0})
			case 3:
				apply(SubmitInput{Spec: TaskSpec{Kind: KindSleep, DurationMS: 1000, TimeoutSeconds: 5, MaxAttempts: 2}})
			case 4:
				id := rapid.SampledFrom(ids).Draw(t, "agent")
				if rapid.Bool().Draw(t, "release") {
					apply(ReleaseInput{AgentID: id})
				} else {
					apply(QuarantineInput{AgentID: id})
				}
			case 5:
				c := cached.Config()
				c.HeartbeatTimeout = time.Duration(rapid.IntRange(6, 30).Draw(t, "timeoutSeconds")) * time.Second
				apply(ConfigInput{Config: c})
			case 6:
				apply(TakeoverInput{Node: "n2"})
			default:
				for range rapid.IntRange(1, 40).Draw(t, "ticks") {
					now = now.Add(time.Second)
					apply(TickInput{})
				}
			}
			if err := cached.checkCaches(); err != nil {
				t.Fatal(err)
			}
			a, err1 := cached.Export()
			b, err2 := scan.Export()
			if err1 != nil || err2 != nil {
				t.Fatalf("export: %v, %v", err1, err2)
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("states differ at %v:\ncached %s\n  scan %s", now.Sub(testEpoch), a, b)
			}
			if x, y := cached.Timeline().LastSeq(), scan.Timeline().LastSeq(); x != y {
				t.Fatalf("timelines differ: %d events, %d", x, y)
			}
		}
	})
}
