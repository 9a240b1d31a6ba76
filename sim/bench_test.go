package sim_test

import (
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/scenarios"
	"github.com/fluxforge/fluxforge/sim"
)

// BenchmarkAgentFlap1000 runs agent-flap with 1,000 agents at the default
// heartbeat interval (5s) for one simulated hour and reports simulated
// seconds per wall second and simulator events per wall second.
func BenchmarkAgentFlap1000(b *testing.B) {
	sc, _ := scenarios.Lookup("agent-flap")
	_, o := sc.Options(scenarios.Params{Seed: 1, Agents: 1000, Zones: 3, Duration: time.Hour})
	var events uint64
	n := 0
	for b.Loop() {
		res, err := sim.Run(o)
		if err != nil {
			b.Fatal(err)
		}
		events += res.SimEvents
		n++
	}
	wall := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)*o.Duration.Seconds()/wall, "sim-s/wall-s")
	b.ReportMetric(float64(events)/wall, "events/s")
	b.ReportMetric(float64(events)/float64(n), "events/run")
}
