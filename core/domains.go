package core

import (
	"fmt"
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
	// ThrottledInFlightFraction of a domain's slots (at least one) may be in
	// flight while it is throttled.
	ThrottledInFlightFraction float64
	// OutageFraction: when at least this fraction of a domain's agents is
	// disconnected, the domain is isolated at once (zone outage), so its
	// agents are not quarantined one by one and unconstrained work moves.
	OutageFraction float64
	// CooldownBase doubles with each consecutive isolation up to CooldownMax;
	// it resets after CooldownReset spent OPEN.
	CooldownBase, CooldownMax, CooldownReset time.Duration
	// ProbeTasks that must succeed in PROBING before the domain is OPEN.
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
		ThrottledInFlightFraction: 0.25,
		OutageFraction:            0.5,
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
	case d.ThrottledInFlightFraction <= 0 || d.ThrottledInFlightFraction > 1:
		return fmt.Errorf("%w: config: Domains.ThrottledInFlightFraction must be in (0,1]", ErrInvalid)
	case d.OutageFraction <= 0 || d.OutageFraction > 1:
		return fmt.Errorf("%w: config: Domains.OutageFraction must be in (0,1]", ErrInvalid)
	case d.CooldownBase <= 0 || d.CooldownMax < d.CooldownBase || d.CooldownReset <= 0:
		return fmt.Errorf("%w: config: need 0 < CooldownBase <= CooldownMax, CooldownReset > 0", ErrInvalid)
	case d.ProbeTasks < 1 || d.DomainsMax < 1:
		return fmt.Errorf("%w: config: Domains.ProbeTasks and DomainsMax must be >= 1", ErrInvalid)
	}
	return nil
}

// DomainHealth is one domain's isolation state machine:
// OPEN → THROTTLED → ISOLATED → PROBING → OPEN, with doubling cool-downs.
// It is driven by outcomes and by Evaluate with the domain's connectivity.
type DomainHealth struct {
	cfg        DomainConfig
	Name       string
	State      DomainState
	Since      time.Time // when State was entered
	Reason     string
	isolations int // consecutive isolations; sets the cool-down
	cooldown   time.Duration
	results    outcomeWindow
	probeOK    int // probe successes in this PROBING phase
	probeFail  int
}

// NewDomainHealth returns an OPEN domain.
func NewDomainHealth(cfg DomainConfig, name string, now time.Time) *DomainHealth {
	return &DomainHealth{cfg: cfg, Name: name, State: DomainOpen, Since: now, results: outcomeWindow{max: cfg.ResultsMax}}
}

// Result records a task outcome in the domain.
func (d *DomainHealth) Result(now time.Time, task TaskID, ok bool) {
	d.results.trim(now.Add(-d.cfg.Window))
	d.results.add(now, task, ok)
	if d.State == DomainProbing {
		if ok {
			d.probeOK++
		} else {
			d.probeFail++
		}
	}
}

// Forgive excludes a poison task's failures.
func (d *DomainHealth) Forgive(task TaskID) { d.results.forgive(task) }

// FailureRate returns the failure rate over the window and its volume.
func (d *DomainHealth) FailureRate(now time.Time) (rate float64, volume int) {
	d.results.trim(now.Add(-d.cfg.Window))
	ok, failed := d.results.counts()
	volume = ok + failed
	if volume == 0 {
		return 0, 0
	}
	return float64(failed) / float64(volume), volume
}

// Cooldown is the current isolation cool-down.
func (d *DomainHealth) Cooldown() time.Duration { return d.cooldown }

// DomainTransition is a state change Evaluate made.
type DomainTransition struct {
	Domain   string
	From, To DomainState
	Reason   string
}

// Evaluate advances the state machine at now, given how many of the domain's
// known agents are disconnected. It returns the transition, if any.
func (d *DomainHealth) Evaluate(now time.Time, known, disconnected int) (DomainTransition, bool) {
	rate, volume := d.FailureRate(now)
	outage := known > 0 && float64(disconnected) >= d.cfg.OutageFraction*float64(known)
	enough := volume >= d.cfg.MinVolume
	switch d.State {
	case DomainOpen:
		if d.isolations > 0 && now.Sub(d.Since) >= d.cfg.CooldownReset {
			d.isolations = 0
		}
		switch {
		case outage:
			return d.isolate(now, fmt.Sprintf("outage: %d of %d agents disconnected", disconnected, known)), true
		case enough && rate >= d.cfg.IsolateRate:
			return d.isolate(now, fmt.Sprintf("failure rate %.2f over %d results", rate, volume)), true
		case enough && rate >= d.cfg.ThrottleRate:
			return d.become(now, DomainThrottled, fmt.Sprintf("failure rate %.2f over %d results", rate, volume)), true
		}
	case DomainThrottled:
		switch {
		case outage:
			return d.isolate(now, fmt.Sprintf("outage: %d of %d agents disconnected", disconnected, known)), true
		case enough && rate >= d.cfg.IsolateRate:
			return d.isolate(now, fmt.Sprintf("failure rate %.2f over %d results", rate, volume)), true
		case !enough || rate < d.cfg.RecoverRate:
			return d.become(now, DomainOpen, fmt.Sprintf("failure rate %.2f recovered", rate)), true
		}
	case DomainIsolated:
		if now.Sub(d.Since) >= d.cooldown && !outage {
			d.probeOK, d.probeFail = 0, 0
			return d.become(now, DomainProbing, fmt.Sprintf("cool-down %v over", d.cooldown)), true
		}
	case DomainProbing:
		switch {
		case outage:
			return d.isolate(now, fmt.Sprintf("outage while probing: %d of %d agents disconnected", disconnected, known)), true
		case d.probeFail > 0:
			return d.isolate(now, fmt.Sprintf("%d of %d probes failed", d.probeFail, d.probeFail+d.probeOK)), true
		case d.probeOK >= d.cfg.ProbeTasks:
			d.results.reset()
			return d.become(now, DomainOpen, fmt.Sprintf("%d probes succeeded", d.probeOK)), true
		}
	}
	return DomainTransition{}, false
}

func (d *DomainHealth) isolate(now time.Time, reason string) DomainTransition {
	d.isolations++
	d.cooldown = d.cfg.CooldownBase
	for i := 1; i < d.isolations && d.cooldown < d.cfg.CooldownMax; i++ {
		d.cooldown *= 2
	}
	d.cooldown = min(d.cooldown, d.cfg.CooldownMax)
	d.results.reset()
	return d.become(now, DomainIsolated, reason)
}

func (d *DomainHealth) become(now time.Time, s DomainState, reason string) DomainTransition {
	t := DomainTransition{Domain: d.Name, From: d.State, To: s, Reason: reason}
	d.State, d.Since, d.Reason = s, now, reason
	return t
}

// ProbesWanted is how many more probe tasks a PROBING domain may take,
// given those in flight.
func (d *DomainHealth) ProbesWanted(inFlight int) int {
	if d.State != DomainProbing {
		return 0
	}
	return max(0, d.cfg.ProbeTasks-d.probeOK-inFlight)
}

// Accepts reports whether the domain takes one more task given its current
// in-flight count and total slots, and if not, the decision outcome.
func (d *DomainHealth) Accepts(inFlight, slots int) (bool, string) {
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
		if d.ProbesWanted(inFlight) > 0 {
			return true, ""
		}
		return false, DecisionDomainIsolated
	}
	return false, DecisionDomainIsolated
}
