package timelinestore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func events(from, to uint64, every time.Duration) []core.Event {
	var out []core.Event
	for s := from; s <= to; s++ {
		out = append(out, core.Event{Seq: s, Time: epoch.Add(time.Duration(s) * every), Kind: core.EventTask,
			Type: core.EventTaskQueued, TaskID: core.TaskID("t-" + string(rune('a'+s%26))), Actor: core.ActorClient, Reason: "submitted"})
	}
	return out
}

func seqs(es []core.Event) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// page reads every event after since, limit at a time, checking each page
// continues the previous one.
func pageAll(t *testing.T, s *Store, since uint64, limit int) []core.Event {
	t.Helper()
	var all []core.Event
	for {
		p, err := s.Since(since, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			return all
		}
		if len(p) > limit {
			t.Fatalf("page of %d, limit %d", len(p), limit)
		}
		for i, e := range p {
			if e.Seq <= since || (i > 0 && e.Seq != p[i-1].Seq+1) {
				t.Fatalf("page after %d: %v", since, seqs(p))
			}
		}
		all = append(all, p...)
		since = p[len(p)-1].Seq
	}
}

func TestPagingAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Dir: dir, SegmentBytes: 4 << 10})
	want := events(1, 3000, time.Second)
	for i := 0; i < len(want); i += 97 {
		if err := s.Append(want[i:min(i+97, len(want))]); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if len(segs) < 10 {
		t.Fatalf("%d segments: the test does not cross segments", len(segs))
	}
	check := func(s *Store) {
		t.Helper()
		got := pageAll(t, s, 0, 250)
		if len(got) != len(want) || got[0].Seq != 1 || got[len(got)-1].Seq != 3000 {
			t.Fatalf("paged %d events", len(got))
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Fatal("events differ from the appended ones")
		}
		// Any start point, inside segments and at their edges.
		for _, since := range []uint64{0, 1, 255, 256, 257, 1234, 2999, 3000, 5000} {
			p, err := s.Since(since, 7)
			if err != nil {
				t.Fatal(err)
			}
			n := min(7, int(max(0, 3000-int64(since))))
			if len(p) != n || (n > 0 && p[0].Seq != since+1) {
				t.Fatalf("Since(%d, 7) = %v", since, seqs(p))
			}
		}
	}
	check(s)
	// Replayed events are not written twice.
	if err := s.Append(want[2500:]); err != nil {
		t.Fatal(err)
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(New(Options{Dir: dir, SegmentBytes: 4 << 10}))
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	if err := s.Append(events(1, 10, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "00000000000000000001"+suffix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":11,"time":"2026-01-0`)
	f.Close()
	s = New(Options{Dir: dir})
	if _, last, err := s.Bounds(); err != nil || last != 10 {
		t.Fatalf("after a torn write: last %d, %v", last, err)
	}
	if err := s.Append(events(11, 12, time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := seqs(pageAll(t, s, 8, 100)); len(got) != 4 || got[3] != 12 {
		t.Fatalf("after the repair: %v", got)
	}
}

func TestRetentionTrimsByCountAndAge(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		s := New(Options{Dir: t.TempDir(), SegmentBytes: 2 << 10, EventsMax: 500})
		if err := s.Append(events(1, 2000, time.Second)); err != nil {
			t.Fatal(err)
		}
		first, last, err := s.Bounds()
		if err != nil || last != 2000 || first > 1501 || first < 1200 {
			t.Fatalf("bounds %d..%d, want the last 500 events and at most a segment more", first, last)
		}
		// A since older than what is held starts at the oldest held.
		if p, _ := s.Since(3, 2); len(p) != 2 || p[0].Seq != first {
			t.Fatalf("Since(3) = %v, oldest held %d", seqs(p), first)
		}
	})
	t.Run("age", func(t *testing.T) {
		dir := t.TempDir()
		s := New(Options{Dir: dir, SegmentBytes: 2 << 10, Retention: time.Hour})
		// One event a minute for 3 hours: only the last hour (and at
		// most a segment more) stays.
		if err := s.Append(events(1, 180, time.Minute)); err != nil {
			t.Fatal(err)
		}
		first, last, _ := s.Bounds()
		if last != 180 || first > 121 || first < 100 {
			t.Fatalf("bounds %d..%d, want from about 120 on", first, last)
		}
		segs, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
		if len(segs) > 10 {
			t.Fatalf("%d segments left", len(segs))
		}
	})
}
