package core

import (
	"fmt"
	"time"
)

// Mode is the scheduler's operating mode.
type Mode string

const (
	ModeNormal   Mode = "NORMAL"
	ModeDegraded Mode = "DEGRADED"  // self-protection: low priority shed, dispatch goes on
	ModeReadOnly Mode = "READ_ONLY" // no mutations, no new dispatch; results still accepted
	ModeDraining Mode = "DRAINING"  // no new submissions; the queue is dispatched until empty
)

// ParseMode maps the wire names exactly (upper case).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeNormal, ModeDegraded, ModeReadOnly, ModeDraining:
		return m, nil
	}
	return "", fmt.Errorf("%w: mode %q is not one of NORMAL, DEGRADED, READ_ONLY, DRAINING", ErrInvalid, s)
}

// Config holds every bound and tunable of the control-plane core. Durations
// are virtual-time durations: the simulator and the daemons use the same
// values. DefaultConfig suits production.
type Config struct {
	// QueueCapacity bounds the number of QUEUED tasks; beyond it submissions
	// are refused with ErrQueueFull.
	QueueCapacity int
	// AgingInterval: every interval a task waits raises its effective
	// priority one level, so low priority cannot starve under a flood.
	AgingInterval time.Duration

	// TasksMax bounds every task record held in memory, terminal ones
	// included; the oldest terminal tasks are forgotten first.
	TasksMax int
	// TaskTimeoutDefault applies when a spec has no timeout_seconds.
	TaskTimeoutDefault time.Duration
	// TaskMaxAttemptsDefault applies when a spec has no max_attempts.
	TaskMaxAttemptsDefault int
	// TaskAttemptsMax bounds attempts of any kind (agent losses included)
	// before a task is DEAD, so liveness holds even on pathological fleets.
	TaskAttemptsMax int
	// PoisonAgents: a task that fails on this many different agents is
	// poison: it is DEAD and its failures do not count against agent health.
	PoisonAgents int

	// AgentsMax bounds registered agents.
	AgentsMax int
	// AgentSlotsMax bounds the slots one agent may advertise.
	AgentSlotsMax int
	// HeartbeatInterval is what agents are expected to send; reliability is
	// measured against it.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout: an agent silent this long is disconnected.
	HeartbeatTimeout time.Duration
	// LostAfter: a disconnected agent's tasks are rescheduled after this
	// grace; a short disconnect is not a loss.
	LostAfter time.Duration
	// AssignTimeout: an assignment the agent never confirms (in a heartbeat
	// or result) within this is presumed lost and requeued.
	AssignTimeout time.Duration
	// LeaseGrace is added to a task's own timeout before the cp declares the
	// worker stuck and moves the task elsewhere.
	LeaseGrace time.Duration
	// ForgetAgentAfter: a disconnected agent with no tasks is forgotten after
	// this, so the registry does not grow without bound.
	ForgetAgentAfter time.Duration

	// Health scoring (CompositeHealthScore).
	Health HealthConfig
	// Domain isolation.
	Domains DomainConfig

	// DegradedEnterFraction of queue capacity held for DegradedEnterAfter
	// puts the scheduler into DEGRADED (self-protection).
	DegradedEnterFraction float64
	DegradedEnterAfter    time.Duration
	// DegradedExitFraction: below it for DegradedExitAfter, back to NORMAL.
	DegradedExitFraction float64
	DegradedExitAfter    time.Duration
	// MassDisconnectFraction: when at least this fraction of known agents is
	// disconnected (and at least MassDisconnectMinAgents are), the cp assumes
	// it is the one cut off: rescheduling and health quarantine pause.
	MassDisconnectFraction  float64
	MassDisconnectMinAgents int
	// InitialMode and who set it ("config" by default).
	InitialMode Mode

	// IdempotencyTTL and IdempotencyKeysMax bound the idempotency cache.
	IdempotencyTTL     time.Duration
	IdempotencyKeysMax int
	// TimelineEventsMax bounds the in-memory audit timeline.
	TimelineEventsMax int
	// OutputBytesMax bounds the output tail kept per task.
	OutputBytesMax int
	// TaskIDPrefix starts every task id (then a counter). The cp daemon
	// makes it unique per start: after a restart the counter begins again
	// while agents may still run the previous start's tasks, and an agent
	// must never take a new task for an old one with the same id.
	TaskIDPrefix string
	// DecisionsPerPassMax bounds one scheduling pass so a huge queue cannot
	// stall the driver.
	DecisionsPerPassMax int

	// FaultPoints, when set, makes the cp misbehave on purpose at its fault
	// points (simulator only; nil in the daemon).
	FaultPoints FaultPoints `json:"-"`
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		QueueCapacity:           1000,
		AgingInterval:           15 * time.Second,
		TasksMax:                100_000,
		TaskTimeoutDefault:      5 * time.Minute,
		TaskMaxAttemptsDefault:  3,
		TaskAttemptsMax:         10,
		PoisonAgents:            3,
		AgentsMax:               20_000,
		AgentSlotsMax:           1024,
		HeartbeatInterval:       5 * time.Second,
		HeartbeatTimeout:        15 * time.Second,
		LostAfter:               30 * time.Second,
		AssignTimeout:           15 * time.Second,
		LeaseGrace:              30 * time.Second,
		ForgetAgentAfter:        time.Hour,
		Health:                  DefaultHealthConfig(),
		Domains:                 DefaultDomainConfig(),
		DegradedEnterFraction:   0.8,
		DegradedEnterAfter:      30 * time.Second,
		DegradedExitFraction:    0.6,
		DegradedExitAfter:       2 * time.Minute,
		MassDisconnectFraction:  0.5,
		MassDisconnectMinAgents: 4,
		InitialMode:             ModeNormal,
		IdempotencyTTL:          24 * time.Hour,
		IdempotencyKeysMax:      100_000,
		TimelineEventsMax:       10_000,
		OutputBytesMax:          4096,
		DecisionsPerPassMax:     10_000,
		TaskIDPrefix:            "t-",
	}
}

// Validate checks every bound once, so the rest of the core may rely on them.
func (c Config) Validate() error {
	type check struct {
		ok   bool
		what string
	}
	checks := []check{
		{c.QueueCapacity >= 1, "QueueCapacity must be >= 1"},
		{c.AgingInterval > 0, "AgingInterval must be > 0"},
		{c.TasksMax >= c.QueueCapacity, "TasksMax must be >= QueueCapacity"},
		{c.TaskTimeoutDefault >= time.Second, "TaskTimeoutDefault must be >= 1s"},
		{c.TaskMaxAttemptsDefault >= 1 && c.TaskMaxAttemptsDefault <= maxAttemptsMax, "TaskMaxAttemptsDefault must be in [1,20]"},
		{c.TaskAttemptsMax >= maxAttemptsMax/2, "TaskAttemptsMax must be >= 10"},
		{c.PoisonAgents >= 1, "PoisonAgents must be >= 1"},
		{c.AgentsMax >= 1, "AgentsMax must be >= 1"},
		{c.AgentSlotsMax >= 1 && c.AgentSlotsMax <= 1<<16, "AgentSlotsMax must be in [1,65536]"},
		{c.HeartbeatInterval > 0, "HeartbeatInterval must be > 0"},
		{c.HeartbeatTimeout > c.HeartbeatInterval, "HeartbeatTimeout must exceed HeartbeatInterval"},
		{c.LostAfter >= 0, "LostAfter must be >= 0"},
		{c.AssignTimeout > 0, "AssignTimeout must be > 0"},
		{c.LeaseGrace >= 0, "LeaseGrace must be >= 0"},
		{c.ForgetAgentAfter > 0, "ForgetAgentAfter must be > 0"},
		{c.DegradedEnterFraction > c.DegradedExitFraction && c.DegradedEnterFraction <= 1 && c.DegradedExitFraction >= 0, "need 0 <= DegradedExitFraction < DegradedEnterFraction <= 1"},
		{c.DegradedEnterAfter >= 0 && c.DegradedExitAfter >= 0, "degraded delays must be >= 0"},
		{c.MassDisconnectFraction > 0 && c.MassDisconnectFraction <= 1, "MassDisconnectFraction must be in (0,1]"},
		{c.MassDisconnectMinAgents >= 1, "MassDisconnectMinAgents must be >= 1"},
		{c.IdempotencyTTL > 0, "IdempotencyTTL must be > 0"},
		{c.IdempotencyKeysMax >= 1, "IdempotencyKeysMax must be >= 1"},
		{c.TimelineEventsMax >= 1, "TimelineEventsMax must be >= 1"},
		{c.OutputBytesMax >= 0, "OutputBytesMax must be >= 0"},
		{c.DecisionsPerPassMax >= 1, "DecisionsPerPassMax must be >= 1"},
		{validTaskIDPrefix(c.TaskIDPrefix), "TaskIDPrefix must be 1 to 32 characters of [a-zA-Z0-9-_.]"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%w: config: %s", ErrInvalid, ch.what)
		}
	}
	if _, err := ParseMode(string(c.InitialMode)); err != nil {
		return fmt.Errorf("config: InitialMode: %w", err)
	}
	if err := c.Health.validate(); err != nil {
		return err
	}
	return c.Domains.validate()
}

// AgentLease is how long an agent may run its attempts without hearing
// from the cp: counted on the agent's own clock from the sending of the
// last heartbeat the cp replied to. The cp gives a silent agent's attempts
// to others no earlier than HeartbeatTimeout + LostAfter after it received
// that heartbeat (on its own clock; received is after sent), so an agent
// whose lease is a tenth shorter has stopped them by then: no two attempts
// of a task run at once unless an agent is truly lost. Only the two
// clocks' rates matter, never their offset; the tenth covers rate skew and
// the agent's tick and kill latency. A lease shorter than two heartbeat
// intervals would fence agents over one lost heartbeat: then none (zero).
func (c Config) AgentLease() time.Duration {
	wait := c.HeartbeatTimeout + c.LostAfter
	lease := wait - wait/10
	if lease < 2*c.HeartbeatInterval {
		return 0
	}
	return lease
}

func validTaskIDPrefix(p string) bool {
	return p != "" && len(p) <= 32 && nameChars(p)
}
