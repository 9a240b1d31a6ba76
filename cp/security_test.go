package cp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// TestUnauthorizedChangesNothing: without the admin token no admin action
// happens, and without the agent token no agent registers or reports; each
// refusal is a 401 (no or unknown token) or 403 (a known token of another
// role) with a JSON error and leaves the state as it was. (Which
// routes need which token, with wrong and misplaced tokens, is TestAuth.)
func TestUnauthorizedChangesNothing(t *testing.T) {
	s := fuzzServer(t) // admin and agent tokens set; an agent, a running and two queued tasks
	before := s.fuzzState()
	tests := []struct {
		name, method, path, auth, body string
	}{
		{"mode without token", "POST", "/admin/mode", "", `{"mode":"DRAINING"}`},
		{"mode with the agent token (403)", "POST", "/admin/mode", "Bearer " + fuzzAgentToken, `{"mode":"READ_ONLY"}`},
		{"read mode without token", "GET", "/admin/mode", "", ""},
		{"purge without token", "POST", "/scheduler/queue/purge", "", `{"all":true}`},
		{"purge with a token prefix", "POST", "/scheduler/queue/purge", "Bearer fuzz", `{"all":true}`},
		{"quarantine without token", "POST", "/v1/agents/a1/quarantine", "", `{"reason":"x"}`},
		{"release with the token but no Bearer", "POST", "/v1/agents/a1/release", fuzzAdminToken, ""},
		{"heartbeat without token", "POST", fnet.PathHeartbeat, "", `{"agent_id":"evil","domain":"z9","slots":64,"incarnation":1,"seq":1}`},
		{"heartbeat with the admin token (403)", "POST", fnet.PathHeartbeat, "Bearer " + fuzzAdminToken,
			`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":7,"seq":2,"running":[],"results":[{"task_id":"t-000001","attempt":1,"outcome":"SUCCEEDED"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if strings.HasSuffix(tc.name, "(403)") {
				if rec.Code != http.StatusForbidden {
					t.Fatalf("status %d, want 403: %s", rec.Code, rec.Body)
				}
			} else if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("status %d (WWW-Authenticate %q): %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
			}
			checkFuzzResponse(t, rec)
			if after := s.fuzzState(); after != before {
				t.Fatalf("a refused request changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestBodyLimits: every route that reads a body refuses one over its bound
// with 413 and a JSON error, and changes nothing.
func TestBodyLimits(t *testing.T) {
	s := fuzzServer(t)
	s.opts.APIBodyBytesMax = 1024 // the smallest allowed bound, to keep the bodies small
	before := s.fuzzState()
	pad := func(prefix string, n int) string { return prefix + `"` + strings.Repeat("x", n) + `"}` }
	admin := "Bearer " + fuzzAdminToken
	tests := []struct {
		name, path, auth, body string
	}{
		{"submit", "/v1/tasks", "", pad(`{"kind":"sleep","domain":`, 1100)},
		{"cancel reason", "/v1/tasks/t-000002/cancel", "", pad(`{"reason":`, 1100)},
		{"mode", "/admin/mode", admin, pad(`{"mode":"NORMAL","reason":`, 1100)},
		{"purge", "/scheduler/queue/purge", admin, pad(`{"all":true,"reason":`, 1100)},
		{"quarantine", "/v1/agents/a1/quarantine", admin, pad(`{"reason":`, 1100)},
		{"release", "/v1/agents/a1/release", admin, pad(`{"reason":`, 1100)},
		{"heartbeat", fnet.PathHeartbeat, "Bearer " + fuzzAgentToken, pad(`{"agent_id":"a1","domain":"z1","slots":1,"address":`, fnet.BodyMax)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", tc.path, bytes.NewReader([]byte(tc.body)))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d: %.200s", rec.Code, rec.Body)
			}
			checkFuzzResponse(t, rec)
			if after := s.fuzzState(); after != before {
				t.Fatalf("a refused request changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestQueryBounds: listing limits are bounded and a malformed or repeated
// parameter is refused, whatever its size (the request line itself is
// bounded by the http.Server's MaxHeaderBytes in cmd/cp).
func TestQueryBounds(t *testing.T) {
	s := fuzzServer(t)
	long := strings.Repeat("9", 40<<10)
	tests := []struct {
		name, path, query string
		status            int
	}{
		{"tasks limit max", "/v1/tasks", "limit=1000", 200},
		{"tasks limit over max", "/v1/tasks", "limit=1001", 400},
		{"tasks limit overflow", "/v1/tasks", "limit=" + long, 400},
		{"tasks state long", "/v1/tasks", "state=" + long, 400},
		{"tasks domain long", "/v1/tasks", "domain=" + long, 400},
		{"tasks after long", "/v1/tasks", "after=" + long, 200},
		{"tasks many params", "/v1/tasks", strings.Repeat("x=1&", 1000), 400},
		{"timeline limit max", "/timeline", "limit=10000", 200},
		{"timeline limit over max", "/timeline", "limit=10001", 400},
		{"timeline since overflow", "/timeline", "since=" + long, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tc.path, nil)
			req.URL.RawQuery = tc.query
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %.200s", rec.Code, tc.status, rec.Body)
			}
			checkFuzzResponse(t, rec)
			if rec.Code == 200 && tc.path == "/v1/tasks" {
				var l TaskList
				if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || l.Count > 1000 {
					t.Fatalf("list %v: %d tasks", err, l.Count)
				}
			}
		})
	}
}

// TestAssignmentsCarryTheAgentToken: the cp presents its agent token on
// every assignment, so agents can refuse anyone else (an agent's 401 moving
// the task on at once is TestAgentRefusalMovesTaskAtOnce).
func TestAssignmentsCarryTheAgentToken(t *testing.T) {
	tc := startCP(t, true, func(o *Options) { o.AgentToken = "agent-secret" })
	good := startAgent(t, tc.url, "good", "z1", 1, "agent-secret")
	waitFor(t, 5*time.Second, "registration", func() bool { _, ok := tc.agent("good"); return ok })
	v := tc.submit(`{"kind":"sleep","duration_ms":1}`)
	waitFor(t, 10*time.Second, "the task to succeed", func() bool { return tc.task(v.ID).State == core.TaskSucceeded })
	if good.started() != 1 {
		t.Fatalf("the agent requiring the cp's token started %d tasks", good.started())
	}
}

// unreadBody fails the test if the handler reads it: a body declared too
// large must be refused before any of it is read.
type unreadBody struct{ read bool }

func (b *unreadBody) Read(p []byte) (int, error) {
	b.read = true
	for i := range p {
		p[i] = '!'
	}
	return len(p), nil
}

// TestDeclaredTooLargeRefusedUnread: a body whose Content-Length is over the
// route's bound gets 413 with a JSON error before a byte of it is read,
// garbage or not, on every route that takes a body; it is counted and
// changes nothing. A body of unknown length (chunked) gets 413 once reading
// passes the bound.
func TestDeclaredTooLargeRefusedUnread(t *testing.T) {
	s := fuzzServer(t)
	s.opts.APIBodyBytesMax = 1024
	before := s.fuzzState()
	admin, agent := "Bearer "+fuzzAdminToken, "Bearer "+fuzzAgentToken
	tests := []struct {
		name, route, path, auth string
		max                     int64
	}{
		{"submit", "POST /v1/tasks", "/v1/tasks", "", 1024},
		{"cancel", "POST /v1/tasks/:id/cancel", "/v1/tasks/t-000002/cancel", "", 1024},
		{"mode", "POST /admin/mode", "/admin/mode", admin, 1024},
		{"purge", "POST /scheduler/queue/purge", "/scheduler/queue/purge", admin, 1024},
		{"quarantine", "POST /v1/agents/:id/quarantine", "/v1/agents/a1/quarantine", admin, 1024},
		{"release", "POST /v1/agents/:id/release", "/v1/agents/a1/release", admin, 1024},
		{"heartbeat", "POST " + fnet.PathHeartbeat, fnet.PathHeartbeat, agent, fnet.BodyMax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := &unreadBody{}
			req := httptest.NewRequest("POST", tc.path, body)
			req.ContentLength = tc.max + 1
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge || body.read {
				t.Fatalf("status %d (body read: %v): %.200s", rec.Code, body.read, rec.Body)
			}
			checkFuzzResponse(t, rec)
			var e struct{ Error, Message string }
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if e.Error != "too_large" || !strings.Contains(e.Message, fmt.Sprint(tc.max)) {
				t.Fatalf("error body %s", rec.Body)
			}
			if after := s.fuzzState(); after != before {
				t.Fatalf("a refused request changed the state:\nbefore %s\nafter  %s", before, after)
			}
			rec = httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if want := fmt.Sprintf(`flux_api_errors_total{code="413",route=%q} 1`, tc.route); !strings.Contains(rec.Body.String(), want) {
				t.Fatalf("metrics lack %s", want)
			}
		})
	}
	t.Run("chunked", func(t *testing.T) {
		// Valid JSON as far as it goes: only the bound stops it.
		body := io.MultiReader(strings.NewReader(`{"kind":"sleep","domain":"`), strings.NewReader(strings.Repeat("x", 2048)))
		req := httptest.NewRequest("POST", "/v1/tasks", body)
		req.ContentLength = -1
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %.200s", rec.Code, rec.Body)
		}
		checkFuzzResponse(t, rec)
		if after := s.fuzzState(); after != before {
			t.Fatalf("a refused request changed the state:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// TestGarbageOverTheLimitGets413: over a real connection, 2 MB of garbage
// declared in Content-Length is refused as too large, not as bad JSON.
func TestGarbageOverTheLimitGets413(t *testing.T) {
	s := fuzzServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/v1/tasks", "application/json", bytes.NewReader(bytes.Repeat([]byte{0xff}, 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error != "too_large" {
		t.Fatalf("status %d, body %+v, %v", resp.StatusCode, e, err)
	}
}
