package core

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// queueModelItem is the model's view of one queued task.
type queueModelItem struct {
	it  *queueItem
	seq int // enqueue order in the model
}

// queueModel is a deliberately naive queue: a flat slice scanned in full.
type queueModel struct {
	capacity int
	aging    time.Duration
	items    []queueModelItem // enqueue order
	seq      int
	cursor   string // domain key placed last
}

func (m *queueModel) effective(x queueModelItem, now time.Time) int {
	levels := int(now.Sub(x.it.enqueuedAt) / m.aging)
	return max(int(x.it.prio)-levels, 0)
}

// keys returns the non-empty domain keys in round-robin order: those after
// the cursor first (sorted), then the rest.
func (m *queueModel) keys() []string {
	var after, before []string
	seen := map[string]bool{}
	for _, x := range m.items {
		seen[x.it.domain] = true
	}
	for k := range seen {
		if k > m.cursor {
			after = append(after, k)
		} else {
			before = append(before, k)
		}
	}
	slices.Sort(after)
	slices.Sort(before)
	return append(after, before...)
}

// next is the specification of Queue.Next: the most urgent effective
// priority wins; among domains tied at it, the first in round-robin order
// after the cursor; within that domain, the task enqueued first.
func (m *queueModel) next(now time.Time, skip map[string]bool, skipItem map[*queueItem]bool) *queueItem {
	bestEff := numPriorities + 1
	for _, x := range m.items {
		if !skip[x.it.domain] && !skipItem[x.it] {
			bestEff = min(bestEff, m.effective(x, now))
		}
	}
	for _, k := range m.keys() {
		if skip[k] {
			continue
		}
		for _, x := range m.items { // enqueue order: first hit is the oldest
			if x.it.domain == k && !skipItem[x.it] && m.effective(x, now) == bestEff {
				return x.it
			}
		}
	}
	return nil
}

func (m *queueModel) remove(it *queueItem) bool {
	i := slices.IndexFunc(m.items, func(x queueModelItem) bool { return x.it == it })
	if i < 0 {
		return false
	}
	m.items = slices.Delete(m.items, i, i+1)
	return true
}

var queueDomainKeys = []string{"", "a", "b", "c"}

func TestQueueStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		capacity := rapid.IntRange(1, 8).Draw(t, "capacity")
		aging := time.Duration(rapid.IntRange(1, 4).Draw(t, "aging_s")) * time.Second
		q := NewQueue(capacity, aging)
		m := &queueModel{capacity: capacity, aging: aging}
		now := testEpoch
		var removed []*queueItem // items taken out, to check Remove is not fooled
		ids := 0

		pop := func(t *rapid.T, skip map[string]bool, skipItem map[*queueItem]bool) {
			want := m.next(now, skip, skipItem)
			var skipItemFn func(*queueItem) bool
			if skipItem != nil {
				skipItemFn = func(it *queueItem) bool { return skipItem[it] }
			}
			got := q.Next(now, func(k string) bool { return skip[k] }, skipItemFn)
			if got != want {
				t.Fatalf("Next(skip=%v, %d items skipped) at +%v = %v, model says %v", skip, len(skipItem), now.Sub(testEpoch), itemName(got), itemName(want))
			}
			if got == nil {
				return
			}
			if !q.Remove(got) || !m.remove(got) {
				t.Fatalf("Remove of Next's item %s failed", got.id)
			}
			q.Advance(got.domain)
			m.cursor = got.domain
			removed = append(removed, got)
		}

		t.Repeat(map[string]func(*rapid.T){
			"push": func(t *rapid.T) {
				ids++
				it := &queueItem{
					id:     TaskID(fmt.Sprintf("t%d", ids)),
					prio:   Priority(rapid.IntRange(0, numPriorities-1).Draw(t, "prio")),
					domain: rapid.SampledFrom(queueDomainKeys).Draw(t, "domain"),
				}
				err := q.Push(it, now)
				if len(m.items) >= m.capacity {
					if !errors.Is(err, ErrQueueFull) {
						t.Fatalf("push at capacity %d: err %v, want ErrQueueFull", m.capacity, err)
					}
					if it.list != nil {
						t.Fatalf("refused push left the item queued")
					}
					return
				}
				if err != nil {
					t.Fatalf("push below capacity: %v", err)
				}
				m.seq++
				m.items = append(m.items, queueModelItem{it: it, seq: m.seq})
			},
			"remove_middle": func(t *rapid.T) {
				if len(m.items) == 0 {
					t.Skip("empty")
				}
				x := rapid.SampledFrom(m.items).Draw(t, "victim")
				if !q.Remove(x.it) {
					t.Fatalf("Remove(%s) = false for a queued item", x.it.id)
				}
				m.remove(x.it)
				removed = append(removed, x.it)
			},
			"remove_gone": func(t *rapid.T) {
				if len(removed) == 0 {
					t.Skip("nothing removed yet")
				}
				it := rapid.SampledFrom(removed).Draw(t, "gone")
				if it.list != nil {
					t.Skip("requeued")
				}
				if q.Remove(it) {
					t.Fatalf("Remove(%s) = true for an item not queued", it.id)
				}
			},
			"requeue": func(t *rapid.T) {
				// A lost attempt goes back in: the same handle is pushed again.
				if len(removed) == 0 || len(m.items) >= m.capacity {
					t.Skip("nothing to requeue or full")
				}
				it := rapid.SampledFrom(removed).Draw(t, "requeued")
				if it.list != nil {
					t.Skip("already queued")
				}
				if err := q.Push(it, now); err != nil {
					t.Fatalf("requeue: %v", err)
				}
				m.seq++
				m.items = append(m.items, queueModelItem{it: it, seq: m.seq})
				removed = slices.DeleteFunc(removed, func(x *queueItem) bool { return x == it })
			},
			"advance_time": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.IntRange(0, 3000*int(aging/time.Millisecond)).Draw(t, "ms")) * time.Millisecond / 1000)
			},
			"advance_time_long": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.IntRange(1, 3).Draw(t, "agings")) * aging)
			},
			"pop": func(t *rapid.T) { pop(t, nil, nil) },
			"pop_skip_items": func(t *rapid.T) {
				// The scheduler skips tasks no agent may run for the rest of a pass.
				skipItem := map[*queueItem]bool{}
				for _, x := range m.items {
					if rapid.Bool().Draw(t, "skip_"+string(x.it.id)) {
						skipItem[x.it] = true
					}
				}
				pop(t, nil, skipItem)
			},
			"pop_skip": func(t *rapid.T) {
				skip := map[string]bool{}
				for _, k := range queueDomainKeys {
					if rapid.Bool().Draw(t, "skip_"+k) {
						skip[k] = true
					}
				}
				pop(t, skip, nil)
			},
			"peek": func(t *rapid.T) {
				// Next without Remove changes nothing.
				want := m.next(now, nil, nil)
				if got := q.Next(now, nil, nil); got != want {
					t.Fatalf("Next = %v, model says %v", itemName(got), itemName(want))
				}
			},
			"": func(t *rapid.T) {
				if q.Len() != len(m.items) {
					t.Fatalf("Len %d, model %d", q.Len(), len(m.items))
				}
				if q.Len() > q.Cap() {
					t.Fatalf("Len %d > Cap %d", q.Len(), q.Cap())
				}
				oldest, ok := q.Oldest()
				if ok != (len(m.items) > 0) {
					t.Fatalf("Oldest ok=%v with %d items", ok, len(m.items))
				}
				if ok {
					want := m.items[0].it.enqueuedAt // enqueue order is time order
					for _, x := range m.items {
						if x.it.enqueuedAt.Before(want) {
							want = x.it.enqueuedAt
						}
					}
					if !oldest.Equal(want) {
						t.Fatalf("Oldest %v, model %v", oldest, want)
					}
				}
				wantKeys := map[string]int{}
				for _, x := range m.items {
					wantKeys[x.it.domain]++
				}
				keys := q.DomainKeys()
				if !slices.IsSorted(keys) || len(keys) != len(wantKeys) {
					t.Fatalf("DomainKeys %q, model %v", keys, wantKeys)
				}
				for _, k := range queueDomainKeys {
					if q.DomainLen(k) != wantKeys[k] {
						t.Fatalf("DomainLen(%q) %d, model %d", k, q.DomainLen(k), wantKeys[k])
					}
				}
				// Each: domain key, then priority, then FIFO.
				var got []*queueItem
				q.Each(func(it *queueItem) { got = append(got, it) })
				want := make([]queueModelItem, len(m.items))
				copy(want, m.items)
				slices.SortStableFunc(want, func(a, b queueModelItem) int {
					switch {
					case a.it.domain != b.it.domain:
						if a.it.domain < b.it.domain {
							return -1
						}
						return 1
					case a.it.prio != b.it.prio:
						return int(a.it.prio) - int(b.it.prio)
					}
					return a.seq - b.seq
				})
				if len(got) != len(want) {
					t.Fatalf("Each visited %d, model %d", len(got), len(want))
				}
				for i := range got {
					if got[i] != want[i].it {
						t.Fatalf("Each[%d] = %s, model %s", i, got[i].id, want[i].it.id)
					}
				}
			},
		})
	})
}

func itemName(it *queueItem) string {
	if it == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s(%s,%q,seq %d)", it.id, it.prio, it.domain, it.seq)
}

// pushItem pushes one item into q at now.
func pushItem(t *testing.T, q *Queue, id string, p Priority, domain string, now time.Time) *queueItem {
	t.Helper()
	it := &queueItem{id: TaskID(id), prio: p, domain: domain}
	if err := q.Push(it, now); err != nil {
		t.Fatalf("push %s: %v", id, err)
	}
	return it
}

func popAll(q *Queue, now time.Time) []string {
	var out []string
	for {
		it := q.Next(now, nil, nil)
		if it == nil {
			return out
		}
		q.Remove(it)
		q.Advance(it.domain)
		out = append(out, string(it.id))
	}
}

func TestQueueOrder(t *testing.T) {
	const aging = 10 * time.Second
	type push struct {
		id     string
		p      Priority
		domain string
		at     time.Duration // after the epoch
	}
	tests := []struct {
		name   string
		pushes []push
		popAt  time.Duration
		want   []string
	}{
		{
			name:   "priority first, FIFO within a priority",
			pushes: []push{{"l1", PriorityLow, "", 0}, {"n1", PriorityNormal, "", 0}, {"h1", PriorityHigh, "", 0}, {"n2", PriorityNormal, "", 0}, {"h2", PriorityHigh, "", 0}},
			want:   []string{"h1", "h2", "n1", "n2", "l1"},
		},
		{
			name:   "aging one level per interval: normal waiting 1 interval ties fresh high and is older",
			pushes: []push{{"n1", PriorityNormal, "", 0}, {"h1", PriorityHigh, "", aging}},
			popAt:  aging,
			want:   []string{"n1", "h1"},
		},
		{
			name:   "aging just short of an interval does not promote",
			pushes: []push{{"n1", PriorityNormal, "", 0}, {"h1", PriorityHigh, "", aging - 1}},
			popAt:  aging - 1,
			want:   []string{"h1", "n1"},
		},
		{
			name:   "low waiting two intervals is treated as high",
			pushes: []push{{"l1", PriorityLow, "", 0}, {"n1", PriorityNormal, "", 2 * aging}, {"h1", PriorityHigh, "", 2 * aging}},
			popAt:  2 * aging,
			want:   []string{"l1", "h1", "n1"},
		},
		{
			name: "round robin across domains at equal urgency",
			pushes: []push{{"a1", PriorityHigh, "a", 0}, {"a2", PriorityHigh, "a", 0}, {"a3", PriorityHigh, "a", 0},
				{"b1", PriorityHigh, "b", 0}, {"b2", PriorityHigh, "b", 0}, {"u1", PriorityHigh, "", 0}},
			want: []string{"a1", "b1", "u1", "a2", "b2", "a3"},
		},
		{
			name:   "fairness does not beat urgency",
			pushes: []push{{"a1", PriorityHigh, "a", 0}, {"a2", PriorityHigh, "a", 0}, {"b1", PriorityNormal, "b", 0}},
			want:   []string{"a1", "a2", "b1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(100, aging)
			for _, p := range tt.pushes {
				pushItem(t, q, p.id, p.p, p.domain, testEpoch.Add(p.at))
			}
			if got := popAll(q, testEpoch.Add(tt.popAt)); !slices.Equal(got, tt.want) {
				t.Fatalf("order %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueueFullRefusesAndChangesNothing(t *testing.T) {
	q := NewQueue(2, time.Second)
	pushItem(t, q, "t1", PriorityLow, "a", testEpoch)
	pushItem(t, q, "t2", PriorityLow, "b", testEpoch)
	it := &queueItem{id: "t3", prio: PriorityHigh, domain: "c"}
	if err := q.Push(it, testEpoch); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err %v, want ErrQueueFull", err)
	}
	if q.Len() != 2 || q.DomainLen("c") != 0 || it.list != nil || slices.Contains(q.DomainKeys(), "c") {
		t.Fatalf("refused push left a trace: len %d keys %v", q.Len(), q.DomainKeys())
	}
}

func TestQueueRemoveFromMiddleAndOldest(t *testing.T) {
	q := NewQueue(10, time.Minute)
	a := pushItem(t, q, "t1", PriorityNormal, "a", testEpoch)
	b := pushItem(t, q, "t2", PriorityNormal, "a", testEpoch.Add(time.Second))
	pushItem(t, q, "t3", PriorityNormal, "a", testEpoch.Add(2*time.Second))
	if !q.Remove(b) || q.Remove(b) {
		t.Fatal("Remove from the middle: want true once, then false")
	}
	if o, _ := q.Oldest(); !o.Equal(testEpoch) {
		t.Fatalf("oldest %v", o)
	}
	q.Remove(a)
	if o, _ := q.Oldest(); !o.Equal(testEpoch.Add(2 * time.Second)) {
		t.Fatalf("oldest after removing the head %v", o)
	}
	if got := popAll(q, testEpoch.Add(3*time.Second)); !slices.Equal(got, []string{"t3"}) {
		t.Fatalf("left %v", got)
	}
	if _, ok := q.Oldest(); ok {
		t.Fatal("Oldest of an empty queue")
	}
}

// TestQueueLowPriorityStartsUnderHighFlood: with a high-priority flood that
// never drains, a low task waits at most two aging intervals (plus the FIFO
// of equally urgent work ahead of it).
func TestQueueLowPriorityStartsUnderHighFlood(t *testing.T) {
	const aging = 15 * time.Second
	q := NewQueue(1000, aging)
	now := testEpoch
	pushItem(t, q, "low", PriorityLow, "", now)
	for i := range 200 {
		// One placement per second; two high tasks arrive per second.
		pushItem(t, q, fmt.Sprintf("h%d", 2*i), PriorityHigh, "", now)
		pushItem(t, q, fmt.Sprintf("h%d", 2*i+1), PriorityHigh, "", now)
		it := q.Next(now, nil, nil)
		q.Remove(it)
		if it.id == "low" {
			if waited := now.Sub(testEpoch); waited > 2*aging {
				t.Fatalf("low waited %v, more than two aging intervals", waited)
			}
			return
		}
		now = now.Add(time.Second)
	}
	t.Fatal("low-priority task starved")
}
