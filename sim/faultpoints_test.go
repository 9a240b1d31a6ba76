package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

func faultPointOptions(seed uint64, rate float64) Options {
	o := DefaultOptions()
	o.Name, o.Seed, o.Duration = "fault-points", seed, 20*time.Minute
	o.Agents, o.Zones = 6, 2
	o.Workload = []Workload{{Name: "w", End: 3 * time.Minute, RatePerSecond: 0.5, Burst: 10,
		DurationMin: time.Second, DurationMax: 8 * time.Second, TimeoutSeconds: 10, MaxAttempts: 3, HangFraction: 0.2}}
	o.FaultPoints = map[core.FaultPoint]float64{}
	for _, p := range FaultPointNames() {
		o.FaultPoints[p] = rate
	}
	return o
}

// TestFaultPointsFireAndHold: with every fault point on, each fires, the
// cp's lease expiry really happens (wedged agents never time out their hung
// work), and no invariant breaks; the same options give the same trace.
func TestFaultPointsFireAndHold(t *testing.T) {
	o := faultPointOptions(3, 0.2)
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range FaultPointNames() {
		if res.FaultPointsFired[p] == 0 {
			t.Errorf("fault point %s never fired (%v)", p, res.FaultPointsFired)
		}
	}
	if res.Stats.StuckLeases == 0 {
		t.Errorf("no lease expired at the cp (stats %+v)", res.Stats)
	}
	if !res.LivenessChecked || res.Lost != 0 || res.NonTerminal != 0 {
		t.Errorf("liveness checked %v, lost %d, unfinished %d", res.LivenessChecked, res.Lost, res.NonTerminal)
	}
	again, _ := Run(o)
	if again.TraceHash != res.TraceHash {
		t.Error("same options, different trace")
	}
}

// TestFaultPointsOffLeaveTraceAlone: zero probabilities (the map set but
// nothing on) draw nothing and fire nothing: the trace equals a run
// without fault points.
func TestFaultPointsOffLeaveTraceAlone(t *testing.T) {
	o := faultPointOptions(5, 0)
	with, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	o.FaultPoints = nil
	without, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if with.TraceHash != without.TraceHash || len(with.FaultPointsFired) != 0 {
		t.Fatalf("trace %s vs %s, fired %v", with.TraceHash, without.TraceHash, with.FaultPointsFired)
	}
}

func TestFaultPointsValidated(t *testing.T) {
	for _, fp := range []map[core.FaultPoint]float64{{"nope": 0.1}, {FaultAckDelayed: 1.5}, {core.FaultAgentWedged: -0.1}} {
		o := faultPointOptions(1, 0)
		o.FaultPoints = fp
		if _, err := Run(o); !errors.Is(err, ErrOptions) {
			t.Errorf("%v: err %v, want ErrOptions", fp, err)
		}
	}
}

// TestWorkloadFirstArrivalWithinEnd: the first Poisson arrival, like every
// later one, falls before the workload's End (it used to be scheduled
// unconditionally, so a slow workload could submit after End, where the
// liveness check could no longer reach the task).
func TestWorkloadFirstArrivalWithinEnd(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		o := DefaultOptions()
		o.Seed, o.Duration = seed, 5*time.Minute
		o.Workload = []Workload{{Name: "slow", End: 10 * time.Second, RatePerSecond: 0.02, DurationMax: time.Second}}
		res, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range res.Tasks {
			if tk.Submitted >= 10*time.Second {
				t.Fatalf("seed %d: task %s submitted at %v, after the workload's end", seed, tk.ID, tk.Submitted)
			}
		}
	}
}

// TestOperatorNormalHeals: an operator's return to NORMAL ends a hold like
// a healed fault, so liveness is owed from then.
func TestOperatorNormalHeals(t *testing.T) {
	o := DefaultOptions()
	o.Ops = []OperatorAction{{At: time.Minute, SetMode: core.ModeReadOnly}, {At: 3 * time.Minute, SetMode: core.ModeNormal}}
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.HealedAt != 3*time.Minute {
		t.Fatalf("healed at %v, want 3m", res.HealedAt)
	}
}

// TestHealAtEndsRunLongFaults: at HealAt the lossy network heals and fault
// points stop firing; the run is healed from then and liveness holds.
func TestHealAtEndsRunLongFaults(t *testing.T) {
	short := faultPointOptions(9, 0.3)
	short.Network.LossProbability = 0.3
	short.Duration = 3 * time.Minute
	a, err := Run(short)
	if err != nil {
		t.Fatal(err)
	}
	long := short
	long.Duration, long.HealAt = 20*time.Minute, 3*time.Minute
	b, err := Run(long)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range FaultPointNames() {
		if a.FaultPointsFired[p] != b.FaultPointsFired[p] {
			t.Errorf("%s fired %d times in 3m, %d in 20m healed at 3m", p, a.FaultPointsFired[p], b.FaultPointsFired[p])
		}
	}
	if b.HealedAt < 3*time.Minute || !b.LivenessChecked || b.NonTerminal != 0 {
		t.Errorf("healed at %v, liveness checked %v, %d unfinished", b.HealedAt, b.LivenessChecked, b.NonTerminal)
	}
	long.HealAt = 21 * time.Minute
	if _, err := Run(long); !errors.Is(err, ErrOptions) {
		t.Errorf("HealAt after the end: %v", err)
	}
}
