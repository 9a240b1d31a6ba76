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
)

var eventNames = [...]string{"tick", "wake", "deliver", "hb_failed", "exec_done", "submit", "resubmit",
	"fault_start", "fault_end", "flap_down", "flap_up", "operator", "sample", "restart_poll"}

// event is one scheduled occurrence. Only the fields its kind needs are set.
type event struct {
	at   time.Duration // virtual time since the epoch
	seq  uint64        // scheduling order: breaks ties deterministically
	kind eventKind
	node int    // agent index, fault/workload/op index
	gen  uint64 // agent incarnation or cp generation the event belongs to
	msg  *fnet.Message
	task core.TaskID
	att  int
	out  core.Outcome
	sub  *pendingSubmit
	num  uint64 // heartbeat sequence number
}

// eventQueue is a binary min-heap on (at, seq). It is hand-rolled rather
// than container/heap to avoid interface boxing in the hottest loop.
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
		p := (i - 1) / 2
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
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && q.less(r, l) {
			m = r
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
