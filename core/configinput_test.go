package core

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// drawConfig draws a config near the defaults, sometimes invalid, sometimes
// with a field that cannot change (Health.Buckets).
func drawConfig(t *rapid.T) Config {
	cfg := DefaultConfig()
	cfg.QueueCapacity = rapid.SampledFrom([]int{0, 1, 4, 8, 20}).Draw(t, "queue capacity")
	cfg.TasksMax = rapid.SampledFrom([]int{10, 30}).Draw(t, "tasks max")
	cfg.TimelineEventsMax = rapid.SampledFrom([]int{1, 5, 10_000}).Draw(t, "timeline max")
	cfg.IdempotencyKeysMax = rapid.IntRange(1, 3).Draw(t, "keys max")
	cfg.LostAfter = time.Duration(rapid.IntRange(0, 60).Draw(t, "lost after")) * time.Second
	cfg.Domains.MinOpenCapacity = rapid.SampledFrom([]float64{0, 0.5}).Draw(t, "min open")
	cfg.InitialMode = rapid.SampledFrom([]Mode{ModeNormal, ModeReadOnly}).Draw(t, "initial mode")
	if rapid.IntRange(0, 9).Draw(t, "buckets?") == 0 {
		cfg.Health.Buckets = 6
	}
	return cfg
}

func configTestCP(t *testing.T) *ControlPlane {
	t.Helper()
	cfg := DefaultConfig()
	cfg.QueueCapacity, cfg.TasksMax = 8, 20
	cp, err := NewControlPlane(cfg, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func configEvents(cp *ControlPlane) []Event {
	var out []Event
	for _, e := range cp.Timeline().Since(0, 0) {
		if e.Type == EventConfigChanged {
			out = append(out, e)
		}
	}
	return out
}

// TestConfigInputRefusals: an invalid config, or one that changes a field
// fixed for the life of the state, is refused and changes nothing; an equal
// config (the ignored fields aside) changes nothing and records nothing.
func TestConfigInputRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"invalid queue capacity", func(c *Config) { c.QueueCapacity = 0 }, "QueueCapacity must be >= 1"},
		{"tasks below queue", func(c *Config) { c.QueueCapacity, c.TasksMax = 50, 40 }, "TasksMax must be >= QueueCapacity"},
		{"health buckets fixed", func(c *Config) { c.Health.Buckets = 6 }, "Health.Buckets cannot change once the state exists (12, asked 6)"},
		{"health window fixed", func(c *Config) { c.Health.Window = time.Minute }, "Health.Window cannot change once the state exists (2m0s, asked 1m0s)"},
		{"same config", func(*Config) {}, ""},
		{"only ignored fields", func(c *Config) {
			c.InitialMode, c.TaskIDPrefix = ModeReadOnly, "zz-"
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := configTestCP(t)
			if _, _, err := doSubmit(cp, testEpoch, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); err != nil {
				t.Fatal(err)
			}
			before, seq := cp.StateHash(), cp.Timeline().LastSeq()
			cfg := cp.Config()
			tc.edit(&cfg)
			_, err := cp.Apply(testEpoch, ConfigInput{Config: cfg})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case tc.wantErr != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want ErrInvalid with %q", err, tc.wantErr)
			}
			if cp.StateHash() != before || cp.Timeline().LastSeq() != seq {
				t.Fatal("the state changed")
			}
			if m, _, _ := cp.Mode(); m != ModeNormal || cp.Config().TaskIDPrefix != "t-" {
				t.Fatalf("mode %s, prefix %q: the ignored fields took effect", m, cp.Config().TaskIDPrefix)
			}
		})
	}
}

// TestConfigInputShrinksQueueWithoutDropping: a queue capacity below the
// queue's depth drops nothing; it refuses new submissions until the queue
// has drained below it. The change is recorded with the field old→new.
func TestConfigInputShrinksQueueWithoutDropping(t *testing.T) {
	cp := configTestCP(t)
	for range 6 {
		if _, _, err := doSubmit(cp, testEpoch, SubmitInput{Spec: TaskSpec{Kind: KindSleep, Domain: "z1"}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := cp.Config()
	cfg.QueueCapacity, cfg.LostAfter = 3, 45*time.Second
	now := testEpoch.Add(time.Second)
	if _, err := cp.Apply(now, ConfigInput{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if cp.QueueDepth() != 6 || cp.Config().QueueCapacity != 3 || cp.Config().LostAfter != 45*time.Second {
		t.Fatalf("depth %d, config %+v", cp.QueueDepth(), cp.Config())
	}
	ev := configEvents(cp)
	if len(ev) != 1 || ev[0].Reason != "QueueCapacity 8→3, LostAfter 30s→45s" || ev[0].Count != 2 ||
		ev[0].Kind != EventConfig || ev[0].Actor != ActorConfig || !ev[0].Time.Equal(now) {
		t.Fatalf("config events %+v", ev)
	}
	if _, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("submit over the smaller capacity: %v, want ErrQueueFull", err)
	}
	// An agent takes 4 tasks: 2 left queued, below 3, so one more fits.
	if _, err := doHeartbeat(cp, now, HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 4, Incarnation: 1, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if cp.QueueDepth() != 2 {
		t.Fatalf("depth %d after dispatch, want 2", cp.QueueDepth())
	}
	if _, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); err != nil {
		t.Fatalf("submit below the capacity again: %v", err)
	}
	if _, _, err := doSubmit(cp, now, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("submit at the capacity: %v, want ErrQueueFull", err)
	}
	// The changed config is state: an export restores it.
	b, err := cp.Export()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Restore(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.Config() != cp.Config() || back.StateHash() != cp.StateHash() {
		t.Fatal("the restored state differs")
	}
}

// TestConfigInputShrinksTimeline: a smaller in-memory timeline keeps the
// newest events and counts the rest as dropped; sequence numbers go on.
func TestConfigInputShrinksTimeline(t *testing.T) {
	cp := configTestCP(t)
	for range 5 {
		if _, _, err := doSubmit(cp, testEpoch, SubmitInput{Spec: TaskSpec{Kind: KindSleep}}); err != nil {
			t.Fatal(err)
		}
	}
	last := cp.Timeline().LastSeq() // 1 mode + 5 queued
	cfg := cp.Config()
	cfg.TimelineEventsMax = 3
	if _, err := cp.Apply(testEpoch, ConfigInput{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	got := cp.Timeline().Since(0, 0)
	if len(got) != 3 || got[2].Seq != last+1 || got[2].Type != EventConfigChanged || got[0].Seq != last-1 ||
		cp.Timeline().Dropped() != last+1-3 {
		t.Fatalf("timeline %+v dropped %d", got, cp.Timeline().Dropped())
	}
	if got[2].Reason != "TimelineEventsMax 10000→3" {
		t.Fatalf("reason %q", got[2].Reason)
	}
}

// TestConfigInputProperty: over random inputs and config changes, a
// refused config changes nothing, an accepted one is the config from then
// on (but for the mode and the prefix, which it never changes), no queued
// task is ever dropped by a change, and the state exports and restores.
func TestConfigInputProperty(t *testing.T) {
	gens := inputGens()
	kinds := []string{"submit", "submit", "heartbeat", "heartbeat", "tick", "cancel", "set_mode", "config", "config"}
	rapid.Check(t, func(t *rapid.T) {
		cfg := DefaultConfig()
		cfg.QueueCapacity, cfg.TasksMax = 8, 10
		cp, _ := NewControlPlane(cfg, testEpoch)
		at := testEpoch
		for range rapid.IntRange(10, 80).Draw(t, "inputs") {
			at = at.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "seconds")) * time.Second)
			kind := rapid.SampledFrom(kinds).Draw(t, "kind")
			in := gens[kind].Draw(t, kind)
			ci, isConfig := in.(ConfigInput)
			if !isConfig {
				_, _ = cp.Apply(at, in)
				cp.TakeOutbox()
				continue
			}
			before, depth, seq := cp.StateHash(), cp.QueueDepth(), cp.Timeline().LastSeq()
			old := cp.Config()
			mode, _, _ := cp.Mode()
			_, err := cp.Apply(at, ci)
			want := ci.Config
			want.InitialMode, want.TaskIDPrefix = old.InitialMode, old.TaskIDPrefix
			diff := ConfigDiff(old, want)
			switch {
			case err != nil:
				if !errors.Is(err, ErrInvalid) || cp.StateHash() != before {
					t.Fatalf("refused with %v; state changed: %v", err, cp.StateHash() != before)
				}
				if want.Validate() == nil && want.Health == old.Health {
					t.Fatalf("a valid config was refused: %v", err)
				}
			case len(diff) == 0:
				if cp.StateHash() != before {
					t.Fatal("an equal config changed the state")
				}
			default:
				if cp.Config() != want {
					t.Fatalf("config %+v, want %+v", cp.Config(), want)
				}
				e := cp.Timeline().Since(seq, 0)
				if len(e) != 1 || e[0].Type != EventConfigChanged || e[0].Count != len(diff) {
					t.Fatalf("events %+v for %d changes", e, len(diff))
				}
			}
			if m, _, _ := cp.Mode(); m != mode || cp.QueueDepth() != depth {
				t.Fatalf("mode %s→%s, depth %d→%d", mode, m, depth, cp.QueueDepth())
			}
		}
		b, err := cp.Export()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Restore(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if back.StateHash() != cp.StateHash() {
			t.Fatal("restore differs")
		}
	})
}
