package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file holds the harness: building the binaries, running processes,
// and talking to them over HTTP.

const token = "e2e-agent-token"

var build struct {
	once sync.Once
	dir  string
	err  error
}

// repoRoot is the module's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// binaries builds cmd/cp and cmd/agent once per test binary run and returns
// their paths. It skips the test when -short is set or cmd/cp is missing.
func binaries(t testing.TB) (cpBin, agentBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the real binaries (skipped with -short)")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "cp", "main.go")); err != nil {
		t.Skip("end-to-end: the cp binary's source cmd/cp/main.go does not exist yet")
	}
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "fluxforge-e2e-")
		if build.err != nil {
			return
		}
		for _, name := range []string{"cp", "agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(build.dir, name), "./cmd/"+name)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				build.err = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return filepath.Join(build.dir, "cp"), filepath.Join(build.dir, "agent")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// process is one running binary whose stderr goes to a file, dumped when
// the test fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	state   *os.ProcessState
}

func start(t testing.TB, name, bin string, env []string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- tail of %s's log ---\n%s", name, b)
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and reaps the process.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *process) terminate(t testing.TB, within time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.state.Success() {
			t.Errorf("%s exited with %v after SIGTERM", p.name, p.state)
		}
	case <-time.After(within):
		t.Errorf("%s did not exit within %v of SIGTERM", p.name, within)
	}
}

func (p *process) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// call does one JSON request; out, if not nil, receives a 2xx body.
func call(method, url, bearer string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	return resp.StatusCode, nil
}

// eventually polls cond every 20ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not an assertion
	}
}

// cluster is a cp and its agents.
type cluster struct {
	t        testing.TB
	cpBin    string
	agentBin string
	cpPort   int
	cpURL    string
	cp       *process
	agents   map[string]*agentProc
	cpArgs   []string
	dataDir  string // the cp's, kept across its restarts
}

type agentProc struct {
	*process
	id, domain string
	url        string
}

func newCluster(t testing.TB, cpArgs ...string) *cluster {
	cpBin, agentBin := binaries(t)
	c := &cluster{t: t, cpBin: cpBin, agentBin: agentBin, agents: map[string]*agentProc{}, cpArgs: cpArgs}
	c.dataDir = t.TempDir()
	c.cpPort = freePort(t)
	c.cpURL = fmt.Sprintf("http://127.0.0.1:%d", c.cpPort)
	c.startCP()
	return c
}

func (c *cluster) startCP() {
	c.t.Helper()
	args := []string{
		"-listen", fmt.Sprintf("127.0.0.1:%d", c.cpPort),
		"-heartbeat-interval", "100ms", "-heartbeat-timeout", "1s", "-lost-after", "2s",
		"-assign-timeout", "2s", "-reconcile-interval", "100ms",
	}
	if !slices.Contains(c.cpArgs, "-in-memory") {
		args = append(args, "-data-dir", c.dataDir)
	}
	args = append(args, c.cpArgs...)
	c.cp = start(c.t, "cp", c.cpBin, []string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"}, args...)
	eventually(c.t, 20*time.Second, "the cp to be ready", func() bool {
		code, _ := call("GET", c.cpURL+"/readyz", "", nil, nil)
		return code == 200 || c.cp.exited()
	})
	if c.cp.exited() {
		c.t.Fatalf("the cp exited at start:\n%s", c.cp.log())
	}
}

func (c *cluster) startAgent(id, domain string, extra ...string) *agentProc {
	c.t.Helper()
	port := freePort(c.t)
	args := append([]string{
		"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-cp", c.cpURL, "-id", id, "-domain", domain,
		"-slots", "4", "-heartbeat-interval", "100ms", "-shutdown-grace", "5s",
	}, extra...)
	a := &agentProc{process: start(c.t, id, c.agentBin, []string{"FLUX_AGENT_TOKEN=" + token, "FLUX_LOG_LEVEL=info"}, args...),
		id: id, domain: domain, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.agents[id] = a
	return a
}

// ready waits until the agent's heartbeats are answered by the cp.
func (a *agentProc) ready(t testing.TB) {
	t.Helper()
	eventually(t, 20*time.Second, a.id+" to be ready", func() bool {
		code, _ := call("GET", a.url+"/readyz", "", nil, nil)
		return code == 200 || a.exited()
	})
	if a.exited() {
		t.Fatalf("%s exited at start:\n%s", a.id, a.log())
	}
}

// agentStatus mirrors agent.Status (only what the tests read).
type agentStatus struct {
	AgentID     string `json:"agent_id"`
	Incarnation uint64 `json:"incarnation"`
	CPConnected bool   `json:"cp_connected"`
	Results     []struct {
		TaskID     string    `json:"task_id"`
		Attempt    int       `json:"attempt"`
		Outcome    string    `json:"outcome"`
		DurationMS int64     `json:"duration_ms"`
		ReportedAt time.Time `json:"reported_at"`
	} `json:"results"`
	PendingResults int `json:"pending_results"`
}

func (a *agentProc) status(t testing.TB) agentStatus {
	t.Helper()
	var st agentStatus
	if _, err := call("GET", a.url+"/v1/status", token, nil, &st); err != nil {
		t.Fatalf("%s status: %v", a.id, err)
	}
	return st
}

// task mirrors the cp's task view (only what the tests read).
type task struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	Attempt     int       `json:"attempt"`
	AgentID     string    `json:"agent_id"`
	Reason      string    `json:"reason"`
	SubmittedAt time.Time `json:"submitted_at"`
	Attempts    []struct {
		Attempt    int       `json:"attempt"`
		AgentID    string    `json:"agent_id"`
		AssignedAt time.Time `json:"assigned_at"`
		Outcome    string    `json:"outcome"`
		Error      string    `json:"error"`
	} `json:"attempts"`
}

func (c *cluster) submit(body map[string]any) (task, error) {
	var tk task
	for {
		code, err := call("POST", c.cpURL+"/v1/tasks", "", body, &tk)
		if code == http.StatusTooManyRequests {
			time.Sleep(50 * time.Millisecond) // back off as Retry-After asks
			continue
		}
		return tk, err
	}
}

// submitSleeps submits n sleep tasks from several clients at once.
func (c *cluster) submitSleeps(t testing.TB, n int, duration func(i int) int) []string {
	t.Helper()
	ids := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				tk, err := c.submit(map[string]any{"kind": "sleep", "duration_ms": duration(i)})
				if err != nil {
					errs <- err
					continue
				}
				ids[i] = tk.ID
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("submit: %v", err)
	}
	return ids
}

// tasks lists every task the cp holds.
func (c *cluster) tasks(t testing.TB) map[string]task {
	t.Helper()
	out := map[string]task{}
	after := ""
	for {
		var page struct {
			Tasks     []task `json:"tasks"`
			NextAfter string `json:"next_after"`
		}
		if _, err := call("GET", c.cpURL+"/v1/tasks?limit=1000&after="+after, "", nil, &page); err != nil {
			t.Fatalf("list tasks: %v", err)
		}
		for _, tk := range page.Tasks {
			out[tk.ID] = tk
		}
		if page.NextAfter == "" {
			return out
		}
		after = page.NextAfter
	}
}

func terminal(state string) bool {
	switch state {
	case "SUCCEEDED", "FAILED", "CANCELLED", "DEAD":
		return true
	}
	return false
}

// waitTerminal waits until every id is terminal and returns the tasks.
func (c *cluster) waitTerminal(t testing.TB, ids []string, within time.Duration) map[string]task {
	t.Helper()
	var all map[string]task
	eventually(t, within, fmt.Sprintf("%d tasks to end", len(ids)), func() bool {
		all = c.tasks(t)
		for _, id := range ids {
			if !terminal(all[id].State) {
				return false
			}
		}
		return true
	})
	return all
}
