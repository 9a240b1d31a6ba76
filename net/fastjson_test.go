package net

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/internal/jsontest"
)

// The fast codecs (fastjson.go, core/messagejson.go, core/jsonr) against
// encoding/json: on random messages, the fast encoders write exactly
// json.Encoder's bytes and the fast decoders read them (and json.Marshal's)
// into exactly encoding/json's values; on random mutations of the text
// (white space, key order, unknown, repeated and differently cased keys,
// escapes, nulls, big, negative and fractional numbers, wrong types,
// truncation, stray bytes) Decode and DecodeReply answer exactly as
// encoding/json alone does (the same error text, the same value), and
// where the fast decoder takes the text encoding/json reads it the same.

// refEncode is Encode without its fast path.
func refEncode(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// The JSON harness is shared with the cp's request decoders (package
// jsontest).
var (
	drawStr = jsontest.String
	mutate  = jsontest.Mutate
	fill    = jsontest.Fill
)

func drawLease(t *rapid.T) core.Lease {
	return core.Lease{TaskID: core.TaskID(drawStr.Draw(t, "task")), Attempt: rapid.Int().Draw(t, "attempt")}
}

func drawLeases(t *rapid.T, label string) []core.Lease {
	if rapid.IntRange(0, 4).Draw(t, label+"_nil") == 0 {
		return nil
	}
	return rapid.SliceOfN(rapid.Custom(drawLease), 0, 4).Draw(t, label)
}

func drawHeartbeat(t *rapid.T) core.HeartbeatInput {
	h := core.HeartbeatInput{
		AgentID: core.AgentID(drawStr.Draw(t, "agent")), Domain: drawStr.Draw(t, "domain"),
		Slots: rapid.Int().Draw(t, "slots"), Address: drawStr.Draw(t, "address"),
		Incarnation: rapid.Uint64().Draw(t, "inc"), Seq: rapid.Uint64().Draw(t, "seq"),
		Running: drawLeases(t, "running"), RTTMillis: rapid.Int64().Draw(t, "rtt"),
		Stopping: rapid.Bool().Draw(t, "stopping"), AllowsExec: rapid.Bool().Draw(t, "exec"),
		HeartbeatIntervalMillis: rapid.Int64().Draw(t, "interval"), SelfFencing: rapid.Bool().Draw(t, "fencing"),
	}
	h.Results = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) core.Result {
		return core.Result{TaskID: core.TaskID(drawStr.Draw(t, "task")), Attempt: rapid.Int().Draw(t, "attempt"),
			Outcome: core.Outcome(drawStr.Draw(t, "outcome")), ExitCode: rapid.Int().Draw(t, "exit"),
			Error: drawStr.Draw(t, "error"), Output: drawStr.Draw(t, "output"), DurationMS: rapid.Int64().Draw(t, "ms")}
	}), 0, 3).Draw(t, "results")
	return h
}

func drawAck(t *rapid.T) core.AssignAck {
	return core.AssignAck{AgentID: core.AgentID(drawStr.Draw(t, "agent")), TaskID: core.TaskID(drawStr.Draw(t, "task")),
		Attempt: rapid.Int().Draw(t, "attempt"), Accepted: rapid.Bool().Draw(t, "accepted"), Reason: drawStr.Draw(t, "reason"),
		Retryable: rapid.Bool().Draw(t, "retryable"), HeartbeatSeq: rapid.Uint64().Draw(t, "hbseq")}
}

func drawPollRequest(t *rapid.T) PollRequest {
	return PollRequest{AgentID: core.AgentID(drawStr.Draw(t, "agent")), Incarnation: rapid.Uint64().Draw(t, "inc"),
		Epoch: rapid.Uint64().Draw(t, "epoch"), After: rapid.Uint64().Draw(t, "after"),
		Acks: rapid.SliceOfN(rapid.Custom(drawAck), 0, 3).Draw(t, "acks"), WaitMillis: rapid.Int64().Draw(t, "wait")}
}

func drawHeartbeatReply(t *rapid.T) core.HeartbeatReply {
	return core.HeartbeatReply{Acked: drawLeases(t, "acked"), Cancel: drawLeases(t, "cancel"),
		Registered: rapid.Bool().Draw(t, "registered"), HeartbeatIntervalMillis: rapid.Int64().Draw(t, "interval"),
		LeaseMillis: rapid.Int64().Draw(t, "lease")}
}

func drawTime(t *rapid.T) time.Time {
	at := time.Unix(rapid.Int64Range(-62135596800+86400, 253402300799-86400).Draw(t, "sec"), rapid.Int64Range(0, 999_999_999).Draw(t, "nsec"))
	switch rapid.IntRange(0, 2).Draw(t, "zone") {
	case 0:
		return at.UTC()
	case 1:
		return at.In(time.FixedZone("", rapid.IntRange(-14*60, 14*60).Draw(t, "offmin")*60))
	}
	return time.Time{}
}

// drawSpec draws a task spec with a valid priority (the only ones that
// decode) and a nil, empty or full argv.
func drawSpec(t *rapid.T) core.TaskSpec {
	s := core.TaskSpec{Kind: drawStr.Draw(t, "kind"), Argv: rapid.SliceOfN(drawStr, 0, 3).Draw(t, "argv"),
		DurationMS: rapid.Int64().Draw(t, "ms"), Domain: drawStr.Draw(t, "domain"),
		Priority: core.Priority(rapid.IntRange(0, 2).Draw(t, "prio")), TimeoutSeconds: rapid.Int().Draw(t, "timeout"),
		MaxAttempts: rapid.Int().Draw(t, "max")}
	if rapid.IntRange(0, 4).Draw(t, "argv_nil") == 0 {
		s.Argv = nil
	}
	return s
}

func drawSubmit(t *rapid.T) core.SubmitInput {
	return core.SubmitInput{Spec: drawSpec(t), IdempotencyKey: drawStr.Draw(t, "key"), By: drawStr.Draw(t, "by")}
}

func drawPollReply(t *rapid.T) PollReply {
	msg := rapid.Custom(func(t *rapid.T) PollMessage {
		m := PollMessage{Seq: rapid.Uint64().Draw(t, "seq")}
		if rapid.Bool().Draw(t, "assign") {
			m.Assign = &core.Assign{TaskID: core.TaskID(drawStr.Draw(t, "task")), Attempt: rapid.Int().Draw(t, "attempt"),
				Spec: drawSpec(t), Deadline: drawTime(t), Incarnation: rapid.Uint64().Draw(t, "inc"), SeqLimit: rapid.Uint64().Draw(t, "limit")}
		}
		if rapid.Bool().Draw(t, "cancel") {
			m.Cancel = &core.CancelTask{TaskID: core.TaskID(drawStr.Draw(t, "task")), Attempt: rapid.Int().Draw(t, "attempt"),
				Reason: drawStr.Draw(t, "reason")}
		}
		return m
	})
	r := PollReply{Epoch: rapid.Uint64().Draw(t, "epoch"), Messages: rapid.SliceOfN(msg, 0, 3).Draw(t, "messages"),
		Dropped: rapid.Uint64().Draw(t, "dropped")}
	if rapid.IntRange(0, 4).Draw(t, "nil") == 0 {
		r.Messages = nil
	}
	return r
}

// codecCase is one fast-path type: how to draw a value, make a fresh one
// and whether its decoding is strict (Decode) or lenient (DecodeReply).
type codecCase struct {
	draw   func(*rapid.T) any
	fresh  func() any
	strict bool
	encode bool // Encode has a fast path for it
}

var codecCases = map[string]codecCase{
	"heartbeat":  {func(t *rapid.T) any { return drawHeartbeat(t) }, func() any { return new(core.HeartbeatInput) }, true, true},
	"poll":       {func(t *rapid.T) any { return drawPollRequest(t) }, func() any { return new(PollRequest) }, true, true},
	"hb_reply":   {func(t *rapid.T) any { return drawHeartbeatReply(t) }, func() any { return new(core.HeartbeatReply) }, false, true},
	"poll_reply": {func(t *rapid.T) any { return drawPollReply(t) }, func() any { return new(PollReply) }, false, true},
}

func decodeBoth(c codecCase, text []byte, max int64) (fast, ref any, fastErr, refErr error) {
	fast, ref = c.fresh(), c.fresh()
	if c.strict {
		fastErr = Decode(bytes.NewReader(text), max, fast)
	} else {
		fastErr = DecodeReply(bytes.NewReader(text), max, fast)
	}
	refErr = decode(bytes.NewReader(text), max, ref, c.strict)
	return fast, ref, fastErr, refErr
}

// TestFastCodecsMatchEncodingJSON: random values, encoded by both paths
// (and by json.Marshal, as the log writes bodies), decode by both paths.
func TestFastCodecsMatchEncodingJSON(t *testing.T) {
	for name, c := range codecCases {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				v := c.draw(t)
				want := refEncode(v)
				if c.encode {
					got, ok := encodeFast(v)
					if !ok || !bytes.Equal(got, want) {
						t.Fatalf("fast encoding:\n got %s\nwant %s", got, want)
					}
				}
				if !bytes.Equal(Encode(v), want) {
					t.Fatalf("Encode:\n got %s\nwant %s", Encode(v), want)
				}
				marshaled, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				for _, text := range [][]byte{want, marshaled} {
					ref := c.fresh()
					if err := json.Unmarshal(text, ref); err != nil {
						t.Fatal(err)
					}
					fast := c.fresh()
					if !fastDecode(text, fast) {
						t.Fatalf("fast decoder declined what encoding/json writes: %s", text)
					}
					if !reflect.DeepEqual(fast, ref) {
						t.Fatalf("fast decoder:\n got %+v\nwant %+v\nof %s", fast, ref, text)
					}
					f, r, ferr, rerr := decodeBoth(c, text, BodyMax)
					if ferr != nil || rerr != nil || !reflect.DeepEqual(f, r) {
						t.Fatalf("decode: %+v (%v)\nwant %+v (%v)", f, ferr, r, rerr)
					}
				}
			})
		})
	}
}

// TestFastEncodersOnOddValues: a poll reply whose assignments carry what
// the protocol never sends (a priority out of range, a deadline in year 0
// or 10000 in its zone, a zone offset with seconds or of a day, the zero
// time) is still written as encoding/json writes it, by the fast path or
// by its fallback; one that encoding/json refuses is refused too.
func TestFastEncodersOnOddValues(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := drawPollReply(t)
		for i := range r.Messages {
			if a := r.Messages[i].Assign; a != nil {
				a.Spec.Priority = core.Priority(rapid.Int8().Draw(t, "odd_prio"))
				a.Deadline = drawOddTime(t)
			}
		}
		want, wantPanic := tryEncode(refEncode, r)
		got, gotPanic := tryEncode(Encode, r)
		if gotPanic != wantPanic || !bytes.Equal(got, want) {
			t.Fatalf("Encode:\n got %s (panic %v)\nwant %s (panic %v)", got, gotPanic, want, wantPanic)
		}
	})
}

// drawOddTime draws a time at the edges of what time.Time's MarshalJSON
// writes.
func drawOddTime(t *rapid.T) time.Time {
	at := time.Date(rapid.SampledFrom([]int{0, 1, 2026, 9999, 10000}).Draw(t, "year"), time.Month(rapid.IntRange(1, 12).Draw(t, "month")),
		rapid.IntRange(1, 31).Draw(t, "day"), rapid.IntRange(0, 23).Draw(t, "hour"), 0, 0, rapid.IntRange(0, 999_999_999).Draw(t, "ns"), time.UTC)
	off := rapid.SampledFrom([]int{0, 59, -59, 3600 + 30, 24*3600 - 60, 24 * 3600, -24 * 3600, -(24*3600 - 60)}).Draw(t, "off")
	switch rapid.IntRange(0, 2).Draw(t, "odd_zone") {
	case 0:
		return at.In(time.FixedZone("z", off))
	case 1:
		return time.Time{}
	}
	return at
}

// tryEncode is enc(v), or whether it panicked.
func tryEncode(enc func(any) []byte, v any) (b []byte, panicked bool) {
	defer func() {
		if recover() != nil {
			b, panicked = nil, true
		}
	}()
	return enc(v), false
}

// TestWrapMatchesJSONMarshal: the bodies core.Wrap writes by hand (a
// heartbeat, an assignment ack, a submission, as values and as pointers)
// are json.Marshal's bytes, HTML escapes included, for random values; a
// submission's priority may be any int8 (json.Marshal writes the text of
// one out of range too).
func TestWrapMatchesJSONMarshal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hb, ack, sub := drawHeartbeat(t), drawAck(t), drawSubmit(t)
		if rapid.Bool().Draw(t, "empty_running") {
			hb.Running = []core.Lease{}
		}
		if rapid.Bool().Draw(t, "odd_prio") {
			sub.Spec.Priority = core.Priority(rapid.Int8().Draw(t, "prio8"))
		}
		for _, in := range []core.Input{hb, &hb, ack, &ack, sub, &sub} {
			checkWrap(t, in)
		}
	})
}

// checkWrap: core.Wrap's body of in is json.Marshal's.
func checkWrap(t interface{ Fatalf(string, ...any) }, in core.Input) {
	if got, want := core.Wrap(time.Time{}, in).Body, mustMarshal(in); !bytes.Equal(got, want) {
		t.Fatalf("Wrap of %T:\n got %s\nwant %s", in, got, want)
	}
}

// TestFastDecodersFollowEncodingJSONOnMutations: mutated texts decode
// exactly as encoding/json decodes them, errors included; the Envelope's
// heartbeat and assign_ack bodies too (json.Unmarshal, lenient).
func TestFastDecodersFollowEncodingJSONOnMutations(t *testing.T) {
	for name, c := range codecCases {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				text := mutate(t, json.RawMessage(refEncode(c.draw(t))))
				max := int64(BodyMax)
				if rapid.IntRange(0, 9).Draw(t, "small_max") == 0 {
					max = int64(rapid.IntRange(0, len(text)+2).Draw(t, "max"))
				}
				f, r, ferr, rerr := decodeBoth(c, text, max)
				if fmt.Sprint(ferr) != fmt.Sprint(rerr) || !reflect.DeepEqual(f, r) {
					t.Fatalf("decode of %q:\n fast path %+v (%v)\nencoding/json %+v (%v)", text, f, ferr, r, rerr)
				}
				fast := c.fresh()
				ok := fastDecode(text, fast)
				ref := c.fresh()
				err := json.Unmarshal(text, ref)
				if ok && (err != nil || !reflect.DeepEqual(fast, ref)) {
					t.Fatalf("fast decoder took %q as %+v; json.Unmarshal: %+v (%v)", text, fast, ref, err)
				}
				if name == "heartbeat" {
					checkUnwrap(t, "heartbeat", text, new(core.HeartbeatInput))
				}
			})
		})
	}
	rapid.Check(t, func(t *rapid.T) {
		checkUnwrap(t, "assign_ack", mutate(t, mustMarshal(drawAck(t))), new(core.AssignAck))
	})
	rapid.Check(t, func(t *rapid.T) {
		sub := mustMarshal(drawSubmit(t))
		if _, ok := core.DecodeSubmit(sub); !ok {
			t.Fatalf("DecodeSubmit declined what json.Marshal writes: %s", sub)
		}
		checkUnwrap(t, "submit", sub, new(core.SubmitInput))
		text := mutate(t, sub)
		checkUnwrap(t, "submit", text, new(core.SubmitInput))
		var ref core.SubmitInput
		err := json.Unmarshal(text, &ref)
		if got, ok := core.DecodeSubmit(text); ok && (err != nil || !reflect.DeepEqual(got, ref)) {
			t.Fatalf("DecodeSubmit took %q as %+v; json.Unmarshal: %+v (%v)", text, got, ref, err)
		}
	})
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// checkUnwrap: an envelope of kind with body text unwraps as
// json.Unmarshal reads the body into ref.
func checkUnwrap(t *rapid.T, kind string, text []byte, ref any) {
	refErr := json.Unmarshal(text, ref)
	in, err := core.Envelope{Kind: kind, Body: text}.Unwrap()
	switch {
	case refErr != nil:
		if err == nil || !strings.HasSuffix(err.Error(), refErr.Error()) {
			t.Fatalf("Unwrap of %q: %v, want the error %v", text, err, refErr)
		}
	case err != nil || !reflect.DeepEqual(in, reflect.ValueOf(ref).Elem().Interface()):
		t.Fatalf("Unwrap of %q: %+v (%v), want %+v", text, in, err, ref)
	}
}

// TestFastCodecsKnowEveryField: a value with every field set (found by
// reflection, so a field added later is set too) goes through the fast
// encoder and decoder unchanged: a codec that does not know a field fails
// here rather than dropping it.
func TestFastCodecsKnowEveryField(t *testing.T) {
	for name, c := range codecCases {
		v := c.fresh()
		fill(reflect.ValueOf(v).Elem())
		want := refEncode(v)
		if c.encode {
			if got, ok := encodeFast(v); !ok || !bytes.Equal(got, want) {
				t.Errorf("%s: fast encoding:\n got %s\nwant %s", name, got, want)
			}
		}
		got := c.fresh()
		if !fastDecode(want, got) || !reflect.DeepEqual(got, v) {
			t.Errorf("%s: fast decoding of %s: %+v, want %+v", name, want, got, v)
		}
	}
	for _, v := range []core.Input{new(core.HeartbeatInput), new(core.AssignAck), new(core.SubmitInput)} {
		fill(reflect.ValueOf(v).Elem())
		checkWrap(t, v)
	}
	sub := new(core.SubmitInput)
	fill(reflect.ValueOf(sub).Elem())
	if got, ok := core.DecodeSubmit(mustMarshal(sub)); !ok || !reflect.DeepEqual(got, *sub) {
		t.Errorf("DecodeSubmit of %s: %+v (%v), want %+v", mustMarshal(sub), got, ok, sub)
	}
	for kind, v := range map[string]any{"assign_ack": new(core.AssignAck), "submit": new(core.SubmitInput)} {
		fill(reflect.ValueOf(v).Elem())
		in, err := core.Envelope{Kind: kind, Body: mustMarshal(v)}.Unwrap()
		if err != nil || !reflect.DeepEqual(in, reflect.ValueOf(v).Elem().Interface()) {
			t.Errorf("%s: %+v (%v), want %+v", kind, in, err, v)
		}
	}
}

// TestDecodeFastKeepsReadErrors: a body that fails while being read gets
// encoding/json's answer for the bytes read and that error.
func TestDecodeFastKeepsReadErrors(t *testing.T) {
	body := []byte(`{"agent_id":"a1","domain":"z1","slots":1,"running":[]}`)
	for _, cut := range []int{0, 10, len(body)} {
		r := io.MultiReader(bytes.NewReader(body[:cut]), errReader{io.ErrUnexpectedEOF})
		var got, want core.HeartbeatInput
		err := Decode(r, BodyMax, &got)
		wantErr := decode(io.MultiReader(bytes.NewReader(body[:cut]), errReader{io.ErrUnexpectedEOF}), BodyMax, &want, true)
		if err == nil || fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Errorf("cut at %d: %v, want %v", cut, err, wantErr)
		}
	}
	// A value that is not zero takes encoding/json's path, which merges.
	h := core.HeartbeatInput{Address: "kept"}
	if err := Decode(bytes.NewReader(body), BodyMax, &h); err != nil || h.Address != "kept" || h.AgentID != "a1" {
		t.Errorf("decode into a used value: %+v (%v)", h, err)
	}
}

// benchMessages are typical hot messages: a heartbeat of an agent running
// four attempts with one result to report, a poll acking two
// assignments, the replies to both.
func benchMessages() map[string]codecCase {
	at := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	var running []core.Lease
	for i := range 4 {
		running = append(running, core.Lease{TaskID: core.TaskID(fmt.Sprintf("c1-t-%06d", i)), Attempt: 1})
	}
	hb := core.HeartbeatInput{AgentID: "agent-0042", Domain: "zone-a", Slots: 4, Incarnation: 1767225600123, Seq: 8812,
		Running: running, Results: []core.Result{{TaskID: "c1-t-000009", Attempt: 2, Outcome: core.OutcomeSucceeded, DurationMS: 1500}},
		RTTMillis: 3, AllowsExec: true, HeartbeatIntervalMillis: 5000, SelfFencing: true}
	poll := PollRequest{AgentID: "agent-0042", Incarnation: 1767225600123, Epoch: 998877665544, After: 17, WaitMillis: 30000,
		Acks: []core.AssignAck{{AgentID: "agent-0042", TaskID: "c1-t-000010", Attempt: 1, Accepted: true, HeartbeatSeq: 8811},
			{AgentID: "agent-0042", TaskID: "c1-t-000011", Attempt: 1, Accepted: true, HeartbeatSeq: 8811}}}
	reply := core.HeartbeatReply{Acked: []core.Lease{{TaskID: "c1-t-000009", Attempt: 2}}, HeartbeatIntervalMillis: 5000, LeaseMillis: 15000}
	var msgs []PollMessage
	for i := range 4 {
		msgs = append(msgs, PollMessage{Seq: uint64(18 + i), Assign: &core.Assign{TaskID: core.TaskID(fmt.Sprintf("c1-t-%06d", 12+i)), Attempt: 1,
			Spec:     core.TaskSpec{Kind: core.KindSleep, DurationMS: 1000, Priority: core.PriorityNormal, TimeoutSeconds: 60, MaxAttempts: 3},
			Deadline: at, Incarnation: 1767225600123, SeqLimit: 8815}})
	}
	pollReply := PollReply{Epoch: 998877665544, Messages: msgs}
	return map[string]codecCase{
		"heartbeat":  {draw: func(*rapid.T) any { return hb }, fresh: codecCases["heartbeat"].fresh, strict: true, encode: true},
		"poll":       {draw: func(*rapid.T) any { return poll }, fresh: codecCases["poll"].fresh, strict: true, encode: true},
		"hb_reply":   {draw: func(*rapid.T) any { return reply }, fresh: codecCases["hb_reply"].fresh, encode: true},
		"poll_reply": {draw: func(*rapid.T) any { return pollReply }, fresh: codecCases["poll_reply"].fresh, encode: true},
	}
}

// wrapped is the input of v that the cp's log wraps (core.Wrap): the
// heartbeat itself, a poll's first ack.
func wrapped(v any) (core.Input, bool) {
	switch v := v.(type) {
	case core.HeartbeatInput:
		return v, true
	case PollRequest:
		return v.Acks[0], true
	}
	return nil, false
}

// BenchmarkAgentCodecs: each hot message decoded (Decode or DecodeReply,
// from a reader, as the HTTP handlers do) and encoded (Encode), with the
// fast paths and with encoding/json alone; a heartbeat and an ack wrapped
// for the log (core.Wrap) against json.Marshal; and a heartbeat's log body
// unwrapped (core.Envelope.Unwrap) against json.Unmarshal.
//
//	go test -run '^$' -bench AgentCodecs -benchmem ./net/
func BenchmarkAgentCodecs(b *testing.B) {
	for _, name := range []string{"heartbeat", "poll", "hb_reply", "poll_reply"} {
		c := benchMessages()[name]
		v := c.draw(nil)
		text := refEncode(v)
		b.Run(name+"/decode/fast", func(b *testing.B) {
			for b.Loop() {
				var err error
				if c.strict {
					err = Decode(bytes.NewReader(text), BodyMax, c.fresh())
				} else {
					err = DecodeReply(bytes.NewReader(text), BodyMax, c.fresh())
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/decode/json", func(b *testing.B) {
			for b.Loop() {
				if err := decode(bytes.NewReader(text), BodyMax, c.fresh(), c.strict); err != nil {
					b.Fatal(err)
				}
			}
		})
		if c.encode {
			b.Run(name+"/encode/fast", func(b *testing.B) {
				for b.Loop() {
					Encode(v)
				}
			})
			b.Run(name+"/encode/json", func(b *testing.B) {
				for b.Loop() {
					refEncode(v)
				}
			})
		}
		if in, ok := wrapped(v); ok {
			b.Run(name+"/wrap/fast", func(b *testing.B) {
				for b.Loop() {
					core.Wrap(time.Time{}, in)
				}
			})
			b.Run(name+"/wrap/json", func(b *testing.B) {
				for b.Loop() {
					mustMarshal(in)
				}
			})
		}
		if name == "heartbeat" {
			body := mustMarshal(v)
			b.Run(name+"/unwrap/fast", func(b *testing.B) {
				for b.Loop() {
					if _, err := (core.Envelope{Kind: "heartbeat", Body: body}).Unwrap(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/unwrap/json", func(b *testing.B) {
				for b.Loop() {
					var h core.HeartbeatInput
					if err := json.Unmarshal(body, &h); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSubmitLog: a submission wrapped for the log (core.Wrap, on the
// leader) against json.Marshal, and its body unwrapped
// (core.Envelope.Unwrap, on every node) against json.Unmarshal: the
// typical sleep of a load test, and an exec with an argv and a key.
//
//	go test -run '^$' -bench SubmitLog -benchmem ./net/
func BenchmarkSubmitLog(b *testing.B) {
	for name, in := range map[string]core.SubmitInput{
		"sleep": {Spec: core.TaskSpec{Kind: core.KindSleep, Priority: core.PriorityNormal}, By: "loadgen"},
		"exec": {Spec: core.TaskSpec{Kind: core.KindExec, Argv: []string{"/usr/bin/backup", "--bucket", "s3://b/x"}, Domain: "zone-a",
			Priority: core.PriorityHigh, TimeoutSeconds: 600, MaxAttempts: 3}, IdempotencyKey: "backup-2026-01-01", By: "cron"},
	} {
		b.Run(name+"/wrap/fast", func(b *testing.B) {
			for b.Loop() {
				core.Wrap(time.Time{}, in)
			}
		})
		b.Run(name+"/wrap/json", func(b *testing.B) {
			for b.Loop() {
				mustMarshal(in)
			}
		})
		body := mustMarshal(in)
		b.Run(name+"/unwrap/fast", func(b *testing.B) {
			for b.Loop() {
				if _, err := (core.Envelope{Kind: "submit", Body: body}).Unwrap(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/unwrap/json", func(b *testing.B) {
			for b.Loop() {
				var s core.SubmitInput
				if err := json.Unmarshal(body, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
