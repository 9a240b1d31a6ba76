package cp

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

const testTokens = `# name role token
alice admin tok-alice-0001
bob   submit tok-bob-0002

carol read tok-carol-0003
a1    agent tok-a1-0004
agent agent tok-shared-0005
`

func writeTokens(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// refusals reads flux_auth_refusals_total{reason}.
func (tc *testCP) refusals(reason string) float64 {
	return tc.s.counter(core.MetricAuthRefusals, reason)
}

// counter reads the series of the counter name whose reason label is
// reason, from the cp's gatherer.
func (s *Server) counter(name, reason string) float64 {
	mfs, err := s.opts.Gatherer.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == core.LabelReason && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// fuzzState of a testCP: what a refusal must leave untouched.
func (tc *testCP) state() string { return tc.s.fuzzState() }

func TestParseTokens(t *testing.T) {
	toks, err := ParseTokens(strings.NewReader(testTokens), "tokens")
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 5 || toks[0] != (Token{"alice", RoleAdmin, "tok-alice-0001"}) || toks[3] != (Token{"a1", RoleAgent, "tok-a1-0004"}) {
		t.Fatalf("%+v", toks)
	}
	for _, tc := range []struct{ body, want string }{
		{"alice admin", "f:1: want \"name role token\", got 2 fields"},
		{"# c\nalice admin x y", "f:2: want \"name role token\", got 4 fields"},
		{"alice root x", `f:1: role "root" of alice: must be admin, submit, read or agent`},
		{"al/ice admin x", `f:1: token name "al/ice"`},
		{"a admin x\n\nb read x", "f:3: the token of b is the token of line 1"},
	} {
		_, err := ParseTokens(strings.NewReader(tc.body), "f")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

// TestTokensFileBadAtStart: a tokens file that does not parse stops New
// with an error naming the file and the line.
func TestTokensFileBadAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, "alice admin tok-1\nbob boss tok-2\n")
	_, err := New(Options{InMemory: true, TokensFile: path, Core: fastConfig()})
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("New: %v, want an error naming %s:2", err, path)
	}
	if _, err := New(Options{InMemory: true, RequireReadToken: true, Core: fastConfig()}); err == nil {
		t.Fatal("-require-read-token without any operator token was accepted")
	}
}

// TestRoles: admin ⊃ submit ⊃ read; reads are open without a token unless
// RequireReadToken; a refusal is 401/403 with a JSON error, counted, and
// changes nothing.
func TestRoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, testTokens)
	tc := startCP(t, false, func(o *Options) { o.TokensFile = path })
	alice, bob, carol := bearer("tok-alice-0001"), bearer("tok-bob-0002"), bearer("tok-carol-0003")

	// Reads stay open.
	tc.mustStatus(200, "GET", "/scheduler/debug/snapshot", nil)
	tc.mustStatus(200, "GET", "/v1/tasks", nil)
	// submit covers submit and cancel; read does not.
	task := tc.submit(`{"kind":"sleep","duration_ms":5}`, bob...)
	before := tc.state()
	for _, c := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		reason                   string
	}{
		{"submit without a token", "POST", "/v1/tasks", `{"kind":"sleep"}`, nil, 401, refusalNoToken},
		{"submit with a read token", "POST", "/v1/tasks", `{"kind":"sleep"}`, carol, 403, refusalWrongRole},
		{"batch with an unknown token", "POST", "/v1/batch/tasks", `{"tasks":[{"kind":"sleep"}]}`, bearer("nope"), 401, refusalUnknownToken},
		{"cancel with a read token", "POST", "/v1/tasks/" + string(task.ID) + "/cancel", "", carol, 403, refusalWrongRole},
		{"mode with a submit token", "POST", "/admin/mode", `{"mode":"READ_ONLY"}`, bob, 403, refusalWrongRole},
		{"purge with a submit token", "POST", "/scheduler/queue/purge", `{"all":true}`, bob, 403, refusalWrongRole},
		{"mode with an agent token", "POST", "/admin/mode", `{"mode":"READ_ONLY"}`, bearer("tok-a1-0004"), 403, refusalWrongRole},
		{"heartbeat with a submit token", "POST", fnet.PathHeartbeat, `{"agent_id":"a1","domain":"z1","slots":1,"incarnation":1,"seq":1}`, bob, 403, refusalWrongRole},
	} {
		n := tc.refusals(c.reason)
		var body any
		if c.body != "" {
			body = c.body
		}
		r := tc.mustStatus(c.status, c.method, c.path, body, c.hdr...)
		want := map[int]string{401: "unauthorized", 403: "forbidden"}[c.status]
		if r.errorCode(t) != want {
			t.Errorf("%s: error %q, want %q", c.name, r.errorCode(t), want)
		}
		if got := tc.refusals(c.reason); got != n+1 {
			t.Errorf("%s: flux_auth_refusals_total{reason=%q} went %v → %v", c.name, c.reason, n, got)
		}
		if after := tc.state(); after != before {
			t.Fatalf("%s changed the state:\nbefore %s\nafter  %s", c.name, before, after)
		}
	}
	tc.mustStatus(200, "POST", "/v1/tasks/"+string(task.ID)+"/cancel", nil, bob...)
	tc.mustStatus(201, "POST", "/v1/tasks", `{"kind":"sleep"}`, alice...) // admin covers submit
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"DRAINING"}`, alice...)
}

// TestRequireReadToken: with RequireReadToken the reads need a read token
// (/healthz and /readyz stay open).
func TestRequireReadToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, testTokens)
	tc := startCP(t, false, func(o *Options) { o.TokensFile, o.RequireReadToken = path, true })
	for _, p := range []string{"/scheduler/debug/snapshot", "/v1/tasks", "/v1/agents", "/timeline", "/metrics"} {
		tc.mustStatus(401, "GET", p, nil)
		tc.mustStatus(403, "GET", p, nil, bearer("tok-a1-0004")...)
		tc.mustStatus(200, "GET", p, nil, bearer("tok-carol-0003")...)
		tc.mustStatus(200, "GET", p, nil, bearer("tok-bob-0002")...)
	}
	tc.mustStatus(200, "GET", "/healthz", nil)
}

// TestAgentOwnToken: an agent's own token speaks only for it; the shared
// token named agent speaks for any agent.
func TestAgentOwnToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, testTokens)
	tc := startCP(t, false, func(o *Options) { o.TokensFile = path })
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1}, bearer("tok-a1-0004")...)
	before := tc.state()
	n := tc.refusals(refusalWrongAgent)
	r := tc.mustStatus(403, "POST", fnet.PathHeartbeat, core.HeartbeatInput{AgentID: "a2", Domain: "z1", Slots: 64, Incarnation: 1, Seq: 1}, bearer("tok-a1-0004")...)
	if r.errorCode(t) != "forbidden" || tc.refusals(refusalWrongAgent) != n+1 {
		t.Fatalf("a1's token spoke for a2: %s (refusals %v)", r.Body, tc.refusals(refusalWrongAgent))
	}
	if after := tc.state(); after != before {
		t.Fatalf("the refused heartbeat changed the state:\nbefore %s\nafter  %s", before, after)
	}
	tc.heartbeat(core.HeartbeatInput{AgentID: "a2", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1}, bearer("tok-shared-0005")...)
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 2}, bearer("tok-shared-0005")...)
}

// TestTokenRevokedOnReload: ReloadTokens (what SIGHUP calls) takes a
// revoked token away for the next request; a bad file keeps the tokens in
// force and says why.
func TestTokenRevokedOnReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, testTokens)
	tc := startCP(t, false, func(o *Options) { o.TokensFile = path })
	tc.mustStatus(200, "GET", "/admin/mode", nil, bearer("tok-alice-0001")...)

	writeTokens(t, path, strings.Replace(testTokens, "alice admin tok-alice-0001\n", "dave admin tok-dave-0006\n", 1))
	if err := tc.s.ReloadTokens(); err != nil {
		t.Fatal(err)
	}
	before := tc.state()
	n := tc.refusals(refusalUnknownToken)
	tc.mustStatus(401, "POST", "/admin/mode", `{"mode":"READ_ONLY"}`, bearer("tok-alice-0001")...)
	if tc.refusals(refusalUnknownToken) != n+1 {
		t.Fatal("the refusal of the revoked token was not counted")
	}
	if after := tc.state(); after != before {
		t.Fatalf("the revoked token changed the state:\nbefore %s\nafter  %s", before, after)
	}
	tc.mustStatus(200, "GET", "/admin/mode", nil, bearer("tok-dave-0006")...)

	writeTokens(t, path, "dave admin\n")
	err := tc.s.ReloadTokens()
	if err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if !strings.Contains(tc.logs.String(), "tokens file not reloaded") {
		t.Fatal("the failed reload was not logged")
	}
	tc.mustStatus(200, "GET", "/admin/mode", nil, bearer("tok-dave-0006")...)
}

// TestLegacyTokensKeepSubmitOpen: with only -admin-token, submit stays
// open as before the tokens file.
func TestLegacyTokensKeepSubmitOpen(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.AdminToken = "adm" })
	tc.submit(`{"kind":"sleep"}`)
	tc.mustStatus(http.StatusUnauthorized, "GET", "/admin/mode", nil)
}

// TestByInTimelineAndSnapshot: what a named token changes names it as `by`
// on the timeline, and the snapshot names who set the mode.
func TestByInTimelineAndSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, path, testTokens)
	tc := startCP(t, false, func(o *Options) { o.TokensFile = path })
	task := tc.submit(`{"kind":"sleep","duration_ms":5}`, bearer("tok-bob-0002")...)
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"READ_ONLY","reason":"upgrade"}`, bearer("tok-alice-0001")...)
	s := tc.snapshot()
	if s.ModeSetBy != core.ActorOperator || s.ModeSetByName != "alice" {
		t.Fatalf("snapshot: mode set by %q / %q", s.ModeSetBy, s.ModeSetByName)
	}
	var mv ModeView
	tc.mustStatus(200, "GET", "/admin/mode", nil, bearer("tok-alice-0001")...).decode(t, &mv)
	if mv.SetByName != "alice" {
		t.Fatalf("GET /admin/mode: %+v", mv)
	}
	var page TimelinePage
	tc.mustStatus(200, "GET", "/timeline?since=0&limit=1000", nil).decode(t, &page)
	found := 0
	for _, e := range page.Events {
		switch {
		case e.Type == core.EventTaskQueued && e.TaskID == task.ID:
			if e.By != "bob" || e.Actor != core.ActorClient {
				t.Errorf("submit event: %+v", e)
			}
			found++
		case e.Type == core.EventModeChanged && e.To == string(core.ModeReadOnly):
			if e.By != "alice" || e.Actor != core.ActorOperator {
				t.Errorf("mode event: %+v", e)
			}
			found++
		case e.By != "":
			t.Errorf("%s names %q", e.Type, e.By)
		}
	}
	if found != 2 {
		t.Fatalf("found %d of the 2 events: %+v", found, page.Events)
	}
}
