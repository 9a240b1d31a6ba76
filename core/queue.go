package core

import (
	"slices"
	"time"
)

// queueItem is the queue's intrusive handle on a task: the task record embeds
// it, so enqueue and removal from the middle (cancel, purge) are O(1) and
// allocation-free.
type queueItem struct {
	id         TaskID
	prio       Priority
	domain     string // "" for tasks without a domain constraint
	enqueuedAt time.Time
	seq        uint64 // enqueue order; breaks ties deterministically
	owner      *taskRecord

	prev, next *queueItem
	list       *queueList
}

type queueList struct {
	head, tail *queueItem
	n          int
}

func (l *queueList) pushBack(it *queueItem) {
	it.list, it.prev, it.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = it
	} else {
		l.head = it
	}
	l.tail = it
	l.n++
}

func (l *queueList) remove(it *queueItem) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		l.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		l.tail = it.prev
	}
	it.prev, it.next, it.list = nil, nil, nil
	l.n--
}

// domainQueue holds one domain key's FIFO lists, one per priority.
type domainQueue struct {
	key   string
	lists [numPriorities]queueList
	n     int
}

// Queue is the bounded pending-task queue: priorities with aging, FIFO within
// a priority, and round-robin fairness across domains at equal urgency.
//
// Selection: each waiting task's effective priority is its priority raised one
// level per AgingInterval waited. The next task is the most urgent head; among
// domains tied at that urgency the queue rotates, and within a domain the
// oldest tied task wins. So a flood of high-priority work in one domain can
// neither starve another domain nor, after a bounded wait, low priority.
type Queue struct {
	capacity int
	aging    time.Duration
	domains  []*domainQueue // sorted by key; only non-empty ones
	n        int
	seq      uint64
	rrAfter  string // round-robin cursor: the domain key placed last; ties go to the next one
}

// NewQueue returns an empty queue. capacity >= 1 and aging > 0.
func NewQueue(capacity int, aging time.Duration) *Queue {
	if !(capacity >= 1 && aging > 0) {
		failf("queue: capacity %d aging %v", capacity, aging)
	}
	return &Queue{capacity: capacity, aging: aging}
}

// Len is the number of queued tasks.
func (q *Queue) Len() int { return q.n }

// Cap is the queue's capacity.
func (q *Queue) Cap() int { return q.capacity }

func (q *Queue) domainIndex(key string) (int, bool) {
	return slices.BinarySearchFunc(q.domains, key, func(d *domainQueue, k string) int {
		switch {
		case d.key < k:
			return -1
		case d.key > k:
			return 1
		}
		return 0
	})
}

// Push enqueues it at now. It returns ErrQueueFull at capacity and then
// changes nothing.
func (q *Queue) Push(it *queueItem, now time.Time) error {
	if it.list != nil {
		failf("queue: push of queued task %s", it.id)
	}
	if q.n >= q.capacity {
		return ErrQueueFull
	}
	q.PushReturning(it, now)
	return nil
}

// PushReturning enqueues accepted work coming back for another attempt (an
// attempt was lost, rejected or failed). Unlike Push it never refuses: the
// task was accepted, and dropping it because newer submissions filled the
// queue would lose it. Capacity bounds admission, so the overflow is at most
// the number of tasks that were in flight, itself bounded by the fleet's
// slots.
func (q *Queue) PushReturning(it *queueItem, now time.Time) {
	if it.list != nil {
		failf("queue: push of queued task %s", it.id)
	}
	i, ok := q.domainIndex(it.domain)
	if !ok {
		q.domains = slices.Insert(q.domains, i, &domainQueue{key: it.domain})
	}
	d := q.domains[i]
	q.seq++
	it.seq = q.seq
	it.enqueuedAt = now
	d.lists[it.prio].pushBack(it)
	d.n++
	q.n++
}

// Remove takes it out of the queue; it reports false if it was not queued.
func (q *Queue) Remove(it *queueItem) bool {
	if it.list == nil {
		return false
	}
	i, ok := q.domainIndex(it.domain)
	if !ok {
		failf("queue: domain %q of queued task %s missing", it.domain, it.id)
	}
	d := q.domains[i]
	it.list.remove(it)
	d.n--
	q.n--
	if d.n == 0 {
		q.domains = slices.Delete(q.domains, i, i+1)
	}
	return true
}

// effective returns the effective priority of it at now (0 = most urgent).
func (q *Queue) effective(it *queueItem, now time.Time) int {
	e := int(it.prio)
	if waited := now.Sub(it.enqueuedAt); waited > 0 {
		e -= int(waited / q.aging)
	}
	return max(e, 0)
}

// Next returns the task that should be placed next at now, ignoring domain
// keys for which skip returns true and tasks for which skipItem does, or nil. It does not remove the task; the
// caller calls Remove when it places it and Advance to move the fairness
// cursor past its domain.
func (q *Queue) Next(now time.Time, skip func(domainKey string) bool, skipItem func(*queueItem) bool) *queueItem {
	var best *queueItem
	bestEff, bestRank := numPriorities+1, 0
	start, found := q.domainIndex(q.rrAfter)
	if found {
		start++
	}
	nd := len(q.domains)
	for k := range nd {
		// rank orders domains round-robin from the cursor.
		d := q.domains[(start+k)%nd]
		if skip != nil && skip(d.key) {
			continue
		}
		for p := range numPriorities {
			it := d.lists[p].head
			for skipItem != nil && it != nil && skipItem(it) {
				it = it.next
			}
			if it == nil {
				continue
			}
			e := q.effective(it, now)
			switch {
			case best == nil || e < bestEff:
			case e == bestEff && k == bestRank && it.seq < best.seq:
			default:
				continue
			}
			best, bestEff, bestRank = it, e, k
		}
	}
	return best
}

// Advance moves the round-robin cursor past domainKey after a placement.
func (q *Queue) Advance(domainKey string) {
	q.rrAfter = domainKey
}

// Oldest returns the earliest enqueue time among queued tasks.
func (q *Queue) Oldest() (time.Time, bool) {
	var oldest time.Time
	found := false
	for _, d := range q.domains {
		for p := range numPriorities {
			if it := d.lists[p].head; it != nil && (!found || it.enqueuedAt.Before(oldest)) {
				oldest, found = it.enqueuedAt, true
			}
		}
	}
	return oldest, found
}

// Each calls fn for every queued task in a deterministic order (domain key,
// priority, FIFO). fn may Remove the item it is given.
func (q *Queue) Each(fn func(it *queueItem)) {
	for _, d := range slices.Clone(q.domains) {
		for p := range numPriorities {
			for it := d.lists[p].head; it != nil; {
				next := it.next
				fn(it)
				it = next
			}
		}
	}
}

// DomainKeys returns the domain keys with queued tasks, sorted.
func (q *Queue) DomainKeys() []string {
	keys := make([]string, len(q.domains))
	for i, d := range q.domains {
		keys[i] = d.key
	}
	return keys
}

// DomainLen returns how many tasks are queued under domainKey.
func (q *Queue) DomainLen(domainKey string) int {
	if i, ok := q.domainIndex(domainKey); ok {
		return q.domains[i].n
	}
	return 0
}
