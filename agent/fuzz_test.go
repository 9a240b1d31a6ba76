package agent

// Fuzz target for the bodies the cp sends an agent (assign and cancel): each
// input goes through the real Handler of a fresh Daemon (not running: its
// clock is a mock, so a sleep it accepts never fires) that already runs one
// attempt. The contract:
//
//   - no panic and no 5xx;
//   - assign answers 200 with an AssignAck, cancel 204; a refusal is a 4xx
//     with the JSON error {"error","message"}, both non-empty;
//   - a 4xx changes nothing, and neither does an assignment the agent
//     declines (ack.accepted false) beyond its rejection counter;
//   - without the token every call is 401.
//
// Exec is not allowed here: a fuzzer must never start processes. Run it for a
// minute with
//
//	go test -run '^$' -fuzz '^FuzzAgentProtocol$' -fuzztime 60s ./agent/

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// fuzzDaemon is a daemon on a mock clock running attempt 2 of task "t-1".
func fuzzDaemon(t *testing.T) *Daemon {
	t.Helper()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	d, err := New(Options{ID: "fuzz-agent", Domain: "z1", Slots: 2, CPURL: "http://127.0.0.1:1", Advertise: "http://127.0.0.1:2",
		Token: testToken, Clock: mock, Registerer: reg, Gatherer: reg, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	ack := d.core.Assign(mock.Now(), core.Assign{TaskID: "t-1", Attempt: 2, Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 60_000},
		Deadline: mock.Now().Add(time.Hour)})
	d.mu.Unlock()
	if !ack.Accepted {
		t.Fatalf("setup assignment refused: %+v", ack)
	}
	return d
}

// fuzzAgentState is what a refusal must leave as it was.
func (d *Daemon) fuzzAgentState() string {
	st := d.Status()
	st.Stats.Rejected = 0 // a declined assignment is counted, nothing else
	raw, err := json.Marshal(struct {
		Status
		Sleeping int
	}{st, d.sleep.Running()})
	if err != nil {
		panic(err)
	}
	return string(raw)
}

func FuzzAgentProtocol(f *testing.F) {
	for _, seed := range []struct {
		cancel bool
		body   string
	}{
		{false, `{"task_id":"t-2","attempt":1,"spec":{"kind":"sleep","duration_ms":5},"deadline":"2026-01-01T01:00:00Z"}`},
		{false, `{"task_id":"t-1","attempt":2,"spec":{"kind":"sleep","duration_ms":60000}}`}, // duplicate delivery
		{false, `{"task_id":"t-1","attempt":1,"spec":{"kind":"sleep"}}`},                     // stale
		{false, `{"task_id":"t-1","attempt":3,"spec":{"kind":"sleep","duration_ms":1}}`},     // supersedes
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"exec","argv":["/bin/sh","-c","echo pwned"]}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"exec","argv":[]}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep","duration_ms":-5}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"teleport"}}`},
		{false, `{"task_id":"t-3","attempt":0,"spec":{"kind":"sleep"}}`},
		{false, `{"task_id":"","attempt":1,"spec":{"kind":"sleep"}}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep"},"deadline":"yesterday"}`},
		{false, `{"task_id":"t-3","attempt":1,"spec":{"kind":"sleep"},"evil":true}`},
		{false, `{"task_id":"t-3","attempt":1e40}`},
		{false, `null`},
		{false, ``},
		{true, `{"task_id":"t-1","attempt":2,"reason":"moved"}`},
		{true, `{"task_id":"t-1","attempt":1}`},
		{true, `{"task_id":"t-9","attempt":1}`},
		{true, `{"task_id":"t-1","attempt":0}`},
		{true, `{"task_id":"t-1","attempt":2}{}`},
		{true, `{}`},
	} {
		f.Add(seed.cancel, []byte(seed.body), true)
	}
	f.Add(false, []byte(`{"task_id":"t-2","attempt":1,"spec":{"kind":"sleep","duration_ms":5}}`), false)
	f.Add(true, []byte(`{"task_id":"t-1","attempt":2}`), false)
	f.Fuzz(func(t *testing.T, cancel bool, body []byte, token bool) {
		d := fuzzDaemon(t)
		before := d.fuzzAgentState()
		path := fnet.PathAssign
		if cancel {
			path = fnet.PathCancel
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if token {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		rec := httptest.NewRecorder()
		d.Handler().ServeHTTP(rec, req)

		switch {
		case !token && rec.Code != http.StatusUnauthorized:
			t.Fatalf("%s without the token answered %d", path, rec.Code)
		case rec.Code >= 400 && rec.Code < 500:
			var e map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%d with a body that is not JSON: %q", rec.Code, rec.Body)
			}
			code, _ := e["error"].(string)
			msg, _ := e["message"].(string)
			if len(e) != 2 || code == "" || msg == "" {
				t.Fatalf("%d: error body is not {\"error\",\"message\"}: %q", rec.Code, rec.Body)
			}
			if after := d.fuzzAgentState(); after != before {
				t.Fatalf("refused %d %s changed the agent:\nbefore %s\nafter  %s", rec.Code, rec.Body, before, after)
			}
		case cancel && rec.Code == http.StatusNoContent:
		case !cancel && rec.Code == http.StatusOK:
			var ack core.AssignAck
			if err := fnet.Decode(bytes.NewReader(rec.Body.Bytes()), fnet.BodyMax, &ack); err != nil {
				t.Fatalf("assign ack does not decode strictly: %v: %s", err, rec.Body)
			}
			if ack.AgentID != "fuzz-agent" {
				t.Fatalf("ack from %q", ack.AgentID)
			}
			if !ack.Accepted {
				if ack.Reason == "" {
					t.Fatalf("declined without a reason: %s", rec.Body)
				}
				if after := d.fuzzAgentState(); after != before {
					t.Fatalf("declined assignment changed the agent:\nbefore %s\nafter  %s", before, after)
				}
			}
			if st := d.Status(); len(st.Running) > 2 {
				t.Fatalf("more attempts running than slots: %+v", st.Running)
			}
		default:
			t.Fatalf("%s answered %d: %s", path, rec.Code, rec.Body)
		}
	})
}
