package core

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// naiveCounts is countsSince as a walk over every entry: the reference.
func naiveCounts(w *outcomeWindow, start time.Time) (ok, failed int) {
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

// TestOutcomeWindowTallies drives an outcome window through random adds
// (mostly in time order, sometimes not), forgiveness, trims, resets, new
// bounds and restores, and compares every count with a walk over the
// entries.
func TestOutcomeWindowTallies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := &outcomeWindow{max: rapid.IntRange(1, 20).Draw(t, "max")}
		now := testEpoch
		at := func(t *rapid.T, label string) time.Time {
			return now.Add(time.Duration(rapid.IntRange(-30, 30).Draw(t, label)) * time.Second)
		}
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2, 3:
				var when time.Time
				if rapid.IntRange(0, 5).Draw(t, "late") == 0 {
					when = at(t, "addAt") // out of order
				} else {
					now = now.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "advance")) * time.Second)
					when = now
				}
				w.add(when, TaskID(fmt.Sprintf("t%d", rapid.IntRange(0, 5).Draw(t, "task"))), rapid.Bool().Draw(t, "ok"))
			case 4:
				w.forgive(TaskID(fmt.Sprintf("t%d", rapid.IntRange(0, 5).Draw(t, "forgive"))))
			case 5:
				w.trim(at(t, "trim"))
			case 6:
				if rapid.IntRange(0, 3).Draw(t, "reset?") == 0 {
					w.reset()
				}
			case 7:
				w.setMax(rapid.IntRange(1, 20).Draw(t, "newMax"))
			case 8:
				var es []outcomeExport
				for _, e := range w.entries {
					es = append(es, outcomeExport{At: e.at, Task: e.task, OK: e.ok, Forgiven: e.forgiven})
				}
				r := &outcomeWindow{max: w.max}
				restoreOutcomes(r, es)
				w = r
			default:
				start := at(t, "start")
				gotOK, gotFailed := w.countsSince(start)
				if wantOK, wantFailed := naiveCounts(w, start); gotOK != wantOK || gotFailed != wantFailed {
					t.Fatalf("countsSince(%v) = %d, %d; want %d, %d", start.Sub(testEpoch), gotOK, gotFailed, wantOK, wantFailed)
				}
			}
			gotOK, gotFailed := w.counts()
			if wantOK, wantFailed := naiveCounts(w, time.Time{}); gotOK != wantOK || gotFailed != wantFailed {
				t.Fatalf("counts() = %d, %d; want %d, %d", gotOK, gotFailed, wantOK, wantFailed)
			}
		}
	})
}
