package cp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Agents dial in: the cp never opens a connection to an agent. The core's
// outbox goes into one net.Mailbox per agent, and the agent long-polls
// net.PathPoll over its own connection to take what waits (see net/poll.go
// for the protocol: at least once, in order, one epoch per cp start).

// pollWriteSlack is added to a held poll's wait for its write deadline (the
// server's WriteTimeout would cut a long poll otherwise).
const pollWriteSlack = 10 * time.Second

// mailboxes hold the messages for agents until a poll says they were
// processed. Bounded by DeliveryQueuePerAgentMax per agent and
// DeliveryQueueMax in all: beyond that a message is dropped and counted
// (an undelivered assignment is requeued by the core after AssignTimeout,
// an undelivered cancel is repeated in the reply to the agent's next
// heartbeat that still reports the attempt).
type mailboxes struct {
	mu       sync.Mutex
	epoch    uint64 // this start's: the first mailbox's, and the empty replies'
	boxEpoch uint64 // the next new mailbox's: epoch, epoch+2, ... (each distinct, nonzero)
	perAgent int
	max      int
	total    int // messages held over all agents
	boxes    map[core.AgentID]*agentBox
	waiters  map[core.AgentID]*waiter
	stopped  chan struct{} // closed while the server stops: held polls answer
}

type agentBox struct {
	// incarnation is the agent's, as of the last heartbeat the cp took
	// from it: a poll of another incarnation (a restarted agent that has
	// not heartbeated yet, or a stale process) gets nothing from the box.
	incarnation uint64
	mb          *fnet.Mailbox
	pushed      uint64    // messages pushed: the seq of the last one
	handed      uint64    // highest seq handed out in a reply
	stamps      []pushRec // push times of the messages not handed out yet
}

type pushRec struct {
	seq uint64
	at  time.Time
}

// waiter wakes the polls held for one agent: ch is closed when a message
// is pushed for it.
type waiter struct {
	ch chan struct{}
	n  int // polls holding it
}

// newEpoch is a random nonzero mailbox epoch, new at each cp start.
func newEpoch() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("cp: mailbox epoch: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]) | 1, nil
}

func newMailboxes(epoch uint64, perAgent, max int) *mailboxes {
	return &mailboxes{epoch: epoch, boxEpoch: epoch, perAgent: perAgent, max: max,
		boxes: map[core.AgentID]*agentBox{}, waiters: map[core.AgentID]*waiter{}, stopped: make(chan struct{})}
}

// queued is how many messages the mailboxes hold, over all agents.
func (d *mailboxes) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// stop answers every held poll now and every later one at once, until
// restart.
func (d *mailboxes) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.stopped:
	default:
		close(d.stopped)
	}
}

// restart lets polls be held again (a Run after a Run).
func (d *mailboxes) restart() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.stopped:
		d.stopped = make(chan struct{})
	default:
	}
}

// dropAll forgets every mailbox and wakes every held poll (it answers
// empty): this cp no longer leads, so what it holds for agents is void; the
// new leader resends the unconfirmed assignments on taking over, and the
// agents' next polls learn where it is.
func (d *mailboxes) dropAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.boxes)
	d.total = 0
	for id, w := range d.waiters {
		close(w.ch)
		delete(d.waiters, id)
	}
}

// stopCh is the current stop channel.
func (d *mailboxes) stopCh() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// enqueue puts m into its agent's mailbox without blocking and wakes the
// agent's held polls.
func (s *Server) enqueue(m core.Outbound) {
	d := s.mail
	d.mu.Lock()
	b := d.boxes[m.To]
	ok := d.total < d.max
	if ok {
		if b == nil {
			b = d.newBox(m.To)
		}
		ok = b.mb.Push(m)
	}
	if ok {
		d.total++
		b.pushed++
		b.stamps = append(b.stamps, pushRec{b.pushed, time.Now()})
		if w := d.waiters[m.To]; w != nil {
			close(w.ch)
			delete(d.waiters, m.To)
		}
	}
	d.mu.Unlock()
	if !ok {
		s.metrics.deliveryDropped.WithLabelValues(kindOf(m)).Inc()
		s.log.Warn("agent message dropped: mailbox full", "agent_id", string(m.To), "kind", kindOf(m),
			"delivery_queue_max", s.opts.DeliveryQueueMax, "delivery_queue_per_agent_max", s.opts.DeliveryQueuePerAgentMax)
	}
}

// newBox makes agent id's mailbox. Caller holds d.mu.
func (d *mailboxes) newBox(id core.AgentID) *agentBox {
	// A new epoch for every mailbox made: an agent whose mailbox was
	// forgotten may still hold a cursor into the old one.
	b := &agentBox{mb: fnet.NewMailbox(d.boxEpoch, d.perAgent)}
	d.boxEpoch += 2
	d.boxes[id] = b
	return b
}

// noteIncarnation records the incarnation of a heartbeat the cp took from
// agent id: polls of that incarnation only are answered from its mailbox.
func (d *mailboxes) noteIncarnation(id core.AgentID, incarnation uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.boxes[id]
	if b == nil {
		b = d.newBox(id)
	}
	b.incarnation = incarnation
}

// forget drops what agent id's mailbox holds: the core lost the agent (its
// tasks went elsewhere) or saw it restart (its messages were for the old
// incarnation). When the core forgot the agent, the mailbox goes too.
// Called in log order from the leader's sink, before the entry's own
// messages are enqueued.
func (d *mailboxes) forget(id core.AgentID, gone bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.boxes[id]
	if b == nil {
		return
	}
	d.total -= b.mb.Len()
	if gone {
		delete(d.boxes, id)
		return
	}
	b.mb.Ack(b.mb.Epoch(), b.pushed) // empty, its sequence goes on
	b.stamps = nil
	b.handed = b.pushed
}

// take acknowledges what poll p says it processed and returns the reply
// for it; ok is false when nothing waits (reply is then the empty answer).
// A poll whose incarnation is not the one the agent last heartbeated with
// gets nothing (so a restarted agent never takes its old incarnation's
// messages, which its first heartbeat voids).
// When nothing waits and wait is set, it also returns the channel that a
// push for the agent closes; the caller must release it.
func (s *Server) take(p *fnet.PollRequest, wait bool) (reply fnet.PollReply, ok bool, w *waiter) {
	d := s.mail
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.boxes[p.AgentID]
	if b != nil && b.incarnation != p.Incarnation {
		b = nil // not the agent the messages are for: it waits like a stranger
	}
	if b != nil {
		before := b.mb.Len()
		b.mb.Ack(p.Epoch, p.After)
		d.total -= before - b.mb.Len()
		if b.mb.Pending(p.Epoch, p.After) {
			reply = b.mb.Take(p.Epoch, p.After, fnet.PollBatchMax)
			s.handedOut(b, reply.Messages)
			return reply, true, nil
		}
	}
	reply = fnet.PollReply{Epoch: d.epoch, Messages: []fnet.PollMessage{}}
	if b != nil {
		reply.Epoch = b.mb.Epoch()
	}
	if !wait {
		return reply, false, nil
	}
	w = d.waiters[p.AgentID]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		d.waiters[p.AgentID] = w
	}
	w.n++
	return reply, false, w
}

// release ends a held poll's claim on w.
func (d *mailboxes) release(id core.AgentID, w *waiter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.n--
	if w.n == 0 && d.waiters[id] == w {
		delete(d.waiters, id)
	}
}

// handedOut counts the messages of a reply: "ok" the first time a message
// goes out (its time in the mailbox observed), "resent" after.
// Caller holds the mailboxes' lock.
func (s *Server) handedOut(b *agentBox, msgs []fnet.PollMessage) {
	now := time.Now()
	for _, m := range msgs {
		kind := string(fnet.KindCancel)
		if m.Assign != nil {
			kind = string(fnet.KindAssign)
		}
		if m.Seq <= b.handed {
			s.metrics.deliveries.WithLabelValues(kind, "resent").Inc()
			continue
		}
		b.handed = m.Seq
		s.metrics.deliveries.WithLabelValues(kind, "ok").Inc()
		i := 0
		for i < len(b.stamps) && b.stamps[i].seq < m.Seq {
			i++
		}
		if i < len(b.stamps) && b.stamps[i].seq == m.Seq {
			s.metrics.deliveryDuration.WithLabelValues(kind).Observe(now.Sub(b.stamps[i].at).Seconds())
			i++
		}
		clear(b.stamps[:i])
		b.stamps = b.stamps[i:]
	}
	if len(b.stamps) == 0 {
		b.stamps = nil
	}
}

func kindOf(m core.Outbound) string {
	if m.Assign != nil {
		return string(fnet.KindAssign)
	}
	return string(fnet.KindCancel)
}

// poll serves net.PathPoll: it applies the poll's acks through the log,
// acknowledges the mailbox up to the poll's cursor and answers with what
// waits, holding the request up to wait_ms (cut to the write deadline it
// can extend) until something is pushed for the agent, the client goes
// away or the server stops. A poll from an agent the cp does not know yet
// waits and answers empty: the agent registers by heartbeat.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	var p fnet.PollRequest
	if !s.decodeBody(w, r, fnet.BodyMax, false, &p) {
		return
	}
	if err := p.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err := s.authAgent(r, p.AgentID); err != nil {
		s.writeAuthError(w, err)
		return
	}
	if len(p.Acks) > 0 {
		s.queueAcks(&p)
	}
	wait := time.Duration(p.WaitMillis) * time.Millisecond
	rc := http.NewResponseController(w)
	if wait > 0 {
		// Past the server's read and write timeouts: an HTTP/1.1 read
		// deadline cancels the request when it passes, the write deadline
		// cuts the answer.
		deadline := time.Now().Add(wait + pollWriteSlack)
		if err := rc.SetWriteDeadline(deadline); err != nil {
			wait = min(wait, serverWriteBudget) // the server's WriteTimeout stands
		}
		_ = rc.SetReadDeadline(deadline)
	}
	stopped := s.mail.stopCh()
	select {
	case <-stopped:
		wait = 0
	default:
	}
	reply, ok, wt := s.take(&p, wait > 0)
	if !ok && wt != nil {
		timer := time.NewTimer(wait)
		select {
		case <-wt.ch:
		case <-timer.C:
		case <-r.Context().Done():
		case <-stopped:
		}
		timer.Stop()
		s.mail.release(p.AgentID, wt)
		if r.Context().Err() == nil {
			reply, _, _ = s.take(&p, false)
		}
	}
	fnet.WriteJSON(w, http.StatusOK, reply)
}

// serverWriteBudget is how long a poll may be held when its write deadline
// cannot be extended: within the daemons' 30s WriteTimeout.
const serverWriteBudget = 20 * time.Second

// queueAcks queues the poll's assignment acks for the log as one group
// (group commit batches them with other inputs) and does not wait for
// them: the poll goes on to take the agent's next messages at once, so an
// assignment never waits behind the fsync of the acks before it. An ack
// only confirms what the agent's heartbeats confirm too (it lists the
// attempts it runs): one the log does not take (the cp lost its
// leadership, which drops the mailboxes too) costs at most a resend,
// fenced by attempt, as after a takeover. An ack the core finds stale (the
// attempt ended meanwhile) is dropped.
func (s *Server) queueAcks(p *fnet.PollRequest) {
	ins := make([]core.Input, len(p.Acks))
	for i := range p.Acks {
		ack := p.Acks[i]
		ack.AgentID = p.AgentID
		ins[i] = ack
	}
	agent, acks := string(p.AgentID), p.Acks
	s.batch.queue(ins, func(res []applied, err error) {
		if err != nil {
			s.log.Warn("assignment acks not applied", "agent_id", agent, "acks", len(acks), "error", err.Error())
			return
		}
		for i, a := range res {
			if a.Err != nil {
				s.log.Debug("assignment ack ignored", "agent_id", agent, "task_id", string(acks[i].TaskID),
					"attempt", acks[i].Attempt, "error", a.Err.Error())
			}
		}
	})
}

// voidAssign drops from agent id's mailbox the assignment of task's
// attempt, which the core took back (requeued, failed, cancelled) before
// the agent polled it: handed out late, it would start an attempt the cp
// no longer stands behind.
func (d *mailboxes) voidAssign(id core.AgentID, task core.TaskID, attempt int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.boxes[id]
	if b == nil {
		return
	}
	var seqs []uint64
	n := b.mb.Drop(func(m fnet.PollMessage) bool {
		void := m.Assign != nil && m.Assign.TaskID == task && m.Assign.Attempt == attempt
		if void {
			seqs = append(seqs, m.Seq)
		}
		return void
	})
	d.total -= n
	if n == 0 {
		return
	}
	kept := b.stamps[:0]
	for _, st := range b.stamps {
		if !slices.Contains(seqs, st.seq) {
			kept = append(kept, st)
		}
	}
	clear(b.stamps[len(kept):])
	b.stamps = kept
}

// mailEvents keeps the mailboxes in step with the core: an assignment the
// core took back goes from its mailbox; the mailbox of an agent lost or
// restarted is emptied, of one forgotten dropped. Called by the leader's
// sink before the entry's outbox.
func (s *Server) mailEvents(e core.Event) {
	if e.Kind == core.EventTask && e.AgentID != "" && e.Attempt > 0 && e.To != "" &&
		e.To != core.TaskAssigned.String() && e.To != core.TaskRunning.String() {
		s.mail.voidAssign(e.AgentID, e.TaskID, e.Attempt)
		return
	}
	switch e.Type {
	case core.EventAgentForgotten:
		s.mail.forget(e.AgentID, true)
	case core.EventAgentLost, core.EventAgentRestarted:
		s.mail.forget(e.AgentID, false)
	}
}
