// Package core holds all of FluxForge's scheduling logic as pure,
// deterministic state machines: the task queue, placement, leases and
// reconcile, agent health and quarantine, domain isolation, scheduler modes
// and self-protection, the idempotency cache and the audit timeline, plus the
// agent's own decision logic.
//
// Core does no I/O, starts no goroutines, never reads the wall clock and owns
// no global randomness. Time is always a parameter. That is what lets the very
// same code run inside the cp and agent daemons, inside the seeded simulator
// and inside property-based tests.
//
// # Usage
//
// A driver (daemon or simulator) owns a *ControlPlane and feeds it inputs
// through Apply, the only way to change it:
//
//	cp, err := core.NewControlPlane(core.DefaultConfig(), now)
//	r, err := cp.Apply(now, core.SubmitInput{Spec: spec}) // r.Task, r.Replayed
//	r, err = cp.Apply(now, hb)                 // an agent reported in: r.Heartbeat
//	cp.Apply(now, core.TickInput{})            // time advanced: reconcile
//	for _, m := range cp.TakeOutbox() {        // messages for agents
//		transport.Send(m.To, m)
//	}
//	events := cp.Timeline().Since(lastSeq, 0) // what happened, in order
//
// Every input is a plain, serializable value (see Input, Apply and
// Envelope), so a sequence of inputs can be logged and replayed exactly;
// even a start of the driving process is an input (StartInput). The agent side is the
// same shape: *Agent takes assignments, executor completions and ticks, and
// returns the executions to start or stop and the heartbeats to send.
//
// # Vocabulary
//
// The words drivers, the simulator and operators share are declared here
// once: timeline event types (EventType, with Cause where the type alone
// does not say why, e.g. a health quarantine logged as QuarantineLogLine),
// refusal kinds (RefusalKind, RefusalKindOf) and the table of exported
// metrics (Metrics), which the cp registers and the simulator records.
//
// ControlPlane and Agent are not safe for concurrent use: the driver
// serializes access, as etcd's raft RawNode does.
package core
