// Command cluster runs a local FluxForge cluster on loopback: one cp on
// :8080 and six agents on :9091..9096 in three zones (zone-a, zone-b,
// zone-c), every line of their logs prefixed with its name. Ctrl-C (or
// SIGTERM) stops it cleanly: the agents first (they finish or cancel their
// work and report it), then the cp; a second Ctrl-C kills everything.
//
//	go run ./cmd/cluster                 # builds cmd/cp and cmd/agent into a temp dir
//	go run ./cmd/cluster -cp-bin bin/cp -agent-bin bin/agent -allow-exec
//
// Then, in another terminal:
//
//	curl localhost:8080/scheduler/debug/snapshot | jq .mode
//	curl -XPOST localhost:8080/v1/tasks -d '{"kind":"sleep","duration_ms":500}'
//	curl localhost:9091/metrics | grep flux_agent_
//
// The cp keeps its durable state (its raft log, see cmd/cp) in -data-dir,
// .cluster-data in the working directory by default (git-ignored), so a
// cluster started again has the queue, the timeline, quarantines and the
// mode of the last run. To start from nothing, stop the cluster and wipe it:
//
//	rm -rf .cluster-data
//
// The agents and the cp share a random agent token made for the run and
// passed to them in FLUX_AGENT_TOKEN (-agent-token sets a fixed one); it is
// printed so /v1/status on an agent can be called by hand.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	CPBin, AgentBin string
	CPPort          int
	AgentBasePort   int
	Agents          int
	Zones           []string
	Slots           int
	AllowExec       bool
	AgentToken      string
	AdminToken      string
	LogLevel        string
	ShutdownGrace   time.Duration
	Host            string
	DataDir         string
	CPs             int // control planes: 1, or 3 or 5 on one raft log
	RaftBasePort    int
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	zones := fs.String("zones", "zone-a,zone-b,zone-c", "comma-separated zones; agents are spread over them in turn")
	fs.StringVar(&c.CPBin, "cp-bin", "", "cp binary; built from ./cmd/cp into a temp dir when empty")
	fs.StringVar(&c.AgentBin, "agent-bin", "", "agent binary; built from ./cmd/agent into a temp dir when empty")
	fs.IntVar(&c.CPPort, "cp-port", 8080, "cp port")
	fs.IntVar(&c.AgentBasePort, "agent-base-port", 9091, "port of agent-1; agent-N listens on base+N-1")
	fs.IntVar(&c.Agents, "agents", 6, "number of agents")
	fs.IntVar(&c.Slots, "slots", 4, "slots per agent")
	fs.BoolVar(&c.AllowExec, "allow-exec", false, "let the agents run kind exec")
	fs.StringVar(&c.AgentToken, "agent-token", "", "shared agent token; random per run when empty")
	fs.StringVar(&c.AdminToken, "admin-token", "", "cp admin token (none when empty)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "FLUX_LOG_LEVEL for every process")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 10*time.Second, "agents' -shutdown-grace")
	fs.StringVar(&c.Host, "host", "127.0.0.1", "address everything listens on")
	fs.StringVar(&c.DataDir, "data-dir", ".cluster-data", "the cp's data dir, kept between runs (rm -rf it to start from nothing); with -cps N, cpK's is DATA-DIR/cpK")
	fs.IntVar(&c.CPs, "cps", 1, "control planes: 1, or 3 (or 5) replicas on one raft log on ports -cp-port.. and raft ports -raft-base-port..")
	fs.IntVar(&c.RaftBasePort, "raft-base-port", 8300, "raft port of cp1 with -cps > 1; cpK uses base+K-1")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, z := range strings.Split(*zones, ",") {
		if z = strings.TrimSpace(z); z != "" {
			c.Zones = append(c.Zones, z)
		}
	}
	switch {
	case strings.TrimSpace(c.DataDir) == "":
		return config{}, errors.New("-data-dir names no directory")
	case c.CPs < 1 || c.CPs > 7:
		return config{}, errors.New("-cps must be between 1 and 7 (3 or 5 for a cluster)")
	case c.CPPort+c.CPs-1 >= c.AgentBasePort && c.CPPort < c.AgentBasePort+c.Agents:
		return config{}, fmt.Errorf("-cp-port %d..%d collides with the agents' ports", c.CPPort, c.CPPort+c.CPs-1)
	case len(c.Zones) == 0:
		return config{}, errors.New("-zones names no zone")
	case c.Agents < 1 || c.Agents > 1000:
		return config{}, errors.New("-agents must be between 1 and 1000")
	case c.CPPort < 1 || c.CPPort > 65535 || c.AgentBasePort < 1 || c.AgentBasePort+c.Agents-1 > 65535:
		return config{}, errors.New("ports out of range")
	case c.CPPort >= c.AgentBasePort && c.CPPort < c.AgentBasePort+c.Agents:
		return config{}, fmt.Errorf("-cp-port %d collides with the agents' ports", c.CPPort)
	}
	return c, nil
}

// child is one process of the cluster.
type child struct {
	Name string
	Bin  string
	Args []string
	Env  []string // added to the inherited environment
}

func (c config) cpURL() string { return c.cpURLOf(0) }

// cpURLOf is the API URL of cp i (0-based).
func (c config) cpURLOf(i int) string { return fmt.Sprintf("http://%s:%d", c.Host, c.CPPort+i) }

// cpURLs is every cp's URL, comma-separated: the agents' -cp.
func (c config) cpURLs() string {
	urls := make([]string, c.CPs)
	for i := range urls {
		urls[i] = c.cpURLOf(i)
	}
	return strings.Join(urls, ",")
}

// plan lists the processes to start, the cp first.
func plan(c config) []child {
	common := []string{"FLUX_AGENT_TOKEN=" + c.AgentToken, "FLUX_LOG_LEVEL=" + c.LogLevel}
	cpEnv := append([]string{}, common...)
	if c.AdminToken != "" {
		cpEnv = append(cpEnv, "FLUX_ADMIN_TOKEN="+c.AdminToken)
	}
	var out []child
	if c.CPs == 1 {
		out = append(out, child{Name: "cp", Bin: c.CPBin, Args: []string{"-listen", fmt.Sprintf("%s:%d", c.Host, c.CPPort), "-data-dir", c.DataDir}, Env: cpEnv})
	} else {
		peers := make([]string, c.CPs)
		for i := range peers {
			peers[i] = fmt.Sprintf("cp%d=%s:%d", i+1, c.Host, c.RaftBasePort+i)
		}
		for i := range c.CPs {
			id := fmt.Sprintf("cp%d", i+1)
			out = append(out, child{Name: id, Bin: c.CPBin, Env: cpEnv, Args: []string{
				"-listen", fmt.Sprintf("%s:%d", c.Host, c.CPPort+i), "-advertise", c.cpURLOf(i),
				"-data-dir", filepath.Join(c.DataDir, id), "-node-id", id,
				"-raft-addr", fmt.Sprintf("%s:%d", c.Host, c.RaftBasePort+i), "-peers", strings.Join(peers, ","),
			}})
		}
	}
	for i := range c.Agents {
		args := []string{
			"-listen", fmt.Sprintf("%s:%d", c.Host, c.AgentBasePort+i), "-cp", c.cpURLs(),
			"-id", fmt.Sprintf("agent-%d", i+1), "-domain", c.Zones[i%len(c.Zones)],
			"-slots", fmt.Sprint(c.Slots), "-shutdown-grace", c.ShutdownGrace.String(),
		}
		if c.AllowExec {
			args = append(args, "-allow-exec")
		}
		out = append(out, child{Name: fmt.Sprintf("agent-%d", i+1), Bin: c.AgentBin, Args: args, Env: common})
	}
	return out
}

// prefixWriter writes each complete line as "[name] line" to out; lines
// of all children go through one mutex so they never interleave.
type prefixWriter struct {
	mu  *sync.Mutex
	out io.Writer
}

func (p prefixWriter) copyLines(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		fmt.Fprintf(p.out, "[%-8s] %s\n", name, sc.Text())
		p.mu.Unlock()
	}
}

type running struct {
	child
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run starts the cluster and blocks until a signal (or stop, for tests)
// asks it to stop. It returns the exit status.
func run(args []string, stdout, stderr io.Writer, stop <-chan struct{}) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cluster: %v\n", err)
		return 2
	}
	if cfg.AgentToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		cfg.AgentToken = fmt.Sprintf("%x", b)
	}
	if cfg.CPBin == "" || cfg.AgentBin == "" {
		dir, err := os.MkdirTemp("", "fluxforge-cluster-")
		if err != nil {
			fmt.Fprintf(stderr, "cluster: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			path *string
			pkg  string
		}{{&cfg.CPBin, "./cmd/cp"}, {&cfg.AgentBin, "./cmd/agent"}} {
			if *b.path != "" {
				continue
			}
			*b.path = filepath.Join(dir, filepath.Base(b.pkg))
			fmt.Fprintf(stderr, "cluster: go build -o %s %s\n", *b.path, b.pkg)
			cmd := exec.Command("go", "build", "-o", *b.path, b.pkg)
			cmd.Stdout, cmd.Stderr = stderr, stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(stderr, "cluster: building %s: %v (run from the repository, or pass -cp-bin and -agent-bin)\n", b.pkg, err)
				return 1
			}
		}
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	stopReq := make(chan struct{}, 2)
	go func() {
		for {
			select {
			case <-sigs:
			case <-stop:
				stop = nil
			}
			stopReq <- struct{}{}
		}
	}()

	pw := prefixWriter{mu: &sync.Mutex{}, out: stdout}
	var procs []*running
	var wg sync.WaitGroup
	startChild := func(c child) (*running, error) {
		cmd := exec.Command(c.Bin, c.Args...)
		cmd.Env = append(os.Environ(), c.Env...)
		// A process group of its own: a terminal's Ctrl-C reaches only us,
		// and we stop the children in order.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		r, w := io.Pipe()
		cmd.Stdout, cmd.Stderr = w, w
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", c.Name, err)
		}
		p := &running{child: c, cmd: cmd, done: make(chan struct{})}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw.copyLines(c.Name, r)
		}()
		go func() {
			p.err = cmd.Wait()
			w.Close()
			close(p.done)
		}()
		return p, nil
	}
	stopAll := func(ps []*running, sig syscall.Signal, within time.Duration) bool {
		for _, p := range ps {
			_ = p.cmd.Process.Signal(sig)
		}
		deadline := time.After(within)
		for _, p := range ps {
			select {
			case <-p.done:
			case <-deadline:
				return false
			case <-stopReq: // asked twice: no more waiting
				return false
			}
		}
		return true
	}
	shutdown := func() int {
		status := 0
		agents := append([]*running(nil), procs[1:]...)
		fmt.Fprintf(stderr, "cluster: stopping %d agents (Ctrl-C again to kill)\n", len(agents))
		if !stopAll(agents, syscall.SIGTERM, cfg.ShutdownGrace+15*time.Second) {
			status = 1
			stopAll(procs, syscall.SIGKILL, 5*time.Second)
		}
		fmt.Fprintln(stderr, "cluster: stopping the cp")
		if !stopAll(procs[:min(cfg.CPs, len(procs))], syscall.SIGTERM, 20*time.Second) {
			status = 1
			stopAll(procs, syscall.SIGKILL, 5*time.Second)
		}
		wg.Wait()
		for _, p := range procs {
			if p.err != nil {
				fmt.Fprintf(stderr, "cluster: %s exited: %v\n", p.Name, p.err)
				status = 1
			}
		}
		if status == 0 {
			fmt.Fprintln(stderr, "cluster: stopped cleanly")
		}
		return status
	}

	children := plan(cfg)
	cpDone := make(chan *running, cfg.CPs)
	for _, c := range children[:cfg.CPs] {
		cp, err := startChild(c)
		if err != nil {
			fmt.Fprintf(stderr, "cluster: %v\n", err)
			stopAll(procs, syscall.SIGKILL, 5*time.Second)
			wg.Wait()
			return 1
		}
		procs = append(procs, cp)
		go func() { <-cp.done; cpDone <- cp }()
	}
	for i, cp := range procs {
		if !waitReady(cfg.cpURLOf(i)+"/readyz", 30*time.Second, cp.done) {
			fmt.Fprintf(stderr, "cluster: %s did not become ready\n", cp.Name)
			stopAll(procs, syscall.SIGKILL, 5*time.Second)
			wg.Wait()
			return 1
		}
	}
	for _, c := range children[cfg.CPs:] {
		p, err := startChild(c)
		if err != nil {
			fmt.Fprintf(stderr, "cluster: %v\n", err)
			return shutdown() | 1
		}
		procs = append(procs, p)
	}
	fmt.Fprintf(stderr, "cluster: cp on %s; %d agents on ports %d..%d in %s; agent token %s\n",
		cfg.cpURLs(), cfg.Agents, cfg.AgentBasePort, cfg.AgentBasePort+cfg.Agents-1, strings.Join(cfg.Zones, ", "), cfg.AgentToken)
	fmt.Fprintf(stderr, "cluster: try  curl %s/scheduler/debug/snapshot | jq .mode   (Ctrl-C stops the cluster)\n", cfg.cpURL())

	select {
	case <-stopReq:
	case cp := <-cpDone:
		fmt.Fprintf(stderr, "cluster: %s exited unexpectedly: %v\n", cp.Name, cp.err)
		return shutdown() | 1
	}
	return shutdown()
}

// waitReady polls url until it answers 200, the process ends or within
// passes.
func waitReady(url string, within time.Duration, exited <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-exited:
			return false
		case <-tick.C:
		}
	}
}
