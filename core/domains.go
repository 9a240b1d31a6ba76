package core

import (
	"fmt"
	"slices"
	"time"
)

// DomainState is a failure domain's isolation state.
type DomainState string

const (
	DomainOpen      DomainState = "OPEN"      // dispatch as usual
	DomainThrottled DomainState = "THROTTLED" // dispatch limited to a fraction of the domain's slots
	DomainIsolated  DomainState = "ISOLATED"  // no dispatch until the cool-down ends
	DomainProbing   DomainState = "PROBING"   // a few probe tasks decide: open again or isolate longer
)

// DomainConfig tunes domain isolation.
type DomainConfig struct {
	// Window is the sliding window for the failure rate; ResultsMax bounds
	// the outcomes remembered per domain.
	Window     time.Duration
	ResultsMax int
	// MinVolume: below this many outcomes in the window, the failure rate
	// does not act.
	MinVolume int
	// ThrottleRate and IsolateRate are failure-rate thresholds; a throttled
	// domain opens again below RecoverRate.
	ThrottleRate, IsolateRate, RecoverRate float64
	// RelativeFactor: a domain is throttled or isolated for failures only
	// when its failure rate is also at least this many times the rest of
	// the fleet's. Failures that happen everywhere are the tasks' fault,
	// not the domain's; with one domain there is no rest, and failures
	// never isolate it.
	RelativeFactor float64
	// ThrottledInFlightFraction of a domain's slots (at least one) may be in
	// flight while it is throttled.
	ThrottledInFlightFraction float64
	// A zone is out (a zone-level event: the domain is isolated at once, its
	// agents are not quarantined one by one and unconstrained work moves)
	// when all of its agents are disconnected, or when more than
	// OutageMinAgents are and at least OutageFraction of them. Below that,
	// as in Kubernetes' node lifecycle controller, nodes are dealt with one
	// by one: one flapping agent never takes a small zone down.
	OutageFraction  float64
	OutageMinAgents int
	// MinOpenCapacity is the panic threshold: isolating a domain must never
	// leave less than this share of the fleet's usable slots (connected,
	// unquarantined agents) in domains that take work. Past it a failing
	// domain is throttled instead, and a zone in partial outage keeps its
	// connected agents working, because sending work somewhere beats
	// sending it nowhere (Envoy's panic threshold). 0 turns panic off.
	MinOpenCapacity float64
	// CooldownBase doubles with each consecutive isolation up to CooldownMax;
	// it resets after CooldownReset spent OPEN.
	CooldownBase, CooldownMax, CooldownReset time.Duration
	// ProbeTasks decide a PROBING phase by majority: the domain is OPEN
	// again once more than half of them succeeded, ISOLATED again once that
	// can no longer happen. One hanging or poison task among the probes is
	// the task's fault, not the domain's.
	ProbeTasks int
	// DomainsMax bounds the domains tracked.
	DomainsMax int
}

// DefaultDomainConfig returns production defaults.
func DefaultDomainConfig() DomainConfig {
	return DomainConfig{
		Window:                    2 * time.Minute,
		ResultsMax:                512,
		MinVolume:                 10,
		ThrottleRate:              0.3,
		IsolateRate:               0.6,
		RecoverRate:               0.15,
		RelativeFactor:            2,
		ThrottledInFlightFraction: 0.25,
		OutageFraction:            0.55,
		OutageMinAgents:           2,
		MinOpenCapacity:           0.5,
		CooldownBase:              30 * time.Second,
		CooldownMax:               10 * time.Minute,
		CooldownReset:             10 * time.Minute,
		ProbeTasks:                3,
		DomainsMax:                1000,
	}
}

func (d DomainConfig) validate() error {
	switch {
	case d.Window <= 0 || d.ResultsMax < d.MinVolume || d.MinVolume < 1:
		return fmt.Errorf("%w: config: Domains.Window > 0 and ResultsMax >= MinVolume >= 1", ErrInvalid)
	case !(0 <= d.RecoverRate && d.RecoverRate < d.ThrottleRate && d.ThrottleRate <= d.IsolateRate && d.IsolateRate <= 1):
		return fmt.Errorf("%w: config: need 0 <= RecoverRate < ThrottleRate <= IsolateRate <= 1", ErrInvalid)
	case !(d.RelativeFactor >= 1 && d.RelativeFactor <= 100):
		return fmt.Errorf("%w: config: Domains.RelativeFactor must be in [1,100]", ErrInvalid)
	case d.ThrottledInFlightFraction <= 0 || d.ThrottledInFlightFraction > 1:
		return fmt.Errorf("%w: config: Domains.ThrottledInFlightFraction must be in (0,1]", ErrInvalid)
	case !(d.OutageFraction > 0 && d.OutageFraction <= 1):
		return fmt.Errorf("%w: config: Domains.OutageFraction (zone outage fraction) must be in (0,1], got %v", ErrInvalid, d.OutageFraction)
	case d.OutageMinAgents < 0 || d.OutageMinAgents > 1<<16:
		return fmt.Errorf("%w: config: Domains.OutageMinAgents (zone outage minimum agents) must be in [0,65536], got %d", ErrInvalid, d.OutageMinAgents)
	case !(d.MinOpenCapacity >= 0 && d.MinOpenCapacity <= 1):
		return fmt.Errorf("%w: config: Domains.MinOpenCapacity (min open capacity) must be in [0,1], got %v", ErrInvalid, d.MinOpenCapacity)
	case d.CooldownBase <= 0 || d.CooldownMax < d.CooldownBase || d.CooldownReset <= 0:
		return fmt.Errorf("%w: config: need 0 < CooldownBase <= CooldownMax, CooldownReset > 0", ErrInvalid)
	case d.ProbeTasks < 1 || d.DomainsMax < 1:
		return fmt.Errorf("%w: config: Domains.ProbeTasks and DomainsMax must be >= 1", ErrInvalid)
	}
	return nil
}

// Outage reports whether a zone of known agents, disconnected of them gone,
// is out: all of them, or more than OutageMinAgents and at least
// OutageFraction. A one-agent zone whose agent is gone is out.
func (d DomainConfig) Outage(known, disconnected int) bool {
	if known <= 0 || disconnected <= 0 {
		return false
	}
	return disconnected >= known ||
		disconnected > d.OutageMinAgents && float64(disconnected) >= d.OutageFraction*float64(known)
}

// DomainSignals is what a domain's evaluation needs from the rest of the
// cp: its connectivity, how the rest of the fleet fares, and the capacity
// the panic threshold protects. Slots count only connected, unquarantined
// agents ("usable").
type DomainSignals struct {
	// Known agents of the domain and how many of them are disconnected.
	Known, Disconnected int
	// HasRest is false when the domain is the fleet's only one; RestRate
	// and RestVolume are the failure rate and volume of all the others.
	HasRest    bool
	RestRate   float64
	RestVolume int
	// UsableSlots of this domain; OpenElsewhere: usable slots in the other
	// domains that take work (OPEN or THROTTLED); TotalUsable: the fleet's.
	UsableSlots, OpenElsewhere, TotalUsable int
}

// mayIsolate reports whether isolating (or keeping isolated) the domain
// leaves at least MinOpenCapacity of the fleet's usable slots open. A
// domain with no usable slot costs nothing to isolate.
func (d *DomainHealth) mayIsolate(sig DomainSignals) bool {
	return sig.UsableSlots == 0 || sig.TotalUsable == 0 ||
		float64(sig.OpenElsewhere) >= d.cfg.MinOpenCapacity*float64(sig.TotalUsable)
}

func (d *DomainHealth) panicReason(sig DomainSignals, why string) string {
	return fmt.Sprintf("panic: isolating would leave %d of %d usable slots open (< %.0f%%); %s",
		sig.OpenElsewhere, sig.TotalUsable, 100*d.cfg.MinOpenCapacity, why)
}

// isolationCause is why a domain is (or wanted to be) isolated.
type isolationCause int

const (
	causeNone isolationCause = iota
	causeOutage
	causeFailures
	causeProbes
)

// DomainHealth is one domain's isolation state machine:
// OPEN → THROTTLED → ISOLATED → PROBING → OPEN, with doubling cool-downs,
// under a panic guard that never lets isolation take more than a set share
// of the fleet's capacity out of service. It is driven by outcomes and by
// Evaluate with DomainSignals.
type DomainHealth struct {
	cfg        DomainConfig
	Name       string
	State      DomainState
	Since      time.Time // when State was entered
	Reason     string
	isolations int // consecutive isolations; sets the cool-down
	cooldown   time.Duration
	cause      isolationCause // of the current (or panic-refused) isolation
	results    outcomeWindow
	probeOK    int      // probe successes in this PROBING phase
	probeFail  []TaskID // probes that failed in this PROBING phase
	isolatedBy []TaskID // the failed probes behind the current isolation
	// Panic, when set, says why the panic threshold holds this domain out
	// of the isolation its health calls for.
	Panic string
}

// NewDomainHealth returns an OPEN domain.
func NewDomainHealth(cfg DomainConfig, name string, now time.Time) *DomainHealth {
	return &DomainHealth{cfg: cfg, Name: name, State: DomainOpen, Since: now, results: outcomeWindow{max: cfg.ResultsMax}}
}

// Result records a task outcome in the domain. probe says the task was
// dispatched as a probe into this PROBING domain: only probes decide a
// probing phase, not tasks that were in flight when the domain went
// ISOLATED.
func (d *DomainHealth) Result(now time.Time, task TaskID, ok, probe bool) {
	d.results.trim(now.Add(-d.cfg.Window))
	d.results.add(now, task, ok)
	if d.State == DomainProbing && probe {
		if ok {
			d.probeOK++
		} else if len(d.probeFail) < d.cfg.ResultsMax {
			d.probeFail = append(d.probeFail, task)
		}
	}
}

// Forgive excludes a poison task's failures. A probe that failed and then
// proved poison was no failed probe: it is struck from the probing phase,
// and an isolation it alone caused is undone (the cool-down it doubled
// ends at the next evaluation, which probes again).
func (d *DomainHealth) Forgive(task TaskID) {
	d.results.forgive(task)
	d.probeFail = slices.DeleteFunc(d.probeFail, func(id TaskID) bool { return id == task })
	if d.State == DomainIsolated && len(d.isolatedBy) > 0 {
		d.isolatedBy = slices.DeleteFunc(d.isolatedBy, func(id TaskID) bool { return id == task })
		if len(d.isolatedBy) == 0 {
			d.isolations = max(0, d.isolations-1)
			d.cooldown = 0
			d.Reason += "; the failed probe proved poison"
		}
	}
}

// Counts returns the successes and failures in the window at now. It
// changes nothing: Result and Evaluate drop what the window left behind.
func (d *DomainHealth) Counts(now time.Time) (ok, failed int) {
	return d.results.countsSince(now.Add(-d.cfg.Window))
}

// FailureRate returns the failure rate over the window and its volume.
func (d *DomainHealth) FailureRate(now time.Time) (rate float64, volume int) {
	ok, failed := d.Counts(now)
	volume = ok + failed
	if volume == 0 {
		return 0, 0
	}
	return float64(failed) / float64(volume), volume
}

// Cooldown is the current isolation cool-down.
func (d *DomainHealth) Cooldown() time.Duration { return d.cooldown }

// takesWork reports whether the domain's usable slots count as open
// capacity for the panic threshold.
func (s DomainState) takesWork() bool { return s == DomainOpen || s == DomainThrottled }

// DomainTransition is a state change Evaluate made.
type DomainTransition struct {
	Domain   string
	From, To DomainState
	Reason   string
}

// Evaluate advances the state machine at now given sig. It returns the
// transition, if any; Panic says afterwards whether the panic threshold is
// holding the domain out of isolation.
func (d *DomainHealth) Evaluate(now time.Time, sig DomainSignals) (DomainTransition, bool) {
	d.results.trim(now.Add(-d.cfg.Window))
	rate, volume := d.FailureRate(now)
	enough := volume >= d.cfg.MinVolume
	// The domain is worse than the rest of the fleet, so its failures are
	// its own; with no rest to compare with, they are the tasks'.
	worse := sig.HasRest && rate >= d.cfg.RelativeFactor*sig.RestRate
	may := d.mayIsolate(sig)
	outageWhy := ""
	if d.cfg.Outage(sig.Known, sig.Disconnected) {
		outageWhy = fmt.Sprintf("outage: %d of %d agents disconnected", sig.Disconnected, sig.Known)
	}
	failWhy := fmt.Sprintf("failure rate %.2f over %d results", rate, volume)
	if sig.HasRest {
		failWhy += fmt.Sprintf(" (rest of fleet %.2f over %d)", sig.RestRate, sig.RestVolume)
	}
	failing := enough && worse && rate >= d.cfg.IsolateRate
	held := d.Panic != ""
	d.Panic = ""

	switch d.State {
	case DomainOpen:
		if d.isolations > 0 && now.Sub(d.Since) >= d.cfg.CooldownReset {
			d.isolations = 0
		}
		switch cause, why := wantIsolation(outageWhy, failing, failWhy); {
		case cause != causeNone && may:
			return d.isolate(now, cause, why), true
		case cause == causeOutage:
			// A partial outage: dispatch goes on to the connected agents.
			d.Panic = d.panicReason(sig, why)
		case cause == causeFailures:
			d.Panic = d.panicReason(sig, why)
			return d.become(now, DomainThrottled, d.Panic), true
		case enough && worse && rate >= d.cfg.ThrottleRate:
			return d.become(now, DomainThrottled, failWhy), true
		}
	case DomainThrottled:
		switch cause, why := wantIsolation(outageWhy, failing, failWhy); {
		case cause != causeNone && may:
			return d.isolate(now, cause, why), true
		case cause != causeNone:
			d.Panic = d.panicReason(sig, why)
		case held && !may && !(enough && rate < d.cfg.RecoverRate):
			// Released from isolation by the panic: stay throttled while
			// it lasts, unless the domain proves healthy.
			d.Panic = d.panicReason(sig, "held throttled")
		case !enough || rate < d.cfg.RecoverRate || !worse:
			return d.become(now, DomainOpen, fmt.Sprintf("failure rate %.2f recovered", rate)), true
		}
	case DomainIsolated:
		switch {
		case !may:
			return d.panicRelease(now, sig), true
		case now.Sub(d.Since) >= d.cooldown && outageWhy == "":
			d.probeOK, d.probeFail = 0, d.probeFail[:0]
			return d.become(now, DomainProbing, fmt.Sprintf("cool-down %v over", d.cooldown)), true
		}
	case DomainProbing:
		switch {
		case outageWhy != "" && !may:
			d.Panic = d.panicReason(sig, outageWhy)
			return d.become(now, DomainOpen, d.Panic), true
		case outageWhy != "":
			return d.isolate(now, causeOutage, "while probing, "+outageWhy), true
		case d.probesLost() && !may:
			d.Panic = d.panicReason(sig, d.probesWhy())
			return d.become(now, DomainThrottled, d.Panic), true
		case d.probesLost():
			return d.isolate(now, causeProbes, d.probesWhy()), true
		case d.probeOK >= d.probeMajority():
			d.results.reset()
			return d.become(now, DomainOpen, fmt.Sprintf("%d probes succeeded", d.probeOK)), true
		case !may:
			d.Panic = d.panicReason(sig, "probing")
			return d.become(now, DomainThrottled, d.Panic), true
		}
	}
	return DomainTransition{}, false
}

// probeMajority is how many probes must succeed to open the domain.
func (d *DomainHealth) probeMajority() int { return d.cfg.ProbeTasks/2 + 1 }

// probesLost reports whether so many probes failed that a majority can no
// longer succeed.
func (d *DomainHealth) probesLost() bool {
	return len(d.probeFail) > d.cfg.ProbeTasks-d.probeMajority()
}

// wantIsolation says whether the domain's health calls for isolation, and
// why: an outage first, then failures.
func wantIsolation(outageWhy string, failing bool, failWhy string) (isolationCause, string) {
	switch {
	case outageWhy != "":
		return causeOutage, outageWhy
	case failing:
		return causeFailures, failWhy
	}
	return causeNone, ""
}

func (d *DomainHealth) probesWhy() string {
	return fmt.Sprintf("%d of %d probes failed", len(d.probeFail), len(d.probeFail)+d.probeOK)
}

// panicRelease ends an isolation the fleet can no longer afford: a zone out
// of service for an outage opens (its disconnected agents get nothing
// anyway), one isolated for failures is throttled.
func (d *DomainHealth) panicRelease(now time.Time, sig DomainSignals) DomainTransition {
	to := DomainThrottled
	if d.cause == causeOutage {
		to = DomainOpen
	}
	d.Panic = d.panicReason(sig, "isolated: "+d.Reason)
	return d.become(now, to, d.Panic)
}

// isolate takes the domain out of service. Isolations for failures double
// the cool-down; an outage is over when its agents are back, so its
// isolation lasts the base cool-down and does not count towards doubling
// (counted, a zone that lost its agents a few times waited minutes after
// they returned while its pinned work stood still: swarm 20261130 runs
// 2746, 7046, 8213 and 9389).
func (d *DomainHealth) isolate(now time.Time, cause isolationCause, reason string) DomainTransition {
	d.cooldown = d.cfg.CooldownBase
	if cause != causeOutage {
		d.isolations++
		for i := 1; i < d.isolations && d.cooldown < d.cfg.CooldownMax; i++ {
			d.cooldown *= 2
		}
		d.cooldown = min(d.cooldown, d.cfg.CooldownMax)
	}
	d.cause = cause
	d.isolatedBy = d.isolatedBy[:0]
	if cause == causeProbes {
		d.isolatedBy = append(d.isolatedBy, d.probeFail...)
	}
	d.results.reset()
	return d.become(now, DomainIsolated, reason)
}

func (d *DomainHealth) become(now time.Time, s DomainState, reason string) DomainTransition {
	t := DomainTransition{Domain: d.Name, From: d.State, To: s, Reason: reason}
	d.State, d.Since, d.Reason = s, now, reason
	return t
}

// ProbesWanted is how many more probe tasks a PROBING domain may take,
// given the probes in flight.
func (d *DomainHealth) ProbesWanted(probesInFlight int) int {
	if d.State != DomainProbing || d.probesLost() {
		return 0 // decided: isolated again at the next evaluation
	}
	return max(0, d.cfg.ProbeTasks-d.probeOK-len(d.probeFail)-probesInFlight)
}

// Accepts reports whether the domain takes one more task given its current
// in-flight count (probes among them) and total slots, and if not, the
// decision outcome.
func (d *DomainHealth) Accepts(inFlight, probesInFlight, slots int) (bool, string) {
	switch d.State {
	case DomainOpen:
		return true, ""
	case DomainThrottled:
		limit := max(1, int(float64(slots)*d.cfg.ThrottledInFlightFraction))
		if inFlight < limit {
			return true, ""
		}
		return false, DecisionDomainThrottle
	case DomainProbing:
		if d.ProbesWanted(probesInFlight) > 0 {
			return true, ""
		}
		return false, DecisionDomainIsolated
	}
	return false, DecisionDomainIsolated
}
