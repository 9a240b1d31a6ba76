package cp

import (
	"maps"
	"math"
	"regexp"
	"runtime"
	rtmetrics "runtime/metrics"
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

// TestLogAndRaftMetrics: a durable cp's /metrics reports its log's
// appends, entries and bytes, the batch sizes, and raft's own timings (the
// log store's append with its fsync, commit, FSM apply, a snapshot's
// phases) and its leadership.
func TestLogAndRaftMetrics(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.DataDir = t.TempDir() })
	tc.submit(`{"kind":"sleep"}`)
	if err := tc.s.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, re := range []string{
		`(?m)^flux_log_appends_total [1-9]`,
		`(?m)^flux_log_entries_total [1-9]`,
		`(?m)^flux_log_entry_bytes_total [1-9]`,
		`(?m)^flux_log_batch_inputs_count [1-9]`,
		`(?m)^flux_log_append_duration_seconds_count [1-9]`,
		`(?m)^flux_raft_commit_duration_seconds_count [1-9]`,
		`(?m)^flux_raft_fsm_apply_duration_seconds_count [1-9]`,
		`(?m)^flux_raft_snapshot_duration_seconds_count\{phase="persist"\} [1-9]`,
		`(?m)^flux_raft_state_transitions_total\{state="leader"\} [1-9]`,
		`(?m)^flux_raft_leader 1$`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
}

// TestLockHoldAndGCPauseMetrics: /metrics reports how long the state's
// lock was held, for writes (each applied entry) and reads (each reader),
// and the runtime's GC pauses.
func TestLockHoldAndGCPauseMetrics(t *testing.T) {
	tc := startCP(t, false, nil)
	tc.submit(`{"kind":"sleep"}`)
	tc.snapshot()
	runtime.GC()
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, re := range []string{
		`(?m)^flux_core_lock_hold_seconds_count\{lock="write"\} [1-9]`,
		`(?m)^flux_core_lock_hold_seconds_count\{lock="read"\} [1-9]`,
		`(?m)^flux_core_lock_hold_seconds_bucket\{lock="write",le="\+Inf"\} [1-9]`,
		`(?m)^flux_go_gc_pause_seconds_count [1-9]`,
		`(?m)^flux_go_gc_pause_seconds_bucket\{le="1"\} [1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
}

// TestMergeRuntimeHistogram: a runtime bucket counts in the first bound at
// or above its upper end; counts are cumulative; beyond the last bound only
// the total holds it.
func TestMergeRuntimeHistogram(t *testing.T) {
	h := &rtmetrics.Float64Histogram{
		Buckets: []float64{math.Inf(-1), 0, 0.5, 1, 2, math.Inf(1)},
		Counts:  []uint64{0, 3, 2, 1, 4},
	}
	count, sum, b := mergeRuntimeHistogram(h, []float64{0.5, 1, 5})
	if count != 10 {
		t.Errorf("count %d, want 10", count)
	}
	if want := map[float64]uint64{0.5: 3, 1: 5, 5: 6}; !maps.Equal(b, want) {
		t.Errorf("buckets %v, want %v", b, want)
	}
	if want := 3*0.25 + 2*0.75 + 1*1.5 + 4*2.0; math.Abs(sum-want) > 1e-9 {
		t.Errorf("sum %v, want %v", sum, want)
	}
}

// TestRaftSinkAppendsOnEveryRole: a log append is timed on the leader
// (raft's leader.dispatchLog) and on a follower (rpc.appendEntries.storeLogs)
// into the same flux_log_append_duration_seconds, so a slow disk shows on
// every cp of a cluster (alert FluxLogDiskSlow); other keys are not appends.
func TestRaftSinkAppendsOnEveryRole(t *testing.T) {
	s := &raftSink{
		commit:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "c"}),
		append:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a", Buckets: requestBuckets}),
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "f"}),
		snapshot: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "s"}, []string{"phase"}),
		states:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "st"}, []string{core.LabelState}),
	}
	s.AddSample([]string{"raft", "leader", "dispatchLog"}, 2)
	s.AddSample([]string{"raft", "rpc", "appendEntries", "storeLogs"}, 300)
	s.AddSample([]string{"raft", "rpc", "appendEntries"}, 900)
	s.AddSample([]string{"raft", "commitTime"}, 5)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.append)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gather: %v, %v", mfs, err)
	}
	h := mfs[0].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-0.302) > 1e-6 {
		t.Fatalf("append histogram: %d samples, sum %v; want the leader's 2ms and the follower's 300ms", h.GetSampleCount(), h.GetSampleSum())
	}
}
