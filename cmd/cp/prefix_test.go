package main

import (
	"testing"

	"github.com/fluxforge/fluxforge/core"
)

// TestStartTaskIDPrefix: each start of the cp gets its own valid task id
// prefix, so a restarted cp's t-…000001 is not the old start's.
func TestStartTaskIDPrefix(t *testing.T) {
	a, b := startTaskIDPrefix(), startTaskIDPrefix()
	if a == b {
		t.Fatalf("two starts share the prefix %q", a)
	}
	cfg := core.DefaultConfig()
	cfg.TaskIDPrefix = a
	if err := cfg.Validate(); err != nil {
		t.Fatalf("prefix %q: %v", a, err)
	}
}
