package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// The throughput measurement: how many short tasks a second one cp
// schedules on a fleet of light agents, and what each costs the cp in CPU.
//
// The cp runs in a process of its own, the fleet and everything else in
// this one, so the two CPU costs are measured apart: the cp process is this
// package's test binary started again (ThroughputConfig.CPCommand) with
// the configuration in the environment variable CPChildEnv, and it runs
// ServeCPChild, which starts the cp exactly as the soak does (startCP) and
// answers a line protocol on its stdin and stdout: its URL when it is up,
// its own CPU time (getrusage RUSAGE_SELF) and heap on request, a CPU
// profile started and stopped on request, and shutdown at EOF. So the cp's
// CPU is the cp process's alone (its HTTP server, raft log, core and
// metrics), with no agent, submitter or follower in it; this process's CPU,
// the "fleet" figure, is the light agents plus the submitters and the
// timeline follower: everything outside the cp. The cp's figure does
// include answering the follower's GET /timeline (four events a task; about
// 4% of the cp's CPU in a profile of the floor), as it includes answering
// any client.
//
// A run is a closed-loop burn-down: the cp and the fleet start and the fleet
// registers; the cp's idle CPU (heartbeats and held polls only) is sampled
// for IdleSample; then Submitters workers post Tasks tasks in batches of
// Batch to POST /v1/batch/tasks as fast as the cp takes them, each task
// refused with 429 or 503 going back to be posted again after a short
// backoff, until Tasks were accepted (201). The run ends when the timeline
// shows every accepted task SUCCEEDED; its elapsed time is from the first
// submission to the cp's timestamp of the last SUCCEEDED event. CPU is
// sampled in both processes at the first submission and when the follower
// has seen the last task end.
//
// The checks are the soak's where they apply: every accepted task
// SUCCEEDED exactly once on the timeline and the follower missed no event;
// each (task, attempt) started at most once on the agents and attempts of
// a task never overlapped; every task submitted was accepted in the end
// (none lost); no HTTP error but 429 and 503.

// CPChildEnv names the environment variable that makes a test binary the
// cp process of a throughput run: it holds the run's ThroughputConfig as
// JSON.
const CPChildEnv = "FLUXFORGE_SOAK_CP_CHILD"

// ThroughputConfig sizes a throughput run.
type ThroughputConfig struct {
	Agents int // light agents, spread over Zones
	Zones  int // failure domains
	Slots  int // per agent
	// HTTP1: the agents talk HTTP/1.1 to the cp, as the agent command
	// does by default (see Config.HTTP1).
	HTTP1 bool
	// Durable runs the cp on a data dir (a temporary one, removed after):
	// its log and timeline fsynced to disk, as the floors are
	// measured. False runs it in memory.
	Durable bool
	Task    time.Duration // sleep of every task; 0 is a no-op task
	Tasks   int           // to accept and run
	// Batch is the tasks of one POST /v1/batch/tasks (at most
	// cp.BatchTasksMax); Submitters post concurrently, closed-loop.
	Batch      int
	Submitters int
	// QueueCapacity is the cp's core.Config.QueueCapacity: how far
	// submission may run ahead of dispatch before the cp answers 429.
	QueueCapacity int
	// HeartbeatInterval, when set, replaces the soak's 500ms (and the
	// heartbeat timeout and loss grace scale with it): the fleet's
	// heartbeats are most of the cp's CPU at rest, and production agents
	// send one every 5s.
	HeartbeatInterval time.Duration
	// IdleSample is how long the cp's idle CPU (the fleet registered,
	// nothing submitted) is sampled before the burn-down; 0 skips it.
	IdleSample time.Duration
	// Timeout bounds the whole run.
	Timeout time.Duration
	// CPCommand is the argv that starts the cp process (this package's
	// test binary running a test that calls ServeCPChild when CPChildEnv
	// is set).
	CPCommand []string `json:"-"`
	// CPUProfile, when set, is a file the cp process writes its CPU
	// profile of the burn-down to.
	CPUProfile string `json:"-"`
}

// ThroughputFloor is the floor: 1,000 light agents × 4 slots in 3
// zones, 200,000 no-op tasks in batches of 500 from 8 submitters. Of the
// shapes tried (1,000 × 1, 4 or 8; 500 × 8; 250 × 4 or 16; 100 × 16),
// 500 × 8 kept the cp's queue fed (it refuses some with 429) at the
// lowest cp CPU per task; one submitter cannot (the cp idles between
// posts, and its per-task CPU doubles with the fleet's heartbeats).
func ThroughputFloor() ThroughputConfig {
	return ThroughputConfig{Agents: 1000, Zones: 3, Slots: 4, HTTP1: true, Durable: true, Task: 0, Tasks: 200_000, Batch: 500, Submitters: 8,
		QueueCapacity: 20_000, IdleSample: 3 * time.Second, Timeout: 9 * time.Minute}
}

// ThroughputTiny is the CI version: 20 agents, 2,000 tasks.
func ThroughputTiny() ThroughputConfig {
	return ThroughputConfig{Agents: 20, Zones: 3, Slots: 4, HTTP1: true, Durable: true, Task: time.Millisecond, Tasks: 2000, Batch: 250, Submitters: 2,
		QueueCapacity: 500, Timeout: 2 * time.Minute}
}

func (c ThroughputConfig) validate() error {
	if c.Agents < c.Zones || c.Zones < 1 || c.Slots < 1 || c.Task < 0 || c.Tasks < 1 ||
		c.Batch < 1 || c.Batch > cp.BatchTasksMax || c.Submitters < 1 || c.QueueCapacity < 1 || c.HeartbeatInterval < 0 || c.Timeout <= 0 {
		return fmt.Errorf("soak: throughput: need Agents >= Zones >= 1, Slots >= 1, Task >= 0, Tasks >= 1, Batch in [1,%d], Submitters >= 1, QueueCapacity >= 1 and Timeout > 0",
			cp.BatchTasksMax)
	}
	return nil
}

// throughputCoreConfig is the soak's core config with the queue of cfg and
// a timeline long enough for the follower: a task makes four events
// (queued, assigned, running, succeeded), and at 10,000 tasks/s the
// follower, polling every 50ms, must not fall a ring behind.
func throughputCoreConfig(cfg ThroughputConfig) core.Config {
	cc := soakCoreConfig(Config{Agents: cfg.Agents, Slots: cfg.Slots}, float64(cfg.QueueCapacity)/2)
	cc.QueueCapacity = cfg.QueueCapacity
	cc.TasksMax = max(cc.TasksMax, 4*cfg.QueueCapacity)
	cc.TimelineEventsMax = 200_000
	if iv := cfg.HeartbeatInterval; iv > 0 {
		cc.HeartbeatInterval, cc.HeartbeatTimeout, cc.LostAfter = iv, 4*iv, 6*iv
	}
	return cc
}

// ThroughputReport is what a throughput run measured. Failures lists every
// violated check; a run passed when it is empty.
type ThroughputReport struct {
	Config     ThroughputConfig
	Accepted   int
	Refused429 int // task results (and whole batches) answered 429
	Refused503 int
	Posts      int // batch requests
	Succeeded  int
	Executions int
	Elapsed    time.Duration // first submission to the last SUCCEEDED
	TasksPerS  float64
	// CP and Fleet CPU over the burn-down, user+system: the cp process's
	// and this process's (agents, submitters, follower).
	CPCPU, FleetCPU time.Duration
	CPIdleCores     float64 // the cp's CPU at rest, in cores
	CPHeap          uint64  // the cp's heap after a GC at the end
	// Heartbeats and Polls are the fleet's requests over the burn-down.
	Heartbeats, Polls uint64
	APIErrors         map[string]float64
	Failures          []string
}

// CPCPUPerTask is the cp's CPU per accepted task.
func (r *ThroughputReport) CPCPUPerTask() time.Duration {
	return r.CPCPU / time.Duration(max(r.Accepted, 1))
}

// CPCPUPerTaskAboveIdle is the cp's CPU per accepted task less what it
// spends at rest over the same time (heartbeats and held polls of the
// fleet). Zero when the idle CPU was not sampled. It understates the
// tasks' cost: under load an agent's heartbeats carry its results and
// stand in for its periodic ones, which then cost nothing extra (at the
// floor it was 69 µs with the soak's 500ms heartbeats, while with 5s
// heartbeats, idle 0.01 cores, the whole cost was 157-175 µs). Quote
// CPCPUPerTask with -soak-throughput-heartbeat 5s.
func (r *ThroughputReport) CPCPUPerTaskAboveIdle() time.Duration {
	if r.CPIdleCores == 0 {
		return 0
	}
	idle := time.Duration(r.CPIdleCores * float64(r.Elapsed))
	return (r.CPCPU - idle) / time.Duration(max(r.Accepted, 1))
}

// FleetCPUPerTask is this process's CPU per accepted task.
func (r *ThroughputReport) FleetCPUPerTask() time.Duration {
	return r.FleetCPU / time.Duration(max(r.Accepted, 1))
}

// agentHTTP names the protocol the fleet talks to the cp.
func agentHTTP(http1 bool) string {
	if http1 {
		return "1.1"
	}
	return "2"
}

// String is the one summary line, then the failures.
func (r *ThroughputReport) String() string {
	var b strings.Builder
	c, cc := r.Config, throughputCoreConfig(r.Config)
	fmt.Fprintf(&b, "throughput: agents=%d slots=%d tasks=%d task=%v batch=%d submitters=%d queue=%d heartbeat=%v elapsed=%.2fs tasks/s=%.0f cp_cpu_us/task=%.1f cp_cpu_above_idle_us/task=%.1f fleet_cpu_us/task=%.1f cp_cores=%.2f cp_idle_cores=%.2f heap=%.1fMiB posts=%d refused_429=%d refused_503=%d executions=%d heartbeats/task=%.2f polls/task=%.2f agent_http=%s durable=%v\n",
		c.Agents, c.Slots, c.Tasks, c.Task, c.Batch, c.Submitters, c.QueueCapacity, cc.HeartbeatInterval, r.Elapsed.Seconds(), r.TasksPerS,
		float64(r.CPCPUPerTask())/float64(time.Microsecond), float64(r.CPCPUPerTaskAboveIdle())/float64(time.Microsecond),
		float64(r.FleetCPUPerTask())/float64(time.Microsecond),
		r.CPCPU.Seconds()/max(r.Elapsed.Seconds(), 1e-9), r.CPIdleCores, float64(r.CPHeap)/(1<<20),
		r.Posts, r.Refused429, r.Refused503, r.Executions,
		float64(r.Heartbeats)/float64(max(r.Accepted, 1)), float64(r.Polls)/float64(max(r.Accepted, 1)), agentHTTP(c.HTTP1), c.Durable)
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "FAIL: %s\n", f)
	}
	return b.String()
}

// RunThroughput performs one throughput run; an error means it could not
// be set up or was interrupted, not that a check failed.
func RunThroughput(ctx context.Context, cfg ThroughputConfig) (*ThroughputReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.CPCommand) == 0 {
		return nil, errors.New("soak: throughput: no CPCommand to start the cp process")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rep := &ThroughputReport{Config: cfg}
	cc := throughputCoreConfig(cfg)
	child, err := startCPChild(cfg)
	if err != nil {
		return nil, err
	}
	defer child.stop()
	fl, err := startFleet(Config{Agents: cfg.Agents, Zones: cfg.Zones, Slots: cfg.Slots, HTTP1: cfg.HTTP1}, cc, child.url)
	if err != nil {
		return nil, err
	}
	defer fl.stop()

	apiTr := http.DefaultTransport.(*http.Transport).Clone()
	apiTr.MaxIdleConnsPerHost = 64
	api := &http.Client{Transport: apiTr, Timeout: 30 * time.Second}
	defer apiTr.CloseIdleConnections()
	if err := waitRegistered(ctx, api, child.url, cfg.Agents); err != nil {
		return nil, err
	}
	if cfg.IdleSample > 0 {
		if rep.CPIdleCores, err = idleCores(ctx, child, cfg.IdleSample); err != nil {
			return nil, err
		}
	}

	tl := &timelineFollower{succeeded: map[core.TaskID]int{}, ended: map[core.TaskID]core.TaskState{}}
	if cfg.CPUProfile != "" {
		if _, err := child.ask("profile-start " + cfg.CPUProfile); err != nil {
			return nil, err
		}
	}
	cpBefore, _, err := child.cpu()
	if err != nil {
		return nil, err
	}
	selfBefore := selfCPU()
	hbBefore, pollBefore := fl.hbOK.Load(), fl.pollOK.Load()
	start := time.Now()
	subCtx, stopSub := context.WithCancel(ctx)
	sub := startBatchSubmitters(subCtx, api, child.url, cfg, fl.errs)
	ids, err := burnDown(ctx, cfg, tl, api, child.url, sub)
	stopSub()
	sub.wait()
	if err != nil {
		return nil, err
	}
	rep.FleetCPU = selfCPU() - selfBefore
	rep.Heartbeats, rep.Polls = fl.hbOK.Load()-hbBefore, fl.pollOK.Load()-pollBefore
	cpAfter, _, err := child.cpu()
	if err != nil {
		return nil, err
	}
	rep.CPCPU = cpAfter - cpBefore
	if cfg.CPUProfile != "" {
		if _, err := child.ask("profile-stop"); err != nil {
			return nil, err
		}
	}
	tl.mu.Lock()
	rep.Elapsed = tl.lastSucceeded.Sub(start)
	tl.mu.Unlock()
	rep.TasksPerS = float64(len(ids)) / rep.Elapsed.Seconds()
	if rep.CPHeap, err = child.heap(); err != nil {
		return nil, err
	}
	var m Report
	if err := readMetrics(ctx, &m, api, child.url); err != nil {
		return nil, err
	}
	rep.APIErrors = m.APIErrors
	rep.Accepted, rep.Posts = len(ids), int(sub.posts.Load())
	rep.Refused429, rep.Refused503 = int(sub.r429.Load()), int(sub.r503.Load())
	checkThroughput(cfg, rep, tl, fl, ids)
	return rep, nil
}

// idleCores is the cp's CPU over d with the fleet connected and nothing
// to do, in cores.
func idleCores(ctx context.Context, child *cpChild, d time.Duration) (float64, error) {
	before, _, err := child.cpu()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	after, _, err := child.cpu()
	if err != nil {
		return 0, err
	}
	return (after - before).Seconds() / time.Since(t0).Seconds(), nil
}

// burnDown waits for the submitters to have every task accepted, then for
// the timeline to show each accepted task ended, polling it every 50ms
// all along (the cp's ring must not overrun the follower). It returns the
// accepted ids.
func burnDown(ctx context.Context, cfg ThroughputConfig, tl *timelineFollower, api *http.Client, cpURL string, sub *batchSubmitters) ([]core.TaskID, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var ids []core.TaskID
	for {
		if err := tl.poll(ctx, api, cpURL); err != nil {
			return nil, err
		}
		if ids == nil && sub.done() {
			ids = sub.acceptedIDs()
		}
		tl.mu.Lock()
		dropped := tl.dropped
		tl.mu.Unlock()
		if dropped > 0 {
			// Those tasks' ends will never be seen: say so now rather
			// than wait for the timeout.
			return nil, fmt.Errorf("soak: throughput: the timeline follower fell behind and lost %d events (the cp keeps %d in memory; run durable to keep them on disk)",
				dropped, throughputCoreConfig(cfg).TimelineEventsMax)
		}
		if ids != nil {
			tl.mu.Lock()
			ended := 0
			for _, id := range ids {
				if _, ok := tl.ended[id]; ok {
					ended++
				}
			}
			tl.mu.Unlock()
			if ended == len(ids) {
				return ids, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("soak: throughput: %w (accepted %d of %d)", ctx.Err(), len(sub.acceptedIDs()), cfg.Tasks)
		case <-tick.C:
		}
	}
}

// checkThroughput records every violated check in rep.Failures.
func checkThroughput(cfg ThroughputConfig, rep *ThroughputReport, tl *timelineFollower, fl *fleet, ids []core.TaskID) {
	var r Report
	checkTimeline(&r, tl, ids)
	checkExecutions(&r, fl.rec, ids)
	rep.Succeeded, rep.Executions = r.Succeeded, r.Executions
	rep.Failures = r.Failures
	failf := func(format string, args ...any) { rep.Failures = append(rep.Failures, fmt.Sprintf(format, args...)) }
	if len(ids) != cfg.Tasks {
		failf("accepted %d tasks, want %d", len(ids), cfg.Tasks)
	}
	if n := len(slices.Compact(slices.Sorted(slices.Values(ids)))); n != len(ids) {
		failf("the cp gave %d ids to %d accepted tasks", n, len(ids))
	}
	if rep.Succeeded != len(ids) {
		failf("%d of %d accepted tasks SUCCEEDED", rep.Succeeded, len(ids))
	}
	if fl.errs.n > 0 {
		failf("%d unexpected errors, first: %q", fl.errs.n, fl.errs.first)
	}
	for code, n := range rep.APIErrors {
		if code != "429" && code != "503" && n > 0 {
			failf("the cp counted %v API errors with status %s", n, code)
		}
	}
}

// selfCPU is this process's CPU time so far, user+system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err) // RUSAGE_SELF with a valid pointer cannot fail
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// batchSubmitters post batches of sleep tasks until cfg.Tasks were
// accepted: each worker claims up to a batch of the tasks still owed,
// posts them, keeps the ids of those created and gives back those refused
// with 429 or 503 (then backs off before its next post).
type batchSubmitters struct {
	workers sync.WaitGroup

	mu       sync.Mutex
	owed     int // tasks not yet claimed
	inFlight int // tasks claimed by a post not yet answered
	accepted []core.TaskID
	bodies   map[int][]byte

	posts, r429, r503 atomic.Int64
}

// submitBackoff is how long a worker waits after a refusal before its next
// post: the queue needs a moment to drain.
const submitBackoff = 5 * time.Millisecond

func startBatchSubmitters(ctx context.Context, api *http.Client, cpURL string, cfg ThroughputConfig, errs *errorLog) *batchSubmitters {
	s := &batchSubmitters{owed: cfg.Tasks, bodies: map[int][]byte{}}
	item := fmt.Sprintf(`{"kind":"sleep","duration_ms":%d}`, cfg.Task.Milliseconds())
	for range cfg.Submitters {
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			for ctx.Err() == nil {
				n, ok := s.claim(cfg.Batch)
				if !ok {
					return
				}
				if n == 0 { // the rest is in flight and may come back
					select {
					case <-ctx.Done():
					case <-time.After(time.Millisecond):
					}
					continue
				}
				refused := s.post(ctx, api, cpURL, s.body(n, item), n, errs)
				if refused > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(submitBackoff):
					}
				}
			}
		}()
	}
	return s
}

// claim takes up to n owed tasks; ok is false when nothing is owed or in
// flight (the work is done).
func (s *batchSubmitters) claim(n int) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owed == 0 && s.inFlight == 0 {
		return 0, false
	}
	n = min(n, s.owed)
	s.owed -= n
	s.inFlight += n
	return n, true
}

// body is the JSON of a batch of n identical tasks, built once per n.
func (s *batchSubmitters) body(n int, item string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.bodies[n]; ok {
		return b
	}
	b := []byte(`{"tasks":[` + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + `]}`)
	s.bodies[n] = b
	return b
}

// batchAnswer is the part of cp.BatchResponse the submitters read.
type batchAnswer struct {
	Results []struct {
		Status int `json:"status"`
		Task   *struct {
			ID core.TaskID `json:"id"`
		} `json:"task"`
		Error string `json:"error"`
	} `json:"results"`
}

// post sends one batch of n tasks and settles them: created ones are
// accepted, refused ones owed again. It returns how many were refused.
func (s *batchSubmitters) post(ctx context.Context, api *http.Client, cpURL string, body []byte, n int, errs *errorLog) (refused int) {
	s.posts.Add(1)
	var created []core.TaskID
	defer func() {
		s.mu.Lock()
		s.inFlight -= n
		s.owed += n - len(created)
		s.accepted = append(s.accepted, created...)
		s.mu.Unlock()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cpURL+"/v1/batch/tasks", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := api.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			errs.add("batch submit: " + err.Error())
		}
		return n
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		errs.add("batch submit reply: " + err.Error())
		return n
	case resp.StatusCode == http.StatusTooManyRequests:
		s.r429.Add(int64(n))
		return n
	case resp.StatusCode == http.StatusServiceUnavailable:
		s.r503.Add(int64(n))
		return n
	case resp.StatusCode != http.StatusOK:
		errs.add(fmt.Sprintf("batch submit answered %d: %.200s", resp.StatusCode, raw))
		return n
	}
	var ans batchAnswer
	if err := json.Unmarshal(raw, &ans); err != nil || len(ans.Results) != n {
		errs.add(fmt.Sprintf("batch submit reply of %d results for %d tasks: %v", len(ans.Results), n, err))
		return n
	}
	for _, r := range ans.Results {
		switch {
		case r.Status == http.StatusCreated && r.Task != nil:
			created = append(created, r.Task.ID)
		case r.Status == http.StatusTooManyRequests:
			s.r429.Add(1)
		case r.Status == http.StatusServiceUnavailable:
			s.r503.Add(1)
		default:
			errs.add(fmt.Sprintf("batch submit: a task answered %d %s", r.Status, r.Error))
		}
	}
	return n - len(created)
}

// done says every task was accepted.
func (s *batchSubmitters) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owed == 0 && s.inFlight == 0
}

// wait waits for the workers: they end when every task was accepted or
// their context ends.
func (s *batchSubmitters) wait() { s.workers.Wait() }

func (s *batchSubmitters) acceptedIDs() []core.TaskID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// cpChild is the cp process of a throughput run and its line protocol.
type cpChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	url   string
}

// startCPChild starts cfg.CPCommand with cfg in CPChildEnv and waits for the
// cp's URL.
func startCPChild(cfg ThroughputConfig) (*cpChild, error) {
	env, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.CPCommand[0], cfg.CPCommand[1:]...)
	cmd.Env = append(os.Environ(), CPChildEnv+"="+string(env))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("soak: throughput: start the cp process: %w", err)
	}
	c := &cpChild{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	url, err := c.reply("url")
	if err != nil {
		c.stop()
		return nil, err
	}
	c.url = url
	return c, nil
}

// reply reads lines until one begins with word and returns the rest (a
// test binary may print lines of its own).
func (c *cpChild) reply(word string) (string, error) {
	for c.out.Scan() {
		if rest, ok := strings.CutPrefix(c.out.Text(), word+" "); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("soak: throughput: the cp process ended before answering %q: %v", word, c.out.Err())
}

// ask sends one command and returns its answer.
func (c *cpChild) ask(cmd string) (string, error) {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return "", fmt.Errorf("soak: throughput: to the cp process: %w", err)
	}
	word, _, _ := strings.Cut(cmd, " ")
	return c.reply(word)
}

// cpu is the cp process's CPU time so far and its heap in use.
func (c *cpChild) cpu() (time.Duration, uint64, error) {
	a, err := c.ask("cpu")
	if err != nil {
		return 0, 0, err
	}
	var ns int64
	var heap uint64
	if _, err := fmt.Sscan(a, &ns, &heap); err != nil {
		return 0, 0, fmt.Errorf("soak: throughput: cpu answer %q: %w", a, err)
	}
	return time.Duration(ns), heap, nil
}

// heap is the cp process's heap after a GC.
func (c *cpChild) heap() (uint64, error) {
	a, err := c.ask("heap")
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(a, 10, 64)
}

// stop closes the cp's stdin (it shuts down) and waits for it.
func (c *cpChild) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// ServeCPChild is the cp process of a throughput run: it starts the cp
// with the configuration in CPChildEnv, writes "url URL", and answers one
// line per command on in until EOF, then stops the cp:
//
//	cpu                  -> "cpu NANOSECONDS HEAPBYTES" (user+system CPU of this process)
//	heap                 -> "heap BYTES" (after a GC)
//	profile-start FILE   -> "profile-start ok" (CPU profile to FILE)
//	profile-stop         -> "profile-stop ok"
func ServeCPChild(in io.Reader, out io.Writer) error {
	var cfg ThroughputConfig
	if err := json.Unmarshal([]byte(os.Getenv(CPChildEnv)), &cfg); err != nil {
		return fmt.Errorf("soak: %s: %w", CPChildEnv, err)
	}
	var ccfg Config
	if cfg.Durable {
		dir, err := os.MkdirTemp("", "fluxforge-throughput-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		ccfg.DataDir = dir
	}
	c, err := startCP(ccfg, throughputCoreConfig(cfg))
	if err != nil {
		return err
	}
	defer c.stop()
	fmt.Fprintf(out, "url %s\n", c.url)
	var profile *os.File
	defer func() {
		if profile != nil {
			pprof.StopCPUProfile()
			_ = profile.Close()
		}
	}()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "cpu":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(out, "cpu %d %d\n", selfCPU().Nanoseconds(), ms.HeapAlloc)
		case "heap":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(out, "heap %d\n", ms.HeapAlloc)
		case "profile-start":
			if profile != nil {
				return errors.New("soak: a CPU profile is already running")
			}
			if profile, err = os.Create(arg); err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(profile); err != nil {
				return err
			}
			fmt.Fprintln(out, "profile-start ok")
		case "profile-stop":
			if profile != nil {
				pprof.StopCPUProfile()
				err := profile.Close()
				profile = nil
				if err != nil {
					return err
				}
			}
			fmt.Fprintln(out, "profile-stop ok")
		default:
			return fmt.Errorf("soak: cp process: unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}
