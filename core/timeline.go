package core

import (
	"strings"
	"time"
)

// Event kinds on the timeline.
const (
	EventTask   = "task"
	EventAgent  = "agent"
	EventDomain = "domain"
	EventMode   = "mode"
	EventQueue  = "queue"
	EventConfig = "config"
)

// Actors recorded on events.
const (
	ActorScheduler      = "scheduler"
	ActorReconcile      = "reconcile"
	ActorOperator       = "operator"
	ActorConfig         = "config"
	ActorSelfProtection = "self-protection"
	ActorClient         = "client"
	ActorAgent          = "agent"
)

// EventType names what a timeline event records. The strings are the wire
// format of the timeline API, the daemons' logs and the simulator's traces:
// add types, never rename one.
type EventType string

// Timeline event types, grouped by kind.
const (
	// Task events: entering each TaskState (see TaskEventType), and a report
	// of a superseded attempt ignored by fencing.
	EventTaskQueued       EventType = "task.queued"
	EventTaskAssigned     EventType = "task.assigned"
	EventTaskRunning      EventType = "task.running"
	EventTaskSucceeded    EventType = "task.succeeded"
	EventTaskFailed       EventType = "task.failed"
	EventTaskCancelled    EventType = "task.cancelled"
	EventTaskDead         EventType = "task.dead"
	EventTaskStaleIgnored EventType = "task.stale_ignored"

	// Agent events.
	EventAgentRegistered   EventType = "agent.registered"
	EventAgentConnected    EventType = "agent.connected"
	EventAgentDisconnected EventType = "agent.disconnected"
	EventAgentRestarted    EventType = "agent.restarted"
	EventAgentStopping     EventType = "agent.stopping"
	EventAgentLost         EventType = "agent.lost"
	EventAgentForgotten    EventType = "agent.forgotten"
	// EventAgentQuarantined: Cause tells a health quarantine (CauseHealth)
	// from an operator's (CauseOperator).
	EventAgentQuarantined EventType = "agent.quarantined"
	EventAgentReleased    EventType = "agent.released"

	// Domain events: entering each DomainState (see DomainEventType), and
	// the domain panic.
	EventDomainOpen      EventType = "domain.open"
	EventDomainThrottled EventType = "domain.throttled"
	EventDomainIsolated  EventType = "domain.isolated"
	EventDomainProbing   EventType = "domain.probing"
	EventDomainPanic     EventType = "domain.panic"

	// Mode, scheduler and queue events.
	EventModeChanged                  EventType = "mode.changed"
	EventSchedulerReschedulingPaused  EventType = "scheduler.rescheduling_paused"
	EventSchedulerReschedulingResumed EventType = "scheduler.rescheduling_resumed"
	EventQueuePurged                  EventType = "queue.purged"

	// EventConfigChanged: the config changed (ConfigInput); Reason names
	// every changed field old→new, Count how many.
	EventConfigChanged EventType = "config.changed"
)

// EventTypes returns every event type, in the order declared above.
func EventTypes() []EventType {
	return []EventType{EventTaskQueued, EventTaskAssigned, EventTaskRunning, EventTaskSucceeded, EventTaskFailed,
		EventTaskCancelled, EventTaskDead, EventTaskStaleIgnored,
		EventAgentRegistered, EventAgentConnected, EventAgentDisconnected, EventAgentRestarted, EventAgentStopping,
		EventAgentLost, EventAgentForgotten, EventAgentQuarantined, EventAgentReleased,
		EventDomainOpen, EventDomainThrottled, EventDomainIsolated, EventDomainProbing, EventDomainPanic,
		EventModeChanged, EventSchedulerReschedulingPaused, EventSchedulerReschedulingResumed, EventQueuePurged,
		EventConfigChanged, EventLeaderTakeover}
}

// taskEventTypes names the timeline event of entering each task state.
var taskEventTypes = [len(taskStateNames)]EventType{
	TaskQueued: EventTaskQueued, TaskAssigned: EventTaskAssigned, TaskRunning: EventTaskRunning,
	TaskSucceeded: EventTaskSucceeded, TaskFailed: EventTaskFailed, TaskCancelled: EventTaskCancelled, TaskDead: EventTaskDead,
}

// TaskEventType is the type of the event recording a task entering state s.
func TaskEventType(s TaskState) EventType {
	if int(s) >= len(taskEventTypes) || taskEventTypes[s] == "" {
		failf("no event type for task state %v", s)
	}
	return taskEventTypes[s]
}

// DomainEventType is the type of the event recording a domain entering
// state s.
func DomainEventType(s DomainState) EventType {
	switch s {
	case DomainOpen:
		return EventDomainOpen
	case DomainThrottled:
		return EventDomainThrottled
	case DomainIsolated:
		return EventDomainIsolated
	case DomainProbing:
		return EventDomainProbing
	}
	failf("no event type for domain state %q", s)
	return ""
}

// Cause says why an event happened where its type alone does not, so
// consumers need not parse Reason (which is for people).
type Cause string

// Causes of agent.quarantined.
const (
	// CauseHealth: the agent's CompositeHealthScore fell below the
	// threshold. Its Reason starts with QuarantineLogLine.
	CauseHealth Cause = "health"
	// CauseOperator: an operator (or a client acting as one) asked.
	CauseOperator Cause = "operator"
)

// QuarantineLogLine is the line RUNBOOK.md tells operators to grep the logs
// for when an agent flaps. The cp logs every health quarantine with it as
// the message, and the event's Reason starts with it.
const QuarantineLogLine = "Node quarantined due to low health score"

// Event is one audit record. Seq is strictly increasing from 1.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Type    EventType `json:"type"`
	TaskID  TaskID    `json:"task_id,omitempty"`
	AgentID AgentID   `json:"agent_id,omitempty"`
	Domain  string    `json:"domain,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Actor   string    `json:"actor"`
	By      string    `json:"by,omitempty"` // the name of the token that acted (an operator or client input), if any
	Reason  string    `json:"reason,omitempty"`
	Count   int       `json:"count,omitempty"` // for bulk events (purge)
	Cause   Cause     `json:"cause,omitempty"` // set where the type alone does not say why (agent.quarantined)
}

// HealthQuarantine reports whether e records a quarantine for a low health
// score, the event the cp logs as QuarantineLogLine.
func (e Event) HealthQuarantine() bool {
	return e.Type == EventAgentQuarantined && e.Cause == CauseHealth
}

// Timeline is a bounded ring of events in sequence order; the oldest are
// dropped first and counted.
type Timeline struct {
	ring    []Event
	start   int // index of the oldest event in ring
	n       int
	nextSeq uint64
	dropped uint64
}

// NewTimeline returns an empty timeline holding at most max events.
func NewTimeline(max int) *Timeline {
	if max < 1 {
		failf("timeline: max %d", max)
	}
	return &Timeline{ring: make([]Event, max), nextSeq: 1}
}

// Append stamps e with the next sequence number and stores it.
func (t *Timeline) Append(e Event) Event {
	e.Seq = t.nextSeq
	t.nextSeq++
	if t.n == len(t.ring) {
		t.ring[t.start] = e
		t.start = (t.start + 1) % len(t.ring)
		t.dropped++
		return e
	}
	t.ring[(t.start+t.n)%len(t.ring)] = e
	t.n++
	return e
}

// LastSeq is the sequence number of the newest event (0 if none yet).
func (t *Timeline) LastSeq() uint64 { return t.nextSeq - 1 }

// Len is how many events are held.
func (t *Timeline) Len() int { return t.n }

// Dropped counts events pushed out by the bound.
func (t *Timeline) Dropped() uint64 { return t.dropped }

// Since returns up to limit events with Seq > seq, oldest first; limit <= 0
// means all held.
func (t *Timeline) Since(seq uint64, limit int) []Event {
	if t.n == 0 {
		return nil
	}
	first := t.ring[t.start].Seq
	skip := 0
	if seq >= first {
		skip = int(seq - first + 1)
	}
	if skip >= t.n {
		return nil
	}
	cnt := t.n - skip
	if limit > 0 && cnt > limit {
		cnt = limit
	}
	out := make([]Event, cnt)
	for i := range cnt {
		out[i] = t.ring[(t.start+skip+i)%len(t.ring)]
	}
	return out
}

// Summary is the event in one readable line, as the simulator's timeline
// and a replay print it: type, ids, from→to, [actor] and reason.
func (e Event) Summary() string {
	var b strings.Builder
	b.WriteString(string(e.Type))
	for _, f := range []string{string(e.TaskID), string(e.AgentID), e.Domain} {
		if f != "" {
			b.WriteString(" " + f)
		}
	}
	if e.From != "" || e.To != "" {
		b.WriteString(" " + e.From + "→" + e.To)
	}
	b.WriteString(" [" + e.Actor + "]")
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}
