package core

import (
	"fmt"
	"slices"
	"time"
)

// taskRecord is the control plane's mutable task: the public Task plus the
// queue handle and lease bookkeeping.
type taskRecord struct {
	queueItem
	Task
	failedOn   []AgentID // distinct agents an attempt failed on (poison detection)
	rejectedBy []AgentID // agents that refused the task (not its fault, never retried there)
	assignedAt time.Time
	confirmed  bool   // the agent reported the current attempt
	ackSeq     uint64 // heartbeats with seq <= ackSeq may predate the agent's acceptance
	// seqLimit (self-fencing agents; zero: none) is Assign.SeqLimit: the
	// agent refuses the assignment once it has sent heartbeat seqLimit,
	// so only a heartbeat from seqLimit on that does not list the attempt
	// proves the agent will never run it.
	seqLimit uint64
	probe    bool // dispatched as a probe into a PROBING domain
	// Inline storage for the common case, so placement does not allocate:
	// the latest decision, and the first attempt record.
	decision     Decision
	firstAttempt [1]AttemptRecord
	skipPass     uint64 // the scheduling pass that found no agent for this task in particular
}

// agentRecord is what the control plane knows about one agent.
type agentRecord struct {
	id          AgentID
	domain      string
	dom         *domainRecord // the record of domain
	slots       int
	address     string
	allowsExec  bool
	incarnation uint64
	lastSeq     uint64

	// state is the agent's connectivity; stopping is kept apart from it
	// because it is the agent's own word, not the cp's view: it holds over
	// a disconnect (the snapshot still shows it) and it coincides with held
	// (a stopping agent refuses work as busy).
	state          agentState
	stopping       bool
	registeredAt   time.Time
	connectedSince time.Time
	lastHeartbeat  time.Time
	disconnectedAt time.Time
	// reportedInterval is the heartbeat interval the agent last reported
	// (zero: it does not report one).
	reportedInterval time.Duration
	// selfFencing: the agent reported SelfFencing in its last heartbeat (it
	// knows the fencing fields of Assign).
	selfFencing bool

	running map[TaskID]*taskRecord // attempts leased to it

	health     *HealthWindow
	score      HealthScore
	quarantine quarantine

	// placement index links
	indexed          bool
	idxFree          int
	idxPrev, idxNext *agentRecord
}

func (a *agentRecord) free() int { return a.slots - len(a.running) }

func (a *agentRecord) eligible() bool {
	return a.state == agentConnected && !a.quarantine.active && !a.stopping && a.free() > 0
}

// connected reports whether the agent heartbeats in time (held or not).
func (a *agentRecord) connected() bool { return a.state.connected() }

// healthQuarantined reports whether a is quarantined for low health (not by
// an operator): only those count against the domain's cap.
func (a *agentRecord) healthQuarantined() bool {
	return a.quarantine.active && a.quarantine.by == quarantineByHealth
}

// agentState is an agent's connectivity as the cp sees it. The zero value
// is disconnected: a new record is counted disconnected until its first
// heartbeat connects it.
type agentState uint8

const (
	agentDisconnected agentState = iota // silent for HeartbeatTimeout, or stopped
	agentLost                           // disconnected for LostAfter: its tasks were rescheduled
	agentConnected                      // heartbeats in time and may take work
	// agentHeld is connected, but the agent refused work as busy: no
	// placement until its next heartbeat corrects the cp's view of it.
	agentHeld
)

func (s agentState) connected() bool { return s == agentConnected || s == agentHeld }

// quarantine is an agent's quarantine: the current one (while active) and
// the history that sets the next health quarantine's back-off, which
// outlives a release.
type quarantine struct {
	active  bool
	by      string    // ActorOperator or quarantineByHealth
	at      time.Time // when it began
	till    time.Time // health quarantines: end of the back-off
	n       int       // n of the latest health quarantine; decays
	decayed time.Time // when n last decayed or was set
}

// domainRecord is a failure domain: its isolation state machine, its
// placement index and its counts.
type domainRecord struct {
	health       *DomainHealth
	index        domainIndex
	agents       int // known agents
	disconnected int
	slots        int // total slots of known agents
	inFlight     int // tasks ASSIGNED or RUNNING in the domain
	probes       int // of those, probes dispatched while PROBING
	quarantined  int // health quarantines (operator ones aside)
	// Scratch of evaluateDomains: usable slots (connected, unquarantined
	// agents) and the outcomes in the failure window.
	usable, windowOK, windowFailed int
}

type modeState struct {
	Mode      Mode
	SetBy     string
	SetByName string // the token that set it (an operator's), if any
	Reason    string
	Since     time.Time
}

// ControlPlane is the control plane's state machine. See the package doc.
type ControlPlane struct {
	cfg Config
	now time.Time // latest time seen; inputs may not go back in time

	tasks       map[TaskID]*taskRecord
	terminalIDs []TaskID // terminal tasks in the order they ended, for eviction
	terminalOff int
	taskSeq     uint64
	queue       *Queue
	idem        *IdempotencyCache
	timeline    *Timeline

	agents    map[AgentID]*agentRecord
	agentList []*agentRecord // sorted by id: deterministic scans without map lookups
	// busy holds the agents with attempts leased to them, sorted by id:
	// the lease scan visits these, not the whole fleet. Rebuilt on
	// restore.
	busy        []*agentRecord
	domains     map[string]*domainRecord
	domainNames []string // sorted
	inFlight    int

	mode           modeState
	queueHighSince time.Time
	queueLowSince  time.Time
	paused         bool
	pausedReason   string
	panicActive    bool // the panic threshold holds domains out of isolation
	lastHealthEval time.Time
	blocked        map[string]Decision // per queue domain key: why its head waits
	// retriesQueued counts, per queue domain key, queued tasks with a
	// failure history; the rest are clean, and probes prefer them.
	retriesQueued map[string]int
	outbox        []Outbound
	stats         Stats
	skipKeys      []string // scratch for schedule
	// by and byActor: while an input naming who acted (By) is applied, its
	// name and actor; record stamps By on the events of that actor.
	by, byActor    string
	expiredScratch []*taskRecord
	// Caches of the reconcile pass, never part of the state (a restored
	// cp starts without them and scans): connCheckAt is a time before
	// which checkConnectivity finds nothing to do (zero: scan at the next
	// tick), and usableValid says every domain's usable slots are
	// current. Whatever could make them wrong calls agentsChanged.
	connCheckAt time.Time
	usableValid bool
	observer    func(Event)
	pass        uint64 // scheduling pass counter
}

// NewControlPlane validates cfg and returns an empty control plane whose mode
// is cfg.InitialMode, set by config.
func NewControlPlane(cfg Config, now time.Time) (*ControlPlane, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cp := &ControlPlane{
		cfg:           cfg,
		now:           now,
		tasks:         make(map[TaskID]*taskRecord),
		queue:         NewQueue(cfg.QueueCapacity, cfg.AgingInterval),
		idem:          NewIdempotencyCache(cfg.IdempotencyTTL, cfg.IdempotencyKeysMax),
		timeline:      NewTimeline(cfg.TimelineEventsMax),
		agents:        make(map[AgentID]*agentRecord),
		domains:       make(map[string]*domainRecord),
		blocked:       make(map[string]Decision),
		retriesQueued: make(map[string]int),
		mode:          modeState{Mode: cfg.InitialMode, SetBy: ActorConfig, Reason: "initial mode", Since: now},
	}
	cp.stats.SubmitRefused = map[RefusalKind]uint64{}
	cp.stats.Decisions = map[string]uint64{}
	cp.stats.TasksEnded = map[TaskState]uint64{}
	cp.record(Event{Kind: EventMode, Type: EventModeChanged, To: string(cfg.InitialMode), Actor: ActorConfig, Reason: "initial mode"})
	return cp, nil
}

// Config returns the configuration the control plane runs with.
func (cp *ControlPlane) Config() Config { return cp.cfg }

// Timeline gives read access to the audit timeline.
func (cp *ControlPlane) Timeline() *Timeline { return cp.timeline }

// OnEvent registers fn to see every timeline event as it is recorded (the
// daemons log from it, the simulator traces from it). fn must not call back
// into the control plane.
func (cp *ControlPlane) OnEvent(fn func(Event)) { cp.observer = fn }

// TakeOutbox returns the messages for agents produced so far and clears it.
func (cp *ControlPlane) TakeOutbox() []Outbound {
	out := cp.outbox
	cp.outbox = nil
	return out
}

// advance moves the control plane's notion of time forward; time never goes
// backwards inside the core even if a driver's clock does.
func (cp *ControlPlane) advance(now time.Time) time.Time {
	if now.After(cp.now) {
		cp.now = now
	}
	return cp.now
}

func (cp *ControlPlane) record(e Event) {
	e.Time = cp.now
	if cp.by != "" && e.Actor == cp.byActor {
		e.By = cp.by
	}
	e = cp.timeline.Append(e)
	if cp.observer != nil {
		cp.observer(e)
	}
}

// setState moves t to state `to` and records it once on the timeline.
func (cp *ControlPlane) setState(t *taskRecord, to TaskState, actor, reason string) {
	from := t.State
	if from.Terminal() {
		failf("task %s: transition %v→%v out of a terminal state", t.ID, from, to)
	}
	t.State, t.UpdatedAt = to, cp.now
	if reason != "" || to == TaskQueued {
		t.Reason = reason
	}
	cp.record(Event{Kind: EventTask, Type: TaskEventType(to), TaskID: t.ID,
		AgentID: t.AgentID, Domain: t.Spec.Domain, Attempt: t.Attempt, From: from.String(), To: to.String(), Actor: actor, Reason: reason})
	if to.Terminal() {
		cp.terminalIDs = append(cp.terminalIDs, t.ID)
		cp.stats.TasksEnded[to]++
	}
}

// SubmitInput asks for a new task.
type SubmitInput struct {
	Spec           TaskSpec `json:"spec"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	By             string   `json:"by,omitempty"` // the name of the token that submitted
}

// applySubmit validates and enqueues a task. With an idempotency key seen before
// and the same spec it returns the original task and replayed=true. A refused
// submission changes nothing but the refusal counters, which are per-process
// statistics (see Stats), not state.
func (cp *ControlPlane) applySubmit(now time.Time, in SubmitInput) (task Task, replayed bool, err error) {
	now = cp.advance(now)
	defer func() {
		if err != nil {
			cp.stats.SubmitRefused[RefusalKindOf(err)]++
		}
	}()
	spec, err := in.Spec.Normalize(cp.cfg)
	if err != nil {
		return Task{}, false, err
	}
	if len(in.IdempotencyKey) > idempotencyKeyMax {
		return Task{}, false, fmt.Errorf("%w: idempotency key longer than %d bytes", ErrInvalid, idempotencyKeyMax)
	}
	if in.IdempotencyKey != "" {
		id, found, err := cp.idem.Lookup(now, in.IdempotencyKey, spec)
		if err != nil {
			return Task{}, false, fmt.Errorf("%w: key %q belongs to task %s", err, in.IdempotencyKey, id)
		}
		if found {
			if t, ok := cp.tasks[id]; ok {
				cp.stats.SubmitReplayed++
				return t.Task.clone(), true, nil
			}
			cp.idem.Forget(in.IdempotencyKey) // task record evicted: key is void
		}
	}
	switch cp.mode.Mode {
	case ModeReadOnly, ModeDraining:
		return Task{}, false, fmt.Errorf("%w: the scheduler is %s (set by %s: %s), not accepting submissions",
			ErrModeRefused, cp.mode.Mode, cp.mode.SetBy, cp.mode.Reason)
	case ModeDegraded:
		if spec.Priority == PriorityLow {
			return Task{}, false, fmt.Errorf("%w (%s)", ErrLowPriorityShed, cp.mode.Reason)
		}
	}
	if cp.queue.Len() >= cp.queue.Cap() {
		return Task{}, false, fmt.Errorf("%w: %d of %d queued", ErrQueueFull, cp.queue.Len(), cp.queue.Cap())
	}
	cp.evictTasks()
	if len(cp.tasks) >= cp.cfg.TasksMax {
		return Task{}, false, fmt.Errorf("%w: %d tasks held, none finished to forget", ErrQueueFull, len(cp.tasks))
	}
	cp.taskSeq++
	t := &taskRecord{Task: Task{
		ID: TaskID(fmt.Sprintf("%s%06d", cp.cfg.TaskIDPrefix, cp.taskSeq)), IdempotencyKey: in.IdempotencyKey, Spec: spec,
		State: TaskQueued, SubmittedAt: now, UpdatedAt: now,
	}}
	t.queueItem = queueItem{id: t.ID, prio: spec.Priority, domain: spec.Domain, owner: t}
	err = cp.queue.Push(&t.queueItem, now)
	if err != nil {
		failf("queue push after capacity check: %v", err)
	}
	t.EnqueuedAt = now
	cp.tasks[t.ID] = t
	if in.IdempotencyKey != "" {
		cp.idem.Put(now, in.IdempotencyKey, t.ID, spec)
	}
	cp.stats.SubmitAccepted++
	cp.record(Event{Kind: EventTask, Type: EventTaskQueued, TaskID: t.ID, Domain: spec.Domain, To: TaskQueued.String(), Actor: ActorClient, Reason: "submitted"})
	cp.schedule(now)
	return t.Task.clone(), false, nil
}

// evictTasks forgets the oldest terminal tasks while more than TasksMax-1 are held.
func (cp *ControlPlane) evictTasks() {
	for len(cp.tasks) >= cp.cfg.TasksMax && cp.terminalOff < len(cp.terminalIDs) {
		id := cp.terminalIDs[cp.terminalOff]
		cp.terminalIDs[cp.terminalOff] = ""
		cp.terminalOff++
		if t, ok := cp.tasks[id]; ok {
			if t.IdempotencyKey != "" {
				cp.idem.Forget(t.IdempotencyKey)
			}
			delete(cp.tasks, id)
			cp.stats.TasksEvicted++
		}
	}
	if cp.terminalOff > 1024 && cp.terminalOff*2 > len(cp.terminalIDs) {
		cp.terminalIDs = append(cp.terminalIDs[:0:0], cp.terminalIDs[cp.terminalOff:]...)
		cp.terminalOff = 0
	}
}

// CancelInput asks to cancel a task.
type CancelInput struct {
	TaskID TaskID `json:"task_id"`
	Actor  string `json:"actor,omitempty"`
	By     string `json:"by,omitempty"` // the name of the token that asked
	Reason string `json:"reason,omitempty"`
}

// applyCancel marks a task CANCELLED; a running attempt is told to stop.
func (cp *ControlPlane) applyCancel(now time.Time, in CancelInput) (Task, error) {
	now = cp.advance(now)
	t, ok := cp.tasks[in.TaskID]
	if !ok {
		return Task{}, fmt.Errorf("%w: task %q", ErrNotFound, in.TaskID)
	}
	if cp.mode.Mode == ModeReadOnly {
		return Task{}, fmt.Errorf("%w: the scheduler is READ_ONLY, task changes are refused", ErrModeRefused)
	}
	if t.State.Terminal() {
		return t.Task.clone(), fmt.Errorf("%w: task %s is already %s", ErrConflict, t.ID, t.State)
	}
	actor := orDefault(in.Actor, ActorClient)
	cp.cancelTask(t, actor, orDefault(in.Reason, "cancelled by "+actor))
	cp.schedule(now)
	return t.Task.clone(), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// cancelTask ends t as CANCELLED wherever it is.
func (cp *ControlPlane) cancelTask(t *taskRecord, actor, reason string) {
	switch t.State {
	case TaskQueued:
		cp.dequeue(t)
	case TaskAssigned, TaskRunning:
		cp.sendCancel(t, reason)
		cp.releaseLease(t)
	}
	cp.setState(t, TaskCancelled, actor, reason)
}

func (cp *ControlPlane) sendCancel(t *taskRecord, reason string) {
	a := cp.agents[t.AgentID]
	addr := ""
	if a != nil {
		addr = a.address
	}
	cp.outbox = append(cp.outbox, Outbound{To: t.AgentID, Address: addr, Cancel: &CancelTask{TaskID: t.ID, Attempt: t.Attempt, Reason: reason}})
}

// PurgeInput selects queued tasks to cancel. Exactly one of All, Domain and
// OlderThan must be set.
type PurgeInput struct {
	All       bool          `json:"all,omitempty"`
	Domain    string        `json:"domain,omitempty"`
	OlderThan time.Duration `json:"older_than,omitempty"`
	Actor     string        `json:"actor,omitempty"`
	By        string        `json:"by,omitempty"` // the name of the token that asked
	Reason    string        `json:"reason,omitempty"`
}

func (p PurgeInput) validate() error {
	n := 0
	if p.All {
		n++
	}
	if p.Domain != "" {
		n++
		if err := ValidateDomain(p.Domain); err != nil {
			return err
		}
	}
	if p.OlderThan != 0 {
		n++
		if p.OlderThan < 0 {
			return fmt.Errorf("%w: older_than must be positive", ErrInvalid)
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: purge needs exactly one filter: all, domain or older_than_seconds", ErrInvalid)
	}
	return nil
}

// applyPurge cancels every queued task the filter selects and records it, both per
// task and as one queue event. It returns how many were purged.
func (cp *ControlPlane) applyPurge(now time.Time, in PurgeInput) (int, error) {
	now = cp.advance(now)
	if err := in.validate(); err != nil {
		return 0, err
	}
	actor := orDefault(in.Actor, ActorOperator)
	reason := orDefault(in.Reason, "queue purge")
	var victims []*taskRecord
	cp.queue.Each(func(it *queueItem) {
		switch {
		case in.All, in.Domain != "" && it.domain == in.Domain, in.OlderThan > 0 && now.Sub(it.enqueuedAt) >= in.OlderThan:
			victims = append(victims, it.owner)
		}
	})
	for _, t := range victims {
		cp.cancelTask(t, actor, reason)
	}
	filter := "all"
	switch {
	case in.Domain != "":
		filter = "domain=" + in.Domain
	case in.OlderThan > 0:
		filter = "older_than=" + in.OlderThan.String()
	}
	cp.stats.TasksPurged += uint64(len(victims))
	cp.record(Event{Kind: EventQueue, Type: EventQueuePurged, Domain: in.Domain, Actor: actor, Reason: reason + " (" + filter + ")", Count: len(victims)})
	return len(victims), nil
}

// SetModeInput is an operator's (or config's) mode change.
type SetModeInput struct {
	Mode   Mode   `json:"mode"`
	Actor  string `json:"actor,omitempty"`
	By     string `json:"by,omitempty"` // the name of the token that asked
	Reason string `json:"reason,omitempty"`
}

// applySetMode changes the mode on behalf of an operator. It records who and why.
func (cp *ControlPlane) applySetMode(now time.Time, in SetModeInput) error {
	now = cp.advance(now)
	if _, err := ParseMode(string(in.Mode)); err != nil {
		return err
	}
	if len(in.Reason) > 512 {
		return fmt.Errorf("%w: reason longer than 512 bytes", ErrInvalid)
	}
	actor := orDefault(in.Actor, ActorOperator)
	if actor == ActorSelfProtection {
		// Only the core itself acts as self-protection; an input claiming
		// to (a log entry is data too) is refused, not a crash.
		return fmt.Errorf("%w: actor %q is reserved for the core's own mode changes", ErrInvalid, actor)
	}
	cp.setMode(in.Mode, actor, orDefault(in.Reason, "set by "+actor))
	cp.schedule(now)
	return nil
}

func (cp *ControlPlane) setMode(m Mode, actor, reason string) {
	from := cp.mode.Mode
	cp.mode = modeState{Mode: m, SetBy: actor, Reason: reason, Since: cp.now}
	if actor == cp.byActor {
		cp.mode.SetByName = cp.by
	}
	cp.queueHighSince, cp.queueLowSince = time.Time{}, time.Time{}
	cp.stats.ModeChanges++
	cp.record(Event{Kind: EventMode, Type: EventModeChanged, From: string(from), To: string(m), Actor: actor, Reason: reason})
}

// selfProtectionMay reports whether self-protection may change the current
// mode: only NORMAL (whoever set it: an operator's NORMAL hands control back)
// or a DEGRADED it set itself. It never overrides READ_ONLY, DRAINING or an
// operator's DEGRADED.
func (cp *ControlPlane) selfProtectionMay() bool {
	return cp.mode.Mode == ModeNormal || cp.mode.Mode == ModeDegraded && cp.mode.SetBy == ActorSelfProtection
}

// Mode returns the current mode, who set it and why.
func (cp *ControlPlane) Mode() (Mode, string, string) {
	return cp.mode.Mode, cp.mode.SetBy, cp.mode.Reason
}

// ModeSetByName is the name of the token that set the mode ("" when none
// did: config, self-protection, or an operator without a named token).
func (cp *ControlPlane) ModeSetByName() string { return cp.mode.SetByName }

// Task returns a copy of a task.
func (cp *ControlPlane) Task(id TaskID) (Task, bool) {
	t, ok := cp.tasks[id]
	if !ok {
		return Task{}, false
	}
	out := t.Task.clone()
	if t.State == TaskQueued {
		if d, ok := cp.blocked[t.domain]; ok {
			out.LastDecision = &d
		}
	}
	return out, true
}

// idHeap keeps the smallest ids it is offered, at most a limit of them,
// as a max-heap: ids[0] is the largest kept.
type idHeap struct{ ids []TaskID }

// wants reports whether keep would keep id.
func (h *idHeap) wants(id TaskID, limit int) bool {
	return len(h.ids) < limit || id < h.ids[0]
}

// keep offers id: it is kept while fewer than limit are, or in place of
// the largest kept when it is smaller.
func (h *idHeap) keep(id TaskID, limit int) {
	if !h.wants(id, limit) {
		return
	}
	ids := h.ids
	if len(ids) < limit {
		ids = append(ids, id)
		for i := len(ids) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if ids[p] >= ids[i] {
				break
			}
			ids[p], ids[i] = ids[i], ids[p]
			i = p
		}
		h.ids = ids
		return
	}
	ids[0] = id
	for i := 0; ; { // sift down
		l, big := 2*i+1, i
		if l < len(ids) && ids[l] > ids[big] {
			big = l
		}
		if r := l + 1; r < len(ids) && ids[r] > ids[big] {
			big = r
		}
		if big == i {
			return
		}
		ids[i], ids[big] = ids[big], ids[i]
		i = big
	}
}

// TaskFilter selects tasks for listing.
type TaskFilter struct {
	State  *TaskState
	Domain string
	After  TaskID // for paging: ids strictly after this one
	Limit  int    // 0 means 100; at most 1000
}

// limit is the page size f asks for, within its bounds.
func (f TaskFilter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return min(f.Limit, 1000)
}

// Tasks lists tasks by id order.
//
// It runs under the cp's read lock, which holds off every write, so it
// keeps the Limit smallest matching ids in a bounded heap (a page of 100
// out of 100,000 tasks neither collects nor sorts the others), reads a
// task's record only when its id would be kept (a record read is a cache
// miss; the id is the map's key), and for QUEUED walks the queue alone.
func (cp *ControlPlane) Tasks(f TaskFilter) []Task {
	limit := f.limit()
	sel := idHeap{ids: make([]TaskID, 0, min(limit, len(cp.tasks)))}
	consider := func(id TaskID, t *taskRecord) {
		if id > f.After && sel.wants(id, limit) && t != nil &&
			(f.State == nil || t.State == *f.State) && (f.Domain == "" || t.Spec.Domain == f.Domain) {
			sel.keep(id, limit)
		}
	}
	if f.State != nil && *f.State == TaskQueued {
		cp.queue.Each(func(it *queueItem) { consider(it.id, it.owner) })
	} else {
		for id, t := range cp.tasks {
			consider(id, t)
		}
	}
	ids := sel.ids
	slices.Sort(ids)
	out := make([]Task, len(ids))
	for i, id := range ids {
		out[i], _ = cp.Task(id)
	}
	return out
}
