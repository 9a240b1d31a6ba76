package sim_test

import (
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/scenarios"
	"github.com/fluxforge/fluxforge/sim"
)

// BenchmarkAgentFlap1000 runs agent-flap with 1,000 agents at the default
// heartbeat interval (5s) for one simulated hour and reports simulated
// seconds per wall second, simulator events per wall second and per run, and
// allocations. Wall time is noisy on a shared machine; for a steady
// comparison of two builds count instructions of cmd/sim instead, e.g.
// GOGC=off valgrind --tool=cachegrind --cache-sim=no sim -agents=1000
// -zones=3 -duration=10m -quiet.
func BenchmarkAgentFlap1000(b *testing.B) {
	sc, _ := scenarios.Lookup("agent-flap")
	_, o := sc.Options(scenarios.Params{Seed: 1, Agents: 1000, Zones: 3, Duration: time.Hour})
	var events uint64
	n := 0
	b.ReportAllocs()
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
