package core

// FaultPoint names a place in the agent's or the control plane's logic where
// a test driver may make the code misbehave on purpose, the way a real
// process sometimes does: a timer that never fires, an acknowledgement that
// is lost between two lines of code, a result reported twice or late. Only
// the simulator turns them on; the daemons leave FaultPoints nil and the code
// then behaves exactly as without the hooks.
type FaultPoint string

const (
	// FaultAgentWedged: the agent does not enforce this execution's timeout
	// (its timer is wedged), so a hung execution runs on until the cp's
	// lease expiry (timeout + LeaseGrace, counted as a failure) cancels it.
	// Decided once per accepted execution.
	FaultAgentWedged FaultPoint = "agent-wedged"
	// FaultAgentResultResent: the agent keeps a result the cp acknowledged
	// and reports it again (a duplicated result). Decided per acknowledged
	// result.
	FaultAgentResultResent FaultPoint = "agent-result-resent"
	// FaultAgentResultHeld: the agent leaves a finished result out of one
	// heartbeat, so it arrives later, often after the cp has moved the
	// lease elsewhere. Decided per pending result per heartbeat.
	FaultAgentResultHeld FaultPoint = "agent-result-held"
	// FaultCPAckDropped: the cp applies a result but leaves it out of the
	// heartbeat reply's acknowledgements, so the agent reports it again.
	// Decided per result applied.
	FaultCPAckDropped FaultPoint = "cp-ack-dropped"
)

// CoreFaultPoints lists core's fault points in a fixed order.
func CoreFaultPoints() []FaultPoint {
	return []FaultPoint{FaultAgentWedged, FaultAgentResultResent, FaultAgentResultHeld, FaultCPAckDropped}
}

// FaultPoints decides whether a fault point fires at one occasion. It is
// consulted synchronously from the state machines, so an implementation
// must be deterministic for a deterministic driver (the simulator draws from
// its seeded source). A nil FaultPoints never fires.
type FaultPoints interface {
	Fire(p FaultPoint, agent AgentID, task TaskID, attempt int) bool
}

// fires reports whether fp fires p; a nil fp never does.
func fires(fp FaultPoints, p FaultPoint, agent AgentID, task TaskID, attempt int) bool {
	return fp != nil && fp.Fire(p, agent, task, attempt)
}
