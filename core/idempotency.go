package core

import "time"

// IdempotencyCache maps idempotency keys to the task they created, for a TTL
// and up to a bound. Entries expire in insertion order (the TTL is the same
// for all), so a FIFO ring both expires and evicts.
type IdempotencyCache struct {
	ttl     time.Duration
	max     int
	entries map[string]*idemEntry
	// order is a FIFO of keys by insertion; head is the oldest.
	order   []*idemEntry
	head    int
	evicted uint64 // entries pushed out by the bound before their TTL
}

type idemEntry struct {
	key       string
	task      TaskID
	spec      TaskSpec
	expiresAt time.Time
	live      bool
}

// NewIdempotencyCache returns an empty cache.
func NewIdempotencyCache(ttl time.Duration, maxKeys int) *IdempotencyCache {
	if !(ttl > 0 && maxKeys >= 1) {
		failf("idempotency: ttl %v max %d", ttl, maxKeys)
	}
	return &IdempotencyCache{ttl: ttl, max: maxKeys, entries: make(map[string]*idemEntry)}
}

// Lookup returns the task recorded for key at now. It returns
// ErrIdempotencyConflict if the key was used for another spec.
func (c *IdempotencyCache) Lookup(now time.Time, key string, spec TaskSpec) (TaskID, bool, error) {
	c.Expire(now)
	e, ok := c.entries[key]
	if !ok {
		return "", false, nil
	}
	if !e.spec.Equal(spec) {
		return e.task, true, ErrIdempotencyConflict
	}
	return e.task, true, nil
}

// Put records key → task. The key must not be present (Lookup first).
func (c *IdempotencyCache) Put(now time.Time, key string, task TaskID, spec TaskSpec) {
	c.Expire(now)
	_, dup := c.entries[key]
	if dup {
		failf("idempotency: duplicate put of key %q", key)
	}
	for len(c.entries) >= c.max {
		c.popOldest()
		c.evicted++
	}
	e := &idemEntry{key: key, task: task, spec: spec, expiresAt: now.Add(c.ttl), live: true}
	c.entries[key] = e
	c.order = append(c.order, e)
}

// Forget drops key, if present (used when the task it points to is refused).
func (c *IdempotencyCache) Forget(key string) {
	if e, ok := c.entries[key]; ok {
		e.live = false
		delete(c.entries, key)
	}
}

func (c *IdempotencyCache) popOldest() {
	for c.head < len(c.order) {
		e := c.order[c.head]
		c.order[c.head] = nil
		c.head++
		if e.live {
			e.live = false
			delete(c.entries, e.key)
			break
		}
	}
	c.compact()
}

// compact reclaims the consumed prefix of the FIFO once it dominates.
func (c *IdempotencyCache) compact() {
	if c.head > 64 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0:0], c.order[c.head:]...)
		c.head = 0
	}
}

// Expire drops every entry whose TTL has passed at now.
func (c *IdempotencyCache) Expire(now time.Time) {
	for c.head < len(c.order) {
		e := c.order[c.head]
		if e.live && now.Before(e.expiresAt) {
			break
		}
		c.order[c.head] = nil
		c.head++
		if e.live {
			e.live = false
			delete(c.entries, e.key)
		}
	}
	c.compact()
}

// Len is the number of live keys.
func (c *IdempotencyCache) Len() int { return len(c.entries) }

// Evicted counts entries pushed out by the bound before their TTL.
func (c *IdempotencyCache) Evicted() uint64 { return c.evicted }
