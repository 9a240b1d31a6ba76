package cp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	"github.com/fluxforge/fluxforge/cp/timelinestore"
)

// Log entries. Every change to the cp's core is one entry of the replicated
// log (cp/raftlog): a small versioned JSON container around a core.Envelope,
// around several (a batch), or, once at the start of a data dir, around the
// core's config. A cp refuses an entry of a version it does not know.
//
// Version 1 holds exactly one of init and env. Version 2 holds a batch:
// the inputs that were waiting together while the previous entry was being
// made durable (group commit; see batcher), applied in their order, each at
// its own stamped time, each with its own result. A batch is written as
// version 2 so that a cp that knows version 1 only refuses it by name
// instead of misreading it; an entry of one input is still written as
// version 1, so a log without batches stays readable by such a cp.
//
// Version 3 holds a member: a cp of a replicated cluster publishing its
// API URL (see cluster.go). It is not a core input: which cp answers where
// is not scheduling state, and a replay skips it.
const (
	entryFormatVersion       = 1
	entryBatchFormatVersion  = 2
	entryMemberFormatVersion = 3
)

// logEntry is one log entry: exactly one of Init, Env (version 1) and
// Batch (version 2) is set.
type logEntry struct {
	V      int             `json:"v"`
	Init   *initEntry      `json:"init,omitempty"`
	Env    *core.Envelope  `json:"env,omitempty"`
	Batch  []core.Envelope `json:"batch,omitempty"`
	Member *MemberInfo     `json:"member,omitempty"`
}

// initEntry creates the core: the first entry of a new data dir. The config
// is replicated state from then on.
type initEntry struct {
	At     time.Time   `json:"at"`
	Config core.Config `json:"config"`
}

func encodeEnvelope(env core.Envelope) ([]byte, error) {
	return encodeBatch([]core.Envelope{env})
}

// encodeBatch encodes envs as one entry: a version 1 entry for one input, a
// version 2 batch for more (see entrycodec.go for the fast path).
func encodeBatch(envs []core.Envelope) ([]byte, error) {
	if b, ok := appendInputEntry(make([]byte, 0, 64+len(envs)*256), envs); ok {
		return b, nil
	}
	if len(envs) == 1 {
		return json.Marshal(logEntry{V: entryFormatVersion, Env: &envs[0]})
	}
	return json.Marshal(logEntry{V: entryBatchFormatVersion, Batch: envs})
}

func encodeInit(at time.Time, cfg core.Config) ([]byte, error) {
	return json.Marshal(logEntry{V: entryFormatVersion, Init: &initEntry{At: at, Config: cfg}})
}

// decodeEntry decodes and checks an entry's container.
func decodeEntry(index uint64, data []byte) (logEntry, error) {
	if e, ok := decodeInputEntry(data); ok {
		return e, nil
	}
	var e logEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return logEntry{}, fmt.Errorf("cp: log entry %d is not a cp log entry: %v", index, err)
	}
	switch e.V {
	case entryFormatVersion:
		if (e.Init == nil) == (e.Env == nil) || e.Batch != nil {
			return logEntry{}, fmt.Errorf("cp: log entry %d must hold exactly one of init and env", index)
		}
	case entryBatchFormatVersion:
		if e.Init != nil || e.Env != nil || len(e.Batch) == 0 || e.Member != nil {
			return logEntry{}, fmt.Errorf("cp: log entry %d (a batch) must hold a non-empty batch only", index)
		}
	case entryMemberFormatVersion:
		if e.Init != nil || e.Env != nil || e.Batch != nil || e.Member == nil {
			return logEntry{}, fmt.Errorf("cp: log entry %d (a member) must hold a member only", index)
		}
		if err := e.Member.validate(); err != nil {
			return logEntry{}, fmt.Errorf("cp: log entry %d: %w", index, err)
		}
	default:
		return logEntry{}, fmt.Errorf("cp: log entry %d has format version %d; this cp knows versions %d to %d only (a newer or other cp wrote it)",
			index, e.V, entryFormatVersion, entryMemberFormatVersion)
	}
	return e, nil
}

// applied is what one entry produced, the raft result of its proposal:
// the core's result and error, and the views the API answers with, read
// right after the entry was applied.
type applied struct {
	Result     core.ApplyResult
	Err        error
	Mode       ModeView
	QueueDepth int
	Agent      core.AgentView
	AgentOK    bool
}

// leaderSink receives, in log order and under the FSM's lock, the events
// and agent messages of every entry applied while this cp leads: it logs
// the events and hands the messages to delivery. Entries replayed at start
// reach no sink.
type leaderSink func(c *core.ControlPlane, events []core.Event, outbox []core.Outbound)

// fsm is the cp's state machine: a core.ControlPlane driven by log entries.
// raft calls Apply, Snapshot and Restore from one goroutine; readers take
// the read lock and see the applied state.
type fsm struct {
	faults core.FaultPoints
	obs    fsmObserver
	// store keeps every applied entry's events on disk (nil in memory),
	// replayed ones included: it skips the events it holds.
	store     *timelinestore.Store
	storeWarn func(error)

	mu     sync.RWMutex
	core   *core.ControlPlane // nil until the init entry (or a snapshot)
	index  uint64             // raft index of the last entry applied
	lastAt time.Time          // time of the last applied envelope
	events []core.Event       // recorded during the current Apply
	// toStore are the current entry's events, written to the store at its
	// end (one write per entry, not per input). Only the goroutine that
	// calls Apply touches it.
	toStore []core.Event
	sink    leaderSink
	broken  error // an entry that could not be applied: the state is not the log's
	// members are the API URLs the cps of a cluster published, by id.
	members atomic.Pointer[[]MemberInfo]

	hashMu    sync.Mutex
	hashIndex uint64
	hash      string
	hashCost  time.Duration // how long computing hash took (capture, encoding and sum)
	hashing   uint64        // the index of the last hash begun
	hashAt    time.Time     // when (by the views' clock) hash was computed
	viewIndex uint64        // the applied index the previous debug view saw
	viewSince time.Time     // when a view first saw viewIndex
}

// A state hash is a capture of the whole state under the read lock, which
// holds off every write while it runs (a few milliseconds per 10,000
// tasks), then its encoding and SHA-256 outside the lock (tens of
// milliseconds per 10,000 tasks of CPU, on a box the cp shares). The debug
// snapshot therefore recomputes it for every new applied index only while
// that is cheap (under hashCheapCost). A costlier one is
// recomputed when asked (?fresh_hash=true), when the state is quiet (no
// entry applied for twice the cost, and at least hashQuietMin: nothing
// waits for the lock), or when the last one is hashDueCosts costs old (so
// a snapshot poll spends at most about 5% of the time on it); in
// between, the snapshot keeps the last hash and names the index it is of
// (state_hash_index). Polling the snapshot under load (as load generators
// do, every few milliseconds) must not stall the cp.
const (
	hashCheapCost = 2 * time.Millisecond
	hashQuietMin  = 50 * time.Millisecond
	hashDueCosts  = 20
)

// fsmObserver receives the snapshot measurements and how long each holder
// of the FSM's lock held it.
type fsmObserver interface {
	snapshotTaken(d time.Duration, bytes int)
	lockHeld(write bool, d time.Duration)
}

// lock takes the FSM's write lock and returns when it got it: unlock(t0)
// releases it and reports the hold time (defer f.unlock(f.lock())).
func (f *fsm) lock() time.Time {
	f.mu.Lock()
	return time.Now()
}

func (f *fsm) unlock(t0 time.Time) {
	d := time.Since(t0)
	f.mu.Unlock()
	if f.obs != nil {
		f.obs.lockHeld(true, d)
	}
}

// rlock and runlock are lock and unlock for the read lock.
func (f *fsm) rlock() time.Time {
	f.mu.RLock()
	return time.Now()
}

func (f *fsm) runlock(t0 time.Time) {
	d := time.Since(t0)
	f.mu.RUnlock()
	if f.obs != nil {
		f.obs.lockHeld(false, d)
	}
}

func newFSM(faults core.FaultPoints, obs fsmObserver) *fsm {
	return &fsm{faults: faults, obs: obs}
}

// attach makes c the state, recording its events for the current Apply.
func (f *fsm) attach(c *core.ControlPlane) {
	f.core = c
	if c != nil {
		c.OnEvent(func(e core.Event) { f.events = append(f.events, e) })
	}
}

// Apply implements raftlog.FSM. The entry is decoded before the write
// lock is taken (decoding needs no state), and its events reach the store
// in one append after the lock is released: the lock covers the core's
// work, not JSON and not the store's writes. Apply runs on one goroutine
// (raft's FSM goroutine, or a replay's), so the store still gets the
// events in log order; readers never miss them meanwhile, since /timeline
// serves recent events from the core's ring, the store only those the
// ring dropped (timelinePage).
func (f *fsm) Apply(index uint64, data []byte) any {
	e, decErr := decodeEntry(index, data)
	var ins []unwrapped
	if decErr == nil {
		switch {
		case e.Env != nil:
			ins = []unwrapped{unwrap(*e.Env)}
		case e.Batch != nil:
			ins = make([]unwrapped, len(e.Batch))
			for i, env := range e.Batch {
				ins[i] = unwrap(env)
			}
		}
	}
	defer f.storeEvents()
	defer f.unlock(f.lock())
	f.index = index
	if f.broken != nil {
		return applied{Err: f.broken}
	}
	if decErr != nil {
		f.broken = decErr
		return applied{Err: decErr}
	}
	if e.Init != nil {
		return f.applyInit(index, e.Init)
	}
	if e.Member != nil {
		m := setMember(f.memberList(), *e.Member)
		f.members.Store(&m)
		return applied{}
	}
	if f.core == nil {
		f.broken = fmt.Errorf("cp: log entry %d comes before the log's init entry", index)
		return applied{Err: f.broken}
	}
	if e.Batch == nil {
		return f.applyEnv(index, ins[0])
	}
	// A batch's result is one applied per member, in order. A member that
	// cannot be decoded stops the state machine as a single entry would;
	// the members before it stay applied (as entries before a bad one do).
	out := make([]applied, len(e.Batch))
	for i, in := range ins {
		if f.broken != nil {
			out[i] = applied{Err: f.broken}
			continue
		}
		out[i] = f.applyEnv(index, in)
	}
	return out
}

// unwrapped is an envelope decoded (before the lock): its time and input,
// or why it could not be decoded.
type unwrapped struct {
	at  time.Time
	in  core.Input
	err error
}

func unwrap(env core.Envelope) unwrapped {
	in, err := env.Unwrap()
	return unwrapped{at: env.At, in: in, err: err}
}

// applyEnv applies one input of entry index.
func (f *fsm) applyEnv(index uint64, u unwrapped) applied {
	if u.err != nil {
		f.broken = fmt.Errorf("cp: log entry %d: %w", index, u.err)
		return applied{Err: f.broken}
	}
	if u.at.After(f.lastAt) {
		f.lastAt = u.at
	}
	var out applied
	out.Result, out.Err = f.core.Apply(u.at, u.in)
	f.views(&out, u.in)
	f.flush()
	return out
}

func (f *fsm) applyInit(index uint64, in *initEntry) any {
	if f.core != nil {
		// A second init (two cps racing to start a new dir cannot happen:
		// the dir is locked); refused, and the state stands.
		return applied{Err: fmt.Errorf("cp: log entry %d: the core already exists", index)}
	}
	cfg := in.Config
	cfg.FaultPoints = f.faults
	c, err := core.NewControlPlane(cfg, in.At)
	if err != nil {
		f.broken = fmt.Errorf("cp: log entry %d: init: %w", index, err)
		return applied{Err: f.broken}
	}
	f.attach(c)
	f.events = append(f.events, c.Timeline().Since(0, 0)...) // the initial mode, recorded before attach
	f.lastAt = in.At
	f.flush()
	return applied{}
}

// views reads what the API answers with after in was applied.
func (f *fsm) views(out *applied, in core.Input) {
	c := f.core
	out.Mode.Mode, out.Mode.SetBy, out.Mode.Reason = c.Mode()
	out.Mode.SetByName = c.ModeSetByName()
	out.QueueDepth = c.QueueDepth()
	switch v := in.(type) {
	case core.QuarantineInput:
		out.Agent, out.AgentOK = c.Agent(v.AgentID)
	case core.ReleaseInput:
		out.Agent, out.AgentOK = c.Agent(v.AgentID)
	}
}

// flush keeps the applied input's events for the store (storeEvents
// writes them at the end of the entry), hands its events and messages to
// the sink, if this cp leads, and clears them.
func (f *fsm) flush() {
	if f.store != nil {
		f.toStore = append(f.toStore, f.events...)
	}
	out := f.core.TakeOutbox()
	if f.sink != nil {
		f.sink(f.core, f.events, out)
	}
	clear(f.events)
	f.events = f.events[:0]
}

// Snapshot implements raftlog.FSM: the core's export (empty before the init
// entry), in a cluster container when members published their URLs (see
// encodeSnapshot).
func (f *fsm) Snapshot() ([]byte, error) {
	encode, err := f.SnapshotLater()
	if err != nil {
		return nil, err
	}
	return encode()
}

// SnapshotLater implements raftlog.SnapshotLater: the state is captured
// under the read lock (on raft's apply goroutine: no entry is applied
// meanwhile), and encoded into Snapshot's bytes by the function returned,
// which raft calls while it applies later entries. The snapshot's
// duration observed is the capture's and the encoding's together; the
// capture alone is the read lock's hold.
var _ raftlog.SnapshotLater = (*fsm)(nil)

func (f *fsm) SnapshotLater() (func() ([]byte, error), error) {
	t0 := f.rlock()
	if f.core == nil {
		f.runlock(t0)
		return func() ([]byte, error) { return []byte{}, nil }, nil
	}
	c, err := f.core.Capture()
	members := f.memberList()
	f.runlock(t0)
	if err != nil {
		return nil, fmt.Errorf("cp: capture the state: %w", err)
	}
	return func() ([]byte, error) {
		b, err := c.Encode()
		if err != nil {
			return nil, fmt.Errorf("cp: export the state: %w", err)
		}
		b, err = encodeSnapshot(b, members)
		if err != nil {
			return nil, err
		}
		if f.obs != nil {
			f.obs.snapshotTaken(time.Since(t0), len(b))
		}
		return b, nil
	}, nil
}

// Restore implements raftlog.FSM: core.Restore refuses an export of another
// format version or layout, naming it.
func (f *fsm) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("cp: read the snapshot: %w", err)
	}
	defer f.unlock(f.lock())
	if len(data) == 0 {
		f.attach(nil)
		return nil
	}
	data, members, err := decodeSnapshot(data)
	if err != nil {
		return err
	}
	f.members.Store(&members)
	c, err := core.Restore(data, f.faults)
	if err != nil {
		return fmt.Errorf("cp: restore the state from a snapshot: %w", err)
	}
	f.attach(c)
	f.lastAt = c.DebugView(time.Time{}).Time
	f.broken = nil
	// Events the store lost (it does not sync each write) are refilled
	// from the restored ring, as far as it reaches.
	f.store0(c.Timeline().Since(0, 0))
	return nil
}

// storeEvents appends the current entry's events to the store, in one
// write, after Apply released the lock.
func (f *fsm) storeEvents() {
	f.store0(f.toStore)
	clear(f.toStore)
	f.toStore = f.toStore[:0]
}

// store0 appends events to the store; a failing store is reported once
// and the cp goes on (the store is not state: /timeline falls back to the
// core's ring).
func (f *fsm) store0(events []core.Event) {
	if f.store == nil || len(events) == 0 {
		return
	}
	if err := f.store.Append(events); err != nil && f.storeWarn != nil {
		f.storeWarn(err)
		f.storeWarn = nil
	}
}

// setSink installs (or, with nil, removes) the leader's sink.
func (f *fsm) setSink(s leaderSink) {
	t0 := f.lock()
	f.sink = s
	f.unlock(t0)
}

// syncIndex raises the applied index to the node's after a restore (a
// snapshot's index reaches raftlog, not the FSM).
func (f *fsm) syncIndex(i uint64) {
	t0 := f.lock()
	f.index = max(f.index, i)
	f.unlock(t0)
}

// read runs fn on the applied state under the read lock. fn must not change
// the core.
func (f *fsm) read(fn func(c *core.ControlPlane)) {
	defer f.runlock(f.rlock())
	fn(f.core)
}

// stamp is the time the leader gives a new input: its clock, but never
// before the last applied input's.
func (f *fsm) stamp(now time.Time) time.Time {
	defer f.runlock(f.rlock())
	if now.Before(f.lastAt) {
		return f.lastAt
	}
	return now
}

// err is why the state no longer follows the log, if it does not.
func (f *fsm) err() error {
	defer f.runlock(f.rlock())
	return f.broken
}

// DebugView is the body of GET /scheduler/debug/snapshot: the core's
// snapshot plus the log position it reflects.
type DebugView struct {
	core.DebugView
	// AppliedIndex is the raft index of the last entry applied to the state.
	AppliedIndex uint64 `json:"applied_index"`
	// StateHash is the hex SHA-256 of the state's export at
	// StateHashIndex: AppliedIndex itself unless the state is large and
	// changing (see hashCheapCost), or fresh_hash was asked for.
	StateHash      string `json:"state_hash"`
	StateHashIndex uint64 `json:"state_hash_index"`
}

// debugView reads the core's snapshot at now, the applied index and the
// state hash at that index (or the last one computed, see hashMaybe). The
// snapshot and the index are read under one read lock; a new hash only
// captures the state under it and is encoded and summed after it is
// released, so a large state's hash does not hold off the writes.
func (f *fsm) debugView(now time.Time, freshHash bool) (DebugView, error) {
	t0 := f.rlock()
	if f.core == nil {
		f.runlock(t0)
		return DebugView{}, errors.New("cp: no state yet")
	}
	v := DebugView{DebugView: f.core.DebugView(now), AppliedIndex: f.index}
	h, hi, c, err := f.hashMaybe(now, freshHash)
	f.runlock(t0)
	if err != nil {
		return DebugView{}, err
	}
	if c != nil {
		if h, err = f.finishHash(c, v.AppliedIndex, now, t0); err != nil {
			return DebugView{}, err
		}
		hi = v.AppliedIndex
	}
	v.StateHash, v.StateHashIndex = h, hi
	return v, nil
}

// hashMaybe returns the state hash at the applied index when it is
// cached; else the last one computed and its index when the state is
// costly to hash and neither quiet nor due (see hashCheapCost), unless
// fresh; else a capture of the state to hash (finishHash). The caller
// holds f.mu (read).
func (f *fsm) hashMaybe(now time.Time, fresh bool) (string, uint64, *core.Capture, error) {
	f.hashMu.Lock()
	if f.viewIndex != f.index || f.viewSince.IsZero() {
		f.viewIndex, f.viewSince = f.index, now
	}
	if f.hash != "" && f.hashIndex == f.index {
		h := f.hash
		f.hashMu.Unlock()
		return h, f.index, nil, nil
	}
	cost := f.hashCost
	quiet := now.Sub(f.viewSince) >= max(2*cost, hashQuietMin)
	due := now.Sub(f.hashAt) >= hashDueCosts*cost
	stale := f.hash != "" && cost >= hashCheapCost && !quiet && !due
	// One hash of an index at a time: another view is hashing this one.
	busy := f.hash != "" && f.hashing == f.index
	h, hi := f.hash, f.hashIndex
	if (stale || busy) && !fresh {
		f.hashMu.Unlock()
		return h, hi, nil, nil
	}
	f.hashing = f.index
	f.hashMu.Unlock()
	c, err := f.core.Capture()
	if err != nil {
		return "", 0, nil, fmt.Errorf("cp: capture the state: %w", err)
	}
	return "", 0, c, nil
}

// appliedIndex is the raft index of the last entry applied to the state.
func (f *fsm) appliedIndex() uint64 {
	defer f.runlock(f.rlock())
	return f.index
}

// finishHash encodes and sums c, the state captured at index at now (the
// capture began at start), and keeps the hash unless a newer one was kept
// meanwhile.
func (f *fsm) finishHash(c *core.Capture, index uint64, now, start time.Time) (string, error) {
	b, err := c.Encode()
	if err != nil {
		return "", fmt.Errorf("cp: export the state: %w", err)
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	f.hashMu.Lock()
	defer f.hashMu.Unlock()
	if index >= f.hashIndex || f.hash == "" {
		f.hashIndex, f.hash = index, h
		f.hashCost = time.Since(start)
		f.hashAt = now
	}
	return h, nil
}

// hashLocked returns the hex SHA-256 of the export at f.index, computed
// once per index. The caller holds f.mu (read) and waits for the hash
// under it (replays, which nothing else writes to).
func (f *fsm) hashLocked(now time.Time) (string, error) {
	f.hashMu.Lock()
	if f.hash != "" && f.hashIndex == f.index {
		defer f.hashMu.Unlock()
		return f.hash, nil
	}
	f.hashMu.Unlock()
	start := time.Now()
	c, err := f.core.Capture()
	if err != nil {
		return "", fmt.Errorf("cp: capture the state: %w", err)
	}
	return f.finishHash(c, f.index, now, start)
}
