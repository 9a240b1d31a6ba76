package sim

import (
	"testing"
	"time"
)

func basicOptions(seed uint64) Options {
	o := DefaultOptions()
	o.Seed = seed
	o.Name = "basic"
	o.Duration = 10 * time.Minute
	o.Workload = []Workload{{
		Name: "w", Start: 0, End: 4 * time.Minute, RatePerSecond: 1,
		PriorityWeights: [3]float64{1, 2, 1}, Domains: []string{"z1", "z2"}, DomainFraction: 0.3,
		DurationMin: time.Second, DurationMax: 10 * time.Second, TimeoutSeconds: 30, MaxAttempts: 3,
		IdempotentFraction: 0.2, ResubmitFraction: 0.5, ConflictFraction: 0.2,
	}}
	return o
}

func TestRunBasic(t *testing.T) {
	res, err := Run(basicOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("events=%d submitted=%d succeeded=%d nonterminal=%d replayed=%d refused=%v hash=%s lines=%d liveness=%v",
		res.SimEvents, res.Submitted, res.Succeeded, res.NonTerminal, res.Replayed, res.Refused, res.TraceHash, res.TraceLines, res.LivenessChecked)
	if res.Submitted == 0 || res.Succeeded != res.Submitted {
		t.Fatalf("submitted %d succeeded %d", res.Submitted, res.Succeeded)
	}
}
