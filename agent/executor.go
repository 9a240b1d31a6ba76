package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
)

// ReportFunc receives the end of an execution an executor started. It is
// called from the executor's own goroutines, never from inside Start or Stop,
// so it may take the daemon's lock.
type ReportFunc func(core.Result)

// DefaultExecPath is the only environment variable an exec task sees: tasks
// inherit nothing else from the agent (no tokens, no credentials).
const DefaultExecPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// OutputTailBytesDefault bounds the output an exec task keeps: the last 4 KiB
// of its combined stdout and stderr.
const OutputTailBytesDefault = 4 << 10

// outputDrainMax bounds how long an exec task's output is read after its
// process exited and its process group was killed.
const outputDrainMax = 2 * time.Second

// Executors routes executions to the executor for their kind: the built-in
// sleep and, when allowed, exec. It implements core.Executor.
type Executors struct {
	Sleep *SleepExecutor
	Exec  *ExecExecutor // nil: kind exec fails (core refuses it earlier unless allowed)
}

// Start implements core.Executor.
func (x *Executors) Start(e core.Execution) {
	switch {
	case e.Spec.Kind == core.KindSleep:
		x.Sleep.Start(e)
	case e.Spec.Kind == core.KindExec && x.Exec != nil:
		x.Exec.Start(e)
	default:
		r := core.Result{TaskID: e.TaskID, Attempt: e.Attempt, Outcome: core.OutcomeRejected, ExitCode: -1,
			Error: fmt.Sprintf("kind %q is not available on this agent", e.Spec.Kind)}
		go x.Sleep.report(r) // never report from inside Start
	}
}

// Stop implements core.Executor.
func (x *Executors) Stop(task core.TaskID, attempt int) {
	x.Sleep.Stop(task, attempt)
	if x.Exec != nil {
		x.Exec.Stop(task, attempt)
	}
}

// SleepExecutor runs kind sleep: a timer on the injected clock, then success.
type SleepExecutor struct {
	clock  clock.Clock
	report ReportFunc

	mu     sync.Mutex
	timers map[core.Lease]*clock.Timer
}

// NewSleepExecutor returns a sleep executor on clk reporting to report.
func NewSleepExecutor(clk clock.Clock, report ReportFunc) *SleepExecutor {
	return &SleepExecutor{clock: clk, report: report, timers: map[core.Lease]*clock.Timer{}}
}

// Start implements core.Executor.
func (s *SleepExecutor) Start(e core.Execution) {
	l := core.Lease{TaskID: e.TaskID, Attempt: e.Attempt}
	s.mu.Lock()
	defer s.mu.Unlock()
	// AfterFunc runs its function on a goroutine of its own, after Start
	// returned and the lock is free.
	s.timers[l] = s.clock.AfterFunc(time.Duration(e.Spec.DurationMS)*time.Millisecond, func() {
		s.mu.Lock()
		_, live := s.timers[l]
		delete(s.timers, l)
		s.mu.Unlock()
		if live {
			s.report(core.Result{TaskID: l.TaskID, Attempt: l.Attempt, Outcome: core.OutcomeSucceeded})
		}
	})
}

// Stop implements core.Executor.
func (s *SleepExecutor) Stop(task core.TaskID, attempt int) {
	l := core.Lease{TaskID: task, Attempt: attempt}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.timers[l]; ok {
		t.Stop()
		delete(s.timers, l)
	}
}

// Running is how many sleeps are pending.
func (s *SleepExecutor) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.timers)
}

// ExecExecutor runs kind exec: argv directly (no shell), in a process group
// of its own that is killed as a whole on Stop (timeout or cancel) and after
// the main process exits, so no stray child outlives its task. The task sees
// only PATH in its environment and keeps a bounded tail of its combined
// output.
type ExecExecutor struct {
	report ReportFunc
	// Path is the PATH the task sees; DefaultExecPath when empty.
	Path string
	// Dir is the working directory; the agent's when empty.
	Dir string
	// OutputTailBytes bounds the kept output; OutputTailBytesDefault when 0.
	OutputTailBytes int

	mu    sync.Mutex
	procs map[core.Lease]*proc
	wg    sync.WaitGroup
}

type proc struct {
	pid     int // 0 until started
	stopped bool
}

// NewExecExecutor returns an exec executor reporting to report.
func NewExecExecutor(report ReportFunc) *ExecExecutor {
	return &ExecExecutor{report: report, procs: map[core.Lease]*proc{}}
}

// Start implements core.Executor. The process starts on a goroutine of its
// own; a Stop that comes first prevents it from starting at all.
func (x *ExecExecutor) Start(e core.Execution) {
	l := core.Lease{TaskID: e.TaskID, Attempt: e.Attempt}
	p := &proc{}
	x.mu.Lock()
	x.procs[l] = p
	x.mu.Unlock()
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		r := x.run(l, p, e.Spec.Argv)
		x.mu.Lock()
		delete(x.procs, l)
		x.mu.Unlock()
		if r != nil {
			x.report(*r)
		}
	}()
}

// run executes argv and returns its result, or nil when it was stopped
// (the agent already reported the stop).
func (x *ExecExecutor) run(l core.Lease, p *proc, argv []string) *core.Result {
	res := &core.Result{TaskID: l.TaskID, Attempt: l.Attempt, ExitCode: -1}
	tail := newTailWriter(x.tailBytes())
	cmd := exec.Command(argv[0], argv[1:]...)
	path := x.Path
	if path == "" {
		path = DefaultExecPath
	}
	cmd.Env = []string{"PATH=" + path}
	cmd.Dir = x.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// An *os.File as stdout and stderr: exec copies nothing itself, so Wait
	// returns when the process exits even if a stray child holds the pipe.
	pr, pw, err := os.Pipe()
	if err != nil {
		res.Outcome, res.Error = core.OutcomeFailed, "pipe: "+err.Error()
		return res
	}
	cmd.Stdout, cmd.Stderr = pw, pw

	x.mu.Lock()
	if p.stopped {
		x.mu.Unlock()
		pr.Close()
		pw.Close()
		return nil
	}
	err = cmd.Start()
	if err == nil {
		p.pid = cmd.Process.Pid
	}
	x.mu.Unlock()
	pw.Close()
	if err != nil {
		pr.Close()
		res.Outcome, res.Error = core.OutcomeFailed, "start: "+err.Error()
		return res
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(tail, pr)
	}()
	waitErr := cmd.Wait()
	// Whatever the task left behind in its group goes with it.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(outputDrainMax):
	}
	pr.Close()
	<-copied
	x.mu.Lock()
	stopped := p.stopped
	x.mu.Unlock()
	if stopped {
		return nil
	}
	res.Output = tail.String()
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		res.Outcome, res.ExitCode = core.OutcomeSucceeded, 0
	case errors.As(waitErr, &exitErr):
		res.Outcome, res.ExitCode = core.OutcomeFailed, exitErr.ExitCode()
		res.Error = fmt.Sprintf("exited: %v", waitErr)
	default:
		res.Outcome, res.Error = core.OutcomeFailed, waitErr.Error()
	}
	return res
}

func (x *ExecExecutor) tailBytes() int {
	if x.OutputTailBytes > 0 {
		return x.OutputTailBytes
	}
	return OutputTailBytesDefault
}

// Stop implements core.Executor: it kills the attempt's whole process group.
func (x *ExecExecutor) Stop(task core.TaskID, attempt int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p, ok := x.procs[core.Lease{TaskID: task, Attempt: attempt}]
	if !ok || p.stopped {
		return
	}
	p.stopped = true
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// Running is how many exec attempts have not ended yet.
func (x *ExecExecutor) Running() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.procs)
}

// Wait blocks until every started process has ended and been reported.
func (x *ExecExecutor) Wait() { x.wg.Wait() }

// tailWriter keeps the last n bytes written to it.
type tailWriter struct {
	mu    sync.Mutex
	buf   []byte // ring of capacity n
	start int    // index of the oldest byte when full
	full  bool
}

func newTailWriter(n int) *tailWriter { return &tailWriter{buf: make([]byte, 0, n)} }

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	c := cap(w.buf)
	if len(p) >= c {
		w.buf = append(w.buf[:0], p[len(p)-c:]...)
		w.start, w.full = 0, true
		return n, nil
	}
	for len(p) > 0 {
		if !w.full {
			k := min(len(p), c-len(w.buf))
			w.buf = append(w.buf, p[:k]...)
			p = p[k:]
			w.full = len(w.buf) == c
			continue
		}
		k := copy(w.buf[w.start:], p)
		p = p[k:]
		w.start = (w.start + k) % c
	}
	return n, nil
}

// String returns the kept bytes, oldest first.
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.full {
		return string(w.buf)
	}
	return string(w.buf[w.start:]) + string(w.buf[:w.start])
}
