package cp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"go.uber.org/goleak"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

func TestMain(m *testing.M) {
	// A proposal committed but not applied when raft shuts down is never
	// answered by raft (raftlog.Node.Propose stops waiting for it on
	// Close); the goroutine left reading that future is raft's.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*deferError).Error"))
}

// testCP is a Server listening on an ephemeral loopback port with its loops
// running.
type testCP struct {
	t      testing.TB
	s      *Server
	srv    *httptest.Server
	url    string
	client *http.Client
	logs   *syncBuffer
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fastConfig is a core config with intervals short enough for tests on real
// time, yet long enough that a loaded CI machine does not flap agents.
func fastConfig() core.Config {
	cfg := core.DefaultConfig()
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.HeartbeatTimeout = 2 * time.Second
	cfg.LostAfter = 2 * time.Second
	cfg.AssignTimeout = 2 * time.Second
	return cfg
}

// startCP starts a Server. run=false leaves the loops stopped (the test
// drives Reconcile and the delivery queue itself).
func startCP(t testing.TB, run bool, mod func(*Options)) *testCP {
	t.Helper()
	logs := &syncBuffer{}
	opts := Options{
		Core:              fastConfig(),
		Logger:            slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReconcileInterval: 10 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	tc := &testCP{t: t, s: s, srv: srv, url: srv.URL, client: srv.Client(), logs: logs}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if run {
		go func() {
			defer close(done)
			if err := s.Run(ctx); err != nil {
				t.Error(err)
			}
		}()
		waitFor(t, 5*time.Second, "readyz", func() bool { return s.running.Load() })
	} else {
		close(done)
	}
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		tc.client.CloseIdleConnections()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return tc
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not an assertion
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errorBody checks that the response is the API's JSON error and returns its code.
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	var e map[string]string
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("error body is not JSON: %q", r.Body)
	}
	if e["error"] == "" || e["message"] == "" {
		t.Fatalf("error body lacks error or message: %q", r.Body)
	}
	if len(e) != 2 {
		t.Fatalf("error body has extra keys: %q", r.Body)
	}
	return e["error"]
}

// do sends a request; body may be nil, a string, []byte or a value to marshal.
func (tc *testCP) do(method, path string, body any, headers ...string) response {
	tc.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tc.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, tc.url+path, rd)
	if err != nil {
		tc.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		tc.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tc.t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

func (tc *testCP) mustStatus(want int, method, path string, body any, headers ...string) response {
	tc.t.Helper()
	r := tc.do(method, path, body, headers...)
	if r.Status != want {
		tc.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	return r
}

func (tc *testCP) submit(body string, headers ...string) TaskView {
	tc.t.Helper()
	var v TaskView
	tc.mustStatus(http.StatusCreated, "POST", "/v1/tasks", body, headers...).decode(tc.t, &v)
	return v
}

func (tc *testCP) task(id core.TaskID) TaskView {
	tc.t.Helper()
	var v TaskView
	tc.mustStatus(http.StatusOK, "GET", "/v1/tasks/"+string(id), nil).decode(tc.t, &v)
	return v
}

func (tc *testCP) snapshot() core.DebugView {
	tc.t.Helper()
	var s core.DebugView
	tc.mustStatus(http.StatusOK, "GET", "/scheduler/debug/snapshot", nil).decode(tc.t, &s)
	return s
}

// heartbeat registers or refreshes an agent directly (no fake agent process).
func (tc *testCP) heartbeat(hb core.HeartbeatInput, headers ...string) core.HeartbeatReply {
	tc.t.Helper()
	var rep core.HeartbeatReply
	tc.mustStatus(http.StatusOK, "POST", fnet.PathHeartbeat, hb, headers...).decode(tc.t, &rep)
	return rep
}

// fakeAgent is a real core.Agent that heartbeats to the cp and long-polls
// it for assignments and cancels, with an executor that finishes a sleep
// task once its duration has passed (and exec tasks at once, failing if
// failExec).
type fakeAgent struct {
	t        testing.TB
	id       core.AgentID
	inc      uint64
	token    string
	mu       sync.Mutex
	ag       *core.Agent
	exec     *fakeExec
	client   *fnet.HTTPClient
	cancel   context.CancelFunc
	done     chan struct{} // the heartbeat pump exited
	pollDone chan struct{} // the poll loop exited
	hold     chan struct{} // when set, the agent polls only once it is closed
	polls    atomic.Int64  // polls answered
}

type fakeExec struct {
	running map[core.TaskID]fakeRun
	started int
}

type fakeRun struct {
	e  core.Execution
	at time.Time
}

func (x *fakeExec) Start(e core.Execution) {
	x.running[e.TaskID] = fakeRun{e, time.Now()}
	x.started++
}

func (x *fakeExec) Stop(id core.TaskID, attempt int) { delete(x.running, id) }

func startAgent(t testing.TB, cpURL string, id core.AgentID, domain string, slots int, token string) *fakeAgent {
	t.Helper()
	return startFakeAgent(t, cpURL, id, domain, slots, token, nil)
}

// startAgentHeld starts an agent that takes no assignments until hold is
// closed (it heartbeats but does not poll).
func startAgentHeld(t testing.TB, cpURL string, id core.AgentID, domain string, slots int, hold chan struct{}) *fakeAgent {
	t.Helper()
	return startFakeAgent(t, cpURL, id, domain, slots, "", hold)
}

func startFakeAgent(t testing.TB, cpURL string, id core.AgentID, domain string, slots int, token string, hold chan struct{}) *fakeAgent {
	t.Helper()
	fa := &fakeAgent{t: t, id: id, token: token, exec: &fakeExec{running: map[core.TaskID]fakeRun{}},
		done: make(chan struct{}), pollDone: make(chan struct{}), hold: hold, inc: uint64(time.Now().UnixNano())}
	ag, err := core.NewAgent(core.AgentConfig{ID: id, Domain: domain, Slots: slots,
		HeartbeatInterval: 20 * time.Millisecond, ResultsMax: 4096, Incarnation: fa.inc}, fa.exec)
	if err != nil {
		t.Fatal(err)
	}
	fa.ag = ag
	fa.client = &fnet.HTTPClient{HTTP: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}, Token: token, CPURL: cpURL}
	ctx, cancel := context.WithCancel(context.Background())
	fa.cancel = cancel
	go fa.pump(ctx)
	go fa.pollLoop(ctx)
	t.Cleanup(fa.kill)
	return fa
}

// kill stops the agent abruptly: no more heartbeats or polls.
func (fa *fakeAgent) kill() {
	select {
	case <-fa.done:
		return
	default:
	}
	fa.cancel()
	<-fa.done
	<-fa.pollDone
	fa.client.HTTP.CloseIdleConnections()
}

// pollLoop long-polls the cp and hands what comes to the agent's core,
// acknowledging assignments on the next poll.
func (fa *fakeAgent) pollLoop(ctx context.Context) {
	defer close(fa.pollDone)
	if fa.hold != nil {
		select {
		case <-fa.hold:
		case <-ctx.Done():
			return
		}
	}
	var in fnet.Inbox
	var acks []core.AssignAck
	for ctx.Err() == nil {
		reply, err := fa.client.Poll(ctx, fnet.PollRequest{AgentID: fa.id, Incarnation: fa.inc,
			Epoch: in.Epoch, After: in.After, Acks: acks, WaitMillis: 1000})
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond): // back off, not an assertion
			}
			continue
		}
		fa.polls.Add(1)
		acks = nil
		fa.mu.Lock()
		for _, m := range in.Accept(*reply) {
			if m.Assign != nil {
				acks = append(acks, fa.ag.Assign(time.Now(), *m.Assign))
			} else {
				fa.ag.Cancel(time.Now(), *m.Cancel)
			}
		}
		fa.mu.Unlock()
	}
}

func (fa *fakeAgent) pump(ctx context.Context) {
	defer close(fa.done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		fa.mu.Lock()
		for id, run := range fa.exec.running {
			if now.Sub(run.at) >= time.Duration(run.e.Spec.DurationMS)*time.Millisecond {
				delete(fa.exec.running, id)
				out := core.OutcomeSucceeded
				if run.e.Spec.Kind == core.KindExec && run.e.Spec.Argv[0] == "/bin/false" {
					out = core.OutcomeFailed
				}
				fa.ag.Finished(now, core.Result{TaskID: id, Attempt: run.e.Attempt, Outcome: out})
			}
		}
		hb, ok := fa.ag.Tick(now)
		fa.mu.Unlock()
		if !ok {
			continue
		}
		reply, err := fa.client.Do(ctx, fnet.Message{From: string(fa.id), To: fnet.CPNode, Kind: fnet.KindHeartbeat, Seq: hb.Seq, Heartbeat: &hb})
		fa.mu.Lock()
		if err != nil {
			fa.ag.HeartbeatFailed(time.Now(), hb.Seq)
		} else {
			fa.ag.HeartbeatReplied(time.Now(), hb.Seq, *reply.HeartbeatReply)
		}
		fa.mu.Unlock()
	}
}

func (fa *fakeAgent) started() int {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	return fa.exec.started
}

// mockCP starts a Server on a mock clock with its loops running; the test
// moves time.
func mockCP(t testing.TB, mod func(*Options)) (*testCP, *clock.Mock) {
	t.Helper()
	mock := newMock()
	tc := startCP(t, true, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.ReconcileInterval = time.Second
		if mod != nil {
			mod(o)
		}
	})
	return tc, mock
}

func newMock() *clock.Mock {
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return mock
}

// applyInput proposes in through the log; err is the log's or the core's.
func (s *Server) applyInput(in core.Input) error {
	a, err := s.propose(context.Background(), in)
	if err != nil {
		return err
	}
	return a.Err
}
