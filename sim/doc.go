// Package sim is FluxForge's deterministic discrete-event simulator. It runs
// the very same core.ControlPlane and core.Agent state machines the daemons
// run, on a virtual clock, over a simulated network that loses, duplicates,
// delays and reorders messages and can be partitioned, and it checks
// DESIGN.md's invariants as it goes.
//
// Dispatch is agent-initiated, as in the daemons: the cp's outbox goes into
// one net.Mailbox per agent, and each agent long-polls it over its own link
// (net.Inbox on its side), carrying its assignment acks and its cursor;
// heartbeats carry results. The network's faults hit the agent's
// connection: polls and replies are lost, duplicated, delayed, partitioned,
// cut mid-batch (NetworkOptions.CutProbability), resent after a timeout, or
// answered from a lost cursor (FaultBatchDuplicated); a restarted cp resets
// the polls it held and starts a new mailbox epoch (poll.go).
//
// A run is fully described by an Options value (seed, fleet, network
// probabilities, workload, faults and operator actions) and is
// single-threaded and self-contained: no goroutines, no package globals, no
// wall clock, one seeded math/rand/v2 source plus per-agent streams derived
// from the seed and the agent id (so adding an agent does not reshuffle the
// others). The same Options give the same Result and the same trace bytes, so
// a failing run is reproduced by its seed alone:
//
//	res, err := sim.Run(opts) // err is a *Violation when an invariant broke
//
// Events are ordered by (virtual time, sequence). After every event the cheap
// invariants are checked against a model built from the control plane's
// timeline and outbox; the full-state invariants run every FullCheckInterval
// of virtual time and at the end. A violation stops the run with the seed,
// the virtual time, the invariant and the last trace lines.
//
// Besides faults on virtual time, Options.FaultPoints turns on code-level
// fault points with a probability each: core's (a wedged agent timer, results
// resent or held back, a cp acknowledgement dropped; core.FaultPoints) and
// the simulator's own (late assignment acks, heartbeats arriving after their
// request timed out, polls whose cursor is lost), drawn from a stream of their own and counted in
// Result.FaultPointsFired. Options.HealAt ends these and the network's
// misbehaviour, so liveness is owed after it: every task finishes within
// LivenessBound, and a fleet with open capacity and queued work it could run
// never goes DispatchIdleMax without dispatching (isolated and throttled
// domains count as open: isolation must not idle the fleet; the longest such
// stretch, faults or not, is Result.MaxDispatchIdle). Package sim/swarm draws random
// shapes of all of this (swarm testing) and shrinks failing ones.
//
// The simulator models the cp's log, not raft. In runs that restart or
// crash the cp (FaultCPRestart, FaultCPCrash) every input it applies is an
// entry of a committed log, with a snapshot (core export) every
// Options.SnapshotEveryEntries entries; the process comes back as
// core.Restore of the last snapshot plus the entries after it replayed
// through core.Apply, and must reach the dead process's StateHash
// (invariant InvDurable, Result.Recoveries). A crash keeps the cp down until
// the fault's Until (nothing reaches it), and submissions in flight at the
// crash commit or are lost without being acknowledged.
//
// FaultCPFailover runs the cp as Replicas replicas on that log and loses
// its leader: proposals in flight to it (submissions, heartbeats,
// assignment answers) commit or are lost, messages in flight from it
// arrive or do not, no replica leads for the election (everything that
// needs the cp fails), and then another replica leads a new epoch from the
// committed prefix (rebuilt from the snapshot and entries, checked against
// the old leader's StateHash), with its clock up to Fault.Skew off the old
// one's and never going back, and applies core.TakeoverInput first
// (Result.Failovers).
package sim
