package agent

import (
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Handler serves the agent's local HTTP API (read-only: the agent takes its
// assignments and cancels by polling the cp, never on this port):
//
//	GET  /v1/status   the agent's Status (agent token required)
//	GET  /metrics     Prometheus metrics
//	GET  /healthz     200 while the process serves
//	GET  /readyz      200 when the cp answers heartbeats and the agent is not stopping
func (d *Daemon) Handler() http.Handler {
	r := httprouter.New()
	r.GET("/v1/status", d.authorized(d.handleStatus))
	r.Handler(http.MethodGet, "/metrics", promhttp.HandlerFor(d.gatherer, promhttp.HandlerOpts{}))
	r.GET("/healthz", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		fnet.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.GET("/readyz", d.handleReady)
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fnet.WriteError(w, http.StatusNotFound, "not_found", "no route for "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fnet.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	})
	r.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		d.log.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
		fnet.WriteError(w, http.StatusInternalServerError, "internal", "internal error")
	}
	return r
}

// authorized requires the agent token.
func (d *Daemon) authorized(h httprouter.Handle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
		if !fnet.CheckToken(r, d.opts.Token) {
			d.metrics.unauthorized.Inc()
			d.log.Warn("unauthorized request", "path", r.URL.Path, "remote", r.RemoteAddr)
			fnet.WriteError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong agent token (Authorization: Bearer <token>)")
			return
		}
		h(w, r, p)
	}
}

func (d *Daemon) handleStatus(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	fnet.WriteJSON(w, http.StatusOK, d.Status())
}

func (d *Daemon) handleReady(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	d.mu.Lock()
	connected, stopping, lastErr := d.connected, d.stopping, d.lastErr
	d.mu.Unlock()
	switch {
	case stopping:
		fnet.WriteError(w, http.StatusServiceUnavailable, "stopping", "the agent is shutting down")
	case !connected:
		fnet.WriteError(w, http.StatusServiceUnavailable, "cp_unreachable", "no heartbeat reply from the cp yet: "+lastErr)
	default:
		fnet.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// metrics are the agent's own Prometheus metrics.
type metrics struct {
	d            *Daemon
	heartbeats   *prometheus.CounterVec
	polls        *prometheus.CounterVec
	rtt          prometheus.Histogram
	unauthorized prometheus.Counter

	running, slots, pending, connected, stopping, info *prometheus.Desc
	tasks, assignments, dropped                        *prometheus.Desc
}

func newMetrics(d *Daemon) *metrics {
	return &metrics{
		d: d,
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_agent_heartbeats_total", Help: "Heartbeats to the cp by result (ok, error, replaced: a newer one was built while it waited).",
		}, []string{"result"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flux_agent_polls_total", Help: "Polls to the cp for assignments and cancels, by result (ok, error).",
		}, []string{"result"}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "flux_agent_heartbeat_rtt_seconds", Help: "Round trip of heartbeats the cp answered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		unauthorized: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flux_agent_unauthorized_requests_total", Help: "Requests refused for a missing or wrong agent token.",
		}),
		running:     prometheus.NewDesc("flux_agent_running_tasks", "Attempts the agent is executing.", nil, nil),
		slots:       prometheus.NewDesc("flux_agent_slots", "Attempts the agent runs at once at most.", nil, nil),
		pending:     prometheus.NewDesc("flux_agent_pending_results", "Finished attempts whose results the cp has not acknowledged.", nil, nil),
		connected:   prometheus.NewDesc("flux_agent_cp_connected", "1 when the last heartbeat got a reply from the cp.", nil, nil),
		stopping:    prometheus.NewDesc("flux_agent_stopping", "1 while the agent shuts down.", nil, nil),
		info:        prometheus.NewDesc("flux_agent_info", "The agent's identity (value 1).", []string{"agent", "domain", "incarnation"}, nil),
		tasks:       prometheus.NewDesc("flux_agent_tasks_total", "Attempts that ended on this agent, by outcome.", []string{"outcome"}, nil),
		assignments: prometheus.NewDesc("flux_agent_assignments_total", "Assignments from the cp, by result (accepted, rejected).", []string{"result"}, nil),
		dropped:     prometheus.NewDesc("flux_agent_results_dropped_total", "Results dropped unacknowledged because too many were pending.", nil, nil),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.heartbeats, m.polls, m.rtt, m.unauthorized, m} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe implements prometheus.Collector for the metrics read from the
// agent's state.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.running, m.slots, m.pending, m.connected, m.stopping, m.info, m.tasks, m.assignments, m.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one consistent read under the
// daemon's lock.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	d := m.d
	d.mu.Lock()
	st := d.core.Stats()
	running, pending := len(d.core.Running()), d.core.PendingResults()
	connected, stopping := d.connected, d.stopping
	d.mu.Unlock()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(m.running, prometheus.GaugeValue, float64(running))
	ch <- prometheus.MustNewConstMetric(m.slots, prometheus.GaugeValue, float64(d.opts.Slots))
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(m.connected, prometheus.GaugeValue, b(connected))
	ch <- prometheus.MustNewConstMetric(m.stopping, prometheus.GaugeValue, b(stopping))
	ch <- prometheus.MustNewConstMetric(m.info, prometheus.GaugeValue, 1, string(d.opts.ID), d.opts.Domain, fmt.Sprint(d.opts.Incarnation))
	for _, o := range []struct {
		outcome core.Outcome
		n       uint64
	}{
		{core.OutcomeSucceeded, st.Succeeded}, {core.OutcomeFailed, st.Failed},
		{core.OutcomeTimeout, st.TimedOut}, {core.OutcomeCancelled, st.Cancelled},
	} {
		ch <- prometheus.MustNewConstMetric(m.tasks, prometheus.CounterValue, float64(o.n), string(o.outcome))
	}
	ch <- prometheus.MustNewConstMetric(m.assignments, prometheus.CounterValue, float64(st.Accepted), "accepted")
	ch <- prometheus.MustNewConstMetric(m.assignments, prometheus.CounterValue, float64(st.Rejected), "rejected")
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(st.ResultsDropped))
}
