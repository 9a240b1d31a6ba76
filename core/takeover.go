package core

import (
	"fmt"
	"strings"
	"time"
)

// TakeoverInput marks a new leader of a replicated control plane taking
// over the state its predecessor left in the log. Nothing the agents did
// while no leader listened (their heartbeats went unanswered, the
// assignments the old leader sent may not have reached them) is their
// fault, so the new leader:
//
//   - gives every connected agent one HeartbeatTimeout of grace from now
//     before judging it silent, and every disconnected one LostAfter before
//     judging it lost (no storm of disconnects, requeues or quarantines);
//   - resends every assignment not yet confirmed, under the same attempt
//     number (the fence), restarting its AssignTimeout: the old leader's
//     delivery queues are gone with it, and an agent takes a duplicate of
//     an assignment it already has as the same one.
//
// Node is the new leader's id, for the timeline.
type TakeoverInput struct {
	Node string `json:"node"`
}

func (TakeoverInput) inputKind() string { return "takeover" }

// EventLeaderTakeover: a new leader took over (TakeoverInput); Reason says
// what it did, Count how many assignments it resent.
const EventLeaderTakeover EventType = "cluster.takeover"

// EventCluster is the kind of cluster events.
const EventCluster = "cluster"

// ActorLeader is the actor of what a new leader does on taking over.
const ActorLeader = "leader"

func (cp *ControlPlane) applyTakeover(now time.Time, in TakeoverInput) error {
	now = cp.advance(now)
	if in.Node == "" || len(in.Node) > 128 || strings.ContainsAny(in.Node, " \t\n") {
		return fmt.Errorf("%w: takeover needs the node id of the new leader (1 to 128 characters, no spaces), got %q", ErrInvalid, in.Node)
	}
	graced, resent := 0, 0
	cp.agentsChanged()
	for _, a := range cp.agentList {
		if a.connected() {
			if a.lastHeartbeat.Before(now) {
				a.lastHeartbeat = now
				graced++
			}
		} else if a.disconnectedAt.Before(now) && a.state != agentLost {
			a.disconnectedAt = now
			graced++
		}
		if len(a.running) == 0 {
			continue
		}
		ts := cp.expiredScratch[:0]
		for _, t := range a.running {
			if !t.confirmed {
				ts = append(ts, t)
			}
		}
		sortTasks(ts)
		for _, t := range ts {
			t.assignedAt, t.seqLimit = now, cp.seqLimit(a)
			cp.outbox = append(cp.outbox, cp.assignMessage(a, t))
			resent++
		}
		cp.expiredScratch = ts[:0]
	}
	cp.record(Event{Kind: EventCluster, Type: EventLeaderTakeover, Actor: ActorLeader, Count: resent,
		Reason: fmt.Sprintf("%s took over: %d agents given grace, %d unconfirmed assignments resent", in.Node, graced, resent)})
	return nil
}
