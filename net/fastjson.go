package net

import (
	"bytes"
	"io"
	"reflect"
	"strconv"
	"sync"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/core/jsonr"
	"github.com/fluxforge/fluxforge/core/jsonw"
)

// The agent protocol's hot messages (a heartbeat and a poll from every
// agent every few seconds, and their replies) are decoded and encoded
// without encoding/json's reflection, which was a tenth of the cp's CPU and
// a fifth of an agent's. Decode, DecodeReply and Encode take the fast path
// for these types by themselves:
//
//   - decoding: the body is read whole (up to its bound) and given to a
//     reflection-free decoder of a strict subset of JSON (core/jsonr),
//     which makes exactly the value encoding/json makes of it or gives up;
//     then, or when reading failed or the body is too large, encoding/json
//     decodes the same bytes (and the same read error) as before, so every
//     answer and every error message is unchanged.
//   - encoding: the bytes are appended by hand, exactly as Encode's
//     json.Encoder writes them (the AppendJSON methods of core's messages,
//     core/messagejsonw.go, and core/jsonw).
//
// The tests compare both with encoding/json on random messages and on
// random mutations of their text (fastjson_test.go).

// decodeBodyInitial is the first read buffer of a fast decode: most
// heartbeats and polls fit. decodeBodyPooledMax bounds the buffers kept
// for reuse, so one large body does not stay in memory.
const (
	decodeBodyInitial   = 4 << 10
	decodeBodyPooledMax = 256 << 10
)

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, decodeBodyInitial); return &b }}

// FastDecoder is a request type of another package (the cp's submit
// bodies) with a reflection-free decoder, which Decode takes as it takes
// the protocol's own. FastDecodeJSON reads data, a whole body, into the
// receiver, a zero value, making exactly what a strict Decode's
// encoding/json makes of it (unknown keys refused, nothing but white space
// after the value), or reports false and leaves the receiver unchanged;
// then encoding/json decodes the body and says what is wrong with it.
type FastDecoder interface {
	FastDecodeJSON(data []byte) bool
}

// fastDecodes reports whether v is a type with a fast decoder, pointing to
// a zero value (encoding/json merges into a value that is not; the fast
// decoders make a fresh one).
func fastDecodes(v any) bool {
	switch v.(type) {
	case *core.HeartbeatInput, *PollRequest, *core.HeartbeatReply, *PollReply, FastDecoder:
		rv := reflect.ValueOf(v)
		return rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().IsZero()
	}
	return false
}

// fastDecode decodes data into v (see fastDecodes) and reports whether it
// could; v is unchanged when it could not.
func fastDecode(data []byte, v any) bool {
	switch p := v.(type) {
	case *core.HeartbeatInput:
		h, ok := core.DecodeHeartbeat(data)
		if ok {
			*p = h
		}
		return ok
	case *PollRequest:
		q, ok := decodePollRequest(data)
		if ok {
			*p = q
		}
		return ok
	case *core.HeartbeatReply:
		h, ok := core.DecodeHeartbeatReply(data)
		if ok {
			*p = h
		}
		return ok
	case *PollReply:
		q, ok := decodePollReply(data)
		if ok {
			*p = q
		}
		return ok
	case FastDecoder:
		return p.FastDecodeJSON(data)
	}
	return false
}

// decodeFast is decode for a v that fastDecodes.
func decodeFast(r io.Reader, max int64, v any, strict bool) error {
	bp := bodyPool.Get().(*[]byte)
	data, err := readAtMost(r, max+1, (*bp)[:0])
	defer func() {
		if cap(data) <= decodeBodyPooledMax {
			*bp = data[:0]
			bodyPool.Put(bp)
		}
	}()
	if err == nil && int64(len(data)) <= max && fastDecode(data, v) {
		return nil
	}
	// The same bytes and the same end (EOF, or the read error) as the
	// body gave: encoding/json answers as it did reading the body itself.
	var rest io.Reader = eofReader{}
	if err != nil {
		rest = errReader{err}
	}
	return decode(io.MultiReader(bytes.NewReader(data), rest), max, v, strict)
}

// readAtMost appends to b what r gives until EOF, an error or n bytes.
func readAtMost(r io.Reader, n int64, b []byte) ([]byte, error) {
	for int64(len(b)) < n {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		end := cap(b)
		if int64(end) > n {
			end = int(n)
		}
		m, err := r.Read(b[len(b):end])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func decodePollRequest(data []byte) (p PollRequest, ok bool) {
	r := jsonr.New(data)
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "agent_id":
			r.Once(&seen, 0)
			p.AgentID = core.AgentID(r.String())
		case "incarnation":
			r.Once(&seen, 1)
			p.Incarnation = r.Uint64()
		case "epoch":
			r.Once(&seen, 2)
			p.Epoch = r.Uint64()
		case "after":
			r.Once(&seen, 3)
			p.After = r.Uint64()
		case "acks":
			r.Once(&seen, 4)
			p.Acks = jsonr.Array(&r, (*core.AssignAck).ReadJSON)
		case "wait_ms":
			r.Once(&seen, 5)
			p.WaitMillis = r.Int64()
		default:
			r.Fail()
		}
	}
	if !r.End() {
		return PollRequest{}, false
	}
	return p, true
}

func decodePollReply(data []byte) (p PollReply, ok bool) {
	r := jsonr.New(data)
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "epoch":
			r.Once(&seen, 0)
			p.Epoch = r.Uint64()
		case "messages":
			r.Once(&seen, 1)
			p.Messages = jsonr.Array(&r, (*PollMessage).readJSON)
		case "dropped":
			r.Once(&seen, 2)
			p.Dropped = r.Uint64()
		default:
			r.Fail()
		}
	}
	if !r.End() {
		return PollReply{}, false
	}
	return p, true
}

func (m *PollMessage) readJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "seq":
			r.Once(&seen, 0)
			m.Seq = r.Uint64()
		case "assign":
			r.Once(&seen, 1)
			m.Assign = new(core.Assign)
			m.Assign.ReadJSON(r)
		case "cancel":
			r.Once(&seen, 2)
			m.Cancel = new(core.CancelTask)
			m.Cancel.ReadJSON(r)
		default:
			r.Fail()
		}
	}
}

// encodeFast returns v as Encode writes it, for the types with a fast
// encoder; ok is false for the others.
func encodeFast(v any) (_ []byte, ok bool) {
	var b []byte
	switch p := v.(type) {
	case *core.HeartbeatInput:
		if p == nil {
			return nil, false
		}
		b = p.AppendJSON(make([]byte, 0, 512), false)
	case core.HeartbeatInput:
		b = p.AppendJSON(make([]byte, 0, 512), false)
	case PollRequest:
		b = appendPollRequest(make([]byte, 0, 512), &p)
	case *PollRequest:
		if p == nil {
			return nil, false
		}
		b = appendPollRequest(make([]byte, 0, 512), p)
	case core.HeartbeatReply:
		b = p.AppendJSON(make([]byte, 0, 128), false)
	case *core.HeartbeatReply:
		if p == nil {
			return nil, false
		}
		b = p.AppendJSON(make([]byte, 0, 128), false)
	case PollReply:
		if b, ok = appendPollReply(make([]byte, 0, 64+256*len(p.Messages)), &p); !ok {
			return nil, false
		}
	case *PollReply:
		if p == nil {
			return nil, false
		}
		if b, ok = appendPollReply(make([]byte, 0, 64+256*len(p.Messages)), p); !ok {
			return nil, false
		}
	default:
		return nil, false
	}
	return append(b, '\n'), true
}

func appendPollRequest(b []byte, p *PollRequest) []byte {
	b = append(b, `{"agent_id":`...)
	b = jsonw.AppendString(b, string(p.AgentID), false)
	b = append(b, `,"incarnation":`...)
	b = strconv.AppendUint(b, p.Incarnation, 10)
	if p.Epoch != 0 {
		b = append(b, `,"epoch":`...)
		b = strconv.AppendUint(b, p.Epoch, 10)
	}
	if p.After != 0 {
		b = append(b, `,"after":`...)
		b = strconv.AppendUint(b, p.After, 10)
	}
	if len(p.Acks) > 0 {
		b = append(b, `,"acks":`...)
		b = jsonw.Array(b, p.Acks, func(b []byte, a *core.AssignAck) []byte { return a.AppendJSON(b, false) })
	}
	if p.WaitMillis != 0 {
		b = append(b, `,"wait_ms":`...)
		b = strconv.AppendInt(b, p.WaitMillis, 10)
	}
	return append(b, '}')
}

// appendPollReply appends p as encoding/json writes it (without HTML
// escaping); ok is false when an assignment's deadline is not a time the
// fast path writes (core.Assign.AppendJSON).
func appendPollReply(b []byte, p *PollReply) (_ []byte, ok bool) {
	b = append(b, `{"epoch":`...)
	b = strconv.AppendUint(b, p.Epoch, 10)
	b = append(b, `,"messages":`...)
	if p.Messages == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = p.Messages[i].appendJSON(b); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	if p.Dropped != 0 {
		b = append(b, `,"dropped":`...)
		b = strconv.AppendUint(b, p.Dropped, 10)
	}
	return append(b, '}'), true
}

func (m *PollMessage) appendJSON(b []byte) (_ []byte, ok bool) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	if m.Assign != nil {
		b = append(b, `,"assign":`...)
		if b, ok = m.Assign.AppendJSON(b, false); !ok {
			return b, false
		}
	}
	if m.Cancel != nil {
		b = append(b, `,"cancel":`...)
		b = m.Cancel.AppendJSON(b, false)
	}
	return append(b, '}'), true
}
