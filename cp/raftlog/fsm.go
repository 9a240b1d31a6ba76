package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// FSM is the state machine a Node drives. raft calls its methods from one
// goroutine, never concurrently with each other, so an FSM needs no locks of
// its own against them (readers on other goroutines still need them).
type FSM interface {
	// Apply applies one committed entry at its raft index. Indexes only grow
	// (with gaps: raft's own entries do not reach the FSM). The result is
	// handed back to the Propose call that made the entry, if it is still
	// waiting. Apply must be deterministic and must not fail: an entry that
	// cannot be applied is a value in the result, not a panic.
	Apply(index uint64, entry []byte) any
	// Snapshot returns the whole state as bytes, as of the last Apply. raft
	// writes the bytes to disk while later entries are applied, so they must
	// not alias memory that Apply changes.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot made by Snapshot. It is
	// called at Open when a snapshot exists, before the entries after it are
	// applied again.
	Restore(r io.Reader) error
}

// SnapshotLater is an FSM whose snapshot is taken in two steps, so that
// the step that holds off Apply is short: hashicorp/raft asks for the
// snapshot on the goroutine that applies entries (no entry is applied
// while SnapshotLater runs), and writes it to disk on another while later
// entries are applied. SnapshotLater captures the state as of the last
// Apply and returns the function that encodes the capture, the bytes
// Snapshot would have returned; raft calls it once, while Apply runs, so
// what it reads must not alias memory that Apply changes.
type SnapshotLater interface {
	SnapshotLater() (func() ([]byte, error), error)
}

// Snapshot container: raftlog wraps the FSM's bytes in a small header that
// carries a format version and the index of the last entry the FSM applied,
// so that AppliedIndex is right after a restore and an unknown format is
// refused by name instead of being fed to the FSM.
const (
	snapshotMagic         = "FFRLSNAP"
	snapshotFormatVersion = uint32(1)
	snapshotHeaderLen     = len(snapshotMagic) + 4 + 8
)

// fsmAdapter turns an FSM into a raft.FSM and tracks the applied index.
type fsmAdapter struct {
	fsm     FSM
	applied atomic.Uint64
}

var _ raft.FSM = (*fsmAdapter)(nil)

func (a *fsmAdapter) Apply(l *raft.Log) any {
	res := a.fsm.Apply(l.Index, l.Data)
	a.applied.Store(l.Index)
	return res
}

func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	if l, ok := a.fsm.(SnapshotLater); ok {
		encode, err := l.SnapshotLater()
		if err != nil {
			return nil, fmt.Errorf("raftlog: fsm snapshot: %w", err)
		}
		return &fsmSnapshot{index: a.applied.Load(), encode: encode}, nil
	}
	b, err := a.fsm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("raftlog: fsm snapshot: %w", err)
	}
	return &fsmSnapshot{index: a.applied.Load(), state: b}, nil
}

func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := a.restore(rc)
	if t, ok := rc.(*trackedSnapshot); ok && err != nil {
		t.restoreFailed(err)
	}
	return err
}

func (a *fsmAdapter) restore(rc io.Reader) error {
	br := bufio.NewReader(rc)
	var hdr [snapshotHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("raftlog: read snapshot header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return errors.New("raftlog: snapshot is not a raftlog snapshot (bad magic)")
	}
	version := binary.BigEndian.Uint32(hdr[len(snapshotMagic):])
	if version != snapshotFormatVersion {
		return fmt.Errorf("%w: snapshot format version %d, this build knows version %d", ErrUnknownFormat, version, snapshotFormatVersion)
	}
	index := binary.BigEndian.Uint64(hdr[len(snapshotMagic)+4:])
	if err := a.fsm.Restore(br); err != nil {
		return fmt.Errorf("raftlog: fsm restore: %w", err)
	}
	a.applied.Store(index)
	return nil
}

// fsmSnapshot is the state at index: its bytes, or the function that
// encodes them (SnapshotLater), called by Persist.
type fsmSnapshot struct {
	index  uint64
	state  []byte
	encode func() ([]byte, error)
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if s.encode != nil {
		b, err := s.encode()
		if err != nil {
			_ = sink.Cancel()
			return fmt.Errorf("raftlog: fsm snapshot: %w", err)
		}
		s.state, s.encode = b, nil
	}
	var hdr [snapshotHeaderLen]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint32(hdr[len(snapshotMagic):], snapshotFormatVersion)
	binary.BigEndian.PutUint64(hdr[len(snapshotMagic)+4:], s.index)
	if _, err := sink.Write(hdr[:]); err != nil {
		_ = sink.Cancel()
		return err
	}
	if _, err := sink.Write(s.state); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
