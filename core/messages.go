package core

import (
	"fmt"
	"time"
)

// This file holds the plain values that cross between the control plane and
// agents. package net gives them a wire form and a transport; the core only
// produces and consumes them.

// Lease names one attempt of a task: the attempt number fences it.
type Lease struct {
	TaskID  TaskID `json:"task_id"`
	Attempt int    `json:"attempt"`
}

// Result is how an attempt ended, as the agent reports it until acknowledged.
type Result struct {
	TaskID     TaskID  `json:"task_id"`
	Attempt    int     `json:"attempt"`
	Outcome    Outcome `json:"outcome"`
	ExitCode   int     `json:"exit_code"`
	Error      string  `json:"error,omitempty"`
	Output     string  `json:"output,omitempty"`
	DurationMS int64   `json:"duration_ms"`
}

// Bounds on agent messages.
const (
	leasesPerMessageMax = 4096
	resultErrorMax      = 1024
	addressMax          = 256
)

// HeartbeatInput is an agent's periodic report; the first one (or the first
// after a cp restart) registers the agent.
type HeartbeatInput struct {
	AgentID     AgentID  `json:"agent_id"`
	Domain      string   `json:"domain"`
	Slots       int      `json:"slots"`
	Address     string   `json:"address,omitempty"`     // where the agent takes assignments
	Incarnation uint64   `json:"incarnation"`           // grows when the agent restarts (see AgentConfig.Incarnation)
	Seq         uint64   `json:"seq"`                   // increases per heartbeat within an incarnation
	Running     []Lease  `json:"running"`               // attempts the agent is executing
	Results     []Result `json:"results,omitempty"`     // finished attempts not yet acknowledged
	RTTMillis   int64    `json:"rtt_ms,omitempty"`      // round trip of the previous heartbeat
	Stopping    bool     `json:"stopping,omitempty"`    // the agent is shutting down: no new work
	AllowsExec  bool     `json:"allows_exec,omitempty"` // the agent runs kind exec
	// HeartbeatIntervalMillis is the interval the agent really heartbeats
	// at; the cp measures its reliability against it. Zero: an agent too
	// old to report it (the cp assumes its own interval and does not send
	// it one back, since such an agent refuses unknown reply fields).
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms,omitempty"`
	// SelfFencing: the agent stops its attempts itself once it has not
	// heard from the cp for the lease the cp names (HeartbeatReply.LeaseMillis).
	// Such an agent's incarnations also grow from one start to the next
	// (AgentConfig.Incarnation), so the cp refuses a late heartbeat of an
	// older one.
	SelfFencing bool `json:"self_fencing,omitempty"`
}

// heartbeatIntervalReportedMax bounds the interval an agent may report
// (one day), so it converts to a time.Duration without overflow.
const heartbeatIntervalReportedMax = 24 * time.Hour

func (h *HeartbeatInput) validate(cfg Config) error {
	if err := ValidateAgentID(h.AgentID); err != nil {
		return err
	}
	if err := ValidateDomain(h.Domain); err != nil {
		return err
	}
	if h.Slots < 1 || h.Slots > cfg.AgentSlotsMax {
		return fmt.Errorf("%w: slots must be between 1 and %d", ErrInvalid, cfg.AgentSlotsMax)
	}
	if len(h.Address) > addressMax {
		return fmt.Errorf("%w: address longer than %d bytes", ErrInvalid, addressMax)
	}
	if len(h.Running) > leasesPerMessageMax || len(h.Results) > leasesPerMessageMax {
		return fmt.Errorf("%w: at most %d running leases and results per heartbeat", ErrInvalid, leasesPerMessageMax)
	}
	if h.RTTMillis < 0 {
		return fmt.Errorf("%w: rtt_ms must be >= 0", ErrInvalid)
	}
	if h.HeartbeatIntervalMillis < 0 || h.HeartbeatIntervalMillis > heartbeatIntervalReportedMax.Milliseconds() {
		return fmt.Errorf("%w: heartbeat_interval_ms must be between 0 and %d", ErrInvalid, heartbeatIntervalReportedMax.Milliseconds())
	}
	for _, l := range h.Running {
		if l.TaskID == "" || l.Attempt < 1 {
			return fmt.Errorf("%w: running lease needs task_id and attempt >= 1", ErrInvalid)
		}
	}
	for _, r := range h.Results {
		if r.TaskID == "" || r.Attempt < 1 || !r.Outcome.Valid() {
			return fmt.Errorf("%w: result needs task_id, attempt >= 1 and a known outcome", ErrInvalid)
		}
		if len(r.Error) > resultErrorMax || len(r.Output) > 1<<20 {
			return fmt.Errorf("%w: result error or output too large", ErrInvalid)
		}
	}
	return nil
}

// HeartbeatReply tells the agent which results are safe to forget and which
// attempts to stop.
type HeartbeatReply struct {
	Acked      []Lease `json:"acked,omitempty"`
	Cancel     []Lease `json:"cancel,omitempty"`
	Registered bool    `json:"registered,omitempty"` // this heartbeat (re)registered the agent
	// HeartbeatIntervalMillis is the interval the cp wants (its own
	// HeartbeatInterval): the cp is the source of truth, and an agent not
	// told otherwise by its operator adopts it. Sent only to agents that
	// report their own interval (they know the field), on every reply so a
	// lost registering reply does not leave the agent on its default.
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms,omitempty"`
	// LeaseMillis is the agent's lease (see ControlPlane.AgentLease): an
	// agent that has had no reply to a heartbeat it sent in the last
	// LeaseMillis (by its own clock) stops every attempt it runs and takes
	// no new one, because the cp may by then have given them to others.
	// Sent only to agents that report SelfFencing; zero: no lease.
	LeaseMillis int64 `json:"lease_ms,omitempty"`
}

// Assign asks an agent to run one attempt of a task.
type Assign struct {
	TaskID   TaskID    `json:"task_id"`
	Attempt  int       `json:"attempt"`
	Spec     TaskSpec  `json:"spec"`
	Deadline time.Time `json:"deadline"` // the cp gives up on this attempt after it
	// Incarnation is the agent process the cp means (zero: any): an
	// assignment reaching a restarted agent is stale, since the heartbeat
	// revealing the restart requeues it at once. Sent only to agents that
	// report SelfFencing (an older agent refuses unknown fields).
	Incarnation uint64 `json:"incarnation,omitempty"`
	// SeqLimit (zero: none) is the heartbeat sequence from which the cp
	// takes a heartbeat of this incarnation that does not list the attempt
	// as proof the agent does not run it (and, past AssignTimeout, requeues
	// it): the agent refuses the assignment once it has sent heartbeat
	// SeqLimit. An assignment handed out but still in flight when such a
	// heartbeat was built would otherwise start an attempt the cp has given
	// to another agent. Sent only to agents that report SelfFencing.
	SeqLimit uint64 `json:"seq_limit,omitempty"`
}

// AssignAck is the agent's answer to an Assign.
type AssignAck struct {
	AgentID  AgentID `json:"agent_id"`
	TaskID   TaskID  `json:"task_id"`
	Attempt  int     `json:"attempt"`
	Accepted bool    `json:"accepted"`
	Reason   string  `json:"reason,omitempty"`
	// Retryable marks a refusal that says nothing about the task (slots
	// busy, agent stopping): the task may go to this agent again later.
	Retryable bool `json:"retryable,omitempty"`
	// HeartbeatSeq is the seq of the last heartbeat the agent built before
	// it accepted: heartbeats up to it may reach the cp after this ack and
	// not list the attempt without it being lost.
	HeartbeatSeq uint64 `json:"heartbeat_seq,omitempty"`
}

// CancelTask asks an agent to stop an attempt.
type CancelTask struct {
	TaskID  TaskID `json:"task_id"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason,omitempty"`
}

// Outbound is a message the control plane wants delivered to an agent.
// Exactly one of Assign and Cancel is set.
type Outbound struct {
	To      AgentID     `json:"to"`
	Address string      `json:"address,omitempty"`
	Assign  *Assign     `json:"assign,omitempty"`
	Cancel  *CancelTask `json:"cancel,omitempty"`
}
