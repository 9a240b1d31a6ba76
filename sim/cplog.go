package sim

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// The simulator models the cp's log, not raft (DESIGN.md "One log"): every
// input it applies to the cp is an entry of a committed prefix, with an
// index; every Options.SnapshotEveryEntries entries it keeps a snapshot (the
// core's export). A restarted or crashed cp recovers from the last snapshot
// plus the entries after it, replayed through core.Apply, and must reach
// exactly the state the dead process had (same StateHash). A submission in
// flight at a crash is ambiguous: it commits (the entry is in the log, the
// client never hears so) or it is lost (never appended); only acknowledged
// submissions count as accepted.
//
// Entries are typed inputs (no JSON on the hot path); the log and the
// snapshots exist only in runs with a cp-restart or cp-crash fault.

// logEntry is one committed entry: an input at the time it was applied.
type logEntry struct {
	at time.Time
	in core.Input
}

// cpLog is the cp's simulated log: the last snapshot and the committed
// entries after it.
type cpLog struct {
	on        bool
	index     uint64 // index of the last committed entry
	snap      []byte // state export at snapIndex
	snapIndex uint64
	entries   []logEntry // snapIndex+1 .. index

	// Leadership (runs with cp-failover, sim/failover.go): the epoch (term)
	// of the leader appending, which replica it is (1-based), its clock's
	// offset from the agents' time, and the time of the last entry: the
	// leader stamps an input with its clock, never before that (cp's
	// fsm.stamp).
	epoch  int
	leader int
	skew   time.Duration
	lastAt time.Time
}

// Recovery is one cp restart or crash recovered from the log.
type Recovery struct {
	// CrashedAt is when the process died (or was restarted); At is when it
	// came back.
	CrashedAt time.Duration `json:"crashed_at"`
	At        time.Duration `json:"at"`
	Crash     bool          `json:"crash"` // kill -9 (cp-crash), not a restart
	// AppliedIndex is the last committed entry at the crash, SnapshotIndex
	// the snapshot recovered from; Replayed entries were applied after it.
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Replayed      int    `json:"replayed"`
	// StateHash is the recovered state's hash, equal to the dead process's
	// at AppliedIndex (else the run stops with a violation).
	StateHash string `json:"state_hash"`
	// InFlightCommitted and InFlightLost count the ambiguous submissions of
	// a crash by their fate.
	InFlightCommitted int `json:"in_flight_committed"`
	InFlightLost      int `json:"in_flight_lost"`
}

// InvDurable is the recovery invariant: a cp recovered from its snapshot
// and log is in exactly the state it died in, so nothing acknowledged is
// lost (every acknowledged task is there with the same id and spec, every
// acknowledged operator mode is in effect).
const InvDurable = "10-durable-recovery"

// usesLog reports whether the run needs the cp's log: it restarts the cp.
func (o Options) usesLog() bool {
	for _, f := range o.Faults {
		if f.Kind == FaultCPRestart || f.Kind == FaultCPCrash || f.Kind == FaultCPFailover {
			return true
		}
	}
	return false
}

// startLog opens the log over the fresh cp's state (index 0).
func (s *sim) startLog() {
	s.log.on = true
	s.log.epoch, s.log.leader = 1, 1
	s.snapshotLog()
}

// apply is the one way the simulator changes the cp: the input is appended
// to the log (when the run keeps one) and applied. A refused input is an
// entry too: applying it changes the cp's statistics, which are state.
func (s *sim) apply(in core.Input) (core.ApplyResult, error) {
	if !s.log.on {
		return s.cp.Apply(s.t, in)
	}
	s.log.index++
	// The log keeps values: a pointer input points into a wire the pool
	// reuses after delivery.
	switch v := in.(type) {
	case *core.HeartbeatInput:
		in = *v
	case *core.AssignAck:
		in = *v
	}
	at := s.log.stamp(s.t)
	s.log.entries = append(s.log.entries, logEntry{at: at, in: in})
	res, err := s.cp.Apply(at, in)
	if len(s.log.entries) >= s.o.SnapshotEveryEntries {
		s.snapshotLog()
	}
	return res, err
}

// stamp is the leader's time for an input applied at the agents' time t:
// its clock, never before the last entry's time. Without a leader change it
// is t.
func (l *cpLog) stamp(t time.Time) time.Time {
	at := t.Add(l.skew)
	if at.Before(l.lastAt) {
		at = l.lastAt
	}
	l.lastAt = at
	return at
}

// snapshotLog takes a snapshot at the current index and drops the entries
// it covers.
func (s *sim) snapshotLog() {
	b, err := s.cp.Export()
	if err != nil {
		panic(fmt.Sprintf("sim: cp export: %v", err)) // the core's own state: a bug in core
	}
	s.log.snap, s.log.snapIndex = b, s.log.index
	clear(s.log.entries) // no references into dropped inputs
	s.log.entries = s.log.entries[:0]
	s.res.Snapshots++
}

// recoverCP is a cp process start on the log: restore the last snapshot,
// replay the committed entries after it. What the replay sends agents was
// sent (or lost) by the dead process: the outbox is dropped. Fault points
// stay quiet during the replay (they decide replies, not state).
func (s *sim) recoverCP() (*core.ControlPlane, error) {
	cp, err := core.Restore(s.log.snap, s.o.Core.FaultPoints)
	if err != nil {
		return nil, err
	}
	if s.fp != nil {
		s.fp.replaying = true
		defer func() { s.fp.replaying = false }()
	}
	for _, e := range s.log.entries {
		_, _ = cp.Apply(e.at, e.in) // a refusal replays as a refusal
	}
	cp.TakeOutbox()
	return cp, nil
}

// cpDown is a cp that is not running: crashed and not yet started again.
type cpDown struct {
	fault     int
	crashedAt time.Duration
	crash     bool
	failover  bool               // a leader lost (cp-failover), not a process
	dead      *core.ControlPlane // the dead process's state, to compare
	hash      string             // its StateHash at the crash
	index     uint64
	committed int
	lost      int
	// agent messages in flight to a lost leader, by fate (cp-failover)
	agentCommitted, agentLost int
	// messages in flight from a lost leader, by fate (cp-failover)
	sentDelivered, sentDropped int
	retry                      []*pendingSubmit // ambiguous keyed submissions, retried after the start
	ops                        []int            // operator actions that found no cp, in order
}

func (d *cpDown) what() string {
	if d.crash {
		return "crash"
	}
	return "restart"
}

// beginDown starts the cp outage d (a crash or a lost leader): unless the
// cp is already down (then it notes why nothing happens), the submissions
// in flight commit or are lost. It reports whether the outage goes on (the
// run may also have stopped on a violation).
func (s *sim) beginDown(d *cpDown, already string) bool {
	if s.down != nil {
		s.note(already)
		s.faultsPending--
		return false
	}
	for range s.o.Faults[d.fault].InFlight {
		s.inFlightSubmit(d)
		if s.res.Violation != nil {
			return false
		}
	}
	return true
}

// takeDown makes d the cp's outage: the process (or leader) that served
// is recorded with its state hash and index, and everything addressed to
// it dies with it.
func (s *sim) takeDown(d *cpDown) {
	d.dead, d.hash, d.index = s.cp, s.cp.StateHash(), s.log.index
	s.down = d
	s.cpGen++
	s.resetPolls()
}

// crashCP kills the cp process (fault i): in-flight submissions commit or
// are lost, everything in flight to the cp dies with its connections, and
// it starts again at the fault's Until.
func (s *sim) crashCP(i int) {
	f := s.o.Faults[i]
	d := &cpDown{fault: i, crashedAt: s.now, crash: true}
	if !s.beginDown(d, "fault: cp crash while the cp is down: nothing more to kill") {
		return
	}
	s.takeDown(d) // messages to the dead process die with it
	downtime := max(f.Until-s.now, 0)
	s.note(fmt.Sprintf("fault: cp crash (kill -9) at applied index %d, down for %v (%d in flight: %d committed, %d lost)",
		d.index, downtime, f.InFlight, d.committed, d.lost))
	s.push(event{at: s.now + downtime, kind: evCPRecover, node: i})
}

// inFlightSubmit is a submission the workload has sent when the cp dies: it
// commits (its entry made it into the log: the task exists, but the client
// never got the answer) or it is lost; either way the client saw a
// timeout. A keyed one is retried once the cp is back: it must then come
// back as a replay of the committed task, or be accepted afresh.
func (s *sim) inFlightSubmit(d *cpDown) {
	w := slices.IndexFunc(s.o.Workload, func(wl Workload) bool { return wl.Start <= s.now && s.now < wl.End })
	if w < 0 {
		return // no workload sending: nothing in flight
	}
	p := s.generate(w)
	p.ambiguous = true
	committed := s.rng.IntN(2) == 0
	s.tr.begin(s.now, s.count, "submit_in_flight")
	s.tr.str("key", p.in.IdempotencyKey)
	if committed {
		s.tr.str("fate", "committed")
	} else {
		s.tr.str("fate", "lost")
	}
	s.tr.end()
	if committed {
		d.committed++
		s.res.InFlightCommitted++
		res, err := s.apply(p.in)
		if err == nil && !res.Replayed {
			if mt := s.m.task(res.Task.ID); mt != nil {
				mt.rec.Poison, mt.rec.Hang = p.poison, p.hang
				mt.rec.Priority, mt.rec.Domain = res.Task.Spec.Priority, res.Task.Spec.Domain
			}
			p.origID = res.Task.ID
		}
		s.afterCP()
	} else {
		d.lost++
		s.res.InFlightLost++
	}
	if p.in.IdempotencyKey != "" {
		d.retry = append(d.retry, p)
	}
}

// restartCP is an operator's restart (fault i): the process stops cleanly
// and starts again at once on its log.
func (s *sim) restartCP(i int) {
	d := &cpDown{fault: i, crashedAt: s.now, dead: s.cp, hash: s.cp.StateHash(), index: s.log.index}
	s.down = d
	s.cpGen++
	s.resetPolls()
	s.startCP()
}

// startCP starts the cp process on its log after a crash or a restart and
// checks the recovery: the state is the dead process's, to the byte.
func (s *sim) startCP() {
	d := s.down
	if d.failover {
		s.takeOver()
		return
	}
	cp, err := s.recoverCP()
	if err != nil {
		s.violate(InvDurable, fmt.Sprintf("cp cannot recover from its snapshot at index %d: %v", s.log.snapIndex, err))
		return
	}
	rec := Recovery{CrashedAt: d.crashedAt, At: s.now, Crash: d.crash, AppliedIndex: s.log.index,
		SnapshotIndex: s.log.snapIndex, Replayed: len(s.log.entries), InFlightCommitted: d.committed, InFlightLost: d.lost}
	rec.StateHash = cp.StateHash()
	s.res.Recoveries = append(s.res.Recoveries, rec)
	if rec.StateHash != d.hash {
		s.violate(InvDurable, fmt.Sprintf("cp recovered from the snapshot at index %d plus %d entries has state_hash %s, the process that died at index %d had %s",
			rec.SnapshotIndex, rec.Replayed, rec.StateHash, d.index, d.hash))
		return
	}
	if !s.checkAcknowledged(d.dead, cp) {
		return
	}
	mode, _, _ := cp.Mode()
	snap := cp.DebugView(s.t)
	s.note(fmt.Sprintf("cp recovered: snapshot at index %d + %d entries replayed, applied index %d, mode %s, queue %d, in flight %d, state_hash %.12s (as before the %s)",
		rec.SnapshotIndex, rec.Replayed, rec.AppliedIndex, mode, snap.QueueDepth, snap.InFlight, rec.StateHash, d.what()))
	s.down = nil
	s.cp = cp
	s.attachCP(cp, false)
	s.openMailboxes()
	// Like the daemon, each start numbers tasks under its own prefix, an
	// input (so a replay reproduces every id).
	if _, err := s.apply(core.StartInput{TaskIDPrefix: fmt.Sprintf("r%d-%s", s.cpGen, s.o.Core.TaskIDPrefix)}); err != nil {
		panic(fmt.Sprintf("sim: restart cp: %v", err))
	}
	s.backUp(d)
}

// backUp ends an outage of the cp (a restart or a takeover) once the new
// process runs: the operator actions and the submissions held during the
// outage go again, and the fault has healed.
func (s *sim) backUp(d *cpDown) {
	s.afterCP()
	for _, op := range d.ops {
		s.push(event{at: s.now, kind: evOperator, node: op})
	}
	for _, p := range d.retry {
		s.push(event{at: s.now + time.Duration(s.rng.Int64N(int64(time.Second))), kind: evResubmit, sub: p})
	}
	s.faultsPending--
	s.healed()
}

// checkAcknowledged is the client's side of the recovery: every task the
// model knows (acknowledged, or committed in flight) is in the recovered cp
// with the same id, state and spec as in the dead one, and the mode the
// timeline last recorded (an operator's included) is in effect.
func (s *sim) checkAcknowledged(dead, cp *core.ControlPlane) bool {
	for _, mt := range s.m.all {
		was, had := dead.Task(mt.rec.ID)
		now, has := cp.Task(mt.rec.ID)
		switch {
		case !had && !mt.state.Terminal():
			continue // the model's own checks report it
		case had != has:
			s.res.Lost++
			s.violate(InvNoTaskLost, fmt.Sprintf("task %s (%s) acknowledged before the cp died is missing after its recovery", mt.rec.ID, mt.state))
			return false
		case had && (now.State != was.State || now.Attempt != was.Attempt || !reflect.DeepEqual(now.Spec, was.Spec)):
			s.violate(InvDurable, fmt.Sprintf("task %s recovered as %s attempt %d (spec %+v), was %s attempt %d (spec %+v)",
				mt.rec.ID, now.State, now.Attempt, now.Spec, was.State, was.Attempt, was.Spec))
			return false
		}
	}
	if mode, by, _ := cp.Mode(); s.m.mode != "" && (mode != s.m.mode || by != s.m.modeBy) {
		s.violate(InvDurable, fmt.Sprintf("recovered cp is in mode %s (by %s), the timeline last set %s (by %s)", mode, by, s.m.mode, s.m.modeBy))
		return false
	}
	return true
}
