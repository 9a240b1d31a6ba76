package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAgentsTakeTheCPHeartbeatInterval runs the real binaries: a cp given
// only -heartbeat-timeout (its interval is a third of it), an agent given
// no interval (it adopts the cp's after registering) and agents given their
// own by flag or FLUX_ variable (they keep it); the cp shows each agent's
// real interval.
func TestAgentsTakeTheCPHeartbeatInterval(t *testing.T) {
	cpBin, agentBin := binaries(t)
	c := &cluster{t: t, cpBin: cpBin, agentBin: agentBin, agents: map[string]*agentProc{}}
	c.cpPort = freePort(t)
	c.cpURL = fmt.Sprintf("http://127.0.0.1:%d", c.cpPort)
	c.cp = start(t, "cp", cpBin, []string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"},
		"-listen", fmt.Sprintf("127.0.0.1:%d", c.cpPort), "-heartbeat-timeout", "1500ms", "-reconcile-interval", "100ms", "-in-memory")
	eventually(t, 20*time.Second, "the cp to be ready", func() bool {
		code, _ := call("GET", c.cpURL+"/readyz", "", nil, nil)
		return code == 200 || c.cp.exited()
	})
	if c.cp.exited() {
		t.Fatalf("cp -heartbeat-timeout 1500ms alone did not start:\n%s", c.cp.log())
	}

	startAgent := func(id string, env []string, args ...string) *agentProc {
		port := freePort(t)
		args = append([]string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-cp", c.cpURL, "-id", id, "-domain", "zone-a"}, args...)
		a := &agentProc{process: start(t, id, agentBin, append([]string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"}, env...), args...),
			id: id, domain: "zone-a", url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		c.agents[id] = a
		return a
	}
	want := map[string]int64{
		"adopts":   500, // 1500ms / 3
		"own-flag": 200,
		"own-env":  300,
	}
	startAgent("adopts", nil)
	startAgent("own-flag", nil, "-heartbeat-interval", "200ms")
	startAgent("own-env", []string{"FLUX_HEARTBEAT_INTERVAL=300ms"})

	type agentView struct {
		ID         string `json:"id"`
		Connected  bool   `json:"connected"`
		IntervalMS int64  `json:"heartbeat_interval_ms"`
	}
	seen := func() map[string]int64 {
		var list struct {
			Agents []agentView `json:"agents"`
		}
		if _, err := call("GET", c.cpURL+"/v1/agents", "", nil, &list); err != nil {
			return nil
		}
		out := map[string]int64{}
		for _, a := range list.Agents {
			if a.Connected {
				out[a.ID] = a.IntervalMS
			}
		}
		return out
	}
	eventually(t, 30*time.Second, "the cp to show every agent's interval", func() bool {
		got := seen()
		for id, ms := range want {
			if got[id] != ms {
				return false
			}
		}
		return true
	})
	for id, ms := range want {
		var st struct {
			IntervalMS int64 `json:"heartbeat_interval_ms"`
		}
		if _, err := call("GET", c.agents[id].url+"/v1/status", token, nil, &st); err != nil || st.IntervalMS != ms {
			t.Errorf("%s's status: %dms, %v; want %d", id, st.IntervalMS, err, ms)
		}
	}
	if log := c.agents["adopts"].log(); !strings.Contains(log, `"msg":"heartbeat interval set by cp","agent_id":"adopts","domain":"zone-a","heartbeat_interval":"500ms","was":"5s"`) {
		t.Errorf("the adopting agent did not log the change:\n%s", log)
	}
	if log := c.agents["own-flag"].log(); strings.Contains(log, "heartbeat interval set by cp") {
		t.Errorf("an agent with its own interval took the cp's:\n%s", log)
	}
	for _, a := range c.agents {
		a.terminate(t, 20*time.Second)
	}
	c.cp.terminate(t, 20*time.Second)
}
