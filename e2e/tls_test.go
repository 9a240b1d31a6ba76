package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

// TestTLSCluster: a cp and three agents over TLS only (the cp's API port
// with -tls-client-ca, the agents' ports, the agents' client certificates
// naming them, named tokens) run work end to end; an agent whose
// certificate names another id never registers; the cp re-reads its
// certificate on SIGHUP and goes on.
func TestTLSCluster(t *testing.T) {
	cpBin, agentBin := binaries(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "fluxforge-e2e-ca")
	caFile := tlstest.Write(t, dir, "ca.crt", ca.PEM)
	cpCert, cpKey := ca.Issue(t, "cp-1", tlstest.Opts{}).WriteCert(t, dir, "cp")
	// The shared agent token: with -tls-client-ca the certificates name the
	// agents. (Agents' own tokens need the agent-initiated protocol: the
	// cp sends assignments with the shared one.)
	tokensFile := tlstest.Write(t, dir, "tokens", []byte("ops admin e2e-ops-token\nagent agent e2e-agent-token\n"))

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16}}
	defer hc.CloseIdleConnections()
	do := func(method, url, bearer string, body, out any) (int, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, url, rd)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
		}
		if out != nil {
			return resp.StatusCode, json.Unmarshal(b, out)
		}
		return resp.StatusCode, nil
	}

	cpPort := freePort(t)
	cpURL := fmt.Sprintf("https://127.0.0.1:%d", cpPort)
	cp := start(t, "cp", cpBin, []string{"FLUX_LOG_LEVEL=info"},
		"-listen", fmt.Sprintf("127.0.0.1:%d", cpPort), "-in-memory", "-heartbeat-interval", "100ms", "-reconcile-interval", "100ms",
		"-tls-cert", cpCert, "-tls-key", cpKey, "-tls-client-ca", caFile, "-tokens-file", tokensFile)
	eventually(t, 20*time.Second, "the cp to be ready over TLS", func() bool {
		code, _ := do("GET", cpURL+"/readyz", "", nil, nil)
		return code == 200 || cp.exited()
	})
	if cp.exited() {
		t.Fatalf("the cp exited:\n%s", cp.log())
	}

	startAgent := func(id, certFor string) (*process, string) {
		cert, key := ca.Issue(t, certFor, tlstest.Opts{}).WriteCert(t, dir, id)
		port := freePort(t)
		p := start(t, id, agentBin, []string{"FLUX_LOG_LEVEL=info", "FLUX_AGENT_TOKEN=e2e-agent-token"},
			"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-cp", cpURL, "-id", id, "-domain", "zone-"+id,
			"-slots", "4", "-heartbeat-interval", "100ms", "-tls-ca", caFile, "-tls-cert", cert, "-tls-key", key)
		return p, fmt.Sprintf("https://127.0.0.1:%d", port)
	}
	connected := func(id string) bool {
		var a struct {
			Connected bool `json:"connected"`
		}
		code, _ := do("GET", cpURL+"/v1/agents/"+id, "", nil, &a)
		return code == 200 && a.Connected
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		p, url := startAgent(id, id)
		eventually(t, 20*time.Second, id+" to connect over TLS", func() bool {
			code, _ := do("GET", url+"/readyz", "", nil, nil)
			return code == 200 && connected(id) || p.exited()
		})
		if p.exited() {
			t.Fatalf("%s exited:\n%s", id, p.log())
		}
	}
	// a4 holds a certificate for a1: refused, never registered.
	impostor, _ := startAgent("a4", "a1")
	eventually(t, 20*time.Second, "the impostor's refusals to be counted", func() bool {
		return metricAtLeast(hc, cpURL, `flux_auth_refusals_total{reason="wrong_agent"}`, 3)
	})
	if code, _ := do("GET", cpURL+"/v1/agents/a4", "", nil, nil); code != http.StatusNotFound {
		t.Fatalf("a4, holding a1's certificate, registered (%d)", code)
	}
	impostor.kill()

	const n = 60
	ids := make([]string, 0, n)
	for i := range n {
		var tk struct {
			ID string `json:"id"`
		}
		if _, err := do("POST", cpURL+"/v1/tasks", "e2e-ops-token", map[string]any{"kind": "sleep", "duration_ms": 20 + i%5*10}, &tk); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
		if i == n/2 {
			// Rotate the cp's certificate mid-run.
			ca.Issue(t, "cp-1", tlstest.Opts{NotAfter: time.Now().Add(72 * time.Hour)}).WriteCert(t, dir, "cp")
			if err := cp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 60*time.Second, "every task to succeed over TLS", func() bool {
		for _, id := range ids {
			var tk struct {
				State string `json:"state"`
			}
			if _, err := do("GET", cpURL+"/v1/tasks/"+id, "", nil, &tk); err != nil || tk.State != "SUCCEEDED" {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "the reload to be logged", func() bool { return strings.Contains(cp.log(), "TLS files reloaded") })
	if !metricAtLeast(hc, cpURL, "flux_tls_cert_expiry_seconds", float64(time.Now().Add(48*time.Hour).Unix())) {
		t.Fatal("flux_tls_cert_expiry_seconds does not show the reloaded certificate's expiry")
	}
	if code, err := do("POST", cpURL+"/admin/mode", "e2e-agent-token", map[string]string{"mode": "DRAINING"}, nil); code != http.StatusForbidden {
		t.Fatalf("an agent's token set the mode: %d %v", code, err)
	}
	if _, err := do("POST", cpURL+"/admin/mode", "e2e-ops-token", map[string]string{"mode": "DRAINING"}, nil); err != nil {
		t.Fatal(err)
	}
	var snap struct {
		ModeSetBy     string `json:"mode_set_by"`
		ModeSetByName string `json:"mode_set_by_name"`
	}
	if _, err := do("GET", cpURL+"/scheduler/debug/snapshot", "", nil, &snap); err != nil || snap.ModeSetBy != "operator" || snap.ModeSetByName != "ops" {
		t.Fatalf("snapshot: %+v %v", snap, err)
	}
}

// metricAtLeast reports whether series on the cp's /metrics is at least min.
func metricAtLeast(hc *http.Client, cpURL, series string, min float64) bool {
	resp, err := hc.Get(cpURL + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			_, _ = fmt.Sscan(v, &f)
			return f >= min
		}
	}
	return false
}

// TestTLSThreeCPs: three cps whose raft runs over TLS (each certificate
// names its node id) and whose API is TLS only, and agents with their own
// certificates and per-agent tokens that know all three, run work end to
// end through a follower; the leader is killed and the work goes on.
func TestTLSThreeCPs(t *testing.T) {
	if testing.Short() {
		t.Skip("real binaries")
	}
	cpBin, agentBin := binaries(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "fluxforge-e2e-ca")
	caFile := tlstest.Write(t, dir, "ca.crt", ca.PEM)
	tokensFile := tlstest.Write(t, dir, "tokens", []byte("ops admin e2e-ops-token\na1 agent tok-a1\na2 agent tok-a2\n"))
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16}}
	defer hc.CloseIdleConnections()
	getJSON := func(url string, out any) int {
		resp, err := hc.Get(url)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if resp.StatusCode == 200 && out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}

	type node struct {
		id, url, raft, data, cert, key string
		port                           int
		p                              *process
	}
	var nodes []*node
	var peers []string
	for i := range 3 {
		nd := &node{id: fmt.Sprintf("cp%d", i+1), port: freePort(t), data: t.TempDir()}
		nd.url = fmt.Sprintf("https://127.0.0.1:%d", nd.port)
		nd.raft = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		nd.cert, nd.key = ca.Issue(t, nd.id, tlstest.Opts{}).WriteCert(t, dir, nd.id)
		peers = append(peers, nd.id+"="+nd.raft)
		nodes = append(nodes, nd)
	}
	startNode := func(nd *node) {
		nd.p = start(t, nd.id, cpBin, []string{"FLUX_LOG_LEVEL=info"},
			"-listen", fmt.Sprintf("127.0.0.1:%d", nd.port), "-advertise", nd.url, "-data-dir", nd.data,
			"-node-id", nd.id, "-raft-addr", nd.raft, "-peers", strings.Join(peers, ","), "-raft-timing", "0.3",
			"-heartbeat-interval", "100ms", "-reconcile-interval", "100ms",
			"-tls-cert", nd.cert, "-tls-key", nd.key, "-tls-client-ca", caFile, "-tokens-file", tokensFile)
	}
	for _, nd := range nodes {
		startNode(nd)
	}
	leader := func() *node {
		for _, nd := range nodes {
			var s struct {
				Role string `json:"role"`
			}
			if !nd.p.exited() && getJSON(nd.url+"/scheduler/debug/snapshot", &s) == 200 && s.Role == "leader" {
				return nd
			}
		}
		return nil
	}
	var l *node
	eventually(t, 30*time.Second, "a leader over TLS raft", func() bool {
		l = leader()
		return l != nil && getJSON(l.url+"/readyz", nil) == 200
	})
	var urls []string
	for _, nd := range nodes {
		urls = append(urls, nd.url)
	}
	for _, id := range []string{"a1", "a2"} {
		cert, key := ca.Issue(t, id, tlstest.Opts{}).WriteCert(t, dir, id)
		start(t, id, agentBin, []string{"FLUX_LOG_LEVEL=info", "FLUX_AGENT_TOKEN=tok-" + id},
			"-listen", "none", "-cp", strings.Join(urls, ","), "-id", id, "-domain", "zone-"+id,
			"-slots", "4", "-heartbeat-interval", "100ms", "-tls-ca", caFile, "-tls-cert", cert, "-tls-key", key)
	}
	submitAll := func(n int, via func() *node) []string {
		var ids []string
		for i := 0; len(ids) < n; i++ {
			nd := via()
			b, _ := json.Marshal(map[string]any{"kind": "sleep", "duration_ms": 20})
			req, _ := http.NewRequest("POST", nd.url+"/v1/tasks", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer e2e-ops-token")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("tls-ha-%d", len(ids)))
			resp, err := hc.Do(req)
			if err != nil {
				continue
			}
			var tk struct {
				ID string `json:"id"`
			}
			if resp.StatusCode/100 == 2 {
				_ = json.NewDecoder(resp.Body).Decode(&tk)
				ids = append(ids, tk.ID)
			}
			resp.Body.Close()
			if i > 50*n {
				t.Fatalf("only %d of %d submissions went through", len(ids), n)
			}
		}
		return ids
	}
	succeeded := func(ids []string) {
		eventually(t, 60*time.Second, fmt.Sprintf("%d tasks to succeed", len(ids)), func() bool {
			l := leader()
			if l == nil {
				return false
			}
			for _, id := range ids {
				var tk struct {
					State string `json:"state"`
				}
				if getJSON(l.url+"/v1/tasks/"+id, &tk) != 200 || tk.State != "SUCCEEDED" {
					return false
				}
			}
			return true
		})
	}
	follower := func() *node {
		for _, nd := range nodes {
			if nd != l && !nd.p.exited() {
				return nd
			}
		}
		return nil
	}
	first := submitAll(20, follower)
	succeeded(first)
	l.p.kill()
	second := submitAll(20, follower)
	succeeded(append(first, second...))
}
