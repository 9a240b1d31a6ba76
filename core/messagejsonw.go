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
		b = append(b, `,"results":`...)
		b = jsonw.Array(b, h.Results, func(b []byte, r *Result) []byte { return r.AppendJSON(b, escapeHTML) })
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
	return jsonw.Array(b, ls, func(b []byte, l *Lease) []byte { return l.AppendJSON(b, escapeHTML) })
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

// AppendJSON appends h as encoding/json writes it (see
// HeartbeatInput.AppendJSON).
func (h *HeartbeatReply) AppendJSON(b []byte, escapeHTML bool) []byte {
	open := len(b)
	b = append(b, '{')
	if len(h.Acked) > 0 {
		b = appendKey(b, open, `"acked":`)
		b = appendLeases(b, h.Acked, escapeHTML)
	}
	if len(h.Cancel) > 0 {
		b = appendKey(b, open, `"cancel":`)
		b = appendLeases(b, h.Cancel, escapeHTML)
	}
	if h.Registered {
		b = appendKey(b, open, `"registered":true`)
	}
	if h.HeartbeatIntervalMillis != 0 {
		b = appendKey(b, open, `"heartbeat_interval_ms":`)
		b = strconv.AppendInt(b, h.HeartbeatIntervalMillis, 10)
	}
	if h.LeaseMillis != 0 {
		b = appendKey(b, open, `"lease_ms":`)
		b = strconv.AppendInt(b, h.LeaseMillis, 10)
	}
	return append(b, '}')
}

// appendKey appends key (quoted, with its colon) as the next member of the
// object whose '{' is b[open], after a comma unless it is the first.
func appendKey(b []byte, open int, key string) []byte {
	if len(b) > open+1 {
		b = append(b, ',')
	}
	return append(b, key...)
}

// AppendJSON appends a as encoding/json writes it (see
// HeartbeatInput.AppendJSON). ok is false, and b unchanged, when the
// deadline is a time jsonw.AppendTime does not write as time.Time's
// MarshalJSON does (jsonw.PlainTime): encode a with encoding/json then.
func (a *Assign) AppendJSON(b []byte, escapeHTML bool) (_ []byte, ok bool) {
	if !jsonw.PlainTime(a.Deadline) {
		return b, false
	}
	b = append(b, `{"task_id":`...)
	b = jsonw.AppendString(b, string(a.TaskID), escapeHTML)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"spec":`...)
	b = a.Spec.AppendJSON(b, escapeHTML)
	b = append(b, `,"deadline":`...)
	b = jsonw.AppendTime(b, a.Deadline)
	if a.Incarnation != 0 {
		b = append(b, `,"incarnation":`...)
		b = strconv.AppendUint(b, a.Incarnation, 10)
	}
	if a.SeqLimit != 0 {
		b = append(b, `,"seq_limit":`...)
		b = strconv.AppendUint(b, a.SeqLimit, 10)
	}
	return append(b, '}'), true
}

// AppendJSON appends s as encoding/json writes it (see
// HeartbeatInput.AppendJSON). The priority is a TextMarshaler: its text
// (any value's, "priority(7)" too) written as a JSON string.
func (s *TaskSpec) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"kind":`...)
	b = jsonw.AppendString(b, s.Kind, escapeHTML)
	if len(s.Argv) > 0 {
		b = append(b, `,"argv":`...)
		b = jsonw.Array(b, s.Argv, func(b []byte, a *string) []byte { return jsonw.AppendString(b, *a, escapeHTML) })
	}
	if s.DurationMS != 0 {
		b = append(b, `,"duration_ms":`...)
		b = strconv.AppendInt(b, s.DurationMS, 10)
	}
	if s.Domain != "" {
		b = append(b, `,"domain":`...)
		b = jsonw.AppendString(b, s.Domain, escapeHTML)
	}
	b = append(b, `,"priority":`...)
	b = jsonw.AppendString(b, s.Priority.String(), escapeHTML)
	b = append(b, `,"timeout_seconds":`...)
	b = strconv.AppendInt(b, int64(s.TimeoutSeconds), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(s.MaxAttempts), 10)
	return append(b, '}')
}

// AppendJSON appends c as encoding/json writes it (see
// HeartbeatInput.AppendJSON).
func (c *CancelTask) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"task_id":`...)
	b = jsonw.AppendString(b, string(c.TaskID), escapeHTML)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(c.Attempt), 10)
	if c.Reason != "" {
		b = append(b, `,"reason":`...)
		b = jsonw.AppendString(b, c.Reason, escapeHTML)
	}
	return append(b, '}')
}

// AppendJSON appends s as encoding/json writes it (see
// HeartbeatInput.AppendJSON): core.Wrap's body of a submission.
func (s *SubmitInput) AppendJSON(b []byte, escapeHTML bool) []byte {
	b = append(b, `{"spec":`...)
	b = s.Spec.AppendJSON(b, escapeHTML)
	if s.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = jsonw.AppendString(b, s.IdempotencyKey, escapeHTML)
	}
	if s.By != "" {
		b = append(b, `,"by":`...)
		b = jsonw.AppendString(b, s.By, escapeHTML)
	}
	return append(b, '}')
}
