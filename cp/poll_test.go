package cp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
	fnet "github.com/fluxforge/fluxforge/net"
)

// pollResult is a poll's answer as the test saw it.
type pollResult struct {
	status int
	reply  fnet.PollReply
	body   []byte
	err    error
}

// pollAsync sends p from a goroutine (t.Fatal is not allowed there).
func (tc *testCP) pollAsync(ctx context.Context, p fnet.PollRequest, headers ...string) <-chan pollResult {
	ch := make(chan pollResult, 1)
	body, _ := json.Marshal(p)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "POST", tc.url+fnet.PathPoll, bytes.NewReader(body))
		if err != nil {
			ch <- pollResult{err: err}
			return
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := tc.client.Do(req)
		if err != nil {
			ch <- pollResult{err: err}
			return
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		r := pollResult{status: resp.StatusCode, body: raw, err: err}
		if err == nil && resp.StatusCode == http.StatusOK {
			r.err = json.Unmarshal(raw, &r.reply)
		}
		ch <- r
	}()
	return ch
}

// poll sends p and waits for its answer.
func (tc *testCP) poll(p fnet.PollRequest) fnet.PollReply {
	tc.t.Helper()
	r := <-tc.pollAsync(context.Background(), p)
	if r.err != nil || r.status != http.StatusOK {
		tc.t.Fatalf("poll %+v: status %d, %v: %s", p, r.status, r.err, r.body)
	}
	return r.reply
}

// held reports whether a poll of agent id is held.
func (s *Server) held(id core.AgentID) bool {
	s.mail.mu.Lock()
	defer s.mail.mu.Unlock()
	return s.mail.waiters[id] != nil
}

func pollHeartbeat(tc *testCP, id core.AgentID, seq uint64) {
	tc.t.Helper()
	tc.heartbeat(core.HeartbeatInput{AgentID: id, Domain: "z1", Slots: 4, Incarnation: 7, Seq: seq})
}

func TestPollHeldUntilAMessageArrives(t *testing.T) {
	tc := startCP(t, false, nil)
	pollHeartbeat(tc, "a1", 1)
	ch := tc.pollAsync(context.Background(), fnet.PollRequest{AgentID: "a1", Incarnation: 7, WaitMillis: 30_000})
	waitFor(t, 5*time.Second, "poll held", func() bool { return tc.s.held("a1") })
	task := tc.submit(`{"kind":"sleep"}`)
	r := <-ch
	if r.err != nil || r.status != 200 {
		t.Fatalf("poll: %d %v %s", r.status, r.err, r.body)
	}
	if len(r.reply.Messages) != 1 || r.reply.Messages[0].Assign == nil || r.reply.Messages[0].Assign.TaskID != task.ID ||
		r.reply.Messages[0].Seq != 1 || r.reply.Epoch == 0 {
		t.Fatalf("reply %+v", r.reply)
	}
	if tc.s.held("a1") {
		t.Fatal("waiter not released")
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, want := range []string{`flux_agent_messages_total{kind="assign",result="ok"} 1`, "flux_agent_messages_queued 1\n",
		`flux_agent_message_duration_seconds_count{kind="assign"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("want %s in\n%s", want, grepLines(body, "flux_agent_message"))
		}
	}
}

func TestPollWaitEndsEmpty(t *testing.T) {
	tc := startCP(t, false, nil)
	// An agent the cp does not know yet may poll: empty after the wait.
	r := tc.poll(fnet.PollRequest{AgentID: "stranger", Incarnation: 1, WaitMillis: 20})
	if len(r.Messages) != 0 || r.Messages == nil || r.Epoch == 0 {
		t.Fatalf("reply %+v", r)
	}
	if tc.s.held("stranger") {
		t.Fatal("waiter left behind")
	}
	// wait_ms 0 answers at once.
	if r := tc.poll(fnet.PollRequest{AgentID: "stranger", Incarnation: 1}); len(r.Messages) != 0 {
		t.Fatalf("reply %+v", r)
	}
}

func TestPollAcksAndResend(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.Core.AssignTimeout = time.Hour })
	pollHeartbeat(tc, "a1", 1)
	t1 := tc.submit(`{"kind":"sleep"}`)
	t2 := tc.submit(`{"kind":"sleep"}`)
	first := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	if len(first.Messages) != 2 || first.Messages[0].Assign.TaskID != t1.ID || first.Messages[1].Assign.TaskID != t2.ID {
		t.Fatalf("first %+v", first)
	}
	// The reply was lost: the same poll again gets the same batch.
	again := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	if jsonOf(t, again) != jsonOf(t, first) {
		t.Fatalf("resent %s, first %s", jsonOf(t, again), jsonOf(t, first))
	}
	// The agent processed the first message only and acks it.
	ack := core.AssignAck{TaskID: t1.ID, Attempt: 1, Accepted: true}
	r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7, Epoch: first.Epoch, After: 1, Acks: []core.AssignAck{ack}})
	if len(r.Messages) != 1 || r.Messages[0].Seq != 2 {
		t.Fatalf("after 1: %+v", r)
	}
	// The poll queued the ack without waiting for its entry.
	waitFor(t, 10*time.Second, "the ack applied", func() bool { return tc.task(t1.ID).State == core.TaskRunning })
	if v := tc.task(t2.ID); v.State != core.TaskAssigned {
		t.Fatalf("unacked task %v", v.State)
	}
	// A refusal through the ack moves the task on; a stale ack is dropped.
	refuse := core.AssignAck{TaskID: t2.ID, Attempt: 1, Reason: "no"}
	stale := core.AssignAck{TaskID: t1.ID, Attempt: 9, Accepted: true}
	missing := core.AssignAck{TaskID: "nope", Attempt: 1, Accepted: true}
	r = tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7, Epoch: first.Epoch, After: 2, Acks: []core.AssignAck{refuse, stale, missing}})
	if len(r.Messages) != 0 || r.Epoch != first.Epoch {
		t.Fatalf("after 2: %+v", r)
	}
	waitFor(t, 10*time.Second, "the acks applied", func() bool { return strings.Contains(tc.logs.String(), "assignment ack ignored") })
	if v := tc.task(t2.ID); v.Attempts[0].AgentID != "a1" || v.Attempts[0].Error == "" {
		t.Fatalf("refused task %+v", v)
	}
	if v := tc.task(t1.ID); v.State != core.TaskRunning || v.Attempt != 1 {
		t.Fatalf("stale ack changed task %+v", v)
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, want := range []string{`flux_agent_messages_total{kind="assign",result="ok"} 2`,
		`flux_agent_messages_total{kind="assign",result="resent"} 3`} {
		if !strings.Contains(body, want) {
			t.Errorf("want %s in\n%s", want, grepLines(body, "flux_agent_messages"))
		}
	}
	if !strings.Contains(tc.logs.String(), "assignment ack ignored") {
		t.Error("ack of an unknown task not logged")
	}
}

// TestPollDoesNotWaitForItsAcks: while the log's append is held, a poll
// carrying acks still answers at once with the agent's next message; the
// acks are applied when the log moves again. (Before, the poll waited for
// its acks' fsync, so every assignment queued behind one.)
func TestPollDoesNotWaitForItsAcks(t *testing.T) {
	gate := &gateStore{}
	tc := startCP(t, false, func(o *Options) {
		durableOpts(t.TempDir(), newMock())(o)
		o.Core.AssignTimeout = time.Hour
		o.raft = func(ro *raftlog.Options) {
			ro.WrapLogStore = func(s raft.LogStore) raft.LogStore { gate.LogStore = s; return gate }
		}
	})
	pollHeartbeat(tc, "a1", 1)
	t1 := tc.submit(`{"kind":"sleep"}`)
	t2 := tc.submit(`{"kind":"sleep"}`)
	first := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	if len(first.Messages) != 2 {
		t.Fatalf("first %+v", first)
	}
	gate.hold()
	ack := core.AssignAck{TaskID: t1.ID, Attempt: 1, Accepted: true}
	r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7, Epoch: first.Epoch, After: 1, Acks: []core.AssignAck{ack}})
	if len(r.Messages) != 1 || r.Messages[0].Assign.TaskID != t2.ID {
		t.Fatalf("poll behind a held log: %+v", r)
	}
	if v := tc.task(t1.ID); v.State != core.TaskAssigned {
		t.Fatalf("acked task %v while the log is held", v.State)
	}
	gate.open()
	waitFor(t, 10*time.Second, "the ack applied", func() bool { return tc.task(t1.ID).State == core.TaskRunning })
}

func TestPollBadRequestsChangeNothing(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.AgentToken = "agent-secret" })
	auth := []string{"Authorization", "Bearer agent-secret"}
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 4, Incarnation: 7, Seq: 1}, auth...)
	task := tc.submit(`{"kind":"sleep"}`)
	first := tc.poll2(auth, fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	ack := fmt.Sprintf(`{"task_id":%q,"attempt":1,"accepted":true}`, task.ID)
	ep := first.Epoch
	for _, tc2 := range []struct {
		name, body string
		headers    []string
		status     int
		code       string
	}{
		{"no token", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[%s]}`, ep, ack), nil, 401, "unauthorized"},
		{"wrong token", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[%s]}`, ep, ack), []string{"Authorization", "Bearer nope"}, 401, "unauthorized"},
		{"not JSON", `{"agent_id":`, auth, 400, "bad_request"},
		{"empty body", ``, auth, 400, "bad_request"},
		{"unknown field", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[%s],"evil":1}`, ep, ack), auth, 400, "bad_request"},
		{"no agent id", fmt.Sprintf(`{"epoch":%d,"after":1,"acks":[%s]}`, ep, ack), auth, 400, "bad_request"},
		{"wait too long", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[%s],"wait_ms":600000}`, ep, ack), auth, 400, "bad_request"},
		{"negative wait", `{"agent_id":"a1","wait_ms":-1}`, auth, 400, "bad_request"},
		{"after without epoch", fmt.Sprintf(`{"agent_id":"a1","after":1,"acks":[%s]}`, ack), auth, 400, "bad_request"},
		{"ack of another agent", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[{"agent_id":"a2","task_id":%q,"attempt":1,"accepted":true}]}`, ep, task.ID), auth, 400, "bad_request"},
		{"ack without attempt", fmt.Sprintf(`{"agent_id":"a1","epoch":%d,"after":1,"acks":[{"task_id":%q,"accepted":true}]}`, ep, task.ID), auth, 400, "bad_request"},
		{"too large", `{"agent_id":"` + strings.Repeat("a", fnet.BodyMax) + `"}`, auth, 413, "too_large"},
	} {
		r := tc.do("POST", fnet.PathPoll, tc2.body, tc2.headers...)
		if r.Status != tc2.status || r.errorCode(t) != tc2.code {
			t.Errorf("%s: %d %s, want %d %s", tc2.name, r.Status, r.Body, tc2.status, tc2.code)
		}
	}
	// Nothing changed: the assignment is unacknowledged and still held.
	if v := tc.task(task.ID); v.State != core.TaskAssigned {
		t.Fatalf("task %v", v.State)
	}
	if n := tc.s.mail.queued(); n != 1 {
		t.Fatalf("queued %d", n)
	}
	if again := tc.poll2(auth, fnet.PollRequest{AgentID: "a1", Incarnation: 7, Epoch: ep}); jsonOf(t, again) != jsonOf(t, first) {
		t.Fatalf("mailbox changed: %s", jsonOf(t, again))
	}
}

func (tc *testCP) poll2(headers []string, p fnet.PollRequest) fnet.PollReply {
	tc.t.Helper()
	var r fnet.PollReply
	tc.mustStatus(200, "POST", fnet.PathPoll, p, headers...).decode(tc.t, &r)
	return r
}

// TestPollNewEpochAfterRestart: a restarted cp answers with a new epoch,
// and a poll naming the old one gets everything the new mailbox holds.
func TestPollNewEpochAfterRestart(t *testing.T) {
	dir := t.TempDir()
	opts := func(o *Options) { o.DataDir = dir; o.Core.AssignTimeout = time.Hour }
	tc := startCP(t, false, opts)
	pollHeartbeat(tc, "a1", 1)
	tc.submit(`{"kind":"sleep"}`)
	tc.submit(`{"kind":"sleep"}`)
	old := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	if len(old.Messages) != 2 {
		t.Fatalf("old %+v", old)
	}
	tc.stop()
	tc = startCP(t, false, opts)
	pollHeartbeat(tc, "a1", 2)
	t3 := tc.submit(`{"kind":"sleep"}`)
	r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7, Epoch: old.Epoch, After: 2})
	if r.Epoch == old.Epoch || r.Epoch == 0 {
		t.Fatalf("epoch %d after restart, was %d", r.Epoch, old.Epoch)
	}
	if len(r.Messages) != 1 || r.Messages[0].Seq != 1 || r.Messages[0].Assign.TaskID != t3.ID {
		t.Fatalf("reply %+v", r)
	}
	var in fnet.Inbox
	in.Accept(old)
	if got := in.Accept(r); len(got) != 1 {
		t.Fatalf("the agent's inbox skipped the new epoch's message: %+v", got)
	}
}

// TestPollAnsweredAtShutdown: BeginShutdown answers held polls at once
// (empty), so they do not hold up the HTTP server's shutdown.
func TestPollAnsweredAtShutdown(t *testing.T) {
	tc := startCP(t, true, nil)
	ch := tc.pollAsync(context.Background(), fnet.PollRequest{AgentID: "a1", Incarnation: 7, WaitMillis: 60_000})
	waitFor(t, 5*time.Second, "poll held", func() bool { return tc.s.held("a1") })
	tc.s.BeginShutdown()
	r := <-ch
	if r.err != nil || r.status != 200 || len(r.reply.Messages) != 0 {
		t.Fatalf("%+v", r)
	}
}

// TestPollClientGoneReleasesWaiter: a poll whose client went away leaves
// nothing behind.
func TestPollClientGoneReleasesWaiter(t *testing.T) {
	tc := startCP(t, false, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := tc.pollAsync(ctx, fnet.PollRequest{AgentID: "a1", Incarnation: 7, WaitMillis: 60_000})
	waitFor(t, 5*time.Second, "poll held", func() bool { return tc.s.held("a1") })
	cancel()
	if r := <-ch; r.err == nil {
		t.Fatalf("cancelled poll answered %+v", r)
	}
	waitFor(t, 5*time.Second, "waiter released", func() bool { return !tc.s.held("a1") })
}

// TestMailboxForgottenWithTheAgent: a lost agent's mailbox is emptied, a
// forgotten agent's dropped, so mailboxes never outlive their agents.
func TestMailboxForgottenWithTheAgent(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.Core.ForgetAgentAfter = time.Minute
		o.Core.AssignTimeout = time.Hour // the task stays on a1 until it is lost
	})
	pollHeartbeat(tc, "a1", 1)
	tc.submit(`{"kind":"sleep","domain":"z1"}`)
	if n := tc.s.mail.queued(); n != 1 {
		t.Fatalf("queued %d", n)
	}
	// Healthy agents elsewhere, so losing a1 is no mass disconnect.
	var seq uint64
	beat := func() {
		seq++
		for i := range 4 {
			tc.heartbeat(core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("b%d", i)), Domain: fmt.Sprintf("z%d", i+2), Slots: 1, Incarnation: 1, Seq: seq})
		}
	}
	lostAt := mock.Now().Add(tc.s.opts.Core.HeartbeatTimeout + tc.s.opts.Core.LostAfter + time.Second)
	for mock.Now().Before(lostAt) {
		beat()
		mock.Add(time.Second)
		tc.s.Reconcile()
	}
	if a, _ := tc.agent("a1"); a.Connected || a.Running != 0 {
		t.Fatalf("agent not lost: %+v", a)
	}
	if n := tc.s.mail.queued(); n != 0 {
		t.Fatalf("lost agent's mailbox holds %d", n)
	}
	for range 150 {
		beat()
		mock.Add(time.Second)
		tc.s.Reconcile()
	}
	if _, ok := tc.agent("a1"); ok {
		t.Fatal("agent not forgotten")
	}
	tc.s.mail.mu.Lock()
	_, left := tc.s.mail.boxes["a1"]
	n := len(tc.s.mail.boxes)
	tc.s.mail.mu.Unlock()
	if left || n != 4 {
		t.Fatalf("a1's mailbox left %v, %d mailboxes (want the 4 live agents')", left, n)
	}
}

// TestMailboxVoidsTakenBackAssignment: an assignment the core requeued
// before the agent polled it leaves the mailbox, so a late poll cannot start
// an attempt the cp no longer stands behind.
func TestMailboxVoidsTakenBackAssignment(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.Core.AssignTimeout = 5 * time.Second
	})
	pollHeartbeat(tc, "a1", 1)
	task := tc.submit(`{"kind":"sleep"}`)
	if n := tc.s.mail.queued(); n != 1 {
		t.Fatalf("queued %d", n)
	}
	for i := range 6 {
		mock.Add(time.Second)
		pollHeartbeat(tc, "a1", uint64(i+2)) // connected, but it never polls
		tc.s.Reconcile()
	}
	v := tc.task(task.ID)
	if len(v.Attempts) < 2 {
		t.Fatalf("not requeued and reassigned: %+v", v)
	}
	r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7})
	for _, m := range r.Messages {
		if m.Assign != nil && m.Assign.Attempt != v.Attempt {
			t.Fatalf("stale attempt %d handed out (current %d): %+v", m.Assign.Attempt, v.Attempt, r)
		}
	}
	if len(r.Messages) != 1 || r.Messages[0].Seq != 2 {
		t.Fatalf("reply %+v", r)
	}
}

// TestPollOfAnotherIncarnationGetsNothing: a restarted agent that polls
// before its first heartbeat, or a stale process, never takes the messages
// meant for the incarnation the cp knows; the restart voids them.
func TestPollOfAnotherIncarnationGetsNothing(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.Core.AssignTimeout = time.Hour })
	pollHeartbeat(tc, "a1", 1) // incarnation 7
	tc.submit(`{"kind":"sleep"}`)
	if r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 8}); len(r.Messages) != 0 {
		t.Fatalf("incarnation 8 took %+v", r)
	}
	if r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: 7}); len(r.Messages) != 1 {
		t.Fatalf("incarnation 7 got %+v", r)
	}
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 4, Incarnation: 8, Seq: 1}) // restarted
	for _, inc := range []uint64{7, 8} {
		r := tc.poll(fnet.PollRequest{AgentID: "a1", Incarnation: inc})
		for _, m := range r.Messages {
			if m.Assign != nil && m.Assign.Attempt == 1 {
				t.Fatalf("incarnation %d took the old incarnation's assignment: %+v", inc, r)
			}
		}
	}
}

// TestMailEventsVoidOnlyTakenBackAssignments: an assignment leaves its
// agent's mailbox when the core takes its attempt back (a transition to
// any state but ASSIGNED or RUNNING), not on the transitions that give it
// or confirm it, nor on another attempt's.
func TestMailEventsVoidOnlyTakenBackAssignments(t *testing.T) {
	s := &Server{mail: newMailboxes(1, 16, 16)}
	s.enqueue(core.Outbound{To: "a1", Assign: &core.Assign{TaskID: "t1", Attempt: 2}})
	ev := func(attempt int, to core.TaskState) core.Event {
		return core.Event{Kind: core.EventTask, Type: core.EventTaskQueued, TaskID: "t1", AgentID: "a1", Attempt: attempt, To: to.String()}
	}
	for _, e := range []core.Event{ev(2, core.TaskAssigned), ev(2, core.TaskRunning), ev(1, core.TaskQueued)} {
		if s.mailEvents(e); s.mail.queued() != 1 {
			t.Fatalf("after %s of attempt %d: %d held, want the assignment kept", e.To, e.Attempt, s.mail.queued())
		}
	}
	if s.mailEvents(ev(2, core.TaskQueued)); s.mail.queued() != 0 {
		t.Fatalf("after the attempt was requeued: %d held, want 0", s.mail.queued())
	}
}
