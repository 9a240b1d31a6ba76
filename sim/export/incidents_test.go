package export

import (
	"time"

	"github.com/fluxforge/fluxforge/sim"
)

// The tests' own incidents, shaped like the runbook scenarios (the
// scenarios package is not imported here: sim/... may import only core and
// net). deploy/ runs the same generator over the real scenarios.

func calmOptions(seed uint64) sim.Options {
	o := sim.DefaultOptions()
	o.Name, o.Seed, o.Duration = "calm", seed, 10*time.Minute
	o.Workload = []sim.Workload{{Name: "steady", End: 9 * time.Minute, RatePerSecond: 0.5,
		PriorityWeights: [3]float64{1, 2, 1}, Domains: []string{"z1", "z2"}, DomainFraction: 0.3,
		DurationMin: time.Second, DurationMax: 10 * time.Second, TimeoutSeconds: 60, MaxAttempts: 3}}
	return o
}

func saturationOptions(seed uint64) sim.Options {
	o := calmOptions(seed)
	o.Name = "queue-saturation"
	o.Workload = append(o.Workload, sim.Workload{Name: "burst", Start: 2 * time.Minute, End: 2 * time.Minute, Burst: 1000,
		PriorityWeights: [3]float64{1, 2, 0}, DurationMin: 10 * time.Second, DurationMax: 20 * time.Second,
		TimeoutSeconds: 120, MaxAttempts: 3})
	o.Duration = 22 * time.Minute
	return o
}

func starvationOptions(seed uint64) sim.Options {
	o := calmOptions(seed)
	o.Name = "starvation-no-aging"
	o.Core.AgingInterval = 24 * time.Hour // the variant without aging
	o.Workload = []sim.Workload{
		{Name: "high", End: 8 * time.Minute, RatePerSecond: 3, PriorityWeights: [3]float64{1, 0, 0},
			DurationMin: 8 * time.Second, DurationMax: 12 * time.Second, TimeoutSeconds: 60, MaxAttempts: 3},
		{Name: "low", Start: time.Minute, End: 8 * time.Minute, RatePerSecond: 0.2, PriorityWeights: [3]float64{0, 0, 1},
			DurationMin: time.Second, DurationMax: 2 * time.Second, TimeoutSeconds: 60, MaxAttempts: 3},
	}
	o.Duration = 12 * time.Minute
	return o
}

func flapOptions(seed uint64) sim.Options {
	o := calmOptions(seed)
	o.Name = "agent-flap"
	o.Faults = []sim.Fault{{Kind: sim.FaultFlap, Agents: []string{"z1-a01"}, At: 2 * time.Minute, Until: 8 * time.Minute,
		Down: 40 * time.Second, Up: 40 * time.Second}}
	o.Duration = 14 * time.Minute
	return o
}

func zoneOutageOptions(seed uint64) sim.Options {
	o := calmOptions(seed)
	o.Name = "zone-outage"
	o.Faults = []sim.Fault{{Kind: sim.FaultZoneOutage, Zone: "z2", At: 2 * time.Minute, Until: 5 * time.Minute}}
	o.Duration = 12 * time.Minute
	return o
}
