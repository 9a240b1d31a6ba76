// Package timelinestore keeps the cp's timeline events on disk, beyond the
// core's in-memory ring, so that /timeline pages over the last day (or the
// last million events) across restarts.
//
// The store is not replicated state: every event is produced
// deterministically by applying the log, so the store is a derived, bounded
// cache of it, fed in log order by the state machine. Events are keyed by
// their sequence number: one already held is never written twice (entries
// replayed at start produce events the store has). A lost tail (the store
// does not fsync each write; the log does) is refilled from the core's
// ring after a restart, as far as the ring reaches.
//
// On disk, a directory of segments named after their first sequence number
// (00000000000000000001.jsonl), one JSON event per line. A segment is
// closed when it reaches SegmentBytes; the oldest segments are deleted
// once the newer ones hold EventsMax events, or once all of their events
// are older than Retention (measured against the newest event's time). A
// torn last line (a crash in a write) is cut off when the store opens.
// Reads find their segment by name and their place in it through a sparse
// index (every indexEvery events: sequence → offset), built when a segment
// is first read and kept up to date for the segment being written.
package timelinestore

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// Defaults for Options.
const (
	DefaultRetention    = 24 * time.Hour
	DefaultEventsMax    = 1_000_000
	DefaultSegmentBytes = 32 << 20
)

const (
	indexEvery = 256
	suffix     = ".jsonl"
	lineMax    = 1 << 20
)

// Options configure a Store.
type Options struct {
	// Dir holds the segments; created on first use.
	Dir string
	// Retention and EventsMax bound what is kept: the oldest segment goes
	// once every event in it is older than Retention, or once the newer
	// segments hold the last EventsMax events. So at least the events of
	// the last Retention, or the last EventsMax events, whichever are fewer,
	// are kept (plus up to a segment more).
	Retention time.Duration
	EventsMax int
	// SegmentBytes closes a segment once it is this large.
	SegmentBytes int64
}

type indexEntry struct {
	seq uint64
	off int64
}

type segment struct {
	first     uint64
	firstTime time.Time
	path      string
	size      int64 // bytes written (and flushed)
	count     int
	index     []indexEntry // nil until built (always built for the active one)
	indexed   bool
}

// Store is the on-disk timeline. Its methods are safe for concurrent use.
type Store struct {
	opts Options

	mu       sync.Mutex
	opened   bool
	err      error // the store failed; it takes no more events
	segs     []*segment
	active   *os.File
	w        *bufio.Writer
	lastSeq  uint64
	lastTime time.Time
	line     []byte // Append's buffer for one event's line
}

// New returns a Store over opts.Dir. It touches no file until the first
// call: the cp creates it before it holds the data dir's lock, and uses it
// only after.
func New(opts Options) *Store {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.EventsMax <= 0 {
		opts.EventsMax = DefaultEventsMax
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	return &Store{opts: opts}
}

func (s *Store) open() error {
	if s.opened {
		return s.err
	}
	s.opened = true
	s.err = s.load()
	return s.err
}

func (s *Store) fail(err error) error {
	if s.err == nil {
		s.err = fmt.Errorf("timelinestore %s: %w", s.opts.Dir, err)
	}
	return s.err
}

func (s *Store) load() error {
	if err := os.MkdirAll(s.opts.Dir, 0o700); err != nil {
		return s.fail(err)
	}
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return s.fail(err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || first == 0 {
			continue
		}
		s.segs = append(s.segs, &segment{first: first, path: filepath.Join(s.opts.Dir, e.Name())})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpU(a.first, b.first) })
	// The last segment is scanned whole (torn tail cut off); an empty one
	// is removed and the one before it scanned instead.
	for len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		if err := s.scan(last, true); err != nil {
			return s.fail(err)
		}
		if last.count > 0 {
			break
		}
		if err := os.Remove(last.path); err != nil {
			return s.fail(err)
		}
		s.segs = s.segs[:len(s.segs)-1]
	}
	for _, g := range s.segs[:max(0, len(s.segs)-1)] {
		if err := readFirstTime(g); err != nil {
			return s.fail(err)
		}
	}
	if len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return s.fail(err)
		}
		s.active, s.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	return nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scan reads g whole, building its index and count; repair cuts a torn or
// undecodable tail off (the segment being written when a crash came).
func (s *Store) scan(g *segment, repair bool) error {
	f, err := os.Open(g.path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	g.index, g.count = nil, 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e core.Event
			if jerr := json.Unmarshal(line, &e); jerr == nil && e.Seq >= g.first {
				if g.count == 0 {
					g.firstTime = e.Time
				}
				if g.count%indexEvery == 0 {
					g.index = append(g.index, indexEntry{e.Seq, off})
				}
				g.count++
				off += int64(len(line))
				if repair {
					s.lastSeq, s.lastTime = e.Seq, e.Time
				}
				continue
			}
		}
		if err != nil && err != io.EOF {
			return err
		}
		if err == nil || len(line) > 0 {
			// A line that is not a whole event: the rest is a torn write.
			if !repair {
				return fmt.Errorf("segment %s: bad line at offset %d", g.path, off)
			}
			if terr := os.Truncate(g.path, off); terr != nil {
				return terr
			}
		}
		break
	}
	g.size, g.indexed = off, true
	return nil
}

func readFirstTime(g *segment) error {
	f, err := os.Open(g.path)
	if err != nil {
		return err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 4096).ReadBytes('\n')
	if err != nil && err != io.EOF {
		return err
	}
	var e core.Event
	if err := json.Unmarshal(line, &e); err != nil {
		return fmt.Errorf("segment %s: first line: %v", g.path, err)
	}
	g.firstTime = e.Time
	return nil
}

// Append writes the events with a sequence number above the newest held,
// in order, then trims the store to its bounds. Events at or below it are
// skipped: they are held already.
func (s *Store) Append(events []core.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(); err != nil {
		return err
	}
	wrote := false
	for _, e := range events {
		if e.Seq <= s.lastSeq {
			continue
		}
		if len(s.segs) == 0 || s.segs[len(s.segs)-1].size >= s.opts.SegmentBytes {
			if err := s.rotate(e); err != nil {
				return s.fail(err)
			}
		}
		g := s.segs[len(s.segs)-1]
		line, err := appendEvent(s.line[:0], e)
		if err != nil {
			return s.fail(err)
		}
		s.line = line
		if _, err := s.w.Write(line); err != nil {
			return s.fail(err)
		}
		if g.count%indexEvery == 0 {
			g.index = append(g.index, indexEntry{e.Seq, g.size})
		}
		if g.count == 0 {
			g.firstTime = e.Time
		}
		g.count++
		g.size += int64(len(line))
		s.lastSeq, s.lastTime = e.Seq, e.Time
		wrote = true
	}
	if !wrote {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return s.fail(err)
	}
	return s.trim()
}

// rotate closes the active segment (synced) and starts one at e.
func (s *Store) rotate(e core.Event) error {
	if s.active != nil {
		if err := s.w.Flush(); err != nil {
			return err
		}
		if err := s.active.Sync(); err != nil {
			return err
		}
		if err := s.active.Close(); err != nil {
			return err
		}
		s.active = nil
	}
	path := filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", e.Seq, suffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	s.active, s.w = f, bufio.NewWriterSize(f, 64<<10)
	s.segs = append(s.segs, &segment{first: e.Seq, firstTime: e.Time, path: path, indexed: true})
	return nil
}

// trim deletes the oldest segments while the newer ones hold the last
// EventsMax events, or while all of the oldest's events are older than
// Retention before the newest event.
func (s *Store) trim() error {
	cutoff := s.lastTime.Add(-s.opts.Retention)
	for len(s.segs) > 1 {
		next := s.segs[1]
		byCount := s.lastSeq-next.first+1 >= uint64(s.opts.EventsMax)
		byAge := next.firstTime.Before(cutoff)
		if !byCount && !byAge {
			break
		}
		if err := os.Remove(s.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return s.fail(err)
		}
		s.segs = s.segs[1:]
	}
	return nil
}

// Bounds are the sequence numbers of the oldest and newest events held
// (0, 0 when empty).
func (s *Store) Bounds() (first, last uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(); err != nil {
		return 0, 0, err
	}
	if len(s.segs) == 0 {
		return 0, 0, nil
	}
	return s.segs[0].first, s.lastSeq, nil
}

// LastSeq is the newest sequence number held (0 when empty, or failed).
func (s *Store) LastSeq() uint64 {
	_, last, _ := s.Bounds()
	return last
}

type readView struct {
	g       *segment
	size    int64
	index   []indexEntry
	indexed bool
}

// Since returns up to limit events with Seq > seq, oldest first (limit > 0).
// When seq is older than the oldest event held, it starts there.
func (s *Store) Since(seq uint64, limit int) ([]core.Event, error) {
	s.mu.Lock()
	if err := s.open(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	// The segment holding seq+1: the last one starting at or before it.
	i, found := slices.BinarySearchFunc(s.segs, seq+1, func(g *segment, t uint64) int { return cmpU(g.first, t) })
	if !found && i > 0 {
		i--
	}
	views := make([]readView, 0, len(s.segs)-i)
	for _, g := range s.segs[i:] {
		views = append(views, readView{g: g, size: g.size, index: g.index, indexed: g.indexed})
	}
	s.mu.Unlock()

	var out []core.Event
	for _, v := range views {
		if !v.indexed {
			if err := s.buildIndex(&v); err != nil {
				return out, err
			}
		}
		var err error
		out, err = readSegment(v, seq, limit, out)
		if err != nil || len(out) >= limit {
			return out, err
		}
	}
	return out, nil
}

// buildIndex scans a closed segment once and keeps its index.
func (s *Store) buildIndex(v *readView) error {
	g := &segment{first: v.g.first, path: v.g.path}
	if err := s.scan(g, false); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			v.size, v.index = 0, nil // trimmed meanwhile
			return nil
		}
		return err
	}
	s.mu.Lock()
	if !v.g.indexed {
		v.g.index, v.g.size, v.g.count, v.g.indexed = g.index, g.size, g.count, true
	}
	v.index, v.size = v.g.index, v.g.size
	s.mu.Unlock()
	return nil
}

func readSegment(v readView, seq uint64, limit int, out []core.Event) ([]core.Event, error) {
	if v.size == 0 {
		return out, nil
	}
	var off int64
	if k, found := slices.BinarySearchFunc(v.index, seq+1, func(e indexEntry, t uint64) int { return cmpU(e.seq, t) }); found {
		off = v.index[k].off
	} else if k > 0 {
		off = v.index[k-1].off
	}
	f, err := os.Open(v.g.path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil // trimmed meanwhile
	}
	if err != nil {
		return out, err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.NewSectionReader(f, off, v.size-off))
	sc.Buffer(make([]byte, 0, 64<<10), lineMax)
	for sc.Scan() {
		var e core.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("timelinestore: %s: %v", v.g.path, err)
		}
		if e.Seq <= seq {
			continue
		}
		out = append(out, e)
		if len(out) >= limit {
			break
		}
	}
	return out, sc.Err()
}

// Close flushes and syncs the segment being written.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	err := s.w.Flush()
	if serr := s.active.Sync(); err == nil {
		err = serr
	}
	if cerr := s.active.Close(); err == nil {
		err = cerr
	}
	s.active = nil
	s.opened, s.segs, s.lastSeq = false, nil, 0 // reopened from disk on next use
	return err
}
