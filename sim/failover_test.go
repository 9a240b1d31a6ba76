package sim

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// failoverOptions is busyOptions on a replicated cp whose leader is lost
// four times: once in READ_ONLY, once with a second loss during the
// election (nothing more to lose), once next to a crash, and once with an
// election longer than the heartbeat timeout, after the agent faults.
func failoverOptions(seed uint64) Options {
	o := busyOptions(seed)
	o.Name = "failover"
	o.SnapshotEveryEntries = 200
	o.Faults = append(o.Faults,
		Fault{Kind: FaultCPFailover, At: 45*time.Second + 317*time.Millisecond, Until: 47 * time.Second, InFlight: 3, Skew: time.Second},
		Fault{Kind: FaultCPFailover, At: 46 * time.Second, Until: 60 * time.Second, InFlight: 3, Skew: time.Second},                      // during the election
		Fault{Kind: FaultCPFailover, At: 110*time.Second + 3*time.Millisecond, Until: 112 * time.Second, InFlight: 3, Skew: time.Second}, // in READ_ONLY
		Fault{Kind: FaultCPCrash, At: 140 * time.Second, Until: 143 * time.Second, InFlight: 1},
		Fault{Kind: FaultCPFailover, At: 143*time.Second + 500*time.Millisecond, Until: 145 * time.Second, InFlight: 2, Skew: time.Second},
		Fault{Kind: FaultCPFailover, At: 230 * time.Second, Until: 255 * time.Second, InFlight: 3, Skew: time.Second}, // past the heartbeat timeout
	)
	return o
}

// TestFailoverTakesOverFromTheLog: each lost leader is followed, after the
// election, by another replica of a new epoch whose state is the committed
// prefix (the run checks the state_hash), whose clock is within a second
// of the old one's, and whose first input is the takeover. While no replica
// leads nothing is applied and submissions find no cp. An election longer
// than the heartbeat timeout disconnects nobody: the takeover's grace.
func TestFailoverTakesOverFromTheLog(t *testing.T) {
	o := failoverOptions(3)
	s, err := newSim(o)
	if err != nil {
		t.Fatal(err)
	}
	var index uint64
	for s.q.len() > 0 && s.res.Violation == nil && s.q.peek().at <= o.Duration {
		e := s.q.pop()
		s.now, s.t = e.at, epoch.Add(e.at)
		s.count++
		wasDown := s.down != nil
		s.handle(e)
		if s.res.Violation == nil {
			s.checkCheap()
		}
		switch {
		case s.down == nil || !wasDown:
			index = s.log.index // the committed prefix, in-flight proposals decided
		case s.log.index != index:
			t.Fatalf("applied index moved from %d to %d at %v with no leader", index, s.log.index, s.now)
		}
	}
	s.finish()
	res := s.res
	if res.Violation != nil {
		t.Fatal(res.Violation)
	}
	if len(res.Failovers) != 4 || len(res.Recoveries) != 1 || res.Unavailable == 0 {
		t.Fatalf("%d failovers, %d recoveries, %d unavailable", len(res.Failovers), len(res.Recoveries), res.Unavailable)
	}
	var takeovers []TimelineEvent
	for _, e := range res.Events {
		if e.Type == core.EventLeaderTakeover {
			takeovers = append(takeovers, e)
		}
		if e.Type == core.EventAgentDisconnected && e.Time.Sub(epoch) > 220*time.Second {
			t.Errorf("%s disconnected at %v after the long election: %s", e.AgentID, e.Time.Sub(epoch), e.Reason)
		}
	}
	if len(takeovers) != 4 {
		t.Fatalf("%d takeover events, want 4", len(takeovers))
	}
	prev := time.Duration(0)
	for i, fo := range res.Failovers {
		if fo.Epoch != i+2 || fo.From == fo.To || fo.Skew.Abs() > time.Second || (fo.Skew-prev).Abs() > time.Second || fo.StateHash == "" {
			t.Errorf("failover %d: %+v after skew %v", i, fo, prev)
		}
		prev = fo.Skew
		if i > 0 && fo.From != res.Failovers[i-1].To {
			t.Errorf("failover %d from %s, the leader was %s", i, fo.From, res.Failovers[i-1].To)
		}
		e := takeovers[i]
		if !strings.HasPrefix(e.Reason, fo.To+" took over") {
			t.Errorf("takeover %d: %q by %s", i, e.Reason, fo.To)
		}
		// The takeover bears the new leader's clock, unless that is
		// behind the last entry's time.
		if got, want := e.Time, epoch.Add(fo.At+fo.Skew); got != want && !(got.After(want) && fo.Skew < 0) {
			t.Errorf("takeover %d at %v, the new leader's clock says %v", i, got.Sub(epoch), want.Sub(epoch))
		}
	}
	if res.InFlightCommitted+res.InFlightLost != 3+3+1+2+3 || res.Lost != 0 || res.NonTerminal != 0 {
		t.Fatalf("in flight %d committed %d lost; lost %d, unfinished %d", res.InFlightCommitted, res.InFlightLost, res.Lost, res.NonTerminal)
	}
}

// TestFailoverIsDeterministic: the same options give the same trace, with
// every draw of the failovers (fates, leaders, clocks) from the seed.
func TestFailoverIsDeterministic(t *testing.T) {
	a, err := Run(failoverOptions(5))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(failoverOptions(5))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Run(failoverOptions(6))
	if err != nil {
		t.Fatal(err)
	}
	if a.TraceHash != b.TraceHash || a.TraceHash == c.TraceHash {
		t.Fatalf("trace hashes %s, %s (same seed), %s (another)", a.TraceHash, b.TraceHash, c.TraceHash)
	}
}

// TestFailoverFates: across seeds, proposals in flight to a lost leader are
// both committed and lost, and messages from it both arrive and do not.
func TestFailoverFates(t *testing.T) {
	var sum Failover
	for seed := uint64(1); seed <= 6; seed++ {
		o := failoverOptions(seed)
		o.Network.LatencyMin = 50 * time.Millisecond // more in flight
		res, err := Run(o)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for _, fo := range res.Failovers {
			sum.InFlightCommitted += fo.InFlightCommitted
			sum.InFlightLost += fo.InFlightLost
			sum.AgentCommitted += fo.AgentCommitted
			sum.AgentLost += fo.AgentLost
			sum.SentDelivered += fo.SentDelivered
			sum.SentDropped += fo.SentDropped
			sum.Resent += fo.Resent
		}
	}
	if sum.InFlightCommitted == 0 || sum.InFlightLost == 0 || sum.AgentCommitted == 0 || sum.AgentLost == 0 ||
		sum.SentDelivered == 0 || sum.SentDropped == 0 || sum.Resent == 0 {
		t.Fatalf("over 6 seeds: %+v", sum)
	}
}

// TestFailoverChecksTheState: a new leader whose log lacks a committed
// entry stops the run with the durability invariant.
func TestFailoverChecksTheState(t *testing.T) {
	s, err := newSim(failoverOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	for s.q.len() > 0 && s.res.Violation == nil {
		if s.q.peek().kind == evCPRecover && len(s.log.entries) > 0 {
			s.log.entries = s.log.entries[:len(s.log.entries)-1]
		}
		e := s.q.pop()
		s.now, s.t = e.at, epoch.Add(e.at)
		s.handle(e)
	}
	var v *Violation
	if !errors.As(s.res.Violation, &v) || v.Invariant != InvDurable || !strings.Contains(v.Detail, "new leader") {
		t.Fatalf("violation %v, want %s", s.res.Violation, InvDurable)
	}
}

// TestNextSkew: a new leader's clock is within the bound of the old one's
// and of the agents' time; a zero bound keeps the old offset.
func TestNextSkew(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	skew, seen := time.Duration(0), map[bool]int{}
	for range 10_000 {
		n := nextSkew(r, skew, time.Second)
		if n.Abs() > time.Second || (n-skew).Abs() > time.Second {
			t.Fatalf("%v after %v", n, skew)
		}
		seen[n > 0]++
		skew = n
	}
	if seen[true] < 4000 || seen[false] < 4000 {
		t.Fatalf("ahead %d, behind %d of 10000", seen[true], seen[false])
	}
	if n := nextSkew(r, 300*time.Millisecond, 0); n != 300*time.Millisecond {
		t.Fatalf("zero bound: %v", n)
	}
}

func TestFailoverOptions(t *testing.T) {
	for _, f := range []Fault{
		{Kind: FaultCPCrash, At: time.Second, Skew: time.Second},
		{Kind: FaultCPFailover, At: time.Second, Skew: MaxLeaderSkew + 1},
		{Kind: FaultCPFailover, At: time.Second, Skew: -1},
		{Kind: FaultCPFailover, At: time.Second, InFlight: 101},
		{Kind: FaultCPFailover, At: 2 * time.Second, Until: time.Second},
	} {
		o := DefaultOptions()
		o.Faults = []Fault{f}
		if _, err := Run(o); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v", f, err)
		}
	}
}
