package cp

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// pageTimeline follows /timeline from since, limit at a time, as a poller
// does, checking that every page continues the previous one without a gap.
func (tc *testCP) pageTimeline(since uint64, limit int) ([]core.Event, TimelinePage) {
	tc.t.Helper()
	var all []core.Event
	for {
		var p TimelinePage
		tc.mustStatus(http.StatusOK, "GET", fmt.Sprintf("/timeline?since=%d&limit=%d", since, limit), nil).decode(tc.t, &p)
		if len(p.Events) == 0 {
			return all, p
		}
		for i, e := range p.Events {
			if e.Seq <= since || (i > 0 && e.Seq != p.Events[i-1].Seq+1) || (len(all) > 0 && i == 0 && e.Seq != all[len(all)-1].Seq+1) {
				tc.t.Fatalf("page after %d: seq %d at %d", since, e.Seq, i)
			}
		}
		all = append(all, p.Events...)
		since = p.NextSince
	}
}

func submitN(tc *testCP, n int) {
	for range n {
		tc.submit(`{"kind":"sleep","duration_ms":10}`)
	}
}

// TestTimelinePagesBeyondTheRingAndAcrossRestarts: with an in-memory ring
// of 20 events, /timeline still pages over every event from the first,
// before and after a restart (with other flags: the config.changed event is
// there too), and a poller that fell behind the ring misses nothing.
func TestTimelinePagesBeyondTheRingAndAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	opts := func(capacity int) func(*Options) {
		return func(o *Options) {
			o.DataDir, o.Clock, o.timelineSegmentBytes = dir, newMock(), 4<<10
			o.Core.TimelineEventsMax, o.Core.QueueCapacity = 20, capacity
		}
	}
	tc := startCP(t, false, opts(1000))
	submitN(tc, 150)
	all, last := tc.pageTimeline(0, 7)
	if len(all) != 151 || all[0].Seq != 1 || all[0].Type != core.EventModeChanged || last.LastSeq != 151 || last.Dropped != 0 {
		t.Fatalf("paged %d events (first %+v), last_seq %d, dropped %d", len(all), all[0], last.LastSeq, last.Dropped)
	}
	// The ring alone holds the last 20.
	if v := tc.snapshot(); v.QueueDepth != 150 {
		t.Fatalf("depth %d", v.QueueDepth)
	}
	var ring []core.Event
	tc.s.read(func(c *core.ControlPlane) { ring = c.Timeline().Since(0, 0) })
	if len(ring) != 20 {
		t.Fatalf("ring holds %d", len(ring))
	}
	if got, want := jsonOf(t, all[len(all)-20:]), jsonOf(t, ring); got != want {
		t.Fatal("the store's newest events differ from the ring's")
	}
	tc.stop()

	tc = startCP(t, false, opts(2000))
	submitN(tc, 30)
	again, _ := tc.pageTimeline(0, 1000)
	if len(again) != 151+1+30 || jsonOf(t, again[:151]) != jsonOf(t, all) {
		t.Fatalf("after the restart: %d events, or the first 151 differ", len(again))
	}
	if e := again[151]; e.Type != core.EventConfigChanged || e.Reason != "QueueCapacity 1000→2000" {
		t.Fatalf("event 152: %+v", e)
	}
	// A poller behind the ring picks up where it was.
	from50, _ := tc.pageTimeline(50, 13)
	if len(from50) != len(again)-50 || from50[0].Seq != 51 {
		t.Fatalf("from 50: %d events, first %d", len(from50), from50[0].Seq)
	}
}

// TestTimelineStoreIsBounded: beyond TimelineEventsMax the oldest segments
// go; a since older than the oldest held starts there, and dropped says how
// many went.
func TestTimelineStoreIsBounded(t *testing.T) {
	dir := t.TempDir()
	tc := startCP(t, false, func(o *Options) {
		o.DataDir, o.Clock, o.timelineSegmentBytes, o.TimelineEventsMax = dir, newMock(), 2<<10, 50
		o.Core.TimelineEventsMax = 10
	})
	submitN(tc, 300)
	all, last := tc.pageTimeline(0, 1000)
	first := all[0].Seq
	if last.LastSeq != 301 || all[len(all)-1].Seq != 301 || len(all) < 50 || len(all) > 80 || last.Dropped != first-1 {
		t.Fatalf("held %d..%d (%d events), dropped %d", first, all[len(all)-1].Seq, len(all), last.Dropped)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "timeline", "*.jsonl"))
	if len(segs) > 10 {
		t.Fatalf("%d segments kept", len(segs))
	}
}

// TestTimelineByAge: events older than TimelineRetention go, whatever the
// count.
func TestTimelineByAge(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.DataDir, o.Clock, o.timelineSegmentBytes, o.TimelineRetention = t.TempDir(), mock, 2<<10, time.Hour
		o.Core.TimelineEventsMax = 10
	})
	submitN(tc, 100)
	mock.Add(2 * time.Hour)
	submitN(tc, 100)
	all, _ := tc.pageTimeline(0, 1000)
	if n := len(all); n < 100 || n > 130 || all[n-1].Seq != 201 {
		t.Fatalf("%d events held, newest %d: want the last 100 and at most a segment more", n, all[n-1].Seq)
	}
}

// TestTimelineInMemoryIsTheRing: without a data dir, /timeline serves the
// ring; a since before it starts at its oldest event.
func TestTimelineInMemoryIsTheRing(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.InMemory, o.Core.TimelineEventsMax = true, 10 })
	submitN(tc, 30)
	all, last := tc.pageTimeline(0, 4)
	if len(all) != 10 || all[0].Seq != 22 || last.Dropped != 21 {
		t.Fatalf("%d events from %d, dropped %d", len(all), all[0].Seq, last.Dropped)
	}
	for _, q := range []string{"since=-1", "since=x", "limit=0", "limit=10001", "bogus=1"} {
		if r := tc.do("GET", "/timeline?"+q, nil); r.Status != http.StatusBadRequest {
			t.Errorf("/timeline?%s: %d, want 400", q, r.Status)
		}
	}
}
