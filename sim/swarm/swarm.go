// Package swarm is swarm testing for the simulator: every run of a swarm
// draws its own scenario shape (fleet, zones, workload, and a random subset
// of every fault the simulator knows, each at its own intensity), runs it,
// heals, and leaves the run long enough for liveness to be owed and checked.
// Some runs have a few fault kinds at high intensity, others many at low
// intensity, so faults that mask each other are also seen apart.
//
// A Shape is small and printable: Shape.String is a flag value that
// reproduces the run exactly, and Shrink reduces a failing shape (fewer
// agents, zones, slots and tasks, a shorter active phase, fewer fault kinds,
// lower intensities) greedily while it still fails the same way.
//
// The package is pure and single-threaded like sim: the goroutine pool that
// runs many shapes at once lives in cmd/sim.
package swarm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// Kind is a fault kind a shape may enable.
type Kind string

// The fault kinds: the simulator's faults, network misbehaviour, workload
// faults, operator actions, a small queue, and every code-level fault point
// (sim.FaultPointNames, by their own names).
const (
	Crash       Kind = "crash"
	Flap        Kind = "flap"
	Stuck       Kind = "stuck"
	Slow        Kind = "slow"
	ZoneOutage  Kind = "zone-outage"
	ZoneFailing Kind = "zone-failing"
	CutOff      Kind = "cut-off"
	CPRestart   Kind = "cp-restart"  // with the runbook's DRAINING first
	CPCrash     Kind = "cp-crash"    // kill -9 of the cp at random moments, short downtime
	CPFailover  Kind = "cp-failover" // a replicated cp loses its leader at random moments; elections of seconds
	Loss        Kind = "loss"
	Duplicate   Kind = "duplicate"
	Reorder     Kind = "reorder"
	BatchCut    Kind = "batch-cut" // poll replies cut mid-batch
	Poison      Kind = "poison"
	Hang        Kind = "hang"
	ReadOnly    Kind = "read-only"
	Degraded    Kind = "degraded"
	Purge       Kind = "purge"
	SmallQueue  Kind = "small-queue"
)

// Kinds lists every fault kind in a fixed order.
func Kinds() []Kind {
	ks := []Kind{Crash, Flap, Stuck, Slow, ZoneOutage, ZoneFailing, CutOff, CPRestart, CPCrash, CPFailover, Loss, Duplicate, Reorder,
		BatchCut, Poison, Hang, ReadOnly, Degraded, Purge, SmallQueue}
	for _, p := range sim.FaultPointNames() {
		ks = append(ks, Kind(p))
	}
	return ks
}

func kindIndex(k Kind) int { return slices.Index(Kinds(), k) }

// Fault is one enabled kind at an intensity in percent (1..100).
type Fault struct {
	Kind    Kind
	Percent int
}

// Shape is one swarm run, fully: Build turns it into sim.Options, with the
// fault schedule drawn from Seed.
type Shape struct {
	Seed                 uint64
	Agents, Zones, Slots int
	// SmallZones of the Zones are small: 1 to 3 agents each (sizes drawn
	// from Seed), the last ones; the other zones share the rest evenly.
	// A shape string without it means 0 (every zone the same size).
	SmallZones int
	// Active is when work arrives and faults strike; then everything heals
	// and the run goes on for the liveness bound.
	Active time.Duration
	// Tasks are offered over Active (Poisson; a fifth or so as a burst at 0).
	Tasks int
	// TaskMax is the longest task; TimeoutSeconds and Attempts go into
	// every spec.
	TaskMax        time.Duration
	TimeoutSeconds int
	Attempts       int
	// TaskFaultMax is the percent of tasks that are poison (and that hang)
	// at intensity 100 of those kinds. A shape string without it means
	// TaskFaultMaxOld, what it was before the field existed.
	TaskFaultMax int
	// Faults are the enabled kinds in Kinds order, each once.
	Faults []Fault
}

// Bounds of a shape (Validate checks them; Generate draws within them).
const (
	AgentsMax  = 40
	ZonesMax   = 5
	SlotsMax   = 4
	ActiveMin  = 10 * time.Second
	ActiveMax  = 10 * time.Minute
	TasksMax   = 2000
	TaskMaxMax = time.Minute
	// SmallZoneAgentsMax is the most agents a small zone has.
	SmallZoneAgentsMax = 3
	// TaskFaultMaxMax bounds TaskFaultMax: poison and hang may each go up
	// to 10% of tasks. Generate draws shapes at this bound.
	TaskFaultMaxMax = 10
	// TaskFaultMaxOld is TaskFaultMax for shape strings that lack it.
	TaskFaultMaxOld = 5
)

// ErrShape marks an invalid shape (a bad -swarm-shape value).
var ErrShape = errors.New("swarm: invalid shape")

// Validate checks a shape's bounds.
func (s Shape) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrShape, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Agents < 1 || s.Agents > AgentsMax:
		return bad("agents must be in [1,%d]", AgentsMax)
	case s.Zones < 1 || s.Zones > min(ZonesMax, s.Agents):
		return bad("zones must be in [1,min(%d,agents)]", ZonesMax)
	case s.Slots < 1 || s.Slots > SlotsMax:
		return bad("slots must be in [1,%d]", SlotsMax)
	case s.Active < ActiveMin || s.Active > ActiveMax || s.Active%time.Second != 0:
		return bad("active must be whole seconds in [%v,%v]", ActiveMin, ActiveMax)
	case s.Tasks < 0 || s.Tasks > TasksMax:
		return bad("tasks must be in [0,%d]", TasksMax)
	case s.TaskMax < time.Second || s.TaskMax > TaskMaxMax || s.TaskMax%time.Second != 0:
		return bad("taskmax must be whole seconds in [1s,%v]", TaskMaxMax)
	case s.TimeoutSeconds < 1 || s.TimeoutSeconds > 300:
		return bad("timeout must be in [1,300] seconds")
	case s.Attempts < 1 || s.Attempts > 5:
		return bad("attempts must be in [1,5]")
	case s.SmallZones < 0 || s.SmallZones >= s.Zones:
		return bad("smallzones must be in [0,zones-1]")
	case s.TaskFaultMax < 1 || s.TaskFaultMax > TaskFaultMaxMax:
		return bad("taskfaultmax must be in [1,%d]", TaskFaultMaxMax)
	}
	last := -1
	for _, f := range s.Faults {
		i := kindIndex(f.Kind)
		switch {
		case i < 0:
			return bad("unknown fault kind %q", f.Kind)
		case i <= last:
			return bad("fault kinds must be distinct and in Kinds order (%s)", f.Kind)
		case f.Percent < 1 || f.Percent > 100:
			return bad("fault %s: percent must be in [1,100]", f.Kind)
		}
		last = i
	}
	return nil
}

// Percent is the intensity of kind k, 0 when it is off.
func (s Shape) Percent(k Kind) int {
	for _, f := range s.Faults {
		if f.Kind == k {
			return f.Percent
		}
	}
	return 0
}

// RunSeed is the sim seed of run index of swarm swarmSeed: derived, so any
// run is reproduced from the pair alone.
func RunSeed(swarmSeed uint64, index int) uint64 {
	return rand.New(rand.NewPCG(swarmSeed, uint64(index)^0x5a4d)).Uint64()
}

// Generate draws the shape of run index of swarm swarmSeed.
func Generate(swarmSeed uint64, index int) Shape {
	seed := RunSeed(swarmSeed, index)
	r := rand.New(rand.NewPCG(seed, 0x5a4d))
	s := Shape{Seed: seed}
	// Small fleets are more common: they are cheap and fail more readably.
	s.Agents = 1 + r.IntN(1+r.IntN(AgentsMax))
	s.Zones = 1 + r.IntN(min(ZonesMax, s.Agents))
	s.Slots = 1 + r.IntN(SlotsMax)
	s.Active = time.Duration(30+r.IntN(211)) * time.Second
	s.TaskMax = time.Duration(1+r.IntN(20)) * time.Second
	// Tasks fit their timeout (only a slow fault makes them overrun): work
	// that always fails is poison and hang, at rates a domain tolerates.
	s.TimeoutSeconds = int(s.TaskMax.Seconds()) + 2 + r.IntN(30)
	s.Attempts = 1 + r.IntN(4)
	// Offered load up to about half the fleet's capacity.
	capacity := float64(s.Agents*s.Slots) * s.Active.Seconds() / (s.TaskMax.Seconds()/2 + 0.5)
	s.Tasks = min(TasksMax, r.IntN(1+int(0.5*capacity)))
	// Swarm testing: each kind is in with a per-run probability, and the
	// fewer kinds, the higher their intensity.
	p := 0.05 + 0.6*r.Float64()
	var on []Kind
	for _, k := range Kinds() {
		if r.Float64() < p {
			on = append(on, k)
		}
	}
	budget := 20 + r.Float64()*80
	for _, k := range on {
		pct := budget * (0.5 + r.Float64()) * 4 / float64(max(4, len(on)))
		s.Faults = append(s.Faults, Fault{Kind: k, Percent: min(100, max(1, int(pct)))})
	}
	// Small zones beside big ones in about a third of the multi-zone
	// runs: a domain of one to three agents is where an outage and a
	// flapping node look alike.
	s.TaskFaultMax = TaskFaultMaxMax
	if s.Zones > 1 && r.Float64() < 0.35 {
		s.SmallZones = 1 + r.IntN(s.Zones-1)
	}
	return s
}

// ZoneSizes is the number of agents of each zone (sim.Options.ZoneSizes),
// nil for even zones. The small zones are the last SmallZones, of
// 1..SmallZoneAgentsMax agents each (drawn from Seed, fewer when the fleet
// is short: every zone keeps one agent); the others share the rest.
func (s Shape) ZoneSizes() []int {
	if s.SmallZones == 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(s.Seed, 0x5a11))
	sizes := make([]int, s.Zones)
	big := s.Zones - s.SmallZones
	left := s.Agents
	for z := big; z < s.Zones; z++ {
		later := s.Zones - 1 - z // small zones after this one
		sizes[z] = min(1+r.IntN(SmallZoneAgentsMax), left-big-later)
		left -= sizes[z]
	}
	for z := range big {
		sizes[z] = left / big
		if z < left%big {
			sizes[z]++
		}
	}
	return sizes
}

// String encodes the shape as a -swarm-shape value; Parse reads it back.
func (s Shape) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed=%d,agents=%d,zones=%d,smallzones=%d,slots=%d,active=%ds,tasks=%d,taskmax=%ds,timeout=%d,attempts=%d,taskfaultmax=%d,faults=",
		s.Seed, s.Agents, s.Zones, s.SmallZones, s.Slots, int(s.Active.Seconds()), s.Tasks, int(s.TaskMax.Seconds()), s.TimeoutSeconds, s.Attempts,
		s.TaskFaultMax)
	if len(s.Faults) == 0 {
		b.WriteString("none")
	}
	for i, f := range s.Faults {
		if i > 0 {
			b.WriteByte('+')
		}
		fmt.Fprintf(&b, "%s:%d", f.Kind, f.Percent)
	}
	return b.String()
}

// Parse reads a shape written by String. Every field is required but the
// ones added later (smallzones, taskfaultmax): a string written before them
// lacks them and means what it meant then.
func Parse(text string) (Shape, error) {
	s := Shape{TaskFaultMax: TaskFaultMaxOld}
	seen := map[string]bool{}
	for _, kv := range strings.Split(text, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return Shape{}, fmt.Errorf("%w: %q is not key=value once", ErrShape, kv)
		}
		seen[k] = true
		var err error
		switch k {
		case "seed":
			s.Seed, err = strconv.ParseUint(v, 10, 64)
		case "agents":
			s.Agents, err = strconv.Atoi(v)
		case "zones":
			s.Zones, err = strconv.Atoi(v)
		case "smallzones":
			s.SmallZones, err = strconv.Atoi(v)
		case "taskfaultmax":
			s.TaskFaultMax, err = strconv.Atoi(v)
		case "slots":
			s.Slots, err = strconv.Atoi(v)
		case "active":
			s.Active, err = time.ParseDuration(v)
		case "tasks":
			s.Tasks, err = strconv.Atoi(v)
		case "taskmax":
			s.TaskMax, err = time.ParseDuration(v)
		case "timeout":
			s.TimeoutSeconds, err = strconv.Atoi(v)
		case "attempts":
			s.Attempts, err = strconv.Atoi(v)
		case "faults":
			if v == "none" {
				break
			}
			for _, f := range strings.Split(v, "+") {
				name, pct, ok := strings.Cut(f, ":")
				n, perr := strconv.Atoi(pct)
				if !ok || perr != nil {
					return Shape{}, fmt.Errorf("%w: fault %q is not kind:percent", ErrShape, f)
				}
				s.Faults = append(s.Faults, Fault{Kind: Kind(name), Percent: n})
			}
		default:
			return Shape{}, fmt.Errorf("%w: unknown key %q", ErrShape, k)
		}
		if err != nil {
			return Shape{}, fmt.Errorf("%w: %s: %v", ErrShape, k, err)
		}
	}
	for _, k := range []string{"seed", "agents", "zones", "slots", "active", "tasks", "taskmax", "timeout", "attempts", "faults"} {
		if !seen[k] {
			return Shape{}, fmt.Errorf("%w: %s missing", ErrShape, k)
		}
	}
	return s, s.Validate()
}

// Build turns a valid shape into the simulator's options. Where faults
// strike and whom they hit is drawn from the shape's seed.
func Build(s Shape) sim.Options {
	r := rand.New(rand.NewPCG(s.Seed, 0xb17d))
	o := sim.DefaultOptions()
	// No Name: a violation's repro line would name a scenario; the swarm
	// prints its own (-swarm-run, -swarm-shape).
	o.Seed = s.Seed
	o.Agents, o.Zones, o.SlotsPerAgent = s.Agents, s.Zones, s.Slots
	o.ZoneSizes = s.ZoneSizes()
	fleet := o.AgentIDs()
	pct := func(k Kind) float64 { return float64(s.Percent(k)) / 100 }
	on := func(k Kind) bool { return s.Percent(k) > 0 }
	if on(SmallQueue) {
		o.Core.QueueCapacity = max(5, int(100*(1-pct(SmallQueue))))
	}
	spec := core.TaskSpec{TimeoutSeconds: s.TimeoutSeconds, MaxAttempts: s.Attempts}
	bound := sim.LivenessBound(o.Core, spec, 2*time.Minute)
	o.Duration = s.Active + bound + time.Minute
	if s.Percent(CPRestart) > 0 {
		// The operator's NORMAL after the restart may come after the
		// active phase: liveness is owed one bound after it.
		o.Duration += bound
	}

	secs := func(lo, hi time.Duration) time.Duration { // whole seconds in [lo, hi]
		if hi <= lo {
			return lo.Truncate(time.Second)
		}
		return lo.Truncate(time.Second) + time.Duration(r.Int64N(int64((hi-lo)/time.Second)+1))*time.Second
	}
	agent := func() string { return fleet[r.IntN(s.Agents)] }
	zone := func() string { return sim.ZoneName(r.IntN(s.Zones)) }
	// window draws a fault's [at, until) inside [lo, hi).
	window := func(lo, hi time.Duration) (time.Duration, time.Duration) {
		at := secs(lo, hi-time.Second)
		return at, secs(at+time.Second, hi)
	}

	n := o.Network
	if on(Loss) {
		n.LossProbability = 0.002 + 0.25*pct(Loss)
	}
	if on(Duplicate) {
		n.DuplicateProbability = 0.002 + 0.3*pct(Duplicate)
	}
	if on(Reorder) {
		n.ReorderProbability, n.ReorderDelay = 0.01+0.5*pct(Reorder), time.Duration(1+int(20*pct(Reorder)))*100*time.Millisecond
	}
	if on(BatchCut) {
		n.CutProbability = 0.002 + 0.5*pct(BatchCut)
	}
	o.Network = n
	// Everything heals when the active phase ends: the network, the fault
	// points, and (by construction below) every scheduled fault.
	o.HealAt = s.Active

	taskFault := float64(s.TaskFaultMax) / 100
	zones := make([]string, s.Zones)
	for z := range zones {
		zones[z] = sim.ZoneName(z)
	}
	w := sim.Workload{Name: "swarm", End: s.Active, PriorityWeights: [3]float64{r.Float64(), 1, r.Float64()},
		Domains: zones, DomainFraction: 0.5 * r.Float64(),
		DurationMin: 0, DurationMax: s.TaskMax, TimeoutSeconds: s.TimeoutSeconds, MaxAttempts: s.Attempts,
		PoisonFraction: taskFault * pct(Poison), HangFraction: taskFault * pct(Hang),
		IdempotentFraction: 0.3, ResubmitFraction: 0.4, ConflictFraction: 0.1}
	if s.Tasks > 0 {
		w.Burst = r.IntN(s.Tasks/5 + 1)
		w.RatePerSecond = float64(s.Tasks-w.Burst) / s.Active.Seconds()
	}
	o.Workload = []sim.Workload{w}

	// Operator holds come in the first half, a planned restart in the
	// second, so a hold's NORMAL never ends the restart's DRAINING.
	restart := on(CPRestart)
	holdEnd := s.Active
	if restart {
		holdEnd = s.Active / 2
	}
	events := func(k Kind) int { return 1 + int(4*pct(k)) } // 1..5
	for _, k := range Kinds() {
		if !on(k) {
			continue
		}
		switch k {
		case Crash, Stuck, Slow, Flap:
			for range events(k) {
				at, until := window(0, s.Active)
				f := sim.Fault{Kind: sim.FaultKind(k), At: at, Until: until, Agents: []string{agent()}}
				for range int(pct(k) * float64(s.Agents) / 4) {
					if id := agent(); !slices.Contains(f.Agents, id) {
						f.Agents = append(f.Agents, id)
					}
				}
				switch k {
				case Slow:
					f.Latency, f.Factor = secs(0, 3*time.Second), 1+4*pct(k)
				case Flap:
					f.Down, f.Up = secs(2*time.Second, 10*time.Second+time.Duration(50*pct(k))*time.Second), secs(2*time.Second, 30*time.Second)
				}
				o.Faults = append(o.Faults, f)
			}
		case ZoneOutage, ZoneFailing:
			for range events(k) {
				at, until := window(0, s.Active)
				o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultZoneOutage, At: at, Until: until, Zone: zone(), Failing: k == ZoneFailing})
			}
		case CutOff:
			for range events(k) {
				at, until := window(0, s.Active)
				o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultCutOff, At: at, Until: until, Fraction: max(0.05, pct(k))})
			}
		case CPRestart:
			// The runbook's full restart on a durable cp: DRAINING, a
			// restart without waiting for the drain (the cp comes back
			// with its queue, still DRAINING), then NORMAL.
			at := secs(s.Active/2, s.Active-time.Second)
			o.Ops = append(o.Ops, sim.OperatorAction{At: at, SetMode: core.ModeDraining, Reason: "swarm: planned restart"},
				sim.OperatorAction{At: at + secs(2*time.Second, 30*time.Second), SetMode: core.ModeNormal, Reason: "swarm: restart done"})
			o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultCPRestart, At: at + time.Second})
		case CPCrash:
			// Crash points: any millisecond of the active phase, down
			// for up to 40s at full intensity (past the heartbeat
			// timeout: agents are then lost and their work moves), with
			// up to three submissions in flight.
			for range events(k) {
				at := time.Duration(r.Int64N(int64(s.Active-time.Second)/int64(time.Millisecond))) * time.Millisecond
				until := min(at+time.Duration(r.Int64N(int64(1+40*pct(k))*int64(time.Second))), s.Active)
				o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultCPCrash, At: at, Until: until, InFlight: r.IntN(4)})
			}
		case CPFailover:
			// Leader losses: any millisecond of the active phase, an
			// election of 1 to 3s (up to 13s at full intensity: the
			// takeover's grace must cover agents silent that long), up
			// to three submissions in flight, and each new leader's
			// clock up to a second off the old one's.
			for range events(k) {
				at := time.Duration(r.Int64N(int64(s.Active-time.Second)/int64(time.Millisecond))) * time.Millisecond
				election := time.Second + time.Duration(r.Int64N(int64(2*time.Second)+int64(10*pct(k)*float64(time.Second))))
				o.Faults = append(o.Faults, sim.Fault{Kind: sim.FaultCPFailover, At: at, Until: min(at+election, s.Active),
					InFlight: r.IntN(4), Skew: time.Second})
			}
		case ReadOnly, Degraded:
			mode := core.ModeReadOnly
			if k == Degraded {
				mode = core.ModeDegraded
			}
			at, until := window(0, holdEnd)
			until = min(until, at+time.Duration(10+int(110*pct(k)))*time.Second)
			o.Ops = append(o.Ops,
				sim.OperatorAction{At: at, SetMode: mode, Reason: "swarm"},
				sim.OperatorAction{At: until, SetMode: core.ModeNormal, Reason: "swarm: done"})
		case Purge:
			for range events(k) {
				o.Ops = append(o.Ops, sim.OperatorAction{At: secs(0, s.Active), Purge: &core.PurgeInput{OlderThan: secs(time.Second, 60*time.Second)}, Reason: "swarm"})
			}
		case Poison, Hang, Loss, Duplicate, Reorder, BatchCut, SmallQueue:
			// In the workload, network and core config above.
		default:
			if o.FaultPoints == nil {
				o.FaultPoints = map[core.FaultPoint]float64{}
			}
			o.FaultPoints[core.FaultPoint(k)] = 0.5 * pct(k)
		}
	}
	// Two read-only and degraded holds may overlap: keep the operator's
	// actions in time order so the last word is the latest.
	slices.SortStableFunc(o.Ops, func(a, b sim.OperatorAction) int { return int(a.At - b.At) })
	return o
}
