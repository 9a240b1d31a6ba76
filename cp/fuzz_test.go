package cp

// Fuzz targets for every request body and query string the cp decodes. Each
// input goes through the real Handler (httprouter, the request boundary,
// strict decoding, core validation) of a fresh Server with a little state in
// it, and is judged by the API's contract:
//
//   - no panic and no 5xx (a recovered panic would be a 500);
//   - a success is 200 or 201 with a JSON body;
//   - a refusal is a 4xx with the JSON error {"error","message"}, both
//     non-empty and nothing else;
//   - a refusal changes nothing: the tasks, the agents, the queue depth, the
//     mode and the timeline's last sequence number are what they were.
//
// Run one for a minute with
//
//	go test -run '^$' -fuzz '^FuzzSubmit$' -fuzztime 60s ./cp/
//
// The seeds here and in testdata/fuzz/<FuzzName>/ run as normal tests.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

const (
	fuzzAdminToken = "fuzz-admin"
	fuzzAgentToken = "fuzz-agent"
)

// fuzzServer is a Server with no loops running (nothing leaves it) on a
// mock clock, holding one registered agent in zone z1 running one task, and
// two more queued tasks in z1 and z2.
func fuzzServer(t *testing.T) *Server {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.QueueCapacity = 8
	cfg.TasksMax = 16
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := New(Options{Clock: mock, Core: cfg, AdminToken: fuzzAdminToken, AgentToken: fuzzAgentToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.applyInput(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1,
		Address: "http://127.0.0.1:1", Incarnation: 7, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{"z1", "z1", "z2"} {
		if err := s.applyInput(core.SubmitInput{IdempotencyKey: fmt.Sprintf("seed-%d", i+1),
			Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 5, Domain: d}}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fuzzState is what a refused request must leave untouched.
type fuzzState struct {
	QueueDepth int
	LastSeq    uint64
	Mode       core.Mode
	Tasks      []core.Task
	Agents     []core.AgentView
}

func (s *Server) fuzzState() string {
	var st fuzzState
	s.read(func(c *core.ControlPlane) {
		st.QueueDepth = c.QueueDepth()
		st.LastSeq = c.Timeline().LastSeq()
		st.Mode, _, _ = c.Mode()
		st.Tasks = c.Tasks(core.TaskFilter{Limit: 1000})
		st.Agents = c.Agents()
	})
	raw, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	return string(raw)
}

// fuzzRequest serves one request on a fresh fuzzServer and checks the
// contract; it returns the recorder for target-specific checks.
func fuzzRequest(t *testing.T, method, path, rawQuery string, body []byte, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	s := fuzzServer(t)
	before := s.fuzzState()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	req.RequestURI = ""
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	checkFuzzResponse(t, rec)
	if rec.Code >= 400 {
		if after := s.fuzzState(); after != before {
			t.Fatalf("refused %d %s changed the state:\nbefore %s\nafter  %s", rec.Code, rec.Body, before, after)
		}
	}
	return rec
}

// checkFuzzResponse checks the status and the body's shape.
func checkFuzzResponse(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.Bytes()
	switch {
	case rec.Code == http.StatusOK || rec.Code == http.StatusCreated:
		if !json.Valid(body) {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, body)
		}
	case rec.Code >= 400 && rec.Code < 500:
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("status %d with an error body that is not JSON: %q", rec.Code, body)
		}
		code, _ := e["error"].(string)
		msg, _ := e["message"].(string)
		if len(e) != 2 || code == "" || msg == "" {
			t.Fatalf("status %d: error body is not {\"error\",\"message\"} with both set: %q", rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("status %d: content type %q", rec.Code, ct)
		}
	default:
		t.Fatalf("status %d (want 200, 201 or 4xx): %s", rec.Code, body)
	}
}

func adminHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + fuzzAdminToken}, "Content-Type": {"application/json"}}
}

func FuzzSubmit(f *testing.F) {
	for _, seed := range []struct{ body, key string }{
		{`{"kind":"sleep","duration_ms":5}`, ""},
		{`{"kind":"sleep","duration_ms":5,"domain":"z1","priority":"high","timeout_seconds":10,"max_attempts":3}`, "k1"},
		{`{"kind":"exec","argv":["/bin/echo","hi"],"priority":"low"}`, "k2"},
		{`{"kind":"sleep","duration_ms":5,"domain":"z1"}`, "seed-1"}, // replay of a seeded task
		{`{"kind":"sleep","duration_ms":6,"domain":"z1"}`, "seed-1"}, // the key with another body
		{`{"kind":"sleep","duration_ms":-1}`, ""},
		{`{"kind":"exec","argv":[]}`, ""},
		{`{"kind":"exec","argv":[""]}`, ""},
		{`{"kind":"sleep","domain":"zone 1"}`, ""},
		{`{"kind":"sleep","max_attempts":1000000000000}`, ""},
		{`{"kind":"sleep","timeout_seconds":-5}`, ""},
		{`{"kind":"sleep","priority":"URGENT"}`, ""},
		{`{"kind":"sleep","color":"red"}`, ""},
		{`{"kind":"sleep"}{}`, ""},
		{`{"kind":"sleep","argv":null,"duration_ms":1e3}`, ""},
		{`{"kind":"\u0000"}`, ""},
		{`[]`, ""},
		{``, ""},
		{`null`, ""},
		{`{"kind":"sleep"}`, "key with spaces"},
		{`{"kind":"sleep"}`, strings.Repeat("k", 300)},
	} {
		f.Add([]byte(seed.body), seed.key)
	}
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		h := http.Header{"Content-Type": {"application/json"}}
		if key != "" {
			h.Set(HeaderIdempotencyKey, key)
		}
		rec := fuzzRequest(t, http.MethodPost, "/v1/tasks", "", body, h)
		switch rec.Code {
		case http.StatusCreated, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnprocessableEntity, http.StatusTooManyRequests:
		default:
			t.Fatalf("submit answered %d: %s", rec.Code, rec.Body)
		}
		if rec.Code == http.StatusCreated || rec.Code == http.StatusOK {
			var v TaskView
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.ID == "" {
				t.Fatalf("accepted task without an id: %s", rec.Body)
			}
			if rec.Code == http.StatusOK && rec.Header().Get(HeaderReplayed) != "true" {
				t.Fatalf("200 without %s: %s", HeaderReplayed, rec.Body)
			}
		}
	})
}

func FuzzHeartbeat(f *testing.F) {
	for _, seed := range []string{
		`{"agent_id":"a2","domain":"z2","slots":2,"incarnation":1,"seq":1,"running":[]}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"address":"http://127.0.0.1:1","incarnation":7,"seq":2,"running":[{"task_id":"t-000001","attempt":1}]}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":7,"seq":3,"running":[],"results":[{"task_id":"t-000001","attempt":1,"outcome":"SUCCEEDED","exit_code":0,"duration_ms":5}]}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":7,"seq":3,"results":[{"task_id":"t-000001","attempt":1,"outcome":"EXPLODED"}]}`,
		`{"agent_id":"a1","domain":"z9","slots":1,"incarnation":7,"seq":4}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":8,"seq":1,"stopping":true}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":7,"seq":0}`,
		`{"agent_id":"a 1","domain":"z1","slots":1}`,
		`{"agent_id":"a1","domain":"z1","slots":0}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"rtt_ms":-1}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"running":[{"task_id":"","attempt":0}]}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"x":1}`,
		`{"agent_id":"a1","domain":"z1","slots":1,"incarnation":-1}`,
		`{}`,
		``,
	} {
		f.Add([]byte(seed), true)
	}
	f.Add([]byte(`{"agent_id":"a2","domain":"z2","slots":2,"incarnation":1,"seq":1}`), false)
	f.Fuzz(func(t *testing.T, body []byte, token bool) {
		h := http.Header{"Content-Type": {"application/json"}}
		if token {
			h.Set("Authorization", "Bearer "+fuzzAgentToken)
		}
		rec := fuzzRequest(t, http.MethodPost, fnet.PathHeartbeat, "", body, h)
		if !token && rec.Code != http.StatusUnauthorized {
			t.Fatalf("heartbeat without the agent token answered %d", rec.Code)
		}
		if rec.Code == http.StatusOK {
			var rep core.HeartbeatReply
			if err := fnet.Decode(bytes.NewReader(rec.Body.Bytes()), fnet.BodyMax, &rep); err != nil {
				t.Fatalf("heartbeat reply does not decode strictly: %v: %s", err, rec.Body)
			}
		}
	})
}

func FuzzAdminMode(f *testing.F) {
	for _, seed := range []string{
		`{"mode":"DRAINING","reason":"maintenance"}`,
		`{"mode":"NORMAL"}`,
		`{"mode":"DEGRADED","reason":""}`,
		`{"mode":"READ_ONLY"}`,
		`{"mode":"draining"}`,
		`{"mode":"OFF"}`,
		`{"mode":""}`,
		`{"mode":"NORMAL","reason":"` + strings.Repeat("r", 600) + `"}`,
		`{"mode":"NORMAL","actor":"self-protection"}`,
		`{"mode":1}`,
		`{}`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzRequest(t, http.MethodPost, "/admin/mode", "", body, adminHeader())
		if rec.Code == http.StatusOK {
			var v ModeView
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			if _, err := core.ParseMode(string(v.Mode)); err != nil || v.SetBy != core.ActorOperator {
				t.Fatalf("mode set to %+v", v)
			}
		} else if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("mode answered %d: %s", rec.Code, rec.Body)
		}
	})
}

func FuzzPurge(f *testing.F) {
	for _, seed := range []string{
		`{"all":true}`,
		`{"domain":"z1"}`,
		`{"domain":"z2","reason":"bad zone"}`,
		`{"older_than_seconds":1}`,
		`{"older_than_seconds":0}`,
		`{"older_than_seconds":-1}`,
		`{"older_than_seconds":9223372036854775807}`,
		`{"older_than_seconds":31536001}`,
		`{"all":true,"domain":"z1"}`,
		`{"all":false}`,
		`{"domain":"zone one"}`,
		`{"domain":""}`,
		`{"reason":"` + strings.Repeat("r", 600) + `","all":true}`,
		`{"all":"yes"}`,
		`{}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fuzzRequest(t, http.MethodPost, "/scheduler/queue/purge", "", body, adminHeader())
		if rec.Code == http.StatusOK {
			var res PurgeResult
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			if res.Purged < 0 || res.Purged > 2 || res.QueueDepth != 2-res.Purged {
				t.Fatalf("purge of a 2-deep queue: %+v", res)
			}
		} else if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("purge answered %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzQuery fuzzes the query strings of the listing endpoints: route picks
// one of them.
func FuzzQuery(f *testing.F) {
	for _, seed := range []struct {
		route byte
		q     string
	}{
		{0, "state=queued&domain=z1&limit=2&after=t-000001"},
		{0, "state=RUNNING"},
		{0, "limit=0"},
		{0, "limit=1001"},
		{0, "limit=-1"},
		{0, "limit=99999999999999999999"},
		{0, "limit=1&limit=2"},
		{0, "state=DONE"},
		{0, "domain=a%20b"},
		{0, "sort=id"},
		{0, "%zz"},
		{0, "after=%00"},
		{0, ";;;"},
		{1, "since=0&limit=10000"},
		{1, "since=-1"},
		{1, "since=18446744073709551615"},
		{1, "limit=10001"},
		{1, "since=3&since=4"},
		{2, ""},
		{2, "x=1"},
		{3, ""},
		{3, "verbose=1"},
	} {
		f.Add(seed.route, seed.q)
	}
	routes := []string{"/v1/tasks", "/timeline", "/v1/agents", "/scheduler/debug/snapshot"}
	f.Fuzz(func(t *testing.T, route byte, q string) {
		path := routes[int(route)%len(routes)]
		rec := fuzzRequest(t, http.MethodGet, path, q, nil, nil)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("GET %s?%s answered %d: %s", path, q, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			return
		}
		switch path {
		case "/v1/tasks":
			var l TaskList
			if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || l.Count != len(l.Tasks) || l.Count > 3 {
				t.Fatalf("task list %v: %s", err, rec.Body)
			}
		case "/timeline":
			var p TimelinePage
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			for i, e := range p.Events {
				if i > 0 && e.Seq <= p.Events[i-1].Seq {
					t.Fatalf("timeline out of order: %s", rec.Body)
				}
			}
		}
	})
}

// TestFuzzServerSetup pins the state the fuzz targets start from, so the
// targets' expectations (two queued tasks, one running) stay true.
func TestFuzzServerSetup(t *testing.T) {
	s := fuzzServer(t)
	var st fuzzState
	if err := json.Unmarshal([]byte(s.fuzzState()), &st); err != nil {
		t.Fatal(err)
	}
	if st.QueueDepth != 2 || len(st.Tasks) != 3 || len(st.Agents) != 1 || st.Mode != core.ModeNormal {
		t.Fatalf("fuzz server state: %s", fmt.Sprint(st.QueueDepth, len(st.Tasks), len(st.Agents), st.Mode))
	}
}
