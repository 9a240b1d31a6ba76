package sim

import (
	"fmt"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// faultAgents resolves the agents a fault hits.
func (s *sim) faultAgents(f Fault) []*simAgent {
	var out []*simAgent
	switch {
	case len(f.Agents) > 0:
		for _, id := range f.Agents {
			out = append(out, s.byID[id])
		}
	case f.Kind == FaultZoneOutage:
		for _, a := range s.agents {
			if a.zone == f.Zone {
				out = append(out, a)
			}
		}
	case f.Kind == FaultCutOff:
		n := int(f.Fraction*float64(len(s.agents)) + 0.5)
		out = append(out, s.agents[:min(n, len(s.agents))]...)
	}
	return out
}

func ids(as []*simAgent) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.id
	}
	return out
}

func (s *sim) faultStart(i int) {
	f := s.o.Faults[i]
	as := s.faultAgents(f)
	s.tr.begin(s.now, s.count, "fault_start")
	s.tr.str("fault", string(f.Kind))
	s.tr.int("index", int64(i))
	s.tr.end()
	switch f.Kind {
	case FaultCrash:
		s.note(fmt.Sprintf("fault: crash %v", ids(as)))
		for _, a := range as {
			if a.up {
				a.up = false
				a.inc++ // every pending event of the old process dies with it
				a.wakeSet = false
			}
		}
	case FaultFlap:
		s.push(event{at: s.now, kind: evFlapDown, node: i})
	case FaultStuck:
		s.note(fmt.Sprintf("fault: stuck worker on %v", ids(as)))
		for _, a := range as {
			a.stuck++
		}
	case FaultSlow:
		s.note(fmt.Sprintf("fault: slow agents %v (+%v latency, work x%.1f)", ids(as), f.Latency, max(f.Factor, 1)))
		for _, a := range as {
			a.slow++
			a.latency += f.Latency
			a.factor = max(a.factor, f.Factor, 1)
		}
	case FaultZoneOutage:
		if f.Failing {
			s.note(fmt.Sprintf("fault: zone %s failing (%d agents)", f.Zone, len(as)))
			for _, a := range as {
				a.failing++
			}
		} else {
			s.note(fmt.Sprintf("fault: zone %s partitioned from cp (%d agents)", f.Zone, len(as)))
			for _, a := range as {
				a.cut++
			}
		}
	case FaultCutOff:
		s.note(fmt.Sprintf("fault: cp cut off from %d of %d agents", len(as), len(s.agents)))
		for _, a := range as {
			a.cut++
		}
	case FaultCPRestart:
		s.maybeRestart(i)
	case FaultCPCrash:
		s.crashCP(i)
	case FaultCPFailover:
		s.loseLeader(i)
	}
}

func (s *sim) faultEnd(i int) {
	f := s.o.Faults[i]
	as := s.faultAgents(f)
	s.tr.begin(s.now, s.count, "fault_end")
	s.tr.str("fault", string(f.Kind))
	s.tr.int("index", int64(i))
	s.tr.end()
	switch f.Kind {
	case FaultCrash:
		s.note(fmt.Sprintf("heal: restart %v", ids(as)))
		for _, a := range as {
			if !a.up {
				s.startAgent(a)
			}
		}
	case FaultFlap:
		return // the flap cycle ends itself at its last up
	case FaultStuck:
		s.note(fmt.Sprintf("heal: workers of %v unstuck", ids(as)))
		for _, a := range as {
			a.stuck--
		}
	case FaultSlow:
		s.note(fmt.Sprintf("heal: %v fast again", ids(as)))
		for _, a := range as {
			a.slow--
			a.latency -= f.Latency
			if a.slow == 0 {
				a.factor = 1
			}
		}
	case FaultZoneOutage:
		s.note(fmt.Sprintf("heal: zone %s back", f.Zone))
		for _, a := range as {
			if f.Failing {
				a.failing--
			} else {
				a.cut--
			}
		}
	case FaultCutOff:
		s.note(fmt.Sprintf("heal: cp reachable from %d agents again", len(as)))
		for _, a := range as {
			a.cut--
		}
	}
	s.faultsPending--
	s.healed()
}

// maybeRestart restarts the cp now, or once it is drained when the fault
// asks for that (an operator waiting for queue_depth 0, as the runbook
// said before the cp was durable). A cp that is down is restarted once it
// is back.
func (s *sim) maybeRestart(i int) {
	f := s.o.Faults[i]
	if s.down != nil || f.WhenDrained && !s.cp.DebugView(s.t).Drained && s.now < f.Until {
		s.push(event{at: s.now + time.Second, kind: evRestartPoll, node: i})
		return
	}
	snap := s.cp.DebugView(s.t)
	s.note(fmt.Sprintf("fault: cp restart (drained=%v, queue %d, in flight %d)", snap.Drained, snap.QueueDepth, snap.InFlight))
	s.restartCP(i)
}

func (s *sim) operator(e event) {
	op := s.o.Ops[e.node]
	reason := op.Reason
	if s.down != nil {
		// The operator's request finds no cp: they try again once it is
		// back, in the order they meant (a READ_ONLY before its NORMAL).
		s.down.ops = append(s.down.ops, e.node)
		return
	}
	if op.SetMode != "" {
		_, err := s.apply(core.SetModeInput{Mode: op.SetMode, Actor: core.ActorOperator, Reason: reason})
		s.note(fmt.Sprintf("operator: set mode %s (%v)", op.SetMode, errText(err)))
		s.afterCP()
		if op.SetMode == core.ModeNormal {
			// An operator's hold (READ_ONLY, DRAINING) ends like a fault:
			// liveness is owed from here.
			s.healed()
		}
	}
	if op.Purge != nil {
		in := *op.Purge
		if in.Reason == "" {
			in.Reason = reason
		}
		res, err := s.apply(in)
		s.note(fmt.Sprintf("operator: purge purged %d (%v)", res.Purged, errText(err)))
		s.afterCP()
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// ---- metrics ----

// sample records the metric time series under the cp's names and labels
// (core.Metrics()); a histogram is recorded as its _count.
func (s *sim) sample() {
	if s.down != nil {
		return // no process to scrape
	}
	snap := s.cp.DebugView(s.t)
	st := s.cp.Stats()

	if snap.OldestTaskAgeSeconds > s.res.MaxOldestAgeSeconds {
		s.res.MaxOldestAgeSeconds = snap.OldestTaskAgeSeconds
	}
	ms := []Metric{
		{Name: core.MetricQueueDepth, Value: float64(snap.QueueDepth)},
		{Name: core.MetricQueueCapacity, Value: float64(snap.QueueCapacity)},
		{Name: core.MetricQueueOldestTaskAge, Value: snap.OldestTaskAgeSeconds},
		{Name: core.MetricTasksInFlight, Value: float64(snap.InFlight)},
		{Name: core.MetricReconcileDuration + "_count", Value: float64(st.Reconciles)},
		{Name: core.MetricSchedulerReschedulingPaused, Value: b2f(snap.ReschedulingPaused)},
		{Name: core.MetricIsolationPanic, Value: b2f(snap.IsolationPanic.Active)},
	}
	for _, m := range []core.Mode{core.ModeNormal, core.ModeDegraded, core.ModeReadOnly, core.ModeDraining} {
		ms = append(ms, Metric{Name: core.MetricSchedulerMode, Labels: []Label{{core.LabelMode, string(m)}}, Value: b2f(snap.Mode == m)})
	}
	outcomes := make([]string, 0, len(st.Decisions))
	for k := range st.Decisions {
		outcomes = append(outcomes, k)
	}
	slices.Sort(outcomes)
	for _, k := range outcomes {
		ms = append(ms, Metric{Name: core.MetricSchedulerDecisions, Labels: []Label{{core.LabelOutcome, k}}, Value: float64(st.Decisions[k])})
	}
	for _, d := range snap.Domains {
		dl := []Label{{core.LabelDomain, d.Name}}
		ms = append(ms,
			Metric{Name: core.MetricDomainFailureRate, Labels: dl, Value: d.FailureRate},
			Metric{Name: core.MetricDomainActive, Labels: dl, Value: float64(d.Active)},
			Metric{Name: core.MetricAgentsConnected, Labels: dl, Value: float64(d.AgentsConnected)},
			Metric{Name: core.MetricAgentsQuarantined, Labels: dl, Value: float64(d.AgentsQuarantined)},
		)
		for _, st := range []core.DomainState{core.DomainOpen, core.DomainThrottled, core.DomainIsolated, core.DomainProbing} {
			ms = append(ms, Metric{Name: core.MetricDomainState, Labels: []Label{{core.LabelDomain, d.Name}, {core.LabelState, string(st)}}, Value: b2f(d.State == st)})
		}
	}
	if len(s.agents) <= s.o.PerAgentSeriesMax {
		for _, v := range s.cp.Agents() {
			ms = append(ms, Metric{Name: core.MetricAgentConnected, Labels: []Label{{core.LabelAgent, string(v.ID)}, {core.LabelDomain, v.Domain}}, Value: b2f(v.Connected)})
		}
	}
	s.res.Series = append(s.res.Series, Sample{At: s.now, Metrics: ms})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// finish fills the result's totals.
func (s *sim) finish() {
	s.res.End = s.now
	s.res.SimEvents = s.count
	s.res.TraceHash, s.res.TraceLines, s.res.TraceBytes = s.tr.sum(), s.tr.lines, s.tr.bytes
	s.res.Stats = s.cp.Stats()
	s.res.Final = s.cp.DebugView(s.t)
	for _, mt := range s.m.all {
		r := mt.rec
		r.State = mt.state
		r.Attempt = mt.attempt
		s.res.Tasks = append(s.res.Tasks, r)
		switch mt.state {
		case core.TaskSucceeded:
			s.res.Succeeded++
		case core.TaskFailed:
			s.res.Failed++
		case core.TaskDead:
			s.res.Dead++
		case core.TaskCancelled:
			s.res.Cancelled++
		default:
			if !mt.lost {
				s.res.NonTerminal++
			}
		}
		if r.Successes > 1 {
			s.res.DuplicateExecutions++
		}
		s.res.Requeues += r.Requeues
	}
}
