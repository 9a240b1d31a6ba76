package sim

import (
	"fmt"
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

// eventQueue is a 4-ary min-heap on (at, seq): shallower than a binary
// heap, so fewer cache misses per operation. It is hand-rolled rather than
// container/heap to avoid interface boxing in the hottest loop. The heap
// holds small keys (time, sequence, slot); the events themselves stay put in
// a slab with a free list, so sifting moves 16 bytes rather than a whole
// event: a key packs the sequence number and the slot into one word, so a
// node's four children fill one 64-byte cache line.
type eventQueue struct {
	keys []heapKey
	slab []event
	free []int32
}

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

func keyLess(a, b *heapKey) bool {
	return a.at < b.at || a.at == b.at && a.seqSlot < b.seqSlot
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
	if slot > slotMask || e.seq > seqMax {
		panic(fmt.Sprintf("sim: event queue: slot %d or sequence %d out of range", slot, e.seq))
	}
	k := heapKey{at: e.at, seqSlot: e.seq<<slotBits | uint64(slot)}
	keys := append(q.keys, k)
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
	q.keys = keys
}

// peek returns the earliest event, which stays queued.
func (q *eventQueue) peek() *event { return &q.slab[q.keys[0].slot()] }

func (q *eventQueue) pop() event {
	keys := q.keys
	slot := keys[0].slot()
	top := q.slab[slot]
	q.slab[slot] = event{} // no references from the free slot
	q.free = append(q.free, slot)
	n := len(keys) - 1
	last := keys[n]
	keys = keys[:n]
	q.keys = keys
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

func (q *eventQueue) len() int { return len(q.keys) }
