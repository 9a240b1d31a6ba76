package cp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/logfile"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// Replay runs the cp's state machine (the same fsm a running cp applies
// entries with) over a recorded log: it restores the record's snapshot, or
// starts empty when the record begins at the log's init entry, then applies
// each entry in index order. It is how cmd/sim -replay reproduces what a
// real cp did and cp -restore rebuilds a state from an export.

// ReplayOptions adjust a Replay.
type ReplayOptions struct {
	// UntilIndex stops after the last entry at or below it; 0 replays the
	// whole record. It must lie in the record's range (see ReplayRange).
	UntilIndex uint64
	// Config, when set, edits the core's config at the restored point (a
	// what-if): the snapshot's config, or the init entry's.
	Config func(*core.Config) error
}

// ReplayResult is what a Replay produced.
type ReplayResult struct {
	// Start is the restored point: the index of the last entry the
	// snapshot includes, 0 when the record starts at the log's beginning.
	Start uint64
	// StartConfig is the core's config at the restored point (before any
	// edit), the zero Config when the record starts before the init entry.
	StartConfig core.Config
	// Events are the timeline events the applied entries recorded, in
	// order (the snapshot's own older events are not repeated).
	Events []core.Event
	// AppliedIndex and StateHash are what the cp's snapshot endpoint
	// reports at that point: the index of the last entry applied and the
	// hex SHA-256 of the state's export.
	AppliedIndex uint64
	StateHash    string
	// Core is the state after the last applied entry.
	Core *core.ControlPlane
}

// ReplayRange is the range of indexes a replay of rec can stop at: from
// its restored point (or its first entry) to its last index.
func ReplayRange(rec raftlog.Record) (first, last uint64) {
	first = rec.SnapshotApplied
	if rec.Snapshot == nil && len(rec.Entries) > 0 {
		first = rec.Entries[0].Index
	}
	return first, rec.LastIndex
}

// Replay replays rec (see the package comment above ReplayOptions).
func Replay(rec raftlog.Record, opts ReplayOptions) (ReplayResult, error) {
	first, last := ReplayRange(rec)
	until := opts.UntilIndex
	if until == 0 {
		until = last
	} else if until < first || until > last {
		return ReplayResult{}, fmt.Errorf("cp: replay: index %d is outside the recorded range %d to %d", until, first, last)
	}
	var res ReplayResult
	f := newFSM(nil, nil)
	f.setSink(func(_ *core.ControlPlane, events []core.Event, _ []core.Outbound) {
		res.Events = append(res.Events, events...)
	})
	if rec.Snapshot != nil {
		export, _, err := decodeSnapshot(rec.Snapshot)
		if err != nil {
			return ReplayResult{}, fmt.Errorf("cp: replay: the snapshot at index %d: %w", rec.SnapshotIndex, err)
		}
		if v, layout, err := core.ExportHeader(export); err == nil && !core.CanRestore(v, layout) {
			return ReplayResult{}, fmt.Errorf("cp: replay: the snapshot at index %d was written by another core (state format version %d, layout %s; this build's: version %d, layout %s)",
				rec.SnapshotIndex, v, layout, core.StateFormatVersion, core.StateLayout())
		}
		if opts.Config == nil {
			if err := f.Restore(bytes.NewReader(rec.Snapshot)); err != nil {
				return ReplayResult{}, err
			}
		} else {
			var orig core.Config
			c, err := core.RestoreWithConfig(export, nil, func(cfg *core.Config) error {
				orig = *cfg
				return opts.Config(cfg)
			})
			if err != nil {
				return ReplayResult{}, fmt.Errorf("cp: replay: restore the snapshot with the changed config: %w", err)
			}
			f.mu.Lock()
			f.attach(c)
			f.lastAt = c.DebugView(time.Time{}).Time
			f.mu.Unlock()
			res.StartConfig = orig
		}
		f.read(func(c *core.ControlPlane) {
			if c != nil && opts.Config == nil {
				res.StartConfig = c.Config()
			}
		})
		f.syncIndex(rec.SnapshotApplied)
		res.Start = rec.SnapshotApplied
	}
	for _, e := range rec.Entries {
		if e.Index > until {
			break
		}
		data := e.Data
		if opts.Config != nil && rec.Snapshot == nil {
			var err error
			if data, err = editInit(e.Index, data, opts.Config, &res.StartConfig); err != nil {
				return ReplayResult{}, err
			}
		}
		f.Apply(e.Index, data)
		if err := f.err(); err != nil {
			return ReplayResult{}, fmt.Errorf("cp: replay: %w", err)
		}
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.core == nil {
		return ReplayResult{}, fmt.Errorf("cp: replay: no state at index %d (the record holds no init entry before it)", until)
	}
	h, err := f.hashLocked(time.Time{})
	if err != nil {
		return ReplayResult{}, err
	}
	res.AppliedIndex, res.StateHash, res.Core = f.index, h, f.core
	return res, nil
}

// editInit applies edit to the config of an init entry (other entries pass
// unchanged), recording the config it had.
func editInit(index uint64, data []byte, edit func(*core.Config) error, orig *core.Config) ([]byte, error) {
	e, err := decodeEntry(index, data)
	if err != nil || e.Init == nil {
		return data, nil // the fsm reports a bad entry
	}
	*orig = e.Init.Config
	cfg := e.Init.Config
	if err := edit(&cfg); err != nil {
		return nil, err
	}
	return json.Marshal(logEntry{V: e.V, Init: &initEntry{At: e.Init.At, Config: cfg}})
}

// RestoreDataDir starts a new data dir from an export file (cp -restore):
// it replays the export to its last entry and writes the resulting state
// as the dir's one snapshot at that index, so a cp started on dir reports
// the applied_index and state_hash the exported cp had there. It refuses
// a dir that exists and is not empty, and changes nothing on any error.
func RestoreDataDir(dir string, export io.Reader) (ReplayResult, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return ReplayResult{}, fmt.Errorf("cp: restore: data dir %s is not empty; restore into a new or empty dir (or move it away)", dir)
	}
	_, rec, err := logfile.Read(export)
	if err != nil {
		return ReplayResult{}, fmt.Errorf("cp: restore: %w", err)
	}
	res, err := Replay(rec, ReplayOptions{})
	if err != nil {
		return ReplayResult{}, fmt.Errorf("cp: restore: %w", err)
	}
	state, err := res.Core.Export()
	if err != nil {
		return ReplayResult{}, fmt.Errorf("cp: restore: export the state: %w", err)
	}
	if err := raftlog.Seed(dir, "", res.AppliedIndex, state); err != nil {
		return ReplayResult{}, fmt.Errorf("cp: restore: %w", err)
	}
	return res, nil
}
