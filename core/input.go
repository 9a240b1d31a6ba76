package core

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fluxforge/fluxforge/core/jsonr"
)

// Input is any one input to the control plane as a plain value: a
// submission, a cancel, an agent's heartbeat or assignment answer, an
// operator's action, a start of the driving process, or the passage of time.
// Apply is the only way to change a ControlPlane, so a run is exactly its
// sequence of (time, Input) pairs: drivers may log inputs as Envelopes and
// replay them through Apply to reproduce it.
type Input interface{ inputKind() string }

func (SubmitInput) inputKind() string     { return "submit" }
func (CancelInput) inputKind() string     { return "cancel" }
func (HeartbeatInput) inputKind() string  { return "heartbeat" }
func (AssignAck) inputKind() string       { return "assign_ack" }
func (SetModeInput) inputKind() string    { return "set_mode" }
func (PurgeInput) inputKind() string      { return "purge" }
func (QuarantineInput) inputKind() string { return "quarantine" }
func (ReleaseInput) inputKind() string    { return "release" }
func (TickInput) inputKind() string       { return "tick" }
func (StartInput) inputKind() string      { return "start" }

// ConfigInput's inputKind is in configinput.go.

// ReleaseInput is QuarantineInput's twin for releases, so the two are
// distinguishable as values.
type ReleaseInput QuarantineInput

// TickInput is the passage of time: reconcile (see applyTick).
type TickInput struct{}

// StartInput marks a start of the process driving the control plane. It sets
// the prefix of the task ids submitted from now on: a restarted driver's
// fresh core counts ids from 1 again while agents may still run the previous
// start's tasks, and an agent must never take a new task for an old one with
// the same id. Being an input rather than process state, a replay of the
// inputs reproduces every id. It records no event.
type StartInput struct {
	TaskIDPrefix string `json:"task_id_prefix"`
}

// ApplyResult is what one applied input produced. Only the fields of the
// input's kind are set; every other field is zero.
type ApplyResult struct {
	// Task is the submitted or cancelled task (submit, cancel). A cancel
	// refused with ErrConflict (the task had already ended) carries it too.
	Task Task
	// Replayed: a submit's idempotency key was seen before with the same
	// spec, Task is the original task and nothing changed.
	Replayed bool
	// Heartbeat is the reply to an agent's heartbeat (heartbeat).
	Heartbeat HeartbeatReply
	// Purged is how many queued tasks a purge cancelled (purge).
	Purged int
}

// Apply feeds one input, at time now, to the control plane: it is the only
// way to change it. A refused input (an error) changes nothing but the
// per-process statistics (see Stats). Inputs are taken by value; pointers to
// inputs (as older logs' decoders made) are accepted too.
func (cp *ControlPlane) Apply(now time.Time, in Input) (ApplyResult, error) {
	if by, actor := inputBy(in); by != "" {
		cp.by, cp.byActor = by, actor
		defer func() { cp.by, cp.byActor = "", "" }()
	}
	var r ApplyResult
	var err error
	switch v := in.(type) {
	case SubmitInput:
		r.Task, r.Replayed, err = cp.applySubmit(now, v)
	case HeartbeatInput:
		r.Heartbeat, err = cp.applyHeartbeat(now, v)
	case *HeartbeatInput:
		// The hot pointer forms skip deref's re-boxing (an allocation).
		if v == nil {
			return cp.Apply(now, nil)
		}
		r.Heartbeat, err = cp.applyHeartbeat(now, *v)
	case AssignAck:
		err = cp.applyAssignAck(now, v)
	case *AssignAck:
		if v == nil {
			return cp.Apply(now, nil)
		}
		err = cp.applyAssignAck(now, *v)
	case TickInput:
		cp.applyTick(now)
	case CancelInput:
		r.Task, err = cp.applyCancel(now, v)
	case SetModeInput:
		err = cp.applySetMode(now, v)
	case PurgeInput:
		r.Purged, err = cp.applyPurge(now, v)
	case QuarantineInput:
		err = cp.applyQuarantine(now, v)
	case ReleaseInput:
		err = cp.applyRelease(now, v)
	case StartInput:
		err = cp.applyStart(now, v)
	case ConfigInput:
		err = cp.applyConfig(now, v)
	case TakeoverInput:
		err = cp.applyTakeover(now, v)
	case *SubmitInput, *TickInput, *CancelInput, *SetModeInput,
		*PurgeInput, *QuarantineInput, *ReleaseInput, *StartInput, *ConfigInput, *TakeoverInput:
		return cp.Apply(now, deref(in))
	default:
		// No %T: formatting in would make every boxed input escape.
		err = fmt.Errorf("%w: not a control plane input (nil, or a type core does not know)", ErrInvalid)
	}
	return r, err
}

// inputBy is the token name an operator's or client's input carries and
// the actor its events are recorded with ("" for inputs that name none).
func inputBy(in Input) (by, actor string) {
	switch v := in.(type) {
	case SubmitInput:
		return v.By, ActorClient
	case CancelInput:
		return v.By, orDefault(v.Actor, ActorClient)
	case PurgeInput:
		return v.By, orDefault(v.Actor, ActorOperator)
	case SetModeInput:
		return v.By, orDefault(v.Actor, ActorOperator)
	case QuarantineInput:
		return v.By, orDefault(v.Actor, ActorOperator)
	case ReleaseInput:
		return v.By, orDefault(v.Actor, ActorOperator)
	}
	return "", ""
}

// deref returns the input a pointer input points to (nil for a nil pointer).
func deref(in Input) Input {
	switch v := in.(type) {
	case *SubmitInput:
		if v != nil {
			return *v
		}
	case *HeartbeatInput:
		if v != nil {
			return *v
		}
	case *AssignAck:
		if v != nil {
			return *v
		}
	case *TickInput:
		if v != nil {
			return *v
		}
	case *CancelInput:
		if v != nil {
			return *v
		}
	case *SetModeInput:
		if v != nil {
			return *v
		}
	case *PurgeInput:
		if v != nil {
			return *v
		}
	case *QuarantineInput:
		if v != nil {
			return *v
		}
	case *ReleaseInput:
		if v != nil {
			return *v
		}
	case *StartInput:
		if v != nil {
			return *v
		}
	case *ConfigInput:
		if v != nil {
			return *v
		}
	case *TakeoverInput:
		if v != nil {
			return *v
		}
	}
	return nil
}

// applyStart takes a process start: the task ids submitted from now on
// begin with in.TaskIDPrefix (the counter goes on). The prefix is part of
// the config, which is replicated state, so Config reports it.
func (cp *ControlPlane) applyStart(now time.Time, in StartInput) error {
	cp.advance(now)
	if !validTaskIDPrefix(in.TaskIDPrefix) {
		return fmt.Errorf("%w: task id prefix %q: must be 1 to 32 characters of [a-zA-Z0-9-_.]", ErrInvalid, in.TaskIDPrefix)
	}
	cp.cfg.TaskIDPrefix = in.TaskIDPrefix
	return nil
}

// Envelope is the serialized form of an input at a time.
type Envelope struct {
	At   time.Time       `json:"at"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// Wrap serializes in at now. The body is json.Marshal's; heartbeats,
// assignment acks and submissions, most of the log, are written without
// reflection, byte for byte the same (messagejsonw.go).
func Wrap(now time.Time, in Input) Envelope {
	return Envelope{At: now, Kind: in.inputKind(), Body: inputJSON(in)}
}

// inputJSON is json.Marshal of in (HTML escaped, as the log has always
// been written).
func inputJSON(in Input) []byte {
	switch v := in.(type) {
	case HeartbeatInput:
		return v.AppendJSON(make([]byte, 0, 512), true)
	case *HeartbeatInput:
		if v != nil {
			return v.AppendJSON(make([]byte, 0, 512), true)
		}
	case AssignAck:
		return v.AppendJSON(make([]byte, 0, 128), true)
	case *AssignAck:
		if v != nil {
			return v.AppendJSON(make([]byte, 0, 128), true)
		}
	case SubmitInput:
		return v.AppendJSON(make([]byte, 0, submitJSONCap(&v)), true)
	case *SubmitInput:
		if v != nil {
			return v.AppendJSON(make([]byte, 0, submitJSONCap(v)), true)
		}
	}
	return mustJSON(in)
}

// submitJSONCap is a capacity that holds s's body unless its numbers are
// long or its strings need escapes (append grows it then). A typical body
// is about 100 bytes and lives until its log entry is written, so a
// generous constant would be paid for by every submission in flight.
func submitJSONCap(s *SubmitInput) int {
	n := 144 + len(s.Spec.Kind) + len(s.Spec.Domain) + len(s.IdempotencyKey) + len(s.By)
	for _, a := range s.Spec.Argv {
		n += len(a) + 3
	}
	return n
}

// Unwrap decodes an Envelope back into its Input, a value (SubmitInput, not
// *SubmitInput), equal to the one wrapped. Heartbeats, assignment acks and
// submissions, most of the log, are read without reflection when they can
// be (messagejson.go), into exactly what json.Unmarshal makes of them.
func (e Envelope) Unwrap() (Input, error) {
	switch e.Kind {
	case "submit":
		if s, ok := DecodeSubmit(e.Body); ok {
			return s, nil
		}
		return decodeInput[SubmitInput](e)
	case "cancel":
		return decodeInput[CancelInput](e)
	case "heartbeat":
		if h, ok := DecodeHeartbeat(e.Body); ok {
			return h, nil
		}
		return decodeInput[HeartbeatInput](e)
	case "assign_ack":
		if a, ok := decodeAssignAck(e.Body); ok {
			return a, nil
		}
		return decodeInput[AssignAck](e)
	case "set_mode":
		return decodeInput[SetModeInput](e)
	case "purge":
		return decodeInput[PurgeInput](e)
	case "quarantine":
		return decodeInput[QuarantineInput](e)
	case "release":
		return decodeInput[ReleaseInput](e)
	case "tick":
		return decodeInput[TickInput](e)
	case "start":
		return decodeInput[StartInput](e)
	case "config":
		return decodeInput[ConfigInput](e)
	case "takeover":
		return decodeInput[TakeoverInput](e)
	}
	return nil, fmt.Errorf("%w: unknown input kind %q", ErrInvalid, e.Kind)
}

// decodeAssignAck is DecodeHeartbeat for an assign_ack body.
func decodeAssignAck(data []byte) (a AssignAck, ok bool) {
	r := jsonr.New(data)
	a.ReadJSON(&r)
	if !r.End() {
		return AssignAck{}, false
	}
	return a, true
}

func decodeInput[T Input](e Envelope) (Input, error) {
	var v T
	if err := json.Unmarshal(e.Body, &v); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrInvalid, e.Kind, err)
	}
	return v, nil
}
