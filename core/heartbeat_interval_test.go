package core

import (
	"errors"
	"testing"
	"time"
)

// TestAgentAdoptsCPHeartbeatInterval: an agent told to take the cp's
// interval does so (bounded) and reports the interval it really uses; one
// whose operator set its own keeps it.
func TestAgentAdoptsCPHeartbeatInterval(t *testing.T) {
	tests := []struct {
		name    string
		fromCP  bool
		replyMS int64
		want    time.Duration
	}{
		{"adopts the cp's", true, 333, 333 * time.Millisecond},
		{"keeps its own when the cp names none", true, 0, 5 * time.Second},
		{"raised to the floor", true, 1, AgentHeartbeatIntervalMin},
		{"lowered to the ceiling", true, 1 << 40, AgentHeartbeatIntervalMax},
		{"operator's own wins", false, 333, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ag, _ := newTestAgent(t, func(c *AgentConfig) { c.HeartbeatIntervalFromCP = tt.fromCP })
			hb, ok := ag.Tick(testEpoch)
			if !ok || hb.HeartbeatIntervalMillis != 5000 {
				t.Fatalf("first heartbeat %v reports %dms, want 5000", ok, hb.HeartbeatIntervalMillis)
			}
			ag.HeartbeatReplied(testEpoch, hb.Seq, HeartbeatReply{Registered: true, HeartbeatIntervalMillis: tt.replyMS})
			if got := ag.HeartbeatInterval(); got != tt.want {
				t.Fatalf("interval %v, want %v", got, tt.want)
			}
			if next := ag.NextWake(testEpoch); next != testEpoch.Add(tt.want) {
				t.Fatalf("next wake %v after the reply, want %v", next.Sub(testEpoch), tt.want)
			}
			if _, ok := ag.Tick(testEpoch.Add(tt.want - time.Millisecond)); ok {
				t.Fatal("heartbeat before the interval")
			}
			hb, ok = ag.Tick(testEpoch.Add(tt.want))
			if !ok || hb.HeartbeatIntervalMillis != tt.want.Milliseconds() {
				t.Fatalf("next heartbeat %v reports %dms, want %d", ok, hb.HeartbeatIntervalMillis, tt.want.Milliseconds())
			}
		})
	}
}

// TestCPHeartbeatInterval: the cp names its interval to agents that report
// theirs (an old agent, reporting none, would refuse the unknown field),
// shows each agent's reported interval and refuses nonsense.
func TestCPHeartbeatInterval(t *testing.T) {
	h := newHarness(t, nil)
	h.dom["old"], h.inc["old"] = "z1", 1
	h.dom["new"], h.inc["new"] = "z1", 1
	if rep := h.heartbeat("old", nil); !rep.Registered || rep.HeartbeatIntervalMillis != 0 {
		t.Fatalf("reply to an agent reporting no interval: %+v", rep)
	}
	if v, _ := h.cp.Agent("old"); v.HeartbeatIntervalMillis != 5000 {
		t.Fatalf("old agent shown at %dms, want the cp's 5000", v.HeartbeatIntervalMillis)
	}
	for i, ms := range []int64{5000, 1000} {
		rep := h.heartbeat("new", func(hb *HeartbeatInput) { hb.HeartbeatIntervalMillis = ms })
		if rep.Registered != (i == 0) || rep.HeartbeatIntervalMillis != 5000 {
			t.Fatalf("reply %d: %+v", i, rep)
		}
		if v, _ := h.cp.Agent("new"); v.HeartbeatIntervalMillis != ms {
			t.Fatalf("agent shown at %dms, want its reported %d", v.HeartbeatIntervalMillis, ms)
		}
	}
	for _, ms := range []int64{-1, 24*3600*1000 + 1} {
		_, err := h.cp.Apply(h.now, HeartbeatInput{AgentID: "new", Domain: "z1", Slots: 4, Incarnation: 1, Seq: 99, HeartbeatIntervalMillis: ms})
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("heartbeat_interval_ms %d: err %v, want ErrInvalid", ms, err)
		}
	}
	if v, _ := h.cp.Agent("new"); v.HeartbeatIntervalMillis != 1000 {
		t.Fatalf("a refused heartbeat changed the interval to %dms", v.HeartbeatIntervalMillis)
	}
}

// TestReliabilityMeasuredAgainstReportedInterval: heartbeat reliability is
// received over expected heartbeats at the agent's own interval, so an
// agent keeping its 1s interval scores full marks, one reporting 1s but
// heartbeating every 5s does not, and an agent that reports nothing is
// measured against the cp's 5s.
func TestReliabilityMeasuredAgainstReportedInterval(t *testing.T) {
	agents := []struct {
		id        AgentID
		reportMS  int64
		every     time.Duration
		lowerThan float64 // its heartbeat score must be below this
		atLeast   float64 // and at least this
	}{
		{"keeps-1s", 1000, time.Second, 1.01, 0.99},
		{"claims-1s-beats-5s", 1000, 5 * time.Second, 0.3, 0},
		{"old-5s", 0, 5 * time.Second, 1.01, 0.99},
		{"reports-20s-beats-5s", 20000, 5 * time.Second, 1.01, 0.99}, // above the timeout: measured at 15s
	}
	h := newHarness(t, nil)
	for _, a := range agents {
		h.dom[a.id], h.inc[a.id] = "z1", 1
	}
	end := h.now.Add(2 * time.Minute)
	for h.now.Before(end) {
		h.now = h.now.Add(time.Second)
		for _, a := range agents {
			if h.now.Sub(testEpoch)%a.every == 0 {
				h.heartbeat(a.id, func(hb *HeartbeatInput) { hb.HeartbeatIntervalMillis = a.reportMS })
			}
		}
		h.cp.Apply(h.now, TickInput{})
	}
	for _, a := range agents {
		v, _ := h.cp.Agent(a.id)
		if s := v.Health.Heartbeat; s >= a.lowerThan || s < a.atLeast {
			t.Errorf("%s: heartbeat score %.3f, want in [%.2f, %.2f)", a.id, s, a.atLeast, a.lowerThan)
		}
	}
}
