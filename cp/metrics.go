package cp

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
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
}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flux_reconcile_duration_seconds",
			Help:    "Wall-clock duration of one reconcile pass (core Tick under the lock).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_http_requests_total",
			Help: "HTTP requests served, by route and status code.",
		}, []string{"route", "code"}),
		apiErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_api_errors_total",
			Help: "HTTP requests answered with a 4xx or 5xx status, by route and code; the error rate is this over flux_http_requests_total.",
		}, []string{"route", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flux_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"route"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flux_http_panics_total",
			Help: "Handler panics recovered at the request boundary (answered 500).",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_agent_messages_total",
			Help: "Messages sent to agents, by kind (assign, cancel) and result (ok, error, rejected).",
		}, []string{"kind", "result"}),
		deliveryDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_agent_messages_dropped_total",
			Help: "Messages to agents dropped because the delivery queue was full.",
		}, []string{"kind"}),
		deliveryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flux_agent_message_duration_seconds",
			Help:    "Round trip of one message to an agent.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind"}),
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
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flux_agent_messages_queued",
		Help: "Messages to agents waiting to be sent.",
	}, func() float64 { return float64(s.delivery.queued()) })
	for _, c := range []prometheus.Collector{queued, m.reconcile, m.requests, m.apiErrors, m.requestDuration, m.panics,
		m.deliveries, m.deliveryDropped, m.deliveryDuration, &coreCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Descriptions of the metrics read from the core at scrape time. The names
// RUNBOOK.md uses are the operators' contract and stay exact.
var (
	descQueueDepth       = desc("flux_queue_depth", "Tasks QUEUED now.")
	descQueueCapacity    = desc("flux_queue_capacity", "Bound of the queue; submissions beyond it are refused with 429.")
	descQueueOldest      = desc("flux_queue_oldest_task_age", "Seconds the oldest QUEUED task has waited (0 when the queue is empty).")
	descInFlight         = desc("flux_tasks_in_flight", "Tasks ASSIGNED or RUNNING.")
	descMode             = desc("flux_scheduler_mode", "1 for the scheduler's current mode, 0 for the others.", "mode")
	descModeBySelf       = desc("flux_scheduler_mode_self_protection", "1 when the current mode was set by self-protection.")
	descPaused           = desc("flux_scheduler_rescheduling_paused", "1 while mass-disconnect protection pauses rescheduling.")
	descDrained          = desc("flux_scheduler_drained", "1 when DRAINING and nothing is queued or in flight.")
	descDecisions        = desc("flux_scheduler_decisions_total", "Placement decisions, by outcome (assigned, no_capacity, domain_isolated, ...).", "outcome")
	descDomainFailure    = desc("flux_domain_failure_rate", "Failure rate of a failure domain over its sliding window.", "domain")
	descDomainState      = desc("flux_domain_state", "1 for the domain's isolation state, 0 for the others.", "domain", "state")
	descDomainActive     = desc("flux_domain_active", "Tasks ASSIGNED or RUNNING in a domain.", "domain")
	descDomainQueued     = desc("flux_domain_queued", "Tasks QUEUED with this domain constraint.", "domain")
	descAgentsKnown      = desc("flux_agents_known", "Registered agents per domain.", "domain")
	descAgentsConnected  = desc("flux_agents_connected", "Connected agents per domain.", "domain")
	descAgentsQuarantine = desc("flux_agents_quarantined", "Quarantined agents per domain.", "domain")
	descAgentConnected   = desc("flux_agent_connected", "1 when the agent is connected (heartbeating), 0 otherwise.", "agent", "domain")
	descAgentQuarantined = desc("flux_agent_quarantined", "1 when the agent is quarantined.", "agent", "domain")
	descAgentHealth      = desc("flux_agent_health_score", "The agent's CompositeHealthScore in [0,1].", "agent", "domain")
	descAgentRunning     = desc("flux_agent_running_tasks", "Attempts leased to the agent.", "agent", "domain")
	descAgentSlots       = desc("flux_agent_slots", "Slots the agent advertises.", "agent", "domain")
	descSubmitted        = desc("flux_tasks_submitted_total", "Submissions accepted (new tasks).")
	descReplayed         = desc("flux_tasks_replayed_total", "Submissions answered from the idempotency cache.")
	descRefused          = desc("flux_tasks_refused_total", "Submissions refused, by reason.", "reason")
	descFinished         = desc("flux_tasks_finished_total", "Tasks that reached a terminal state, by state.", "state")
	descPurged           = desc("flux_tasks_purged_total", "Queued tasks cancelled by a queue purge.")
	descRequeues         = desc("flux_requeues_total", "Tasks put back in the queue for another attempt.")
	descLostLeases       = desc("flux_lost_leases_total", "Attempts given up because the agent was lost or never confirmed them.")
	descStuckLeases      = desc("flux_stuck_leases_total", "Attempts given up as stuck (past timeout plus grace).")
	descStaleIgnored     = desc("flux_stale_reports_ignored_total", "Results or acks of superseded attempts, ignored (fencing).")
	descPoison           = desc("flux_poison_tasks_total", "Tasks declared DEAD as poison.")
	descQuarantines      = desc("flux_quarantines_total", "Agent quarantines (health and operator).")
	descQuarantineCapped = desc("flux_quarantines_capped_total", "Health quarantines withheld by the per-domain cap.")
	descModeChanges      = desc("flux_mode_changes_total", "Scheduler mode changes.")
	descAgentConnects    = desc("flux_agent_connects_total", "Agent connections (registrations and reconnections).")
	descAgentDisconnects = desc("flux_agent_disconnects_total", "Agent disconnections.")
	descReconciles       = desc("flux_reconciles_total", "Reconcile passes run.")
	descTimelineSeq      = desc("flux_timeline_last_seq", "Sequence number of the newest timeline event.")
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
		descModeBySelf, descPaused, descDrained, descDecisions, descDomainFailure, descDomainState, descDomainActive,
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
	s.mu.Lock()
	now := s.clock.Now()
	snap := s.core.Snapshot(now)
	stats := s.core.Stats()
	agents := s.core.Agents()
	s.mu.Unlock()

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
