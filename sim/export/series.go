package export

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/sim"
)

// series is one labelled metric over the run's sample grid; missing samples
// are NaN.
type series struct {
	name   string
	labels []sim.Label // sorted by name, without job and instance
	values []float64
}

func (s *series) label(name string) string {
	for _, l := range s.labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// grid is a run's series on a regular time grid: sample k is at k*step.
type grid struct {
	step   time.Duration
	n      int
	series []*series // sorted by name, then labels
	byKey  map[string]*series
}

func seriesKey(name string, labels []sim.Label) string {
	var b strings.Builder
	b.WriteString(name)
	for _, l := range labels {
		b.WriteString("\x00")
		b.WriteString(l.Name)
		b.WriteString("\x00")
		b.WriteString(l.Value)
	}
	return b.String()
}

// newGrid lays the run's samples on a grid. The simulator samples every
// SampleInterval from time zero; a sample off the grid is an error.
func newGrid(res *sim.Result) (*grid, error) {
	if len(res.Series) < 2 {
		return nil, fmt.Errorf("export: the run recorded %d samples; need at least 2", len(res.Series))
	}
	step := res.Series[1].At - res.Series[0].At
	if step <= 0 {
		return nil, fmt.Errorf("export: samples are not in time order")
	}
	last := res.Series[len(res.Series)-1].At
	g := &grid{step: step, n: int(last/step) + 1, byKey: map[string]*series{}}
	if g.n > 100_000 {
		return nil, fmt.Errorf("export: %d sample points are too many for a report; sample less often", g.n)
	}
	for _, smp := range res.Series {
		if smp.At%step != 0 {
			return nil, fmt.Errorf("export: sample at %v is off the %v grid", smp.At, step)
		}
		k := int(smp.At / step)
		for _, m := range smp.Metrics {
			name := m.Name
			labels := slices.Clone(m.Labels)
			slices.SortFunc(labels, func(a, b sim.Label) int { return strings.Compare(a.Name, b.Name) })
			key := seriesKey(name, labels)
			s := g.byKey[key]
			if s == nil {
				s = &series{name: name, labels: labels, values: make([]float64, g.n)}
				for i := range s.values {
					s.values[i] = math.NaN()
				}
				g.byKey[key] = s
				g.series = append(g.series, s)
			}
			s.values[k] = m.Value
		}
	}
	slices.SortFunc(g.series, func(a, b *series) int {
		return strings.Compare(seriesKey(a.name, a.labels), seriesKey(b.name, b.labels))
	})
	return g, nil
}

// named returns the series of one metric, in label order.
func (g *grid) named(name string) []*series {
	var out []*series
	for _, s := range g.series {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// at returns the value an instant query sees at sample k: the latest sample
// at or before k within Prometheus's 5m lookback, or NaN.
func (s *series) at(k int, step time.Duration) float64 {
	lookback := int(5 * time.Minute / step)
	for i := k; i >= 0 && i >= k-lookback; i-- {
		if !math.IsNaN(s.values[i]) {
			return s.values[i]
		}
	}
	return math.NaN()
}

// changes counts value changes between consecutive present samples with
// index in [lo, hi], as PromQL's changes() does over a range.
func (s *series) changes(lo, hi int) int {
	n, prev, have := 0, 0.0, false
	for i := max(lo, 0); i <= hi; i++ {
		v := s.values[i]
		if math.IsNaN(v) {
			continue
		}
		if have && v != prev {
			n++
		}
		prev, have = v, true
	}
	return n
}
