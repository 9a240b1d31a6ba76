package sim

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestEventQueueOrder checks the heap against a sorted list: interleaved
// pushes and pops come out in (at, seq) order, ties in push order.
func TestEventQueueOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var q eventQueue
		var model []event
		var seq uint64
		now := time.Duration(0)
		for range rapid.IntRange(1, 1000).Draw(t, "ops") {
			if len(model) > 0 && rapid.IntRange(0, 2).Draw(t, "pop") == 0 {
				if got := q.peek(); got.at != model[0].at || got.seq != model[0].seq {
					t.Fatalf("peek (%v, %d), want (%v, %d)", got.at, got.seq, model[0].at, model[0].seq)
				}
				got := q.pop()
				want := model[0]
				model = model[1:]
				if got.at != want.at || got.seq != want.seq || got.node != want.node {
					t.Fatalf("pop (%v, %d, %d), want (%v, %d, %d)", got.at, got.seq, got.node, want.at, want.seq, want.node)
				}
				now = got.at
				continue
			}
			seq++
			// Mostly soon (same tick, next ticks), some beyond the wheel,
			// a few before the latest pop (the queue takes them too).
			var after time.Duration
			switch rapid.IntRange(0, 9).Draw(t, "range") {
			case 0, 1, 2:
				after = time.Duration(rapid.IntRange(0, 5).Draw(t, "ns"))
			case 3, 4, 5:
				after = time.Duration(rapid.Int64Range(0, int64(20*time.Millisecond)).Draw(t, "ms"))
			case 6, 7:
				after = time.Duration(rapid.Int64Range(0, int64(70*time.Second)).Draw(t, "s"))
			case 8:
				if rapid.Bool().Draw(t, "whole") {
					// The start of a tick, so that wheel and far keys
					// meet in one tick.
					tick := uint64(rapid.IntRange(wheelSize, wheelSize+3).Draw(t, "tick"))
					after = time.Duration(tick<<tickShift) - now
				} else {
					after = time.Duration(rapid.Int64Range(0, int64(500*time.Second)).Draw(t, "far"))
				}
			default:
				after = -time.Duration(rapid.Int64Range(0, int64(now)).Draw(t, "before"))
			}
			e := event{at: now + after, seq: seq, node: int(seq)}
			q.push(e)
			model = append(model, e)
			slices.SortStableFunc(model, func(a, b event) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq)) })
		}
		if q.len() != len(model) {
			t.Fatalf("len %d, want %d", q.len(), len(model))
		}
		var got, want []uint64
		for _, k := range q.queued() {
			got = append(got, k.seqSlot>>slotBits)
		}
		for _, e := range model {
			want = append(want, e.seq)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("queued %v, want %v", got, want)
		}
		for len(model) > 0 {
			if got := q.pop(); got.seq != model[0].seq {
				t.Fatalf("draining: pop %d, want %d", got.seq, model[0].seq)
			}
			model = model[1:]
		}
	})
}

// TestEventQueueFarAndWheelShareATick: a key pushed beyond the wheel and
// one pushed into the wheel later for the same tick come out in order.
func TestEventQueueFarAndWheelShareATick(t *testing.T) {
	var q eventQueue
	tick := time.Duration(wheelSize+1) << tickShift
	q.push(event{at: tick + 5, seq: 1})              // beyond the wheel: far
	q.push(event{at: 20 * time.Millisecond, seq: 2}) // the wheel
	if e := q.pop(); e.seq != 2 {
		t.Fatalf("first pop %d, want 2", e.seq)
	}
	q.push(event{at: tick + 7, seq: 3}) // now within the wheel, same tick
	q.push(event{at: tick + 1, seq: 4})
	for _, want := range []uint64{4, 1, 3} {
		if e := q.pop(); e.seq != want {
			t.Fatalf("pop %d (at %v), want %d", e.seq, e.at, want)
		}
	}
}
