package raftlog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func recordNames(t *testing.T, rec Record) []string {
	t.Helper()
	var out []string
	for i, e := range rec.Entries {
		if e.Index <= rec.SnapshotIndex || i > 0 && e.Index <= rec.Entries[i-1].Index {
			t.Fatalf("entry index %d out of order (snapshot %d)", e.Index, rec.SnapshotIndex)
		}
		out = append(out, string(e.Data))
	}
	return out
}

func TestRecordWithoutSnapshotHoldsTheWholeLog(t *testing.T) {
	n := openT(t, Options{FSM: &listFSM{}, Dir: t.TempDir()})
	proposeAll(t, n, entryNames(0, 10))
	rec, err := n.Record(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotIndex != 0 || rec.Snapshot != nil {
		t.Fatalf("snapshot %d %q, want none", rec.SnapshotIndex, rec.Snapshot)
	}
	equalStrings(t, "entries", recordNames(t, rec), entryNames(0, 10))
	if rec.LastIndex != n.AppliedIndex() {
		t.Fatalf("LastIndex %d, want the applied index %d", rec.LastIndex, n.AppliedIndex())
	}
}

func TestRecordSinceStartsAtTheNewestSnapshotBeforeIt(t *testing.T) {
	dir := t.TempDir()
	n := openT(t, Options{FSM: &listFSM{}, Dir: dir, TrailingLogs: 1000})
	proposeAll(t, n, entryNames(0, 10))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	snapAt := n.AppliedIndex()
	proposeAll(t, n, entryNames(10, 20))
	// AppendedAt has raft's wall clock: a since between two entries.
	rec0, err := n.Record(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// The zero since: the oldest point held, here the log's beginning.
	if rec0.SnapshotIndex != 0 || len(rec0.Entries) != 20 {
		t.Fatalf("since zero: snapshot %d, %d entries; want none and 20", rec0.SnapshotIndex, len(rec0.Entries))
	}
	since := rec0.Entries[15].AppendedAt
	rec, err := n.Record(since)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotIndex < snapAt || rec.SnapshotApplied != snapAt {
		t.Fatalf("snapshot index %d applied %d, want the snapshot at %d", rec.SnapshotIndex, rec.SnapshotApplied, snapAt)
	}
	if want := `["entry-000","entry-001","entry-002","entry-003","entry-004","entry-005","entry-006","entry-007","entry-008","entry-009"]`; string(rec.Snapshot) != want {
		t.Fatalf("snapshot bytes %s, want %s", rec.Snapshot, want)
	}
	equalStrings(t, "entries after the snapshot", recordNames(t, rec), entryNames(10, 20))
	// A since after every entry: the newest snapshot and what follows it.
	rec, err = n.Record(time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotApplied != snapAt || len(rec.Entries) != 10 {
		t.Fatalf("future since: snapshot %d, %d entries", rec.SnapshotApplied, len(rec.Entries))
	}
}

func TestRecordAfterCompactionStartsAtTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	n := openT(t, Options{FSM: &listFSM{}, Dir: dir, TrailingLogs: 1})
	proposeAll(t, n, entryNames(0, 10))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n, entryNames(10, 13))
	rec, err := n.Record(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotApplied == 0 {
		t.Fatalf("a compacted log must start at its snapshot")
	}
	equalStrings(t, "entries", recordNames(t, rec), entryNames(10, 13))
}

func TestReadDirRefusesARunningNodesDir(t *testing.T) {
	dir := t.TempDir()
	n := openT(t, Options{FSM: &listFSM{}, Dir: dir})
	proposeAll(t, n, entryNames(0, 3))
	_, err := ReadDir(dir)
	if !errors.Is(err, ErrDirLocked) || !strings.Contains(err.Error(), "stop the other process") {
		t.Fatalf("ReadDir of a held dir: %v, want ErrDirLocked", err)
	}
	applied := n.AppliedIndex()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	rec, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	equalStrings(t, "entries", recordNames(t, rec), entryNames(0, 3))
	if rec.Entries[2].Index != applied {
		t.Fatalf("last entry index %d, want %d", rec.Entries[2].Index, applied)
	}
	if _, err := ReadDir(t.TempDir()); !errors.Is(err, ErrNotDataDir) {
		t.Fatalf("ReadDir of an empty dir: %v, want ErrNotDataDir", err)
	}
}

func TestSeedStartsANodeAtTheIndex(t *testing.T) {
	dir := t.TempDir() + "/new"
	if err := Seed(dir, "", 42, []byte(`["a","b"]`)); err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	n := openT(t, Options{FSM: fsm, Dir: dir})
	if n.AppliedIndex() != 42 {
		t.Fatalf("AppliedIndex %d, want 42", n.AppliedIndex())
	}
	got, restores := fsm.snapshot()
	if restores != 1 {
		t.Fatalf("restores %d", restores)
	}
	equalStrings(t, "restored", got, []string{"a", "b"})
	if _, idx := propose(t, n, "c"); idx <= 42 {
		t.Fatalf("index %d after a seed at 42", idx)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	err := Seed(dir, "", 1, nil)
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("Seed of a used dir: %v", err)
	}
	n2 := openT(t, Options{FSM: &listFSM{}, Dir: dir})
	rec, err := n2.Record(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SnapshotApplied != 42 || fmt.Sprint(recordNames(t, rec)) != "[c]" {
		t.Fatalf("record after seed: snapshot %d entries %v", rec.SnapshotApplied, recordNames(t, rec))
	}
}
