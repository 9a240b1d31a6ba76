package cp

import (
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	"github.com/fluxforge/fluxforge/net/tlsconf"
)

// metrics holds the instruments the Server updates as things happen; the
// state of the scheduler itself is read from the core at scrape time by
// coreCollector.
type metrics struct {
	reconcile        prometheus.Histogram
	requests         *prometheus.CounterVec
	apiErrors        *prometheus.CounterVec
	requestDuration  *prometheus.HistogramVec
	panics           prometheus.Counter
	deliveries       *prometheus.CounterVec
	deliveryDropped  *prometheus.CounterVec
	deliveryDuration *prometheus.HistogramVec
	proposal         prometheus.Histogram
	snapshotDuration prometheus.Histogram
	snapshotBytes    prometheus.Gauge
	restore          prometheus.Gauge
	batchInputs      prometheus.Histogram
	forwarded        *prometheus.CounterVec
	authRefusals     *prometheus.CounterVec
	tlsHandshake     *prometheus.CounterVec
	tlsCertExpiry    prometheus.Gauge
	lockHold         *prometheus.HistogramVec
	lockWrite        prometheus.Observer
	lockRead         prometheus.Observer
}

// lockHeld implements fsmObserver.
func (m *metrics) lockHeld(write bool, d time.Duration) {
	if write {
		m.lockWrite.Observe(d.Seconds())
	} else {
		m.lockRead.Observe(d.Seconds())
	}
}

// snapshotTaken implements fsmObserver.
func (m *metrics) snapshotTaken(d time.Duration, bytes int) {
	m.snapshotDuration.Observe(d.Seconds())
	m.snapshotBytes.Set(float64(bytes))
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconcile:        prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricReconcileDuration, reconcileBuckets))),
		requests:         prometheus.NewCounterVec(counterOpts(core.MetricHTTPRequests)),
		apiErrors:        prometheus.NewCounterVec(counterOpts(core.MetricAPIErrors)),
		requestDuration:  prometheus.NewHistogramVec(histogramOpts(core.MetricHTTPRequestDuration, requestBuckets)),
		panics:           prometheus.NewCounter(unlabelled(counterOpts(core.MetricHTTPPanics))),
		deliveries:       prometheus.NewCounterVec(counterOpts(core.MetricAgentMessages)),
		deliveryDropped:  prometheus.NewCounterVec(counterOpts(core.MetricAgentMessagesDropped)),
		deliveryDuration: prometheus.NewHistogramVec(histogramOpts(core.MetricAgentMessageDuration, prometheus.DefBuckets)),
		proposal:         prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricLogProposalDuration, requestBuckets))),
		snapshotDuration: prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricLogSnapshotDuration, reconcileBuckets))),
		snapshotBytes:    prometheus.NewGauge(gaugeOpts(core.MetricLogSnapshotBytes)),
		restore:          prometheus.NewGauge(gaugeOpts(core.MetricLogRestoreDuration)),
		batchInputs:      prometheus.NewHistogram(unlabelled(histogramOpts(core.MetricLogBatchInputs, batchBuckets))),
		authRefusals:     prometheus.NewCounterVec(counterOpts(core.MetricAuthRefusals)),
		tlsHandshake:     prometheus.NewCounterVec(counterOpts(core.MetricTLSHandshakeErrors)),
		tlsCertExpiry:    prometheus.NewGauge(gaugeOpts(core.MetricTLSCertExpiry)),
		lockHold:         prometheus.NewHistogramVec(histogramOpts(core.MetricCoreLockHold, lockBuckets)),
	}
	m.lockWrite, m.lockRead = m.lockHold.WithLabelValues("write"), m.lockHold.WithLabelValues("read")
	for _, reason := range authRefusals {
		m.authRefusals.WithLabelValues(reason)
	}
	for _, reason := range tlsconf.Reasons {
		m.tlsHandshake.WithLabelValues(reason)
	}
	// Initialize the submission path's series so the error rate is
	// computable (0) before the first error, as Prometheus advises.
	m.requests.WithLabelValues(routeSubmit, "201")
	for _, code := range []string{"400", "413", "422", "429", "500", "503"} {
		m.apiErrors.WithLabelValues(routeSubmit, code)
	}
	for _, kind := range []string{"assign", "cancel"} {
		m.deliveryDropped.WithLabelValues(kind)
	}
	queuedDesc := metricDesc(core.MetricAgentMessagesQueued, core.MetricGauge)
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: queuedDesc.Name, Help: queuedDesc.Help},
		func() float64 { return float64(s.mail.queued()) })
	appliedDesc := metricDesc(core.MetricLogAppliedIndex, core.MetricGauge)
	appliedIndex := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: appliedDesc.Name, Help: appliedDesc.Help},
		func() float64 {
			if s.fsm == nil {
				return 0
			}
			return float64(s.fsm.appliedIndex())
		})
	dirDesc := metricDesc(core.MetricDataDirBytes, core.MetricGauge)
	dirBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: dirDesc.Name, Help: dirDesc.Help},
		func() float64 { return float64(dirSize(s.opts.DataDir)) })
	logStat := func(name string, f func(raftlog.LogStats) uint64) prometheus.Collector {
		d := metricDesc(name, core.MetricCounter)
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, func() float64 {
			if s.node == nil {
				return 0
			}
			return float64(f(s.node.LogStats()))
		})
	}
	appends := logStat(core.MetricLogAppends, func(st raftlog.LogStats) uint64 { return st.Appends })
	entries := logStat(core.MetricLogEntries, func(st raftlog.LogStats) uint64 { return st.Entries })
	entryBytes := logStat(core.MetricLogEntryBytes, func(st raftlog.LogStats) uint64 { return st.Bytes })
	leaderDesc := metricDesc(core.MetricRaftLeader, core.MetricGauge)
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: leaderDesc.Name, Help: leaderDesc.Help}, func() float64 {
		if s.node != nil && s.node.IsLeader() {
			return 1
		}
		return 0
	})
	raftGauge := func(name string, f func(raftlog.RaftStats) float64) prometheus.Collector {
		d := metricDesc(name, core.MetricGauge)
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: d.Name, Help: d.Help}, func() float64 {
			if s.node == nil {
				return 0
			}
			return f(s.node.Stats())
		})
	}
	m.forwarded = prometheus.NewCounterVec(counterOpts(core.MetricRaftForwarded))
	for _, r := range []string{"ok", "no_leader", "error"} {
		m.forwarded.WithLabelValues(r)
	}
	raftGauges := []prometheus.Collector{leader, m.forwarded,
		raftGauge(core.MetricRaftTerm, func(st raftlog.RaftStats) float64 { return float64(st.Term) }),
		raftGauge(core.MetricRaftCommitIndex, func(st raftlog.RaftStats) float64 { return float64(st.CommitIndex) }),
		raftGauge(core.MetricRaftPeers, func(st raftlog.RaftStats) float64 { return float64(st.Peers) }),
		raftGauge(core.MetricRaftLastContact, func(st raftlog.RaftStats) float64 { return st.LastContact.Seconds() }),
	}
	for _, c := range append(raftMetrics().collectors(), raftGauges...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, c := range []prometheus.Collector{queued, appliedIndex, dirBytes, appends, entries, entryBytes, m.batchInputs, m.proposal, m.snapshotDuration, m.snapshotBytes, m.restore, m.reconcile, m.requests, m.apiErrors, m.requestDuration, m.panics,
		m.deliveries, m.deliveryDropped, m.deliveryDuration, m.authRefusals, m.tlsHandshake, m.tlsCertExpiry, m.lockHold,
		newGCPauseCollector(), &coreCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Histogram buckets, in seconds.
var (
	reconcileBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	batchBuckets     = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
	requestBuckets   = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	lockBuckets      = []float64{.000001, .0000025, .000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// gcPauseCollector exports the runtime's histogram of GC stop-the-world
// pauses (runtime/metrics) as flux_go_gc_pause_seconds, read at scrape
// time. The runtime's fine buckets are merged into lockBuckets: a runtime
// bucket counts in the first bucket whose bound is at or above its upper
// end; the sum is estimated from the runtime buckets' midpoints.
type gcPauseCollector struct{ desc *prometheus.Desc }

const gcPauseMetric = "/sched/pauses/total/gc:seconds"

func newGCPauseCollector() *gcPauseCollector {
	d := metricDesc(core.MetricGoGCPause, core.MetricHistogram)
	return &gcPauseCollector{desc: prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)}
}

func (c *gcPauseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *gcPauseCollector) Collect(ch chan<- prometheus.Metric) {
	sample := []rtmetrics.Sample{{Name: gcPauseMetric}}
	rtmetrics.Read(sample)
	if sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return
	}
	count, sum, buckets := mergeRuntimeHistogram(sample[0].Value.Float64Histogram(), lockBuckets)
	ch <- prometheus.MustNewConstHistogram(c.desc, count, sum, buckets)
}

// mergeRuntimeHistogram converts a runtime/metrics histogram to a
// Prometheus one with the given upper bounds (cumulative counts).
func mergeRuntimeHistogram(h *rtmetrics.Float64Histogram, bounds []float64) (uint64, float64, map[float64]uint64) {
	var count uint64
	var sum float64
	per := make([]uint64, len(bounds))
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		count += n
		mid := hi
		switch {
		case math.IsInf(lo, -1):
			mid = hi
		case math.IsInf(hi, 1):
			mid = lo
		default:
			mid = (lo + hi) / 2
		}
		sum += mid * float64(n)
		for j, b := range bounds {
			if hi <= b {
				per[j] += n
				break
			}
		}
	}
	out := make(map[float64]uint64, len(bounds))
	var cum uint64
	for j, b := range bounds {
		cum += per[j]
		out[b] = cum
	}
	return count, sum, out
}

// metricDesc returns core's table entry for name, which must be there with
// type typ: every metric the cp exports is in that one table, which the
// simulator records from too.
func metricDesc(name string, typ core.MetricType) core.MetricDesc {
	d, ok := core.MetricByName(name)
	if !ok || d.Type != typ {
		panic(fmt.Sprintf("cp: metric %s is not a %v in core.Metrics()", name, typ))
	}
	return d
}

// counterOpts returns the options and label names of counter name.
func counterOpts(name string) (prometheus.CounterOpts, []string) {
	d := metricDesc(name, core.MetricCounter)
	return prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels
}

// histogramOpts returns the options and label names of histogram name.
func histogramOpts(name string, buckets []float64) (prometheus.HistogramOpts, []string) {
	d := metricDesc(name, core.MetricHistogram)
	return prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: buckets}, d.Labels
}

// gaugeOpts returns the options of unlabelled gauge name.
func gaugeOpts(name string) prometheus.GaugeOpts {
	d := metricDesc(name, core.MetricGauge)
	return unlabelled(prometheus.GaugeOpts{Name: d.Name, Help: d.Help}, d.Labels)
}

// dirSize is the bytes the regular files under dir hold (0 for no dir).
func dirSize(dir string) int64 {
	if dir == "" {
		return 0
	}
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed meanwhile (a compacted segment)
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// unlabelled drops the label names of a metric that has none.
func unlabelled[O any](opts O, labels []string) O {
	if len(labels) != 0 {
		panic(fmt.Sprintf("cp: metric has labels %v", labels))
	}
	return opts
}

// desc describes a metric read from the core at scrape time.
func desc(name string) *prometheus.Desc {
	d, ok := core.MetricByName(name)
	if !ok || d.Type == core.MetricHistogram {
		panic(fmt.Sprintf("cp: metric %s is not a gauge or counter in core.Metrics()", name))
	}
	return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil)
}

// Descriptions of the metrics read from the core at scrape time. The names
// RUNBOOK.md uses are the operators' contract and stay exact.
var (
	descQueueDepth       = desc(core.MetricQueueDepth)
	descQueueCapacity    = desc(core.MetricQueueCapacity)
	descQueueOldest      = desc(core.MetricQueueOldestTaskAge)
	descInFlight         = desc(core.MetricTasksInFlight)
	descMode             = desc(core.MetricSchedulerMode)
	descModeBySelf       = desc(core.MetricSchedulerModeSelfProtection)
	descPaused           = desc(core.MetricSchedulerReschedulingPaused)
	descIsolationPanic   = desc(core.MetricIsolationPanic)
	descDrained          = desc(core.MetricSchedulerDrained)
	descDecisions        = desc(core.MetricSchedulerDecisions)
	descDomainFailure    = desc(core.MetricDomainFailureRate)
	descDomainState      = desc(core.MetricDomainState)
	descDomainActive     = desc(core.MetricDomainActive)
	descDomainQueued     = desc(core.MetricDomainQueued)
	descAgentsKnown      = desc(core.MetricAgentsKnown)
	descAgentsConnected  = desc(core.MetricAgentsConnected)
	descAgentsQuarantine = desc(core.MetricAgentsQuarantined)
	descAgentConnected   = desc(core.MetricAgentConnected)
	descAgentQuarantined = desc(core.MetricAgentQuarantined)
	descAgentHealth      = desc(core.MetricAgentHealthScore)
	descAgentRunning     = desc(core.MetricAgentRunningTasks)
	descAgentSlots       = desc(core.MetricAgentSlots)
	descSubmitted        = desc(core.MetricTasksSubmitted)
	descReplayed         = desc(core.MetricTasksReplayed)
	descRefused          = desc(core.MetricTasksRefused)
	descFinished         = desc(core.MetricTasksFinished)
	descPurged           = desc(core.MetricTasksPurged)
	descRequeues         = desc(core.MetricRequeues)
	descLostLeases       = desc(core.MetricLostLeases)
	descStuckLeases      = desc(core.MetricStuckLeases)
	descStaleIgnored     = desc(core.MetricStaleReportsIgnored)
	descPoison           = desc(core.MetricPoisonTasks)
	descQuarantines      = desc(core.MetricQuarantines)
	descQuarantineCapped = desc(core.MetricQuarantinesCapped)
	descModeChanges      = desc(core.MetricModeChanges)
	descAgentConnects    = desc(core.MetricAgentConnects)
	descAgentDisconnects = desc(core.MetricAgentDisconnects)
	descReconciles       = desc(core.MetricReconciles)
	descTimelineSeq      = desc(core.MetricTimelineLastSeq)
)

var (
	allModes        = []core.Mode{core.ModeNormal, core.ModeDegraded, core.ModeReadOnly, core.ModeDraining}
	allDomainStates = []core.DomainState{core.DomainOpen, core.DomainThrottled, core.DomainIsolated, core.DomainProbing}
	allDecisions    = []string{core.DecisionAssigned, core.DecisionNoCapacity, core.DecisionDomainIsolated,
		core.DecisionDomainThrottle, core.DecisionNoAgents, core.DecisionModeBlocked, core.DecisionPaused}
	allTerminal = []core.TaskState{core.TaskSucceeded, core.TaskFailed, core.TaskCancelled, core.TaskDead}
)

// coreCollector exports the core's state and counters, read under the lock
// at scrape time: exact, and agents the core forgot vanish from the output.
type coreCollector struct{ s *Server }

func (c *coreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueDepth, descQueueCapacity, descQueueOldest, descInFlight, descMode,
		descModeBySelf, descPaused, descIsolationPanic, descDrained, descDecisions, descDomainFailure, descDomainState, descDomainActive,
		descDomainQueued, descAgentsKnown, descAgentsConnected, descAgentsQuarantine, descAgentConnected,
		descAgentQuarantined, descAgentHealth, descAgentRunning, descAgentSlots, descSubmitted, descReplayed,
		descRefused, descFinished, descPurged, descRequeues, descLostLeases, descStuckLeases, descStaleIgnored,
		descPoison, descQuarantines, descQuarantineCapped, descModeChanges, descAgentConnects, descAgentDisconnects,
		descReconciles, descTimelineSeq} {
		ch <- d
	}
}

func (c *coreCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.clock.Now()
	var (
		snap   core.DebugView
		stats  core.Stats
		agents []core.AgentView
	)
	s.read(func(c *core.ControlPlane) {
		snap, stats, agents = c.DebugView(now), c.Stats(), c.Agents()
	})

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}

	gauge(descQueueDepth, float64(snap.QueueDepth))
	gauge(descQueueCapacity, float64(snap.QueueCapacity))
	gauge(descQueueOldest, snap.OldestTaskAgeSeconds)
	gauge(descInFlight, float64(snap.InFlight))
	for _, m := range allModes {
		gauge(descMode, b(snap.Mode == m), string(m))
	}
	gauge(descModeBySelf, b(snap.ModeSetBy == core.ActorSelfProtection))
	gauge(descPaused, b(snap.ReschedulingPaused))
	gauge(descIsolationPanic, b(snap.IsolationPanic.Active))
	gauge(descDrained, b(snap.Drained))

	for _, o := range unionKeys(allDecisions, stats.Decisions) {
		counter(descDecisions, stats.Decisions[o], o)
	}
	for _, d := range snap.Domains {
		gauge(descDomainFailure, d.FailureRate, d.Name)
		for _, st := range allDomainStates {
			gauge(descDomainState, b(d.State == st), d.Name, string(st))
		}
		gauge(descDomainActive, float64(d.Active), d.Name)
		gauge(descDomainQueued, float64(d.Queued), d.Name)
		gauge(descAgentsKnown, float64(d.Agents), d.Name)
		gauge(descAgentsConnected, float64(d.AgentsConnected), d.Name)
		gauge(descAgentsQuarantine, float64(d.AgentsQuarantined), d.Name)
	}
	for _, a := range agents {
		gauge(descAgentConnected, b(a.Connected), string(a.ID), a.Domain)
		gauge(descAgentQuarantined, b(a.Quarantined), string(a.ID), a.Domain)
		gauge(descAgentHealth, a.Health.Score, string(a.ID), a.Domain)
		gauge(descAgentRunning, float64(a.Running), string(a.ID), a.Domain)
		gauge(descAgentSlots, float64(a.Slots), string(a.ID), a.Domain)
	}

	counter(descSubmitted, stats.SubmitAccepted)
	counter(descReplayed, stats.SubmitReplayed)
	for _, r := range unionKeys(core.RefusalKinds(), stats.SubmitRefused) {
		counter(descRefused, stats.SubmitRefused[r], string(r))
	}
	for _, st := range allTerminal {
		counter(descFinished, stats.TasksEnded[st], st.String())
	}
	counter(descPurged, stats.TasksPurged)
	counter(descRequeues, stats.Requeues)
	counter(descLostLeases, stats.LostLeases)
	counter(descStuckLeases, stats.StuckLeases)
	counter(descStaleIgnored, stats.StaleIgnored)
	counter(descPoison, stats.PoisonTasks)
	counter(descQuarantines, stats.Quarantines)
	counter(descQuarantineCapped, stats.QuarantinesCapped)
	counter(descModeChanges, stats.ModeChanges)
	counter(descAgentConnects, stats.AgentConnects)
	counter(descAgentDisconnects, stats.AgentDisconnects)
	counter(descReconciles, stats.Reconciles)
	gauge(descTimelineSeq, float64(snap.TimelineSeq))
}

// unionKeys returns known plus any other key of m, sorted, so every expected
// series exists from the start and no new one is lost.
func unionKeys[K ~string](known []K, m map[K]uint64) []K {
	out := slices.Clone(known)
	for k := range m {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
