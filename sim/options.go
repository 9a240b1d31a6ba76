package sim

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Epoch is virtual time zero. Every run starts here, so traces never depend
// on the wall clock.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Epoch returns virtual time zero.
func Epoch() time.Time { return epoch }

// Options fully describe one run: the same Options give the same Result and
// trace bytes. Zero fields take the defaults of DefaultOptions.
type Options struct {
	// Name labels the run (the scenario name) in reports and repro lines.
	Name string
	// Seed seeds the run's one random source and the per-agent streams.
	Seed uint64
	// Duration is how much virtual time the run covers.
	Duration time.Duration

	// Agents and Zones shape the fleet: agent i is in zone i%Zones and is
	// named "z<zone>-a<nn>". SlotsPerAgent is every agent's capacity.
	Agents        int
	Zones         int
	SlotsPerAgent int
	// ZoneSizes, when set, gives each zone's number of agents instead
	// (Zones entries, each >= 1, summing to Agents), so that small zones
	// sit beside big ones. Agents are dealt to the zones in turn, skipping
	// full ones, and numbered within their zone; AgentIDs lists them. With
	// the even sizes it is the same layout as without.
	ZoneSizes []int

	// Core is the control plane's configuration. A zero QueueCapacity means
	// "use core.DefaultConfig()".
	Core core.Config
	// TickInterval is how often the cp reconciles (core.TickInput).
	TickInterval time.Duration
	// AgentHeartbeat is the agents' heartbeat interval; zero means the
	// core's HeartbeatInterval.
	AgentHeartbeat time.Duration
	// RequestTimeout is how long an agent waits for a heartbeat reply that
	// never comes before it is told the heartbeat failed (HTTP client
	// timeout).
	RequestTimeout time.Duration

	// PollWait is how long the cp holds an agent's poll when nothing waits
	// for it (the agent's request times out PollSlack later); zero means
	// DefaultPollWait. MailboxMax bounds the messages waiting for one
	// agent (more are dropped and counted); zero means DefaultMailboxMax.
	PollWait   time.Duration
	MailboxMax int

	// Network shapes message delivery.
	Network NetworkOptions
	// Workload generators, faults and operator actions, all on virtual time
	// measured from the start of the run.
	Workload []Workload
	Faults   []Fault
	Ops      []OperatorAction
	// FaultPoints turns on code-level fault points: for each, the
	// probability that it fires at one occasion (see FaultPointNames).
	// Core's are decided inside the agents and the cp, the simulator's own
	// on the network; all from a stream of their own.
	FaultPoints map[core.FaultPoint]float64
	// HealAt, when set, ends the run-long faults at that virtual time: the
	// network becomes HealedNetwork (zero: DefaultNetwork) and the fault
	// points stop firing; the run counts as healed from then.
	HealAt        time.Duration
	HealedNetwork NetworkOptions

	// SnapshotEveryEntries: with a cp-restart, cp-crash or cp-failover fault the
	// simulator keeps the cp's log (every input it applies, in order) and
	// takes a snapshot (core Export) every this many entries; a restarted
	// cp recovers from the last snapshot plus the entries after it. Zero
	// means DefaultSnapshotEveryEntries.
	SnapshotEveryEntries int

	// SampleInterval is how often the metric time series is sampled.
	SampleInterval time.Duration
	// FullCheckInterval is how often the full-state invariants run (the
	// cheap ones run after every event). Zero means every TickInterval.
	FullCheckInterval time.Duration
	// PerAgentSeriesMax: per-agent series (flux_agent_connected) are
	// recorded only for fleets up to this size.
	PerAgentSeriesMax int
	// EventsMax bounds the timeline events kept in the Result.
	EventsMax int
	// LastEvents is how many trace lines a violation report carries.
	LastEvents int
	// EventsLimit bounds the simulator events of one run, so a livelock in
	// the driven code cannot hang the simulator.
	EventsLimit int

	// Trace, when set, receives every trace line (JSON lines). The trace
	// hash in the Result is computed whether or not it is set.
	Trace io.Writer `json:"-"`
}

// NetworkOptions shape the simulated network, in the style of TigerBeetle's
// packet simulator: probabilities per message, latency as a distribution.
type NetworkOptions struct {
	// LatencyMin plus an exponential tail of mean LatencyMean, capped at
	// LatencyMax, is one message's one-way latency.
	LatencyMin, LatencyMean, LatencyMax time.Duration
	// LossProbability: a message vanishes.
	LossProbability float64
	// DuplicateProbability: a message is delivered twice.
	DuplicateProbability float64
	// ReorderProbability: a message is held back by up to ReorderDelay, so
	// later messages overtake it.
	ReorderProbability float64
	ReorderDelay       time.Duration
	// CutProbability: a poll reply carrying messages breaks off after a
	// random number of them (0..n-1): the connection is cut mid-batch.
	CutProbability float64
}

// Workload generates task submissions between Start and End (Poisson
// arrivals at RatePerSecond) plus Burst tasks at Start.
type Workload struct {
	Name          string
	Start, End    time.Duration
	RatePerSecond float64
	Burst         int
	// PriorityWeights are the relative weights of high, normal and low.
	PriorityWeights [3]float64
	// Domains, when set, constrain DomainFraction of the tasks to one of
	// them (chosen uniformly).
	Domains        []string
	DomainFraction float64
	// DurationMin..DurationMax is the sleep duration, uniform.
	DurationMin, DurationMax time.Duration
	// TimeoutSeconds and MaxAttempts go into the spec (0: core defaults).
	TimeoutSeconds int
	MaxAttempts    int
	// PoisonFraction of tasks always fail; HangFraction never finish.
	PoisonFraction, HangFraction float64
	// IdempotentFraction of tasks carry an idempotency key;
	// ResubmitFraction of those are submitted again (same key and body)
	// shortly after, and ConflictFraction reuse a key with another body.
	IdempotentFraction, ResubmitFraction, ConflictFraction float64
}

// FaultKind names a fault.
type FaultKind string

const (
	// FaultCrash: the agents crash at At and restart at Until (a new
	// core.Agent with a new incarnation; running work is gone).
	FaultCrash FaultKind = "crash"
	// FaultFlap: the agents are partitioned from the cp for Down, then
	// connected for Up, repeatedly between At and Until.
	FaultFlap FaultKind = "flap"
	// FaultStuck: every execution the agents start between At and Until
	// hangs (a stuck worker).
	FaultStuck FaultKind = "stuck"
	// FaultSlow: the agents' messages take Latency longer and their work
	// runs Factor times slower between At and Until.
	FaultSlow FaultKind = "slow"
	// FaultZoneOutage: every agent of Zone is partitioned from the cp (or,
	// with Failing, every execution there fails) between At and Until.
	FaultZoneOutage FaultKind = "zone-outage"
	// FaultCutOff: the cp is cut off from the agents (or, without Agents,
	// from the first Fraction of the fleet) between At and Until.
	FaultCutOff FaultKind = "cut-off"
	// FaultCPRestart: the cp is restarted at At (an operator's restart: no
	// downtime, nothing in flight) and recovers its state from its last
	// snapshot plus the committed log entries after it. With WhenDrained it
	// waits, until Until at most, for the snapshot to say drained.
	FaultCPRestart FaultKind = "cp-restart"
	// FaultCPCrash: the cp process is killed (kill -9) at At and starts
	// again at Until (Until 0: at once), recovering from its last snapshot
	// plus the committed entries. While it is down, heartbeats, assignment
	// answers and submissions find no process. InFlight submissions are in
	// flight at the crash: each is ambiguous, committed or lost at random,
	// and never acknowledged.
	FaultCPCrash FaultKind = "cp-crash"
	// FaultCPFailover: the cp runs as replicas on one log and its leader
	// stops at At (killed, or partitioned away from its quorum): InFlight
	// submissions it had proposed are ambiguous (committed or lost at
	// random, never acknowledged), and so is every heartbeat and assignment
	// answer on its way to it. No replica leads until Until (the election:
	// heartbeats, answers and submissions find no leader). Then another
	// replica, whose state is the committed prefix, leads a new epoch: its
	// clock is off the old leader's by up to Skew either way (inputs never
	// go back in time), its outbox starts empty, and it applies
	// core.TakeoverInput before anything else.
	FaultCPFailover FaultKind = "cp-failover"
)

// Fault is one injected fault on virtual time.
type Fault struct {
	Kind      FaultKind
	At, Until time.Duration
	// Agents the fault hits, by id.
	Agents []string
	// Zone for zone outages; Failing makes the zone's work fail instead of
	// partitioning it.
	Zone    string
	Failing bool
	// Fraction of the fleet cut off (FaultCutOff without Agents).
	Fraction float64
	// Down and Up are the flap period's halves.
	Down, Up time.Duration
	// Latency added to a slow agent's messages; Factor slows its work.
	Latency time.Duration
	Factor  float64
	// WhenDrained: a cp restart waits for the drained snapshot.
	WhenDrained bool
	// InFlight: submissions in flight when the cp crashes (cp-crash) or
	// its leader is lost (cp-failover).
	InFlight int
	// Skew bounds how far a new leader's clock is from the old one's
	// (cp-failover; at most MaxLeaderSkew). Each leader's offset from the
	// agents' time is drawn within Skew of the previous leader's and stays
	// within Skew of the agents' time.
	Skew time.Duration
}

// MaxLeaderSkew bounds Fault.Skew.
const MaxLeaderSkew = 5 * time.Second

// OperatorAction is an operator command at a virtual time.
type OperatorAction struct {
	At      time.Duration
	SetMode core.Mode        // when set: POST /admin/mode
	Purge   *core.PurgeInput // when set: POST /scheduler/queue/purge
	Reason  string           // recorded with the action
}

// DefaultSnapshotEveryEntries is Options.SnapshotEveryEntries' default.
const DefaultSnapshotEveryEntries = 1000

// DefaultOptions returns a small, healthy run: 12 agents in 3 zones with 2
// slots each, production core defaults, a LAN-like network.
func DefaultOptions() Options {
	return Options{
		Seed:              1,
		Duration:          10 * time.Minute,
		Agents:            12,
		Zones:             3,
		SlotsPerAgent:     2,
		Core:              core.DefaultConfig(),
		TickInterval:      time.Second,
		RequestTimeout:    2 * time.Second,
		Network:           DefaultNetwork(),
		SampleInterval:    10 * time.Second,
		PerAgentSeriesMax: 64,
		EventsMax:         200_000,
		LastEvents:        24,
		EventsLimit:       50_000_000,

		SnapshotEveryEntries: DefaultSnapshotEveryEntries,
	}
}

// DefaultNetwork is a LAN with rare loss, duplication and reordering.
func DefaultNetwork() NetworkOptions {
	return NetworkOptions{
		LatencyMin:           time.Millisecond,
		LatencyMean:          4 * time.Millisecond,
		LatencyMax:           200 * time.Millisecond,
		LossProbability:      0.002,
		DuplicateProbability: 0.002,
		ReorderProbability:   0.01,
		ReorderDelay:         50 * time.Millisecond,
		CutProbability:       0.002,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Duration == 0 {
		o.Duration = d.Duration
	}
	if o.Agents == 0 {
		o.Agents = d.Agents
	}
	if o.Zones == 0 {
		o.Zones = d.Zones
	}
	if o.SlotsPerAgent == 0 {
		o.SlotsPerAgent = d.SlotsPerAgent
	}
	if o.Core.QueueCapacity == 0 {
		o.Core = d.Core
	}
	if o.TickInterval == 0 {
		o.TickInterval = d.TickInterval
	}
	if o.AgentHeartbeat == 0 {
		o.AgentHeartbeat = o.Core.HeartbeatInterval
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = d.RequestTimeout
	}
	if o.PollWait == 0 {
		o.PollWait = DefaultPollWait
	}
	if o.MailboxMax == 0 {
		o.MailboxMax = DefaultMailboxMax
	}
	if o.Network == (NetworkOptions{}) {
		o.Network = d.Network
	}
	if o.SampleInterval == 0 {
		o.SampleInterval = d.SampleInterval
	}
	if o.FullCheckInterval == 0 {
		o.FullCheckInterval = o.TickInterval
	}
	if o.PerAgentSeriesMax == 0 {
		o.PerAgentSeriesMax = d.PerAgentSeriesMax
	}
	if o.EventsMax == 0 {
		o.EventsMax = d.EventsMax
	}
	if o.LastEvents == 0 {
		o.LastEvents = d.LastEvents
	}
	if o.EventsLimit == 0 {
		o.EventsLimit = d.EventsLimit
	}
	if o.SnapshotEveryEntries == 0 {
		o.SnapshotEveryEntries = d.SnapshotEveryEntries
	}
	return o
}

// ErrOptions marks invalid Options.
var ErrOptions = errors.New("sim: invalid options")

func (o Options) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case o.Duration <= 0 || o.Duration > 7*24*time.Hour:
		return bad("duration must be in (0, 168h]")
	case o.Agents < 1 || o.Agents > 20_000:
		return bad("agents must be in [1, 20000]")
	case o.Zones < 1 || o.Zones > 100 || o.Zones > o.Agents:
		return bad("zones must be in [1, min(100, agents)]")
	case o.SlotsPerAgent < 1 || o.SlotsPerAgent > 1024:
		return bad("slots per agent must be in [1, 1024]")
	case o.ZoneSizes != nil && len(o.ZoneSizes) != o.Zones:
		return bad("zone sizes must have one entry per zone")
	case o.TickInterval <= 0 || o.SampleInterval <= 0 || o.FullCheckInterval <= 0:
		return bad("tick, sample and check intervals must be > 0")
	case o.AgentHeartbeat <= 0 || o.RequestTimeout <= 0:
		return bad("heartbeat interval and request timeout must be > 0")
	case o.PollWait < 0 || o.PollWait > fnet.PollWaitMax*time.Millisecond || o.PollWait%time.Millisecond != 0:
		return bad("poll wait must be whole milliseconds in (0, %dms]", fnet.PollWaitMax)
	case o.MailboxMax < 1 || o.MailboxMax > 1<<20:
		return bad("mailbox max must be in [1, %d]", 1<<20)
	case o.SnapshotEveryEntries < 1:
		return bad("snapshot interval must be >= 1 entry")
	}
	total := 0
	for z, n := range o.ZoneSizes {
		if n < 1 {
			return bad("zone %s must have at least one agent", ZoneName(z))
		}
		total += n
	}
	if o.ZoneSizes != nil && total != o.Agents {
		return bad("zone sizes sum to %d, not to the %d agents", total, o.Agents)
	}
	if err := o.Core.Validate(); err != nil {
		return fmt.Errorf("%w: core: %v", ErrOptions, err)
	}
	if err := validateNetwork(o.Network); err != nil {
		return bad("%v", err)
	}
	for i, w := range o.Workload {
		if w.Start < 0 || w.End < w.Start || w.RatePerSecond < 0 || w.RatePerSecond > 10_000 || w.Burst < 0 || w.Burst > 1_000_000 {
			return bad("workload %d (%s): need 0 <= Start <= End, 0 <= rate <= 10000, 0 <= burst", i, w.Name)
		}
		if w.DurationMin < 0 || w.DurationMax < w.DurationMin {
			return bad("workload %d (%s): need 0 <= DurationMin <= DurationMax", i, w.Name)
		}
		if w.PriorityWeights[0] < 0 || w.PriorityWeights[1] < 0 || w.PriorityWeights[2] < 0 {
			return bad("workload %d (%s): priority weights must be >= 0", i, w.Name)
		}
	}
	for i, f := range o.Faults {
		if f.At < 0 || (f.Until != 0 && f.Until < f.At) {
			return bad("fault %d (%s): need 0 <= At <= Until", i, f.Kind)
		}
		switch f.Kind {
		case FaultCrash, FaultStuck, FaultSlow:
			if len(f.Agents) == 0 {
				return bad("fault %d (%s) needs agents", i, f.Kind)
			}
		case FaultFlap:
			if len(f.Agents) == 0 || f.Down <= 0 || f.Up <= 0 {
				return bad("fault %d (flap) needs agents, Down > 0 and Up > 0", i)
			}
		case FaultZoneOutage:
			if f.Zone == "" {
				return bad("fault %d (zone-outage) needs a zone", i)
			}
		case FaultCutOff:
			if len(f.Agents) == 0 && (f.Fraction <= 0 || f.Fraction > 1) {
				return bad("fault %d (cut-off) needs agents or a fraction in (0,1]", i)
			}
		case FaultCPRestart:
		case FaultCPCrash, FaultCPFailover:
			if f.InFlight < 0 || f.InFlight > 100 {
				return bad("fault %d (%s): in-flight submissions must be in [0,100]", i, f.Kind)
			}
			if f.Skew < 0 || f.Skew > MaxLeaderSkew || f.Skew != 0 && f.Kind != FaultCPFailover {
				return bad("fault %d (%s): a clock skew is for cp-failover only, in [0,%v]", i, f.Kind, MaxLeaderSkew)
			}
		default:
			return bad("fault %d: unknown kind %q", i, f.Kind)
		}
		for _, id := range f.Agents {
			if !slices.Contains(o.AgentIDs(), id) {
				return bad("fault %d (%s): unknown agent %q", i, f.Kind, id)
			}
		}
	}
	if o.HealAt < 0 || o.HealAt > o.Duration {
		return bad("HealAt must be in [0, Duration]")
	}
	if err := validateNetwork(o.HealedNetwork); err != nil {
		return bad("healed network: %v", err)
	}
	if err := validateFaultPoints(o.FaultPoints); err != nil {
		return bad("%v", err)
	}
	for i, op := range o.Ops {
		if op.At < 0 {
			return bad("operator action %d: At must be >= 0", i)
		}
		if op.SetMode != "" {
			if _, err := core.ParseMode(string(op.SetMode)); err != nil {
				return bad("operator action %d: %v", i, err)
			}
		}
	}
	return nil
}

// AgentID is the id of agent i of a fleet with zones zones.
func AgentID(i, zones int) string { return fmt.Sprintf("z%d-a%02d", i%zones+1, i/zones+1) }

// ZoneName is the name of zone z (0-based).
func ZoneName(z int) string { return fmt.Sprintf("z%d", z+1) }

// AgentIDs lists the fleet's agent ids by agent index.
func (o Options) AgentIDs() []string {
	ids, _ := o.layout()
	return ids
}

// ZoneAgentIDs lists the ids of zone z's agents (0-based), in index order.
func (o Options) ZoneAgentIDs(z int) []string {
	ids, zones := o.layout()
	var out []string
	for i, id := range ids {
		if zones[i] == z {
			out = append(out, id)
		}
	}
	return out
}

// layout is the fleet: each agent's id and zone (0-based) by index.
func (o Options) layout() (ids []string, zones []int) {
	ids, zones = make([]string, o.Agents), make([]int, o.Agents)
	if o.ZoneSizes == nil {
		for i := range ids {
			ids[i], zones[i] = AgentID(i, o.Zones), i%o.Zones
		}
		return ids, zones
	}
	count := make([]int, o.Zones)
	z := 0
	for i := range ids {
		for count[z] >= o.ZoneSizes[z] {
			z = (z + 1) % o.Zones
		}
		count[z]++
		ids[i], zones[i] = fmt.Sprintf("z%d-a%02d", z+1, count[z]), z
		z = (z + 1) % o.Zones
	}
	return ids, zones
}

func validateNetwork(n NetworkOptions) error {
	if n.LatencyMin < 0 || n.LatencyMean < 0 || n.LatencyMax < n.LatencyMin || n.ReorderDelay < 0 {
		return errors.New("network latencies must be >= 0 and LatencyMax >= LatencyMin")
	}
	for _, p := range []float64{n.LossProbability, n.DuplicateProbability, n.ReorderProbability, n.CutProbability} {
		if p < 0 || p > 1 {
			return errors.New("network probabilities must be in [0,1]")
		}
	}
	return nil
}
