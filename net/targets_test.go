package net

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fluxforge/fluxforge/core"
)

func TestCPTargets(t *testing.T) {
	tg := NewCPTargets([]string{"http://cp1:8080/", "http://cp2:8080"})
	if tg.Current() != "http://cp1:8080" {
		t.Fatalf("current %q", tg.Current())
	}
	for _, bad := range []string{"", "cp3:8080", "ftp://cp3", "http://cp1:8080"} {
		if tg.Redirect("http://cp1:8080", bad) {
			t.Errorf("redirect to %q taken", bad)
		}
	}
	if !tg.Redirect("http://cp1:8080", "http://cp3:8080") || tg.Current() != "http://cp3:8080" || len(tg.URLs()) != 3 {
		t.Fatalf("after redirect: %q %v", tg.Current(), tg.URLs())
	}
	tg.Unreachable("http://cp1:8080") // not current: nothing moves
	if tg.Current() != "http://cp3:8080" {
		t.Fatalf("moved off a cp that was not current: %q", tg.Current())
	}
	tg.Unreachable("http://cp3:8080")
	if tg.Current() != "http://cp1:8080" {
		t.Fatalf("after cp3 unreachable: %q, want the next (wrapping) cp1", tg.Current())
	}
}

// TestHTTPClientFollowsTheLeader: a heartbeat sent to a follower reaches
// the leader it names in the same call; one sent to a dead cp fails and the
// next goes to the next cp of the list.
func TestHTTPClientFollowsTheLeader(t *testing.T) {
	leaderHits := 0
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaderHits++
		WriteJSON(w, http.StatusOK, core.HeartbeatReply{})
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not_leader", "message": "cp2 is not the leader", "leader_url": leader.URL})
	}))
	defer follower.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	hb := Message{From: "a1", To: CPNode, Kind: KindHeartbeat, Heartbeat: &core.HeartbeatInput{AgentID: "a1", Domain: "z", Slots: 1, Incarnation: 1, Seq: 1}}
	c := &HTTPClient{CPs: NewCPTargets([]string{follower.URL, leader.URL})}
	if _, err := c.Do(context.Background(), hb); err != nil || leaderHits != 1 || c.CPs.Current() != leader.URL {
		t.Fatalf("through a follower: %v, leader hits %d, current %q", err, leaderHits, c.CPs.Current())
	}

	c = &HTTPClient{CPs: NewCPTargets([]string{dead.URL, leader.URL})}
	if _, err := c.Do(context.Background(), hb); err == nil {
		t.Fatal("a dead cp answered")
	}
	if _, err := c.Do(context.Background(), hb); err != nil || c.CPs.Current() != leader.URL {
		t.Fatalf("after a dead cp: %v, current %q", err, c.CPs.Current())
	}
	// A follower that knows no leader: the error says so, nothing moves.
	lost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not_leader", "message": "no leader"})
	}))
	defer lost.Close()
	c = &HTTPClient{CPs: NewCPTargets([]string{lost.URL})}
	if _, err := c.Do(context.Background(), hb); err == nil {
		t.Fatal("no leader, yet an answer")
	} else if se, ok := err.(*StatusError); !ok || se.Code != "not_leader" {
		t.Fatalf("error %v", err)
	}
}
