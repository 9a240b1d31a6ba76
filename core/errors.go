package core

import "errors"

// Operating errors. Callers match them with errors.Is; the core wraps them
// with context (%w) where it helps the operator.
var (
	// ErrQueueFull: the queue is at capacity; the submission left no trace.
	ErrQueueFull = errors.New("core: queue full")
	// ErrLowPriorityShed: DEGRADED mode refuses low-priority submissions.
	ErrLowPriorityShed = errors.New("core: low-priority submissions refused while DEGRADED")
	// ErrModeRefused: the current mode (READ_ONLY, DRAINING) refuses the request.
	ErrModeRefused = errors.New("core: refused by scheduler mode")
	// ErrIdempotencyConflict: an idempotency key was reused with another body.
	ErrIdempotencyConflict = errors.New("core: idempotency key reused with a different request")
	// ErrInvalid: the request itself is malformed; the message says why.
	ErrInvalid = errors.New("core: invalid request")
	// ErrNotFound: no such task or agent.
	ErrNotFound = errors.New("core: not found")
	// ErrConflict: the request is valid but cannot apply to the current state
	// (cancelling a finished task, releasing an agent that is not quarantined).
	ErrConflict = errors.New("core: conflict with current state")
	// ErrAgentsFull: the agent registry is at its bound.
	ErrAgentsFull = errors.New("core: too many agents")
)
