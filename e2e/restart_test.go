package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestRestartInDrainingKeepsQueue checks the runbook on a real cluster with
// work queued and running: a Full Restart needs no drain (the cp, stopped
// with SIGTERM in DRAINING, comes back DRAINING with every task as it was,
// the queue included), and a stuck queue is cleared with the purge
// endpoint, not by a restart. Set back to NORMAL, everything finishes.
func TestRestartInDrainingKeepsQueue(t *testing.T) {
	c := newCluster(t)
	a1 := c.startAgent("agent-1", "zone-a")
	a2 := c.startAgent("agent-2", "zone-b")
	a1.ready(t)
	a2.ready(t)

	// Work for 8 slots: 40 tasks of 300ms keep some queued through the
	// restart; 5 pinned to a zone without agents stay queued: the stuck part.
	work := c.submitSleeps(t, 40, func(int) int { return 300 })
	var stuck []string
	for range 5 {
		tk, err := c.submit(map[string]any{"kind": "sleep", "duration_ms": 10, "domain": "zone-stuck"})
		if err != nil {
			t.Fatalf("submit to zone-stuck: %v", err)
		}
		stuck = append(stuck, tk.ID)
	}
	type snapshot struct {
		Mode       string `json:"mode"`
		ModeSetBy  string `json:"mode_set_by"`
		QueueDepth int    `json:"queue_depth"`
		InFlight   int    `json:"in_flight"`
	}
	snap := func() snapshot {
		var s snapshot
		if _, err := call("GET", c.cpURL+"/scheduler/debug/snapshot", "", nil, &s); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
		return s
	}
	eventually(t, 20*time.Second, "work running and queued", func() bool {
		s := snap()
		return s.InFlight >= 4 && s.QueueDepth >= 15
	})
	if code, err := call("POST", c.cpURL+"/admin/mode", "", map[string]string{"mode": "DRAINING", "reason": "full restart"}, nil); code != 200 {
		t.Fatalf("set DRAINING: %d %v", code, err)
	}
	before, err := c.storedTasks()
	if err != nil {
		t.Fatal(err)
	}
	c.cp.terminate(t, 20*time.Second)
	c.startCP()

	s := snap()
	if s.Mode != "DRAINING" || s.ModeSetBy != "operator" {
		t.Errorf("after the restart the mode is %s set by %s, want the operator's DRAINING", s.Mode, s.ModeSetBy)
	}
	if s.QueueDepth < len(stuck) {
		t.Errorf("after the restart the queue holds %d tasks, want at least the %d stuck ones", s.QueueDepth, len(stuck))
	}
	after, err := c.storedTasks()
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	for id, b := range before {
		a, ok := after[id]
		switch {
		case !ok:
			t.Errorf("task %s (%s before the restart) is gone", id, b.State)
		case terminal(b.State) && a.State != b.State:
			t.Errorf("task %s was %s before the restart, is %s after", id, b.State, a.State)
		case a.State == "CANCELLED" || a.State == "DEAD" || a.State == "FAILED":
			t.Errorf("task %s was %s before the restart, is %s (%s) after", id, b.State, a.State, a.Reason)
		}
		if b.State == "QUEUED" {
			queued++
		}
	}
	t.Logf("restarted in DRAINING with %d tasks (%d queued); %d queued after", len(before), queued, s.QueueDepth)
	if code, _ := call("POST", c.cpURL+"/v1/tasks", "", map[string]any{"kind": "sleep", "duration_ms": 1}, nil); code != http.StatusServiceUnavailable {
		t.Errorf("a submission to the restarted DRAINING cp got %d, want 503", code)
	}

	// The stuck queue goes with a purge.
	var purged struct {
		Purged int `json:"purged"`
	}
	if code, err := call("POST", c.cpURL+"/scheduler/queue/purge", "", map[string]any{"domain": "zone-stuck", "reason": "stuck"}, &purged); code != 200 || purged.Purged != len(stuck) {
		t.Fatalf("purge zone-stuck: %d %v %+v, want %d purged", code, err, purged, len(stuck))
	}
	if code, err := call("POST", c.cpURL+"/admin/mode", "", map[string]string{"mode": "NORMAL", "reason": "restart done"}, nil); code != 200 {
		t.Fatalf("set NORMAL: %d %v", code, err)
	}
	all := c.waitTerminal(t, append(append([]string{}, work...), stuck...), 60*time.Second)
	for _, id := range work {
		tk := all[id]
		succeeded := 0
		for _, at := range tk.Attempts {
			if at.Outcome == "succeeded" {
				succeeded++
			}
		}
		if tk.State != "SUCCEEDED" || succeeded != 1 {
			t.Errorf("task %s ended %s (%s) with %d succeeded attempts", id, tk.State, tk.Reason, succeeded)
		}
	}
	for _, id := range stuck {
		if all[id].State != "CANCELLED" {
			t.Errorf("stuck task %s ended %s, want CANCELLED by the purge", id, all[id].State)
		}
	}
	if s := snap(); s.QueueDepth != 0 {
		t.Errorf("queue_depth %d at the end", s.QueueDepth)
	}
	for _, a := range []*agentProc{a1, a2} {
		a.terminate(t, 20*time.Second)
	}
	c.cp.terminate(t, 20*time.Second)
}
