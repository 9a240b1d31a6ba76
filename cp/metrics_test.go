package cp

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
)

// describer records the descriptions of every collector registered with it.
type describer struct{ descs []string }

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 256)
	c.Describe(ch)
	close(ch)
	for desc := range ch {
		d.descs = append(d.descs, desc.String())
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// TestMetricsAreCoresTable: the cp registers exactly the metrics of
// core.Metrics(), with their help and labels, and nothing else, so the
// table the simulator records from is the cp's.
func TestMetricsAreCoresTable(t *testing.T) {
	var reg describer
	if _, err := newMetrics(&Server{}, &reg); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range core.Metrics() {
		want = append(want, prometheus.NewDesc(m.Name, m.Help, m.Labels, nil).String())
	}
	slices.Sort(want)
	slices.Sort(reg.descs)
	if !slices.Equal(reg.descs, want) {
		for _, d := range reg.descs {
			if !slices.Contains(want, d) {
				t.Errorf("the cp registers %s, which core.Metrics() lacks", d)
			}
		}
		for _, d := range want {
			if !slices.Contains(reg.descs, d) {
				t.Errorf("core.Metrics() has %s, which the cp does not register", d)
			}
		}
	}
	for _, name := range runbookMetrics {
		if _, ok := core.MetricByName(name); !ok {
			t.Errorf("runbook metric %s is not in core.Metrics()", name)
		}
	}
}
