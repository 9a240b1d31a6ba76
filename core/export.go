package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// State export and restore: the control plane's whole state as bytes, for
// the snapshots of the replicated log (issue 10), backups and replays.
//
// An export is
//
//	"fluxforge-core-state\n" | version (uvarint) | layout fingerprint | body
//
// where the body is a stateV2 in the state codec (statecodec.go). The same
// state always exports to the same bytes: maps are written in key order, and nothing depends on pointers or on memory layout.
// Internal links (queue items and their tasks, agents' domain records and
// running tasks, the placement index) are written as ids and rebuilt by
// Restore. Scratch space is not state and is not written.

// StateFormatVersion is the version of the export format Export writes.
// Restore reads it and version 1 (before events and the mode named the
// token that acted, `by`, and before agents' self-fencing; see
// export_v1.go).
const StateFormatVersion = 2

const stateMagic = "fluxforge-core-state\n"

// stateV2 is the body of a version 2 export.
type stateV2 struct {
	Config   Config // FaultPoints are not state: Restore takes them
	Now      time.Time
	TaskSeq  uint64
	Pass     uint64
	InFlight int

	Tasks       []taskExport // by id
	TerminalIDs []TaskID     // terminal tasks in the order they ended, oldest first (eviction order)
	Queue       queueExport
	Idempotency idemExport
	Timeline    timelineExport
	Agents      []agentExport  // by id
	Domains     []domainExport // by name

	Mode           modeState
	QueueHighSince time.Time
	QueueLowSince  time.Time
	Paused         bool
	PausedReason   string
	PanicActive    bool
	LastHealthEval time.Time
	Blocked        []blockedExport  // by domain key
	RetriesQueued  []keyCountExport // by domain key, non-zero only
	Outbox         []Outbound       // not yet taken by the driver
	Stats          Stats
}

type taskExport struct {
	Task       Task // LastDecision is the record's own decision
	FailedOn   []AgentID
	RejectedBy []AgentID
	AssignedAt time.Time
	Confirmed  bool
	AckSeq     uint64
	SeqLimit   uint64
	Probe      bool
	SkipPass   uint64
}

// queueExport is the queue: per domain key (sorted), per priority, the FIFO
// of queued tasks, with the enqueue sequence and time that order them.
type queueExport struct {
	Seq     uint64
	RRAfter string
	Domains []queueDomainExport
}

type queueDomainExport struct {
	Key   string
	Lists [numPriorities][]queuedExport
}

type queuedExport struct {
	ID         TaskID
	Seq        uint64
	EnqueuedAt time.Time
}

// idemExport holds the live idempotency entries in insertion (expiry) order.
type idemExport struct {
	Evicted uint64
	Entries []idemEntryExport
}

type idemEntryExport struct {
	Key       string
	Task      TaskID
	Spec      TaskSpec
	ExpiresAt time.Time
}

// timelineExport holds the events still in the ring, oldest first.
type timelineExport struct {
	NextSeq uint64
	Dropped uint64
	Events  []Event
}

type agentExport struct {
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
	SelfFencing      bool
	Running          []TaskID // sorted
	Health           healthExport
	Score            HealthScore
	Quarantine       quarantineExport
}

type healthExport struct {
	Interval time.Duration
	Since    time.Time
	Buckets  []bucketExport // the ring as it is (a bucket's slot follows from its index)
	Results  []outcomeExport
	Flaps    []time.Time
}

type bucketExport struct {
	Index      int64
	Heartbeats int
	LatencySum time.Duration
	LatencyN   int
}

type outcomeExport struct {
	At       time.Time
	Task     TaskID
	OK       bool
	Forgiven bool
}

type quarantineExport struct {
	Active  bool
	By      string
	At      time.Time
	Till    time.Time
	N       int
	Decayed time.Time
}

type domainExport struct {
	Name       string
	State      DomainState
	Since      time.Time
	Reason     string
	Isolations int
	Cooldown   time.Duration
	Cause      isolationCause
	Results    []outcomeExport
	ProbeOK    int
	ProbeFail  []TaskID
	IsolatedBy []TaskID
	Panic      string

	Agents       int
	Disconnected int
	Slots        int
	InFlight     int
	Probes       int
	Quarantined  int
	// The placement index: per free-slot count, the eligible agents in
	// the order they were indexed (the longest indexed is placed first).
	IndexBuckets [][]AgentID
	IndexMaxFree int
}

type blockedExport struct {
	Key      string
	Decision Decision
}

type keyCountExport struct {
	Key string
	N   uint64
}

var stateV2Fingerprint = layoutFingerprint(reflect.TypeFor[stateV2]())

// Export encodes everything the control plane holds. The same state always
// gives the same bytes. It changes nothing.
//
// The tasks, most of the state, are written one at a time as they are
// exported (stateV2.Tasks is never built here), so an export holds no
// second copy of them: the bytes are those of encoding exportState().
func (cp *ControlPlane) Export() ([]byte, error) {
	s := cp.exportStateBut(false)
	e := &stateEncoder{buf: make([]byte, 0, 4096+len(cp.tasks)*384+len(cp.agentList)*512)}
	err := e.state(&s, func(field int) (bool, error) {
		switch field {
		case stateV2TasksField:
			return true, cp.encodeTasks(e)
		case stateV2IdemField:
			return true, cp.encodeIdempotency(e)
		case stateV2TimelineField:
			return true, cp.encodeTimeline(e)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return e.buf, nil
}

// state writes an export of s: the header, then each field of s in order,
// written by bulk when it reports so (the fields Export and Capture do not
// hold in s), else from s.
func (e *stateEncoder) state(s *stateV2, bulk func(field int) (bool, error)) error {
	e.buf = append(e.buf, stateMagic...)
	e.uvarint(StateFormatVersion)
	e.bytes([]byte(stateV2Fingerprint))
	v := reflect.ValueOf(s).Elem()
	idx, err := e.fields.of(v.Type())
	if err != nil {
		return err
	}
	for _, i := range idx {
		done, err := bulk(i)
		if err == nil && !done {
			err = e.value(v.Field(i))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The fields of stateV2 Export streams (the bulk of the state).
var (
	stateV2TasksField    = stateV2Field("Tasks")
	stateV2TerminalField = stateV2Field("TerminalIDs") // Capture copies it; Export writes it in place
	stateV2IdemField     = stateV2Field("Idempotency")
	stateV2TimelineField = stateV2Field("Timeline")
)

func stateV2Field(name string) int {
	f, ok := reflect.TypeFor[stateV2]().FieldByName(name)
	if !ok || len(f.Index) != 1 {
		panic("core: stateV2 has no field " + name)
	}
	return f.Index[0]
}

// encodeIdempotency writes stateV2.Idempotency (an idemExport: Evicted,
// then Entries) as exportState builds it, one entry at a time.
func (cp *ControlPlane) encodeIdempotency(e *stateEncoder) error {
	e.uvarint(cp.idem.evicted)
	live := cp.idem.order[cp.idem.head:]
	n := 0
	for _, x := range live {
		if x != nil && x.live {
			n++
		}
	}
	e.uvarint(uint64(n))
	var ie idemEntryExport
	v := reflect.ValueOf(&ie).Elem()
	for _, x := range live {
		if x != nil && x.live {
			ie = idemEntryExport{Key: x.key, Task: x.task, Spec: x.spec, ExpiresAt: x.expiresAt}
			if err := e.value(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// exportIdempotency is stateV2.Idempotency: the live entries, oldest
// first.
func (cp *ControlPlane) exportIdempotency() idemExport {
	live := cp.idem.order[cp.idem.head:]
	x := idemExport{Evicted: cp.idem.evicted}
	if len(live) > 0 {
		x.Entries = make([]idemEntryExport, 0, len(live))
	}
	for _, e := range live {
		if e != nil && e.live {
			x.Entries = append(x.Entries, idemEntryExport{Key: e.key, Task: e.task, Spec: e.spec, ExpiresAt: e.expiresAt})
		}
	}
	return x
}

// encodeTimeline writes stateV2.Timeline (a timelineExport: NextSeq,
// Dropped, then Events) from the ring itself, oldest first.
func (cp *ControlPlane) encodeTimeline(e *stateEncoder) error {
	tl := cp.timeline
	e.uvarint(tl.nextSeq)
	e.uvarint(tl.dropped)
	e.uvarint(uint64(tl.n))
	ring := reflect.ValueOf(tl.ring)
	for i := range tl.n {
		if err := e.value(ring.Index((tl.start + i) % len(tl.ring))); err != nil {
			return err
		}
	}
	return nil
}

// encodeTasks writes stateV2.Tasks as exportState builds it (by id), one
// task at a time through one reused taskExport.
func (cp *ControlPlane) encodeTasks(e *stateEncoder) error {
	ids := cp.sortedTaskIDs()
	return encodeTaskExports(e, len(ids), func(i int) taskExport { return cp.exportTask(ids[i]) })
}

// encodeTaskExports writes a []taskExport of n elements, the i-th given by
// at, one at a time through one reused taskExport.
func encodeTaskExports(e *stateEncoder, n int, at func(i int) taskExport) error {
	e.uvarint(uint64(n))
	var te taskExport
	v := reflect.ValueOf(&te).Elem()
	for i := range n {
		te = at(i)
		if err := e.value(v); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) sortedTaskIDs() []TaskID {
	ids := make([]TaskID, 0, len(cp.tasks))
	for id := range cp.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (cp *ControlPlane) exportTask(id TaskID) taskExport { return exportRecord(cp.tasks[id]) }

func exportRecord(t *taskRecord) taskExport {
	return taskExport{Task: t.Task, FailedOn: t.failedOn, RejectedBy: t.rejectedBy, AssignedAt: t.assignedAt,
		Confirmed: t.confirmed, AckSeq: t.ackSeq, SeqLimit: t.seqLimit, Probe: t.probe, SkipPass: t.skipPass}
}

// StateHash is the hex SHA-256 of the control plane's export.
func (cp *ControlPlane) StateHash() string {
	b, err := cp.Export()
	if err != nil {
		failf("export: %v", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func exportOutcomes(w *outcomeWindow) []outcomeExport {
	out := make([]outcomeExport, len(w.entries))
	for i, e := range w.entries {
		out[i] = outcomeExport{At: e.at, Task: e.task, OK: e.ok, Forgiven: e.forgiven}
	}
	return out
}

func (cp *ControlPlane) exportState() stateV2 { return cp.exportStateBut(true) }

// exportStateBut is exportState, with the tasks, the idempotency entries
// and the timeline only when withTasks (Export streams those).
func (cp *ControlPlane) exportStateBut(withTasks bool) stateV2 {
	cfg := cp.cfg
	cfg.FaultPoints = nil
	s := stateV2{
		Config: cfg, Now: cp.now, TaskSeq: cp.taskSeq, Pass: cp.pass, InFlight: cp.inFlight,
		TerminalIDs: slices.Clone(cp.terminalIDs[cp.terminalOff:]),
		Mode:        cp.mode, QueueHighSince: cp.queueHighSince, QueueLowSince: cp.queueLowSince,
		Paused: cp.paused, PausedReason: cp.pausedReason, PanicActive: cp.panicActive, LastHealthEval: cp.lastHealthEval,
		Outbox: cp.outbox, Stats: cp.stats,
	}

	if withTasks {
		ids := cp.sortedTaskIDs()
		s.Tasks = make([]taskExport, len(ids))
		for i, id := range ids {
			s.Tasks[i] = cp.exportTask(id)
		}
	}

	q := cp.queue
	s.Queue = queueExport{Seq: q.seq, RRAfter: q.rrAfter, Domains: make([]queueDomainExport, len(q.domains))}
	for i, d := range q.domains {
		qd := queueDomainExport{Key: d.key}
		for p := range numPriorities {
			for it := d.lists[p].head; it != nil; it = it.next {
				qd.Lists[p] = append(qd.Lists[p], queuedExport{ID: it.id, Seq: it.seq, EnqueuedAt: it.enqueuedAt})
			}
		}
		s.Queue.Domains[i] = qd
	}

	if withTasks {
		s.Idempotency = cp.exportIdempotency()

		tl := cp.timeline
		s.Timeline = timelineExport{NextSeq: tl.nextSeq, Dropped: tl.dropped, Events: make([]Event, tl.n)}
		for i := range tl.n {
			s.Timeline.Events[i] = tl.ring[(tl.start+i)%len(tl.ring)]
		}
	}

	s.Agents = make([]agentExport, len(cp.agentList))
	for i, a := range cp.agentList {
		running := make([]TaskID, 0, len(a.running))
		for id := range a.running {
			running = append(running, id)
		}
		slices.Sort(running)
		h := a.health
		he := healthExport{Interval: h.interval, Since: h.since, Buckets: make([]bucketExport, len(h.buckets)),
			Results: exportOutcomes(&h.results), Flaps: h.flaps}
		for j, b := range h.buckets {
			he.Buckets[j] = bucketExport{Index: b.index, Heartbeats: b.heartbeats, LatencySum: b.latencySum, LatencyN: b.latencyN}
		}
		aq := a.quarantine
		s.Agents[i] = agentExport{ID: a.id, Domain: a.domain, Slots: a.slots, Address: a.address, AllowsExec: a.allowsExec,
			Incarnation: a.incarnation, LastSeq: a.lastSeq, State: a.state, Stopping: a.stopping,
			RegisteredAt: a.registeredAt, ConnectedSince: a.connectedSince, LastHeartbeat: a.lastHeartbeat,
			DisconnectedAt: a.disconnectedAt, ReportedInterval: a.reportedInterval, SelfFencing: a.selfFencing, Running: running, Health: he, Score: a.score,
			Quarantine: quarantineExport{Active: aq.active, By: aq.by, At: aq.at, Till: aq.till, N: aq.n, Decayed: aq.decayed}}
	}

	s.Domains = make([]domainExport, len(cp.domainNames))
	for i, name := range cp.domainNames {
		d := cp.domains[name]
		h := d.health
		de := domainExport{Name: name, State: h.State, Since: h.Since, Reason: h.Reason, Isolations: h.isolations,
			Cooldown: h.cooldown, Cause: h.cause, Results: exportOutcomes(&h.results), ProbeOK: h.probeOK,
			ProbeFail: h.probeFail, IsolatedBy: h.isolatedBy, Panic: h.Panic,
			Agents: d.agents, Disconnected: d.disconnected, Slots: d.slots, InFlight: d.inFlight, Probes: d.probes,
			Quarantined: d.quarantined, IndexMaxFree: d.index.maxFree, IndexBuckets: make([][]AgentID, len(d.index.buckets))}
		for f, l := range d.index.buckets {
			for a := l.head; a != nil; a = a.idxNext {
				de.IndexBuckets[f] = append(de.IndexBuckets[f], a.id)
			}
		}
		s.Domains[i] = de
	}

	for _, key := range sortedMapKeys(cp.blocked) {
		s.Blocked = append(s.Blocked, blockedExport{Key: key, Decision: cp.blocked[key]})
	}
	for _, key := range sortedMapKeys(cp.retriesQueued) {
		if n := cp.retriesQueued[key]; n != 0 {
			s.RetriesQueued = append(s.RetriesQueued, keyCountExport{Key: key, N: uint64(n)})
		}
	}
	return s
}

func sortedMapKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Restore rebuilds a control plane from an Export. faults are the fault
// points it runs with (not state; nil in the daemons). It refuses an export
// of another format version or layout, and one whose parts do not fit
// together, and then returns no control plane.
func Restore(data []byte, faults FaultPoints) (*ControlPlane, error) {
	st, err := decodeState(data)
	if err != nil {
		return nil, err
	}
	st.Config.FaultPoints = faults
	return restoreState(st)
}

// decodeState decodes an export of version 2, or of version 1 upgraded to
// version 2 (events and the mode name no token).
func decodeState(data []byte) (*stateV2, error) {
	if !bytes.HasPrefix(data, []byte(stateMagic)) {
		return nil, fmt.Errorf("%w: not a control plane state export (no %q header)", ErrInvalid, strings.TrimSpace(stateMagic))
	}
	d := &stateDecoder{buf: data, off: len(stateMagic)}
	version, err := d.uvarint()
	if err != nil {
		return nil, err
	}
	if version != StateFormatVersion && version != 1 {
		return nil, fmt.Errorf("%w: control plane state export has format version %d; this core knows versions 1 and %d only",
			ErrInvalid, version, StateFormatVersion)
	}
	fp, err := d.bytes()
	if err != nil {
		return nil, err
	}
	want := stateV2Fingerprint
	if version == 1 {
		want = stateV1Fingerprint
	}
	if string(fp) != want {
		return nil, fmt.Errorf("%w: control plane state export of format version %d has layout %s, this core's is %s (a core built from other sources wrote it)",
			ErrInvalid, version, fp, want)
	}
	var s stateV2
	if version == 1 {
		var s1 stateV1
		if err := d.value(reflect.ValueOf(&s1).Elem()); err != nil {
			return nil, err
		}
		s = s1.upgrade()
	} else if err := d.value(reflect.ValueOf(&s).Elem()); err != nil {
		return nil, err
	}
	if d.off != len(data) {
		return nil, fmt.Errorf("%w: control plane state export has %d bytes after its end", ErrInvalid, len(data)-d.off)
	}
	return &s, nil
}

// CanRestore reports whether Restore reads exports of this format version
// and layout fingerprint (see ExportHeader).
func CanRestore(version uint64, layout string) bool {
	return version == StateFormatVersion && layout == stateV2Fingerprint || version == 1 && layout == stateV1Fingerprint
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: control plane state export is inconsistent: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func restoreOutcomes(w *outcomeWindow, es []outcomeExport) {
	w.entries = make([]outcomeEntry, len(es))
	for i, e := range es {
		w.entries[i] = outcomeEntry{at: e.At, task: e.Task, ok: e.OK, forgiven: e.Forgiven}
	}
	w.recount()
}

func restoreState(s *stateV2) (*ControlPlane, error) {
	cfg := s.Config
	cp, err := NewControlPlane(cfg, s.Now)
	if err != nil {
		return nil, err
	}
	cp.taskSeq, cp.pass, cp.inFlight = s.TaskSeq, s.Pass, s.InFlight
	cp.mode, cp.queueHighSince, cp.queueLowSince = s.Mode, s.QueueHighSince, s.QueueLowSince
	cp.paused, cp.pausedReason, cp.panicActive, cp.lastHealthEval = s.Paused, s.PausedReason, s.PanicActive, s.LastHealthEval
	cp.outbox = s.Outbox

	for i := range s.Tasks {
		te := &s.Tasks[i]
		t := &taskRecord{Task: te.Task, failedOn: te.FailedOn, rejectedBy: te.RejectedBy, assignedAt: te.AssignedAt,
			confirmed: te.Confirmed, ackSeq: te.AckSeq, seqLimit: te.SeqLimit, probe: te.Probe, skipPass: te.SkipPass}
		if t.LastDecision != nil {
			t.decision = *t.LastDecision
			t.LastDecision = &t.decision
		}
		t.queueItem = queueItem{id: t.ID, prio: t.Spec.Priority, domain: t.Spec.Domain, owner: t}
		if _, dup := cp.tasks[t.ID]; dup || t.ID == "" {
			return nil, corrupt("task id %q twice or empty", t.ID)
		}
		cp.tasks[t.ID] = t
	}
	for _, id := range s.TerminalIDs {
		if t, ok := cp.tasks[id]; ok && !t.State.Terminal() {
			return nil, corrupt("task %s in the eviction order is %s", id, t.State)
		}
	}
	cp.terminalIDs = s.TerminalIDs

	q := cp.queue
	q.seq, q.rrAfter = s.Queue.Seq, s.Queue.RRAfter
	for _, qd := range s.Queue.Domains {
		if n := len(q.domains); n > 0 && q.domains[n-1].key >= qd.Key {
			return nil, corrupt("queue domain keys out of order at %q", qd.Key)
		}
		dq := &domainQueue{key: qd.Key}
		for p, list := range qd.Lists {
			for _, qe := range list {
				t, ok := cp.tasks[qe.ID]
				switch {
				case !ok:
					return nil, corrupt("queued task %s unknown", qe.ID)
				case t.State != TaskQueued || t.list != nil:
					return nil, corrupt("queued task %s is %s or queued twice", qe.ID, t.State)
				case int(t.prio) != p || t.domain != qd.Key:
					return nil, corrupt("queued task %s under key %q priority %d, its spec says %q %d", qe.ID, qd.Key, p, t.domain, t.prio)
				}
				t.seq, t.enqueuedAt = qe.Seq, qe.EnqueuedAt
				dq.lists[p].pushBack(&t.queueItem)
				dq.n++
			}
		}
		if dq.n == 0 {
			return nil, corrupt("queue domain key %q empty", qd.Key)
		}
		q.domains = append(q.domains, dq)
		q.n += dq.n
	}
	for _, t := range cp.tasks {
		if t.State == TaskQueued && t.list == nil {
			return nil, corrupt("task %s is QUEUED but not in the queue", t.ID)
		}
	}

	idem := cp.idem
	idem.evicted = s.Idempotency.Evicted
	for _, ie := range s.Idempotency.Entries {
		if _, dup := idem.entries[ie.Key]; dup {
			return nil, corrupt("idempotency key %q twice", ie.Key)
		}
		e := &idemEntry{key: ie.Key, task: ie.Task, spec: ie.Spec, expiresAt: ie.ExpiresAt, live: true}
		idem.entries[e.key] = e
		idem.order = append(idem.order, e)
	}

	tl := cp.timeline
	if len(s.Timeline.Events) > len(tl.ring) {
		return nil, corrupt("%d timeline events, the ring holds %d", len(s.Timeline.Events), len(tl.ring))
	}
	tl.nextSeq, tl.dropped, tl.n, tl.start = s.Timeline.NextSeq, s.Timeline.Dropped, len(s.Timeline.Events), 0
	copy(tl.ring, s.Timeline.Events)
	clear(tl.ring[tl.n:])

	for _, de := range s.Domains {
		if n := len(cp.domainNames); n > 0 && cp.domainNames[n-1] >= de.Name {
			return nil, corrupt("domains out of order at %q", de.Name)
		}
		switch de.State {
		case DomainOpen, DomainThrottled, DomainIsolated, DomainProbing:
		default:
			return nil, corrupt("domain %s in state %q", de.Name, de.State)
		}
		h := NewDomainHealth(cfg.Domains, de.Name, de.Since)
		h.State, h.Reason, h.isolations, h.cooldown, h.cause = de.State, de.Reason, de.Isolations, de.Cooldown, de.Cause
		restoreOutcomes(&h.results, de.Results)
		h.probeOK, h.probeFail, h.isolatedBy, h.Panic = de.ProbeOK, de.ProbeFail, de.IsolatedBy, de.Panic
		cp.domains[de.Name] = &domainRecord{health: h, agents: de.Agents, disconnected: de.Disconnected, slots: de.Slots,
			inFlight: de.InFlight, probes: de.Probes, quarantined: de.Quarantined}
		cp.domainNames = append(cp.domainNames, de.Name)
	}

	for _, ae := range s.Agents {
		if n := len(cp.agentList); n > 0 && cp.agentList[n-1].id >= ae.ID {
			return nil, corrupt("agents out of order at %q", ae.ID)
		}
		dom, ok := cp.domains[ae.Domain]
		if !ok {
			return nil, corrupt("agent %s in unknown domain %q", ae.ID, ae.Domain)
		}
		if len(ae.Health.Buckets) != cfg.Health.Buckets || ae.Health.Interval <= 0 {
			return nil, corrupt("agent %s has %d health buckets (config: %d), interval %v", ae.ID, len(ae.Health.Buckets), cfg.Health.Buckets, ae.Health.Interval)
		}
		if ae.State > agentHeld {
			return nil, corrupt("agent %s in connectivity state %d", ae.ID, ae.State)
		}
		a := &agentRecord{id: ae.ID, domain: ae.Domain, dom: dom, slots: ae.Slots, address: ae.Address, allowsExec: ae.AllowsExec,
			incarnation: ae.Incarnation, lastSeq: ae.LastSeq, state: ae.State, stopping: ae.Stopping,
			registeredAt: ae.RegisteredAt, connectedSince: ae.ConnectedSince, lastHeartbeat: ae.LastHeartbeat,
			disconnectedAt: ae.DisconnectedAt, reportedInterval: ae.ReportedInterval, selfFencing: ae.SelfFencing,
			running: make(map[TaskID]*taskRecord, len(ae.Running)), score: ae.Score,
			quarantine: quarantine{active: ae.Quarantine.Active, by: ae.Quarantine.By, at: ae.Quarantine.At,
				till: ae.Quarantine.Till, n: ae.Quarantine.N, decayed: ae.Quarantine.Decayed}}
		h := NewHealthWindow(cfg.Health, ae.Health.Interval, ae.Health.Since)
		for j, b := range ae.Health.Buckets {
			h.buckets[j] = healthBucket{index: b.Index, heartbeats: b.Heartbeats, latencySum: b.LatencySum, latencyN: b.LatencyN}
		}
		restoreOutcomes(&h.results, ae.Health.Results)
		h.flaps = ae.Health.Flaps
		a.health = h
		for _, id := range ae.Running {
			t, ok := cp.tasks[id]
			if !ok || t.AgentID != a.id || !(t.State == TaskAssigned || t.State == TaskRunning) {
				return nil, corrupt("agent %s runs task %s, which is not leased to it", a.id, id)
			}
			a.running[id] = t
		}
		cp.agents[a.id] = a
		cp.agentList = append(cp.agentList, a)
		if len(a.running) > 0 {
			cp.busy = append(cp.busy, a)
		}
	}

	for _, de := range s.Domains {
		d := cp.domains[de.Name]
		ix := &d.index
		ix.buckets = make([]agentList, len(de.IndexBuckets))
		if de.IndexMaxFree < 0 || de.IndexMaxFree > 0 && de.IndexMaxFree >= len(ix.buckets) {
			return nil, corrupt("domain %s: index max free %d of %d buckets", de.Name, de.IndexMaxFree, len(ix.buckets))
		}
		ix.maxFree = de.IndexMaxFree
		for f, ids := range de.IndexBuckets {
			for _, id := range ids {
				a, ok := cp.agents[id]
				switch {
				case !ok || a.dom != d:
					return nil, corrupt("domain %s indexes agent %s of another domain", de.Name, id)
				case a.indexed || f == 0 || f > ix.maxFree:
					return nil, corrupt("domain %s indexes agent %s twice or with %d free slots", de.Name, id, f)
				}
				ix.buckets[f].pushBack(a)
				a.indexed, a.idxFree = true, f
				ix.freeTotal += f
			}
		}
	}

	for _, b := range s.Blocked {
		cp.blocked[b.Key] = b.Decision
	}
	for _, kc := range s.RetriesQueued {
		cp.retriesQueued[kc.Key] = int(kc.N)
	}
	cp.stats = s.Stats // the codec decodes maps non-nil
	return cp, nil
}
