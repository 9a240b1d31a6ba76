package core

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func testHealthConfig() HealthConfig {
	c := DefaultHealthConfig()
	c.Window = time.Minute
	c.Buckets = 6
	c.SuccessMinVolume = 3
	c.ResultsMax = 8
	return c
}

type hwBeat struct {
	at  time.Time
	rtt time.Duration
}

type hwResult struct {
	at       time.Time
	task     TaskID
	ok       bool
	forgiven bool
}

// healthModel keeps every piece of evidence since the last reset and
// computes the score from its definition.
type healthModel struct {
	cfg      HealthConfig
	interval time.Duration
	since    time.Time
	beats    []hwBeat
	results  []hwResult
	flaps    []time.Time
}

func (m *healthModel) score(now time.Time) HealthScore {
	cfg := m.cfg
	width := cfg.Window / time.Duration(cfg.Buckets)
	idx := func(t time.Time) int64 { return t.UnixNano() / int64(width) }
	start := now.Add(-cfg.Window)
	if m.since.After(start) {
		start = m.since
	}
	var hs HealthScore

	// Heartbeats count per bucket: the buckets from the window's start
	// (at most Buckets of them) up to now's.
	cur := idx(now)
	first := max(cur-int64(cfg.Buckets)+1, idx(start))
	hbStart := start
	if bs := time.Unix(0, first*int64(width)); bs.After(hbStart) {
		hbStart = bs
	}
	received, latN := 0, 0
	var latSum time.Duration
	for _, b := range m.beats {
		if i := idx(b.at); i >= first && i <= cur {
			received++
			if b.rtt > 0 {
				latSum += b.rtt
				latN++
			}
		}
	}
	expected := float64(now.Sub(hbStart)) / float64(m.interval)
	hs.Heartbeat = 1
	if expected >= 2 {
		hs.Heartbeat = min(1, float64(received+1)/expected)
	}

	// Results: the latest ResultsMax in the window; forgiven ones do not count.
	var held []hwResult
	for _, r := range m.results {
		if !r.at.Before(start) {
			held = append(held, r)
		}
	}
	if len(held) > cfg.ResultsMax {
		held = held[len(held)-cfg.ResultsMax:]
	}
	ok, total := 0, 0
	for _, r := range held {
		if !r.forgiven {
			total++
			if r.ok {
				ok++
			}
		}
	}
	hs.Success = 1
	if total >= cfg.SuccessMinVolume {
		hs.Success = float64(ok) / float64(total)
	}

	// Flaps: those in the window, at most 4×FlapsTolerated remembered.
	for _, f := range m.flaps {
		if !f.Before(start) {
			hs.FlapCount++
		}
	}
	hs.FlapCount = min(hs.FlapCount, 4*cfg.FlapsTolerated)
	hs.Flaps = max(0, 1-float64(hs.FlapCount)/float64(cfg.FlapsTolerated))

	hs.Latency = 1
	if latN > 0 {
		avg := latSum / time.Duration(latN)
		switch {
		case avg >= cfg.LatencyBad:
			hs.Latency = 0
		case avg > cfg.LatencyGood:
			hs.Latency = 1 - float64(avg-cfg.LatencyGood)/float64(cfg.LatencyBad-cfg.LatencyGood)
		}
	}
	hs.Score = min(1, max(0, cfg.WeightHeartbeat*hs.Heartbeat+cfg.WeightSuccess*hs.Success+
		cfg.WeightFlaps*hs.Flaps+cfg.WeightLatency*hs.Latency))
	return hs
}

func TestHealthWindowStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := testHealthConfig()
		interval := 5 * time.Second
		// Start at an arbitrary offset within a bucket.
		now := testEpoch.Add(time.Duration(rapid.IntRange(0, 9999).Draw(t, "offset_ms")) * time.Millisecond)
		w := NewHealthWindow(cfg, interval, now)
		m := &healthModel{cfg: cfg, interval: interval, since: now}
		tasks := []TaskID{"t1", "t2", "t3", "t4"}

		t.Repeat(map[string]func(*rapid.T){
			"heartbeat": func(t *rapid.T) {
				rtt := time.Duration(rapid.SampledFrom([]int{0, 50, 200, 900, 2500}).Draw(t, "rtt_ms")) * time.Millisecond
				w.Heartbeat(now, rtt)
				m.beats = append(m.beats, hwBeat{now, rtt})
			},
			"results": func(t *rapid.T) {
				// Bursts, so the ResultsMax bound is reached.
				for range rapid.IntRange(1, 6).Draw(t, "n") {
					task := rapid.SampledFrom(tasks).Draw(t, "task")
					ok := rapid.Bool().Draw(t, "ok")
					w.Result(now, task, ok)
					m.results = append(m.results, hwResult{at: now, task: task, ok: ok})
					now = now.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "gap_s")) * time.Second)
				}
			},
			"forgive": func(t *rapid.T) {
				task := rapid.SampledFrom(tasks).Draw(t, "task")
				w.Forgive(task)
				for i := range m.results {
					if m.results[i].task == task {
						m.results[i].forgiven = true
					}
				}
			},
			"flaps": func(t *rapid.T) {
				for range rapid.IntRange(1, 8).Draw(t, "n") {
					w.Flap(now)
					m.flaps = append(m.flaps, now)
					now = now.Add(time.Duration(rapid.IntRange(0, 2).Draw(t, "gap_s")) * time.Second)
				}
			},
			"reset": func(t *rapid.T) {
				w.Reset(now)
				*m = healthModel{cfg: cfg, interval: interval, since: now}
			},
			"advance": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.IntRange(0, 8000).Draw(t, "ms")) * time.Millisecond)
			},
			"advance_long": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.IntRange(10, 90).Draw(t, "s")) * time.Second)
			},
			"": func(t *rapid.T) {
				got, want := w.Score(now), m.score(now)
				for _, c := range []struct {
					name      string
					got, want float64
				}{{"score", got.Score, want.Score}, {"heartbeat", got.Heartbeat, want.Heartbeat},
					{"success", got.Success, want.Success}, {"flaps", got.Flaps, want.Flaps}, {"latency", got.Latency, want.Latency}} {
					if c.got < 0 || c.got > 1 || math.IsNaN(c.got) {
						t.Fatalf("%s component %v outside [0,1]", c.name, c.got)
					}
					if math.Abs(c.got-c.want) > 1e-9 {
						t.Fatalf("%s = %.6f, model %.6f (got %+v, model %+v)", c.name, c.got, c.want, got, want)
					}
				}
				if got.FlapCount != want.FlapCount {
					t.Fatalf("flap count %d, model %d", got.FlapCount, want.FlapCount)
				}
				last, ok := w.LastFlap()
				if want.FlapCount > 0 && (!ok || !last.Equal(m.flaps[len(m.flaps)-1])) {
					t.Fatalf("LastFlap (%v, %v), model %v", last, ok, m.flaps[len(m.flaps)-1])
				}
			},
		})
	})
}

func TestHealthScoreComponents(t *testing.T) {
	cfg := testHealthConfig()
	const interval = 5 * time.Second
	tests := []struct {
		name  string
		feed  func(w *HealthWindow) time.Time // returns when to score
		check func(t *testing.T, hs HealthScore)
	}{
		{"perfect agent scores 1", func(w *HealthWindow) time.Time {
			at := testEpoch
			for range 12 {
				at = at.Add(interval)
				w.Heartbeat(at, 10*time.Millisecond)
			}
			return at
		}, func(t *testing.T, hs HealthScore) {
			if hs.Score != 1 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"three flaps zero the flap component", func(w *HealthWindow) time.Time {
			for i := range 3 {
				w.Flap(testEpoch.Add(time.Duration(i) * time.Second))
			}
			return testEpoch.Add(3 * time.Second)
		}, func(t *testing.T, hs HealthScore) {
			if hs.Flaps != 0 || hs.FlapCount != 3 || hs.Score >= cfg.QuarantineThreshold+1e-9 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"flaps leave the window", func(w *HealthWindow) time.Time {
			w.Flap(testEpoch)
			return testEpoch.Add(cfg.Window + time.Second)
		}, func(t *testing.T, hs HealthScore) {
			if hs.FlapCount != 0 || hs.Flaps != 1 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"success is neutral below the minimum volume", func(w *HealthWindow) time.Time {
			w.Result(testEpoch, "t1", false)
			w.Result(testEpoch, "t2", false)
			return testEpoch
		}, func(t *testing.T, hs HealthScore) {
			if hs.Success != 1 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"forgiven poison failures do not count", func(w *HealthWindow) time.Time {
			w.Result(testEpoch, "ok1", true)
			w.Result(testEpoch, "ok2", true)
			w.Result(testEpoch, "ok3", true)
			w.Result(testEpoch, "poison", false)
			w.Forgive("poison")
			return testEpoch
		}, func(t *testing.T, hs HealthScore) {
			if hs.Success != 1 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"silence lowers the heartbeat component", func(w *HealthWindow) time.Time {
			w.Heartbeat(testEpoch.Add(interval), 0)
			return testEpoch.Add(cfg.Window)
		}, func(t *testing.T, hs HealthScore) {
			if hs.Heartbeat > 0.3 {
				t.Fatalf("%+v", hs)
			}
		}},
		{"latency at or above bad is 0", func(w *HealthWindow) time.Time {
			w.Heartbeat(testEpoch, cfg.LatencyBad)
			return testEpoch
		}, func(t *testing.T, hs HealthScore) {
			if hs.Latency != 0 {
				t.Fatalf("%+v", hs)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewHealthWindow(cfg, interval, testEpoch)
			tt.check(t, w.Score(tt.feed(w)))
		})
	}
}

func TestQuarantineBackoff(t *testing.T) {
	h := DefaultHealthConfig()
	for n, want := range map[int]time.Duration{0: 30 * time.Second, 1: 30 * time.Second, 2: time.Minute, 3: 90 * time.Second,
		9: 270 * time.Second, 10: 5 * time.Minute, 11: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := h.QuarantineBackoff(n); got != want {
			t.Errorf("QuarantineBackoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// fleet drives a ControlPlane with heartbeating agents and no tasks.
type fleet struct {
	cp    *ControlPlane
	now   time.Time
	ids   []AgentID
	dom   map[AgentID]string
	up    map[AgentID]bool
	rtt   map[AgentID]int64
	seq   map[AgentID]uint64
	inc   map[AgentID]uint64
	slots int
}

func newFleet(tb rapid.TB, cfg Config, sizes map[string]int) *fleet {
	cp, err := NewControlPlane(cfg, testEpoch)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fleet{cp: cp, now: testEpoch, dom: map[AgentID]string{}, up: map[AgentID]bool{}, rtt: map[AgentID]int64{},
		seq: map[AgentID]uint64{}, inc: map[AgentID]uint64{}, slots: 1}
	for _, d := range sortedKeys(sizes) {
		for i := range sizes[d] {
			id := AgentID(fmt.Sprintf("%s-a%d", d, i))
			f.ids = append(f.ids, id)
			f.dom[id], f.up[id], f.inc[id] = d, true, 1
		}
	}
	f.beat(tb, 0)
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

func (f *fleet) hb(id AgentID) HeartbeatInput {
	f.seq[id]++
	return HeartbeatInput{AgentID: id, Domain: f.dom[id], Slots: f.slots, Incarnation: f.inc[id], Seq: f.seq[id], RTTMillis: f.rtt[id]}
}

// beat advances time by d, has every up agent heartbeat and ticks.
func (f *fleet) beat(tb rapid.TB, d time.Duration) {
	f.now = f.now.Add(d)
	for _, id := range f.ids {
		if f.up[id] {
			if _, err := f.cp.Apply(f.now, f.hb(id)); err != nil {
				tb.Fatalf("heartbeat %s: %v", id, err)
			}
		}
	}
	f.cp.Apply(f.now, TickInput{})
}

// quarantineChecker checks DESIGN.md's quarantine invariants on the
// timeline and the agent views after every step.
type quarantineChecker struct {
	cfg                   Config
	lastSeq               uint64
	n                     map[AgentID]int       // health quarantines so far (no decay in these tests)
	till                  map[AgentID]time.Time // end of the current back-off
	quarantines, releases int
}

func newQuarantineChecker(cfg Config) *quarantineChecker {
	return &quarantineChecker{cfg: cfg, n: map[AgentID]int{}, till: map[AgentID]time.Time{}}
}

func (c *quarantineChecker) check(tb rapid.TB, cp *ControlPlane) {
	hc := c.cfg.Health
	views := map[AgentID]AgentView{}
	for _, v := range cp.Agents() {
		views[v.ID] = v
	}
	quarantinedIn := map[string]bool{}
	for _, e := range cp.Timeline().Since(c.lastSeq, 0) {
		c.lastSeq = e.Seq
		v := views[e.AgentID]
		switch {
		case e.Type == EventAgentQuarantined && e.Actor == ActorReconcile:
			c.quarantines++
			c.n[e.AgentID]++
			want := min(time.Duration(c.n[e.AgentID])*hc.QuarantineBase, hc.QuarantineMax)
			c.till[e.AgentID] = e.Time.Add(want)
			quarantinedIn[e.Domain] = true
			if !strings.HasPrefix(e.Reason, QuarantineLogLine) || !e.HealthQuarantine() {
				tb.Fatalf("health quarantine (cause %q, reason %q) lacks the cause or the runbook's log line", e.Cause, e.Reason)
			}
			if v.Quarantined && v.QuarantinedBy == quarantineByHealth && !v.QuarantinedUntil.Equal(c.till[e.AgentID]) {
				tb.Fatalf("%s: quarantine #%d lasts until +%v, want a back-off of %v", e.AgentID, c.n[e.AgentID],
					v.QuarantinedUntil.Sub(e.Time), want)
			}
			if v.Health.Score >= hc.QuarantineThreshold {
				tb.Fatalf("%s quarantined with score %.3f >= %.2f", e.AgentID, v.Health.Score, hc.QuarantineThreshold)
			}
		case e.Type == EventAgentReleased && e.Actor == ActorReconcile:
			c.releases++
			if e.Time.Before(c.till[e.AgentID]) {
				tb.Fatalf("%s released at %v, before its back-off ends at %v", e.AgentID, e.Time, c.till[e.AgentID])
			}
			if v.Health.Score < hc.ReleaseThreshold {
				tb.Fatalf("%s released with score %.3f < %.2f", e.AgentID, v.Health.Score, hc.ReleaseThreshold)
			}
		}
	}
	known, healthQ, healthy := map[string]int{}, map[string]int{}, map[string]int{}
	for _, v := range views {
		known[v.Domain]++
		if v.Quarantined && v.QuarantinedBy == quarantineByHealth {
			healthQ[v.Domain]++
		}
		if v.Connected && !v.Quarantined {
			healthy[v.Domain]++
		}
	}
	for d, n := range healthQ {
		if limit := max(1, int(hc.DomainQuarantineFraction*float64(known[d]))); n > limit {
			tb.Fatalf("domain %s: %d of %d agents quarantined for health, cap %d", d, n, known[d], limit)
		}
	}
	for d := range quarantinedIn {
		if healthy[d] < 1 {
			tb.Fatalf("domain %s: quarantine took its last healthy agent", d)
		}
	}
}

var quarantineCoverage struct{ quarantines, releases int }

func TestQuarantineStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.Health.QuarantineDecay = 24 * time.Hour // so the n-th quarantine is the n-th seen
		sizes := map[string]int{
			"z1": rapid.IntRange(1, 6).Draw(t, "z1_agents"),
			"z2": rapid.IntRange(5, 11).Draw(t, "z2_agents"),
		}
		f := newFleet(t, cfg, sizes)
		c := newQuarantineChecker(cfg)
		step := func(t *rapid.T) {
			f.beat(t, cfg.HeartbeatInterval)
			c.check(t, f.cp)
		}
		pick := func(t *rapid.T, up bool) AgentID {
			var cand []AgentID
			for _, id := range f.ids {
				if f.up[id] == up {
					cand = append(cand, id)
				}
			}
			if len(cand) == 0 {
				t.Skip("no candidate")
			}
			return rapid.SampledFrom(cand).Draw(t, "agent")
		}
		defer func() {
			quarantineCoverage.quarantines += c.quarantines
			quarantineCoverage.releases += c.releases
		}()

		t.Repeat(map[string]func(*rapid.T){
			"beats": func(t *rapid.T) {
				for range rapid.IntRange(1, 8).Draw(t, "n") {
					step(t)
				}
			},
			"down": func(t *rapid.T) { f.up[pick(t, true)] = false },
			"up":   func(t *rapid.T) { f.up[pick(t, false)] = true },
			"flap": func(t *rapid.T) {
				// Silent past the heartbeat timeout, then back.
				id := pick(t, true)
				f.up[id] = false
				for range 4 {
					step(t)
				}
				f.up[id] = true
				step(t)
			},
			"flappy": func(t *rapid.T) {
				// One agent flaps again and again (the runbook's agent-flap).
				id := pick(t, true)
				for range rapid.IntRange(2, 4).Draw(t, "flaps") {
					f.up[id] = false
					for range 4 {
						step(t)
					}
					f.up[id] = true
					step(t)
				}
			},
			"latency": func(t *rapid.T) {
				f.rtt[rapid.SampledFrom(f.ids).Draw(t, "agent")] = rapid.SampledFrom([]int64{0, 100, 1500, 3000}).Draw(t, "rtt_ms")
			},
			"": func(t *rapid.T) { c.check(t, f.cp) },
		})
	})
	t.Logf("health quarantines %d, releases %d", quarantineCoverage.quarantines, quarantineCoverage.releases)
	if quarantineCoverage.quarantines == 0 || quarantineCoverage.releases == 0 {
		t.Errorf("the generator never quarantined or released anyone: the test checks nothing")
	}
}
