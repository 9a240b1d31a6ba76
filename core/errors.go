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

// RefusalKind classifies a refused submission for counters and metric
// labels (flux_tasks_refused_total{reason}). The strings are part of the
// metrics contract.
type RefusalKind string

// Refusal kinds, one per sentinel error a submission can be refused with.
const (
	RefusalQueueFull           RefusalKind = "queue_full"           // ErrQueueFull
	RefusalDegraded            RefusalKind = "degraded"             // ErrLowPriorityShed
	RefusalMode                RefusalKind = "mode"                 // ErrModeRefused
	RefusalIdempotencyConflict RefusalKind = "idempotency_conflict" // ErrIdempotencyConflict
	RefusalInvalid             RefusalKind = "invalid"              // ErrInvalid
	RefusalOther               RefusalKind = "other"                // anything else
)

// RefusalKinds returns every refusal kind in a fixed order (the order of
// the constants), so drivers can create every labelled series up front.
func RefusalKinds() []RefusalKind {
	return []RefusalKind{RefusalQueueFull, RefusalDegraded, RefusalMode, RefusalIdempotencyConflict, RefusalInvalid, RefusalOther}
}

// RefusalKindOf classifies err by the first sentinel it wraps; nil and
// unknown errors are RefusalOther.
func RefusalKindOf(err error) RefusalKind {
	for _, k := range []struct {
		err  error
		kind RefusalKind
	}{{ErrQueueFull, RefusalQueueFull}, {ErrLowPriorityShed, RefusalDegraded}, {ErrModeRefused, RefusalMode},
		{ErrIdempotencyConflict, RefusalIdempotencyConflict}, {ErrInvalid, RefusalInvalid}} {
		if errorsIs(err, k.err) {
			return k.kind
		}
	}
	return RefusalOther
}
