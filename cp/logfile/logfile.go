// Package logfile is the cp's log export file: the backup that `fluxctl log
// export` writes, `cmd/sim -replay` replays and `cp -restore` starts a new
// data dir from. It is a versioned container of the log's own encodings: a
// snapshot's bytes as the state machine wrote them (core.Export) and log
// entries' bytes as they are in the log (the cp's {"v":1,...} entries). It
// adds no encoding of state.
//
// The file is JSON lines, one object a line, in this order:
//
//	{"format":"fluxforge-log-export","version":1,"core_state_version":1,"core_layout":"…","created_at":"…","since":"…"}
//	{"snapshot_index":S,"snapshot_applied":A,"snapshot":"<base64 of core.Export bytes>"}
//	{"index":N,"appended_at":"…","entry":"<base64 of the log entry's bytes>"}   (one per entry, index order)
//	{"end":{"last_index":L,"entries":K}}
//
// The header names the format version (a reader refuses any other: "export
// format version N; this build knows M") and the core that wrote it (its
// state format version and layout fingerprint, so a replay can warn when
// another core version wrote the log). snapshot_index is 0 and snapshot
// empty when the export starts at the beginning of the log. The end line
// makes a truncated file (a stream cut short) an error instead of a shorter
// history.
package logfile

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// Format names the file; Version is the only version this build writes and
// reads.
const (
	Format  = "fluxforge-log-export"
	Version = 1
)

// Header is the file's first line.
type Header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// CoreStateVersion and CoreLayout name the core that wrote the file
	// (core.StateFormatVersion and core.StateLayout of the cp's build).
	CoreStateVersion int       `json:"core_state_version"`
	CoreLayout       string    `json:"core_layout"`
	CreatedAt        time.Time `json:"created_at"`
	// Since is the start asked for (zero: the oldest point held).
	Since time.Time `json:"since,omitzero"`
}

// NewHeader is the header this build writes.
func NewHeader(createdAt, since time.Time) Header {
	return Header{Format: Format, Version: Version, CoreStateVersion: core.StateFormatVersion,
		CoreLayout: core.StateLayout(), CreatedAt: createdAt.UTC(), Since: since.UTC()}
}

type snapshotLine struct {
	SnapshotIndex   uint64 `json:"snapshot_index"`
	SnapshotApplied uint64 `json:"snapshot_applied"`
	Snapshot        []byte `json:"snapshot"`
}

type entryLine struct {
	Index      uint64    `json:"index"`
	AppendedAt time.Time `json:"appended_at,omitzero"`
	Entry      []byte    `json:"entry"`
}

type endLine struct {
	End *endBody `json:"end"`
}

type endBody struct {
	LastIndex uint64 `json:"last_index"`
	Entries   int    `json:"entries"`
}

// Write writes rec as an export file with header h.
func Write(w io.Writer, h Header, rec raftlog.Record) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return err
	}
	if err := enc.Encode(snapshotLine{rec.SnapshotIndex, rec.SnapshotApplied, rec.Snapshot}); err != nil {
		return err
	}
	for _, e := range rec.Entries {
		if err := enc.Encode(entryLine{e.Index, e.AppendedAt.UTC(), e.Data}); err != nil {
			return err
		}
	}
	if err := enc.Encode(endLine{&endBody{rec.LastIndex, len(rec.Entries)}}); err != nil {
		return err
	}
	return bw.Flush()
}

// ErrFormat: the input is not an export file this build reads.
var ErrFormat = errors.New("logfile: not a log export this build reads")

// Read reads an export file.
func Read(r io.Reader) (Header, raftlog.Record, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h Header
	if err := dec.Decode(&h); err != nil {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: header: %v", ErrFormat, err)
	}
	if h.Format != Format {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: format %q, want %q", ErrFormat, h.Format, Format)
	}
	if h.Version != Version {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: export format version %d; this build knows %d", ErrFormat, h.Version, Version)
	}
	var s snapshotLine
	if err := dec.Decode(&s); err != nil {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: snapshot line: %v", ErrFormat, err)
	}
	if s.SnapshotApplied > s.SnapshotIndex || (s.SnapshotIndex == 0) != (len(s.Snapshot) == 0) {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: snapshot line: index %d, applied %d, %d bytes do not fit together",
			ErrFormat, s.SnapshotIndex, s.SnapshotApplied, len(s.Snapshot))
	}
	rec := raftlog.Record{SnapshotIndex: s.SnapshotIndex, SnapshotApplied: s.SnapshotApplied, Snapshot: s.Snapshot}
	if len(rec.Snapshot) == 0 {
		rec.Snapshot = nil
	}
	prev := rec.SnapshotIndex
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the file ends before its end line (cut short?)")
			}
			return Header{}, raftlog.Record{}, fmt.Errorf("%w: after index %d: %v", ErrFormat, prev, err)
		}
		var end endLine
		if err := json.Unmarshal(raw, &end); err == nil && end.End != nil {
			if end.End.Entries != len(rec.Entries) || end.End.LastIndex < prev {
				return Header{}, raftlog.Record{}, fmt.Errorf("%w: end line says %d entries up to index %d, the file holds %d up to %d",
					ErrFormat, end.End.Entries, end.End.LastIndex, len(rec.Entries), prev)
			}
			rec.LastIndex = end.End.LastIndex
			break
		}
		var e entryLine
		if err := json.Unmarshal(raw, &e); err != nil {
			return Header{}, raftlog.Record{}, fmt.Errorf("%w: entry after index %d: %v", ErrFormat, prev, err)
		}
		if e.Index <= prev {
			return Header{}, raftlog.Record{}, fmt.Errorf("%w: entry index %d after %d", ErrFormat, e.Index, prev)
		}
		prev = e.Index
		rec.Entries = append(rec.Entries, raftlog.Entry{Index: e.Index, Data: e.Entry, AppendedAt: e.AppendedAt})
	}
	if dec.More() {
		return Header{}, raftlog.Record{}, fmt.Errorf("%w: data after the end line", ErrFormat)
	}
	return h, rec, nil
}
