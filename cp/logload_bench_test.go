package cp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// BenchmarkHeartbeatLog measures what heartbeats cost the durable log: N
// agents (registered first) heartbeat every 5s through the API handler
// (JSON decode, auth, proposal, reply; no TCP) for one interval, paced
// evenly, from a bounded pool of concurrent requests. It reports the
// achieved heartbeats/s, log entries/s, entry bytes/s and bytes per
// heartbeat, fsyncs (appends)/s, the p50/p99 of one heartbeat request, and
// the size and duration of the state's export (the snapshot) with N agents.
// coalesce=off proposes one entry per heartbeat (the behaviour before group
// commit), coalesce=on batches what waits behind the entry in flight.
//
//	go test -run '^$' -bench HeartbeatLog -benchtime 1x ./cp/
func BenchmarkHeartbeatLog(b *testing.B) {
	for _, agents := range []int{1000, 10_000} {
		for _, coalesce := range []bool{false, true} {
			b.Run(fmt.Sprintf("agents=%d/coalesce=%v", agents, onOff(coalesce)), func(b *testing.B) {
				for range b.N {
					heartbeatLoad(b, agents, 5*time.Second, coalesce)
				}
			})
		}
	}
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

func heartbeatLoad(b *testing.B, agents int, interval time.Duration, coalesce bool) {
	const workers = 256
	tc := startCP(b, false, func(o *Options) {
		o.DataDir, o.Logger, o.Clock = b.TempDir(), nil, clock.New()
		o.Core.HeartbeatInterval = interval
		o.Core.HeartbeatTimeout = 3 * interval
		o.Core.LostAfter = 6 * interval
		o.Core.AgentsMax = agents
	})
	s := tc.s
	hb := func(i int, seq uint64) core.HeartbeatInput {
		return core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("agent-%05d", i)), Domain: fmt.Sprintf("zone-%d", i%10),
			Slots: 8, Address: fmt.Sprintf("http://10.0.%d.%d:9090", i/250, i%250), Incarnation: 1_700_000_000_000 + uint64(i), Seq: seq,
			Running: []core.Lease{}, RTTMillis: 3, HeartbeatIntervalMillis: interval.Milliseconds()}
	}
	// Register every agent (not measured).
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < agents; i += 64 {
				if err := s.applyInput(hb(i, 1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.batch.mu.Lock()
	s.batch.off = !coalesce
	s.batch.mu.Unlock()

	bodies := make([][]byte, agents)
	for i := range agents {
		bodies[i], _ = json.Marshal(hb(i, 2))
	}
	h := s.Handler()
	latencies := make([]time.Duration, agents)
	jobs := make(chan int, agents)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				req := httptest.NewRequest(http.MethodPost, fnet.PathHeartbeat, bytes.NewReader(bodies[i]))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				t0 := time.Now()
				h.ServeHTTP(rec, req)
				latencies[i] = time.Since(t0)
				if rec.Code != http.StatusOK {
					b.Errorf("heartbeat: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
	before := s.node.LogStats()
	start := time.Now()
	// The pacer: agent i is due at start + i*interval/agents. It stops
	// after one interval (each agent once), so the load is bounded.
	for i := range agents {
		if d := time.Until(start.Add(time.Duration(int64(interval) * int64(i) / int64(agents)))); d > 0 {
			time.Sleep(d) // pacing the load generator, not waiting for a result
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	after := s.node.LogStats()

	t0 := time.Now()
	snap, err := s.fsm.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	snapTime := time.Since(t0)

	slices.Sort(latencies)
	sec := elapsed.Seconds()
	entries, bytes, appends := after.Entries-before.Entries, after.Bytes-before.Bytes, after.Appends-before.Appends
	b.ReportMetric(float64(agents)/sec, "heartbeats/s")
	b.ReportMetric(float64(entries)/sec, "entries/s")
	b.ReportMetric(float64(bytes)/sec, "log-B/s")
	b.ReportMetric(float64(bytes)/float64(agents), "log-B/heartbeat")
	b.ReportMetric(float64(appends)/sec, "fsyncs/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(snap)), "snapshot-B")
	b.ReportMetric(float64(snapTime.Microseconds())/1000, "snapshot-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLogBytesPerTask reports the log bytes one task adds, entry by
// entry as the cp writes them alone (version 1): its submission, the
// agent's acceptance of the assignment, and what it adds to heartbeats:
// its lease while it runs (per heartbeat) and its result until acked
// (typically one heartbeat). An idle heartbeat is reported for scale.
//
//	go test -run '^$' -bench LogBytesPerTask -benchtime 1x ./cp/
func BenchmarkLogBytesPerTask(b *testing.B) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 123456789, time.UTC)
	size := func(in core.Input) float64 {
		e, err := encodeEnvelope(core.Wrap(at, in))
		if err != nil {
			b.Fatal(err)
		}
		return float64(len(e))
	}
	idle := core.HeartbeatInput{AgentID: "agent-00042", Domain: "zone-2", Slots: 8, Address: "http://10.0.0.42:9090",
		Incarnation: 1_700_000_000_042, Seq: 1234, Running: []core.Lease{}, RTTMillis: 3, HeartbeatIntervalMillis: 5000}
	running, result := idle, idle
	lease := core.Lease{TaskID: "t1a2b3c-000123", Attempt: 1}
	running.Running = []core.Lease{lease}
	result.Results = []core.Result{{TaskID: lease.TaskID, Attempt: 1, Outcome: core.OutcomeSucceeded, DurationMS: 1500}}
	for range b.N {
		submit := size(core.SubmitInput{IdempotencyKey: "7f9c2ba4-e88f-4a1b-9c3d-5e6f7a8b9c0d",
			Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 1000, Priority: core.PriorityNormal}})
		ack := size(core.AssignAck{AgentID: idle.AgentID, TaskID: lease.TaskID, Attempt: 1, Accepted: true})
		b.ReportMetric(size(idle), "B/idle-heartbeat")
		b.ReportMetric(submit, "B/submit")
		b.ReportMetric(ack, "B/assign-ack")
		b.ReportMetric(size(running)-size(idle), "B/lease-per-heartbeat")
		b.ReportMetric(size(result)-size(idle), "B/result")
		b.ReportMetric(submit+ack+size(result)-size(idle), "B/task")
	}
	b.ReportMetric(0, "ns/op")
}
