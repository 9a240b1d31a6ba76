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
		for range rapid.IntRange(1, 400).Draw(t, "ops") {
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
			e := event{at: now + time.Duration(rapid.IntRange(0, 5).Draw(t, "after")), seq: seq, node: int(seq)}
			q.push(e)
			model = append(model, e)
			slices.SortStableFunc(model, func(a, b event) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq)) })
		}
		if q.len() != len(model) {
			t.Fatalf("len %d, want %d", q.len(), len(model))
		}
	})
}
