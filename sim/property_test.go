package sim

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"pgregory.net/rapid"
)

// genOptions draws a small run: a random fleet, workload, fault mix and
// operator actions, all healed well before the end so liveness applies.
func genOptions(t *rapid.T) Options {
	o := DefaultOptions()
	o.Name = "property"
	o.Seed = rapid.Uint64().Draw(t, "seed")
	o.Agents = rapid.IntRange(3, 10).Draw(t, "agents")
	o.Zones = rapid.IntRange(1, min(3, o.Agents)).Draw(t, "zones")
	o.SlotsPerAgent = rapid.IntRange(1, 3).Draw(t, "slots")
	o.Duration = 30 * time.Minute
	if rapid.Bool().Draw(t, "small-queue") {
		o.Core.QueueCapacity = 20
	}
	secs := func(lo, hi int, label string) time.Duration {
		return time.Duration(rapid.IntRange(lo, hi).Draw(t, label)) * time.Second
	}
	ids := o.AgentIDs()
	zones := make([]string, o.Zones)
	for z := range zones {
		zones[z] = ZoneName(z)
	}
	o.Workload = []Workload{{
		Name: "w", Start: 0, End: 4 * time.Minute,
		// Offered load up to ~40% of the fleet (tasks average up to 13s):
		// the liveness bound covers attempts, timeouts and cool-downs, not
		// an unbounded backlog.
		RatePerSecond:   rapid.Float64Range(0.05, 0.03*float64(o.Agents*o.SlotsPerAgent)).Draw(t, "rate"),
		Burst:           rapid.IntRange(0, 30).Draw(t, "burst"),
		PriorityWeights: [3]float64{rapid.Float64Range(0, 1).Draw(t, "high"), 1, rapid.Float64Range(0, 1).Draw(t, "low")},
		Domains:         zones, DomainFraction: rapid.Float64Range(0, 0.5).Draw(t, "constrained"),
		DurationMin: time.Second, DurationMax: secs(2, 25, "max-duration"),
		TimeoutSeconds: 30, MaxAttempts: rapid.IntRange(1, 4).Draw(t, "attempts"),
		PoisonFraction: rapid.Float64Range(0, 0.05).Draw(t, "poison"), HangFraction: rapid.Float64Range(0, 0.03).Draw(t, "hang"),
		IdempotentFraction: 0.3, ResubmitFraction: 0.5, ConflictFraction: 0.2,
	}}
	kinds := []FaultKind{FaultCrash, FaultFlap, FaultStuck, FaultSlow, FaultZoneOutage, FaultCutOff}
	for i := range rapid.IntRange(0, 4).Draw(t, "faults") {
		f := Fault{Kind: rapid.SampledFrom(kinds).Draw(t, fmt.Sprintf("kind%d", i))}
		f.At = secs(0, 240, fmt.Sprintf("at%d", i))
		f.Until = f.At + secs(10, 150, fmt.Sprintf("len%d", i))
		switch f.Kind {
		case FaultZoneOutage:
			f.Zone = rapid.SampledFrom(zones).Draw(t, fmt.Sprintf("zone%d", i))
			f.Failing = rapid.Bool().Draw(t, fmt.Sprintf("failing%d", i))
		case FaultCutOff:
			f.Fraction = rapid.Float64Range(0.2, 1).Draw(t, fmt.Sprintf("fraction%d", i))
		default:
			f.Agents = []string{rapid.SampledFrom(ids).Draw(t, fmt.Sprintf("agent%d", i))}
			f.Down, f.Up = secs(5, 60, fmt.Sprintf("down%d", i)), secs(5, 30, fmt.Sprintf("up%d", i))
			f.Latency, f.Factor = secs(0, 3, fmt.Sprintf("latency%d", i)), 3
		}
		o.Faults = append(o.Faults, f)
	}
	if rapid.Bool().Draw(t, "operator") {
		at := secs(0, 200, "op-at")
		mode := rapid.SampledFrom([]core.Mode{core.ModeReadOnly, core.ModeDraining, core.ModeDegraded}).Draw(t, "op-mode")
		o.Ops = append(o.Ops,
			OperatorAction{At: at, SetMode: mode, Reason: "property"},
			OperatorAction{At: at + secs(5, 90, "op-len"), SetMode: core.ModeNormal, Reason: "property done"})
	}
	if rapid.Bool().Draw(t, "purge") {
		o.Ops = append(o.Ops, OperatorAction{At: secs(0, 240, "purge-at"), Purge: &core.PurgeInput{OlderThan: secs(1, 60, "purge-age")}})
	}
	return o
}

// TestPropertyInvariants: over random seeds, fleets, workloads and fault
// mixes, no run violates DESIGN.md's invariants (Run checks them after every
// event and at the end, liveness included).
func TestPropertyInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		o := genOptions(t)
		res, err := Run(o)
		var v *Violation
		if errors.As(err, &v) {
			t.Fatalf("%v\noptions: %+v", err, o)
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Lost != 0 {
			t.Fatalf("%d tasks lost", res.Lost)
		}
	})
}
