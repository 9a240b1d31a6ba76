package agent

import (
	"testing"
	"time"
)

// TestDaemonHeartbeatInterval: a daemon given no interval heartbeats at the
// cp's once registered and says so in its heartbeats; one given its own
// keeps it, and the cp shows each agent's real interval.
func TestDaemonHeartbeatInterval(t *testing.T) {
	tests := []struct {
		name   string
		own    time.Duration // Options.HeartbeatInterval; 0: none given
		wantMS int64
	}{
		{"adopts the cp's", 0, cpConfig().HeartbeatInterval.Milliseconds()},
		{"keeps its own", 70 * time.Millisecond, 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeCP(t)
			d := startDaemon(t, f.srv.URL, func(o *Options) { o.HeartbeatInterval = tt.own })
			cpView := func() int64 {
				f.mu.Lock()
				defer f.mu.Unlock()
				v, _ := f.cp.Agent(d.ID())
				return v.HeartbeatIntervalMillis
			}
			waitUntil(t, 10*time.Second, "the cp to show the agent's interval", func() bool { return cpView() == tt.wantMS })
			if got := d.Status().HeartbeatIntervalMillis; got != tt.wantMS {
				t.Fatalf("agent status shows %dms, want %d", got, tt.wantMS)
			}
			// Heartbeats keep coming at that interval: 3 more take ~3
			// intervals, far less than the 5s default.
			f.mu.Lock()
			n := len(f.heartbeats)
			f.mu.Unlock()
			waitUntil(t, 10*time.Second, "three more heartbeats", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return len(f.heartbeats) >= n+3
			})
			f.mu.Lock()
			last := f.heartbeats[len(f.heartbeats)-1]
			f.mu.Unlock()
			if last.HeartbeatIntervalMillis != tt.wantMS {
				t.Fatalf("heartbeat reports %dms, want %d", last.HeartbeatIntervalMillis, tt.wantMS)
			}
		})
	}
}

// TestDaemonIntervalBeforeRegistering: until the cp answers, an agent
// given no interval uses the default and reports it.
func TestDaemonIntervalBeforeRegistering(t *testing.T) {
	d, err := New(Options{ID: "a1", Domain: "z1", Slots: 1, CPURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Status().HeartbeatIntervalMillis; got != HeartbeatIntervalDefault.Milliseconds() {
		t.Fatalf("status %dms before registering", got)
	}
	hb, _ := d.core.Tick(time.Now())
	if hb.HeartbeatIntervalMillis != HeartbeatIntervalDefault.Milliseconds() || !d.core.Config().HeartbeatIntervalFromCP {
		t.Fatalf("first heartbeat %+v, config %+v", hb, d.core.Config())
	}
}
