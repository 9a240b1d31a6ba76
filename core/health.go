package core

import (
	"fmt"
	"time"
)

// HealthConfig tunes the CompositeHealthScore and quarantine.
type HealthConfig struct {
	// Window is the sliding window the score looks at, split in Buckets.
	Window  time.Duration
	Buckets int
	// Weights of the four components; they must sum to 1.
	WeightHeartbeat, WeightSuccess, WeightFlaps, WeightLatency float64
	// FlapsTolerated disconnects in the window bring the flap component to 0.
	FlapsTolerated int
	// SuccessMinVolume: with fewer results in the window the success
	// component is neutral (1).
	SuccessMinVolume int
	// ResultsMax bounds the per-agent results remembered in the window.
	ResultsMax int
	// LatencyGood and LatencyBad bound the latency component: 1 at or below
	// good, 0 at or above bad, linear between.
	LatencyGood, LatencyBad time.Duration
	// QuarantineThreshold: a score below it quarantines the agent.
	QuarantineThreshold float64
	// ReleaseThreshold (> QuarantineThreshold, hysteresis): the score an agent
	// needs, after its back-off, to be released.
	ReleaseThreshold float64
	// QuarantineBase × n (the agent's n-th quarantine), capped at
	// QuarantineMax, is how long a quarantine lasts at least.
	QuarantineBase, QuarantineMax time.Duration
	// QuarantineDecay: every this long without a quarantine, n goes down by one.
	QuarantineDecay time.Duration
	// DomainQuarantineFraction caps health quarantines per domain (at least
	// one agent); beyond it the problem is the domain's, not the nodes'.
	DomainQuarantineFraction float64
}

// DefaultHealthConfig returns production defaults.
func DefaultHealthConfig() HealthConfig {
	return HealthConfig{
		Window:                   2 * time.Minute,
		Buckets:                  12,
		WeightHeartbeat:          0.25,
		WeightSuccess:            0.25,
		WeightFlaps:              0.4,
		WeightLatency:            0.1,
		FlapsTolerated:           3,
		SuccessMinVolume:         5,
		ResultsMax:               64,
		LatencyGood:              200 * time.Millisecond,
		LatencyBad:               2 * time.Second,
		QuarantineThreshold:      0.6,
		ReleaseThreshold:         0.75,
		QuarantineBase:           30 * time.Second,
		QuarantineMax:            5 * time.Minute,
		QuarantineDecay:          10 * time.Minute,
		DomainQuarantineFraction: 0.2,
	}
}

func (h HealthConfig) validate() error {
	sum := h.WeightHeartbeat + h.WeightSuccess + h.WeightFlaps + h.WeightLatency
	switch {
	case h.Window <= 0 || h.Buckets < 1 || h.Window/time.Duration(h.Buckets) <= 0:
		return fmt.Errorf("%w: config: Health.Window and Buckets must be positive", ErrInvalid)
	case h.WeightHeartbeat < 0 || h.WeightSuccess < 0 || h.WeightFlaps < 0 || h.WeightLatency < 0 || sum < 0.999 || sum > 1.001:
		return fmt.Errorf("%w: config: Health weights must be >= 0 and sum to 1 (got %.3f)", ErrInvalid, sum)
	case h.FlapsTolerated < 1 || h.SuccessMinVolume < 1 || h.ResultsMax < h.SuccessMinVolume:
		return fmt.Errorf("%w: config: Health.FlapsTolerated, SuccessMinVolume >= 1 and ResultsMax >= SuccessMinVolume", ErrInvalid)
	case h.LatencyGood < 0 || h.LatencyBad <= h.LatencyGood:
		return fmt.Errorf("%w: config: Health.LatencyBad must exceed LatencyGood", ErrInvalid)
	case h.QuarantineThreshold <= 0 || h.ReleaseThreshold <= h.QuarantineThreshold || h.ReleaseThreshold > 1:
		return fmt.Errorf("%w: config: need 0 < QuarantineThreshold < ReleaseThreshold <= 1", ErrInvalid)
	case h.QuarantineBase <= 0 || h.QuarantineMax < h.QuarantineBase || h.QuarantineDecay <= 0:
		return fmt.Errorf("%w: config: need 0 < QuarantineBase <= QuarantineMax and QuarantineDecay > 0", ErrInvalid)
	case h.DomainQuarantineFraction <= 0 || h.DomainQuarantineFraction > 1:
		return fmt.Errorf("%w: config: Health.DomainQuarantineFraction must be in (0,1]", ErrInvalid)
	}
	return nil
}

// QuarantineBackoff is how long the n-th quarantine (n >= 1) lasts at least.
func (h HealthConfig) QuarantineBackoff(n int) time.Duration {
	d := h.QuarantineBase * time.Duration(max(n, 1))
	return min(d, h.QuarantineMax)
}

// HealthScore is a CompositeHealthScore with its components, each in [0,1].
type HealthScore struct {
	Score     float64 `json:"score"`
	Heartbeat float64 `json:"heartbeat"` // received / expected heartbeats
	Success   float64 `json:"success"`   // task success rate (poison excluded)
	Flaps     float64 `json:"flaps"`     // 1 - flaps/tolerated
	Latency   float64 `json:"latency"`   // from the agent's round-trip time
	FlapCount int     `json:"flap_count"`
}

type healthBucket struct {
	index      int64 // absolute bucket number; stale when it falls out of the window
	heartbeats int
	latencySum time.Duration
	latencyN   int
}

// HealthWindow scores one agent over a sliding window. It is a plain value
// type driven by explicit times.
type HealthWindow struct {
	cfg      HealthConfig
	interval time.Duration // expected heartbeat interval
	width    time.Duration
	since    time.Time // evidence before this is ignored (registration, quarantine)
	buckets  []healthBucket
	results  outcomeWindow
	flaps    []time.Time
}

// NewHealthWindow starts a window at now for an agent expected to heartbeat
// every interval.
func NewHealthWindow(cfg HealthConfig, interval time.Duration, now time.Time) *HealthWindow {
	w := &HealthWindow{cfg: cfg, interval: interval, width: cfg.Window / time.Duration(cfg.Buckets)}
	w.buckets = make([]healthBucket, cfg.Buckets)
	w.results = outcomeWindow{max: cfg.ResultsMax}
	w.Reset(now)
	return w
}

// SetInterval changes the expected heartbeat interval (the agent reported a
// new one); the evidence stays.
func (w *HealthWindow) SetInterval(interval time.Duration) {
	if interval <= 0 {
		failf("health: heartbeat interval %v must be > 0", interval)
	}
	w.interval = interval
}

// Reset forgets all evidence before now.
func (w *HealthWindow) Reset(now time.Time) {
	w.since = now
	for i := range w.buckets {
		w.buckets[i] = healthBucket{index: -1}
	}
	w.results.reset()
	w.flaps = w.flaps[:0]
}

func (w *HealthWindow) bucketIndex(t time.Time) int64 { return t.UnixNano() / int64(w.width) }

func (w *HealthWindow) bucket(t time.Time) *healthBucket {
	idx := w.bucketIndex(t)
	b := &w.buckets[int(idx%int64(len(w.buckets)))]
	if b.index != idx {
		*b = healthBucket{index: idx}
	}
	return b
}

// Heartbeat records a heartbeat at now with the agent's last round trip.
func (w *HealthWindow) Heartbeat(now time.Time, rtt time.Duration) {
	b := w.bucket(now)
	b.heartbeats++
	if rtt > 0 {
		b.latencySum += rtt
		b.latencyN++
	}
}

// Result records a task outcome at now.
func (w *HealthWindow) Result(now time.Time, task TaskID, ok bool) {
	w.trim(now)
	w.results.add(now, task, ok)
}

// Forgive excludes task's failures (a poison task is not the agent's fault).
func (w *HealthWindow) Forgive(task TaskID) {
	w.results.forgive(task)
}

// Flap records a connected→disconnected transition at now.
func (w *HealthWindow) Flap(now time.Time) {
	w.trim(now)
	if len(w.flaps) >= 4*w.cfg.FlapsTolerated {
		w.flaps = append(w.flaps[:0], w.flaps[1:]...)
	}
	w.flaps = append(w.flaps, now)
}

// LastFlap returns the time of the latest flap in the window.
func (w *HealthWindow) LastFlap() (time.Time, bool) {
	if len(w.flaps) == 0 {
		return time.Time{}, false
	}
	return w.flaps[len(w.flaps)-1], true
}

func (w *HealthWindow) windowStart(now time.Time) time.Time {
	s := now.Add(-w.cfg.Window)
	if w.since.After(s) {
		s = w.since
	}
	return s
}

func (w *HealthWindow) trim(now time.Time) {
	s := w.windowStart(now)
	w.results.trim(s)
	j := 0
	for j < len(w.flaps) && w.flaps[j].Before(s) {
		j++
	}
	if j > 0 {
		w.flaps = append(w.flaps[:0], w.flaps[j:]...)
	}
}

// Score computes the CompositeHealthScore at now.
func (w *HealthWindow) Score(now time.Time) HealthScore {
	w.trim(now)
	cfg := w.cfg
	var hs HealthScore

	// Heartbeat reliability: heartbeats received in the window over those
	// expected since the window (or the evidence) began. A young window is
	// given the benefit of the doubt.
	start := w.windowStart(now)
	cur := w.bucketIndex(now)
	first := max(cur-int64(len(w.buckets))+1, w.bucketIndex(start))
	if bs := time.Unix(0, first*int64(w.width)); bs.After(start) {
		start = bs
	}
	received, latN := 0, 0
	var latSum time.Duration
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.index >= first && b.index <= cur {
			received += b.heartbeats
			latSum += b.latencySum
			latN += b.latencyN
		}
	}
	elapsed := now.Sub(start)
	expected := float64(elapsed) / float64(w.interval)
	hs.Heartbeat = 1
	if expected >= 2 {
		// One heartbeat of slack for the one in flight.
		hs.Heartbeat = min(1, (float64(received)+1)/expected)
	}

	ok, failed := w.results.counts()
	total := ok + failed
	hs.Success = 1
	if total >= cfg.SuccessMinVolume {
		hs.Success = float64(ok) / float64(total)
	}

	hs.FlapCount = len(w.flaps)
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
	hs.Score = cfg.WeightHeartbeat*hs.Heartbeat + cfg.WeightSuccess*hs.Success +
		cfg.WeightFlaps*hs.Flaps + cfg.WeightLatency*hs.Latency
	hs.Score = min(1, max(0, hs.Score))
	return hs
}
