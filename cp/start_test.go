package cp

import (
	"errors"
	"testing"

	"github.com/fluxforge/fluxforge/core"
)

// TestTaskIDPrefixOption: Options.TaskIDPrefix reaches the core as a
// StartInput, so this start's ids carry it; a bad one stops New.
func TestTaskIDPrefixOption(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.TaskIDPrefix = "t-abc123-" })
	if v := tc.submit(`{"kind":"sleep","duration_ms":10}`); v.ID != "t-abc123-000001" {
		t.Fatalf("first task id %q, want t-abc123-000001", v.ID)
	}
	_, err := New(Options{Core: fastConfig(), Clock: newMock(), TaskIDPrefix: "t/"})
	if !errors.Is(err, core.ErrInvalid) {
		t.Fatalf("New with prefix t/: %v, want ErrInvalid", err)
	}
}
