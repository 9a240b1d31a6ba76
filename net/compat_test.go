package net

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/core"
)

// TestRepliesTolerateNewFields: a reply may carry fields this side does
// not know (a newer cp), while requests stay strict.
func TestRepliesTolerateNewFields(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"registered":true,"heartbeat_interval_ms":333,"from_the_future":{"x":1}}`))
	}))
	defer srv.Close()
	c := &HTTPClient{HTTP: srv.Client(), CPURL: srv.URL}
	hb := core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1}
	reply, err := c.Do(context.Background(), Message{From: "a1", To: CPNode, Kind: KindHeartbeat, Seq: 1, Heartbeat: &hb})
	if err != nil {
		t.Fatal(err)
	}
	if r := reply.HeartbeatReply; !r.Registered || r.HeartbeatIntervalMillis != 333 {
		t.Fatalf("reply %+v", r)
	}
	var in core.HeartbeatInput
	if err := Decode(strings.NewReader(`{"agent_id":"a1","from_the_future":1}`), BodyMax, &in); err == nil {
		t.Fatal("a request with an unknown field was accepted")
	}
}

// TestHeartbeatIntervalOnTheWire pins the field names both sides rely on.
func TestHeartbeatIntervalOnTheWire(t *testing.T) {
	hb := string(Encode(core.HeartbeatInput{HeartbeatIntervalMillis: 250}))
	rep := string(Encode(core.HeartbeatReply{HeartbeatIntervalMillis: 500}))
	if !strings.Contains(hb, `"heartbeat_interval_ms":250`) || !strings.Contains(rep, `"heartbeat_interval_ms":500`) {
		t.Fatalf("heartbeat %s, reply %s", hb, rep)
	}
	// Unset, the field is absent: an old agent never sees it.
	if rep := string(Encode(core.HeartbeatReply{Registered: true})); strings.Contains(rep, "heartbeat_interval") {
		t.Fatalf("reply without an interval: %s", rep)
	}
}
