package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestAgentWithoutPortRunsWork: agents dial in. An agent started with
// -listen none opens no port at all, so nothing can connect to it, yet it
// registers, takes work by polling the cp and reports results; another
// agent on -cp-http1=false (HTTP/2, one connection) works as well.
func TestAgentWithoutPortRunsWork(t *testing.T) {
	c := newCluster(t)
	portless := start(t, "portless", c.agentBin, []string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"},
		"-listen", "none", "-cp", c.cpURL, "-id", "portless", "-domain", "zone-a",
		"-slots", "4", "-heartbeat-interval", "100ms", "-shutdown-grace", "5s")
	http2 := start(t, "http2", c.agentBin, []string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"},
		"-listen", "none", "-cp", c.cpURL, "-id", "http2", "-domain", "zone-b", "-cp-http1=false",
		"-slots", "4", "-heartbeat-interval", "100ms", "-shutdown-grace", "5s")
	for _, id := range []string{"portless", "http2"} {
		eventually(t, 20*time.Second, id+" connected", func() bool {
			var a struct {
				Connected bool `json:"connected"`
			}
			code, _ := call("GET", c.cpURL+"/v1/agents/"+id, "", nil, &a)
			return code == 200 && a.Connected || portless.exited() || http2.exited()
		})
	}
	if portless.exited() || http2.exited() {
		t.Fatalf("an agent exited:\n%s\n%s", portless.log(), http2.log())
	}
	for _, zone := range []string{"zone-a", "zone-b"} {
		var ids []string
		for range 20 {
			tk, err := c.submit(map[string]any{"kind": "sleep", "duration_ms": 10, "domain": zone})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tk.ID)
		}
		all := c.waitTerminal(t, ids, 60*time.Second)
		want := map[string]string{"zone-a": "portless", "zone-b": "http2"}[zone]
		for _, id := range ids {
			if tk := all[id]; tk.State != "SUCCEEDED" || tk.AgentID != want {
				t.Errorf("task %s in %s: %s on %s, want SUCCEEDED on %s", id, zone, tk.State, tk.AgentID, want)
			}
		}
	}
	if !strings.Contains(portless.log(), "no local port (-listen none)") || strings.Contains(portless.log(), `"msg":"listening"`) {
		t.Errorf("the portless agent's log:\n%s", portless.log())
	}
	portless.terminate(t, 20*time.Second)
	http2.terminate(t, 20*time.Second)
}
