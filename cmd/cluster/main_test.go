package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	cfg, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CPBin, cfg.AgentBin, cfg.AgentToken = "/bin/cp", "/bin/agent", "tok"
	ps := plan(cfg)
	if len(ps) != 7 || ps[0].Name != "cp" || ps[0].Bin != "/bin/cp" || strings.Join(ps[0].Args, " ") != "-listen 127.0.0.1:8080 -data-dir .cluster-data" {
		t.Fatalf("plan %+v", ps)
	}
	zones := map[string]int{}
	for i, p := range ps[1:] {
		args := strings.Join(p.Args, " ")
		want := fmt.Sprintf("-listen 127.0.0.1:%d -cp http://127.0.0.1:8080 -id agent-%d", 9091+i, i+1)
		if p.Bin != "/bin/agent" || !strings.HasPrefix(args, want) {
			t.Errorf("agent %d args %q, want prefix %q", i+1, args, want)
		}
		for j, a := range p.Args {
			if a == "-domain" {
				zones[p.Args[j+1]]++
			}
		}
		if !strings.Contains(strings.Join(p.Env, " "), "FLUX_AGENT_TOKEN=tok") || strings.Contains(args, "tok") {
			t.Errorf("agent %d: the token goes in the environment, not the flags: %v %q", i+1, p.Env, args)
		}
	}
	if zones["zone-a"] != 2 || zones["zone-b"] != 2 || zones["zone-c"] != 2 {
		t.Errorf("zones %v, want two agents in each of three", zones)
	}
}

func TestPlanThreeCPs(t *testing.T) {
	cfg, err := parseConfig([]string{"-cps", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CPBin, cfg.AgentBin, cfg.AgentToken = "/bin/cp", "/bin/agent", "tok"
	ps := plan(cfg)
	if len(ps) != 9 {
		t.Fatalf("plan of %d processes, want 3 cps and 6 agents", len(ps))
	}
	peers := "cp1=127.0.0.1:8300,cp2=127.0.0.1:8301,cp3=127.0.0.1:8302"
	for i := range 3 {
		want := fmt.Sprintf("-listen 127.0.0.1:%d -advertise http://127.0.0.1:%d -data-dir .cluster-data/cp%d -node-id cp%d -raft-addr 127.0.0.1:%d -peers %s",
			8080+i, 8080+i, i+1, i+1, 8300+i, peers)
		if got := strings.Join(ps[i].Args, " "); ps[i].Name != fmt.Sprintf("cp%d", i+1) || got != want {
			t.Errorf("cp%d args %q, want %q", i+1, got, want)
		}
	}
	if args := strings.Join(ps[3].Args, " "); !strings.Contains(args, "-cp http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082") {
		t.Errorf("agent args %q do not name every cp", args)
	}
	if _, err := parseConfig([]string{"-cps", "3", "-cp-port", "9089"}, io.Discard); err == nil {
		t.Error("cp ports overlapping the agents' accepted")
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-zones", ","}, {"-agents", "0"}, {"-cp-port", "9093"}, {"-agent-base-port", "65535"}, {"extra"},
	} {
		if _, err := parseConfig(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	pw := prefixWriter{mu: &sync.Mutex{}, out: &out}
	pw.copyLines("cp", strings.NewReader("one\ntwo\nno newline"))
	if want := "[cp      ] one\n[cp      ] two\n[cp      ] no newline\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// freeRange finds n consecutive loopback ports that are free now.
func freeRange(t *testing.T, n int) int {
	for base := 20000 + int(time.Now().UnixNano()%20000); base < 60000; base += n + 7 {
		ok := true
		var lns []net.Listener
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClusterStartsAndStopsCleanly runs the real binaries: six agents in
// three zones register with the cp, and a stop request ends everything
// with status 0.
func TestClusterStartsAndStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries")
	}
	dir := t.TempDir()
	for _, name := range []string{"cp", "agent"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/fluxforge/fluxforge/cmd/"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, out)
		}
	}
	base := freeRange(t, 7)
	var stdout, stderr lockedBuffer
	stop := make(chan struct{})
	status := make(chan int, 1)
	go func() {
		status <- run([]string{"-cp-bin", filepath.Join(dir, "cp"), "-agent-bin", filepath.Join(dir, "agent"),
			"-cp-port", fmt.Sprint(base), "-agent-base-port", fmt.Sprint(base + 1), "-shutdown-grace", "2s",
			"-data-dir", t.TempDir()}, &stdout, &stderr, stop)
	}()
	cpURL := fmt.Sprintf("http://127.0.0.1:%d", base)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct {
			Agents []struct {
				ID        string `json:"id"`
				Domain    string `json:"domain"`
				Connected bool   `json:"connected"`
			} `json:"agents"`
		}
		connected := map[string]int{}
		if resp, err := http.Get(cpURL + "/v1/agents"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			for _, a := range list.Agents {
				if a.Connected {
					connected[a.Domain]++
				}
			}
		}
		if connected["zone-a"] == 2 && connected["zone-b"] == 2 && connected["zone-c"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("agents connected per zone: %v\nstderr:\n%s\nstdout:\n%s", connected, stderr.String(), stdout.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not an assertion
	}
	close(stop)
	select {
	case s := <-status:
		if s != 0 {
			t.Errorf("status %d\nstderr:\n%s", s, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the cluster did not stop")
	}
	out := stdout.String()
	for _, want := range []string{"[cp      ] ", "[agent-1 ] ", "[agent-6 ] ", "agent drained", `"msg":"stopped"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "stopped cleanly") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
