package core

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

type idemModelEntry struct {
	key       string
	task      TaskID
	spec      TaskSpec
	expiresAt time.Time
}

// idemModel is a list of live entries in insertion order.
type idemModel struct {
	ttl     time.Duration
	max     int
	entries []idemModelEntry
	evicted uint64
}

func (m *idemModel) expire(now time.Time) {
	live := m.entries[:0]
	for _, e := range m.entries {
		if now.Before(e.expiresAt) {
			live = append(live, e)
		}
	}
	m.entries = live
}

func (m *idemModel) find(key string) (idemModelEntry, bool) {
	for _, e := range m.entries {
		if e.key == key {
			return e, true
		}
	}
	return idemModelEntry{}, false
}

var idemKeys = []string{"k1", "k2", "k3", "k4", "k5"}

func idemSpec(n int) TaskSpec {
	return TaskSpec{Kind: KindSleep, DurationMS: int64(n), Priority: PriorityNormal, TimeoutSeconds: 60, MaxAttempts: 3}
}

func TestIdempotencyCacheStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ttl := time.Duration(rapid.IntRange(1, 20).Draw(t, "ttl_s")) * time.Second
		maxKeys := rapid.IntRange(1, 4).Draw(t, "max")
		c := NewIdempotencyCache(ttl, maxKeys)
		m := &idemModel{ttl: ttl, max: maxKeys}
		now := testEpoch
		tasks := 0

		t.Repeat(map[string]func(*rapid.T){
			"submit": func(t *rapid.T) {
				// What Submit does: look up, and record a new key.
				key := rapid.SampledFrom(idemKeys).Draw(t, "key")
				spec := idemSpec(rapid.IntRange(1, 2).Draw(t, "spec"))
				m.expire(now)
				want, found := m.find(key)
				id, ok, err := c.Lookup(now, key, spec)
				switch {
				case ok != found:
					t.Fatalf("Lookup(%s) found=%v, model %v", key, ok, found)
				case found && !want.spec.Equal(spec):
					if !errors.Is(err, ErrIdempotencyConflict) || id != want.task {
						t.Fatalf("Lookup(%s) other spec: (%s, %v), want conflict naming %s", key, id, err, want.task)
					}
					return
				case found:
					if err != nil || id != want.task {
						t.Fatalf("Lookup(%s) same spec: (%s, %v), want %s", key, id, err, want.task)
					}
					return
				case err != nil:
					t.Fatalf("Lookup(%s) of a fresh key: %v", key, err)
				}
				tasks++
				task := TaskID(fmt.Sprintf("t%d", tasks))
				c.Put(now, key, task, spec)
				if len(m.entries) >= m.max {
					m.entries = m.entries[1:] // FIFO: the oldest goes
					m.evicted++
				}
				m.entries = append(m.entries, idemModelEntry{key: key, task: task, spec: spec, expiresAt: now.Add(ttl)})
			},
			"forget": func(t *rapid.T) {
				key := rapid.SampledFrom(idemKeys).Draw(t, "key")
				c.Forget(key)
				for i, e := range m.entries {
					if e.key == key {
						m.entries = append(m.entries[:i:i], m.entries[i+1:]...)
						break
					}
				}
			},
			"advance": func(t *rapid.T) {
				now = now.Add(time.Duration(rapid.Int64Range(0, int64(ttl)).Draw(t, "d")))
			},
			"expire": func(t *rapid.T) {
				c.Expire(now)
				m.expire(now)
				if c.Len() != len(m.entries) {
					t.Fatalf("Len after Expire %d, model %d", c.Len(), len(m.entries))
				}
			},
			"": func(t *rapid.T) {
				if c.Len() > maxKeys {
					t.Fatalf("Len %d above bound %d", c.Len(), maxKeys)
				}
				if c.Evicted() != m.evicted {
					t.Fatalf("Evicted %d, model %d", c.Evicted(), m.evicted)
				}
				// Every key the model holds live is answered the same way.
				// (Len counts lazily expired keys until something expires them.)
				c.Expire(now)
				m.expire(now)
				for _, e := range m.entries {
					if id, ok, err := c.Lookup(now, e.key, e.spec); !ok || err != nil || id != e.task {
						t.Fatalf("Lookup(%s) = (%s, %v, %v), model %s", e.key, id, ok, err, e.task)
					}
				}
				if c.Len() != len(m.entries) {
					t.Fatalf("Len %d, model %d", c.Len(), len(m.entries))
				}
			},
		})
	})
}

func TestIdempotencyCache(t *testing.T) {
	spec1, spec2 := idemSpec(1), idemSpec(2)
	tests := []struct {
		name string
		run  func(t *testing.T, c *IdempotencyCache)
	}{
		{"same key and spec returns the same task", func(t *testing.T, c *IdempotencyCache) {
			c.Put(testEpoch, "k", "t1", spec1)
			if id, ok, err := c.Lookup(testEpoch.Add(time.Second), "k", spec1); !ok || err != nil || id != "t1" {
				t.Fatalf("(%s, %v, %v)", id, ok, err)
			}
		}},
		{"same key other spec is a conflict", func(t *testing.T, c *IdempotencyCache) {
			c.Put(testEpoch, "k", "t1", spec1)
			if _, _, err := c.Lookup(testEpoch, "k", spec2); !errors.Is(err, ErrIdempotencyConflict) {
				t.Fatalf("err %v", err)
			}
		}},
		{"expires exactly at the TTL", func(t *testing.T, c *IdempotencyCache) {
			c.Put(testEpoch, "k", "t1", spec1)
			if _, ok, _ := c.Lookup(testEpoch.Add(time.Hour-1), "k", spec1); !ok {
				t.Fatal("gone before the TTL")
			}
			if _, ok, _ := c.Lookup(testEpoch.Add(time.Hour), "k", spec2); ok {
				t.Fatal("still there at the TTL")
			}
		}},
		{"the bound evicts the oldest first", func(t *testing.T, c *IdempotencyCache) {
			for i := range 4 {
				c.Put(testEpoch, fmt.Sprintf("k%d", i), TaskID(fmt.Sprintf("t%d", i)), spec1)
			}
			if _, ok, _ := c.Lookup(testEpoch, "k0", spec1); ok {
				t.Fatal("k0 survived the bound")
			}
			if _, ok, _ := c.Lookup(testEpoch, "k1", spec1); !ok || c.Len() != 3 || c.Evicted() != 1 {
				t.Fatalf("k1 ok=%v len %d evicted %d", ok, c.Len(), c.Evicted())
			}
		}},
		{"forget frees the key for another spec", func(t *testing.T, c *IdempotencyCache) {
			c.Put(testEpoch, "k", "t1", spec1)
			c.Forget("k")
			if _, ok, err := c.Lookup(testEpoch, "k", spec2); ok || err != nil {
				t.Fatalf("(%v, %v)", ok, err)
			}
			c.Put(testEpoch, "k", "t2", spec2)
			if id, _, err := c.Lookup(testEpoch, "k", spec2); id != "t2" || err != nil {
				t.Fatalf("(%s, %v)", id, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, NewIdempotencyCache(time.Hour, 3)) })
	}
}
