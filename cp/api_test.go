package cp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

func TestTasksRunEndToEnd(t *testing.T) {
	tc := startCP(t, true, func(o *Options) { o.AgentToken = "agent-secret" })
	a1 := startAgent(t, tc.url, "a1", "z1", 4, "agent-secret")
	a2 := startAgent(t, tc.url, "a2", "z2", 4, "agent-secret")
	waitFor(t, 5*time.Second, "two agents connected", func() bool { return tc.snapshot().Agents.Connected == 2 })

	const n = 60
	ids := make([]core.TaskID, 0, n)
	for i := range n {
		body := `{"kind":"sleep","duration_ms":1}`
		if i%3 == 0 {
			body = `{"kind":"sleep","duration_ms":1,"domain":"z2","priority":"high"}`
		}
		ids = append(ids, tc.submit(body).ID)
	}
	waitFor(t, 20*time.Second, "every task SUCCEEDED", func() bool {
		var l TaskList
		tc.mustStatus(200, "GET", "/v1/tasks?state=SUCCEEDED&limit=1000", nil).decode(t, &l)
		return l.Count == n
	})
	for _, id := range ids {
		v := tc.task(id)
		if v.State != core.TaskSucceeded || v.AgentID == "" || len(v.Attempts) == 0 {
			t.Fatalf("task %s: %+v", id, v)
		}
		last := v.Attempts[len(v.Attempts)-1]
		if last.Outcome != core.OutcomeSucceeded {
			t.Fatalf("task %s last attempt %+v", id, last)
		}
		if v.Spec.Domain == "z2" && v.AgentID != "a2" {
			t.Fatalf("task %s constrained to z2 ran on %s", id, v.AgentID)
		}
	}
	if a1.started()+a2.started() < n {
		t.Fatalf("agents started %d+%d executions, want >= %d", a1.started(), a2.started(), n)
	}
	// Domain filter and paging.
	var l TaskList
	tc.mustStatus(200, "GET", "/v1/tasks?domain=z2&limit=5", nil).decode(t, &l)
	if l.Count != 5 || l.NextAfter == "" {
		t.Fatalf("paged list: %+v", l)
	}
	// Timeline pages in order.
	var page TimelinePage
	tc.mustStatus(200, "GET", "/timeline?since=0&limit=10", nil).decode(t, &page)
	if len(page.Events) != 10 || page.Events[0].Seq != 1 || page.NextSince != 10 {
		t.Fatalf("timeline page: %+v", page)
	}
	tc.mustStatus(200, "GET", fmt.Sprintf("/timeline?since=%d", page.LastSeq), nil).decode(t, &page)
	if len(page.Events) != 0 {
		t.Fatalf("timeline after last seq: %+v", page.Events)
	}
	// Agents endpoints.
	var al AgentList
	tc.mustStatus(200, "GET", "/v1/agents", nil).decode(t, &al)
	if al.Count != 2 || al.Agents[0].ID != "a1" || !al.Agents[0].Connected {
		t.Fatalf("agents: %+v", al)
	}
	var av core.AgentView
	tc.mustStatus(200, "GET", "/v1/agents/a2", nil).decode(t, &av)
	if av.Domain != "z2" || av.Health.Score <= 0 {
		t.Fatalf("agent: %+v", av)
	}
	if code := tc.mustStatus(404, "GET", "/v1/agents/nope", nil).errorCode(t); code != "not_found" {
		t.Fatal(code)
	}
}

func TestKilledAgentsTasksFinishElsewhere(t *testing.T) {
	tc := startCP(t, true, func(o *Options) {
		o.Core.HeartbeatTimeout = 300 * time.Millisecond
		o.Core.LostAfter = 100 * time.Millisecond
	})
	victim := startAgent(t, tc.url, "victim", "z1", 8, "")
	waitFor(t, 5*time.Second, "victim connected", func() bool { return tc.snapshot().Agents.Connected == 1 })
	var ids []core.TaskID
	for range 8 {
		ids = append(ids, tc.submit(`{"kind":"sleep","duration_ms":600000}`).ID)
	}
	waitFor(t, 5*time.Second, "victim runs all 8", func() bool { return victim.started() == 8 })
	victim.kill()
	startAgent(t, tc.url, "survivor", "z2", 8, "")
	// The survivor's sleeps are long too: assert they were moved to it.
	waitFor(t, 10*time.Second, "every task moved to the survivor", func() bool {
		for _, id := range ids {
			v := tc.task(id)
			if v.AgentID != "survivor" || v.State != core.TaskRunning {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if v := tc.task(id); v.Attempt != 2 || v.Failures != 0 {
			t.Fatalf("task %s: attempt %d failures %d", id, v.Attempt, v.Failures)
		}
	}
	if !strings.Contains(tc.logs.String(), `"type":"agent.lost"`) {
		t.Fatal("agent.lost not logged")
	}
}

func TestIdempotency(t *testing.T) {
	tc := startCP(t, false, nil)
	first := tc.submit(`{"kind":"sleep","duration_ms":5}`, HeaderIdempotencyKey, "key-1")
	r := tc.mustStatus(http.StatusOK, "POST", "/v1/tasks", `{"duration_ms":5,"kind":"sleep"}`, HeaderIdempotencyKey, "key-1")
	if r.Header.Get(HeaderReplayed) != "true" {
		t.Fatalf("replay header %q", r.Header.Get(HeaderReplayed))
	}
	var again TaskView
	r.decode(t, &again)
	if again.ID != first.ID {
		t.Fatalf("replay gave %s, want %s", again.ID, first.ID)
	}
	r = tc.mustStatus(http.StatusUnprocessableEntity, "POST", "/v1/tasks", `{"kind":"sleep","duration_ms":6}`, HeaderIdempotencyKey, "key-1")
	if code := r.errorCode(t); code != "idempotency_conflict" {
		t.Fatal(code)
	}
	// The first answer had no replay header; a new key is a new task.
	other := tc.submit(`{"kind":"sleep","duration_ms":5}`, HeaderIdempotencyKey, "key-2")
	if other.ID == first.ID {
		t.Fatal("different keys gave the same task")
	}
	tc.mustStatus(http.StatusBadRequest, "POST", "/v1/tasks", `{"kind":"sleep"}`, HeaderIdempotencyKey, strings.Repeat("k", 300))
}

func TestModes(t *testing.T) {
	tc := startCP(t, true, nil)
	// Work waits for an agent; then DRAINING refuses new submissions,
	// dispatches what is queued and says drained.
	var ids []core.TaskID
	for range 5 {
		ids = append(ids, tc.submit(`{"kind":"sleep","duration_ms":1}`).ID)
	}
	v := tc.task(ids[0])
	if v.State != core.TaskQueued || !strings.HasPrefix(v.WaitingReason, core.DecisionNoCapacity) {
		t.Fatalf("queued task without a waiting reason: %+v", v)
	}
	var mv ModeView
	tc.mustStatus(200, "POST", "/admin/mode", `{ "mode": "DRAINING" }`).decode(t, &mv)
	if mv.Mode != core.ModeDraining || mv.SetBy != core.ActorOperator {
		t.Fatalf("mode: %+v", mv)
	}
	r := tc.mustStatus(http.StatusServiceUnavailable, "POST", "/v1/tasks", `{"kind":"sleep"}`)
	if r.errorCode(t) != "mode_refused" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("draining refusal: %v %s", r.Header, r.Body)
	}
	if s := tc.snapshot(); s.Drained || s.QueueDepth != 5 {
		t.Fatalf("drained before dispatch: %+v", s)
	}
	startAgent(t, tc.url, "a1", "z1", 2, "")
	waitFor(t, 10*time.Second, "drained", func() bool { return tc.snapshot().Drained })
	for _, id := range ids {
		if st := tc.task(id).State; st != core.TaskSucceeded {
			t.Fatalf("task %s %v after drain", id, st)
		}
	}

	// READ_ONLY: no submissions, no dispatch.
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"NORMAL"}`)
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"READ_ONLY","reason":"maintenance"}`)
	tc.mustStatus(http.StatusServiceUnavailable, "POST", "/v1/tasks", `{"kind":"sleep"}`)
	tc.mustStatus(200, "GET", "/admin/mode", nil).decode(t, &mv)
	if mv.Mode != core.ModeReadOnly || mv.Reason != "maintenance" {
		t.Fatalf("mode: %+v", mv)
	}
	if s := tc.snapshot(); s.Mode != core.ModeReadOnly || s.ModeReason != "maintenance" {
		t.Fatalf("snapshot mode: %+v", s)
	}

	// DEGRADED (operator): low priority 429 + Retry-After; normal accepted.
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"DEGRADED"}`)
	r = tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep","priority":"low"}`)
	if r.errorCode(t) != "degraded" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("degraded refusal: %v %s", r.Header, r.Body)
	}
	tc.submit(`{"kind":"sleep","priority":"normal"}`)

	// Bad modes.
	for _, body := range []string{`{"mode":"draining"}`, `{"mode":"OFF"}`, `{}`, `{"mode":1}`} {
		tc.mustStatus(http.StatusBadRequest, "POST", "/admin/mode", body)
	}
	// Mode changes are on the timeline with the operator as actor.
	var page TimelinePage
	tc.mustStatus(200, "GET", "/timeline?limit=10000", nil).decode(t, &page)
	n := 0
	for _, e := range page.Events {
		if e.Type == core.EventModeChanged && e.Actor == core.ActorOperator {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d operator mode changes on the timeline, want 4", n)
	}
}

func TestQueueFull(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.Core.QueueCapacity = 2 })
	tc.submit(`{"kind":"sleep"}`)
	tc.submit(`{"kind":"sleep"}`)
	r := tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep","priority":"high"}`)
	if r.errorCode(t) != "queue_full" || r.Header.Get("Retry-After") != "5" {
		t.Fatalf("queue full: %v %s", r.Header, r.Body)
	}
	if s := tc.snapshot(); s.QueueDepth != 2 || s.QueueCapacity != 2 {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestPurge(t *testing.T) {
	tc, mock := mockCP(t, nil)
	for _, d := range []string{"z1", "z1", "z2", ""} {
		body := `{"kind":"sleep"}`
		if d != "" {
			body = `{"kind":"sleep","domain":"` + d + `"}`
		}
		tc.submit(body)
	}
	mock.Add(2 * time.Minute)
	young := tc.submit(`{"kind":"sleep"}`)

	var res PurgeResult
	tc.mustStatus(200, "POST", "/scheduler/queue/purge", `{"domain":"z1"}`).decode(t, &res)
	if res.Purged != 2 || res.QueueDepth != 3 {
		t.Fatalf("purge domain: %+v", res)
	}
	tc.mustStatus(200, "POST", "/scheduler/queue/purge", `{"older_than_seconds":60}`).decode(t, &res)
	if res.Purged != 2 || res.QueueDepth != 1 {
		t.Fatalf("purge older: %+v", res)
	}
	if v := tc.task(young.ID); v.State != core.TaskQueued {
		t.Fatalf("young task %v", v.State)
	}
	tc.mustStatus(200, "POST", "/scheduler/queue/purge", `{"all":true,"reason":"poison"}`).decode(t, &res)
	if res.Purged != 1 || res.QueueDepth != 0 {
		t.Fatalf("purge all: %+v", res)
	}
	if v := tc.task(young.ID); v.State != core.TaskCancelled {
		t.Fatalf("purged task %v", v.State)
	}
	for _, body := range []string{`{}`, `{"all":true,"domain":"z1"}`, `{"all":false}`, `{"domain":"bad domain"}`,
		`{"older_than_seconds":-1}`, `{"older_than_seconds":"60"}`, `{"everything":true}`} {
		if code := tc.mustStatus(http.StatusBadRequest, "POST", "/scheduler/queue/purge", body).errorCode(t); code == "" {
			t.Fatal(body)
		}
	}
	var page TimelinePage
	tc.mustStatus(200, "GET", "/timeline?limit=10000", nil).decode(t, &page)
	purges := 0
	for _, e := range page.Events {
		if e.Type == core.EventQueuePurged {
			purges++
		}
	}
	if purges != 3 {
		t.Fatalf("%d queue.purged events, want 3", purges)
	}
}

func TestCancel(t *testing.T) {
	tc := startCP(t, false, nil)
	v := tc.submit(`{"kind":"sleep"}`)
	var got TaskView
	tc.mustStatus(200, "POST", "/v1/tasks/"+string(v.ID)+"/cancel", `{"reason":"not needed"}`).decode(t, &got)
	if got.State != core.TaskCancelled || got.Reason != "not needed" {
		t.Fatalf("cancelled: %+v", got)
	}
	tc.mustStatus(http.StatusConflict, "POST", "/v1/tasks/"+string(v.ID)+"/cancel", nil)
	tc.mustStatus(http.StatusNotFound, "POST", "/v1/tasks/t-999999/cancel", nil)
	tc.mustStatus(http.StatusNotFound, "GET", "/v1/tasks/t-999999", nil)
}

func TestAuth(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.AdminToken, o.AgentToken = "admin-secret", "agent-secret" })
	hb := core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1}
	admin := []struct{ method, path, body string }{
		{"GET", "/admin/mode", ""},
		{"POST", "/admin/mode", `{"mode":"DRAINING"}`},
		{"POST", "/scheduler/queue/purge", `{"all":true}`},
		{"POST", "/v1/agents/a1/quarantine", ""},
		{"POST", "/v1/agents/a1/release", ""},
	}
	for _, c := range admin {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "admin-secret"}, {"Authorization", "Bearer agent-secret"}} {
			var body any
			if c.body != "" {
				body = c.body
			}
			// A known token of the wrong role is forbidden, not unknown.
			status, code := http.StatusUnauthorized, "unauthorized"
			if len(hdr) > 0 && hdr[1] == "Bearer agent-secret" {
				status, code = http.StatusForbidden, "forbidden"
			}
			r := tc.mustStatus(status, c.method, c.path, body, hdr...)
			if r.errorCode(t) != code {
				t.Fatal(string(r.Body))
			}
		}
	}
	raw, _ := json.Marshal(hb)
	tc.mustStatus(http.StatusUnauthorized, "POST", fnet.PathHeartbeat, raw)
	tc.mustStatus(http.StatusForbidden, "POST", fnet.PathHeartbeat, raw, "Authorization", "Bearer admin-secret")
	tc.heartbeat(hb, "Authorization", "Bearer agent-secret")

	auth := []string{"Authorization", "Bearer admin-secret"}
	tc.mustStatus(200, "GET", "/admin/mode", nil, auth...)
	var av core.AgentView
	tc.mustStatus(200, "POST", "/v1/agents/a1/quarantine", `{"reason":"bad disk"}`, auth...).decode(t, &av)
	if !av.Quarantined || av.QuarantinedBy != core.ActorOperator {
		t.Fatalf("quarantine: %+v", av)
	}
	tc.mustStatus(http.StatusConflict, "POST", "/v1/agents/a1/quarantine", nil, auth...)
	tc.mustStatus(200, "POST", "/v1/agents/a1/release", nil, auth...).decode(t, &av)
	if av.Quarantined {
		t.Fatalf("release: %+v", av)
	}
	tc.mustStatus(http.StatusConflict, "POST", "/v1/agents/a1/release", nil, auth...)
	tc.mustStatus(http.StatusNotFound, "POST", "/v1/agents/nope/quarantine", nil, auth...)
	tc.mustStatus(200, "POST", "/scheduler/queue/purge", `{"all":true}`, auth...)
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"DRAINING"}`, auth...)
	// Public endpoints need no token.
	tc.mustStatus(200, "GET", "/scheduler/debug/snapshot", nil)
	tc.mustStatus(200, "GET", "/metrics", nil)
}

func TestBadInput(t *testing.T) {
	tc := startCP(t, false, nil)
	big := `{"kind":"exec","argv":["` + strings.Repeat("a", 2<<20) + `"]}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"unknown field", "POST", "/v1/tasks", `{"kind":"sleep","color":"red"}`, 400, "bad_request"},
		{"bad type", "POST", "/v1/tasks", `{"kind":"sleep","duration_ms":"5"}`, 400, "bad_request"},
		{"bad type argv", "POST", "/v1/tasks", `{"kind":"exec","argv":"/bin/echo"}`, 400, "bad_request"},
		{"not json", "POST", "/v1/tasks", `kind=sleep`, 400, "bad_request"},
		{"empty body", "POST", "/v1/tasks", ``, 400, "bad_request"},
		{"trailing data", "POST", "/v1/tasks", `{"kind":"sleep"}{}`, 400, "bad_request"},
		{"array", "POST", "/v1/tasks", `[]`, 400, "bad_request"},
		{"unknown kind", "POST", "/v1/tasks", `{"kind":"shell"}`, 400, "invalid"},
		{"missing kind", "POST", "/v1/tasks", `{"duration_ms":5}`, 400, "invalid"},
		{"bad priority", "POST", "/v1/tasks", `{"kind":"sleep","priority":"urgent"}`, 400, "invalid"},
		{"negative duration", "POST", "/v1/tasks", `{"kind":"sleep","duration_ms":-1}`, 400, "invalid"},
		{"negative timeout", "POST", "/v1/tasks", `{"kind":"sleep","timeout_seconds":-1}`, 400, "invalid"},
		{"too many attempts", "POST", "/v1/tasks", `{"kind":"sleep","max_attempts":1000}`, 400, "invalid"},
		{"exec without argv", "POST", "/v1/tasks", `{"kind":"exec"}`, 400, "invalid"},
		{"bad domain", "POST", "/v1/tasks", `{"kind":"sleep","domain":"zone 1"}`, 400, "invalid"},
		{"oversize", "POST", "/v1/tasks", big, 413, "too_large"},
		{"limit zero", "GET", "/v1/tasks?limit=0", "", 400, "bad_request"},
		{"limit huge", "GET", "/v1/tasks?limit=100000", "", 400, "bad_request"},
		{"limit text", "GET", "/v1/tasks?limit=ten", "", 400, "bad_request"},
		{"bad state", "GET", "/v1/tasks?state=DONE", "", 400, "invalid"},
		{"bad list domain", "GET", "/v1/tasks?domain=a%20b", "", 400, "invalid"},
		{"unknown param", "GET", "/v1/tasks?sort=id", "", 400, "bad_request"},
		{"repeated param", "GET", "/v1/tasks?limit=1&limit=2", "", 400, "bad_request"},
		{"timeline since", "GET", "/timeline?since=-1", "", 400, "bad_request"},
		{"timeline limit", "GET", "/timeline?limit=0", "", 400, "bad_request"},
		{"cancel body", "POST", "/v1/tasks/t-000001/cancel", `{"why":"x"}`, 400, "bad_request"},
		{"heartbeat invalid", "POST", fnet.PathHeartbeat, `{"agent_id":"a 1","domain":"z1","slots":1}`, 400, "invalid"},
		{"heartbeat slots", "POST", fnet.PathHeartbeat, `{"agent_id":"a1","domain":"z1","slots":0}`, 400, "invalid"},
		{"heartbeat unknown", "POST", fnet.PathHeartbeat, `{"agent_id":"a1","domain":"z1","slots":1,"x":1}`, 400, "bad_request"},
		{"not found", "GET", "/v2/tasks", "", 404, "not_found"},
		{"method", "DELETE", "/v1/tasks", "", 405, "method_not_allowed"},
		{"method snapshot", "POST", "/scheduler/debug/snapshot", "", 405, "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := tc.do(c.method, c.path, body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if code := r.errorCode(t); code != c.code {
				t.Fatalf("code %q, want %q (%s)", code, c.code, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	if s := tc.snapshot(); s.QueueDepth != 0 {
		t.Fatalf("refused submissions left %d tasks", s.QueueDepth)
	}
	// Every refusal above was counted as an API error.
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, want := range []string{
		`flux_api_errors_total{code="413",route="POST /v1/tasks"} 1`,
		`flux_api_errors_total{code="404",route="not_found"} 1`,
		`flux_api_errors_total{code="400",route="GET /v1/tasks"} 7`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestPanicRecovered(t *testing.T) {
	tc := startCP(t, false, nil)
	h := tc.s.wrap("GET /boom", authNone, func(http.ResponseWriter, *http.Request, httprouter.Params) { panic("boom") })
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/boom", nil), nil)
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	r := response{Status: rec.Code, Body: rec.Body.Bytes()}
	if r.errorCode(t) != "internal" {
		t.Fatal(rec.Body.String())
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, want := range []string{"flux_http_panics_total 1", `flux_api_errors_total{code="500",route="GET /boom"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(tc.logs.String(), "panic serving request") {
		t.Error("panic not logged")
	}
}

func TestHealthAndReady(t *testing.T) {
	tc := startCP(t, false, nil)
	tc.mustStatus(200, "GET", "/healthz", nil)
	tc.mustStatus(503, "GET", "/readyz", nil) // loops not running
	tc2 := startCP(t, true, nil)
	tc2.mustStatus(200, "GET", "/readyz", nil)
	tc2.s.BeginShutdown()
	if code := tc2.mustStatus(503, "GET", "/readyz", nil).errorCode(t); code != "shutting_down" {
		t.Fatal(code)
	}
}

// TestSlowAgentDelaysOnlyItsOwnMessages: an agent that does not poll holds
// up its own mailbox, never another agent's.
func TestSlowAgentDelaysOnlyItsOwnMessages(t *testing.T) {
	tc := startCP(t, true, nil)
	hold := make(chan struct{})
	slow := startAgentHeld(t, tc.url, "slow", "z1", 4, hold)
	startAgent(t, tc.url, "fast", "z2", 1, "")
	waitFor(t, 5*time.Second, "agents connected", func() bool { return tc.snapshot().Agents.Connected == 2 })
	var stuck []core.TaskID
	for range 4 {
		stuck = append(stuck, tc.submit(`{"kind":"sleep","domain":"z1"}`).ID)
	}
	var quick []core.TaskID
	for range 5 {
		quick = append(quick, tc.submit(`{"kind":"sleep","domain":"z2"}`).ID)
	}
	waitFor(t, 10*time.Second, "the fast agent's tasks succeeded", func() bool {
		for _, id := range quick {
			if tc.task(id).State != core.TaskSucceeded {
				return false
			}
		}
		return true
	})
	if slow.started() != 0 {
		t.Fatal("held agent started work")
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	if !regexp.MustCompile(`(?m)^flux_agent_messages_queued [1-4]$`).MatchString(body) {
		t.Errorf("queued gauge:\n%s", grepLines(body, "flux_agent_messages_queued"))
	}
	close(hold)
	waitFor(t, 10*time.Second, "the slow agent's tasks succeeded", func() bool {
		for _, id := range stuck {
			if tc.task(id).State != core.TaskSucceeded {
				return false
			}
		}
		return true
	})
}
