package raftlog

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// safeSnapshotStore wraps raft's snapshot store so that start-up never falls
// back to a snapshot the log cannot continue from. raft tries snapshots
// newest first and uses the first it can restore; after an older one it
// replays the log from that snapshot's index, and it panics if those entries
// were compacted away. List therefore offers an older snapshot only while
// the log still holds every entry after it. When no offered snapshot can be
// restored, raft's NewRaft fails and Open reports the newest snapshot's
// failure (recorded here) with what to do: the state is never silently
// emptied.
type safeSnapshotStore struct {
	raft.SnapshotStore
	logs raft.LogStore

	mu       sync.Mutex
	failures []snapshotFailure // in the order raft tried them
}

type snapshotFailure struct {
	id  string
	err error
}

func (s *safeSnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.SnapshotStore.List()
	if err != nil || len(metas) <= 1 {
		return metas, err
	}
	first, err := s.logs.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raftlog: read the log's first index: %w", err)
	}
	out := metas[:1:1] // newest first; the newest is always offered
	for _, m := range metas[1:] {
		if first == 0 || first <= m.Index+1 {
			out = append(out, m)
		}
	}
	return out, nil
}

func (s *safeSnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		s.recordFailure(id, err)
		return nil, nil, err
	}
	return meta, &trackedSnapshot{ReadCloser: rc, store: s, id: id}, nil
}

func (s *safeSnapshotStore) recordFailure(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, snapshotFailure{id, err})
}

func (s *safeSnapshotStore) firstFailure() (snapshotFailure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return snapshotFailure{}, false
	}
	return s.failures[0], true
}

// trackedSnapshot lets the FSM adapter attribute a Restore failure to the
// snapshot being read.
type trackedSnapshot struct {
	io.ReadCloser
	store *safeSnapshotStore
	id    string
}

func (t *trackedSnapshot) restoreFailed(err error) { t.store.recordFailure(t.id, err) }
