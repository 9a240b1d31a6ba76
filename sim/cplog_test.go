package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// crashOptions is busyOptions with the cp killed three times (with
// submissions in flight) and restarted once by an operator.
func crashOptions(seed uint64, every int) Options {
	o := busyOptions(seed)
	o.Name = "crash"
	o.SnapshotEveryEntries = every
	o.Faults = append(o.Faults,
		Fault{Kind: FaultCPCrash, At: 45*time.Second + 317*time.Millisecond, Until: 52 * time.Second, InFlight: 3},
		Fault{Kind: FaultCPCrash, At: 101*time.Second + 3*time.Millisecond, Until: 104 * time.Second, InFlight: 3}, // in READ_ONLY
		Fault{Kind: FaultCPRestart, At: 140 * time.Second},
		Fault{Kind: FaultCPCrash, At: 170*time.Second + 999*time.Millisecond, Until: 200 * time.Second, InFlight: 3}, // past the heartbeat timeout
	)
	return o
}

// TestCPCrashRecoversFromLog: every crash and restart recovers the state the
// process died in (the run checks the state_hash), with the snapshot taken
// at any interval: the snapshot only shortens the replay. While the cp is
// down, submissions find no process and heartbeats fail.
func TestCPCrashRecoversFromLog(t *testing.T) {
	var first Result
	for _, every := range []int{1, 37, DefaultSnapshotEveryEntries, 1 << 30} {
		res, err := Run(crashOptions(3, every))
		if err != nil {
			t.Fatalf("every %d: %v", every, err)
		}
		if len(res.Recoveries) != 4 || res.CPGenerations != 5 || res.Lost != 0 || res.NonTerminal != 0 || !res.LivenessChecked {
			t.Fatalf("every %d: %d recoveries, %d generations, lost %d, unfinished %d, liveness %v",
				every, len(res.Recoveries), res.CPGenerations, res.Lost, res.NonTerminal, res.LivenessChecked)
		}
		for _, r := range res.Recoveries {
			if r.SnapshotIndex+uint64(r.Replayed) != r.AppliedIndex || every == 1 && r.Replayed != 0 {
				t.Fatalf("every %d: recovery %+v", every, r)
			}
		}
		if res.Unavailable == 0 || res.InFlightCommitted+res.InFlightLost != 9 {
			t.Fatalf("every %d: %d unavailable, in flight %d committed %d lost", every, res.Unavailable, res.InFlightCommitted, res.InFlightLost)
		}
		if first.Recoveries == nil {
			first = res
			continue
		}
		for i, r := range res.Recoveries {
			if r.StateHash != first.Recoveries[i].StateHash || r.AppliedIndex != first.Recoveries[i].AppliedIndex {
				t.Fatalf("every %d: recovery %d reached %s at %d, every %d reached %s at %d", every, i, r.StateHash, r.AppliedIndex,
					1, first.Recoveries[i].StateHash, first.Recoveries[i].AppliedIndex)
			}
		}
		if res.Final.QueueDepth != first.Final.QueueDepth || res.Succeeded != first.Succeeded || res.Submitted != first.Submitted {
			t.Fatalf("every %d: the snapshot interval changed the run", every)
		}
	}
	if first.Snapshots < 100 {
		t.Fatalf("snapshot every entry took %d snapshots", first.Snapshots)
	}
}

// TestCPCrashAckedKeysReplay: a keyed submission committed in flight is
// retried after the crash and answered as a replay of the task the client
// never heard of; across seeds both fates occur.
func TestCPCrashAckedKeysReplay(t *testing.T) {
	committed, lost := 0, 0
	for seed := uint64(1); seed <= 6; seed++ {
		o := crashOptions(seed, 50)
		o.Workload[0].IdempotentFraction = 1
		o.Workload[0].ConflictFraction = 0
		res, err := Run(o)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		committed += res.InFlightCommitted
		lost += res.InFlightLost
	}
	if committed == 0 || lost == 0 {
		t.Fatalf("in flight: %d committed, %d lost over 6 seeds", committed, lost)
	}
}

// TestRecoveryChecksTheState: a recovery that does not reach the dead
// process's state (here: the log lost its last committed entry) stops the
// run with the durability invariant.
func TestRecoveryChecksTheState(t *testing.T) {
	o := crashOptions(1, 200)
	s, err := newSim(o)
	if err != nil {
		t.Fatal(err)
	}
	for s.q.len() > 0 && s.res.Violation == nil {
		if s.q.peek().kind == evCPRecover && len(s.log.entries) > 0 {
			s.log.entries = s.log.entries[:len(s.log.entries)-1]
		}
		e := s.q.pop()
		s.now, s.t = e.at, epoch.Add(e.at)
		s.handle(e)
	}
	var v *Violation
	if !errors.As(s.res.Violation, &v) || v.Invariant != InvDurable || !strings.Contains(v.Detail, "state_hash") {
		t.Fatalf("violation %v, want %s", s.res.Violation, InvDurable)
	}
}

// TestCPDownRefusesEverything: while the cp is down no input reaches it: the
// applied index does not move, ticks do not run, and an operator's actions
// wait for the process and then take effect in the order they were meant
// (a swarm run once ended READ_ONLY: the NORMAL got in first).
func TestCPDownRefusesEverything(t *testing.T) {
	o := DefaultOptions()
	o.Duration = 3 * time.Minute
	o.Workload = []Workload{{Name: "w", End: 2 * time.Minute, RatePerSecond: 2, DurationMin: time.Second, DurationMax: 3 * time.Second}}
	o.Faults = []Fault{{Kind: FaultCPCrash, At: time.Minute, Until: 70 * time.Second}}
	o.Ops = []OperatorAction{{At: 65 * time.Second, SetMode: core.ModeReadOnly, Reason: "during the crash"},
		{At: 68*time.Second + 500*time.Millisecond, SetMode: core.ModeNormal}}
	s, err := newSim(o)
	if err != nil {
		t.Fatal(err)
	}
	var index uint64
	for s.q.len() > 0 && s.res.Violation == nil && s.q.peek().at <= o.Duration {
		e := s.q.pop()
		s.now, s.t = e.at, epoch.Add(e.at)
		s.handle(e)
		switch {
		case s.now == time.Minute && s.down != nil:
			index = s.log.index
		case s.now > time.Minute && s.now < 70*time.Second && s.log.index != index:
			t.Fatalf("applied index moved from %d to %d at %v while the cp was down", index, s.log.index, s.now)
		}
	}
	if s.res.Violation != nil || s.res.Unavailable == 0 || len(s.res.Recoveries) != 1 {
		t.Fatalf("violation %v, unavailable %d, recoveries %d", s.res.Violation, s.res.Unavailable, len(s.res.Recoveries))
	}
	var modes []string
	for _, e := range s.res.Events {
		if e.Type == core.EventModeChanged {
			modes = append(modes, fmt.Sprintf("%v %s", e.Time.Sub(epoch), e.To))
		}
	}
	if want := []string{"0s NORMAL", "1m10s READ_ONLY", "1m10s NORMAL"}; !slices.Equal(modes, want) {
		t.Fatalf("mode changes %q, want %q (the operator's, in order, once the cp is back at 70s)", modes, want)
	}
}
