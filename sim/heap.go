package sim

import (
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
	ack   core.AssignAck
	extra time.Duration // FaultAckDelayed: added to the latency
	late  bool          // FaultHeartbeatLate: the sender gave up; no reply
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
	if w.m.AssignAck == &w.ack {
		c.m.AssignAck = &c.ack
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
// container/heap to avoid interface boxing in the hottest loop.
type eventQueue struct {
	items []event
}

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	return a.at < b.at || a.at == b.at && a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	q.items = append(q.items, e)
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !q.less(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	top := q.items[0]
	n := len(q.items) - 1
	q.items[0] = q.items[n]
	q.items[n] = event{}
	q.items = q.items[:n]
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		for k := c + 1; k < c+4 && k < n; k++ {
			if q.less(k, m) {
				m = k
			}
		}
		if !q.less(m, i) {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}

func (q *eventQueue) len() int { return len(q.items) }
