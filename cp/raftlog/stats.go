package raftlog

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// LogStats counts what this Node appended to its log store since Open:
// every successful append, raft's own entries included.
type LogStats struct {
	// Appends is the number of log store writes (one fsync each on disk):
	// raft writes the entries proposed meanwhile in one append.
	Appends uint64
	// Entries is the number of entries appended.
	Entries uint64
	// Bytes is the sum of the appended entries' data (the FSM's bytes),
	// without the store's per-entry framing.
	Bytes uint64
}

// LogStats returns the counts of the log store's appends since Open.
func (n *Node) LogStats() LogStats {
	if n.counts == nil {
		return LogStats{}
	}
	return LogStats{Appends: n.counts.appends.Load(), Entries: n.counts.entries.Load(), Bytes: n.counts.bytes.Load()}
}

// countingStore counts the successful appends of a log store. It keeps the
// store's MonotonicLogStore promise (raft-wal makes it), which raft reads.
type countingStore struct {
	raft.LogStore
	appends, entries, bytes atomic.Uint64
}

func (c *countingStore) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

func (c *countingStore) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	var n uint64
	for _, l := range logs {
		n += uint64(len(l.Data))
	}
	c.appends.Add(1)
	c.entries.Add(uint64(len(logs)))
	c.bytes.Add(n)
	return nil
}

// IsMonotonic forwards the wrapped store's raft.MonotonicLogStore answer.
func (c *countingStore) IsMonotonic() bool {
	m, ok := c.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// copyingStore stores copies of the logs it is given. raft hands its log
// store pointers into its apply futures (the leader stores &future.log),
// and raft's InmemStore keeps the pointers: each future, with the FSM's
// result for the entry, stayed reachable until compaction removed its
// entry, so an in-memory Node held every result of the last TrailingLogs
// entries and more (the soak's cp: some 60 MiB). A copy keeps the entry's
// fields and data only.
type copyingStore struct{ raft.LogStore }

func (c copyingStore) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

func (c copyingStore) StoreLogs(logs []*raft.Log) error {
	copies := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		copies[i] = *l
		ptrs[i] = &copies[i]
	}
	return c.LogStore.StoreLogs(ptrs)
}
