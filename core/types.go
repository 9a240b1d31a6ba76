package core

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// TaskID identifies a task. The control plane hands them out from a counter,
// so they are deterministic.
type TaskID string

// AgentID identifies an agent; agents choose their own (hostname by default).
type AgentID string

// Priority orders queued work. Lower values are more urgent.
type Priority int8

const (
	PriorityHigh Priority = iota
	PriorityNormal
	PriorityLow
	numPriorities = 3
)

func (p Priority) String() string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityNormal:
		return "normal"
	case PriorityLow:
		return "low"
	}
	return fmt.Sprintf("priority(%d)", int8(p))
}

// ParsePriority maps the wire names; the empty string means normal.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "high":
		return PriorityHigh, nil
	case "", "normal":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	}
	return 0, fmt.Errorf("%w: priority %q is not one of high, normal, low", ErrInvalid, s)
}

func (p Priority) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Priority) UnmarshalText(b []byte) error {
	v, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// TaskState is a task's place in its life cycle:
// QUEUED → ASSIGNED → RUNNING → SUCCEEDED | FAILED | CANCELLED | DEAD.
// A task goes back to QUEUED when its attempt is lost and it may retry.
type TaskState uint8

const (
	TaskQueued TaskState = iota
	TaskAssigned
	TaskRunning
	TaskSucceeded
	TaskFailed
	TaskCancelled
	TaskDead
)

var taskStateNames = [...]string{"QUEUED", "ASSIGNED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "DEAD"}

func (s TaskState) String() string {
	if int(s) < len(taskStateNames) {
		return taskStateNames[s]
	}
	return fmt.Sprintf("TaskState(%d)", uint8(s))
}

// Terminal reports whether the state is final.
func (s TaskState) Terminal() bool { return s >= TaskSucceeded }

// ParseTaskState maps the wire names.
func ParseTaskState(s string) (TaskState, error) {
	for i, n := range taskStateNames {
		if n == s {
			return TaskState(i), nil
		}
	}
	return 0, fmt.Errorf("%w: state %q is not one of %v", ErrInvalid, s, taskStateNames)
}

func (s TaskState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *TaskState) UnmarshalText(b []byte) error {
	v, err := ParseTaskState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Task kinds.
const (
	KindExec  = "exec"  // run argv directly, no shell
	KindSleep = "sleep" // built in: wait DurationMS, then succeed
)

// Bounds on a task specification. They keep one request from holding
// unbounded memory in the queue, the idempotency cache and the agents.
const (
	argvMax           = 256
	argvBytesMax      = 64 << 10
	domainLenMax      = 63
	idempotencyKeyMax = 255
	sleepMSMax        = 24 * 3600 * 1000
	timeoutSecondsMax = 7 * 24 * 3600
	maxAttemptsMax    = 20
)

// TaskSpec is what a client asks to run. It is immutable once accepted.
type TaskSpec struct {
	Kind           string   `json:"kind"`
	Argv           []string `json:"argv,omitempty"`
	DurationMS     int64    `json:"duration_ms,omitempty"`
	Domain         string   `json:"domain,omitempty"`
	Priority       Priority `json:"priority"`
	TimeoutSeconds int      `json:"timeout_seconds"`
	MaxAttempts    int      `json:"max_attempts"`
}

// Normalize fills defaults from cfg and validates the spec. The returned
// error wraps ErrInvalid and says what was wrong.
func (s TaskSpec) Normalize(cfg Config) (TaskSpec, error) {
	switch s.Kind {
	case KindSleep:
		if len(s.Argv) != 0 {
			return s, fmt.Errorf("%w: argv is only for kind exec", ErrInvalid)
		}
		if s.DurationMS < 0 || s.DurationMS > sleepMSMax {
			return s, fmt.Errorf("%w: duration_ms must be between 0 and %d", ErrInvalid, sleepMSMax)
		}
	case KindExec:
		if len(s.Argv) == 0 || s.Argv[0] == "" {
			return s, fmt.Errorf("%w: kind exec needs a non-empty argv", ErrInvalid)
		}
		if len(s.Argv) > argvMax {
			return s, fmt.Errorf("%w: argv has %d elements, at most %d allowed", ErrInvalid, len(s.Argv), argvMax)
		}
		n := 0
		for _, a := range s.Argv {
			n += len(a)
		}
		if n > argvBytesMax {
			return s, fmt.Errorf("%w: argv is %d bytes, at most %d allowed", ErrInvalid, n, argvBytesMax)
		}
		if s.DurationMS != 0 {
			return s, fmt.Errorf("%w: duration_ms is only for kind sleep", ErrInvalid)
		}
	case "":
		return s, fmt.Errorf("%w: kind is required (exec or sleep)", ErrInvalid)
	default:
		return s, fmt.Errorf("%w: kind %q is not one of exec, sleep", ErrInvalid, s.Kind)
	}
	if s.Domain != "" { // no domain: any; checked first, so no error is built to be dropped
		if err := ValidateDomain(s.Domain); err != nil {
			return s, err
		}
	}
	if s.Priority < PriorityHigh || s.Priority > PriorityLow {
		return s, fmt.Errorf("%w: priority out of range", ErrInvalid)
	}
	if s.TimeoutSeconds == 0 {
		s.TimeoutSeconds = int(cfg.TaskTimeoutDefault / time.Second)
	}
	if s.TimeoutSeconds < 1 || s.TimeoutSeconds > timeoutSecondsMax {
		return s, fmt.Errorf("%w: timeout_seconds must be between 1 and %d", ErrInvalid, timeoutSecondsMax)
	}
	if s.MaxAttempts == 0 {
		s.MaxAttempts = cfg.TaskMaxAttemptsDefault
	}
	if s.MaxAttempts < 1 || s.MaxAttempts > maxAttemptsMax {
		return s, fmt.Errorf("%w: max_attempts must be between 1 and %d", ErrInvalid, maxAttemptsMax)
	}
	if s.Argv != nil {
		s.Argv = slices.Clone(s.Argv)
	}
	return s, nil
}

// Equal reports whether two normalized specs ask for the same work.
func (s TaskSpec) Equal(o TaskSpec) bool {
	return s.Kind == o.Kind && slices.Equal(s.Argv, o.Argv) && s.DurationMS == o.DurationMS &&
		s.Domain == o.Domain && s.Priority == o.Priority && s.TimeoutSeconds == o.TimeoutSeconds &&
		s.MaxAttempts == o.MaxAttempts
}

// Timeout is the spec's timeout as a duration.
func (s TaskSpec) Timeout() time.Duration { return time.Duration(s.TimeoutSeconds) * time.Second }

// ValidateDomain checks a domain (zone) name: 1-63 characters of [a-z0-9-_.].
func ValidateDomain(d string) error {
	if d == "" || len(d) > domainLenMax {
		return fmt.Errorf("%w: domain must be 1 to %d characters", ErrInvalid, domainLenMax)
	}
	if !nameChars(d) {
		return fmt.Errorf("%w: domain %q may hold only letters, digits, '-', '_' and '.'", ErrInvalid, d)
	}
	return nil
}

// nameChars reports whether s holds only the characters allowed in names
// (domains, agent ids, task id prefixes): letters, digits, '-', '_' and '.'.
func nameChars(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ValidateAgentID checks an agent id with the same alphabet as domains, up to
// 128 characters.
func ValidateAgentID(id AgentID) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: agent id must be 1 to 128 characters", ErrInvalid)
	}
	if !nameChars(string(id)) {
		return fmt.Errorf("%w: agent id %q may hold only letters, digits, '-', '_' and '.'", ErrInvalid, id)
	}
	return nil
}

// Outcome is how one attempt ended, as the agent saw it.
type Outcome string

const (
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeTimeout   Outcome = "timeout"
	OutcomeCancelled Outcome = "cancelled"
	OutcomeRejected  Outcome = "rejected" // the agent refused the assignment (full, draining, exec not allowed)
)

// Valid reports whether o is a known outcome.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeSucceeded, OutcomeFailed, OutcomeTimeout, OutcomeCancelled, OutcomeRejected:
		return true
	}
	return false
}

// Decision outcomes: why the scheduler did or did not place a task.
const (
	DecisionAssigned       = "assigned"
	DecisionNoCapacity     = "no_capacity"
	DecisionDomainIsolated = "domain_isolated"
	DecisionDomainThrottle = "domain_throttled"
	DecisionNoAgents       = "no_agents"
	DecisionModeBlocked    = "mode_blocked"
	DecisionPaused         = "rescheduling_paused"
)

// Decision is the scheduler's last word on a task.
type Decision struct {
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// AttemptRecord is one past or current attempt of a task.
type AttemptRecord struct {
	Attempt    int       `json:"attempt"`
	AgentID    AgentID   `json:"agent_id"`
	Domain     string    `json:"domain"`
	AssignedAt time.Time `json:"assigned_at"`
	EndedAt    time.Time `json:"ended_at,omitzero"`
	Outcome    Outcome   `json:"outcome,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Task is the control plane's record of a task. Values returned by the
// ControlPlane are copies: changing them changes nothing.
type Task struct {
	ID             TaskID          `json:"id"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Spec           TaskSpec        `json:"spec"`
	State          TaskState       `json:"state"`
	Attempt        int             `json:"attempt"`  // fencing number of the current or last attempt; 0 before the first
	Failures       int             `json:"failures"` // attempts that failed, timed out or were stuck: counted against max_attempts
	AgentID        AgentID         `json:"agent_id,omitempty"`
	SubmittedAt    time.Time       `json:"submitted_at"`
	EnqueuedAt     time.Time       `json:"enqueued_at,omitzero"` // when it last entered the queue
	UpdatedAt      time.Time       `json:"updated_at"`
	Reason         string          `json:"reason,omitempty"` // why it is in its state (terminal reason, requeue reason)
	Output         string          `json:"output,omitempty"` // bounded tail of the last attempt's output
	ExitCode       int             `json:"exit_code"`
	LastDecision   *Decision       `json:"last_decision,omitempty"`
	Attempts       []AttemptRecord `json:"attempts,omitempty"`
}

func (t Task) clone() Task {
	t.Spec.Argv = slices.Clone(t.Spec.Argv)
	t.Attempts = slices.Clone(t.Attempts)
	if t.LastDecision != nil {
		d := *t.LastDecision
		t.LastDecision = &d
	}
	return t
}

// mustJSON is used for deterministic fingerprints in tests and traces.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		failf("marshal %T: %v", v, err)
	}
	return b
}
