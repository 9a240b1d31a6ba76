package core

import (
	"fmt"
	"testing"
	"time"
)

// benchFleet returns a control plane with agents across zones, each with
// slots free, all registered and connected.
func benchFleet(b *testing.B, agents, zones, slots int) (*ControlPlane, time.Time) {
	b.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.TasksMax = 20_000
	cfg.TimelineEventsMax = 1000
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		b.Fatal(err)
	}
	for i := range agents {
		_, err := cp.Apply(t0, HeartbeatInput{AgentID: AgentID(fmt.Sprintf("agent-%05d", i)),
			Domain: fmt.Sprintf("zone-%d", i%zones), Slots: slots, Incarnation: 1, Seq: 1})
		if err != nil {
			b.Fatal(err)
		}
	}
	return cp, t0
}

// enqueueRaw fills the queue without triggering a scheduling pass, so the
// benchmark can time placement alone.
func (cp *ControlPlane) enqueueRaw(now time.Time, n int, domains int) {
	for i := range n {
		cp.taskSeq++
		spec := TaskSpec{Kind: KindSleep, Priority: Priority(i % numPriorities), TimeoutSeconds: 60, MaxAttempts: 3}
		if domains > 0 && i%2 == 0 {
			spec.Domain = fmt.Sprintf("zone-%d", i%domains)
		}
		t := &taskRecord{Task: Task{ID: TaskID(fmt.Sprintf("t-%09d", cp.taskSeq)), Spec: spec, State: TaskQueued, SubmittedAt: now}}
		t.queueItem = queueItem{id: t.ID, prio: spec.Priority, domain: spec.Domain, owner: t}
		if err := cp.queue.Push(&t.queueItem, now); err != nil {
			panic(err)
		}
		cp.tasks[t.ID] = t
	}
}

// completeAll finishes every in-flight task, as results would.
func (cp *ControlPlane) completeAll() {
	for _, a := range cp.agentList {
		for _, t := range a.running {
			cp.releaseLease(t)
			cp.setState(t, TaskSucceeded, ActorAgent, "")
			delete(cp.tasks, t.ID)
		}
	}
	cp.outbox = cp.outbox[:0]
	cp.terminalIDs, cp.terminalOff = cp.terminalIDs[:0], 0
}

// BenchmarkPlacement measures scheduling decisions with 10,000 agents in 3
// zones and a full queue (1000 tasks, half of them domain-constrained, mixed
// priorities). One op is one decision: pick the task (priority, aging,
// fairness), pick the agent (most free slots, via the index), lease, record.
func BenchmarkPlacement(b *testing.B) {
	for _, tc := range []struct {
		name                 string
		agents, zones, slots int
	}{
		{"agents=10000/zones=3", 10_000, 3, 4},
		{"agents=1000/zones=3", 1000, 3, 4},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cp, now := benchFleet(b, tc.agents, tc.zones, tc.slots)
			capacity := cp.queue.Cap()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				cp.completeAll()
				n := min(capacity, b.N-done)
				cp.enqueueRaw(now, n, tc.zones)
				before := cp.inFlight
				b.StartTimer()
				cp.schedule(now)
				placed := cp.inFlight - before
				if placed != n {
					b.Fatalf("placed %d of %d", placed, n)
				}
				done += n
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkTick measures one reconcile pass (TickInput, once a second) over
// a connected, idle fleet whose agents heartbeat every 5s outside the timer:
// the per-tick scans (connectivity, leases, health every
// HeartbeatInterval, domains, self-protection, schedule). One op is one tick.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			cp, now := benchFleet(b, n, 3, 4)
			ids := make([]AgentID, n)
			for i := range ids {
				ids[i] = AgentID(fmt.Sprintf("agent-%05d", i))
			}
			seq := uint64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				now = now.Add(time.Second)
				if i%5 == 0 {
					b.StopTimer()
					seq++
					for k, id := range ids {
						if _, err := cp.Apply(now, HeartbeatInput{AgentID: id, Domain: fmt.Sprintf("zone-%d", k%3), Slots: 4,
							Incarnation: 1, Seq: seq}); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				if _, err := cp.Apply(now, TickInput{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTaskList lists a page of tasks from a cp holding 100,000 (99,000
// of them SUCCEEDED, 1,000 queued), as GET /v1/tasks does under the cp's
// read lock: the time of one op is how long a listing holds off every
// write. "scan" is the full scan and sort Tasks did before, for scale.
func BenchmarkTaskList(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.QueueCapacity, cfg.TasksMax = 100_000, 100_000
	cp, err := NewControlPlane(cfg, t0)
	if err != nil {
		b.Fatal(err)
	}
	cp.enqueueRaw(t0, 100_000, 3)
	n := 0
	cp.queue.Each(func(it *queueItem) {
		if n++; n > 1000 {
			cp.queue.Remove(it)
			it.owner.State = TaskSucceeded
			cp.terminalIDs = append(cp.terminalIDs, it.id)
		}
	})
	queued, succeeded := TaskQueued, TaskSucceeded
	for _, c := range []struct {
		name string
		f    TaskFilter
	}{
		{"all/limit=100", TaskFilter{Limit: 100}},
		{"all/limit=1000", TaskFilter{Limit: 1000}},
		{"queued/limit=100", TaskFilter{State: &queued, Limit: 100}},
		{"succeeded/limit=100", TaskFilter{State: &succeeded, Limit: 100}},
		{"zone-1/limit=100", TaskFilter{Domain: "zone-1", Limit: 100}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if len(cp.Tasks(c.f)) == 0 {
					b.Fatal("empty page")
				}
			}
		})
		b.Run(c.name+"/scan", func(b *testing.B) {
			for b.Loop() {
				if len(tasksReference(cp, c.f)) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
}
