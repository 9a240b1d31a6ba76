package agent

// Fuzz target for the messages the cp sends an agent in a poll reply
// (assign and cancel): each input is one message of a reply, decoded and
// validated as the agent's poll does, then taken by a fresh Daemon (not
// running: its clock is a mock, so a sleep it accepts never fires) that
// already runs one attempt. The contract:
//
//   - no panic;
//   - a reply that does not decode or validate changes nothing;
//   - a cancel is never acked; an assignment is acked, by this agent, with
//     an ack the next poll may carry, or ignored (malformed) with no change;
//   - an assignment the agent declines (ack.accepted false) has a reason
//     and changes nothing beyond its rejection counter.
//
// Exec is not allowed here: a fuzzer must never start processes. Run it for a
// minute with
//
//	go test -run '^$' -fuzz '^FuzzAgentProtocol$' -fuzztime 60s ./agent/

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// fuzzDaemon is a daemon on a mock clock running attempt 2 of task "t-1".
func fuzzDaemon(t *testing.T) *Daemon {
	t.Helper()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	d, err := New(Options{ID: "fuzz-agent", Domain: "z1", Slots: 2, CPURL: "http://127.0.0.1:1",
		Token: testToken, Clock: mock, Registerer: reg, Gatherer: reg, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	ack := d.core.Assign(mock.Now(), core.Assign{TaskID: "t-1", Attempt: 2, Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 60_000},
		Deadline: mock.Now().Add(time.Hour)})
	d.mu.Unlock()
	if !ack.Accepted {
		t.Fatalf("setup assignment refused: %+v", ack)
	}
	return d
}

// fuzzAgentState is what a refusal must leave as it was.
func (d *Daemon) fuzzAgentState() string {
	st := d.Status()
	st.Stats.Rejected = 0 // a declined assignment is counted, nothing else
	raw, err := json.Marshal(struct {
		Status
		Sleeping int
	}{st, d.sleep.Running()})
	if err != nil {
		panic(err)
	}
	return string(raw)
}

func FuzzAgentProtocol(f *testing.F) {
	for _, seed := range []struct {
		cancel bool
		body   string
	}{
		{false, `{"task_id":"t-2","attempt":1,"spec":{"kind":"sleep","duration_ms":5},"deadline":"2026-01-01T01:00:00Z"}`},
		{false, `{"task_id":"t-1","attempt":2,"spec":{"kind":"sleep","duration_ms":60000}}`}, // duplicate delivery
		{false, `{"task_id":"t-1","attempt":1,"spec":{"kind":"sleep"}}`},                     // stale
		{false, `{"task_id":"t-1","attempt":3,"spec":{"kind":"sleep","duration_ms":1}}`},     // supersedes
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"exec","argv":["/bin/sh","-c","echo pwned"]}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"exec","argv":[]}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep","duration_ms":-5}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"teleport"}}`},
		{false, `{"task_id":"t-3","attempt":0,"spec":{"kind":"sleep"}}`},
		{false, `{"task_id":"","attempt":1,"spec":{"kind":"sleep"}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep"},"deadline":"yesterday"}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep"},"evil":true}`},
		{false, `{"task_id":"t-3","attempt":1e40}`},
		{false, `null`},
		{false, ``},
		{true, `{"task_id":"t-1","attempt":2,"reason":"moved"}`},
		{true, `{"task_id":"t-1","attempt":1}`},
		{true, `{"task_id":"t-9","attempt":1}`},
		{true, `{"task_id":"t-1","attempt":0}`},
		{true, `{"task_id":"t-1","attempt":2}{}`},
		{true, `{}`},
	} {
		f.Add(seed.cancel, []byte(seed.body), true)
	}
	f.Add(false, []byte(`{"task_id":"t-2","attempt":1,"spec":{"kind":"sleep","duration_ms":5}}`), false)
	f.Add(true, []byte(`{"task_id":"t-1","attempt":2}`), false)
	f.Fuzz(func(t *testing.T, cancel bool, body []byte, _ bool) {
		// The body is one message of a poll reply from the cp: the agent
		// takes it only if the reply decodes strictly and validates (as
		// net.HTTPClient.Poll checks), and then acks an assignment.
		d := fuzzDaemon(t)
		before := d.fuzzAgentState()
		field := "assign"
		if cancel {
			field = "cancel"
		}
		raw := append([]byte(`{"epoch":1,"messages":[{"seq":1,"`+field+`":`), body...)
		raw = append(raw, "}]}"...)
		var reply fnet.PollReply
		err := fnet.DecodeReply(bytes.NewReader(raw), fnet.PollReplyMax, &reply)
		if err == nil {
			err = reply.Validate()
		}
		if err != nil {
			if after := d.fuzzAgentState(); after != before {
				t.Fatalf("refused reply changed the agent")
			}
			return
		}
		var in fnet.Inbox
		acks := d.take(in.Accept(reply))
		switch {
		case cancel && len(acks) != 0:
			t.Fatalf("a cancel was acked: %+v", acks)
		case cancel:
		case len(acks) == 0:
			if after := d.fuzzAgentState(); after != before {
				t.Fatalf("ignored assignment changed the agent:\nbefore %s\nafter  %s", before, after)
			}
		default:
			ack := acks[0]
			if ack.AgentID != "fuzz-agent" {
				t.Fatalf("ack from %q", ack.AgentID)
			}
			if err := (&fnet.PollRequest{AgentID: "fuzz-agent", Acks: acks}).Validate(); err != nil {
				t.Fatalf("the ack would make the next poll invalid: %v", err)
			}
			if !ack.Accepted {
				if ack.Reason == "" {
					t.Fatalf("declined without a reason: %+v", ack)
				}
				if after := d.fuzzAgentState(); after != before {
					t.Fatalf("declined assignment changed the agent:\nbefore %s\nafter  %s", before, after)
				}
			}
		}
		if st := d.Status(); len(st.Running) > 2 {
			t.Fatalf("more attempts running than slots: %+v", st.Running)
		}
	})
}
