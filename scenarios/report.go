package scenarios

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// notable reports whether a timeline event belongs in the readable timeline.
func notable(e sim.TimelineEvent) bool {
	switch e.Kind {
	case core.EventDomain, core.EventQueue:
		return true
	case core.EventMode: // mode changes and scheduler.* (rescheduling paused, resumed)
		return e.Type != core.EventModeChanged || e.Seq > 1 // not the initial mode of each cp
	}
	switch e.Type {
	case core.EventAgentQuarantined, core.EventAgentReleased, core.EventAgentLost, core.EventAgentRestarted, core.EventTaskDead, core.EventTaskFailed:
		return true
	case core.EventTaskQueued:
		return e.From != "" // a requeue
	}
	return false
}

func clock(d time.Duration) string {
	ms := d.Milliseconds()
	return fmt.Sprintf("%02d:%02d.%03d", ms/60000, ms/1000%60, ms%1000)
}

// Timeline returns the readable timeline: simulator notes (faults, heals,
// operator actions) and notable control-plane events, in time order.
func (r Report) Timeline() []string {
	var out []string
	notes := r.Result.Notes
	ni := 0
	flush := func(until time.Duration, inclusive bool) {
		for ni < len(notes) && (notes[ni].At < until || inclusive && notes[ni].At == until) {
			out = append(out, fmt.Sprintf("%s  sim      %s", clock(notes[ni].At), notes[ni].Text))
			ni++
		}
	}
	for _, e := range r.Result.Events {
		if !notable(e) {
			continue
		}
		t := e.Time.Sub(sim.Epoch())
		flush(t, true)
		out = append(out, fmt.Sprintf("%s  cp%d      %s", clock(t), e.Gen, e.Summary()))
	}
	flush(1<<62, true)
	return out
}

// Write prints the timeline (unless quiet) and the report.
func (r Report) Write(w io.Writer, quiet bool) error {
	var b strings.Builder
	res := r.Result
	fmt.Fprintf(&b, "scenario %s  seed %d  agents %d  zones %d  duration %v\n", r.Scenario, r.Params.Seed, r.Params.Agents, r.Params.Zones, r.Params.Duration)
	if !quiet {
		b.WriteString("\ntimeline:\n")
		for _, l := range r.Timeline() {
			b.WriteString("  " + l + "\n")
		}
	}
	b.WriteString("\nexpectations:\n")
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s  %s\n", mark, c.Name)
		if c.Detail != "" {
			for _, l := range strings.Split(c.Detail, "\n") {
				b.WriteString("        " + l + "\n")
			}
		}
	}
	refused := 0
	for _, n := range res.Refused {
		refused += n
	}
	b.WriteString("\nreport:\n")
	fmt.Fprintf(&b, "  tasks submitted     %d (replayed %d, refused %d %s)\n", res.Submitted, res.Replayed, refused, refusals(res.Refused))
	fmt.Fprintf(&b, "  succeeded           %d\n", res.Succeeded)
	fmt.Fprintf(&b, "  failed              %d\n", res.Failed)
	fmt.Fprintf(&b, "  dead                %d\n", res.Dead)
	fmt.Fprintf(&b, "  cancelled           %d\n", res.Cancelled)
	fmt.Fprintf(&b, "  unfinished          %d\n", res.NonTerminal)
	fmt.Fprintf(&b, "  lost                %d\n", res.Lost)
	fmt.Fprintf(&b, "  duplicate runs      %d\n", res.DuplicateExecutions)
	fmt.Fprintf(&b, "  requeues            %d\n", res.Requeues)
	fmt.Fprintf(&b, "  max queue depth     %d\n", res.MaxQueueDepth)
	fmt.Fprintf(&b, "  max oldest task age %.1fs\n", res.MaxOldestAgeSeconds)
	fmt.Fprintf(&b, "  quarantines         %d\n", countType(res, core.EventAgentQuarantined))
	fmt.Fprintf(&b, "  final mode          %s\n", res.Final.Mode)
	if len(res.Recoveries) > 0 {
		fmt.Fprintf(&b, "  cp recoveries       %d (from %d snapshots; in flight at crashes: %d committed, %d lost; %d submissions found no cp)\n",
			len(res.Recoveries), res.Snapshots, res.InFlightCommitted, res.InFlightLost, res.Unavailable)
	}
	fmt.Fprintf(&b, "  sim events          %d (virtual %v)\n", res.SimEvents, res.End)
	fmt.Fprintf(&b, "  trace               %s (%d lines, %d bytes)\n", res.TraceHash, res.TraceLines, res.TraceBytes)
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\nresult: %s\n", verdict)
	if !r.Passed {
		fmt.Fprintf(&b, "repro: go run ./cmd/sim -scenario=%s -seed=%d -agents=%d -zones=%d -duration=%v\n",
			r.Scenario, r.Params.Seed, r.Params.Agents, r.Params.Zones, r.Params.Duration)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func refusals(m map[core.RefusalKind]int) string {
	var parts []string
	for _, k := range core.RefusalKinds() {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func countType(r sim.Result, typ core.EventType) int {
	n := 0
	for _, e := range r.Events {
		if e.Type == typ {
			n++
		}
	}
	return n
}
