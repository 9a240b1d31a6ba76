package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// The simulator's own fault points, on the network between the state
// machines; core's are listed by core.CoreFaultPoints.
const (
	// FaultAckDelayed: an agent's answer to an assignment is held back by up
	// to twice the cp's AssignTimeout (the poll carrying it travels that
	// much longer; past the agent's request timeout the agent polls again
	// with it), so it often arrives after the cp gave up on the assignment
	// and moved the lease.
	FaultAckDelayed core.FaultPoint = "ack-delayed"
	// FaultHeartbeatLate: a heartbeat reaches the cp only after the agent's
	// request timed out (late by up to AssignTimeout + HeartbeatTimeout), so
	// what it reports races the reassignment of the agent's work; its reply
	// is lost with the request.
	FaultHeartbeatLate core.FaultPoint = "heartbeat-late"
	// FaultBatchDuplicated: a poll's cursor and acks are lost on the way
	// (the cp sees the cursor from before the agent's last batch), so the
	// cp sends that batch again; the agent's Inbox skips what it already
	// processed, and its heartbeats confirm the attempts the lost acks
	// answered.
	FaultBatchDuplicated core.FaultPoint = "batch-duplicated"
)

// FaultPointNames lists every fault point the simulator can turn on: core's
// and its own, in a fixed order.
func FaultPointNames() []core.FaultPoint {
	return append(core.CoreFaultPoints(), FaultAckDelayed, FaultHeartbeatLate, FaultBatchDuplicated)
}

// faultPoints decides fault points from a stream of its own, derived from
// the seed, so turning them on does not reshuffle the network or workload
// draws; a point with no probability draws nothing.
type faultPoints struct {
	s   *sim
	rng *rand.Rand
	off bool // healed: nothing fires any more
	// replaying: a recovering cp replays its log; its fault points decided
	// replies, not state, so nothing fires and nothing is drawn.
	replaying bool
}

var _ core.FaultPoints = (*faultPoints)(nil)

func newFaultPoints(s *sim) *faultPoints {
	return &faultPoints{s: s, rng: rand.New(rand.NewPCG(s.o.Seed, 0xfa017))}
}

// Fire is core.FaultPoints: it fires p with its configured probability,
// counts and traces every firing.
func (f *faultPoints) Fire(p core.FaultPoint, agent core.AgentID, task core.TaskID, attempt int) bool {
	pr := f.s.o.FaultPoints[p]
	if f.off || f.replaying || pr <= 0 || f.rng.Float64() >= pr {
		return false
	}
	s := f.s
	s.res.FaultPointsFired[p]++
	s.tr.begin(s.now, s.count, "fault_point")
	s.tr.str("point", string(p))
	s.tr.str("agent", string(agent))
	s.tr.str("task", string(task))
	if attempt != 0 {
		s.tr.int("attempt", int64(attempt))
	}
	s.tr.end()
	return true
}

// fire is Fire for the simulator's own points; it is false without fault
// points.
func (s *sim) fire(p core.FaultPoint, agent string, task core.TaskID, attempt int) bool {
	return s.fp != nil && s.fp.Fire(p, core.AgentID(agent), task, attempt)
}

// lateDelay draws how late a delayed message arrives, in (0, max].
func (s *sim) lateDelay(max time.Duration) time.Duration {
	return time.Duration(s.fp.rng.Int64N(int64(max))) + 1
}

func validateFaultPoints(ps map[core.FaultPoint]float64) error {
	keys := make([]core.FaultPoint, 0, len(ps))
	for p := range ps {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	known := FaultPointNames()
	for _, p := range keys {
		if !slices.Contains(known, p) {
			return fmt.Errorf("unknown fault point %q (known: %v)", p, known)
		}
		if pr := ps[p]; pr < 0 || pr > 1 {
			return fmt.Errorf("fault point %s: probability %v not in [0,1]", p, pr)
		}
	}
	return nil
}

// heal ends the run-long faults (Options.HealAt): the network heals and the
// fault points stop firing.
func (s *sim) heal() {
	n := s.o.HealedNetwork
	if n == (NetworkOptions{}) {
		n = DefaultNetwork()
	}
	s.o.Network = n
	if s.fp != nil {
		s.fp.off = true
	}
	s.note("heal: network and fault points back to normal")
	s.healed()
}
