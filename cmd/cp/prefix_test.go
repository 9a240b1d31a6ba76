package main

import (
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// TestStartTaskIDPrefix: each start of the cp gets its own valid task id
// prefix, so a restarted cp's t-…000001 is not the old start's.
func TestStartTaskIDPrefix(t *testing.T) {
	a, b := startTaskIDPrefix(), startTaskIDPrefix()
	if a == b {
		t.Fatalf("two starts share the prefix %q", a)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := core.NewControlPlane(core.DefaultConfig(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(t0, core.StartInput{TaskIDPrefix: a}); err != nil {
		t.Fatalf("prefix %q: %v", a, err)
	}
	r, err := c.Apply(t0, core.SubmitInput{Spec: core.TaskSpec{Kind: core.KindSleep}})
	if err != nil || r.Task.ID != core.TaskID(a+"000001") {
		t.Fatalf("first task of a start with prefix %q: %q (%v)", a, r.Task.ID, err)
	}
}
