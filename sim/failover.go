package sim

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// A replicated cp, modelled on the log (DESIGN.md "The simulator models the
// log, not raft"): the cp's replicas share one committed prefix (cpLog), and
// one of them, the leader of the current epoch, appends to it and talks to
// the agents. What the simulator applies is committed when applied: a
// proposal is committed (applied), refused (core refuses it: an entry
// still, and an error to its sender) or, when the leader is lost with it in
// flight, ambiguous: committed without its sender hearing so, or lost.
//
// FaultCPFailover loses the leader: the proposals in flight to it are drawn
// committed or lost, nothing reaches a cp during the election, and the new
// leader starts from the committed prefix. Its state is rebuilt from the
// log as a follower has it (the last snapshot plus the entries after it)
// and must be the old leader's to the byte (InvDurable); its outbox starts
// empty (what the old leader had not sent is gone), its clock is skewed
// (Fault.Skew) but never goes back, and its first input is
// core.TakeoverInput.

// Replicas is how many cp replicas a cp-failover run has: a new leader is
// one of the others (drawn).
const Replicas = 3

// Failover is one change of leader (cp-failover).
type Failover struct {
	// LostAt is when the old leader stopped, At when the new one took
	// over (the election lasted At-LostAt).
	LostAt time.Duration `json:"lost_at"`
	At     time.Duration `json:"at"`
	// Epoch is the new leader's; From and To are the replicas (cp1..).
	Epoch int    `json:"epoch"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Skew is the new leader's clock offset from the agents' time.
	Skew time.Duration `json:"skew"`
	// AppliedIndex is the committed prefix the new leader started from;
	// StateHash its state there, equal to the old leader's.
	AppliedIndex uint64 `json:"applied_index"`
	StateHash    string `json:"state_hash"`
	// Submissions in flight at the loss, by fate (never acknowledged).
	InFlightCommitted int `json:"in_flight_committed"`
	InFlightLost      int `json:"in_flight_lost"`
	// Heartbeats and assignment answers on their way to the old leader, by
	// fate: a committed one is applied and never answered.
	AgentCommitted int `json:"agent_committed"`
	AgentLost      int `json:"agent_lost"`
	// Assignments and heartbeat replies on their way from the old leader,
	// by fate.
	SentDelivered int `json:"sent_delivered"`
	SentDropped   int `json:"sent_dropped"`
	// Resent is how many unconfirmed assignments the new leader resent
	// (its cluster.takeover event's count).
	Resent int `json:"resent"`
}

// ReplicaName names replica i (1-based) as the cp's -node-id would.
func ReplicaName(i int) string { return fmt.Sprintf("cp%d", i) }

// loseLeader is fault i, a cp-failover: the leader stops now. The
// proposals in flight to it commit or are lost, and a new leader takes
// over at the fault's Until.
func (s *sim) loseLeader(i int) {
	f := s.o.Faults[i]
	d := &cpDown{fault: i, crashedAt: s.now, failover: true}
	if !s.beginDown(d, "fault: cp failover while no cp leads: nothing more to lose") {
		return
	}
	agentCommitted, agentLost := s.inFlightToLeader()
	if s.res.Violation != nil {
		return
	}
	d.agentCommitted, d.agentLost = agentCommitted, agentLost
	d.sentDelivered, d.sentDropped = s.inFlightFromLeader()
	s.takeDown(d) // connections to the old leader die with its leadership
	election := max(f.Until-s.now, 0)
	s.note(fmt.Sprintf("fault: cp leader %s (epoch %d) lost at applied index %d; election for %v (%d submissions in flight: %d committed, %d lost; to the leader: %d committed, %d lost; from it: %d delivered, %d dropped)",
		ReplicaName(s.log.leader), s.log.epoch, d.index, election, f.InFlight, d.committed, d.lost, agentCommitted, agentLost, d.sentDelivered, d.sentDropped))
	s.push(event{at: s.now + election, kind: evCPRecover, node: i})
}

// inFlightToLeader decides the fate of every heartbeat and poll (with the
// assignment answers it carries) on its way to the leader as it is lost: it
// reached the leader and was committed (applied; the answer, and whatever
// the leader would have sent with it, never leaves), or it is lost. Either
// way its delivery finds no connection. In (time, sequence) order, so the
// draws are the seed's.
func (s *sim) inFlightToLeader() (committed, lost int) {
	var evs []event
	for _, k := range s.q.queued() {
		e := s.q.slab[k.slot()]
		if e.kind == evDeliver && e.num == 1 && e.gen == uint64(s.cpGen) && e.msg != nil {
			evs = append(evs, e)
		}
	}
	slices.SortFunc(evs, func(a, b event) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq)) })
	for _, e := range evs {
		a, m := s.agents[e.node], &e.msg.m
		var ins []core.Input
		switch {
		case m.Kind == fnet.KindHeartbeat && m.Heartbeat != nil:
			ins = append(ins, *m.Heartbeat)
		case m.Kind == fnet.KindAssignAck && m.AssignAck != nil:
			ins = append(ins, *m.AssignAck)
		case m.Kind == kindPoll && len(e.msg.poll.Acks) > 0:
			for _, ack := range e.msg.poll.Acks {
				ins = append(ins, ack)
			}
		default:
			continue
		}
		fate := "lost"
		if a.up && a.cut == 0 && s.rng.IntN(2) == 0 {
			fate = "committed"
		}
		s.tr.begin(s.now, s.count, "agent_in_flight")
		s.tr.str("kind", string(m.Kind))
		s.tr.raw(a.trAgent)
		s.tr.str("fate", fate)
		s.tr.end()
		if fate == "lost" {
			lost++
			continue
		}
		committed++
		for _, in := range ins {
			_, _ = s.apply(in) // a refusal is committed too, and unanswered
		}
		s.dropOutbox()
		if s.res.Violation != nil {
			return committed, lost
		}
	}
	return committed, lost
}

// inFlightFromLeader decides the fate of every message on its way from the
// leader to an agent as it is lost (poll replies with their batches,
// heartbeat replies): its connection dies with the leader's process or
// partition, so it arrives or it does not, in (time, sequence) order. A
// dropped heartbeat reply is delivered to nobody (a generation no agent
// has); a dropped poll reply resets the agent's poll, which it makes again
// after its backoff (the reply, arriving, is stale).
func (s *sim) inFlightFromLeader() (delivered, dropped int) {
	var keys []heapKey
	for _, k := range s.q.queued() {
		e := &s.q.slab[k.slot()]
		if e.kind == evDeliver && e.num == 0 && e.msg != nil && e.msg.m.From == fnet.CPNode {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b heapKey) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seqSlot, b.seqSlot)) })
	for _, k := range keys {
		e := &s.q.slab[k.slot()]
		if s.rng.IntN(2) == 0 {
			delivered++
			continue
		}
		dropped++
		s.tr.begin(s.now, s.count, "leader_sent_dropped")
		s.tr.str("kind", string(e.msg.m.Kind))
		s.tr.str("to", e.msg.m.To)
		s.tr.end()
		if e.msg.m.Kind == kindPollReply {
			if a := s.agents[e.node]; a.up && a.poll == e.msg.m.Seq {
				s.pollFailed(a, e.msg.m.Seq, "connection reset")
			}
			continue
		}
		e.gen = ^uint64(0)
	}
	return delivered, dropped
}

// dropOutbox checks what the cp produced, like afterCP, but sends nothing:
// the leader died before it could.
func (s *sim) dropOutbox() {
	for _, o := range s.cp.TakeOutbox() {
		if o.Assign != nil {
			s.m.checkAssignMessage(o)
		}
	}
	s.m.checkCounts()
}

// takeOver ends a cp-failover's election: another replica leads a new
// epoch from the committed prefix and applies core.TakeoverInput first.
func (s *sim) takeOver() {
	d := s.down
	f := s.o.Faults[d.fault]
	cp, err := s.recoverCP()
	if err != nil {
		s.violate(InvDurable, fmt.Sprintf("new leader cannot rebuild the state from the snapshot at index %d: %v", s.log.snapIndex, err))
		return
	}
	fo := Failover{LostAt: d.crashedAt, At: s.now, From: ReplicaName(s.log.leader), AppliedIndex: s.log.index,
		StateHash: cp.StateHash(), InFlightCommitted: d.committed, InFlightLost: d.lost,
		AgentCommitted: d.agentCommitted, AgentLost: d.agentLost, SentDelivered: d.sentDelivered, SentDropped: d.sentDropped}
	if fo.StateHash != d.hash {
		s.violate(InvDurable, fmt.Sprintf("new leader's state from the snapshot at index %d plus %d entries has state_hash %s, the old leader's at index %d was %s",
			s.log.snapIndex, len(s.log.entries), fo.StateHash, d.index, d.hash))
		return
	}
	if !s.checkAcknowledged(d.dead, cp) {
		return
	}
	next := 1 + s.rng.IntN(Replicas-1)
	if next >= s.log.leader {
		next++
	}
	s.log.epoch++
	s.log.leader = next
	s.log.skew = nextSkew(s.rng, s.log.skew, f.Skew)
	fo.Epoch, fo.To, fo.Skew = s.log.epoch, ReplicaName(next), s.log.skew
	s.down = nil
	s.attachCP(cp, false)
	s.openMailboxes() // the old leader's are gone with it
	before := cp.Timeline().LastSeq()
	if _, err := s.apply(core.TakeoverInput{Node: fo.To}); err != nil {
		panic(fmt.Sprintf("sim: takeover: %v", err)) // a valid node id: core's bug
	}
	for _, e := range cp.Timeline().Since(before, 0) {
		if e.Type == core.EventLeaderTakeover {
			fo.Resent = e.Count
		}
	}
	s.res.Failovers = append(s.res.Failovers, fo)
	mode, _, _ := cp.Mode()
	snap := cp.DebugView(s.t)
	s.note(fmt.Sprintf("cp leader %s (epoch %d) took over from %s after %v: applied index %d, mode %s, queue %d, in flight %d, clock %+v, %d assignments resent, state_hash %.12s (as the old leader's)",
		fo.To, fo.Epoch, fo.From, fo.At-fo.LostAt, fo.AppliedIndex, mode, snap.QueueDepth, snap.InFlight, fo.Skew, fo.Resent, fo.StateHash))
	s.backUp(d)
}

// nextSkew draws a new leader's clock offset from the agents' time: within
// bound of the old leader's (old), and, of the two offsets that differ from
// old by the drawn amount, the one closer to the agents' time, so that it
// stays within bound of it too. A zero bound keeps the old leader's.
func nextSkew(r *rand.Rand, old, bound time.Duration) time.Duration {
	if bound <= 0 {
		return old
	}
	d := time.Duration(r.Int64N(2*int64(bound)+1)) - bound
	if a, b := old+d, old-d; b.Abs() < a.Abs() {
		return b
	}
	return old + d
}
