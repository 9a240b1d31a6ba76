// Package scenarios holds the runbook incidents as data and code: for each,
// the fleet, the workload, the faults and operator actions on virtual time,
// and explicit expectations checked against the simulator's result at the
// end. Every scenario passes for seeds 1..20 (a test proves it); the same
// seed prints the same report byte for byte.
//
//	rep, err := scenarios.Run("agent-flap", scenarios.Params{Seed: 7})
//	rep.Write(os.Stdout, false)
package scenarios

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// Params are what a user may change about a scenario; zero means the
// scenario's own choice.
type Params struct {
	Seed     uint64
	Duration time.Duration
	Agents   int
	Zones    int
	// Trace receives the JSON-lines trace, if set.
	Trace io.Writer
}

// Scenario is one runbook incident.
type Scenario struct {
	Name        string
	Description string
	// Agents, Zones and Duration are the defaults Params may override.
	Agents, Zones int
	Duration      time.Duration
	// Build returns the run's options for a fleet of p.Agents in p.Zones
	// (already defaulted).
	Build func(p Params) sim.Options
	// Expect are checked on the result of a run without violations.
	Expect []Expectation
}

// Expectation is one thing the incident must show.
type Expectation struct {
	Name  string
	Check func(c *Context) error
}

// Context is what an expectation sees.
type Context struct {
	Params  Params
	Options sim.Options
	Result  *sim.Result
}

// Check is an expectation's verdict.
type Check struct {
	Name   string
	Passed bool
	Detail string
}

// Report is one scenario run, checked.
type Report struct {
	Scenario string
	Params   Params
	Options  sim.Options
	Result   sim.Result
	Err      error // a violated invariant (a *sim.Violation) or a setup error
	Checks   []Check
	Passed   bool
}

var all = []Scenario{agentFlap, stuckWorker, starvation, zoneOutage, queueSaturation, poisonTask, massDisconnect, drainRestart,
	smallZoneFlap, poisonSingleZone, cpCrash, cpFailover, cutHeartbeatTimeout}

// Names lists the scenarios in their documented order.
func Names() []string {
	out := make([]string, len(all))
	for i, s := range all {
		out[i] = s.Name
	}
	return out
}

// All returns every scenario.
func All() []Scenario { return slices.Clone(all) }

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range all {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// ErrUnknown is returned for a scenario name that does not exist.
type ErrUnknown struct{ Name string }

func (e ErrUnknown) Error() string {
	return fmt.Sprintf("unknown scenario %q; valid scenarios: %s", e.Name, strings.Join(Names(), ", "))
}

// Options returns the simulator options of a scenario for p.
func (sc Scenario) Options(p Params) (Params, sim.Options) {
	if p.Agents == 0 {
		p.Agents = sc.Agents
	}
	if p.Zones == 0 {
		p.Zones = sc.Zones
	}
	if p.Duration == 0 {
		p.Duration = sc.Duration
	}
	o := sc.Build(p)
	o.Name, o.Seed, o.Agents, o.Zones, o.Duration, o.Trace = sc.Name, p.Seed, p.Agents, p.Zones, p.Duration, p.Trace
	return p, o
}

// Run runs the named scenario and checks its expectations.
func Run(name string, p Params) (Report, error) {
	sc, ok := Lookup(name)
	if !ok {
		return Report{}, ErrUnknown{name}
	}
	return sc.Run(p), nil
}

// Run runs the scenario with p and checks its expectations. The report
// passes only when no invariant broke and every expectation holds.
func (sc Scenario) Run(p Params) Report {
	p, o := sc.Options(p)
	rep := Report{Scenario: sc.Name, Params: p, Options: o}
	res, err := sim.Run(o)
	rep.Result, rep.Err = res, err
	rep.Passed = err == nil
	if err != nil {
		rep.Checks = append(rep.Checks, Check{Name: "invariants hold", Detail: err.Error()})
		return rep
	}
	rep.Checks = append(rep.Checks, Check{Name: "invariants hold", Passed: true})
	ctx := &Context{Params: p, Options: o, Result: &rep.Result}
	for _, e := range sc.Expect {
		c := Check{Name: e.Name, Passed: true}
		if err := e.Check(ctx); err != nil {
			c.Passed, c.Detail = false, err.Error()
			rep.Passed = false
		}
		rep.Checks = append(rep.Checks, c)
	}
	return rep
}

// ---- shared building blocks ----

// base returns the options every scenario starts from.
func base(p Params) sim.Options {
	o := sim.DefaultOptions()
	o.Agents, o.Zones, o.Duration = p.Agents, p.Zones, p.Duration
	return o
}

// steady is an unconstrained sleep workload.
func steady(name string, start, end time.Duration, rate float64, dmin, dmax time.Duration) sim.Workload {
	return sim.Workload{Name: name, Start: start, End: end, RatePerSecond: rate,
		PriorityWeights: [3]float64{1, 3, 1}, DurationMin: dmin, DurationMax: dmax, TimeoutSeconds: 30, MaxAttempts: 3,
		IdempotentFraction: 0.1, ResubmitFraction: 0.5, ConflictFraction: 0.1}
}

// agentsOf lists the agent ids of zone z (0-based) in a fleet.
func agentsOf(p Params, z int) []string {
	var out []string
	for i := range p.Agents {
		if i%p.Zones == z {
			out = append(out, sim.AgentID(i, p.Zones))
		}
	}
	return out
}

// events returns the timeline events of type typ, optionally for one agent.
func events(r *sim.Result, typ core.EventType, agent string) []sim.TimelineEvent {
	var out []sim.TimelineEvent
	for _, e := range r.Events {
		if e.Type == typ && (agent == "" || string(e.AgentID) == agent) {
			out = append(out, e)
		}
	}
	return out
}

// eventsOfKind returns the timeline events of one kind (core.EventDomain, ...).
func eventsOfKind(r *sim.Result, kind string) []sim.TimelineEvent {
	var out []sim.TimelineEvent
	for _, e := range r.Events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func at(e sim.TimelineEvent) time.Duration { return e.Time.Sub(sim.Epoch()) }

// nothingLost: every accepted task reached a terminal state; none vanished.
var nothingLost = Expectation{Name: "nothing lost: every accepted task finished", Check: func(c *Context) error {
	r := c.Result
	if r.Lost > 0 || r.NonTerminal > 0 {
		return fmt.Errorf("%d lost, %d still unfinished of %d submitted", r.Lost, r.NonTerminal, r.Submitted)
	}
	if r.Submitted == 0 {
		return fmt.Errorf("no task was accepted")
	}
	return nil
}}

// allSucceeded: every accepted non-poison task succeeded.
var allSucceeded = Expectation{Name: "every accepted task succeeded", Check: func(c *Context) error {
	for _, t := range c.Result.Tasks {
		if !t.Poison && t.State != core.TaskSucceeded {
			return fmt.Errorf("task %s (gen %d) is %s: %s", t.ID, t.Gen, t.State, t.Reason)
		}
	}
	return nil
}}

var noDuplicates = Expectation{Name: "no duplicate execution", Check: func(c *Context) error {
	if n := c.Result.DuplicateExecutions; n > 0 {
		for _, t := range c.Result.Tasks {
			if t.Successes > 1 {
				return fmt.Errorf("%d tasks ran to success more than once, e.g. %s on %v", n, t.ID, t.Agents)
			}
		}
	}
	return nil
}}
