package net

import (
	"fmt"

	"github.com/fluxforge/fluxforge/core"
)

// The agent-initiated dispatch protocol. The cp never dials an agent: an
// agent long-polls PathPoll over its own connection, and the cp answers with
// the messages waiting for it (assignments and cancels, in order) as soon as
// there are any, or empty once the wait ends. Results and liveness keep
// travelling in heartbeats (PathHeartbeat), which an agent sends at once when
// a task finishes.
//
// Delivery is at least once and in order. Every message for an agent gets a
// sequence number in its Mailbox; the mailbox keeps a message until a later
// poll says it was processed (After), so a batch lost on the way (a cut
// connection, a poll that timed out) is sent again by the next poll, and a
// batch seen twice is skipped by the agent's Inbox. Sequence numbers belong
// to one mailbox epoch: a restarted cp starts a new epoch, and an agent that
// names another epoch than the mailbox's gets everything the mailbox holds.
// The core's fences (attempt numbers, the agent's own dedup of assignments)
// make a redelivered message harmless.

// PathPoll: agent → cp. Body PollRequest, response PollReply.
const PathPoll = "/v1/agent/poll"

// Bounds of the poll protocol.
const (
	// PollBatchMax bounds the messages in one reply.
	PollBatchMax = 256
	// PollWaitMax bounds how long the cp holds a poll; longer requests are
	// cut to it.
	PollWaitMax = 60_000 // ms
	// PollAcksMax bounds the acks one poll may carry.
	PollAcksMax = PollBatchMax
	// PollReplyMax bounds the bytes of a poll reply an agent reads: a full
	// batch of assignments with argv at the core's 64 KiB bound fits.
	PollReplyMax = 64 << 20
)

// PollRequest is an agent's long poll. Epoch and After name the last message
// the agent processed (zero at start); Acks answer the assignments among
// the messages up to After that it has not acknowledged yet.
type PollRequest struct {
	AgentID     core.AgentID     `json:"agent_id"`
	Incarnation uint64           `json:"incarnation"`
	Epoch       uint64           `json:"epoch,omitempty"`
	After       uint64           `json:"after,omitempty"`
	Acks        []core.AssignAck `json:"acks,omitempty"`
	// WaitMillis is how long the cp may hold the poll when nothing waits:
	// 0 answers at once; at most PollWaitMax.
	WaitMillis int64 `json:"wait_ms,omitempty"`
}

// Validate checks a poll request's bounds.
func (p *PollRequest) Validate() error {
	switch {
	case p.AgentID == "":
		return fmt.Errorf("%w: poll needs agent_id", ErrBadMessage)
	case p.WaitMillis < 0 || p.WaitMillis > PollWaitMax:
		return fmt.Errorf("%w: wait_ms %d must be in [0,%d]", ErrBadMessage, p.WaitMillis, PollWaitMax)
	case len(p.Acks) > PollAcksMax:
		return fmt.Errorf("%w: %d acks in one poll, at most %d", ErrBadMessage, len(p.Acks), PollAcksMax)
	case p.Epoch == 0 && p.After != 0:
		return fmt.Errorf("%w: after %d needs the epoch it belongs to", ErrBadMessage, p.After)
	}
	for i, a := range p.Acks {
		if a.AgentID != "" && a.AgentID != p.AgentID {
			return fmt.Errorf("%w: acks[%d] is for agent %q, not the polling agent %q", ErrBadMessage, i, a.AgentID, p.AgentID)
		}
		if a.TaskID == "" || a.Attempt < 1 {
			return fmt.Errorf("%w: acks[%d] needs task_id and attempt >= 1", ErrBadMessage, i)
		}
	}
	return nil
}

// PollMessage is one message of a poll reply: exactly one of Assign and
// Cancel is set.
type PollMessage struct {
	Seq    uint64           `json:"seq"`
	Assign *core.Assign     `json:"assign,omitempty"`
	Cancel *core.CancelTask `json:"cancel,omitempty"`
}

// PollReply answers a poll: the mailbox's epoch and the messages after the
// poll's cursor, oldest first.
type PollReply struct {
	Epoch    uint64        `json:"epoch"`
	Messages []PollMessage `json:"messages"`
	// Dropped counts messages the mailbox dropped since the last reply
	// because it was full (the core recovers: an undelivered assignment is
	// requeued after AssignTimeout, a cancel repeated in a heartbeat reply).
	Dropped uint64 `json:"dropped,omitempty"`
}

// Mailbox holds the messages for one agent until a poll says they were
// processed. It is a plain value with no locking and no clock, so the cp
// (under its own lock) and the simulator share it.
type Mailbox struct {
	epoch   uint64
	next    uint64        // seq of the next message pushed
	msgs    []PollMessage // unacknowledged, oldest first, seqs increasing
	max     int
	dropped uint64
}

// NewMailbox returns an empty mailbox of epoch (nonzero: the cp's, new at
// each start) holding at most max messages.
func NewMailbox(epoch uint64, max int) *Mailbox {
	if epoch == 0 {
		panic("net: mailbox epoch must be nonzero")
	}
	return &Mailbox{epoch: epoch, next: 1, max: max}
}

// Epoch is the mailbox's epoch.
func (b *Mailbox) Epoch() uint64 { return b.epoch }

// Len is the number of messages held.
func (b *Mailbox) Len() int { return len(b.msgs) }

// Push appends o's message. It reports false, dropping it, when the mailbox
// is full.
func (b *Mailbox) Push(o core.Outbound) bool {
	if len(b.msgs) >= b.max {
		b.dropped++
		return false
	}
	b.msgs = append(b.msgs, PollMessage{Seq: b.next, Assign: o.Assign, Cancel: o.Cancel})
	b.next++
	return true
}

// Ack forgets the messages a poll of epoch says it processed (seq <= after).
// A poll of another epoch acknowledges nothing.
func (b *Mailbox) Ack(epoch, after uint64) {
	if epoch != b.epoch {
		return
	}
	n := 0
	for n < len(b.msgs) && b.msgs[n].Seq <= after {
		n++
	}
	if n == 0 {
		return
	}
	clear(b.msgs[:n])
	b.msgs = b.msgs[n:]
	if len(b.msgs) == 0 {
		b.msgs = nil // let the backing array go
	}
}

// Drop forgets the messages held for which void reports true (an
// assignment the core took back before the agent polled it) and returns how
// many went. The others keep their seqs: a gap in the sequence is fine for
// Ack, Take and the agent's Inbox.
func (b *Mailbox) Drop(void func(PollMessage) bool) int {
	kept := b.msgs[:0]
	for _, m := range b.msgs {
		if !void(m) {
			kept = append(kept, m)
		}
	}
	n := len(b.msgs) - len(kept)
	clear(b.msgs[len(kept):])
	b.msgs = kept
	if len(b.msgs) == 0 {
		b.msgs = nil
	}
	return n
}

// Pending reports whether a poll of epoch with cursor after has something
// to take.
func (b *Mailbox) Pending(epoch, after uint64) bool {
	if epoch != b.epoch {
		return len(b.msgs) > 0
	}
	return len(b.msgs) > 0 && b.msgs[len(b.msgs)-1].Seq > after
}

// Take returns the reply for a poll of epoch with cursor after: up to max
// messages after the cursor (everything held for another epoch). It keeps
// them until acknowledged. Call Ack first.
func (b *Mailbox) Take(epoch, after uint64, max int) PollReply {
	i := 0
	if epoch == b.epoch {
		for i < len(b.msgs) && b.msgs[i].Seq <= after {
			i++
		}
	}
	end := min(len(b.msgs), i+max)
	r := PollReply{Epoch: b.epoch, Messages: append([]PollMessage(nil), b.msgs[i:end]...), Dropped: b.dropped}
	b.dropped = 0
	if r.Messages == nil {
		r.Messages = []PollMessage{}
	}
	return r
}

// Inbox is an agent's side of the protocol: the cursor its polls carry and
// the filter that skips messages it has already processed.
type Inbox struct {
	Epoch uint64 // epoch of the last reply taken
	After uint64 // seq of the last message processed in Epoch
}

// Accept returns the messages of reply the agent has not processed yet and
// moves the cursor past them. A reply of a new epoch (a restarted cp) starts
// over: all of its messages are new.
func (in *Inbox) Accept(r PollReply) []PollMessage {
	if r.Epoch != in.Epoch {
		in.Epoch, in.After = r.Epoch, 0
	}
	out := r.Messages[:0:0]
	for _, m := range r.Messages {
		if m.Seq <= in.After {
			continue // seen in an earlier (duplicated or resent) batch
		}
		out = append(out, m)
		in.After = m.Seq
	}
	return out
}

// Validate checks that exactly one payload is set.
func (m *PollMessage) Validate() error {
	if (m.Assign == nil) == (m.Cancel == nil) {
		return fmt.Errorf("%w: poll message %d needs exactly one of assign and cancel", ErrBadMessage, m.Seq)
	}
	if m.Seq == 0 {
		return fmt.Errorf("%w: poll message without seq", ErrBadMessage)
	}
	return nil
}

// Validate checks a reply's epoch, size and messages, as an agent must
// before it takes any of them.
func (r *PollReply) Validate() error {
	if r.Epoch == 0 {
		return fmt.Errorf("%w: poll reply without epoch", ErrBadMessage)
	}
	if len(r.Messages) > PollBatchMax {
		return fmt.Errorf("%w: poll reply of %d messages, at most %d", ErrBadMessage, len(r.Messages), PollBatchMax)
	}
	for i := range r.Messages {
		if err := r.Messages[i].Validate(); err != nil {
			return err
		}
	}
	return nil
}
