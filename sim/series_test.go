package sim

import (
	"slices"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/core"
)

// TestSeriesUseCoreMetricTable: every series the simulator records is a
// metric of core.Metrics() (a histogram as its _count) with the table's
// label names, so no renaming is needed to compare it with the cp's.
func TestSeriesUseCoreMetricTable(t *testing.T) {
	res, err := Run(busyOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range res.Series {
		for _, m := range s.Metrics {
			name := m.Name
			d, ok := core.MetricByName(name)
			if base, isCount := strings.CutSuffix(name, "_count"); !ok && isCount {
				d, ok = core.MetricByName(base)
				ok = ok && d.Type == core.MetricHistogram
			}
			if !ok {
				t.Fatalf("the simulator records %s, which is not in core.Metrics()", name)
			}
			var labels []string
			for _, l := range m.Labels {
				labels = append(labels, l.Name)
			}
			if !slices.Equal(labels, d.Labels) {
				t.Fatalf("the simulator records %s with labels %v, the table has %v", name, labels, d.Labels)
			}
			seen[name] = true
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d metrics recorded: %v", len(seen), seen)
	}
}
