package raftlog

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// dataEnd is the offset after the last non-zero byte: raft-wal preallocates
// its segment files, so the file size says nothing about what was written.
func dataEnd(b []byte) int {
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return end
}

// TestTornLogTailIsRecovered simulates a crash in the middle of the last
// append: the tail of the newest raft-wal segment never reached the disk.
// raft-wal validates the last commit frame's CRC on open and rewinds to the
// previous commit, so the node opens without the torn (never acknowledged)
// entry, keeps everything before it, and takes new writes.
func TestTornLogTailIsRecovered(t *testing.T) {
	for _, tt := range []struct {
		name string
		tear func(path string, data []byte, end int) error
	}{
		{"tail zeroed", func(path string, data []byte, end int) error {
			clear(data[end-16 : end])
			return os.WriteFile(path, data, 0o600)
		}},
		{"file truncated", func(path string, _ []byte, end int) error {
			return os.Truncate(path, int64(end-16))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			n1, err := Open(Options{FSM: &listFSM{}, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			proposeAll(t, n1, entryNames(0, 20))
			if err := n1.Close(); err != nil {
				t.Fatal(err)
			}
			segments, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
			if len(segments) == 0 {
				t.Fatal("no raft-wal segment files")
			}
			slices.Sort(segments)
			newest := segments[len(segments)-1]
			data, err := os.ReadFile(newest)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.tear(newest, data, dataEnd(data)); err != nil {
				t.Fatal(err)
			}

			fsm := &listFSM{}
			n2 := openT(t, Options{FSM: fsm, Dir: dir})
			got, _ := fsm.snapshot()
			equalStrings(t, "entries after a torn tail", got, entryNames(0, 19))
			propose(t, n2, "after-recovery")
			if err := n2.Close(); err != nil {
				t.Fatal(err)
			}
			fsm3 := &listFSM{}
			openT(t, Options{FSM: fsm3, Dir: dir})
			got, _ = fsm3.snapshot()
			equalStrings(t, "entries after a second restart", got, append(entryNames(0, 19), "after-recovery"))
		})
	}
}

// TestTruncatedTailReopens: a follower whose log tail was cut (raft deletes
// a conflicting suffix when a new leader's log differs, as after a leader
// is killed) must open again. raft-wal v0.4.0 sealed the segment without
// its index block there and panicked at the next open ("sealed segment has
// no index block", hashicorp/raft-wal#31), which the three-cp kill test hit.
func TestTruncatedTailReopens(t *testing.T) {
	dir := t.TempDir()
	open := func() (raft.LogStore, io.Closer) {
		t.Helper()
		logs, _, closer, err := openDiskStores(dir, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return logs, closer
	}
	logs, closer := open()
	var batch []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprint("e", i))})
	}
	if err := logs.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	if err := logs.DeleteRange(8, 10); err != nil { // the conflicting suffix
		t.Fatal(err)
	}
	if err := logs.StoreLog(&raft.Log{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte("new leader")}); err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	logs, closer = open()
	defer closer.Close()
	var l raft.Log
	if err := logs.GetLog(1, &l); err != nil || string(l.Data) != "e1" {
		t.Fatalf("entry 1 after reopening: %v %q", err, l.Data)
	}
	if err := logs.GetLog(8, &l); err != nil || string(l.Data) != "new leader" || l.Term != 2 {
		t.Fatalf("entry 8 after reopening: %v %q term %d", err, l.Data, l.Term)
	}
	if last, _ := logs.LastIndex(); last != 8 {
		t.Fatalf("last index %d, want 8", last)
	}
}
