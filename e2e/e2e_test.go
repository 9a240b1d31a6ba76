package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestKilledAgentTasksFinishElsewhereExactlyOnce is the acceptance
// test: 500 tasks, kill -9 an agent mid-run, every task ends SUCCEEDED
// exactly once; then the killed agent restarts and re-registers.
func TestKilledAgentTasksFinishElsewhereExactlyOnce(t *testing.T) {
	c := newCluster(t)
	// Three agents in the victim's zone: losing one of them is not a zone
	// outage (half or more of a zone's agents), so the zone stays open and
	// the restarted agent gets work at once.
	zones := []string{"zone-a", "zone-a", "zone-b", "zone-c", "zone-a"}
	for i, z := range zones {
		c.startAgent(fmt.Sprintf("agent-%d", i+1), z)
	}
	for _, a := range c.agents {
		a.ready(t)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	durations := make([]int, 500)
	for i := range durations {
		durations[i] = 50 + rng.IntN(151)
	}
	ids := c.submitSleeps(t, len(durations), func(i int) int { return durations[i] })

	victim := c.agents["agent-2"]
	eventually(t, 60*time.Second, "the victim to be mid-run", func() bool {
		st := victim.status(t)
		return len(st.Results) >= 10
	})
	victim.kill() // kill -9: no goodbye, no results
	t.Logf("killed %s", victim.id)

	all := c.waitTerminal(t, ids, 120*time.Second)

	// The agents that live tell what they ran and reported.
	reported := map[string]int{} // task → succeeded results reported by live agents
	for _, a := range c.agents {
		if a == victim {
			continue
		}
		for _, r := range a.status(t).Results {
			if r.Outcome == "succeeded" {
				reported[r.TaskID]++
			}
		}
	}
	onVictim, retried := 0, 0
	for _, id := range ids {
		tk := all[id]
		if tk.State != "SUCCEEDED" {
			t.Errorf("task %s ended %s: %s", id, tk.State, tk.Reason)
			continue
		}
		succeeded := 0
		for _, at := range tk.Attempts {
			if at.Outcome == "succeeded" {
				succeeded++
				if at.AgentID == victim.id {
					onVictim++
				} else if reported[id] != 1 {
					t.Errorf("task %s succeeded on %s, which reported %d successes of it", id, at.AgentID, reported[id])
				}
			}
		}
		if succeeded != 1 {
			t.Errorf("task %s has %d succeeded attempts: %+v", id, succeeded, tk.Attempts)
		}
		if reported[id] > 1 {
			t.Errorf("task %s succeeded %d times on live agents", id, reported[id])
		}
		if len(tk.Attempts) > 1 {
			retried++
		}
	}
	t.Logf("500 tasks SUCCEEDED exactly once; %d before the kill on %s, %d retried after it", onVictim, victim.id, retried)
	if retried == 0 {
		t.Error("no task was moved off the killed agent: the kill was not mid-run")
	}

	// The killed agent restarts (a new incarnation) and re-registers.
	again := c.startAgent(victim.id, victim.domain)
	again.ready(t)
	eventually(t, 20*time.Second, "the cp to see the agent connected", func() bool {
		var av struct {
			Connected bool `json:"connected"`
		}
		_, err := call("GET", c.cpURL+"/v1/agents/"+victim.id, "", nil, &av)
		return err == nil && av.Connected
	})
	more := c.submitSleeps(t, 40, func(int) int { return 10 })
	all = c.waitTerminal(t, more, 60*time.Second)
	ranOnRestarted := 0
	for _, id := range more {
		if all[id].State != "SUCCEEDED" {
			t.Errorf("task %s after the restart ended %s", id, all[id].State)
		}
		if all[id].AgentID == victim.id {
			ranOnRestarted++
		}
	}
	if ranOnRestarted == 0 {
		t.Error("the restarted agent took no work")
	}
	for _, a := range c.agents {
		if !a.exited() {
			a.terminate(t, 20*time.Second)
		}
	}
	c.cp.terminate(t, 20*time.Second)
	if !strings.Contains(again.log(), "agent drained") {
		t.Errorf("the restarted agent did not drain on SIGTERM:\n%s", again.log())
	}
}

// TestAgentsSurviveCPRestart: the cp is killed (SIGKILL) and started again on
// the same address and data dir; it still has every task it acknowledged,
// the agents re-register by themselves and run the new cp's work.
func TestAgentsSurviveCPRestart(t *testing.T) {
	c := newCluster(t)
	a1 := c.startAgent("agent-1", "zone-a")
	a2 := c.startAgent("agent-2", "zone-b")
	a1.ready(t)
	a2.ready(t)
	ids := c.submitSleeps(t, 20, func(int) int { return 20 })
	c.waitTerminal(t, ids, 30*time.Second)

	c.cp.kill()
	for _, a := range []*agentProc{a1, a2} {
		eventually(t, 10*time.Second, a.id+" to notice the cp is gone", func() bool {
			code, _ := call("GET", a.url+"/readyz", "", nil, nil)
			return code == 503
		})
	}
	c.startCP()
	for _, id := range ids {
		var task struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if code, err := call("GET", c.cpURL+"/v1/tasks/"+id, "", nil, &task); code != 200 || task.State != "SUCCEEDED" {
			t.Errorf("task %s after the restart: %d %+v %v, want it SUCCEEDED as before", id, code, task, err)
		}
	}
	a1.ready(t)
	a2.ready(t)
	eventually(t, 10*time.Second, "both agents registered with the new cp", func() bool {
		var list struct {
			Agents []struct {
				ID        string `json:"id"`
				Connected bool   `json:"connected"`
			} `json:"agents"`
		}
		if _, err := call("GET", c.cpURL+"/v1/agents", "", nil, &list); err != nil {
			return false
		}
		n := 0
		for _, a := range list.Agents {
			if a.Connected {
				n++
			}
		}
		return n == 2
	})
	more := c.submitSleeps(t, 20, func(int) int { return 20 })
	all := c.waitTerminal(t, more, 30*time.Second)
	for _, id := range more {
		if all[id].State != "SUCCEEDED" {
			t.Errorf("task %s on the new cp ended %s: %s", id, all[id].State, all[id].Reason)
		}
		if strings.Contains(strings.Join(ids, ","), id) {
			t.Errorf("the new cp reused the old cp's task id %s", id)
		}
	}
	for _, a := range []*agentProc{a1, a2} {
		if !strings.Contains(a.log(), "registered with cp") {
			t.Errorf("%s logged no registration", a.id)
		}
		a.terminate(t, 20*time.Second)
	}
	c.cp.terminate(t, 20*time.Second)
}
