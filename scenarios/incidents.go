package scenarios

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// flapper is the agent that flaps in agent-flap.
func flapper(p Params) string { return sim.AgentID(0, p.Zones) }

var agentFlap = Scenario{
	Name: "agent-flap",
	Description: "One agent loses its link to the cp for 55s, then flaps (25s down, 10s up) four times, then stays up. " +
		"It must be quarantined within 3 flaps (log line \"" + core.QuarantineLogLine + "\"), its tasks must finish " +
		"elsewhere, and it must be released once stable for its back-off; nothing is lost.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		o.Workload = []sim.Workload{steady("flap", 0, 6*time.Minute, 0.15*float64(p.Agents)/2, 5*time.Second, 20*time.Second)}
		// One long outage (its tasks are declared lost and move), then
		// quick flaps.
		o.Faults = []sim.Fault{
			{Kind: sim.FaultFlap, Agents: []string{flapper(p)}, At: time.Minute,
				Down: 55 * time.Second, Up: 20 * time.Second, Until: 135 * time.Second},
			{Kind: sim.FaultFlap, Agents: []string{flapper(p)}, At: 135 * time.Second,
				Down: 25 * time.Second, Up: 10 * time.Second, Until: 275 * time.Second},
		}
		return o
	},
	Expect: []Expectation{
		{Name: "the flapping agent is quarantined within 3 flaps with the runbook's log line", Check: func(c *Context) error {
			id := flapper(c.Params)
			q := events(c.Result, core.EventAgentQuarantined, id)
			if len(q) == 0 {
				return fmt.Errorf("%s was never quarantined (%d flaps)", id, len(events(c.Result, core.EventAgentDisconnected, id)))
			}
			first := q[0]
			if !first.HealthQuarantine() || !strings.HasPrefix(first.Reason, core.QuarantineLogLine) {
				return fmt.Errorf("quarantine (cause %q, reason %q) is not a health quarantine logged as %q", first.Cause, first.Reason, core.QuarantineLogLine)
			}
			flaps := 0
			for _, e := range events(c.Result, core.EventAgentDisconnected, id) {
				if e.Gen == first.Gen && e.Seq < first.Seq {
					flaps++
				}
			}
			if flaps > 3 {
				return fmt.Errorf("quarantined only after %d flaps", flaps)
			}
			return nil
		}},
		{Name: "no other agent is quarantined", Check: func(c *Context) error {
			for _, e := range events(c.Result, core.EventAgentQuarantined, "") {
				if string(e.AgentID) != flapper(c.Params) {
					return fmt.Errorf("%s quarantined too: %s", e.AgentID, e.Reason)
				}
			}
			return nil
		}},
		{Name: "the flapping agent's lost tasks finish elsewhere", Check: func(c *Context) error {
			id := core.AgentID(flapper(c.Params))
			moved := 0
			for _, t := range c.Result.Tasks {
				i := slices.Index(t.Agents, id)
				if i < 0 || i == len(t.Agents)-1 {
					continue
				}
				if t.State != core.TaskSucceeded {
					return fmt.Errorf("task %s moved off %s but ended %s: %s", t.ID, id, t.State, t.Reason)
				}
				if t.Agents[len(t.Agents)-1] != id {
					moved++
				}
			}
			if moved == 0 {
				return fmt.Errorf("no task of %s was moved and finished elsewhere", id)
			}
			return nil
		}},
		{Name: "the flapping agent is released after being stable for its back-off", Check: func(c *Context) error {
			id := flapper(c.Params)
			rel := events(c.Result, core.EventAgentReleased, id)
			if len(rel) == 0 {
				return fmt.Errorf("%s was never released", id)
			}
			last := rel[len(rel)-1]
			q := events(c.Result, core.EventAgentQuarantined, id)
			if len(q) == 0 || q[len(q)-1].Seq > last.Seq {
				return fmt.Errorf("%s is quarantined again at the end", id)
			}
			backoff := c.Options.Core.Health.QuarantineBackoff(len(q))
			for _, e := range events(c.Result, core.EventAgentDisconnected, id) {
				if e.Seq < last.Seq && at(last)-at(e) < backoff {
					return fmt.Errorf("released at %v, only %v after a flap (back-off %v)", at(last), at(last)-at(e), backoff)
				}
			}
			for _, e := range events(c.Result, core.EventAgentConnected, id) {
				if e.Seq < last.Seq && at(last)-at(e) < backoff {
					return fmt.Errorf("released at %v, only %v after reconnecting (back-off %v)", at(last), at(last)-at(e), backoff)
				}
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

func stuckAgent(p Params) string { return sim.AgentID(1%p.Agents, p.Zones) }

var stuckWorker = Scenario{
	Name: "stuck-worker",
	Description: "One agent's worker hangs for four minutes: everything it starts never finishes. " +
		"Each stuck attempt must end at its timeout (agent side) or lease expiry (cp side), be requeued " +
		"with attempt+1 and finish on another agent; nothing is lost.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("stuck", 0, 5*time.Minute, 0.15*float64(p.Agents)/2, 5*time.Second, 15*time.Second)
		w.TimeoutSeconds = 20
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultStuck, Agents: []string{stuckAgent(p)}, At: time.Minute, Until: 5 * time.Minute}}
		return o
	},
	Expect: []Expectation{
		{Name: "stuck attempts are requeued with attempt+1 and finish elsewhere", Check: func(c *Context) error {
			id := core.AgentID(stuckAgent(c.Params))
			n := 0
			for _, t := range c.Result.Tasks {
				if t.Timeouts == 0 || !slices.Contains(t.Agents, id) {
					continue
				}
				n++
				if t.State != core.TaskSucceeded || t.Attempt < 2 || t.Agents[len(t.Agents)-1] == id {
					return fmt.Errorf("task %s stuck on %s ended %s at attempt %d on %v", t.ID, id, t.State, t.Attempt, t.Agents)
				}
			}
			if n == 0 {
				return fmt.Errorf("no attempt on %s timed out", id)
			}
			for _, e := range events(c.Result, core.EventTaskQueued, string(id)) {
				if e.From != "" && (strings.Contains(e.Reason, "timeout") || strings.Contains(e.Reason, "stuck")) {
					return nil
				}
			}
			return fmt.Errorf("no requeue recorded the timeout on %s", id)
		}},
		nothingLost, allSucceeded,
	},
}

var starvation = Scenario{
	Name: "starvation",
	Description: "A flood of high-priority work keeps every slot busy and the queue long for four minutes " +
		"while a trickle of low-priority work arrives: aging must start every low-priority task within 60s.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		slots := float64(p.Agents * o.SlotsPerAgent)
		flood := sim.Workload{Name: "flood", Start: 30 * time.Second, End: 4*time.Minute + 30*time.Second,
			RatePerSecond: slots / 10 * 1.02, PriorityWeights: [3]float64{1, 0, 0},
			DurationMin: 9 * time.Second, DurationMax: 11 * time.Second, TimeoutSeconds: 30, MaxAttempts: 3}
		low := flood
		low.Name, low.RatePerSecond, low.PriorityWeights = "low", 0.1, [3]float64{0, 0, 1}
		o.Workload = []sim.Workload{flood, low}
		return o
	},
	Expect: []Expectation{
		{Name: "the flood saturates the fleet (queue builds up)", Check: func(c *Context) error {
			if c.Result.MaxQueueDepth < 10 {
				return fmt.Errorf("max queue depth %d: no flood", c.Result.MaxQueueDepth)
			}
			return nil
		}},
		{Name: "every low-priority task starts within 60s", Check: func(c *Context) error {
			n := 0
			for _, t := range c.Result.Tasks {
				if t.Priority != core.PriorityLow {
					continue
				}
				n++
				if !t.Started || t.StartedAt-t.Submitted > time.Minute {
					return fmt.Errorf("low-priority task %s submitted at %v started=%v at %v", t.ID, t.Submitted, t.Started, t.StartedAt)
				}
			}
			if n == 0 {
				return fmt.Errorf("no low-priority task was submitted")
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

const outageZone = 1 // z2

var zoneOutage = Scenario{
	Name: "zone-outage",
	Description: "Every agent of zone z2 loses the cp for three minutes. The domain must be isolated as a whole " +
		"(its agents are not quarantined one by one), unconstrained work must move to the other zones, and " +
		"after the heal the domain is probed and opened again; nothing is lost.",
	Agents: 12, Zones: 3, Duration: 14 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("zone", 0, 6*time.Minute, 0.15*float64(p.Agents)/2, 5*time.Second, 20*time.Second)
		w.Domains, w.DomainFraction = []string{sim.ZoneName(outageZone)}, 0.1
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultZoneOutage, Zone: sim.ZoneName(outageZone), At: 90 * time.Second, Until: 270 * time.Second}}
		return o
	},
	Expect: []Expectation{
		{Name: "the zone is isolated, probed and reopened after the heal", Check: func(c *Context) error {
			z := sim.ZoneName(outageZone)
			var seq []string
			for _, e := range eventsOfKind(c.Result, core.EventDomain) {
				if e.Domain == z {
					seq = append(seq, e.To)
				}
			}
			i := slices.Index(seq, string(core.DomainIsolated))
			if i < 0 {
				return fmt.Errorf("domain %s never isolated (transitions %v)", z, seq)
			}
			rest := seq[i:]
			p := slices.Index(rest, string(core.DomainProbing))
			if p < 0 || !slices.Contains(rest[p:], string(core.DomainOpen)) || rest[len(rest)-1] != string(core.DomainOpen) {
				return fmt.Errorf("domain %s did not go ISOLATED → PROBING → OPEN (transitions %v)", z, seq)
			}
			return nil
		}},
		{Name: "no agent of the zone is quarantined", Check: func(c *Context) error {
			if q := events(c.Result, core.EventAgentQuarantined, ""); len(q) > 0 {
				return fmt.Errorf("%s quarantined: %s", q[0].AgentID, q[0].Reason)
			}
			return nil
		}},
		{Name: "unconstrained work of the zone moves to other zones", Check: func(c *Context) error {
			z := sim.ZoneName(outageZone) + "-"
			moved := 0
			for _, t := range c.Result.Tasks {
				if t.Domain != "" || len(t.Agents) < 2 {
					continue
				}
				last := string(t.Agents[len(t.Agents)-1])
				for _, a := range t.Agents[:len(t.Agents)-1] {
					if strings.HasPrefix(string(a), z) && !strings.HasPrefix(last, z) {
						moved++
						break
					}
				}
			}
			if moved == 0 {
				return fmt.Errorf("no unconstrained task moved from %s to another zone", sim.ZoneName(outageZone))
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

var queueSaturation = Scenario{
	Name: "queue-saturation",
	Description: "Submissions arrive far faster than the fleet runs them for two minutes (queue capacity 100). " +
		"At >= 80% for 30s the scheduler goes DEGRADED and refuses low priority with 429; a full queue refuses " +
		"with 429; it goes back to NORMAL only after 2 minutes below 60%; no accepted task is dropped.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		o.Core.QueueCapacity = 100
		w := sim.Workload{Name: "burst", Start: 30 * time.Second, End: 150 * time.Second, RatePerSecond: 4,
			PriorityWeights: [3]float64{1, 5, 4}, DurationMin: 10 * time.Second, DurationMax: 20 * time.Second,
			TimeoutSeconds: 60, MaxAttempts: 3, IdempotentFraction: 0.1, ResubmitFraction: 0.5}
		o.Workload = []sim.Workload{w}
		return o
	},
	Expect: []Expectation{
		{Name: "DEGRADED by self-protection after >= 30s at >= 80% of capacity", Check: func(c *Context) error {
			d := modeChanges(c.Result, core.ModeDegraded)
			if len(d) == 0 {
				return fmt.Errorf("never DEGRADED (max queue depth %d)", c.Result.MaxQueueDepth)
			}
			if d[0].Actor != core.ActorSelfProtection {
				return fmt.Errorf("DEGRADED set by %s", d[0].Actor)
			}
			if start := c.Options.Workload[0].Start; at(d[0]) < start+c.Options.Core.DegradedEnterAfter {
				return fmt.Errorf("DEGRADED at %v, less than %v after the burst began", at(d[0]), c.Options.Core.DegradedEnterAfter)
			}
			return nil
		}},
		{Name: "low priority refused (429) while DEGRADED, full queue refused (429)", Check: func(c *Context) error {
			if c.Result.Refused[core.RefusalDegraded] == 0 || c.Result.Refused[core.RefusalQueueFull] == 0 {
				return fmt.Errorf("refusals %v: want degraded and queue_full", c.Result.Refused)
			}
			return nil
		}},
		{Name: "back to NORMAL with hysteresis (2 minutes below 60%)", Check: func(c *Context) error {
			d := modeChanges(c.Result, core.ModeDegraded)
			n := modeChanges(c.Result, core.ModeNormal)
			var back *sim.TimelineEvent
			for i := range n {
				if len(d) > 0 && n[i].Seq > d[0].Seq {
					back = &n[i]
					break
				}
			}
			if back == nil {
				return fmt.Errorf("never back to NORMAL")
			}
			if back.Actor != core.ActorSelfProtection {
				return fmt.Errorf("NORMAL set by %s", back.Actor)
			}
			// The depth was below 60% for DegradedExitAfter before: check
			// the samples in that window.
			limit := c.Options.Core.DegradedExitFraction * float64(c.Options.Core.QueueCapacity)
			from := at(*back) - c.Options.Core.DegradedExitAfter
			for _, s := range c.Result.Series {
				if s.At > from && s.At < at(*back) {
					if v, _ := s.Value(core.MetricQueueDepth); v >= limit {
						return fmt.Errorf("NORMAL at %v but the queue was %v at %v", at(*back), v, s.At)
					}
				}
			}
			if c.Result.Final.Mode != core.ModeNormal {
				return fmt.Errorf("final mode %s", c.Result.Final.Mode)
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

func modeChanges(r *sim.Result, to core.Mode) []sim.TimelineEvent {
	var out []sim.TimelineEvent
	for _, e := range events(r, core.EventModeChanged, "") {
		if e.To == string(to) {
			out = append(out, e)
		}
	}
	return out
}

var poisonTask = Scenario{
	Name: "poison-task",
	Description: "A few tasks fail wherever they run. Each must be DEAD as poison after failing on 3 different " +
		"agents, and its failures must not count against those agents' health: no quarantine.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		normal := steady("normal", 0, 5*time.Minute, 0.1*float64(p.Agents)/2, 5*time.Second, 15*time.Second)
		poison := sim.Workload{Name: "poison", Start: 30 * time.Second, End: 4 * time.Minute, RatePerSecond: 1.0 / 30,
			Burst: 3, PriorityWeights: [3]float64{0, 1, 0}, DurationMin: 2 * time.Second, DurationMax: 4 * time.Second,
			TimeoutSeconds: 30, MaxAttempts: 5, PoisonFraction: 1}
		o.Workload = []sim.Workload{normal, poison}
		return o
	},
	Expect: []Expectation{
		{Name: "each poison task is DEAD after failing on 3 different agents", Check: func(c *Context) error {
			n := 0
			for _, t := range c.Result.Tasks {
				if !t.Poison {
					continue
				}
				n++
				distinct := map[core.AgentID]bool{}
				for _, a := range t.Agents {
					distinct[a] = true
				}
				// An attempt may also end without failing (an assignment
				// lost on the network), so 3 or more agents were tried.
				if t.State != core.TaskDead || !strings.Contains(t.Reason, "poison: failed on 3 different agents") || len(distinct) < 3 {
					return fmt.Errorf("poison task %s is %s (%q) after attempts on %v", t.ID, t.State, t.Reason, t.Agents)
				}
			}
			if n == 0 {
				return fmt.Errorf("no poison task submitted")
			}
			return nil
		}},
		{Name: "poison does not count against agent health: no quarantine", Check: func(c *Context) error {
			if q := events(c.Result, core.EventAgentQuarantined, ""); len(q) > 0 {
				return fmt.Errorf("%s quarantined: %s", q[0].AgentID, q[0].Reason)
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

// cutAgents is the part of the fleet the cp loses in mass-disconnect: every
// zone but the last, plus one agent of the last.
func cutAgents(p Params) []string {
	var out []string
	for z := 0; z < p.Zones-1; z++ {
		out = append(out, agentsOf(p, z)...)
	}
	if last := agentsOf(p, p.Zones-1); len(last) > 1 {
		out = append(out, last[0])
	}
	slices.Sort(out)
	return out
}

var massDisconnect = Scenario{
	Name: "mass-disconnect",
	Description: "The cp is cut off from 75% of the fleet for two minutes. It must presume itself cut off and " +
		"pause rescheduling (no storm onto the few agents left), and after the heal everything completes " +
		"with no task executed twice.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("mass", 0, 5*time.Minute, 0.08*float64(p.Agents)/2, 10*time.Second, 40*time.Second)
		w.TimeoutSeconds = 90
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultCutOff, Agents: cutAgents(p), At: 90 * time.Second, Until: 210 * time.Second}}
		return o
	},
	Expect: []Expectation{
		{Name: "rescheduling pauses during the cut and resumes after", Check: func(c *Context) error {
			if len(events(c.Result, core.EventSchedulerReschedulingPaused, "")) == 0 {
				return fmt.Errorf("rescheduling never paused")
			}
			if len(events(c.Result, core.EventSchedulerReschedulingResumed, "")) == 0 || c.Result.Final.ReschedulingPaused {
				return fmt.Errorf("rescheduling never resumed")
			}
			return nil
		}},
		{Name: "no rescheduling storm: no lost-agent requeues, few requeues during the cut", Check: func(c *Context) error {
			f := c.Options.Faults[0]
			if l := events(c.Result, core.EventAgentLost, ""); len(l) > 0 {
				return fmt.Errorf("%s declared lost at %v: %s", l[0].AgentID, at(l[0]), l[0].Reason)
			}
			n := 0
			for _, e := range events(c.Result, core.EventTaskQueued, "") {
				if e.From != "" && at(e) >= f.At && at(e) <= f.Until {
					n++
				}
			}
			// Only assignments sent into the cut before the cp noticed may
			// be requeued: at most one per agent slot cut off.
			if limit := len(f.Agents) * c.Options.SlotsPerAgent; n > limit {
				return fmt.Errorf("%d requeues during the cut (limit %d)", n, limit)
			}
			return nil
		}},
		nothingLost, allSucceeded, noDuplicates,
	},
}

// restartAt and normalAt are drain-restart's restart and the operator's
// return to NORMAL.
const (
	restartAt = 2*time.Minute + 2*time.Second
	normalAt  = 4 * time.Minute
)

var drainRestart = Scenario{
	Name: "drain-restart",
	Description: "The runbook's full restart on a durable cp: the operator sets DRAINING (submissions refused) and " +
		"restarts the cp at once, with work still queued and running. The cp comes back from its snapshot and log " +
		"with the same state (queue, leases, timeline, agents) and still DRAINING, keeps dispatching, and takes new " +
		"work only once the operator sets NORMAL; nothing accepted is lost.",
	Agents: 12, Zones: 3, Duration: 10 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		before := steady("before", 0, 150*time.Second, 0.15*float64(p.Agents)/2, 5*time.Second, 20*time.Second)
		// A burst just before the drain: work is queued at the restart.
		rush := steady("rush", 115*time.Second, 115*time.Second, 0, 10*time.Second, 20*time.Second)
		rush.Burst = 3 * p.Agents * o.SlotsPerAgent / 2
		after := steady("after", 240*time.Second, 6*time.Minute, 0.1*float64(p.Agents)/2, 5*time.Second, 20*time.Second)
		o.Workload = []sim.Workload{before, rush, after}
		o.Ops = []sim.OperatorAction{
			{At: 2 * time.Minute, SetMode: core.ModeDraining, Reason: "planned restart"},
			{At: normalAt, SetMode: core.ModeNormal, Reason: "restart done"},
		}
		o.Faults = []sim.Fault{{Kind: sim.FaultCPRestart, At: restartAt}}
		return o
	},
	Expect: []Expectation{
		{Name: "DRAINING refuses submissions", Check: func(c *Context) error {
			if c.Result.Refused[core.RefusalMode] == 0 {
				return fmt.Errorf("no submission refused while draining (refusals %v)", c.Result.Refused)
			}
			return nil
		}},
		{Name: "the cp restarts with work queued and running and recovers it all", Check: func(c *Context) error {
			r := c.Result
			if len(r.Recoveries) != 1 || r.CPGenerations != 2 {
				return fmt.Errorf("%d recoveries, %d cp generations, want 1 and 2", len(r.Recoveries), r.CPGenerations)
			}
			var before, after string
			for _, n := range r.Notes {
				if strings.HasPrefix(n.Text, "fault: cp restart") {
					before = n.Text
				}
				if strings.HasPrefix(n.Text, "cp recovered") {
					after = n.Text
				}
			}
			var q, f, q2, f2 int
			if _, err := fmt.Sscanf(strings.TrimPrefix(before, "fault: cp restart (drained=false, "), "queue %d, in flight %d)", &q, &f); err != nil {
				return fmt.Errorf("restart note %q: %v (the cp must restart undrained)", before, err)
			}
			if _, err := fmt.Sscanf(after[strings.Index(after, "queue "):], "queue %d, in flight %d,", &q2, &f2); err != nil {
				return fmt.Errorf("recovery note %q: %v", after, err)
			}
			if q == 0 || f == 0 || q != q2 || f != f2 {
				return fmt.Errorf("restarted with queue %d and %d in flight, recovered queue %d and %d in flight", q, f, q2, f2)
			}
			return nil
		}},
		{Name: "the cp restarted in DRAINING stays DRAINING until the operator sets NORMAL", Check: func(c *Context) error {
			var modes []string
			for _, e := range events(c.Result, core.EventModeChanged, "") {
				modes = append(modes, fmt.Sprintf("%s %s→%s by %s", clockDur(at(e)), e.From, e.To, e.Actor))
			}
			want := []string{
				fmt.Sprintf("%s →%s by %s", clockDur(0), core.ModeNormal, core.ActorConfig),
				fmt.Sprintf("%s %s→%s by %s", clockDur(2*time.Minute), core.ModeNormal, core.ModeDraining, core.ActorOperator),
				fmt.Sprintf("%s %s→%s by %s", clockDur(normalAt), core.ModeDraining, core.ModeNormal, core.ActorOperator),
			}
			if !slices.Equal(modes, want) {
				return fmt.Errorf("mode changes %q, want %q", modes, want)
			}
			for _, n := range c.Result.Notes {
				if strings.HasPrefix(n.Text, "cp recovered") && !strings.Contains(n.Text, "mode "+string(core.ModeDraining)) {
					return fmt.Errorf("recovered not DRAINING: %s", n.Text)
				}
			}
			return nil
		}},
		{Name: "the timeline goes on across the restart and the agents stay registered", Check: func(c *Context) error {
			var last uint64
			for _, e := range c.Result.Events {
				if e.Seq != last+1 {
					return fmt.Errorf("event %d (%s, cp%d) follows %d", e.Seq, e.Type, e.Gen, last)
				}
				last = e.Seq
			}
			if n := len(events(c.Result, core.EventAgentRegistered, "")); n != c.Params.Agents {
				return fmt.Errorf("%d agent registrations, want one per agent (%d)", n, c.Params.Agents)
			}
			if c.Result.Final.Agents.Connected != c.Params.Agents {
				return fmt.Errorf("%d of %d agents connected at the end", c.Result.Final.Agents.Connected, c.Params.Agents)
			}
			return nil
		}},
		{Name: "work submitted after the restart runs under the new start's id prefix", Check: func(c *Context) error {
			n := 0
			for _, t := range c.Result.Tasks {
				if t.Gen == 1 {
					n++
					if !strings.HasPrefix(string(t.ID), "r1-") {
						return fmt.Errorf("task %s accepted after the restart lacks the prefix r1-", t.ID)
					}
				}
			}
			if n == 0 {
				return fmt.Errorf("no task accepted after the restart")
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}

// cpCrashes draws cp-crash's three crash moments from the seed: any
// millisecond in [1m, 7m], at least 40s apart (so between any two events of
// the run, not only at a tick), each down for 2 to 8 seconds.
func cpCrashes(p Params) []sim.Fault {
	r := rand.New(rand.NewPCG(p.Seed, 0xc4a5))
	var out []sim.Fault
	for len(out) < 3 {
		at := time.Minute + time.Duration(r.IntN(360_000))*time.Millisecond
		if slices.ContainsFunc(out, func(f sim.Fault) bool { return (f.At - at).Abs() < 40*time.Second }) {
			continue
		}
		down := time.Duration(2+r.IntN(7)) * time.Second
		out = append(out, sim.Fault{Kind: sim.FaultCPCrash, At: at, Until: at + down, InFlight: 2})
	}
	slices.SortFunc(out, func(a, b sim.Fault) int { return int(a.At - b.At) })
	return out
}

var cpCrash = Scenario{
	Name: "cp-crash",
	Description: "Steady work while the cp is killed (kill -9) three times at random moments and is down for a few " +
		"seconds each time; two submissions are in flight at each crash (each commits or is lost, unacknowledged). " +
		"Each time the cp recovers from its last snapshot plus the committed log to exactly the state it died in " +
		"(same state_hash); nothing acknowledged is lost, and every task ends SUCCEEDED exactly once in the cp's view.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("steady", 0, 8*time.Minute, 0.15*float64(p.Agents)/2, 5*time.Second, 20*time.Second)
		w.IdempotentFraction = 0.5
		o.Workload = []sim.Workload{w}
		o.Faults = cpCrashes(p)
		// Snapshots often enough that every recovery replays entries on
		// top of a snapshot taken during the run.
		o.SnapshotEveryEntries = 300
		return o
	},
	Expect: []Expectation{
		{Name: "the cp crashes 3 times and each recovery reaches the state it died in (snapshot + log)", Check: func(c *Context) error {
			r := c.Result
			if len(r.Recoveries) != 3 {
				return fmt.Errorf("%d recoveries, want 3", len(r.Recoveries))
			}
			for i, rec := range r.Recoveries {
				f := c.Options.Faults[i]
				switch {
				case !rec.Crash || rec.CrashedAt != f.At || rec.At != f.Until:
					return fmt.Errorf("recovery %d: crash %v at %v, back at %v; the fault says %v to %v", i, rec.Crash, rec.CrashedAt, rec.At, f.At, f.Until)
				case rec.SnapshotIndex == 0 || rec.StateHash == "":
					return fmt.Errorf("recovery %d did not start from a snapshot taken during the run (index %d)", i, rec.SnapshotIndex)
				case rec.SnapshotIndex+uint64(rec.Replayed) != rec.AppliedIndex:
					return fmt.Errorf("recovery %d: snapshot %d + %d entries is not applied index %d", i, rec.SnapshotIndex, rec.Replayed, rec.AppliedIndex)
				}
			}
			if n := r.InFlightCommitted + r.InFlightLost; n != 6 {
				return fmt.Errorf("%d submissions in flight at the crashes, want 6", n)
			}
			return nil
		}},
		{Name: "submissions while the cp is down find no process", Check: func(c *Context) error {
			// At 0.9 submissions/s, 3 downtimes of 2-8s see some.
			if c.Result.Unavailable == 0 && c.Result.Recoveries != nil {
				down := time.Duration(0)
				for _, rec := range c.Result.Recoveries {
					down += rec.At - rec.CrashedAt
				}
				if down > 15*time.Second {
					return fmt.Errorf("no submission refused in %v of downtime", down)
				}
			}
			return nil
		}},
		nothingLost,
		{Name: "every task ends SUCCEEDED exactly once in the cp's view", Check: func(c *Context) error {
			succeeded := map[core.TaskID]int{}
			for _, e := range events(c.Result, core.EventTaskSucceeded, "") {
				succeeded[e.TaskID]++
			}
			for _, t := range c.Result.Tasks {
				if t.State != core.TaskSucceeded || succeeded[t.ID] != 1 {
					return fmt.Errorf("task %s is %s with %d success events: %s", t.ID, t.State, succeeded[t.ID], t.Reason)
				}
			}
			return nil
		}},
		{Name: "a task runs to success more than once only if the cp gave an attempt up (at-least-once)", Check: func(c *Context) error {
			// The log loses nothing committed, and an assignment is sent only
			// once committed, so a crash alone never runs a task twice; an
			// agent that stays silent past the heartbeat timeout may.
			for _, t := range c.Result.Tasks {
				if t.Successes > 1 && t.Attempt < 2 {
					return fmt.Errorf("task %s ran to success %d times in one attempt on %v", t.ID, t.Successes, t.Agents)
				}
			}
			return nil
		}},
	},
}

// cpFailovers draws cp-failover's four leader changes from the seed: any
// millisecond in [1m, 7m], at least 40s apart, each with an election of 1
// to 3 seconds, two submissions in flight and a new leader whose clock is
// up to a second off the old one's.
func cpFailovers(p Params) []sim.Fault {
	r := rand.New(rand.NewPCG(p.Seed, 0xfa11))
	var out []sim.Fault
	for len(out) < 4 {
		at := time.Minute + time.Duration(r.IntN(360_000))*time.Millisecond
		if slices.ContainsFunc(out, func(f sim.Fault) bool { return (f.At - at).Abs() < 40*time.Second }) {
			continue
		}
		election := time.Second + time.Duration(r.IntN(2001))*time.Millisecond
		out = append(out, sim.Fault{Kind: sim.FaultCPFailover, At: at, Until: at + election, InFlight: 2, Skew: time.Second})
	}
	slices.SortFunc(out, func(a, b sim.Fault) int { return int(a.At - b.At) })
	return out
}

var cpFailover = Scenario{
	Name: "cp-failover",
	Description: "Steady work on a three-zone fleet while the cp runs as three replicas on one log and loses its leader " +
		"four times at random moments: two submissions and the agents' messages in flight to the leader are ambiguous " +
		"(committed or lost, never acknowledged), no replica leads for a 1-3s election (heartbeats and submissions fail), " +
		"then another replica takes over from the committed prefix (same state_hash) with its clock up to a second off " +
		"and applies the takeover (a heartbeat timeout of grace, unconfirmed assignments resent). Nothing acknowledged is " +
		"lost, no storm (no disconnection, requeue or quarantine), no task runs twice, every task ends SUCCEEDED.",
	Agents: 12, Zones: 3, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("steady", 0, 8*time.Minute, 0.15*float64(p.Agents)/2, 5*time.Second, 20*time.Second)
		w.IdempotentFraction = 0.5
		o.Workload = []sim.Workload{w}
		o.Faults = cpFailovers(p)
		o.SnapshotEveryEntries = 300
		// No message loss besides the failovers' (duplicates and
		// reordering stay): a lost assignment is requeued after its
		// AssignTimeout, and every requeue here must be the takeover's.
		o.Network.LossProbability = 0
		return o
	},
	Expect: []Expectation{
		{Name: "the leader changes 4 times, each new leader starts from the committed prefix and records cluster.takeover", Check: func(c *Context) error {
			r := c.Result
			if len(r.Failovers) != 4 {
				return fmt.Errorf("%d failovers, want 4", len(r.Failovers))
			}
			takeovers := events(r, core.EventLeaderTakeover, "")
			if len(takeovers) != 4 {
				return fmt.Errorf("%d %s events, want 4", len(takeovers), core.EventLeaderTakeover)
			}
			for i, fo := range r.Failovers {
				f := c.Options.Faults[i]
				switch {
				case fo.LostAt != f.At || fo.At != f.Until:
					return fmt.Errorf("failover %d: leader lost at %v, new one at %v; the fault says %v to %v", i, fo.LostAt, fo.At, f.At, f.Until)
				case fo.Epoch != i+2 || fo.From == fo.To:
					return fmt.Errorf("failover %d: epoch %d, %s to %s", i, fo.Epoch, fo.From, fo.To)
				case fo.Skew.Abs() > f.Skew:
					return fmt.Errorf("failover %d: the new leader's clock is %v off, bound %v", i, fo.Skew, f.Skew)
				case (at(takeovers[i])-fo.At).Abs() > f.Skew || !strings.HasPrefix(takeovers[i].Reason, fo.To+" took over"):
					// The event bears the new leader's clock.
					return fmt.Errorf("failover %d: takeover event at %v (%s), the new leader %s took over at %v (clock %v)", i, at(takeovers[i]), takeovers[i].Reason, fo.To, fo.At, fo.Skew)
				}
			}
			if n := r.InFlightCommitted + r.InFlightLost; n != 8 {
				return fmt.Errorf("%d submissions in flight at the failovers, want 8", n)
			}
			return nil
		}},
		nothingLost, allSucceeded,
		{Name: "no storm: no agent disconnected, lost or quarantined, no task requeued", Check: func(c *Context) error {
			for _, typ := range []core.EventType{core.EventAgentDisconnected, core.EventAgentLost, core.EventAgentQuarantined} {
				if es := events(c.Result, typ, ""); len(es) > 0 {
					return fmt.Errorf("%d %s events, e.g. %s at %v: %s", len(es), typ, es[0].AgentID, clockDur(at(es[0])), es[0].Reason)
				}
			}
			for _, t := range c.Result.Tasks {
				if t.Requeues > 0 {
					return fmt.Errorf("task %s requeued %d times (agents %v): %s", t.ID, t.Requeues, t.Agents, t.Reason)
				}
			}
			return nil
		}},
		{Name: "no task runs twice: one attempt, one execution, one success each", Check: func(c *Context) error {
			for _, t := range c.Result.Tasks {
				if t.Attempt != 1 || t.Executions != 1 || t.Successes != 1 {
					return fmt.Errorf("task %s: attempt %d, %d executions, %d successes on %v", t.ID, t.Attempt, t.Executions, t.Successes, t.Agents)
				}
			}
			return nil
		}},
	},
}

// clockDur is d as m:ss.
func clockDur(d time.Duration) string {
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// quarantinedWithin checks that agent id was quarantined with the runbook's
// log line after at most flaps disconnections.
func quarantinedWithin(r *sim.Result, id string, flaps int) error {
	q := events(r, core.EventAgentQuarantined, id)
	if len(q) == 0 {
		return fmt.Errorf("%s was never quarantined (%d flaps)", id, len(events(r, core.EventAgentDisconnected, id)))
	}
	first := q[0]
	if !first.HealthQuarantine() || !strings.HasPrefix(first.Reason, core.QuarantineLogLine) {
		return fmt.Errorf("quarantine (cause %q, reason %q) is not a health quarantine logged as %q", first.Cause, first.Reason, core.QuarantineLogLine)
	}
	n := 0
	for _, e := range events(r, core.EventAgentDisconnected, id) {
		if e.Gen == first.Gen && e.Seq < first.Seq {
			n++
		}
	}
	if n > flaps {
		return fmt.Errorf("quarantined only after %d flaps", n)
	}
	return nil
}

// neverIsolated checks that domain z never went ISOLATED.
func neverIsolated(r *sim.Result, z string) error {
	for _, e := range eventsOfKind(r, core.EventDomain) {
		if e.Domain == z && e.To == string(core.DomainIsolated) {
			return fmt.Errorf("domain %s ISOLATED at %v: %s", z, at(e), e.Reason)
		}
	}
	return nil
}

// assignGaps walks the timeline and returns the longest stretch in which
// tasks of domain z were queued and none was assigned to agent id, and
// when it ended.
func assignGaps(r *sim.Result, z, id string) (longest, end time.Duration) {
	domain := map[core.TaskID]string{}
	for _, t := range r.Tasks {
		domain[t.ID] = t.Domain
	}
	queued := 0
	since := time.Duration(-1) // start of the current stretch, -1: none
	stretch := func(now time.Duration) {
		if since >= 0 && now-since > longest {
			longest, end = now-since, now
		}
	}
	for _, e := range r.Events {
		if e.Kind != core.EventTask || e.To == "" || domain[e.TaskID] != z {
			continue
		}
		now := at(e)
		if e.To == core.TaskAssigned.String() && string(e.AgentID) == id {
			stretch(now)
			since = now
		}
		switch {
		case e.To == core.TaskQueued.String():
			queued++
		case e.From == core.TaskQueued.String():
			queued--
		}
		switch {
		case queued == 0:
			stretch(now)
			since = -1
		case since < 0:
			since = now
		}
	}
	return longest, end
}

// smallFlapper is the flapping agent of small-zone-flap, healthyPeer the
// other agent of its zone.
func smallFlapper(p Params) string { return sim.AgentID(0, p.Zones) }
func healthyPeer(p Params) string  { return sim.AgentID(p.Zones%p.Agents, p.Zones) }

// smallZoneGapMax is the longest small-zone-flap lets its zone's queued
// work wait with no assignment to the zone's healthy agent: tasks run 2-10s
// and results come with the 5s heartbeats, so a slot frees well within it;
// a domain isolation (its cool-down alone is 30s) does not fit.
const smallZoneGapMax = 30 * time.Second

var smallZoneFlap = Scenario{
	Name: "small-zone-flap",
	Description: "Zones of two agents. One agent flaps: down 20s (longer than the heartbeat timeout), up 10s, six " +
		"times, while steady work runs and a quarter of it is pinned to its zone. A flapping node is not an outage: " +
		"it must be quarantined within 4 flaps (log line \"" + core.QuarantineLogLine + "\"), the zone must never be ISOLATED, " +
		"and the zone's healthy agent keeps taking the zone's work (no gap over 30s while it waits); nothing is lost.",
	Agents: 6, Zones: 3, Duration: 10 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("small-zone", 0, 5*time.Minute, 0.5*float64(p.Agents)/6, 2*time.Second, 10*time.Second)
		w.Domains, w.DomainFraction = []string{sim.ZoneName(0)}, 0.25
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultFlap, Agents: []string{smallFlapper(p)}, At: time.Minute,
			Down: 20 * time.Second, Up: 10 * time.Second, Until: 4 * time.Minute}}
		return o
	},
	Expect: []Expectation{
		{Name: "the flapping agent is quarantined within 4 flaps with the runbook's log line", Check: func(c *Context) error {
			return quarantinedWithin(c.Result, smallFlapper(c.Params), 4)
		}},
		{Name: "the small zone is never ISOLATED", Check: func(c *Context) error {
			return neverIsolated(c.Result, sim.ZoneName(0))
		}},
		{Name: "the zone's healthy agent takes the zone's queued work the whole time", Check: func(c *Context) error {
			id := healthyPeer(c.Params)
			if q := events(c.Result, core.EventAgentQuarantined, id); len(q) > 0 {
				return fmt.Errorf("the healthy agent %s was quarantined at %v: %s", id, at(q[0]), q[0].Reason)
			}
			gap, end := assignGaps(c.Result, sim.ZoneName(0), id)
			if gap > smallZoneGapMax {
				return fmt.Errorf("work pinned to %s waited %v (until %v) with nothing assigned to %s", sim.ZoneName(0), gap, end, id)
			}
			return nil
		}},
		nothingLost,
	},
}

// partialOutage is the part of the single zone poison-single-zone cuts off:
// more than half of it (an outage by count), but not all.
func partialOutage(p Params) []string {
	all := agentsOf(p, 0)
	return all[:max(1, min(len(all)-1, (len(all)*5+7)/8))]
}

var poisonSingleZone = Scenario{
	Name: "poison-single-zone",
	Description: "One zone. Steady work of which 3% is poison and 1% hangs; mid-run the cp loses five of the eight " +
		"agents for 90s (a partial outage). With one domain there is nowhere to move work, so failures must not " +
		"isolate it and the outage must stop dispatch only to the agents that are gone: work never waits more than " +
		"one base cool-down (30s) on open capacity, every good task succeeds, every poison task ends DEAD.",
	Agents: 8, Zones: 1, Duration: 12 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		w := steady("single", 0, 6*time.Minute, 0.8*float64(p.Agents)/8, 5*time.Second, 15*time.Second)
		w.PoisonFraction, w.HangFraction = 0.03, 0.01
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultCutOff, Agents: partialOutage(p), At: 2 * time.Minute, Until: 210 * time.Second}}
		return o
	},
	Expect: []Expectation{
		{Name: "work never waits on open capacity longer than one base cool-down", Check: func(c *Context) error {
			r := c.Result
			if limit := c.Options.Core.Domains.CooldownBase; r.MaxDispatchIdle > limit {
				return fmt.Errorf("nothing dispatched for %v (until %v) with work queued and free slots open (limit %v)",
					r.MaxDispatchIdle, r.MaxDispatchIdleAt, limit)
			}
			return nil
		}},
		{Name: "every poison task ends DEAD", Check: func(c *Context) error {
			n := 0
			for _, t := range c.Result.Tasks {
				if !t.Poison {
					continue
				}
				n++
				if t.State != core.TaskDead {
					return fmt.Errorf("poison task %s is %s (%q) after attempts on %v", t.ID, t.State, t.Reason, t.Agents)
				}
			}
			if n == 0 {
				return fmt.Errorf("no poison task submitted")
			}
			return nil
		}},
		{Name: "every good task succeeds", Check: func(c *Context) error {
			for _, t := range c.Result.Tasks {
				if !t.Poison && !t.Hang && t.State != core.TaskSucceeded {
					return fmt.Errorf("task %s is %s: %s", t.ID, t.State, t.Reason)
				}
			}
			return nil
		}},
		nothingLost,
	},
}

// cutZone is the zone cut-heartbeat-timeout cuts off.
const cutZone = 0 // z1

var cutHeartbeatTimeout = Scenario{
	Name: "cut-heartbeat-timeout",
	Description: "Zone z1 loses the cp for 15s, far longer than the heartbeat timeout plus the loss grace (2s + 3s, " +
		"the soak's intervals), while it runs 8s tasks. The cp reschedules the cut agents' work elsewhere; the " +
		"cut agents, alive and unaware, must stop theirs first: at most one attempt of a task runs at a time " +
		"unless its agent is truly lost (invariant 11), and nothing is lost.",
	Agents: 12, Zones: 3, Duration: 4 * time.Minute,
	Build: func(p Params) sim.Options {
		o := base(p)
		o.Core.HeartbeatInterval, o.Core.HeartbeatTimeout = 500*time.Millisecond, 2*time.Second
		o.Core.LostAfter, o.Core.AssignTimeout = 3*time.Second, 3*time.Second
		o.TickInterval = 100 * time.Millisecond
		w := steady("cut", 0, 2*time.Minute, 0.5*float64(p.Agents*o.SlotsPerAgent)/8, 8*time.Second, 8*time.Second)
		o.Workload = []sim.Workload{w}
		o.Faults = []sim.Fault{{Kind: sim.FaultZoneOutage, Zone: sim.ZoneName(cutZone), At: 60 * time.Second, Until: 75 * time.Second}}
		return o
	},
	Expect: []Expectation{
		{Name: "the cut zone's agents are declared lost and their work moves elsewhere", Check: func(c *Context) error {
			if len(events(c.Result, core.EventAgentLost, "")) == 0 {
				return fmt.Errorf("no agent declared lost: the cut is not longer than the loss grace")
			}
			return nil
		}},
		nothingLost, allSucceeded,
	},
}
