package sim

import (
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Agent-initiated dispatch (net/poll.go) on the simulated network. The cp
// never sends an agent anything unasked: its outbox goes into the agent's
// net.Mailbox, and each agent keeps one long poll outstanding on its own
// link. At the cp a poll applies the acks it carries, acknowledges the
// mailbox up to its cursor, and is answered at once when messages wait,
// else parked until one is pushed or its wait (Options.PollWait) ends. The
// agent takes the reply through its net.Inbox (which skips what it has
// processed), gives assignments and cancels to its core.Agent, and polls
// again at once with the acks and its new cursor. The simulator runs the
// very Mailbox and Inbox the daemons run.
//
// Faults on the agent's connection: a poll or a reply lost on the link (or
// in a partition) leaves the agent waiting until its request times out
// (PollWait + PollSlack, as the daemon's context does), then it polls again
// with the same cursor and gets the batch again; a reply cut mid-batch
// (NetworkOptions.CutProbability) delivers its first k messages, which the
// agent processes before it polls again; a poll whose cursor and acks are
// lost (FaultBatchDuplicated) gets a batch the agent already processed,
// which its Inbox skips; a crashed or restarted cp resets the connections of
// the polls it held (the agents poll again after a backoff) and starts with
// no mailboxes, each made with a new epoch, so the agents' next polls get
// everything the new process has for them. Like the cp daemon, the cp
// empties an agent's mailbox when the core loses the agent or sees it
// restart (its messages were for the old process), drops from it an
// assignment the core took back before the agent polled it, and drops the
// mailbox when the core forgets the agent (a new one gets a new epoch).
// A failed poll is retried after a backoff of
// 100ms doubling up to the heartbeat interval, like the daemon's.

const (
	kindPoll      fnet.Kind = "poll"       // agent → cp: wire.poll
	kindPollReply fnet.Kind = "poll_reply" // cp → agent: wire.batch
)

// Defaults of the poll protocol's options.
const (
	// DefaultPollWait is Options.PollWait's default, the agent's
	// PollWaitDefault: how long the cp holds a poll when nothing waits.
	DefaultPollWait = 25 * time.Second
	// PollSlack is how much longer than its wait an agent gives a poll
	// before it times out (the agent daemon's pollSlack).
	PollSlack = 10 * time.Second
	// DefaultMailboxMax is Options.MailboxMax's default, the cp's
	// DeliveryQueuePerAgentMax default.
	DefaultMailboxMax = 1024
	// pollBackoffMin is an agent's first backoff after a failed poll; it
	// doubles up to the heartbeat interval.
	pollBackoffMin = 100 * time.Millisecond
)

// parkedPoll is a poll the cp holds until a message for the agent is
// pushed or the wait ends.
type parkedPoll struct {
	id           uint64 // its place in sim.waits
	n            uint64 // the agent's poll number
	inc          uint64 // the polling process's incarnation
	epoch, after uint64 // its cursor
}

// parkedWait is a parked poll's place in the cp's wait queue.
type parkedWait struct {
	at   time.Duration // when its wait ends
	id   uint64
	node int
}

// mailboxEpoch is the first mailbox epoch of cp process generation gen:
// new at every start of the process, nonzero, deterministic (the daemon
// draws it at random). Its mailboxes take gen's epochs in turn, every
// other number, so no two of a run share one.
func mailboxEpoch(gen int) uint64 { return uint64(gen)<<32 | 1 }

// openMailboxes is a cp process start: no mailboxes yet (what a dead
// process held is gone with it), epochs from the generation's first.
func (s *sim) openMailboxes() {
	s.cpEpoch = mailboxEpoch(s.cpGen)
	s.boxEpoch = s.cpEpoch
	for _, a := range s.agents {
		a.box = nil
		a.parked = a.parked[:0]
	}
}

// mailEvent keeps the mailboxes in step with the core's view of the agents,
// as the cp daemon does (cp.Server.mailEvents), before the input's own
// messages are posted: an assignment the core took back (requeued, failed,
// cancelled) before the agent polled it leaves its mailbox, since handed
// out late it would start an attempt the cp no longer stands behind; a
// lost or restarted agent's messages are for a process that is gone (the
// mailbox empties, its sequence goes on); a forgotten agent's mailbox goes.
func (s *sim) mailEvent(e core.Event) {
	if e.Kind == core.EventTask && e.AgentID != "" && e.Attempt > 0 && e.To != "" &&
		e.To != core.TaskAssigned.String() && e.To != core.TaskRunning.String() {
		if a, ok := s.byID[string(e.AgentID)]; ok && a.box != nil {
			a.box.Drop(func(m fnet.PollMessage) bool {
				return m.Assign != nil && m.Assign.TaskID == e.TaskID && m.Assign.Attempt == e.Attempt
			})
		}
		return
	}
	switch e.Type {
	case core.EventAgentLost, core.EventAgentRestarted, core.EventAgentForgotten:
	default:
		return
	}
	a, ok := s.byID[string(e.AgentID)]
	if !ok || a.box == nil {
		return
	}
	if e.Type == core.EventAgentForgotten {
		a.box = nil
		return
	}
	a.box.Ack(a.box.Epoch(), ^uint64(0))
}

// post puts an outbox message into its agent's mailbox; a parked poll of
// the agent is answered once the whole outbox is in (wakePolls).
func (s *sim) post(o core.Outbound) {
	a, ok := s.byID[string(o.To)]
	if !ok {
		return // no such agent: the message goes nowhere
	}
	if a.box == nil {
		a.box = fnet.NewMailbox(s.boxEpoch, s.o.MailboxMax)
		s.boxEpoch += 2
	}
	if !a.box.Push(o) {
		s.res.MailboxDropped++
		s.tr.begin(s.now, s.count, "mailbox_full")
		s.tr.raw(a.trAgent)
		if o.Assign != nil {
			s.tr.str("task", string(o.Assign.TaskID))
		} else if o.Cancel != nil {
			s.tr.str("task", string(o.Cancel.TaskID))
		}
		s.tr.end()
		return
	}
	if len(a.parked) > 0 && !a.woken {
		a.woken = true
		s.woken = append(s.woken, a)
	}
}

// wakePolls answers the parked polls of the agents that got messages.
func (s *sim) wakePolls() {
	for _, a := range s.woken {
		a.woken = false
		for _, p := range a.parked {
			s.answerPoll(a, p)
		}
		clear(a.parked)
		a.parked = a.parked[:0]
	}
	clear(s.woken)
	s.woken = s.woken[:0]
}

// resetPolls is the cp process going away: the connections of the polls it
// held break, and each agent waiting on one polls again after its backoff.
func (s *sim) resetPolls() {
	for _, a := range s.agents {
		for _, p := range a.parked {
			if a.up && p.inc == a.inc && a.poll == p.n {
				s.pollFailed(a, p.n, "connection reset")
			}
		}
		clear(a.parked)
		a.parked = a.parked[:0]
	}
	s.waits, s.waitsHead = s.waits[:0], 0
}

// ---- the agent's side ----

// sendPoll sends agent a's next poll, unless one is outstanding.
func (s *sim) sendPoll(a *simAgent) {
	if !a.up || a.poll != 0 {
		return
	}
	a.pollN++
	n := a.pollN
	a.poll, a.pollDeadline = n, s.now+s.o.PollWait+PollSlack
	w := s.newWire()
	w.inc = a.inc
	w.m = fnet.Message{From: a.id, To: fnet.CPNode, Kind: kindPoll, Seq: n}
	w.poll = fnet.PollRequest{AgentID: core.AgentID(a.id), Incarnation: a.inc + 1, WaitMillis: s.o.PollWait.Milliseconds()}
	a.carried = min(len(a.acks), fnet.PollAcksMax)
	cur, lost := a.inbox, false
	if a.prev != a.inbox && s.fire(FaultBatchDuplicated, a.id, "", 0) {
		// The cursor and acks are lost on the way: the cp sees the
		// cursor before the last batch, and the agent thinks its acks
		// arrived (its heartbeats confirm the attempts instead).
		cur, lost = a.prev, true
	} else if a.carried > 0 {
		w.poll.Acks = a.acks[:a.carried:a.carried]
	}
	w.poll.Epoch, w.poll.After = cur.Epoch, cur.After
	if a.ackDelay > 0 && len(w.poll.Acks) > 0 {
		w.extra, a.ackDelay = a.ackDelay, 0
	}
	s.tr.begin(s.now, s.count, "poll_send")
	s.tr.raw(a.trAgent)
	s.tr.int("poll", int64(n))
	s.tr.int("epoch", int64(cur.Epoch))
	s.tr.int("after", int64(cur.After))
	s.tr.int("acks", int64(len(w.poll.Acks)))
	if lost {
		s.tr.str("cursor", "lost")
	}
	s.tr.end()
	refused := s.down != nil && a.cut == 0
	if !s.send(w, a, true) {
		if refused { // no process: the connection is refused at once
			s.pollFailed(a, n, "refused")
		} else { // lost, or no route: the request times out
			s.pollLost(a, n)
		}
		return
	}
	if s.arrival >= a.pollDeadline {
		s.pollLost(a, n) // too slow: the agent gives up first
	}
}

// pollLost makes agent a's poll n time out at its deadline: its request or
// its reply will not come back in time.
func (s *sim) pollLost(a *simAgent, n uint64) {
	if !a.up || a.poll != n || a.timeoutFor == n {
		return
	}
	a.timeoutFor = n
	s.push(event{at: max(s.now, a.pollDeadline), kind: evPollTimeout, node: a.idx, gen: a.inc, num: n})
}

// pollFailed ends agent a's poll n without a reply; it polls again after
// its backoff.
func (s *sim) pollFailed(a *simAgent, n uint64, why string) {
	a.poll = 0
	if a.backoff == 0 {
		a.backoff = pollBackoffMin
	} else {
		a.backoff = min(2*a.backoff, s.o.AgentHeartbeat)
	}
	s.tr.begin(s.now, s.count, "poll_failed")
	s.tr.raw(a.trAgent)
	s.tr.int("poll", int64(n))
	s.tr.str("why", why)
	s.tr.int("backoff_ms", a.backoff.Milliseconds())
	s.tr.end()
	s.push(event{at: s.now + a.backoff, kind: evPoll, node: a.idx, gen: a.inc})
}

// takeBatch is a reply reaching agent a: the Inbox filters it, the core
// takes the new messages, and the agent polls again.
func (s *sim) takeBatch(a *simAgent, w *wire) {
	n := w.m.Seq
	a.poll = 0
	before := a.inbox
	msgs := a.inbox.Accept(w.batch)
	if len(msgs) > 0 {
		a.prev = before
	}
	// The poll's acks reached the cp, which answered it.
	if a.acks = a.acks[a.carried:]; len(a.acks) == 0 {
		a.acks = nil
	}
	a.carried = 0
	s.tr.begin(s.now, s.count, "batch")
	s.tr.raw(a.trAgent)
	s.tr.int("poll", int64(n))
	s.tr.int("epoch", int64(w.batch.Epoch))
	s.tr.int("msgs", int64(len(w.batch.Messages)))
	s.tr.int("new", int64(len(msgs)))
	s.tr.int("after", int64(a.inbox.After))
	if w.cut {
		s.tr.str("cut", "connection broke mid-batch")
	}
	s.tr.end()
	for _, m := range msgs {
		s.tr.begin(s.now, s.count, "take")
		s.tr.raw(a.trAgent)
		s.tr.int("seq", int64(m.Seq))
		switch {
		case m.Assign != nil:
			s.tr.str("kind", string(fnet.KindAssign))
			s.tr.str("task", string(m.Assign.TaskID))
			s.tr.int("attempt", int64(m.Assign.Attempt))
			s.tr.end()
			a.acks = append(a.acks, a.ag.Assign(s.t, *m.Assign))
			if s.fire(FaultAckDelayed, a.id, m.Assign.TaskID, m.Assign.Attempt) {
				a.ackDelay = max(a.ackDelay, s.lateDelay(2*s.o.Core.AssignTimeout))
			}
		case m.Cancel != nil:
			s.tr.str("kind", string(fnet.KindCancel))
			s.tr.str("task", string(m.Cancel.TaskID))
			s.tr.int("attempt", int64(m.Cancel.Attempt))
			s.tr.end()
			a.ag.Cancel(s.t, *m.Cancel)
		default:
			s.tr.end()
		}
	}
	s.reschedule(a)
	if w.cut {
		s.pollFailed(a, n, "cut mid-batch")
		return
	}
	a.backoff = 0
	s.sendPoll(a)
}

// ---- the cp's side ----

// takePoll is a poll reaching the cp: its acks are applied, the mailbox
// forgets what the cursor says was processed, and the poll is answered at
// once or parked.
func (s *sim) takePoll(a *simAgent, w *wire) {
	p := &w.poll
	for i := range p.Acks {
		if _, err := s.apply(&p.Acks[i]); err != nil {
			s.tr.begin(s.now, s.count, "ack_refused")
			s.tr.raw(a.trAgent)
			s.tr.str("error", err.Error())
			s.tr.end()
		}
	}
	if len(p.Acks) > 0 {
		s.afterCP()
	}
	pp := parkedPoll{n: w.m.Seq, inc: w.inc, epoch: p.Epoch, after: p.After}
	if a.box != nil {
		a.box.Ack(p.Epoch, p.After)
		if a.box.Pending(p.Epoch, p.After) {
			s.answerPoll(a, pp)
			return
		}
	}
	s.parkSeq++
	pp.id = s.parkSeq
	a.parked = append(a.parked, pp)
	end := s.now + time.Duration(p.WaitMillis)*time.Millisecond
	s.waits = append(s.waits, parkedWait{at: end, id: pp.id, node: a.idx})
	if len(s.waits)-s.waitsHead == 1 {
		s.push(event{at: end, kind: evPollWaitEnd, gen: uint64(s.cpGen)})
	}
	if end >= a.pollDeadline && a.inc == w.inc {
		s.pollLost(a, pp.n) // the agent gives up before the wait ends
	}
}

// The cp's wait queue: parked polls in the order they were parked, which
// is the order their waits end (every poll of a run asks for PollWait).
// One timer event stands for its head; most polls are answered by a push
// long before their wait ends, and they leave the queue without an event
// of their own.

// isParked finds parked poll id among agent node's.
func (s *sim) isParked(node int, id uint64) (int, bool) {
	for i, p := range s.agents[node].parked {
		if p.id == id {
			return i, true
		}
	}
	return 0, false
}

// pollWaitEnd answers the parked polls whose wait is over and sets the
// timer for the next one still parked.
func (s *sim) pollWaitEnd(e event) {
	if e.gen != uint64(s.cpGen) || s.down != nil {
		return
	}
	n := s.waitsHead
	for ; n < len(s.waits); n++ {
		wt := s.waits[n]
		i, ok := s.isParked(wt.node, wt.id)
		if !ok {
			continue // answered meanwhile
		}
		if wt.at > s.now {
			break
		}
		a := s.agents[wt.node]
		p := a.parked[i]
		a.parked = append(a.parked[:i], a.parked[i+1:]...)
		s.answerPoll(a, p)
	}
	s.waitsHead = n
	if n > len(s.waits)/2 { // compact now and then: amortized O(1)
		s.waits, s.waitsHead = s.waits[:copy(s.waits, s.waits[n:])], 0
	}
	if s.waitsHead < len(s.waits) {
		s.push(event{at: s.waits[s.waitsHead].at, kind: evPollWaitEnd, gen: uint64(s.cpGen)})
	}
}

// answerPoll sends the reply to poll p: the messages after its cursor, at
// most a batch, maybe cut on the way.
func (s *sim) answerPoll(a *simAgent, p parkedPoll) {
	if !a.up || p.inc != a.inc {
		return // the polling process is gone, and its connection with it
	}
	w := s.newWire()
	if a.box != nil {
		w.batch = a.box.Take(p.epoch, p.after, fnet.PollBatchMax)
	} else {
		w.batch = fnet.PollReply{Epoch: s.cpEpoch, Messages: []fnet.PollMessage{}}
	}
	w.inc = p.inc
	w.m = fnet.Message{From: fnet.CPNode, To: a.id, Kind: kindPollReply, Seq: p.n}
	msgs := w.batch.Messages
	if k := len(msgs); k > 0 && s.o.Network.CutProbability > 0 && a.rng.Float64() < s.o.Network.CutProbability {
		w.batch.Messages, w.cut = msgs[:a.rng.IntN(k)], true
	}
	s.tr.begin(s.now, s.count, "poll_reply")
	s.tr.raw(a.trAgent)
	s.tr.int("poll", int64(p.n))
	s.tr.int("epoch", int64(w.batch.Epoch))
	s.tr.int("msgs", int64(len(msgs)))
	if len(msgs) > 0 {
		s.tr.int("first", int64(msgs[0].Seq))
	}
	if w.batch.Dropped > 0 {
		s.tr.int("dropped", int64(w.batch.Dropped))
	}
	if w.cut {
		s.tr.int("cut_after", int64(len(w.batch.Messages)))
	}
	s.tr.end()
	if !s.send(w, a, false) {
		s.pollLost(a, p.n)
		return
	}
	if s.arrival >= a.pollDeadline {
		s.pollLost(a, p.n)
	}
}

// deliverPoll is a poll or a reply at the end of the link. A reply the
// agent takes is traced by its batch line alone.
func (s *sim) deliverPoll(e event) {
	w := e.msg
	defer s.freeWire(w)
	a := s.agents[e.node]
	toCP := w.m.Kind == kindPoll
	dropped := ""
	switch {
	case !a.up || w.inc != a.inc:
		dropped = "agent crashed" // the process that polled is gone, with its connection
	case a.cut > 0:
		dropped = "partition"
	case toCP && (e.gen != uint64(s.cpGen) || s.down != nil):
		dropped = "cp restarted" // the connection was to a process that died meanwhile
	case !toCP && a.poll != w.m.Seq:
		dropped = "stale" // its request timed out, or this is a copy: nobody reads it
	case !toCP:
		s.takeBatch(a, w)
		return
	}
	s.traceEv(e, "deliver")
	s.traceRoute(a, &w.m)
	s.tr.int("poll", int64(w.m.Seq))
	s.tr.str("dropped", dropped)
	s.tr.end()
	switch dropped {
	case "":
		s.takePoll(a, w)
	case "partition":
		s.pollLost(a, w.m.Seq)
	case "cp restarted":
		if a.poll == w.m.Seq {
			s.pollFailed(a, w.m.Seq, "connection reset")
		}
	}
}
