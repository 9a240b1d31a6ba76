package net

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core"
)

func assignOut(task string) core.Outbound {
	return core.Outbound{To: "a1", Assign: &core.Assign{TaskID: core.TaskID(task), Attempt: 1}}
}

func TestMailboxRedeliversUntilAcked(t *testing.T) {
	b := NewMailbox(7, 10)
	for i := range 3 {
		b.Push(assignOut(fmt.Sprint("t", i)))
	}
	var in Inbox
	r := b.Take(in.Epoch, in.After, 2)
	if r.Epoch != 7 || len(r.Messages) != 2 || r.Messages[0].Seq != 1 {
		t.Fatalf("first take = %+v", r)
	}
	// The reply is lost: the same cursor gets the same batch again.
	r2 := b.Take(in.Epoch, in.After, 2)
	if len(r2.Messages) != 2 || r2.Messages[1].Seq != 2 {
		t.Fatalf("resent take = %+v", r2)
	}
	if got := in.Accept(r2); len(got) != 2 || in.After != 2 || in.Epoch != 7 {
		t.Fatalf("accept = %v, inbox %+v", got, in)
	}
	// A duplicate of the batch delivers nothing new.
	if got := in.Accept(r); len(got) != 0 {
		t.Fatalf("duplicate accepted %v", got)
	}
	b.Ack(in.Epoch, in.After)
	if b.Len() != 1 || !b.Pending(in.Epoch, in.After) {
		t.Fatalf("after ack: len %d pending %v", b.Len(), b.Pending(in.Epoch, in.After))
	}
	r3 := b.Take(in.Epoch, in.After, 10)
	if len(r3.Messages) != 1 || r3.Messages[0].Seq != 3 {
		t.Fatalf("third take = %+v", r3)
	}
	in.Accept(r3)
	b.Ack(in.Epoch, in.After)
	if b.Len() != 0 || b.Pending(in.Epoch, in.After) {
		t.Fatal("mailbox not empty after the last ack")
	}
}

func TestMailboxNewEpochSendsEverything(t *testing.T) {
	in := Inbox{Epoch: 3, After: 40} // cursor of a cp that restarted
	b := NewMailbox(9, 10)
	b.Push(assignOut("t1"))
	b.Ack(in.Epoch, in.After) // another epoch's ack forgets nothing
	if !b.Pending(in.Epoch, in.After) {
		t.Fatal("a message for a poll of an old epoch is not pending")
	}
	got := in.Accept(b.Take(in.Epoch, in.After, 10))
	if len(got) != 1 || in.Epoch != 9 || in.After != 1 {
		t.Fatalf("got %v, inbox %+v", got, in)
	}
}

func TestMailboxFullDropsAndCounts(t *testing.T) {
	b := NewMailbox(1, 2)
	for i := range 4 {
		b.Push(assignOut(fmt.Sprint("t", i)))
	}
	r := b.Take(0, 0, 10)
	if len(r.Messages) != 2 || r.Dropped != 2 {
		t.Fatalf("take = %+v", r)
	}
	if r := b.Take(0, 0, 10); r.Dropped != 0 {
		t.Fatalf("dropped counted twice: %+v", r)
	}
}

func TestPollRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    PollRequest
	}{
		{"no agent", PollRequest{}},
		{"negative wait", PollRequest{AgentID: "a", WaitMillis: -1}},
		{"long wait", PollRequest{AgentID: "a", WaitMillis: PollWaitMax + 1}},
		{"after without epoch", PollRequest{AgentID: "a", After: 3}},
		{"ack of another agent", PollRequest{AgentID: "a", Acks: []core.AssignAck{{AgentID: "b", TaskID: "t", Attempt: 1}}}},
		{"ack without attempt", PollRequest{AgentID: "a", Acks: []core.AssignAck{{TaskID: "t"}}}},
	} {
		if err := tc.p.Validate(); err == nil {
			t.Errorf("%s: valid", tc.name)
		}
	}
	ok := PollRequest{AgentID: "a", Epoch: 2, After: 3, WaitMillis: 100, Acks: []core.AssignAck{{TaskID: "t", Attempt: 1}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestMailboxExactlyOnceInOrder: whatever replies are lost or duplicated,
// and however the agent's acks race its next polls, the agent processes
// every message exactly once and in order, while the mailbox never holds
// more than it was given.
func TestMailboxExactlyOnceInOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := NewMailbox(5, 1000)
		var in Inbox
		pushed, processed := 0, 0
		var inflight []PollReply // replies on the wire, maybe duplicated
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for range steps {
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0: // the core produces messages
				for range rapid.IntRange(1, 5).Draw(t, "n") {
					b.Push(assignOut(fmt.Sprint("t", pushed)))
					pushed++
				}
			case 1: // a poll reaches the cp
				b.Ack(in.Epoch, in.After)
				inflight = append(inflight, b.Take(in.Epoch, in.After, rapid.IntRange(1, 8).Draw(t, "max")))
			case 2: // a reply is lost
				if len(inflight) > 0 {
					inflight = inflight[1:]
				}
			case 3: // a reply is duplicated
				if len(inflight) > 0 {
					inflight = append(inflight, inflight[0])
				}
			case 4: // a reply arrives
				if len(inflight) == 0 {
					continue
				}
				for _, m := range in.Accept(inflight[0]) {
					if want := fmt.Sprint("t", processed); string(m.Assign.TaskID) != want {
						t.Fatalf("processed %s, want %s", m.Assign.TaskID, want)
					}
					processed++
				}
				inflight = inflight[1:]
			}
			if b.Len() > pushed-processed+PollBatchMax && b.Len() > pushed {
				t.Fatalf("mailbox holds %d of %d pushed", b.Len(), pushed)
			}
		}
		// Quiet network: polls drain the rest.
		for range pushed + 1 {
			b.Ack(in.Epoch, in.After)
			for _, m := range in.Accept(b.Take(in.Epoch, in.After, 8)) {
				if want := fmt.Sprint("t", processed); string(m.Assign.TaskID) != want {
					t.Fatalf("processed %s, want %s", m.Assign.TaskID, want)
				}
				processed++
			}
		}
		b.Ack(in.Epoch, in.After)
		if processed != pushed || b.Len() != 0 {
			t.Fatalf("processed %d of %d, %d left", processed, pushed, b.Len())
		}
	})
}

// TestMailboxDropLeavesAGap: a message dropped from the middle leaves a gap
// in the sequence that Take, Ack and the Inbox handle.
func TestMailboxDropLeavesAGap(t *testing.T) {
	b := NewMailbox(5, 10)
	for _, id := range []core.TaskID{"a", "b", "c"} {
		b.Push(core.Outbound{To: "x", Assign: &core.Assign{TaskID: id, Attempt: 1}})
	}
	if n := b.Drop(func(m PollMessage) bool { return m.Assign.TaskID == "b" }); n != 1 || b.Len() != 2 {
		t.Fatalf("dropped %d, len %d", n, b.Len())
	}
	var in Inbox
	r := b.Take(0, 0, 10)
	got := in.Accept(r)
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 || in.After != 3 {
		t.Fatalf("accepted %+v, inbox %+v", got, in)
	}
	b.Ack(in.Epoch, in.After)
	if b.Len() != 0 || b.Pending(in.Epoch, in.After) {
		t.Fatalf("len %d after ack", b.Len())
	}
	b.Push(core.Outbound{To: "x", Cancel: &core.CancelTask{TaskID: "d", Attempt: 1}})
	if r := b.Take(in.Epoch, in.After, 10); len(r.Messages) != 1 || r.Messages[0].Seq != 4 {
		t.Fatalf("after the gap: %+v", r)
	}
}
