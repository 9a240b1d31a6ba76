package sim

import (
	"fmt"
	"math/bits"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

type eventKind uint8

const (
	evCPTick eventKind = iota
	evAgentWake
	evDeliver
	evHeartbeatFailed
	evExecDone
	evSubmit
	evResubmit
	evFaultStart
	evFaultEnd
	evFlapDown
	evFlapUp
	evOperator
	evSample
	evRestartPoll
	evHeal
	evCPRecover
	evPoll        // an agent's backoff is over: it polls again
	evPollTimeout // an agent's poll got no reply in time
	evPollWaitEnd // a parked poll's wait is over: the cp answers it
)

// event is one scheduled occurrence. Only the fields its kind needs are set.
type event struct {
	at   time.Duration // virtual time since the epoch
	seq  uint64        // scheduling order: breaks ties deterministically
	num  uint64        // heartbeat sequence number, burst flag, direction
	gen  uint64        // agent incarnation or cp generation the event belongs to
	node int           // agent index, fault/workload/op index
	kind eventKind
	next int32 // eventQueue: the next queued event of its wheel slot, -1: none
	msg  *wire
	ex   *execEnd
	sub  *pendingSubmit
}

// wire is a message in flight with room for the payloads the simulator
// builds itself, so a delivery costs no allocation once the pool is warm.
// Each in-flight event owns its wire (a duplicate gets a copy); the wire
// goes back to the pool after delivery. Payload slices are never reused.
type wire struct {
	m     fnet.Message
	hb    core.HeartbeatInput
	reply core.HeartbeatReply
	extra time.Duration // FaultAckDelayed: added to the latency
	late  bool          // FaultHeartbeatLate: the sender gave up; no reply
	// The poll protocol's payloads (kindPoll, kindPollReply); m.Seq is
	// the agent's poll number. inc is the polling agent's incarnation.
	poll  fnet.PollRequest
	batch fnet.PollReply
	inc   uint64
	cut   bool // the connection breaks after batch's messages
}

// clone copies w into a fresh wire, repointing the embedded payloads.
func (w *wire) cloneInto(c *wire) {
	*c = *w
	if w.m.Heartbeat == &w.hb {
		c.m.Heartbeat = &c.hb
	}
	if w.m.HeartbeatReply == &w.reply {
		c.m.HeartbeatReply = &c.reply
	}
}

// execEnd is how a simulated execution ends.
type execEnd struct {
	task core.TaskID
	att  int
	out  core.Outcome
}

// eventQueue orders the pending events on (at, seq). It is a timing wheel:
// time is cut in ticks of 2^tickShift ns (about 4 ms), and the keys
// (time, sequence, slot) of the next wheelSize ticks (about 69 s, past a
// poll's timeout) sit unsorted in the wheel's slot of their tick. The
// current tick's keys are sorted once when it comes up (a handful); later
// keys go to a 4-ary heap until the wheel reaches them. Nearly every push
// is a list insertion and nearly every pop takes the next key of a short
// sorted list, where a heap of thousands of events paid a dozen
// unpredictable comparisons for each. The events themselves stay put in a
// slab with a free list; a wheel slot is a list threaded through them
// (event.next), so a push touches its event and a small array of heads.
type eventQueue struct {
	n int // events queued

	// cur holds the keys of tick curTick (and any pushed earlier),
	// sorted; cur[head:] are queued.
	cur     []heapKey
	head    int
	curTick uint64
	// wheel[t&wheelMask] is the first slab slot of the list of tick t's
	// events (-1: none), for curTick < t < curTick+wheelSize; full marks
	// the slots that hold any.
	wheel   []int32
	full    []uint64
	inWheel int
	far     keyHeap // keys of ticks beyond the wheel when pushed

	slab []event
	free []int32
}

const (
	tickShift = 22 // a tick is 2^22 ns, about 4.2 ms
	wheelBits = 14 // 16384 ticks, about 69 s
	wheelSize = 1 << wheelBits
	wheelMask = wheelSize - 1
)

type heapKey struct {
	at time.Duration
	// seqSlot is seq<<slotBits | slot. Sequence numbers are unique, so
	// comparing seqSlot compares seq; the slot rides along.
	seqSlot uint64
}

// slotBits bounds the events queued at once (16M: gigabytes of slab) and
// leaves 40 bits of sequence (10^12 events, far past EventsLimit).
const (
	slotBits = 24
	slotMask = 1<<slotBits - 1
	seqMax   = 1<<(64-slotBits) - 1
)

func (k *heapKey) slot() int32 { return int32(k.seqSlot & slotMask) }

func (k *heapKey) tick() uint64 { return uint64(k.at) >> tickShift }

func keyLess(a, b *heapKey) bool {
	return a.at < b.at || a.at == b.at && a.seqSlot < b.seqSlot
}

func keyCompare(a, b heapKey) int {
	switch {
	case keyLess(&a, &b):
		return -1
	case keyLess(&b, &a):
		return 1
	}
	return 0
}

func (q *eventQueue) push(e event) {
	var slot int32
	if n := len(q.free); n > 0 {
		slot = q.free[n-1]
		q.free = q.free[:n-1]
		q.slab[slot] = e
	} else {
		slot = int32(len(q.slab))
		q.slab = append(q.slab, e)
	}
	if slot > slotMask || e.seq > seqMax || e.at < 0 {
		panic(fmt.Sprintf("sim: event queue: slot %d, sequence %d or time %v out of range", slot, e.seq, e.at))
	}
	q.n++
	k := heapKey{at: e.at, seqSlot: e.seq<<slotBits | uint64(slot)}
	switch t := k.tick(); {
	case t <= q.curTick:
		// Into the sorted current tick: after every key that sorts
		// before it (for a new event, usually at the end).
		i, _ := slices.BinarySearchFunc(q.cur[q.head:], k, keyCompare)
		q.cur = slices.Insert(q.cur, q.head+i, k)
	case t-q.curTick < wheelSize:
		if q.wheel == nil {
			q.wheel = make([]int32, wheelSize)
			for i := range q.wheel {
				q.wheel[i] = -1
			}
			q.full = make([]uint64, wheelSize/64)
		}
		w := t & wheelMask
		q.slab[slot].next = q.wheel[w]
		q.wheel[w] = slot
		q.full[w/64] |= 1 << (w % 64)
		q.inWheel++
	default:
		q.far.push(k)
	}
}

// peek returns the earliest event, which stays queued.
func (q *eventQueue) peek() *event {
	if q.head == len(q.cur) {
		q.advance()
	}
	return &q.slab[q.cur[q.head].slot()]
}

func (q *eventQueue) pop() event {
	if q.head == len(q.cur) {
		q.advance()
	}
	slot := q.cur[q.head].slot()
	q.head++
	q.n--
	top := q.slab[slot]
	q.slab[slot] = event{} // no references from the free slot
	q.free = append(q.free, slot)
	return top
}

// advance makes the earliest tick with queued keys current (the current
// one is done): its wheel slot and the far keys of that tick, sorted.
func (q *eventQueue) advance() {
	if q.n == 0 {
		panic("sim: event queue: empty")
	}
	next, fromWheel := uint64(0), false
	if q.inWheel > 0 {
		next, fromWheel = q.curTick+q.nextFull(), true
	}
	if q.far.len() > 0 {
		// A far key's tick may be the wheel's next too: both are taken.
		if t := q.far.min().tick(); !fromWheel || t < next {
			next, fromWheel = t, false
		}
	}
	q.curTick = next
	q.cur, q.head = q.cur[:0], 0
	if fromWheel {
		w := next & wheelMask
		for i := q.wheel[w]; i >= 0; i = q.slab[i].next {
			e := &q.slab[i]
			q.cur = append(q.cur, heapKey{at: e.at, seqSlot: e.seq<<slotBits | uint64(i)})
		}
		q.wheel[w] = -1
		q.full[w/64] &^= 1 << (w % 64)
		q.inWheel -= len(q.cur)
	}
	for q.far.len() > 0 && q.far.min().tick() == next {
		q.cur = append(q.cur, q.far.pop())
	}
	slices.SortFunc(q.cur, keyCompare)
}

// nextFull returns how many ticks after curTick the next full wheel slot
// is (there is one).
func (q *eventQueue) nextFull() uint64 {
	start := (q.curTick + 1) & wheelMask
	for d := uint64(0); d < wheelSize; {
		w := (start + d) & wheelMask
		word := q.full[w/64] >> (w % 64)
		if word != 0 {
			return 1 + d + uint64(bits.TrailingZeros64(word))
		}
		d += 64 - w%64
	}
	panic("sim: event queue: wheel count and slots disagree")
}

func (q *eventQueue) len() int { return q.n }

// queued returns the keys of the queued events, in no particular order.
func (q *eventQueue) queued() []heapKey {
	out := append([]heapKey(nil), q.cur[q.head:]...)
	if q.inWheel > 0 {
		for _, first := range q.wheel {
			for i := first; i >= 0; i = q.slab[i].next {
				e := &q.slab[i]
				out = append(out, heapKey{at: e.at, seqSlot: e.seq<<slotBits | uint64(i)})
			}
		}
	}
	return append(out, q.far.keys...)
}

// keyHeap is a 4-ary min-heap of keys: shallower than a binary heap, so
// fewer cache misses per operation, and hand-rolled rather than
// container/heap to avoid interface boxing. A node's four children (16
// bytes each) share a cache line.
type keyHeap struct {
	keys []heapKey
}

func (h *keyHeap) len() int { return len(h.keys) }

func (h *keyHeap) min() *heapKey { return &h.keys[0] }

func (h *keyHeap) push(k heapKey) {
	keys := append(h.keys, k)
	i := len(keys) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !keyLess(&k, &keys[p]) {
			break
		}
		keys[i] = keys[p]
		i = p
	}
	keys[i] = k
	h.keys = keys
}

func (h *keyHeap) pop() heapKey {
	keys := h.keys
	top := keys[0]
	n := len(keys) - 1
	last := keys[n]
	keys = keys[:n]
	h.keys = keys
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		for k := c + 1; k < c+4 && k < n; k++ {
			if keyLess(&keys[k], &keys[m]) {
				m = k
			}
		}
		if !keyLess(&keys[m], &last) {
			break
		}
		keys[i] = keys[m]
		i = m
	}
	keys[i] = last
	return top
}
