package raftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
)

// Entry is one FSM entry of the log: raft's own entries (configuration,
// no-op, barrier) are not entries here.
type Entry struct {
	Index      uint64
	Data       []byte
	AppendedAt time.Time // when the leader appended it (raft's clock)
}

// Record is what replays a state: a snapshot and the FSM entries after it,
// in index order. Apply the entries to the FSM restored from Snapshot (or to
// an empty FSM when SnapshotIndex is 0) and it holds the state at LastIndex.
type Record struct {
	// SnapshotIndex is the raft index the snapshot covers, 0 when the record
	// starts at the beginning of the log (no snapshot).
	SnapshotIndex uint64
	// SnapshotApplied is the index of the last entry the snapshot's FSM had
	// applied (what AppliedIndex reports after restoring it), at most
	// SnapshotIndex.
	SnapshotApplied uint64
	// Snapshot is the FSM's bytes (FSM.Snapshot), nil when SnapshotIndex is 0.
	Snapshot []byte
	// Entries are the FSM entries after SnapshotIndex up to LastIndex.
	Entries []Entry
	// LastIndex is the last raft index the record covers.
	LastIndex uint64
}

// ErrNotDataDir: ReadDir was given a path that holds no log.
var ErrNotDataDir = errors.New("raftlog: not a data dir")

// recordAttempts bounds the retries of Record when a snapshot compacts the
// log while it is being read.
const recordAttempts = 3

// Record reads, from the live node, the newest snapshot at or before the
// first entry appended at or after since (the zero time: the oldest point
// the node still holds) and every FSM entry after it, up to the index
// applied when Record began. It reads raft's snapshot store and log store
// directly while the node runs: a snapshot taken meanwhile may compact the
// log (delete entries before the new snapshot, less TrailingLogs) or reap an
// old snapshot file; Record then starts over from the new stores' contents,
// up to 3 times, and fails with an error saying so (retry) if it keeps
// racing. An open snapshot file stays readable after it is reaped.
//
// When the node holds nothing as old as since, the record starts at the
// oldest snapshot the log can continue from (its SnapshotIndex says where).
func (n *Node) Record(since time.Time) (Record, error) {
	if n.closed.Load() {
		return Record{}, ErrClosed
	}
	var err error
	for range recordAttempts {
		var rec Record
		rec, err = readRecord(n.logs, n.snaps, n.AppliedIndex(), since)
		if !errors.Is(err, errCompacted) {
			return rec, err
		}
	}
	return Record{}, fmt.Errorf("raftlog: the log was compacted %d times while it was read; retry: %w", recordAttempts, err)
}

var errCompacted = errors.New("raftlog: the log was compacted meanwhile")

// ReadDir reads a stopped node's data dir: the record from the oldest point
// it holds (as Node.Record with the zero since) to its last entry. It takes
// the dir's LOCK for the time of the read, so a dir held by a running node
// is refused with ErrDirLocked (read a live node with Node.Record, through
// the cp's export endpoint). It appends nothing; opening the log store
// recovers a torn tail as a start would.
func ReadDir(dir string) (Record, error) {
	if _, err := os.Stat(filepath.Join(dir, "wal")); err != nil {
		return Record{}, fmt.Errorf("%w: %s has no wal/ (%v)", ErrNotDataDir, dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return Record{}, err
	}
	defer lock.release()
	hlog := newHclogAdapter(slog.New(slog.DiscardHandler), "")
	logs, _, closer, err := openDiskStores(dir, hlog)
	if err != nil {
		return Record{}, err
	}
	defer closer.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 1<<30, hlog)
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: open snapshot store in %s: %w", dir, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: read the log's last index: %w", err)
	}
	metas, err := snaps.List()
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: list snapshots: %w", err)
	}
	if len(metas) > 0 {
		last = max(last, metas[0].Index)
	}
	return readRecord(logs, snaps, last, time.Time{})
}

// readRecord reads a record up to end (see Node.Record).
func readRecord(logs raft.LogStore, snaps raft.SnapshotStore, end uint64, since time.Time) (Record, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: read the log's first index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: read the log's last index: %w", err)
	}
	// start: the first index appended at or after since.
	start := end + 1
	if first != 0 {
		start = max(first, 1)
		if !since.IsZero() {
			start = end + 1
			for i := max(first, 1); i <= min(end, last); i++ {
				var l raft.Log
				if err := logs.GetLog(i, &l); err != nil {
					return Record{}, compacted(i, err)
				}
				if !l.AppendedAt.Before(since) {
					start = i
					break
				}
			}
		}
	}
	metas, err := snaps.List() // newest first
	if err != nil {
		return Record{}, fmt.Errorf("raftlog: list snapshots: %w", err)
	}
	// The log continues a snapshot at s when it holds every entry after s.
	continues := func(s uint64) bool { return s >= end || first != 0 && first <= s+1 }
	var base *raft.SnapshotMeta
	for _, m := range metas {
		if m.Index <= end && m.Index < start && continues(m.Index) {
			base = m
			break
		}
	}
	if base == nil && !(first <= 1 && first != 0 || end == 0) {
		// Nothing as old as since: the oldest snapshot the log continues.
		for _, m := range metas {
			if m.Index <= end && continues(m.Index) {
				base = m
			}
		}
		if base == nil {
			return Record{}, fmt.Errorf("raftlog: no snapshot the log (indexes %d to %d) continues from", first, last)
		}
	}
	var rec Record
	from := uint64(1)
	if base != nil {
		meta, rc, err := snaps.Open(base.ID)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Record{}, fmt.Errorf("%w: snapshot %s: %v", errCompacted, base.ID, err)
			}
			return Record{}, fmt.Errorf("raftlog: open snapshot %s: %w", base.ID, err)
		}
		applied, state, err := decodeSnapshot(rc)
		rc.Close()
		if err != nil {
			return Record{}, fmt.Errorf("raftlog: snapshot %s: %w", base.ID, err)
		}
		rec.SnapshotIndex, rec.SnapshotApplied, rec.Snapshot = meta.Index, applied, state
		from = meta.Index + 1
	}
	rec.LastIndex = max(end, rec.SnapshotIndex)
	for i := from; i <= end; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return Record{}, compacted(i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		rec.Entries = append(rec.Entries, Entry{Index: l.Index, Data: l.Data, AppendedAt: l.AppendedAt})
	}
	return rec, nil
}

func compacted(i uint64, err error) error {
	if errors.Is(err, raft.ErrLogNotFound) {
		return fmt.Errorf("%w: entry %d: %v", errCompacted, i, err)
	}
	return fmt.Errorf("raftlog: read entry %d: %w", i, err)
}

// decodeSnapshot reads a snapshot written by fsmSnapshot.Persist: the index
// the FSM had applied and the FSM's bytes.
func decodeSnapshot(r io.Reader) (uint64, []byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, nil, fmt.Errorf("raftlog: read snapshot: %w", err)
	}
	if len(b) < snapshotHeaderLen || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return 0, nil, errors.New("raftlog: snapshot is not a raftlog snapshot (bad magic)")
	}
	version := binary.BigEndian.Uint32(b[len(snapshotMagic):])
	if version != snapshotFormatVersion {
		return 0, nil, fmt.Errorf("%w: snapshot format version %d, this build knows version %d", ErrUnknownFormat, version, snapshotFormatVersion)
	}
	return binary.BigEndian.Uint64(b[len(snapshotMagic)+4:]), b[snapshotHeaderLen:], nil
}

// Seed makes a new data dir whose state is the FSM bytes state at raft
// index index (the index of the last entry those bytes include): one
// snapshot, an empty log. A Node opened on it restores the snapshot, reports
// AppliedIndex index and appends after it. Seed refuses a dir that exists
// and is not empty. nodeID is the Options.NodeID the dir will be opened
// with ("" for the default).
func Seed(dir, nodeID string, index uint64, state []byte) error {
	if nodeID == "" {
		nodeID = DefaultNodeID
	}
	if index == 0 {
		return errors.New("raftlog: seed: index must be at least 1")
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("raftlog: seed: data dir %s is not empty (%d entries); restore into a new or empty dir", dir, len(ents))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("raftlog: seed: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("raftlog: create data dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer lock.release()
	if err := checkNodeID(dir, nodeID); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, DefaultSnapshotsRetained, newHclogAdapter(slog.New(slog.DiscardHandler), ""))
	if err != nil {
		return fmt.Errorf("raftlog: open snapshot store in %s: %w", dir, err)
	}
	id := raft.ServerID(nodeID)
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(nodeID)}}}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(nodeID))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, index, trans)
	if err != nil {
		return fmt.Errorf("raftlog: seed: create snapshot: %w", err)
	}
	return (&fsmSnapshot{index: index, state: bytes.Clone(state)}).Persist(sink)
}
