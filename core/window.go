package core

import "time"

// outcomeWindow remembers recent task outcomes, bounded in count, so that
// health and domain failure rates can be computed over a sliding window and a
// poison task's failures can be forgiven after the fact.
type outcomeWindow struct {
	max     int
	entries []outcomeEntry // oldest first
}

type outcomeEntry struct {
	at       time.Time
	task     TaskID
	ok       bool
	forgiven bool
}

func (w *outcomeWindow) reset() { w.entries = w.entries[:0] }

func (w *outcomeWindow) add(now time.Time, task TaskID, ok bool) {
	if len(w.entries) >= w.max {
		w.entries = append(w.entries[:0], w.entries[1:]...)
	}
	w.entries = append(w.entries, outcomeEntry{at: now, task: task, ok: ok})
}

// forgive excludes every outcome of task.
func (w *outcomeWindow) forgive(task TaskID) {
	for i := range w.entries {
		if w.entries[i].task == task {
			w.entries[i].forgiven = true
		}
	}
}

// trim drops outcomes before start.
func (w *outcomeWindow) trim(start time.Time) {
	i := 0
	for i < len(w.entries) && w.entries[i].at.Before(start) {
		i++
	}
	if i > 0 {
		w.entries = append(w.entries[:0], w.entries[i:]...)
	}
}

// counts returns the unforgiven successes and failures held.
func (w *outcomeWindow) counts() (ok, failed int) { return w.countsSince(time.Time{}) }

// countsSince returns the unforgiven successes and failures at or after
// start, without dropping older ones: reads must not change state (a
// leader serving the debug snapshot would drift from its followers'
// state_hash).
func (w *outcomeWindow) countsSince(start time.Time) (ok, failed int) {
	for _, e := range w.entries {
		switch {
		case e.at.Before(start), e.forgiven:
		case e.ok:
			ok++
		default:
			failed++
		}
	}
	return ok, failed
}
