package sim

import (
	"fmt"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// Result is everything a run produced: counts, per-task records, the
// control plane's timeline, the metric time series and the trace hash.
type Result struct {
	Name string `json:"name,omitempty"`
	Seed uint64 `json:"seed"`
	// End is the virtual time the run reached.
	End time.Duration `json:"end"`
	// SimEvents is how many simulator events were processed.
	SimEvents  uint64 `json:"sim_events"`
	TraceHash  string `json:"trace_hash"`
	TraceLines int64  `json:"trace_lines"`
	TraceBytes int64  `json:"trace_bytes"`

	// Submission outcomes.
	Submitted int                      `json:"submitted"` // accepted, distinct tasks
	Replayed  int                      `json:"replayed"`  // idempotent replays answered with the original task
	Refused   map[core.RefusalKind]int `json:"refused"`   // by kind
	// Unavailable submissions found no cp process (it was down).
	Unavailable int `json:"unavailable,omitempty"`
	// InFlightCommitted and InFlightLost are submissions in flight at a cp
	// crash, by their fate; none was acknowledged (a committed one counts
	// as Submitted once a retry with its key gets it back).
	InFlightCommitted int `json:"in_flight_committed,omitempty"`
	InFlightLost      int `json:"in_flight_lost,omitempty"`
	// MailboxDropped counts messages for agents dropped because the
	// agent's mailbox was full (Options.MailboxMax).
	MailboxDropped int `json:"mailbox_dropped,omitempty"`
	// Final task states over every cp generation.
	Succeeded   int `json:"succeeded"`
	Failed      int `json:"failed"`
	Dead        int `json:"dead"`
	Cancelled   int `json:"cancelled"`
	NonTerminal int `json:"non_terminal"` // still queued or running at the end
	Lost        int `json:"lost"`         // accepted, then gone without a terminal state
	// DuplicateExecutions counts tasks that ran to success more than once.
	DuplicateExecutions int `json:"duplicate_executions"`

	MaxQueueDepth       int     `json:"max_queue_depth"`
	MaxOldestAgeSeconds float64 `json:"max_oldest_task_age_seconds"`
	Quarantines         int     `json:"quarantines"`
	Requeues            int     `json:"requeues"`
	CPGenerations       int     `json:"cp_generations"`
	// Recoveries are the cp's restarts and crashes, each recovered from
	// its last snapshot plus the committed log entries; Snapshots is how
	// many snapshots the log took (runs that restart the cp only).
	Recoveries []Recovery `json:"recoveries,omitempty"`
	Snapshots  int        `json:"snapshots,omitempty"`
	// Failovers are the changes of leader of a replicated cp
	// (cp-failover), each from the committed prefix.
	Failovers []Failover `json:"failovers,omitempty"`
	// HealedAt is when the last fault healed (0 without faults).
	HealedAt time.Duration `json:"healed_at"`
	// FaultPointsFired counts each fault point's firings.
	FaultPointsFired map[core.FaultPoint]int `json:"fault_points_fired,omitempty"`
	// LivenessChecked reports whether the run lasted long enough after the
	// heal for the liveness invariant to apply to at least one task.
	LivenessChecked bool `json:"liveness_checked"`
	// MaxDispatchIdle is the longest the run went, faults or not, with work
	// queued that some open agent could run (isolated and throttled
	// domains count as open) and nothing dispatched; MaxDispatchIdleAt is
	// when that stretch was measured.
	MaxDispatchIdle   time.Duration `json:"max_dispatch_idle"`
	MaxDispatchIdleAt time.Duration `json:"max_dispatch_idle_at"`

	Tasks         []TaskRecord    `json:"tasks"`
	Events        []TimelineEvent `json:"events"`
	EventsDropped int             `json:"events_dropped"`
	Notes         []Note          `json:"notes"`
	Series        []Sample        `json:"series"`
	Stats         core.Stats      `json:"stats"`
	Final         core.DebugView  `json:"final"`

	Violation *Violation `json:"violation,omitempty"`
}

// TaskRecord is the simulator's view of one accepted task.
type TaskRecord struct {
	Gen        int            `json:"gen"` // cp process generation that accepted it
	ID         core.TaskID    `json:"id"`
	Priority   core.Priority  `json:"priority"`
	Domain     string         `json:"domain,omitempty"`
	Poison     bool           `json:"poison,omitempty"`
	Hang       bool           `json:"hang,omitempty"`
	Submitted  time.Duration  `json:"submitted"`
	Started    bool           `json:"started"`
	StartedAt  time.Duration  `json:"started_at"` // first assignment
	Ended      bool           `json:"ended"`
	EndedAt    time.Duration  `json:"ended_at"`
	State      core.TaskState `json:"state"`
	Reason     string         `json:"reason,omitempty"`
	Attempt    int            `json:"attempt"`
	Agents     []core.AgentID `json:"agents"` // agent of each attempt, in order
	Requeues   int            `json:"requeues"`
	Executions int            `json:"executions"` // executions started by agents
	Successes  int            `json:"successes"`  // executions that ran to success
	Timeouts   int            `json:"timeouts"`   // attempts that ended by timeout or lease expiry
}

// TimelineEvent is a control-plane timeline event tagged with the cp
// process generation that recorded it (the timeline outlives restarts: its
// sequence goes on).
type TimelineEvent struct {
	Gen int `json:"gen"`
	core.Event
}

// Note is a simulator-level happening (fault injected or healed, restart).
type Note struct {
	At   time.Duration `json:"at"`
	Text string        `json:"text"`
}

// Sample is one point of the metric time series. Metric names are the
// Prometheus names the daemons export, so later tooling (promtool tests,
// HTML reports) reads simulator and daemon data the same way.
type Sample struct {
	At      time.Duration `json:"at"`
	Metrics []Metric      `json:"metrics"`
}

// Metric is one labelled value.
type Metric struct {
	Name   string  `json:"name"`
	Labels []Label `json:"labels,omitempty"`
	Value  float64 `json:"value"`
}

// Label is a metric label; labels are kept in name order.
type Label struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Value returns the value of the named metric with exactly the given label
// values (name=value pairs), and whether it was found.
func (s Sample) Value(name string, labels ...string) (float64, bool) {
	for _, m := range s.Metrics {
		if m.Name != name || len(m.Labels)*2 != len(labels) {
			continue
		}
		ok := true
		for i, l := range m.Labels {
			if labels[2*i] != l.Name || labels[2*i+1] != l.Value {
				ok = false
				break
			}
		}
		if ok {
			return m.Value, true
		}
	}
	return 0, false
}

// Violation is a broken invariant: it stops the run.
type Violation struct {
	Name       string        `json:"name,omitempty"`
	Seed       uint64        `json:"seed"`
	At         time.Duration `json:"at"`
	Invariant  string        `json:"invariant"`
	Detail     string        `json:"detail"`
	LastEvents []string      `json:"last_events"`
}

func (v *Violation) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sim: invariant %q violated at %v (seed %d): %s", v.Invariant, v.At, v.Seed, v.Detail)
	if v.Name != "" {
		fmt.Fprintf(&b, "\nrepro: go run ./cmd/sim -scenario=%s -seed=%d", v.Name, v.Seed)
	}
	if len(v.LastEvents) > 0 {
		b.WriteString("\nlast events:")
		for _, l := range v.LastEvents {
			b.WriteString("\n  ")
			b.WriteString(l)
		}
	}
	return b.String()
}

// Invariant names, as DESIGN.md numbers them.
const (
	InvNoTaskLost    = "1-no-task-lost"
	InvOneLease      = "2-one-live-lease"
	InvQueueBound    = "3-queue-bound"
	InvIdempotency   = "4-idempotency"
	InvQuarantineCap = "5-quarantine-cap"
	InvNoBadAssign   = "6-no-forbidden-assignment"
	InvOperatorMode  = "7-operator-mode"
	InvLiveness      = "8-liveness"
	InvTimeline      = "9-timeline"
	// InvOneExecution: at most one attempt of a task runs on the agents at
	// a time, unless the agent running the other is truly lost (crashed).
	InvOneExecution = "11-one-execution"
	InvSimLimit     = "sim-events-limit"
)
