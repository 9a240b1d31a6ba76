package core

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// ConfigInput changes the config of a running control plane: the driver
// applies it when it starts (or becomes the leader) with settings that
// differ from the replicated config, so the change is part of the log and a
// replay sees it where it happened.
//
// Config.InitialMode never changes the mode of an existing control plane
// (the persisted mode stands: an operator's READ_ONLY survives a restart)
// and Config.TaskIDPrefix is a start's (StartInput); both are ignored here,
// as are the FaultPoints. Every other field takes effect at once:
//
//   - A bound lowered below the current content drops nothing that is
//     state of work: a smaller QueueCapacity refuses new submissions
//     (ErrQueueFull) until the queue has drained below it; a smaller
//     TasksMax forgets terminal tasks as usual, never live ones; a smaller
//     AgentsMax refuses new agents only; a smaller IdempotencyKeysMax
//     evicts the oldest keys as new ones come.
//   - The in-memory timeline and the outcome windows are bounded caches of
//     history: a smaller TimelineEventsMax or ResultsMax keeps their newest
//     entries (the timeline counts the others as dropped).
//   - Health.Window and Health.Buckets shape every agent's health window
//     and cannot change once the control plane exists: refused.
//
// An invalid config (Validate) is refused and changes nothing. A config
// equal to the current one (ignored fields aside) changes nothing and
// records nothing; otherwise a config.changed event names every changed
// field, old→new.
type ConfigInput struct {
	Config Config `json:"config"`
}

func (ConfigInput) inputKind() string { return "config" }

// configFixed are the fields of a config that cannot change once a control
// plane exists, by their ConfigDiff names.
var configFixed = []string{"Health.Window", "Health.Buckets"}

func (cp *ControlPlane) applyConfig(now time.Time, in ConfigInput) error {
	cfg := in.Config
	cfg.InitialMode, cfg.TaskIDPrefix, cfg.FaultPoints = cp.cfg.InitialMode, cp.cfg.TaskIDPrefix, cp.cfg.FaultPoints
	if err := cfg.Validate(); err != nil {
		return err
	}
	diff := ConfigDiff(cp.cfg, cfg)
	if len(diff) == 0 {
		return nil
	}
	for _, d := range diff {
		for _, f := range configFixed {
			if d.Field == f {
				return fmt.Errorf("%w: config: %s cannot change once the state exists (%s, asked %s)", ErrInvalid, f, d.Old, d.New)
			}
		}
	}
	cp.advance(now)
	cp.cfg = cfg
	cp.agentsChanged()
	cp.queue.capacity, cp.queue.aging = cfg.QueueCapacity, cfg.AgingInterval
	cp.idem.ttl, cp.idem.max = cfg.IdempotencyTTL, cfg.IdempotencyKeysMax
	cp.timeline.resize(cfg.TimelineEventsMax)
	for _, a := range cp.agentList {
		a.health.cfg = cfg.Health
		a.health.results.setMax(cfg.Health.ResultsMax)
	}
	for _, name := range cp.domainNames {
		h := cp.domains[name].health
		h.cfg = cfg.Domains
		h.results.setMax(cfg.Domains.ResultsMax)
	}
	parts := make([]string, len(diff))
	for i, d := range diff {
		parts[i] = d.String()
	}
	cp.record(Event{Kind: EventConfig, Type: EventConfigChanged, Actor: ActorConfig, Reason: strings.Join(parts, ", "), Count: len(diff)})
	return nil
}

// setMax bounds w to max entries from now on, keeping the newest.
func (w *outcomeWindow) setMax(max int) {
	w.max = max
	if n := len(w.entries); n > max {
		w.entries = append(w.entries[:0], w.entries[n-max:]...)
		w.recount()
	}
}

// resize bounds t to max events from now on, keeping the newest; the
// others count as dropped.
func (t *Timeline) resize(max int) {
	if max == len(t.ring) {
		return
	}
	keep := t.Since(0, 0)
	if len(keep) > max {
		t.dropped += uint64(len(keep) - max)
		keep = keep[len(keep)-max:]
	}
	t.ring = make([]Event, max)
	t.start, t.n = 0, copy(t.ring, keep)
}

// ConfigChange is one field of a config that differs between two configs.
type ConfigChange struct {
	Field    string // Go field path, e.g. "QueueCapacity" or "Domains.MinOpenCapacity"
	Old, New string
}

func (c ConfigChange) String() string { return c.Field + " " + c.Old + "→" + c.New }

// ConfigDiff lists the fields of b that differ from a, in declaration
// order, but for the ones a start sets anyway and ConfigInput ignores
// (InitialMode, TaskIDPrefix, FaultPoints).
func ConfigDiff(a, b Config) []ConfigChange {
	var out []ConfigChange
	diffStruct("", reflect.ValueOf(a), reflect.ValueOf(b), &out)
	return out
}

func diffStruct(prefix string, a, b reflect.Value, out *[]ConfigChange) {
	for i := range a.NumField() {
		f := a.Type().Field(i)
		switch f.Name {
		case "InitialMode", "TaskIDPrefix", "FaultPoints":
			if prefix == "" {
				continue
			}
		}
		fa, fb := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
			diffStruct(prefix+f.Name+".", fa, fb, out)
			continue
		}
		if !fa.Equal(fb) {
			*out = append(*out, ConfigChange{Field: prefix + f.Name, Old: fmt.Sprint(fa.Interface()), New: fmt.Sprint(fb.Interface())})
		}
	}
}
