package net

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/fluxforge/fluxforge/core"
)

// FuzzDecodeMessage fuzzes the protocol codec: Decode with a bound, then
// Message.Validate. Decode never panics, refuses with ErrTooLarge or
// ErrBadMessage only, accepts nothing longer than its bound or that is not
// exactly one JSON value, and answers the same however the body is split
// into reads; a message that decodes and validates survives an
// Encode/Decode round trip unchanged and still validates.
//
//	go test -run '^$' -fuzz '^FuzzDecodeMessage$' -fuzztime 60s ./net/
func FuzzDecodeMessage(f *testing.F) {
	hb := `{"agent_id":"a1","domain":"z1","slots":2,"incarnation":3,"seq":4,"running":[{"task_id":"t-1","attempt":1}]}`
	for _, seed := range []string{
		`{"from":"a1","to":"cp","kind":"heartbeat","seq":4,"heartbeat":` + hb + `}`,
		`{"from":"cp","to":"a1","kind":"heartbeat_reply","seq":4,"heartbeat_reply":{"ack_results":[{"task_id":"t-1","attempt":1}]}}`,
		`{"from":"cp","to":"a1","kind":"assign","addr":"http://127.0.0.1:9090","assign":{"task_id":"t-1","attempt":1,"spec":{"kind":"sleep","duration_ms":5},"deadline":"2026-01-01T00:00:00Z"}}`,
		`{"from":"a1","to":"cp","kind":"assign_ack","assign_ack":{"agent_id":"a1","task_id":"t-1","attempt":1,"accepted":true}}`,
		`{"from":"cp","to":"a1","kind":"cancel","cancel":{"task_id":"t-1","attempt":1,"reason":"user"}}`,
		`{"kind":"cancel","assign":{"task_id":"t-1","attempt":1}}`,
		`{"kind":"heartbeat","heartbeat":` + hb + `,"cancel":{"task_id":"t-1","attempt":1}}`,
		`{"kind":"telepathy"}`,
		`{"kind":"heartbeat"}`,
		`{"kind":"heartbeat","heartbeat":null}`,
		`{"kind":"assign","assign":{}} `,
		`{"kind":"assign","assign":{}} {}`,
		`{"kind":"assign","evil":1}`,
		`{"seq":-1}`,
		`{"seq":1e400}`,
		`"heartbeat"`,
		`[`,
		``,
		"{}\n\n\n\n",
	} {
		f.Add([]byte(seed), uint16(4096))
	}
	f.Add([]byte(`{"kind":"cancel","cancel":{"task_id":"t-1","attempt":1}}`), uint16(10))
	f.Add(append([]byte(`{"kind":"cancel","cancel":{"task_id":"t-1","attempt":1}}`), bytes.Repeat([]byte(" "), 1200)...), uint16(700))
	f.Fuzz(func(t *testing.T, body []byte, max16 uint16) {
		max := int64(max16)
		var m Message
		err := Decode(bytes.NewReader(body), max, &m)
		// The same answer when the body arrives a byte at a time.
		var m1 Message
		err1 := Decode(iotest.OneByteReader(bytes.NewReader(body)), max, &m1)
		// (A body both too large and malformed may be refused for either.)
		if (err == nil) != (err1 == nil) {
			t.Fatalf("Decode depends on read sizes: %v vs %v", err, err1)
		}
		for _, err := range []error{err, err1} {
			switch {
			case err == nil:
			case errors.Is(err, ErrTooLarge):
				if int64(len(body)) <= max {
					t.Fatalf("Decode called a %d-byte body larger than its bound %d", len(body), max)
				}
			case !errors.Is(err, ErrBadMessage):
				t.Fatalf("Decode error is neither ErrTooLarge nor ErrBadMessage: %v", err)
			}
		}
		if err != nil {
			return
		}
		if int64(len(body)) > max {
			t.Fatalf("Decode accepted %d bytes with a bound of %d", len(body), max)
		}
		if !json.Valid(body) {
			t.Fatalf("Decode accepted what is not exactly one JSON value: %q", body)
		}
		if !bytes.Equal(Encode(m), Encode(m1)) {
			t.Fatalf("Decode depends on read sizes: %s vs %s", Encode(m), Encode(m1))
		}
		if err := m.Validate(); err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("Validate error is not ErrBadMessage: %v", err)
			}
			return
		}
		raw := Encode(m)
		var back Message
		if err := Decode(bytes.NewReader(raw), BodyMax, &back); err != nil {
			t.Fatalf("an encoded valid message does not decode: %v: %s", err, raw)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("a round-tripped valid message does not validate: %v: %s", err, raw)
		}
		if again := Encode(back); !bytes.Equal(again, raw) {
			t.Fatalf("round trip changed the message:\n%s\n%s", raw, again)
		}
		// The payload alone, as the HTTP protocol carries it, decodes too.
		var payload any
		switch m.Kind {
		case KindHeartbeat:
			payload = new(core.HeartbeatInput)
		case KindHeartbeatReply:
			payload = new(core.HeartbeatReply)
		case KindAssign:
			payload = new(core.Assign)
		case KindAssignAck:
			payload = new(core.AssignAck)
		case KindCancel:
			payload = new(core.CancelTask)
		}
		inner := map[Kind]any{KindHeartbeat: m.Heartbeat, KindHeartbeatReply: m.HeartbeatReply, KindAssign: m.Assign,
			KindAssignAck: m.AssignAck, KindCancel: m.Cancel}[m.Kind]
		if err := Decode(bytes.NewReader(Encode(inner)), BodyMax, payload); err != nil {
			t.Fatalf("%s payload does not decode on its own: %v", m.Kind, err)
		}
	})
}

// FuzzFastDecoders: Decode and DecodeReply answer every body exactly as
// encoding/json alone does (the same error text, the same value) for the
// types with a fast decoder, and a heartbeat's and a submission's log
// bodies unwrap as json.Unmarshal reads them.
//
//	go test -run '^$' -fuzz '^FuzzFastDecoders$' -fuzztime 60s ./net/
func FuzzFastDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"agent_id":"a1","domain":"z1","slots":2,"incarnation":3,"seq":4,"running":[{"task_id":"t-1","attempt":1}]}` + "\n",
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":7,"seq":3,"running":[],"results":[{"task_id":"t-1","attempt":1,"outcome":"SUCCEEDED","exit_code":0,"error":"\u003c\u2028","duration_ms":5}],"rtt_ms":2,"stopping":true,"allows_exec":true,"heartbeat_interval_ms":5000,"self_fencing":true}`,
		`{"agent_id":"a1","incarnation":3,"epoch":9,"after":2,"acks":[{"agent_id":"a1","task_id":"t-1","attempt":1,"accepted":true,"heartbeat_seq":4}],"wait_ms":30000}`,
		`{"acked":[{"task_id":"t-1","attempt":1}],"cancel":null,"registered":true,"heartbeat_interval_ms":5000,"lease_ms":15000}`,
		`{"epoch":9,"messages":[{"seq":1,"assign":{"task_id":"t-1","attempt":1,"spec":{"kind":"sleep","argv":["a"],"duration_ms":5,"priority":"low","timeout_seconds":60,"max_attempts":3},"deadline":"2026-01-01T00:00:00Z","incarnation":3,"seq_limit":5}},{"seq":2,"cancel":{"task_id":"t-1","attempt":1,"reason":"user"}}],"dropped":1}`,
		`{"agent_id":"a1","agent_id":"a2"}`,
		`{"AGENT_ID":"a1","seq":-0,"slots":1e2}`,
		`{"seq":18446744073709551616}`,
		`{"agent_id":"\ud83d\ude00\ud800"}`,
		"{\"agent_id\":\"\xff\"}",
		`{"running":[{"task_id":"t","attempt":1},{"task_id":"t","attempt":01}]}`,
		`{} x`,
		`{"spec":{"kind":"sleep","priority":"normal","timeout_seconds":0,"max_attempts":0},"by":"client"}`,
		`{"spec":{"kind":"exec","argv":["/bin/echo","\u003chi\u003e"],"duration_ms":5,"domain":"z1","priority":"low","timeout_seconds":60,"max_attempts":3},"idempotency_key":"k1","by":"ops"}`,
		`{"spec":{"kind":"sleep","priority":"priority(7)"}}`,
		`{"spec":{"kind":"sleep","argv":null,"priority":""},"by":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, c := range []struct {
			fresh  func() any
			strict bool
		}{
			{func() any { return new(core.HeartbeatInput) }, true},
			{func() any { return new(PollRequest) }, true},
			{func() any { return new(core.HeartbeatReply) }, false},
			{func() any { return new(PollReply) }, false},
		} {
			fast, ref := c.fresh(), c.fresh()
			var err error
			if c.strict {
				err = Decode(bytes.NewReader(body), BodyMax, fast)
			} else {
				err = DecodeReply(bytes.NewReader(body), BodyMax, fast)
			}
			refErr := decode(bytes.NewReader(body), BodyMax, ref, c.strict)
			if fmt.Sprint(err) != fmt.Sprint(refErr) || !reflect.DeepEqual(fast, ref) {
				t.Fatalf("%T: fast path %+v (%v), encoding/json %+v (%v)", fast, fast, err, ref, refErr)
			}
		}
		var ref core.HeartbeatInput
		refErr := json.Unmarshal(body, &ref)
		in, err := core.Envelope{Kind: "heartbeat", Body: body}.Unwrap()
		if (err == nil) != (refErr == nil) || err == nil && !reflect.DeepEqual(in, ref) {
			t.Fatalf("Unwrap: %+v (%v), json.Unmarshal %+v (%v)", in, err, ref, refErr)
		}
		var refSub core.SubmitInput
		refErr = json.Unmarshal(body, &refSub)
		in, err = core.Envelope{Kind: "submit", Body: body}.Unwrap()
		if (err == nil) != (refErr == nil) || err == nil && !reflect.DeepEqual(in, refSub) {
			t.Fatalf("Unwrap of a submission: %+v (%v), json.Unmarshal %+v (%v)", in, err, refSub, refErr)
		}
	})
}
