package core

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// simAgent is a real Agent driven in-process, with a fake executor.
type simAgent struct {
	ag   *Agent
	fx   *fakeExec
	cfg  AgentConfig
	down bool // the cp does not hear from it
}

// TestControlPlaneStateMachine drives a ControlPlane and real Agents through
// random submissions, completions, restarts, silences, operator actions and
// time, and checks DESIGN.md's invariants after every step.
func TestControlPlaneStateMachine(t *testing.T) {
	seen := map[EventType]int{}
	defer func() {
		t.Logf("events seen: %v", seen)
		for _, typ := range []EventType{EventTaskSucceeded, EventTaskDead, EventTaskCancelled, EventAgentRestarted, EventAgentLost, EventDomainIsolated, EventAgentQuarantined} {
			if seen[typ] == 0 {
				t.Errorf("the generator never produced %s: the test is weaker than it looks", typ)
			}
		}
	}()
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.QueueCapacity = 12
		cfg.TasksMax = 40
		cfg.LeaseGrace = 5 * time.Second
		cp, err := NewControlPlane(cfg, testEpoch)
		if err != nil {
			t.Fatal(err)
		}
		now := testEpoch
		agents := map[AgentID]*simAgent{}
		var ids []AgentID
		for i := range rapid.IntRange(1, 5).Draw(t, "agents") {
			id := AgentID(fmt.Sprintf("a%d", i))
			ac := AgentConfig{ID: id, Domain: fmt.Sprintf("z%d", i%2), Slots: rapid.IntRange(1, 3).Draw(t, "slots"),
				HeartbeatInterval: cfg.HeartbeatInterval, ResultsMax: 16, Incarnation: 1, AllowExec: i%2 == 0}
			fx := &fakeExec{}
			ag, err := NewAgent(ac, fx)
			if err != nil {
				t.Fatal(err)
			}
			agents[id] = &simAgent{ag: ag, fx: fx, cfg: ac}
			ids = append(ids, id)
		}
		tl := &timelineModel{lastSeq: 0, task: map[TaskID]string{}, quarantined: map[AgentID]bool{}, domain: map[string]string{},
			agentDomain: map[AgentID]string{}, terminal: map[TaskID]TaskState{}, seen: seen}
		for id, sa := range agents {
			tl.agentDomain[id] = sa.cfg.Domain
		}

		deliver := func(t *rapid.T) {
			for _, m := range cp.TakeOutbox() {
				sa := agents[m.To]
				if sa == nil || sa.down {
					continue // lost on the way
				}
				switch {
				case m.Assign != nil:
					ack := sa.ag.Assign(now, *m.Assign)
					if _, err := cp.Apply(now, ack); err != nil {
						t.Fatalf("AssignAcked: %v", err)
					}
				case m.Cancel != nil:
					sa.ag.Cancel(now, *m.Cancel)
				}
			}
		}
		beat := func(t *rapid.T, sa *simAgent) {
			hb, ok := sa.ag.Tick(now)
			if !ok {
				return
			}
			rep, err := doHeartbeat(cp, now, hb)
			if err != nil {
				t.Fatalf("heartbeat %s: %v", hb.AgentID, err)
			}
			sa.ag.HeartbeatReplied(now, hb.Seq, rep)
			deliver(t)
		}
		spec := func(t *rapid.T) TaskSpec {
			s := TaskSpec{Kind: KindSleep, DurationMS: 1, Priority: Priority(rapid.IntRange(0, 2).Draw(t, "prio")),
				TimeoutSeconds: rapid.SampledFrom([]int{10, 3600}).Draw(t, "timeout"), MaxAttempts: rapid.IntRange(1, 3).Draw(t, "max_attempts")}
			if rapid.IntRange(0, 4).Draw(t, "exec?") == 0 {
				s.Kind, s.DurationMS, s.Argv = KindExec, 0, []string{"true"}
			}
			if rapid.Bool().Draw(t, "constrained?") {
				s.Domain = rapid.SampledFrom([]string{"z0", "z1", "z9"}).Draw(t, "domain")
			}
			return s
		}

		submit := func(t *rapid.T) {
			in := SubmitInput{Spec: spec(t)}
			if rapid.Bool().Draw(t, "keyed?") {
				in.IdempotencyKey = rapid.SampledFrom([]string{"k1", "k2"}).Draw(t, "key")
			}
			depth := cp.QueueDepth()

			_, replayed, err := doSubmit(cp, now, in)
			if err == nil && !replayed && cp.QueueDepth() == depth && cp.InFlight() == 0 {
				t.Fatalf("accepted task is neither queued nor in flight")
			}
			deliver(t)
		}
		finish := func(t *rapid.T) {
			sa := agents[rapid.SampledFrom(ids).Draw(t, "agent")]
			run := sa.ag.Running()
			if len(run) == 0 {
				return
			}
			l := rapid.SampledFrom(run).Draw(t, "lease")
			out := rapid.SampledFrom([]Outcome{OutcomeSucceeded, OutcomeSucceeded, OutcomeFailed}).Draw(t, "outcome")
			sa.ag.Finished(now, Result{TaskID: l.TaskID, Attempt: l.Attempt, Outcome: out})
			if !sa.down {
				beat(t, sa)
			}
		}

		elapse := func(t *rapid.T, beats int) {
			for range beats {
				now = now.Add(cfg.HeartbeatInterval)
				for _, id := range ids {
					sa := agents[id]
					if sa.down {
						sa.ag.Tick(now) // timeouts still fire on the agent
						continue
					}
					beat(t, sa)
				}
				cp.Apply(now, TickInput{})
				deliver(t)
			}
		}

		t.Repeat(map[string]func(*rapid.T){
			"submit": func(t *rapid.T) {
				for range rapid.IntRange(1, 3).Draw(t, "n") {
					submit(t)
				}
			},
			"finish": func(t *rapid.T) {
				for range rapid.IntRange(1, 3).Draw(t, "n") {
					finish(t)
				}
			},
			"time": func(t *rapid.T) { elapse(t, rapid.IntRange(1, 12).Draw(t, "beats")) },
			"lose": func(t *rapid.T) {
				// An agent goes silent past LostAfter, then comes back.
				sa := agents[rapid.SampledFrom(ids).Draw(t, "agent")]
				sa.down = true
				elapse(t, 11)
				sa.down = false
			},
			"silence": func(t *rapid.T) {
				sa := agents[rapid.SampledFrom(ids).Draw(t, "agent")]
				sa.down = !sa.down
			},
			"restart": func(t *rapid.T) {
				sa := agents[rapid.SampledFrom(ids).Draw(t, "agent")]
				sa.cfg.Incarnation++
				sa.fx = &fakeExec{}
				sa.ag, _ = NewAgent(sa.cfg, sa.fx)
				sa.down = false
				beat(t, sa)
			},
			"cancel": func(t *rapid.T) {
				n := cp.Stats().SubmitAccepted
				if n == 0 {
					t.Skip("no tasks")
				}
				id := TaskID(fmt.Sprintf("t-%06d", rapid.Uint64Range(1, n).Draw(t, "task")))
				if rapid.IntRange(0, 3).Draw(t, "purge?") == 0 {
					cp.Apply(now, PurgeInput{Domain: "z1"})
				} else {
					cp.Apply(now, CancelInput{TaskID: id})
				}
				deliver(t)
			},
			"mode": func(t *rapid.T) {
				m := rapid.SampledFrom([]Mode{ModeNormal, ModeNormal, ModeNormal, ModeDegraded, ModeReadOnly, ModeDraining}).Draw(t, "mode")
				if _, err := cp.Apply(now, SetModeInput{Mode: m}); err != nil {
					t.Fatal(err)
				}
				deliver(t)
			},
			"quarantine": func(t *rapid.T) {
				id := rapid.SampledFrom(ids).Draw(t, "agent")
				if rapid.Bool().Draw(t, "release?") {
					cp.Apply(now, ReleaseInput{AgentID: id})
				} else {
					cp.Apply(now, QuarantineInput{AgentID: id})
				}
				deliver(t)
			},
			"": func(t *rapid.T) {
				checkControlPlane(t, cp, now, tl)
				if err := cp.checkCaches(); err != nil {
					t.Fatal(err)
				}
			},
		})
	})
}

// timelineModel replays the timeline: what it says each task, agent,
// domain and the mode are.
type timelineModel struct {
	lastSeq     uint64
	mode        string
	task        map[TaskID]string
	terminal    map[TaskID]TaskState
	quarantined map[AgentID]bool
	domain      map[string]string
	agentDomain map[AgentID]string
	seen        map[EventType]int
}

func checkControlPlane(t *rapid.T, cp *ControlPlane, now time.Time, tl *timelineModel) {
	cfg := cp.Config()
	terminal, evState := tl.terminal, tl.task
	// Timeline: strictly increasing; every task transition starts from the
	// state the previous one left it in; nothing is assigned to a
	// quarantined agent, into an isolated domain or while READ_ONLY.
	for _, e := range cp.Timeline().Since(tl.lastSeq, 0) {
		if e.Seq != tl.lastSeq+1 {
			t.Fatalf("timeline seq %d after %d", e.Seq, tl.lastSeq)
		}
		tl.lastSeq = e.Seq
		tl.seen[e.Type]++
		switch {
		case e.Type == EventModeChanged:
			tl.mode = e.To
		case e.Type == EventAgentQuarantined:
			tl.quarantined[e.AgentID] = true
		case e.Type == EventAgentReleased:
			tl.quarantined[e.AgentID] = false
		case e.Kind == EventDomain && e.To != "":
			tl.domain[e.Domain] = e.To
		case e.Type == EventTaskAssigned:
			d := tl.agentDomain[e.AgentID]
			if tl.quarantined[e.AgentID] || tl.mode == string(ModeReadOnly) || tl.domain[d] == string(DomainIsolated) {
				t.Fatalf("%s assigned to %s (quarantined %v) in domain %s (%s) while %s", e.TaskID, e.AgentID,
					tl.quarantined[e.AgentID], d, tl.domain[d], tl.mode)
			}
		}
		if e.Kind == EventTask && e.To != "" {
			if prev, ok := evState[e.TaskID]; ok && e.From != prev {
				t.Fatalf("%s: event %s from %s, but the timeline left it %s", e.TaskID, e.Type, e.From, prev)
			}
			evState[e.TaskID] = e.To
		}
	}
	tasks := cp.Tasks(TaskFilter{Limit: 1000})
	checkTaskListing(t, cp, tasks)
	queued, inFlight := 0, 0
	leases := map[TaskID]AgentID{}
	for _, task := range tasks {
		if want, ok := terminal[task.ID]; ok && task.State != want {
			t.Fatalf("%s left terminal state %s for %s", task.ID, want, task.State)
		}
		if task.State.Terminal() {
			terminal[task.ID] = task.State
		}
		if evState[task.ID] != task.State.String() {
			t.Fatalf("%s is %s but the timeline says %s", task.ID, task.State, evState[task.ID])
		}
		switch task.State {
		case TaskQueued:
			queued++
		case TaskAssigned, TaskRunning:
			inFlight++
			leases[task.ID] = task.AgentID
		}
		if task.Attempt > cfg.TaskAttemptsMax || task.Failures > task.Spec.MaxAttempts {
			t.Fatalf("%s: attempt %d failures %d of %d", task.ID, task.Attempt, task.Failures, task.Spec.MaxAttempts)
		}
	}
	if queued != cp.QueueDepth() || cp.QueueDepth() > cfg.QueueCapacity {
		t.Fatalf("queued tasks %d, queue depth %d (cap %d)", queued, cp.QueueDepth(), cfg.QueueCapacity)
	}
	if inFlight != cp.InFlight() {
		t.Fatalf("in-flight tasks %d, InFlight %d", inFlight, cp.InFlight())
	}
	// Each live lease is held by exactly its agent, within its slots.
	held := 0
	for _, v := range cp.Agents() {
		av, _ := cp.Agent(v.ID)
		if len(av.Tasks) > av.Slots {
			t.Fatalf("%s holds %d leases on %d slots", v.ID, len(av.Tasks), av.Slots)
		}
		for _, l := range av.Tasks {
			if leases[l.TaskID] != v.ID {
				t.Fatalf("%s holds %s, leased to %q", v.ID, l.TaskID, leases[l.TaskID])
			}
			held++
		}
	}
	if held != inFlight {
		t.Fatalf("%d leases held by agents, %d tasks in flight", held, inFlight)
	}
	s := cp.DebugView(now)
	active := 0
	for _, d := range s.Domains {
		active += d.Active
		if d.HealthQuarantined > d.HealthQuarantineCap {
			t.Fatalf("domain %s: %d health quarantines, cap %d", d.Name, d.HealthQuarantined, d.HealthQuarantineCap)
		}
		free := 0
		for _, v := range cp.Agents() {
			if v.Domain == d.Name && v.Connected && !v.Held && !v.Quarantined && !v.Stopping {
				free += v.Slots - v.Running
			}
		}
		if d.FreeSlots != free {
			t.Fatalf("domain %s: index says %d free slots, agents %d", d.Name, d.FreeSlots, free)
		}
	}
	if active != inFlight {
		t.Fatalf("domains count %d active, %d in flight", active, inFlight)
	}
	if s.Drained && (queued > 0 || inFlight > 0) {
		t.Fatal("drained with work left")
	}
}

// tasksReference is what Tasks answers: every task that matches, by id,
// from After, at most Limit (the plain scan and sort Tasks replaced).
func tasksReference(cp *ControlPlane, f TaskFilter) []TaskID {
	var ids []TaskID
	for id, t := range cp.tasks {
		if (f.State == nil || t.State == *f.State) && (f.Domain == "" || t.Spec.Domain == f.Domain) && id > f.After {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids[:min(len(ids), f.limit())]
}

func taskIDs(ts []Task) []TaskID {
	ids := make([]TaskID, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	return ids
}

// checkTaskListing: whatever the state, domain, cursor and limit, Tasks
// lists what a scan of every task gives (it reads only the queue for
// QUEUED and the eviction order for terminal states), and paging through
// a filter with a small limit visits every match once.
func checkTaskListing(t *rapid.T, cp *ControlPlane, all []Task) {
	if got, want := taskIDs(all), tasksReference(cp, TaskFilter{Limit: 1000}); !slices.Equal(got, want) {
		t.Fatalf("Tasks lists %v, a scan %v", got, want)
	}
	var states []*TaskState
	states = append(states, nil)
	for i := range taskStateNames {
		st := TaskState(i)
		states = append(states, &st)
	}
	for _, st := range states {
		for _, domain := range []string{"", "z0", "z1"} {
			f := TaskFilter{State: st, Domain: domain, Limit: 1000}
			want := tasksReference(cp, f)
			if got := taskIDs(cp.Tasks(f)); !slices.Equal(got, want) {
				t.Fatalf("Tasks(%+v) lists %v, a scan %v", f, got, want)
			}
			var paged []TaskID
			for f.Limit, f.After = 2, ""; ; {
				page := taskIDs(cp.Tasks(f))
				if !slices.Equal(page, tasksReference(cp, f)) {
					t.Fatalf("Tasks(%+v) lists %v, a scan %v", f, page, tasksReference(cp, f))
				}
				paged = append(paged, page...)
				if len(page) < f.Limit {
					break
				}
				f.After = page[len(page)-1]
			}
			if !slices.Equal(paged, want) {
				t.Fatalf("paging state %v domain %q by 2 visits %v, want %v", st, domain, paged, want)
			}
		}
	}
}
