package core

import (
	"encoding/json"
	"fmt"
	"time"
)

// Input is any one input to the control plane as a plain value. Drivers may
// log inputs as Envelopes and replay them through Apply to reproduce a run
// exactly.
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

// ReleaseInput is QuarantineInput's twin for releases, so the two are
// distinguishable as values.
type ReleaseInput QuarantineInput

// TickInput is the passage of time.
type TickInput struct{}

// Envelope is the serialized form of an input at a time.
type Envelope struct {
	At   time.Time       `json:"at"`
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// Wrap serializes in at now.
func Wrap(now time.Time, in Input) Envelope {
	return Envelope{At: now, Kind: in.inputKind(), Body: mustJSON(in)}
}

// Unwrap decodes an Envelope back into its Input.
func (e Envelope) Unwrap() (Input, error) {
	var in Input
	switch e.Kind {
	case "submit":
		in = &SubmitInput{}
	case "cancel":
		in = &CancelInput{}
	case "heartbeat":
		in = &HeartbeatInput{}
	case "assign_ack":
		in = &AssignAck{}
	case "set_mode":
		in = &SetModeInput{}
	case "purge":
		in = &PurgeInput{}
	case "quarantine":
		in = &QuarantineInput{}
	case "release":
		in = &ReleaseInput{}
	case "tick":
		in = &TickInput{}
	default:
		return nil, fmt.Errorf("%w: unknown input kind %q", ErrInvalid, e.Kind)
	}
	if err := json.Unmarshal(e.Body, in); err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrInvalid, e.Kind, err)
	}
	return in, nil
}

// Apply feeds one input to the control plane and returns its result value
// (Task, HeartbeatReply, purged count, or nil).
func (cp *ControlPlane) Apply(now time.Time, in Input) (any, error) {
	switch v := in.(type) {
	case *SubmitInput:
		return cp.Apply(now, *v)
	case SubmitInput:
		t, _, err := cp.Submit(now, v)
		return t, err
	case *CancelInput:
		return cp.Apply(now, *v)
	case CancelInput:
		return cp.Cancel(now, v)
	case *HeartbeatInput:
		return cp.Apply(now, *v)
	case HeartbeatInput:
		return cp.Heartbeat(now, v)
	case *AssignAck:
		return cp.Apply(now, *v)
	case AssignAck:
		return nil, cp.AssignAcked(now, v)
	case *SetModeInput:
		return cp.Apply(now, *v)
	case SetModeInput:
		return nil, cp.SetMode(now, v)
	case *PurgeInput:
		return cp.Apply(now, *v)
	case PurgeInput:
		return cp.Purge(now, v)
	case *QuarantineInput:
		return cp.Apply(now, *v)
	case QuarantineInput:
		return nil, cp.Quarantine(now, v)
	case *ReleaseInput:
		return cp.Apply(now, *v)
	case ReleaseInput:
		return nil, cp.Release(now, QuarantineInput(v))
	case *TickInput, TickInput:
		cp.Tick(now)
		return nil, nil
	}
	return nil, fmt.Errorf("%w: unknown input %T", ErrInvalid, in)
}
