package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "test-token"

// fakeCP is a control plane for agent tests: a real core.ControlPlane behind
// an httptest server that answers heartbeats and long polls, holding the
// core's messages in one net.Mailbox per agent, as the cp daemon does.
type fakeCP struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	cp         *core.ControlPlane
	starts     int
	heartbeats []core.HeartbeatInput
	boxes      map[core.AgentID]*fnet.Mailbox
	pushed     chan struct{} // closed (and replaced) when a message is pushed
}

func cpConfig() core.Config {
	cfg := core.DefaultConfig()
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.HeartbeatTimeout = 2 * time.Second
	cfg.AssignTimeout = 2 * time.Second
	return cfg
}

// newCPServer serves h as the cp does: HTTP/1.1 and cleartext HTTP/2, which
// the agent's client speaks by default.
func newCPServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	return srv
}

func newFakeCP(t *testing.T) *fakeCP {
	f := &fakeCP{t: t, pushed: make(chan struct{})}
	f.cp = f.newCore()
	f.srv = newCPServer(http.HandlerFunc(f.handle))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCP) newCore() *core.ControlPlane {
	f.starts++ // task ids and mailbox epochs unique per start, as the cp daemon makes them
	f.boxes = map[core.AgentID]*fnet.Mailbox{}
	cp, err := core.NewControlPlane(cpConfig(), time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := cp.Apply(time.Now(), core.StartInput{TaskIDPrefix: fmt.Sprintf("s%d-", f.starts)}); err != nil {
		f.t.Fatal(err)
	}
	return cp
}

func (f *fakeCP) handle(w http.ResponseWriter, r *http.Request) {
	if !fnet.CheckToken(r, testToken) {
		fnet.WriteError(w, http.StatusUnauthorized, "unauthorized", "token")
		return
	}
	switch r.URL.Path {
	case fnet.PathHeartbeat:
	case fnet.PathPoll:
		f.poll(w, r)
		return
	default:
		fnet.WriteError(w, http.StatusNotFound, "not_found", r.URL.Path)
		return
	}
	var hb core.HeartbeatInput
	if err := fnet.Decode(r.Body, fnet.BodyMax, &hb); err != nil {
		fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	f.mu.Lock()
	f.heartbeats = append(f.heartbeats, hb)
	res, err := f.cp.Apply(time.Now(), hb)
	reply := res.Heartbeat
	f.deliverLocked(f.cp.TakeOutbox())
	f.mu.Unlock()
	if err != nil {
		fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	fnet.WriteJSON(w, http.StatusOK, reply)
}

// deliver puts the cp's messages into the agents' mailboxes and wakes
// their polls. Caller holds f.mu.
func (f *fakeCP) deliverLocked(out []core.Outbound) {
	for _, o := range out {
		b := f.boxes[o.To]
		if b == nil {
			b = fnet.NewMailbox(uint64(f.starts), 1024)
			f.boxes[o.To] = b
		}
		b.Push(o)
	}
	if len(out) > 0 {
		close(f.pushed)
		f.pushed = make(chan struct{})
	}
}

// poll serves a long poll: acks into the core, then the mailbox's messages
// at once or once some arrive (or the wait ends).
func (f *fakeCP) poll(w http.ResponseWriter, r *http.Request) {
	var p fnet.PollRequest
	if err := fnet.Decode(r.Body, fnet.BodyMax, &p); err != nil {
		fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if err := p.Validate(); err != nil {
		fnet.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	timer := time.NewTimer(time.Duration(p.WaitMillis) * time.Millisecond)
	defer timer.Stop()
	f.mu.Lock()
	for _, a := range p.Acks {
		a.AgentID = p.AgentID
		_, _ = f.cp.Apply(time.Now(), a)
	}
	f.deliverLocked(f.cp.TakeOutbox())
	for {
		b := f.boxes[p.AgentID]
		if b == nil {
			b = fnet.NewMailbox(uint64(f.starts), 1024)
			f.boxes[p.AgentID] = b
		}
		b.Ack(p.Epoch, p.After)
		if b.Pending(p.Epoch, p.After) || p.WaitMillis == 0 {
			reply := b.Take(p.Epoch, p.After, fnet.PollBatchMax)
			f.mu.Unlock()
			fnet.WriteJSON(w, http.StatusOK, reply)
			return
		}
		pushed := f.pushed
		f.mu.Unlock()
		select {
		case <-pushed:
		case <-timer.C:
			p.WaitMillis = 0
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
	}
}

func (f *fakeCP) submit(spec core.TaskSpec) core.TaskID {
	f.mu.Lock()
	r, err := f.cp.Apply(time.Now(), core.SubmitInput{Spec: spec})
	task := r.Task
	f.deliverLocked(f.cp.TakeOutbox())
	f.mu.Unlock()
	if err != nil {
		f.t.Fatalf("submit: %v", err)
	}
	return task.ID
}

func (f *fakeCP) task(id core.TaskID) core.Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, _ := f.cp.Task(id)
	return t
}

// restart replaces the core with an empty one, as a cp restart does.
func (f *fakeCP) restart() {
	f.mu.Lock()
	f.cp = f.newCore()
	f.mu.Unlock()
}

func (f *fakeCP) events(typ core.EventType) []core.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []core.Event
	for _, e := range f.cp.Timeline().Since(0, 0) {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// runningDaemon is a daemon served by an httptest server and run until the
// test ends.
type runningDaemon struct {
	*Daemon
	srv    *httptest.Server // nil in a synctest bubble
	base   string           // the daemon's API: srv.URL, or in memory
	client *http.Client     // reaches base
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
	once   sync.Once
}

func startDaemon(t *testing.T, cpURL string, mutate func(*Options)) *runningDaemon {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	opts := Options{
		ID: "agent-1", Domain: "zone-a", Slots: 4, CPURL: cpURL,
		Token: testToken, HeartbeatInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, DrainTimeout: 5 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = d.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	rd := &runningDaemon{Daemon: d, srv: srv, base: srv.URL, client: http.DefaultClient, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		rd.err = d.Run(ctx)
	}()
	t.Cleanup(func() {
		rd.stop(t)
		srv.Close()
	})
	return rd
}

// stop cancels Run and waits for the shutdown to finish.
func (rd *runningDaemon) stop(t *testing.T) {
	t.Helper()
	rd.cancel()
	select {
	case <-rd.done:
		rd.once.Do(func() {
			if rd.err != nil {
				t.Errorf("Run: %v", rd.err)
			}
		})
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after stop")
	}
}

// returned reports whether Run returned.
func (rd *runningDaemon) returned() bool {
	select {
	case <-rd.done:
		return true
	default:
		return false
	}
}

// request sends a request to the daemon's API.
func (rd *runningDaemon) request(t *testing.T, method, path, token string, body []byte) (int, []byte) {
	t.Helper()
	return send(t, rd.client, method, rd.base+path, token, body)
}

func request(t *testing.T, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	return send(t, http.DefaultClient, method, url, token, body)
}

func send(t *testing.T, hc *http.Client, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDaemonRunsTasksFromCP(t *testing.T) {
	f := newFakeCP(t)
	d := startDaemon(t, f.srv.URL, nil)
	waitUntil(t, 10*time.Second, "registration", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	var ids []core.TaskID
	for range 40 {
		ids = append(ids, f.submit(core.TaskSpec{Kind: core.KindSleep, DurationMS: 5}))
	}
	waitUntil(t, 20*time.Second, "every task to succeed", func() bool {
		for _, id := range ids {
			if f.task(id).State != core.TaskSucceeded {
				return false
			}
		}
		return true
	})
	waitUntil(t, 10*time.Second, "every result acknowledged", func() bool { return d.Status().PendingResults == 0 })
	st := d.Status()
	succeeded := map[core.TaskID]int{}
	for _, r := range st.Results {
		if r.Outcome == core.OutcomeSucceeded {
			succeeded[r.TaskID]++
		}
	}
	for _, id := range ids {
		if succeeded[id] != 1 {
			t.Errorf("task %s succeeded %d times on the agent", id, succeeded[id])
		}
	}
	if st.Stats.Succeeded != 40 || !st.CPConnected {
		t.Errorf("status %+v", st)
	}
	code, body := request(t, "GET", d.srv.URL+"/metrics", "", nil)
	for _, want := range []string{
		`flux_agent_tasks_total{outcome="succeeded"} 40`, "flux_agent_slots 4", "flux_agent_cp_connected 1",
		`flux_agent_heartbeats_total{result="ok"}`, "flux_agent_running_tasks 0", `flux_agent_assignments_total{result="accepted"} 40`,
	} {
		if code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestDaemonServesNoOrders: the agent's port is read-only. Nothing there
// assigns or cancels (the agent polls the cp for that); /v1/status needs
// the token; errors are the JSON error body.
func TestDaemonServesNoOrders(t *testing.T) {
	f := newFakeCP(t)
	d := startDaemon(t, f.srv.URL, nil)
	assign := mustJSON(t, core.Assign{TaskID: "x1", Attempt: 1, Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 1}})
	tests := []struct {
		name, method, path, token string
		body                      []byte
		status                    int
		code                      string
	}{
		{"assign", "POST", "/v1/assign", testToken, assign, 404, "not_found"},
		{"cancel", "POST", "/v1/cancel", testToken, assign, 404, "not_found"},
		{"status without token", "GET", "/v1/status", "", nil, 401, "unauthorized"},
		{"status with wrong token", "GET", "/v1/status", "nope", nil, 401, "unauthorized"},
		{"unknown path", "GET", "/nope", "", nil, 404, "not_found"},
		{"wrong method", "POST", "/v1/status", testToken, nil, 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := request(t, tc.method, d.srv.URL+tc.path, tc.token, tc.body)
			var e struct{ Error, Message string }
			if err := json.Unmarshal(body, &e); err != nil || status != tc.status || e.Error != tc.code || e.Message == "" {
				t.Errorf("got %d %s, want %d with error %q and a message", status, body, tc.status, tc.code)
			}
		})
	}
	if status, _ := request(t, "GET", d.srv.URL+"/healthz", "", nil); status != 200 {
		t.Errorf("healthz %d", status)
	}
	if status, _ := request(t, "GET", d.srv.URL+"/v1/status", testToken, nil); status != 200 {
		t.Errorf("status with token: %d", status)
	}
	if st := d.Status(); st.Stats.Accepted != 0 {
		t.Errorf("an assignment was accepted on the agent's port: %+v", st.Stats)
	}
}

// TestDaemonTakesMalformedOrdersSafely: a poll reply's malformed messages
// (the cp never sends them) are logged and change nothing; a well-formed
// one in the same batch is taken and acked.
func TestDaemonTakesMalformedOrdersSafely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubCP{}
		logs := &lockedLog{}
		d := startBubbleDaemon(t, stub, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
		stub.push(core.Outbound{To: "agent-1", Assign: &core.Assign{TaskID: "", Attempt: 1, Spec: core.TaskSpec{Kind: core.KindSleep}}})
		stub.push(core.Outbound{To: "agent-1", Cancel: &core.CancelTask{TaskID: "x", Attempt: 0}})
		if ack := assignTo(t, stub, true, "ok", core.TaskSpec{Kind: core.KindSleep, DurationMS: 60_000}); !ack.Accepted {
			t.Fatalf("ack %+v", ack)
		}
		stub.mu.Lock()
		nacks := len(stub.acks)
		stub.mu.Unlock()
		if nacks != 1 {
			t.Fatalf("%d acks, want only the well-formed assignment's", nacks)
		}
		if st := d.Status(); len(st.Running) != 1 || st.Stats.Accepted != 1 {
			t.Fatalf("status %+v", st)
		}
		for _, want := range []string{`"msg":"assignment ignored: malformed"`, `"msg":"cancel ignored: malformed"`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %s", want)
			}
		}
	})
}

func TestDaemonRefusesExecUnlessAllowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubCP{}
		startBubbleDaemon(t, stub, nil)
		ack := assignTo(t, stub, true, "x1", core.TaskSpec{Kind: core.KindExec, Argv: []string{"/bin/true"}})
		if ack.Accepted || !strings.Contains(ack.Reason, "-allow-exec") {
			t.Fatalf("ack %+v, want a rejection naming -allow-exec", ack)
		}
	})
}

func TestDaemonRunsExecWhenAllowed(t *testing.T) {
	f := newFakeCP(t)
	startDaemon(t, f.srv.URL, func(o *Options) { o.AllowExec = true })
	waitUntil(t, 10*time.Second, "registration", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	ok := f.submit(core.TaskSpec{Kind: core.KindExec, Argv: []string{"/bin/echo", "hello"}})
	bad := f.submit(core.TaskSpec{Kind: core.KindExec, Argv: []string{"/bin/sh", "-c", "exit 7"}, MaxAttempts: 1})
	waitUntil(t, 20*time.Second, "both tasks to end", func() bool {
		return f.task(ok).State.Terminal() && f.task(bad).State.Terminal()
	})
	if got := f.task(ok); got.State != core.TaskSucceeded || got.Output != "hello\n" || got.ExitCode != 0 {
		t.Errorf("echo task %+v", got)
	}
	if got := f.task(bad); got.State != core.TaskFailed || got.ExitCode != 7 {
		t.Errorf("failing task %+v", got)
	}
}

// stubCP is a control plane handler that answers every heartbeat with an
// empty reply acknowledging its results, and every poll with the messages
// a test pushed, so tests can assign to the agent directly. It serves in
// memory (see startBubbleDaemon) or on a port (newStubCP).
type stubCP struct {
	mu     sync.Mutex
	hbs    []core.HeartbeatInput
	box    *fnet.Mailbox
	pushed chan struct{}
	acks   []core.AssignAck
	polls  int
}

func (s *stubCP) init() {
	if s.box == nil {
		s.box = fnet.NewMailbox(42, 1024)
		s.pushed = make(chan struct{})
	}
}

// push puts an assignment or cancel into the agent's mailbox.
func (s *stubCP) push(o core.Outbound) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.box.Push(o)
	close(s.pushed)
	s.pushed = make(chan struct{})
}

// ack returns the agent's ack for task id, if a poll brought it.
func (s *stubCP) ack(id core.TaskID) (core.AssignAck, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.acks {
		if a.TaskID == id {
			return a, true
		}
	}
	return core.AssignAck{}, false
}

func (s *stubCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == fnet.PathPoll {
		s.poll(w, r)
		return
	}
	var hb core.HeartbeatInput
	if err := fnet.Decode(r.Body, fnet.BodyMax, &hb); err != nil {
		fnet.WriteError(w, 400, "bad_request", err.Error())
		return
	}
	s.mu.Lock()
	s.hbs = append(s.hbs, hb)
	s.mu.Unlock()
	var reply core.HeartbeatReply
	for _, r := range hb.Results {
		reply.Acked = append(reply.Acked, core.Lease{TaskID: r.TaskID, Attempt: r.Attempt})
	}
	fnet.WriteJSON(w, 200, reply)
}

func (s *stubCP) poll(w http.ResponseWriter, r *http.Request) {
	var p fnet.PollRequest
	if err := fnet.Decode(r.Body, fnet.BodyMax, &p); err != nil {
		fnet.WriteError(w, 400, "bad_request", err.Error())
		return
	}
	if err := p.Validate(); err != nil {
		fnet.WriteError(w, 400, "bad_request", err.Error())
		return
	}
	timer := time.NewTimer(time.Duration(p.WaitMillis) * time.Millisecond)
	defer timer.Stop()
	s.mu.Lock()
	s.init()
	s.polls++
	s.acks = append(s.acks, p.Acks...)
	s.box.Ack(p.Epoch, p.After)
	for !s.box.Pending(p.Epoch, p.After) {
		pushed := s.pushed
		s.mu.Unlock()
		select {
		case <-pushed:
		case <-timer.C:
			s.mu.Lock()
			reply := s.box.Take(p.Epoch, p.After, fnet.PollBatchMax)
			s.mu.Unlock()
			fnet.WriteJSON(w, 200, reply)
			return
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
	}
	reply := s.box.Take(p.Epoch, p.After, fnet.PollBatchMax)
	s.mu.Unlock()
	fnet.WriteJSON(w, 200, reply)
}

// servedStub is a stubCP on a loopback port, for tests that need real
// sockets (remote addresses in logs) or real processes.
type servedStub struct {
	*stubCP
	srv *httptest.Server
}

func newStubCP(t *testing.T) *servedStub {
	s := &servedStub{stubCP: &stubCP{}}
	s.srv = newCPServer(s.stubCP)
	t.Cleanup(s.srv.Close)
	return s
}

// results returns every result the stub received, by lease, and whether a
// heartbeat said stopping.
func (s *stubCP) results() (map[core.Lease]core.Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[core.Lease]core.Result{}
	stopping := false
	for _, hb := range s.hbs {
		stopping = stopping || hb.Stopping
		for _, r := range hb.Results {
			out[core.Lease{TaskID: r.TaskID, Attempt: r.Attempt}] = r
		}
	}
	return out, stopping
}

// assignTo assigns task id (attempt 1) to the agent through the stub's
// mailbox and returns the ack the agent's next poll brought. In a synctest
// bubble (bubble) it waits for every goroutine to settle, else it polls
// for the ack with a deadline.
func assignTo(t *testing.T, stub *stubCP, bubble bool, id string, spec core.TaskSpec) core.AssignAck {
	t.Helper()
	stub.push(core.Outbound{To: "agent-1", Assign: &core.Assign{TaskID: core.TaskID(id), Attempt: 1, Spec: spec}})
	if bubble {
		synctest.Wait()
	} else {
		waitUntil(t, 10*time.Second, "the ack of "+id, func() bool { _, ok := stub.ack(core.TaskID(id)); return ok })
	}
	ack, ok := stub.ack(core.TaskID(id))
	if !ok {
		t.Fatalf("no ack for %s", id)
	}
	return ack
}

// The next four tests run in a synctest bubble: the daemon heartbeats to
// an in-memory cp, time is fake (time.Sleep moves it at once) and
// synctest.Wait returns when every goroutine is idle, so each step is
// checked at an exact instant instead of polled for.

func TestDaemonTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubCP{}
		d := startBubbleDaemon(t, stub, nil)
		if ack := assignTo(t, stub, true, "slow", core.TaskSpec{Kind: core.KindSleep, DurationMS: 60_000, TimeoutSeconds: 1}); !ack.Accepted {
			t.Fatalf("ack %+v", ack)
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if st := d.Status(); len(st.Running) != 1 || st.Stats.TimedOut != 0 {
			t.Fatalf("timed out early: %+v", st)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		res, _ := stub.results()
		if r, ok := res[core.Lease{TaskID: "slow", Attempt: 1}]; !ok || r.Outcome != core.OutcomeTimeout {
			t.Fatalf("the timeout was not reported at the deadline: %+v", res)
		}
		if st := d.Status(); st.Stats.TimedOut != 1 || len(st.Running) != 0 || st.PendingResults != 0 || d.sleep.Running() != 0 {
			t.Errorf("after timeout: %+v, sleeps %d", st, d.sleep.Running())
		}
	})
}

func TestDaemonGracefulStopFinishesRunningWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubCP{}
		d := startBubbleDaemon(t, stub, func(o *Options) { o.ShutdownGrace = time.Minute })
		if ack := assignTo(t, stub, true, "work", core.TaskSpec{Kind: core.KindSleep, DurationMS: 2000}); !ack.Accepted {
			t.Fatalf("ack %+v", ack)
		}
		d.cancel()
		synctest.Wait()
		if _, stopping := stub.results(); !stopping {
			t.Fatal("no stopping heartbeat")
		}
		if ack := assignTo(t, stub, true, "late", core.TaskSpec{Kind: core.KindSleep, DurationMS: 1}); ack.Accepted || !strings.Contains(ack.Reason, "stopping") {
			t.Errorf("a stopping agent took work: %+v", ack)
		}
		if status, _ := d.request(t, "GET", "/readyz", "", nil); status != 503 {
			t.Errorf("readyz while stopping: %d", status)
		}
		time.Sleep(1999 * time.Millisecond)
		synctest.Wait()
		if d.returned() {
			t.Fatal("Run returned before the running task finished")
		}
		time.Sleep(time.Millisecond) // the task finishes, well within the grace
		synctest.Wait()
		if !d.returned() {
			t.Fatal("Run did not return once the task finished and was acknowledged")
		}
		res, _ := stub.results()
		if r := res[core.Lease{TaskID: "work", Attempt: 1}]; r.Outcome != core.OutcomeSucceeded {
			t.Errorf("running work was not finished and reported: %+v", res)
		}
	})
}

func TestDaemonShutdownGraceCancelsLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stub := &stubCP{}
		d := startBubbleDaemon(t, stub, func(o *Options) { o.ShutdownGrace = 5 * time.Second })
		if ack := assignTo(t, stub, true, "long", core.TaskSpec{Kind: core.KindSleep, DurationMS: 3_600_000, TimeoutSeconds: 7200}); !ack.Accepted {
			t.Fatalf("ack %+v", ack)
		}
		d.cancel()
		synctest.Wait()
		if _, stopping := stub.results(); !stopping {
			t.Fatal("no stopping heartbeat")
		}
		time.Sleep(5*time.Second - time.Millisecond)
		synctest.Wait()
		if d.returned() {
			t.Fatal("Run returned before the grace was over")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !d.returned() {
			t.Fatal("Run did not return when the grace was over")
		}
		res, _ := stub.results()
		if r := res[core.Lease{TaskID: "long", Attempt: 1}]; r.Outcome != core.OutcomeCancelled {
			t.Errorf("leftover work was not cancelled and reported: %+v", res)
		}
		if d.sleep.Running() != 0 {
			t.Error("a sleep outlived the shutdown")
		}
	})
}

func TestDaemonReRegistersAfterCPRestart(t *testing.T) {
	f := newFakeCP(t)
	d := startDaemon(t, f.srv.URL, nil)
	waitUntil(t, 10*time.Second, "registration", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	long := f.submit(core.TaskSpec{Kind: core.KindSleep, DurationMS: 60_000})
	waitUntil(t, 10*time.Second, "the long task to run", func() bool { return f.task(long).State == core.TaskRunning })
	f.restart()
	waitUntil(t, 10*time.Second, "re-registration with the new cp", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	// The new cp does not know the old cp's task: the agent reports it
	// running, the cp tells it to stop, and the agent is free for new work.
	id := f.submit(core.TaskSpec{Kind: core.KindSleep, DurationMS: 5})
	waitUntil(t, 10*time.Second, "a task on the new cp to succeed", func() bool { return f.task(id).State == core.TaskSucceeded })
	waitUntil(t, 10*time.Second, "the old task to be stopped", func() bool {
		st := d.Status()
		return st.Stats.Cancelled == 1 && len(st.Running) == 0 && st.PendingResults == 0
	})
}

func TestDaemonRestartReRegistersWithNewIncarnation(t *testing.T) {
	f := newFakeCP(t)
	first := startDaemon(t, f.srv.URL, nil)
	waitUntil(t, 10*time.Second, "registration", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	first.stop(t)
	second := startDaemon(t, f.srv.URL, nil)
	if first.Incarnation() == second.Incarnation() {
		t.Fatal("two starts share an incarnation")
	}
	waitUntil(t, 10*time.Second, "the restart to be seen", func() bool { return len(f.events(core.EventAgentRestarted)) == 1 })
	id := f.submit(core.TaskSpec{Kind: core.KindSleep, DurationMS: 5})
	waitUntil(t, 10*time.Second, "a task to succeed on the restarted agent", func() bool { return f.task(id).State == core.TaskSucceeded })
}

func TestOptionsValidation(t *testing.T) {
	base := Options{ID: "a", Domain: "z", Slots: 1, CPURL: "http://127.0.0.1:8080"}
	tests := []struct {
		name   string
		mutate func(*Options)
	}{
		{"bad id", func(o *Options) { o.ID = "a b" }},
		{"no domain", func(o *Options) { o.Domain = "" }},
		{"no slots", func(o *Options) { o.Slots = 0 }},
		{"cp not a URL", func(o *Options) { o.CPURL = "127.0.0.1:8080" }},
		{"cp without host", func(o *Options) { o.CPURL = "http://" }},
		{"poll wait too long", func(o *Options) { o.PollWait = time.Hour }},
		{"negative grace", func(o *Options) { o.ShutdownGrace = -time.Second }},
	}
	if _, err := New(base); err != nil {
		t.Fatalf("base options: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mutate(&o)
			if _, err := New(o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestDaemonQueuesHeartbeatBuiltWhileOneIsInFlight: a heartbeat due while
// the previous one still waits for the cp goes out as soon as that one is
// answered, without waiting for another interval.
func TestDaemonQueuesHeartbeatBuiltWhileOneIsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var mu sync.Mutex
		var seqs []uint64
		cp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var hb core.HeartbeatInput
			if err := fnet.Decode(r.Body, fnet.BodyMax, &hb); err != nil {
				fnet.WriteError(w, 400, "bad_request", err.Error())
				return
			}
			mu.Lock()
			seqs = append(seqs, hb.Seq)
			first := len(seqs) == 1
			mu.Unlock()
			if first {
				<-gate // the cp is slow to answer the first heartbeat
			}
			fnet.WriteJSON(w, 200, core.HeartbeatReply{})
		})
		sent := func() []uint64 {
			mu.Lock()
			defer mu.Unlock()
			return append([]uint64(nil), seqs...)
		}
		d := startBubbleDaemon(t, cp, func(o *Options) { o.HeartbeatInterval = time.Second })
		synctest.Wait()
		if n := len(sent()); n != 1 {
			t.Fatalf("%d heartbeats at the start, want 1", n)
		}
		time.Sleep(time.Second) // the second is due while the first hangs
		synctest.Wait()
		d.mu.Lock()
		built := d.hbNext != nil
		d.mu.Unlock()
		if !built || len(sent()) != 1 {
			t.Fatalf("second heartbeat built %v, sent %v", built, sent())
		}
		close(gate)
		synctest.Wait() // no time passes: the queued heartbeat goes out at once
		if got := sent(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Errorf("heartbeat seqs %v, want [1 2] without waiting for an interval", got)
		}
	})
}

// TestDaemonOverHTTP1: with CPHTTP1 the agent polls and heartbeats over
// HTTP/1.1 and works the same.
func TestDaemonOverHTTP1(t *testing.T) {
	f := newFakeCP(t)
	var protos sync.Map
	h := f.srv.Config.Handler
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		h.ServeHTTP(w, r)
	})
	startDaemon(t, f.srv.URL, func(o *Options) { o.CPHTTP1 = true })
	waitUntil(t, 10*time.Second, "registration", func() bool { return len(f.events(core.EventAgentRegistered)) == 1 })
	id := f.submit(core.TaskSpec{Kind: core.KindSleep, DurationMS: 5})
	waitUntil(t, 10*time.Second, "the task to succeed", func() bool { return f.task(id).State == core.TaskSucceeded })
	_, h1 := protos.Load("HTTP/1.1")
	_, h2 := protos.Load("HTTP/2.0")
	if !h1 || h2 {
		t.Fatalf("protocols seen: HTTP/1.1 %v, HTTP/2.0 %v", h1, h2)
	}
}

// TestDaemonPollBacksOff: while the cp refuses polls the agent backs off
// 100ms, doubling up to its heartbeat interval, and warns once.
func TestDaemonPollBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var at []time.Time
		stub := &stubCP{}
		cp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == fnet.PathPoll {
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
				fnet.WriteError(w, http.StatusServiceUnavailable, "not_durable", "try later")
				return
			}
			stub.ServeHTTP(w, r)
		})
		logs := &lockedLog{}
		start := time.Now()
		startBubbleDaemon(t, cp, func(o *Options) {
			o.HeartbeatInterval = time.Second
			o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		})
		time.Sleep(4 * time.Second)
		synctest.Wait()
		mu.Lock()
		got := make([]time.Duration, len(at))
		for i, a := range at {
			got[i] = a.Sub(start)
		}
		mu.Unlock()
		ms := time.Millisecond
		want := []time.Duration{0, 100 * ms, 300 * ms, 700 * ms, 1500 * ms, 2500 * ms, 3500 * ms}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("polls at %v, want %v", got, want)
		}
		if n := strings.Count(logs.String(), `"msg":"poll failed: cp unreachable"`); n != 1 {
			t.Fatalf("%d unreachable warnings, want 1", n)
		}
	})
}
