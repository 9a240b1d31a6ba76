package cp

import (
	"strings"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
)

// raft's own metrics. hashicorp/raft reports through hashicorp/go-metrics'
// process-wide sink (a blackhole by default). raftSink is that sink: it
// keeps the few series an operator of a single-node log needs, under the
// names of core's metric table, and every Server registers them. They are
// process-wide (raft's metrics are), which is exact for the one cp a
// process runs.
//
// Not go-metrics' own prometheus sink (it is in the module graph): it
// names series after raft's keys (raft_commitTime, summaries), forgets a
// series after a minute without samples and registers into one registry
// per process, where the cp's metrics come from one table and each Server
// (tests run many) has its own registry.
type raftSink struct {
	commit   prometheus.Histogram
	append   prometheus.Histogram
	fsmApply prometheus.Histogram
	snapshot *prometheus.HistogramVec
	states   *prometheus.CounterVec
}

// raftSnapshotPhases maps raft's snapshot keys to the phase label.
var raftSnapshotPhases = map[string]string{
	"raft.snapshot.takeSnapshot": "take",
	"raft.fsm.snapshot":          "fsm_snapshot",
	"raft.snapshot.create":       "create",
	"raft.snapshot.persist":      "persist",
	"raft.fsm.restore":           "fsm_restore",
	"raft.compactLogs":           "compact_logs",
}

var (
	raftSinkOnce sync.Once
	raftSinkInst *raftSink
)

// raftMetrics returns the process's raft sink, installing it as
// go-metrics' global sink on first use.
func raftMetrics() *raftSink {
	raftSinkOnce.Do(func() {
		s := &raftSink{
			commit:   prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricRaftCommitDuration, requestBuckets))),
			append:   prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricLogAppendDuration, requestBuckets))),
			fsmApply: prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricRaftFSMApplyDuration, requestBuckets))),
			snapshot: prometheus.NewHistogramVec(histogramOpts(core.MetricRaftSnapshotDuration, reconcileBuckets)),
			states:   prometheus.NewCounterVec(counterOpts(core.MetricRaftStateTransitions)),
		}
		for _, st := range []string{"follower", "candidate", "leader"} {
			s.states.WithLabelValues(st)
		}
		conf := gometrics.DefaultConfig("")
		conf.EnableHostname, conf.EnableRuntimeMetrics = false, false // no goroutine
		conf.TimerGranularity = time.Millisecond
		if _, err := gometrics.NewGlobal(conf, s); err != nil {
			panic("cp: install raft's metrics sink: " + err.Error()) // NewGlobal fails on nothing today
		}
		raftSinkInst = s
	})
	return raftSinkInst
}

func (s *raftSink) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.commit, s.append, s.fsmApply, s.snapshot, s.states}
}

// AddSample takes raft's timings, in milliseconds (TimerGranularity).
func (s *raftSink) AddSample(key []string, val float32) {
	k := strings.Join(key, ".")
	sec := float64(val) / 1000
	switch k {
	case "raft.commitTime":
		s.commit.Observe(sec)
	case "raft.leader.dispatchLog", "raft.rpc.appendEntries.storeLogs":
		// A log append on the leader and on a follower: every cp of a
		// cluster writes (and fsyncs) each entry, so each one's disk shows.
		s.append.Observe(sec)
	case "raft.fsm.apply":
		s.fsmApply.Observe(sec)
	default:
		if phase, ok := raftSnapshotPhases[k]; ok {
			s.snapshot.WithLabelValues(phase).Observe(sec)
		}
	}
}

// IncrCounter takes raft's state changes.
func (s *raftSink) IncrCounter(key []string, val float32) {
	if len(key) == 3 && key[0] == "raft" && key[1] == "state" {
		switch key[2] {
		case "follower", "candidate", "leader":
			s.states.WithLabelValues(key[2]).Add(float64(val))
		}
	}
}

func (s *raftSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}

func (s *raftSink) IncrCounterWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.IncrCounter(key, val)
}

func (s *raftSink) SetGauge([]string, float32)                              {}
func (s *raftSink) SetGaugeWithLabels([]string, float32, []gometrics.Label) {}
func (s *raftSink) EmitKey([]string, float32)                               {}
