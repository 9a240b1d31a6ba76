package raftlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// listFSM is a test state machine: the list of applied entries.
type listFSM struct {
	mu       sync.Mutex
	entries  []string
	indexes  []uint64
	restores int
}

func (f *listFSM) Apply(index uint64, entry []byte) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.indexes); n > 0 && f.indexes[n-1] >= index {
		panic(fmt.Sprintf("index %d applied after %d", index, f.indexes[n-1]))
	}
	f.entries = append(f.entries, string(entry))
	f.indexes = append(f.indexes, index)
	return len(f.entries)
}

func (f *listFSM) Snapshot() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return json.Marshal(f.entries)
}

func (f *listFSM) Restore(r io.Reader) error {
	var entries []string
	if err := json.NewDecoder(r).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries, f.indexes = entries, nil
	f.restores++
	return nil
}

func (f *listFSM) snapshot() (entries []string, restores int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...), f.restores
}

func openT(t *testing.T, opts Options) *Node {
	t.Helper()
	n, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func propose(t *testing.T, n *Node, entry string) (any, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, idx, err := n.Propose(ctx, []byte(entry))
	if err != nil {
		t.Fatalf("Propose(%q): %v", entry, err)
	}
	return res, idx
}

func entryNames(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("entry-%03d", i))
	}
	return out
}

func proposeAll(t *testing.T, n *Node, entries []string) {
	t.Helper()
	for _, e := range entries {
		propose(t, n, e)
	}
}

func equalStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s:\n got %d %v\nwant %d %v", what, len(got), got, len(want), want)
	}
}

// waitFor polls cond until it holds or the deadline passes: raft snapshots
// and elections are asynchronous.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProposeAppliesInOrder(t *testing.T) {
	for _, inMemory := range []bool{true, false} {
		t.Run(fmt.Sprintf("inmemory=%v", inMemory), func(t *testing.T) {
			fsm := &listFSM{}
			opts := Options{FSM: fsm, InMemory: inMemory}
			if !inMemory {
				opts.Dir = t.TempDir()
			}
			n := openT(t, opts)
			want := entryNames(0, 20)
			var last uint64
			for i, e := range want {
				res, idx := propose(t, n, e)
				if res != i+1 {
					t.Fatalf("Propose(%q) result = %v, want %d", e, res, i+1)
				}
				if idx <= last {
					t.Fatalf("Propose(%q) index %d not above previous %d", e, idx, last)
				}
				last = idx
				if got := n.AppliedIndex(); got != idx {
					t.Fatalf("AppliedIndex = %d right after Propose returned index %d", got, idx)
				}
			}
			got, _ := fsm.snapshot()
			equalStrings(t, "applied entries", got, want)
		})
	}
}

func TestConcurrentProposalsEachAppliedOnceInIndexOrder(t *testing.T) {
	fsm := &listFSM{}
	n := openT(t, Options{FSM: fsm, Dir: t.TempDir()})
	const workers, perWorker = 8, 25
	type ack struct {
		entry string
		index uint64
	}
	acks := make(chan ack, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				e := fmt.Sprintf("w%d-%02d", w, i)
				_, idx, err := n.Propose(context.Background(), []byte(e))
				if err != nil {
					t.Errorf("Propose(%q): %v", e, err)
					return
				}
				acks <- ack{e, idx}
			}
		})
	}
	wg.Wait()
	close(acks)
	byIndex := map[uint64]string{}
	for a := range acks {
		if prev, dup := byIndex[a.index]; dup {
			t.Fatalf("index %d returned for %q and %q", a.index, prev, a.entry)
		}
		byIndex[a.index] = a.entry
	}
	fsm.mu.Lock()
	defer fsm.mu.Unlock()
	if len(fsm.entries) != workers*perWorker {
		t.Fatalf("applied %d entries, want %d", len(fsm.entries), workers*perWorker)
	}
	for i, idx := range fsm.indexes {
		if byIndex[idx] != fsm.entries[i] {
			t.Fatalf("FSM applied %q at index %d, Propose returned index %d for %q", fsm.entries[i], idx, idx, byIndex[idx])
		}
	}
}

func TestRestartRestoresSnapshotThenReplaysEntries(t *testing.T) {
	dir := t.TempDir()
	fsm1 := &listFSM{}
	n1, err := Open(Options{FSM: fsm1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n1, entryNames(0, 30))
	if err := n1.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	proposeAll(t, n1, entryNames(30, 45))
	applied := n1.AppliedIndex()
	if err := n1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	fsm2 := &listFSM{}
	n2 := openT(t, Options{FSM: fsm2, Dir: dir})
	got, restores := fsm2.snapshot()
	if restores != 1 {
		t.Fatalf("FSM restores = %d, want 1 (from the snapshot)", restores)
	}
	equalStrings(t, "entries after restart", got, entryNames(0, 45))
	fsm2.mu.Lock()
	replayed := len(fsm2.indexes)
	fsm2.mu.Unlock()
	if replayed != 15 {
		t.Fatalf("Apply called %d times after restore, want the 15 entries after the snapshot", replayed)
	}
	if n2.AppliedIndex() != applied {
		t.Fatalf("AppliedIndex after restart = %d, want %d", n2.AppliedIndex(), applied)
	}
	// The restarted node accepts writes after the replayed ones.
	if _, idx := propose(t, n2, "after-restart"); idx <= applied {
		t.Fatalf("new entry index %d not above %d", idx, applied)
	}
}

func TestRestartWithoutSnapshotReplaysWholeLog(t *testing.T) {
	dir := t.TempDir()
	n1, err := Open(Options{FSM: &listFSM{}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n1, entryNames(0, 10))
	applied := n1.AppliedIndex()
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	n2 := openT(t, Options{FSM: fsm, Dir: dir})
	got, restores := fsm.snapshot()
	if restores != 0 {
		t.Fatalf("restores = %d, want 0", restores)
	}
	equalStrings(t, "replayed entries", got, entryNames(0, 10))
	if n2.AppliedIndex() != applied {
		t.Fatalf("AppliedIndex = %d, want %d", n2.AppliedIndex(), applied)
	}
}

func TestAutomaticSnapshotCompactsLogAndRestores(t *testing.T) {
	dir := t.TempDir()
	opts := Options{FSM: &listFSM{}, Dir: dir, SnapshotThreshold: 10, SnapshotInterval: 10 * time.Millisecond, TrailingLogs: 5}
	n1, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n1, entryNames(0, 40))
	waitFor(t, "an automatic snapshot", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
		return len(m) > 0
	})
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	opts.FSM = fsm
	openT(t, opts)
	got, restores := fsm.snapshot()
	if restores != 1 {
		t.Fatalf("restores = %d, want 1", restores)
	}
	equalStrings(t, "entries", got, entryNames(0, 40))
}

// resultFSM answers every entry with a fresh result and counts the
// results the garbage collector freed.
type resultFSM struct {
	listFSM
	freed atomic.Int64
}

type bigResult struct{ data []byte }

func (f *resultFSM) Apply(index uint64, entry []byte) any {
	f.listFSM.Apply(index, entry)
	r := &bigResult{data: make([]byte, 1<<10)}
	runtime.SetFinalizer(r, func(*bigResult) { f.freed.Add(1) })
	return r
}

// TestInMemoryLogKeepsNoResults: the in-memory log store keeps entries,
// not the FSM's results for them: once the proposer has dropped a result,
// it can be collected although its entry is still in the log (no snapshot
// has compacted it).
func TestInMemoryLogKeepsNoResults(t *testing.T) {
	fsm := &resultFSM{}
	n := openT(t, Options{FSM: fsm, InMemory: true})
	const entries = 50
	for _, e := range entryNames(0, entries) {
		if r, _ := propose(t, n, e); r == nil {
			t.Fatal("no result")
		}
	}
	waitFor(t, "the results to be collected", func() bool {
		runtime.GC()
		return fsm.freed.Load() >= entries-1 // the last may still sit in raft's apply loop
	})
}

func TestInMemoryKeepsNothingAcrossOpen(t *testing.T) {
	n1, err := Open(Options{FSM: &listFSM{}, InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n1, entryNames(0, 5))
	if err := n1.Snapshot(); err != nil {
		t.Fatalf("Snapshot in memory: %v", err)
	}
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	fsm := &listFSM{}
	n2 := openT(t, Options{FSM: fsm, InMemory: true})
	if got, _ := fsm.snapshot(); len(got) != 0 {
		t.Fatalf("new in-memory node has entries %v", got)
	}
	if n2.AppliedIndex() != 0 {
		t.Fatalf("AppliedIndex = %d, want 0", n2.AppliedIndex())
	}
}

func TestSecondNodeOnSameDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	n1, err := Open(Options{FSM: &listFSM{}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{FSM: &listFSM{}, Dir: dir})
	if !errors.Is(err, ErrDirLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open error = %v, want ErrDirLocked naming %s", err, dir)
	}
	// The refused Open did not disturb the first node.
	propose(t, n1, "still-works")
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	n3 := openT(t, Options{FSM: &listFSM{}, Dir: dir})
	propose(t, n3, "after-release")
}

// TestSecondProcessOnSameDirIsRefused runs the refused Open in a child
// process, as a second cp on the same data dir would.
func TestSecondProcessOnSameDirIsRefused(t *testing.T) {
	if dir := os.Getenv("RAFTLOG_LOCK_HELPER_DIR"); dir != "" {
		_, err := Open(Options{FSM: &listFSM{}, Dir: dir, StartTimeout: 5 * time.Second})
		fmt.Printf("open error: %v\n", err)
		if errors.Is(err, ErrDirLocked) {
			os.Exit(3)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	openT(t, Options{FSM: &listFSM{}, Dir: dir})
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondProcessOnSameDirIsRefused$")
	cmd.Env = append(os.Environ(), "RAFTLOG_LOCK_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child Open: err=%v, output:\n%s", err, out)
	}
	want := fmt.Sprintf("data dir is in use: %s is locked (held by pid %d)", dir, os.Getpid())
	if !strings.Contains(string(out), want) {
		t.Fatalf("child output %q does not contain %q", out, want)
	}
}

func TestProposeAfterCloseErrors(t *testing.T) {
	n, err := Open(Options{FSM: &listFSM{}, InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := n.Propose(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Propose after Close = %v, want ErrClosed", err)
	}
	if err := n.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close = %v, want ErrClosed", err)
	}
}

func TestProposeWithDoneContext(t *testing.T) {
	fsm := &listFSM{}
	n := openT(t, Options{FSM: fsm, InMemory: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := n.Propose(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose with cancelled context = %v, want context.Canceled", err)
	}
	if got, _ := fsm.snapshot(); len(got) != 0 {
		t.Fatalf("a refused proposal was applied: %v", got)
	}
}

// failingLogStore fails StoreLogs while failing is set, like a full disk.
type failingLogStore struct {
	raft.LogStore
	mu      sync.Mutex
	failing bool
}

var errDiskFull = errors.New("write wal: no space left on device")

func (s *failingLogStore) setFailing(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = v
}

func (s *failingLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *failingLogStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return errDiskFull
	}
	return s.LogStore.StoreLogs(logs)
}

func TestFailedLogWriteIsNotAcknowledgedNorApplied(t *testing.T) {
	fsm := &listFSM{}
	store := &failingLogStore{}
	opts := Options{FSM: fsm, InMemory: true}
	opts.WrapLogStore = func(l raft.LogStore) raft.LogStore { store.LogStore = l; return store }
	n := openT(t, opts)
	propose(t, n, "before")

	store.setFailing(true)
	_, _, err := n.Propose(context.Background(), []byte("lost"))
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, errDiskFull) {
		t.Fatalf("Propose on a failing store = %v, want ErrNotDurable wrapping the store error", err)
	}
	store.setFailing(false)
	// The node stepped down; it re-elects itself and takes writes again.
	waitFor(t, "leadership after the store recovers", n.IsLeader)
	waitFor(t, "a proposal to succeed", func() bool {
		_, _, err := n.Propose(context.Background(), []byte("after"))
		if err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNotDurable) {
			t.Fatalf("Propose after recovery: %v", err)
		}
		return err == nil
	})
	got, _ := fsm.snapshot()
	equalStrings(t, "applied entries", got, []string{"before", "after"})
}

func TestWrongNodeIDIsRefused(t *testing.T) {
	dir := t.TempDir()
	n, err := Open(Options{FSM: &listFSM{}, Dir: dir, NodeID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{FSM: &listFSM{}, Dir: dir, NodeID: "b"})
	if err == nil || !strings.Contains(err.Error(), `belongs to node "a", not "b"`) {
		t.Fatalf("Open with another NodeID = %v, want a configuration error naming the node", err)
	}
}

func TestSnapshotUnknownFormatVersionIsRefused(t *testing.T) {
	var sink bytes.Buffer
	hdr := make([]byte, snapshotHeaderLen)
	copy(hdr, snapshotMagic)
	hdr[len(snapshotMagic)+3] = 9 // version 9
	sink.Write(hdr)
	sink.WriteString(`[]`)
	a := &fsmAdapter{fsm: &listFSM{}}
	err := a.Restore(io.NopCloser(&sink))
	if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("Restore = %v, want ErrUnknownFormat naming version 9", err)
	}
	err = a.Restore(io.NopCloser(strings.NewReader("not a snapshot at all")))
	if err == nil || !strings.Contains(err.Error(), "bad magic") {
		t.Fatalf("Restore of garbage = %v, want a bad magic error", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	fsm := &listFSM{}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no fsm", Options{Dir: "d"}, "FSM is required"},
		{"no dir", Options{FSM: fsm}, "Dir is required"},
		{"both", Options{FSM: fsm, Dir: "d", InMemory: true}, "exclusive"},
		{"interval", Options{FSM: fsm, InMemory: true, SnapshotInterval: time.Millisecond}, "SnapshotInterval"},
		{"retained", Options{FSM: fsm, InMemory: true, SnapshotsRetained: -1}, "SnapshotsRetained"},
		{"start timeout", Options{FSM: fsm, InMemory: true, StartTimeout: -time.Second}, "StartTimeout"},
		{"ok", Options{FSM: fsm, InMemory: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.setDefaults()
			err := o.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRaftLogsGoThroughSlogQuietAtInfo(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := openT(t, Options{FSM: &listFSM{}, Dir: t.TempDir(), Logger: logger})
	propose(t, n, "x")
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=raftlog.opened") {
		t.Fatalf("at info, want only the raftlog.opened line, got:\n%s", buf.String())
	}

	buf.Reset()
	logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	openT(t, Options{FSM: &listFSM{}, InMemory: true, Logger: logger})
	if !strings.Contains(buf.String(), `level=DEBUG msg="entering leader state" component=raft`) {
		t.Fatalf("at debug, want raft's state changes with component=raft, got:\n%s", buf.String())
	}
}

func TestHclogAdapterLevels(t *testing.T) {
	var buf bytes.Buffer
	a := newHclogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "")
	l := a.Named("raft").With("node", "n1")
	l.Info("info line", "k", 1)
	l.Warn("warn line")
	l.Warn("heartbeat timeout reached, starting election")
	l.Error("error line", "error", "boom")
	l.Named("wal").Trace("trace line")
	want := []string{
		`level=DEBUG msg="info line" component=raft node=n1 k=1`,
		`level=WARN msg="warn line" component=raft node=n1`,
		`level=DEBUG msg="heartbeat timeout reached, starting election" component=raft node=n1`,
		`level=ERROR msg="error line" component=raft node=n1 error=boom`,
		`level=DEBUG msg="trace line" component=raft.wal node=n1`,
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

// laterFSM is a listFSM whose snapshot is taken in two steps
// (SnapshotLater): the capture copies the entries; the encoding, called
// by Persist, marshals the copy, or fails with encodeErr.
type laterFSM struct {
	listFSM
	captures, encodes atomic.Int32
	encodeErr         error
}

func (f *laterFSM) SnapshotLater() (func() ([]byte, error), error) {
	f.mu.Lock()
	entries := slices.Clone(f.entries)
	f.mu.Unlock()
	f.captures.Add(1)
	return func() ([]byte, error) {
		f.encodes.Add(1)
		if f.encodeErr != nil {
			return nil, f.encodeErr
		}
		return json.Marshal(entries)
	}, nil
}

// TestSnapshotLaterIsEncodedByPersist: an FSM that implements
// SnapshotLater is captured once and encoded once per snapshot, and a
// restart restores what the capture held; an encoding that fails fails
// the snapshot and leaves the log as it was.
func TestSnapshotLaterIsEncodedByPersist(t *testing.T) {
	dir := t.TempDir()
	fsm1 := &laterFSM{}
	n1, err := Open(Options{FSM: fsm1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	proposeAll(t, n1, entryNames(0, 30))
	if err := n1.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if c, e := fsm1.captures.Load(), fsm1.encodes.Load(); c != 1 || e != 1 {
		t.Fatalf("captures %d, encodes %d, want 1 and 1", c, e)
	}
	proposeAll(t, n1, entryNames(30, 40))
	fsm1.encodeErr = errors.New("disk full")
	if err := n1.Snapshot(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Snapshot with a failing encoding: %v, want the encoding's error", err)
	}
	if err := n1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	fsm2 := &listFSM{}
	openT(t, Options{FSM: fsm2, Dir: dir})
	got, restores := fsm2.snapshot()
	if restores != 1 {
		t.Fatalf("FSM restores = %d, want 1", restores)
	}
	equalStrings(t, "entries after restart", got, entryNames(0, 40))
}
