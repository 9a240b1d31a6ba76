package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// pollOptions is a healthy small run with bursts, so that poll replies carry
// batches of several messages.
func pollOptions(seed uint64) Options {
	o := DefaultOptions()
	o.Name, o.Seed, o.Duration = "poll", seed, 15*time.Minute
	o.Agents, o.Zones, o.SlotsPerAgent = 4, 2, 4
	o.Workload = []Workload{
		{Name: "burst", End: time.Second, Burst: 40, DurationMin: time.Second, DurationMax: 5 * time.Second, TimeoutSeconds: 30, MaxAttempts: 5},
		{Name: "steady", Start: 10 * time.Second, End: 3 * time.Minute, RatePerSecond: 1,
			DurationMin: time.Second, DurationMax: 5 * time.Second, TimeoutSeconds: 30, MaxAttempts: 5},
	}
	return o
}

// traceLine is the part of a trace line the poll tests read.
type traceLine struct {
	MS      int64  `json:"ms"`
	N       int64  `json:"n"`
	Ev      string `json:"ev"`
	Agent   string `json:"agent"`
	Task    string `json:"task"`
	Attempt int    `json:"attempt"`
	Poll    int64  `json:"poll"`
	Epoch   int64  `json:"epoch"`
	After   int64  `json:"after"`
	Msgs    int    `json:"msgs"`
	New     int    `json:"new"`
	Why     string `json:"why"`
	Cut     string `json:"cut"`
	Cursor  string `json:"cursor"`
	Kind    string `json:"kind"`
	Type    string `json:"type"`
}

// runPoll runs o, requires a clean run where every task succeeded, and
// returns the trace's lines.
func runPoll(t *testing.T, o Options) (Result, []traceLine) {
	t.Helper()
	var buf bytes.Buffer
	o.Trace = &buf
	res, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Submitted == 0 || res.Succeeded != res.Submitted || res.NonTerminal != 0 || res.Lost != 0 {
		t.Fatalf("submitted %d succeeded %d unfinished %d lost %d", res.Submitted, res.Succeeded, res.NonTerminal, res.Lost)
	}
	var lines []traceLine
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var tl traceLine
		if err := json.Unmarshal(l, &tl); err != nil {
			t.Fatalf("trace line %s: %v", l, err)
		}
		lines = append(lines, tl)
	}
	return res, lines
}

// startsOnce: no agent process starts an attempt twice (runs without agent
// crashes: one process per agent).
func startsOnce(t *testing.T, lines []traceLine) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range lines {
		if l.Ev != "exec_start" {
			continue
		}
		k := fmt.Sprintf("%s %s/%d", l.Agent, l.Task, l.Attempt)
		if seen[k] {
			t.Fatalf("%s started twice", k)
		}
		seen[k] = true
	}
}

func count(lines []traceLine, keep func(traceLine) bool) int {
	n := 0
	for _, l := range lines {
		if keep(l) {
			n++
		}
	}
	return n
}

// TestPollHealthyBatches: on a clean network every message reaches its
// agent once, in batches, with one poll outstanding per agent; nothing is
// taken twice and no poll fails.
func TestPollHealthyBatches(t *testing.T) {
	o := pollOptions(1)
	o.Network = NetworkOptions{LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 20 * time.Millisecond}
	_, lines := runPoll(t, o)
	startsOnce(t, lines)
	if n := count(lines, func(l traceLine) bool { return l.Ev == "poll_failed" }); n != 0 {
		t.Fatalf("%d polls failed on a clean network", n)
	}
	if n := count(lines, func(l traceLine) bool { return l.Ev == "batch" && l.New > 1 }); n == 0 {
		t.Fatal("no batch carried more than one message")
	}
	if n := count(lines, func(l traceLine) bool { return l.Ev == "batch" && l.New != l.Msgs }); n != 0 {
		t.Fatalf("%d batches carried messages already taken", n)
	}
	// One poll outstanding per agent: polls and their answers alternate.
	out := map[string]int64{}
	for _, l := range lines {
		switch l.Ev {
		case "poll_send":
			if out[l.Agent] != 0 {
				t.Fatalf("%s sent poll %d with poll %d outstanding", l.Agent, l.Poll, out[l.Agent])
			}
			out[l.Agent] = l.Poll
		case "batch":
			if out[l.Agent] != l.Poll {
				t.Fatalf("%s took a batch for poll %d, outstanding %d", l.Agent, l.Poll, out[l.Agent])
			}
			out[l.Agent] = 0
		}
	}
	// An idle agent's poll is held for PollWait and answered empty.
	if n := count(lines, func(l traceLine) bool { return l.Ev == "poll_reply" && l.Msgs == 0 }); n == 0 {
		t.Fatal("no poll was answered empty at the end of its wait")
	}
}

// TestPollCutMidBatch: a reply cut after k messages delivers those k, the
// agent processes them and polls again with its new cursor, and the rest
// comes in a later batch.
func TestPollCutMidBatch(t *testing.T) {
	o := pollOptions(2)
	o.Network.CutProbability = 0.5
	o.HealAt = 4 * time.Minute
	_, lines := runPoll(t, o)
	startsOnce(t, lines)
	if n := count(lines, func(l traceLine) bool { return l.Ev == "batch" && l.Cut != "" && l.New > 0 }); n == 0 {
		t.Fatal("no cut batch delivered part of its messages")
	}
	if n := count(lines, func(l traceLine) bool { return l.Ev == "poll_failed" && l.Why == "cut mid-batch" }); n == 0 {
		t.Fatal("no poll failed mid-batch")
	}
}

// TestPollDuplicatedBatch: a poll whose cursor and acks are lost gets the
// batch the agent already processed; the Inbox skips it, no attempt starts
// twice, and the heartbeats confirm what the lost acks answered.
func TestPollDuplicatedBatch(t *testing.T) {
	o := pollOptions(3)
	o.FaultPoints = map[core.FaultPoint]float64{FaultBatchDuplicated: 0.5}
	o.HealAt = 4 * time.Minute
	res, lines := runPoll(t, o)
	startsOnce(t, lines)
	if res.FaultPointsFired[FaultBatchDuplicated] == 0 {
		t.Fatal("batch-duplicated never fired")
	}
	if n := count(lines, func(l traceLine) bool { return l.Ev == "poll_send" && l.Cursor == "lost" }); n == 0 {
		t.Fatal("no poll lost its cursor")
	}
	if n := count(lines, func(l traceLine) bool { return l.Ev == "batch" && l.New < l.Msgs }); n == 0 {
		t.Fatal("no batch was delivered again and skipped")
	}
}

// TestPollLostResent: polls and replies lost on the link time out at the
// agent, which polls again with the same cursor and gets the batch again.
func TestPollLostResent(t *testing.T) {
	o := pollOptions(4)
	o.Network.LossProbability = 0.2
	o.HealAt = 4 * time.Minute
	_, lines := runPoll(t, o)
	startsOnce(t, lines)
	timeouts := count(lines, func(l traceLine) bool { return l.Ev == "poll_failed" && l.Why == "timeout" })
	if timeouts == 0 {
		t.Fatal("no poll timed out with 20% loss")
	}
	// Retried polls: the poll after a timeout repeats the cursor.
	prev := map[string]traceLine{}
	failed := map[string]bool{}
	repeated := 0
	for _, l := range lines {
		switch {
		case l.Ev == "poll_failed":
			failed[l.Agent] = true
		case l.Ev == "batch":
			failed[l.Agent] = false
		case l.Ev == "poll_send":
			if p, ok := prev[l.Agent]; ok && failed[l.Agent] {
				if l.Cursor == "" && p.Cursor == "" && (l.Epoch != p.Epoch || l.After != p.After) {
					t.Fatalf("%s poll %d after a failure moved the cursor %d/%d → %d/%d", l.Agent, l.Poll, p.Epoch, p.After, l.Epoch, l.After)
				}
				repeated++
			}
			prev[l.Agent] = l
			failed[l.Agent] = false
		}
	}
	if repeated == 0 {
		t.Fatal("no poll was retried")
	}
}

// TestPollCPCrashNewEpoch: a crashed cp resets the polls it held; the
// agents back off while it is down (refused), and their next polls reach a
// process of a new epoch and get what its mailboxes hold.
func TestPollCPCrashNewEpoch(t *testing.T) {
	o := pollOptions(5)
	o.Workload[1].End = 5 * time.Minute
	o.Faults = []Fault{{Kind: FaultCPCrash, At: 2 * time.Minute, Until: 2*time.Minute + 3*time.Second}}
	_, lines := runPoll(t, o)
	startsOnce(t, lines)
	why := map[string]int{}
	for _, l := range lines {
		if l.Ev == "poll_failed" {
			why[l.Why]++
		}
	}
	if why["connection reset"] == 0 || why["refused"] == 0 {
		t.Fatalf("poll failures %v: want connection resets at the crash and refusals while down", why)
	}
	// Backoff: 100ms doubling, at most the heartbeat interval.
	for _, l := range lines {
		if l.Ev == "batch" && l.Epoch >= int64(mailboxEpoch(1)) && l.New > 0 {
			return
		}
	}
	t.Fatal("no batch of the restarted cp's epoch")
}

// TestPollRestartedAgentGetsNoOldMessages: messages for an agent process
// that crashed are dropped from its mailbox once the core sees the new
// process (or loses the agent): no reply made after that hands the new
// process an assignment made to the old one. (A poll of the new process
// that reaches the cp before its first heartbeat still gets them, as the
// cp daemon's poll does: the core's fences answer those.)
func TestPollRestartedAgentGetsNoOldMessages(t *testing.T) {
	o := pollOptions(9)
	o.Agents, o.Zones, o.SlotsPerAgent = 2, 1, 4
	o.Workload[1].RatePerSecond = 2
	o.Faults = []Fault{
		{Kind: FaultCrash, Agents: []string{"z1-a01"}, At: 30 * time.Second, Until: 35 * time.Second},
		{Kind: FaultCrash, Agents: []string{"z1-a01"}, At: 60 * time.Second, Until: 90 * time.Second},
	}
	_, lines := runPoll(t, o)
	old := map[string]bool{}  // task/attempt assigned to z1-a01 before its last restart or loss
	seen := map[string]bool{} // ... since then
	replied := map[int64]int64{}
	var forgotAt, batchFrom int64 // event numbers: the last restart or loss, the reply being taken
	restarts, raced := 0, 0
	for _, l := range lines {
		if l.Agent != "z1-a01" {
			continue
		}
		k := fmt.Sprintf("%s/%d", l.Task, l.Attempt)
		switch {
		case l.Ev == "timeline" && l.Type == "task.assigned":
			seen[k] = true
		case l.Ev == "timeline" && (l.Type == "agent.restarted" || l.Type == "agent.lost"):
			restarts++
			forgotAt = l.N
			for k := range seen {
				old[k] = true
			}
			clear(seen)
		case l.Ev == "poll_reply":
			replied[l.Poll] = l.N
		case l.Ev == "batch":
			batchFrom = replied[l.Poll]
		case l.Ev == "take" && l.Kind == "assign" && old[k]:
			if batchFrom > forgotAt {
				t.Fatalf("event %d: z1-a01 took %s from a reply made at event %d, after the cp forgot its old process at %d", l.N, k, batchFrom, forgotAt)
			}
			raced++
		}
	}
	if restarts < 2 {
		t.Fatalf("%d restarts or losses of z1-a01 seen, want 2", restarts)
	}
	t.Logf("%d old assignments reached the new process in a reply made before the cp saw it restart", raced)
}

// TestPollBackoff: failed polls back off 100ms, doubling, capped at the
// heartbeat interval, and a reply resets it.
func TestPollBackoff(t *testing.T) {
	o := pollOptions(6)
	o.Agents, o.Zones = 2, 1
	o.Faults = []Fault{{Kind: FaultCPCrash, At: time.Minute, Until: 2 * time.Minute}}
	var buf bytes.Buffer
	o.Trace = &buf
	if _, err := Run(o); err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, l := range bytes.Split(buf.Bytes(), []byte("\n")) {
		if bytes.Contains(l, []byte(`"agent":"z1-a01"`)) && bytes.Contains(l, []byte(`"ev":"poll_failed"`)) {
			var tl struct {
				Backoff int64 `json:"backoff_ms"`
			}
			if err := json.Unmarshal(l, &tl); err != nil {
				t.Fatal(err)
			}
			got = append(got, tl.Backoff)
		}
	}
	want := []int64{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	if len(got) < len(want) || fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("backoffs %v, want %v then 5000s", got, want)
	}
	for _, b := range got[len(want):] {
		if b != 5000 {
			t.Fatalf("backoffs %v, want at most the heartbeat interval", got)
		}
	}
}

// TestPollMailboxFull: messages beyond MailboxMax are dropped and counted;
// the core requeues the undelivered assignments and every task succeeds.
func TestPollMailboxFull(t *testing.T) {
	o := pollOptions(7)
	o.MailboxMax = 1
	res, _ := runPoll(t, o)
	if res.MailboxDropped == 0 {
		t.Fatal("nothing dropped with a mailbox of one")
	}
}

// TestPollDeterministic: with every connection fault on, the same seed
// gives the same trace bytes.
func TestPollDeterministic(t *testing.T) {
	run := func() []byte {
		o := pollOptions(8)
		o.Network.LossProbability, o.Network.DuplicateProbability, o.Network.CutProbability = 0.1, 0.1, 0.2
		o.Network.ReorderProbability, o.Network.ReorderDelay = 0.2, time.Second
		o.FaultPoints = map[core.FaultPoint]float64{FaultBatchDuplicated: 0.2, FaultAckDelayed: 0.2}
		o.Faults = []Fault{{Kind: FaultCPCrash, At: time.Minute, Until: time.Minute + 2*time.Second}}
		o.HealAt = 4 * time.Minute
		var buf bytes.Buffer
		o.Trace = &buf
		if _, err := Run(o); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := run(), run()
	if !bytes.Equal(a, b) {
		t.Fatalf("same seed, traces differ (%d vs %d bytes)", len(a), len(b))
	}
	for _, ev := range []string{`"ev":"poll_send"`, `"ev":"batch"`, `"cut":`, `"cursor":"lost"`, `"dropped":"stale"`} {
		if !strings.Contains(string(a), ev) {
			t.Errorf("trace has no %s", ev)
		}
	}
}

func TestPollOptionsValidated(t *testing.T) {
	for name, mut := range map[string]func(*Options){
		"long wait":        func(o *Options) { o.PollWait = (fnet.PollWaitMax + 1) * time.Millisecond },
		"negative wait":    func(o *Options) { o.PollWait = -time.Second },
		"no mailbox":       func(o *Options) { o.MailboxMax = -1 },
		"bad cut":          func(o *Options) { o.Network.CutProbability = 1.5 },
		"sub-ms poll wait": func(o *Options) { o.PollWait = time.Microsecond },
	} {
		o := DefaultOptions()
		mut(&o)
		if _, err := Run(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPollMailboxFollowsAgentEvents: like the cp daemon, the sim empties an
// agent's mailbox when the core loses it or sees it restart (its sequence
// goes on), and drops it when the core forgets the agent (the next one has
// a new epoch); no two mailboxes share an epoch.
func TestPollMailboxFollowsAgentEvents(t *testing.T) {
	s, err := newSim(pollOptions(10))
	if err != nil {
		t.Fatal(err)
	}
	a := s.agents[0]
	post := func(task string) {
		s.post(core.Outbound{To: core.AgentID(a.id), Assign: &core.Assign{TaskID: core.TaskID(task), Attempt: 1}})
	}
	post("t1")
	post("t2")
	ep := a.box.Epoch()
	s.post(core.Outbound{To: core.AgentID(s.agents[1].id), Cancel: &core.CancelTask{TaskID: "t0", Attempt: 1}})
	if other := s.agents[1].box.Epoch(); other == ep || ep == 0 {
		t.Fatalf("epochs %d and %d", ep, other)
	}
	for _, typ := range []core.EventType{core.EventAgentRestarted, core.EventAgentLost} {
		s.mailEvent(core.Event{Type: typ, AgentID: core.AgentID(a.id)})
		if a.box.Len() != 0 || a.box.Epoch() != ep {
			t.Fatalf("after %s: %d held, epoch %d (want 0, %d)", typ, a.box.Len(), a.box.Epoch(), ep)
		}
		post("t3")
		if r := a.box.Take(ep, 2, 10); len(r.Messages) != 1 || r.Messages[0].Assign.TaskID != "t3" {
			t.Fatalf("after %s: take %+v, want t3 after seq 2", typ, r)
		}
		a.box.Ack(ep, ^uint64(0))
	}
	s.mailEvent(core.Event{Type: core.EventAgentDisconnected, AgentID: core.AgentID(a.id)})
	post("t4")
	if a.box.Len() != 1 {
		t.Fatal("a disconnection emptied the mailbox")
	}
	s.mailEvent(core.Event{Type: core.EventAgentForgotten, AgentID: core.AgentID(a.id)})
	if a.box != nil {
		t.Fatal("a forgotten agent's mailbox stayed")
	}
	post("t5")
	if a.box.Epoch() == ep || a.box.Epoch() == s.agents[1].box.Epoch() {
		t.Fatalf("new mailbox epoch %d reuses one", a.box.Epoch())
	}
}
