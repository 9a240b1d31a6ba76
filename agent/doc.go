// Package agent is the FluxForge agent daemon: it wraps the agent's
// deterministic state machine (core.Agent) with a clock, executors, a
// heartbeat loop and a long-poll loop to the control plane, and a read-only
// HTTP server for metrics and probes. The agent dials in: the cp never
// connects to it.
//
// # Shape
//
// A Daemon owns one *core.Agent behind a mutex. Four kinds of goroutine
// drive it:
//
//   - the loop (Run): calls core.Agent.Tick whenever core.Agent.NextWake says
//     so (and at least every TickMax), which enforces task timeouts and yields
//     the heartbeats to send; each heartbeat goes to the cp on a goroutine of
//     its own (at most one in flight) and its reply (or failure) is fed back
//     (the reply names the cp's heartbeat interval, which the agent adopts
//     unless Options.HeartbeatInterval is set);
//   - the poll loop (poll.go): long-polls net.PathPoll with its net.Inbox
//     cursor and the acks of the last batch, hands each new assignment and
//     cancel to the core, wakes the loop and polls again at once; on error
//     it backs off (100ms doubling up to the heartbeat interval). A
//     finished task's result goes out in a heartbeat at once, the cp
//     schedules on it, and the held poll returns the next assignment: no
//     timer in between. Poll and heartbeats go over HTTP/1.1, two
//     connections (Options.CPHTTP1, the command's default), or share one
//     HTTP/2 connection;
//   - the HTTP handlers (Handler, optional: the command's -listen none
//     serves none): GET /metrics, /healthz, /readyz and /v1/status;
//   - the executors: a sleep timer or an exec process per attempt, reporting
//     their end through core.Agent.Finished.
//
// # Security
//
// An agent takes assignments only from the cp it polls, over the connection
// it opened; it presents the agent token on every heartbeat and poll, and
// /v1/status requires it too. Without a configured token the cp cannot tell
// the agent from an impostor, which is fit for a laptop only; Run logs a
// warning.
// Kind exec is refused unless AllowExec is set; exec tasks run argv without a
// shell, in a process group of their own, with PATH as their only
// environment variable.
//
// # Shutdown
//
// When Run's context ends the agent stops taking work (its heartbeats say
// stopping), lets running attempts finish for up to ShutdownGrace, cancels
// what is left, and keeps heartbeating until the cp has acknowledged every
// result (or DrainTimeout passes). Then Run returns.
package agent
