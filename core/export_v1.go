package core

import "time"

// Version 1 of the state export: the layout before events and the mode
// named the token that acted (Event.By, modeState.SetByName), agents said
// whether they fence themselves (agentExport.SelfFencing) and assignments
// named the agent's incarnation and a heartbeat limit (Assign.Incarnation,
// Assign.SeqLimit, taskExport.SeqLimit). Restore reads it into
// a version 2 state with those empty. The types are frozen
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

	Tasks       []taskExportV1
	TerminalIDs []TaskID
	Queue       queueExport
	Idempotency idemExport
	Timeline    timelineExportV1
	Agents      []agentExportV1
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
	Outbox         []outboundV1
	Stats          Stats
}

type taskExportV1 struct {
	Task       Task
	FailedOn   []AgentID
	RejectedBy []AgentID
	AssignedAt time.Time
	Confirmed  bool
	AckSeq     uint64
	Probe      bool
	SkipPass   uint64
}

type agentExportV1 struct {
	ID               AgentID
	Domain           string
	Slots            int
	Address          string
	AllowsExec       bool
	Incarnation      uint64
	LastSeq          uint64
	State            agentState
	Stopping         bool
	RegisteredAt     time.Time
	ConnectedSince   time.Time
	LastHeartbeat    time.Time
	DisconnectedAt   time.Time
	ReportedInterval time.Duration
	Running          []TaskID
	Health           healthExport
	Score            HealthScore
	Quarantine       quarantineExport
}

type outboundV1 struct {
	To      AgentID
	Address string
	Assign  *assignV1
	Cancel  *CancelTask
}

type assignV1 struct {
	TaskID   TaskID
	Attempt  int
	Spec     TaskSpec
	Deadline time.Time
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

// upgrade is s as a version 2 state: no event and no mode names a token, no
// agent is known to fence itself and no assignment names an incarnation
// (the next heartbeat of a self-fencing agent says so).
func (s *stateV1) upgrade() stateV2 {
	tasks := make([]taskExport, len(s.Tasks))
	for i, t := range s.Tasks {
		tasks[i] = taskExport{Task: t.Task, FailedOn: t.FailedOn, RejectedBy: t.RejectedBy, AssignedAt: t.AssignedAt,
			Confirmed: t.Confirmed, AckSeq: t.AckSeq, Probe: t.Probe, SkipPass: t.SkipPass}
	}
	agents := make([]agentExport, len(s.Agents))
	for i, a := range s.Agents {
		agents[i] = agentExport{ID: a.ID, Domain: a.Domain, Slots: a.Slots, Address: a.Address, AllowsExec: a.AllowsExec,
			Incarnation: a.Incarnation, LastSeq: a.LastSeq, State: a.State, Stopping: a.Stopping,
			RegisteredAt: a.RegisteredAt, ConnectedSince: a.ConnectedSince, LastHeartbeat: a.LastHeartbeat,
			DisconnectedAt: a.DisconnectedAt, ReportedInterval: a.ReportedInterval, Running: a.Running,
			Health: a.Health, Score: a.Score, Quarantine: a.Quarantine}
	}
	outbox := make([]Outbound, len(s.Outbox))
	for i, o := range s.Outbox {
		outbox[i] = Outbound{To: o.To, Address: o.Address, Cancel: o.Cancel}
		if as := o.Assign; as != nil {
			outbox[i].Assign = &Assign{TaskID: as.TaskID, Attempt: as.Attempt, Spec: as.Spec, Deadline: as.Deadline}
		}
	}
	events := make([]Event, len(s.Timeline.Events))
	for i, e := range s.Timeline.Events {
		events[i] = Event{Seq: e.Seq, Time: e.Time, Kind: e.Kind, Type: e.Type, TaskID: e.TaskID, AgentID: e.AgentID,
			Domain: e.Domain, Attempt: e.Attempt, From: e.From, To: e.To, Actor: e.Actor, Reason: e.Reason, Count: e.Count, Cause: e.Cause}
	}
	return stateV2{
		Config: s.Config, Now: s.Now, TaskSeq: s.TaskSeq, Pass: s.Pass, InFlight: s.InFlight,
		Tasks: tasks, TerminalIDs: s.TerminalIDs, Queue: s.Queue, Idempotency: s.Idempotency,
		Timeline: timelineExport{NextSeq: s.Timeline.NextSeq, Dropped: s.Timeline.Dropped, Events: events},
		Agents:   agents, Domains: s.Domains,
		Mode:           modeState{Mode: s.Mode.Mode, SetBy: s.Mode.SetBy, Reason: s.Mode.Reason, Since: s.Mode.Since},
		QueueHighSince: s.QueueHighSince, QueueLowSince: s.QueueLowSince, Paused: s.Paused, PausedReason: s.PausedReason,
		PanicActive: s.PanicActive, LastHealthEval: s.LastHealthEval, Blocked: s.Blocked, RetriesQueued: s.RetriesQueued,
		Outbox: outbox, Stats: s.Stats,
	}
}
