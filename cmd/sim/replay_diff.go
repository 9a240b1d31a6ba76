package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// diffListMax bounds the itemized differences of each kind.
const diffListMax = 20

// writeDiff prints how the what-if run's decisions and outcomes differ from
// the recorded one: quarantines, isolations, mode changes (event counts and
// which agents, domains, modes), and each task whose final state differs.
// Everything is sorted: the same inputs print the same bytes.
func writeDiff(w io.Writer, changed []string, real, what cp.ReplayResult) {
	fmt.Fprintf(w, "what-if %s, from index %d to %d\n", strings.Join(changed, " "), real.Start, real.AppliedIndex)
	kinds := []struct {
		name  string
		match func(core.Event) bool
		key   func(core.Event) string
	}{
		{"quarantines", is(core.EventAgentQuarantined), func(e core.Event) string { return string(e.AgentID) }},
		{"releases", is(core.EventAgentReleased), func(e core.Event) string { return string(e.AgentID) }},
		{"isolations", is(core.EventDomainIsolated), func(e core.Event) string { return e.Domain }},
		{"domain panics", is(core.EventDomainPanic), func(e core.Event) string { return e.Domain }},
		{"mode changes", is(core.EventModeChanged), func(e core.Event) string { return e.From + "→" + e.To }},
		{"reschedule pauses", is(core.EventSchedulerReschedulingPaused), func(core.Event) string { return "paused" }},
		{"requeues", func(e core.Event) bool { return e.Type == core.EventTaskQueued && e.From != "" }, func(e core.Event) string { return string(e.TaskID) }},
	}
	fmt.Fprintf(w, "\n  %-18s %8s %8s\n", "decision", "recorded", "what-if")
	var details []string
	for _, k := range kinds {
		a, b := tally(real.Events, k.match, k.key), tally(what.Events, k.match, k.key)
		na, nb := total(a), total(b)
		mark := ""
		if na != nb {
			mark = fmt.Sprintf("  (%+d)", nb-na)
		}
		fmt.Fprintf(w, "  %-18s %8d %8d%s\n", k.name, na, nb, mark)
		for _, key := range unionKeys(a, b) {
			if a[key] != b[key] {
				details = append(details, fmt.Sprintf("%s %s: recorded %d, what-if %d", k.name, key, a[key], b[key]))
			}
		}
	}
	ra, wa := taskStates(real.Core), taskStates(what.Core)
	outcome := func(m map[core.TaskID]core.TaskState) map[string]int {
		c := map[string]int{}
		for _, s := range m {
			c[s.String()]++
		}
		return c
	}
	oa, ob := outcome(ra), outcome(wa)
	fmt.Fprintf(w, "\n  %-18s %8s %8s\n", "task outcome", "recorded", "what-if")
	for _, s := range unionKeys(oa, ob) {
		mark := ""
		if oa[s] != ob[s] {
			mark = fmt.Sprintf("  (%+d)", ob[s]-oa[s])
		}
		fmt.Fprintf(w, "  %-18s %8d %8d%s\n", s, oa[s], ob[s], mark)
	}
	var taskDiffs []string
	for _, id := range unionKeys(ra, wa) {
		if stateName(ra, id) != stateName(wa, id) {
			taskDiffs = append(taskDiffs, fmt.Sprintf("task %s: recorded %s, what-if %s", id, stateName(ra, id), stateName(wa, id)))
		}
	}
	fmt.Fprintf(w, "\ndifferences: %d decisions, %d tasks\n", len(details), len(taskDiffs))
	for _, l := range [][]string{details, taskDiffs} {
		for i, d := range l {
			if i == diffListMax {
				fmt.Fprintf(w, "  … %d more\n", len(l)-diffListMax)
				break
			}
			fmt.Fprintln(w, "  "+d)
		}
	}
	if real.StateHash == what.StateHash {
		fmt.Fprintln(w, "\nthe what-if ends in the recorded state")
	}
}

func is(t core.EventType) func(core.Event) bool {
	return func(e core.Event) bool { return e.Type == t }
}

func tally(es []core.Event, match func(core.Event) bool, key func(core.Event) string) map[string]int {
	m := map[string]int{}
	for _, e := range es {
		if match(e) {
			m[key(e)]++
		}
	}
	return m
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func unionKeys[K ~string, V any](a, b map[K]V) []K {
	var ks []K
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

func stateName(m map[core.TaskID]core.TaskState, id core.TaskID) string {
	if s, ok := m[id]; ok {
		return s.String()
	}
	return "(not held)"
}

// taskStates is every task the core holds, by id.
func taskStates(c *core.ControlPlane) map[core.TaskID]core.TaskState {
	m := map[core.TaskID]core.TaskState{}
	after := core.TaskID("")
	for {
		page := c.Tasks(core.TaskFilter{After: after, Limit: 1000})
		for _, t := range page {
			m[t.ID] = t.State
		}
		if len(page) < 1000 {
			return m
		}
		after = page[len(page)-1].ID
	}
}
