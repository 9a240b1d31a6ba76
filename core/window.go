package core

import "time"

// outcomeWindow remembers recent task outcomes, bounded in count, so that
// health and domain failure rates can be computed over a sliding window and a
// poison task's failures can be forgiven after the fact.
//
// It keeps running tallies of the unforgiven outcomes it holds: the cp
// appends outcomes in time order, so a count since a time subtracts the few
// entries before it rather than walking the whole window (a domain holds
// hundreds, counted every tick). A window whose entries are out of order (a
// hand-made export) is counted entry by entry.
type outcomeWindow struct {
	max     int
	entries []outcomeEntry // oldest first

	ok, failed int  // unforgiven outcomes in entries
	unordered  bool // some entry is earlier than one before it
}

type outcomeEntry struct {
	at       time.Time
	task     TaskID
	ok       bool
	forgiven bool
}

// tally adds n (1 or -1) of e's outcome to the tallies, if it counts.
func (w *outcomeWindow) tally(e *outcomeEntry, n int) {
	switch {
	case e.forgiven:
	case e.ok:
		w.ok += n
	default:
		w.failed += n
	}
}

// recount sets the tallies and the order from the entries, after they were
// replaced (restore, a new bound).
func (w *outcomeWindow) recount() {
	w.ok, w.failed, w.unordered = 0, 0, false
	for i := range w.entries {
		w.tally(&w.entries[i], 1)
		if i > 0 && w.entries[i].at.Before(w.entries[i-1].at) {
			w.unordered = true
		}
	}
}

func (w *outcomeWindow) reset() {
	w.entries = w.entries[:0]
	w.ok, w.failed, w.unordered = 0, 0, false
}

func (w *outcomeWindow) add(now time.Time, task TaskID, ok bool) {
	if len(w.entries) >= w.max {
		w.tally(&w.entries[0], -1)
		w.entries = append(w.entries[:0], w.entries[1:]...)
		if len(w.entries) == 0 {
			w.unordered = false
		}
	}
	if n := len(w.entries); n > 0 && now.Before(w.entries[n-1].at) {
		w.unordered = true
	}
	w.entries = append(w.entries, outcomeEntry{at: now, task: task, ok: ok})
	w.tally(&w.entries[len(w.entries)-1], 1)
}

// forgive excludes every outcome of task.
func (w *outcomeWindow) forgive(task TaskID) {
	for i := range w.entries {
		if e := &w.entries[i]; e.task == task && !e.forgiven {
			w.tally(e, -1)
			e.forgiven = true
		}
	}
}

// trim drops outcomes before start.
func (w *outcomeWindow) trim(start time.Time) {
	i := 0
	for i < len(w.entries) && w.entries[i].at.Before(start) {
		w.tally(&w.entries[i], -1)
		i++
	}
	if i > 0 {
		w.entries = append(w.entries[:0], w.entries[i:]...)
		if w.unordered {
			w.recount() // perhaps ordered now
		}
	}
}

// counts returns the unforgiven successes and failures held.
func (w *outcomeWindow) counts() (ok, failed int) { return w.countsSince(time.Time{}) }

// countsSince returns the unforgiven successes and failures at or after
// start, without dropping older ones: reads must not change state (a
// leader serving the debug snapshot would drift from its followers'
// state_hash).
func (w *outcomeWindow) countsSince(start time.Time) (ok, failed int) {
	if w.unordered {
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
	// In time order, the entries before start are a prefix.
	ok, failed = w.ok, w.failed
	for i := range w.entries {
		e := &w.entries[i]
		if !e.at.Before(start) {
			break
		}
		switch {
		case e.forgiven:
		case e.ok:
			ok--
		default:
			failed--
		}
	}
	return ok, failed
}
