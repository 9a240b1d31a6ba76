package core

import "github.com/fluxforge/fluxforge/core/jsonr"

// Every agent sends a heartbeat every few seconds, and the cp decodes each
// twice: from the request, and from its log entry when it is applied (on
// every node). encoding/json's reflection was a tenth of the cp's CPU for
// it. DecodeHeartbeat and the ReadJSON methods below read the messages of
// the agent protocol without reflection, into exactly the values
// encoding/json makes of the same text, or give up (see package jsonr):
// the callers then decode with encoding/json, so no answer and no error
// message changes. Each fast decoder knows every field of its type; a test
// fails when a field is added that it does not know
// (TestFastDecodersKnowEveryField in package net, which tests them all
// against encoding/json).

// DecodeHeartbeat reads a heartbeat's JSON text into the value
// json.Unmarshal makes of it in a zero HeartbeatInput. ok is false when
// the text is not in the subset the fast path reads (package jsonr), or
// has a key HeartbeatInput does not have or a key twice: decode it with
// encoding/json then. White space may follow the object, nothing else.
func DecodeHeartbeat(data []byte) (h HeartbeatInput, ok bool) {
	r := jsonr.New(data)
	h.readJSON(&r)
	if !r.End() {
		return HeartbeatInput{}, false
	}
	return h, true
}

func (h *HeartbeatInput) readJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "agent_id":
			r.Once(&seen, 0)
			h.AgentID = AgentID(r.String())
		case "domain":
			r.Once(&seen, 1)
			h.Domain = r.String()
		case "slots":
			r.Once(&seen, 2)
			h.Slots = r.Int()
		case "address":
			r.Once(&seen, 3)
			h.Address = r.String()
		case "incarnation":
			r.Once(&seen, 4)
			h.Incarnation = r.Uint64()
		case "seq":
			r.Once(&seen, 5)
			h.Seq = r.Uint64()
		case "running":
			r.Once(&seen, 6)
			h.Running = jsonr.Array(r, (*Lease).ReadJSON)
		case "results":
			r.Once(&seen, 7)
			h.Results = jsonr.Array(r, (*Result).readJSON)
		case "rtt_ms":
			r.Once(&seen, 8)
			h.RTTMillis = r.Int64()
		case "stopping":
			r.Once(&seen, 9)
			h.Stopping = r.Bool()
		case "allows_exec":
			r.Once(&seen, 10)
			h.AllowsExec = r.Bool()
		case "heartbeat_interval_ms":
			r.Once(&seen, 11)
			h.HeartbeatIntervalMillis = r.Int64()
		case "self_fencing":
			r.Once(&seen, 12)
			h.SelfFencing = r.Bool()
		default:
			r.Fail()
		}
	}
}

// ReadJSON reads a Lease object from r into l, a zero Lease, as
// encoding/json does (see DecodeHeartbeat).
func (l *Lease) ReadJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "task_id":
			r.Once(&seen, 0)
			l.TaskID = TaskID(r.String())
		case "attempt":
			r.Once(&seen, 1)
			l.Attempt = r.Int()
		default:
			r.Fail()
		}
	}
}

func (res *Result) readJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "task_id":
			r.Once(&seen, 0)
			res.TaskID = TaskID(r.String())
		case "attempt":
			r.Once(&seen, 1)
			res.Attempt = r.Int()
		case "outcome":
			r.Once(&seen, 2)
			res.Outcome = Outcome(r.String())
		case "exit_code":
			r.Once(&seen, 3)
			res.ExitCode = r.Int()
		case "error":
			r.Once(&seen, 4)
			res.Error = r.String()
		case "output":
			r.Once(&seen, 5)
			res.Output = r.String()
		case "duration_ms":
			r.Once(&seen, 6)
			res.DurationMS = r.Int64()
		default:
			r.Fail()
		}
	}
}

// DecodeHeartbeatReply is DecodeHeartbeat for a HeartbeatReply. An agent
// reads replies leniently (a newer cp may add fields): one with a key the
// fast path does not know falls back to encoding/json, which ignores it.
func DecodeHeartbeatReply(data []byte) (h HeartbeatReply, ok bool) {
	r := jsonr.New(data)
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "acked":
			r.Once(&seen, 0)
			h.Acked = jsonr.Array(&r, (*Lease).ReadJSON)
		case "cancel":
			r.Once(&seen, 1)
			h.Cancel = jsonr.Array(&r, (*Lease).ReadJSON)
		case "registered":
			r.Once(&seen, 2)
			h.Registered = r.Bool()
		case "heartbeat_interval_ms":
			r.Once(&seen, 3)
			h.HeartbeatIntervalMillis = r.Int64()
		case "lease_ms":
			r.Once(&seen, 4)
			h.LeaseMillis = r.Int64()
		default:
			r.Fail()
		}
	}
	if !r.End() {
		return HeartbeatReply{}, false
	}
	return h, true
}

// ReadJSON reads an AssignAck object from r into a, a zero AssignAck, as
// encoding/json does (see DecodeHeartbeat).
func (a *AssignAck) ReadJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "agent_id":
			r.Once(&seen, 0)
			a.AgentID = AgentID(r.String())
		case "task_id":
			r.Once(&seen, 1)
			a.TaskID = TaskID(r.String())
		case "attempt":
			r.Once(&seen, 2)
			a.Attempt = r.Int()
		case "accepted":
			r.Once(&seen, 3)
			a.Accepted = r.Bool()
		case "reason":
			r.Once(&seen, 4)
			a.Reason = r.String()
		case "retryable":
			r.Once(&seen, 5)
			a.Retryable = r.Bool()
		case "heartbeat_seq":
			r.Once(&seen, 6)
			a.HeartbeatSeq = r.Uint64()
		default:
			r.Fail()
		}
	}
}

// ReadJSON reads an Assign object from r into a, a zero Assign, as
// encoding/json does (see DecodeHeartbeat). The deadline is read by
// time.Time's own UnmarshalJSON, as encoding/json reads it.
func (a *Assign) ReadJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "task_id":
			r.Once(&seen, 0)
			a.TaskID = TaskID(r.String())
		case "attempt":
			r.Once(&seen, 1)
			a.Attempt = r.Int()
		case "spec":
			r.Once(&seen, 2)
			a.Spec.readJSON(r)
		case "deadline":
			r.Once(&seen, 3)
			if raw := r.Raw(); r.OK() && a.Deadline.UnmarshalJSON(raw) != nil {
				r.Fail()
			}
		case "incarnation":
			r.Once(&seen, 4)
			a.Incarnation = r.Uint64()
		case "seq_limit":
			r.Once(&seen, 5)
			a.SeqLimit = r.Uint64()
		default:
			r.Fail()
		}
	}
}

func (s *TaskSpec) readJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "kind":
			r.Once(&seen, 0)
			s.Kind = r.String()
		case "argv":
			r.Once(&seen, 1)
			s.Argv = jsonr.Array(r, func(a *string, r *jsonr.Reader) { *a = r.String() })
		case "duration_ms":
			r.Once(&seen, 2)
			s.DurationMS = r.Int64()
		case "domain":
			r.Once(&seen, 3)
			s.Domain = r.String()
		case "priority":
			// A TextUnmarshaler: encoding/json hands it the string's
			// value and refuses any other JSON value.
			r.Once(&seen, 4)
			if text := r.Bytes(); r.OK() && s.Priority.UnmarshalText(text) != nil {
				r.Fail()
			}
		case "timeout_seconds":
			r.Once(&seen, 5)
			s.TimeoutSeconds = r.Int()
		case "max_attempts":
			r.Once(&seen, 6)
			s.MaxAttempts = r.Int()
		default:
			r.Fail()
		}
	}
}

// ReadJSON reads a CancelTask object from r into c, a zero CancelTask, as
// encoding/json does (see DecodeHeartbeat).
func (c *CancelTask) ReadJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "task_id":
			r.Once(&seen, 0)
			c.TaskID = TaskID(r.String())
		case "attempt":
			r.Once(&seen, 1)
			c.Attempt = r.Int()
		case "reason":
			r.Once(&seen, 2)
			c.Reason = r.String()
		default:
			r.Fail()
		}
	}
}

// DecodeSubmit is DecodeHeartbeat for a submission's log body (core.Wrap
// writes it, Envelope.Unwrap reads it).
func DecodeSubmit(data []byte) (s SubmitInput, ok bool) {
	r := jsonr.New(data)
	s.readJSON(&r)
	if !r.End() {
		return SubmitInput{}, false
	}
	return s, true
}

// readJSON reads a SubmitInput object from r into s, a zero SubmitInput,
// as encoding/json does (see DecodeHeartbeat).
func (s *SubmitInput) readJSON(r *jsonr.Reader) {
	var seen uint64
	r.Byte('{')
	for n := 0; r.More(n, '}'); n++ {
		switch string(r.Key()) {
		case "spec":
			r.Once(&seen, 0)
			s.Spec.readJSON(r)
		case "idempotency_key":
			r.Once(&seen, 1)
			s.IdempotencyKey = r.String()
		case "by":
			r.Once(&seen, 2)
			s.By = r.String()
		default:
			r.Fail()
		}
	}
}
