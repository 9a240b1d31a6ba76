package core

import "time"

// Version 1 of the state export: the layout before events and the mode
// named the token that acted (Event.By, modeState.SetByName). Restore reads
// it into a version 2 state with those names empty. The types are frozen
// copies of the version 1 ones; the codec writes no type names, so only
// their field layout matters, which stateV1Fingerprint pins (a test checks
// these types still have it).

// stateV1Fingerprint is the layout fingerprint version 1 exports carry.
const stateV1Fingerprint = "a40269eeff0bbf37"

type stateV1 struct {
	Config   Config
	Now      time.Time
	TaskSeq  uint64
	Pass     uint64
	InFlight int

	Tasks       []taskExport
	TerminalIDs []TaskID
	Queue       queueExport
	Idempotency idemExport
	Timeline    timelineExportV1
	Agents      []agentExport
	Domains     []domainExport

	Mode           modeStateV1
	QueueHighSince time.Time
	QueueLowSince  time.Time
	Paused         bool
	PausedReason   string
	PanicActive    bool
	LastHealthEval time.Time
	Blocked        []blockedExport
	RetriesQueued  []keyCountExport
	Outbox         []Outbound
	Stats          Stats
}

type timelineExportV1 struct {
	NextSeq uint64
	Dropped uint64
	Events  []eventV1
}

type eventV1 struct {
	Seq     uint64
	Time    time.Time
	Kind    string
	Type    EventType
	TaskID  TaskID
	AgentID AgentID
	Domain  string
	Attempt int
	From    string
	To      string
	Actor   string
	Reason  string
	Count   int
	Cause   Cause
}

type modeStateV1 struct {
	Mode   Mode
	SetBy  string
	Reason string
	Since  time.Time
}

// upgrade is s as a version 2 state: no event and no mode names a token.
func (s *stateV1) upgrade() stateV2 {
	events := make([]Event, len(s.Timeline.Events))
	for i, e := range s.Timeline.Events {
		events[i] = Event{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Type: e.Type, TaskID: e.TaskID, AgentID: e.AgentID,
			Domain: e.Domain, Attempt: e.Attempt, From: e.From, To: e.To, Actor: e.Actor, Reason: e.Reason, Count: e.Count, Cause: e.Cause}
	}
	return stateV2{
		Config: s.Config, Now: s.Now, TaskSeq: s.TaskSeq, Pass: s.Pass, InFlight: s.InFlight,
		Tasks: s.Tasks, TerminalIDs: s.TerminalIDs, Queue: s.Queue, Idempotency: s.Idempotency,
		Timeline: timelineExport{NextSeq: s.Timeline.NextSeq, Dropped: s.Timeline.Dropped, Events: events},
		Agents:   s.Agents, Domains: s.Domains,
		Mode:           modeState{Mode: s.Mode.Mode, SetBy: s.Mode.SetBy, Reason: s.Mode.Reason, Since: s.Mode.Since},
		QueueHighSince: s.QueueHighSince, QueueLowSince: s.QueueLowSince, Paused: s.Paused, PausedReason: s.PausedReason,
		PanicActive: s.PanicActive, LastHealthEval: s.LastHealthEval, Blocked: s.Blocked, RetriesQueued: s.RetriesQueued,
		Outbox: s.Outbox, Stats: s.Stats,
	}
}
