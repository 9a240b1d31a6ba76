package scenarios

import (
	"strings"
	"testing"
)

// TestScenariosSeeds runs every scenario for seeds 1..20: each must pass its
// expectations with no invariant violated.
func TestScenariosSeeds(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 3
	}
	for _, sc := range All() {
		t.Run(sc.Name, func(t *testing.T) {
			for seed := 1; seed <= seeds; seed++ {
				rep := sc.Run(Params{Seed: uint64(seed)})
				if !rep.Passed {
					for _, c := range rep.Checks {
						if !c.Passed {
							t.Errorf("seed %d: %s: %s", seed, c.Name, c.Detail)
						}
					}
				}
			}
		})
	}
}

func TestUnknownScenario(t *testing.T) {
	_, err := Run("nope", Params{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error %q does not list %s", err, n)
		}
	}
}
