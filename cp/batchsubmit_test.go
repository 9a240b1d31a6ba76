package cp

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
)

// batchSubmit posts body to /v1/batch/tasks and wants a 200 with one
// result per task.
func (tc *testCP) batchSubmit(body string, tasks int) (BatchResponse, response) {
	tc.t.Helper()
	r := tc.mustStatus(http.StatusOK, "POST", "/v1/batch/tasks", body)
	var out BatchResponse
	r.decode(tc.t, &out)
	if len(out.Results) != tasks {
		tc.t.Fatalf("%d results for %d tasks: %s", len(out.Results), tasks, r.Body)
	}
	return out, r
}

// TestBatchSubmitResults: each task of a batch gets its own result, in
// order: created, replayed (a key repeated in the batch, or used before),
// or refused with the status, code and message a single submit gets; the
// refused ones change nothing, and the batch is one log entry.
func TestBatchSubmitResults(t *testing.T) {
	tc := startCP(t, false, nil)
	single := tc.do("POST", "/v1/tasks", `{"kind":"sleep","priority":"urgent"}`)
	var singleErr map[string]string
	single.decode(t, &singleErr)

	before := tc.debug().AppliedIndex
	out, _ := tc.batchSubmit(`{"tasks":[
		{"kind":"sleep","duration_ms":5,"idempotency_key":"k1"},
		{"kind":"sleep","priority":"urgent"},
		{"kind":"sleep","duration_ms":5,"idempotency_key":"k1"},
		{"kind":"sleep","color":"red"},
		"sleep",
		{"kind":"sleep","domain":"z2"},
		{"kind":"sleep","duration_ms":6,"idempotency_key":"k1"},
		{"kind":"sleep","idempotency_key":"a b"},
		{"kind":"shell"}
	]}`, 9)
	if got := tc.debug().AppliedIndex; got != before+1 {
		t.Fatalf("applied index %d after the batch, was %d: want one entry", got, before)
	}
	want := []struct {
		status int
		code   string
	}{{201, ""}, {400, "invalid"}, {200, ""}, {400, "bad_request"}, {400, "bad_request"}, {201, ""},
		{422, "idempotency_conflict"}, {400, "invalid"}, {400, "invalid"}}
	for i, w := range want {
		r := out.Results[i]
		if r.Status != w.status || r.Error != w.code {
			t.Fatalf("result %d: %+v, want %d %q", i, r, w.status, w.code)
		}
		if (r.Task != nil) != (w.code == "") || (r.Message == "") != (w.code == "") {
			t.Fatalf("result %d: %+v: a task xor an error message", i, r)
		}
	}
	if out.Results[1].Message != singleErr["message"] {
		t.Errorf("batch refusal %q, single submit's %q", out.Results[1].Message, singleErr["message"])
	}
	if !strings.Contains(out.Results[3].Message, `unknown field "color"`) || !strings.Contains(out.Results[7].Message, "idempotency_key") {
		t.Errorf("messages: %q, %q", out.Results[3].Message, out.Results[7].Message)
	}
	first, replay, other := out.Results[0].Task, out.Results[2].Task, out.Results[5].Task
	if replay.ID != first.ID || other.ID <= first.ID || other.Spec.Domain != "z2" || first.IdempotencyKey != "k1" {
		t.Fatalf("tasks: %s, replay %s, then %s (%+v)", first.ID, replay.ID, other.ID, other.Spec)
	}
	if s := tc.snapshot(); s.QueueDepth != 2 {
		t.Fatalf("queue depth %d, want the 2 created", s.QueueDepth)
	}

	// Across batches and across the two routes, keys replay.
	out, _ = tc.batchSubmit(`{"tasks":[{"kind":"sleep","duration_ms":5,"idempotency_key":"k1"},{"kind":"sleep","idempotency_key":"k2"}]}`, 2)
	if out.Results[0].Status != 200 || out.Results[0].Task.ID != first.ID || out.Results[1].Status != 201 {
		t.Fatalf("second batch: %+v", out.Results)
	}
	r := tc.mustStatus(http.StatusOK, "POST", "/v1/tasks", `{"kind":"sleep"}`, HeaderIdempotencyKey, "k2")
	var v TaskView
	r.decode(t, &v)
	if v.ID != out.Results[1].Task.ID || r.Header.Get(HeaderReplayed) != "true" {
		t.Fatalf("single submit of k2: %s, want the batch's %s replayed", v.ID, out.Results[1].Task.ID)
	}
	out, _ = tc.batchSubmit(`{"tasks":[{"kind":"sleep","idempotency_key":"k2"}]}`, 1)
	if out.Results[0].Status != 200 || out.Results[0].Task.ID != v.ID {
		t.Fatalf("batch of k2: %+v", out.Results[0])
	}

	// Tasks the core refuses still take the batch's one entry; a batch
	// whose every task is refused before the log writes nothing.
	idx := tc.debug().AppliedIndex
	tc.batchSubmit(`{"tasks":[{"kind":"shell"},{}]}`, 2)
	if got := tc.debug().AppliedIndex; got != idx+1 {
		t.Fatalf("applied index %d, was %d", got, idx)
	}
	idx++
	tc.batchSubmit(`{"tasks":[{"kind":"sleep","priority":"urgent"},7]}`, 2)
	if got := tc.debug().AppliedIndex; got != idx {
		t.Fatalf("a batch refused before the log moved the applied index from %d to %d", idx, got)
	}
}

// TestBatchSubmitRefusedWhole: a body that is not a batch, too many tasks,
// a body over the bound and READ_ONLY or DRAINING refuse the whole batch
// with one status and change nothing.
func TestBatchSubmitRefusedWhole(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.AdminToken, o.Core.QueueCapacity = durableAdmin, 2*BatchTasksMax })
	auth := []string{"Authorization", "Bearer " + durableAdmin}
	// An empty list answers 200 with no results and logs nothing.
	before := tc.debug().AppliedIndex
	if r := tc.do("POST", "/v1/batch/tasks", `{"tasks":[]}`); r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"results":[]}` {
		t.Fatalf("empty list: %d %s", r.Status, r.Body)
	}
	if after := tc.debug().AppliedIndex; after != before {
		t.Fatalf("an empty batch moved applied_index %d → %d", before, after)
	}
	tooMany := `{"tasks":[` + strings.TrimSuffix(strings.Repeat(`{"kind":"sleep"},`, BatchTasksMax+1), ",") + `]}`
	idx := tc.debug().AppliedIndex
	for _, c := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"not json", `{"tasks":[{"kind":"sleep"}`, 400, "bad_request", ""},
		{"not an object", `[{"kind":"sleep"}]`, 400, "bad_request", ""},
		{"empty body", ``, 400, "bad_request", ""},
		{"no tasks", `{}`, 400, "bad_request", "no tasks"},
		{"unknown field", `{"tasks":[{"kind":"sleep"}],"wait":true}`, 400, "bad_request", "unknown field"},
		{"too many", tooMany, 400, "bad_request", "1001 tasks, more than 1000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := tc.do("POST", "/v1/batch/tasks", c.body)
			if r.Status != c.status || r.errorCode(t) != c.code || !strings.Contains(string(r.Body), c.msg) {
				t.Fatalf("%d %s, want %d %s %q", r.Status, r.Body, c.status, c.code, c.msg)
			}
		})
	}
	// Exactly BatchTasksMax is fine.
	tc.batchSubmit(`{"tasks":[`+strings.TrimSuffix(strings.Repeat(`{"kind":"sleep"},`, BatchTasksMax), ",")+`]}`, BatchTasksMax)
	if got := tc.debug().AppliedIndex; got != idx+1 {
		t.Fatalf("applied index %d, want %d: the refusals wrote, or the batch of %d took several entries", got, idx+1, BatchTasksMax)
	}

	// 413 from the declared length, before the body is read.
	conn, err := net.Dial("tcp", strings.TrimPrefix(tc.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/batch/tasks HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", BatchBodyBytesMax+1)
	// Nothing more is sent: the server would wait for the body it drains
	// after answering.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared %d bytes: status %d, want 413", BatchBodyBytesMax+1, resp.StatusCode)
	}
	// The single submit keeps its own bound: a body the batch route takes.
	big := `{"kind":"exec","argv":["` + strings.Repeat("a", 2<<20) + `"]}`
	tc.mustStatus(http.StatusRequestEntityTooLarge, "POST", "/v1/tasks", big)
	out, _ := tc.batchSubmit(`{"tasks":[`+big+`,{"kind":"sleep"}]}`, 2)
	if out.Results[0].Status != 413 || out.Results[0].Error != "too_large" || out.Results[1].Status != 201 {
		t.Fatalf("a task over the single submit's bound: %+v", out.Results)
	}

	for _, mode := range []string{"READ_ONLY", "DRAINING"} {
		tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"`+mode+`","reason":"maintenance"}`, auth...)
		idx := tc.debug().AppliedIndex
		r := tc.mustStatus(http.StatusServiceUnavailable, "POST", "/v1/batch/tasks", `{"tasks":[{"kind":"sleep"},{"kind":"shell"}]}`)
		if r.errorCode(t) != "mode_refused" || r.Header.Get("Retry-After") != "30" || !strings.Contains(string(r.Body), mode) {
			t.Fatalf("%s: %v %s", mode, r.Header, r.Body)
		}
		if got := tc.debug().AppliedIndex; got != idx {
			t.Fatalf("%s: a refused batch moved the applied index from %d to %d", mode, idx, got)
		}
	}
}

// TestBatchSubmitModeChangedInFlight: a batch that read NORMAL but is
// applied after READ_ONLY is refused whole, and created nothing.
func TestBatchSubmitModeChangedInFlight(t *testing.T) {
	gate := &gateStore{}
	tc := startCP(t, false, func(o *Options) {
		durableOpts(t.TempDir(), newMock())(o)
		o.raft = func(ro *raftlog.Options) {
			ro.WrapLogStore = func(s raft.LogStore) raft.LogStore { gate.LogStore = s; return gate }
		}
	})
	depth := tc.snapshot().QueueDepth
	gate.hold()
	setMode := make(chan error, 1)
	go func() {
		setMode <- tc.s.applyInput(core.SetModeInput{Mode: core.ModeReadOnly, Actor: core.ActorOperator})
	}()
	waitFor(t, 10*time.Second, "the mode change in flight", func() bool { return tc.s.batch.waiting() == 0 && flying(tc.s) == 1 })
	resp := make(chan response, 1)
	go func() { resp <- tc.do("POST", "/v1/batch/tasks", `{"tasks":[{"kind":"sleep"},{"kind":"sleep"}]}`) }()
	waitFor(t, 10*time.Second, "the batch queued behind it", func() bool { return tc.s.batch.waiting() == 0 && flying(tc.s) == 2 })
	gate.open()
	if err := <-setMode; err != nil {
		t.Fatal(err)
	}
	r := <-resp
	if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "mode_refused" {
		t.Fatalf("%d %s, want 503 mode_refused", r.Status, r.Body)
	}
	if got := tc.snapshot().QueueDepth; got != depth {
		t.Fatalf("queue depth %d, was %d", got, depth)
	}
}

// TestBatchSubmitQueueFull: tasks over the queue's capacity are refused one
// by one with 429 queue_full; the answer carries Retry-After.
func TestBatchSubmitQueueFull(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.Core.QueueCapacity = 2 })
	out, r := tc.batchSubmit(`{"tasks":[{"kind":"sleep"},{"kind":"sleep","idempotency_key":"k"},{"kind":"sleep"},{"kind":"sleep","idempotency_key":"k"}]}`, 4)
	st := []int{out.Results[0].Status, out.Results[1].Status, out.Results[2].Status, out.Results[3].Status}
	if fmt.Sprint(st) != "[201 201 429 200]" || out.Results[2].Error != "queue_full" || r.Header.Get("Retry-After") != "5" {
		t.Fatalf("statuses %v (%+v), Retry-After %q", st, out.Results[2], r.Header.Get("Retry-After"))
	}
}

// TestBatchSubmitSurvivesARestart: a batch's tasks and keys are in the
// log: a restarted cp has them, at the same state hash.
func TestBatchSubmitSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	mock := newMock()
	tc := startCP(t, false, durableOpts(dir, mock))
	out, _ := tc.batchSubmit(`{"tasks":[{"kind":"sleep","idempotency_key":"a"},{"kind":"sleep","idempotency_key":"b"},{"kind":"sleep"}]}`, 3)
	before, tasks := tc.debug(), tc.tasks()
	tc.stop()
	tc = startCP(t, false, durableOpts(dir, mock))
	if after := tc.debug(); after.AppliedIndex != before.AppliedIndex || after.StateHash != before.StateHash {
		t.Fatalf("after the restart: %d %s, before %d %s", after.AppliedIndex, after.StateHash, before.AppliedIndex, before.StateHash)
	}
	if got, want := jsonOf(t, tc.tasks()), jsonOf(t, tasks); got != want {
		t.Fatalf("tasks after the restart:\n%s\nbefore:\n%s", got, want)
	}
	again, _ := tc.batchSubmit(`{"tasks":[{"kind":"sleep","idempotency_key":"b"}]}`, 1)
	if again.Results[0].Status != 200 || again.Results[0].Task.ID != out.Results[1].Task.ID {
		t.Fatalf("key b after the restart: %+v", again.Results[0])
	}
}

// TestBatcherKeepsAGroupTogether: a group is never split across entries
// nor shares an entry beyond the bounds; the first call is always taken.
func TestBatcherKeepsAGroupTogether(t *testing.T) {
	group := func(n int) *call { return &call{envs: make([]core.Envelope, n), size: n * 100} }
	b := &batcher{}
	b.pending = []*call{group(1), group(600), group(1), group(300), group(200), group(100), group(1)}
	var got []int
	for len(b.pending) > 0 {
		n := 0
		for _, c := range b.take() {
			n += len(c.envs)
		}
		got = append(got, n)
	}
	if fmt.Sprint(got) != "[1 600 501 101]" {
		t.Fatalf("entries of %v inputs, want [1 600 501 101]", got)
	}
}
