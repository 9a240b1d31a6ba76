package core

import (
	"strconv"

	"github.com/fluxforge/fluxforge/core/jsonw"
)

// The AppendJSON methods below write the agent protocol's messages without
// reflection, byte for byte what encoding/json writes for them: with
// escapeHTML, json.Marshal's bytes (core.Wrap's log bodies); without, a
// json.Encoder's with SetEscapeHTML(false) (net.Encode's, the wire's),
// but for the newline the encoder adds. Every field of every type is
// written (a test fills every field by reflection and compares, so a field
// added later without its line here fails it), in declaration order, with
// the omitempty rules of its tag. The tests are in package net
// (fastjson_test.go), beside the decoders' (messagejson.go).

// AppendJSON appends h as encoding/json writes it (see above).
func (h *HeartbeatInput) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"agent_id":`...)
	b = jsonw.AppendString(b, string(h.AgentID), escapeHTML)
	b = append(b, `,"domain":`...)
	b = jsonw.AppendString(b, h.Domain, escapeHTML)
	b = append(b, `,"slots":`...)
	b = strconv.AppendInt(b, int64(h.Slots), 10)
	if h.Address != "" {
		b = append(b, `,"address":`...)
		b = jsonw.AppendString(b, h.Address, escapeHTML)
	}
	b = append(b, `,"incarnation":`...)
	b = strconv.AppendUint(b, h.Incarnation, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, `,"running":`...)
	if h.Running == nil {
		b = append(b, "null"...)
	} else {
		b = appendLeases(b, h.Running, escapeHTML)
	}
	if len(h.Results) > 0 {
		b = append(b, `,"results":[`...)
		for i := range h.Results {
			if i > 0 {
				b = append(b, ',')
			}
			b = h.Results[i].AppendJSON(b, escapeHTML)
		}
		b = append(b, ']')
	}
	if h.RTTMillis != 0 {
		b = append(b, `,"rtt_ms":`...)
		b = strconv.AppendInt(b, h.RTTMillis, 10)
	}
	if h.Stopping {
		b = append(b, `,"stopping":true`...)
	}
	if h.AllowsExec {
		b = append(b, `,"allows_exec":true`...)
	}
	if h.HeartbeatIntervalMillis != 0 {
		b = append(b, `,"heartbeat_interval_ms":`...)
		b = strconv.AppendInt(b, h.HeartbeatIntervalMillis, 10)
	}
	if h.SelfFencing {
		b = append(b, `,"self_fencing":true`...)
	}
	return append(b, '}')
}

// appendLeases appends ls, not nil, as a JSON array.
func appendLeases(b []byte, ls []Lease, escapeHTML bool) []byte {
	b = append(b, '[')
	for i := range ls {
		if i > 0 {
			b = append(b, ',')
		}
		b = ls[i].AppendJSON(b, escapeHTML)
	}
	return append(b, ']')
}

// AppendJSON appends l as encoding/json writes it (see
// HeartbeatInput.AppendJSON).
func (l *Lease) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"task_id":`...)
	b = jsonw.AppendString(b, string(l.TaskID), escapeHTML)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(l.Attempt), 10)
	return append(b, '}')
}

// AppendJSON appends r as encoding/json writes it (see
// HeartbeatInput.AppendJSON).
func (r *Result) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"task_id":`...)
	b = jsonw.AppendString(b, string(r.TaskID), escapeHTML)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(r.Attempt), 10)
	b = append(b, `,"outcome":`...)
	b = jsonw.AppendString(b, string(r.Outcome), escapeHTML)
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(r.ExitCode), 10)
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = jsonw.AppendString(b, r.Error, escapeHTML)
	}
	if r.Output != "" {
		b = append(b, `,"output":`...)
		b = jsonw.AppendString(b, r.Output, escapeHTML)
	}
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMS, 10)
	return append(b, '}')
}

// AppendJSON appends a as encoding/json writes it (see
// HeartbeatInput.AppendJSON).
func (a *AssignAck) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"agent_id":`...)
	b = jsonw.AppendString(b, string(a.AgentID), escapeHTML)
	b = append(b, `,"task_id":`...)
	b = jsonw.AppendString(b, string(a.TaskID), escapeHTML)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	if a.Accepted {
		b = append(b, `,"accepted":true`...)
	} else {
		b = append(b, `,"accepted":false`...)
	}
	if a.Reason != "" {
		b = append(b, `,"reason":`...)
		b = jsonw.AppendString(b, a.Reason, escapeHTML)
	}
	if a.Retryable {
		b = append(b, `,"retryable":true`...)
	}
	if a.HeartbeatSeq != 0 {
		b = append(b, `,"heartbeat_seq":`...)
		b = strconv.AppendUint(b, a.HeartbeatSeq, 10)
	}
	return append(b, '}')
}
