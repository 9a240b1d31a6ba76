package core

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func testDomainConfig() DomainConfig {
	c := DefaultDomainConfig()
	c.Window = time.Minute
	c.ResultsMax = 12
	c.MinVolume = 4
	c.CooldownBase = 10 * time.Second
	c.CooldownMax = 80 * time.Second
	c.CooldownReset = 3 * time.Minute
	c.ProbeTasks = 2
	return c
}

type domModelResult struct {
	at       time.Time
	task     TaskID
	ok       bool
	forgiven bool
}

// domModel is the isolation state machine written as its specification.
type domModel struct {
	cfg        DomainConfig
	state      DomainState
	since      time.Time
	isolations int
	cooldown   time.Duration
	outageIso  bool             // the current isolation is for an outage
	results    []domModelResult // since the last reset, oldest first
	probeOK    int
	probeFail  []TaskID
	isolatedBy []TaskID
	panic      bool
}

// counts is over the results in the window, at most ResultsMax of the latest.
func (m *domModel) counts(now time.Time) (ok, failed int) {
	start := now.Add(-m.cfg.Window)
	var held []domModelResult
	for _, r := range m.results {
		if !r.at.Before(start) {
			held = append(held, r)
		}
	}
	if len(held) > m.cfg.ResultsMax {
		held = held[len(held)-m.cfg.ResultsMax:]
	}
	for _, r := range held {
		switch {
		case r.forgiven:
		case r.ok:
			ok++
		default:
			failed++
		}
	}
	return ok, failed
}

func (m *domModel) isolate(now time.Time, outage bool, by []TaskID) {
	m.cooldown = m.cfg.CooldownBase
	if !outage { // outages neither double nor count
		m.isolations++
		for range m.isolations - 1 {
			m.cooldown = min(2*m.cooldown, m.cfg.CooldownMax)
		}
	}
	m.results = nil
	m.outageIso, m.isolatedBy = outage, slices.Clone(by)
	m.state, m.since = DomainIsolated, now
}

// probesLost: a majority of ProbeTasks can no longer succeed.
func (m *domModel) probesLost() bool {
	return 2*(m.cfg.ProbeTasks-len(m.probeFail)) <= m.cfg.ProbeTasks
}

func (m *domModel) become(now time.Time, s DomainState) { m.state, m.since = s, now }

// outage: all agents gone, or more than OutageMinAgents and at least
// OutageFraction of them.
func (m *domModel) outage(known, disconnected int) bool {
	return known > 0 && disconnected > 0 && (disconnected == known ||
		disconnected > m.cfg.OutageMinAgents && float64(disconnected) >= m.cfg.OutageFraction*float64(known))
}

func (m *domModel) evaluate(now time.Time, sig DomainSignals) {
	ok, failed := m.counts(now)
	vol := ok + failed
	rate := 0.0
	if vol > 0 {
		rate = float64(failed) / float64(vol)
	}
	enough := vol >= m.cfg.MinVolume
	outage := m.outage(sig.Known, sig.Disconnected)
	worse := sig.HasRest && rate >= m.cfg.RelativeFactor*sig.RestRate
	failing := enough && worse && rate >= m.cfg.IsolateRate
	may := sig.UsableSlots == 0 || sig.TotalUsable == 0 || float64(sig.OpenElsewhere) >= m.cfg.MinOpenCapacity*float64(sig.TotalUsable)
	held := m.panic
	m.panic = false
	switch m.state {
	case DomainOpen:
		if now.Sub(m.since) >= m.cfg.CooldownReset {
			m.isolations = 0
		}
		switch {
		case outage && may:
			m.isolate(now, true, nil)
		case outage:
			m.panic = true
		case failing && may:
			m.isolate(now, false, nil)
		case failing:
			m.panic = true
			m.become(now, DomainThrottled)
		case enough && worse && rate >= m.cfg.ThrottleRate:
			m.become(now, DomainThrottled)
		}
	case DomainThrottled:
		switch {
		case (outage || failing) && may:
			m.isolate(now, outage, nil)
		case outage || failing:
			m.panic = true
		case held && !may && !(enough && rate < m.cfg.RecoverRate):
			m.panic = true
		case !enough || rate < m.cfg.RecoverRate || !worse:
			m.become(now, DomainOpen)
		}
	case DomainIsolated:
		switch {
		case !may && m.outageIso:
			m.panic = true
			m.become(now, DomainOpen)
		case !may:
			m.panic = true
			m.become(now, DomainThrottled)
		case now.Sub(m.since) >= m.cooldown && !outage:
			m.probeOK, m.probeFail = 0, nil
			m.become(now, DomainProbing)
		}
	case DomainProbing:
		switch {
		case outage && may:
			m.isolate(now, true, nil)
		case outage:
			m.panic = true
			m.become(now, DomainOpen)
		case m.probesLost() && may:
			m.isolate(now, false, m.probeFail)
		case m.probesLost():
			m.panic = true
			m.become(now, DomainThrottled)
		case 2*m.probeOK > m.cfg.ProbeTasks:
			m.results = nil
			m.become(now, DomainOpen)
		case !may:
			m.panic = true
			m.become(now, DomainThrottled)
		}
	}
}

var domainEdges = map[[2]DomainState]bool{
	{DomainOpen, DomainThrottled}:     true,
	{DomainOpen, DomainIsolated}:      true,
	{DomainThrottled, DomainOpen}:     true,
	{DomainThrottled, DomainIsolated}: true,
	{DomainIsolated, DomainProbing}:   true,
	{DomainIsolated, DomainThrottled}: true, // panic release
	{DomainIsolated, DomainOpen}:      true, // panic release of an outage
	{DomainProbing, DomainIsolated}:   true,
	{DomainProbing, DomainOpen}:       true,
	{DomainProbing, DomainThrottled}:  true, // panic
}

func TestDomainHealthStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := testDomainConfig()
		now := testEpoch
		d := NewDomainHealth(cfg, "z1", now)
		m := &domModel{cfg: cfg, state: DomainOpen, since: now}
		tasks := []TaskID{"t1", "t2", "t3", "t4", "t5", "t6"}

		t.Repeat(map[string]func(*rapid.T){
			"result": func(t *rapid.T) {
				task := rapid.SampledFrom(tasks).Draw(t, "task")
				// Failures are drawn often enough to cross the thresholds.
				ok := rapid.IntRange(0, 2).Draw(t, "ok") == 0
				probe := rapid.Bool().Draw(t, "probe")
				d.Result(now, task, ok, probe)
				m.results = append(m.results, domModelResult{at: now, task: task, ok: ok})
				if m.state == DomainProbing && probe {
					if ok {
						m.probeOK++
					} else {
						m.probeFail = append(m.probeFail, task)
					}
				}
			},
			"forgive": func(t *rapid.T) {
				task := rapid.SampledFrom(tasks).Draw(t, "task")
				d.Forgive(task)
				for i := range m.results {
					if m.results[i].task == task {
						m.results[i].forgiven = true
					}
				}
				m.probeFail = slices.DeleteFunc(m.probeFail, func(id TaskID) bool { return id == task })
				if m.state == DomainIsolated && len(m.isolatedBy) > 0 {
					m.isolatedBy = slices.DeleteFunc(m.isolatedBy, func(id TaskID) bool { return id == task })
					if len(m.isolatedBy) == 0 {
						m.isolations = max(0, m.isolations-1)
						m.cooldown = 0
					}
				}
			},
			"advance": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.IntRange(0, 40).Draw(t, "s")) * time.Second)
			},
			"evaluate": func(t *rapid.T) {
				var sig DomainSignals
				sig.Known = rapid.IntRange(0, 5).Draw(t, "known")
				if sig.Known > 0 && rapid.IntRange(0, 3).Draw(t, "outage?") == 0 {
					sig.Disconnected = rapid.IntRange(0, sig.Known).Draw(t, "disconnected")
				}
				if sig.HasRest = rapid.Bool().Draw(t, "rest"); sig.HasRest {
					sig.RestRate = rapid.SampledFrom([]float64{0, 0.1, 0.3, 0.5}).Draw(t, "rest rate")
					sig.RestVolume = 20
				}
				sig.UsableSlots = rapid.IntRange(0, 8).Draw(t, "usable")
				sig.OpenElsewhere = rapid.IntRange(0, 8).Draw(t, "open elsewhere")
				sig.TotalUsable = sig.UsableSlots + sig.OpenElsewhere + rapid.IntRange(0, 8).Draw(t, "closed elsewhere")
				ok, failed := m.counts(now)
				from, fromSince, fromCooldown := d.State, d.Since, d.Cooldown()
				tr, changed := d.Evaluate(now, sig)
				m.evaluate(now, sig)
				if d.State != m.state || (d.Panic != "") != m.panic {
					t.Fatalf("Evaluate(%+v) with %d ok / %d failed: %s → %s (panic %q), model %s (panic %v)",
						sig, ok, failed, from, d.State, d.Panic, m.state, m.panic)
				}
				if changed != (from != d.State) || changed && (tr.From != from || tr.To != d.State || tr.Domain != "z1" || tr.Reason == "") {
					t.Fatalf("transition %+v changed=%v for %s → %s", tr, changed, from, d.State)
				}
				if !changed {
					return
				}
				if !domainEdges[[2]DomainState{from, d.State}] {
					t.Fatalf("illegal transition %s → %s", from, d.State)
				}
				outage := m.outage(sig.Known, sig.Disconnected)
				if (d.State == DomainThrottled || d.State == DomainIsolated) && from == DomainOpen && !outage && ok+failed < cfg.MinVolume {
					t.Fatalf("%s → %s on %d results, below the minimum volume %d", from, d.State, ok+failed, cfg.MinVolume)
				}
				if d.State == DomainIsolated && !outage && from != DomainProbing && !sig.HasRest {
					t.Fatalf("the only domain isolated for failures")
				}
				if d.State == DomainIsolated && sig.UsableSlots > 0 &&
					float64(sig.OpenElsewhere) < cfg.MinOpenCapacity*float64(sig.TotalUsable) {
					t.Fatalf("isolated leaving %d of %d usable slots open", sig.OpenElsewhere, sig.TotalUsable)
				}
				if from == DomainIsolated && d.State == DomainProbing && now.Sub(fromSince) < fromCooldown {
					t.Fatalf("probing after %v of a %v cool-down", now.Sub(fromSince), fromCooldown)
				}
				if !d.Since.Equal(now) {
					t.Fatalf("Since %v, want the transition time %v", d.Since, now)
				}
			},
			"": func(t *rapid.T) {
				if d.State != m.state || d.Cooldown() != m.cooldown {
					t.Fatalf("state %s cool-down %v, model %s %v", d.State, d.Cooldown(), m.state, m.cooldown)
				}
				if c := d.Cooldown(); c != 0 && (c < cfg.CooldownBase || c > cfg.CooldownMax) {
					t.Fatalf("cool-down %v outside [%v, %v]", c, cfg.CooldownBase, cfg.CooldownMax)
				}
				ok, failed := m.counts(now)
				rate, vol := d.FailureRate(now)
				if vol != ok+failed || vol > 0 && rate != float64(failed)/float64(vol) {
					t.Fatalf("FailureRate (%.3f, %d), model %d ok %d failed", rate, vol, ok, failed)
				}
				// Admission per state.
				for _, c := range []struct{ inFlight, probes, slots int }{{0, 0, 1}, {0, 0, 8}, {1, 1, 8}, {2, 0, 8}, {5, 1, 20}, {1, 1, 1}} {
					got, outcome := d.Accepts(c.inFlight, c.probes, c.slots)
					var want bool
					switch m.state {
					case DomainOpen:
						want = true
					case DomainThrottled:
						want = c.inFlight < max(1, int(float64(c.slots)*cfg.ThrottledInFlightFraction))
					case DomainProbing:
						want = !m.probesLost() && m.probeOK+len(m.probeFail)+c.probes < cfg.ProbeTasks
					}
					if got != want || !got && outcome == "" {
						t.Fatalf("%s: Accepts(%d in flight, %d probes, %d slots) = (%v, %q), want %v", m.state, c.inFlight, c.probes, c.slots, got, outcome, want)
					}
				}
			},
		})
	})
}

// fleetSignals: a domain of known agents, disconnected of them gone, in a
// large healthy fleet, so neither the relative rule nor the panic holds
// anything back.
func fleetSignals(known, disconnected int) DomainSignals {
	return DomainSignals{Known: known, Disconnected: disconnected, HasRest: true, RestVolume: 100,
		UsableSlots: known - disconnected, OpenElsewhere: 100, TotalUsable: 100 + known - disconnected}
}

// TestDomainIsolationCycle walks one domain through the whole cycle with
// named steps, as an operator would read it on the timeline.
func TestDomainIsolationCycle(t *testing.T) {
	cfg := testDomainConfig()
	now := testEpoch
	d := NewDomainHealth(cfg, "z1", now)
	n := 0
	results := func(ok, failed int) {
		for range ok {
			n++
			d.Result(now, TaskID(fmt.Sprint("t", n)), true, true)
		}
		for range failed {
			n++
			d.Result(now, TaskID(fmt.Sprint("t", n)), false, true)
		}
	}
	expect := func(step string, want DomainState) {
		t.Helper()
		d.Evaluate(now, fleetSignals(4, 0))
		if d.State != want {
			t.Fatalf("%s: state %s, want %s (reason %q)", step, d.State, want, d.Reason)
		}
	}
	results(0, 3)
	expect("3 failures are below the minimum volume", DomainOpen)
	results(6, 1)
	expect("4 of 10 failed: throttled", DomainThrottled)
	if ok, _ := d.Accepts(2, 0, 8); ok {
		t.Fatal("throttled domain took a third task on 8 slots")
	}
	results(0, 10)
	expect("14 of 20 failed: isolated", DomainIsolated)
	if ok, outcome := d.Accepts(0, 0, 8); ok || outcome != DecisionDomainIsolated {
		t.Fatalf("isolated domain accepts: %v %q", ok, outcome)
	}
	now = now.Add(cfg.CooldownBase - time.Second)
	expect("cool-down not over", DomainIsolated)
	now = now.Add(time.Second)
	expect("cool-down over: probing", DomainProbing)
	if got := d.ProbesWanted(0); got != cfg.ProbeTasks {
		t.Fatalf("probes wanted %d", got)
	}
	results(0, 1)
	expect("a failed probe isolates again", DomainIsolated)
	if d.Cooldown() != 2*cfg.CooldownBase {
		t.Fatalf("second cool-down %v, want doubled", d.Cooldown())
	}
	now = now.Add(d.Cooldown())
	expect("second cool-down over", DomainProbing)
	results(1, 0)
	expect("one probe of two", DomainProbing)
	results(1, 0)
	expect("probes succeeded: open", DomainOpen)
	if rate, vol := d.FailureRate(now); vol != 0 || rate != 0 {
		t.Fatalf("window not reset on opening: %.2f over %d", rate, vol)
	}
}

func TestDomainCooldownsDoubleCappedAndReset(t *testing.T) {
	cfg := DefaultDomainConfig()
	now := testEpoch
	d := NewDomainHealth(cfg, "z1", now)
	n := 0
	result := func(ok bool) {
		n++
		d.Result(now, TaskID(fmt.Sprint("t", n)), ok, true)
	}
	var got []time.Duration
	for range 7 {
		for range cfg.MinVolume {
			result(false)
		}
		d.Evaluate(now, fleetSignals(2, 0)) // failing: isolate
		got = append(got, d.Cooldown())
		now = now.Add(d.Cooldown())
		d.Evaluate(now, fleetSignals(2, 0)) // probing
		result(false)
		result(false)
		d.Evaluate(now, fleetSignals(2, 0)) // 2 of 3 probes failed: isolate again
		if d.State != DomainIsolated {
			t.Fatalf("state %s", d.State)
		}
		// Leave ISOLATED → PROBING → OPEN quickly so the next round starts OPEN.
		now = now.Add(d.Cooldown())
		d.Evaluate(now, fleetSignals(2, 0))
		result(true)
		result(true)
		d.Evaluate(now, fleetSignals(2, 0))
		if d.State != DomainOpen {
			t.Fatalf("state %s, want OPEN", d.State)
		}
	}
	// Each round isolates twice: 30s, 60s | 120s, 240s | 480s, 600s (cap) ...
	want := []time.Duration{30 * time.Second, 120 * time.Second, 480 * time.Second, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if !slices.Equal(got, want) {
		t.Fatalf("cool-downs %v, want %v", got, want)
	}
	// An outage lasts the base cool-down however many isolations came
	// before, and does not count towards the next.
	d.Evaluate(now, fleetSignals(2, 2))
	if d.State != DomainIsolated || d.Cooldown() != cfg.CooldownBase {
		t.Fatalf("outage: %s for %v, want ISOLATED for %v", d.State, d.Cooldown(), cfg.CooldownBase)
	}
	now = now.Add(cfg.CooldownReset)
	d.Evaluate(now, fleetSignals(2, 0))
	d.Evaluate(now, fleetSignals(2, 0)) // probing → wait: reset needs OPEN time
	for range 2 {
		result(true)
	}
	d.Evaluate(now, fleetSignals(2, 0))
	now = now.Add(cfg.CooldownReset)
	for range cfg.MinVolume {
		result(false)
	}
	d.Evaluate(now, fleetSignals(2, 0))
	if d.State != DomainIsolated || d.Cooldown() != cfg.CooldownBase {
		t.Fatalf("after %v OPEN: %s for %v, want the cool-down reset to %v", cfg.CooldownReset, d.State, d.Cooldown(), cfg.CooldownBase)
	}
}

// TestProbesDecideByMajority: with 3 probes, one hanging or poison task
// among them does not isolate the domain again; two failures do.
func TestProbesDecideByMajority(t *testing.T) {
	for _, c := range []struct {
		name     string
		outcomes []bool // probe results in order
		want     DomainState
	}{
		{"one failure of three opens", []bool{false, true, true}, DomainOpen},
		{"two failures isolate at once", []bool{false, false}, DomainIsolated},
		{"two successes open at once", []bool{true, true}, DomainOpen},
		{"one failure waits for more", []bool{true, false}, DomainProbing},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultDomainConfig() // 3 probes
			now := testEpoch
			d := NewDomainHealth(cfg, "z1", now)
			d.Evaluate(now, fleetSignals(2, 2))
			now = now.Add(cfg.CooldownBase)
			d.Evaluate(now, fleetSignals(2, 0))
			if d.State != DomainProbing || d.ProbesWanted(0) != 3 {
				t.Fatalf("setup: %s, %d probes wanted", d.State, d.ProbesWanted(0))
			}
			for i, ok := range c.outcomes {
				d.Result(now, TaskID(fmt.Sprint("p", i)), ok, true)
			}
			d.Evaluate(now, fleetSignals(2, 0))
			if d.State != c.want {
				t.Fatalf("state %s (%s), want %s", d.State, d.Reason, c.want)
			}
		})
	}
}
