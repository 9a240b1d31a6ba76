package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fluxforge/fluxforge/scenarios"
	"github.com/fluxforge/fluxforge/sim"
	"github.com/fluxforge/fluxforge/sim/export"
)

// TestAlertsProvenBySimulatedIncidents runs the runbook scenarios (and the
// variants sim/export names), writes the series each recorded as a promtool
// rule test with the alerts it must fire and when, and runs promtool on it:
// queue-saturation fires FluxQueueSaturated, starvation without aging
// FluxQueueTaskStale, agent-flap FluxAgentFlapping, and a calm run nothing.
func TestAlertsProvenBySimulatedIncidents(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	promtool, promErr := exec.LookPath("promtool")
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, proof := range export.AlertProofs() {
		t.Run(proof.Name, func(t *testing.T) {
			sc, ok := scenarios.Lookup(proof.Scenario)
			if !ok {
				t.Fatalf("scenario %s does not exist", proof.Scenario)
			}
			for _, seed := range seeds {
				_, opts := sc.Options(scenarios.Params{Seed: seed})
				if proof.Modify != nil {
					proof.Modify(&opts)
				}
				opts.Name = proof.Name
				res, err := sim.Run(opts)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				pt, err := export.Promtool(&res, rules, export.PromtoolOptions{RuleFile: "rules.yml", MustFire: proof.MustFire})
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				for _, c := range pt.Checks {
					if len(c.Firing) > 0 {
						t.Logf("seed %d: %s fires at %v (%s)", seed, c.Alert, c.At, c.Why)
					}
				}
				if promErr != nil {
					t.Skip("promtool not on PATH: install the Debian package prometheus (deploy/check.sh does); CI has it")
				}
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "rules.yml"), export.StripAnnotations(rules), 0o644); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, "test.yml")
				if err := os.WriteFile(path, pt.YAML, 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(promtool, "test", "rules", path).CombinedOutput(); err != nil {
					t.Fatalf("seed %d: promtool test rules: %v\n%s", seed, err, out)
				}
			}
		})
	}
}

// TestSimulatorSeriesUseCPNames checks that every metric the simulator
// records, under the names of core.Metrics() with no renaming, is one the
// cp really exports, so alerts proven on simulated series hold on scraped
// ones.
func TestSimulatorSeriesUseCPNames(t *testing.T) {
	exported := exportedSeries(t, scrapeCP(t))
	sc, ok := scenarios.Lookup("zone-outage")
	if !ok {
		t.Fatal("no zone-outage scenario")
	}
	_, opts := sc.Options(scenarios.Params{Seed: 1})
	res, err := sim.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range res.Series {
		for _, m := range s.Metrics {
			if seen[m.Name] {
				continue
			}
			seen[m.Name] = true
			name := m.Name
			labels, ok := exported[name]
			if !ok {
				t.Errorf("the simulator records %s, which the cp does not export", m.Name)
				continue
			}
			for _, l := range m.Labels {
				if !slices.Contains(labels, l.Name) {
					t.Errorf("the simulator records %s with label %s, which the cp's %s lacks (has %v)", m.Name, l.Name, name, labels)
				}
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d metrics recorded", len(seen))
	}
}
