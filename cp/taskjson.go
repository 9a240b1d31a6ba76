package cp

import (
	"net/http"
	"strconv"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/core/jsonw"
	fnet "github.com/fluxforge/fluxforge/net"
)

// writeTask answers with a task view, as fnet.WriteJSON would. A task is
// the most frequent answer (every submission, and clients polling a task
// until it ends), so it is written without encoding/json's reflection;
// the test compares the bytes with fnet.Encode's on random tasks. A task
// the fast path does not take (a time RFC 3339 cannot write) is encoded by
// fnet.Encode.
func writeTask(w http.ResponseWriter, status int, v TaskView) {
	b, ok := appendTaskView(make([]byte, 0, 512), v)
	if !ok {
		b = fnet.Encode(v)
	}
	fnet.WriteJSONBody(w, status, b)
}

// appendTaskView appends v as fnet.Encode writes it (no HTML escaping, a
// newline after).
func appendTaskView(b []byte, v TaskView) ([]byte, bool) {
	b, ok := appendTaskObject(b, &v)
	return append(b, '\n'), ok
}

// appendTaskObject appends v's JSON object as encoding/json writes it
// without HTML escaping; ok is false (b is then unusable) when a time is
// one jsonw.AppendTime does not write as encoding/json does.
func appendTaskObject(b []byte, v *TaskView) ([]byte, bool) {
	t := &v.Task
	if !jsonw.PlainTime(t.SubmittedAt) || !jsonw.PlainTime(t.EnqueuedAt) || !jsonw.PlainTime(t.UpdatedAt) ||
		t.LastDecision != nil && !jsonw.PlainTime(t.LastDecision.At) {
		return b, false
	}
	for _, a := range t.Attempts {
		if !jsonw.PlainTime(a.AssignedAt) || !jsonw.PlainTime(a.EndedAt) {
			return b, false
		}
	}
	b = append(b, `{"id":`...)
	b = str(b, string(t.ID))
	if t.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = str(b, t.IdempotencyKey)
	}
	b = append(b, `,"spec":`...)
	b = t.Spec.AppendJSON(b, false)
	b = append(b, `,"state":`...)
	b = str(b, t.State.String())
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"failures":`...)
	b = strconv.AppendInt(b, int64(t.Failures), 10)
	if t.AgentID != "" {
		b = append(b, `,"agent_id":`...)
		b = str(b, string(t.AgentID))
	}
	b = append(b, `,"submitted_at":`...)
	b = jsonw.AppendTime(b, t.SubmittedAt)
	if !t.EnqueuedAt.IsZero() {
		b = append(b, `,"enqueued_at":`...)
		b = jsonw.AppendTime(b, t.EnqueuedAt)
	}
	b = append(b, `,"updated_at":`...)
	b = jsonw.AppendTime(b, t.UpdatedAt)
	if t.Reason != "" {
		b = append(b, `,"reason":`...)
		b = str(b, t.Reason)
	}
	if t.Output != "" {
		b = append(b, `,"output":`...)
		b = str(b, t.Output)
	}
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(t.ExitCode), 10)
	if d := t.LastDecision; d != nil {
		b = append(b, `,"last_decision":{"outcome":`...)
		b = str(b, d.Outcome)
		if d.Reason != "" {
			b = append(b, `,"reason":`...)
			b = str(b, d.Reason)
		}
		b = append(b, `,"at":`...)
		b = jsonw.AppendTime(b, d.At)
		b = append(b, '}')
	}
	if len(t.Attempts) > 0 {
		b = append(b, `,"attempts":`...)
		b = jsonw.Array(b, t.Attempts, func(b []byte, a *core.AttemptRecord) []byte { return appendAttempt(b, *a) })
	}
	if v.WaitingReason != "" {
		b = append(b, `,"waiting_reason":`...)
		b = str(b, v.WaitingReason)
	}
	return append(b, '}'), true
}

// writeBatch writes a batch submit's answer as fnet.WriteJSON would.
func writeBatch(w http.ResponseWriter, resp BatchResponse) {
	b, ok := appendBatchResponse(make([]byte, 0, 64+len(resp.Results)*600), resp)
	if !ok {
		b = fnet.Encode(resp)
	}
	fnet.WriteJSONBody(w, http.StatusOK, b)
}

// appendBatchResponse appends resp as fnet.Encode writes it (no HTML
// escaping, a newline after); ok as appendTaskObject's.
func appendBatchResponse(b []byte, resp BatchResponse) ([]byte, bool) {
	if resp.Results == nil {
		b = append(b, `{"results":null`...)
	} else {
		b = append(b, `{"results":[`...)
		for i := range resp.Results {
			r := &resp.Results[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"status":`...)
			b = strconv.AppendInt(b, int64(r.Status), 10)
			if r.Task != nil {
				b = append(b, `,"task":`...)
				var ok bool
				if b, ok = appendTaskObject(b, r.Task); !ok {
					return b, false
				}
			}
			if r.Error != "" {
				b = append(b, `,"error":`...)
				b = str(b, r.Error)
			}
			if r.Message != "" {
				b = append(b, `,"message":`...)
				b = str(b, r.Message)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}', '\n'), true
}

func appendAttempt(b []byte, a core.AttemptRecord) []byte {
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"agent_id":`...)
	b = str(b, string(a.AgentID))
	b = append(b, `,"domain":`...)
	b = str(b, a.Domain)
	b = append(b, `,"assigned_at":`...)
	b = jsonw.AppendTime(b, a.AssignedAt)
	if !a.EndedAt.IsZero() {
		b = append(b, `,"ended_at":`...)
		b = jsonw.AppendTime(b, a.EndedAt)
	}
	if a.Outcome != "" {
		b = append(b, `,"outcome":`...)
		b = str(b, string(a.Outcome))
	}
	if a.Error != "" {
		b = append(b, `,"error":`...)
		b = str(b, a.Error)
	}
	return append(b, '}')
}

// str appends s as fnet.Encode writes a string (no HTML escaping).
func str(b []byte, s string) []byte { return jsonw.AppendString(b, s, false) }
