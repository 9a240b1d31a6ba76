package cp

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	fnet "github.com/fluxforge/fluxforge/net"
)

const durableAdmin = "adm"

// stop closes tc's HTTP server and its Server (the data dir is free again).
func (tc *testCP) stop() {
	tc.t.Helper()
	tc.srv.Close()
	tc.client.CloseIdleConnections()
	if err := tc.s.Close(); err != nil {
		tc.t.Fatal(err)
	}
}

func (tc *testCP) debug() DebugView {
	tc.t.Helper()
	var v DebugView
	tc.mustStatus(http.StatusOK, "GET", "/scheduler/debug/snapshot", nil).decode(tc.t, &v)
	return v
}

func (tc *testCP) timelineAll() []core.Event {
	tc.t.Helper()
	var p TimelinePage
	tc.mustStatus(http.StatusOK, "GET", "/timeline?limit=10000", nil).decode(tc.t, &p)
	return p.Events
}

func (tc *testCP) tasks() []TaskView {
	tc.t.Helper()
	var l TaskList
	tc.mustStatus(http.StatusOK, "GET", "/v1/tasks?limit=1000", nil).decode(tc.t, &l)
	return l.Tasks
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRestartKeepsState: a cp stopped and started again on the same data
// dir has the same state, down to the state hash: queued and assigned
// tasks, the timeline, idempotency keys, quarantines and the operator's
// mode, which stands against the restarted cp's mode flag.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	mock := newMock()
	opts := func(mode core.Mode) func(*Options) {
		return func(o *Options) {
			o.DataDir, o.Clock, o.AdminToken = dir, mock, durableAdmin
			o.Core.InitialMode = mode
		}
	}
	auth := []string{"Authorization", "Bearer " + durableAdmin}
	tc := startCP(t, false, opts(core.ModeNormal))
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: 1})
	tc.heartbeat(core.HeartbeatInput{AgentID: "a2", Domain: "z1", Slots: 4, Address: "http://127.0.0.1:2", Incarnation: 1, Seq: 1})
	tc.mustStatus(http.StatusOK, "POST", "/v1/agents/a2/quarantine", `{"reason":"bad disk"}`, auth...)
	keyed := tc.submit(`{"kind":"sleep","duration_ms":10}`, HeaderIdempotencyKey, "k1")
	tc.submit(`{"kind":"sleep","duration_ms":10}`)
	tc.submit(`{"kind":"sleep","duration_ms":10,"priority":"high"}`)
	mock.Add(time.Second)
	tc.s.Reconcile()
	tc.mustStatus(http.StatusOK, "POST", "/admin/mode", `{"mode":"READ_ONLY","reason":"maintenance"}`, auth...)
	before, tasks, events := tc.debug(), tc.tasks(), tc.timelineAll()
	if before.QueueDepth != 2 || before.InFlight != 1 || before.Mode != core.ModeReadOnly {
		t.Fatalf("before the restart: depth %d in flight %d mode %s", before.QueueDepth, before.InFlight, before.Mode)
	}
	tc.stop()

	// The restart says NORMAL: the persisted READ_ONLY stands, with a warning.
	tc = startCP(t, false, opts(core.ModeNormal))
	after := tc.debug()
	if after.AppliedIndex != before.AppliedIndex || after.StateHash != before.StateHash {
		t.Fatalf("after the restart: index %d hash %s, before: index %d hash %s",
			after.AppliedIndex, after.StateHash, before.AppliedIndex, before.StateHash)
	}
	if got, want := jsonOf(t, tc.tasks()), jsonOf(t, tasks); got != want {
		t.Errorf("tasks after the restart:\n%s\nbefore:\n%s", got, want)
	}
	if got, want := jsonOf(t, tc.timelineAll()), jsonOf(t, events); got != want {
		t.Errorf("timeline after the restart:\n%s\nbefore:\n%s", got, want)
	}
	var mode ModeView
	tc.mustStatus(http.StatusOK, "GET", "/admin/mode", nil, auth...).decode(t, &mode)
	if mode.Mode != core.ModeReadOnly || mode.SetBy != core.ActorOperator || mode.Reason != "maintenance" {
		t.Errorf("mode after the restart: %+v", mode)
	}
	if !strings.Contains(tc.logs.String(), "scheduler mode flag ignored: the persisted mode stands") {
		t.Errorf("no warning about the ignored mode flag:\n%s", tc.logs.String())
	}
	var a2 core.AgentView
	tc.mustStatus(http.StatusOK, "GET", "/v1/agents/a2", nil).decode(t, &a2)
	if !a2.Quarantined {
		t.Errorf("a2 after the restart: %+v", a2)
	}
	tc.mustStatus(http.StatusOK, "POST", "/admin/mode", `{"mode":"NORMAL"}`, auth...)
	r := tc.mustStatus(http.StatusOK, "POST", "/v1/tasks", `{"kind":"sleep","duration_ms":10}`, HeaderIdempotencyKey, "k1")
	var replay TaskView
	r.decode(t, &replay)
	if replay.ID != keyed.ID || r.Header.Get(HeaderReplayed) != "true" {
		t.Errorf("key k1 after the restart: %s (%s=%q), want %s replayed", replay.ID, HeaderReplayed, r.Header.Get(HeaderReplayed), keyed.ID)
	}
	if again := tc.debug(); again.AppliedIndex <= after.AppliedIndex {
		t.Errorf("applied index %d after two more writes, was %d", again.AppliedIndex, after.AppliedIndex)
	}
}

// TestNewDataDirTakesTheFlagsConfig: the config of a new data dir is the
// flags'; a restart with other flags changes it through the log: a
// config.changed event in /timeline names the changes, and the new queue
// capacity is in effect. A restart with the same flags records nothing.
func TestNewDataDirTakesTheFlagsConfig(t *testing.T) {
	dir := t.TempDir()
	tc := startCP(t, false, func(o *Options) { o.DataDir, o.Core.QueueCapacity, o.Core.TasksMax = dir, 2, 10 })
	tc.submit(`{"kind":"sleep"}`)
	tc.submit(`{"kind":"sleep"}`)
	tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep"}`)
	tc.stop()
	tc = startCP(t, false, func(o *Options) { o.DataDir, o.Core.QueueCapacity, o.Core.TasksMax = dir, 3, 100 })
	if c := tc.debug().QueueCapacity; c != 3 {
		t.Errorf("queue capacity after a restart with -queue-capacity 3: %d", c)
	}
	var changed []core.Event
	for _, e := range tc.timelineAll() {
		if e.Type == core.EventConfigChanged {
			changed = append(changed, e)
		}
	}
	if len(changed) != 1 || changed[0].Reason != "QueueCapacity 2→3, TasksMax 10→100" || changed[0].Actor != core.ActorConfig {
		t.Fatalf("config.changed events: %+v", changed)
	}
	tc.submit(`{"kind":"sleep"}`)
	tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep"}`)
	if logs := tc.logs.String(); !strings.Contains(logs, `"msg":"config.changed"`) || !strings.Contains(logs, "config changed by the flags") {
		t.Errorf("the change is not logged:\n%s", logs)
	}
	tc.stop()

	// Smaller than the queue: nothing is dropped, submissions wait for room.
	tc = startCP(t, false, func(o *Options) { o.DataDir, o.Core.QueueCapacity, o.Core.TasksMax = dir, 1, 100 })
	if v := tc.debug(); v.QueueCapacity != 1 || v.QueueDepth != 3 {
		t.Errorf("after a restart with -queue-capacity 1: capacity %d depth %d, want 1 and 3", v.QueueCapacity, v.QueueDepth)
	}
	tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep"}`)
	n := len(tc.timelineAll())
	tc.stop()

	// The same flags again: no change, no event.
	tc = startCP(t, false, func(o *Options) { o.DataDir, o.Core.QueueCapacity, o.Core.TasksMax = dir, 1, 100 })
	if got := len(tc.timelineAll()); got != n {
		t.Errorf("a restart with the same flags added %d events", got-n)
	}
}

// TestSecondServerOnADataDirIsRefused: the data dir is locked.
func TestSecondServerOnADataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	startCP(t, false, func(o *Options) { o.DataDir = dir })
	_, err := New(Options{Core: fastConfig(), DataDir: dir})
	if !errors.Is(err, raftlog.ErrDirLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second New on %s: %v, want ErrDirLocked naming the dir", dir, err)
	}
	if _, err := New(Options{Core: fastConfig(), DataDir: dir, InMemory: true}); err == nil ||
		!strings.Contains(err.Error(), "in-memory") || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("New with both a data dir and InMemory: %v", err)
	}
}

// TestSnapshotOptionsReachTheLog: Options.SnapshotInterval and
// SnapshotThreshold are the raft log's, so a busy cp can snapshot (and
// compact its log) sooner than raft's default two minutes; bad values are
// refused by New with the reason.
func TestSnapshotOptionsReachTheLog(t *testing.T) {
	dir := t.TempDir()
	tc := startCP(t, false, func(o *Options) { o.DataDir, o.SnapshotInterval, o.SnapshotThreshold = dir, 20*time.Millisecond, 4 })
	for i := range 8 {
		tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: uint64(i + 1)})
	}
	waitFor(t, 10*time.Second, "a snapshot within the short interval", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "meta.json"))
		return len(m) > 0
	})
	if _, err := New(Options{Core: fastConfig(), SnapshotInterval: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "SnapshotInterval") {
		t.Fatalf("New with a 1ms snapshot interval: %v, want an error naming SnapshotInterval", err)
	}
}

// TestDebugSnapshotReportsIndexAndHash: applied_index and state_hash move
// with every applied entry, and only then.
func TestDebugSnapshotReportsIndexAndHash(t *testing.T) {
	tc := startCP(t, false, nil)
	v1, v2 := tc.debug(), tc.debug()
	if v1.AppliedIndex == 0 || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(v1.StateHash) {
		t.Fatalf("snapshot: applied_index %d state_hash %q", v1.AppliedIndex, v1.StateHash)
	}
	if v2.AppliedIndex != v1.AppliedIndex || v2.StateHash != v1.StateHash {
		t.Fatalf("two reads differ: %d %s, %d %s", v1.AppliedIndex, v1.StateHash, v2.AppliedIndex, v2.StateHash)
	}
	tc.submit(`{"kind":"sleep"}`)
	v3 := tc.debug()
	if v3.AppliedIndex != v1.AppliedIndex+1 || v3.StateHash == v1.StateHash || v3.QueueDepth != 1 {
		t.Fatalf("after a submit: index %d (was %d), hash %s (was %s), depth %d",
			v3.AppliedIndex, v1.AppliedIndex, v3.StateHash, v1.StateHash, v3.QueueDepth)
	}
	var raw map[string]any
	tc.mustStatus(http.StatusOK, "GET", "/scheduler/debug/snapshot", nil).decode(t, &raw)
	for _, k := range []string{"applied_index", "state_hash", "mode", "queue_depth"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("snapshot lacks %q: %v", k, raw)
		}
	}
}

// failingLogStore fails every write while failing is set.
type failingLogStore struct {
	raft.LogStore
	mu      sync.Mutex
	failing bool
}

var errDiskFull = errors.New("disk full (injected)")

func (s *failingLogStore) setFailing(v bool) {
	s.mu.Lock()
	s.failing = v
	s.mu.Unlock()
}

func (s *failingLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s *failingLogStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	failing := s.failing
	s.mu.Unlock()
	if failing {
		return errDiskFull
	}
	return s.LogStore.StoreLogs(logs)
}

// TestNotDurableWriteIsRefused: a write the log store cannot make durable
// answers 503 not_durable with the reason and changes nothing; /readyz says
// why until a write succeeds again.
func TestNotDurableWriteIsRefused(t *testing.T) {
	store := &failingLogStore{}
	tc := startCP(t, false, func(o *Options) {
		o.raft = func(ro *raftlog.Options) {
			ro.WrapLogStore = func(l raft.LogStore) raft.LogStore { store.LogStore = l; return store }
		}
	})
	tc.s.running.Store(true) // /readyz past "not running" without the loops
	defer tc.s.running.Store(false)
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: 1})
	first := tc.submit(`{"kind":"sleep"}`, HeaderIdempotencyKey, "k1")
	state, index := tc.s.fuzzState(), tc.debug().AppliedIndex

	store.setFailing(true)
	r := tc.do("POST", "/v1/tasks", `{"kind":"sleep"}`, HeaderIdempotencyKey, "k2")
	if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "not_durable" || !strings.Contains(string(r.Body), "disk full") {
		t.Fatalf("submit on a failing log: %d %s, want 503 not_durable with the reason", r.Status, r.Body)
	}
	ready := tc.do("GET", "/readyz", nil)
	if ready.Status != http.StatusServiceUnavailable || ready.errorCode(t) != "not_durable" || !strings.Contains(string(ready.Body), "disk full") {
		t.Fatalf("/readyz after a failed write: %d %s", ready.Status, ready.Body)
	}
	// Every other write is refused too while the store fails (503, not_durable
	// or not_leader while the node re-elects itself).
	r = tc.do("POST", fnet.PathHeartbeat, core.HeartbeatInput{AgentID: "a2", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:2", Incarnation: 1, Seq: 1})
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("heartbeat on a failing log: %d %s", r.Status, r.Body)
	}
	if got := tc.s.fuzzState(); got != state || tc.debug().AppliedIndex != index {
		t.Fatalf("a refused write changed the state:\n%s\nwas:\n%s", got, state)
	}

	store.setFailing(false)
	var second TaskView
	waitFor(t, 10*time.Second, "a submit to succeed after the store recovers", func() bool {
		r := tc.do("POST", "/v1/tasks", `{"kind":"sleep"}`, HeaderIdempotencyKey, "k2")
		if r.Status == http.StatusCreated {
			r.decode(t, &second)
			return true
		}
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("submit after recovery: %d %s", r.Status, r.Body)
		}
		return false
	})
	if second.ID == first.ID || tc.task(first.ID).ID != first.ID {
		t.Fatalf("tasks after recovery: %s and %s", first.ID, second.ID)
	}
	tc.mustStatus(http.StatusOK, "GET", "/readyz", nil)
}

// TestLogEntryVersion: an entry of an unknown version is refused by name and
// stops the state machine (its state would no longer be the log's).
func TestLogEntryVersion(t *testing.T) {
	f := newFSM(nil, nil)
	init, err := encodeInit(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Apply(1, init).(applied); a.Err != nil {
		t.Fatal(a.Err)
	}
	a := f.Apply(2, []byte(`{"v":4,"env":{"kind":"tick"}}`)).(applied)
	if a.Err == nil || !strings.Contains(a.Err.Error(), "log entry 2 has format version 4; this cp knows versions 1 to 3 only") {
		t.Fatalf("entry of version 4: %v", a.Err)
	}
	if f.err() == nil {
		t.Fatal("the FSM goes on after an entry it could not apply")
	}
	for _, bad := range []string{`not json`, `{"v":1}`, `{"v":1,"env":{"kind":"nope","at":"2026-01-01T00:00:00Z"}}`,
		`{"v":2}`, `{"v":2,"batch":[]}`, `{"v":2,"env":{"kind":"tick","at":"2026-01-01T00:00:00Z"}}`, `{"v":1,"batch":[{"kind":"tick","at":"2026-01-01T00:00:00Z"}]}`, `{"v":3}`, `{"v":3,"member":{"id":"a b","api_url":"http://h:1"}}`, `{"v":3,"member":{"id":"cp1","api_url":"ftp://h"}}`} {
		g := newFSM(nil, nil)
		g.Apply(1, init)
		if a := g.Apply(2, []byte(bad)).(applied); a.Err == nil || g.err() == nil {
			t.Errorf("entry %s: %v", bad, a.Err)
		}
	}
}

// TestConfigSurvivesTheLogEntry: the init entry's JSON carries every config
// field exactly.
func TestConfigSurvivesTheLogEntry(t *testing.T) {
	cfg := fastConfig()
	cfg.Domains.MinOpenCapacity, cfg.InitialMode, cfg.TaskIDPrefix = 0.37, core.ModeDraining, "p-"
	b, err := encodeInit(time.Unix(1, 0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := decodeEntry(1, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Init.Config, cfg) {
		t.Fatalf("config after the round trip differs in %v:\n%+v\nwant\n%+v", core.ConfigDiff(e.Init.Config, cfg), e.Init.Config, cfg)
	}
}

// TestSnapshotHashIsRateLimitedWhenCostly: a state whose export is costly
// is not hashed again for every new index (a snapshot poll would stall
// every write behind its read lock); the view names the index its hash is
// of, and fresh_hash forces a new one.
func TestSnapshotHashIsRateLimitedWhenCostly(t *testing.T) {
	f := newFSM(nil, nil)
	init, err := encodeInit(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.Apply(1, init)
	now := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	v1, err := f.debugView(now, false)
	if err != nil || v1.StateHashIndex != 1 || v1.AppliedIndex != 1 {
		t.Fatalf("first view %+v %v", v1, err)
	}
	tick, _ := encodeEnvelope(core.Wrap(now, core.TickInput{}))
	// The first hash's cost is measured on the wall clock: under the race
	// detector on a loaded machine even an empty state's can pass
	// hashCheapCost (CI saw it), so the cheap case sets its cost as the
	// costly case below does.
	f.hashMu.Lock()
	f.hashCost = time.Microsecond
	f.hashMu.Unlock()
	f.Apply(2, tick)
	// Cheap: hashed again at the new index.
	if v, _ := f.debugView(now, false); v.StateHashIndex != 2 {
		t.Fatalf("cheap state not rehashed: %+v", v)
	}
	f.hashMu.Lock()
	f.hashCost = time.Second // as a state of 100,000 tasks would take
	f.hashMu.Unlock()
	f.Apply(3, tick)
	v, _ := f.debugView(now, false)
	if v.AppliedIndex != 3 || v.StateHashIndex != 2 {
		t.Fatalf("costly state rehashed at once: applied %d hash of %d", v.AppliedIndex, v.StateHashIndex)
	}
	// Polled again at once with nothing applied in between: still not
	// rehashed. (A poll every 2 ms between entries used to count as quiet,
	// so a draining cp of 50,000 tasks hashed nearly all the time.)
	if v, _ := f.debugView(now, false); v.StateHashIndex != 2 {
		t.Fatalf("costly state rehashed between two entries: %+v", v)
	}
	// Quiet (nothing applied for twice the cost): rehashed, no writer waits.
	if v, _ := f.debugView(now.Add(2*time.Second), false); v.StateHashIndex != 3 {
		t.Fatalf("quiet costly state not rehashed: %+v", v)
	}
	f.hashMu.Lock()
	f.hashCost = time.Second
	f.hashMu.Unlock()
	// Busy again: the hash is refreshed at most once per 20 costs.
	busy := now.Add(2 * time.Second)
	for i, idx := 0, uint64(4); i < 19; i, idx = i+1, idx+1 {
		f.Apply(idx, tick)
		busy = busy.Add(time.Second)
		if v, _ := f.debugView(busy, false); v.StateHashIndex != 3 {
			t.Fatalf("costly state rehashed %v after the last hash: %+v", busy.Sub(now.Add(2*time.Second)), v)
		}
	}
	f.Apply(23, tick)
	if v, _ := f.debugView(busy.Add(time.Second), false); v.StateHashIndex != 23 {
		t.Fatalf("costly state not rehashed after 20 costs: %+v", v)
	}
	f.Apply(24, tick)
	if v, _ := f.debugView(busy.Add(time.Second), true); v.StateHashIndex != 24 {
		t.Fatalf("fresh_hash did not rehash: %+v", v)
	}
}
