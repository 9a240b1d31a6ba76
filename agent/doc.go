// Package agent is the FluxForge agent daemon: it wraps the agent's
// deterministic state machine (core.Agent) with a clock, executors, a
// heartbeat loop to the control plane and an HTTP server for the cp's
// assignments and cancels.
//
// # Shape
//
// A Daemon owns one *core.Agent behind a mutex. Three kinds of goroutine
// drive it:
//
//   - the loop (Run): calls core.Agent.Tick whenever core.Agent.NextWake says
//     so (and at least every TickMax), which enforces task timeouts and yields
//     the heartbeats to send; each heartbeat goes to the cp on a goroutine of
//     its own (at most one in flight) and its reply (or failure) is fed back
//     (the reply names the cp's heartbeat interval, which the agent adopts
//     unless Options.HeartbeatInterval is set);
//   - the HTTP handlers (Handler): POST /v1/assign and POST /v1/cancel from
//     the cp, GET /metrics, /healthz, /readyz and /v1/status;
//   - the executors: a sleep timer or an exec process per attempt, reporting
//     their end through core.Agent.Finished.
//
// # Security
//
// An agent accepts assignments only from its cp: every /v1 request must carry
// "Authorization: Bearer <agent token>", the same shared token the agent
// presents on its heartbeats. Without a configured token the agent accepts
// anyone's assignments, which is fit for a laptop only; Run logs a warning.
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
