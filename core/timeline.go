package core

import "time"

// Event kinds on the timeline.
const (
	EventTask   = "task"
	EventAgent  = "agent"
	EventDomain = "domain"
	EventMode   = "mode"
	EventQueue  = "queue"
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

// Event is one audit record. Seq is strictly increasing from 1.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Type    string    `json:"type"` // e.g. task.assigned, agent.quarantined, domain.isolated, mode.changed, queue.purged
	TaskID  TaskID    `json:"task_id,omitempty"`
	AgentID AgentID   `json:"agent_id,omitempty"`
	Domain  string    `json:"domain,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason,omitempty"`
	Count   int       `json:"count,omitempty"` // for bulk events (purge)
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
