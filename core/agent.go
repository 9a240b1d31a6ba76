package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Execution is one attempt an agent runs through its Executor.
type Execution struct {
	TaskID   TaskID
	Attempt  int
	Spec     TaskSpec
	Deadline time.Time // the agent stops it here and reports a timeout
}

// Executor runs executions for an agent. Start must not block; the driver
// reports the end of every started execution through Agent.Finished. After
// Stop the driver may still report Finished; the agent ignores it.
type Executor interface {
	Start(e Execution)
	Stop(task TaskID, attempt int)
}

// AgentConfig configures the agent-side state machine.
type AgentConfig struct {
	ID      AgentID
	Domain  string
	Slots   int
	Address string // advertised to the cp for assignments
	// AllowExec: kind exec is refused unless set.
	AllowExec bool
	// HeartbeatInterval between reports; results trigger an early one.
	HeartbeatInterval time.Duration
	// HeartbeatIntervalFromCP: the agent adopts the interval the cp names
	// in its heartbeat replies (the cp is the source of truth), bounded to
	// [AgentHeartbeatIntervalMin, AgentHeartbeatIntervalMax]; until then it
	// uses HeartbeatInterval. Off when the operator set the agent's own.
	HeartbeatIntervalFromCP bool
	// ResultsMax bounds finished results awaiting acknowledgement.
	ResultsMax int
	// Incarnation must differ on every start of the agent process, so the
	// cp can tell a restart from a reconnect, and grow from one start to
	// the next (the daemon uses its start time): the cp refuses a
	// heartbeat of a lower incarnation, a late one of an older process,
	// while the current process may still run its attempts.
	Incarnation uint64
	// FaultPoints, when set, makes the agent misbehave on purpose at its
	// fault points (simulator only; nil in the daemon).
	FaultPoints FaultPoints `json:"-"`
}

func (c AgentConfig) validate() error {
	if err := ValidateAgentID(c.ID); err != nil {
		return err
	}
	if err := ValidateDomain(c.Domain); err != nil {
		return err
	}
	switch {
	case c.Slots < 1 || c.Slots > 1<<16:
		return fmt.Errorf("%w: agent slots must be in [1,65536]", ErrInvalid)
	case c.HeartbeatInterval <= 0:
		return fmt.Errorf("%w: agent heartbeat interval must be > 0", ErrInvalid)
	case c.ResultsMax < 1:
		return fmt.Errorf("%w: agent ResultsMax must be >= 1", ErrInvalid)
	}
	return nil
}

// Bounds on a heartbeat interval the cp names: a broken reply can make the
// agent neither flood the cp nor fall silent for long.
const (
	AgentHeartbeatIntervalMin = 10 * time.Millisecond
	AgentHeartbeatIntervalMax = 10 * time.Minute
)

// AgentStats are the agent's counters.
type AgentStats struct {
	Accepted, Rejected, Succeeded, Failed, TimedOut, Cancelled, ResultsDropped uint64
	HeartbeatsSent, HeartbeatsAcked                                            uint64
	// Fenced counts attempts the agent stopped because its lease ran out.
	Fenced uint64
}

type execution struct {
	Execution
	startedAt time.Time
	wedged    bool // FaultAgentWedged: the agent does not enforce Deadline
}

// Agent is the agent's state machine: it accepts assignments up to its
// slots, runs them through an Executor, enforces their timeouts, heartbeats
// with what it runs and reports each result until the cp acknowledges it.
type Agent struct {
	cfg  AgentConfig
	exec Executor
	// running holds the executions, sorted by task id: at most Slots, so
	// a binary search finds one and a heartbeat lists them without a sort
	// or a map walk.
	running  []*execution
	pending  []Result // finished, not yet acknowledged; oldest first
	seq      uint64
	lastSent time.Time
	// inFlight holds the heartbeats awaiting a reply (seq, sent at), oldest
	// first: a few, pruned by age at every heartbeat.
	inFlight []sentHeartbeat
	urgent   bool
	rtt      time.Duration
	stopping bool
	stats    AgentStats
	// lease is what the cp named (zero: none); leaseFrom is when the agent
	// sent the latest heartbeat the cp replied to. Past leaseFrom+lease the
	// agent fences itself: it stops its attempts and takes no new one.
	lease     time.Duration
	leaseFrom time.Time
	// done holds the latest attempts the agent is through with (at most
	// agentDoneMax, oldest first in doneOrder), each with why: refused
	// (the cp requeues an attempt on its refusal) or finished with its
	// result acknowledged (the cp has applied it). A duplicate of such an
	// assignment delivered later is refused, never run.
	done      map[Lease]string
	doneOrder []Lease
}

// sentHeartbeat is a heartbeat awaiting its reply.
type sentHeartbeat struct {
	seq uint64
	at  time.Time
}

// execIndex returns where task id is (or would be) in ag.running.
func (ag *Agent) execIndex(id TaskID) (int, bool) {
	return slices.BinarySearchFunc(ag.running, id, func(e *execution, id TaskID) int {
		return strings.Compare(string(e.TaskID), string(id))
	})
}

// findExec returns the running execution of task id.
func (ag *Agent) findExec(id TaskID) (*execution, bool) {
	if i, ok := ag.execIndex(id); ok {
		return ag.running[i], true
	}
	return nil, false
}

// inFlightIndex returns where heartbeat seq is in ag.inFlight, or -1.
func (ag *Agent) inFlightIndex(seq uint64) int {
	for i, h := range ag.inFlight {
		if h.seq == seq {
			return i
		}
	}
	return -1
}

// agentDoneMax bounds the attempts an agent remembers it is through with.
const agentDoneMax = 1024

// remember records that the agent is through with l (why).
func (ag *Agent) remember(l Lease, why string) {
	if _, ok := ag.done[l]; ok {
		return
	}
	if len(ag.doneOrder) >= agentDoneMax {
		delete(ag.done, ag.doneOrder[0])
		ag.doneOrder = slices.Delete(ag.doneOrder, 0, 1)
	}
	ag.done[l] = why
	ag.doneOrder = append(ag.doneOrder, l)
}

// NewAgent returns an agent that runs work through exec.
func NewAgent(cfg AgentConfig, exec Executor) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if exec == nil {
		failf("agent: nil executor")
	}
	return &Agent{cfg: cfg, exec: exec, urgent: true, done: map[Lease]string{}}, nil
}

// ID is the agent's id.
func (ag *Agent) ID() AgentID { return ag.cfg.ID }

// HeartbeatInterval is the interval the agent heartbeats at now (the cp's,
// once adopted).
func (ag *Agent) HeartbeatInterval() time.Duration { return ag.cfg.HeartbeatInterval }

// Config returns the agent's configuration.
func (ag *Agent) Config() AgentConfig { return ag.cfg }

// Stats returns the agent's counters.
func (ag *Agent) Stats() AgentStats { return ag.stats }

// Running returns the leases the agent is executing, sorted.
func (ag *Agent) Running() []Lease {
	out := make([]Lease, len(ag.running))
	for i, e := range ag.running {
		out[i] = Lease{TaskID: e.TaskID, Attempt: e.Attempt}
	}
	return out
}

// PendingResults is how many results await acknowledgement.
func (ag *Agent) PendingResults() int { return len(ag.pending) }

// Assign takes an assignment from the cp and answers it.
func (ag *Agent) Assign(now time.Time, as Assign) AssignAck {
	ack := AssignAck{AgentID: ag.cfg.ID, TaskID: as.TaskID, Attempt: as.Attempt, HeartbeatSeq: ag.seq}
	l := Lease{TaskID: as.TaskID, Attempt: as.Attempt}
	reject := func(reason string) AssignAck {
		ag.stats.Rejected++
		ack.Reason = reason
		ag.remember(l, "refused before")
		return ack
	}
	busy := func(reason string) AssignAck {
		ack.Retryable = true
		return reject(reason)
	}
	if as.Incarnation != 0 && as.Incarnation != ag.cfg.Incarnation {
		// Meant for an earlier process of this agent: the cp requeues such
		// an attempt once it hears of the restart, perhaps already has.
		return busy(fmt.Sprintf("stale: meant for incarnation %d, this is %d", as.Incarnation, ag.cfg.Incarnation))
	}
	if why, ok := ag.done[l]; ok {
		// A duplicate of an assignment refused before (the cp has
		// requeued that attempt, or will if the refusal was lost) or run
		// to its acknowledged end.
		ack.Retryable = true
		ag.stats.Rejected++
		ack.Reason = fmt.Sprintf("stale: attempt %d %s", as.Attempt, why)
		return ack
	}
	if cur, ok := ag.findExec(as.TaskID); ok {
		switch {
		case cur.Attempt == as.Attempt: // duplicate delivery
			ack.Accepted = true
			return ack
		case cur.Attempt > as.Attempt:
			return reject(fmt.Sprintf("stale: running attempt %d", cur.Attempt))
		}
		// A newer attempt supersedes ours: the cp moved on.
		ag.stopExecution(now, cur, OutcomeCancelled, "superseded by attempt "+fmt.Sprint(as.Attempt))
	}
	finished := 0 // the latest attempt of this task that finished here
	for _, r := range ag.pending {
		if r.TaskID == as.TaskID {
			finished = max(finished, r.Attempt)
		}
	}
	switch {
	case finished > as.Attempt:
		return reject(fmt.Sprintf("stale: attempt %d already finished", finished))
	case finished == as.Attempt && finished > 0:
		// A redelivery of the attempt that just ran: the same assignment,
		// its result is on its way. A refusal would read as one of the
		// current attempt and throw the result away.
		ack.Accepted = true
		return ack
	}
	spec, err := as.Spec.Normalize(DefaultConfig())
	switch {
	case err != nil:
		return reject(err.Error())
	case ag.stopping:
		return busy("agent is stopping")
	case as.SeqLimit != 0 && ag.seq >= as.SeqLimit:
		// The cp takes heartbeat SeqLimit, built without this attempt, as
		// proof that the agent does not run it and gives it to another.
		return busy(fmt.Sprintf("stale: heartbeat %d sent without it (limit %d)", ag.seq, as.SeqLimit))
	case ag.leaseExpired(now):
		// The assignment may be one the cp has long given up on,
		// delivered late: only a heartbeat reply makes the agent sure of
		// the cp again.
		return busy("lease expired: no reply from the cp for " + now.Sub(ag.leaseFrom).String())
	case spec.Kind == KindExec && !ag.cfg.AllowExec:
		return reject("kind exec is not allowed on this agent (start it with -allow-exec)")
	case len(ag.running) >= ag.cfg.Slots:
		return busy(fmt.Sprintf("all %d slots busy", ag.cfg.Slots))
	case as.Attempt < 1:
		return reject("attempt must be >= 1")
	}
	e := &execution{Execution: Execution{TaskID: as.TaskID, Attempt: as.Attempt, Spec: spec, Deadline: now.Add(spec.Timeout())}, startedAt: now}
	e.wedged = fires(ag.cfg.FaultPoints, FaultAgentWedged, ag.cfg.ID, as.TaskID, as.Attempt)
	i, _ := ag.execIndex(as.TaskID)
	ag.running = slices.Insert(ag.running, i, e)
	ag.stats.Accepted++
	ag.exec.Start(e.Execution)
	ack.Accepted = true
	return ack
}

// Cancel stops an attempt the cp no longer wants.
func (ag *Agent) Cancel(now time.Time, c CancelTask) {
	if cur, ok := ag.findExec(c.TaskID); ok && cur.Attempt <= c.Attempt {
		ag.stopExecution(now, cur, OutcomeCancelled, orDefault(c.Reason, "cancelled by cp"))
	}
}

func (ag *Agent) stopExecution(now time.Time, e *execution, outcome Outcome, reason string) {
	ag.exec.Stop(e.TaskID, e.Attempt)
	ag.finish(now, Result{TaskID: e.TaskID, Attempt: e.Attempt, Outcome: outcome, ExitCode: -1, Error: reason,
		DurationMS: now.Sub(e.startedAt).Milliseconds()})
}

// Finished is the executor's report that an execution ended. Reports for
// executions the agent already stopped are ignored.
func (ag *Agent) Finished(now time.Time, r Result) {
	e, ok := ag.findExec(r.TaskID)
	if !ok || e.Attempt != r.Attempt {
		return
	}
	if r.DurationMS == 0 {
		r.DurationMS = now.Sub(e.startedAt).Milliseconds()
	}
	ag.finish(now, r)
}

func (ag *Agent) finish(now time.Time, r Result) {
	if i, ok := ag.execIndex(r.TaskID); ok {
		ag.running = slices.Delete(ag.running, i, i+1)
	}
	switch r.Outcome {
	case OutcomeSucceeded:
		ag.stats.Succeeded++
	case OutcomeTimeout:
		ag.stats.TimedOut++
	case OutcomeCancelled:
		ag.stats.Cancelled++
	default:
		ag.stats.Failed++
	}
	if len(ag.pending) >= ag.cfg.ResultsMax {
		ag.pending = slices.Delete(ag.pending, 0, 1)
		ag.stats.ResultsDropped++
	}
	ag.pending = append(ag.pending, r)
	ag.urgent = true
}

// Stop begins a graceful shutdown: no new work; running attempts finish and
// are reported. Kill (via Cancel) what must not outlive the grace period.
func (ag *Agent) Stop(now time.Time) {
	ag.stopping = true
	ag.urgent = true
}

// CancelAll stops every running attempt (end of a shutdown grace period).
func (ag *Agent) CancelAll(now time.Time, reason string) {
	for _, l := range ag.Running() {
		e, _ := ag.findExec(l.TaskID)
		ag.stopExecution(now, e, OutcomeCancelled, reason)
	}
}

// Drained reports whether a stopping agent has nothing left to run or report.
func (ag *Agent) Drained() bool {
	return ag.stopping && len(ag.running) == 0 && len(ag.pending) == 0
}

// leaseExpired reports whether the agent has gone without a reply from the
// cp for longer than its lease.
func (ag *Agent) leaseExpired(now time.Time) bool {
	return ag.lease > 0 && now.Sub(ag.leaseFrom) >= ag.lease
}

// Tick enforces timeouts and the lease and returns the heartbeat to send
// now, if one is due.
func (ag *Agent) Tick(now time.Time) (HeartbeatInput, bool) {
	var late []*execution // in task id order, as ag.running is
	for _, e := range ag.running {
		if !e.wedged && !now.Before(e.Deadline) {
			late = append(late, e)
		}
	}
	for _, e := range late {
		ag.stopExecution(now, e, OutcomeTimeout, fmt.Sprintf("timed out after %ds", e.Spec.TimeoutSeconds))
	}
	if ag.leaseExpired(now) && len(ag.running) > 0 {
		// The cp may have given these attempts to others by now: stop
		// them (reported cancelled, so the cp requeues them if it has not).
		reason := fmt.Sprintf("lease expired: no reply from the cp for %v (lease %v)", now.Sub(ag.leaseFrom), ag.lease)
		for _, l := range ag.Running() {
			ag.stats.Fenced++
			e, _ := ag.findExec(l.TaskID)
			ag.stopExecution(now, e, OutcomeCancelled, reason)
		}
	}
	due := ag.lastSent.IsZero() || now.Sub(ag.lastSent) >= ag.cfg.HeartbeatInterval
	early := ag.urgent && len(ag.inFlight) == 0
	if !due && !early {
		return HeartbeatInput{}, false
	}
	ag.urgent = false
	ag.seq++
	ag.lastSent = now
	ag.inFlight = slices.DeleteFunc(ag.inFlight, func(h sentHeartbeat) bool {
		return now.Sub(h.at) > 4*ag.cfg.HeartbeatInterval // its reply is not coming
	})
	ag.inFlight = append(ag.inFlight, sentHeartbeat{seq: ag.seq, at: now})
	ag.stats.HeartbeatsSent++
	hb := HeartbeatInput{
		AgentID: ag.cfg.ID, Domain: ag.cfg.Domain, Slots: ag.cfg.Slots, Address: ag.cfg.Address,
		Incarnation: ag.cfg.Incarnation, Seq: ag.seq, Running: ag.Running(), Results: slices.Clone(ag.pending),
		RTTMillis: ag.rtt.Milliseconds(), Stopping: ag.stopping, AllowsExec: ag.cfg.AllowExec,
		HeartbeatIntervalMillis: max(1, ag.cfg.HeartbeatInterval.Milliseconds()),
		SelfFencing:             true,
	}
	if ag.cfg.FaultPoints != nil {
		hb.Results = slices.DeleteFunc(hb.Results, func(r Result) bool {
			return fires(ag.cfg.FaultPoints, FaultAgentResultHeld, ag.cfg.ID, r.TaskID, r.Attempt)
		})
	}
	return hb, true
}

// HeartbeatReplied takes the cp's reply to heartbeat seq.
func (ag *Agent) HeartbeatReplied(now time.Time, seq uint64, reply HeartbeatReply) {
	if i := ag.inFlightIndex(seq); i >= 0 {
		at := ag.inFlight[i].at
		ag.rtt = now.Sub(at)
		ag.inFlight = slices.Delete(ag.inFlight, i, i+1)
		// The cp heard this heartbeat after it was sent: the lease runs
		// from the sending (see Config.AgentLease). A reply to a heartbeat
		// no longer tracked renews nothing.
		if at.After(ag.leaseFrom) {
			ag.leaseFrom = at
		}
		ag.lease = time.Duration(max(reply.LeaseMillis, 0)) * time.Millisecond
	}
	ag.stats.HeartbeatsAcked++
	if ag.cfg.HeartbeatIntervalFromCP && reply.HeartbeatIntervalMillis > 0 {
		iv := time.Duration(min(reply.HeartbeatIntervalMillis, AgentHeartbeatIntervalMax.Milliseconds())) * time.Millisecond
		ag.cfg.HeartbeatInterval = max(iv, AgentHeartbeatIntervalMin)
	}
	if len(reply.Acked) > 0 {
		ag.pending = slices.DeleteFunc(ag.pending, func(r Result) bool {
			l := Lease{TaskID: r.TaskID, Attempt: r.Attempt}
			if !slices.Contains(reply.Acked, l) || fires(ag.cfg.FaultPoints, FaultAgentResultResent, ag.cfg.ID, r.TaskID, r.Attempt) {
				return false
			}
			ag.remember(l, "finished here, its result acknowledged")
			return true
		})
	}
	for _, c := range reply.Cancel {
		ag.Cancel(now, CancelTask{TaskID: c.TaskID, Attempt: c.Attempt, Reason: "cp does not know this attempt"})
	}
	if len(ag.pending) > 0 {
		ag.urgent = true
	}
}

// HeartbeatFailed tells the agent that heartbeat seq got no reply (transport
// error); the next one goes out at the usual interval.
func (ag *Agent) HeartbeatFailed(now time.Time, seq uint64) {
	if i := ag.inFlightIndex(seq); i >= 0 {
		ag.inFlight = slices.Delete(ag.inFlight, i, i+1)
	}
}

// NextWake is the latest time by which the driver should call Tick again.
func (ag *Agent) NextWake(now time.Time) time.Time {
	next := ag.lastSent.Add(ag.cfg.HeartbeatInterval)
	if ag.urgent && len(ag.inFlight) == 0 {
		next = now
	}
	for _, e := range ag.running {
		if !e.wedged && e.Deadline.Before(next) {
			next = e.Deadline
		}
	}
	if ag.lease > 0 && len(ag.running) > 0 {
		if end := ag.leaseFrom.Add(ag.lease); end.Before(next) {
			next = end
		}
	}
	if next.Before(now) {
		next = now
	}
	return next
}
