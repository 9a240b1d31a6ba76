package raftlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// corruptNewestSnapshot flips a byte of the newest snapshot's state file, so
// its CRC check fails, and returns the snapshot's path.
func corruptNewestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	store, err := raft.NewFileSnapshotStore(dir, 10, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := store.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("list snapshots: %v, %d", err, len(metas))
	}
	snapDir := filepath.Join(dir, "snapshots", metas[0].ID)
	state := filepath.Join(snapDir, "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-2] ^= 0xff
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return snapDir
}

// writeTwoSnapshots leaves entries 0..24 in dir with snapshots after 10 and
// 20 entries.
func writeTwoSnapshots(t *testing.T, opts Options) {
	t.Helper()
	n, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n, entryNames(0, 10))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n, entryNames(10, 20))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n, entryNames(20, 25))
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptSnapshotFallsBackWhenTheLogCoversTheOlderOne(t *testing.T) {
	dir := t.TempDir()
	writeTwoSnapshots(t, Options{FSM: &listFSM{}, Dir: dir})
	corruptNewestSnapshot(t, dir)
	fsm := &listFSM{}
	openT(t, Options{FSM: fsm, Dir: dir})
	got, restores := fsm.snapshot()
	if restores != 1 {
		t.Fatalf("restores = %d, want 1 (the older snapshot)", restores)
	}
	equalStrings(t, "entries", got, entryNames(0, 25))
}

func TestCorruptSnapshotStopsStartWhenTheLogWasCompacted(t *testing.T) {
	dir := t.TempDir()
	writeTwoSnapshots(t, Options{FSM: &listFSM{}, Dir: dir, TrailingLogs: 1})
	snapDir := corruptNewestSnapshot(t, dir)
	_, err := Open(Options{FSM: &listFSM{}, Dir: dir, TrailingLogs: 1})
	if err == nil {
		t.Fatal("Open succeeded on a corrupt snapshot whose predecessors the log no longer covers")
	}
	for _, want := range []string{snapDir, "cannot be restored", "CRC", "backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q does not contain %q", err, want)
		}
	}
	// The refused Open released the dir.
	if _, err := lockDir(dir); err != nil {
		t.Fatalf("dir still locked after a failed Open: %v", err)
	}
}
