package raftlog

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
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
