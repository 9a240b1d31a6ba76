// Package raftlog runs a single-node hashicorp/raft log over a data dir and
// drives a byte-level state machine (FSM) with it. The cp uses it to make
// every change to its core durable before acknowledging it: Propose returns
// only after the entry is fsynced to the log and applied to the FSM.
//
// Usage:
//
//	n, err := raftlog.Open(raftlog.Options{Dir: dir, FSM: fsm, Logger: logger})
//	...
//	result, index, err := n.Propose(ctx, entry) // durable and applied, or an error
//	...
//	err = n.Close()
//
// Open bootstraps a one-server cluster when the dir is new, restores the
// newest snapshot and replays the log after it before returning. A second
// Node on the same dir is refused with ErrDirLocked. The durable log store is
// hashicorp/raft-wal (see store_wal.go and bench_test.go for why); snapshots
// are raft's FileSnapshotStore. InMemory runs the same raft code on raft's
// in-memory stores.
//
// raft's own log lines go through the Node's *slog.Logger: raft's INFO and
// DEBUG at DEBUG, so raft is quiet at info; WARN and ERROR stay.
package raftlog
