package core

import (
	"slices"
	"strings"
	"time"
)

// Stats are the control plane's monotonically increasing counters; drivers
// export them as metrics.
//
// They are per-process statistics, not replicated state: they count what
// this process applied (a follower replaying the log counts too, a restarted
// cp counts from zero, as Prometheus counters allow), and a state export or
// hash leaves them out. That is what lets a refused input stay in the core's
// books: a refused submission changes no state, only SubmitRefused, so the
// simulator and the cp count refusals the same way without the count being
// part of what replicas must agree on.
type Stats struct {
	SubmitAccepted    uint64
	SubmitReplayed    uint64
	SubmitRefused     map[RefusalKind]uint64
	Decisions         map[string]uint64 // by outcome: assigned, no_capacity, ...
	TasksEnded        map[TaskState]uint64
	TasksEvicted      uint64
	TasksPurged       uint64
	Requeues          uint64
	LostLeases        uint64
	StuckLeases       uint64
	StaleIgnored      uint64
	UnknownCancelled  uint64
	PoisonTasks       uint64
	Quarantines       uint64
	QuarantinesCapped uint64
	DomainTransitions uint64
	ModeChanges       uint64
	AgentConnects     uint64
	AgentDisconnects  uint64
	Pauses            uint64
	Panics            uint64 // isolation panics started
	Reconciles        uint64
}

// Stats returns a copy of the counters.
func (cp *ControlPlane) Stats() Stats {
	s := cp.stats
	s.SubmitRefused = cloneMap(s.SubmitRefused)
	s.Decisions = cloneMap(s.Decisions)
	s.TasksEnded = cloneMap(s.TasksEnded)
	return s
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// DomainView is a domain's state in a snapshot.
type DomainView struct {
	Name                string      `json:"name"`
	State               DomainState `json:"state"`
	Since               time.Time   `json:"since"`
	Reason              string      `json:"reason,omitempty"`
	Panic               string      `json:"panic,omitempty"`
	FailureRate         float64     `json:"failure_rate"`
	Volume              int         `json:"volume"`
	CooldownSeconds     float64     `json:"cooldown_seconds"`
	Agents              int         `json:"agents"`
	AgentsConnected     int         `json:"agents_connected"`
	AgentsQuarantined   int         `json:"agents_quarantined"`
	HealthQuarantined   int         `json:"health_quarantined"`
	HealthQuarantineCap int         `json:"health_quarantine_cap"`
	Slots               int         `json:"slots"`
	FreeSlots           int         `json:"free_slots"`
	Active              int         `json:"active"`
	Queued              int         `json:"queued"`
}

// AgentView is an agent's state for the API.
type AgentView struct {
	ID        AgentID `json:"id"`
	Domain    string  `json:"domain"`
	Address   string  `json:"address,omitempty"`
	Slots     int     `json:"slots"`
	Running   int     `json:"running"`
	Connected bool    `json:"connected"`
	Stopping  bool    `json:"stopping"`
	// Held: the agent refused an assignment as busy; it gets no work until
	// its next heartbeat corrects the cp's view of its slots.
	Held             bool        `json:"held,omitempty"`
	AllowsExec       bool        `json:"allows_exec"`
	Quarantined      bool        `json:"quarantined"`
	QuarantinedBy    string      `json:"quarantined_by,omitempty"`
	QuarantinedUntil time.Time   `json:"quarantined_until,omitzero"`
	Quarantines      int         `json:"quarantine_count"`
	Health           HealthScore `json:"health"`
	LastHeartbeat    time.Time   `json:"last_heartbeat"`
	RegisteredAt     time.Time   `json:"registered_at"`
	Tasks            []Lease     `json:"tasks,omitempty"`
	// HeartbeatIntervalMillis is the interval the agent reports it
	// heartbeats at, or the cp's own when it reports none.
	HeartbeatIntervalMillis int64 `json:"heartbeat_interval_ms"`
}

func (cp *ControlPlane) agentView(a *agentRecord, withTasks bool) AgentView {
	v := AgentView{ID: a.id, Domain: a.domain, Address: a.address, Slots: a.slots, Running: len(a.running),
		Connected: a.connected(), Stopping: a.stopping, Held: a.state == agentHeld, AllowsExec: a.allowsExec, Quarantined: a.quarantine.active,
		QuarantinedBy: a.quarantine.by, Quarantines: a.quarantine.n, Health: a.score,
		LastHeartbeat: a.lastHeartbeat, RegisteredAt: a.registeredAt,
		HeartbeatIntervalMillis: cp.cfg.HeartbeatInterval.Milliseconds()}
	if a.reportedInterval > 0 {
		v.HeartbeatIntervalMillis = a.reportedInterval.Milliseconds()
	}
	if a.healthQuarantined() {
		v.QuarantinedUntil = a.quarantine.till
	}
	if withTasks {
		for _, t := range a.running {
			v.Tasks = append(v.Tasks, Lease{TaskID: t.ID, Attempt: t.Attempt})
		}
		slices.SortFunc(v.Tasks, func(x, y Lease) int { return strings.Compare(string(x.TaskID), string(y.TaskID)) })
	}
	return v
}

// Agent returns one agent's view with its health components and tasks.
func (cp *ControlPlane) Agent(id AgentID) (AgentView, bool) {
	a, ok := cp.agents[id]
	if !ok {
		return AgentView{}, false
	}
	return cp.agentView(a, true), true
}

// Agents lists agents in id order.
func (cp *ControlPlane) Agents() []AgentView {
	out := make([]AgentView, 0, len(cp.agentList))
	for _, a := range cp.agentList {
		out = append(out, cp.agentView(a, false))
	}
	return out
}

// DomainFailure is one domain's entry in the snapshot's domain_failures.
type DomainFailure struct {
	FailureRate float64     `json:"failure_rate"`
	Volume      int         `json:"volume"`
	State       DomainState `json:"state"`
	Reason      string      `json:"reason,omitempty"`
	Panic       string      `json:"panic,omitempty"` // why the panic threshold holds it out of isolation
}

// AgentCounts summarizes the fleet in the snapshot.
type AgentCounts struct {
	Known       int `json:"known"`
	Connected   int `json:"connected"`
	Quarantined int `json:"quarantined"`
}

// DebugView is what GET /scheduler/debug/snapshot returns (the "debug
// snapshot" of the runbook; not a raft snapshot, which is Export): the runbook's
// fields first, then the detail an operator needs next.
type DebugView struct {
	Time                 time.Time                `json:"time"`
	Mode                 Mode                     `json:"mode"`
	ModeSetBy            string                   `json:"mode_set_by"`
	ModeSetByName        string                   `json:"mode_set_by_name"` // the token that set it ("" for none)
	ModeReason           string                   `json:"mode_reason"`
	ModeSince            time.Time                `json:"mode_since"`
	Drained              bool                     `json:"drained"`
	ReschedulingPaused   bool                     `json:"rescheduling_paused"`
	PausedReason         string                   `json:"paused_reason,omitempty"`
	QueueDepth           int                      `json:"queue_depth"`
	QueueCapacity        int                      `json:"queue_capacity"`
	OldestTaskAgeSeconds float64                  `json:"oldest_task_age_seconds"`
	InFlight             int                      `json:"in_flight"`
	DomainActive         map[string]int           `json:"domain_active"`
	DomainFailures       map[string]DomainFailure `json:"domain_failures"`
	IsolationPanic       IsolationPanic           `json:"isolation_panic"`
	Agents               AgentCounts              `json:"agents"`
	AgentsByDomain       map[string]AgentCounts   `json:"agents_by_domain"`
	Domains              []DomainView             `json:"domains"`
	Blocked              map[string]Decision      `json:"blocked,omitempty"` // why each queued domain key waits ("" = unconstrained)
	TimelineSeq          uint64                   `json:"timeline_seq"`
}

// DebugView returns the scheduler's state at now (for ages).
func (cp *ControlPlane) DebugView(now time.Time) DebugView {
	if now.Before(cp.now) {
		now = cp.now
	}
	s := DebugView{
		Time: now, Mode: cp.mode.Mode, ModeSetBy: cp.mode.SetBy, ModeSetByName: cp.mode.SetByName, ModeReason: cp.mode.Reason, ModeSince: cp.mode.Since,
		ReschedulingPaused: cp.paused, PausedReason: cp.pausedReason,
		QueueDepth: cp.queue.Len(), QueueCapacity: cp.queue.Cap(), InFlight: cp.inFlight,
		DomainActive: map[string]int{}, DomainFailures: map[string]DomainFailure{}, AgentsByDomain: map[string]AgentCounts{},
		TimelineSeq: cp.timeline.LastSeq(), IsolationPanic: cp.isolationPanic(),
	}
	s.Drained = cp.mode.Mode == ModeDraining && s.QueueDepth == 0 && cp.inFlight == 0
	if oldest, ok := cp.queue.Oldest(); ok {
		s.OldestTaskAgeSeconds = now.Sub(oldest).Seconds()
	}
	perDomainQ := map[string]int{}
	for _, a := range cp.agentList {
		c := s.AgentsByDomain[a.domain]
		c.Known++
		if a.connected() {
			c.Connected++
		}
		if a.quarantine.active {
			c.Quarantined++
			perDomainQ[a.domain]++
		}
		s.AgentsByDomain[a.domain] = c
		s.Agents.Known++
		if a.connected() {
			s.Agents.Connected++
		}
		if a.quarantine.active {
			s.Agents.Quarantined++
		}
	}
	for _, name := range cp.domainNames {
		d := cp.domains[name]
		rate, vol := d.health.FailureRate(now)
		s.DomainActive[name] = d.inFlight
		s.DomainFailures[name] = DomainFailure{FailureRate: rate, Volume: vol, State: d.health.State, Reason: d.health.Reason, Panic: d.health.Panic}
		ac := s.AgentsByDomain[name]
		s.Domains = append(s.Domains, DomainView{
			Name: name, State: d.health.State, Since: d.health.Since, Reason: d.health.Reason, Panic: d.health.Panic,
			FailureRate: rate, Volume: vol, CooldownSeconds: d.health.Cooldown().Seconds(),
			Agents: d.agents, AgentsConnected: ac.Connected, AgentsQuarantined: perDomainQ[name],
			HealthQuarantined: d.quarantined, HealthQuarantineCap: cp.quarantineCap(d),
			Slots: d.slots, FreeSlots: d.index.freeTotal, Active: d.inFlight, Queued: cp.queue.DomainLen(name),
		})
	}
	if cp.queue.Len() > 0 {
		s.Blocked = map[string]Decision{}
		for _, key := range cp.queue.DomainKeys() {
			if d, ok := cp.blocked[key]; ok {
				s.Blocked[key] = d
			}
		}
	}
	return s
}

// QueueDepth is the number of queued tasks.
func (cp *ControlPlane) QueueDepth() int { return cp.queue.Len() }

// InFlight is the number of ASSIGNED or RUNNING tasks.
func (cp *ControlPlane) InFlight() int { return cp.inFlight }

// ReschedulingPaused reports whether mass-disconnect protection is active.
func (cp *ControlPlane) ReschedulingPaused() bool { return cp.paused }
