package net

import (
	"net/url"
	"slices"
	"strings"
	"sync"
)

// CPTargets are the control planes an agent may talk to: the -cp list,
// plus the leaders followers named. One is current: every exchange goes to
// it. A follower answers the agent protocol "503 not_leader" with the
// leader's URL, which becomes current (learned if it was not in the list);
// a cp that cannot be reached gives way to the next in the list, so an
// agent finds the new leader on its own when the old one dies. Safe for
// concurrent use.
type CPTargets struct {
	mu   sync.Mutex
	urls []string
	cur  int
}

// cpTargetsMax bounds the URLs learned from not_leader answers.
const cpTargetsMax = 16

// NewCPTargets returns the targets for urls (at least one; the first is
// current). Trailing slashes are dropped.
func NewCPTargets(urls []string) *CPTargets {
	t := &CPTargets{}
	for _, u := range urls {
		t.add(u)
	}
	return t
}

func (t *CPTargets) add(u string) int {
	u = strings.TrimRight(u, "/")
	if i := slices.Index(t.urls, u); i >= 0 {
		return i
	}
	t.urls = append(t.urls, u)
	return len(t.urls) - 1
}

// Current is the cp exchanges go to now.
func (t *CPTargets) Current() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.urls[t.cur]
}

// URLs are every cp known, the -cp list first.
func (t *CPTargets) URLs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.urls)
}

// Redirect makes leader current after from answered not_leader naming it.
// It reports whether the current cp changed (a leader URL that is empty,
// not an http(s) URL, or from itself changes nothing).
func (t *CPTargets) Redirect(from, leader string) bool {
	u, err := url.Parse(leader)
	if leader == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	leader = strings.TrimRight(leader, "/")
	if leader == strings.TrimRight(from, "/") {
		return false
	}
	if slices.Index(t.urls, leader) < 0 && len(t.urls) >= cpTargetsMax {
		return false
	}
	t.cur = t.add(leader)
	return true
}

// Unreachable moves on from failed to the next cp of the list, if failed
// is still the current one (another exchange may have moved on already).
func (t *CPTargets) Unreachable(failed string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.urls[t.cur] == strings.TrimRight(failed, "/") && len(t.urls) > 1 {
		t.cur = (t.cur + 1) % len(t.urls)
	}
}
