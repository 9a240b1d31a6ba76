package cp

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// gateStore holds every append while closed, so a test can queue inputs
// behind an entry in flight.
type gateStore struct {
	raft.LogStore
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gateStore) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateStore) open() {
	g.mu.Lock()
	close(g.gate)
	g.gate = nil
	g.mu.Unlock()
}

func (g *gateStore) StoreLog(l *raft.Log) error { return g.StoreLogs([]*raft.Log{l}) }

func (g *gateStore) StoreLogs(logs []*raft.Log) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return g.LogStore.StoreLogs(logs)
}

func (b *batcher) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// TestHeartbeatsWaitingTogetherAreOneEntry: heartbeats that arrive while an
// entry is being made durable go to the log as one batch entry, each gets
// its own reply, stamps follow the log's order, and the data dir replays
// to the state and timeline the cp reported.
func TestHeartbeatsWaitingTogetherAreOneEntry(t *testing.T) {
	const agents = 20
	dir := t.TempDir()
	mock := newMock()
	gate := &gateStore{}
	tc := startCP(t, false, func(o *Options) {
		durableOpts(dir, mock)(o)
		o.raft = func(ro *raftlog.Options) {
			ro.WrapLogStore = func(s raft.LogStore) raft.LogStore { gate.LogStore = s; return gate }
		}
	})
	tc.submit(`{"kind":"sleep"}`)
	hb := func(i int, seq uint64) core.HeartbeatInput {
		return core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("a%02d", i)),
			Domain: fmt.Sprintf("z%d", i%3), Slots: 2, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: seq}
	}
	// The odd agents register now: their batched heartbeats' replies say
	// they did not register, the even ones' that they did.
	for i := 1; i < agents; i += 2 {
		if err := tc.s.applyInput(hb(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	before := tc.s.node.LogStats()

	gate.hold()
	// Two ticks fill the pipeline: the first held in the log's append, the
	// second queued in raft behind it.
	first := make(chan error, 2)
	go func() { first <- tc.s.applyInput(core.TickInput{}) }()
	waitFor(t, 10*time.Second, "a tick in flight", func() bool { return tc.s.batch.waiting() == 0 && flying(tc.s) == 1 })
	go func() { first <- tc.s.applyInput(core.TickInput{}) }()
	waitFor(t, 10*time.Second, "two ticks in flight", func() bool { return tc.s.batch.waiting() == 0 && flying(tc.s) == 2 })
	replies := make([]core.HeartbeatReply, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Go(func() {
			a, err := tc.s.propose(context.Background(), hb(i, 2))
			if err == nil {
				err = a.Err
			}
			replies[i], errs[i] = a.Result.Heartbeat, err
		})
	}
	waitFor(t, 10*time.Second, "every heartbeat waiting", func() bool { return tc.s.batch.waiting() == agents })
	gate.open()
	wg.Wait()
	for range 2 {
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
		if replies[i].Registered != (i%2 == 0) {
			t.Fatalf("heartbeat %d: registered %v, want %v (another input's reply?)", i, replies[i].Registered, i%2 == 0)
		}
	}
	after := tc.s.node.LogStats()
	if got := after.Entries - before.Entries; got != 3 {
		t.Fatalf("two ticks and %d heartbeats took %d entries, want 3 (the ticks, then one batch)", agents, got)
	}
	if got := tc.snapshot().Agents.Connected; got != agents {
		t.Fatalf("%d agents connected, want %d", got, agents)
	}
	// The batch is a version 2 entry of every heartbeat, stamps in order.
	want := tc.debug()
	timeline := tc.timelineAll()
	tc.stop()
	rec, err := raftlog.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var batch logEntry
	for _, e := range rec.Entries {
		if strings.HasPrefix(string(e.Data), `{"v":2,`) {
			if batch, err = decodeEntry(e.Index, e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(batch.Batch) != agents {
		t.Fatalf("batch entry of %d inputs, want %d", len(batch.Batch), agents)
	}
	for i := 1; i < len(batch.Batch); i++ {
		if batch.Batch[i].At.Before(batch.Batch[i-1].At) {
			t.Fatalf("stamps go back in the batch: %v then %v", batch.Batch[i-1].At, batch.Batch[i].At)
		}
	}
	res, err := Replay(rec, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.AppliedIndex != want.AppliedIndex || res.StateHash != want.StateHash {
		t.Fatalf("replay: %d %s, the cp reported %d %s", res.AppliedIndex, res.StateHash, want.AppliedIndex, want.StateHash)
	}
	if got, exp := eventKeys(res.Events), eventKeys(timeline); got != exp {
		t.Fatalf("replayed timeline differs:\n got %s\nwant %s", got, exp)
	}
	// A restarted cp reads the batch too.
	tc2 := startCP(t, false, durableOpts(dir, mock))
	if got := tc2.debug(); got.StateHash != want.StateHash {
		t.Fatalf("restart: state_hash %s, want %s", got.StateHash, want.StateHash)
	}
}

func flying(s *Server) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return s.batch.flying
}

// TestBatchEntryAppliesEachInput: the FSM applies a batch's inputs in order,
// each with its own result (a refused one does not stop the others), and a
// batch with a bad input stops the state machine.
func TestBatchEntryAppliesEachInput(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	init, err := encodeInit(at, fastConfig())
	if err != nil {
		t.Fatal(err)
	}
	f := newFSM(nil, nil)
	f.Apply(1, init)
	f.Apply(2, mustEncode(t, core.Wrap(at, core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1})))
	hb := func(id string) core.Envelope {
		return core.Wrap(at, core.HeartbeatInput{AgentID: core.AgentID(id), Domain: "z1", Slots: 1, Incarnation: 1, Seq: 2})
	}
	b, err := encodeBatch([]core.Envelope{hb("a1"), hb("bad id!"), hb("a2")})
	if err != nil {
		t.Fatal(err)
	}
	out, ok := f.Apply(3, b).([]applied)
	if !ok || len(out) != 3 {
		t.Fatalf("batch result %#v", out)
	}
	if out[0].Err != nil || out[2].Err != nil || out[1].Err == nil {
		t.Fatalf("results: %v, %v, %v", out[0].Err, out[1].Err, out[2].Err)
	}
	if out[0].Result.Heartbeat.Registered || !out[2].Result.Heartbeat.Registered {
		t.Fatalf("replies %+v %+v: a1 was registered, a2 was not", out[0].Result.Heartbeat, out[2].Result.Heartbeat)
	}
	if f.err() != nil {
		t.Fatal(f.err())
	}
	one, err := encodeBatch([]core.Envelope{hb("a3")})
	if err != nil || !strings.HasPrefix(string(one), `{"v":1,"env":`) {
		t.Fatalf("a batch of one is a version 1 entry: %s %v", one, err)
	}
	bad := fmt.Sprintf(`{"v":2,"batch":[%s,{"kind":"nope","at":"2026-01-01T00:00:00Z"},%s]}`, jsonOf(t, hb("a4")), jsonOf(t, hb("a5")))
	out, _ = f.Apply(4, []byte(bad)).([]applied)
	if len(out) != 3 || out[0].Err != nil || out[1].Err == nil || out[2].Err == nil || f.err() == nil {
		t.Fatalf("batch with a bad input: %v, err %v", out, f.err())
	}
}

func mustEncode(t *testing.T, env core.Envelope) []byte {
	t.Helper()
	b, err := encodeEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
