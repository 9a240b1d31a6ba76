// Package net defines what travels between the control plane and agents: the
// wire messages, their JSON codec with bounds, the paths of the HTTP
// protocol, and the Transport interface that both the real HTTP transport and
// the simulator's faulty network implement.
//
// Every exchange is a Message. Requests (heartbeat, assign, cancel) and their
// replies (heartbeat reply, assign ack) are separate messages, delivered
// asynchronously: over HTTP a reply is the response body, turned back into a
// message for the sender; in the simulator it is just another delivery that
// may be delayed, duplicated, reordered or lost.
package net

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/fluxforge/fluxforge/core"
)

// Kind names a message type.
type Kind string

const (
	KindHeartbeat      Kind = "heartbeat"       // agent → cp
	KindHeartbeatReply Kind = "heartbeat_reply" // cp → agent
	KindAssign         Kind = "assign"          // cp → agent
	KindAssignAck      Kind = "assign_ack"      // agent → cp
	KindCancel         Kind = "cancel"          // cp → agent
)

// CPNode is the node name of the control plane in From/To fields.
const CPNode = "cp"

// Message is one delivery between nodes. Exactly one payload is set, the one
// Kind names. Seq on a heartbeat reply names the heartbeat it answers.
type Message struct {
	From string `json:"from"`
	To   string `json:"to"`
	Kind Kind   `json:"kind"`
	// Addr is the receiving agent's advertised address (cp → agent), used by
	// transports that need one.
	Addr string `json:"addr,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`

	Heartbeat      *core.HeartbeatInput `json:"heartbeat,omitempty"`
	HeartbeatReply *core.HeartbeatReply `json:"heartbeat_reply,omitempty"`
	Assign         *core.Assign         `json:"assign,omitempty"`
	AssignAck      *core.AssignAck      `json:"assign_ack,omitempty"`
	Cancel         *core.CancelTask     `json:"cancel,omitempty"`
}

// Validate checks that the payload matches the kind.
func (m *Message) Validate() error {
	set := 0
	for _, p := range []bool{m.Heartbeat != nil, m.HeartbeatReply != nil, m.Assign != nil, m.AssignAck != nil, m.Cancel != nil} {
		if p {
			set++
		}
	}
	ok := set == 1
	switch m.Kind {
	case KindHeartbeat:
		ok = ok && m.Heartbeat != nil
	case KindHeartbeatReply:
		ok = ok && m.HeartbeatReply != nil
	case KindAssign:
		ok = ok && m.Assign != nil
	case KindAssignAck:
		ok = ok && m.AssignAck != nil
	case KindCancel:
		ok = ok && m.Cancel != nil
	default:
		return fmt.Errorf("%w: unknown message kind %q", ErrBadMessage, m.Kind)
	}
	if !ok {
		return fmt.Errorf("%w: kind %s needs exactly its own payload", ErrBadMessage, m.Kind)
	}
	return nil
}

// Outbound converts the control plane's outbox entry into a message.
func Outbound(o core.Outbound) Message {
	m := Message{From: CPNode, To: string(o.To), Addr: o.Address}
	switch {
	case o.Assign != nil:
		m.Kind, m.Assign = KindAssign, o.Assign
	case o.Cancel != nil:
		m.Kind, m.Cancel = KindCancel, o.Cancel
	}
	return m
}

// Transport sends messages best-effort: a message may be lost, and a reply
// comes back (if at all) as a message delivered to the sender's handler.
// Send must not block on the network.
type Transport interface {
	Send(m Message)
}

// Handler receives delivered messages.
type Handler func(m Message)

// ErrBadMessage marks a message that failed to decode or validate.
var ErrBadMessage = errors.New("net: bad message")

// BodyMax bounds any protocol body.
const BodyMax = 8 << 20

// Decode reads one JSON value into v from r, refusing unknown fields, bodies
// over max bytes and trailing data. The agent protocol's hot requests
// (*core.HeartbeatInput, *PollRequest) take a fast path that answers
// exactly as encoding/json does (fastjson.go).
func Decode(r io.Reader, max int64, v any) error {
	if fastDecodes(v) {
		return decodeFast(r, max, v, true)
	}
	return decode(r, max, v, true)
}

func decode(r io.Reader, max int64, v any, strict bool) error {
	lr := &io.LimitedReader{R: r, N: max + 1}
	dec := json.NewDecoder(lr)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, max)
		}
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if lr.N <= 0 {
		return fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, max)
	}
	var extra json.RawMessage
	err := dec.Decode(&extra)
	if lr.N <= 0 {
		// The bound cut the body off while looking for trailing data: it is
		// longer than max even if what was read is only whitespace.
		return fmt.Errorf("%w: body larger than %d bytes", ErrTooLarge, max)
	}
	if err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrBadMessage)
	}
	return nil
}

// DecodeReply reads a reply (heartbeat reply, assign ack) like Decode but
// ignores unknown fields: a newer peer may add fields an older one does not
// know. Requests stay strict. Replies to heartbeats and polls take the
// fast path (see Decode).
func DecodeReply(r io.Reader, max int64, v any) error {
	if fastDecodes(v) {
		return decodeFast(r, max, v, false)
	}
	return decode(r, max, v, false)
}

// ErrTooLarge marks a body over its bound.
var ErrTooLarge = errors.New("net: body too large")

// Encode marshals v as compact JSON, with no HTML escaping and a newline
// after (json.Encoder's form). The agent protocol's hot messages (an
// agent's heartbeat and poll, the cp's replies to both, so WriteJSON's
// answers to them too) are written without reflection, byte for byte the
// same (fastjson.go); a poll reply with a deadline AppendTime does not
// write (jsonw.PlainTime) goes through encoding/json.
func Encode(v any) []byte {
	if b, ok := encodeFast(v); ok {
		return b
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("net: encode %T: %v", v, err))
	}
	return b.Bytes()
}

// HTTP protocol paths, all under /v1.
const (
	// PathHeartbeat: agent → cp. Body core.HeartbeatInput, response
	// core.HeartbeatReply. The first heartbeat registers the agent.
	PathHeartbeat = "/v1/agent/heartbeat"
	// Assignments and cancels reach agents in poll replies (PathPoll): the
	// cp never connects to an agent, and the old cp → agent paths
	// /v1/assign and /v1/cancel are gone.
	// HeaderAgentToken carries the shared agent token in both directions as
	// "Authorization: Bearer <token>".
	HeaderAuthorization = "Authorization"
)
