package swarm

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/sim"
)

// Check is an extra invariant over a finished run (tests inject failures
// with it); nil means none.
type Check func(s Shape, res *sim.Result) error

// Outcome is one run of a shape, reduced to what a swarm reports.
type Outcome struct {
	Shape       Shape
	Simulated   time.Duration // virtual time covered
	SimEvents   uint64
	Submitted   int
	Fired       map[core.FaultPoint]int
	StuckLeases uint64 // leases the cp expired (timeout + grace)
	// Failure is the failure's class (an invariant name, "panic" or
	// "check"); Err its full text with the last trace lines. Both are empty
	// for a passing run.
	Failure string
	Err     string
}

// Failed reports whether the run failed.
func (o Outcome) Failed() bool { return o.Failure != "" }

// Run runs one shape. The simulator never recovers from a panic in the
// code it drives; the swarm does, to report it as a failing run.
func Run(s Shape, check Check) Outcome { return RunTraced(s, check, nil) }

// RunTraced is Run with the run's JSON-lines trace written to trace.
func RunTraced(s Shape, check Check, trace io.Writer) (out Outcome) {
	out.Shape = s
	if err := s.Validate(); err != nil {
		out.Failure, out.Err = "shape", err.Error()
		return out
	}
	defer func() {
		if p := recover(); p != nil {
			out.Failure = "panic"
			out.Err = fmt.Sprintf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	o := Build(s)
	o.Trace = trace
	res, err := sim.Run(o)
	out.Simulated, out.SimEvents, out.Submitted, out.Fired = res.End, res.SimEvents, res.Submitted, res.FaultPointsFired
	out.StuckLeases = res.Stats.StuckLeases
	var v *sim.Violation
	switch {
	case errors.As(err, &v):
		out.Failure, out.Err = v.Invariant, v.Error()
	case err != nil:
		out.Failure, out.Err = "options", err.Error()
	case !res.LivenessChecked && res.Submitted > 0 && res.CPGenerations == 1:
		// (After a restart the fresh cp may have had no work to owe.)
		out.Failure, out.Err = "liveness-unchecked", "the run ended before liveness was owed for any task"
	case check != nil:
		if err := check(s, &res); err != nil {
			out.Failure, out.Err = "check", err.Error()
		}
	}
	return out
}

// Headline is the first line of a failure.
func (o Outcome) Headline() string {
	h, _, _ := strings.Cut(o.Err, "\n")
	return h
}

// Shrink reduces a failing shape greedily: it tries smaller variants in a
// fixed order (whole groups of fault kinds first, then single kinds, fewer
// agents, zones, slots and tasks, a shorter active phase, lower
// intensities and gentler task settings) and moves to the first that still
// fails the same way (fails decides), until no variant does or attempts
// run out. It returns the smallest failing shape found and the attempts
// used. Every step makes the shape strictly smaller, so it terminates.
func Shrink(s Shape, fails func(Shape) bool, attempts int) (Shape, int) {
	used := 0
	for used < attempts {
		moved := false
		for _, c := range candidates(s) {
			if c.Validate() != nil {
				continue
			}
			used++
			if fails(c) {
				s, moved = c, true
				break
			}
			if used >= attempts {
				break
			}
		}
		if !moved {
			break
		}
	}
	return s, used
}

// candidates are s's smaller variants, biggest reductions first.
func candidates(s Shape) []Shape {
	var out []Shape
	with := func(edit func(*Shape)) {
		c := s
		c.Faults = append([]Fault(nil), s.Faults...)
		edit(&c)
		out = append(out, c)
	}
	// Delta debugging over the fault kinds: drop halves, quarters, ...,
	// then single kinds.
	for n := len(s.Faults) / 2; n >= 1; n /= 2 {
		for lo := 0; lo < len(s.Faults); lo += n {
			hi := min(lo+n, len(s.Faults))
			with(func(c *Shape) { c.Faults = append(c.Faults[:lo:lo], s.Faults[hi:]...) })
		}
	}
	ints := func(cur, floor int) []int { // floor, cur/2, cur-1: distinct, below cur
		var vs []int
		for _, v := range []int{floor, cur / 2, cur - 1} {
			if v >= floor && v < cur && !containsInt(vs, v) {
				vs = append(vs, v)
			}
		}
		return vs
	}
	for _, v := range ints(s.Agents, 1) {
		with(func(c *Shape) {
			c.Agents, c.Zones = v, min(c.Zones, v)
			c.SmallZones = min(c.SmallZones, c.Zones-1)
		})
	}
	for _, v := range ints(s.Zones, 1) {
		with(func(c *Shape) { c.Zones, c.SmallZones = v, min(c.SmallZones, v-1) })
	}
	for _, v := range ints(s.SmallZones, 0) {
		with(func(c *Shape) { c.SmallZones = v })
	}
	for _, v := range ints(s.Slots, 1) {
		with(func(c *Shape) { c.Slots = v })
	}
	for _, v := range ints(s.Tasks, 0) {
		with(func(c *Shape) { c.Tasks = v })
	}
	for _, v := range ints(int(s.Active/time.Second), int(ActiveMin/time.Second)) {
		// Shorter at the same rate: a shorter run with all the tasks
		// would be an overload, another failure.
		with(func(c *Shape) {
			c.Active = time.Duration(v) * time.Second
			c.Tasks = int(int64(s.Tasks) * int64(c.Active) / int64(s.Active))
		})
	}
	for i, f := range s.Faults {
		for _, v := range ints(f.Percent, 1) {
			with(func(c *Shape) { c.Faults[i].Percent = v })
		}
	}
	for _, v := range ints(s.TaskFaultMax, 1) {
		with(func(c *Shape) { c.TaskFaultMax = v })
	}
	for _, v := range ints(s.Attempts, 1) {
		with(func(c *Shape) { c.Attempts = v })
	}
	for _, v := range ints(int(s.TaskMax/time.Second), 1) {
		with(func(c *Shape) { c.TaskMax = time.Duration(v) * time.Second })
	}
	for _, v := range ints(s.TimeoutSeconds, 1) {
		with(func(c *Shape) { c.TimeoutSeconds = v })
	}
	return out
}

func containsInt(vs []int, v int) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// SameFailure is Shrink's usual predicate: the variant fails with the same
// failure class as the original.
func SameFailure(failure string, check Check) func(Shape) bool {
	return func(s Shape) bool { return Run(s, check).Failure == failure }
}
