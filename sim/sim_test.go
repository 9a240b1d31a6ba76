package sim

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// busyOptions is a small run with every kind of fault and operator action.
func busyOptions(seed uint64) Options {
	o := DefaultOptions()
	o.Name, o.Seed, o.Agents, o.Zones, o.Duration = "busy", seed, 9, 3, 22*time.Minute
	o.Workload = []Workload{{
		Name: "w", End: 4 * time.Minute, RatePerSecond: 1, Burst: 5,
		PriorityWeights: [3]float64{1, 2, 1}, Domains: []string{"z1", "z2"}, DomainFraction: 0.3,
		DurationMin: time.Second, DurationMax: 10 * time.Second, TimeoutSeconds: 30, MaxAttempts: 3,
		PoisonFraction: 0.02, HangFraction: 0.02,
		IdempotentFraction: 0.2, ResubmitFraction: 0.5, ConflictFraction: 0.2,
	}}
	o.Faults = []Fault{
		{Kind: FaultCrash, Agents: []string{"z1-a01"}, At: 30 * time.Second, Until: 90 * time.Second},
		{Kind: FaultFlap, Agents: []string{"z2-a01"}, At: time.Minute, Down: 20 * time.Second, Up: 10 * time.Second, Until: 3 * time.Minute},
		{Kind: FaultStuck, Agents: []string{"z3-a01"}, At: time.Minute, Until: 2 * time.Minute},
		{Kind: FaultSlow, Agents: []string{"z3-a02"}, At: time.Minute, Until: 2 * time.Minute, Latency: time.Second, Factor: 2},
		{Kind: FaultZoneOutage, Zone: "z2", Failing: true, At: 150 * time.Second, Until: 200 * time.Second},
	}
	o.Ops = []OperatorAction{
		{At: 100 * time.Second, SetMode: core.ModeReadOnly, Reason: "maintenance"},
		{At: 120 * time.Second, SetMode: core.ModeNormal, Reason: "done"},
		{At: 130 * time.Second, Purge: &core.PurgeInput{OlderThan: 5 * time.Minute}},
	}
	return o
}

func TestRunBusyHoldsInvariants(t *testing.T) {
	res, err := Run(busyOptions(1))
	if err != nil {
		t.Fatal(err)
	}
	if res.Submitted == 0 || res.NonTerminal != 0 || res.Lost != 0 || !res.LivenessChecked {
		t.Fatalf("submitted %d unfinished %d lost %d liveness %v", res.Submitted, res.NonTerminal, res.Lost, res.LivenessChecked)
	}
	if res.Replayed == 0 || res.Refused[core.RefusalIdempotencyConflict] == 0 || res.Refused[core.RefusalMode] == 0 {
		t.Fatalf("replayed %d refusals %v: the workload did not exercise idempotency and modes", res.Replayed, res.Refused)
	}
	if len(res.Series) == 0 {
		t.Fatal("no time series")
	}
	if v, ok := res.Series[len(res.Series)-1].Value("flux_scheduler_mode", "mode", "NORMAL"); !ok || v != 1 {
		t.Fatalf("last sample flux_scheduler_mode{mode=NORMAL} = %v, %v", v, ok)
	}
	if _, ok := res.Series[len(res.Series)-1].Value("flux_queue_depth"); !ok {
		t.Fatal("no flux_queue_depth sample")
	}
}

// TestDeterminism: the same seed gives the same trace bytes and result;
// different seeds give different traces.
func TestDeterminism(t *testing.T) {
	run := func(seed uint64) ([]byte, Result) {
		var buf bytes.Buffer
		o := busyOptions(seed)
		o.Trace = &buf
		res, err := Run(o)
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), res
	}
	a, ra := run(7)
	b, rb := run(7)
	if !bytes.Equal(a, b) || ra.TraceHash != rb.TraceHash {
		t.Fatalf("seed 7 twice: traces differ (%d vs %d bytes, %s vs %s)", len(a), len(b), ra.TraceHash, rb.TraceHash)
	}
	if int64(len(a)) != ra.TraceBytes {
		t.Fatalf("trace has %d bytes, result says %d", len(a), ra.TraceBytes)
	}
	seen := map[string]uint64{ra.TraceHash: 7}
	for _, seed := range []uint64{1, 2, 3} {
		_, r := run(seed)
		if prev, dup := seen[r.TraceHash]; dup {
			t.Fatalf("seeds %d and %d give the same trace %s", prev, seed, r.TraceHash)
		}
		seen[r.TraceHash] = seed
	}
}

// TestAgentStreamsIndependent: an agent's random stream depends on the seed
// and its id only, so adding agents does not reshuffle the others.
func TestAgentStreamsIndependent(t *testing.T) {
	a, b := agentRand(5, "z1-a01"), agentRand(5, "z1-a01")
	c := agentRand(5, "z1-a02")
	same, differ := true, false
	for range 8 {
		x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
		same = same && x == y
		differ = differ || x != z
	}
	if !same || !differ {
		t.Fatalf("same id same stream: %v; other id other stream: %v", same, differ)
	}
	// In a run, growing the fleet keeps the first agents' heartbeat
	// schedule until work reaches them: with no workload, the trace lines
	// of z1-a01 are identical.
	lines := func(agents int) []string {
		var buf bytes.Buffer
		o := DefaultOptions()
		o.Agents, o.Zones, o.Duration, o.Trace = agents, 1, time.Minute, &buf
		if _, err := Run(o); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range bytes.Split(buf.Bytes(), []byte("\n")) {
			if bytes.Contains(l, []byte(`"z1-a01"`)) && bytes.Contains(l, []byte(`"ev":"deliver"`)) {
				// drop the global event counter, which other agents shift
				i := bytes.Index(l, []byte(`,"ev"`))
				out = append(out, string(l[:bytes.Index(l, []byte(`,"n"`))])+string(l[i:]))
			}
		}
		return out
	}
	x, y := lines(3), lines(4)
	if len(x) == 0 || len(x) != len(y) {
		t.Fatalf("z1-a01 deliveries: %d with 3 agents, %d with 4", len(x), len(y))
	}
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("z1-a01's network draws changed when an agent was added:\n%s\n%s", x[i], y[i])
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, mut := range map[string]func(*Options){
		"zones > agents":  func(o *Options) { o.Agents, o.Zones = 2, 3 },
		"bad probability": func(o *Options) { o.Network.LossProbability = 2 },
		"unknown agent":   func(o *Options) { o.Faults = []Fault{{Kind: FaultCrash, Agents: []string{"nope"}}} },
		"flap no period":  func(o *Options) { o.Faults = []Fault{{Kind: FaultFlap, Agents: []string{"z1-a01"}}} },
		"bad mode":        func(o *Options) { o.Ops = []OperatorAction{{SetMode: "SIDEWAYS"}} },
		"bad workload":    func(o *Options) { o.Workload = []Workload{{Start: time.Minute, End: time.Second}} },
	} {
		o := DefaultOptions()
		mut(&o)
		if _, err := Run(o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: err %v, want ErrOptions", name, err)
		}
	}
}

// TestViolationReport: a broken invariant stops the run with the seed, the
// virtual time, the invariant and the last events.
func TestViolationReport(t *testing.T) {
	o := busyOptions(3)
	o.EventsLimit = 500
	res, err := Run(o)
	var v *Violation
	if !errors.As(err, &v) || res.Violation != v {
		t.Fatalf("err %v, want a *Violation", err)
	}
	if v.Invariant != InvSimLimit || v.Seed != 3 || v.At <= 0 || len(v.LastEvents) != o.withDefaults().LastEvents {
		t.Fatalf("violation %+v", v)
	}
	if res.End != v.At {
		t.Fatalf("run went on to %v after the violation at %v", res.End, v.At)
	}
}

// TestZoneSizes: explicit zone sizes put small zones beside big ones (ids
// numbered within their zone); the even sizes give the default layout; bad
// sizes are refused.
func TestZoneSizes(t *testing.T) {
	o := DefaultOptions()
	o.Agents, o.Zones = 7, 3
	even := o.AgentIDs()
	o.ZoneSizes = []int{3, 2, 2}
	if got := o.AgentIDs(); !slices.Equal(got, even) {
		t.Fatalf("even sizes: %v, want the default layout %v", got, even)
	}
	o.ZoneSizes = []int{4, 1, 2}
	want := []string{"z1-a01", "z2-a01", "z3-a01", "z1-a02", "z3-a02", "z1-a03", "z1-a04"}
	if got := o.AgentIDs(); !slices.Equal(got, want) {
		t.Fatalf("sizes 4,1,2: %v, want %v", got, want)
	}
	if got := o.ZoneAgentIDs(1); !slices.Equal(got, []string{"z2-a01"}) {
		t.Fatalf("zone z2: %v", got)
	}
	o.Duration = 3 * time.Minute
	o.Faults = []Fault{{Kind: FaultZoneOutage, Zone: "z2", At: time.Minute, Until: 2 * time.Minute}}
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	byDomain := map[string]int{}
	for _, e := range res.Events {
		if e.Type == "agent.registered" {
			byDomain[e.Domain]++
		}
	}
	if byDomain["z1"] != 4 || byDomain["z2"] != 1 || byDomain["z3"] != 2 {
		t.Fatalf("registered per zone %v, want z1:4 z2:1 z3:2", byDomain)
	}
	for _, bad := range [][]int{{4, 3}, {4, 0, 3}, {4, 1, 1}} {
		o.ZoneSizes = bad
		if _, err := Run(o); !errors.Is(err, ErrOptions) {
			t.Errorf("sizes %v: %v, want ErrOptions", bad, err)
		}
	}
}

// TestDispatchIdleNoFalseAlarm: work that no free agent may take (pinned to
// a full zone) and a READ_ONLY hold leave the fleet idle for more than
// DispatchIdleMax without breaking the dispatch liveness check, which
// measures only waits on capacity some queued task could use.
func TestDispatchIdleNoFalseAlarm(t *testing.T) {
	o := DefaultOptions()
	o.Agents, o.Zones, o.SlotsPerAgent, o.Duration = 4, 2, 1, 15*time.Minute
	long := 150 * time.Second
	o.Workload = []Workload{
		{Name: "pinned", Burst: 6, PriorityWeights: [3]float64{0, 1, 0}, Domains: []string{"z1"}, DomainFraction: 1,
			DurationMin: long, DurationMax: long, TimeoutSeconds: 200, MaxAttempts: 1},
		// Half of these run, the rest wait out the hold.
		{Name: "held", Start: 8 * time.Minute, End: 8 * time.Minute, Burst: 8, PriorityWeights: [3]float64{0, 1, 0},
			DurationMin: time.Minute, DurationMax: time.Minute, TimeoutSeconds: 100, MaxAttempts: 1},
	}
	o.Ops = []OperatorAction{
		{At: 8*time.Minute + 10*time.Second, SetMode: core.ModeReadOnly, Reason: "hold"},
		{At: 11 * time.Minute, SetMode: core.ModeNormal, Reason: "done"},
	}
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 14 || res.Refused["mode"] != 0 {
		t.Fatalf("%d of 14 tasks succeeded, refusals %v", res.Succeeded, res.Refused)
	}
	if res.MaxDispatchIdle != 0 {
		t.Fatalf("max dispatch idle %v at %v: no queued task could use the free slots", res.MaxDispatchIdle, res.MaxDispatchIdleAt)
	}
}
