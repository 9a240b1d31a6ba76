package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// storedTask is a task as the cp lists it, with what the kill storm checks:
// its idempotency key and its spec, kept as the cp's exact JSON.
type storedTask struct {
	ID             string          `json:"id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Spec           json.RawMessage `json:"spec"`
	State          string          `json:"state"`
	AgentID        string          `json:"agent_id"`
	Reason         string          `json:"reason"`
	Attempts       []struct {
		Attempt int    `json:"attempt"`
		AgentID string `json:"agent_id"`
		Outcome string `json:"outcome"`
	} `json:"attempts"`
}

// storedTasks lists every task the cp holds; ok is false when the cp did
// not answer (it is down).
func (c *cluster) storedTasks() (map[string]storedTask, error) {
	out := map[string]storedTask{}
	after := ""
	for {
		var page struct {
			Tasks     []storedTask `json:"tasks"`
			NextAfter string       `json:"next_after"`
		}
		if _, err := call("GET", c.cpURL+"/v1/tasks?limit=1000&after="+after, "", nil, &page); err != nil {
			return nil, err
		}
		for _, tk := range page.Tasks {
			out[tk.ID] = tk
		}
		if page.NextAfter == "" {
			return out, nil
		}
		after = page.NextAfter
	}
}

// submitKeyed posts body with an Idempotency-Key. code is 0 on a transport
// error (no answer: the request may or may not have been applied).
func (c *cluster) submitKeyed(key string, body []byte) (code int, replayed bool, tk storedTask, err error) {
	req, err := http.NewRequest("POST", c.cpURL+"/v1/tasks", bytes.NewReader(body))
	if err != nil {
		return 0, false, tk, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, tk, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, tk, err // the answer was cut off: as good as none
	}
	replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, &tk); err != nil {
			return resp.StatusCode, replayed, tk, fmt.Errorf("submit %s: %d %s: %v", key, resp.StatusCode, b, err)
		}
		return resp.StatusCode, replayed, tk, nil
	}
	return resp.StatusCode, replayed, tk, fmt.Errorf("submit %s: %d %s", key, resp.StatusCode, bytes.TrimSpace(b))
}

// hasEvent reports whether the timeline holds an event matching want's
// non-empty fields.
func hasEvent(events []coreEvent, want coreEvent) bool {
	return slices.ContainsFunc(events, func(e coreEvent) bool {
		return e.Type == want.Type && (want.AgentID == "" || e.AgentID == want.AgentID) &&
			(want.To == "" || e.To == want.To) && (want.Actor == "" || e.Actor == want.Actor) &&
			(want.Reason == "" || e.Reason == want.Reason)
	})
}

// stormAck is one submission the cp answered 201 or 200.
type stormAck struct {
	key, id string
	body    []byte
	spec    json.RawMessage
	epoch   int // cp incarnation (kills so far) when it was answered
}

// TestKillStormLosesNothingAcknowledged is issue 10's crash test on the real
// binaries: 16 clients submit keyed tasks while the cp is killed with
// SIGKILL at random moments (6 times; the seed is logged, FLUX_E2E_SEED
// repeats it) and restarted on the same data dir. Clients retry every
// request that got no answer, or a 503, with the same idempotency key.
// After each restart every answered submission is there with the same id
// and spec, keys answered before the kill replay (200, Idempotent-Replayed),
// and the operator actions answered before the kill (a READ_ONLY mode and
// its undoing, a quarantine and its release) are in the timeline and in
// effect. In the end every acknowledged task is SUCCEEDED with exactly one
// succeeded attempt; the agents' own result logs count executions
// (at-least-once across a cp crash: duplicates are reported, not failed).
func TestKillStormLosesNothingAcknowledged(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FLUX_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FLUX_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("kill storm seed %d (FLUX_E2E_SEED=%d repeats the kill points and dead times)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 10))

	const clients, perClient, kills = 16, 60, 6
	c := newCluster(t)
	for i, z := range []string{"zone-a", "zone-b", "zone-c"} {
		c.startAgent(fmt.Sprintf("agent-%d", i+1), z)
	}
	for _, a := range c.agents {
		a.ready(t)
	}

	var (
		mu       sync.Mutex
		acks     = map[string]stormAck{} // by key
		epoch    int                     // kills so far, under mu
		retried  atomic.Int64            // requests sent again after no answer or a 503
		inDoubt  atomic.Int64            // keys whose retry found them applied (200 replayed)
		gaveUp   atomic.Int64
		answered atomic.Int64
	)
	stormEnd := time.Now().Add(40 * time.Second)
	var wg sync.WaitGroup
	for k := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				key := fmt.Sprintf("storm-%02d-%03d", k, i)
				body := []byte(fmt.Sprintf(`{"kind":"sleep","duration_ms":%d,"priority":%q}`,
					20+(k*37+i*11)%100, []string{"normal", "high"}[(k+i)%2]))
				for try := 0; ; try++ {
					if time.Now().After(stormEnd) {
						gaveUp.Add(1)
						return
					}
					code, replayed, tk, err := c.submitKeyed(key, body)
					switch {
					case code == http.StatusCreated || code == http.StatusOK:
						if err != nil {
							t.Error(err)
							return
						}
						if replayed != (code == http.StatusOK) {
							t.Errorf("submit %s: %d with Idempotent-Replayed %v", key, code, replayed)
						}
						if replayed {
							if try == 0 {
								t.Errorf("submit %s: first request answered as a replay", key)
							}
							inDoubt.Add(1)
						}
						mu.Lock()
						acks[key] = stormAck{key: key, id: tk.ID, body: body, spec: tk.Spec, epoch: epoch}
						mu.Unlock()
						answered.Add(1)
					case code == 0, code == http.StatusServiceUnavailable, code == http.StatusTooManyRequests:
						// No answer (the cp died under the request), the
						// cp is down, READ_ONLY or full: ask again with the
						// same key after a short back-off.
						retried.Add(1)
						time.Sleep(time.Duration(20+try%5*10) * time.Millisecond) // client back-off, not a wait
						continue
					default:
						t.Errorf("submit %s: unexpected answer %d: %v", key, code, err)
						return
					}
					break
				}
			}
		}()
	}
	clientsDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(clientsDone)
	}()
	stormOver := func() bool {
		select {
		case <-clientsDone:
			return true
		default:
			return false
		}
	}

	// checkAcked compares every answered submission with what the cp holds.
	checkAcked := func(when string) map[string]storedTask {
		t.Helper()
		// The answers first: the clients go on submitting to the new cp,
		// and a task answered after the listing is not in it.
		mu.Lock()
		answers := slices.Collect(maps.Values(acks))
		mu.Unlock()
		stored, err := c.storedTasks()
		if err != nil {
			t.Fatalf("%s: list tasks: %v", when, err)
		}
		for _, a := range answers {
			got, ok := stored[a.id]
			switch {
			case !ok:
				t.Errorf("%s: task %s (key %s, answered in cp incarnation %d) is gone", when, a.id, a.key, a.epoch)
			case got.IdempotencyKey != a.key || !bytes.Equal(got.Spec, a.spec):
				t.Errorf("%s: task %s is key %q spec %s, was answered as key %q spec %s", when, a.id, got.IdempotencyKey, got.Spec, a.key, a.spec)
			}
		}
		return stored
	}
	agentView := func(id string) (quarantined bool, by string) {
		var av struct {
			Quarantined   bool   `json:"quarantined"`
			QuarantinedBy string `json:"quarantined_by"`
		}
		if _, err := call("GET", c.cpURL+"/v1/agents/"+id, "", nil, &av); err != nil {
			t.Fatalf("agent %s: %v", id, err)
		}
		return av.Quarantined, av.QuarantinedBy
	}
	mode := func() string {
		var m struct {
			Mode string `json:"mode"`
		}
		if _, err := call("GET", c.cpURL+"/admin/mode", "", nil, &m); err != nil {
			t.Fatalf("get mode: %v", err)
		}
		return m.Mode
	}
	setMode := func(m, reason string) {
		if code, err := call("POST", c.cpURL+"/admin/mode", "", map[string]string{"mode": m, "reason": reason}, nil); code != 200 {
			t.Fatalf("set mode %s: %d %v", m, code, err)
		}
	}
	adminAgent := func(action, id, reason string) {
		if code, err := call("POST", c.cpURL+"/v1/agents/"+id+"/"+action, "", map[string]string{"reason": reason}, nil); code != 200 {
			t.Fatalf("%s %s: %d %v", action, id, code, err)
		}
	}

	var restarts []time.Duration
	replays := 0
	for kill := 1; kill <= kills; kill++ {
		// A random moment: once a random number of further submissions is
		// answered (or, when the storm is over, at once, with work running).
		mu.Lock()
		target := len(acks) + 5 + rng.IntN(40)
		mu.Unlock()
		eventually(t, 45*time.Second, fmt.Sprintf("%d answered submissions before kill %d", target, kill), func() bool {
			return answered.Load() >= int64(target) || stormOver()
		})
		// The operator actions, answered 200 just before the kill.
		switch kill {
		case 2:
			setMode("READ_ONLY", "kill storm: read-only across a crash")
		case 3:
			adminAgent("quarantine", "agent-3", "kill storm: quarantined across a crash")
		case 4:
			adminAgent("release", "agent-3", "kill storm: released")
		}
		mu.Lock()
		before := make([]stormAck, 0, len(acks))
		for _, a := range acks {
			before = append(before, a)
		}
		mu.Unlock()
		c.cp.kill()
		mu.Lock()
		epoch = kill
		mu.Unlock()
		dead := time.Duration(rng.IntN(400)) * time.Millisecond
		t.Logf("kill %d: SIGKILL with %d submissions answered, cp dead for %v", kill, len(before), dead)
		time.Sleep(dead) // holding the cp dead, not waiting for anything
		t0 := time.Now()
		c.startCP()
		restarts = append(restarts, time.Since(t0))

		checkAcked(fmt.Sprintf("after restart %d", kill))
		events := c.timelineEvents(t)
		switch kill {
		case 2:
			if m := mode(); m != "READ_ONLY" {
				t.Errorf("after restart 2 the mode is %s, want the operator's READ_ONLY", m)
			}
			if !hasEvent(events, coreEvent{Type: "mode.changed", To: "READ_ONLY", Actor: "operator", Reason: "kill storm: read-only across a crash"}) {
				t.Error("after restart 2 the timeline lacks the operator's mode.changed to READ_ONLY")
			}
			if code, _, _, _ := c.submitKeyed("storm-probe-read-only", []byte(`{"kind":"sleep","duration_ms":1}`)); code != http.StatusServiceUnavailable {
				t.Errorf("a new submission in the restarted READ_ONLY cp got %d, want 503", code)
			}
			// Set back at once: the clients wait on it. Kill 3 checks that
			// this too survives.
			setMode("NORMAL", "kill storm: back to normal")
		case 3:
			if m := mode(); m != "NORMAL" {
				t.Errorf("after restart 3 the mode is %s, want NORMAL as the operator set it back", m)
			}
			if !hasEvent(events, coreEvent{Type: "mode.changed", To: "NORMAL", Actor: "operator", Reason: "kill storm: back to normal"}) {
				t.Error("after restart 3 the timeline lacks the operator's mode.changed to NORMAL")
			}
			if q, by := agentView("agent-3"); !q || by != "operator" {
				t.Errorf("after restart 3 agent-3 quarantined=%v by %q, want quarantined by operator", q, by)
			}
			if !hasEvent(events, coreEvent{Type: "agent.quarantined", AgentID: "agent-3", Actor: "operator", Reason: "kill storm: quarantined across a crash"}) {
				t.Error("after restart 3 the timeline lacks the operator's quarantine of agent-3")
			}
		case 4:
			if q, _ := agentView("agent-3"); q {
				t.Error("after restart 4 agent-3 is quarantined, but its release was answered 200 before the kill")
			}
			if !hasEvent(events, coreEvent{Type: "agent.released", AgentID: "agent-3", Actor: "operator", Reason: "kill storm: released"}) {
				t.Error("after restart 4 the timeline lacks the operator's release of agent-3")
			}
		}
		// Keys answered before the kill replay after it.
		for _, i := range rng.Perm(len(before))[:min(8, len(before))] {
			a := before[i]
			code, replayed, tk, err := c.submitKeyed(a.key, a.body)
			if code != http.StatusOK || !replayed || tk.ID != a.id {
				t.Errorf("after restart %d, key %s (task %s) again: %d replayed=%v task %s %v; want 200, replayed, the same task",
					kill, a.key, a.id, code, replayed, tk.ID, err)
			}
			replays++
		}
	}

	eventually(t, 45*time.Second, "the clients to finish", stormOver)
	stored := c.waitStored(t, 45*time.Second)
	mu.Lock()
	defer mu.Unlock()

	// Every acknowledged task SUCCEEDED exactly once in the cp's view.
	for _, a := range acks {
		tk := stored[a.id]
		succeeded := 0
		for _, at := range tk.Attempts {
			if at.Outcome == "succeeded" {
				succeeded++
			}
		}
		if tk.State != "SUCCEEDED" || succeeded != 1 {
			t.Errorf("task %s (key %s) ended %s (%s) with %d succeeded attempts: %+v", a.id, a.key, tk.State, tk.Reason, succeeded, tk.Attempts)
		}
	}
	// One task per key: a retried request never made a second task.
	byKey := map[string]string{}
	for _, tk := range stored {
		if other, dup := byKey[tk.IdempotencyKey]; dup {
			t.Errorf("key %s made two tasks: %s and %s", tk.IdempotencyKey, other, tk.ID)
		}
		byKey[tk.IdempotencyKey] = tk.ID
	}
	if unanswered := len(stored) - len(acks); unanswered < 0 || int64(unanswered) > gaveUp.Load() {
		t.Errorf("the cp holds %d tasks for %d answered keys and %d keys given up", len(stored), len(acks), gaveUp.Load())
	}

	// Executions as the agents saw them: every result they reported.
	runs := map[string]int{}
	for _, a := range c.agents {
		for _, r := range a.status(t).Results {
			if r.Outcome == "succeeded" {
				runs[r.TaskID]++
			}
		}
	}
	executions, duplicates := 0, 0
	for _, a := range acks {
		n := runs[a.id]
		if n == 0 {
			t.Errorf("task %s is SUCCEEDED in the cp but no agent reported running it", a.id)
		}
		executions += n
		if n > 1 {
			duplicates++
		}
	}
	slices.Sort(restarts)
	t.Logf("%d kills; %d submissions answered (%d found applied on retry after no answer), %d retries, %d keys given up at the deadline; "+
		"%d pre-crash keys replayed; %d executions of %d tasks on the agents, %d tasks run more than once; restart (start to ready) median %v max %v",
		kills, len(acks), inDoubt.Load(), retried.Load(), gaveUp.Load(), replays, executions, len(acks), duplicates,
		restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
	if len(acks) < clients*perClient/2 {
		t.Errorf("only %d of %d submissions answered within the storm's time", len(acks), clients*perClient)
	}
}

// waitStored waits until every task the cp holds is terminal.
func (c *cluster) waitStored(t testing.TB, within time.Duration) map[string]storedTask {
	t.Helper()
	var stored map[string]storedTask
	eventually(t, within, "every task to end", func() bool {
		var err error
		if stored, err = c.storedTasks(); err != nil {
			return false
		}
		for _, tk := range stored {
			if !terminal(tk.State) {
				return false
			}
		}
		return true
	})
	return stored
}
