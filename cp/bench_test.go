package cp

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// BenchmarkEndToEnd measures tasks per second from submission to result on
// loopback: 50 fake agents (real core.Agent state machines that poll
// the cp, 4 slots each, heartbeating every 20ms) run `sleep 0` tasks
// submitted over HTTP by 16 keep-alive clients, with the log in memory
// and in a data dir (fsync on).
//
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./cp/
func BenchmarkEndToEnd(b *testing.B) {
	for _, durable := range []bool{false, true} {
		name := "log=memory"
		if durable {
			name = "log=durable"
		}
		b.Run(name, func(b *testing.B) { endToEnd(b, durable) })
	}
}

func endToEnd(b *testing.B, durable bool) {
	const agents, tasks, clients = 50, 5000, 16
	tc := startCP(b, true, func(o *Options) {
		o.Core.QueueCapacity, o.Core.TasksMax = tasks*(b.N+1), tasks*(b.N+1)
		o.Logger = nil
		if durable {
			o.DataDir = b.TempDir()
		}
	})
	for i := range agents {
		startAgent(b, tc.url, core.AgentID(fmt.Sprintf("a%02d", i)), fmt.Sprintf("z%d", i%3), 4, "")
	}
	waitFor(b, 20*time.Second, "agents connected", func() bool { return tc.snapshot().Agents.Connected == agents })
	succeeded := func() uint64 {
		var n uint64
		tc.s.read(func(c *core.ControlPlane) { n = c.Stats().TasksEnded[core.TaskSucceeded] })
		return n
	}
	b.ResetTimer()
	var elapsed time.Duration
	for range b.N {
		base := succeeded()
		start := time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < tasks; i += clients {
					resp, err := tc.client.Post(tc.url+"/v1/tasks", "application/json", bytes.NewReader([]byte(`{"kind":"sleep","duration_ms":0}`)))
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		waitFor(b, 60*time.Second, "every task succeeded", func() bool { return succeeded()-base == tasks })
		elapsed += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(tasks*b.N)/elapsed.Seconds(), "tasks/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkMemory reports the control plane's heap per queued task and per
// registered agent (core state plus the cp's wrapping), measured as the
// live-heap growth after a GC.
//
//	go test -run '^$' -bench Memory -benchtime 1x ./cp/
func BenchmarkMemory(b *testing.B) {
	const tasks, agents = 50_000, 5_000
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for range b.N {
		cfg := core.DefaultConfig()
		cfg.QueueCapacity, cfg.AgentsMax = tasks, agents
		s, err := New(Options{Core: cfg, Clock: newMock()})
		if err != nil {
			b.Fatal(err)
		}
		h0 := heap()
		for i := range tasks {
			err := s.applyInput(core.SubmitInput{IdempotencyKey: fmt.Sprintf("key-%d", i),
				Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 100, Priority: core.PriorityNormal}})
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := s.applyInput(core.SetModeInput{Mode: core.ModeReadOnly}); err != nil { // keep the queue where it is
			b.Fatal(err)
		}
		h1 := heap()
		for i := range agents {
			err := s.applyInput(core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("agent-%05d", i)),
				Domain: fmt.Sprintf("zone-%d", i%10), Slots: 8, Address: "http://10.0.0.1:9090", Incarnation: 1, Seq: 1})
			if err != nil {
				b.Fatal(err)
			}
		}
		h2 := heap()
		b.ReportMetric(float64(h1-h0)/tasks, "B/queued-task")
		b.ReportMetric(float64(h2-h1)/agents, "B/agent")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(s)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
